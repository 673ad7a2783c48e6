//! dsr-contracts: the Avro contracts of dsr's life events and of the pipeline's outputs.
//!
//! The schemas live in `schemas/*.avsc` at the repository root, one file per named type, all in
//! the namespace `dsr.events`; released versions are frozen copies in `schemas/released/vN/`.
//! They mirror the types of [`dsr_core::event`] (and, for the outputs, `dsr_core::Household` and
//! `dsr_core::EligibilityChange`) field for field, and this crate keeps the two
//! in step: tests round-trip every kind of event and compare every code list.
//!
//! - [`schemas`]: the schema files, embedded in the binary or loaded from a directory, and the
//!   top-level schemas: `LifeEvent`, and the pipeline's outputs `HouseholdRecord` (the
//!   household changelog) and `EligibilityChange` (the eligibility topics).
//! - [`avro`]: `dsr_core::Event` to and from Avro binary (with schema resolution from the
//!   writer's schema), and to and from the JSON form; [`avro::fast`], the same bytes several
//!   times faster for data of the current schema; the pipeline's outputs
//!   (`dsr_core::Household` as a `HouseholdRecord`, `dsr_core::EligibilityChange`) to and
//!   from Avro binary.
//! - [`wire`]: the Confluent wire format (magic byte, schema id, Avro body) of Kafka messages.
//! - [`compat`]: may a new schema replace an old one? Backward (and forward) compatibility
//!   checks, naming what broke; [`compat::check_all`] checks every released version.
//! - [`dictionary`]: the data dictionary (Markdown) generated from the schemas.
//! - [`fixtures`]: hand-built events of every kind, for tests, benchmarks and demos.

pub mod avro;
pub mod compat;
pub mod dictionary;
pub mod fixtures;
pub mod schemas;
pub mod wire;

pub use avro::{
    decode, decode_eligibility_change, decode_household, decode_json, encode,
    encode_eligibility_change, encode_household, encode_json_line, DecodeError, Decoder,
    EncodeError,
};
pub use compat::{check_all, check_backward, check_forward, CompatError};
pub use dictionary::data_dictionary;
pub use schemas::{
    eligibility_change_schema, household_record_schema, life_event_schema, load_dir, SchemaError,
    SchemaSet,
};
pub use wire::{frame, unframe, WireError};
