//! Encryption at rest, end to end on a real `dsr up`: personal data never readable in the data
//! directory (names and ids of a generated population looked for in every file, as `grep -r` /
//! `strings` would), and the data key rotated while events keep flowing — with `dsr keys
//! rotate-data-key` — after which the old key is retired and everything still reads, also
//! after a restart that rebuilds the serving store from the (re-encrypted) log alone.

mod support;

use dsr_core::Event;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::up::{get, now, post, start, stop_with, wait_idle, wait_served, Api};

fn dsr(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("dsr runs")
}

async fn data_keys(api: &Api, base: &str) -> Value {
    let response = api
        .admin
        .get(format!("{base}/v1/admin/data-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

/// Every household of `ids` answers 200 with its own record, members and all.
async fn all_readable(api: &Api, base: &str, ids: &[String]) {
    for id in ids {
        let (status, body) = get(api, format!("{base}/v1/households/{id}")).await;
        assert_eq!(status, 200, "household {id}: {body}");
        assert_eq!(body["household"]["household_id"], id.as_str(), "{body}");
        let (status, body) = get(api, format!("{base}/v1/households/{id}/history")).await;
        assert_eq!(status, 200, "history of {id}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_sealed_on_disk_and_the_data_key_rotates_under_load() {
    let data = tempfile::tempdir().unwrap();
    let mut up = start(data.path());
    let api = up.api().await;
    let base = up.base.clone();

    let population = dsr_synth::fixtures::small_population(23, 120);
    let needles = dsr_synth::fixtures::personal_strings(&population);
    assert!(needles.len() > 300, "{} names and ids", needles.len());
    let now = now();
    let registrations = population.households.clone();
    let life_events: Vec<Event> = population
        .events
        .iter()
        .filter(|e| !e.payload.is_area_event())
        .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
        .cloned()
        .collect();
    assert!(life_events.len() > 200, "{} life events", life_events.len());
    let ids: Vec<String> = registrations
        .iter()
        .map(|e| e.envelope.household_id.clone().unwrap().to_string())
        .collect();

    // The first half of the households, served.
    let (first, second) = registrations.split_at(registrations.len() / 2);
    let (status, body) = post(&api, &base, first).await;
    assert_eq!(status, 202, "{body}");
    let served: Vec<(String, u64)> = ids[..first.len()]
        .iter()
        .map(|id| (id.clone(), 1))
        .collect();
    wait_served(&api, &base, &served).await;

    // A bulk upload with a bad row that quotes a name: its report is personal data too.
    let name = population
        .households
        .iter()
        .find_map(|e| match &e.payload {
            dsr_core::event::Payload::HouseholdRegistered(r) => {
                Some(r.members[0].family_name.to_string())
            }
            _ => None,
        })
        .unwrap();
    let response = api
        .post(format!("{base}/v1/events:bulk"))
        .header("content-type", "application/x-ndjson")
        .body(format!(
            "{{\"event_type\": \"{name}\", \"family_name\": \"{name}\"}}\n"
        ))
        .send()
        .await
        .unwrap();
    let bulk: Value = response.json().await.unwrap();
    let report_id = bulk["report_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a report for the bad row: {bulk}"))
        .to_owned();

    // Load: the other half of the households and the life events, in small requests, while
    // the key rotates; once they are all sent, the last request again and again (an event
    // posted twice is applied once) until the rotation is over, so it never runs without load.
    let rotating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let api = api.clone();
        let base = base.clone();
        let rotating = std::sync::Arc::clone(&rotating);
        let mut batches: Vec<Vec<Event>> = second.chunks(5).map(<[Event]>::to_vec).collect();
        batches.extend(life_events.chunks(10).map(<[Event]>::to_vec));
        tokio::spawn(async move {
            let (mut accepted, mut sent) = (0, 0);
            let mut i = 0;
            while i < batches.len() || rotating.load(std::sync::atomic::Ordering::SeqCst) {
                let batch = &batches[i.min(batches.len() - 1)];
                let (status, body) = post(&api, &base, batch).await;
                assert!(status == 202 || status == 422, "{status} {body}");
                accepted += body["accepted"].as_array().map_or(0, Vec::len);
                sent += 1;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, sent)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The rotation, as an operator runs it.
    let key_file = data.path().join("security/bootstrap-admin.key");
    let admin_args = [
        "--url",
        base.as_str(),
        "--key-file",
        key_file.to_str().unwrap(),
    ];
    let before = data_keys(&api, &base).await;
    assert_eq!(before["active"], 1, "{before}");
    let rotate = tokio::task::spawn_blocking({
        let args: Vec<String> = admin_args.iter().map(|s| s.to_string()).collect();
        move || {
            let mut all = vec!["keys".to_owned(), "rotate-data-key".to_owned()];
            all.extend(args);
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            dsr(&refs)
        }
    })
    .await
    .unwrap();
    let rotate_err = String::from_utf8_lossy(&rotate.stderr).into_owned();
    assert!(rotate.status.success(), "{rotate_err}");
    assert!(
        rotate_err.contains("re-encryption finished"),
        "{rotate_err}"
    );
    assert!(!load.is_finished(), "the load stopped during the rotation");
    rotating.store(false, std::sync::atomic::Ordering::SeqCst);
    let (accepted, sent) = load.await.unwrap();
    assert!(
        accepted > 200,
        "{accepted} events accepted in {sent} requests under load"
    );

    let after = data_keys(&api, &base).await;
    assert_eq!(after["active"], 2, "{after}");
    assert_eq!(after["rotation"]["state"], "finished", "{after}");
    assert_eq!(after["retirable"], serde_json::json!([1]), "{after}");
    // The active key cannot be retired; the old one can.
    let refused = dsr(&[&["keys", "retire-data-key", "2"][..], &admin_args[..]].concat());
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("active key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let retired = dsr(&[&["keys", "retire-data-key", "1"][..], &admin_args[..]].concat());
    assert!(
        retired.status.success(),
        "{}",
        String::from_utf8_lossy(&retired.stderr)
    );
    let keyring: Value = serde_json::from_slice(
        &std::fs::read(data.path().join("security/data-keys.json")).unwrap(),
    )
    .unwrap();
    let kept: Vec<u64> = keyring["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, vec![2], "only the new key is kept: {keyring}");

    // Everything reads with the new key alone: every household, its history, the report.
    wait_idle(&api, &base, Duration::from_secs(120)).await;
    all_readable(&api, &base, &ids).await;
    let (status, report) = {
        let response = api
            .get(format!("{base}/v1/events:bulk/reports/{report_id}"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status, 200, "{report}");
    assert!(report.contains("\"line\":1"), "{report}");

    // After a restart (the keyring holds the new key only) everything still reads; and the
    // whole log — every source record, the changelog, the eligibility changes — opens with it:
    // every record written under the old key was re-encrypted.
    assert!(stop_with(&mut up, "-TERM").success());
    let mut up = start(data.path());
    let api = up.api().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while reqwest::get(format!("{}/readyz", up.base))
        .await
        .unwrap()
        .status()
        .as_u16()
        != 200
    {
        assert!(Instant::now() < deadline, "dsr up did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    all_readable(&api, &up.base, &ids).await;
    assert!(stop_with(&mut up, "-TERM").success());
    let log =
        dsr_pipeline::testing::EmbeddedFixture::embedded_at(&support::repo(), data.path()).await;
    let changelog = log.changelog().await;
    for id in &ids {
        assert!(
            changelog.contains_key(&dsr_core::HouseholdId::new(id.as_str())),
            "household {id} is not in the changelog read back"
        );
    }
    assert!(!log.changes().await.is_empty());
    assert!(
        log.read_topic("dsr.life-events.legacy-http").await.len() >= accepted,
        "the source topic reads back"
    );
    drop(log);

    // Nothing personal is readable anywhere in the data directory.
    let found = dsr_synth::fixtures::find_in_files(data.path(), &needles);
    assert!(
        found.is_empty(),
        "personal data readable in the data directory: {:?}",
        &found[..found.len().min(10)]
    );
    // …and the scan does find them where they are in the clear (the check can fail).
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(
        plain.path().join("events.jsonl"),
        serde_json::to_vec(&population.households[..3]).unwrap(),
    )
    .unwrap();
    assert!(!dsr_synth::fixtures::find_in_files(plain.path(), &needles).is_empty());
}
