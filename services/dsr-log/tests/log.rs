//! Append and read back against a real broker (nisshi, SQLite storage).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{broker, create_topic, log, read_partition, read_topic};
use dsr_log::{partition_for_key, Header, Log, LogError, PartitionReader, Record, TopicPartition};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_read_back_keys_headers_and_tombstones() {
    let broker = broker();
    create_topic(&broker, "t.roundtrip", 3, false).await;
    let log = log(&broker);

    let mut records: Vec<Record> = (0..60)
        .map(|i| {
            Record::new(format!("household-{}", i % 17), format!("event {i}"))
                .with_header("source", "crvs")
                .with_header("seq", i.to_string())
                .with_timestamp_ms(1_767_225_600_000 + i)
        })
        .collect();
    // A header without a value, a repeated header, and a tombstone.
    records[5].headers.push(Header {
        key: "empty".to_owned(),
        value: None,
    });
    records[6] = records[6].clone().with_header("source", "tax");
    records[7] = Record::tombstone("household-7");

    let appended = log.append("t.roundtrip", records.clone()).await.unwrap();
    assert_eq!(appended.len(), records.len());

    // The partitioner is Kafka's default (murmur2): dsr and stock clients agree.
    for (record, at) in records.iter().zip(&appended) {
        let key = record.key.as_deref().unwrap();
        assert_eq!(at.partition, partition_for_key(key, 3), "{record:?}");
    }

    let mut per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for at in &appended {
        *per_partition.entry(at.partition).or_default() += 1;
    }
    for (partition, count) in &per_partition {
        let tp = TopicPartition::new("t.roundtrip", *partition);
        assert_eq!(log.beginning_offset(&tp).await.unwrap(), 0);
        assert_eq!(log.end_offset(&tp).await.unwrap(), *count);
    }

    let read = read_topic(&log, "t.roundtrip").await;
    assert_eq!(read.len(), records.len());
    for (record, at) in records.iter().zip(&appended) {
        let got = read
            .iter()
            .find(|r| r.partition == at.partition && Some(r.offset) == at.offset)
            .unwrap_or_else(|| panic!("record at {at:?} not read back"));
        assert_eq!(got.key, record.key);
        assert_eq!(got.value, record.value);
        assert_eq!(got.headers, record.headers);
        if let Some(timestamp) = record.timestamp_ms {
            assert_eq!(got.timestamp_ms, Some(timestamp));
        }
    }
    assert_eq!(read[0].topic, "t.roundtrip");
    let with_two_sources = read
        .iter()
        .find(|r| r.value.as_deref() == Some(&b"event 6"[..]))
        .unwrap();
    assert_eq!(with_two_sources.header("source"), Some(&b"tax"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_an_offset_in_batches_and_time_out_at_the_end() {
    let broker = broker();
    create_topic(&broker, "t.offsets", 1, false).await;
    let log = log(&broker);
    let records: Vec<Record> = (0..100).map(|i| Record::new("k", format!("{i}"))).collect();
    log.append("t.offsets", records).await.unwrap();

    let tp = TopicPartition::new("t.offsets", 0);
    let mut reader = log.reader().unwrap();
    let batch = reader
        .read(&tp, 40, 25, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!batch.is_empty() && batch.len() <= 25);
    assert_eq!(batch[0].offset, 40);
    assert_eq!(batch[0].value.as_deref(), Some(&b"40"[..]));
    for pair in batch.windows(2) {
        assert_eq!(pair[1].offset, pair[0].offset + 1);
    }

    // Going back re-reads; going on continues.
    let again = reader
        .read(&tp, 10, 5, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again[0].offset, 10);

    // At the end: nothing, after about the timeout.
    let started = Instant::now();
    let none = reader
        .read(&tp, 100, 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(450));

    // A record appended while a reader waits at the end arrives promptly (fetch.wait.max.ms=10).
    let log = Arc::new(log);
    let appender = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            log.append("t.offsets", vec![Record::new("k", "100")])
                .await
                .unwrap()
        })
    };
    let started = Instant::now();
    let late = reader
        .read(&tp, 100, 10, Duration::from_secs(10))
        .await
        .unwrap();
    let waited = started.elapsed();
    appender.await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].offset, 100);
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_a_clear_error() {
    let broker = broker();
    let log = log(&broker);
    let error = log
        .append("t.not-declared", vec![Record::new("k", "v")])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LogError::UnknownTopic { topic } if topic == "t.not-declared"),
        "{error:?}"
    );
    assert!(error.to_string().contains("dsr topics apply"), "{error}");
    assert!(matches!(
        log.partition_count("t.not-declared").await,
        Err(LogError::UnknownTopic { .. })
    ));
}

/// Many concurrent appends through one idempotent producer: every record is written exactly
/// once and the records of a key keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_writes_each_record_once_in_key_order() {
    let broker = broker();
    create_topic(&broker, "t.idempotent", 4, false).await;
    let log = Arc::new(log(&broker));

    let mut tasks = Vec::new();
    for writer in 0..4 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            for batch in 0..10 {
                let records = (0..250)
                    .map(|i| {
                        let n = batch * 250 + i;
                        Record::new(format!("w{writer}-k{}", n % 8), format!("{writer}:{n}"))
                    })
                    .collect();
                log.append("t.idempotent", records).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let read = read_topic(&log, "t.idempotent").await;
    assert_eq!(read.len(), 4 * 10 * 250);
    let distinct: BTreeSet<&[u8]> = read.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(distinct.len(), read.len(), "duplicates");

    // Per key, the sequence numbers increase in offset order.
    let mut last: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for partition in 0..4 {
        let records = read_partition(&log, &TopicPartition::new("t.idempotent", partition)).await;
        for record in records {
            let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
            let n: i64 = value.split(':').nth(1).unwrap().parse().unwrap();
            let key = record.key.clone().unwrap();
            if let Some(previous) = last.insert(key.clone(), n) {
                assert!(
                    previous < n,
                    "{} out of order",
                    String::from_utf8_lossy(&key)
                );
            }
        }
    }
}
