//! Compaction and retention of the embedded log: a compacted topic keeps each key's latest
//! record, a topic with retention loses its old records, superseded offset commits go, and
//! nothing a reader or a consumer group still needs is removed — across reopens, encrypted or
//! not, and under a random mix of appends, rolls and passes checked against a model.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dsr_log::{
    EmbeddedLog, GroupEvent, GroupMember, Log, NewTopicSpec, PartitionReader, Record, TopicAdmin,
    TopicPartition,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn spec(name: &str, partitions: i32, configs: &[(&str, &str)]) -> NewTopicSpec {
    NewTopicSpec {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: configs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect(),
    }
}

fn compacted(name: &str, partitions: i32) -> NewTopicSpec {
    spec(
        name,
        partitions,
        &[("cleanup.policy", "compact"), ("retention.ms", "-1")],
    )
}

/// How the tests open a log: in the clear, or sealed as `dsr up` does.
#[derive(Clone, Copy, Debug)]
enum Opening {
    Plain,
    Sealed,
}

fn open(
    dir: &std::path::Path,
    how: Opening,
) -> (EmbeddedLog, dsr_log::embedded::journal::RecoveryReport) {
    match how {
        Opening::Plain => EmbeddedLog::open(dir.join("log")).unwrap(),
        Opening::Sealed => {
            let (keyring, _, _) =
                dsr_crypto::Keyring::open_directory(&dir.join("security"), None, None, 1).unwrap();
            EmbeddedLog::open_encrypted(dir.join("log"), Arc::new(keyring)).unwrap()
        }
    }
}

/// The offsets of the next `count` records `member` polls, in order.
async fn poll_offsets(member: &mut impl GroupMember, count: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        for event in member.poll(100, Duration::from_secs(1)).await.unwrap() {
            if let GroupEvent::Records(r) = event {
                seen.extend(r.iter().map(|r| r.offset));
            }
        }
    }
    seen
}

/// Every record of a partition, from its beginning, as (offset, key, value).
async fn read_partition(
    log: &EmbeddedLog,
    tp: &TopicPartition,
) -> Vec<(i64, String, Option<String>)> {
    let mut reader = log.reader().unwrap();
    let end = log.end_offset(tp).await.unwrap();
    let mut from = 0;
    let mut out = Vec::new();
    while from < end {
        // Small reads: a read must pass over removed records without stalling.
        let batch = reader
            .read(tp, from, 7, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            !batch.is_empty(),
            "a read at {from} below the end {end} returned nothing"
        );
        from = batch.last().unwrap().next_offset();
        out.extend(batch.into_iter().map(|r| {
            (
                r.offset,
                String::from_utf8(r.key.unwrap_or_default()).unwrap(),
                r.value.map(|v| String::from_utf8(v).unwrap()),
            )
        }));
    }
    out
}

async fn keeps_each_keys_latest_record(how: Opening) {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("t.changelog", 0);
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let before;
    {
        let (log, _) = open(dir.path(), how);
        log.create_topic(&compacted("t.changelog", 1))
            .await
            .unwrap();
        for version in 0..5 {
            let records: Vec<Record> = (0..50)
                .map(|k| {
                    Record::new(
                        format!("household-{k}"),
                        format!("household-{k} v{version}"),
                    )
                })
                .collect();
            let appended = log.append("t.changelog", records).await.unwrap();
            for (k, a) in appended.iter().enumerate() {
                latest.insert(
                    format!("household-{k}"),
                    (a.offset.unwrap(), format!("household-{k} v{version}")),
                );
            }
            log.roll_segment().await.unwrap();
        }
        before = log.disk_bytes();
        let done = log.compact(SystemTime::now(), |_, _| {}).await.unwrap();
        assert_eq!(done.records_removed, 200, "{done}");
        assert_eq!(done.segments_rewritten, 4, "{done}");
        assert!(done.bytes_after < done.bytes_before, "{done}");
        assert!(log.disk_bytes() < before);
        let want: Vec<_> = latest
            .iter()
            .map(|(k, (o, v))| (*o, k.clone(), Some(v.clone())))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(read_partition(&log, &tp).await, want);
        assert_eq!(log.beginning_offset(&tp).await.unwrap(), 200);
        // A second pass finds nothing more to do.
        let again = log.compact(SystemTime::now(), |_, _| {}).await.unwrap();
        assert_eq!(
            (again.records_removed, again.segments_rewritten),
            (0, 0),
            "{again}"
        );
        log.close();
    }
    // Recovery reads the compacted segments; offsets continue where they were.
    let (log, report) = open(dir.path(), how);
    assert!(report.truncated.is_none(), "{report}");
    let read = read_partition(&log, &tp).await;
    assert_eq!(read.len(), 50);
    assert!(read
        .iter()
        .all(|(o, k, v)| latest[k] == (*o, v.clone().unwrap())));
    let appended = log
        .append(
            "t.changelog",
            vec![Record::new("household-0", "household-0 v5")],
        )
        .await
        .unwrap();
    assert_eq!(appended[0].offset, Some(250));
    assert!(log.disk_bytes() < before);
}

#[tokio::test]
async fn a_compacted_topic_keeps_each_keys_latest_record_across_a_reopen() {
    keeps_each_keys_latest_record(Opening::Plain).await;
}

#[tokio::test]
async fn a_sealed_compacted_topic_keeps_each_keys_latest_record_across_a_reopen() {
    keeps_each_keys_latest_record(Opening::Sealed).await;
}

#[tokio::test]
async fn retention_removes_old_records_but_never_a_partitions_last_or_a_kept_forever_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), Opening::Sealed);
    let month = spec(
        "t.source",
        2,
        &[("cleanup.policy", "delete"), ("retention.ms", "2592000000")],
    );
    let forever = spec(
        "t.events",
        2,
        &[("cleanup.policy", "delete"), ("retention.ms", "-1")],
    );
    log.create_topic(&month).await.unwrap();
    log.create_topic(&forever).await.unwrap();
    for topic in ["t.source", "t.events"] {
        let records = (0..100).map(|i| Record::new(format!("k{i}"), format!("v{i}")));
        log.append(topic, records.collect()).await.unwrap();
    }
    log.roll_segment().await.unwrap();
    // Not old enough yet: nothing goes.
    let early = log
        .compact(SystemTime::now() + 29 * DAY, |_, _| {})
        .await
        .unwrap();
    assert_eq!(early.records_removed, 0, "{early}");
    let done = log
        .compact(SystemTime::now() + 31 * DAY, |_, _| {})
        .await
        .unwrap();
    for p in 0..2 {
        let tp = TopicPartition::new("t.source", p);
        let end = log.end_offset(&tp).await.unwrap();
        let read = read_partition(&log, &tp).await;
        assert_eq!(read.len(), 1, "only the last record of partition {p} stays");
        assert_eq!(read[0].0, end - 1);
        assert_eq!(log.beginning_offset(&tp).await.unwrap(), end - 1);
        let events = read_partition(&log, &TopicPartition::new("t.events", p)).await;
        assert_eq!(
            events[0].0, 0,
            "a kept-forever topic keeps its first record"
        );
    }
    assert_eq!(done.records_removed, 98, "{done}");
    let all_events = read_partition(&log, &TopicPartition::new("t.events", 0))
        .await
        .len()
        + read_partition(&log, &TopicPartition::new("t.events", 1))
            .await
            .len();
    assert_eq!(all_events, 100);
}

#[tokio::test]
async fn records_a_consumer_group_has_not_passed_stay_and_superseded_commits_go() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("t.changelog", 0);
    {
        let (log, _) = open(dir.path(), Opening::Plain);
        log.create_topic(&compacted("t.changelog", 1))
            .await
            .unwrap();
        let mut member = log.join_group("projector", &["t.changelog"]).unwrap();
        for version in 0..4 {
            let records: Vec<Record> = (0..10)
                .map(|k| Record::new(format!("k{k}"), format!("v{version}")))
                .collect();
            log.append("t.changelog", records).await.unwrap();
            // The group reads and commits the first two versions only.
            if version < 2 {
                let mut seen = 0;
                while seen < 10 {
                    for event in member.poll(100, Duration::from_secs(1)).await.unwrap() {
                        if let GroupEvent::Records(r) = event {
                            seen += r.len();
                        }
                    }
                }
                member
                    .commit(&[(tp.clone(), (version + 1) * 10)])
                    .await
                    .unwrap();
            }
            log.roll_segment().await.unwrap();
        }
        let done = log.compact(SystemTime::now(), |_, _| {}).await.unwrap();
        // Versions 0 and 1 are superseded and passed; 2 is superseded but not yet read.
        assert_eq!(done.records_removed, 20, "{done}");
        assert_eq!(
            done.commits_removed, 1,
            "the first commit is superseded: {done}"
        );
        let offsets: Vec<i64> = read_partition(&log, &tp)
            .await
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(offsets, (20..40).collect::<Vec<_>>());
        // The group goes on where it was, through what is left.
        assert_eq!(
            poll_offsets(&mut member, 20).await,
            (20..40).collect::<Vec<_>>()
        );
        member.leave().await.unwrap();
        log.close();
    }
    let (log, _) = open(dir.path(), Opening::Plain);
    let mut member = log.join_group("projector", &["t.changelog"]).unwrap();
    assert_eq!(
        member.committed(std::slice::from_ref(&tp)).await.unwrap(),
        vec![Some(20)]
    );
}

#[tokio::test]
async fn a_tombstone_goes_a_day_after_its_segment_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), Opening::Plain);
    log.create_topic(&compacted("t.parked", 1)).await.unwrap();
    let parked = (0..20).map(|i| Record::new(format!("event-{i}"), "parked"));
    let released = (0..20).map(|i| Record::tombstone(format!("event-{i}")));
    let still = std::iter::once(Record::new("event-20", "parked"));
    log.append("t.parked", parked.chain(released).chain(still).collect())
        .await
        .unwrap();
    log.roll_segment().await.unwrap();
    let tp = TopicPartition::new("t.parked", 0);
    let soon = log.compact(SystemTime::now(), |_, _| {}).await.unwrap();
    assert_eq!(soon.records_removed, 20, "{soon}");
    let read = read_partition(&log, &tp).await;
    assert_eq!(read.len(), 21);
    assert!(read[..20].iter().all(|(_, _, v)| v.is_none()), "{read:?}");
    let later = log
        .compact(SystemTime::now() + 2 * DAY, |_, _| {})
        .await
        .unwrap();
    assert_eq!(later.records_removed, 20, "{later}");
    assert_eq!(
        read_partition(&log, &tp).await,
        vec![(40, "event-20".into(), Some("parked".into()))]
    );
}

#[tokio::test]
async fn a_compaction_that_stopped_before_its_rename_leaves_the_old_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path(), Opening::Plain);
        log.create_topic(&compacted("t.changelog", 1))
            .await
            .unwrap();
        log.append(
            "t.changelog",
            vec![Record::new("a", "1"), Record::new("a", "2")],
        )
        .await
        .unwrap();
        log.roll_segment().await.unwrap();
        log.close();
    }
    // What a pass killed mid-write leaves: a half-written new file beside the segment.
    let stray = dir.path().join("log/00000000000000000000.log.compact");
    std::fs::write(&stray, b"\xd5\x05half").unwrap();
    let (log, report) = open(dir.path(), Opening::Plain);
    assert!(report.truncated.is_none(), "{report}");
    assert!(!stray.exists());
    let read = read_partition(&log, &TopicPartition::new("t.changelog", 0)).await;
    assert_eq!(read.len(), 2);
}

/// A small deterministic generator (the tests need no randomness crate).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Random appends, tombstones, rolls, passes and reopens on a compacted topic; after each step
/// every record read is the one the model wrote at that offset, every key's latest record is
/// there, and the partition's last record is there.
#[tokio::test]
async fn random_appends_rolls_passes_and_reopens_never_lose_a_latest_record() {
    for seed in 1..=6u64 {
        let how = if seed % 2 == 0 {
            Opening::Sealed
        } else {
            Opening::Plain
        };
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Lcg(seed);
        let (mut log, _) = open(dir.path(), how);
        log.create_topic(&compacted("t.c", 2)).await.unwrap();
        // The model: every record written, by partition and offset.
        let mut written: BTreeMap<(i32, i64), (String, Option<String>)> = BTreeMap::new();
        let mut removed = 0;
        for step in 0..60 {
            match rng.below(10) {
                0..=5 => {
                    let records: Vec<Record> = (0..1 + rng.below(40))
                        .map(|i| {
                            let key = format!("k{}", rng.below(30));
                            if rng.below(8) == 0 {
                                Record::tombstone(key)
                            } else {
                                Record::new(key, format!("s{step} i{i}"))
                            }
                        })
                        .collect();
                    let sent: Vec<(String, Option<String>)> = records
                        .iter()
                        .map(|r| {
                            (
                                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                                r.value.clone().map(|v| String::from_utf8(v).unwrap()),
                            )
                        })
                        .collect();
                    let appended = log.append("t.c", records).await.unwrap();
                    for (a, s) in appended.iter().zip(sent) {
                        written.insert((a.partition, a.offset.unwrap()), s);
                    }
                }
                6 | 7 => log.roll_segment().await.unwrap(),
                8 => {
                    let later = SystemTime::now() + DAY * rng.below(3) as u32;
                    removed += log.compact(later, |_, _| {}).await.unwrap().records_removed;
                }
                _ => {
                    log.close();
                    drop(log);
                    log = open(dir.path(), how).0;
                }
            }
            for p in 0..2 {
                let tp = TopicPartition::new("t.c", p);
                let read = read_partition(&log, &tp).await;
                let model: Vec<_> = written.range((p, 0)..(p + 1, 0)).collect();
                for (o, k, v) in &read {
                    assert_eq!(
                        written.get(&(p, *o)),
                        Some(&(k.clone(), v.clone())),
                        "seed {seed} step {step}: partition {p} offset {o}"
                    );
                }
                let mut latest: BTreeMap<&String, i64> = BTreeMap::new();
                for ((_, o), (k, v)) in &model {
                    if v.is_some() {
                        latest.insert(k, *o);
                    } else {
                        latest.remove(k);
                    }
                }
                let offsets: std::collections::BTreeSet<i64> = read.iter().map(|r| r.0).collect();
                for (k, o) in latest {
                    assert!(
                        offsets.contains(&o),
                        "seed {seed} step {step}: {k}'s latest at {o} is gone"
                    );
                }
                if let Some(((_, last), _)) = model.last() {
                    assert!(
                        offsets.contains(last),
                        "seed {seed} step {step}: the last record is gone"
                    );
                }
            }
        }
        assert!(
            removed > 0,
            "seed {seed}: no pass removed anything, so nothing was tested"
        );
    }
}

/// Readers and a consumer group go on while passes rewrite the segments under them: every
/// record read is the one written at its offset, and each read finds the latest records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_passes_see_whole_records_at_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (keyring, _, _) =
        dsr_crypto::Keyring::open_directory(&dir.path().join("security"), None, None, 1).unwrap();
    let keyring = Arc::new(keyring);
    let (log, _) =
        EmbeddedLog::open_encrypted(dir.path().join("log"), Arc::clone(&keyring)).unwrap();
    log.create_topic(&compacted("t.c", 1)).await.unwrap();
    let tp = TopicPartition::new("t.c", 0);
    // Values name their own offset, so a reader can check what it got.
    let value = |offset: i64, key: u64| format!("k{key}@{offset}");
    let mut next = 0i64;
    for round in 0..30u64 {
        let records: Vec<Record> = (0..50)
            .map(|i| {
                let key = (round * 7 + i) % 40;
                Record::new(format!("k{key}"), value(next + i as i64, key))
            })
            .collect();
        log.append("t.c", records).await.unwrap();
        next += 50;
        log.roll_segment().await.unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn({
        let log = log.clone();
        let tp = tp.clone();
        let stop = Arc::clone(&stop);
        async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                for (offset, key, v) in read_partition(&log, &tp).await {
                    assert_eq!(v.unwrap(), format!("{key}@{offset}"), "record at {offset}");
                }
                reads += 1;
            }
            reads
        }
    });
    let mut removed = 0;
    for round in 0..10u64 {
        let records: Vec<Record> = (0..50)
            .map(|i| {
                let key = (round * 11 + i) % 40;
                Record::new(format!("k{key}"), value(next + i as i64, key))
            })
            .collect();
        log.append("t.c", records).await.unwrap();
        next += 50;
        log.roll_segment().await.unwrap();
        removed += log
            .compact_with(SystemTime::now(), 0.0, |_, _| {})
            .await
            .unwrap()
            .records_removed;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(removed > 1000, "{removed} records removed");
    assert!(reads > 0);
    // A re-encryption after compaction reads the compacted segments (their marker too), and
    // what it leaves reads the same after a reopen.
    let read = read_partition(&log, &tp).await;
    assert_eq!(read.len(), 40, "one record per key");
    keyring.rotate(2).unwrap();
    let resealed = log.reencrypt(|_, _| {}).await.unwrap();
    assert!(resealed.resealed >= 40, "{resealed:?}");
    log.close();
    drop(log);
    let (log, report) = open(dir.path(), Opening::Sealed);
    assert!(report.truncated.is_none(), "{report}");
    assert_eq!(read_partition(&log, &tp).await, read);
}

/// A group that stopped for good (a program taken out of `programs/`) holds back compaction
/// until an operator removes it; then its records and its commits go, and the removal holds
/// across a reopen.
#[tokio::test]
async fn a_removed_group_no_longer_holds_back_compaction_and_stays_removed() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("t.changelog", 0);
    async fn read_all(member: &mut dsr_log::embedded::EmbeddedMember, until: i64) {
        let mut next = 0;
        while next < until {
            for event in member.poll(100, Duration::from_secs(1)).await.unwrap() {
                if let GroupEvent::Records(r) = event {
                    next = r.last().unwrap().next_offset();
                }
            }
        }
    }
    {
        let (log, _) = open(dir.path(), Opening::Sealed);
        log.create_topic(&compacted("t.changelog", 1))
            .await
            .unwrap();
        let mut projector = log.join_group("projector", &["t.changelog"]).unwrap();
        let mut retired = log.join_group("retired", &["t.changelog"]).unwrap();
        for version in 0..4 {
            let records: Vec<Record> = (0..10)
                .map(|k| Record::new(format!("k{k}"), format!("v{version}")))
                .collect();
            log.append("t.changelog", records).await.unwrap();
            let end = (version + 1) * 10;
            read_all(&mut projector, end).await;
            projector.commit(&[(tp.clone(), end)]).await.unwrap();
            if version == 0 {
                // The retired group reads the first version, commits it and is never heard of
                // again.
                read_all(&mut retired, end).await;
                retired.commit(&[(tp.clone(), end)]).await.unwrap();
            }
            log.roll_segment().await.unwrap();
        }
        // Every dead frame is reason enough for a rewrite, so the counts are exact.
        let done = log
            .compact_with(SystemTime::now(), 0.0, |_, _| {})
            .await
            .unwrap();
        assert_eq!(
            (done.records_removed, done.commits_removed),
            (10, 3),
            "only what the retired group passed goes, and the projector's superseded commits: {done}"
        );
        let groups = log.groups();
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.group.as_str(), g.behind, g.members))
                .collect::<Vec<_>>(),
            vec![("projector", 0, 1), ("retired", 30, 1)]
        );
        assert_eq!(groups[1].topics, vec!["t.changelog".to_owned()]);

        let in_use = log.delete_group("retired").await.unwrap_err();
        assert!(
            matches!(in_use, dsr_log::LogError::GroupInUse { ref group, members: 1 } if group == "retired"),
            "{in_use}"
        );
        retired.leave().await.unwrap();
        let unknown = log.delete_group("nobody").await.unwrap_err();
        assert!(
            unknown.to_string().contains("no consumer group `nobody`")
                && unknown.to_string().contains("\"retired\""),
            "{unknown}"
        );
        log.delete_group("retired").await.unwrap();
        assert_eq!(
            log.groups()
                .iter()
                .map(|g| g.group.as_str())
                .collect::<Vec<_>>(),
            vec!["projector"]
        );

        let done = log
            .compact_with(SystemTime::now(), 0.0, |_, _| {})
            .await
            .unwrap();
        assert_eq!(
            (done.records_removed, done.commits_removed),
            (20, 1),
            "versions 1 and 2 go now, and the retired group's commit: {done}"
        );
        let offsets: Vec<i64> = read_partition(&log, &tp)
            .await
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(offsets, (30..40).collect::<Vec<_>>());
        projector.leave().await.unwrap();
        log.close();
    }
    let (log, _) = open(dir.path(), Opening::Sealed);
    assert_eq!(
        log.groups()
            .iter()
            .map(|g| g.group.as_str())
            .collect::<Vec<_>>(),
        vec!["projector"]
    );
    // A member of the removed group's name starts afresh, from the beginning.
    let mut again = log.join_group("retired", &["t.changelog"]).unwrap();
    assert_eq!(
        again.committed(std::slice::from_ref(&tp)).await.unwrap(),
        vec![None]
    );
    assert_eq!(
        poll_offsets(&mut again, 10).await,
        (30..40).collect::<Vec<_>>()
    );
}
