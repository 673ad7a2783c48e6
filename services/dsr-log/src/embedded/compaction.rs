//! Compaction and retention of the embedded log: what keeps a registry's data directory from
//! growing without end. A topic's configuration decides, as on Kafka:
//!
//! - `cleanup.policy` containing `compact`: a record is removed once a later record of its
//!   partition has the same key; a tombstone (no value) that is its key's latest is removed
//!   `delete.retention.ms` (default a day) after its segment was written;
//! - `cleanup.policy` containing `delete` with `retention.ms` ≥ 0: a record is removed once its
//!   segment was last written longer ago than that (`-1`, or no setting: kept forever).
//!
//! Offset commits superseded by a later commit of the same group and partition go too.
//!
//! A pass ([`EmbeddedLog::compact`]) reads every segment but the active one twice: first to
//! learn each compacted key's latest offset and each group's latest commit, then to rewrite
//! each segment with enough dead frames (a fifth of its bytes) to a new file — a
//! compaction marker with the segment's original length (so the journal's addresses, and every
//! later segment's name, stay as they were), then the live frames unchanged, in order — synced,
//! given the old file's modification time, renamed over the old one, and swapped in for
//! readers with the index pointing at the frames' new places. A crash leaves the old file or
//! the new one, both whole (recovery removes a `.compact` file that was never renamed).
//!
//! What it never removes, beyond Kafka's rules, so that no consumer of `dsr up` loses data:
//! - a partition's last record (a processor's fence and every reader's end are there);
//! - anything in the active segment, or superseded only by records or commits in it (those
//!   may not be on disk yet, and after a crash they are the tail a processor repairs);
//! - a record at or above the lowest offset any consumer group has committed on its partition
//!   (in a segment before the active one): the serving store's history needs every version of
//!   a household the projector has not read yet. A group that stopped for good holds its
//!   partitions' records back until it is removed ([`EmbeddedLog::delete_group`], `dsr log
//!   groups delete`): its commits before the removal are then dead too. The removal's own
//!   frame stays (a few bytes), so a journal read from the start always forgets the group.
//!
//! Offsets of removed records stay taken: a reader passes over them, as on Kafka.

use super::frame::{self, Frame};
use super::journal::{self, Rewrite, Segment};
use super::{EmbeddedLog, Inner, REMOVED};
use crate::error::LogError;
use crate::port::{Offset, Partition};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::SystemTime;

/// Below this share of dead bytes a segment is left as it is: rewriting it would cost more
/// than it frees (the default of [`EmbeddedLog::compact`]).
pub const MIN_DEAD_SHARE: f64 = 0.2;

/// When a periodic pass is worth its reading: like Kafka's log cleaner, which cleans a log only
/// once its dirty part (written since the last cleaning) is `min.cleanable.dirty.ratio` (0.5)
/// of it. A pass reads every finished segment twice, so on a national registry's log (14 GB
/// after the initial load of 9M households) a pass every ten minutes whatever was written
/// would read ~28 GB each time; with the ratio, passes come as the log doubles. Retention
/// and tombstones are time-based, so a pass also comes at least every `max_interval`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PassPolicy {
    /// Share of the log written since the last pass that makes the next one due (0: every
    /// time it is asked).
    pub min_dirty_ratio: f64,
    /// A pass is due this long after the last one, whatever was written.
    pub max_interval: std::time::Duration,
}

impl PassPolicy {
    /// Kafka's default `min.cleanable.dirty.ratio`.
    pub const DEFAULT_MIN_DIRTY_RATIO: f64 = 0.5;

    /// Whether a pass is due for a log of `bytes_now` bytes that was `clean_bytes` right after
    /// the last pass (0 before the first), `since_last` ago.
    pub fn due(&self, bytes_now: u64, clean_bytes: u64, since_last: std::time::Duration) -> bool {
        if self.min_dirty_ratio <= 0.0 || since_last >= self.max_interval {
            return true;
        }
        let dirty = bytes_now.saturating_sub(clean_bytes);
        dirty > 0 && dirty as f64 >= self.min_dirty_ratio * bytes_now as f64
    }
}

/// Kafka's default `delete.retention.ms`: how long a tombstone stays for readers to see.
const DEFAULT_TOMBSTONE_MS: i64 = 24 * 60 * 60 * 1000;

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Segments looked at (all but the active one).
    pub segments: u64,
    /// Segments rewritten without their dead frames.
    pub segments_rewritten: u64,
    /// Records removed: superseded by a later one with the same key, a tombstone past its
    /// time, or past their topic's retention.
    pub records_removed: u64,
    /// Offset commits removed (a later commit of the group covers every partition in them).
    pub commits_removed: u64,
    /// Bytes of the segments looked at, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Dead bytes left in segments below the share worth a rewrite.
    pub dead_bytes_left: u64,
}

impl std::fmt::Display for Compacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} older segment(s) rewritten, {} record(s) and {} offset commit(s) removed, \
             {} -> {} bytes ({} dead bytes left in segments not worth a rewrite yet)",
            self.segments_rewritten,
            self.segments,
            self.records_removed,
            self.commits_removed,
            self.bytes_before,
            self.bytes_after,
            self.dead_bytes_left
        )
    }
}

/// What a topic's configuration keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Policy {
    compact: bool,
    /// Records older than this go; `None`: kept forever.
    retention_ms: Option<i64>,
    /// How long a compacted topic's latest tombstone stays.
    tombstone_ms: i64,
}

impl Policy {
    fn of(configs: &[(String, String)]) -> Policy {
        let get = |name: &str| {
            configs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.trim())
        };
        let cleanup = get("cleanup.policy").unwrap_or("delete");
        let has = |policy: &str| cleanup.split(',').any(|p| p.trim() == policy);
        let retention_ms = get("retention.ms")
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|ms| *ms >= 0 && has("delete"));
        Policy {
            compact: has("compact"),
            retention_ms,
            tombstone_ms: get("delete.retention.ms")
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|ms| *ms >= 0)
                .unwrap_or(DEFAULT_TOMBSTONE_MS),
        }
    }
}

/// A compacted key's latest record so far.
#[derive(Clone, Copy)]
struct Latest {
    offset: Offset,
    tombstone: bool,
}

/// A key as the pass remembers it: two independently keyed 64-bit SipHashes, so that a
/// registry's millions of household ids fit in memory and a collision (which would drop a
/// live record) is as unlikely as a 128-bit one.
type KeyDigest = (u64, u64);

struct Digester(RandomState, RandomState);

impl Digester {
    fn digest(&self, key: &[u8]) -> KeyDigest {
        (self.0.hash_one(key), self.1.hash_one(key))
    }
}

/// What the pass holds fixed: taken from the index when it starts.
struct Snapshot {
    segments: Vec<Segment>,
    policies: HashMap<u32, Policy>,
    /// Each partition's last offset when the pass started (never removed).
    last_offsets: HashMap<(u32, Partition), Offset>,
}

/// What the first reading learned.
#[derive(Default)]
struct Learned {
    latest: HashMap<(u32, Partition), HashMap<KeyDigest, Latest>>,
    /// (group, topic id, partition) → the position of its latest commit frame and its offset.
    commits: HashMap<(String, u32, Partition), (u64, Offset)>,
}

impl Learned {
    /// The lowest offset a group committed on the partition, if any did.
    fn guards(&self) -> HashMap<(u32, Partition), Offset> {
        let mut guards: HashMap<(u32, Partition), Offset> = HashMap::new();
        for ((_, topic_id, partition), (_, offset)) in &self.commits {
            guards
                .entry((*topic_id, *partition))
                .and_modify(|g| *g = (*g).min(*offset))
                .or_insert(*offset);
        }
        guards
    }
}

/// Which record a frame holds: topic id, partition, offset.
type RecordAt = (u32, Partition, Offset);

/// A frame of a segment being rewritten: where it is, how long, the record it holds (if it is
/// one), and whether it stays.
struct Framed {
    at: usize,
    length: usize,
    record: Option<RecordAt>,
    live: bool,
}

/// A record frame as the pass sees it.
struct RecordView {
    topic_id: u32,
    partition: Partition,
    offset: Offset,
    key: Option<Vec<u8>>,
    tombstone: bool,
}

impl EmbeddedLog {
    /// One compaction and retention pass over every segment but the active one (module
    /// documentation: what goes, what always stays). Appends and reads go on meanwhile; one
    /// pass that rewrites segments (this, or a re-encryption) runs at a time. `now` is what
    /// retention measures ages against; `progress` is told the bytes read so far and the total.
    pub async fn compact(
        &self,
        now: SystemTime,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> Result<Compacted, LogError> {
        self.compact_with(now, MIN_DEAD_SHARE, progress).await
    }

    /// [`EmbeddedLog::compact`], rewriting every segment at least `min_dead_share` of whose
    /// bytes are dead (0: any dead frame is reason enough).
    pub async fn compact_with(
        &self,
        now: SystemTime,
        min_dead_share: f64,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> Result<Compacted, LogError> {
        let _one = self.inner.maintenance.lock().await;
        let snapshot = {
            let index = self.inner.index.read().unwrap();
            let n = index.segments.len().saturating_sub(1);
            let mut policies = HashMap::new();
            let mut last_offsets = HashMap::new();
            for topic in index.topics.values() {
                policies.insert(topic.id, Policy::of(&topic.spec.configs));
                for (p, slots) in topic.partitions.iter().enumerate() {
                    if slots.end() > 0 {
                        last_offsets.insert((topic.id, p as Partition), slots.end() - 1);
                    }
                }
            }
            Snapshot {
                segments: index.segments[..n].to_vec(),
                policies,
                last_offsets,
            }
        };
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || run(&inner, &snapshot, now, min_dead_share, progress))
            .await
            .map_err(|e| LogError::Embedded {
                dir: self.inner.dir.display().to_string(),
                what: "the compaction stopped".into(),
                source: Box::new(e),
            })?
    }
}

fn run(
    inner: &Inner,
    snapshot: &Snapshot,
    now: SystemTime,
    min_dead_share: f64,
    progress: impl Fn(u64, u64),
) -> Result<Compacted, LogError> {
    let failed =
        |path: &std::path::Path, what: &str, e: Box<dyn std::error::Error + Send + Sync>| {
            LogError::Embedded {
                dir: inner.dir.display().to_string(),
                what: format!("compacting segment {}: {what}", path.display()),
                source: e,
            }
        };
    let mut done = Compacted {
        segments: snapshot.segments.len() as u64,
        ..Compacted::default()
    };
    let sizes: Vec<u64> = snapshot
        .segments
        .iter()
        .map(|s| s.file.metadata().map_or(0, |m| m.len()))
        .collect();
    let total = 2 * sizes.iter().sum::<u64>();
    let mut read = 0u64;
    let digester = Digester(RandomState::new(), RandomState::new());

    // First reading: each compacted key's latest record, each group's latest commit.
    let mut learned = Learned::default();
    for (segment, size) in snapshot.segments.iter().zip(&sizes) {
        let path = journal::segment_path(&inner.dir, segment.base);
        let bytes = std::fs::read(&path).map_err(|e| failed(&path, "read", e.into()))?;
        let mut at = 0;
        while at < bytes.len() {
            let (frame, length) = frame::decode(&bytes[at..])
                .map_err(|e| failed(&path, "decode", e.to_string().into()))?;
            let position = segment.base + at as u64;
            match frame {
                Frame::Commit(commit) => {
                    for (topic_id, partition, offset) in commit.offsets {
                        learned.commits.insert(
                            (commit.group.clone(), topic_id, partition),
                            (position, offset),
                        );
                    }
                }
                Frame::Record(_) | Frame::Sealed(_) => {
                    if let Some(view) = record_view(inner, frame, snapshot, true)
                        .map_err(|e| failed(&path, "open a record", e.into()))?
                    {
                        if let Some(key) = &view.key {
                            learned
                                .latest
                                .entry((view.topic_id, view.partition))
                                .or_default()
                                .insert(
                                    digester.digest(key),
                                    Latest {
                                        offset: view.offset,
                                        tombstone: view.tombstone,
                                    },
                                );
                        }
                    }
                }
                Frame::GroupDeleted { group } => {
                    learned.commits.retain(|(g, _, _), _| *g != group);
                }
                Frame::Topic(_) | Frame::Compacted { .. } => {}
            }
            at += length;
        }
        read += size;
        progress(read, total);
    }
    let guards = learned.guards();

    // Second reading: rewrite the segments worth it.
    for (segment, size) in snapshot.segments.iter().zip(&sizes) {
        let path = journal::segment_path(&inner.dir, segment.base);
        let bytes = std::fs::read(&path).map_err(|e| failed(&path, "read", e.into()))?;
        let age_ms = segment
            .file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .map_or(0, |age| age.as_millis() as i64);
        let mut logical_length = bytes.len() as u64;
        // (relative position, length, the record's topic/partition/offset if it is one, live)
        let mut frames: Vec<Framed> = Vec::new();
        let mut dead_bytes = 0usize;
        let mut at = 0;
        while at < bytes.len() {
            let (frame, length) = frame::decode(&bytes[at..])
                .map_err(|e| failed(&path, "decode", e.to_string().into()))?;
            let position = segment.base + at as u64;
            let (record, live) = match frame {
                Frame::Compacted {
                    logical_length: spans,
                } => {
                    // Written anew at the head of the new file (not counted as dead: a
                    // compacted segment with nothing more to remove is left as it is).
                    logical_length = spans;
                    at += length;
                    continue;
                }
                Frame::Topic(_) | Frame::GroupDeleted { .. } => (None, true),
                Frame::Commit(commit) => {
                    // Every commit of the segments looked at was learned, unless its group was
                    // removed after it: then it is dead like a superseded one.
                    let latest = commit.offsets.iter().any(|(topic_id, partition, _)| {
                        learned
                            .commits
                            .get(&(commit.group.clone(), *topic_id, *partition))
                            .is_some_and(|(p, _)| *p == position)
                    });
                    (None, latest)
                }
                Frame::Record(_) | Frame::Sealed(_) => {
                    let view = record_view(inner, frame, snapshot, false)
                        .map_err(|e| failed(&path, "open a record", e.into()))?;
                    match view {
                        None => (None, true),
                        Some(view) => {
                            let live = keeps(snapshot, &learned, &guards, &digester, &view, age_ms);
                            (Some((view.topic_id, view.partition, view.offset)), live)
                        }
                    }
                }
            };
            if !live {
                dead_bytes += length;
            }
            frames.push(Framed {
                at,
                length,
                record,
                live,
            });
            at += length;
        }
        read += size;
        let worth_it = dead_bytes > 0 && dead_bytes as f64 >= min_dead_share * bytes.len() as f64;
        if !worth_it {
            done.bytes_before += bytes.len() as u64;
            done.bytes_after += bytes.len() as u64;
            done.dead_bytes_left += dead_bytes as u64;
            progress(read, total);
            continue;
        }
        let mut rewritten = Vec::with_capacity(bytes.len() - dead_bytes + 32);
        frame::encode_compacted(&mut rewritten, logical_length);
        // Where each record frame goes, and which records go.
        let mut moves: Vec<(RecordAt, super::Slot)> = Vec::new();
        let (mut records_removed, mut commits_removed) = (0, 0);
        for f in &frames {
            if f.live {
                let new_at = segment.base + rewritten.len() as u64;
                rewritten.extend_from_slice(&bytes[f.at..f.at + f.length]);
                if let Some(record) = f.record {
                    moves.push((record, (new_at, f.length as u32)));
                }
            } else {
                match f.record {
                    Some(record) => {
                        records_removed += 1;
                        moves.push((record, REMOVED));
                    }
                    None => commits_removed += 1,
                }
            }
        }
        let file = journal::replace_segment(&path, &rewritten, Rewrite::Compact)
            .map_err(|e| failed(&path, "replace", Box::new(e)))?;
        {
            let mut index = inner.index.write().unwrap();
            if let Some(s) = index.segments.iter_mut().find(|s| s.base == segment.base) {
                s.file = Arc::new(file);
            }
            let mut touched = std::collections::HashSet::new();
            for ((topic_id, partition, offset), slot) in moves {
                let Some(name) = index.names.get(&topic_id).cloned() else {
                    continue;
                };
                if let Some(slots) = index
                    .topics
                    .get_mut(&name)
                    .and_then(|t| t.partitions.get_mut(partition as usize))
                {
                    slots.set(offset, slot);
                    touched.insert((name, partition));
                }
            }
            // Records removed at a partition's start take no more memory.
            for (name, partition) in touched {
                if let Some(slots) = index
                    .topics
                    .get_mut(&name)
                    .and_then(|t| t.partitions.get_mut(partition as usize))
                {
                    slots.trim();
                }
            }
        }
        done.segments_rewritten += 1;
        done.records_removed += records_removed;
        done.commits_removed += commits_removed;
        done.bytes_before += bytes.len() as u64;
        done.bytes_after += rewritten.len() as u64;
        progress(read, total);
    }
    Ok(done)
}

/// The parts of a record frame the pass needs; `None` for a record of a topic the index does
/// not know (kept). The key is opened only for compacted topics (`for_keys`: only those are
/// returned at all).
fn record_view(
    inner: &Inner,
    frame: Frame,
    snapshot: &Snapshot,
    for_keys: bool,
) -> Result<Option<RecordView>, String> {
    let (topic_id, partition, offset) = match &frame {
        Frame::Record(r) => (r.topic_id, r.partition, r.offset),
        Frame::Sealed(s) => (s.topic_id, s.partition, s.offset),
        _ => return Ok(None),
    };
    let Some(policy) = snapshot.policies.get(&topic_id) else {
        return Ok(None);
    };
    if for_keys && !policy.compact {
        return Ok(None);
    }
    let (key, tombstone) = if policy.compact {
        let record = match frame {
            Frame::Record(r) => r,
            Frame::Sealed(sealed) => {
                let keyring = inner
                    .keyring
                    .as_ref()
                    .ok_or("the record is encrypted and this log was opened without its keyring")?;
                sealed.open(keyring).map_err(|e| e.to_string())?
            }
            _ => unreachable!("a record frame"),
        };
        (record.key, record.value.is_none())
    } else {
        (None, false)
    };
    Ok(Some(RecordView {
        topic_id,
        partition,
        offset,
        key,
        tombstone,
    }))
}

/// Whether the pass keeps `record`, in a segment last written `age_ms` ago.
fn keeps(
    snapshot: &Snapshot,
    learned: &Learned,
    guards: &HashMap<(u32, Partition), Offset>,
    digester: &Digester,
    record: &RecordView,
    age_ms: i64,
) -> bool {
    let at = (record.topic_id, record.partition);
    let Some(policy) = snapshot.policies.get(&record.topic_id) else {
        return true;
    };
    if snapshot.last_offsets.get(&at) == Some(&record.offset) {
        return true;
    }
    if guards
        .get(&at)
        .is_some_and(|lowest| record.offset >= *lowest)
    {
        return true;
    }
    if policy.retention_ms.is_some_and(|ms| age_ms > ms) {
        return false;
    }
    if policy.compact {
        let Some(key) = &record.key else {
            return true;
        };
        let latest = learned
            .latest
            .get(&at)
            .and_then(|keys| keys.get(&digester.digest(key)));
        return match latest {
            Some(latest) if latest.offset > record.offset => false,
            Some(latest) => !(latest.tombstone && age_ms > policy.tombstone_ms),
            None => true,
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn policies_read_kafka_settings() {
        assert_eq!(
            Policy::of(&configs(&[
                ("cleanup.policy", "compact"),
                ("retention.ms", "-1")
            ])),
            Policy {
                compact: true,
                retention_ms: None,
                tombstone_ms: DEFAULT_TOMBSTONE_MS
            }
        );
        assert_eq!(
            Policy::of(&configs(&[
                ("cleanup.policy", "delete"),
                ("retention.ms", "1000")
            ])),
            Policy {
                compact: false,
                retention_ms: Some(1000),
                tombstone_ms: DEFAULT_TOMBSTONE_MS
            }
        );
        // Both, Kafka's spelling, and a tombstone setting.
        let both = Policy::of(&configs(&[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "5"),
            ("delete.retention.ms", "7"),
        ]));
        assert_eq!(
            both,
            Policy {
                compact: true,
                retention_ms: Some(5),
                tombstone_ms: 7
            }
        );
        // No settings: nothing is removed (retention only applies with a delete policy).
        assert_eq!(
            Policy::of(&[]),
            Policy {
                compact: false,
                retention_ms: None,
                tombstone_ms: DEFAULT_TOMBSTONE_MS
            }
        );
        assert_eq!(
            Policy::of(&configs(&[
                ("cleanup.policy", "compact"),
                ("retention.ms", "5")
            ]))
            .retention_ms,
            None
        );
    }
}
