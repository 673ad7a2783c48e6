//! `GET /v1/households/{id}`, its history, and a person's household.

use crate::answers::{HistoryView, HouseholdView, NeedScoreView, PersonHousehold, VersionView};
use crate::{problem, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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

/// `as_of` as ms since the epoch: RFC 3339, or an integer of milliseconds.
fn parse_as_of(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    Micros::parse(text).map(|m| m.0.div_euclid(1000)).ok_or_else(|| {
        format!("as_of `{text}` is neither RFC 3339 (2026-11-23T10:00:00Z) nor milliseconds since the epoch")
    })
}

fn household_view(model: &PmtModel, h: Household) -> HouseholdView {
    HouseholdView {
        need_score: h.need_score.as_ref().map(|s| NeedScoreView {
            score: s.score,
            model_version: s.model_version.to_string(),
            explanation: model.explain(&h),
        }),
        programs: h.programs.clone(),
        household: h,
        as_of_ms: None,
        written_at_ms: None,
    }
}

fn version_view(v: Version) -> VersionView {
    VersionView {
        version: v.household.version,
        written_at_ms: v.written_at_ms,
        events: v.events,
        household: v.household,
    }
}

fn store_error(e: dsr_serving::ServingError) -> Response {
    tracing::error!(error = %e, "serving store read failed");
    problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A household now (or `?as_of=` a past time): its record, need score with the explanation, and
/// program statuses.
#[utoipa::path(get, path = "/v1/households/{id}", tag = "households",
    params(("id" = String, Path, description = "Household id"), AsOf),
    responses(
        (status = 200, description = "The household", body = HouseholdView),
        (status = 400, description = "`as_of` is not a time", body = crate::answers::Problem),
        (status = 404, description = "No such household (at that time)", body = crate::answers::Problem)
    ))]
pub async fn get_household(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(query): Query<AsOf>,
) -> Response {
    let id = HouseholdId::new(&id);
    match query.as_of.as_deref().map(parse_as_of) {
        Some(Err(reason)) => problem(StatusCode::BAD_REQUEST, reason),
        Some(Ok(at_ms)) => match state.store.as_of(&id, at_ms) {
            Ok(Some(v)) => {
                let mut body = household_view(&state.model, v.household);
                body.as_of_ms = Some(at_ms);
                body.written_at_ms = Some(v.written_at_ms);
                Json(body).into_response()
            }
            Ok(None) => problem(
                StatusCode::NOT_FOUND,
                format!("household {id} did not exist in the registry at {at_ms} ms"),
            ),
            Err(e) => store_error(e),
        },
        None => match state.store.household(&id) {
            Ok(Some(h)) => Json(household_view(&state.model, h)).into_response(),
            Ok(None) => problem(
                StatusCode::NOT_FOUND,
                format!("no household {id} in the registry (events may still be in flight: the serving store follows the changelog)"),
            ),
            Err(e) => store_error(e),
        },
    }
}

/// Every version of a household, oldest first, each with the events that made it.
#[utoipa::path(get, path = "/v1/households/{id}/history", tag = "households",
    params(("id" = String, Path, description = "Household id")),
    responses(
        (status = 200, description = "The versions", body = HistoryView),
        (status = 404, description = "No such household", body = crate::answers::Problem)
    ))]
pub async fn get_history(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let id = HouseholdId::new(&id);
    match state.store.history(&id) {
        Ok(versions) if versions.is_empty() => problem(
            StatusCode::NOT_FOUND,
            format!("no household {id} in the registry"),
        ),
        Ok(versions) => Json(HistoryView {
            household_id: id.as_str().to_owned(),
            versions: versions.into_iter().map(version_view).collect(),
        })
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// The household a person belongs to now.
#[utoipa::path(get, path = "/v1/persons/{id}/household", tag = "households",
    params(("id" = String, Path, description = "Person id")),
    responses(
        (status = 200, description = "The person's household", body = PersonHousehold),
        (status = 404, description = "The person is in no household", body = crate::answers::Problem)
    ))]
pub async fn get_person_household(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Response {
    let person = PersonId::new(&id);
    match state.store.household_of(&person) {
        Ok(Some(h)) => Json(PersonHousehold {
            person_id: id,
            household_id: h.as_str().to_owned(),
        })
        .into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            format!("person {id} is not a member of any household in the registry"),
        ),
        Err(e) => store_error(e),
    }
}
