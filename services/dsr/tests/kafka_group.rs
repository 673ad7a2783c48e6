//! Two `dsr process` instances in one consumer group share the partitions; one is killed hard
//! mid-stream, the other takes its partitions over (restoring their records from the
//! changelog) and finishes: the changelog equals the domain core's records and every
//! eligibility change is out exactly once.

mod support;

use dsr_pipeline::testing::{
    assert_outputs_match, population, reference, wait_for_outputs, KafkaFixture,
};
use std::time::{Duration, Instant};
use support::{repo, start_process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_instances_moves_its_partitions_and_loses_nothing() {
    let fx = KafkaFixture::start(&repo()).await;
    let events = population(13, 3_000);
    fx.publish(&events).await;
    let expected = reference(&events, &fx.programs);

    let dir = tempfile::tempdir().unwrap();
    let mut a = start_process(&fx, &dir.path().join("a"));
    let mut b = start_process(&fx, &dir.path().join("b"));
    // Kill `a` once both have been working for a while and the work is far from done.
    let started = Instant::now();
    let target = expected.change_ids.len() / 4;
    while fx.change_ids().await.len() < target && started.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        a.try_wait().unwrap().is_none(),
        "instance a exited by itself"
    );
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let at_kill = fx.change_ids().await.len();
    eprintln!(
        "killed a with {at_kill} of {} changes out",
        expected.change_ids.len()
    );
    assert!(
        at_kill < expected.change_ids.len(),
        "the kill landed after the work was done; this test shows nothing"
    );

    let (households, changes) = wait_for_outputs(&fx, &expected).await;
    assert!(
        b.try_wait().unwrap().is_none(),
        "instance b exited by itself"
    );
    b.kill().unwrap();
    b.wait().unwrap();
    let log_a = std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default();
    let log_b = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
    // Both instances owned partitions (the group split them), and b took over a's.
    assert!(
        log_a.contains("partition taken over"),
        "instance a never owned a partition:\n{log_a}"
    );
    assert!(
        log_b.contains("restored from the changelog")
            || log_b.matches("partition taken over").count() == 12,
        "instance b did not take over a's partitions:\n{log_b}"
    );
    assert_outputs_match(&expected, &households, &changes);
}
