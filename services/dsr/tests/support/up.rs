//! `dsr up` as a child process, as a user runs it: started on a data directory, found by the
//! address it prints, stopped with a signal; and the HTTP calls the tests make to it.

use dsr_core::{Event, Micros};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `dsr up` and the address it printed.
pub struct Up {
    pub child: Child,
    pub base: String,
}

/// Starts `dsr up` on `data` (on a free port, small batches so tests see several) and waits
/// until it listens.
pub fn start(data: &Path) -> Up {
    start_with(data, &["--batch-size", "500"])
}

/// Starts `dsr up` on `data` with extra flags and waits until it listens.
pub fn start_with(data: &Path, flags: &[&str]) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args(["up", "--listen", "127.0.0.1:0"])
        .args(flags)
        .arg("--data-dir")
        .arg(data)
        .env("NO_COLOR", "1")
        .current_dir(super::repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dsr up starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let mut printed = Vec::new();
    let base = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("dsr up exited before listening: {printed:#?}"))
            .unwrap();
        if let Some(address) = line.strip_prefix("dsr up: listening on ") {
            break address.trim().to_owned();
        }
        printed.push(line);
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Up { child, base }
}

/// A failing test must not leave `dsr up` running.
impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`-TERM`, `-KILL`) and waits for the process to end.
pub fn stop_with(up: &mut Up, signal: &str) -> std::process::ExitStatus {
    Command::new("kill")
        .args([signal, &up.child.id().to_string()])
        .status()
        .unwrap();
    up.child.wait().unwrap()
}

pub fn now() -> Micros {
    Micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    )
}

/// Posts `events` as a JSON array; the status and the body, or why there was no answer.
pub async fn try_post(
    client: &reqwest::Client,
    base: &str,
    events: &[Event],
) -> Result<(u16, Value), reqwest::Error> {
    let response = client
        .post(format!("{base}/v1/events"))
        .json(events)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

pub async fn post(client: &reqwest::Client, base: &str, events: &[Event]) -> (u16, Value) {
    try_post(client, base, events).await.unwrap()
}

pub async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until every household in `ids` is served at at least `version`.
pub async fn wait_served(client: &reqwest::Client, base: &str, ids: &[(String, u64)]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    for (id, version) in ids {
        loop {
            let (status, body) = get(client, format!("{base}/v1/households/{id}")).await;
            if status == 200 && body["household"]["version"].as_u64().unwrap() >= *version {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "household {id} not served at version {version}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits (up to `limit`) until `GET /v1/status` says every stage is idle, twice in a row half
/// a second apart; returns the last status.
pub async fn wait_idle(client: &reqwest::Client, base: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    let mut idle_before = false;
    loop {
        let (status, body) = get(client, format!("{base}/v1/status")).await;
        assert_eq!(status, 200, "{body}");
        let idle = body["idle"].as_bool().unwrap();
        if idle && idle_before {
            return body;
        }
        idle_before = idle;
        assert!(
            Instant::now() < deadline,
            "dsr up still has a backlog after {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
