//! dsr-api: the HTTP API of `dsr up`.
//!
//! - `POST /v1/events`: one life event or a JSON array of them (the `dsr generate` JSON shape),
//!   or one Avro record in Confluent wire format (`Content-Type: application/vnd.dsr.avro`,
//!   magic byte, schema id, body). Every event is validated; the valid ones are appended to the
//!   legacy-HTTP source topic and the answer comes only once they are durable. `202` when all
//!   were accepted, `422` when some were (the body lists accepted ids and each rejected index
//!   with its reason), `400` when none was, `413` above the body limit.
//! - `POST /v1/events:bulk`: a JSON-lines or CSV file of any size, streamed; rejected rows
//!   with line numbers and reasons in a report at `GET /v1/events:bulk/reports/{id}`
//!   ([`bulk`]).
//! - `GET /v1/households/{id}`: the current record, its need score with the explanation, and
//!   its program statuses; `?as_of=` (RFC 3339 or ms since the epoch) gives the version the
//!   registry showed at that time.
//! - `GET /v1/households/{id}/history`: every version with the events that made it.
//! - `GET /v1/persons/{id}/household`: the household a person belongs to now.
//! - `GET /healthz` (the process answers), `GET /readyz` (the serving store has caught up with
//!   the changelog once; 503 before).
//! - `GET /v1/status`: each stage's backlog (records written but not yet processed) and whether
//!   the registry is idle (everything written so far is served).
//! - the Confluent Schema Registry API (`/subjects`, `/schemas/ids/{id}`, …) from
//!   `dsr_schema_registry::api`.
//!
//! Personal data is never logged: handlers log ids of requests and counts only.

mod bulk;
mod events;
mod households;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dsr_core::PmtModel;
use dsr_log::Log;
use dsr_pipeline::codec::WireCodec;
use dsr_serving::{Progress, ServingStore};
use std::sync::Arc;

/// Requests above this many bytes get `413` (bulk files belong to a bulk endpoint).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the handlers share.
pub struct ApiState<L: Log> {
    pub log: L,
    pub codec: WireCodec,
    pub store: ServingStore,
    pub model: PmtModel,
    /// Where `POST /v1/events` appends.
    pub ingest_topic: String,
    pub serving: Progress,
    /// Where the reports of rejected bulk rows are kept.
    pub reports_dir: std::path::PathBuf,
    /// Each stage's backlog, from the deployment (the embedded log knows its groups' commits).
    pub backlog: Backlog,
}

/// One stage of the pipeline and how many records wait for it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StageBacklog {
    pub stage: &'static str,
    pub backlog: u64,
}

/// Reports every stage's backlog when called.
pub type Backlog = Arc<dyn Fn() -> Vec<StageBacklog> + Send + Sync>;

impl<L: Log> ApiState<L> {
    /// True when every stage has processed everything written so far: what the serving store
    /// shows then is all the registry knows.
    pub fn idle(&self) -> bool {
        (self.backlog)().iter().all(|s| s.backlog == 0)
    }
}

/// Every route of the API over `state`, merged with the schema registry's.
pub fn router<L: Log + 'static>(
    state: Arc<ApiState<L>>,
    registry: Arc<dsr_schema_registry::Registry>,
) -> Router {
    Router::new()
        .route("/v1/events", post(events::post_events::<L>))
        .route(
            "/v1/events:bulk",
            post(bulk::post_bulk::<L>).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/events:bulk/reports/{id}", get(bulk::get_report::<L>))
        .route("/v1/households/{id}", get(households::get_household::<L>))
        .route(
            "/v1/households/{id}/history",
            get(households::get_history::<L>),
        )
        .route(
            "/v1/persons/{id}/household",
            get(households::get_person_household::<L>),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<L>))
        .route("/v1/status", get(status::<L>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(dsr_schema_registry::api::router(registry))
}

async fn readyz<L: Log + 'static>(
    axum::extract::State(state): axum::extract::State<Arc<ApiState<L>>>,
) -> Response {
    if state
        .serving
        .caught_up
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        (StatusCode::OK, "ready").into_response()
    } else {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the serving store has not caught up with the household changelog yet; try again shortly",
        )
    }
}

async fn status<L: Log + 'static>(
    axum::extract::State(state): axum::extract::State<Arc<ApiState<L>>>,
) -> Response {
    let stages = (state.backlog)();
    let idle = stages.iter().all(|s| s.backlog == 0);
    Json(serde_json::json!({
        "idle": idle,
        "stages": stages,
        "serving": {
            "changelog_records_applied": state.serving.applied.load(std::sync::atomic::Ordering::Relaxed),
            "caught_up_once": state.serving.caught_up.load(std::sync::atomic::Ordering::Relaxed),
        },
    }))
    .into_response()
}

/// A JSON error body: `{"error": "..."}` with the status.
pub(crate) fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}
