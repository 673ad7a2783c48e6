//! Shock-responsive scale-up over HTTP, and the geographic master list.
//!
//! - `GET /.well-known/locations.json`: the master list (public: area codes and names only).
//! - `GET /v1/areas/{id}`: one area, its children, and household counts.
//! - `GET /v1/shocks`: the shocks the registry has seen (declared by events, or manual).
//! - `GET|POST /v1/scale-up/rules`, `GET|PUT /v1/scale-up/rules/{id}`: rules and drafts
//!   (an emergency coordinator drafts and edits).
//! - `POST /v1/scale-up/rules/{id}/preview`: who and how much for a hypothetical shock (or the
//!   rule's own areas): counts, cost, per area, the margin, overlap; the households only as a
//!   digest (`households_digest`), never listed.
//! - `POST …/approve`, `…/arm`, `…/trigger`, `…/revoke`: an approver — never one who drafted
//!   or edited the rule — approves, arms, triggers by hand, or revokes (with a reason).
//!
//! Every transition is in the audit log with who and why ([`dsr_scale_up::ScaleUp`] records
//! it); the rule's own history (`transitions`) says the same.

use crate::{json_body, problem, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::{Identity, Role};
use dsr_core::scale_up::{households_digest, LifecycleError, Plan, RuleRecord, ScaleUpRule, Shock};
use dsr_core::{AreaCode, Micros};
use dsr_scale_up::service::Actor;
use dsr_scale_up::{ScaleUp, ScaleUpError, ShockRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A rule as the API shows it: its definition, state, history and (once triggered) the
/// activation's counts — never the households.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RuleView {
    pub id: String,
    pub state: String,
    #[schema(value_type = Object)]
    pub rule: ScaleUpRule,
    pub drafted_by: String,
    pub approved_by: Option<String>,
    /// Every transition: from, to, by, why, at.
    #[schema(value_type = Vec<Object>)]
    pub transitions: Vec<dsr_core::scale_up::Transition>,
    pub activation: Option<ActivationView>,
}

/// A triggered rule's shock, dates and counts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActivationView {
    pub shock_id: String,
    pub starts_at: String,
    pub ends_at: String,
    pub households: u64,
    pub top_ups: u64,
    pub enrolments: u64,
    /// Per month, all grants together.
    pub monthly_cost: f64,
    pub households_digest: String,
    /// Why and when it ended, once it has.
    pub ended: Option<String>,
    /// Notifications written to the program's topic (start, and end once ended).
    pub notifications_sent: u64,
}

impl RuleView {
    fn of(r: &RuleRecord) -> RuleView {
        use dsr_core::scale_up::GrantKind;
        RuleView {
            id: r.rule.id.to_string(),
            state: r.state.as_str().to_string(),
            rule: r.rule.clone(),
            drafted_by: r.drafted_by.clone(),
            approved_by: r.approved_by.clone(),
            transitions: r.transitions.clone(),
            activation: r.activation.as_ref().map(|a| ActivationView {
                shock_id: a.shock_id.to_string(),
                starts_at: a.starts_at.to_string(),
                ends_at: a.ends_at.to_string(),
                households: a.grants.len() as u64,
                top_ups: a
                    .grants
                    .iter()
                    .filter(|g| g.kind == GrantKind::TopUp)
                    .count() as u64,
                enrolments: a
                    .grants
                    .iter()
                    .filter(|g| g.kind == GrantKind::Enrolment)
                    .count() as u64,
                monthly_cost: a.grants.iter().map(|g| g.amount).sum(),
                households_digest: households_digest(
                    a.grants.iter().map(|g| g.household_id.as_str()),
                ),
                ended: a.ended.as_ref().map(|(at, why)| format!("{at}: {why}")),
                notifications_sent: ScaleUp::notifications_sent(r),
            }),
        }
    }
}

/// What a preview shows: the plan without the households, plus their digest.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviewView {
    pub rule: RuleView,
    pub shock_id: String,
    pub starts_at: String,
    pub ends_at: String,
    pub months: f64,
    pub affected: u64,
    pub top_ups: u64,
    pub enrolments: u64,
    pub total_cost: f64,
    /// Qualifying households a cap left out.
    pub capped: u64,
    #[schema(value_type = Object)]
    pub per_area: BTreeMap<AreaCode, dsr_core::scale_up::AreaTotals>,
    #[schema(value_type = Object)]
    pub marginal: dsr_core::scale_up::Marginal,
    #[schema(value_type = Vec<Object>)]
    pub overlap: Vec<dsr_core::scale_up::Overlap>,
    /// A digest of exactly which households the plan selects (compare with what a program
    /// receives, without listing them).
    pub households_digest: String,
    /// Whether every stage had processed everything when the households were read.
    pub caught_up: bool,
}

fn preview_view(plan: Plan, record: &RuleRecord, caught_up: bool) -> PreviewView {
    PreviewView {
        rule: RuleView::of(record),
        shock_id: plan.shock_id.to_string(),
        starts_at: plan.starts_at.to_string(),
        ends_at: plan.ends_at.to_string(),
        months: plan.months,
        affected: plan.affected,
        top_ups: plan.top_ups,
        enrolments: plan.enrolments,
        total_cost: plan.total_cost,
        capped: plan.capped,
        households_digest: households_digest(plan.grants.iter().map(|g| g.household_id.as_str())),
        per_area: plan.per_area,
        marginal: plan.marginal,
        overlap: plan.overlap,
        caught_up,
    }
}

/// The answer to a failed action: what was wrong, in words, with the matching status.
fn failure(e: ScaleUpError) -> Response {
    let status = match &e {
        ScaleUpError::Rule(_) | ScaleUpError::Shock(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ScaleUpError::Lifecycle(LifecycleError::OwnApproval { .. }) => StatusCode::FORBIDDEN,
        ScaleUpError::Lifecycle(LifecycleError::NoReason(_)) => StatusCode::BAD_REQUEST,
        ScaleUpError::Lifecycle(_) | ScaleUpError::Exists(_) => StatusCode::CONFLICT,
        ScaleUpError::UnknownRule(_) => StatusCode::NOT_FOUND,
        ScaleUpError::Book(_)
        | ScaleUpError::Store(_)
        | ScaleUpError::Log(_)
        | ScaleUpError::Audit(_) => {
            tracing::error!(error = %e, "a scale-up action failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
        ScaleUpError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(status, e.to_string())
}

fn actor(identity: &Identity) -> Actor {
    Actor {
        id: identity.client.id.clone(),
        role: identity.client.role.to_string(),
    }
}

/// The scale-up service, or 503 when this deployment runs without one (every `/v1/` operation
/// tagged `scale-up` documents that 503: [`UNAVAILABLE`], added to the OpenAPI document in one
/// place by `crate::SecuritySchemes`).
fn service(state: &ApiState) -> Result<&Arc<ScaleUp>, Response> {
    state.scale_up.as_ref().ok_or_else(|| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "scale-up needs the geographic master list: start dsr up with --areas FILE (areas.csv: code,name,level,parent_code)",
        )
    })
}

/// The geographic master list as served to everyone.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Locations {
    /// A digest of the list's content.
    pub version: String,
    #[schema(value_type = Vec<Object>)]
    pub areas: Vec<dsr_core::areas::Area>,
}

/// The geographic master list: every area's code, name, level and parent.
#[utoipa::path(get, path = "/.well-known/locations.json", tag = "scale-up",
    responses(
        (status = 200, description = "The master list", body = Locations),
        (status = 503, description = "No master list loaded", body = crate::answers::Problem)
    ))]
pub async fn locations(State(state): State<Arc<ApiState>>) -> Response {
    match service(&state) {
        Ok(s) => Json(Locations {
            version: s.areas.version().to_string(),
            areas: s.areas.all().to_vec(),
        })
        .into_response(),
        Err(r) => r,
    }
}

/// An area with household counts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AreaView {
    pub code: String,
    pub name: String,
    pub level: String,
    pub parent: Option<String>,
    /// Households of the area and every area inside it.
    pub households: u64,
    pub children: Vec<AreaChild>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AreaChild {
    pub code: String,
    pub name: String,
    pub level: String,
    pub households: u64,
}

/// What a scale-up operation answers with 503.
pub(crate) const UNAVAILABLE: &str = "No geographic master list loaded (start dsr up with --areas FILE), or the rule book, serving store or log failed";

/// One area of the master list, its children, and how many households each holds.
#[utoipa::path(get, path = "/v1/areas/{id}", tag = "scale-up",
    params(("id" = String, Path, description = "Area code, e.g. R01.D03")),
    responses(
        (status = 200, description = "The area", body = AreaView),
        (status = 404, description = "Not in the master list", body = crate::answers::Problem)
    ))]
pub async fn get_area(State(state): State<Arc<ApiState>>, Path(code): Path<String>) -> Response {
    let s = match service(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let code = AreaCode::new(code);
    let Some(area) = s.areas.get(&code).cloned() else {
        return problem(
            StatusCode::NOT_FOUND,
            format!(
                "area `{code}` is not in the geographic master list (version {}); GET /.well-known/locations.json lists the codes",
                s.areas.version()
            ),
        );
    };
    let children: Vec<dsr_core::areas::Area> =
        s.areas.children(Some(&code)).into_iter().cloned().collect();
    let store = state.store.clone();
    let prefix = code.clone();
    let counted = tokio::task::spawn_blocking(move || {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        store
            .for_each_household(&mut |h| {
                if !h.dissolved && h.area.is_within(&prefix) {
                    *counts.entry(h.area.to_string()).or_default() += 1;
                }
            })
            .map(|()| counts)
    })
    .await;
    let counts = match counted {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the households could not be counted: {e}"),
            )
        }
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the count stopped: {e}"),
            )
        }
    };
    let within = |c: &AreaCode| {
        counts
            .iter()
            .filter(|(a, _)| AreaCode::new(a.as_str()).is_within(c))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    Json(AreaView {
        households: within(&code),
        children: children
            .iter()
            .map(|c| AreaChild {
                code: c.code.to_string(),
                name: c.name.clone(),
                level: c.level.clone(),
                households: within(&c.code),
            })
            .collect(),
        code: area.code.to_string(),
        name: area.name,
        level: area.level,
        parent: area.parent.map(|p| p.to_string()),
    })
    .into_response()
}

/// The shocks the registry has seen, newest first.
#[utoipa::path(get, path = "/v1/shocks", tag = "scale-up",
    responses(
        (status = 200, description = "The shocks", body = Vec<Object>)
    ))]
pub async fn list_shocks(State(state): State<Arc<ApiState>>) -> Response {
    match service(&state) {
        Ok(s) => {
            let mut shocks: Vec<ShockRecord> = s.shocks();
            shocks.sort_by_key(|s| std::cmp::Reverse(s.shock.starts_at));
            Json(shocks).into_response()
        }
        Err(r) => r,
    }
}

/// Every scale-up rule with its state and counts, and the notifications sent since start.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleView>,
    /// Scale-up notifications written to the programs' topics since dsr started.
    pub notifications_sent_since_start: u64,
}

/// The scale-up rules.
#[utoipa::path(get, path = "/v1/scale-up/rules", tag = "scale-up",
    responses(
        (status = 200, description = "The rules", body = RuleList)
    ))]
pub async fn list_rules(State(state): State<Arc<ApiState>>) -> Response {
    match service(&state) {
        Ok(s) => Json(RuleList {
            rules: s.rules().iter().map(RuleView::of).collect(),
            notifications_sent_since_start: s.sent.load(std::sync::atomic::Ordering::Relaxed),
        })
        .into_response(),
        Err(r) => r,
    }
}

const RULE_SHAPE: &str = "a scale-up rule ({\"id\", \"name\", \"program\", \"trigger\": {\"kind\": \"shock\"|\"manual\", \"areas\": [...]}, \"mode\": {\"kind\": \"vertical\"|\"horizontal\", ...}, \"duration\": {\"days\"|\"ends_at\"}, \"caps\", \"priority\", \"stacks\"}; see docs/scale-up.md)";

/// Drafts a new rule (emergency coordinator).
#[utoipa::path(post, path = "/v1/scale-up/rules", tag = "scale-up",
    request_body(content = Object, description = "The rule (docs/scale-up.md)"),
    responses(
        (status = 201, description = "Drafted", body = RuleView),
        (status = 400, description = "Not a rule", body = crate::answers::Problem),
        (status = 409, description = "The id is taken", body = crate::answers::Problem),
        (status = 422, description = "A rule that cannot work (unknown program or areas, no amount, …)", body = crate::answers::Problem)
    ))]
pub async fn create_rule(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    body: Bytes,
) -> Response {
    let s = match service(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rule: ScaleUpRule = match json_body(&body, RULE_SHAPE) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match s.draft(rule, &actor(&identity)) {
        Ok(r) => (StatusCode::CREATED, Json(RuleView::of(&r))).into_response(),
        Err(e) => failure(e),
    }
}

/// One rule.
#[utoipa::path(get, path = "/v1/scale-up/rules/{id}", tag = "scale-up",
    params(("id" = String, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule", body = RuleView),
        (status = 404, description = "No such rule", body = crate::answers::Problem)
    ))]
pub async fn get_rule(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match service(&state) {
        Ok(s) => rule_answer(s.rule(&id)),
        Err(r) => r,
    }
}

/// Edits a draft (emergency coordinator); it must be previewed again.
#[utoipa::path(put, path = "/v1/scale-up/rules/{id}", tag = "scale-up",
    params(("id" = String, Path, description = "Rule id")),
    request_body(content = Object, description = "The rule's new text (same id)"),
    responses(
        (status = 200, description = "Edited", body = RuleView),
        (status = 404, description = "No such rule", body = crate::answers::Problem),
        (status = 409, description = "No longer a draft", body = crate::answers::Problem),
        (status = 422, description = "A rule that cannot work", body = crate::answers::Problem)
    ))]
pub async fn edit_rule(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let s = match service(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rule: ScaleUpRule = match json_body(&body, RULE_SHAPE) {
        Ok(r) => r,
        Err(r) => return r,
    };
    rule_answer(s.edit(&id, rule, &actor(&identity)))
}

/// A hypothetical shock for a preview; omitted: a manual trigger over the rule's areas now.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    #[schema(value_type = Option<Object>)]
    shock: Option<HypotheticalShock>,
}

/// A shock that has not happened (or has: give its id and values).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HypotheticalShock {
    #[serde(default)]
    shock_id: Option<String>,
    #[serde(default)]
    hazard: Option<dsr_core::codes::HazardType>,
    areas: Vec<AreaCode>,
    #[serde(default)]
    severity: Option<dsr_core::codes::ShockSeverity>,
    #[serde(default)]
    indicator_name: Option<String>,
    #[serde(default)]
    indicator_value: Option<f64>,
    #[serde(default)]
    starts_at: Option<Micros>,
    #[serde(default)]
    expected_end: Option<Micros>,
}

/// Who and how much (emergency coordinator or approver): households affected, top-ups, new
/// enrolments, cost, per area, the margin around the cut, overlap with active rules. A draft
/// becomes previewed.
#[utoipa::path(post, path = "/v1/scale-up/rules/{id}/preview", tag = "scale-up",
    params(("id" = String, Path, description = "Rule id")),
    request_body(content = PreviewRequest, description = "Optional hypothetical shock"),
    responses(
        (status = 200, description = "The preview", body = PreviewView),
        (status = 404, description = "No such rule", body = crate::answers::Problem),
        (status = 422, description = "A shock naming unknown areas", body = crate::answers::Problem)
    ))]
pub async fn preview_rule(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !matches!(
        identity.client.role,
        Role::EmergencyCoordinator | Role::Approver
    ) {
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "a {} may not preview scale-up rules: emergency coordinators and approvers may",
                identity.client.role
            ),
        );
    }
    let s = match service(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let request: PreviewRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PreviewRequest { shock: None }
    } else {
        match json_body(&body, "a preview request ({\"shock\": {\"areas\": [...], \"hazard\", \"indicator_name\", \"indicator_value\", \"severity\", \"starts_at\"}})") {
            Ok(r) => r,
            Err(r) => return r,
        }
    };
    let shock = request.shock.map(|h| {
        let now = s.now();
        let shock_id = h.shock_id.unwrap_or_else(|| "hypothetical".into());
        Shock {
            caused_by: dsr_core::ids::derived_id(
                &uuid::Uuid::nil(),
                &format!("scale-up-preview:{shock_id}"),
            ),
            shock_id: dsr_core::ids::ShockId::new(shock_id),
            hazard: h.hazard,
            areas: h.areas,
            severity: h.severity,
            indicator: h
                .indicator_name
                .map(|n| (n.into(), h.indicator_value.unwrap_or(0.0))),
            starts_at: h.starts_at.unwrap_or(now),
            expected_end: h.expected_end,
        }
    });
    let caught_up = state.idle();
    match s.preview(&id, shock, &actor(&identity)).await {
        Ok((plan, record)) => Json(preview_view(plan, &record, caught_up)).into_response(),
        Err(e) => failure(e),
    }
}

/// Why an approver acts.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    reason: String,
    /// For a manual trigger: the shock's id [default: generated].
    #[serde(default)]
    shock_id: Option<String>,
}

/// The service and the approver's reason (an empty body: no reason).
fn service_and_reason<'a>(
    state: &'a ApiState,
    body: &[u8],
) -> Result<(&'a Arc<ScaleUp>, Reason), Response> {
    let s = service(state)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok((s, Reason::default()))
    } else {
        Ok((s, json_body(body, "{\"reason\": \"…\"}")?))
    }
}

/// A rule after an action, or what went wrong.
fn rule_answer(result: Result<RuleRecord, ScaleUpError>) -> Response {
    match result {
        Ok(r) => Json(RuleView::of(&r)).into_response(),
        Err(e) => failure(e),
    }
}

/// Approves a previewed rule (approver; never one who drafted or edited it).
#[utoipa::path(post, path = "/v1/scale-up/rules/{id}/approve", tag = "scale-up",
    params(("id" = String, Path, description = "Rule id")),
    request_body(content = Reason, description = "Why"),
    responses(
        (status = 200, description = "Approved", body = RuleView),
        (status = 403, description = "The approver drafted or edited the rule", body = crate::answers::Problem),
        (status = 409, description = "Not previewed", body = crate::answers::Problem)
    ))]
pub async fn approve_rule(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, why) = match service_and_reason(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    rule_answer(s.approve(&id, &actor(&identity), &why.reason))
}

/// Arms an approved rule (approver): a matching shock event now triggers it.
#[utoipa::path(post, path = "/v1/scale-up/rules/{id}/arm", tag = "scale-up",
    params(("id" = String, Path, description = "Rule id")),
    responses(
        (status = 200, description = "Armed", body = RuleView),
        (status = 409, description = "Not approved", body = crate::answers::Problem)
    ))]
pub async fn arm_rule(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Response {
    match service(&state) {
        Ok(s) => rule_answer(s.arm(&id, &actor(&identity))),
        Err(r) => r,
    }
}

/// Triggers an armed rule by hand (approver), over its own areas, now; the program is told.
#[utoipa::path(post, path = "/v1/scale-up/rules/{id}/trigger", tag = "scale-up",
    params(("id" = String, Path, description = "Rule id")),
    request_body(content = Reason, description = "Why, and optionally the shock's id"),
    responses(
        (status = 200, description = "Active", body = RuleView),
        (status = 409, description = "Not armed", body = crate::answers::Problem)
    ))]
pub async fn trigger_rule(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, why) = match service_and_reason(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    rule_answer(
        s.trigger(&id, why.shock_id, &actor(&identity), &why.reason)
            .await,
    )
}

/// Revokes a rule (approver, with a reason); an active one's grants end at once and the
/// program is told.
#[utoipa::path(post, path = "/v1/scale-up/rules/{id}/revoke", tag = "scale-up",
    params(("id" = String, Path, description = "Rule id")),
    request_body(content = Reason, description = "Why (required)"),
    responses(
        (status = 200, description = "Revoked", body = RuleView),
        (status = 400, description = "No reason", body = crate::answers::Problem),
        (status = 409, description = "Already expired or revoked", body = crate::answers::Problem)
    ))]
pub async fn revoke_rule(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (s, why) = match service_and_reason(&state, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    rule_answer(s.revoke(&id, &actor(&identity), &why.reason).await)
}

/// The coordinator dashboard: one page; it signs in with an API key and calls the API above.
#[utoipa::path(get, path = "/dashboard", tag = "scale-up",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub async fn dashboard() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'",
            ),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}
