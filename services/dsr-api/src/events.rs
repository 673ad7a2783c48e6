//! `POST /v1/events`.

use crate::{problem, ApiState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dsr_core::reducer::target_household;
use dsr_core::{Event, HouseholdId, Micros, Payload};
use dsr_log::Log;
use dsr_pipeline::ingest;
use dsr_pipeline::runner::Codec;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// The media type of one Avro record in Confluent wire format.
pub const AVRO_CONTENT_TYPE: &str = "application/vnd.dsr.avro";

/// At most this many events in one JSON array.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// The request's media type without parameters, lower-cased ("" when there is none).
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(crate) fn now() -> Micros {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Micros(since_epoch.as_micros() as i64)
}

pub async fn post_events<L: Log + 'static>(
    State(state): State<Arc<ApiState<L>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = content_type(&headers);
    // Each input: the event, or why it is not one.
    let parsed: Vec<Result<Event, String>> = match content_type.as_str() {
        "application/json" | "" => match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(items)) => {
                if items.len() > MAX_EVENTS_PER_REQUEST {
                    return problem(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "{} events in one request; send at most {MAX_EVENTS_PER_REQUEST} per request",
                            items.len()
                        ),
                    );
                }
                items
                    .into_iter()
                    .map(|item| {
                        serde_json::from_value::<Event>(item)
                            .map_err(|e| format!("not a life event in JSON: {e}"))
                    })
                    .collect()
            }
            Ok(item @ Value::Object(_)) => vec![serde_json::from_value::<Event>(item)
                .map_err(|e| format!("not a life event in JSON: {e}"))],
            Ok(_) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "the body must be one life event (a JSON object) or an array of them",
                )
            }
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not valid JSON: {e}"),
                )
            }
        },
        AVRO_CONTENT_TYPE => {
            if let Err(reason) = state.codec.prepare(&[&body]).await {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot look up the record's writer schema: {reason}; send again"),
                );
            }
            vec![state.codec.decode_event(&body)]
        }
        other => {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type `{other}` is not accepted: send application/json (one event or an array) or {AVRO_CONTENT_TYPE} (one record in Confluent wire format)"
                ),
            )
        }
    };

    let now = now();
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut subjects = Subjects::new(&*state);
    for (index, event) in parsed.into_iter().enumerate() {
        let record = event.and_then(|event| {
            subjects.check(&event)?;
            ingest::to_record(&state.codec, &event, now, false)
                .map(|record| (event.envelope.event_id, record))
        });
        match record {
            Ok((event_id, record)) => {
                records.push(record);
                accepted.push(json!({ "index": index, "event_id": event_id }));
            }
            Err(reason) => rejected.push(json!({ "index": index, "reason": reason })),
        }
    }
    if !records.is_empty() {
        if let Err(error) = state.log.append(&state.ingest_topic, records).await {
            tracing::error!(%error, "appending posted events failed");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the events were not stored: {error}; send them again (events are deduplicated by event_id)"),
            );
        }
    }
    tracing::debug!(
        accepted = accepted.len(),
        rejected = rejected.len(),
        "events posted"
    );
    let status = match (accepted.is_empty(), rejected.is_empty()) {
        (false, true) => StatusCode::ACCEPTED,
        (false, false) => StatusCode::UNPROCESSABLE_ENTITY,
        (true, _) => StatusCode::BAD_REQUEST,
    };
    (
        status,
        Json(json!({ "accepted": accepted, "rejected": rejected })),
    )
        .into_response()
}

/// Refuses events about a household or person the registry does not know — but only when it
/// can tell: the serving store does not have them, no earlier event of the same request
/// creates them, and every stage is idle (nothing written but not yet served that could
/// create them). While the pipeline has a backlog such events are accepted; the processor
/// parks them until their household appears and dead-letters them, with the reason, after
/// `--max-wait-seconds`.
pub(crate) struct Subjects<'a, L: Log> {
    state: &'a ApiState<L>,
    /// Households registered (or founded by a move) earlier in this request.
    created: HashSet<HouseholdId>,
    /// Whether the pipeline was idle, asked once per request and only if needed.
    idle: Option<bool>,
}

impl<'a, L: Log> Subjects<'a, L> {
    pub(crate) fn new(state: &'a ApiState<L>) -> Self {
        Subjects {
            state,
            created: HashSet::new(),
            idle: None,
        }
    }

    pub(crate) fn check(&mut self, event: &Event) -> Result<(), String> {
        if let Payload::PersonMoved(p) = &event.payload {
            if p.founds_new_household {
                self.created.insert(p.to_household_id.clone());
            }
        }
        if event.payload.is_area_event() {
            return Ok(());
        }
        if let Payload::HouseholdRegistered(_) = &event.payload {
            if let Some(h) = &event.envelope.household_id {
                self.created.insert(h.clone());
            }
            return Ok(());
        }
        match (target_household(event), event.subject_person()) {
            (Some(h), _)
                if !self.created.contains(h)
                    && matches!(self.state.store.household(h), Ok(None))
                    && self.pipeline_idle() =>
            {
                Err(format!(
                    "unknown household {h}: the registry has no household with this id ({} event {}); register it first with a HouseholdRegistered event, in this request or an earlier one",
                    event.event_type(),
                    event.envelope.event_id
                ))
            }
            (None, Some(p))
                if matches!(self.state.store.household_of(p), Ok(None)) && self.pipeline_idle() =>
            {
                Err(format!(
                    "unknown person {p}: the registry has no household with this person ({} event {}); name the household in household_id, or register the person first",
                    event.event_type(),
                    event.envelope.event_id
                ))
            }
            _ => Ok(()),
        }
    }

    fn pipeline_idle(&mut self) -> bool {
        *self.idle.get_or_insert_with(|| self.state.idle())
    }
}
