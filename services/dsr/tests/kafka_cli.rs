//! `dsr publish` and `dsr tail` against a real broker and dsr's schema registry: JSON lines in,
//! good events on the topic as Avro in wire format, bad lines reported with their line number
//! and reason; `dsr tail` shows the records decoded.

mod support;

use dsr_core::codes::{IncomeSource, Sex};
use dsr_pipeline::runner::Codec;
use dsr_pipeline::testing::KafkaFixture;
use dsr_synth::fixtures;
use std::process::Command;
use support::repo;

fn dsr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("dsr runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reports_bad_lines_and_tail_decodes_what_was_published() {
    let fx = KafkaFixture::start(&repo()).await;
    let bootstrap = fx.broker().bootstrap();
    let registered = fixtures::household("H00000042")
        .head(Sex::Female, 30)
        .income(IncomeSource::Wages, 80.0)
        .build();
    let income = fixtures::income(
        "H00000042",
        "P0000004200",
        IncomeSource::Wages,
        90.0,
        fixtures::at(2025, 11, 2),
    );
    let mut negative = income.clone();
    negative.envelope.event_id = fixtures::event_id("negative");
    if let dsr_core::Payload::IncomeReported(p) = &mut negative.payload {
        p.amount = -5.0;
    }
    let mut no_household = income.clone();
    no_household.envelope.event_id = fixtures::event_id("no-household");
    no_household.envelope.household_id = None;
    let line = |e: &dsr_core::Event| serde_json::to_string(e).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        [
            line(&registered),
            "{\"this is\": \"not an event\"}".into(),
            line(&income),
            line(&negative),
            String::new(),
            line(&no_household),
        ]
        .join("\n"),
    )
    .unwrap();
    let rejects = tempfile::NamedTempFile::new().unwrap();
    let out = dsr(&[
        "publish",
        "--bootstrap",
        &bootstrap,
        "--schema-registry",
        &fx.registry_url,
        "--file",
        file.path().to_str().unwrap(),
        "--rejects",
        rejects.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 published to dsr.household-events, 3 rejected"),
        "{stdout}"
    );
    let rejected: Vec<serde_json::Value> = std::fs::read_to_string(rejects.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 6], "{rejected:#?}");
    let reason = |i: usize| rejected[i]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason(0).starts_with("not a life event in JSON"),
        "{}",
        reason(0)
    );
    assert!(
        reason(1).contains("invalid IncomeReported event"),
        "{}",
        reason(1)
    );
    assert!(reason(2).starts_with("no household"), "{}", reason(2));

    // What is on the topic is exactly the two good events, in dsr's wire format.
    let on_topic = fx.read_topic(&fx.topics.household_events).await;
    let mut decoded: Vec<_> = on_topic
        .iter()
        .map(|r| fx.codec.decode_event(r.value.as_deref().unwrap()).unwrap())
        .collect();
    decoded.sort_by_key(|e| e.envelope.occurred_at);
    assert_eq!(decoded, [registered.clone(), income.clone()]);

    let out = dsr(&[
        "tail",
        "--bootstrap",
        &bootstrap,
        "--schema-registry",
        &fx.registry_url,
        "--topic",
        "dsr.household-events",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    let mut ids: Vec<String> = shown
        .iter()
        .map(|r| {
            assert_eq!(r["key"], "H00000042");
            r["value"]["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    let mut want = vec![
        registered.envelope.event_id.to_string(),
        income.envelope.event_id.to_string(),
    ];
    want.sort();
    assert_eq!(ids, want);

    // A partition that does not exist is a clear error.
    let out = dsr(&[
        "tail",
        "--bootstrap",
        &bootstrap,
        "--schema-registry",
        &fx.registry_url,
        "--topic",
        "dsr.household-events",
        "--partition",
        "99",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("there is no partition 99"),
        "{stderr}"
    );
}

/// `dsr process --transactions` on a broker without transactions (nisshi refuses a producer
/// with a `transactional.id`) stops at start, saying that the broker refused and what to do,
/// instead of processing without the guarantee it was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_with_transactions_stops_when_the_broker_refuses_them() {
    let fx = KafkaFixture::start(&repo()).await;
    let bootstrap = fx.broker().bootstrap();
    let registry = fx.registry_url.clone();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let keys = dir.path().join("keys");
    let out = tokio::task::spawn_blocking(move || {
        dsr(&[
            "process",
            "--bootstrap",
            &bootstrap,
            "--schema-registry",
            &registry,
            "--state-dir",
            state.to_str().unwrap(),
            "--keys-dir",
            keys.to_str().unwrap(),
            "--transactions",
        ])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused transactions") && stderr.contains("run without `--transactions`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("transactional.id dsr-household-processor@"),
        "{stderr}"
    );
}
