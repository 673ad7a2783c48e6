//! A new version of a program's rule, end to end on a real `dsr up`: a generated population is
//! loaded; the admin previews a draft that lowers the child grant's need-score threshold
//! (bad drafts are refused with the reason, activation without a preview is refused); the
//! preview's entered / changed / exited counts are exactly the changes the program then
//! receives on its pull feed, caused by the activation; the registry decides new events under
//! the new version, and still does after a restart.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::up::{
    client_with, past_life_events, post_all_and_wait, program_feed as feed, program_view,
    register_client, start, stop_with, wait_idle,
};

/// The eligibility changes among `messages` that are not in `before` (the feed is in
/// partition order, so new ones are not only at the end).
fn new_changes<'a>(messages: &'a [Value], before: &[Value]) -> Vec<&'a Value> {
    let seen: std::collections::BTreeSet<&str> =
        before.iter().map(|m| m["id"].as_str().unwrap()).collect();
    messages
        .iter()
        .filter(|m| m["type"].as_str().unwrap().starts_with("eligibility."))
        .filter(|m| !seen.contains(m["id"].as_str().unwrap()))
        .collect()
}

/// The child grant's own client (role program), registered by `admin` (or given a new key).
async fn child_grant_client(base: &str, admin: &reqwest::Client) -> reqwest::Client {
    let key = register_client(
        base,
        admin,
        json!({"id": "child-grant-client", "role": "program", "program": "child-grant",
            "areas": ["*"], "requests_per_second": 100000,
            "agreements": [{"id": "DSA-T", "purpose": "payment", "fields": ["programs"]}]}),
    )
    .await;
    client_with(&[("authorization", &format!("Bearer {key}"))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previewed_rule_version_activates_into_exactly_the_previewed_changes() {
    let data = tempfile::tempdir().unwrap();
    let mut up = start(data.path());
    let api = up.api().await;
    let base = up.base.clone();
    let admin = api.admin.clone();

    let population = dsr_synth::fixtures::small_population(43, 300);
    let life_events = past_life_events(&population);
    let (first, later) = life_events.split_at(life_events.len() * 3 / 4);
    post_all_and_wait(&api, &base, &population.households).await;
    post_all_and_wait(&api, &base, first).await;

    let preview_url = format!("{base}/v1/programs/child-grant/rule-versions/preview");
    let activate_url = format!("{base}/v1/programs/child-grant/rule-versions");
    // Only an admin previews and activates.
    let response = api
        .reader
        .post(&preview_url)
        .json(&json!({"rule": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // A rule that does not compile is refused with where and why.
    let response = admin
        .post(&preview_url)
        .json(&json!({"rule": "household.need_score >= 45.0 && household.no_such_field"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let refusal: Value = response.json().await.unwrap();
    assert!(
        refusal["error"].as_str().unwrap().contains("no_such_field"),
        "{refusal}"
    );
    // A draft that changes nothing is refused; so is activating what was not previewed.
    let response = admin
        .post(&preview_url)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = admin
        .post(&activate_url)
        .json(&json!({"rule_version": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);

    // The preview of version 2: a lower threshold.
    let new_rule = "household.need_score >= 45.0 && household.members.exists(m, m.age < 5)";
    let response = admin
        .post(&preview_url)
        .json(&json!({"rule": new_rule, "area_level": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let previewed: Value = response.json().await.unwrap();
    assert_eq!(previewed["rule_version"], 2, "{previewed}");
    assert_eq!(previewed["caught_up"], true, "{previewed}");
    let counts = &previewed["preview"];
    assert!(counts["entered"].as_u64().unwrap() > 0, "{previewed}");
    // Every household, those that moves founded included.
    assert!(counts["households"].as_u64().unwrap() >= 300, "{previewed}");
    let by_area = counts["by_area"].as_object().unwrap();
    let area_entered: u64 = by_area
        .values()
        .map(|a| a["entered"].as_u64().unwrap())
        .sum();
    assert_eq!(area_entered, counts["entered"].as_u64().unwrap());
    // Per district (two levels of the area code; this small population lives in one).
    assert!(
        by_area.keys().all(|k| k.matches('.').count() == 1),
        "{by_area:?}"
    );
    assert!(
        counts["eligible_after"].as_u64().unwrap() > counts["eligible_before"].as_u64().unwrap()
    );

    // Activation: the same counts, the version in force.
    let response = admin
        .post(&activate_url)
        .json(&json!({"rule_version": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let activated: Value = response.json().await.unwrap();
    for kind in ["entered", "changed", "exited", "households"] {
        assert_eq!(
            activated["preview"][kind], counts[kind],
            "{kind}: {activated}"
        );
    }
    let activation_id = activated["activation_id"].as_str().unwrap().to_owned();
    let response = admin
        .post(&activate_url)
        .json(&json!({"rule_version": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409, "a draft is activated once");
    wait_idle(&api, &base, Duration::from_secs(120)).await;

    // The program receives exactly the previewed changes, caused by the activation.
    let program = child_grant_client(&base, &admin).await;
    let messages = feed(&program, &base, "child-grant").await;
    let caused: Vec<&Value> = messages
        .iter()
        .filter(|m| m["data"]["caused_by"] == activation_id.as_str())
        .collect();
    for kind in ["entered", "changed", "exited"] {
        let n = caused.iter().filter(|m| m["data"]["kind"] == kind).count() as u64;
        assert_eq!(
            n,
            counts[kind].as_u64().unwrap(),
            "{kind}: the preview said {}, the program received {n}",
            counts[kind]
        );
    }
    assert!(caused.iter().all(|m| m["data"]["rule_version"] == 2));
    let ids: std::collections::BTreeSet<&str> =
        caused.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), caused.len(), "no change twice");

    // The registry shows and applies version 2; later events are decided under it.
    let child = program_view(&admin, &base, "child-grant").await;
    assert_eq!(child["rule_version"], 2, "{child}");
    assert_eq!(child["rule"], new_rule, "{child}");
    let before = messages;
    let (half_a, half_b) = later.split_at(later.len() / 2);
    post_all_and_wait(&api, &base, half_a).await;
    let messages = feed(&program, &base, "child-grant").await;
    let fresh = new_changes(&messages, &before);
    assert!(
        fresh.iter().all(|m| m["data"]["rule_version"] == 2),
        "{fresh:?}"
    );

    // After a restart too.
    let status = stop_with(&mut up, "-TERM");
    assert!(status.success());
    let up2 = start(data.path());
    let api = up2.api().await;
    let base = up2.base.clone();
    let child = program_view(&api.admin, &base, "child-grant").await;
    assert_eq!(child["rule_version"], 2, "after a restart: {child}");
    let before = messages;
    post_all_and_wait(&api, &base, half_b).await;
    let program = child_grant_client(&base, &api.admin).await;
    let messages = feed(&program, &base, "child-grant").await;
    let fresh = new_changes(&messages, &before);
    assert!(!fresh.is_empty(), "later events changed something");
    assert!(
        fresh.iter().all(|m| m["data"]["rule_version"] == 2),
        "{fresh:?}"
    );
}
