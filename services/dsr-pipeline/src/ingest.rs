//! Turning a life event from outside (a JSON line, an HTTP request) into a log record: validated
//! the same way for `dsr publish` and the HTTP API, so both refuse the same things with the
//! same reasons.

use crate::runner::Codec;
use dsr_core::reducer::target_household;
use dsr_core::{Event, Micros};
use dsr_log::Record;

/// Parses one JSON life event (the `dsr_core::Event` shape, as `dsr generate` writes them).
pub fn parse_json(text: &str) -> Result<Event, String> {
    serde_json::from_str(text).map_err(|e| format!("not a life event in JSON: {e}"))
}

/// Validates `event` and encodes it as a record: keyed by household where the event names one,
/// else by person, else (an area-wide shock) by event id — source topics only; `household_topic`
/// requires a household.
pub fn to_record<C: Codec>(
    codec: &C,
    event: &Event,
    now: Micros,
    household_topic: bool,
) -> Result<Record, String> {
    event.validate(now).map_err(|e| {
        format!(
            "invalid {} event {}: {e}",
            event.event_type(),
            event.envelope.event_id
        )
    })?;
    let key = match (target_household(event), event.subject_person()) {
        (Some(h), _) => h.as_str().to_owned(),
        (None, Some(p)) if !household_topic => p.as_str().to_owned(),
        (None, None) if !household_topic && event.payload.is_area_event() => {
            event.envelope.event_id.to_string()
        }
        _ => {
            return Err(format!(
                "no household: {} event {} names no household, and the household topic needs one",
                event.event_type(),
                event.envelope.event_id
            ))
        }
    };
    let value = codec
        .encode_event(event)
        .map_err(|e| format!("cannot encode as Avro: {e}"))?;
    Ok(Record::new(key, value))
}
