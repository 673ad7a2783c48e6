//! Programs receive their eligibility changes, end to end on a real `dsr up`: a generated
//! population streams in over HTTP; webhook receivers started here (real HTTP servers) check
//! every request's signature with the Standard Webhooks project's own verifier (not dsr's
//! signing code) and record what they got; the pull feed reads the same program topics. Then:
//!
//! - each program's receiver got exactly the changes on the program's topic, in per-household
//!   order, and those are the domain core's changes for the same events (households whose
//!   changes cannot depend on timing; the others are checked for order and for no gaps);
//! - the child grant's receiver (batched) is down for a while mid-stream, then back: everything
//!   arrives, and a batch sent twice carries the same `webhook-id`;
//! - the pension's receiver answers 500 for ever: its changes end in the dead-letter store
//!   with the last error, and a replay after the receiver is fixed delivers every one;
//! - a secret rotation: during the overlap every request verifies with either secret.

mod support;

use dsr_core::{Event, HouseholdId};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::up::{
    client_with, now, past_life_events, post, post_all_and_wait, program_feed, register_client,
    start, stop_with, wait_idle, wait_served,
};
use support::webhooks::{by_household, first_copies, serve, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_receive_exactly_their_changes_by_webhook_and_pull_feed() {
    let data = tempfile::tempdir().unwrap();
    let mut up = start(data.path());
    let api = up.api().await;
    let base = up.base.clone();
    let admin = api.admin.clone();

    // Two receivers: one for the food aid and the pension, one (taken down later) for the
    // child grant.
    let receiver = Arc::new(Receiver::default());
    receiver
        .failing
        .lock()
        .unwrap()
        .insert("old-age-pension".into());
    let main_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let main_address = main_listener.local_addr().unwrap();
    let _main = serve(Arc::clone(&receiver), main_listener);
    let child_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let child_address = child_listener.local_addr().unwrap();
    let mut child_server = Some(serve(Arc::clone(&receiver), child_listener));

    // A loopback target is refused unless the admin allows private networks.
    let response = admin
        .put(format!("{base}/v1/programs/food-aid/webhook"))
        .json(&json!({"url": format!("http://{main_address}/hook/food-aid")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let refusal: Value = response.json().await.unwrap();
    assert!(
        refusal["error"].as_str().unwrap().contains("private"),
        "{refusal}"
    );
    let register = |program: &'static str, address: std::net::SocketAddr, extra: Value| {
        let admin = admin.clone();
        let base = base.clone();
        async move {
            let mut spec = json!({
                "url": format!("http://{address}/hook/{program}"),
                "allow_private_network": true,
                "initial_backoff_ms": 50,
                "max_backoff_ms": 500,
                "max_attempts": 10_000,
                "timeout_ms": 5_000,
            });
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let response = admin
                .put(format!("{base}/v1/programs/{program}/webhook"))
                .json(&spec)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201);
            let body: Value = response.json().await.unwrap();
            body["secret"].as_str().unwrap().to_owned()
        }
    };
    let food_secret = register("food-aid", main_address, json!({})).await;
    let child_secret = register("child-grant", child_address, json!({"batch_size": 25})).await;
    let pension_secret = register(
        "old-age-pension",
        main_address,
        json!({"max_attempts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 20}),
    )
    .await;
    {
        let mut s = receiver.secrets.lock().unwrap();
        s.insert("food-aid".into(), vec![food_secret.clone()]);
        s.insert("child-grant".into(), vec![child_secret]);
        s.insert("old-age-pension".into(), vec![pension_secret]);
    }

    // A generated population: registrations first, then its life events in batches.
    let population = dsr_synth::fixtures::small_population(41, 150);
    let now = now();
    let registrations = population.households.clone();
    let life_events: Vec<Event> = past_life_events(&population);
    assert!(life_events.len() > 200, "{} life events", life_events.len());
    let (status, body) = post(&api, &base, &registrations).await;
    assert_eq!(status, 202, "{body}");
    let served: Vec<(String, u64)> = registrations
        .iter()
        .map(|e| (e.envelope.household_id.clone().unwrap().to_string(), 1))
        .collect();
    wait_served(&api, &base, &served).await;

    let batches: Vec<&[Event]> = life_events.chunks(40).collect();
    for (i, batch) in batches.iter().enumerate() {
        if i == batches.len() / 3 {
            // The child grant's receiver goes down (connections closed, port refused).
            let (stop, task) = child_server.take().unwrap();
            let _ = stop.send(());
            task.await.unwrap();
        }
        if i == batches.len() / 3 * 2 {
            // The food aid's secret is rotated: both secrets sign during the overlap.
            let response = admin
                .post(format!("{base}/v1/programs/food-aid/webhook/rotate-secret"))
                .json(&json!({"overlap_seconds": 3600}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["webhook"]["secrets_in_force"], 2, "{body}");
            let newer = body["secret"].as_str().unwrap().to_owned();
            // The receiver switches to the new secret alone.
            receiver
                .secrets
                .lock()
                .unwrap()
                .insert("food-aid".into(), vec![newer]);
        }
        let (status, body) = post(&api, &base, batch).await;
        assert_eq!(status, 202, "{body}");
    }
    wait_idle(&api, &base, Duration::from_secs(120)).await;

    // The child grant's receiver is down: its changes wait, and say so.
    let status_of = |program: &'static str| {
        let admin = admin.clone();
        let base = base.clone();
        async move {
            let response = admin
                .get(format!("{base}/v1/programs/{program}/delivery"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let waiting = status_of("child-grant").await;
    assert!(waiting["pending"].as_u64().unwrap() > 0, "{waiting}");
    assert!(
        waiting["oldest_undelivered_age_seconds"].as_f64().is_some(),
        "{waiting}"
    );
    assert!(
        waiting["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("posting"),
        "{waiting}"
    );
    // Back on the same port.
    let child_listener = tokio::net::TcpListener::bind(child_address).await.unwrap();
    let _child = serve(Arc::clone(&receiver), child_listener);

    // Everything delivered (or, for the pension, dead-lettered).
    let deadline = Instant::now() + Duration::from_secs(120);
    for program in ["food-aid", "child-grant", "old-age-pension"] {
        loop {
            let s = status_of(program).await;
            if s["pending"] == 0 && s["retrying"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{program} not delivered: {s}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(receiver.bad_signatures.load(Ordering::Relaxed), 0);

    // The same counts as Prometheus metrics.
    let response = admin.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let metrics = response.text().await.unwrap();
    for program in ["food-aid", "child-grant", "old-age-pension"] {
        let s = status_of(program).await;
        for (name, field) in [
            ("dsr_delivery_delivered_total", "delivered"),
            ("dsr_delivery_dead_lettered", "dead_lettered"),
            ("dsr_delivery_pending", "pending"),
        ] {
            let line = format!("{name}{{program=\"{program}\"}} {}", s[field]);
            assert!(
                metrics.lines().any(|l| l == line),
                "{line} not in\n{metrics}"
            );
        }
    }
    assert!(
        metrics.contains("# TYPE dsr_stage_backlog gauge"),
        "{metrics}"
    );

    // The pull feed: each program's topic, page by page, as a program client reads it.
    let mut feeds: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for program in ["food-aid", "child-grant", "old-age-pension"] {
        let key = register_client(
            &base,
            &admin,
            json!({"id": format!("{program}-client"), "role": "program", "program": program,
                "areas": ["*"], "requests_per_second": 100000,
                "agreements": [{"id": "DSA-T", "purpose": "payment", "fields": ["programs"]}]}),
        )
        .await;
        let client = client_with(&[("authorization", &format!("Bearer {key}"))]);
        // Not another program's feed.
        let other = if program == "food-aid" {
            "child-grant"
        } else {
            "food-aid"
        };
        let response = client
            .get(format!("{base}/v1/programs/{other}/changes"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/programs/{program}/changes?limit=97");
            if let Some(c) = &cursor {
                url.push_str(&format!("&after={c}"));
            }
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let page: Value = response.json().await.unwrap();
            let messages = page["messages"].as_array().unwrap();
            if messages.is_empty() {
                break;
            }
            all.extend(messages.iter().cloned());
            cursor = Some(page["next"].as_str().unwrap().to_owned());
        }
        assert!(!all.is_empty(), "{program} has changes");
        feeds.insert(program, all);

        if program == "old-age-pension" {
            // Every change is in the dead-letter store, with the receiver's last error.
            let response = client
                .get(format!(
                    "{base}/v1/programs/{program}/dead-letters?limit=10000"
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let body: Value = response.json().await.unwrap();
            let letters = body["dead_letters"].as_array().unwrap();
            assert_eq!(letters.len(), feeds[program].len());
            assert!(letters
                .iter()
                .all(|l| l["last_error"].as_str().unwrap().contains("500")));
            // Fixed, then replayed.
            receiver.failing.lock().unwrap().remove("old-age-pension");
            let response = client
                .post(format!("{base}/v1/programs/{program}/replay"))
                .json(&json!({"dead_letters": true}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 202);
            loop {
                let s = status_of(program).await;
                if s["dead_lettered"] == 0 && s["replays_done"].as_u64().unwrap() >= 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "replay not done: {s}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    // What the receivers got equals the topics, in per-household order.
    let received = receiver.received.lock().unwrap().clone();
    for (program, feed) in &feeds {
        let requests = &received[*program];
        let delivered = first_copies(requests);
        // Changes and life events come from two topics: each is in per-household order, the
        // two are not ordered with each other.
        for prefix in ["eligibility.", "life_event."] {
            let only = |ms: &[Value]| -> Vec<Value> {
                ms.iter()
                    .filter(|m| m["type"].as_str().unwrap().starts_with(prefix))
                    .cloned()
                    .collect()
            };
            assert_eq!(
                by_household(&only(&delivered)),
                by_household(&only(feed)),
                "{program}: the webhook got the {prefix}* messages the topics hold, in per-household order"
            );
        }
        // A webhook-id always names the same messages.
        let mut seen: HashMap<&str, Vec<&str>> = HashMap::new();
        for r in requests {
            let ids: Vec<&str> = r
                .messages
                .iter()
                .map(|m| m["id"].as_str().unwrap())
                .collect();
            if let Some(before) = seen.insert(&r.webhook_id, ids.clone()) {
                assert_eq!(before, ids, "{program}: webhook-id {} reused", r.webhook_id);
            }
        }
        if *program == "food-aid" {
            assert!(requests
                .iter()
                .all(|r| r.messages.len() == 1
                    && r.messages[0]["id"].as_str().unwrap() == r.webhook_id));
        }
    }
    assert!(
        received["child-grant"].iter().any(|r| r.messages.len() > 1),
        "the child grant's changes came in batches"
    );

    // Every push is in the audit log: the program, the households (as pseudonyms, found
    // again by id), the fields, the program's purpose and agreement; the pension's failures
    // too.
    let auditor_key = register_client(
        &base,
        &admin,
        json!({"id": "programs-auditor", "role": "auditor", "requests_per_second": 100000}),
    )
    .await;
    let auditor = client_with(&[("authorization", &format!("Bearer {auditor_key}"))]);
    let audit = |query: String| {
        let auditor = auditor.clone();
        let base = base.clone();
        async move {
            let response = auditor
                .get(format!(
                    "{base}/v1/audit?action=program.webhook.deliver&limit=10000{query}"
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let pushes = audit(String::new()).await;
    let pushes = pushes.as_array().unwrap();
    assert!(
        pushes.iter().any(|e| e["subjects"][0] == "program:food-aid"
            && e["outcome"] == "allowed: delivered"
            && e["who"] == "dsr-delivery"
            && e["subjects"][1].as_str().unwrap().starts_with("ps:")
            && e["fields"]
                .as_array()
                .unwrap()
                .contains(&json!("household_id"))
            && e["purpose"].as_str().is_some_and(|p| !p.is_empty())),
        "{pushes:?}"
    );
    assert!(
        pushes
            .iter()
            .any(|e| e["subjects"][0] == "program:old-age-pension"
                && e["outcome"]
                    .as_str()
                    .unwrap()
                    .starts_with("failed after 2 attempts")),
        "the pension's failed pushes are recorded"
    );
    let some_household = first_copies(&received["food-aid"])[0]["data"]["household_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let about = audit(format!("&subject={some_household}")).await;
    assert!(
        about
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subjects"][0] == "program:food-aid"),
        "{about}"
    );

    // A death in a pension beneficiary household: the pension is told of it (a life-event
    // notification naming the person, which the pension may see) and, with nobody of 65 or
    // more left, the household exits.
    let pension_feed = &feeds["old-age-pension"];
    let mut last_kind: BTreeMap<String, String> = BTreeMap::new();
    for m in pension_feed
        .iter()
        .filter(|m| m["type"].as_str().unwrap().starts_with("eligibility."))
    {
        last_kind.insert(
            m["data"]["household_id"].as_str().unwrap().to_owned(),
            m["data"]["kind"].as_str().unwrap().to_owned(),
        );
    }
    // The pension's beneficiaries now, as a payment cycle would freeze them: exactly the
    // households whose last pension change was not an exit.
    let pension_key = register_client(
        &base,
        &admin,
        json!({"id": "old-age-pension-client", "role": "program", "program": "old-age-pension",
            "areas": ["*"], "requests_per_second": 100000,
            "agreements": [{"id": "DSA-T", "purpose": "payment", "fields": ["programs"]}]}),
    )
    .await;
    let pension = client_with(&[("authorization", &format!("Bearer {pension_key}"))]);
    let snapshot = |at: Option<i64>| {
        let pension = pension.clone();
        let base = base.clone();
        async move {
            let url = match at {
                Some(ms) => format!("{base}/v1/programs/old-age-pension/beneficiaries?as_of={ms}"),
                None => format!("{base}/v1/programs/old-age-pension/beneficiaries"),
            };
            let response = pension.get(url).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let body: Value = response.json::<Value>().await.unwrap();
            let ids: BTreeSet<String> = body["beneficiaries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["household_id"].as_str().unwrap().to_owned())
                .collect();
            (body["as_of_ms"].as_i64().unwrap(), ids)
        }
    };
    let (cycle, frozen) = snapshot(None).await;
    let expected: BTreeSet<String> = last_kind
        .iter()
        .filter(|(_, k)| k.as_str() != "exited")
        .map(|(h, _)| h.clone())
        .collect();
    assert_eq!(
        frozen, expected,
        "the beneficiaries are the households last entered or changed"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let today = now.date();
    let cutoff = dsr_core::ids::Date(today.0 - 64 * 366);
    let mut chosen = None;
    for (hid, kind) in &last_kind {
        if kind == "exited" {
            continue;
        }
        let (status, body) = support::up::get(&api, format!("{base}/v1/households/{hid}")).await;
        assert_eq!(status, 200, "{body}");
        let members = body["household"]["members"].as_array().unwrap().clone();
        let (old, young): (Vec<Value>, Vec<Value>) = members.into_iter().partition(|m| {
            dsr_core::ids::Date::parse(m["birth_date"].as_str().unwrap()).unwrap() < cutoff
        });
        if !old.is_empty() && !young.is_empty() {
            chosen = Some((hid.clone(), old));
            break;
        }
    }
    let (beneficiary, elderly) = chosen.expect("a pension beneficiary with a younger member");
    let deaths: Vec<Event> = elderly
        .iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::from_value(json!({
                "event_id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("death-{beneficiary}-{i}").as_bytes()),
                "source_system": "crvs", "occurred_at": now.to_string(), "recorded_at": now.to_string(),
                "person_id": m["person_id"], "household_id": beneficiary, "correlation_id": null,
                "schema_version": 1, "event_type": "PersonDied",
                "payload": {"person_id": m["person_id"], "date_of_death": today.to_string()}
            }))
            .unwrap()
        })
        .collect();
    let (status, body) = post(&api, &base, &deaths).await;
    assert_eq!(status, 202, "{body}");
    let first_death = deaths[0].envelope.event_id.to_string();
    let last_death = deaths.last().unwrap().envelope.event_id.to_string();
    loop {
        let got = receiver.received.lock().unwrap()["old-age-pension"].clone();
        let delivered = first_copies(&got);
        let notice = delivered.iter().find(|m| {
            m["type"] == "life_event.person_died" && m["data"]["caused_by"] == first_death.as_str()
        });
        let exit = delivered.iter().find(|m| {
            m["type"] == "eligibility.exited" && m["data"]["caused_by"] == last_death.as_str()
        });
        if let (Some(notice), Some(exit)) = (notice, exit) {
            assert_eq!(notice["data"]["household_id"], beneficiary.as_str());
            assert_eq!(notice["data"]["person_id"], elderly[0]["person_id"]);
            assert_eq!(exit["data"]["household_id"], beneficiary.as_str());
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "the pension was not told of the death in {beneficiary}: {:?}",
            delivered
                .iter()
                .filter(|m| m["data"]["household_id"] == beneficiary.as_str())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The payment cycle's list has not moved; today's has lost the household.
    assert!(frozen.contains(&beneficiary));
    assert_eq!(
        snapshot(Some(cycle)).await.1,
        frozen,
        "a past snapshot is frozen"
    );
    let mut later = BTreeSet::new();
    for _ in 0..100 {
        later = snapshot(None).await.1;
        if !later.contains(&beneficiary) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut expected_later = frozen.clone();
    expected_later.remove(&beneficiary);
    assert_eq!(later, expected_later);

    // The food aid may not see member ids: its life events about the same household (if it
    // is a beneficiary too) do not name the person.
    for m in first_copies(&receiver.received.lock().unwrap()["food-aid"]) {
        if m["type"].as_str().unwrap().starts_with("life_event.") {
            assert!(m["data"].get("person_id").is_none(), "{m}");
        }
    }

    // The topics hold the domain core's changes for the same events.
    let programs = dsr_pipeline::testing::load_programs(&support::repo().join("programs"));
    let mut events = registrations.clone();
    events.extend(life_events.iter().cloned());
    let reference =
        dsr_pipeline::testing::reference(&events, &programs).streamed(&events, &programs);
    let mut on_topics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for feed in feeds.values() {
        let changes: Vec<Value> = feed
            .iter()
            .filter(|m| m["type"].as_str().unwrap().starts_with("eligibility."))
            .cloned()
            .collect();
        for (hid, ids) in by_household(&changes) {
            on_topics.entry(hid).or_default().extend(ids);
        }
    }
    let mut exact = 0;
    for (hid, ids) in &reference.changes_by_household {
        let hid_typed = HouseholdId::new(hid.as_str());
        if reference.changes_depend_on_timing(&hid_typed) {
            continue;
        }
        let expected: BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
        let got = on_topics.get(hid.as_str()).cloned().unwrap_or_default();
        assert_eq!(got, expected, "household {hid}");
        exact += 1;
    }
    assert!(exact > 50, "{exact} households compared exactly");
    let total: usize = feeds.values().map(Vec::len).sum();
    let life_events = feeds
        .values()
        .flatten()
        .filter(|m| m["type"].as_str().unwrap().starts_with("life_event."))
        .count();
    assert!(
        life_events > 0,
        "the population's births and deaths reached beneficiaries' programs"
    );
    eprintln!(
        "programs: {total} messages ({life_events} life events) for three programs; {exact} households equal to the domain core; \
         {} requests to the receivers",
        received.values().map(Vec::len).sum::<usize>()
    );
    let status = stop_with(&mut up, "-TERM");
    assert!(status.success(), "dsr up stops cleanly: {status}");
}

/// A program that subscribes after the registry has data: its webhook first receives the
/// eligible set as of the registration (each eligible household's last change as an `entered`
/// marked backfill), then exactly the changes and life events that came after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_the_eligible_set_first_then_the_changes_since() {
    let data = tempfile::tempdir().unwrap();
    let up = start(data.path());
    let api = up.api().await;
    let base = up.base.clone();
    let admin = api.admin.clone();
    let population = dsr_synth::fixtures::small_population(47, 200);
    let life_events = past_life_events(&population);
    let (first, later) = life_events.split_at(life_events.len() * 2 / 3);
    post_all_and_wait(&api, &base, &population.households).await;
    post_all_and_wait(&api, &base, first).await;

    // What the program's topic holds before it subscribes, through its pull feed.
    let key = register_client(
        &base,
        &admin,
        json!({"id": "child-grant-client", "role": "program", "program": "child-grant",
            "areas": ["*"], "requests_per_second": 100000,
            "agreements": [{"id": "DSA-T", "purpose": "payment", "fields": ["programs"]}]}),
    )
    .await;
    let program = client_with(&[("authorization", &format!("Bearer {key}"))]);
    let before = program_feed(&program, &base, "child-grant").await;
    let mut last: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for m in before
        .iter()
        .filter(|m| m["type"].as_str().unwrap().starts_with("eligibility."))
    {
        last.insert(
            m["data"]["household_id"].as_str().unwrap().to_owned(),
            (
                m["data"]["kind"].as_str().unwrap().to_owned(),
                m["data"]["benefit"].as_f64().unwrap(),
            ),
        );
    }
    let eligible: BTreeMap<String, f64> = last
        .into_iter()
        .filter(|(_, (kind, _))| kind != "exited")
        .map(|(h, (_, b))| (h, b))
        .collect();
    assert!(eligible.len() > 5, "{} eligible", eligible.len());

    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _server = serve(Arc::clone(&receiver), listener);
    let response = admin
        .put(format!("{base}/v1/programs/child-grant/webhook"))
        .json(&json!({"url": format!("http://{address}/hook/child-grant"),
            "allow_private_network": true, "batch_size": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    receiver.secrets.lock().unwrap().insert(
        "child-grant".into(),
        vec![body["secret"].as_str().unwrap().to_owned()],
    );
    post_all_and_wait(&api, &base, later).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let s: Value = admin
            .get(format!("{base}/v1/programs/child-grant/delivery"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["webhook"]["backfill"]["state"] == "done" && s["pending"] == 0 && s["retrying"] == 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "not delivered: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        status["webhook"]["backfill"]["households"],
        eligible.len() as u64,
        "{status}"
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::Relaxed), 0);

    let received = first_copies(&receiver.received.lock().unwrap()["child-grant"]);
    let is_backfill = |m: &Value| m["data"]["backfill"] == true;
    // The eligible set, first.
    let backfill: Vec<&Value> = received.iter().filter(|m| is_backfill(m)).collect();
    let got: BTreeMap<String, f64> = backfill
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "eligibility.entered", "{m}");
            (
                m["data"]["household_id"].as_str().unwrap().to_owned(),
                m["data"]["benefit"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got, eligible,
        "the backfill is the eligible set as of the registration"
    );
    assert_eq!(backfill.len(), eligible.len(), "one message per household");
    let first_live = received.iter().position(|m| !is_backfill(m));
    if let Some(i) = first_live {
        assert!(
            received[i..].iter().all(|m| !is_backfill(m)),
            "the backfill comes before the changes since"
        );
    }
    // Then exactly what came after, in per-household order.
    let after = program_feed(&program, &base, "child-grant").await;
    let seen: BTreeSet<&str> = before.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let since: Vec<Value> = after
        .iter()
        .filter(|m| !seen.contains(m["id"].as_str().unwrap()))
        .cloned()
        .collect();
    assert!(!since.is_empty(), "later events changed something");
    let live: Vec<Value> = received
        .iter()
        .filter(|m| !is_backfill(m))
        .cloned()
        .collect();
    for prefix in ["eligibility.", "life_event."] {
        let only = |ms: &[Value]| -> Vec<Value> {
            ms.iter()
                .filter(|m| m["type"].as_str().unwrap().starts_with(prefix))
                .cloned()
                .collect()
        };
        assert_eq!(
            by_household(&only(&live)),
            by_household(&only(&since)),
            "{prefix}*: the webhook got what the topics got since the registration"
        );
    }
}
