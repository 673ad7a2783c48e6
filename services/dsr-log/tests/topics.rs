//! The declarations in `topics/` and `topics::apply` against a real broker.

mod common;

use std::path::{Path, PathBuf};

use common::{broker, config, log, read_partition};
use dsr_log::topics::{self, CleanupPolicy, TopicDecl};
use dsr_log::{KafkaAdmin, Log, NewTopicSpec, Record, TopicAdmin, TopicPartition};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn declarations() -> Vec<TopicDecl> {
    topics::load_dir(&repo().join("topics")).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn the_repository_declares_every_topic_the_pipeline_needs() {
    let decls = declarations();
    let find = |name: &str| {
        decls
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("topics/{name}.yaml is missing"))
    };
    for source in [
        "crvs",
        "id-authority",
        "tax",
        "labour",
        "health",
        "disaster",
        "legacy-http",
    ] {
        let decl = find(&format!("dsr.life-events.{source}"));
        assert_eq!(decl.value_schema, "dsr.events.LifeEvent");
        assert_eq!(decl.cleanup_policy, CleanupPolicy::Delete);
    }
    let events = find("dsr.household-events");
    let changelog = find("dsr.household-changelog");
    assert_eq!(events.key, "household_id");
    assert_eq!(changelog.key, "household_id");
    assert_eq!(changelog.cleanup_policy, CleanupPolicy::Compact);
    assert_eq!(
        events.partitions, changelog.partitions,
        "the changelog is co-partitioned with the household events"
    );
    find("dsr.dead-letter");

    // One eligibility topic per program in programs/.
    let mut programs = 0;
    for entry in std::fs::read_dir(repo().join("programs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let id = text
                .lines()
                .find_map(|line| line.strip_prefix("id:"))
                .unwrap_or_else(|| panic!("{} has no id", path.display()))
                .trim()
                .to_owned();
            let decl = find(&format!("dsr.eligibility.{id}"));
            assert_eq!(decl.key, "household_id");
            programs += 1;
        }
    }
    assert!(programs >= 3);
    for decl in &decls {
        assert!(decl.replication_factor >= 3, "{}", decl.name);
        assert!(decl.min_insync_replicas >= 2, "{}", decl.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_is_idempotent_and_reports_drift_without_touching_data() {
    let broker = broker();
    let admin = KafkaAdmin::new(&config(&broker)).unwrap();
    let decls = declarations();

    // First apply: everything is created (replication capped to the one broker, and said so).
    let report = topics::apply(&admin, &decls).await.unwrap();
    assert_eq!(report.created.len(), decls.len(), "{report}");
    assert!(report.drift.is_empty(), "{report}");
    assert!(
        report.notes.iter().any(|n| n.contains("capped")),
        "{report}"
    );
    for decl in &decls {
        let actual = admin.describe_topic(&decl.name).await.unwrap().unwrap();
        assert_eq!(actual.partitions, decl.partitions, "{}", decl.name);
        assert_eq!(
            actual.config("cleanup.policy"),
            Some(decl.cleanup_policy.as_kafka()),
            "{}: {actual:?}",
            decl.name
        );
    }

    eprintln!("first apply:\n{report}");
    // Second apply: nothing to do.
    let again = topics::apply(&admin, &decls).await.unwrap();
    assert!(again.created.is_empty(), "{again}");
    assert_eq!(again.unchanged.len(), decls.len(), "{again}");
    assert!(again.is_clean(), "{again}");
    eprintln!("second apply:\n{again}");

    // Drift: a topic made by hand with other settings, holding data.
    let declared = topics::parse(
        Path::new("topics/t.drifted.yaml"),
        "name: t.drifted\npartitions: 6\nreplication_factor: 1\ncleanup_policy: compact\n\
         retention_ms: -1\nmin_insync_replicas: 1\nkey: household_id\n\
         value_schema: dsr.state.HouseholdRecord\ndescription: drift test\n",
    )
    .unwrap();
    admin
        .create_topic(&NewTopicSpec {
            name: "t.drifted".to_owned(),
            partitions: 2,
            replication_factor: 1,
            configs: vec![("cleanup.policy".to_owned(), "delete".to_owned())],
        })
        .await
        .unwrap();
    let log = log(&broker);
    let written = log
        .append(
            "t.drifted",
            (0..20).map(|i| Record::new(format!("h{i}"), "v")).collect(),
        )
        .await
        .unwrap();

    let report = topics::apply(&admin, std::slice::from_ref(&declared))
        .await
        .unwrap();
    let settings: Vec<&str> = report.drift.iter().map(|d| d.setting.as_str()).collect();
    assert!(settings.contains(&"partitions"), "{report}");
    assert!(settings.contains(&"cleanup.policy"), "{report}");
    assert!(!report.is_clean());
    assert!(report.to_string().contains("DRIFT"), "{report}");
    let partitions = report
        .drift
        .iter()
        .find(|d| d.setting == "partitions")
        .unwrap();
    assert_eq!(
        (partitions.declared.as_str(), partitions.actual.as_str()),
        ("6", "2")
    );

    // Nothing was changed or lost.
    let actual = admin.describe_topic("t.drifted").await.unwrap().unwrap();
    assert_eq!(actual.partitions, 2);
    assert_eq!(actual.config("cleanup.policy"), Some("delete"));
    let mut read = 0;
    for partition in 0..2 {
        read += read_partition(&log, &TopicPartition::new("t.drifted", partition))
            .await
            .len();
    }
    assert_eq!(read, written.len());
}
