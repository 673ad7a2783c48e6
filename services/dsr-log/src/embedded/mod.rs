//! The embedded log: the log port on a directory, for `dsr up` (no Kafka, no server).
//!
//! Same semantics as the Kafka adapter where processing code can see them: topics with
//! partitions, keyed records in Kafka's partition (murmur2), offsets from 0, headers and
//! timestamps, consumer groups with committed offsets, `Assigned`/`Revoked` events, and an
//! append acknowledged only once it is on disk.
//!
//! - [`frame`]: the checksummed frame format;
//! - [`journal`]: segment files, recovery (a torn tail is cut and reported), durable writes;
//! - this module: the index of every partition in memory, the single writer thread that
//!   group-commits (everything queued while one `fdatasync` runs goes into the next one), readers
//!   and in-process consumer groups.
//!
//! Encryption at rest: opened with a keyring ([`EmbeddedLog::open_encrypted`], as `dsr up`
//! does), every record's key, value and headers are sealed on disk (frame kind 4, see
//! [`frame`]); [`EmbeddedLog::reencrypt`] moves every record to the keyring's active key while
//! appends go on, by rolling to a new segment and rewriting each older segment to a new file
//! with every frame at the same position, then renaming it over the old one.
//!
//! Compaction and retention ([`EmbeddedLog::compact`], in [`compaction`]): a pass rewrites the
//! older segments without the records their topics' `cleanup.policy` and `retention.ms` no
//! longer keep, and without superseded offset commits.
//!
//! Not here (documented in `docs/architecture.md`): an on-disk index (the index is rebuilt by
//! reading the journal on start, and takes 12 bytes of memory per record, and per removed
//! record after a partition's first one left).

pub mod compaction;
pub mod frame;
pub mod journal;

use crate::error::LogError;
use crate::port::{
    partition_for_key, Appended, ConsumedRecord, CreateOutcome, GroupEvent, GroupMember, Log,
    NewTopicSpec, Offset, Partition, PartitionReader, Record, TopicAdmin, TopicDescription,
    TopicPartition,
};
use dsr_crypto::Keyring;
use frame::{Frame, StoredCommit, StoredRecord, StoredTopic};
use journal::{Active, RecoveryReport, Segment};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// At most this many bytes go into one group commit.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

/// How long offset commits written without an `fdatasync` of their own may wait for one when
/// nothing else is written.
const LAZY_SYNC_AFTER: Duration = Duration::from_millis(50);

/// Where one record is: its frame's position and length in the journal.
type Slot = (u64, u32);

/// The slot of a record that compaction or retention removed (its offset stays taken).
const REMOVED: Slot = (u64::MAX, 0);

/// Where each record of a partition is, by offset. Offsets below `start` were removed
/// (retention, compaction) and take no memory; removed ones above it are [`REMOVED`].
#[derive(Clone, Debug, Default)]
struct Slots {
    start: Offset,
    slots: Vec<Slot>,
}

impl Slots {
    /// The next offset (the partition's end).
    fn end(&self) -> Offset {
        self.start + self.slots.len() as Offset
    }

    /// The records from `from` on, at most `max`, removed ones passed over.
    fn from(&self, from: Offset, max: usize) -> Vec<(Offset, Slot)> {
        let first = (from.max(self.start) - self.start) as usize;
        self.slots
            .iter()
            .enumerate()
            .skip(first)
            .filter(|(_, s)| **s != REMOVED)
            .take(max)
            .map(|(i, s)| (self.start + i as Offset, *s))
            .collect()
    }

    /// The first offset whose record is there (the end when none is).
    fn first(&self) -> Offset {
        self.slots
            .iter()
            .position(|s| *s != REMOVED)
            .map_or(self.end(), |i| self.start + i as Offset)
    }

    /// Records the slot of `offset`, at or after the end; offsets skipped before it were
    /// removed (a compacted journal read on open).
    fn push(&mut self, offset: Offset, slot: Slot) {
        if self.slots.is_empty() {
            self.start = offset;
        } else {
            self.slots.resize((offset - self.start) as usize, REMOVED);
        }
        self.slots.push(slot);
    }

    /// Moves or removes (`REMOVED`) the record at `offset`.
    fn set(&mut self, offset: Offset, slot: Slot) {
        if let Some(i) = offset
            .checked_sub(self.start)
            .and_then(|i| usize::try_from(i).ok())
        {
            if let Some(entry) = self.slots.get_mut(i) {
                *entry = slot;
            }
        }
    }

    /// Lets go of the removed records before the first one left (never the last).
    fn trim(&mut self) {
        let removed = self
            .slots
            .iter()
            .take(self.slots.len().saturating_sub(1))
            .take_while(|s| **s == REMOVED)
            .count();
        if removed > 0 {
            self.slots.drain(..removed);
            self.start += removed as Offset;
        }
    }
}

struct TopicIndex {
    id: u32,
    spec: NewTopicSpec,
    partitions: Vec<Slots>,
}

#[derive(Default)]
struct Index {
    topics: HashMap<String, TopicIndex>,
    names: HashMap<u32, String>,
    segments: Vec<Segment>,
    /// Committed offsets by group.
    committed: HashMap<String, HashMap<TopicPartition, Offset>>,
}

impl Index {
    /// How many records of topic `name` group commits `committed` (none: a group that never
    /// committed) have not covered, over all its partitions; `None` for a topic the log does
    /// not have.
    fn behind(
        &self,
        committed: Option<&HashMap<TopicPartition, Offset>>,
        name: &str,
    ) -> Option<u64> {
        let topic = self.topics.get(name)?;
        let mut behind = 0;
        for (p, slots) in topic.partitions.iter().enumerate() {
            let tp = TopicPartition::new(name, p as Partition);
            let done = committed.and_then(|c| c.get(&tp)).copied().unwrap_or(0);
            behind += (slots.end() - done).max(0) as u64;
        }
        Some(behind)
    }

    /// The records of `partition`; an unknown topic is `UnknownTopic`, a partition the topic
    /// does not have is `missing` with the reason.
    fn slots_of(
        &self,
        partition: &TopicPartition,
        missing: impl FnOnce(String) -> LogError,
    ) -> Result<&Slots, LogError> {
        let topic = self
            .topics
            .get(&partition.topic)
            .ok_or_else(|| LogError::UnknownTopic {
                topic: partition.topic.clone(),
            })?;
        topic
            .partitions
            .get(partition.partition as usize)
            .ok_or_else(|| {
                missing(format!(
                    "topic `{}` has {} partitions",
                    partition.topic,
                    topic.partitions.len()
                ))
            })
    }

    fn apply(&mut self, position: u64, length: u32, frame: Frame) {
        match frame {
            Frame::Topic(topic) => {
                let spec = NewTopicSpec {
                    name: topic.name.clone(),
                    partitions: topic.partitions as i32,
                    replication_factor: topic.replication_factor,
                    configs: topic.configs,
                };
                self.names.insert(topic.topic_id, topic.name.clone());
                self.topics.insert(
                    topic.name,
                    TopicIndex {
                        id: topic.topic_id,
                        spec,
                        partitions: vec![Slots::default(); topic.partitions as usize],
                    },
                );
            }
            Frame::Sealed(sealed) => self.apply(
                position,
                length,
                Frame::Record(StoredRecord {
                    topic_id: sealed.topic_id,
                    partition: sealed.partition,
                    offset: sealed.offset,
                    timestamp_ms: None,
                    key: None,
                    value: None,
                    headers: Vec::new(),
                }),
            ),
            Frame::Record(record) => {
                let Some(name) = self.names.get(&record.topic_id) else {
                    tracing::warn!(
                        topic_id = record.topic_id,
                        "a record of an unknown topic in the journal; skipped"
                    );
                    return;
                };
                let topic = self.topics.get_mut(name).expect("names and topics agree");
                if let Some(partition) = topic.partitions.get_mut(record.partition as usize) {
                    if record.offset < partition.end() || record.offset < 0 {
                        tracing::warn!(
                            topic = %name,
                            partition = record.partition,
                            offset = record.offset,
                            "a second record for an offset in the journal; the first is kept"
                        );
                        return;
                    }
                    // Offsets compaction removed before this one stay taken.
                    partition.push(record.offset, (position, length));
                }
            }
            Frame::Compacted { .. } => {}
            Frame::GroupDeleted { group } => {
                self.committed.remove(&group);
            }
            Frame::Commit(commit) => {
                let group = self.committed.entry(commit.group).or_default();
                for (topic_id, partition, offset) in commit.offsets {
                    if let Some(name) = self.names.get(&topic_id) {
                        group.insert(TopicPartition::new(name.clone(), partition), offset);
                    }
                }
            }
        }
    }
}

enum Request {
    Append {
        topic: String,
        records: Vec<Record>,
        reply: oneshot::Sender<Result<Vec<Appended>, LogError>>,
    },
    CreateTopic {
        spec: NewTopicSpec,
        reply: oneshot::Sender<Result<CreateOutcome, LogError>>,
    },
    /// Several topics' records, written in this order in one group, refused whole if any
    /// part would be refused ([`Log::append_phases`]).
    AppendInOrder {
        batches: Vec<(String, Vec<Record>)>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    Commit {
        group: String,
        offsets: Vec<(TopicPartition, Offset)>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Remove a consumer group's committed offsets ([`EmbeddedLog::delete_group`]).
    DeleteGroup {
        group: String,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Start a new segment now (before a re-encryption rewrites the older ones).
    Roll {
        reply: oneshot::Sender<Result<(), LogError>>,
    },
}

/// A consumer group as the log knows it: what `dsr log groups` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    /// Topics it has committed offsets on.
    pub topics: Vec<String>,
    /// Records of those topics after its committed offsets (all of a partition's records
    /// where it never committed): what it would read next, and what compaction keeps for it.
    pub behind: u64,
    /// Members consuming now, in this process.
    pub members: usize,
}

/// What a re-encryption pass of the log did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reencrypted {
    /// Segments rewritten.
    pub segments: u64,
    /// Records now under the active key that were not.
    pub resealed: u64,
    /// Bytes of the segments looked at.
    pub bytes: u64,
}

struct Inner {
    dir: PathBuf,
    index: RwLock<Index>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Bumped after every group commit; readers wait on it.
    changes: watch::Sender<u64>,
    groups: Mutex<HashMap<String, GroupState>>,
    next_member: AtomicU64,
    /// Seals records on write and opens them on read; `None` for a plaintext log.
    keyring: Option<Arc<Keyring>>,
    /// One pass that rewrites older segments (re-encryption, compaction) at a time.
    maintenance: tokio::sync::Mutex<()>,
}

/// The embedded log. Cheap to clone; every clone is the same log.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir`: reads the journal, cuts a torn tail, rebuilds the
    /// index, and starts the writer. The report says what recovery found.
    pub fn open(dir: impl AsRef<Path>) -> Result<(EmbeddedLog, RecoveryReport), LogError> {
        Self::open_with(dir.as_ref(), None, journal::SEGMENT_BYTES)
    }

    /// Opens the log with its records sealed by `keyring` (what `dsr up` does). Records written
    /// in the clear before are still read.
    pub fn open_encrypted(
        dir: impl AsRef<Path>,
        keyring: Arc<Keyring>,
    ) -> Result<(EmbeddedLog, RecoveryReport), LogError> {
        Self::open_with(dir.as_ref(), Some(keyring), journal::SEGMENT_BYTES)
    }

    /// [`EmbeddedLog::open_encrypted`] with segments of `segment_bytes` instead of the default
    /// [`journal::SEGMENT_BYTES`] (compaction reaches records once their segment is full).
    pub fn open_encrypted_with_segment_bytes(
        dir: impl AsRef<Path>,
        keyring: Arc<Keyring>,
        segment_bytes: u64,
    ) -> Result<(EmbeddedLog, RecoveryReport), LogError> {
        Self::open_with(dir.as_ref(), Some(keyring), segment_bytes.max(1))
    }

    fn open_with(
        dir: &Path,
        keyring: Option<Arc<Keyring>>,
        segment_bytes: u64,
    ) -> Result<(EmbeddedLog, RecoveryReport), LogError> {
        let dir = dir.to_owned();
        let storage = |what: &str, source: journal::JournalError| LogError::Embedded {
            dir: dir.display().to_string(),
            what: what.to_owned(),
            source: Box::new(source),
        };
        let mut index = Index::default();
        let (mut segments, report) = journal::recover(&dir, |position, length, frame| {
            index.apply(position, length, frame)
        })
        .map_err(|e| storage("recovery failed", e))?;
        if report.truncated.is_some() {
            tracing::warn!(dir = %dir.display(), %report, "embedded log: cut a torn tail (writes that were never acknowledged)");
        } else {
            tracing::info!(dir = %dir.display(), %report, "embedded log opened");
        }
        let (active, created) = Active::open(&dir, &segments, segment_bytes)
            .map_err(|e| storage("cannot open the journal", e))?;
        segments.extend(created);
        index.segments = segments;
        let mut next_offsets = HashMap::new();
        let mut topics = HashMap::new();
        for (name, topic) in &index.topics {
            topics.insert(name.clone(), (topic.id, topic.spec.partitions));
            for (p, slots) in topic.partitions.iter().enumerate() {
                next_offsets.insert((topic.id, p as Partition), slots.end());
            }
        }
        let (tx, rx) = mpsc::channel();
        let (changes, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            dir: dir.clone(),
            index: RwLock::new(index),
            requests: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            changes,
            groups: Mutex::default(),
            next_member: AtomicU64::new(1),
            keyring: keyring.clone(),
            maintenance: tokio::sync::Mutex::new(()),
        });
        let writer = Writer {
            inner: Arc::downgrade(&inner),
            active,
            next_offsets,
            topics,
            round_robin: 0,
            dir,
            keyring,
        };
        let handle = std::thread::Builder::new()
            .name("dsr-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Embedded {
                dir: inner.dir.display().to_string(),
                what: "cannot start the writer thread".into(),
                source: Box::new(e),
            })?;
        *inner.writer.lock().unwrap() = Some(handle);
        Ok((EmbeddedLog { inner }, report))
    }

    /// Stops accepting writes and waits until the writer has finished what was queued. Every
    /// acknowledged write is already on disk; this only makes shutdown orderly.
    pub fn close(&self) {
        self.inner.requests.lock().unwrap().take();
        if let Some(handle) = self.inner.writer.lock().unwrap().take() {
            let _ = handle.join();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Starts a new segment now (unless the active one is empty), so that a compaction pass
    /// ([`EmbeddedLog::compact`]) can reach every record written so far.
    pub async fn roll_segment(&self) -> Result<(), LogError> {
        self.request(|reply| Request::Roll { reply }).await
    }

    /// Every consumer group with committed offsets, by name.
    pub fn groups(&self) -> Vec<GroupSummary> {
        let index = self.inner.index.read().unwrap_or_else(|p| p.into_inner());
        let live = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
        let mut groups: Vec<GroupSummary> = index
            .committed
            .iter()
            .map(|(group, committed)| {
                let mut topics: Vec<String> = committed.keys().map(|tp| tp.topic.clone()).collect();
                topics.sort();
                topics.dedup();
                let behind = topics
                    .iter()
                    .filter_map(|name| index.behind(Some(committed), name))
                    .sum();
                GroupSummary {
                    group: group.clone(),
                    topics,
                    behind,
                    members: live.get(group).map_or(0, |g| g.members.len()),
                }
            })
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups
    }

    /// Removes consumer group `group`: its committed offsets no longer count (a member that
    /// joins it later starts from each partition's beginning, as on a new group), and
    /// compaction and retention no longer keep records it has not read. For a group that
    /// stopped for good — a program taken out of `programs/`, a consumer retired — which would
    /// otherwise hold back its partitions' compaction forever. Durable when it returns; the
    /// log then rolls to a new segment, so the next compaction pass sees the removal. Refused
    /// while the group has members in this process, and for a group the log does not know.
    pub async fn delete_group(&self, group: &str) -> Result<(), LogError> {
        {
            let index = self.inner.index.read().unwrap_or_else(|p| p.into_inner());
            if !index.committed.contains_key(group) {
                let mut known: Vec<String> = index.committed.keys().cloned().collect();
                known.sort();
                return Err(LogError::UnknownGroup {
                    group: group.to_owned(),
                    known,
                });
            }
            let live = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
            let members = live.get(group).map_or(0, |g| g.members.len());
            if members > 0 {
                return Err(LogError::GroupInUse {
                    group: group.to_owned(),
                    members,
                });
            }
        }
        let group = group.to_owned();
        self.request(|reply| Request::DeleteGroup {
            group: group.clone(),
            reply,
        })
        .await?;
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group);
        self.roll_segment().await
    }

    /// Bytes of every segment file (for progress bars and dashboards).
    pub fn disk_bytes(&self) -> u64 {
        let index = self.inner.index.read().unwrap_or_else(|p| p.into_inner());
        index
            .segments
            .iter()
            .map(|s| s.file.metadata().map_or(0, |m| m.len()))
            .sum()
    }

    /// How many records of `topics` the consumer group `group` has not committed yet (all of
    /// them when it never committed): what `dsr up` reports as a component's backlog, and how
    /// it tells that everything written so far has been processed.
    pub fn lag(&self, group: &str, topics: &[&str]) -> Result<u64, LogError> {
        let index = self.inner.index.read().unwrap_or_else(|p| p.into_inner());
        let committed = index.committed.get(group);
        let mut lag = 0;
        for name in topics {
            lag += index
                .behind(committed, name)
                .ok_or_else(|| LogError::UnknownTopic {
                    topic: (*name).to_owned(),
                })?;
        }
        Ok(lag)
    }

    /// Re-encrypts every record not under the keyring's active key while appends and reads go
    /// on: rolls to a new segment (new records are sealed with the active key already), then
    /// rewrites each older segment that holds a record under another key to a new file — every
    /// frame at the same position, so the index stays valid — synced, renamed over the old one,
    /// and swapped in for readers. A crash leaves either the old or the new file, both whole.
    /// `progress` is told the bytes looked at so far and the total.
    pub async fn reencrypt(
        &self,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> Result<Reencrypted, LogError> {
        let Some(keyring) = self.inner.keyring.clone() else {
            return Ok(Reencrypted::default());
        };
        let _one = self.inner.maintenance.lock().await;
        self.request(|reply| Request::Roll { reply }).await?;
        let segments = {
            let index = self.inner.index.read().unwrap();
            let n = index.segments.len().saturating_sub(1);
            index.segments[..n].to_vec()
        };
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let total: u64 = segments
                .iter()
                .map(|s| s.file.metadata().map_or(0, |m| m.len()))
                .sum();
            let mut done = Reencrypted::default();
            for segment in segments {
                let path = journal::segment_path(&inner.dir, segment.base);
                let failed =
                    |what: &str, e: Box<dyn std::error::Error + Send + Sync>| LogError::Embedded {
                        dir: inner.dir.display().to_string(),
                        what: format!("re-encrypting segment {}: {what}", path.display()),
                        source: e,
                    };
                // Only this pass replaces segment files (one pass at a time), and no appends
                // reach a segment that is not the last, so the path holds exactly this segment.
                let mut bytes = std::fs::read(&path).map_err(|e| failed("read", e.into()))?;
                let mut at = 0;
                let mut resealed = 0;
                while at < bytes.len() {
                    let (_, length) = frame::decode(&bytes[at..])
                        .map_err(|e| failed("decode", e.to_string().into()))?;
                    if frame::reseal_in_place(&mut bytes[at..at + length], &keyring)
                        .map_err(|e| failed("reseal", e.to_string().into()))?
                    {
                        resealed += 1;
                    }
                    at += length;
                }
                done.bytes += bytes.len() as u64;
                if resealed > 0 {
                    let file = journal::replace_segment(&path, &bytes, journal::Rewrite::Reencrypt)
                        .map_err(|e| failed("replace", Box::new(e)))?;
                    let mut index = inner.index.write().unwrap();
                    if let Some(s) = index.segments.iter_mut().find(|s| s.base == segment.base) {
                        s.file = Arc::new(file);
                    }
                    done.segments += 1;
                    done.resealed += resealed;
                }
                progress(done.bytes, total);
            }
            Ok(done)
        })
        .await
        .map_err(|e| LogError::Embedded {
            dir: self.inner.dir.display().to_string(),
            what: "the re-encryption stopped".into(),
            source: Box::new(e),
        })?
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Request,
    ) -> Result<T, LogError> {
        let (reply, answer) = oneshot::channel();
        let sent = match self.inner.requests.lock().unwrap().as_ref() {
            Some(sender) => sender.send(make(reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.closed());
        }
        answer.await.unwrap_or_else(|_| Err(self.closed()))
    }

    fn closed(&self) -> LogError {
        LogError::Embedded {
            dir: self.inner.dir.display().to_string(),
            what: "the log is closed (shutting down, or its writer stopped after a disk error)"
                .into(),
            source: "no writer".into(),
        }
    }

    fn read_slots(
        &self,
        partition: &TopicPartition,
        from: Offset,
        max_records: usize,
    ) -> Result<Vec<ConsumedRecord>, LogError> {
        let (slots, segments) = {
            let index = self.inner.index.read().unwrap();
            let slots = index.slots_of(partition, |source| LogError::Read {
                partition: partition.clone(),
                source: source.into(),
            })?;
            if from >= slots.end() {
                return Ok(Vec::new());
            }
            // Removed records are passed over without counting against `max_records` (a
            // partition's last record is never removed, so a read below the end finds one).
            (slots.from(from, max_records), index.segments.clone())
        };
        let mut records = Vec::with_capacity(slots.len());
        for (offset, (position, length)) in slots {
            let bytes =
                journal::read_at(&segments, position, length).map_err(|e| LogError::Read {
                    partition: partition.clone(),
                    source: Box::new(e),
                })?;
            let decoded = frame::decode(&bytes).and_then(|(f, n)| match f {
                Frame::Sealed(sealed) => match &self.inner.keyring {
                    Some(keyring) => sealed.open(keyring).map(|r| (Frame::Record(r), n)),
                    None => Err(frame::FrameError::Corrupt(
                        "the record is encrypted and this log was opened without its keyring"
                            .into(),
                    )),
                },
                other => Ok((other, n)),
            });
            let record = match decoded {
                Ok((Frame::Record(record), _)) if record.offset == offset => record,
                Ok(_) => {
                    return Err(LogError::Read {
                        partition: partition.clone(),
                        source: format!(
                            "the index points at a different frame for offset {offset}"
                        )
                        .into(),
                    })
                }
                Err(error) => {
                    return Err(LogError::Read {
                        partition: partition.clone(),
                        source: format!("offset {offset} at journal position {position}: {error}")
                            .into(),
                    })
                }
            };
            records.push(ConsumedRecord {
                topic: partition.topic.clone(),
                partition: partition.partition,
                offset,
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp_ms: record.timestamp_ms,
            });
        }
        Ok(records)
    }

    /// `of` a partition's slots (its end, its first record), for the offset questions.
    fn offset_of(
        &self,
        partition: &TopicPartition,
        of: impl FnOnce(&Slots) -> Offset,
    ) -> Result<Offset, LogError> {
        let index = self.inner.index.read().unwrap();
        let slots = index.slots_of(partition, |source| LogError::Offsets {
            partition: partition.clone(),
            source: source.into(),
        })?;
        Ok(of(slots))
    }

    /// Waits until the log changed after `seen`, or `deadline`. Returns the new change count.
    async fn wait_for_change(&self, rx: &mut watch::Receiver<u64>, deadline: Instant) {
        let now = Instant::now();
        if deadline > now {
            let _ = tokio::time::timeout(deadline - now, rx.changed()).await;
        }
    }
}

/// The single writer: turns queued requests into frames, writes them with one `fdatasync`,
/// publishes them to the index, then answers.
struct Writer {
    inner: std::sync::Weak<Inner>,
    active: Active,
    next_offsets: HashMap<(u32, Partition), Offset>,
    topics: HashMap<String, (u32, i32)>,
    round_robin: u32,
    dir: PathBuf,
    keyring: Option<Arc<Keyring>>,
}

/// An answer to send once the group commit is durable.
enum Answer {
    Append(
        oneshot::Sender<Result<Vec<Appended>, LogError>>,
        Vec<Appended>,
    ),
    Create(
        oneshot::Sender<Result<CreateOutcome, LogError>>,
        CreateOutcome,
    ),
    Commit(oneshot::Sender<Result<(), LogError>>),
    InOrder(oneshot::Sender<Result<(), LogError>>),
}

impl Writer {
    fn run(mut self, requests: mpsc::Receiver<Request>) {
        let mut buffer = Vec::with_capacity(1 << 20);
        loop {
            // Offset commits written lazily are synced once the writer has been idle for
            // `LAZY_SYNC_AFTER` (any durable group syncs them earlier).
            let first = if self.active.is_unsynced() {
                match requests.recv_timeout(LAZY_SYNC_AFTER) {
                    Ok(first) => first,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(error) = self.active.sync() {
                            tracing::error!(%error, "embedded log: cannot sync offset commits");
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match requests.recv() {
                    Ok(first) => first,
                    Err(_) => break,
                }
            };
            buffer.clear();
            let mut frames: Vec<(u64, u32, Frame)> = Vec::new();
            let mut answers = Vec::new();
            let mut next = Some(first);
            let mut roll = None;
            while let Some(request) = next.take() {
                if let Request::Roll { reply } = request {
                    // After this group is on disk; nothing queued behind it joins the group.
                    roll = Some(reply);
                    break;
                }
                self.encode(request, &mut buffer, &mut frames, &mut answers);
                if buffer.len() < MAX_GROUP_BYTES {
                    next = requests.try_recv().ok();
                }
            }
            if buffer.is_empty() {
                // Only refusals (answered already) or creates of existing topics.
                self.answer(answers);
                if let Some(reply) = roll {
                    self.roll(reply);
                }
                continue;
            }
            let start = self.active.end();
            let Some(inner) = self.inner.upgrade() else {
                break;
            };
            // A group of offset commits only is not waited for: its frames are whole or
            // absent after a crash, and a lost commit re-delivers records, as a crash before
            // the commit would (every consumer of the log tolerates that). Anything else is
            // acknowledged only on disk.
            let commits_only = answers.iter().all(|a| matches!(a, Answer::Commit(_)));
            let written = if commits_only {
                self.active.write_lazily(&buffer)
            } else {
                self.active.write_durably(&buffer)
            };
            match written {
                Ok(()) => {
                    let rolled = self.active.roll_if_full();
                    let mut index = inner.index.write().unwrap();
                    for (relative, length, frame) in frames {
                        index.apply(start + relative, length, frame);
                    }
                    match rolled {
                        Ok(Some(segment)) => index.segments.push(segment),
                        Ok(None) => {}
                        Err(error) => {
                            tracing::error!(%error, "cannot start a new segment; appends continue in the full one")
                        }
                    }
                    drop(index);
                    inner.changes.send_modify(|n| *n += 1);
                    self.answer(answers);
                    if let Some(reply) = roll.take() {
                        self.roll(reply);
                    }
                }
                Err(error) => {
                    // Nothing of this group is on disk: undo the offsets it took and fail it.
                    tracing::error!(%error, "embedded log: a group commit failed");
                    for (_, _, frame) in &frames {
                        match frame {
                            Frame::Record(r) => {
                                let next = self
                                    .next_offsets
                                    .get_mut(&(r.topic_id, r.partition))
                                    .expect("known partition");
                                *next = (*next).min(r.offset);
                            }
                            Frame::Topic(t) => {
                                self.topics.remove(&t.name);
                            }
                            Frame::Commit(_)
                            | Frame::Sealed(_)
                            | Frame::Compacted { .. }
                            | Frame::GroupDeleted { .. } => {}
                        }
                    }
                    let message = error.to_string();
                    for answer in answers {
                        let error = || LogError::Embedded {
                            dir: self.dir.display().to_string(),
                            what: "the write did not reach the disk".into(),
                            source: message.clone().into(),
                        };
                        match answer {
                            Answer::Append(reply, _) => drop(reply.send(Err(error()))),
                            Answer::Create(reply, _) => drop(reply.send(Err(error()))),
                            Answer::Commit(reply) | Answer::InOrder(reply) => {
                                drop(reply.send(Err(error())))
                            }
                        }
                    }
                }
            }
        }
        // Closing: lazily written commits go on disk too.
        if let Err(error) = self.active.sync() {
            tracing::error!(%error, "embedded log: cannot sync offset commits on close");
        }
    }

    /// Starts a new segment now (unless the active one is still empty).
    fn roll(&mut self, reply: oneshot::Sender<Result<(), LogError>>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let result = match self.active.roll_now() {
            Ok(Some(segment)) => {
                inner.index.write().unwrap().segments.push(segment);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(LogError::Embedded {
                dir: self.dir.display().to_string(),
                what: "cannot start a new segment".into(),
                source: Box::new(e),
            }),
        };
        let _ = reply.send(result);
    }

    fn answer(&self, answers: Vec<Answer>) {
        for answer in answers {
            match answer {
                Answer::Append(reply, appended) => drop(reply.send(Ok(appended))),
                Answer::Create(reply, outcome) => drop(reply.send(Ok(outcome))),
                Answer::Commit(reply) | Answer::InOrder(reply) => drop(reply.send(Ok(()))),
            }
        }
    }

    /// Why `records` cannot be appended to `topic`, if they cannot; else the topic's id and
    /// partition count.
    fn check_append(&self, topic: &str, records: &[Record]) -> Result<(u32, i32), LogError> {
        let Some(&(topic_id, count)) = self.topics.get(topic) else {
            return Err(LogError::UnknownTopic {
                topic: topic.to_owned(),
            });
        };
        if let Some(bad) = records
            .iter()
            .find_map(|r| r.partition.filter(|p| *p < 0 || *p >= count))
        {
            return Err(LogError::Append {
                topic: topic.to_owned(),
                source: format!("partition {bad} does not exist (the topic has {count})").into(),
            });
        }
        if let Some(size) = records
            .iter()
            .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len))
            .find(|size| *size > frame::MAX_BODY - 64 * 1024)
        {
            return Err(LogError::Append {
                topic: topic.to_owned(),
                source: format!("a record of {size} bytes is above the limit").into(),
            });
        }
        Ok((topic_id, count))
    }

    /// Frames `records` (checked by [`Writer::check_append`]) into the group; returns where
    /// each goes.
    fn encode_records(
        &mut self,
        (topic_id, count): (u32, i32),
        records: Vec<Record>,
        buffer: &mut Vec<u8>,
        frames: &mut Vec<(u64, u32, Frame)>,
    ) -> Vec<Appended> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut appended = Vec::with_capacity(records.len());
        for record in records {
            let partition = match (record.partition, &record.key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => {
                    self.round_robin = self.round_robin.wrapping_add(1);
                    (self.round_robin % count as u32) as Partition
                }
            };
            let next = self.next_offsets.entry((topic_id, partition)).or_insert(0);
            let offset = *next;
            *next += 1;
            let stored = StoredRecord {
                topic_id,
                partition,
                offset,
                timestamp_ms: Some(record.timestamp_ms.unwrap_or(now)),
                key: record.key,
                value: record.value,
                headers: record.headers,
            };
            let at = buffer.len() as u64;
            let length = match &self.keyring {
                Some(keyring) => frame::encode_sealed_record(buffer, &stored, keyring),
                None => frame::encode_record(buffer, &stored),
            };
            frames.push((at, length as u32, Frame::Record(stored)));
            appended.push(Appended {
                partition,
                offset: Some(offset),
            });
        }
        appended
    }

    fn encode(
        &mut self,
        request: Request,
        buffer: &mut Vec<u8>,
        frames: &mut Vec<(u64, u32, Frame)>,
        answers: &mut Vec<Answer>,
    ) {
        match request {
            Request::Append {
                topic,
                records,
                reply,
            } => match self.check_append(&topic, &records) {
                Ok(checked) => {
                    let appended = self.encode_records(checked, records, buffer, frames);
                    answers.push(Answer::Append(reply, appended));
                }
                Err(refused) => drop(reply.send(Err(refused))),
            },
            Request::AppendInOrder { batches, reply } => {
                let checked: Result<Vec<_>, _> = batches
                    .iter()
                    .map(|(topic, records)| self.check_append(topic, records))
                    .collect();
                match checked {
                    Ok(checked) => {
                        for (checked, (_, records)) in checked.into_iter().zip(batches) {
                            self.encode_records(checked, records, buffer, frames);
                        }
                        answers.push(Answer::InOrder(reply));
                    }
                    Err(refused) => drop(reply.send(Err(refused))),
                }
            }
            Request::CreateTopic { spec, reply } => {
                if self.topics.contains_key(&spec.name) {
                    answers.push(Answer::Create(reply, CreateOutcome::AlreadyExists));
                    return;
                }
                if spec.partitions <= 0 || spec.name.is_empty() || spec.name.len() > 249 {
                    let _ = reply.send(Err(LogError::Admin {
                        topic: spec.name.clone(),
                        source: "a topic needs a name of 1-249 characters and at least one \
                                 partition"
                            .into(),
                    }));
                    return;
                }
                let topic_id = self
                    .topics
                    .values()
                    .map(|(id, _)| id + 1)
                    .max()
                    .unwrap_or(0);
                self.topics
                    .insert(spec.name.clone(), (topic_id, spec.partitions));
                for p in 0..spec.partitions {
                    self.next_offsets.insert((topic_id, p), 0);
                }
                let stored = StoredTopic {
                    topic_id,
                    partitions: spec.partitions as u32,
                    replication_factor: spec.replication_factor,
                    name: spec.name,
                    configs: spec.configs,
                };
                let at = buffer.len() as u64;
                let length = frame::encode_topic(buffer, &stored);
                frames.push((at, length as u32, Frame::Topic(stored)));
                answers.push(Answer::Create(reply, CreateOutcome::Created));
            }
            Request::Roll { .. } => {
                unreachable!("rolls are taken out of the group before encoding")
            }
            Request::Commit {
                group,
                offsets,
                reply,
            } => {
                let mut stored = Vec::with_capacity(offsets.len());
                for (tp, offset) in offsets {
                    let Some(&(topic_id, _)) = self.topics.get(&tp.topic) else {
                        let _ = reply.send(Err(LogError::UnknownTopic { topic: tp.topic }));
                        return;
                    };
                    stored.push((topic_id, tp.partition, offset));
                }
                let commit = StoredCommit {
                    group,
                    offsets: stored,
                };
                let at = buffer.len() as u64;
                let length = frame::encode_commit(buffer, &commit);
                frames.push((at, length as u32, Frame::Commit(commit)));
                answers.push(Answer::Commit(reply));
            }
            Request::DeleteGroup { group, reply } => {
                let at = buffer.len() as u64;
                let length = frame::encode_group_deleted(buffer, &group);
                frames.push((at, length as u32, Frame::GroupDeleted { group }));
                answers.push(Answer::InOrder(reply));
            }
        }
    }
}

impl Log for EmbeddedLog {
    type Reader = EmbeddedReader;
    type Member = EmbeddedMember;

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let topic = topic.to_owned();
        self.request(|reply| Request::Append {
            topic,
            records,
            reply,
        })
        .await
    }

    /// One request to the writer: every phase's records go into one group, in order, so they
    /// are durable and readable together (a torn tail after a crash keeps a prefix).
    async fn append_phases(&self, phases: Vec<Vec<(String, Vec<Record>)>>) -> Result<(), LogError> {
        let batches: Vec<_> = phases
            .into_iter()
            .flatten()
            .filter(|(_, records)| !records.is_empty())
            .collect();
        if batches.is_empty() {
            return Ok(());
        }
        self.request(|reply| Request::AppendInOrder { batches, reply })
            .await
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, LogError> {
        let index = self.inner.index.read().unwrap();
        index
            .topics
            .get(topic)
            .map(|t| t.spec.partitions)
            .ok_or_else(|| LogError::UnknownTopic {
                topic: topic.to_owned(),
            })
    }

    /// The first record compaction and retention left (the end when there is none).
    async fn beginning_offset(&self, partition: &TopicPartition) -> Result<Offset, LogError> {
        self.offset_of(partition, Slots::first)
    }

    async fn end_offset(&self, partition: &TopicPartition) -> Result<Offset, LogError> {
        self.offset_of(partition, Slots::end)
    }

    fn reader(&self) -> Result<EmbeddedReader, LogError> {
        Ok(EmbeddedReader { log: self.clone() })
    }

    fn join_group(&self, group_id: &str, topics: &[&str]) -> Result<EmbeddedMember, LogError> {
        {
            let index = self.inner.index.read().unwrap();
            if let Some(missing) = topics.iter().find(|t| !index.topics.contains_key(**t)) {
                return Err(LogError::UnknownTopic {
                    topic: (*missing).to_owned(),
                });
            }
        }
        let id = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        let mut groups = self.inner.groups.lock().unwrap();
        let group = groups.entry(group_id.to_owned()).or_default();
        group
            .members
            .insert(id, topics.iter().map(|t| (*t).to_owned()).collect());
        Ok(EmbeddedMember {
            log: self.clone(),
            group: group_id.to_owned(),
            id,
            owned: BTreeMap::new(),
            changes: self.inner.changes.subscribe(),
            next_partition: 0,
        })
    }
}

impl TopicAdmin for EmbeddedLog {
    async fn create_topic(&self, spec: &NewTopicSpec) -> Result<CreateOutcome, LogError> {
        let spec = spec.clone();
        self.request(|reply| Request::CreateTopic { spec, reply })
            .await
    }

    async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, LogError> {
        let index = self.inner.index.read().unwrap();
        Ok(index.topics.get(name).map(|t| TopicDescription {
            name: t.spec.name.clone(),
            partitions: t.spec.partitions,
            replication_factor: t.spec.replication_factor,
            configs: t.spec.configs.clone(),
        }))
    }

    /// One "broker": the embedded log keeps one copy (the disk's own redundancy is all there
    /// is), so declared replication factors are capped to 1 by `topics::apply`.
    async fn broker_count(&self) -> Result<usize, LogError> {
        Ok(1)
    }
}

/// Reads single partitions.
pub struct EmbeddedReader {
    log: EmbeddedLog,
}

impl PartitionReader for EmbeddedReader {
    async fn read(
        &mut self,
        partition: &TopicPartition,
        from: Offset,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>, LogError> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.log.inner.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let records = self.log.read_slots(partition, from, max_records)?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
            self.log.wait_for_change(&mut changes, deadline).await;
        }
    }
}

/// A consumer group inside this process. Partitions are spread over the members round-robin;
/// a partition moves only after its old owner released it (at its next poll), so two members
/// never own one partition at the same time.
#[derive(Default)]
struct GroupState {
    /// Member id → the topics it consumes.
    members: BTreeMap<u64, Vec<String>>,
    owners: HashMap<TopicPartition, u64>,
}

pub struct EmbeddedMember {
    log: EmbeddedLog,
    group: String,
    id: u64,
    /// Owned partitions and the next offset to deliver.
    owned: BTreeMap<TopicPartition, Offset>,
    changes: watch::Receiver<u64>,
    /// Where the next poll starts reading, so every partition gets its turn.
    next_partition: usize,
}

impl EmbeddedMember {
    /// Releases partitions this member should no longer own and claims free ones it should.
    fn rebalance(&mut self, events: &mut Vec<GroupEvent>) -> Result<(), LogError> {
        let mut groups = self.log.inner.groups.lock().unwrap();
        let group = groups
            .get_mut(&self.group)
            .expect("a member's group exists");
        let Some(topics) = group.members.get(&self.id).cloned() else {
            return Ok(());
        };
        // Every member of a group consumes the same topics in practice; partitions are dealt out
        // in a fixed order to the members that consume their topic.
        let mut wanted = Vec::new();
        {
            let index = self.log.inner.index.read().unwrap();
            for topic in &topics {
                let count = index.topics.get(topic).map_or(0, |t| t.spec.partitions);
                let consumers: Vec<u64> = group
                    .members
                    .iter()
                    .filter(|(_, t)| t.contains(topic))
                    .map(|(id, _)| *id)
                    .collect();
                let me = consumers.iter().position(|id| *id == self.id).unwrap_or(0);
                for p in 0..count {
                    if p as usize % consumers.len() == me {
                        wanted.push(TopicPartition::new(topic.clone(), p));
                    }
                }
            }
        }
        let revoked: Vec<TopicPartition> = self
            .owned
            .keys()
            .filter(|tp| !wanted.contains(tp))
            .cloned()
            .collect();
        for tp in &revoked {
            self.owned.remove(tp);
            group.owners.remove(tp);
        }
        if !revoked.is_empty() {
            events.push(GroupEvent::Revoked(revoked));
        }
        let committed = self.log.inner.index.read().unwrap();
        let committed = committed.committed.get(&self.group);
        let mut assigned = Vec::new();
        for tp in wanted {
            if self.owned.contains_key(&tp) || group.owners.contains_key(&tp) {
                continue;
            }
            group.owners.insert(tp.clone(), self.id);
            let from = committed.and_then(|c| c.get(&tp)).copied().unwrap_or(0);
            self.owned.insert(tp.clone(), from);
            assigned.push(tp);
        }
        if !assigned.is_empty() {
            events.push(GroupEvent::Assigned(assigned));
        }
        Ok(())
    }

    fn release(&mut self) {
        let mut groups = self.log.inner.groups.lock().unwrap();
        if let Some(group) = groups.get_mut(&self.group) {
            group.members.remove(&self.id);
            group.owners.retain(|_, owner| *owner != self.id);
        }
        self.owned.clear();
    }
}

impl Drop for EmbeddedMember {
    fn drop(&mut self) {
        self.release();
    }
}

impl GroupMember for EmbeddedMember {
    async fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<GroupEvent>, LogError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.changes.borrow_and_update();
            let mut events = Vec::new();
            self.rebalance(&mut events)?;
            let partitions: Vec<TopicPartition> = self.owned.keys().cloned().collect();
            let mut records = Vec::new();
            for i in 0..partitions.len() {
                if records.len() >= max_records {
                    break;
                }
                let tp = &partitions[(self.next_partition + i) % partitions.len()];
                let from = self.owned[tp];
                let batch = self.log.read_slots(tp, from, max_records - records.len())?;
                if let Some(last) = batch.last() {
                    self.owned.insert(tp.clone(), last.next_offset());
                }
                records.extend(batch);
            }
            self.next_partition = self.next_partition.wrapping_add(1);
            if !records.is_empty() {
                events.push(GroupEvent::Records(records));
            }
            if !events.is_empty() || Instant::now() >= deadline {
                return Ok(events);
            }
            // Wake for new records, and now and then for a rebalance (a member joined or left).
            let wake = deadline.min(Instant::now() + Duration::from_millis(50));
            self.log.wait_for_change(&mut self.changes, wake).await;
        }
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, Offset)]) -> Result<(), LogError> {
        let foreign: Vec<TopicPartition> = offsets
            .iter()
            .filter(|(tp, _)| !self.owned.contains_key(tp))
            .map(|(tp, _)| tp.clone())
            .collect();
        if !foreign.is_empty() {
            return Err(LogError::NotAssigned {
                group: self.group.clone(),
                partitions: foreign,
            });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let group = self.group.clone();
        let offsets = offsets.to_vec();
        self.log
            .request(|reply| Request::Commit {
                group,
                offsets,
                reply,
            })
            .await
    }

    async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<Offset>>, LogError> {
        let index = self.log.inner.index.read().unwrap();
        let committed = index.committed.get(&self.group);
        Ok(partitions
            .iter()
            .map(|tp| committed.and_then(|c| c.get(tp)).copied())
            .collect())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.keys().cloned().collect()
    }

    async fn leave(mut self) -> Result<(), LogError> {
        self.release();
        Ok(())
    }
}

#[cfg(test)]
mod slot_tests {
    use super::{Slots, REMOVED};

    #[test]
    fn removed_records_at_the_start_take_no_memory_and_reads_pass_over_the_rest() {
        let mut slots = Slots::default();
        // A compacted journal read on open: offsets 3, 4 and 7 are left.
        slots.push(3, (10, 1));
        slots.push(4, (20, 1));
        slots.push(7, (30, 1));
        assert_eq!((slots.start, slots.end(), slots.first()), (3, 8, 3));
        assert_eq!(slots.from(5, 1), vec![(7, (30, 1))], "5 and 6 were removed");
        assert_eq!(
            slots.from(0, 10),
            vec![(3, (10, 1)), (4, (20, 1)), (7, (30, 1))]
        );
        assert_eq!(slots.from(5, 10), vec![(7, (30, 1))]);
        assert_eq!(slots.from(3, 1), vec![(3, (10, 1))]);
        slots.set(3, REMOVED);
        slots.set(4, REMOVED);
        slots.trim();
        assert_eq!((slots.start, slots.slots.len(), slots.first()), (7, 1, 7));
        // The last record stays, even if it were marked removed.
        slots.set(7, REMOVED);
        slots.trim();
        assert_eq!((slots.start, slots.end()), (7, 8));
        slots.push(8, (40, 1));
        assert_eq!(slots.from(0, 10), vec![(8, (40, 1))]);
    }
}
