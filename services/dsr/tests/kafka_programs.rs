//! Program delivery on a Kafka cluster (a real broker started here): `dsr process` writes each
//! program's eligibility changes to its topic, `dsr deliver run` (consumer groups
//! `dsr-delivery.<program>`) posts them to webhook receivers started here (real HTTP servers
//! checking every signature with the Standard Webhooks project's own verifier), and this test
//! reads the program topics with a Kafka consumer. Then:
//!
//! - what the consumer read is the domain core's changes for the same events (none twice,
//!   none missing, the domain core's ids);
//! - each program's receiver got exactly its topic's changes, in per-household order (batched
//!   for the child grant), and exactly the life events about its beneficiaries.

mod support;

use dsr_pipeline::testing::{
    assert_outputs_match, population, reference, wait_for_outputs, KafkaFixture,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::webhooks::{by_household, first_copies, serve, Receiver};
use support::{repo, start_process};

fn dsr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("dsr runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_the_program_topics_and_their_webhooks_carry_the_domain_cores_changes() {
    let fx = KafkaFixture::start(&repo()).await;
    let events = population(31, 1_500);
    let expected = reference(&events, &fx.programs);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("delivery-data");
    let data_arg = data.to_str().unwrap();

    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = serve(Arc::clone(&receiver), listener);

    // A program that is not in programs/ is refused with the list of those that are.
    let out = dsr(&[
        "deliver",
        "webhook",
        "no-such-program",
        "--url",
        &format!("http://127.0.0.1:{port}/hook/x"),
        "--data-dir",
        data_arg,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no program `no-such-program`") && stderr.contains("child-grant"),
        "{stderr}"
    );
    // A private address needs --allow-private-network.
    let out = dsr(&[
        "deliver",
        "webhook",
        "food-aid",
        "--url",
        &format!("http://127.0.0.1:{port}/hook/food-aid"),
        "--data-dir",
        data_arg,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("private"), "{stderr}");

    for p in &fx.programs {
        let id = p.id.as_str();
        let url = format!("http://127.0.0.1:{port}/hook/{id}");
        let batch = if id == "child-grant" { "50" } else { "1" };
        let out = dsr(&[
            "deliver",
            "webhook",
            id,
            "--url",
            &url,
            "--allow-private-network",
            "--batch-size",
            batch,
            "--data-dir",
            data_arg,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secret = stdout
            .lines()
            .find(|l| l.starts_with("signing secret"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("a new webhook's secret is printed: {stdout}"))
            .to_owned();
        assert!(secret.starts_with("whsec_"), "{stdout}");
        receiver
            .secrets
            .lock()
            .unwrap()
            .insert(id.to_owned(), vec![secret]);
    }

    let deliver_log = dir.path().join("deliver.log");
    let mut deliver = Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args([
            "deliver",
            "run",
            "--bootstrap",
            &fx.broker().bootstrap(),
            "--data-dir",
            data_arg,
            "--progress-seconds",
            "5",
        ])
        .env("DSR_LOG", "info")
        .env("NO_COLOR", "1")
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&deliver_log).unwrap()))
        .spawn()
        .expect("dsr deliver starts");

    // Each new webhook first sends its program's eligible set (none yet: the topics are
    // empty) and starts live delivery where the topics end; wait for that before publishing.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let log = std::fs::read_to_string(&deliver_log).unwrap_or_default();
        if log.matches("backfill sent").count() == fx.programs.len() {
            break;
        }
        assert!(Instant::now() < deadline, "no backfill:\n{log}");
        assert!(
            deliver.try_wait().unwrap().is_none(),
            "dsr deliver exited:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fx.publish(&events).await;
    let mut process = start_process(&fx, &dir.path().join("processor"));
    let (households, changes) = wait_for_outputs(&fx, &expected).await;
    // What a Kafka consumer reads on the program topics is what the domain core computes.
    assert_outputs_match(&expected, &households, &changes);

    // The topics, per program: changes (in topic order) and life events about beneficiaries.
    let mut topics: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for c in &changes {
        topics
            .entry(c.program_id.to_string())
            .or_default()
            .push(serde_json::json!({
                "id": c.change_id.to_string(),
                "type": "eligibility",
                "data": {"household_id": c.household_id.as_str()},
            }));
    }
    let mut life_events = 0;
    for r in fx.read_topic(&fx.topics.beneficiary_events).await {
        let (_, body) = dsr_contracts::wire::unframe(r.value.as_deref().unwrap()).unwrap();
        let n = dsr_contracts::avro::decode_beneficiary_event(body).unwrap();
        life_events += 1;
        topics
            .entry(n.program_id.to_string())
            .or_default()
            .push(serde_json::json!({
                "id": n.notice_id.to_string(),
                "type": "life_event",
                "data": {"household_id": n.household_id.as_str()},
            }));
    }
    eprintln!(
        "{} changes and {life_events} life events on the topics",
        changes.len()
    );
    assert!(
        life_events > 0,
        "the population has life events about beneficiaries"
    );
    let count = |program: &str| -> usize {
        receiver
            .received
            .lock()
            .unwrap()
            .get(program)
            .map_or(0, |r| first_copies(r).len())
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while topics.iter().any(|(p, ms)| count(p) < ms.len()) {
        assert!(
            Instant::now() < deadline,
            "not everything delivered: {:?} of {:?}\n{}",
            topics.keys().map(|p| count(p)).collect::<Vec<_>>(),
            topics.values().map(Vec::len).collect::<Vec<_>>(),
            std::fs::read_to_string(&deliver_log).unwrap_or_default()
        );
        assert!(
            deliver.try_wait().unwrap().is_none(),
            "dsr deliver exited:\n{}",
            std::fs::read_to_string(&deliver_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(receiver.bad_signatures.load(Ordering::Relaxed), 0);

    let received = receiver.received.lock().unwrap().clone();
    for (program, on_topics) in &topics {
        let delivered = first_copies(&received[program]);
        for prefix in ["eligibility", "life_event"] {
            let only = |ms: &[Value]| -> Vec<Value> {
                ms.iter()
                    .filter(|m| m["type"].as_str().unwrap().starts_with(prefix))
                    .cloned()
                    .collect()
            };
            assert_eq!(
                by_household(&only(&delivered)),
                by_household(&only(on_topics)),
                "{program}: the webhook got the {prefix} messages on the topics, in per-household order"
            );
        }
    }
    assert!(
        received["child-grant"].iter().any(|r| r.messages.len() > 1),
        "the child grant's changes came in batches"
    );

    // SIGTERM: delivery stops cleanly, saying so.
    let _ = Command::new("kill")
        .args(["-TERM", &deliver.id().to_string()])
        .status();
    let status = deliver.wait().unwrap();
    let log = std::fs::read_to_string(&deliver_log).unwrap_or_default();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("delivered"),
        "progress lines are printed: {log}"
    );
    assert!(log.contains("dsr deliver: stopped"), "{log}");
    process.kill().unwrap();
    process.wait().unwrap();
}
