//! What the `dsr` binary's Kafka tests share: where the repository is, how `dsr process` is
//! started, and how long to wait for the pipeline to finish.

#![allow(dead_code)] // each test binary uses its own part

pub mod scale_up;
pub mod up;
pub mod webhooks;

use dsr_pipeline::testing::{check_changes, content, KafkaFixture, Reference};
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
            &fx.broker().bootstrap(),
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

/// Waits (up to ten minutes) until the changelog holds the reference's records, then returns
/// what is on the topics. (Eligibility changes are acknowledged before the changelog records
/// of the same batch are written, so they are out by then.)
pub async fn wait_for_outputs(
    fx: &KafkaFixture,
    expected: &Reference,
) -> (
    BTreeMap<dsr_core::HouseholdId, dsr_core::Household>,
    Vec<dsr_core::EligibilityChange>,
) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let households = fx.changelog().await;
        let done = households.len() == expected.households.len()
            && households.iter().all(|(hid, h)| {
                expected
                    .households
                    .get(hid)
                    .is_some_and(|e| content(e) == content(h))
            });
        if done || Instant::now() > deadline {
            return (households, fx.changes().await);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The changelog equals the domain core's records, and the eligibility changes are right:
/// none twice, none missing ([`check_changes`]).
pub fn assert_outputs_match(
    expected: &Reference,
    households: &BTreeMap<dsr_core::HouseholdId, dsr_core::Household>,
    changes: &[dsr_core::EligibilityChange],
) {
    assert_eq!(
        households.len(),
        expected.households.len(),
        "one record per household"
    );
    let differ: Vec<_> = households
        .iter()
        .filter(|(hid, _)| !expected.record_depends_on_timing(hid))
        .filter(|(hid, h)| !expected.allows(hid, h))
        .map(|(hid, _)| hid.clone())
        .collect();
    if let Some(first) = differ.first() {
        let (want, got) = (&expected.households[first], &households[first]);
        panic!(
            "{} households differ from the domain core, e.g. {first}: version {} vs {} (domain core vs run), members {} vs {}, as_of {:?} vs {:?}; \ndomain core: {want:?}\nrun:         {got:?}",
            differ.len(),
            want.version,
            got.version,
            want.members.len(),
            got.members.len(),
            want.as_of,
            got.as_of,
        );
    }
    if let Err(problems) = check_changes(expected, households, changes) {
        panic!("eligibility changes: {problems}");
    }
}
