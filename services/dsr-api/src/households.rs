//! `GET /v1/households/{id}`, its history, and a person's household.
//!
//! Each read names a purpose (`Dsr-Purpose`), sees only households inside the client's areas
//! (and, for a program, its own current beneficiaries: anything else answers exactly like a
//! household that does not exist), is cut down to the purpose's fields, and is recorded in the
//! audit log before anything is disclosed.

use crate::access::{audit, purpose};
use crate::answers::{HistoryView, HouseholdView, NeedScoreView, PersonHousehold, VersionView};
use crate::{problem, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::projection::Purpose;
use dsr_access::Identity;
use dsr_core::{Household, HouseholdId, Micros, PersonId, PmtModel};
use dsr_serving::Version;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// Show the household as the registry showed it at this time: RFC 3339
    /// (`2026-11-23T10:00:00Z`) or milliseconds since the epoch.
    as_of: Option<String>,
}

/// The purpose header every read of personal data carries.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct Purposed {
    /// The purpose of this read: one of the client's data-sharing agreements. The answer
    /// holds only the fields that purpose allows.
    #[param(rename = "Dsr-Purpose")]
    dsr_purpose: String,
}

/// `as_of` as ms since the epoch: RFC 3339, or an integer of milliseconds.
pub(crate) fn parse_as_of(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    Micros::parse(text).map(|m| m.0.div_euclid(1000)).ok_or_else(|| {
        format!("as_of `{text}` is neither RFC 3339 (2026-11-23T10:00:00Z) nor milliseconds since the epoch")
    })
}

fn household_view(model: &PmtModel, purpose: &Purpose, h: &Household) -> HouseholdView {
    let household = purpose.household(h);
    HouseholdView {
        need_score: h
            .need_score
            .as_ref()
            .filter(|_| purpose.allows("need_score"))
            .map(|s| NeedScoreView {
                score: s.score,
                model_version: s.model_version.to_string(),
                explanation: model.explain(h),
            }),
        programs: household.get("programs").cloned(),
        household,
        as_of_ms: None,
        written_at_ms: None,
    }
}

fn version_view(purpose: &Purpose, v: Version) -> VersionView {
    VersionView {
        version: v.household.version,
        written_at_ms: v.written_at_ms,
        household: purpose.household(&v.household),
        events: v.events,
    }
}

/// The answer for a household that does not exist *or* that the client may not see: the
/// same, so a client cannot learn that a household outside its scope exists.
fn not_found(
    state: &ApiState,
    identity: &Identity,
    purpose: &Purpose,
    subject: &str,
    message: String,
) -> Response {
    if let Err(r) = audit(
        state,
        Some(identity),
        "household.read",
        vec![state.keyring().pseudonym_text("subject", subject)],
        Some(purpose),
        "not found or outside the client's scope",
    ) {
        return r;
    }
    problem(StatusCode::NOT_FOUND, message)
}

/// Records the disclosure of `subjects` for `purpose`; `Err` when it cannot be recorded.
fn disclose(
    state: &ApiState,
    identity: &Identity,
    purpose: &Purpose,
    subjects: Vec<String>,
) -> Result<(), Response> {
    // Household and person ids are personal data too: the audit log keeps their keyed
    // pseudonyms, which `GET /v1/audit?subject=ID` finds again from the id.
    let subjects = subjects
        .iter()
        .map(|s| state.keyring().pseudonym_text("subject", s))
        .collect();
    audit(
        state,
        Some(identity),
        "household.read",
        subjects,
        Some(purpose),
        "allowed",
    )
}

fn store_error(e: dsr_serving::ServingError) -> Response {
    tracing::error!(error = %e, "serving store read failed");
    problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A household now (or `?as_of=` a past time): its record, need score with the explanation, and
/// program statuses.
#[utoipa::path(get, path = "/v1/households/{id}", tag = "households",
    params(("id" = String, Path, description = "Household id"), AsOf, Purposed),
    responses(
        (status = 200, description = "The household", body = HouseholdView),
        (status = 400, description = "`as_of` is not a time, or no purpose was named", body = crate::answers::Problem),
        (status = 404, description = "No such household (at that time)", body = crate::answers::Problem)
    ))]
pub async fn get_household(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<AsOf>,
) -> Response {
    let purpose = match purpose(&identity, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = HouseholdId::new(&id);
    let as_of = match query.as_of.as_deref().map(parse_as_of).transpose() {
        Ok(as_of) => as_of,
        Err(reason) => return problem(StatusCode::BAD_REQUEST, reason),
    };
    let (household, written_at_ms) = match as_of {
        Some(at_ms) => match state.store.as_of(&id, at_ms) {
            Ok(Some(v)) => (v.household, Some(v.written_at_ms)),
            Ok(None) => {
                return not_found(
                    &state,
                    &identity,
                    &purpose,
                    id.as_str(),
                    format!("household {id} did not exist in the registry at {at_ms} ms"),
                )
            }
            Err(e) => return store_error(e),
        },
        None => match state.store.household(&id) {
            Ok(Some(h)) => (h, None),
            Ok(None) => return not_found(&state, &identity, &purpose, id.as_str(), unknown(&id)),
            Err(e) => return store_error(e),
        },
    };
    // The scope is checked on the household as it is now shown: a program sees a past
    // version only if the household was its beneficiary then.
    if !identity.client.may_see(&household) {
        return not_found(&state, &identity, &purpose, id.as_str(), unknown(&id));
    }
    if let Err(r) = disclose(&state, &identity, &purpose, vec![id.as_str().to_owned()]) {
        return r;
    }
    let mut body = household_view(&state.model, &purpose, &household);
    body.as_of_ms = as_of;
    body.written_at_ms = written_at_ms;
    Json(body).into_response()
}

fn unknown(id: &HouseholdId) -> String {
    format!("no household {id} in the registry (events may still be in flight: the serving store follows the changelog)")
}

/// Every version of a household, oldest first, each with the events that made it.
#[utoipa::path(get, path = "/v1/households/{id}/history", tag = "households",
    params(("id" = String, Path, description = "Household id"), Purposed),
    responses(
        (status = 200, description = "The versions", body = HistoryView),
        (status = 400, description = "No purpose was named", body = crate::answers::Problem),
        (status = 404, description = "No such household", body = crate::answers::Problem)
    ))]
pub async fn get_history(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let purpose = match purpose(&identity, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = HouseholdId::new(&id);
    let versions = match state.store.history(&id) {
        Ok(versions) => versions,
        Err(e) => return store_error(e),
    };
    // The client must be allowed to see the household as it is now; a program then sees
    // only the versions in which the household was its beneficiary.
    let visible = versions
        .last()
        .is_some_and(|v| identity.client.may_see(&v.household));
    if !visible {
        return not_found(
            &state,
            &identity,
            &purpose,
            id.as_str(),
            format!("no household {id} in the registry"),
        );
    }
    let versions: Vec<Version> = versions
        .into_iter()
        .filter(|v| identity.client.may_see(&v.household))
        .collect();
    if let Err(r) = disclose(&state, &identity, &purpose, vec![id.as_str().to_owned()]) {
        return r;
    }
    Json(HistoryView {
        household_id: id.as_str().to_owned(),
        versions: versions
            .into_iter()
            .map(|v| version_view(&purpose, v))
            .collect(),
    })
    .into_response()
}

/// The household a person belongs to now.
#[utoipa::path(get, path = "/v1/persons/{id}/household", tag = "households",
    params(("id" = String, Path, description = "Person id"), Purposed),
    responses(
        (status = 200, description = "The person's household", body = PersonHousehold),
        (status = 400, description = "No purpose was named", body = crate::answers::Problem),
        (status = 404, description = "The person is in no household", body = crate::answers::Problem)
    ))]
pub async fn get_person_household(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let purpose = match purpose(&identity, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let person = PersonId::new(&id);
    let missing = || format!("person {id} is not a member of any household in the registry");
    let household_id = match state.store.household_of(&person) {
        Ok(Some(h)) => h,
        Ok(None) => return not_found(&state, &identity, &purpose, &id, missing()),
        Err(e) => return store_error(e),
    };
    match state.store.household(&household_id) {
        Ok(Some(h)) if identity.client.may_see(&h) => {}
        Ok(_) => return not_found(&state, &identity, &purpose, &id, missing()),
        Err(e) => return store_error(e),
    }
    if let Err(r) = disclose(
        &state,
        &identity,
        &purpose,
        vec![id.clone(), household_id.as_str().to_owned()],
    ) {
        return r;
    }
    Json(PersonHousehold {
        person_id: id,
        household_id: household_id.as_str().to_owned(),
    })
    .into_response()
}
