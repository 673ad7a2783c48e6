//! `dsr up` as a user runs it: a child process on a fresh data directory. Life events posted
//! over HTTP come out as households with need scores, histories and program statuses; bad
//! records get a reason each while the good ones in the same request are accepted; a clean
//! stop (SIGTERM) and a kill -9 both restart on the same directory with nothing lost.

mod support;

use dsr_core::{Event, Micros};
use serde_json::Value;
use std::time::Duration;
use support::up::{get, now, post, start, stop_with, wait_idle, wait_served};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsr_up_serves_households_from_posted_events_and_keeps_them_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let mut up = start(data.path());
    let client = up.api().await;

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
    wait_idle(&client, &up.base, Duration::from_secs(60)).await;

    // Good and bad records in one request: the good ones are accepted, each bad one has a reason
    // (among them an event about a household the registry does not have: the pipeline is idle,
    // so dsr can tell).
    let known: std::collections::HashSet<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    let about_known: Vec<&Event> = events
        .iter()
        .filter(|e| e.event_type() != "HouseholdRegistered")
        .filter(|e| {
            dsr_core::reducer::target_household(e).is_some_and(|h| known.contains(h.as_str()))
        })
        .take(3)
        .collect();
    let mut mixed: Vec<Value> = vec![serde_json::to_value(about_known[0]).unwrap()];
    mixed.push(serde_json::json!({"event_type": "Nope"}));
    let mut future = about_known[1].clone();
    future.envelope.occurred_at = Micros(now.0 + 86_400_000_000);
    mixed.push(serde_json::to_value(&future).unwrap());
    mixed.push(serde_json::to_value(about_known[2]).unwrap());
    let stranger = dsr_synth::fixtures::income(
        "H99999999",
        "P9999999900",
        dsr_core::codes::IncomeSource::Wages,
        90.0,
        dsr_synth::fixtures::at(2025, 11, 2),
    );
    mixed.push(serde_json::to_value(&stranger).unwrap());
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
    assert_eq!(rejected[2]["index"], 4);
    assert!(
        rejected[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unknown household H99999999"),
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

    // The rest of the events (not the registrations), in chunks. (Those about the held-back
    // households are refused as unknown while the pipeline is idle.)
    let posted = [
        about_known[0].envelope.event_id,
        about_known[2].envelope.event_id,
    ];
    let rest: Vec<Event> = events
        .iter()
        .filter(|e| e.event_type() != "HouseholdRegistered")
        .filter(|e| !posted.contains(&e.envelope.event_id))
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
    check_openapi_document(&client, &up.base).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_files_are_streamed_in_and_rejected_rows_are_reported_by_line() {
    let data = tempfile::tempdir().unwrap();
    let mut up = start(data.path());
    let client = up.api().await;
    let now = now();
    let events: Vec<Event> = dsr_pipeline::testing::population(23, 200)
        .into_iter()
        .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
        .collect();

    // JSON lines with two bad rows (lines 3 and 6) and a blank line (line 8).
    let mut lines: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    lines.insert(2, "{\"event_type\": \"Nope\"}".into());
    lines.insert(5, "not json at all".into());
    lines.insert(7, String::new());
    let response = client
        .post(format!("{}/v1/events:bulk", up.base))
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["rows"], events.len() as u64 + 2, "{body}");
    assert_eq!(body["accepted"], events.len() as u64, "{body}");
    assert_eq!(body["rejected"], 2, "{body}");
    let report = body["report"].as_str().unwrap().to_owned();
    let response = client
        .get(format!("{}{report}", up.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .headers()
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let rows: Vec<Value> = response
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let numbers: Vec<u64> = rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [3, 6], "{rows:?}");
    assert!(rows[1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not a life event in JSON"));
    let csv_report = client
        .get(format!("{}{report}?format=csv", up.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv_report.starts_with("line,reason\n3,"), "{csv_report}");

    // CSV: income reports for a registered household by dotted column names; the second row
    // has an amount that is not a number.
    let household = events[0].envelope.household_id.clone().unwrap();
    let registered = match &events[0].payload {
        dsr_core::Payload::HouseholdRegistered(p) => p.clone(),
        other => panic!("the first event registers a household: {other:?}"),
    };
    let person = registered.members[0].person_id.clone();
    let csv = format!(
        "event_id,source_system,occurred_at,recorded_at,household_id,person_id,schema_version,event_type,payload.person_id,payload.amount,payload.period,payload.source\n\
         0b6a2c8e-0000-4000-8000-000000000001,tax,2026-01-02T00:00:00Z,2026-01-03T00:00:00Z,{household},{person},1,IncomeReported,{person},123.5,monthly,wages\n\
         0b6a2c8e-0000-4000-8000-000000000002,tax,2026-01-02T00:00:00Z,2026-01-03T00:00:00Z,{household},{person},1,IncomeReported,{person},lots,monthly,wages\n"
    );
    let response = client
        .post(format!("{}/v1/events:bulk", up.base))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    let (_, rows) = get(
        &client,
        format!("{}{}", up.base, body["report"].as_str().unwrap()),
    )
    .await;
    assert_eq!(rows["line"], 3, "{rows}");

    let response = client
        .post(format!("{}/v1/events:bulk", up.base))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    // What was accepted is processed and served.
    wait_idle(&client, &up.base, Duration::from_secs(120)).await;
    let (status, first) = get(&client, format!("{}/v1/households/{household}", up.base)).await;
    assert_eq!(status, 200, "{first}");
    assert!(
        first["household"]["version"].as_u64().unwrap() >= 2,
        "{first}"
    );
    stop_with(&mut up, "-TERM");
}

/// `/openapi.json` documents the API that is served: every operation it lists, called with an
/// empty body and an id nobody has, answers with one of the statuses it documents for that
/// operation (and a JSON body where it documents one); the routes everyone relies on are in it.
async fn check_openapi_document(client: &support::up::Api, base: &str) {
    let (status, doc) = get(client, format!("{base}/openapi.json")).await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    for expected in [
        "/v1/events",
        "/v1/events:bulk",
        "/v1/events:bulk/reports/{id}",
        "/v1/households/{id}",
        "/v1/households/{id}/history",
        "/v1/status",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    for (path, item) in paths {
        let url = format!("{base}{}", path.replace("{id}", "NOBODY"));
        for (method, operation) in item.as_object().unwrap() {
            let documented: Vec<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            let request = match method.as_str() {
                "get" => client.get(&url),
                "post" => client.post(&url),
                // Admin operations (webhooks), as the admin.
                "put" => client.admin.put(&url),
                "delete" => client.admin.delete(&url),
                other => panic!("{path}: method {other} not expected"),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(
                documented.contains(&status),
                "{method} {path} answered {status}, documented {documented:?}"
            );
            // Without credentials every operation but the public ones (documented with an
            // empty security requirement) answers 401.
            let public = operation["security"] == serde_json::json!([{}]);
            let anonymous =
                reqwest::Client::new().request(method.to_uppercase().parse().unwrap(), &url);
            let anonymous_status = anonymous.send().await.unwrap().status().as_u16();
            if public {
                assert_ne!(
                    anonymous_status, 401,
                    "{method} {path} is documented as public"
                );
            } else {
                assert_eq!(anonymous_status, 401, "{method} {path} without credentials");
            }
            let declared = &operation["responses"][status.to_string()]["content"];
            if declared.get("application/json").is_some() {
                assert_eq!(content_type, "application/json", "{method} {path} {status}");
                let body: serde_json::Value = response.json().await.unwrap();
                assert!(body.is_object(), "{method} {path}: {body}");
            }
        }
    }
}
