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
//! - `GET /openapi.json`: the OpenAPI 3.1 document of all of the above, generated from the
//!   handlers' annotations and the answer types ([`answers`]) as the router is built, so it
//!   cannot list a route that is not served or miss one that is.
//!
//! Personal data is never logged: handlers log ids of requests and counts only.

pub mod answers;
mod bulk;
mod events;
mod households;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use dsr_core::PmtModel;
use dsr_log::{Log, LogError, Record};
use dsr_pipeline::codec::WireCodec;
use dsr_serving::{Progress, ServingStore};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Requests above this many bytes get `413` (bulk files belong to a bulk endpoint).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Where the API appends what it accepts: the one thing it needs of the event log, so the
/// handlers do not depend on which log (embedded or Kafka) the deployment runs.
pub trait EventSink: Send + Sync {
    /// Appends `records` to `topic`; resolves once they are durable.
    fn append<'a>(
        &'a self,
        topic: &'a str,
        records: Vec<Record>,
    ) -> Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'a>>;
}

impl<L: Log + 'static> EventSink for L {
    fn append<'a>(
        &'a self,
        topic: &'a str,
        records: Vec<Record>,
    ) -> Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'a>> {
        Box::pin(async move { Log::append(self, topic, records).await.map(|_| ()) })
    }
}

/// What the handlers share.
pub struct ApiState {
    pub log: Arc<dyn EventSink>,
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
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StageBacklog {
    pub stage: &'static str,
    pub backlog: u64,
}

/// Reports every stage's backlog when called.
pub type Backlog = Arc<dyn Fn() -> Vec<StageBacklog> + Send + Sync>;

impl ApiState {
    /// True when every stage has processed everything written so far: what the serving store
    /// shows then is all the registry knows.
    pub fn idle(&self) -> bool {
        (self.backlog)().iter().all(|s| s.backlog == 0)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dsr",
        description = "The HTTP API of dsr, the dynamic social registry (`dsr up`): life events in, households out. The Confluent Schema Registry API served beside it (`/subjects`, `/schemas`, `/config`, `/compatibility`) follows Confluent's own documentation and is not repeated here."
    ),
    tags(
        (name = "events", description = "Life events from systems that cannot speak Kafka"),
        (name = "households", description = "Households, their need scores and program statuses, from the serving store"),
        (name = "operations", description = "Health, readiness and the pipeline's backlog")
    )
)]
struct ApiDoc;

/// Every route of the API over `state` with its OpenAPI document (served at
/// `/openapi.json`), merged with the schema registry's routes.
pub fn router(state: Arc<ApiState>, registry: Arc<dsr_schema_registry::Registry>) -> Router {
    let (router, document) = documented_router(state);
    let document = Arc::new(document);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .merge(dsr_schema_registry::api::router(registry))
}

/// The API's own routes and the document generated from them, in one pass.
fn documented_router(state: Arc<ApiState>) -> (Router, utoipa::openapi::OpenApi) {
    api_routes().with_state(state).split_for_parts()
}

/// The OpenAPI document of the API, as `/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_routes().get_openapi().clone()
}

/// Each route with its documentation: a route is added only together with its operation.
fn api_routes() -> OpenApiRouter<Arc<ApiState>> {
    let (schemas, paths, bulk) = routes!(bulk::post_bulk);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(events::post_events))
        .routes((
            schemas,
            paths,
            bulk.layer(axum::extract::DefaultBodyLimit::disable()),
        ))
        .routes(routes!(bulk::get_report))
        .routes(routes!(households::get_household))
        .routes(routes!(households::get_history))
        .routes(routes!(households::get_person_household))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(status))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Whether the serving store has caught up with the household changelog once since start.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "The serving store has not caught up yet", body = answers::Problem)
    ))]
async fn readyz(axum::extract::State(state): axum::extract::State<Arc<ApiState>>) -> Response {
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

/// Each stage's backlog and whether the registry is idle (everything written so far is served).
#[utoipa::path(get, path = "/v1/status", tag = "operations",
    responses((status = 200, description = "The pipeline's backlog", body = answers::Status)))]
async fn status(axum::extract::State(state): axum::extract::State<Arc<ApiState>>) -> Response {
    let stages = (state.backlog)();
    let idle = stages.iter().all(|s| s.backlog == 0);
    Json(answers::Status {
        idle,
        stages,
        serving: answers::Serving {
            changelog_records_applied: state
                .serving
                .applied
                .load(std::sync::atomic::Ordering::Relaxed),
            caught_up_once: state
                .serving
                .caught_up
                .load(std::sync::atomic::Ordering::Relaxed),
        },
    })
    .into_response()
}

/// A JSON error body: `{"error": "..."}` with the status.
pub(crate) fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(answers::Problem {
            error: message.into(),
        }),
    )
        .into_response()
}
