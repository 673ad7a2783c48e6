//! The Confluent Schema Registry REST API, over a [`Registry`].
//!
//! [`router`] builds the axum [`Router`] (for `dsr up` to mount next to its other routes);
//! [`serve`] runs it on a listener. Responses are `application/vnd.schemaregistry.v1+json`
//! (`application/json` when that is all a client accepts); request bodies may be sent as
//! that, as `application/json` or as `application/octet-stream`, up to [`BODY_LIMIT`].
//! Every error, including a route or method that does not exist, a body too large or not
//! JSON, is Confluent's `{"error_code": ..., "message": ...}`.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /` | `{}` |
//! | `GET /subjects` | subject names (`?deleted=true` adds soft-deleted ones) |
//! | `POST /subjects/{subject}` | is this schema registered here: `{subject, id, version, schema}` |
//! | `DELETE /subjects/{subject}` | soft delete (`?permanent=true`: for good); the versions deleted |
//! | `GET /subjects/{subject}/versions` | version numbers |
//! | `POST /subjects/{subject}/versions` | register: `{"id": N}` |
//! | `GET /subjects/{subject}/versions/{version}` | `{subject, id, version, schema}` (`latest` or a number) |
//! | `GET /subjects/{subject}/versions/{version}/schema` | the schema itself |
//! | `GET /subjects/{subject}/versions/{version}/referencedby` | ids referring to it: always `[]` |
//! | `DELETE /subjects/{subject}/versions/{version}` | soft delete (`?permanent=true`); the version |
//! | `GET /schemas/ids/{id}` | `{"schema": "..."}` |
//! | `GET /schemas/ids/{id}/schema` | the schema itself |
//! | `GET /schemas/ids/{id}/versions` | `[{subject, version}]` |
//! | `GET /schemas/ids/{id}/subjects` | subject names |
//! | `GET /schemas/types` | `["AVRO"]` |
//! | `POST /compatibility/subjects/{subject}/versions[/{version}]` | `{"is_compatible": bool}` (`?verbose=true` adds `messages`) |
//! | `GET`, `PUT`, `DELETE /config[/{subject}]` | `{"compatibilityLevel": ...}`; PUT takes and returns `{"compatibility": ...}` |
//! | `GET /mode` | `{"mode": "READWRITE"}` |
//!
//! Requests are traced (`http` span: method, route, status, latency) at info level without
//! schema contents; error messages are logged at debug level only, as they may quote schemas.

use crate::compat::CompatibilityLevel;
use crate::error::{status_of, ErrorBody, RegistryError};
use crate::registry::{Registry, SchemaId, SchemaInput, VersionSpec};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tracing::Instrument;

/// The media type of every response (and the preferred one of requests).
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The largest request body accepted: 1 MiB.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Request media types accepted besides [`CONTENT_TYPE`].
const ACCEPTED_TYPES: [&str; 4] = [
    CONTENT_TYPE,
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

type Shared = State<Arc<Registry>>;
type Params = Query<HashMap<String, String>>;

/// The API's routes over `registry`, ready to serve or to nest in a bigger router.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route("/schemas/ids/{id}/subjects", get(schema_subjects))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_with_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_with_version),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(mode))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(observe))
        .with_state(registry)
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) -> io::Result<()> {
    serve_with_shutdown(listener, registry, std::future::pending()).await
}

/// Serves the API on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns. The registry (and its store) is released once this returns and no
/// other handle to it is left.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "schema registry API listening");
    }
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(shutdown)
        .await
}

// ---------------------------------------------------------------------------------------
// Errors and responses.

/// An error answer: a registry error, or something wrong with the request itself.
#[derive(Debug)]
pub enum ApiError {
    Registry(RegistryError),
    Request { error_code: u32, message: String },
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::Registry(e)
    }
}

impl ApiError {
    fn request(error_code: u32, message: impl Into<String>) -> Self {
        ApiError::Request {
            error_code,
            message: message.into(),
        }
    }

    fn body(&self) -> ErrorBody {
        match self {
            ApiError::Registry(e) => e.body(),
            ApiError::Request {
                error_code,
                message,
            } => ErrorBody {
                error_code: *error_code,
                message: message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.body())
    }
}

fn error_response(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(status_of(body.error_code))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(&body);
    *response.status_mut() = status;
    response
}

fn json_response<T: Serialize + ?Sized>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => error_response(ErrorBody {
            error_code: 50001,
            message: format!("cannot write the response: {e}"),
        }),
    }
}

/// A schema as the response body itself (the `/schema` endpoints).
fn raw_schema_response(schema: &str) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], schema.to_string()).into_response()
}

type ApiResult = Result<Response, ApiError>;

/// Runs a registry call off the async threads: writes wait for the disk.
async fn run<T, F>(registry: Arc<Registry>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
{
    // The registry's own events belong to the request's span.
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(|| f(&registry))).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::request(
            50001,
            format!("the registry failed while answering: {e}"),
        )),
    }
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn parse_id(id: &str) -> Result<SchemaId, ApiError> {
    id.parse::<SchemaId>()
        .map_err(|_| RegistryError::SchemaIdNotFound(id.to_string()).into())
}

fn parse_version(version: &str) -> Result<VersionSpec, ApiError> {
    version.parse::<VersionSpec>().map_err(ApiError::from)
}

/// A JSON request body: media type checked, size limited, malformed JSON a 422.
struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let essence = ct
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if !ACCEPTED_TYPES.contains(&essence.as_str()) {
                return Err(ApiError::request(
                    415,
                    format!(
                        "Unsupported Media Type {essence:?}: send the body as {}",
                        ACCEPTED_TYPES.join(", ")
                    ),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::request(
                    u32::from(e.status().as_u16()),
                    format!("cannot read the request body: {}", e.body_text()),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::request(
                422,
                "Unprocessable Entity: the request has no body; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::request(
                422,
                format!("Unprocessable Entity: the body is not the JSON expected: {e}"),
            )
        })
    }
}

fn too_large() -> ApiError {
    ApiError::request(
        413,
        format!(
            "Request Entity Too Large: the body is larger than the limit of {} KiB",
            BODY_LIMIT / 1024
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Handlers.

async fn root() -> Response {
    json_response(&json!({}))
}

async fn not_found(req: Request) -> Response {
    ApiError::request(
        404,
        format!(
            "HTTP 404 Not Found: no route {} {}",
            req.method(),
            req.uri().path()
        ),
    )
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::request(
        405,
        format!(
            "HTTP 405 Method Not Allowed: {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
    .into_response()
}

async fn list_subjects(State(r): Shared, Query(q): Params) -> ApiResult {
    let deleted = flag(&q, "deleted");
    let subjects = run(r, move |r| Ok(r.subjects(deleted))).await?;
    Ok(json_response(&subjects))
}

async fn list_versions(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let deleted = flag(&q, "deleted");
    let versions = run(r, move |r| r.versions(&subject, deleted)).await?;
    Ok(json_response(&versions))
}

async fn register(
    State(r): Shared,
    Path(subject): Path<String>,
    JsonBody(input): JsonBody<SchemaInput>,
) -> ApiResult {
    let id = run(r, move |r| r.register(&subject, &input)).await?;
    Ok(json_response(&json!({ "id": id })))
}

async fn lookup(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    JsonBody(input): JsonBody<SchemaInput>,
) -> ApiResult {
    let deleted = flag(&q, "deleted");
    let found = run(r, move |r| r.lookup(&subject, &input, deleted)).await?;
    Ok(json_response(&found))
}

async fn get_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let version = parse_version(&version)?;
    let deleted = flag(&q, "deleted");
    let found = run(r, move |r| r.version(&subject, version, deleted)).await?;
    Ok(json_response(&found))
}

async fn get_version_schema(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let version = parse_version(&version)?;
    let deleted = flag(&q, "deleted");
    let found = run(r, move |r| r.version(&subject, version, deleted)).await?;
    Ok(raw_schema_response(&found.schema))
}

async fn referenced_by(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let version = parse_version(&version)?;
    run(r, move |r| r.version(&subject, version, false)).await?;
    Ok(json_response(&Vec::<SchemaId>::new()))
}

async fn delete_subject(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let permanent = flag(&q, "permanent");
    let versions = run(r, move |r| r.delete_subject(&subject, permanent)).await?;
    Ok(json_response(&versions))
}

async fn delete_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let version = parse_version(&version)?;
    let permanent = flag(&q, "permanent");
    let deleted = run(r, move |r| r.delete_version(&subject, version, permanent)).await?;
    Ok(json_response(&deleted))
}

async fn schema_types(State(r): Shared) -> Response {
    json_response(&r.schema_types())
}

async fn schema_by_id(State(r): Shared, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let schema = run(r, move |r| r.schema(id)).await?;
    Ok(json_response(&json!({ "schema": &*schema })))
}

async fn raw_schema_by_id(State(r): Shared, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let schema = run(r, move |r| r.schema(id)).await?;
    Ok(raw_schema_response(&schema))
}

async fn schema_versions(State(r): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    let id = parse_id(&id)?;
    let deleted = flag(&q, "deleted");
    let versions = run(r, move |r| r.schema_versions(id, deleted)).await?;
    Ok(json_response(&versions))
}

async fn schema_subjects(State(r): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    let id = parse_id(&id)?;
    let deleted = flag(&q, "deleted");
    let subjects = run(r, move |r| r.schema_subjects(id, deleted)).await?;
    Ok(json_response(&subjects))
}

async fn compatibility_with_all(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    JsonBody(input): JsonBody<SchemaInput>,
) -> ApiResult {
    compatibility(r, subject, None, &q, input).await
}

async fn compatibility_with_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
    JsonBody(input): JsonBody<SchemaInput>,
) -> ApiResult {
    let version = parse_version(&version)?;
    compatibility(r, subject, Some(version), &q, input).await
}

async fn compatibility(
    r: Arc<Registry>,
    subject: String,
    version: Option<VersionSpec>,
    q: &HashMap<String, String>,
    input: SchemaInput,
) -> ApiResult {
    let verbose = flag(q, "verbose");
    let messages = run(r, move |r| r.check_compatibility(&subject, version, &input)).await?;
    let is_compatible = messages.is_empty();
    Ok(if verbose {
        json_response(&json!({ "is_compatible": is_compatible, "messages": messages }))
    } else {
        json_response(&json!({ "is_compatible": is_compatible }))
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigAnswer {
    compatibility_level: CompatibilityLevel,
}

#[derive(Deserialize)]
struct ConfigUpdate {
    compatibility: Option<String>,
}

async fn get_global_config(State(r): Shared) -> ApiResult {
    let level = run(r, |r| r.config(None, true)).await?;
    Ok(json_response(&ConfigAnswer {
        compatibility_level: level,
    }))
}

async fn get_subject_config(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let default_to_global = flag(&q, "defaultToGlobal");
    let level = run(r, move |r| r.config(Some(&subject), default_to_global)).await?;
    Ok(json_response(&ConfigAnswer {
        compatibility_level: level,
    }))
}

async fn put_global_config(
    State(r): Shared,
    JsonBody(update): JsonBody<ConfigUpdate>,
) -> ApiResult {
    put_config(r, None, update).await
}

async fn put_subject_config(
    State(r): Shared,
    Path(subject): Path<String>,
    JsonBody(update): JsonBody<ConfigUpdate>,
) -> ApiResult {
    put_config(r, Some(subject), update).await
}

async fn put_config(r: Arc<Registry>, subject: Option<String>, update: ConfigUpdate) -> ApiResult {
    let given = update.compatibility.unwrap_or_default();
    let level: CompatibilityLevel = given
        .parse()
        .map_err(RegistryError::InvalidCompatibilityLevel)?;
    run(r, move |r| r.set_config(subject.as_deref(), level)).await?;
    Ok(json_response(&json!({ "compatibility": level })))
}

async fn delete_global_config(State(r): Shared) -> ApiResult {
    let level = run(r, |r| r.delete_config(None)).await?;
    Ok(json_response(&ConfigAnswer {
        compatibility_level: level,
    }))
}

async fn delete_subject_config(State(r): Shared, Path(subject): Path<String>) -> ApiResult {
    let level = run(r, move |r| r.delete_config(Some(&subject))).await?;
    Ok(json_response(&ConfigAnswer {
        compatibility_level: level,
    }))
}

async fn mode() -> Response {
    json_response(&json!({ "mode": "READWRITE" }))
}

// ---------------------------------------------------------------------------------------
// Middleware.

/// Traces each request and gives every answer Confluent's shape: errors that axum itself
/// produced (a path or query it could not parse, a body over the limit) become
/// `{"error_code", "message"}`, and a client that accepts only `application/json` gets that
/// media type.
async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "(no route)".to_string());
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route,
        path = %req.uri().path(),
        status = tracing::field::Empty,
    );
    let json_only = accepts_only_json(req.headers());
    async move {
        let start = Instant::now();
        let response = confluent_shape(next.run(req).await).await;
        let mut response = response;
        if json_only && is_ours(response.headers()) {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        tracing::Span::current().record("status", response.status().as_u16());
        let latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        if response.status().is_server_error() {
            tracing::error!(latency_us, "request failed");
        } else {
            tracing::info!(latency_us, "request");
        }
        response
    }
    .instrument(span)
    .await
}

fn is_ours(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes())
}

fn accepts_only_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    accept.contains("application/json")
        && !accept.contains("application/vnd.schemaregistry")
        && !accept.contains("*/*")
}

/// Rewrites an error answer that is not yet Confluent-shaped; logs error messages at debug.
async fn confluent_shape(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if is_ours(response.headers()) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, BODY_LIMIT)
                .await
                .unwrap_or_default();
            tracing::debug!(message = %String::from_utf8_lossy(&bytes), "error answer");
            return Response::from_parts(parts, Body::from(bytes));
        }
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large().into_response();
    }
    let text = axum::body::to_bytes(response.into_body(), BODY_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = if text.is_empty() {
        format!("HTTP {} {reason}", status.as_u16())
    } else {
        format!("HTTP {} {reason}: {text}", status.as_u16())
    };
    tracing::debug!(%message, "error answer");
    error_response(ErrorBody {
        error_code: u32::from(status.as_u16()),
        message,
    })
}
