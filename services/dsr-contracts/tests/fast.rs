//! `avro::fast` writes the very bytes the `Value` path writes, reads them into the same events,
//! and fails the same way on bad data.

mod common;

use apache_avro::types::Value;
use common::{field_mut, write_raw};
use dsr_contracts::avro::{fast, to_value, DecodeError, EncodeError};
use dsr_contracts::schemas::life_event_schema;
use dsr_contracts::{decode, encode, fixtures};
use dsr_core::event::EVENT_TYPES;
use dsr_core::{Event, Payload};
use std::mem::discriminant;

fn slow_decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    decode(bytes, life_event_schema())
}

/// Same bytes both ways, and each decoder reads the other's bytes into the event.
fn same(event: &Event) {
    let slow = encode(event).unwrap_or_else(|e| panic!("{}: {e}", event.event_type()));
    let quick = fast::encode(event).unwrap_or_else(|e| panic!("{}: {e}", event.event_type()));
    assert_eq!(quick, slow, "{}: {event:?}", event.event_type());
    let back = fast::decode(&slow).unwrap_or_else(|e| panic!("{}: {e}", event.event_type()));
    assert_eq!(&back, event);
}

#[test]
fn the_same_bytes_for_every_fixture() {
    for event in fixtures::all() {
        same(&event);
    }
}

/// A generated population: every registration and a year of life events.
#[test]
fn the_same_bytes_for_a_generated_population() {
    let population = dsr_synth::fixtures::small_population(11, 300);
    let events: Vec<&Event> = population
        .households
        .iter()
        .chain(&population.events)
        .collect();
    assert!(events.len() > 1_000, "{}", events.len());
    let mut kinds = std::collections::BTreeSet::new();
    for event in events {
        same(event);
        kinds.insert(event.event_type());
    }
    // The generator produces most kinds of event; the fixtures cover the rest.
    assert!(kinds.len() >= 10, "{kinds:?}");
}

#[test]
fn encode_into_appends() {
    let event = fixtures::household_registered();
    let mut out = vec![0, 0, 0, 0, 7];
    fast::encode_into(&event, &mut out).unwrap();
    assert_eq!(out[..5], [0, 0, 0, 0, 7]);
    assert_eq!(out[5..], encode(&event).unwrap());
}

/// Both decoders agree on every prefix of every fixture: the same error variant, or (for the
/// whole message) the same event.
#[test]
fn truncated_bytes_fail_alike() {
    for event in fixtures::all() {
        let bytes = encode(&event).unwrap();
        for cut in 0..bytes.len() {
            let (slow, quick) = (slow_decode(&bytes[..cut]), fast::decode(&bytes[..cut]));
            match (&slow, &quick) {
                (Err(DecodeError::Malformed(_)), Err(DecodeError::Malformed(_))) => {}
                _ => panic!(
                    "{} cut at {cut}: slow {slow:?}, fast {quick:?}",
                    event.event_type()
                ),
            }
        }
    }
}

#[test]
fn trailing_bytes_fail_alike() {
    let mut bytes = encode(&fixtures::person_died()).unwrap();
    bytes.extend_from_slice(&[0, 0]);
    let total = bytes.len();
    for result in [slow_decode(&bytes), fast::decode(&bytes)] {
        match result {
            Err(DecodeError::TrailingBytes { extra: 2, total: t }) => assert_eq!(t, total),
            other => panic!("{other:?}"),
        }
    }
}

/// Every single-byte change of every fixture: both decoders succeed with the same event or
/// fail with the same kind of error.
#[test]
fn corrupted_bytes_fail_alike() {
    let mut compared = 0;
    for event in fixtures::all() {
        let bytes = encode(&event).unwrap();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                let (slow, quick) = (slow_decode(&bad), fast::decode(&bad));
                match (&slow, &quick) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "byte {i} ^ {flip:#x}"),
                    (Err(a), Err(b)) => assert_eq!(
                        discriminant(a),
                        discriminant(b),
                        "{} byte {i} ^ {flip:#x}: slow {a}, fast {b}",
                        event.event_type()
                    ),
                    _ => panic!(
                        "{} byte {i} ^ {flip:#x}: slow {slow:?}, fast {quick:?}",
                        event.event_type()
                    ),
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 10_000, "{compared}");
}

#[test]
fn negative_counts_are_out_of_range_with_the_same_path() {
    for (event, path, field) in [
        (
            fixtures::household_registered(),
            "payload.dwelling.rooms",
            "payload.HouseholdRegistered.dwelling.rooms",
        ),
        (
            fixtures::household_registered(),
            "payload.assets.mobile_phones",
            "payload.HouseholdRegistered.assets.mobile_phones",
        ),
        (
            fixtures::assets_reported(),
            "payload.assets.mobile_phones",
            "payload.AssetsReported.assets.mobile_phones",
        ),
        (fixtures::person_died(), "schema_version", "schema_version"),
    ] {
        let mut value = to_value(&event).unwrap();
        *field_mut(&mut value, path) = Value::Int(-2);
        let bytes = write_raw(life_event_schema(), value);
        for result in [slow_decode(&bytes), fast::decode(&bytes)] {
            match result {
                Err(DecodeError::OutOfRange { field: f, value }) => {
                    assert_eq!(f, field);
                    assert_eq!(value, -2);
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}

#[test]
fn event_type_must_name_the_payload() {
    let mut value = to_value(&fixtures::person_born()).unwrap();
    let died = EVENT_TYPES.iter().position(|t| *t == "PersonDied").unwrap();
    *field_mut(&mut value, "event_type") = Value::Enum(died as u32, "PersonDied".into());
    let bytes = write_raw(life_event_schema(), value);
    for result in [slow_decode(&bytes), fast::decode(&bytes)] {
        match result {
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
}

/// An enum or union index the schema does not have, and a UUID that is not one: malformed
/// on both paths.
#[test]
fn impossible_indexes_and_bad_uuids_are_malformed() {
    // The first byte of PersonDied's bytes is the event_id's length (36, zigzag 72); the
    // UUID's text follows. Break the text.
    let bytes = encode(&fixtures::person_died()).unwrap();
    assert_eq!(bytes[0], 72);
    let mut bad_uuid = bytes.clone();
    bad_uuid[1] = b'g';
    // event_type (enum index) right after the UUID: index 63 (zigzag 126), beyond EventType.
    let mut bad_enum = bytes.clone();
    bad_enum[37] = 126;
    for bad in [bad_uuid, bad_enum] {
        for result in [slow_decode(&bad), fast::decode(&bad)] {
            assert!(
                matches!(result, Err(DecodeError::Malformed(_))),
                "{result:?}"
            );
        }
    }
    // Sex beyond its code list, inside a member.
    let mut bad = encode(&fixtures::person_born()).unwrap();
    let sex_at = locate_sex(&bad);
    bad[sex_at] = 40; // index 20
    for result in [slow_decode(&bad), fast::decode(&bad)] {
        let err = result.unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    }
    let message = fast::decode(&bad).unwrap_err().to_string();
    assert!(message.contains("Sex"), "{message}");
}

/// Where the child's `sex` is in `person_born()`'s bytes: the one byte that, changed to the
/// next symbol, decodes to the same event with the next sex.
fn locate_sex(bytes: &[u8]) -> usize {
    let event = fixtures::person_born();
    let Payload::PersonBorn(born) = &event.payload else {
        panic!()
    };
    let mut other = event.clone();
    let Payload::PersonBorn(b) = &mut other.payload else {
        panic!()
    };
    b.child.sex = dsr_core::codes::Sex::Other;
    let other_bytes = encode(&other).unwrap();
    assert_eq!(other_bytes.len(), bytes.len());
    let diff: Vec<usize> = (0..bytes.len())
        .filter(|i| bytes[*i] != other_bytes[*i])
        .collect();
    assert_eq!(diff.len(), 1, "{born:?}");
    diff[0]
}

#[test]
fn counts_beyond_avro_int_do_not_encode_with_the_same_path() {
    let mut event = fixtures::household_registered();
    let Payload::HouseholdRegistered(h) = &mut event.payload else {
        panic!()
    };
    h.assets.mobile_phones = u32::MAX;
    let mut rooms = event.clone();
    let Payload::HouseholdRegistered(r) = &mut rooms.payload else {
        panic!()
    };
    r.assets.mobile_phones = 1;
    r.dwelling.rooms = 1 << 31;
    let mut version = fixtures::person_died();
    version.envelope.schema_version = u32::MAX;
    for (event, field) in [
        (event, "payload.assets.mobile_phones"),
        (rooms, "payload.dwelling.rooms"),
        (version, "schema_version"),
    ] {
        for result in [encode(&event), fast::encode(&event)] {
            match result {
                Err(EncodeError::OutOfRange { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut out = vec![1, 2, 3];
        assert!(fast::encode_into(&event, &mut out).is_err());
        assert_eq!(out, [1, 2, 3], "left as it was");
    }
}

/// Amounts of an income source listed twice add up, on both paths.
#[test]
fn an_income_source_listed_twice_adds_up() {
    let mut value = to_value(&fixtures::member_joined()).unwrap();
    let Value::Array(incomes) = field_mut(&mut value, "payload.member.incomes") else {
        panic!()
    };
    let first = incomes[0].clone();
    incomes.push(first);
    let bytes = write_raw(life_event_schema(), value);
    let (slow, quick) = (slow_decode(&bytes).unwrap(), fast::decode(&bytes).unwrap());
    assert_eq!(slow, quick);
    let Payload::MemberJoined(joined) = &quick.payload else {
        panic!()
    };
    assert_eq!(
        joined
            .member
            .incomes
            .get(dsr_core::codes::IncomeSource::Agriculture),
        2.0 * 1_250.5
    );
}
