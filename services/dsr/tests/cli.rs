//! The `dsr` binary, run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dsr(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("dsr runs");
    out
}

fn ok(args: &[&str]) -> String {
    let out = dsr(args);
    assert!(
        out.status.success(),
        "dsr {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn help_lists_the_commands() {
    let help = ok(&["--help"]);
    for c in ["schemas", "generate", "score", "programs"] {
        assert!(help.contains(c), "{help}");
    }
}

#[test]
fn score_explains_with_contributions_that_sum_to_the_score() {
    let text = ok(&[
        "score",
        "--household",
        "examples/household.json",
        "--explain",
    ]);
    assert!(
        text.contains("need score") && text.contains("pmt-2026.1"),
        "{text}"
    );
    assert!(text.contains("ln_household_size"), "{text}");
    let json = ok(&["score", "--household", "examples/household.json", "--json"]);
    let e: serde_json::Value = serde_json::from_str(&json).unwrap();
    let score = e["score"].as_f64().unwrap();
    let sum: f64 = e["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["points"].as_f64().unwrap())
        .sum();
    assert!((sum - score).abs() < 1e-9, "{sum} vs {score}");
    assert!(
        score > 50.0,
        "a widow with three children and little income is needy: {score}"
    );
}

#[test]
fn score_rejects_a_file_that_is_not_a_household() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"household_id": 3}"#).unwrap();
    let out = dsr(&["score", "--household", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a household record"), "{err}");
}

#[test]
fn schemas_check_and_programs_check_pass() {
    assert!(ok(&["schemas", "check"]).contains("backward compatible"));
    assert!(ok(&["programs", "check"]).contains("child-grant"));
}

#[test]
fn a_broken_program_is_reported_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "id: bad\nname: Bad\nowner: O\npurpose: P\ndata_sharing_agreement: D\nrule_version: 1\nrule: household.need_scor > 3\nbenefit: '1.0'\nfields_allowed: []\n",
    )
    .unwrap();
    let out = dsr(&["programs", "check", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unknown field `household.need_scor`") && text.contains("line 1 column 11"),
        "{text}"
    );
}

#[test]
fn generate_is_byte_identical_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str, threads: &str| {
        let out = dir.path().join(name);
        ok(&[
            "generate",
            "--households",
            "3000",
            "--seed",
            seed,
            "--threads",
            threads,
            "--out",
            out.to_str().unwrap(),
        ]);
        out
    };
    let a = run("a", "7", "1");
    let b = run("b", "7", "2");
    let c = run("c", "8", "2");
    for f in [
        "areas.csv",
        "households.jsonl",
        "events.jsonl",
        "manifest.json",
    ] {
        let fa = std::fs::read(a.join(f)).unwrap();
        assert!(!fa.is_empty(), "{f} is empty");
        assert_eq!(
            fa,
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between runs with seed 7"
        );
    }
    let differs = std::fs::read(a.join("households.jsonl")).unwrap()
        != std::fs::read(c.join("households.jsonl")).unwrap();
    assert!(differs, "seeds 7 and 8 gave the same households");
}
