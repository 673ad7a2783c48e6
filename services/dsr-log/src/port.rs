//! The log port: what processing code needs from a partitioned, replicated log, and nothing
//! about any client crate.
//!
//! - [`Log`] appends records to a topic (partitioned by key with Kafka's default partitioner,
//!   [`partition_for_key`], or to an explicit partition), reads the first and end offsets of a
//!   partition, and makes [`PartitionReader`]s and [`GroupMember`]s.
//! - [`PartitionReader`] reads one partition from an offset, in batches, with a timeout: restoring
//!   state from a compacted changelog, reading the tail of an output partition.
//! - [`GroupMember`] is one member of a consumer group: [`GroupMember::poll`] returns the records
//!   of the partitions it owns *and* the changes of what it owns ([`GroupEvent::Assigned`],
//!   [`GroupEvent::Revoked`]), in order, so a processor restores the state of a partition before
//!   it processes the partition's first record; [`GroupMember::commit`] commits offsets.
//! - [`TopicAdmin`] creates and describes topics (used by [`crate::topics::apply`]).
//!
//! The traits use `impl Future + Send` returns (async functions in traits), so processing code is
//! generic over the log (`fn run<L: Log>(log: &L)`) and the Kafka adapter ([`crate::kafka`]) and
//! an embedded adapter can sit behind the same code.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::error::LogError;

/// A partition number, as Kafka numbers them (0-based).
pub type Partition = i32;

/// An offset in a partition. Offsets grow by one per record; a compacted partition has gaps.
pub type Offset = i64;

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: Partition,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: Partition) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A record header: a name and an optional value. Names may repeat, as in Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A record to append.
///
/// The key decides the partition ([`partition_for_key`]) unless `partition`
/// names one; a record without either goes to a partition of the log's choosing. A record
/// without a value is a tombstone: on a compacted topic it deletes the key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` lets the log stamp the record.
    pub timestamp_ms: Option<i64>,
    /// An explicit partition. A processor writes its outputs to the partition it owns, so that
    /// the partition's tail tells it what it already wrote (its fence).
    pub partition: Option<Partition>,
}

impl Record {
    /// A record with a key and a value, no headers.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record with a key and no value: deletes the key from a compacted topic.
    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sends the record to this partition whatever its key (builder style).
    pub fn with_partition(mut self, partition: Partition) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (builder style).
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// The value of the last header with this name.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        last_header(&self.headers, key)
    }
}

/// Where an appended record was written, returned once the log acknowledged it durably.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Appended {
    pub partition: Partition,
    /// `None` when the log acknowledged the record without saying where it is: a Kafka
    /// idempotent-producer retry that the broker recognised as already written (after a broker
    /// restart, for example) is acknowledged as a duplicate with no offset. The record is in the
    /// partition exactly once; only its position is unknown.
    pub offset: Option<Offset>,
}

/// A record read from a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: Partition,
    pub offset: Offset,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch, when the log has a timestamp.
    pub timestamp_ms: Option<i64>,
}

impl ConsumedRecord {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// The offset to commit once this record is processed: the next one to read.
    pub fn next_offset(&self) -> Offset {
        self.offset + 1
    }

    /// The value of the last header with this name.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        last_header(&self.headers, key)
    }
}

fn last_header<'a>(headers: &'a [Header], key: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .rev()
        .find(|header| header.key == key)
        .and_then(|header| header.value.as_deref())
}

/// What a [`GroupMember::poll`] saw, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// These partitions are now owned by this member. Restore their state (e.g. from the
    /// changelog, up to its [`Log::end_offset`]) before processing their records: the records of
    /// a partition come only after its `Assigned` event, from the group's committed offset (or
    /// the beginning of the partition when nothing was committed).
    Assigned(Vec<TopicPartition>),
    /// These partitions are no longer owned by this member: drop their state and do not commit
    /// them. Records of theirs that were processed but not committed are delivered again to the
    /// new owner. No record of a revoked partition is returned after this event (records fetched
    /// before it are dropped from the same poll's result).
    Revoked(Vec<TopicPartition>),
    /// Records of owned partitions, in offset order within each partition.
    Records(Vec<ConsumedRecord>),
}

/// Topic settings as a log reports them (see [`TopicAdmin::describe_topic`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: i32,
    /// Replicas of partition 0, as the broker reports them (brokers without replication report 1).
    pub replication_factor: i16,
    /// Topic configuration entries (`cleanup.policy`, `retention.ms`, `min.insync.replicas`, ...)
    /// that the broker reported; empty when it does not report configurations.
    pub configs: Vec<(String, String)>,
}

impl TopicDescription {
    pub fn config(&self, name: &str) -> Option<&str> {
        self.configs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Kafka topic configuration entries, e.g. `("cleanup.policy", "compact")`.
    pub configs: Vec<(String, String)>,
}

/// What [`TopicAdmin::create_topic`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The topic was there already; nothing was changed.
    AlreadyExists,
}

/// The log: append, offsets, readers and group members.
pub trait Log: Send + Sync {
    type Reader: PartitionReader;
    type Member: GroupMember;

    /// Appends `records` to `topic`, each to its explicit partition or else the one its key
    /// picks ([`partition_for_key`]), and returns where each was written, in the same order, once
    /// *all* are acknowledged by every in-sync replica. Records with the same key keep their
    /// order. On error none of the returned positions is known: append again (an idempotent
    /// consumer, or ids in the records, absorbs the copies).
    fn append(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<Vec<Appended>, LogError>> + Send;

    /// Appends `phases` in order: within a phase, each `(topic, records)` as [`Log::append`]
    /// does; no record of a later phase is acknowledged — durable and readable — unless every
    /// record of the phases before it is. A household processor's eligibility changes come
    /// before its changelog this way. The default appends a phase's topics side by side and
    /// waits for them before the next phase; a log that keeps every topic in one journal
    /// (the embedded log) writes them all in order, with one `fdatasync`.
    fn append_phases(
        &self,
        phases: Vec<Vec<(String, Vec<Record>)>>,
    ) -> impl Future<Output = Result<(), LogError>> + Send {
        async move {
            for phase in phases {
                let sends = phase
                    .into_iter()
                    .filter(|(_, records)| !records.is_empty())
                    .map(|(topic, records)| async move { self.append(&topic, records).await });
                for result in futures_util::future::join_all(sends).await {
                    result?;
                }
            }
            Ok(())
        }
    }

    /// Whether this log appends in transactions: a Kafka log made with
    /// `KafkaLog::with_transactions`. Then a processor wraps each poll's work in its group
    /// member's [`GroupMember::begin_transaction`] and [`GroupMember::commit_transaction`]
    /// instead of [`GroupMember::commit`]; its outputs need no fences, and read-committed
    /// readers skip the transaction markers (a partition's end offset may be a marker, not a
    /// record).
    fn transactional(&self) -> bool {
        false
    }

    /// The number of partitions of `topic` (an error names a missing topic).
    fn partition_count(&self, topic: &str) -> impl Future<Output = Result<i32, LogError>> + Send;

    /// The partition a key goes to on `topic`: [`partition_for_key`] with the topic's partition
    /// count.
    fn partition_for(
        &self,
        topic: &str,
        key: &[u8],
    ) -> impl Future<Output = Result<Partition, LogError>> + Send {
        async move {
            let count = self.partition_count(topic).await?;
            Ok(partition_for_key(key, count))
        }
    }

    /// The offset of the first record still in the partition (0 unless records were deleted or
    /// compacted away).
    fn beginning_offset(
        &self,
        partition: &TopicPartition,
    ) -> impl Future<Output = Result<Offset, LogError>> + Send;

    /// The offset the next appended record will get: reading from `beginning_offset` up to (not
    /// including) `end_offset` reads everything written so far.
    fn end_offset(
        &self,
        partition: &TopicPartition,
    ) -> impl Future<Output = Result<Offset, LogError>> + Send;

    /// `(beginning_offset, end_offset)` in one go: on Kafka both come from one request, and a
    /// partition take-over asks it of every output partition it fences.
    fn offsets(
        &self,
        partition: &TopicPartition,
    ) -> impl Future<Output = Result<(Offset, Offset), LogError>> + Send {
        async move {
            Ok((
                self.beginning_offset(partition).await?,
                self.end_offset(partition).await?,
            ))
        }
    }

    /// A reader of single partitions, outside any consumer group.
    fn reader(&self) -> Result<Self::Reader, LogError>;

    /// Joins consumer group `group_id` consuming `topics`. Partitions arrive through
    /// [`GroupMember::poll`] as [`GroupEvent::Assigned`].
    fn join_group(&self, group_id: &str, topics: &[&str]) -> Result<Self::Member, LogError>;
}

/// Reads one partition at a time from a given offset.
pub trait PartitionReader: Send {
    /// Up to `max_records` records of `partition` with offsets `>= from`, in offset order.
    /// Returns as soon as some records are available (without waiting to fill the batch), or an
    /// empty batch after `timeout` when there is nothing at or after `from`. Read the next batch
    /// from the last record's [`ConsumedRecord::next_offset`]. If `from` is before the first
    /// record still in the partition, reading starts at the first record.
    fn read(
        &mut self,
        partition: &TopicPartition,
        from: Offset,
        max_records: usize,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<ConsumedRecord>, LogError>> + Send;
}

/// One member of a consumer group.
///
/// Assignment changes only inside [`GroupMember::poll`], so between two polls what the member
/// owns is fixed: process the records, append the results, [`GroupMember::commit`], poll again.
pub trait GroupMember: Send {
    /// Takes part in the group and returns what happened since the last poll: assignment
    /// changes and up to `max_records` records, in order. Returns early when there is something;
    /// otherwise waits up to `timeout` and returns an empty list. Poll at least every
    /// `max.poll.interval.ms` (5 minutes), or the group drops this member.
    fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<GroupEvent>, LogError>> + Send;

    /// Commits, for each partition, the offset of the next record to process (a processed
    /// record's [`ConsumedRecord::next_offset`]). Returns once the group coordinator has stored
    /// it. Every partition must be owned by this member.
    fn commit(
        &mut self,
        offsets: &[(TopicPartition, Offset)],
    ) -> impl Future<Output = Result<(), LogError>> + Send;

    /// Begins a transaction: what the log appends from now until
    /// [`GroupMember::commit_transaction`] becomes readable to read-committed readers together
    /// with the committed offsets, or (on a crash or an error) not at all.
    fn begin_transaction(&mut self) -> impl Future<Output = Result<(), LogError>> + Send {
        async {
            Err(LogError::NotTransactional {
                what: "begin_transaction",
            })
        }
    }

    /// Commits the transaction begun by [`GroupMember::begin_transaction`] with these offsets
    /// (as [`GroupMember::commit`] takes them). On error the transaction is aborted.
    fn commit_transaction(
        &mut self,
        offsets: &[(TopicPartition, Offset)],
    ) -> impl Future<Output = Result<(), LogError>> + Send {
        let _ = offsets;
        async {
            Err(LogError::NotTransactional {
                what: "commit_transaction",
            })
        }
    }

    /// The group's committed offsets for `partitions` (`None`: nothing committed).
    fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> impl Future<Output = Result<Vec<Option<Offset>>, LogError>> + Send;

    /// The partitions this member owns now (as of the last poll).
    fn assignment(&self) -> Vec<TopicPartition>;

    /// Leaves the group now, so its partitions move to the other members without waiting for a
    /// session timeout.
    fn leave(self) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// Creates and describes topics.
pub trait TopicAdmin: Send + Sync {
    /// Creates a topic; an existing topic is left as it is ([`CreateOutcome::AlreadyExists`]).
    fn create_topic(
        &self,
        spec: &NewTopicSpec,
    ) -> impl Future<Output = Result<CreateOutcome, LogError>> + Send;

    /// The topic's partition count, replication and configuration, or `None` if it does not
    /// exist.
    fn describe_topic(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<TopicDescription>, LogError>> + Send;

    /// How many brokers the cluster has (replication factors above it cannot be satisfied).
    fn broker_count(&self) -> impl Future<Output = Result<usize, LogError>> + Send;
}

/// Kafka's `murmur2` hash (the 32-bit MurmurHash2 of `org.apache.kafka.common.utils.Utils`, seed
/// `0x9747b28c`), which Kafka's Java client, librdkafka's `murmur2` partitioner and most other
/// clients use to partition keyed records.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record:
/// `(murmur2(key) & 0x7fffffff) % partitions`, as the Java client's `BuiltInPartitioner` and
/// librdkafka's `murmur2`/`murmur2_random` partitioners do. dsr and stock clients therefore
/// agree on where a household's records live.
///
/// # Panics
/// If `partitions` is not positive.
pub fn partition_for_key(key: &[u8], partitions: i32) -> Partition {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// What an appender (the HTTP API, the scale-up service) needs of the event log, object-safe,
/// so it does not depend on which log (embedded or Kafka) the deployment runs.
pub trait EventSink: Send + Sync {
    /// Appends `records` to `topic`; resolves once they are durable.
    fn append<'a>(
        &'a self,
        topic: &'a str,
        records: Vec<Record>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'a>>;
    /// The number of partitions of `topic` (a rule activation marks every one).
    fn partitions<'a>(
        &'a self,
        topic: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<i32, LogError>> + Send + 'a>>;
}

impl<L: Log + 'static> EventSink for L {
    fn append<'a>(
        &'a self,
        topic: &'a str,
        records: Vec<Record>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'a>> {
        Box::pin(async move { Log::append(self, topic, records).await.map(|_| ()) })
    }
    fn partitions<'a>(
        &'a self,
        topic: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<i32, LogError>> + Send + 'a>> {
        Box::pin(Log::partition_count(self, topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partition_is_in_range_and_stable() {
        for n in 1..40 {
            for key in ["h-1", "h-2", "", "household-0000042"] {
                let p = partition_for_key(key.as_bytes(), n);
                assert!((0..n).contains(&p));
                assert_eq!(p, partition_for_key(key.as_bytes(), n));
            }
        }
    }

    #[test]
    fn last_header_wins() {
        let record = Record::new("k", "v")
            .with_header("a", "1")
            .with_header("a", "2");
        assert_eq!(record.header("a"), Some(&b"2"[..]));
        assert_eq!(record.header("b"), None);
    }
}
