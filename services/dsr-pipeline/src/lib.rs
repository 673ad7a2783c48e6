//! dsr-pipeline: the stream processors.
//!
//! - [`router`]: decode, validate and find the household of each source record (or say why
//!   not: the dead-letter reason), waiting for people the index does not know yet. Pure.
//! - [`source_router`]: the router on a log: source topics in, `dsr.household-events` out,
//!   the person → household directory fed from the changelog, parked events kept durably.
//! - [`task`]: the household task — one input partition of `dsr.household-events`, its state
//!   ([`dsr_store::PartitionState`]) and the outputs each batch produces, each tagged with the
//!   input position that caused it (the fence that makes re-processing after a crash produce
//!   nothing twice; see `docs/architecture.md`).
//!
//! - [`fence`]: what an output partition already holds, read when a partition is taken over:
//!   the source on the last record of each append, and an append a crash cut short.
//! - [`rules`]: rule versions on the log: activated versions on `dsr.program-rules`, and the
//!   markers that make every partition decide its households again at a definite point.
//! - [`codec`]: Avro in Confluent wire format, with ids from a schema registry.
//! - [`ingest`]: a life event from outside (JSON line, HTTP request) validated into a record.
//! - [`runner`]: the household processor on a log (the `dsr_log::Log` port): group
//!   membership, restore from the changelog, fences, produce-then-commit.
//! - `testing` (feature): the reference the tests compare against, the fixtures on both
//!   log adapters and the scenario every deployment must pass.

pub mod codec;
pub mod fence;
pub mod ingest;
pub mod router;
pub mod rules;
pub mod runner;
pub mod source_router;
pub mod task;
#[cfg(feature = "testing")]
pub mod testing;

pub use router::{route, route_event, PersonIndex, Route};
pub use task::{BatchOutput, HouseholdTask, Input, Output, Source, TaskError};
