//! dsr-scale-up: shock-responsive scale-up at run time.
//!
//! The decisions are [`dsr_core::scale_up`]'s (the plan, the lifecycle, the notifications);
//! this crate keeps them and carries them out:
//!
//! - [`book`]: the rule book — every rule with its lifecycle and grants, and every shock seen —
//!   kept in one file sealed with the registry's data keys (grants name households), written
//!   atomically after every change.
//! - [`service`]: [`ScaleUp`](service::ScaleUp), what the API and the trigger loop call: draft,
//!   edit, preview (over the serving store: the same [`plan`](dsr_core::scale_up::plan) the
//!   activation uses), approve, arm, trigger, revoke; `run` reads `dsr.area-events`
//!   (ShockDeclared / ShockEnded) and ends rules whose time is up; notifications go to the
//!   program's eligibility topic, so they reach the program through its webhook, Kafka topic
//!   or pull feed like any change.
//! - [`table`]: every household as each program's plan sees it, in memory by column, loaded
//!   once and kept current by the serving projector, so a preview does not scan the store.

pub mod book;
pub mod service;
pub mod table;

pub use book::{Book, BookError, RuleBook, ShockRecord};
pub use service::{Clock, ScaleUp, ScaleUpError};
