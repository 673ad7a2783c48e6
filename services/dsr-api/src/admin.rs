//! Identities and accountability over HTTP: the OAuth2 token endpoint, the public keys of
//! tokens, client management for admins, and the audit log for auditors.

use crate::access::{access_error, audit, now_ms};
use crate::{json_body, problem, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::registry::client_view;
use dsr_access::{ClientSpec, Identity};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An OAuth2 access token (RFC 6749 §5.1).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenAnswer {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// OAuth2 client credentials: the client id and one of the client's API keys (as
/// `client_secret`, in the form body or HTTP Basic) for a short-lived Ed25519-signed JWT.
#[utoipa::path(post, path = "/oauth2/client/token", tag = "identity",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "grant_type=client_credentials&client_id=…&client_secret=… (or the client id and secret in HTTP Basic)"),
    responses(
        (status = 200, description = "A token", body = TokenAnswer),
        (status = 400, description = "Not a client-credentials request", body = crate::answers::Problem),
        (status = 401, description = "The client id or secret is wrong", body = crate::answers::Problem)
    ))]
pub async fn post_token(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request: TokenRequest = match serde_urlencoded_or_json(&headers, &body) {
        Ok(r) => r,
        Err(reason) => return problem(StatusCode::BAD_REQUEST, reason),
    };
    if let Some((user, secret)) = basic(&headers) {
        request.client_id.get_or_insert(user);
        request.client_secret.get_or_insert(secret);
    }
    if request.grant_type.as_deref() != Some("client_credentials") {
        return problem(
            StatusCode::BAD_REQUEST,
            "grant_type must be client_credentials (the only grant dsr issues)",
        );
    }
    let (Some(id), Some(secret)) = (request.client_id, request.client_secret) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "send client_id and client_secret (one of the client's API keys), in the form or in HTTP Basic",
        );
    };
    match state.clients.issue_token(&id, &secret, now_ms()) {
        Ok((access_token, expires_in)) => {
            let identity = state.clients.get(&id).map(|client| Identity {
                client,
                via: "api_key",
                key_id: None,
            });
            if let Err(r) = audit(
                &state,
                identity.as_ref(),
                "token.issue",
                Vec::new(),
                None,
                "allowed",
            ) {
                return r;
            }
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(TokenAnswer {
                    access_token,
                    token_type: "Bearer",
                    expires_in,
                }),
            )
                .into_response()
        }
        Err(e) => {
            let _ = audit(
                &state,
                None,
                "token.issue",
                Vec::new(),
                None,
                format!("denied for client `{id}`: {e}"),
            );
            access_error(e)
        }
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_owned(), secret.to_owned()))
}

fn serde_urlencoded_or_json(headers: &HeaderMap, body: &[u8]) -> Result<TokenRequest, String> {
    if crate::events::content_type(headers) == "application/json" {
        return serde_json::from_slice(body)
            .map_err(|e| format!("the body is not a token request: {e}"));
    }
    let mut request = TokenRequest {
        grant_type: None,
        client_id: None,
        client_secret: None,
    };
    for (key, value) in url::form_urlencoded::parse(body) {
        match key.as_ref() {
            "grant_type" => request.grant_type = Some(value.into_owned()),
            "client_id" => request.client_id = Some(value.into_owned()),
            "client_secret" => request.client_secret = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok(request)
}

/// The public keys that sign access tokens (JWKS, RFC 7517), for resource servers that check
/// dsr's tokens themselves.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "The key set", body = Object)))]
pub async fn get_jwks(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.clients.jwks()).into_response()
}

/// A client just created or given a new key: the key is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientWithKey {
    #[schema(value_type = Object)]
    pub client: serde_json::Value,
    /// The new API key. dsr keeps only its hash: store it now.
    pub api_key: String,
}

/// Registers a client (admin): its role, areas, event types, agreements; answers with its
/// first API key, shown once.
#[utoipa::path(post, path = "/v1/admin/clients", tag = "identity",
    request_body(content = Object, description = "A client: id, name, role, areas, event_types, source_names, program, agreements [{id, purpose, fields}], requests_per_second, must_sign, signing_key, key_days (see docs/security.md)"),
    responses(
        (status = 201, description = "Created, with its key", body = ClientWithKey),
        (status = 400, description = "Not a client specification", body = crate::answers::Problem),
        (status = 409, description = "A client with that id exists", body = crate::answers::Problem),
        (status = 422, description = "The specification is not valid for the role", body = crate::answers::Problem)
    ))]
pub async fn create_client(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    body: Bytes,
) -> Response {
    let spec: ClientSpec = match json_body(&body, "a client specification") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let id = spec.id.clone();
    admin_change(&state, &identity, "client.create", &id, |state| {
        state.clients.create(spec, now_ms())
    })
    .map(|(client, api_key)| {
        (
            StatusCode::CREATED,
            Json(ClientWithKey {
                client: client_view(&client),
                api_key,
            }),
        )
            .into_response()
    })
    .unwrap_or_else(|r| r)
}

/// Every client (admin), without key hashes.
#[utoipa::path(get, path = "/v1/admin/clients", tag = "identity",
    responses((status = 200, description = "The clients", body = Vec<Object>)))]
pub async fn list_clients(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
) -> Response {
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "client.list",
        Vec::new(),
        None,
        "allowed",
    ) {
        return r;
    }
    let clients: Vec<serde_json::Value> = state
        .clients
        .list()
        .iter()
        .map(|c| client_view(c))
        .collect();
    Json(clients).into_response()
}

#[derive(Deserialize, Default)]
struct RotateRequest {
    /// How long the client's current keys stay valid beside the new one.
    overlap_seconds: Option<i64>,
}

/// Gives a client a new key (admin); its current keys stay valid for `overlap_seconds`
/// (default 86400) so it can switch without downtime.
#[utoipa::path(post, path = "/v1/admin/clients/{id}/rotate", tag = "identity",
    params(("id" = String, Path, description = "Client id")),
    request_body(content = Object, description = "{\"overlap_seconds\": 86400} (optional)"),
    responses(
        (status = 200, description = "The new key", body = ClientWithKey),
        (status = 400, description = "Not a rotation request", body = crate::answers::Problem),
        (status = 404, description = "No such client", body = crate::answers::Problem)
    ))]
pub async fn rotate_client(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: RotateRequest = if body.is_empty() {
        RotateRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a rotation request: {e}"),
                )
            }
        }
    };
    let overlap_ms = request.overlap_seconds.unwrap_or(86_400).max(0) * 1000;
    admin_change(&state, &identity, "client.rotate", &id, |state| {
        state.clients.rotate(&id, now_ms(), overlap_ms)
    })
    .map(|(client, api_key)| {
        Json(ClientWithKey {
            client: client_view(&client),
            api_key,
        })
        .into_response()
    })
    .unwrap_or_else(|r| r)
}

#[derive(Deserialize, Default)]
struct RevokeRequest {
    /// One key; all of the client's keys when absent.
    key_id: Option<String>,
}

/// Revokes one of a client's keys, or all of them (admin). Takes effect at once, also for the
/// client's access tokens when no live key is left.
#[utoipa::path(post, path = "/v1/admin/clients/{id}/revoke", tag = "identity",
    params(("id" = String, Path, description = "Client id")),
    request_body(content = Object, description = "{\"key_id\": \"…\"} (optional: all keys when absent)"),
    responses(
        (status = 200, description = "The client now", body = Object),
        (status = 400, description = "Not a revocation request", body = crate::answers::Problem),
        (status = 404, description = "No such client or key", body = crate::answers::Problem),
        (status = 409, description = "It is the last admin", body = crate::answers::Problem)
    ))]
pub async fn revoke_client(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: RevokeRequest = if body.is_empty() {
        RevokeRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a revocation request: {e}"),
                )
            }
        }
    };
    admin_change(&state, &identity, "client.revoke", &id, |state| {
        state
            .clients
            .revoke(&id, request.key_id.as_deref(), now_ms())
    })
    .map(|client| Json(client_view(&client)).into_response())
    .unwrap_or_else(|r| r)
}

/// Runs an administrative change and audits it with its outcome.
fn admin_change<T>(
    state: &ApiState,
    identity: &Identity,
    action: &str,
    subject: &str,
    change: impl FnOnce(&ApiState) -> Result<T, dsr_access::AccessError>,
) -> Result<T, Response> {
    let result = change(state);
    let outcome = match &result {
        Ok(_) => "allowed".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    audit(
        state,
        Some(identity),
        action,
        vec![subject.to_owned()],
        None,
        outcome,
    )?;
    result.map_err(access_error)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries by this client.
    who: Option<String>,
    /// Only this action (e.g. `household.read`).
    action: Option<String>,
    /// Only entries about this household or person id (matched through its pseudonym: the
    /// log keeps no ids of people), client id or `data-key:N`.
    subject: Option<String>,
    /// From this time (ms since the epoch).
    from_ms: Option<i64>,
    /// Up to this time (ms since the epoch).
    to_ms: Option<i64>,
    /// Entries after this sequence number (for paging).
    after_seq: Option<u64>,
    /// At most this many entries (default 1000, at most 10000).
    limit: Option<usize>,
}

/// Audit entries (auditors): who did what to whom, for which purpose, with what outcome. The
/// entries hold ids and field names, never personal values.
#[utoipa::path(get, path = "/v1/audit", tag = "identity",
    params(AuditQuery),
    responses((status = 200, description = "Entries, oldest first", body = Vec<Object>)))]
pub async fn get_audit(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Query(query): Query<AuditQuery>,
) -> Response {
    // Personal subjects are stored as keyed pseudonyms; client ids and key ids are not.
    let subject = query.subject.map(|s| {
        let administrative =
            s.starts_with("ps:") || s.starts_with("data-key:") || state.clients.get(&s).is_some();
        if administrative {
            s
        } else {
            state.keyring().pseudonym_text("subject", &s)
        }
    });
    let filter = dsr_audit::Filter {
        who: query.who,
        action: query.action,
        subject,
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        after_seq: query.after_seq,
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "audit.read",
        Vec::new(),
        None,
        "allowed",
    ) {
        return r;
    }
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let audit_log = Arc::clone(&state.audit);
    match tokio::task::spawn_blocking(move || audit_log.query(&filter, limit)).await {
        Ok(Ok(entries)) => Json(entries).into_response(),
        Ok(Err(e)) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the audit log: {e}"),
        ),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the audit log: {e}"),
        ),
    }
}
