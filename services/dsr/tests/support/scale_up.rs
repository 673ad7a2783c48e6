//! What the scale-up tests share: a `dsr up` with a generated population, its geographic
//! master list (`areas.csv` in the data directory), and two people — an emergency
//! coordinator who drafts and an approver who approves.

use super::up::{
    client_with, past_life_events, post, post_all_and_wait, register_client, start_with_env,
    wait_served, Api, Up,
};
use dsr_core::AreaCode;
use serde_json::json;

pub struct Registry {
    pub up: Up,
    pub api: Api,
    pub base: String,
    /// The district the population's village lies in (every household of a small population
    /// lives in one village).
    pub district: String,
    pub population: dsr_synth::fixtures::Population,
    pub coordinator_key: String,
    pub approver_key: String,
    pub coordinator: reqwest::Client,
    pub approver: reqwest::Client,
}

/// Starts `dsr up` on `data` with `env`, loads a population of `households` (registrations
/// and their past life events) and registers the coordinator and the approver.
pub async fn registry(data: &std::path::Path, households: u64, env: &[(&str, &str)]) -> Registry {
    let population = dsr_synth::fixtures::small_population(43, households);
    let mut areas_csv = Vec::new();
    population.areas.write_csv(&mut areas_csv).unwrap();
    std::fs::write(data.join("areas.csv"), &areas_csv).unwrap();
    let up = start_with_env(data, &["--batch-size", "500"], env);
    let api = up.api().await;
    let base = up.base.clone();
    let (status, body) = post(&api, &base, &population.households).await;
    assert_eq!(status, 202, "{body}");
    let served: Vec<(String, u64)> = population
        .households
        .iter()
        .map(|e| (e.envelope.household_id.clone().unwrap().to_string(), 1))
        .collect();
    wait_served(&api, &base, &served).await;
    post_all_and_wait(&api, &base, &past_life_events(&population)).await;

    let coordinator_key = register_client(
        &base,
        &api.admin,
        json!({"id": "coordinator-amina", "role": "emergency_coordinator", "areas": ["*"], "requests_per_second": 1000}),
    )
    .await;
    let approver_key = register_client(
        &base,
        &api.admin,
        json!({"id": "approver-joseph", "role": "approver", "areas": ["*"], "requests_per_second": 1000}),
    )
    .await;
    let village = AreaCode::new(dsr_synth::fixtures::AREA);
    let district = village.path().nth(1).unwrap().to_owned();
    Registry {
        district,
        coordinator: client_with(&[("authorization", &format!("Bearer {coordinator_key}"))]),
        approver: client_with(&[("authorization", &format!("Bearer {approver_key}"))]),
        coordinator_key,
        approver_key,
        up,
        api,
        base,
        population,
    }
}
