//! What the `dsr` binary's Kafka tests share: where the repository is, how `dsr process` is
//! started, and how long to wait for the pipeline to finish.

#![allow(dead_code)] // each test binary uses its own part

use dsr_pipeline::testing::{content, KafkaFixture, Reference};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `dsr process` against the fixture, with its state in `state`; its log goes to
/// `<state>.log` so a failing test can be read.
pub fn start_process(fx: &KafkaFixture, state: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.with_extension("log"))
        .expect("a log file");
    Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args([
            "process",
            "--bootstrap",
            &fx.broker.bootstrap(),
            "--schema-registry",
            &fx.registry_url,
            "--batch-size",
            "100",
        ])
        .arg("--state-dir")
        .arg(state)
        .env("DSR_LOG", "info")
        .env("NO_COLOR", "1")
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("dsr process starts")
}

/// Waits (up to ten minutes) until the changelog holds the reference's records and at least as
/// many eligibility changes are out, then returns what is on the topics.
pub async fn wait_for_outputs(
    fx: &KafkaFixture,
    expected: &Reference,
) -> (
    BTreeMap<dsr_core::HouseholdId, dsr_core::Household>,
    Vec<uuid::Uuid>,
) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let households = fx.changelog().await;
        let change_ids = fx.change_ids().await;
        let done = households.len() == expected.households.len()
            && households.iter().all(|(hid, h)| {
                expected
                    .households
                    .get(hid)
                    .is_some_and(|e| content(e) == content(h))
            })
            && change_ids.len() >= expected.change_ids.len();
        if done || Instant::now() > deadline {
            return (households, change_ids);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The changelog equals the domain core's records, and the eligibility changes are exactly the
/// domain core's: none twice, none missing.
pub fn assert_outputs_match(
    expected: &Reference,
    households: &BTreeMap<dsr_core::HouseholdId, dsr_core::Household>,
    change_ids: &[uuid::Uuid],
) {
    assert_eq!(
        households.len(),
        expected.households.len(),
        "one record per household"
    );
    let differ: Vec<_> = households
        .iter()
        .filter(|(hid, h)| content(&expected.households[*hid]) != content(h))
        .map(|(hid, _)| hid.clone())
        .collect();
    assert!(
        differ.is_empty(),
        "{} households differ from the domain core, e.g. {:?}",
        differ.len(),
        differ.first()
    );
    let mut seen = std::collections::HashMap::new();
    for id in change_ids {
        *seen.entry(*id).or_insert(0) += 1;
    }
    let duplicated = seen.values().filter(|n| **n > 1).count();
    assert_eq!(
        duplicated, 0,
        "eligibility change ids produced more than once"
    );
    let mut want: Vec<_> = expected.change_ids.clone();
    let mut got: Vec<_> = change_ids.to_vec();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "exactly the eligibility changes the domain core computes"
    );
}
