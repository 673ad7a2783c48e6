//! Helpers shared by the integration tests: a real broker, topics, reading a whole partition.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use dsr_log::testing::{TestBroker, TestBrokerOptions};
use dsr_log::{
    ConsumedRecord, GroupEvent, GroupMember, KafkaAdmin, KafkaConfig, KafkaLog, Log, NewTopicSpec,
    PartitionReader, TopicAdmin, TopicPartition,
};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Starts a broker or fails the test with the reason (e.g. how to install nisshi).
pub fn broker() -> TestBroker {
    broker_with(TestBrokerOptions::default())
}

pub fn broker_with(options: TestBrokerOptions) -> TestBroker {
    init_tracing();
    TestBroker::start_with(options).unwrap_or_else(|error| panic!("{error}"))
}

pub fn config(broker: &TestBroker) -> KafkaConfig {
    KafkaConfig::new(broker.bootstrap())
}

pub fn log(broker: &TestBroker) -> KafkaLog {
    KafkaLog::new(config(broker)).expect("a Kafka client")
}

pub async fn create_topic(broker: &TestBroker, name: &str, partitions: i32, compact: bool) {
    let admin = KafkaAdmin::new(&config(broker)).expect("an admin client");
    let policy = if compact { "compact" } else { "delete" };
    admin
        .create_topic(&NewTopicSpec {
            name: name.to_owned(),
            partitions,
            replication_factor: 1,
            configs: vec![("cleanup.policy".to_owned(), policy.to_owned())],
        })
        .await
        .expect("topic created");
}

/// Every record of a partition, from its beginning to its end offset.
pub async fn read_partition(log: &KafkaLog, partition: &TopicPartition) -> Vec<ConsumedRecord> {
    let end = log.end_offset(partition).await.expect("end offset");
    let mut next = log
        .beginning_offset(partition)
        .await
        .expect("beginning offset");
    let mut reader = log.reader().expect("a reader");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < end {
        assert!(
            Instant::now() < deadline,
            "reading {partition} stalled at {next} of {end}"
        );
        let batch = reader
            .read(partition, next, 10_000, Duration::from_secs(2))
            .await
            .expect("read");
        if let Some(last) = batch.last() {
            next = last.next_offset();
        }
        records.extend(batch.into_iter().filter(|record| record.offset < end));
    }
    records
}

/// Every record of every partition of a topic.
pub async fn read_topic(log: &KafkaLog, topic: &str) -> Vec<ConsumedRecord> {
    let partitions = log.partition_count(topic).await.expect("partition count");
    let mut records = Vec::new();
    for partition in 0..partitions {
        records.extend(read_partition(log, &TopicPartition::new(topic, partition)).await);
    }
    records
}

/// Polls `member` until `done` says so (given all events so far), or fails after `within`.
pub async fn poll_until<M: GroupMember>(
    member: &mut M,
    events: &mut Vec<GroupEvent>,
    within: Duration,
    done: impl Fn(&M, &[GroupEvent]) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(member, events) {
        assert!(
            Instant::now() < deadline,
            "not done within {within:?}; assignment {:?}; events {events:#?}",
            member.assignment()
        );
        events.extend(
            member
                .poll(1_000, Duration::from_millis(200))
                .await
                .expect("poll"),
        );
    }
}

pub fn records_of(events: &[GroupEvent]) -> Vec<&ConsumedRecord> {
    events
        .iter()
        .flat_map(|event| match event {
            GroupEvent::Records(records) => records.iter().collect(),
            _ => Vec::new(),
        })
        .collect()
}
