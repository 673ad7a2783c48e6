//! New versions of a program's rule over HTTP (admin): preview a draft over the registry as
//! it stands — households entering, changing, exiting, per area, and the benefit total — then
//! activate exactly the previewed draft. Activation goes through the log
//! ([`dsr_pipeline::rules`]): every household processor partition decides its households
//! again at the same point, with the function the preview ran, so the changes the program
//! receives are the ones the preview counted (when the registry had caught up: `caught_up`).

use crate::access::{audit, now_ms};
use crate::programs::known;
use crate::{json_body, problem, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::Identity;
use dsr_core::eligibility::{Program, ProgramFile};
use dsr_core::rule_versions::{activation_id, ActivationRecord, RuleActivation, RulePreview};
use dsr_core::Micros;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A draft of a new version: the rule and/or the benefit formula that change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDraft {
    /// The new eligibility rule (CEL, a bool); omitted: unchanged.
    rule: Option<String>,
    /// The new benefit formula (CEL, a number); omitted: unchanged.
    benefit: Option<String>,
    /// How many levels of the area code the per-area counts use [default 2: e.g. district].
    area_level: Option<usize>,
}

/// Which previewed draft to activate.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activate {
    /// The version the preview gave the draft.
    rule_version: u32,
}

/// What activating the draft would do (preview) or is doing (activation).
#[derive(Serialize, utoipa::ToSchema)]
pub struct RuleVersionAnswer {
    pub program_id: String,
    pub rule_version: u32,
    pub rule: String,
    pub benefit: String,
    /// The activation's id: the `caused_by` of the changes it causes (activation only).
    pub activation_id: Option<String>,
    /// Whether every stage had processed everything when the counts were taken: only then
    /// are they exactly the changes activation produces.
    pub caught_up: bool,
    /// Households decided; entered, changed, exited; eligible and benefit totals before and
    /// after; per area.
    #[schema(value_type = Object)]
    pub preview: RulePreview,
}

fn current(state: &ApiState, id: &str) -> Option<Program> {
    state
        .programs
        .read()
        .expect("programs lock")
        .iter()
        .find(|p| p.id == id)
        .cloned()
}

/// The preview over the serving store (a scan of every household: off the async threads).
async fn preview(
    state: &Arc<ApiState>,
    activation: RuleActivation,
    area_level: usize,
) -> Result<(RulePreview, bool), Response> {
    let caught_up = state.idle();
    let s = Arc::clone(state);
    let scanned = tokio::task::spawn_blocking(move || {
        let mut preview = RulePreview::new(&activation);
        s.store
            .for_each_household(&mut |h| preview.add(&h, &activation, area_level))
            .map(|_| preview)
    })
    .await;
    match scanned {
        Ok(Ok(p)) => Ok((p, caught_up)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the preview could not read the serving store");
            Err(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the preview could not read the households: {e}"),
            ))
        }
        Err(e) => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the preview stopped: {e}"),
        )),
    }
}

fn answer(
    file: &ProgramFile,
    preview: RulePreview,
    caught_up: bool,
    id: Option<String>,
) -> RuleVersionAnswer {
    RuleVersionAnswer {
        program_id: file.id.clone(),
        rule_version: file.rule_version,
        rule: file.rule.clone(),
        benefit: file.benefit.clone(),
        activation_id: id,
        caught_up,
        preview,
    }
}

/// Previews a new version of a program's rule or benefit formula (admin): what activating it
/// would do to the registry as it stands. The draft is kept (until the next preview of the
/// program or a restart) for `POST /v1/programs/{id}/rule-versions` to activate.
#[utoipa::path(post, path = "/v1/programs/{id}/rule-versions/preview", tag = "programs",
    params(("id" = String, Path, description = "Program id")),
    request_body(content = RuleDraft, description = "The new rule and/or benefit formula"),
    responses(
        (status = 200, description = "The draft's version and what activating it would do", body = RuleVersionAnswer),
        (status = 400, description = "Not a draft, a rule that does not compile (with its position), or nothing changes", body = crate::answers::Problem),
        (status = 404, description = "No such program", body = crate::answers::Problem)
    ))]
pub async fn preview_rule_version(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = known(&state, &id) {
        return r;
    }
    let draft: RuleDraft = match json_body(
        &body,
        "a rule draft ({\"rule\": \"…\", \"benefit\": \"…\"})",
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(program) = current(&state, &id) else {
        return problem(StatusCode::NOT_FOUND, format!("no program `{id}`"));
    };
    let mut file = program.to_file();
    if draft.rule.as_deref().is_none_or(|r| r == file.rule)
        && draft.benefit.as_deref().is_none_or(|b| b == file.benefit)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            format!(
                "the draft is version {} as it is; give a new `rule` or `benefit`",
                file.rule_version
            ),
        );
    }
    if let Some(rule) = draft.rule {
        file.rule = rule;
    }
    if let Some(benefit) = draft.benefit {
        file.benefit = benefit;
    }
    file.rule_version = program.rule_version + 1;
    let compiled = match Program::from_file(file.clone()) {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let activation = RuleActivation {
        id: activation_id(&id, file.rule_version),
        program: compiled,
        at: Micros(now_ms() * 1000),
    };
    let (counts, caught_up) = match preview(&state, activation, draft.area_level.unwrap_or(2)).await
    {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.rule.preview",
        vec![format!("program:{id}")],
        None,
        format!("allowed: version {}", file.rule_version),
    ) {
        return r;
    }
    state
        .rule_drafts
        .lock()
        .expect("rule drafts lock")
        .insert(id, file.clone());
    Json(answer(&file, counts, caught_up, None)).into_response()
}

/// Activates the previewed draft (admin): the version is recorded on `dsr.program-rules` and
/// every household is decided again under it; the program receives the changes on its
/// channels. Answers with the counts taken at activation.
#[utoipa::path(post, path = "/v1/programs/{id}/rule-versions", tag = "programs",
    params(("id" = String, Path, description = "Program id")),
    request_body(content = Activate, description = "The previewed draft's version"),
    responses(
        (status = 202, description = "Activated; the changes follow on the program's channels", body = RuleVersionAnswer),
        (status = 400, description = "Not an activation request", body = crate::answers::Problem),
        (status = 404, description = "No such program", body = crate::answers::Problem),
        (status = 409, description = "No previewed draft of that version (preview it first), or a newer version is active", body = crate::answers::Problem)
    ))]
pub async fn activate_rule_version(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = known(&state, &id) {
        return r;
    }
    let request: Activate = match json_body(&body, "an activation ({\"rule_version\": N})") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let draft = state
        .rule_drafts
        .lock()
        .expect("rule drafts lock")
        .get(&id)
        .cloned();
    let Some(file) = draft.filter(|d| d.rule_version == request.rule_version) else {
        return problem(
            StatusCode::CONFLICT,
            format!(
                "no previewed draft of version {} of `{id}`; preview it first (POST /v1/programs/{id}/rule-versions/preview)",
                request.rule_version
            ),
        );
    };
    let active = current(&state, &id).map_or(0, |p| p.rule_version);
    if file.rule_version <= active {
        return problem(
            StatusCode::CONFLICT,
            format!("version {active} of `{id}` is active already; preview a new draft"),
        );
    }
    let record = ActivationRecord::new(file.clone(), &identity.client.id, Micros(now_ms() * 1000));
    let activation = match record.compile() {
        Ok(a) => a,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let program = activation.program.clone();
    let (counts, caught_up) = match preview(&state, activation, 2).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "program.rule.activate",
        vec![format!("program:{id}")],
        None,
        format!("allowed: version {}", file.rule_version),
    ) {
        return r;
    }
    let appended = async {
        let partitions = state.log.partitions(&state.topics.household_events).await?;
        let (version, markers) =
            match dsr_pipeline::rules::activation_records(&state.codec, &record, partitions) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e.to_string())),
            };
        state
            .log
            .append(&state.topics.program_rules, vec![version])
            .await?;
        state
            .log
            .append(&state.topics.household_events, markers)
            .await
            .map(Ok)
    };
    let appended: Result<Result<(), String>, dsr_log::LogError> = appended.await;
    let appended = match appended {
        Ok(Err(e)) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the activation could not be encoded: {e}"),
            )
        }
        Ok(Ok(())) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = appended {
        tracing::error!(error = %e, "a rule activation could not be appended");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the activation could not be written to the log ({e}); try again"),
        );
    }
    {
        let mut programs = state.programs.write().expect("programs lock");
        if let Some(p) = programs.iter_mut().find(|p| p.id == id) {
            *p = program;
        }
    }
    state
        .rule_drafts
        .lock()
        .expect("rule drafts lock")
        .remove(&id);
    (
        StatusCode::ACCEPTED,
        Json(answer(
            &file,
            counts,
            caught_up,
            Some(record.activation_id.to_string()),
        )),
    )
        .into_response()
}
