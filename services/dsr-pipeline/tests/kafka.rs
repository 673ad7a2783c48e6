//! The household processor on a real Kafka-protocol broker (nisshi, started here), with dsr's
//! own schema registry: a generated population's events go in as Avro in Confluent wire
//! format; the records read back from the compacted changelog equal what the domain core
//! computes from the same events.

use dsr_pipeline::testing::{check_changes, content, population, reference, KafkaFixture};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_population_through_kafka_matches_the_domain_core() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = KafkaFixture::start(repo).await;
    let households: u64 = std::env::var("DSR_TEST_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let events = population(5, households);
    assert!(
        households < 20_000 || events.len() >= 100_000,
        "{} events",
        events.len()
    );
    fx.publish(&events).await;
    let expected = reference(&events, &fx.programs);

    // The processor, until it has processed every event and every derived event.
    let state_dir = tempfile::tempdir().unwrap();
    let processor = fx.processor(state_dir.path(), "test-processor");
    let progress = processor.progress.clone();
    let total = events.len() as u64 + expected.derived;
    let started = Instant::now();
    let watched = progress.clone();
    let stats = processor
        .run(async move {
            while watched.load(Ordering::Relaxed) < total
                && started.elapsed() < Duration::from_secs(600)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap();
    assert_eq!(
        progress.load(Ordering::Relaxed),
        total,
        "every event and derived event processed ({stats:?})"
    );
    eprintln!(
        "processed {total} events in {:.1}s: {stats:?}",
        started.elapsed().as_secs_f64()
    );

    let changelog = fx.changelog().await;
    assert_eq!(
        changelog.len(),
        expected.households.len(),
        "one changelog record per household"
    );
    let mismatched: Vec<_> = changelog
        .iter()
        .filter(|(hid, h)| content(h) != content(&expected.households[*hid]))
        .map(|(hid, _)| hid.clone())
        .collect();
    assert!(
        mismatched.is_empty(),
        "{} households differ from the domain core, e.g. {:?}",
        mismatched.len(),
        mismatched.first()
    );
    assert!(
        changelog.values().all(|h| h.need_score.is_some()),
        "every household has a need score"
    );
    if let Err(problems) = check_changes(&expected, &changelog, &fx.changes().await) {
        panic!("eligibility changes: {problems}");
    }
}
