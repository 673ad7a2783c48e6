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
    pub data: std::path::PathBuf,
    /// Everything `dsr up` wrote to stderr (its log), for tests that check what it logs.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The purpose the tests' caseworker names on every read (its agreement allows every field).
pub const TEST_PURPOSE: &str = "testing";

/// The API as the tests use it: two registered clients, a source system that publishes
/// (`post`, and reading its own bulk reports) and a caseworker everywhere that reads
/// households (`get`, with the purpose header), so the tests exercise the same access control
/// as everyone else. Built from the first admin's key in the data directory.
#[derive(Clone)]
pub struct Api {
    pub source: reqwest::Client,
    pub reader: reqwest::Client,
    pub admin: reqwest::Client,
}

/// A client that sends `headers` with every request.
pub fn client_with(headers: &[(&str, &str)]) -> reqwest::Client {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    reqwest::Client::builder()
        .default_headers(map)
        .build()
        .unwrap()
}

/// The first admin's API key, as `dsr up` wrote it on the data directory's first start.
pub fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("security/bootstrap-admin.key"))
        .expect("dsr up wrote the first admin's key")
        .trim()
        .to_owned()
}

/// Registers `spec` (or gives the existing client of that id a new key) as the admin; the key.
pub async fn register_client(base: &str, admin: &reqwest::Client, spec: Value) -> String {
    let id = spec["id"].as_str().unwrap().to_owned();
    let response = admin
        .post(format!("{base}/v1/admin/clients"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    let response = if response.status().as_u16() == 409 {
        admin
            .post(format!("{base}/v1/admin/clients/{id}/rotate"))
            .json(&serde_json::json!({"overlap_seconds": 86_400}))
            .send()
            .await
            .unwrap()
    } else {
        response
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(
        status == 201 || status == 200,
        "registering {id}: {status} {body}"
    );
    body["api_key"].as_str().unwrap().to_owned()
}

impl Up {
    /// The tests' clients on this registry (registered on first use of the data directory).
    pub async fn api(&self) -> Api {
        let admin_key = admin_key(&self.data);
        let admin = client_with(&[("authorization", &format!("Bearer {admin_key}"))]);
        let source_key = register_client(
            &self.base,
            &admin,
            serde_json::json!({
                "id": "test-source", "role": "source_system", "areas": ["*"],
                "event_types": ["*"], "source_names": ["*"], "requests_per_second": 100000
            }),
        )
        .await;
        let reader_key = register_client(
            &self.base,
            &admin,
            serde_json::json!({
                "id": "test-caseworker", "role": "caseworker", "areas": ["*"],
                "requests_per_second": 100000,
                "agreements": [{"id": "DSA-TEST", "purpose": TEST_PURPOSE, "fields": ["*"]}]
            }),
        )
        .await;
        Api {
            source: client_with(&[("authorization", &format!("Bearer {source_key}"))]),
            reader: client_with(&[
                ("authorization", &format!("Bearer {reader_key}")),
                ("dsr-purpose", TEST_PURPOSE),
            ]),
            admin,
        }
    }
}

impl Api {
    /// A POST as the source system.
    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.source.post(url)
    }

    /// A GET as the caseworker, except a bulk report, which only the source that uploaded
    /// the file may read.
    pub fn get(&self, url: impl reqwest::IntoUrl + AsRef<str>) -> reqwest::RequestBuilder {
        if url.as_ref().contains("/v1/events:bulk/reports/") {
            self.source.get(url)
        } else {
            self.reader.get(url)
        }
    }
}

/// Starts `dsr up` on `data` (on a free port, small batches so tests see several) and waits
/// until it listens.
pub fn start(data: &Path) -> Up {
    start_with(data, &["--batch-size", "500"])
}

/// Starts `dsr up` on `data` with extra flags and waits until it listens.
pub fn start_with(data: &Path, flags: &[&str]) -> Up {
    start_with_env(data, flags, &[])
}

/// Starts `dsr up` on `data` with extra flags and environment variables.
/// `DSR_BIN` runs another build instead of this one (a benchmark's same-run baseline).
pub fn start_with_env(data: &Path, flags: &[&str], env: &[(&str, &str)]) -> Up {
    let binary = std::env::var_os("DSR_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_dsr").into());
    let mut child = Command::new(binary)
        .args(["up", "--listen", "127.0.0.1:0"])
        .args(flags)
        .envs(env.iter().copied())
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
    let log = std::sync::Arc::new(std::sync::Mutex::new(printed));
    let kept = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    Up {
        child,
        base,
        data: data.to_owned(),
        log,
    }
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
    client: &Api,
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

pub async fn post(client: &Api, base: &str, events: &[Event]) -> (u16, Value) {
    try_post(client, base, events).await.unwrap()
}

pub async fn get(client: &Api, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until every household in `ids` is served at at least `version`.
pub async fn wait_served(client: &Api, base: &str, ids: &[(String, u64)]) {
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
pub async fn wait_idle(client: &Api, base: &str, limit: Duration) -> Value {
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

/// Every message of a program's pull feed, page by page, as `client` (the program's) reads it.
pub async fn program_feed(client: &reqwest::Client, base: &str, program: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/programs/{program}/changes?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&after={c}"));
        }
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let page: Value = response.json().await.unwrap();
        let messages = page["messages"].as_array().unwrap();
        if messages.is_empty() {
            return all;
        }
        all.extend(messages.iter().cloned());
        cursor = Some(page["next"].as_str().unwrap().to_owned());
    }
}

/// A generated population's life events that have happened by now (the generator runs a
/// year ahead; the API refuses events from the future), area-wide events left out.
pub fn past_life_events(population: &dsr_synth::fixtures::Population) -> Vec<Event> {
    let now = now();
    population
        .events
        .iter()
        .filter(|e| !e.payload.is_area_event())
        .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
        .cloned()
        .collect()
}

/// Posts `events` in batches of 200 (each must be accepted), then waits until the registry
/// is idle.
pub async fn post_all_and_wait(client: &Api, base: &str, events: &[Event]) {
    for batch in events.chunks(200) {
        let (status, body) = post(client, base, batch).await;
        assert_eq!(status, 202, "{body}");
    }
    wait_idle(client, base, Duration::from_secs(120)).await;
}

/// The program `id` as `GET /v1/programs` shows it.
pub async fn program_view(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let programs = get_json(client, format!("{base}/v1/programs")).await;
    programs["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no program {id} in {programs}"))
}

/// The JSON body of a GET that must succeed.
pub async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(&url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}
