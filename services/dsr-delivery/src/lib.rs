//! dsr-delivery: getting eligibility changes to the programs that subscribed to them.
//!
//! - [`message`]: what a program receives (one JSON message per change, deterministic id).
//! - [`signing`]: Standard Webhooks signatures, with two secrets during a rotation.
//! - [`target`]: which webhook URLs are allowed (no private networks unless an admin says so).
//! - [`subscriptions`]: each program's webhook, secrets sealed at rest.
//! - [`dead_letters`]: changes a receiver did not take in the retry budget, until replayed.
//! - [`service`]: [`Delivery`], what the workers and the API share: status, the pull feed,
//!   replay requests.
//! - [`worker`]: one webhook worker per program, a consumer group on the program's topic.
//! - [`access`]: the reads of the log delivery needs, behind an object-safe trait.
//!
//! The Kafka channel needs nothing here: each program's topic (`dsr.eligibility.<program>`,
//! Avro in Confluent wire format, keyed by household) is written by the household processor,
//! and a program's own consumer reads it.

pub mod access;
pub mod dead_letters;
pub mod message;
pub mod service;
pub mod signing;
pub mod subscriptions;
pub mod target;
pub mod worker;

pub use dead_letters::{DeadLetter, DeadLetters};
pub use message::Message;
pub use service::{
    Delivery, DeliveryAudit, DeliveryError, DeliveryStatus, FeedPage, ProgramTopic, ReplayRequest,
};
pub use subscriptions::{Backfill, LiveFrom, Subscriptions, WebhookSpec};
