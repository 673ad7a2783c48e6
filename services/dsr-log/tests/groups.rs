//! Consumer groups against a real broker: commits, resume after a restart, partitions split
//! between members and moved by rebalances, with assignment notifications.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{broker, create_topic, log, poll_until, records_of};
use dsr_log::{GroupEvent, GroupMember, Log, LogError, Record, TopicPartition};

fn partitions(topic: &str, numbers: impl IntoIterator<Item = i32>) -> BTreeSet<TopicPartition> {
    numbers
        .into_iter()
        .map(|n| TopicPartition::new(topic, n))
        .collect()
}

fn owned<M: GroupMember>(member: &M) -> BTreeSet<TopicPartition> {
    member.assignment().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_then_resume_from_the_committed_offset_after_a_restart() {
    let broker = broker();
    create_topic(&broker, "t.resume", 4, false).await;
    let log = log(&broker);
    let records: Vec<Record> = (0..200)
        .map(|i| Record::new(format!("h{}", i % 23), format!("{i}")))
        .collect();
    log.append("t.resume", records).await.unwrap();

    // First run: process 80 records, commit them, stop.
    let mut member = log.join_group("g.resume", &["t.resume"]).unwrap();
    let mut events = Vec::new();
    poll_until(&mut member, &mut events, Duration::from_secs(30), |m, _| {
        owned(m).len() == 4
    })
    .await;
    assert!(
        matches!(&events[0], GroupEvent::Assigned(p) if p.len() == 4),
        "the first event is the assignment: {events:?}"
    );
    let mut processed: Vec<(TopicPartition, i64, String)> = Vec::new();
    for record in records_of(&events) {
        processed.push((
            record.topic_partition(),
            record.offset,
            String::from_utf8(record.value.clone().unwrap()).unwrap(),
        ));
    }
    while processed.len() < 80 {
        for event in member
            .poll(80 - processed.len(), Duration::from_secs(1))
            .await
            .unwrap()
        {
            if let GroupEvent::Records(records) = event {
                for record in records {
                    processed.push((
                        record.topic_partition(),
                        record.offset,
                        String::from_utf8(record.value.unwrap()).unwrap(),
                    ));
                }
            }
        }
    }
    processed.truncate(80);
    let mut commit: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for (tp, offset, _) in &processed {
        let next = commit.entry(tp.clone()).or_insert(0);
        *next = (*next).max(offset + 1);
    }
    let commit: Vec<(TopicPartition, i64)> = commit.into_iter().collect();
    member.commit(&commit).await.unwrap();

    let all: Vec<TopicPartition> = partitions("t.resume", 0..4).into_iter().collect();
    let committed = member.committed(&all).await.unwrap();
    for (tp, offset) in &commit {
        let i = all.iter().position(|p| p == tp).unwrap();
        assert_eq!(committed[i], Some(*offset));
    }
    // Offsets of a partition this member does not own cannot be committed.
    let error = member
        .commit(&[(TopicPartition::new("t.other", 0), 1)])
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::NotAssigned { .. }), "{error:?}");
    member.leave().await.unwrap();

    // Second run, a new consumer in the same group: it starts at the committed offsets and
    // gets exactly the records not processed before.
    let mut member = log.join_group("g.resume", &["t.resume"]).unwrap();
    let mut events = Vec::new();
    poll_until(
        &mut member,
        &mut events,
        Duration::from_secs(30),
        |_, events| records_of(events).len() >= 120,
    )
    .await;
    let resumed = records_of(&events);
    assert_eq!(resumed.len(), 120);
    for (tp, offset) in &commit {
        let first = resumed
            .iter()
            .filter(|r| &r.topic_partition() == tp)
            .map(|r| r.offset)
            .min();
        if let Some(first) = first {
            assert_eq!(
                first, *offset,
                "{tp} resumed at {first}, committed {offset}"
            );
        }
    }
    let mut values: BTreeSet<String> = processed.iter().map(|(_, _, v)| v.clone()).collect();
    for record in &resumed {
        let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
        assert!(values.insert(value.clone()), "{value} delivered again");
    }
    assert_eq!(values.len(), 200);
    member.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_partitions_and_a_leave_moves_them() {
    let broker = broker();
    create_topic(&broker, "t.split", 6, false).await;
    let log = log(&broker);
    let all = partitions("t.split", 0..6);

    let mut a = log.join_group("g.split", &["t.split"]).unwrap();
    let mut a_events = Vec::new();
    poll_until(&mut a, &mut a_events, Duration::from_secs(30), |m, _| {
        owned(m) == all
    })
    .await;

    // B joins: both must poll for the rebalance to finish.
    let mut b = log.join_group("g.split", &["t.split"]).unwrap();
    let mut b_events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (a_owned, b_owned) = (owned(&a), owned(&b));
        if !a_owned.is_empty()
            && !b_owned.is_empty()
            && a_owned.is_disjoint(&b_owned)
            && a_owned.union(&b_owned).cloned().collect::<BTreeSet<_>>() == all
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no split: a {a_owned:?} b {b_owned:?}"
        );
        let (ea, eb) = tokio::join!(
            a.poll(100, Duration::from_millis(200)),
            b.poll(100, Duration::from_millis(200))
        );
        a_events.extend(ea.unwrap());
        b_events.extend(eb.unwrap());
    }
    assert_eq!(owned(&a).len() + owned(&b).len(), 6);
    // A was told it lost its partitions, then what it got back; B was told what it got.
    assert!(
        a_events
            .iter()
            .any(|e| matches!(e, GroupEvent::Revoked(p) if p.len() == 6)),
        "{a_events:?}"
    );
    assert!(
        matches!(a_events.last(), Some(GroupEvent::Assigned(p)) if p.iter().cloned().collect::<BTreeSet<_>>() == owned(&a)),
        "{a_events:?}"
    );
    assert!(
        b_events.iter().any(
            |e| matches!(e, GroupEvent::Assigned(p) if p.iter().cloned().collect::<BTreeSet<_>>() == owned(&b))
        ),
        "{b_events:?}"
    );

    // Records go to the member that owns their partition, each to exactly one member.
    let records: Vec<Record> = (0..300)
        .map(|i| Record::new(format!("h{i}"), format!("{i}")))
        .collect();
    log.append("t.split", records).await.unwrap();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got_a.len() + got_b.len() < 300 {
        assert!(tokio::time::Instant::now() < deadline, "records missing");
        let (ea, eb) = tokio::join!(
            a.poll(1000, Duration::from_millis(200)),
            b.poll(1000, Duration::from_millis(200))
        );
        for event in ea.unwrap() {
            assert!(
                !matches!(event, GroupEvent::Revoked(_)),
                "unexpected rebalance"
            );
            if let GroupEvent::Records(records) = event {
                got_a.extend(records);
            }
        }
        for event in eb.unwrap() {
            assert!(
                !matches!(event, GroupEvent::Revoked(_)),
                "unexpected rebalance"
            );
            if let GroupEvent::Records(records) = event {
                got_b.extend(records);
            }
        }
    }
    assert!(!got_a.is_empty() && !got_b.is_empty());
    let (a_owned, b_owned) = (owned(&a), owned(&b));
    assert!(got_a.iter().all(|r| a_owned.contains(&r.topic_partition())));
    assert!(got_b.iter().all(|r| b_owned.contains(&r.topic_partition())));
    let values: BTreeSet<Vec<u8>> = got_a
        .iter()
        .chain(&got_b)
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(values.len(), 300);
    // Each commits what it processed.
    for (member, got) in [(&mut a, &got_a), (&mut b, &got_b)] {
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for record in got.iter() {
            next.insert(record.topic_partition(), record.next_offset());
        }
        member
            .commit(&next.into_iter().collect::<Vec<_>>())
            .await
            .unwrap();
    }

    // B leaves: A is told, gets all partitions back, and reads what is appended next from the
    // committed offsets (nothing twice).
    let b_had = owned(&b);
    b.leave().await.unwrap();
    let before = a_events.len();
    poll_until(&mut a, &mut a_events, Duration::from_secs(60), |m, _| {
        owned(m) == all
    })
    .await;
    let moved = &a_events[before..];
    assert!(
        moved.iter().any(|e| matches!(e, GroupEvent::Assigned(p)
            if b_had.iter().all(|tp| p.contains(tp)))),
        "{moved:?}"
    );
    assert!(
        records_of(moved).is_empty(),
        "committed records delivered again: {moved:?}"
    );
    log.append(
        "t.split",
        (300..400)
            .map(|i| Record::new(format!("h{i}"), format!("{i}")))
            .collect(),
    )
    .await
    .unwrap();
    let before = a_events.len();
    poll_until(
        &mut a,
        &mut a_events,
        Duration::from_secs(30),
        |_, events| records_of(&events[before..]).len() >= 100,
    )
    .await;
    let late = records_of(&a_events[before..]);
    assert_eq!(late.len(), 100);
    assert!(late.iter().any(|r| b_had.contains(&r.topic_partition())));
    a.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_group_on_a_missing_topic_is_a_clear_error() {
    let broker = broker();
    let log = log(&broker);
    let mut member = log.join_group("g.missing", &["t.not-declared"]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let error = loop {
        match member.poll(10, Duration::from_millis(500)).await {
            Err(error) => break error,
            Ok(events) => assert!(events.is_empty(), "{events:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error for a missing topic"
        );
    };
    assert!(
        matches!(&error, LogError::UnknownTopic { topic } if topic == "t.not-declared"),
        "{error:?}"
    );
}
