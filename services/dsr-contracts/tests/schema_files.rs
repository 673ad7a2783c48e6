//! The schema files mirror dsr-core: code lists symbol for symbol, and every field documented.

mod common;

use apache_avro::schema::Schema;
use dsr_contracts::avro::CHANGE_KINDS;
use dsr_contracts::fixtures;
use dsr_contracts::schemas::{self, FILES, ROOTS};
use dsr_core::codes::*;
use dsr_core::event::EVENT_TYPES;
use std::collections::BTreeSet;

fn avro_symbols(name: &str) -> Vec<String> {
    match schemas::current().get(name) {
        Some(Schema::Enum(e)) => e.symbols.clone(),
        other => panic!("no Avro enum {name}: {other:?}"),
    }
}

fn same<C: CodeList>(checked: &mut BTreeSet<String>) {
    assert_eq!(
        avro_symbols(C::NAME),
        C::symbols(),
        "schemas/{}.avsc and dsr_core::codes::{} differ",
        C::NAME,
        C::NAME
    );
    checked.insert(C::NAME.to_string());
}

#[test]
fn every_avro_enum_has_the_symbols_of_its_code_list() {
    let mut checked = BTreeSet::new();
    same::<Sex>(&mut checked);
    same::<MaritalStatus>(&mut checked);
    same::<VitalEvent>(&mut checked);
    same::<Relationship>(&mut checked);
    same::<EducationLevel>(&mut checked);
    same::<EmploymentStatus>(&mut checked);
    same::<DisabilityType>(&mut checked);
    same::<DisabilitySeverity>(&mut checked);
    same::<IncomeSource>(&mut checked);
    same::<IncomePeriod>(&mut checked);
    same::<WallMaterial>(&mut checked);
    same::<WaterSource>(&mut checked);
    same::<Sanitation>(&mut checked);
    same::<Tenure>(&mut checked);
    same::<HazardType>(&mut checked);
    same::<ShockSeverity>(&mut checked);
    same::<DamageLevel>(&mut checked);
    same::<RegistrationSource>(&mut checked);
    same::<CorrectableField>(&mut checked);
    assert_eq!(avro_symbols("EventType"), EVENT_TYPES);
    checked.insert("EventType".into());
    // ChangeKind is not a code list of dsr-core: compare with the codec's table, and with the
    // JSON form's names.
    let kinds: Vec<&str> = CHANGE_KINDS.iter().map(|(_, s)| *s).collect();
    assert_eq!(avro_symbols("ChangeKind"), kinds);
    for (kind, symbol) in CHANGE_KINDS {
        assert_eq!(serde_json::to_value(kind).unwrap(), *symbol);
    }
    checked.insert("ChangeKind".into());

    let avro_enums: BTreeSet<String> = schemas::current()
        .named()
        .iter()
        .filter_map(|s| match s {
            Schema::Enum(e) => Some(e.name.name().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        avro_enums, checked,
        "an Avro enum without a code list, or a code list this test does not compare"
    );
}

#[test]
fn every_field_has_a_doc_and_a_sensitivity() {
    let mut fields = 0;
    for schema in schemas::current().named() {
        match schema {
            Schema::Record(r) => {
                assert!(
                    r.doc.as_deref().is_some_and(|d| !d.is_empty()),
                    "{}",
                    r.name
                );
                for f in &r.fields {
                    let at = format!("{}.{}", r.name.name(), f.name);
                    assert!(
                        f.doc.as_deref().is_some_and(|d| d.len() > 5),
                        "{at}: no doc"
                    );
                    let s = f
                        .custom_attributes
                        .get("sensitivity")
                        .and_then(|v| v.as_str());
                    assert!(
                        matches!(s, Some("public" | "personal" | "sensitive")),
                        "{at}: sensitivity is {s:?}"
                    );
                    fields += 1;
                }
            }
            Schema::Enum(e) => {
                let doc = e.doc.as_deref().unwrap_or("");
                let meanings = e.attributes["symbol_docs"].as_object().unwrap();
                for s in &e.symbols {
                    assert!(
                        doc.contains(&format!("{s} = ")),
                        "{}: doc lacks {s}",
                        e.name
                    );
                    assert!(
                        meanings.contains_key(s),
                        "{}: symbol_docs lacks {s}",
                        e.name
                    );
                }
                assert_eq!(meanings.len(), e.symbols.len(), "{}", e.name);
            }
            other => panic!("unexpected top-level schema {other:?}"),
        }
    }
    assert!(fields > 100);
}

#[test]
fn dci_code_lists_cite_dci() {
    for name in ["Sex", "MaritalStatus", "VitalEvent"] {
        let Some(Schema::Enum(e)) = schemas::current().get(name) else {
            panic!("{name}")
        };
        assert!(e.doc.as_deref().unwrap().contains("DCI"), "{name}");
    }
}

#[test]
fn sensitive_data_is_marked_sensitive() {
    let sensitivity = |record: &str, field: &str| {
        let r = schemas::current().record(record).unwrap();
        let f = &r.fields[r.lookup[field]];
        f.custom_attributes["sensitivity"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(sensitivity("Member", "given_name"), "personal");
    assert_eq!(sensitivity("Member", "birth_date"), "personal");
    assert_eq!(sensitivity("Member", "marital_status"), "sensitive");
    assert_eq!(sensitivity("Member", "incomes"), "sensitive");
    assert_eq!(sensitivity("Member", "disability"), "sensitive");
    assert_eq!(sensitivity("IncomeReported", "amount"), "sensitive");
    assert_eq!(sensitivity("LifeEvent", "occurred_at"), "public");
    assert_eq!(sensitivity("HouseholdRegistered", "area"), "public");
}

/// Every file in schemas/ is embedded (a file added but not listed in `FILES` would be missing
/// from the binary), and the embedded copies are the files.
#[test]
fn every_schema_file_is_embedded() {
    let dir = common::repo().join("schemas");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let embedded: BTreeSet<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, embedded);
    let loaded = schemas::load_dir(&dir).unwrap();
    assert_eq!(
        loaded.life_event().canonical_form(),
        schemas::life_event_schema().canonical_form()
    );
}

#[test]
fn loading_reports_which_file_is_broken() {
    let mut files = common::current_json();
    let broken: Vec<(String, String)> = files
        .iter_mut()
        .map(|(n, j)| {
            let text = if n == "Tenure" {
                "{ not json".to_string()
            } else {
                j.to_string()
            };
            (n.clone(), text)
        })
        .collect();
    let err = schemas::SchemaSet::from_files(broken)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Tenure.avsc"), "{err}");

    let mut misnamed: Vec<(String, String)> = files
        .iter()
        .map(|(n, j)| (n.clone(), j.to_string()))
        .collect();
    misnamed[1].0 = "Gender".into();
    let err = schemas::SchemaSet::from_files(misnamed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Gender.avsc defines `Sex`"), "{err}");

    let err = schemas::load_dir(&common::repo().join("services"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no .avsc files"), "{err}");
}

/// The output records have the fields of the dsr-core types they mirror, no more, no fewer
/// (compared with the names of the serde form, which are the Rust field names).
#[test]
fn output_records_mirror_dsr_core_field_for_field() {
    fn same(record: &str, value: impl serde::Serialize) {
        let avro: BTreeSet<String> = schemas::current()
            .record(record)
            .unwrap_or_else(|| panic!("no record {record}"))
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect();
        let rust: BTreeSet<String> = serde_json::to_value(value)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(avro, rust, "schemas/{record}.avsc and dsr-core differ");
    }
    let household = fixtures::household_records().remove(0);
    same("HouseholdRecord", &household);
    same("NeedScore", household.need_score.as_ref().unwrap());
    same("ShockDamage", household.shock_damage.as_ref().unwrap());
    same("ProgramStatus", &household.programs[0]);
    same("RuleInput", &household.programs[0].inputs.to_vec()[0]);
    same("Member", &household.members[0]);
    same("EligibilityChange", &fixtures::eligibility_changes()[0]);
}

/// The current schemas have every top-level record; released v1 only `LifeEvent` (the outputs
/// came later), and still loads.
#[test]
fn every_root_is_defined() {
    for root in ROOTS {
        assert!(schemas::current().root(root).is_some(), "{root}");
    }
    assert!(schemas::current().root("Member").is_none());
    let v1 = schemas::load_dir(&common::repo().join("schemas/released/v1")).unwrap();
    assert!(v1.root("LifeEvent").is_some());
    assert!(v1.household_record().is_none());
    assert!(v1.eligibility_change().is_none());
    // Self-contained: each parses on its own, as a schema registry would hold it.
    for schema in [
        schemas::household_record_schema(),
        schemas::eligibility_change_schema(),
    ] {
        let json = serde_json::to_string(schema).unwrap();
        let parsed = apache_avro::Schema::parse_str(&json).unwrap();
        assert_eq!(parsed.canonical_form(), schema.canonical_form());
    }
}
