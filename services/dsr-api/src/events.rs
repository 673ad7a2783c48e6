//! `POST /v1/events`.

use crate::answers::{AcceptedEvent, EventsAnswer, RejectedEvent};
use crate::{problem, ApiState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::Identity;
use dsr_core::reducer::target_household;
use dsr_core::{Event, HouseholdId, Micros, Payload};
use dsr_pipeline::ingest;
use dsr_pipeline::runner::Codec;
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

/// A JSON body split into its events, each still text: one object, or an array of them. The
/// events are parsed one by one afterwards (a bad one is refused alone), straight from the text:
/// building a `serde_json::Value` tree first doubled the cost of a bulk load's parsing.
fn split_json(body: &[u8]) -> Result<Vec<&serde_json::value::RawValue>, Response> {
    let not_json = |e: serde_json::Error| {
        problem(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    };
    let whole: &serde_json::value::RawValue = serde_json::from_slice(body).map_err(not_json)?;
    match whole.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(whole.get()).map_err(not_json),
        Some(b'{') => Ok(vec![whole]),
        _ => Err(problem(
            StatusCode::BAD_REQUEST,
            "the body must be one life event (a JSON object) or an array of them",
        )),
    }
}

/// One life event (a JSON object), a JSON array of up to 10,000, or one Avro record in Confluent
/// wire format. Answers once the accepted events are durable.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(
        description = "A life event in the JSON shape of `dsr generate` (envelope fields, `event_type`, `payload`; see docs/data-dictionary.md), an array of them, or one Avro record (magic byte, 4-byte schema id, body) as application/vnd.dsr.avro",
        content(
            (Object = "application/json"),
            (Vec<u8> = "application/vnd.dsr.avro")
        )
    ),
    responses(
        (status = 202, description = "All events stored durably", body = EventsAnswer),
        (status = 422, description = "Some events stored, the others refused with reasons", body = EventsAnswer),
        (status = 400, description = "No event stored: each refused with its reason, or the body is not JSON", body = EventsAnswer),
        (status = 413, description = "Too many events or bytes in one request", body = crate::answers::Problem),
        (status = 415, description = "Unsupported content type", body = crate::answers::Problem),
        (status = 503, description = "The events could not be stored; send again", body = crate::answers::Problem)
    ))]
pub async fn post_events(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = crate::access::check_signature(&identity, &headers, &body) {
        return r;
    }
    let content_type = content_type(&headers);
    // Each input: the event, or why it is not one.
    let parsed: Vec<Result<Event, String>> = match content_type.as_str() {
        "application/json" | "" => match split_json(&body) {
            Ok(items) => {
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
                    .iter()
                    .map(|item| dsr_pipeline::ingest::parse_json(item.get()))
                    .collect()
            }
            Err(answer) => return answer,
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
    let mut subjects = Subjects::new(&state, &identity);
    for (index, event) in parsed.into_iter().enumerate() {
        let record = event.and_then(|event| {
            subjects.check(&event)?;
            ingest::to_record(&state.codec, &event, now, false)
                .map(|record| (event.envelope.event_id, record))
        });
        match record {
            Ok((event_id, record)) => {
                records.push(record);
                accepted.push(AcceptedEvent { index, event_id });
            }
            Err(reason) => rejected.push(RejectedEvent { index, reason }),
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
    let outcome = format!("accepted {}, rejected {}", accepted.len(), rejected.len());
    if let Err(r) = crate::access::audit(
        &state,
        Some(&identity),
        "events.publish",
        Vec::new(),
        None,
        outcome,
    ) {
        return r;
    }
    let status = match (accepted.is_empty(), rejected.is_empty()) {
        (false, true) => StatusCode::ACCEPTED,
        (false, false) => StatusCode::UNPROCESSABLE_ENTITY,
        (true, _) => StatusCode::BAD_REQUEST,
    };
    (status, Json(EventsAnswer { accepted, rejected })).into_response()
}

/// Refuses events about a household or person the registry does not know — but only when it
/// can tell: the serving store does not have them, no earlier event of the same request
/// creates them, and every stage is idle (nothing written but not yet served that could
/// create them). While the pipeline has a backlog such events are accepted; the processor
/// parks them until their household appears and dead-letters them, with the reason, after
/// `--max-wait-seconds`.
pub(crate) struct Subjects<'a> {
    state: &'a ApiState,
    identity: &'a Identity,
    /// Households registered (or founded by a move) earlier in this request.
    created: HashSet<HouseholdId>,
    /// Whether the pipeline was idle, asked once per request and only if needed.
    idle: Option<bool>,
}

impl<'a> Subjects<'a> {
    pub(crate) fn new(state: &'a ApiState, identity: &'a Identity) -> Self {
        Subjects {
            state,
            identity,
            created: HashSet::new(),
            idle: None,
        }
    }

    pub(crate) fn check(&mut self, event: &Event) -> Result<(), String> {
        let client = &self.identity.client;
        client.may_publish(event)?;
        // A client bound to areas may only touch households inside them; a caseworker's
        // correction must name a household the registry knows, in the caseworker's areas.
        if client.scope != dsr_access::AreaScope::Everywhere
            || client.role == dsr_access::Role::Caseworker
        {
            if let Some(h) = target_household(event) {
                match self.state.store.household(h) {
                    Ok(Some(known)) if !client.scope.contains(&known.area) => {
                        return Err(format!(
                            "household {h} is outside the areas client `{}` is registered for",
                            client.id
                        ))
                    }
                    Ok(None) if client.role == dsr_access::Role::Caseworker => {
                        return Err(format!(
                            "a correction must name a household the registry knows in your areas; {h} is not one"
                        ))
                    }
                    _ => {}
                }
            }
        }
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
        // Idle first, then the lookup: if every stage had caught up *before* the serving store
        // was read, everything accepted earlier (a registration in an earlier request) is in
        // it. Read the other way round, the pipeline could finish that registration between
        // the two and the event would be refused although its household exists.
        match (target_household(event), event.subject_person()) {
            (Some(h), _)
                if !self.created.contains(h)
                    && self.pipeline_idle()
                    && matches!(self.state.store.household(h), Ok(None)) =>
            {
                Err(format!(
                    "unknown household {h}: the registry has no household with this id ({} event {}); register it first with a HouseholdRegistered event, in this request or an earlier one",
                    event.event_type(),
                    event.envelope.event_id
                ))
            }
            (None, Some(p))
                if self.pipeline_idle() && matches!(self.state.store.household_of(p), Ok(None)) =>
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
