//! Fuzzing the HTTP API of `dsr up` from its own OpenAPI document (`/openapi.json`) with
//! Schemathesis (pinned in `load-tests/requirements.txt`), on a registry holding real
//! households:
//!
//! - no request, as any role, gets a server error (`not_a_server_error`), and
//! - no operation that declares security can be called without valid credentials: Schemathesis'
//!   `ignored_auth` (each operation that answered 2xx is sent again without credentials and
//!   with made-up ones), and, independently of Schemathesis, every operation with declared
//!   security is called here with no credentials and with eight kinds of wrong ones (a garbage
//!   token, a real key id with a wrong secret, HTTP Basic naming another client, a revoked key,
//!   an unsigned or wrongly signed access token, …) and must answer `401` each time, while one
//!   of the registered clients gets past the guard with the same request.
//!
//! Runs are deterministic (a fixed seed, one worker, no example database) and bounded (a few
//! dozen examples per operation). The test fails — it never skips — when python3 or the pinned
//! Schemathesis is missing: `python3 -m pip install -r load-tests/requirements.txt`.

mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use dsr_core::{Event, Payload};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::up::{admin_key, client_with, now, post, register_client, start, wait_idle};

/// The seed of every Schemathesis run: a failure reproduces with the same seed.
const SEED: u64 = 20_260_523;
/// Test cases per operation and phase (Schemathesis' `--max-examples`).
const MAX_EXAMPLES: u32 = 40;
/// A run that takes longer than this is stopped and fails the test.
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// The purpose the fuzzing caseworker and program name (their agreements allow it).
const PURPOSE: &str = "fuzzing";
/// The checks of every Schemathesis run.
const CHECKS: &str = "not_a_server_error,ignored_auth";

const INSTALL: &str = "run `python3 -m pip install -r load-tests/requirements.txt`";

/// The Schemathesis version `load-tests/requirements.txt` pins.
fn pinned_version() -> String {
    let path = support::repo().join("load-tests/requirements.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("schemathesis=="))
        .unwrap_or_else(|| panic!("{} pins no schemathesis version", path.display()))
        .trim()
        .to_owned()
}

/// Fails (never skips) unless python3 has the pinned Schemathesis.
fn require_schemathesis() {
    let output = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('schemathesis'))",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 cannot be started ({e}): install Python 3 and {INSTALL}")
        });
    let installed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success(),
        "schemathesis is not installed for python3 ({}): {INSTALL}",
        String::from_utf8_lossy(&output.stderr)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
    );
    let pinned = pinned_version();
    assert_eq!(
        installed, pinned,
        "python3 has schemathesis {installed}, load-tests/requirements.txt pins {pinned}: {INSTALL}"
    );
}

/// A TOML string (a JSON string is a valid TOML basic string).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// `[dictionaries.NAME]` with `values`.
fn dictionary(name: &str, values: &[String]) -> String {
    let values: Vec<String> = values.iter().map(|v| toml_str(v)).collect();
    format!("[dictionaries.{name}]\nvalues = [{}]\n", values.join(", "))
}

/// One Schemathesis run of the operations `filters` select, as the client with `key`, with
/// `extra` configuration (dictionaries and per-operation parameters). Its whole output, and
/// whether it passed.
fn schemathesis(
    dir: &Path,
    name: &str,
    base: &str,
    key: &str,
    filters: &[&str],
    extra: &str,
) -> (bool, String, Duration) {
    // Hypothesis' health checks judge the data generation (e.g. too many generated form bodies
    // filtered out, or generation too slow on a loaded machine), not the API: they are off,
    // so only the checks above fail a run.
    let config = format!(
        "seed = {SEED}\nworkers = 1\ncolor = false\nrequest-timeout = 30\n\
         suppress-health-check = [\"all\"]\n\n\
         [cache]\nenabled = false\n\n\
         [generation]\nmax-examples = {MAX_EXAMPLES}\ndatabase = \"none\"\n\n\
         [auth.openapi.bearer]\nbearer = {}\n\n{extra}",
        toml_str(key)
    );
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let out_path = dir.join(format!("{name}.out"));
    let out = std::fs::File::create(&out_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&config_path)
        .args(["run", &format!("{base}/openapi.json"), "--checks", CHECKS])
        .args(filters)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("python3 cannot be started ({e}): {INSTALL}"));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let passed = match status {
        Some(status) => status.success(),
        None => false,
    };
    let output = if status.is_none() {
        format!("{output}\n(stopped after {RUN_LIMIT:?})")
    } else {
        output
    };
    (passed, output, started.elapsed())
}

/// The last `n` characters of `text` (a failing run's summary is at its end).
fn tail(text: &str, n: usize) -> &str {
    let start = text.len().saturating_sub(n);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[start..]
}

/// How many test cases a run's summary says it generated.
fn generated(output: &str) -> u64 {
    output
        .lines()
        .rev()
        .filter_map(|l| l.trim().split_once(" generated"))
        .find_map(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0)
}

/// An access token for `sub` that this registry did not sign: with `key`, or unsigned
/// (`alg: none`) without.
fn forged_token(kid: &str, sub: &str, key: Option<&SigningKey>) -> String {
    let now_s = now().0 / 1_000_000;
    let claims = json!({"iss": "dsr", "sub": sub, "role": "admin", "iat": now_s,
        "exp": now_s + 300, "jti": "0011223344556677"});
    let payload = B64.encode(claims.to_string());
    match key {
        Some(key) => {
            let header = B64.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string());
            let input = format!("{header}.{payload}");
            let signature = key.sign(input.as_bytes());
            format!("{input}.{}", B64.encode(signature.to_bytes()))
        }
        None => {
            let header = B64.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
            format!("{header}.{payload}.")
        }
    }
}

async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    authorization: Option<&str>,
) -> (u16, String) {
    let mut request = client
        .request(method.parse().unwrap(), url)
        .header("dsr-purpose", PURPOSE);
    if method == "POST" {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_fuzzing_finds_no_server_error_and_no_way_around_authentication() {
    require_schemathesis();
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // A geographic master list, so that scale-up is on and fuzzed too.
    let mut areas = Vec::new();
    dsr_synth::fixtures::small_population(47, 60)
        .areas
        .write_csv(&mut areas)
        .unwrap();
    std::fs::write(data.path().join("areas.csv"), areas).unwrap();
    let up = start(data.path());
    let base = up.base.clone();
    let api = up.api().await;

    // A small registry, so that reads by real ids reach real households.
    let now = now();
    let events: Vec<Event> = dsr_pipeline::testing::population(47, 60)
        .into_iter()
        .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
        .collect();
    let (registrations, life): (Vec<Event>, Vec<Event>) = events
        .into_iter()
        .partition(|e| e.event_type() == "HouseholdRegistered");
    let (status, body) = post(&api, &base, &registrations).await;
    assert_eq!(status, 202, "{body}");
    for chunk in life.chunks(2_000) {
        let (status, body) = post(&api, &base, chunk).await;
        assert!(status == 202 || status == 422, "{status} {body}");
    }
    wait_idle(&api, &base, Duration::from_secs(180)).await;
    let mut households = Vec::new();
    let mut persons = Vec::new();
    let mut served = Vec::new();
    for r in &registrations {
        let id = r.envelope.household_id.as_ref().unwrap().to_string();
        if let Payload::HouseholdRegistered(h) = &r.payload {
            persons.extend(h.members.iter().map(|m| m.person_id.to_string()));
        }
        let response = api
            .reader
            .get(format!("{base}/v1/households/{id}"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            served.push(response.json::<Value>().await.unwrap()["household"].clone());
        }
        households.push(id);
    }
    assert!(served.len() >= 40, "{} households served", served.len());
    // A program that some households are eligible for, so a program's reads find some.
    let program = served
        .iter()
        .find_map(|h| {
            h["programs"].as_array()?.iter().find_map(|p| {
                (p["eligible"] == true).then(|| p["program_id"].as_str().unwrap().to_owned())
            })
        })
        .expect("some household is eligible for some program");

    // The fuzzing clients, each with a rate limit high enough that requests reach handlers
    // (a 429 would still be no failure).
    let bootstrap = client_with(&[("authorization", &format!("Bearer {}", admin_key(&up.data)))]);
    let register = |spec: Value| {
        let (bootstrap, base) = (bootstrap.clone(), base.clone());
        async move { register_client(&base, &bootstrap, spec).await }
    };
    let rps = 1_000_000;
    let caseworker = register(json!({"id": "fuzz-caseworker", "role": "caseworker",
    "areas": ["*"], "requests_per_second": rps,
    "agreements": [
        {"id": "DSA-FUZZ", "purpose": PURPOSE, "fields": ["*"]},
        {"id": "DSA-FUZZ-IDS", "purpose": "ids", "fields": ["members.person_id", "programs"]}
    ]}))
    .await;
    let program_key = register(json!({"id": "fuzz-program", "role": "program",
        "program": program, "areas": ["*"], "requests_per_second": rps,
        "agreements": [{"id": "DSA-FUZZ-P", "purpose": PURPOSE,
            "fields": ["members.person_id", "members.given_name", "programs", "need_score"]}]}))
    .await;
    let source = register(
        json!({"id": "fuzz-source", "role": "source_system", "areas": ["*"],
        "event_types": ["*"], "source_names": ["*"], "requests_per_second": rps}),
    )
    .await;
    let auditor = register(json!({"id": "fuzz-auditor", "role": "auditor",
        "requests_per_second": rps}))
    .await;
    let coordinator = register(
        json!({"id": "fuzz-coordinator", "role": "emergency_coordinator",
        "requests_per_second": rps}),
    )
    .await;
    let approver = register(json!({"id": "fuzz-approver", "role": "approver",
        "requests_per_second": rps}))
    .await;
    // The admin run uses its own admin, not the first one, and may rotate and revoke only
    // these (see the admin run below).
    let admin = register(json!({"id": "fuzz-admin", "role": "admin",
        "requests_per_second": rps}))
    .await;
    let victims: Vec<String> = (1..=3).map(|i| format!("fuzz-victim-{i}")).collect();
    for v in &victims {
        register(json!({"id": v, "role": "auditor"})).await;
    }
    // A key that was valid and is revoked.
    let revoked = register(json!({"id": "fuzz-revoked", "role": "admin"})).await;
    let response = bootstrap
        .post(format!("{base}/v1/admin/clients/fuzz-revoked/revoke"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // A bulk report of the source's, so report reads find one.
    let response = client_with(&[("authorization", &format!("Bearer {source}"))])
        .post(format!("{base}/v1/events:bulk"))
        .header("content-type", "application/x-ndjson")
        .body("not an event\n{\"event_type\": \"Nothing\"}\n")
        .send()
        .await
        .unwrap();
    let bulk: Value = response.json().await.unwrap();
    let report_id = bulk["report_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a bulk upload with bad rows has a report: {bulk}"))
        .to_owned();

    // 1. Every operation that declares security, without valid credentials: 401, always.
    let http = reqwest::Client::new();
    let document: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let admin_key_id = admin.split('_').nth(1).unwrap().to_owned();
    let stranger = SigningKey::generate(&mut rand_core::OsRng);
    let wrong: Vec<(&str, String)> = vec![
        ("garbage bearer token", "Bearer garbage".into()),
        (
            "the fuzzing admin's key id with a wrong secret",
            format!("Bearer dsr_{admin_key_id}_{}", "0".repeat(64)),
        ),
        (
            "HTTP Basic naming another client with the fuzzing admin's key",
            format!("Basic {}", STANDARD.encode(format!("fuzz-auditor:{admin}"))),
        ),
        (
            "HTTP Basic with a wrong key",
            format!(
                "Basic {}",
                STANDARD.encode("fuzz-admin:dsr_0000000000000000_00")
            ),
        ),
        ("a revoked admin key", format!("Bearer {revoked}")),
        (
            "an unsigned access token (alg none)",
            format!("Bearer {}", forged_token(&kid, "fuzz-admin", None)),
        ),
        (
            "an access token signed by another key",
            format!(
                "Bearer {}",
                forged_token(&kid, "fuzz-admin", Some(&stranger))
            ),
        ),
        ("an unknown scheme", format!("Token {admin}")),
    ];
    let fuzzers = [
        ("fuzz-caseworker", caseworker.as_str()),
        ("fuzz-program", program_key.as_str()),
        ("fuzz-source", source.as_str()),
        ("fuzz-auditor", auditor.as_str()),
        ("fuzz-admin", admin.as_str()),
        ("fuzz-coordinator", coordinator.as_str()),
        ("fuzz-approver", approver.as_str()),
    ];
    let global_security = document["security"].clone();
    let mut guarded = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let security = operation
                .get("security")
                .cloned()
                .unwrap_or_else(|| global_security.clone());
            // `[{}]` (or nothing) means no credentials are needed.
            let alternatives = security.as_array().cloned().unwrap_or_default();
            let needs_credentials = !alternatives.is_empty()
                && alternatives
                    .iter()
                    .all(|a| a.as_object().is_some_and(|a| !a.is_empty()));
            if !needs_credentials {
                continue;
            }
            // Real ids, so that valid credentials would reach real data.
            let id = if path.starts_with("/v1/households/") {
                households[0].clone()
            } else if path.starts_with("/v1/persons/") {
                persons[0].clone()
            } else if path.starts_with("/v1/events:bulk/reports/") {
                report_id.clone()
            } else if path.starts_with("/v1/programs/") {
                // The fuzzing program client's own program.
                program.to_string()
            } else {
                victims[0].clone()
            };
            let url = format!("{base}{}", path.replace("{id}", &id));
            assert!(
                !url.contains('{'),
                "a path parameter this test does not fill: {path}"
            );
            let (status, body) = send(&http, &method, &url, None).await;
            assert_eq!(status, 401, "{method} {path} without credentials: {body}");
            for (what, authorization) in &wrong {
                let (status, body) = send(&http, &method, &url, Some(authorization)).await;
                assert_eq!(status, 401, "{method} {path} with {what}: {body}");
            }
            // The same request with real credentials gets past the guard for some client, so
            // the 401s above came from the credentials and not from the request.
            let mut answers = Vec::new();
            for (_, key) in fuzzers {
                answers.push(send(&http, &method, &url, Some(&format!("Bearer {key}"))).await);
            }
            assert!(
                answers.iter().any(|(s, _)| *s != 401 && *s != 403),
                "no client may {method} {path}: {answers:?}"
            );
            guarded.push(format!("{method} {path}"));
        }
    }
    assert!(
        guarded.len() >= 12,
        "only {} operations declare security: {guarded:?}",
        guarded.len()
    );
    // (The admin's pass above rotated and revoked victims[0]: that is what victims are for.)

    // 2. Schemathesis, once per role, as that role's client.
    let dicts = [
        dictionary("households", &households),
        dictionary("persons", &persons),
        dictionary("purposes", &[PURPOSE.to_owned(), "ids".to_owned()]),
        dictionary("reports", std::slice::from_ref(&report_id)),
        dictionary("victims", &victims),
        dictionary(
            "clients",
            &["fuzz-caseworker", "fuzz-source", "fuzz-admin", "anonymous"].map(String::from),
        ),
        dictionary(
            "actions",
            &[
                "household.read",
                "events.publish",
                "client.create",
                "token.issue",
            ]
            .map(String::from),
        ),
        dictionary(
            "times",
            &[
                "2026-06-01T00:00:00Z".to_owned(),
                (now.0 / 1000).to_string(),
                "0".to_owned(),
            ],
        ),
    ]
    .concat();
    // Real ids half of the time, the purpose header mostly valid, so that reads reach the
    // projection and the audit log rather than stopping at 400/404.
    let reads = "\
[[operations]]
include-path-regex = \"^/v1/households/\"
parameters = { \"path.id\" = { dictionary = \"households\", probability = 0.5 }, \"header.Dsr-Purpose\" = { dictionary = \"purposes\", probability = 0.8 }, \"query.as_of\" = { dictionary = \"times\", probability = 0.3 } }

[[operations]]
include-path-regex = \"^/v1/persons/\"
parameters = { \"path.id\" = { dictionary = \"persons\", probability = 0.5 }, \"header.Dsr-Purpose\" = { dictionary = \"purposes\", probability = 0.8 } }

[[operations]]
include-path-regex = \"^/v1/events:bulk/reports/\"
parameters = { \"path.id\" = { dictionary = \"reports\", probability = 0.5 } }

[[operations]]
include-path = \"/v1/audit\"
parameters = { \"query.who\" = { dictionary = \"clients\", probability = 0.5 }, \"query.action\" = { dictionary = \"actions\", probability = 0.5 }, \"query.subject\" = { dictionary = \"households\", probability = 0.3 } }
";
    // The admin's runs must not lock the fuzzing clients out half-way (their later requests
    // would all be 401s and test nothing). So rotating and revoking get a run of their own,
    // the last, beside only the operation that creates clients: the ids they name are a
    // victim's half of the time, a generated string otherwise, or (in the stateful phase) a
    // client that run created. The client list is not in that run, because the stateful
    // phase would follow it to every registered client and revoke the fuzzing clients
    // themselves, the run's own admin included. After every run each fuzzing client's key
    // is checked to still work.
    let admin_ops = "\
[[operations]]
include-path-regex = \"^/v1/admin/clients/[^/]+/(rotate|revoke)$\"
parameters = { \"path.id\" = { dictionary = \"victims\", probability = 0.5 } }
";
    let config = format!("{dicts}\n{reads}");
    let admin_config = format!("{dicts}\n{reads}\n{admin_ops}");
    let keys_ops = "^/v1/admin/clients/[^/]+/(rotate|revoke)$";
    // Every operation as the caseworker and the admin; the other roles' runs only where the
    // role is allowed in: the publishing and reading handlers and the audit query.
    let runs: Vec<(&str, &str, Vec<&str>, &str)> = vec![
        ("caseworker", caseworker.as_str(), vec![], config.as_str()),
        (
            "program",
            program_key.as_str(),
            vec!["--include-path-regex", "^/v1/(households|persons)/"],
            config.as_str(),
        ),
        (
            "source",
            source.as_str(),
            vec!["--include-path-regex", "^/v1/events"],
            config.as_str(),
        ),
        (
            "auditor",
            auditor.as_str(),
            vec!["--include-path", "/v1/audit"],
            config.as_str(),
        ),
        (
            "admin",
            admin.as_str(),
            vec!["--exclude-path-regex", keys_ops],
            config.as_str(),
        ),
        (
            "coordinator",
            coordinator.as_str(),
            vec!["--include-path-regex", "^/v1/(scale-up|areas|shocks)"],
            config.as_str(),
        ),
        (
            "approver",
            approver.as_str(),
            vec!["--include-path-regex", "^/v1/scale-up"],
            config.as_str(),
        ),
        (
            "admin-keys",
            admin.as_str(),
            // (One filter: Schemathesis joins different include filters with "or".)
            vec!["--include-name-regex", "^POST /v1/admin/clients"],
            admin_config.as_str(),
        ),
    ];
    let mut timings = Vec::new();
    for (role, key, filters, config) in &runs {
        let (passed, output, took) = schemathesis(work.path(), role, &base, key, filters, config);
        assert!(
            passed,
            "Schemathesis as the {role} found failures (seed {SEED}):\n{}",
            tail(&output, 20_000)
        );
        assert!(
            generated(&output) > 0,
            "Schemathesis as the {role} ran no test:\n{}",
            tail(&output, 5_000)
        );
        timings.push(format!("{role} {took:.1?}"));
        // The run locked no fuzzing client out, so every request of it and of the runs
        // after it was really made with valid credentials.
        for (who, key) in &fuzzers {
            let (status, body) = send(
                &http,
                "GET",
                &format!("{base}/v1/status"),
                Some(&format!("Bearer {key}")),
            )
            .await;
            assert_eq!(status, 200, "{who}'s key after the {role}'s run: {body}");
        }
    }

    // Reads with real ids reached real households (audited as allowed), and the registry
    // still answers after everything it was sent.
    for who in ["fuzz-caseworker", "fuzz-program"] {
        let url = format!("{base}/v1/audit?who={who}&action=household.read&limit=10000");
        let (status, body) = send(&http, "GET", &url, Some(&format!("Bearer {auditor}"))).await;
        assert_eq!(status, 200, "the audit log: {body}");
        let entries: Vec<Value> = serde_json::from_str(&body).unwrap();
        let allowed = entries.iter().filter(|e| e["outcome"] == "allowed").count();
        assert!(
            allowed > 0,
            "no read by {who} reached a household: the fuzzing missed the real data"
        );
    }
    let (status, _) = send(&http, "GET", &format!("{base}/healthz"), None).await;
    assert_eq!(status, 200);
    let log = up.log.lock().unwrap().join("\n");
    assert!(
        !log.contains("panicked"),
        "dsr up panicked while being fuzzed:\n{}",
        tail(&log, 20_000)
    );
    let operations: BTreeSet<&str> = guarded.iter().map(String::as_str).collect();
    eprintln!(
        "fuzzing: {} guarded operations refused 9 kinds of missing or wrong credentials ({operations:?}); Schemathesis runs: {}; {:.1?} in all",
        guarded.len(),
        timings.join(", "),
        started.elapsed()
    );
}
