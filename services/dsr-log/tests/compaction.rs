//! A compacted topic keeps the last value of each key (the household changelog relies on it).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{broker_with, create_topic, log, read_partition};
use dsr_log::testing::TestBrokerOptions;
use dsr_log::{Log, Record, TopicPartition};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_last_value_per_key() {
    // Compaction runs in the broker's maintenance sweep: make it run every second.
    let broker = broker_with(TestBrokerOptions {
        maintenance_interval: Some(Duration::from_secs(1)),
        ..TestBrokerOptions::default()
    });
    create_topic(&broker, "t.changelog", 1, true).await;
    let log = log(&broker);

    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for version in 0..5 {
        let records: Vec<Record> = (0..20)
            .map(|household| {
                let key = format!("household-{household}");
                let value = format!("{key} v{version}");
                expected.insert(key.clone(), value.clone());
                Record::new(key, value)
            })
            .collect();
        log.append("t.changelog", records).await.unwrap();
    }
    let tp = TopicPartition::new("t.changelog", 0);
    assert_eq!(log.end_offset(&tp).await.unwrap(), 100);

    // Restoring (last value per key, in offset order) gives the latest state at any time...
    let restore = |records: &[dsr_log::ConsumedRecord]| {
        let mut state = BTreeMap::new();
        for record in records {
            state.insert(
                String::from_utf8(record.key.clone().unwrap()).unwrap(),
                String::from_utf8(record.value.clone().unwrap()).unwrap(),
            );
        }
        state
    };
    assert_eq!(restore(&read_partition(&log, &tp).await), expected);

    // ...and compaction removes the older values, keeping offsets (with gaps).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = read_partition(&log, &tp).await;
        if records.len() == expected.len() {
            assert_eq!(restore(&records), expected);
            assert!(records.iter().all(|r| r.offset >= 80), "{records:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted after 60 s: {} records",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(log.end_offset(&tp).await.unwrap(), 100);
}
