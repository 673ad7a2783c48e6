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
//! - identities and accountability ([`access`], [`admin`]): every route but health, readiness,
//!   the API description, public keys, the token endpoint and schema reads needs an API key or
//!   an access token (`POST /oauth2/client/token`, keys at `/.well-known/jwks.json`); the role
//!   matrix of `dsr_access` decides, reads of personal data name a purpose (`Dsr-Purpose`) and
//!   are projected to its fields, and every such access and every admin action
//!   (`/v1/admin/clients…`) is in the audit log (`GET /v1/audit` for auditors).
//! - `GET /openapi.json`: the OpenAPI 3.1 document of all of the above, generated from the
//!   handlers' annotations and the answer types ([`answers`]) as the router is built, so it
//!   cannot list a route that is not served or miss one that is.
//!
//! Personal data is never logged: handlers log ids of requests and counts only.

// Checks return the answer to give instead (`Result<_, Response>`), once per request: the
// size of that error is irrelevant next to the request itself.
#![allow(clippy::result_large_err)]

pub mod access;
mod admin;
pub mod answers;
pub mod bulk;
pub mod data_keys;
mod events;
mod households;
mod metrics;
mod programs;
mod rule_versions;
mod scale_up;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use dsr_core::PmtModel;
use dsr_pipeline::codec::WireCodec;
use dsr_serving::{Progress, ServingStore};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Requests above this many bytes get `413` (bulk files belong to a bulk endpoint).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub use dsr_log::EventSink;

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
    /// The registered clients: who may call, with which role, areas and purposes.
    pub clients: Arc<dsr_access::ClientRegistry>,
    /// Where every access to personal data and every administrative action is recorded.
    pub audit: Arc<dsr_audit::AuditLog>,
    /// The data keys that seal personal data at rest, and their rotation.
    pub data_keys: Arc<data_keys::DataKeys>,
    /// The programs the processor evaluates, at their latest activated rule versions.
    pub programs: std::sync::RwLock<Vec<dsr_core::eligibility::Program>>,
    /// The last previewed draft of a new rule version, per program: activation activates
    /// exactly what was previewed.
    pub rule_drafts:
        std::sync::Mutex<std::collections::HashMap<String, dsr_core::eligibility::ProgramFile>>,
    /// `dsr.household-events` and `dsr.program-rules`.
    pub topics: dsr_pipeline::runner::Topics,
    /// Their webhooks, dead letters, delivery counters and pull feed.
    pub delivery: Arc<dsr_delivery::Delivery>,
    /// Shock-responsive scale-up and the geographic master list (`None` without a master
    /// list: those routes answer 503 saying how to load one).
    pub scale_up: Option<Arc<dsr_scale_up::ScaleUp>>,
}

impl ApiState {
    /// The keyring that seals personal data at rest (also pseudonymizes audit subjects).
    pub fn keyring(&self) -> &dsr_crypto::Keyring {
        &self.data_keys.keyring
    }
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
        (name = "operations", description = "Health, readiness and the pipeline's backlog"),
        (name = "identity", description = "Access tokens, public keys, clients and the audit log"),
        (name = "programs", description = "Programs, their webhooks, pull feed, dead letters and replay"),
        (name = "scale-up", description = "The geographic master list, shocks, scale-up rules (draft, preview, approve, arm, trigger, revoke) and the coordinator dashboard")
    ),
    security(("bearer" = []), ("basic" = []))
)]
struct ApiDoc;

/// Declares how clients authenticate: a bearer API key or access token, or HTTP Basic with
/// the client id and an API key (for stock Confluent clients of the schema registry).
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        // What the access guard may answer, on every operation it guards; public operations
        // say they need no credentials. Both come from the one route → rule table.
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (axum::http::Method::GET, &mut item.get),
                (axum::http::Method::POST, &mut item.post),
                (axum::http::Method::PUT, &mut item.put),
                (axum::http::Method::DELETE, &mut item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let scale_up = operation
                    .tags
                    .as_ref()
                    .is_some_and(|tags| tags.iter().any(|t| t == "scale-up"));
                if scale_up && path.starts_with("/v1/") {
                    operation
                        .responses
                        .responses
                        .entry("503".into())
                        .or_insert_with(|| problem_response(scale_up::UNAVAILABLE));
                }
                match access::rule(&method, path) {
                    Some(access::Rule::Public) => {
                        operation.security = Some(vec![
                            utoipa::openapi::security::SecurityRequirement::default(),
                        ]);
                    }
                    _ => {
                        for (status, description) in [
                            ("401", "No credentials, or not valid ones"),
                            (
                                "403",
                                "The client's role, areas or agreements do not allow this",
                            ),
                            ("429", "Over the client's rate limit; see Retry-After"),
                        ] {
                            operation
                                .responses
                                .responses
                                .entry(status.into())
                                .or_insert_with(|| {
                                    utoipa::openapi::RefOr::T(
                                        utoipa::openapi::ResponseBuilder::new()
                                            .description(description)
                                            .build(),
                                    )
                                });
                        }
                    }
                }
            }
        }
    }
}

/// Every route of the API over `state` with its OpenAPI document (served at
/// `/openapi.json`), merged with the schema registry's routes.
pub fn router(state: Arc<ApiState>, registry: Arc<dsr_schema_registry::Registry>) -> Router {
    let (router, document) = documented_router(Arc::clone(&state));
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
        .route_layer(axum::middleware::from_fn_with_state(state, access::guard))
}

/// The API's own routes and the document generated from them, in one pass.
fn documented_router(state: Arc<ApiState>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut document) = api_routes().with_state(state).split_for_parts();
    utoipa::Modify::modify(&SecuritySchemes, &mut document);
    (router, document)
}

/// The OpenAPI document of the API, as `/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut document = api_routes().get_openapi().clone();
    utoipa::Modify::modify(&SecuritySchemes, &mut document);
    document
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
        .routes(routes!(metrics::metrics))
        .routes(routes!(admin::post_token))
        .routes(routes!(admin::get_jwks))
        .routes(routes!(admin::create_client, admin::list_clients))
        .routes(routes!(admin::rotate_client))
        .routes(routes!(admin::revoke_client))
        .routes(routes!(admin::get_audit))
        .routes(routes!(data_keys::get_data_keys))
        .routes(routes!(data_keys::rotate_data_key))
        .routes(routes!(data_keys::retire_data_key))
        .routes(routes!(programs::list_programs))
        .routes(routes!(programs::get_delivery))
        .routes(routes!(programs::put_webhook, programs::delete_webhook))
        .routes(routes!(programs::rotate_secret))
        .routes(routes!(rule_versions::preview_rule_version))
        .routes(routes!(rule_versions::activate_rule_version))
        .routes(routes!(programs::get_changes))
        .routes(routes!(programs::get_dead_letters))
        .routes(routes!(programs::post_replay))
        .routes(routes!(programs::get_beneficiaries))
        .routes(routes!(scale_up::locations))
        .routes(routes!(scale_up::get_area))
        .routes(routes!(scale_up::list_shocks))
        .routes(routes!(scale_up::list_rules, scale_up::create_rule))
        .routes(routes!(scale_up::get_rule, scale_up::edit_rule))
        .routes(routes!(scale_up::preview_rule))
        .routes(routes!(scale_up::approve_rule))
        .routes(routes!(scale_up::arm_rule))
        .routes(routes!(scale_up::trigger_rule))
        .routes(routes!(scale_up::revoke_rule))
        .routes(routes!(scale_up::dashboard))
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

/// The request body as a `T`, or a 400 saying it is not `what` and why.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            format!("the body is not {what}: {e}"),
        )
    })
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

/// A response whose body is a [`answers::Problem`], as `body = crate::answers::Problem` in an
/// operation's annotation would document it.
fn problem_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scale_up_operation_documents_its_503_as_an_annotation_would() {
        let doc = serde_json::to_value(openapi_document()).expect("the document is JSON");
        // `/v1/areas/{id}` annotates its 404 with `body = Problem`: the 503 added in one
        // place must look the same but for its description.
        let responses = &doc["paths"]["/v1/areas/{id}"]["get"]["responses"];
        let mut annotated = responses["404"].clone();
        annotated["description"] = serde_json::json!(scale_up::UNAVAILABLE);
        assert_eq!(responses["503"], annotated);
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                let scale_up = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "scale-up"));
                if scale_up && path.starts_with("/v1/") {
                    assert!(
                        op["responses"]["503"].is_object(),
                        "{method} {path} documents no 503"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 11, "the scale-up operations under /v1/");
    }
}
