//! Confluent's own Python client (`confluent_kafka.schema_registry`) against our registry:
//! register, fetch by id, look up, compatibility, and an `AvroSerializer` /
//! `AvroDeserializer` round trip; plus dsr's own `LifeEvent` bytes decoded by it. The script
//! is `tests/python/stock_client.py`.
//!
//! Needs `python3` with the packages of `load-tests/requirements.txt`; without them this test
//! fails (it never skips) and says how to install them.

mod common;

use common::Server;
use dsr_schema_registry::{register_dsr_schemas, Registry, VersionSpec};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTALL: &str = "run `pip install -r load-tests/requirements.txt` (from the repository root) to install Confluent's Python client";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `python3 args...`, killing it after `limit`.
fn run_python(args: &[String], limit: Duration) -> Output {
    let mut child = Command::new(python())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install Python 3, then {INSTALL}",
                python()
            )
        });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "python did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_python_client_works_against_dsr() {
    // The client must be importable: fail, never skip, when it is not.
    let probe = tokio::task::spawn_blocking(|| {
        run_python(
            &[
                "-c".into(),
                "import confluent_kafka.schema_registry.avro, fastavro".into(),
            ],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert!(
        probe.status.success(),
        "Confluent's Python schema registry client is not importable with {}: {}\n{INSTALL}",
        python(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );

    let registry = Arc::new(Registry::in_memory());
    let life_id = register_dsr_schemas(&registry, &["life-events"]).unwrap();
    let server = Server::start(registry.clone()).await;

    let event = dsr_contracts::fixtures::person_born();
    let mut framed = vec![0];
    framed.extend_from_slice(&life_id.to_be_bytes());
    framed.extend(dsr_contracts::encode(&event).unwrap());
    let hex: String = framed.iter().map(|b| format!("{b:02x}")).collect();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/stock_client.py");
    let args = vec![
        script.display().to_string(),
        server.url.clone(),
        hex,
        event.envelope.event_id.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || run_python(&args, Duration::from_secs(180)))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("OK"),
        "the Python client failed against dsr's registry ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // What the Python client did is in our registry.
    let v2 = registry
        .version("py-people-value", VersionSpec::Latest, false)
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        registry.versions("py-people-value", false).unwrap(),
        vec![1, 2]
    );
    assert_eq!(
        registry.config(Some("py-people-value"), false).unwrap(),
        dsr_schema_registry::CompatibilityLevel::Full
    );
    server.stop().await;
}
