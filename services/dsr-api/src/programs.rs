//! Programs over HTTP: what each program is, how its changes are delivered, and the channels a
//! program uses itself — the pull feed for programs behind firewalls, its dead letters, and
//! replay to its webhook. Admins register webhooks (a target in a private network needs their
//! explicit permission) and rotate signing secrets; the secret is shown once.
//!
//! A program client reads its own program only. Reads of changes and dead letters disclose
//! household ids and are audited (subjects as pseudonyms, like household reads).

use crate::access::{audit, now_ms};
use crate::{json_body, problem, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::Identity;
use dsr_delivery::service::DeliveryError;
use dsr_delivery::subscriptions::{SubscriptionError, WebhookView};
use dsr_delivery::{ReplayRequest, WebhookSpec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A program as the registry runs it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProgramView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub purpose: String,
    pub data_sharing_agreement: String,
    pub rule_version: u32,
    /// The eligibility rule (CEL).
    pub rule: String,
    /// The benefit formula (CEL).
    pub benefit: String,
    pub fields_allowed: Vec<String>,
    pub area_scope: Option<String>,
    /// The Kafka topic of its changes (Avro, Confluent wire format, key household id).
    pub topic: String,
    /// Its webhook, if it has one (no secrets).
    #[schema(value_type = Option<Object>)]
    pub webhook: Option<WebhookView>,
}

/// A webhook with its new signing secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookWithSecret {
    #[schema(value_type = Object)]
    pub webhook: WebhookView,
    /// `whsec_…`: give it to the receiver; dsr keeps it sealed and never shows it again.
    pub secret: Option<String>,
}

/// How long the old secret stays valid after a rotation.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    overlap_seconds: Option<u64>,
}

/// The pull feed's parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The `next` cursor of the previous page; omitted: from the first change kept.
    after: Option<String>,
    /// At most this many changes [default 500, at most 10000].
    limit: Option<usize>,
    /// Seconds to wait for a change when there is none yet (long poll) [default 0, at most 30].
    wait: Option<u64>,
}

/// How many dead letters to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Limit {
    /// [default 100, at most 10000]
    limit: Option<usize>,
}

fn delivery_error(e: DeliveryError) -> Response {
    let status = match &e {
        DeliveryError::UnknownProgram(_) => StatusCode::NOT_FOUND,
        DeliveryError::BadCursor(_) | DeliveryError::BadReplay(_) => StatusCode::BAD_REQUEST,
        DeliveryError::Subscription(SubscriptionError::NoWebhook(_)) => StatusCode::CONFLICT,
        DeliveryError::Subscription(SubscriptionError::Target(_))
        | DeliveryError::Subscription(SubscriptionError::Invalid(_)) => StatusCode::BAD_REQUEST,
        _ => {
            tracing::error!(error = %e, "delivery failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    problem(status, e.to_string())
}

/// A program client may act for its own program only.
fn own_program(identity: &Identity, program: &str) -> Result<(), Response> {
    match identity.client.program.as_deref() {
        Some(own) if own == program => Ok(()),
        own => Err(problem(
            StatusCode::FORBIDDEN,
            format!(
                "client `{}` reads for program `{}`, not `{program}`",
                identity.client.id,
                own.unwrap_or("(none)")
            ),
        )),
    }
}

pub(crate) fn known(state: &ApiState, program: &str) -> Result<(), Response> {
    state
        .delivery
        .program(program)
        .map(|_| ())
        .map_err(delivery_error)
}

/// Every program: its rule, purpose, allowed fields, topic and webhook.
#[utoipa::path(get, path = "/v1/programs", tag = "programs",
    responses((status = 200, description = "`{\"programs\": [...]}`", body = Object)))]
pub async fn list_programs(State(state): State<Arc<ApiState>>) -> Response {
    let now = now_ms();
    let views: Vec<ProgramView> = state
        .programs
        .read()
        .expect("programs lock")
        .iter()
        .map(|p| ProgramView {
            id: p.id.to_string(),
            name: p.name.clone(),
            owner: p.owner.clone(),
            purpose: p.purpose.clone(),
            data_sharing_agreement: p.data_sharing_agreement.clone(),
            rule_version: p.rule_version,
            rule: p.rule.source.clone(),
            benefit: p.benefit.source.clone(),
            fields_allowed: p.fields_allowed.clone(),
            area_scope: p.area_scope.as_ref().map(|a| a.as_str().to_owned()),
            topic: state
                .delivery
                .program(&p.id)
                .map(|t| t.topic.clone())
                .unwrap_or_default(),
            webhook: state.delivery.subscriptions.get(&p.id).map(|h| h.view(now)),
        })
        .collect();
    Json(serde_json::json!({ "programs": views })).into_response()
}

/// A program's delivery: pending, delivered, retrying, dead-lettered, the oldest undelivered
/// change's age and the last error. No personal data.
#[utoipa::path(get, path = "/v1/programs/{id}/delivery", tag = "programs",
    params(("id" = String, Path, description = "Program id")),
    responses(
        (status = 200, description = "The program's delivery", body = Object),
        (status = 404, description = "No such program", body = crate::answers::Problem)
    ))]
pub async fn get_delivery(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match state.delivery.status(&id, now_ms()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => delivery_error(e),
    }
}

/// Registers or changes a program's webhook (admin). A new webhook's signing secret is in the
/// answer, once.
#[utoipa::path(put, path = "/v1/programs/{id}/webhook", tag = "programs",
    params(("id" = String, Path, description = "Program id")),
    request_body(content = Object, description = "url, batch_size, allow_private_network, max_attempts, initial_backoff_ms, max_backoff_ms, timeout_ms (docs/programs.md)"),
    responses(
        (status = 201, description = "Registered, with its secret", body = WebhookWithSecret),
        (status = 200, description = "Changed; the secrets are kept", body = WebhookWithSecret),
        (status = 400, description = "Not a webhook specification, or a target that is not allowed", body = crate::answers::Problem),
        (status = 404, description = "No such program", body = crate::answers::Problem)
    ))]
pub async fn put_webhook(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = known(&state, &id) {
        return r;
    }
    let spec: WebhookSpec = match json_body(&body, "a webhook specification") {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) =
        dsr_delivery::target::check_new_target(&spec.url, spec.allow_private_network).await
    {
        return problem(StatusCode::BAD_REQUEST, e.to_string());
    }
    // A new webhook's live delivery starts at the topics' ends now; its backfill is the
    // eligible set as of there.
    let live_from =
        if state.delivery.subscriptions.get(&id).is_none() && spec.backfill != Some(false) {
            match state.delivery.live_ends(&id).await {
                Ok(ends) => Some(ends),
                Err(e) => return delivery_error(e),
            }
        } else {
            None
        };
    let result = state
        .delivery
        .subscriptions
        .put_from(&id, spec, now_ms(), live_from);
    let outcome = match &result {
        Ok(_) => "allowed".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.webhook.put",
        vec![format!("program:{id}")],
        None,
        outcome,
    ) {
        return r;
    }
    match result {
        Ok((hook, secret)) => {
            state.delivery.subscriptions_changed();
            let status = if secret.is_some() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (
                status,
                Json(WebhookWithSecret {
                    webhook: hook.view(now_ms()),
                    secret: secret.map(|s| s.expose()),
                }),
            )
                .into_response()
        }
        Err(e) => delivery_error(e.into()),
    }
}

/// Removes a program's webhook (admin); its undelivered changes stay on its topic.
#[utoipa::path(delete, path = "/v1/programs/{id}/webhook", tag = "programs",
    params(("id" = String, Path, description = "Program id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such program, or it has no webhook", body = crate::answers::Problem)
    ))]
pub async fn delete_webhook(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = known(&state, &id) {
        return r;
    }
    let result = state.delivery.subscriptions.remove(&id);
    let outcome = match &result {
        Ok(true) => "allowed".to_owned(),
        Ok(false) => "failed: no webhook".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.webhook.delete",
        vec![format!("program:{id}")],
        None,
        outcome,
    ) {
        return r;
    }
    match result {
        Ok(true) => {
            state.delivery.subscriptions_changed();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            format!("program `{id}` has no webhook"),
        ),
        Err(e) => delivery_error(e.into()),
    }
}

/// A new signing secret (admin); the old one keeps signing for `overlap_seconds` [default
/// 86400], so every request carries both signatures until the receiver has switched.
#[utoipa::path(post, path = "/v1/programs/{id}/webhook/rotate-secret", tag = "programs",
    params(("id" = String, Path, description = "Program id")),
    request_body(content = Object, description = "{\"overlap_seconds\": N} (optional)"),
    responses(
        (status = 200, description = "The new secret, once", body = WebhookWithSecret),
        (status = 400, description = "Not a rotation request", body = crate::answers::Problem),
        (status = 404, description = "No such program", body = crate::answers::Problem),
        (status = 409, description = "The program has no webhook", body = crate::answers::Problem)
    ))]
pub async fn rotate_secret(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = known(&state, &id) {
        return r;
    }
    let rotate: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a rotation request ({{\"overlap_seconds\": N}}): {e}"),
                )
            }
        }
    };
    let overlap_ms = rotate
        .overlap_seconds
        .unwrap_or(86_400)
        .min(365 * 86_400)
        .saturating_mul(1000) as i64;
    let now = now_ms();
    let result = state.delivery.subscriptions.rotate(&id, overlap_ms, now);
    let outcome = match &result {
        Ok(_) => "allowed".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.webhook.rotate-secret",
        vec![format!("program:{id}")],
        None,
        outcome,
    ) {
        return r;
    }
    match result {
        Ok((secret, hook)) => Json(WebhookWithSecret {
            webhook: hook.view(now),
            secret: Some(secret.expose()),
        })
        .into_response(),
        Err(e) => delivery_error(e.into()),
    }
}

fn disclosed(state: &ApiState, households: impl Iterator<Item = String>) -> Vec<String> {
    let mut subjects: Vec<String> = households
        .map(|h| state.keyring().pseudonym_text("subject", &h))
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

/// The program's eligibility changes after a cursor, for programs that cannot take webhooks
/// (long poll with `wait`). Each page's `next` is the cursor of the next page.
#[utoipa::path(get, path = "/v1/programs/{id}/changes", tag = "programs",
    params(("id" = String, Path, description = "Program id"), FeedQuery),
    responses(
        (status = 200, description = "A page of changes and the next cursor", body = Object),
        (status = 400, description = "A cursor this feed did not give out", body = crate::answers::Problem),
        (status = 404, description = "No such program", body = crate::answers::Problem)
    ))]
pub async fn get_changes(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    Query(q): Query<FeedQuery>,
) -> Response {
    if let Err(r) = own_program(&identity, &id) {
        return r;
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(30));
    let page = match state
        .delivery
        .changes(&id, q.after.as_deref(), q.limit.unwrap_or(500), wait)
        .await
    {
        Ok(p) => p,
        Err(e) => return delivery_error(e),
    };
    let subjects = disclosed(
        &state,
        page.messages.iter().map(|m| m.household_id().to_owned()),
    );
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.changes.read",
        subjects,
        None,
        "allowed",
    ) {
        return r;
    }
    Json(page).into_response()
}

/// The program's dead letters: changes its webhook did not take within the retry budget, with
/// the last error.
#[utoipa::path(get, path = "/v1/programs/{id}/dead-letters", tag = "programs",
    params(("id" = String, Path, description = "Program id"), Limit),
    responses(
        (status = 200, description = "`{\"dead_letters\": [...]}`, oldest first", body = Object),
        (status = 404, description = "No such program", body = crate::answers::Problem)
    ))]
pub async fn get_dead_letters(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    if let Err(r) = own_program(&identity, &id) {
        return r;
    }
    if let Err(r) = known(&state, &id) {
        return r;
    }
    let letters = match state
        .delivery
        .dead_letters
        .list(&id, q.limit.unwrap_or(100).clamp(1, 10_000))
    {
        Ok(l) => l,
        Err(e) => return delivery_error(e.into()),
    };
    let subjects = disclosed(
        &state,
        letters.iter().map(|l| l.message.household_id().to_owned()),
    );
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.dead-letters.read",
        subjects,
        None,
        "allowed",
    ) {
        return r;
    }
    Json(serde_json::json!({ "dead_letters": letters })).into_response()
}

/// Delivers again to the program's webhook: its dead letters (`dead_letters: true`), or every
/// change from a time (`from`) or from a change (`from_change_id`). Replayed changes carry their
/// original ids.
#[utoipa::path(post, path = "/v1/programs/{id}/replay", tag = "programs",
    params(("id" = String, Path, description = "Program id")),
    request_body(content = Object, description = "{\"dead_letters\": true} or {\"from\": \"2026-12-01T00:00:00Z\"} or {\"from_change_id\": \"…\"}"),
    responses(
        (status = 202, description = "Queued for the webhook worker", body = Object),
        (status = 400, description = "Nothing or something impossible to replay", body = crate::answers::Problem),
        (status = 404, description = "No such program", body = crate::answers::Problem),
        (status = 409, description = "The program has no webhook", body = crate::answers::Problem)
    ))]
pub async fn post_replay(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = own_program(&identity, &id) {
        return r;
    }
    let request: ReplayRequest = match json_body(&body, "a replay request") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = state.delivery.replay(&id, request).await;
    let outcome = match &result {
        Ok(q) => format!("allowed: {q:?}"),
        Err(e) => format!("failed: {e}"),
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.replay",
        vec![format!("program:{id}")],
        None,
        outcome,
    ) {
        return r;
    }
    match result {
        Ok(queued) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "queued": queued })),
        )
            .into_response(),
        Err(e) => delivery_error(e),
    }
}

/// When the snapshot is taken.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// RFC 3339 or milliseconds since the epoch [default: now]. A time in the past gives the
    /// same answer whenever it is asked (a payment cycle's frozen list).
    as_of: Option<String>,
}

/// The program's beneficiaries at a time: every household eligible then, with its benefit, as
/// the registry showed it at that time.
#[utoipa::path(get, path = "/v1/programs/{id}/beneficiaries", tag = "programs",
    params(("id" = String, Path, description = "Program id"), AsOf),
    responses(
        (status = 200, description = "`{program_id, as_of_ms, count, total_benefit, beneficiaries: [{household_id, benefit, rule_version, household_version}]}`", body = Object),
        (status = 400, description = "`as_of` is not a time", body = crate::answers::Problem),
        (status = 404, description = "No such program", body = crate::answers::Problem)
    ))]
pub async fn get_beneficiaries(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    Query(q): Query<AsOf>,
) -> Response {
    if let Err(r) = own_program(&identity, &id) {
        return r;
    }
    if let Err(r) = known(&state, &id) {
        return r;
    }
    let at_ms = match q.as_of.as_deref() {
        None => now_ms(),
        Some(t) => match crate::households::parse_as_of(t) {
            Ok(ms) => ms,
            Err(e) => return problem(StatusCode::BAD_REQUEST, e),
        },
    };
    let store = state.store.clone();
    let program = id.clone();
    let found = tokio::task::spawn_blocking(move || store.beneficiaries_at(&program, at_ms)).await;
    let beneficiaries = match found {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "serving store read failed");
            return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let subjects = disclosed(
        &state,
        beneficiaries
            .iter()
            .map(|b| b.household_id.as_str().to_owned()),
    );
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.beneficiaries.read",
        subjects,
        None,
        "allowed",
    ) {
        return r;
    }
    let total: f64 = beneficiaries.iter().map(|b| b.benefit).sum();
    Json(serde_json::json!({
        "program_id": id,
        "as_of_ms": at_ms,
        "count": beneficiaries.len(),
        "total_benefit": total,
        "beneficiaries": beneficiaries,
    }))
    .into_response()
}
