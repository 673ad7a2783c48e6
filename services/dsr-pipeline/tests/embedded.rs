//! The household processor on the embedded log (a directory, no server): the same scenario
//! body as the Kafka test (`kafka.rs`).

use dsr_pipeline::testing::{generated_population_matches_the_domain_core, EmbeddedFixture};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_population_through_the_embedded_log_matches_the_domain_core() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = EmbeddedFixture::embedded(repo).await;
    let households: u64 = std::env::var("DSR_TEST_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    generated_population_matches_the_domain_core(&fx, households).await;
}

/// Compaction under a running registry: a processor works through half of a population's
/// events and stops, the log is compacted (the changelog loses every superseded household
/// record), and a processor on a new machine — an empty state directory, restored from the
/// compacted changelog — takes the group over and processes the rest. The outcome is the
/// domain core's, with no eligibility change twice and none missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_restored_from_a_compacted_changelog_matches_the_domain_core() {
    use dsr_pipeline::testing::{holds_the_reference, population, reference, run_until};
    use std::sync::atomic::Ordering;
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = EmbeddedFixture::embedded(repo).await;
    let events = population(13, 2_000);
    fx.publish(&events).await;
    let expected = reference(&events, &fx.programs);
    let group = "compaction-test";

    let state = tempfile::tempdir().expect("a temporary directory");
    let mut processor = fx.processor(state.path(), group);
    processor.batch_size = 300;
    let progress = processor.progress.clone();
    let half = (events.len() as u64 + expected.derived) / 2;
    run_until(&processor, async || {
        progress.load(Ordering::Relaxed) >= half
    })
    .await
    .expect("the first processor runs");
    drop(processor);

    let changelog_before = fx.read_topic(&fx.topics.changelog).await.len();
    fx.log.roll_segment().await.expect("a new segment");
    let done = fx
        .log
        .compact_with(std::time::SystemTime::now(), 0.0, |_, _| {})
        .await
        .expect("compaction");
    let changelog_after = fx.read_topic(&fx.topics.changelog).await.len();
    assert!(done.records_removed > 0, "{done}");
    assert!(
        changelog_after < changelog_before,
        "the changelog was compacted ({changelog_before} -> {changelog_after} records): {done}"
    );

    let new_machine = tempfile::tempdir().expect("a temporary directory");
    let restored = fx.processor(new_machine.path(), group);
    let stats = run_until(&restored, async || {
        holds_the_reference(&expected, &fx.changelog().await)
    })
    .await
    .expect("the restored processor runs");
    assert!(
        stats.restored > 0,
        "the new machine restored from the changelog: {stats:?}"
    );
    fx.assert_matches(&expected).await;
}
