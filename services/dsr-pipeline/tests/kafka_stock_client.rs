//! A stock client works: Confluent's Python client (`SerializingProducer` with its
//! `AvroSerializer`, registering the schema through dsr's schema registry API) produces a life
//! event to `dsr.household-events` on a real broker, and the household processor applies it.
//! The script is `tests/python/produce_life_event.py`.
//!
//! Needs `python3` with the packages of `load-tests/requirements.txt` (the README's test command
//! installs them); without them this test fails, saying so, and never skips.

use dsr_core::codes::{IncomeSource, Sex};
use dsr_core::HouseholdId;
use dsr_pipeline::testing::KafkaFixture;
use dsr_synth::fixtures;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_confluents_python_serializer_is_processed() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = KafkaFixture::start(repo).await;
    let registered = fixtures::household("H00000077")
        .head(Sex::Male, 51)
        .income(IncomeSource::Agriculture, 20.0)
        .build();
    fx.publish(std::slice::from_ref(&registered)).await;
    let head = "P0000007700";

    // What a tax-authority system would send, as the fields of the Avro record.
    let event_id = fixtures::event_id("stock-client-income");
    let when = fixtures::at(2025, 11, 3).0;
    let event = serde_json::json!({
        "event_id": event_id.to_string(),
        "event_type": "IncomeReported",
        "source_system": "tax-authority",
        "occurred_at": when,
        "recorded_at": when,
        "person_id": head,
        "household_id": "H00000077",
        "correlation_id": null,
        "schema_version": dsr_core::event::SCHEMA_VERSION,
        "payload": {
            "person_id": head,
            "amount": 55.5,
            "period": "monthly",
            "source": "wages",
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("LifeEvent.avsc");
    std::fs::write(
        &schema_file,
        serde_json::to_string(dsr_contracts::life_event_schema()).unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/produce_life_event.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let args = vec![
        script.display().to_string(),
        fx.broker().bootstrap(),
        fx.registry_url.clone(),
        fx.topics.household_events.clone(),
        schema_file.display().to_string(),
        event.to_string(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python).args(&args).output()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Python producer finishes within two minutes")
        .unwrap()
        .expect("python3 runs; install Python 3");
    assert!(
        out.status.success(),
        "the stock Python producer failed (install its packages with `pip install -r \
         load-tests/requirements.txt`)\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("python: {}", String::from_utf8_lossy(&out.stdout).trim());

    let state = tempfile::tempdir().unwrap();
    let processor = fx.processor(state.path(), "stock-client-test");
    let started = Instant::now();
    let applied = || async {
        fx.changelog()
            .await
            .get(&HouseholdId::new("H00000077"))
            .is_some_and(|h| h.recent_events.contains(&event_id))
    };
    let stats = processor
        .run(async {
            while !applied().await && started.elapsed() < Duration::from_secs(120) {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await
        .unwrap();
    let changelog = fx.changelog().await;
    let household = &changelog[&HouseholdId::new("H00000077")];
    assert!(
        household.recent_events.contains(&event_id),
        "the stock client's event was applied ({stats:?})"
    );
    let dead = fx.read_topic(&fx.topics.dead_letter).await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    let incomes = format!("{:?}", household.members[0]);
    assert!(
        incomes.contains("55.5"),
        "the head's income from the stock client's event: {incomes}"
    );
}
