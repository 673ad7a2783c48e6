//! `GET /v1/households/{id}`, its history, and a person's household.

use crate::{problem, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dsr_core::{Household, HouseholdId, Micros, PersonId, PmtModel};
use dsr_log::Log;
use dsr_serving::Version;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
pub struct AsOf {
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

fn household_json(model: &PmtModel, h: &Household) -> Value {
    json!({
        "household": h,
        "need_score": h.need_score.as_ref().map(|s| json!({
            "score": s.score,
            "model_version": s.model_version,
            "explanation": model.explain(h),
        })),
        "programs": h.programs,
    })
}

fn version_json(v: &Version) -> Value {
    json!({
        "version": v.household.version,
        "written_at_ms": v.written_at_ms,
        "events": v.events,
        "household": v.household,
    })
}

fn store_error(e: dsr_serving::ServingError) -> Response {
    tracing::error!(error = %e, "serving store read failed");
    problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub async fn get_household<L: Log + 'static>(
    State(state): State<Arc<ApiState<L>>>,
    Path(id): Path<String>,
    Query(query): Query<AsOf>,
) -> Response {
    let id = HouseholdId::new(&id);
    match query.as_of.as_deref().map(parse_as_of) {
        Some(Err(reason)) => problem(StatusCode::BAD_REQUEST, reason),
        Some(Ok(at_ms)) => match state.store.as_of(&id, at_ms) {
            Ok(Some(v)) => {
                let mut body = household_json(&state.model, &v.household);
                body["as_of_ms"] = json!(at_ms);
                body["written_at_ms"] = json!(v.written_at_ms);
                Json(body).into_response()
            }
            Ok(None) => problem(
                StatusCode::NOT_FOUND,
                format!("household {id} did not exist in the registry at {at_ms} ms"),
            ),
            Err(e) => store_error(e),
        },
        None => match state.store.household(&id) {
            Ok(Some(h)) => Json(household_json(&state.model, &h)).into_response(),
            Ok(None) => problem(
                StatusCode::NOT_FOUND,
                format!("no household {id} in the registry (events may still be in flight: the serving store follows the changelog)"),
            ),
            Err(e) => store_error(e),
        },
    }
}

pub async fn get_history<L: Log + 'static>(
    State(state): State<Arc<ApiState<L>>>,
    Path(id): Path<String>,
) -> Response {
    let id = HouseholdId::new(&id);
    match state.store.history(&id) {
        Ok(versions) if versions.is_empty() => problem(
            StatusCode::NOT_FOUND,
            format!("no household {id} in the registry"),
        ),
        Ok(versions) => Json(json!({
            "household_id": id.as_str(),
            "versions": versions.iter().map(version_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

pub async fn get_person_household<L: Log + 'static>(
    State(state): State<Arc<ApiState<L>>>,
    Path(id): Path<String>,
) -> Response {
    let person = PersonId::new(&id);
    match state.store.household_of(&person) {
        Ok(Some(h)) => Json(json!({ "person_id": id, "household_id": h.as_str() })).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            format!("person {id} is not a member of any household in the registry"),
        ),
        Err(e) => store_error(e),
    }
}
