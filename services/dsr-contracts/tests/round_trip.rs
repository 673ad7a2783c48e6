//! Every kind of event survives Avro and JSON unchanged.

mod common;

use dsr_contracts::avro::{from_value, to_value};
use dsr_contracts::schemas::{self, life_event_schema};
use dsr_contracts::{decode, decode_json, encode, encode_json_line, fixtures};
use dsr_core::event::EVENT_TYPES;

#[test]
fn fixtures_cover_every_payload_type_in_order() {
    let types: Vec<&str> = fixtures::one_of_each()
        .iter()
        .map(|e| e.event_type())
        .collect();
    assert_eq!(types, EVENT_TYPES);
}

#[test]
fn the_payload_union_lists_every_event_type_in_order() {
    assert_eq!(schemas::current().payload_types(), EVENT_TYPES);
}

#[test]
fn avro_round_trip_of_every_fixture() {
    for event in fixtures::all() {
        let bytes = encode(&event).unwrap();
        let back = decode(&bytes, life_event_schema())
            .unwrap_or_else(|e| panic!("{}: {e}", event.event_type()));
        assert_eq!(back, event, "{}", event.event_type());
    }
}

#[test]
fn avro_round_trip_through_value() {
    for event in fixtures::all() {
        assert_eq!(from_value(to_value(&event).unwrap()).unwrap(), event);
    }
}

/// A writer schema that is not the very same object takes the schema-resolution path.
#[test]
fn avro_round_trip_with_released_v1_as_writer() {
    let v1 = schemas::load_dir(&common::repo().join("schemas/released/v1")).unwrap();
    for event in fixtures::all() {
        let bytes = dsr_contracts::avro::encode_with(&event, &v1).unwrap();
        assert_eq!(bytes, encode(&event).unwrap());
        assert_eq!(decode(&bytes, v1.life_event()).unwrap(), event);
    }
}

#[test]
fn json_round_trip_of_every_fixture() {
    for event in fixtures::all() {
        let line = encode_json_line(&event).unwrap();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        assert_eq!(decode_json(&line).unwrap(), event);
    }
}

/// The JSON form's shape: envelope fields at the top, `event_type` and `payload`.
#[test]
fn json_form_is_flat_envelope_plus_payload() {
    let line = encode_json_line(&fixtures::person_died()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["event_type"], "PersonDied");
    assert_eq!(json["payload"]["person_id"], "P-1001");
    assert_eq!(json["source_system"], "crvs");
}

#[test]
fn dates_and_times_use_avro_logical_types() {
    use apache_avro::types::Value;
    let mut v = to_value(&fixtures::person_died()).unwrap();
    assert!(matches!(
        common::field_mut(&mut v, "occurred_at"),
        Value::TimestampMicros(_)
    ));
    assert!(matches!(
        common::field_mut(&mut v, "event_id"),
        Value::Uuid(_)
    ));
    assert!(matches!(
        common::field_mut(&mut v, "payload.date_of_death"),
        Value::Date(_)
    ));
}

/// Avro carries any `i64` time, beyond what the JSON form's RFC 3339 text can.
#[test]
fn avro_carries_the_full_range_of_times_and_dates() {
    let mut event = fixtures::shock_declared();
    event.envelope.occurred_at = dsr_core::Micros(i64::MIN);
    event.envelope.recorded_at = dsr_core::Micros(i64::MAX);
    let mut died = fixtures::person_died();
    if let dsr_core::Payload::PersonDied(p) = &mut died.payload {
        p.date_of_death = dsr_core::Date(i32::MIN);
    }
    for event in [event, died] {
        let bytes = encode(&event).unwrap();
        assert_eq!(decode(&bytes, life_event_schema()).unwrap(), event);
    }
}
