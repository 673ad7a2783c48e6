//! dsr-serving: what queries read.
//!
//! Processors keep per-partition state for themselves; queries never touch it. They read the
//! serving store, which the projector feeds from the compacted household changelog (as Kafka
//! Streams would feed an interactive-query store), on the embedded log and on Kafka alike.
//!
//! - [`store`]: the serving store (fjall): current households, every version of each, the
//!   person → household index, and lookups by admin-area prefix, program status and need-score
//!   range;
//! - [`projector`]: the consumer that applies the changelog to it, effectively once.

pub mod projector;
pub mod store;

pub use projector::{Observer, Progress, Projector};
pub use store::{Beneficiary, Prepared, ServingError, ServingStore, Status, Version};
