//! `POST /v1/events`.

use crate::{problem, ApiState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dsr_core::{Event, Micros};
use dsr_log::Log;
use dsr_pipeline::ingest;
use dsr_pipeline::runner::Codec;
use serde_json::{json, Value};
use std::sync::Arc;

/// The media type of one Avro record in Confluent wire format.
pub const AVRO_CONTENT_TYPE: &str = "application/vnd.dsr.avro";

/// At most this many events in one JSON array.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

fn now() -> Micros {
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
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
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
    for (index, event) in parsed.into_iter().enumerate() {
        let record = event.and_then(|event| {
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
