//! `dsr up` as a user runs it: a child process on a fresh data directory. Life events posted
//! over HTTP come out as households with need scores, histories and program statuses; bad
//! records get a reason each while the good ones in the same request are accepted; a clean
//! stop (SIGTERM) and a kill -9 both restart on the same directory with nothing lost.

mod support;

use dsr_core::{Event, Micros};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::repo;

/// A running `dsr up` and the address it printed.
struct Up {
    child: Child,
    base: String,
}

fn start(data: &Path) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args(["up", "--listen", "127.0.0.1:0", "--batch-size", "500"])
        .arg("--data-dir")
        .arg(data)
        .env("NO_COLOR", "1")
        .current_dir(repo())
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

fn stop_with(up: &mut Up, signal: &str) -> std::process::ExitStatus {
    Command::new("kill")
        .args([signal, &up.child.id().to_string()])
        .status()
        .unwrap();
    up.child.wait().unwrap()
}

fn now() -> Micros {
    Micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    )
}

async fn post(client: &reqwest::Client, base: &str, events: &[Event]) -> (u16, Value) {
    let response = client
        .post(format!("{base}/v1/events"))
        .json(events)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until every household in `ids` is served at at least `version`.
async fn wait_served(client: &reqwest::Client, base: &str, ids: &[(String, u64)]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsr_up_serves_households_from_posted_events_and_keeps_them_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut up = start(data.path());

    // A generated population: registrations, then the life events that already happened.
    let now = now();
    let events: Vec<Event> = dsr_pipeline::testing::population(11, 300)
        .into_iter()
        .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
        .collect();
    let registrations: Vec<Event> = events
        .iter()
        .filter(|e| e.event_type() == "HouseholdRegistered")
        .cloned()
        .collect();
    assert!(
        registrations.len() >= 250,
        "{} registrations",
        registrations.len()
    );
    // The last 50 registrations are held back for the kill -9 step at the end (their other
    // events wait for them, parked, meanwhile).
    let (registrations, held_back) = registrations.split_at(registrations.len() - 50);
    let (status, body) = post(&client, &up.base, registrations).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["accepted"].as_array().unwrap().len(),
        registrations.len()
    );
    let ids: Vec<(String, u64)> = registrations
        .iter()
        .map(|e| (e.envelope.household_id.clone().unwrap().to_string(), 1))
        .collect();
    wait_served(&client, &up.base, &ids).await;

    // Good and bad records in one request: the good ones are accepted, each bad one has a reason.
    let mut mixed: Vec<Value> = vec![serde_json::to_value(&events[300]).unwrap()];
    mixed.push(serde_json::json!({"event_type": "Nope"}));
    let mut future = events[301].clone();
    future.envelope.occurred_at = Micros(now.0 + 86_400_000_000);
    mixed.push(serde_json::to_value(&future).unwrap());
    mixed.push(serde_json::to_value(&events[302]).unwrap());
    let response = client
        .post(format!("{}/v1/events", up.base))
        .json(&mixed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.unwrap();
    let accepted: Vec<u64> = body["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["index"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted, vec![0, 3], "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected[0]["index"], 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field"),
        "{body}"
    );
    assert!(
        rejected[1]["reason"].as_str().unwrap().contains("future"),
        "{body}"
    );
    let response = client
        .post(format!("{}/v1/events", up.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = client
        .post(format!("{}/v1/events", up.base))
        .header("content-type", "application/json")
        .body(vec![b' '; dsr_api::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);

    // The rest of the events (not the registrations), in chunks.
    let rest: Vec<Event> = events[303..]
        .iter()
        .filter(|e| e.event_type() != "HouseholdRegistered")
        .cloned()
        .collect();
    for chunk in rest.chunks(500) {
        let (status, body) = post(&client, &up.base, chunk).await;
        assert!(
            status == 202 || status == 422,
            "unexpected answer {status}: {body}"
        );
    }
    let (_, first) = get(&client, format!("{}/v1/households/{}", up.base, ids[0].0)).await;
    assert!(first["need_score"]["score"].is_number(), "{first}");
    assert!(
        first["need_score"]["explanation"]["contributions"].is_array(),
        "{first}"
    );
    assert!(first["programs"].is_array(), "{first}");
    let person = first["household"]["members"][0]["person_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = get(
        &client,
        format!("{}/v1/persons/{person}/household", up.base),
    )
    .await;
    assert_eq!(
        (status, body["household_id"].as_str()),
        (200, Some(ids[0].0.as_str()))
    );

    // History and as_of.
    let (status, history) = get(
        &client,
        format!("{}/v1/households/{}/history", up.base, ids[0].0),
    )
    .await;
    assert_eq!(status, 200);
    let versions = history["versions"].as_array().unwrap();
    assert!(!versions.is_empty());
    assert_eq!(versions[0]["version"], 1);
    let first_written = versions[0]["written_at_ms"].as_i64().unwrap();
    let (status, old) = get(
        &client,
        format!(
            "{}/v1/households/{}?as_of={first_written}",
            up.base, ids[0].0
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(old["household"]["version"], 1);
    let (status, _) = get(
        &client,
        format!(
            "{}/v1/households/{}?as_of=2000-01-01T00:00:00Z",
            up.base, ids[0].0
        ),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = get(&client, format!("{}/v1/households/NOBODY", up.base)).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("NOBODY"));
    let (status, _) = get(&client, format!("{}/readyz", up.base)).await;
    assert_eq!(status, 200);
    let subjects = client
        .get(format!("{}/subjects", up.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        subjects.contains("dsr.life-events.legacy-http-value"),
        "{subjects}"
    );

    // Wait until the last posted events are served, then remember every household.
    let mut served = Vec::new();
    for (id, _) in &ids {
        let (_, body) = get(&client, format!("{}/v1/households/{id}", up.base)).await;
        served.push((id.clone(), body["household"]["version"].as_u64().unwrap()));
    }

    // A clean stop, then a restart on the same directory: nothing lost.
    let status = stop_with(&mut up, "-TERM");
    assert!(
        status.success(),
        "dsr up exits cleanly on SIGTERM: {status}"
    );
    let mut up = start(data.path());
    wait_served(&client, &up.base, &served).await;

    // Post more, kill -9 right after the acknowledgement, restart: the acknowledged events are
    // applied.
    let extra = held_back;
    let (status, body) = post(&client, &up.base, extra).await;
    assert_eq!(status, 202, "{body}");
    let status = stop_with(&mut up, "-KILL");
    assert!(!status.success());
    let mut up = start(data.path());
    let extra_ids: Vec<(String, u64)> = extra
        .iter()
        .map(|e| (e.envelope.household_id.clone().unwrap().to_string(), 1))
        .collect();
    wait_served(&client, &up.base, &extra_ids).await;
    wait_served(&client, &up.base, &served).await;
    stop_with(&mut up, "-TERM");
}
