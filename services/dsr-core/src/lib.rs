//! dsr-core: the pure domain of the dynamic social registry.
//!
//! Everything here is deterministic and free of I/O, async and clocks, so that every
//! deployment (embedded, Kafka) computes the same household records from the same events,
//! and so that it can be property-tested. The pipeline, the API and the CLI call into it.
//!
//! - [`ids`]: identifiers, area code paths, dates and timestamps.
//! - [`codes`]: code lists (DCI where DCI defines them).
//! - [`event`]: the life events and their validation.
//! - [`household`]: the household record.
//! - [`reducer`]: `apply(household, event) -> (household, effects)`.
//! - [`score`]: the need score (proxy means test) with its explanation.
//! - [`eligibility`]: programs, their rules (CEL) and entered / changed / exited.
//! - [`facts`]: what score and rules read, derived once per evaluation.
//! - [`process`]: one event through reducer, score and every program.
//! - [`areas`]: the geographic master list.
//! - [`scale_up`]: shock-responsive scale-up rules, their plan (preview = activation) and
//!   lifecycle.
//! - [`waiting`]: events that wait for their household or person, and their retry order.

pub mod areas;
pub mod codes;
pub mod eligibility;
pub mod event;
pub mod facts;
pub mod household;
pub mod ids;
pub mod process;
pub mod reducer;
pub mod rule_versions;
pub mod scale_up;
pub mod score;
#[cfg(test)]
mod strategies;
pub mod waiting;

pub use codes::CodeList;
pub use event::{Envelope, Event, InvalidEvent, Payload};
pub use household::{Household, Member};
pub use ids::{AreaCode, Date, EventId, HouseholdId, Micros, PersonId};
pub use process::{process, BeneficiaryEvent, Context, EligibilityChange, Processed};
pub use reducer::{apply, Applied, ApplyError, Effect};
pub use score::PmtModel;
