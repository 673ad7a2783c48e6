//! The pipeline's outputs, `HouseholdRecord` and `EligibilityChange`, survive Avro unchanged,
//! and decoding says what is wrong.

mod common;

use apache_avro::types::Value;
use common::{current_json, field_mut, set_of, type_json, write_raw};
use dsr_contracts::avro::{
    eligibility_change_from_value, eligibility_change_to_value, fast, household_from_value,
    household_to_value, DecodeError, EncodeError,
};
use dsr_contracts::schemas::{eligibility_change_schema, household_record_schema};
use dsr_contracts::{
    decode_eligibility_change, decode_household, encode_eligibility_change, encode_household,
    fixtures,
};
use dsr_core::eligibility::{ChangeKind, Program, Scalar};
use dsr_core::reducer::target_household;
use dsr_core::{process, Context, EligibilityChange, Household, HouseholdId, PmtModel};
use serde_json::json;
use std::collections::HashMap;

/// Both paths: the same bytes, and each decodes them into the household.
fn household_round_trip(h: &Household) {
    let bytes = encode_household(h).unwrap_or_else(|e| panic!("{}: {e}", h.household_id));
    let back = decode_household(&bytes, household_record_schema())
        .unwrap_or_else(|e| panic!("{}: {e}", h.household_id));
    assert_eq!(&back, h);
    assert_eq!(fast::encode_household(h).unwrap(), bytes, "{h:?}");
    assert_eq!(&fast::decode_household(&bytes).unwrap(), h);
    let ids: Vec<_> = h.members.iter().map(|m| m.person_id.clone()).collect();
    assert_eq!(fast::decode_household_members(&bytes).unwrap(), ids);
    assert_eq!(
        &household_from_value(household_to_value(h).unwrap()).unwrap(),
        h
    );
}

fn change_round_trip(c: &EligibilityChange) {
    let bytes = encode_eligibility_change(c).unwrap();
    assert_eq!(
        &decode_eligibility_change(&bytes, eligibility_change_schema()).unwrap(),
        c
    );
    assert_eq!(fast::encode_eligibility_change(c).unwrap(), bytes);
    assert_eq!(&fast::decode_eligibility_change(&bytes).unwrap(), c);
    assert_eq!(
        &eligibility_change_from_value(eligibility_change_to_value(c).unwrap()).unwrap(),
        c
    );
}

#[test]
fn every_household_fixture_round_trips() {
    let records = fixtures::household_records();
    // The fixtures set every field, and hold every kind of rule input.
    let full = &records[0];
    assert!(full.dwelling.is_some() && full.shock_damage.is_some() && full.need_score.is_some());
    assert!(!full.recent_events.is_empty() && full.late_events > 0 && full.version > 0);
    let kinds: std::collections::BTreeSet<&str> = records
        .iter()
        .flat_map(|h| &h.programs)
        .flat_map(|p| p.inputs.iter())
        .map(|(_, value)| match value {
            Scalar::Bool(_) => "bool",
            Scalar::Int(_) => "int",
            Scalar::Number(_) => "number",
            Scalar::Text(_) => "text",
            Scalar::Digest(_) => "digest",
        })
        .collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    for h in &records {
        household_round_trip(h);
    }
}

#[test]
fn every_eligibility_change_fixture_round_trips() {
    let changes = fixtures::eligibility_changes();
    let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Entered,
            ChangeKind::Changed,
            ChangeKind::Exited,
            ChangeKind::Unchanged
        ]
    );
    for c in &changes {
        change_round_trip(c);
    }
}

/// Households and changes as the domain produces them: a generated population processed with
/// the shipped model and programs; every record after every event, and every change.
#[test]
fn processed_households_and_changes_round_trip() {
    let population = dsr_synth::fixtures::small_population(5, 150);
    let model = PmtModel::default_model();
    let programs: Vec<Program> = [
        include_str!("../../../programs/child-grant.yaml"),
        include_str!("../../../programs/old-age-pension.yaml"),
        include_str!("../../../programs/food-aid.yaml"),
    ]
    .iter()
    .map(|t| Program::from_yaml(t).unwrap())
    .collect();
    let ctx = Context {
        model: &model,
        programs: &programs,
    };
    let mut states: HashMap<HouseholdId, Option<Household>> = HashMap::new();
    let (mut records, mut changes) = (0, 0);
    for event in population.households.iter().chain(&population.events) {
        let Some(hid) = target_household(event) else {
            continue;
        };
        let slot = states.entry(hid.clone()).or_default();
        let Ok(processed) = process(slot, event, &ctx) else {
            continue;
        };
        household_round_trip(slot.as_ref().unwrap());
        records += 1;
        for c in &processed.changes {
            change_round_trip(c);
            changes += 1;
        }
    }
    assert!(records > 500, "{records}");
    assert!(changes > 20, "{changes}");
    let with_programs = states
        .values()
        .flatten()
        .filter(|h| !h.programs.is_empty() && h.need_score.is_some())
        .count();
    assert!(with_programs > 100, "{with_programs}");
}

#[test]
fn negative_versions_are_out_of_range() {
    let h = &fixtures::household_records()[0];
    for (path, field, negative) in [
        ("version", "version", Value::Long(-1)),
        ("late_events", "late_events", Value::Long(-1)),
        ("dwelling.rooms", "dwelling.rooms", Value::Int(-1)),
        (
            "assets.mobile_phones",
            "assets.mobile_phones",
            Value::Int(-1),
        ),
    ] {
        let mut value = household_to_value(h).unwrap();
        *field_mut(&mut value, path) = negative;
        let bytes = write_raw(household_record_schema(), value);
        for result in [
            decode_household(&bytes, household_record_schema()),
            fast::decode_household(&bytes),
        ] {
            match result {
                Err(DecodeError::OutOfRange { field: f, value }) => {
                    assert_eq!(f, field);
                    assert_eq!(value, -1);
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let mut value = eligibility_change_to_value(&fixtures::eligibility_changes()[0]).unwrap();
    *field_mut(&mut value, "household_version") = Value::Long(-7);
    let bytes = write_raw(eligibility_change_schema(), value);
    for result in [
        decode_eligibility_change(&bytes, eligibility_change_schema()),
        fast::decode_eligibility_change(&bytes),
    ] {
        match result {
            Err(DecodeError::OutOfRange { field, value: -7 }) => {
                assert_eq!(field, "household_version")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A program's negative rule version names the program's index, on both paths.
#[test]
fn a_negative_rule_version_names_the_program() {
    let h = &fixtures::household_records()[0];
    let mut value = household_to_value(h).unwrap();
    let Value::Array(programs) = field_mut(&mut value, "programs") else {
        panic!()
    };
    *field_mut(&mut programs[1], "rule_version") = Value::Int(-3);
    let bytes = write_raw(household_record_schema(), value);
    for result in [
        decode_household(&bytes, household_record_schema()),
        fast::decode_household(&bytes),
    ] {
        match result {
            Err(DecodeError::OutOfRange { field, value: -3 }) => {
                assert_eq!(field, "programs[1].rule_version")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Every prefix and every single-byte change of the fixtures: both decoders succeed with the
/// same record or fail with the same kind of error.
#[test]
fn corrupted_records_fail_alike() {
    fn alike<T: PartialEq + std::fmt::Debug>(
        what: &str,
        slow: Result<T, DecodeError>,
        quick: Result<T, DecodeError>,
    ) {
        match (&slow, &quick) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "{what}: slow {a}, fast {b}"
            ),
            _ => panic!("{what}: slow {slow:?}, fast {quick:?}"),
        }
    }
    let mut messages: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for h in fixtures::household_records() {
        messages.push((
            h.household_id.to_string(),
            encode_household(&h).unwrap(),
            true,
        ));
    }
    for c in fixtures::eligibility_changes() {
        messages.push((
            format!("{:?}", c.kind),
            encode_eligibility_change(&c).unwrap(),
            false,
        ));
    }
    for (name, bytes, household) in messages {
        let mut variants: Vec<Vec<u8>> =
            (0..bytes.len()).map(|cut| bytes[..cut].to_vec()).collect();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                variants.push(bad);
            }
        }
        for bad in variants {
            let what = format!("{name}: {bad:?}");
            if household {
                alike(
                    &what,
                    decode_household(&bad, household_record_schema()),
                    fast::decode_household(&bad),
                );
            } else {
                alike(
                    &what,
                    decode_eligibility_change(&bad, eligibility_change_schema()),
                    fast::decode_eligibility_change(&bad),
                );
            }
        }
    }
}

#[test]
fn values_beyond_avro_do_not_encode() {
    let base = fixtures::household_records().remove(0);
    let mut version = base.clone();
    version.version = u64::MAX;
    let mut late = base.clone();
    late.late_events = 1 << 63;
    let mut rule = base.clone();
    rule.programs[1].rule_version = u32::MAX;
    let mut rooms = base.clone();
    rooms.dwelling.as_mut().unwrap().rooms = u32::MAX;
    // The first field the slow path checks is the one named.
    rooms.version = u64::MAX;
    for (h, field) in [
        (version, "version"),
        (late, "late_events"),
        (rule, "programs[1].rule_version"),
        (rooms, "dwelling.rooms"),
    ] {
        for result in [encode_household(&h), fast::encode_household(&h)] {
            match result {
                Err(EncodeError::OutOfRange { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
    let mut c = fixtures::eligibility_changes().remove(0);
    c.household_version = 1 << 63;
    for result in [
        encode_eligibility_change(&c),
        fast::encode_eligibility_change(&c),
    ] {
        match result {
            Err(EncodeError::OutOfRange { field, value }) => {
                assert_eq!(field, "household_version");
                assert_eq!(value, 1 << 63);
            }
            other => panic!("{other:?}"),
        }
    }
    let mut c = fixtures::eligibility_changes().remove(0);
    c.rule_version = u32::MAX;
    for result in [
        encode_eligibility_change(&c),
        fast::encode_eligibility_change(&c),
    ] {
        assert!(
            matches!(&result, Err(EncodeError::OutOfRange { field, .. }) if field == "rule_version"),
            "{result:?}"
        );
    }
}

#[test]
fn malformed_and_trailing_bytes() {
    let bytes = encode_household(&fixtures::household_records()[0]).unwrap();
    for cut in 0..bytes.len() {
        let err = decode_household(&bytes[..cut], household_record_schema()).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed(_)),
            "cut {cut}: {err:?}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        decode_household(&longer, household_record_schema()),
        Err(DecodeError::TrailingBytes { extra: 1, .. })
    ));
    let bytes = encode_eligibility_change(&fixtures::eligibility_changes()[1]).unwrap();
    for cut in 0..bytes.len() {
        let err = decode_eligibility_change(&bytes[..cut], eligibility_change_schema());
        assert!(
            matches!(err, Err(DecodeError::Malformed(_))),
            "cut {cut}: {err:?}"
        );
    }
}

/// A producer on a newer schema whose ChangeKind has another symbol.
#[test]
fn an_unknown_change_kind_names_the_field() {
    let mut newer = current_json();
    type_json(&mut newer, "ChangeKind")["symbols"]
        .as_array_mut()
        .unwrap()
        .push(json!("suspended"));
    let newer = set_of(&newer);
    let mut value = eligibility_change_to_value(&fixtures::eligibility_changes()[0]).unwrap();
    *field_mut(&mut value, "kind") = Value::Enum(4, "suspended".into());
    let bytes = write_raw(newer.eligibility_change().unwrap(), value);
    match decode_eligibility_change(&bytes, newer.eligibility_change().unwrap()) {
        Err(DecodeError::UnknownSymbol {
            field,
            enum_name,
            symbol,
            known,
        }) => {
            assert_eq!(field, "kind");
            assert_eq!(enum_name, "ChangeKind");
            assert_eq!(symbol, "suspended");
            assert_eq!(known, ["entered", "changed", "exited", "unchanged"]);
        }
        other => panic!("{other:?}"),
    }
    // Data of that newer schema with known symbols decodes.
    let change = &fixtures::eligibility_changes()[2];
    let bytes = write_raw(
        newer.eligibility_change().unwrap(),
        eligibility_change_to_value(change).unwrap(),
    );
    assert_eq!(
        &decode_eligibility_change(&bytes, newer.eligibility_change().unwrap()).unwrap(),
        change
    );
}

/// Records written by an older schema without `shock_damage` (which has a default) read as
/// households without shock damage; a writer whose `version` is a string cannot be read.
#[test]
fn older_writers_resolve_to_the_current_schema() {
    let mut older = current_json();
    type_json(&mut older, "HouseholdRecord")["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "shock_damage");
    let older = set_of(&older);
    let h = fixtures::household_records().remove(0);
    let mut value = household_to_value(&h).unwrap();
    let Value::Record(fields) = &mut value else {
        panic!()
    };
    fields.retain(|(n, _)| n != "shock_damage");
    let bytes = write_raw(older.household_record().unwrap(), value);
    let back = decode_household(&bytes, older.household_record().unwrap()).unwrap();
    assert_eq!(back.shock_damage, None);
    assert_eq!(
        Household {
            shock_damage: h.shock_damage.clone(),
            ..back
        },
        h
    );

    let mut other = current_json();
    for f in type_json(&mut other, "HouseholdRecord")["fields"]
        .as_array_mut()
        .unwrap()
    {
        if f["name"] == "version" {
            f["type"] = json!("string");
        }
    }
    let other = set_of(&other);
    let mut value = household_to_value(&h).unwrap();
    *field_mut(&mut value, "version") = Value::String("17".into());
    let bytes = write_raw(other.household_record().unwrap(), value);
    let err = decode_household(&bytes, other.household_record().unwrap()).unwrap_err();
    assert!(matches!(err, DecodeError::Incompatible(_)), "{err:?}");
}

/// The digest of member inputs keeps all 64 bits, the top one included.
#[test]
fn digests_keep_every_bit() {
    let mut h = fixtures::household_records().remove(0);
    for d in [0, 1, u64::MAX, 1 << 63, 0x8000_0000_0000_0001] {
        h.programs[0].inputs.set_value(2, Scalar::Digest(d));
        household_round_trip(&h);
    }
}
