//! `dsr log compact` on a stopped registry: refused while `dsr up` runs on the directory;
//! afterwards the household changelog holds one record per household, and the restarted
//! registry serves every household with its whole history and goes on processing.
//! `dsr log groups` and `dsr log delete-group` list and remove a consumer that stopped for
//! good, and refuse dsr up's own stages.

mod support;

use std::process::Command;
use support::up::{get, post_all_and_wait, start_with, stop_with};

fn dsr_log(args: &[&str], data: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsr"))
        .arg("log")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("NO_COLOR", "1")
        .output()
        .expect("dsr log runs")
}

fn compact(data: &std::path::Path) -> std::process::Output {
    dsr_log(&["compact"], data)
}

fn output_of(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsr_log_compact_removes_superseded_records_and_the_registry_serves_everything_after() {
    let data = tempfile::tempdir().unwrap();
    // dsr up's own passes off: what is removed here is the command's doing.
    let flags = ["--batch-size", "200", "--compaction-seconds", "0"];
    let mut up = start_with(data.path(), &flags);
    let client = up.api().await;
    let population = dsr_synth::fixtures::small_population(23, 300);
    let events = support::up::past_life_events(&population);
    let mut all = population.households.clone();
    all.extend(events);
    post_all_and_wait(&client, &up.base, &all).await;
    let household = all[0].envelope.household_id.clone().unwrap().to_string();
    let (status, before) = get(&client, format!("{}/v1/households/{household}", up.base)).await;
    assert_eq!(status, 200, "{before}");
    let (_, history) = get(
        &client,
        format!("{}/v1/households/{household}/history", up.base),
    )
    .await;
    let versions = history["versions"].as_array().unwrap().len();

    let refused = compact(data.path());
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("in use by another dsr process"), "{said}");

    assert!(stop_with(&mut up, "-TERM").success());
    drop(up);
    let done = compact(data.path());
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let removed: u64 = out
        .split(" record(s)")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of removed records in {out:?}"));
    assert!(removed > 0, "{out}");

    // The registry comes back with everything, and goes on.
    let mut up = start_with(data.path(), &flags);
    let client = up.api().await;
    let (status, after) = get(&client, format!("{}/v1/households/{household}", up.base)).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["household"], before["household"]);
    let (_, history) = get(
        &client,
        format!("{}/v1/households/{household}/history", up.base),
    )
    .await;
    assert_eq!(history["versions"].as_array().unwrap().len(), versions);
    let person = before["household"]["members"][0]["person_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let income = dsr_synth::fixtures::income(
        &household,
        &person,
        dsr_core::codes::IncomeSource::Wages,
        12_345.0,
        dsr_synth::fixtures::at(2026, 1, 5),
    );
    post_all_and_wait(&client, &up.base, &[income]).await;
    let (status, body) = get(&client, format!("{}/v1/households/{household}", up.base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["household"]["version"].as_u64(),
        before["household"]["version"].as_u64().map(|v| v + 1),
        "{body}"
    );
    assert!(stop_with(&mut up, "-TERM").success());
    drop(up);

    // The changelog held one record per household after the pass; since, one more.
    let fx =
        dsr_pipeline::testing::EmbeddedFixture::embedded_at(&support::repo(), data.path()).await;
    let records = fx.read_topic(&fx.topics.changelog).await.len();
    assert_eq!(records, fx.changelog().await.len() + 1, "{out}");

    // A consumer that stopped for good: listed, removed, and gone; dsr up's stages stay.
    use dsr_log::{GroupMember, Log};
    let mut retired = fx
        .log
        .join_group("retired-consumer", &[fx.topics.changelog.as_str()])
        .unwrap();
    retired
        .poll(10, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let tp = dsr_log::TopicPartition::new(fx.topics.changelog.clone(), 0);
    retired.commit(&[(tp, 1)]).await.unwrap();
    retired.leave().await.unwrap();
    fx.log.close();
    drop(fx);

    let listed = dsr_log(&["groups"], data.path());
    assert!(listed.status.success(), "{}", output_of(&listed));
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    for group in [
        "dsr-household-processor",
        "dsr-router",
        "dsr-serving",
        "retired-consumer",
    ] {
        assert!(table.contains(group), "{group} not listed: {table}");
    }
    let serving = table
        .lines()
        .find(|l| l.starts_with("dsr-serving"))
        .unwrap();
    assert_eq!(serving.split_whitespace().nth(1), Some("0"), "{table}");

    let refused = dsr_log(&["delete-group", "dsr-serving"], data.path());
    assert!(!refused.status.success());
    assert!(
        output_of(&refused).contains("is a stage of dsr up itself"),
        "{}",
        output_of(&refused)
    );
    let unknown = dsr_log(&["delete-group", "nobody"], data.path());
    assert!(!unknown.status.success());
    assert!(
        output_of(&unknown).contains("no consumer group `nobody`")
            && output_of(&unknown).contains("retired-consumer"),
        "{}",
        output_of(&unknown)
    );
    let removed = dsr_log(&["delete-group", "retired-consumer"], data.path());
    assert!(removed.status.success(), "{}", output_of(&removed));
    assert!(
        output_of(&removed).contains("removed consumer group `retired-consumer`"),
        "{}",
        output_of(&removed)
    );
    let listed = dsr_log(&["groups"], data.path());
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(!table.contains("retired-consumer"), "{table}");
    assert!(table.contains("dsr-serving"), "{table}");
}
