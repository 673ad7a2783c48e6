//! docs/data-dictionary.md is the generated data dictionary, up to date.

mod common;

use dsr_contracts::dictionary::{data_dictionary, GENERATED_NOTE};

/// Fails when the schemas changed and the dictionary was not regenerated. Regenerate with
/// `dsr schemas docs`, or `DSR_UPDATE_DOCS=1 cargo test -p dsr-contracts --test dictionary`.
#[test]
fn docs_data_dictionary_is_up_to_date() {
    let path = common::repo().join("docs/data-dictionary.md");
    let expected = data_dictionary();
    if std::env::var_os("DSR_UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is stale: regenerate it with `dsr schemas docs` (or DSR_UPDATE_DOCS=1 cargo test -p dsr-contracts --test dictionary)",
        path.display()
    );
}

#[test]
fn the_dictionary_is_deterministic_and_complete() {
    let a = data_dictionary();
    assert_eq!(a, data_dictionary());
    assert!(a.starts_with(GENERATED_NOTE));
    for needle in [
        "### LifeEvent",
        "### Member",
        "| `sex` | enum [Sex](#sex) |",
        "| `birth_date` | date |",
        "| `mother_id` | optional string |",
        "| `members` | list of [Member](#member) |",
        "| `incomes` | list of [IncomeEntry](#incomeentry), default empty |",
        "[`S`, `M`, `W`, `A`, `D`, `L`, `U`](#maritalstatus)",
        "### VitalEvent",
        "Not used by any field yet.",
        "| `S` | never married |",
        "### HouseholdRecord",
        "### EligibilityChange",
        "| `members` | list of [Member](#member) | Every member of the household",
        "| `value` | one of boolean, long, double, string, [InputDigest](#inputdigest) |",
        "| `kind` | enum [ChangeKind](#changekind) |",
        "| `recent_events` | list of uuid |",
        "Used by: [EligibilityChange.kind](#eligibilitychange).",
    ] {
        assert!(a.contains(needle), "missing {needle}");
    }
    assert!(!a.contains("not set"));
}
