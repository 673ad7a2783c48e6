//! The broker killed with SIGKILL in the middle of a produce and started again on the same
//! SQLite file: every acknowledged record is there, once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{broker, create_topic, log, read_topic};
use dsr_log::{Appended, GroupEvent, GroupMember, Log, Record, TopicPartition};

/// (partition, offset).
type Position = (i32, i64);
/// (key, value).
type KeyValue<'a> = (&'a [u8], &'a [u8]);

const BATCHES: usize = 150;
const BATCH: usize = 100;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_broker_mid_produce_loses_nothing_acknowledged() {
    let mut broker = broker();
    create_topic(&broker, "t.crash", 4, false).await;
    let log = Arc::new(log(&broker));

    let acked: Arc<Mutex<Vec<(Appended, String, String)>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (log, acked, errors, done) = (
            Arc::clone(&log),
            Arc::clone(&acked),
            Arc::clone(&errors),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            for batch in 0..BATCHES {
                let records: Vec<(String, String)> = (0..BATCH)
                    .map(|i| {
                        let n = batch * BATCH + i;
                        (format!("household-{}", n % 97), format!("record-{n}"))
                    })
                    .collect();
                loop {
                    let batch_records = records
                        .iter()
                        .map(|(key, value)| Record::new(key.as_str(), value.as_str()))
                        .collect();
                    match log.append("t.crash", batch_records).await {
                        Ok(appended) => {
                            let mut acked = acked.lock().unwrap();
                            for (at, (key, value)) in appended.into_iter().zip(&records) {
                                acked.push((at, key.clone(), value.clone()));
                            }
                            break;
                        }
                        // Not acknowledged: append again (copies are allowed, losses are not).
                        Err(error) => {
                            errors.lock().unwrap().push(error.to_string());
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    for kill in 1..=KILLS {
        let deadline = Instant::now() + Duration::from_secs(120);
        while done.load(Ordering::SeqCst) < kill * BATCHES / (KILLS + 1) {
            assert!(Instant::now() < deadline, "the producer is stuck");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        broker.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        broker.restart().unwrap_or_else(|error| panic!("{error}"));
    }
    tokio::time::timeout(Duration::from_secs(300), producer)
        .await
        .expect("the producer finished after the restarts")
        .unwrap();

    let acked = acked.lock().unwrap().clone();
    let errors = errors.lock().unwrap().clone();
    assert_eq!(acked.len(), BATCHES * BATCH);

    let read = read_topic(&log, "t.crash").await;
    let by_position: BTreeMap<Position, KeyValue<'_>> = read
        .iter()
        .map(|r| {
            (
                (r.partition, r.offset),
                (r.key.as_deref().unwrap(), r.value.as_deref().unwrap()),
            )
        })
        .collect();
    // Acknowledged duplicates (idempotent retries the restarted broker had already written)
    // come without an offset: those must be somewhere in their partition.
    let by_content: BTreeSet<(i32, KeyValue<'_>)> = by_position
        .iter()
        .map(|((partition, _), key_value)| (*partition, *key_value))
        .collect();
    let mut lost = Vec::new();
    let mut without_offset = 0;
    for (at, key, value) in &acked {
        let wanted = (key.as_bytes(), value.as_bytes());
        match at.offset {
            Some(offset) => match by_position.get(&(at.partition, offset)) {
                Some(found) if *found == wanted => {}
                other => lost.push(format!("{value} acked at {at:?}, found {other:?}")),
            },
            None => {
                without_offset += 1;
                if !by_content.contains(&(at.partition, wanted)) {
                    lost.push(format!(
                        "{value} acked in partition {}, not there",
                        at.partition
                    ));
                }
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost or changed, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    let mut copies: BTreeMap<&[u8], usize> = BTreeMap::new();
    for record in &read {
        *copies.entry(record.value.as_deref().unwrap()).or_default() += 1;
    }
    let duplicated = copies.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} kills: {} records acknowledged ({} as duplicates without an offset), {} read, {} duplicated, {} append errors {:?}",
        KILLS,
        acked.len(),
        without_offset,
        read.len(),
        duplicated,
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    // The idempotent producer's retries across the crashes write nothing twice; only a batch
    // appended again after an error may.
    if errors.is_empty() {
        assert_eq!(duplicated, 0, "the idempotent producer wrote duplicates");
    }
}

/// Committed offsets survive a broker crash: a consumer after the restart resumes from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_crash() {
    let mut broker = broker();
    create_topic(&broker, "t.crash-commit", 2, false).await;
    let log = log(&broker);
    log.append(
        "t.crash-commit",
        (0..50)
            .map(|i| Record::new(format!("h{i}"), format!("{i}")))
            .collect(),
    )
    .await
    .unwrap();
    let all = [
        TopicPartition::new("t.crash-commit", 0),
        TopicPartition::new("t.crash-commit", 1),
    ];
    let mut commit = Vec::new();
    let mut remaining = 0;
    for tp in &all {
        let end = log.end_offset(tp).await.unwrap();
        commit.push((tp.clone(), end / 2));
        remaining += end - end / 2;
    }
    let mut member = log.join_group("g.crash", &["t.crash-commit"]).unwrap();
    let mut events = Vec::new();
    common::poll_until(&mut member, &mut events, Duration::from_secs(30), |m, _| {
        m.assignment().len() == 2
    })
    .await;
    member.commit(&commit).await.unwrap();
    drop(member);

    broker.kill();
    broker.restart().unwrap_or_else(|error| panic!("{error}"));

    let log = common::log(&broker);
    let mut member = log.join_group("g.crash", &["t.crash-commit"]).unwrap();
    assert_eq!(
        member.committed(&all).await.unwrap(),
        commit.iter().map(|(_, o)| Some(*o)).collect::<Vec<_>>()
    );
    let mut events = Vec::new();
    common::poll_until(
        &mut member,
        &mut events,
        Duration::from_secs(30),
        |_, events| common::records_of(events).len() as i64 >= remaining,
    )
    .await;
    assert_eq!(common::records_of(&events).len() as i64, remaining);
    for (tp, offset) in &commit {
        let first = common::records_of(&events)
            .iter()
            .filter(|r| &r.topic_partition() == tp)
            .map(|r| r.offset)
            .min();
        assert_eq!(first, Some(*offset), "{tp}");
    }
    assert!(events.iter().any(|e| matches!(e, GroupEvent::Assigned(_))));
    member.leave().await.unwrap();
}
