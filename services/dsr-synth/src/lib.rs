//! dsr-synth: the one synthetic population of dsr, and the fixtures built from it.
//!
//! Every test, benchmark and demo that needs people uses this crate, so they all exercise
//! the same realistic shapes (household sizes, income distributions, area differences, the
//! mix of life events) and a bug found with one data set can be reproduced from its seed.
//! Output is a pure function of the [`Config`]: the same seed gives the same bytes on any
//! number of threads.
//!
//! - [`areas`]: the admin hierarchy region → district → sub-county → village, with each
//!   area's poverty and remoteness.
//! - [`population`]: the households of the registration survey, as `HouseholdRegistered`
//!   events.
//! - [`events`]: a simulated period of life events, consistent with the evolving population.
//! - [`generate()`](generate::generate): runs it all in parallel chunks into a [`Sink`].
//! - [`write_dir`]: writes `areas.csv`, `households.jsonl`, `events.jsonl`, `manifest.json`.
//! - [`fixtures`]: hand-built households and small in-memory populations for tests.
//! - [`names`]: the made-up syllable names of people and places.
//!
//! Limits, on purpose: moves and marriages happen within a chunk of
//! [`config::CHUNK_HOUSEHOLDS`] neighbouring households (a few villages), so chunks can be
//! simulated independently; a household founded by a move may be anywhere in the country.

pub mod areas;
mod batch;
pub mod config;
pub mod error;
pub mod events;
pub mod fixtures;
pub mod generate;
mod json;
pub mod names;
pub mod output;
pub mod population;
mod rng;
mod shocks;
mod state;

pub use areas::{Area, AreaLevel, Areas};
pub use config::{Config, HouseholdSizes, Phase, Progress, Rates};
pub use error::Error;
pub use generate::{generate, Collect, Sink, Summary};
pub use output::{write_dir, Manifest};
