//! The bodies the API answers with. The handlers build these types (not ad-hoc JSON), so the
//! schemas in `/openapi.json`, derived from them, are the bodies actually sent.
//!
//! The household record itself is dsr-core's `Household`, serialised as it is stored and cut
//! down to the fields the reader's purpose allows (`dsr_access::projection`); its fields are
//! described field by field in `docs/data-dictionary.md` (generated from the Avro schemas in
//! `schemas/`), and the document refers to it as an object.

use crate::StageBacklog;
use dsr_core::score::Explanation;
use dsr_core::EventId;
use serde::Serialize;
use utoipa::ToSchema;

/// An error: what was wrong and what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[schema(example = "no household H00000042 in the registry")]
    pub error: String,
}

/// The answer to `POST /v1/events`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct EventsAnswer {
    /// The events stored durably, by their position in the request.
    pub accepted: Vec<AcceptedEvent>,
    /// The events refused, by their position in the request, each with the reason.
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedEvent {
    /// 0-based position in the request (0 for a single event).
    pub index: usize,
    #[schema(value_type = String, format = "uuid")]
    pub event_id: EventId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedEvent {
    pub index: usize,
    /// Why the event was refused (the field, the value, the rule).
    pub reason: String,
}

/// The answer to `POST /v1/events:bulk`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkAnswer {
    /// Rows read (blank lines are not rows).
    pub rows: u64,
    /// Rows stored durably.
    pub accepted: u64,
    /// Rows refused; each is in the report with its line number and reason.
    pub rejected: u64,
    /// Where to download the report of refused rows (absent when none was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// Why reading the body stopped early, if it did (rows before it are stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A household as the registry shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HouseholdView {
    /// The household record (members, dwelling, assets, need score, program statuses, version),
    /// with only the fields the named purpose allows; fields in docs/data-dictionary.md.
    #[schema(value_type = Object)]
    pub household: serde_json::Value,
    /// The need score with the contribution of every model feature (absent before scoring, or
    /// when the purpose does not allow `need_score`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub need_score: Option<NeedScoreView>,
    /// Each program's decision with the inputs it read (a program sees its own only; absent
    /// when the purpose does not allow `programs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub programs: Option<serde_json::Value>,
    /// With `?as_of=`: the time asked for (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of_ms: Option<i64>,
    /// With `?as_of=`: when the version shown was written (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_at_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NeedScoreView {
    /// 0 (least in need) to 100 (most in need).
    pub score: f64,
    pub model_version: String,
    /// How the score was reached: the predicted consumption and each feature's contribution.
    #[schema(value_type = Object)]
    pub explanation: Explanation,
}

/// Every version of a household, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub household_id: String,
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub version: u64,
    /// When the processor wrote this version (ms since the epoch).
    pub written_at_ms: i64,
    /// The events that made this version, oldest first.
    #[schema(value_type = Vec<String>)]
    pub events: Vec<EventId>,
    /// The record as it was, with only the fields the named purpose allows.
    #[schema(value_type = Object)]
    pub household: serde_json::Value,
}

/// The household a person belongs to now.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonHousehold {
    pub person_id: String,
    pub household_id: String,
}

/// The pipeline's backlog.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// True when every stage has processed everything written so far.
    pub idle: bool,
    pub stages: Vec<StageBacklog>,
    pub serving: Serving,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Serving {
    /// Changelog records the serving store applied since start.
    pub changelog_records_applied: u64,
    /// Whether the serving store has caught up with the changelog once since start.
    pub caught_up_once: bool,
}
