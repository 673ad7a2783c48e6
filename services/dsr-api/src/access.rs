//! Access control on every route: who is asking (API key, access token or HTTP Basic), whether
//! their role may do what the route does, their rate limit, and the audit record.
//!
//! The route → action table ([`rule`]) is the one place that says what a route needs. A route
//! it does not know is refused (fail closed), and a test checks that every route in the
//! OpenAPI document has an entry. What the handlers still decide is what only they can see:
//! whether a household is inside the client's areas, which purpose the request names, and
//! whether each event is one the client may publish.

use crate::{problem, ApiState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use dsr_access::projection::Purpose;
use dsr_access::role::permits;
use dsr_access::{Action, Identity};
use dsr_audit::AuditEntry;
use std::sync::Arc;

/// The header naming the purpose of a read of personal data (one of the client's agreements).
pub const PURPOSE_HEADER: &str = "dsr-purpose";
/// The header carrying a detached JWS over the request body (clients that must sign).
pub const SIGNATURE_HEADER: &str = "dsr-signature";

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Anyone: health, readiness, the API description, public keys, the token endpoint
    /// (which authenticates by itself), and reading the schema registry (schemas are public
    /// contracts, no personal data).
    Public,
    /// An authenticated client whose role permits the action.
    Needs(Action),
}

/// The schema registry's route prefixes (its API is Confluent's, served on the same port).
const REGISTRY_PREFIXES: &[&str] = &[
    "/subjects",
    "/schemas",
    "/config",
    "/compatibility",
    "/mode",
];

/// What `method` on the route `path` (as routed, e.g. `/v1/households/{id}`) needs; `None`
/// for a route without a rule, which is then refused.
pub fn rule(method: &Method, path: &str) -> Option<Rule> {
    use Action::*;
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    Some(match path {
        "/healthz" | "/readyz" | "/openapi.json" | "/.well-known/jwks.json" if get => Rule::Public,
        "/oauth2/client/token" if post => Rule::Public,
        "/v1/events" | "/v1/events:bulk" if post => Rule::Needs(PublishEvents),
        "/v1/events:bulk/reports/{id}" if get => Rule::Needs(PublishEvents),
        "/v1/households/{id}" | "/v1/households/{id}/history" | "/v1/persons/{id}/household"
            if get =>
        {
            Rule::Needs(ReadHousehold)
        }
        "/v1/status" | "/metrics" | "/v1/programs" | "/v1/programs/{id}/delivery" if get => {
            Rule::Needs(ReadStatus)
        }
        "/v1/programs/{id}/changes"
        | "/v1/programs/{id}/dead-letters"
        | "/v1/programs/{id}/beneficiaries"
            if get =>
        {
            Rule::Needs(ReadProgramFeed)
        }
        "/v1/programs/{id}/replay" if post => Rule::Needs(ReadProgramFeed),
        "/v1/programs/{id}/webhook" if method == Method::PUT || method == Method::DELETE => {
            Rule::Needs(ManageDelivery)
        }
        "/v1/programs/{id}/webhook/rotate-secret" if post => Rule::Needs(ManageDelivery),
        "/v1/programs/{id}/rule-versions" | "/v1/programs/{id}/rule-versions/preview" if post => {
            Rule::Needs(ManageRules)
        }
        "/v1/audit" if get => Rule::Needs(ReadAudit),
        "/.well-known/locations.json" | "/dashboard" if get => Rule::Public,
        // Aggregates and rules, no personal data; the preview handler admits coordinators
        // and approvers only.
        "/v1/areas/{id}" | "/v1/shocks" | "/v1/scale-up/rules" | "/v1/scale-up/rules/{id}"
            if get =>
        {
            Rule::Needs(ReadStatus)
        }
        "/v1/scale-up/rules/{id}/preview" if post => Rule::Needs(ReadStatus),
        "/v1/scale-up/rules" if post => Rule::Needs(DraftScaleUp),
        "/v1/scale-up/rules/{id}" if method == Method::PUT => Rule::Needs(DraftScaleUp),
        "/v1/scale-up/rules/{id}/approve"
        | "/v1/scale-up/rules/{id}/arm"
        | "/v1/scale-up/rules/{id}/trigger"
        | "/v1/scale-up/rules/{id}/revoke"
            if post =>
        {
            Rule::Needs(ApproveScaleUp)
        }
        p if p.starts_with("/v1/admin/clients") || p.starts_with("/v1/admin/data-keys") => {
            Rule::Needs(ManageClients)
        }
        "/" if get => Rule::Public,
        p if REGISTRY_PREFIXES.iter().any(|r| p.starts_with(r)) => {
            // Looking a schema up (`POST /subjects/{s}`) and checking compatibility are reads.
            let read =
                get || (post && (p == "/subjects/{subject}" || p.starts_with("/compatibility/")));
            if read {
                Rule::Public
            } else {
                Rule::Needs(RegisterSchema)
            }
        }
        _ => return None,
    })
}

pub(crate) fn now_ms() -> i64 {
    crate::events::now().0.div_euclid(1000)
}

/// The middleware: authenticates, checks the role and the rate limit, and hands the
/// [`Identity`] to the handler.
pub(crate) async fn guard(
    State(state): State<Arc<ApiState>>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    let action = match rule(request.method(), path) {
        Some(Rule::Public) => return next.run(request).await,
        Some(Rule::Needs(action)) => action,
        None => {
            return problem(
                StatusCode::FORBIDDEN,
                format!(
                    "{} {path} has no access rule, so it is refused",
                    request.method()
                ),
            )
        }
    };
    let now = now_ms();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = match state.clients.authenticate(authorization, now) {
        Ok(identity) => identity,
        Err(e) => {
            let _ = audit(
                &state,
                None,
                action.as_str(),
                Vec::new(),
                None,
                format!("denied: {e}"),
            );
            let mut response = problem(StatusCode::UNAUTHORIZED, e.to_string());
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dsr\""),
            );
            return response;
        }
    };
    let client = &identity.client;
    if let Err(wait) = state
        .clients
        .limits
        .check(&client.id, client.requests_per_second)
    {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "client `{}` is over its rate limit of {} requests per second; retry after {seconds} s",
                client.id, client.requests_per_second
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    if !permits(client.role, action) {
        let reason = format!(
            "client `{}` is a {}; that role may not do {} ({} {path}); see docs/security.md",
            client.id,
            client.role,
            action.as_str(),
            request.method()
        );
        let _ = audit(
            &state,
            Some(&identity),
            action.as_str(),
            Vec::new(),
            None,
            format!("denied: {reason}"),
        );
        return problem(StatusCode::FORBIDDEN, reason);
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// The purpose a read names (the `Dsr-Purpose` header), resolved against the client's
/// agreements; otherwise the answer that says what is missing.
pub(crate) fn purpose(identity: &Identity, headers: &HeaderMap) -> Result<Purpose, Response> {
    let client = &identity.client;
    let Some(name) = headers.get(PURPOSE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!(
                "name the purpose of this read in the Dsr-Purpose header; client `{}` has agreements for: {}",
                client.id,
                list(&client.purposes())
            ),
        ));
    };
    client.purpose(name.trim()).ok_or_else(|| {
        problem(
            StatusCode::FORBIDDEN,
            format!(
                "client `{}` has no data-sharing agreement for purpose `{}`; its agreements are for: {}",
                client.id,
                name.trim(),
                list(&client.purposes())
            ),
        )
    })
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "nothing (ask an admin to register an agreement)".into()
    } else {
        items.join(", ")
    }
}

/// Appends an audit entry; `Err` is the answer to give instead of disclosing anything (an
/// access that cannot be recorded does not happen).
pub(crate) fn audit(
    state: &ApiState,
    identity: Option<&Identity>,
    action: &str,
    subjects: Vec<String>,
    purpose: Option<&Purpose>,
    outcome: impl Into<String>,
) -> Result<(), Response> {
    let entry = AuditEntry {
        who: identity.map_or_else(|| "anonymous".to_owned(), |i| i.client.id.clone()),
        role: identity.map_or_else(String::new, |i| i.client.role.to_string()),
        action: action.to_owned(),
        subjects,
        fields: purpose.map(Purpose::disclosed).unwrap_or_default(),
        purpose: purpose.map(|p| p.name.clone()),
        agreement: purpose.map(|p| p.agreement_id.clone()),
        outcome: outcome.into(),
    };
    state.audit.append(now_ms(), entry).map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "appending to the audit log failed");
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the access could not be recorded in the audit log, so it was not done; try again, and tell the operator",
        )
    })
}

/// Checks a must-sign client's detached signature over `body`.
pub(crate) fn check_signature(
    identity: &Identity,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    let client = &identity.client;
    if !client.must_sign {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(problem(
            StatusCode::UNAUTHORIZED,
            format!("client `{}` must sign its event batches: {why}", client.id),
        ))
    };
    let Some(jws) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return refuse(
            "send a detached JWS (EdDSA) over the body in the Dsr-Signature header".into(),
        );
    };
    let Some(key) = client
        .signing_key
        .as_deref()
        .and_then(dsr_access::token::public_key_from_hex)
    else {
        return refuse("it has no valid registered signing key; ask an admin".into());
    };
    match dsr_access::token::verify_detached(jws, body, &key) {
        Ok(()) => Ok(()),
        Err(why) => refuse(why),
    }
}

/// The problem answer for an access error from the client registry.
pub(crate) fn access_error(e: dsr_access::AccessError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %e, "client registry");
    }
    problem(status, e.to_string())
}
