//! Decoding says precisely what is wrong.

mod common;

use apache_avro::types::Value;
use common::{current_json, field_mut, set_of, type_json, write_raw};
use dsr_contracts::avro::{to_value, DecodeError, EncodeError};
use dsr_contracts::schemas::life_event_schema;
use dsr_contracts::{decode, decode_json, encode, fixtures};
use dsr_core::event::EVENT_TYPES;
use serde_json::json;

#[test]
fn unknown_enum_symbol_names_the_field_and_the_symbol() {
    // A producer on a newer schema, whose Sex has a fifth symbol.
    let mut newer = current_json();
    type_json(&mut newer, "Sex")["symbols"]
        .as_array_mut()
        .unwrap()
        .push(json!("intersex"));
    let newer = set_of(&newer);

    let mut value = to_value(&fixtures::person_born()).unwrap();
    *field_mut(&mut value, "payload.child.sex") = Value::Enum(4, "intersex".into());
    let bytes = write_raw(newer.life_event(), value);

    match decode(&bytes, newer.life_event()) {
        Err(DecodeError::UnknownSymbol {
            field,
            enum_name,
            symbol,
            known,
        }) => {
            assert_eq!(field, "payload.PersonBorn.child.sex");
            assert_eq!(enum_name, "Sex");
            assert_eq!(symbol, "intersex");
            assert_eq!(known, ["male", "female", "other", "unknown"]);
        }
        other => panic!("{other:?}"),
    }

    // Data from the newer producer that uses only known symbols decodes.
    let event = fixtures::household_registered();
    let bytes = dsr_contracts::avro::encode_with(&event, &newer).unwrap();
    assert_eq!(decode(&bytes, newer.life_event()).unwrap(), event);
}

#[test]
fn unknown_symbol_inside_a_list_names_the_element() {
    let mut newer = current_json();
    type_json(&mut newer, "IncomeSource")["symbols"]
        .as_array_mut()
        .unwrap()
        .push(json!("lottery"));
    let newer = set_of(&newer);
    let mut value = to_value(&fixtures::household_registered()).unwrap();
    let Value::Array(members) = field_mut(&mut value, "payload.members") else {
        panic!()
    };
    let Value::Array(incomes) = field_mut(&mut members[1], "incomes") else {
        panic!()
    };
    *field_mut(&mut incomes[0], "source") = Value::Enum(7, "lottery".into());
    let err = decode(&write_raw(newer.life_event(), value), newer.life_event()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, DecodeError::UnknownSymbol { field, .. }
            if field == "payload.HouseholdRegistered.members[1].incomes[0].source"),
        "{message}"
    );
    assert!(
        message.contains("lottery") && message.contains("IncomeSource"),
        "{message}"
    );
}

#[test]
fn malformed_bytes_are_reported_as_such() {
    let bytes = encode(&fixtures::household_registered()).unwrap();
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        let err = decode(&bytes[..cut], life_event_schema()).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed(_)),
            "cut {cut}: {err:?}"
        );
    }
    let err = decode(&[0xff; 12], life_event_schema()).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("writer schema"), "{err}");

    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0, 0]);
    let err = decode(&longer, life_event_schema()).unwrap_err();
    assert!(
        matches!(err, DecodeError::TrailingBytes { extra: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn event_type_must_name_the_payload() {
    let mut value = to_value(&fixtures::person_born()).unwrap();
    let died = EVENT_TYPES.iter().position(|t| *t == "PersonDied").unwrap();
    *field_mut(&mut value, "event_type") = Value::Enum(died as u32, "PersonDied".into());
    let bytes = write_raw(life_event_schema(), value);
    match decode(&bytes, life_event_schema()) {
        Err(DecodeError::EventTypeMismatch {
            event_type,
            payload,
        }) => {
            assert_eq!(event_type, "PersonDied");
            assert_eq!(payload, "PersonBorn");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn negative_counts_are_out_of_range() {
    let mut value = to_value(&fixtures::household_registered()).unwrap();
    *field_mut(&mut value, "payload.dwelling.rooms") = Value::Int(-2);
    let bytes = write_raw(life_event_schema(), value);
    match decode(&bytes, life_event_schema()) {
        Err(DecodeError::OutOfRange { field, value }) => {
            assert_eq!(field, "payload.HouseholdRegistered.dwelling.rooms");
            assert_eq!(value, -2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn counts_beyond_avro_int_do_not_encode() {
    let mut event = fixtures::household_registered();
    let dsr_core::Payload::HouseholdRegistered(h) = &mut event.payload else {
        panic!()
    };
    h.assets.mobile_phones = u32::MAX;
    match encode(&event) {
        Err(EncodeError::OutOfRange { field, value }) => {
            assert_eq!(field, "payload.assets.mobile_phones");
            assert_eq!(value, u64::from(u32::MAX));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_the_current_schema_cannot_resolve_is_incompatible() {
    // A writer whose Dwelling.rooms is a string: resolution to int fails.
    let mut other = current_json();
    for f in type_json(&mut other, "Dwelling")["fields"]
        .as_array_mut()
        .unwrap()
    {
        if f["name"] == "rooms" {
            f["type"] = json!("string");
        }
    }
    let other = set_of(&other);
    let mut value = to_value(&fixtures::household_registered()).unwrap();
    *field_mut(&mut value, "payload.dwelling.rooms") = Value::String("two".into());
    let bytes = write_raw(other.life_event(), value);
    let err = decode(&bytes, other.life_event()).unwrap_err();
    assert!(matches!(err, DecodeError::Incompatible(_)), "{err:?}");
}

#[test]
fn bad_json_says_where() {
    let err = decode_json(r#"{"event_id": "not-a-uuid"}"#).unwrap_err();
    assert!(matches!(err, DecodeError::Json(_)), "{err:?}");
    let line = dsr_contracts::encode_json_line(&fixtures::person_born())
        .unwrap()
        .replace("\"female\"", "\"intersex\"")
        .replace("\"male\"", "\"intersex\"");
    let err = decode_json(&line).unwrap_err().to_string();
    assert!(err.contains("intersex"), "{err}");
}

/// Avro matches union branches by record name; apache-avro's own resolution takes the first
/// branch the data fits. With a reader whose `PersonDied.date_of_death` has a default, an
/// `EmploymentChanged` ({person_id, status}) would fit `PersonDied`, which comes first.
#[test]
fn payloads_resolve_by_record_name_not_by_shape() {
    let mut reader = current_json();
    for f in type_json(&mut reader, "PersonDied")["fields"]
        .as_array_mut()
        .unwrap()
    {
        if f["name"] == "date_of_death" {
            f["default"] = json!(0);
        }
    }
    let reader = set_of(&reader);
    for event in fixtures::all() {
        let bytes = encode(&event).unwrap();
        let back = dsr_contracts::avro::decode_with(&bytes, life_event_schema(), &reader)
            .unwrap_or_else(|e| panic!("{}: {e}", event.event_type()));
        assert_eq!(back, event);
    }
}

#[test]
fn a_kind_of_event_this_dsr_does_not_know_is_named() {
    let mut newer = current_json();
    type_json(&mut newer, "EventType")["symbols"]
        .as_array_mut()
        .unwrap()
        .push(json!("PetAdopted"));
    for f in type_json(&mut newer, "LifeEvent")["fields"]
        .as_array_mut()
        .unwrap()
    {
        if f["name"] == "payload" {
            f["type"].as_array_mut().unwrap().push(json!("PetAdopted"));
        }
    }
    newer.push((
        "PetAdopted".into(),
        json!({"type": "record", "name": "PetAdopted", "namespace": "dsr.events",
               "fields": [{"name": "species", "type": "string"}]}),
    ));
    let newer = set_of(&newer);
    let mut value = to_value(&fixtures::person_died()).unwrap();
    *field_mut(&mut value, "event_type") = Value::Enum(16, "PetAdopted".into());
    let Value::Record(fields) = &mut value else {
        panic!()
    };
    fields.iter_mut().find(|(n, _)| n == "payload").unwrap().1 = Value::Union(
        16,
        Box::new(Value::Record(vec![(
            "species".into(),
            Value::String("goat".into()),
        )])),
    );
    let bytes = write_raw(newer.life_event(), value);
    match decode(&bytes, newer.life_event()) {
        Err(DecodeError::UnknownEventType(t)) => assert_eq!(t, "PetAdopted"),
        other => panic!("{other:?}"),
    }
}
