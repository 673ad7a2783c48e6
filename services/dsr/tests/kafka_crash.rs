//! `dsr process` killed hard (SIGKILL) five times at random points while it works through a
//! generated population on a real broker; restarted each time on the same state directory.
//! At the end the changelog holds exactly the records the domain core computes, and every
//! eligibility change is on its topic exactly once: no duplicate ids, none missing.

mod support;

use dsr_pipeline::testing::{
    assert_outputs_match, population, reference, wait_for_outputs, KafkaFixture,
};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{repo, start_process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_dsr_process_five_times_loses_nothing_and_duplicates_nothing() {
    let fx = KafkaFixture::start(&repo()).await;
    // The CLI against the topics the fixture created: idempotent, nothing to change.
    let applied = Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args(["topics", "apply", "--bootstrap", &fx.broker().bootstrap()])
        .current_dir(repo())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&applied.stdout);
    assert!(
        applied.status.success() && report.contains("0 created"),
        "{report}{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let events = population(9, 3_000);
    fx.publish(&events).await;
    let expected = reference(&events, &fx.programs);
    let outputs = || async { (fx.changelog().await, fx.change_ids().await) };

    // Five hard kills at pseudo-random points, then one instance that is left to finish.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut seed: u64 = 0x5eed_d5c0;
    let mut progress_at_kills = Vec::new();
    let mut before = 0;
    for kill in 0..5 {
        let mut child = start_process(&fx, &state);
        // Wait until this instance has made progress (after a kill the group first waits out
        // the dead member's session), then kill it a pseudo-random moment later.
        let waiting = Instant::now();
        while outputs().await.1.len() <= before && waiting.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis((seed >> 33) % 300);
        tokio::time::sleep(after).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "dsr process exited by itself before kill {kill}"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (done, changes) = outputs().await;
        eprintln!(
            "kill {kill} after {after:?}: {} of {} households and {} of {} changes out",
            done.len(),
            expected.households.len(),
            changes.len(),
            expected.change_ids.len()
        );
        before = changes.len();
        progress_at_kills.push(changes.len());
    }
    // The kills must land mid-stream, or this test shows nothing.
    let mid_stream = progress_at_kills
        .iter()
        .filter(|n| **n > 0 && **n < expected.change_ids.len())
        .count();
    assert!(
        mid_stream >= 3,
        "too few kills landed while work was half done: {progress_at_kills:?}"
    );
    let mut last = start_process(&fx, &state);
    let (households, changes) = wait_for_outputs(&fx, &expected).await;
    last.kill().unwrap();
    last.wait().unwrap();
    assert_outputs_match(&expected, &households, &changes);
}
