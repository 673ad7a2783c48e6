//! Shock-responsive scale-up end to end on a real `dsr up`, with a test clock
//! (`DSR_TEST_CLOCK_FILE`) and a real webhook receiver for the program:
//!
//! - the geographic master list is served (`/.well-known/locations.json`, `/v1/areas/{code}`);
//! - an emergency coordinator drafts a vertical top-up rule (bad drafts are refused with the
//!   reason) and previews it for a hypothetical drought; the coordinator cannot approve it,
//!   an approver (a second identity) approves and arms it;
//! - a `ShockDeclared` event for the district arrives over the events API: the program's
//!   receiver gets exactly the previewed households (the same digest and count), each marked
//!   with the rule, the shock and the end date;
//! - the test clock passes the end date: the program receives the matching top-up removals;
//! - a horizontal rule triggered by hand: temporary enrolments (a cap binding), then at its
//!   end date the same households exit; a `ShockEnded` event ends the rule its shock
//!   triggered; a revocation ends a rule at once.

mod support;

use dsr_core::event::{Payload, ShockDeclared, ShockEnded};
use dsr_core::scale_up::households_digest;
use dsr_core::{AreaCode, Micros};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::up::{client_with, now, post, register_client};
use support::webhooks::{first_copies, serve, Receiver};

const DAY: i64 = 86_400_000_000;

/// The messages the receiver accepted for `program` that a scale-up rule `rule` made.
fn rule_messages(receiver: &Receiver, program: &str, rule: &str) -> Vec<Value> {
    let received = receiver.received.lock().unwrap();
    first_copies(received.get(program).map_or(&[][..], |v| v.as_slice()))
        .into_iter()
        .filter(|m| m["data"]["scale_up"]["rule_id"] == rule)
        .collect()
}

async fn wait_for_messages(receiver: &Receiver, program: &str, rule: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = rule_messages(receiver, program, rule);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{program} received {} of {n} messages of rule {rule}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_rule(client: &reqwest::Client, base: &str, id: &str, state: &str) -> Value {
    wait_rule_until(client, base, id, state, |r| r["state"] == state).await
}

/// Polls rule `id` until `done` holds (for `what`, in the failure message).
async fn wait_rule_until(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, rule) = call(client.get(format!("{base}/v1/scale-up/rules/{id}"))).await;
        assert_eq!(status, 200, "{rule}");
        if done(&rule) {
            return rule;
        }
        assert!(
            Instant::now() < deadline,
            "rule {id} never got to {what}: {rule}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A rule from draft to active: drafted and previewed by the coordinator, approved, armed
/// and (unless `trigger` is null) triggered by hand by the approver. The preview and the
/// rule as the last step left it.
async fn draft_to_active(
    registry: &support::scale_up::Registry,
    rule: &Value,
    trigger: Value,
) -> (Value, Value) {
    let base = &registry.base;
    let id = rule["id"].as_str().unwrap();
    let (status, body) = call(
        registry
            .coordinator
            .post(format!("{base}/v1/scale-up/rules"))
            .json(rule),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, preview) = call(
        registry
            .coordinator
            .post(format!("{base}/v1/scale-up/rules/{id}/preview")),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    let mut last = preview.clone();
    for step in ["approve", "arm"] {
        let (status, body) = call(
            registry
                .approver
                .post(format!("{base}/v1/scale-up/rules/{id}/{step}")),
        )
        .await;
        assert_eq!(status, 200, "{step}: {body}");
        last = body;
    }
    if !trigger.is_null() {
        let (status, body) = call(
            registry
                .approver
                .post(format!("{base}/v1/scale-up/rules/{id}/trigger"))
                .json(&trigger),
        )
        .await;
        assert_eq!(status, 200, "trigger: {body}");
        assert_eq!(body["state"], "active");
        last = body;
    }
    (preview, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drought_scales_the_program_up_exactly_as_previewed_and_back_down_when_it_expires() {
    let data = tempfile::tempdir().unwrap();
    let clock_file = data.path().join("test-clock");
    let t0 = Micros(now().0 - 60_000_000);
    std::fs::write(&clock_file, t0.0.to_string()).unwrap();
    let registry = support::scale_up::registry(
        data.path(),
        150,
        &[("DSR_TEST_CLOCK_FILE", clock_file.to_str().unwrap())],
    )
    .await;
    let (api, base, district) = (
        &registry.api,
        registry.base.clone(),
        registry.district.clone(),
    );
    let (coordinator, approver) = (&registry.coordinator, &registry.approver);
    let admin = api.admin.clone();

    // The master list, to everyone.
    let (status, locations) =
        call(reqwest::Client::new().get(format!("{base}/.well-known/locations.json"))).await;
    assert_eq!(status, 200, "{locations}");
    assert_eq!(
        locations["areas"].as_array().unwrap().len(),
        registry.population.areas.len()
    );

    // The rules agreed in advance (scale-up/*.yaml) are drafts, drafted by their file.
    let (status, rules) = call(approver.get(format!("{base}/v1/scale-up/rules"))).await;
    assert_eq!(status, 200, "{rules}");
    let from_file = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "drought-topup-food-aid")
        .unwrap_or_else(|| panic!("no rule from scale-up/: {rules}"));
    assert_eq!(from_file["state"], "draft");
    assert_eq!(from_file["drafted_by"], "file:drought-topup-food-aid.yaml");

    // The program's receiver.
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _server = serve(Arc::clone(&receiver), listener);
    let (status, hook) = call(
        admin
            .put(format!("{base}/v1/programs/food-aid/webhook"))
            .json(&json!({
                "url": format!("http://{address}/hook/food-aid"),
                "allow_private_network": true,
                "initial_backoff_ms": 50,
                "max_backoff_ms": 500,
            })),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    receiver.secrets.lock().unwrap().insert(
        "food-aid".into(),
        vec![hook["secret"].as_str().unwrap().to_owned()],
    );

    // Where the households live, and the district a drought will hit.
    let (status, area) = call(api.reader.get(format!("{base}/v1/areas/{district}"))).await;
    assert_eq!(status, 200, "{area}");
    assert!(area["households"].as_u64().unwrap() > 0, "{area}");
    assert!(!area["children"].as_array().unwrap().is_empty(), "{area}");
    let (status, missing) = call(api.reader.get(format!("{base}/v1/areas/R99"))).await;
    assert_eq!(status, 404, "{missing}");

    let rule = json!({
        "id": "drought-topup",
        "name": "Drought top-up for food aid",
        "program": "food-aid",
        "trigger": {"kind": "shock", "hazards": ["drought"], "areas": [district],
                    "indicator": {"name": "vci", "below": 10.0}},
        "mode": {"kind": "vertical", "extra_amount": 50.0},
        "duration": {"days": 30}
    });
    // Bad drafts are refused, saying why.
    let mut unknown_area = rule.clone();
    unknown_area["trigger"]["areas"] = json!(["R99.D99"]);
    let (status, refused) = call(
        coordinator
            .post(format!("{base}/v1/scale-up/rules"))
            .json(&unknown_area),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("R99.D99"),
        "{refused}"
    );
    let mut no_program = rule.clone();
    no_program["program"] = json!("moon-base");
    let (status, refused) = call(
        coordinator
            .post(format!("{base}/v1/scale-up/rules"))
            .json(&no_program),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    // Only a coordinator drafts.
    let (status, _) = call(
        approver
            .post(format!("{base}/v1/scale-up/rules"))
            .json(&rule),
    )
    .await;
    assert_eq!(status, 403);
    let (status, drafted) = call(
        coordinator
            .post(format!("{base}/v1/scale-up/rules"))
            .json(&rule),
    )
    .await;
    assert_eq!(status, 201, "{drafted}");
    assert_eq!(drafted["state"], "draft");
    // Approval needs a preview first.
    let (status, early) = call(
        approver
            .post(format!("{base}/v1/scale-up/rules/drought-topup/approve"))
            .json(&json!({"reason": "ok"})),
    )
    .await;
    assert_eq!(status, 409, "{early}");

    // The preview, for the drought that will come.
    let (status, preview) = call(
        coordinator
            .post(format!("{base}/v1/scale-up/rules/drought-topup/preview"))
            .json(&json!({"shock": {"areas": [district], "hazard": "drought",
                                    "indicator_name": "vci", "indicator_value": 8.0}})),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["rule"]["state"], "previewed");
    let top_ups = preview["top_ups"].as_u64().unwrap();
    assert!(top_ups > 0, "nobody to top up: {preview}");
    assert_eq!(preview["enrolments"], 0);
    assert_eq!(
        preview["total_cost"].as_f64().unwrap(),
        top_ups as f64 * 50.0
    );
    assert!(
        preview["per_area"][&district]["top_ups"].as_u64() == Some(top_ups),
        "{preview}"
    );

    // The coordinator cannot approve (their own rule, and not their role); the approver can.
    let (status, own) = call(
        coordinator
            .post(format!("{base}/v1/scale-up/rules/drought-topup/approve"))
            .json(&json!({"reason": "mine"})),
    )
    .await;
    assert_eq!(status, 403, "{own}");
    let (status, approved) = call(
        approver
            .post(format!("{base}/v1/scale-up/rules/drought-topup/approve"))
            .json(&json!({"reason": "as agreed with the drought committee"})),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["approved_by"], "approver-joseph");
    let (status, armed) =
        call(approver.post(format!("{base}/v1/scale-up/rules/drought-topup/arm"))).await;
    assert_eq!(status, 200, "{armed}");
    assert_eq!(armed["state"], "armed");
    assert!(rule_messages(&receiver, "food-aid", "drought-topup").is_empty());

    // A drought is declared for the district.
    let declared = dsr_synth::fixtures::event(
        None,
        None,
        t0,
        Payload::ShockDeclared(ShockDeclared {
            shock_id: "DR-2026-11".into(),
            hazard: dsr_core::codes::HazardType::Drought,
            area_codes: vec![AreaCode::new(district.as_str())],
            severity: dsr_core::codes::ShockSeverity::Severe,
            indicator_name: "vci".into(),
            indicator_value: 8.0,
            starts_at: t0,
            expected_end: None,
            declared_by: "National Drought Management Authority".into(),
        }),
    );
    let (status, body) = post(api, &base, &[declared]).await;
    assert_eq!(status, 202, "{body}");
    let active = wait_rule(approver, &base, "drought-topup", "active").await;
    assert_eq!(active["activation"]["shock_id"], "DR-2026-11");
    assert_eq!(active["activation"]["households"].as_u64(), Some(top_ups));

    // The program receives exactly the previewed households, marked.
    let started = wait_for_messages(&receiver, "food-aid", "drought-topup", top_ups as usize).await;
    assert_eq!(started.len() as u64, top_ups);
    let ends_at = Micros(t0.0 + 30 * DAY).to_string();
    for m in &started {
        assert_eq!(m["type"], "eligibility.changed", "{m}");
        assert_eq!(m["data"]["scale_up"]["shock_id"], "DR-2026-11", "{m}");
        assert_eq!(m["data"]["scale_up"]["ends_at"], ends_at.as_str(), "{m}");
    }
    let received_digest = households_digest(
        started
            .iter()
            .map(|m| m["data"]["household_id"].as_str().unwrap()),
    );
    assert_eq!(
        received_digest,
        preview["households_digest"].as_str().unwrap()
    );
    assert_eq!(
        received_digest,
        active["activation"]["households_digest"].as_str().unwrap()
    );

    // The end date passes on the test clock: the top-ups are removed.
    std::fs::write(&clock_file, (t0.0 + 31 * DAY).to_string()).unwrap();
    let expired = wait_rule_until(
        approver,
        &base,
        "drought-topup",
        "expired, ends sent",
        |r| {
            r["state"] == "expired"
                && r["activation"]["notifications_sent"].as_u64() == Some(2 * top_ups)
        },
    )
    .await;
    let all = wait_for_messages(&receiver, "food-aid", "drought-topup", 2 * top_ups as usize).await;
    let ended: Vec<&Value> = all
        .iter()
        .filter(|m| {
            m["data"]["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().contains("removed"))
        })
        .collect();
    assert_eq!(ended.len() as u64, top_ups);
    assert_eq!(
        households_digest(
            ended
                .iter()
                .map(|m| m["data"]["household_id"].as_str().unwrap())
        ),
        received_digest
    );
    let transitions: Vec<(String, String)> = expired["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["to"].as_str().unwrap().to_owned(),
                t["by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            ("draft", "coordinator-amina"),
            ("previewed", "coordinator-amina"),
            ("approved", "approver-joseph"),
            ("armed", "approver-joseph"),
            ("active", "dsr-scale-up"),
            ("expired", "dsr-scale-up"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    // A horizontal rule triggered by hand: temporary enrolments, previewed = received; its
    // end date passes on the test clock: the same households exit.
    let horizontal = json!({
        "id": "flood-enrolment",
        "name": "Temporary food aid after the floods",
        "program": "food-aid",
        "trigger": {"kind": "manual", "areas": [district]},
        "mode": {"kind": "horizontal", "benefit": 80.0,
                 "selection": {"kind": "min_need_score", "threshold": 40.0}},
        "duration": {"days": 60},
        "caps": {"max_households": 5}
    });
    let (preview, active) = draft_to_active(
        &registry,
        &horizontal,
        json!({"reason": "floods in the district", "shock_id": "FL-2026-03"}),
    )
    .await;
    let enrolments = preview["enrolments"].as_u64().unwrap();
    assert!(enrolments > 0 && enrolments <= 5, "{preview}");
    assert_eq!(
        preview["capped"].as_u64().map(|c| c > 0),
        Some(true),
        "the cap binds: {preview}"
    );
    let entered = wait_for_messages(
        &receiver,
        "food-aid",
        "flood-enrolment",
        enrolments as usize,
    )
    .await;
    assert!(
        entered.iter().all(|m| m["type"] == "eligibility.entered"),
        "{entered:?}"
    );
    assert_eq!(
        households_digest(
            entered
                .iter()
                .map(|m| m["data"]["household_id"].as_str().unwrap())
        ),
        preview["households_digest"].as_str().unwrap()
    );
    assert_eq!(active["activation"]["shock_id"], "FL-2026-03");
    std::fs::write(&clock_file, (t0.0 + 95 * DAY).to_string()).unwrap();
    wait_rule(approver, &base, "flood-enrolment", "expired").await;
    let all = wait_for_messages(
        &receiver,
        "food-aid",
        "flood-enrolment",
        2 * enrolments as usize,
    )
    .await;
    let exited: Vec<&Value> = all
        .iter()
        .filter(|m| m["type"] == "eligibility.exited")
        .collect();
    assert_eq!(exited.len() as u64, enrolments);
    assert_eq!(
        households_digest(
            exited
                .iter()
                .map(|m| m["data"]["household_id"].as_str().unwrap())
        ),
        preview["households_digest"].as_str().unwrap()
    );

    // A ShockEnded event ends the rules its shock triggered, before their end date.
    let mut cyclone = rule.clone();
    cyclone["id"] = json!("cyclone-topup");
    cyclone["trigger"] = json!({"kind": "shock", "hazards": ["cyclone"], "areas": [district]});
    draft_to_active(&registry, &cyclone, Value::Null).await;
    let now = Micros(t0.0 + 95 * DAY);
    let declared = dsr_synth::fixtures::event(
        None,
        None,
        Micros(t0.0 + 10),
        Payload::ShockDeclared(ShockDeclared {
            shock_id: "CY-2026-02".into(),
            hazard: dsr_core::codes::HazardType::Cyclone,
            area_codes: vec![AreaCode::new(district.as_str())],
            severity: dsr_core::codes::ShockSeverity::Extreme,
            indicator_name: "wind_speed_kmh".into(),
            indicator_value: 190.0,
            starts_at: now,
            expected_end: None,
            declared_by: "Meteorological Department".into(),
        }),
    );
    let (status, body) = post(api, &base, &[declared]).await;
    assert_eq!(status, 202, "{body}");
    wait_rule(approver, &base, "cyclone-topup", "active").await;
    let topped = wait_for_messages(&receiver, "food-aid", "cyclone-topup", top_ups as usize).await;
    assert_eq!(topped.len() as u64, top_ups);
    let ended = dsr_synth::fixtures::event(
        None,
        None,
        Micros(t0.0 + 20),
        Payload::ShockEnded(ShockEnded {
            shock_id: "CY-2026-02".into(),
            ended_at: now,
        }),
    );
    let (status, body) = post(api, &base, &[ended]).await;
    assert_eq!(status, 202, "{body}");
    let expired = wait_rule(approver, &base, "cyclone-topup", "expired").await;
    let last = expired["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["why"], "shock CY-2026-02 ended", "{last}");
    wait_for_messages(&receiver, "food-aid", "cyclone-topup", 2 * top_ups as usize).await;
    let (status, shocks) = call(approver.get(format!("{base}/v1/shocks"))).await;
    assert_eq!(status, 200);
    let cy = shocks
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shock"]["shock_id"] == "CY-2026-02")
        .unwrap();
    assert!(
        cy["ended_at"].is_string() || cy["ended_at"].is_number(),
        "{cy}"
    );

    // Revoking an active rule ends its grants at once, and needs a reason.
    let mut revocable = horizontal.clone();
    revocable["id"] = json!("revocable-enrolment");
    draft_to_active(&registry, &revocable, json!({"reason": "landslide"})).await;
    let entered = wait_for_messages(
        &receiver,
        "food-aid",
        "revocable-enrolment",
        enrolments as usize,
    )
    .await;
    let (status, refused) = call(
        approver
            .post(format!(
                "{base}/v1/scale-up/rules/revocable-enrolment/revoke"
            ))
            .json(&json!({"reason": ""})),
    )
    .await;
    assert_eq!(status, 400, "a revocation needs a reason: {refused}");
    let (status, revoked) = call(
        approver
            .post(format!(
                "{base}/v1/scale-up/rules/revocable-enrolment/revoke"
            ))
            .json(&json!({"reason": "flood declared in error"})),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    let all = wait_for_messages(
        &receiver,
        "food-aid",
        "revocable-enrolment",
        2 * entered.len(),
    )
    .await;
    assert_eq!(
        all.iter()
            .filter(|m| m["type"] == "eligibility.exited")
            .count(),
        entered.len()
    );

    // Every transition is in the audit log, with who and why.
    let auditor_key = register_client(
        &base,
        &admin,
        json!({"id": "auditor", "role": "auditor", "areas": ["*"], "requests_per_second": 1000}),
    )
    .await;
    let auditor = client_with(&[("authorization", &format!("Bearer {auditor_key}"))]);
    let (status, audit) =
        call(auditor.get(format!("{base}/v1/audit?action=scale_up.revoke"))).await;
    assert_eq!(status, 200, "{audit}");
    let text = audit.to_string();
    assert!(
        text.contains("approver-joseph") && text.contains("flood declared in error"),
        "{text}"
    );
}
