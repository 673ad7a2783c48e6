//! Compatibility of schema changes, by Avro's resolution rules.

mod common;

use common::{current_json, set_of, type_json};
use dsr_contracts::compat::{check_all, check_backward, check_forward, Direction};
use dsr_contracts::schemas::{self, life_event_schema};
use dsr_contracts::CompatError;
use serde_json::json;

fn remove_field(files: &mut [(String, serde_json::Value)], record: &str, field: &str) {
    let fields = type_json(files, record)["fields"].as_array_mut().unwrap();
    let before = fields.len();
    fields.retain(|f| f["name"] != field);
    assert_eq!(fields.len(), before - 1, "{record}.{field}");
}

fn add_field(files: &mut [(String, serde_json::Value)], record: &str, field: serde_json::Value) {
    type_json(files, record)["fields"]
        .as_array_mut()
        .unwrap()
        .push(field);
}

fn locations(err: &CompatError) -> Vec<String> {
    err.problems().iter().map(|p| p.location.clone()).collect()
}

#[test]
fn current_schemas_can_read_every_released_version() {
    let repo = common::repo();
    let versions = check_all(&repo.join("schemas"), &repo.join("schemas/released"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(versions.contains(&"v1".to_string()), "{versions:?}");
}

#[test]
fn a_schema_is_compatible_with_itself() {
    check_backward(life_event_schema(), life_event_schema()).unwrap();
    check_forward(life_event_schema(), life_event_schema()).unwrap();
}

/// `Member.sex` has no default. Data written by a schema without it cannot be read by one
/// with it: the current schema is not backward compatible with such an old one.
#[test]
fn a_field_without_default_missing_from_old_data_breaks_backward_compatibility() {
    let mut old = current_json();
    remove_field(&mut old, "Member", "sex");
    let old = set_of(&old);

    let err = check_backward(life_event_schema(), old.life_event()).unwrap_err();
    assert_eq!(locations(&err), ["Member.sex"], "{err}");
    let problem = err.problems()[0];
    assert!(problem.path.starts_with("LifeEvent.payload."), "{problem}");
    assert!(problem.path.ends_with(".sex"), "{problem}");
    let message = err.to_string();
    assert!(message.contains("Member.sex"), "{message}");
    assert!(message.contains("default"), "{message}");
    assert!(matches!(
        err,
        CompatError::Incompatible {
            direction: Direction::Backward,
            ..
        }
    ));
}

/// Dropping `Member.sex` from the new schema: the new reader skips it in old data (backward
/// compatible), but readers still on the old schema need it (not forward compatible).
#[test]
fn removing_a_field_without_default_breaks_old_readers() {
    let mut new = current_json();
    remove_field(&mut new, "Member", "sex");
    let new = set_of(&new);

    check_backward(new.life_event(), life_event_schema()).unwrap();
    let err = check_forward(new.life_event(), life_event_schema()).unwrap_err();
    assert_eq!(locations(&err), ["Member.sex"], "{err}");
}

#[test]
fn adding_a_field_with_a_default_is_compatible_both_ways() {
    let mut new = current_json();
    add_field(
        &mut new,
        "Member",
        json!({"name": "nickname", "type": ["null", "string"], "default": null,
               "doc": "What the person is usually called.", "sensitivity": "personal"}),
    );
    add_field(
        &mut new,
        "Dwelling",
        json!({"name": "floor_area_m2", "type": "double", "default": 0.0,
               "doc": "Floor area.", "sensitivity": "personal"}),
    );
    let new = set_of(&new);
    check_backward(new.life_event(), life_event_schema()).unwrap();
    check_forward(new.life_event(), life_event_schema()).unwrap();
}

#[test]
fn adding_a_field_without_a_default_is_not_backward_compatible() {
    let mut new = current_json();
    add_field(
        &mut new,
        "Dwelling",
        json!({"name": "floor_area_m2", "type": "double",
               "doc": "Floor area.", "sensitivity": "personal"}),
    );
    let new = set_of(&new);
    let err = check_backward(new.life_event(), life_event_schema()).unwrap_err();
    assert_eq!(locations(&err), ["Dwelling.floor_area_m2"], "{err}");
}

#[test]
fn removing_a_code_is_not_backward_compatible_adding_one_is() {
    let mut fewer = current_json();
    type_json(&mut fewer, "HazardType")["symbols"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s != "fire");
    let fewer = set_of(&fewer);
    let err = check_backward(fewer.life_event(), life_event_schema()).unwrap_err();
    // HazardType is used by two fields; both are named.
    assert_eq!(
        locations(&err),
        ["HouseholdShockReported.hazard", "ShockDeclared.hazard"],
        "{err}"
    );
    assert!(err.to_string().contains("fire"), "{err}");

    let mut more = current_json();
    type_json(&mut more, "HazardType")["symbols"]
        .as_array_mut()
        .unwrap()
        .push(json!("heatwave"));
    let more = set_of(&more);
    check_backward(more.life_event(), life_event_schema()).unwrap();
}

#[test]
fn changing_a_type_names_the_field() {
    let mut new = current_json();
    for f in type_json(&mut new, "Assets")["fields"]
        .as_array_mut()
        .unwrap()
    {
        if f["name"] == "land_hectares" {
            f["type"] = json!("int");
        }
    }
    let new = set_of(&new);
    let err = check_backward(new.life_event(), life_event_schema()).unwrap_err();
    assert_eq!(locations(&err), ["Assets.land_hectares"], "{err}");
    // int widens to double: the other way round is fine.
    check_backward(life_event_schema(), new.life_event()).unwrap();
}

#[test]
fn removing_a_payload_type_is_not_backward_compatible() {
    let mut new = current_json();
    type_json(&mut new, "LifeEvent")["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "payload")
        .unwrap()["type"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t != "ShockEnded");
    let new = set_of(&new);
    let err = check_backward(new.life_event(), life_event_schema()).unwrap_err();
    assert_eq!(locations(&err), ["LifeEvent.payload"], "{err}");
    assert!(err.to_string().contains("ShockEnded"), "{err}");
}

#[test]
fn check_all_names_the_release_that_broke() {
    let tmp = std::env::temp_dir().join(format!("dsr-contracts-compat-{}", std::process::id()));
    let (current, released) = (tmp.join("current"), tmp.join("released"));
    let v1 = released.join("v1");
    std::fs::create_dir_all(&current).unwrap();
    std::fs::create_dir_all(&v1).unwrap();
    let mut files = current_json();
    for (name, json) in &files {
        std::fs::write(v1.join(format!("{name}.avsc")), json.to_string()).unwrap();
    }
    add_field(
        &mut files,
        "Member",
        json!({"name": "nickname", "type": "string", "doc": "x", "sensitivity": "personal"}),
    );
    for (name, json) in &files {
        std::fs::write(current.join(format!("{name}.avsc")), json.to_string()).unwrap();
    }
    let err = check_all(&current, &released).unwrap_err();
    std::fs::remove_dir_all(&tmp).ok();
    assert!(err.to_string().contains("released v1"), "{err}");
    assert_eq!(locations(&err), ["Member.nickname"], "{err}");

    let err = check_all(
        &common::repo().join("schemas"),
        &common::repo().join("docs"),
    );
    assert!(err.is_err());
}

/// Once a release has the pipeline's outputs, they are checked like `LifeEvent`; releases
/// from before they existed (v1) check only `LifeEvent`.
#[test]
fn released_outputs_are_checked_too() {
    let tmp = std::env::temp_dir().join(format!("dsr-contracts-outputs-{}", std::process::id()));
    let write = |dir: &std::path::Path, files: &[(String, serde_json::Value)]| {
        std::fs::create_dir_all(dir).unwrap();
        for (name, json) in files {
            std::fs::write(dir.join(format!("{name}.avsc")), json.to_string()).unwrap();
        }
    };
    let released = tmp.join("released");
    write(&released.join("v2"), &current_json());

    // A field without default added to the household record.
    let mut files = current_json();
    add_field(
        &mut files,
        "HouseholdRecord",
        json!({"name": "district", "type": "string", "doc": "x", "sensitivity": "public"}),
    );
    write(&tmp.join("added"), &files);
    let err = check_all(&tmp.join("added"), &released).unwrap_err();
    assert_eq!(locations(&err), ["HouseholdRecord.district"], "{err}");

    // A field of a shared record broken once, named once.
    let mut files = current_json();
    remove_field(&mut files, "Member", "sex");
    add_field(
        &mut files,
        "Member",
        json!({"name": "sex", "type": "int", "doc": "x", "sensitivity": "personal"}),
    );
    write(&tmp.join("shared"), &files);
    let err = check_all(&tmp.join("shared"), &released).unwrap_err();
    assert_eq!(locations(&err), ["Member.sex"], "{err}");

    // The output dropped altogether.
    let mut files = current_json();
    files.retain(|(n, _)| n != "EligibilityChange");
    write(&tmp.join("dropped"), &files);
    let err = check_all(&tmp.join("dropped"), &released).unwrap_err();
    assert_eq!(locations(&err), ["EligibilityChange"], "{err}");

    // Unchanged: compatible; and v1 (LifeEvent only) against the current schemas.
    write(&tmp.join("same"), &current_json());
    assert_eq!(check_all(&tmp.join("same"), &released).unwrap(), ["v2"]);
    std::fs::remove_dir_all(&tmp).ok();
}

/// Events say which contracts version wrote them (`schema_version`); while
/// `released/v{SCHEMA_VERSION}` exists, the current schemas must be exactly that release, or
/// events stamped with that version would not be in its shape.
#[test]
fn the_current_schemas_are_the_release_of_the_current_version() {
    let version = dsr_core::event::SCHEMA_VERSION;
    let dir = common::repo().join(format!("schemas/released/v{version}"));
    if !dir.exists() {
        return; // v{version} is being developed.
    }
    let released = schemas::load_dir(&dir).unwrap();
    assert!(
        released.life_event().canonical_form() == life_event_schema().canonical_form(),
        "schemas/ differs from schemas/released/v{version} while SCHEMA_VERSION is {version}: \
         raise SCHEMA_VERSION in dsr-core for the new version, or undo the change"
    );
}
