//! dsr-store: where a stream processor keeps the household records of the partitions it owns.
//!
//! Processing code depends on the [`port::PartitionState`] trait, never on a storage crate, so
//! the same processor runs on the embedded store (here, [`fjall_state`]) and, at scale, on
//! ScyllaDB (a later adapter). Each partition's records and the input offset up to which they
//! are applied are written in **one atomic batch**: that pairing is what lets the pipeline
//! resume after a crash without applying anything twice (see `docs/architecture.md`).
//!
//! - [`port`]: the trait and the batch type.
//! - [`codec`]: how a household record is encoded (versioned, compact).
//! - [`fjall_state`]: the embedded adapter on a directory.

pub mod codec;
pub mod fjall_state;
pub mod port;

pub use fjall_state::FjallState;
pub use port::{PartitionState, StateBatch, StoreError};
