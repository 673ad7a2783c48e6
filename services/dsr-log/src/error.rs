//! Errors of the log port. Each says what went wrong and what to do about it; none exposes a
//! client crate's types (the cause is kept as a boxed error for its message).

use std::time::Duration;

use crate::port::TopicPartition;

/// The underlying cause of a [`LogError`] (e.g. the Kafka client's error).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of the log port.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "could not create a Kafka client for `{bootstrap}`: {source}; check the bootstrap \
         address (HOST:PORT) and the client settings"
    )]
    Client {
        bootstrap: String,
        #[source]
        source: Cause,
    },

    #[error(
        "topic `{topic}` does not exist; declare it in topics/ and create it with `dsr topics \
         apply --bootstrap HOST:PORT`"
    )]
    UnknownTopic { topic: String },

    #[error(
        "appending to topic `{topic}` failed: {source}; the batch is not known to be written: \
         append it again (readers drop the copies by event id)"
    )]
    Append {
        topic: String,
        #[source]
        source: Cause,
    },

    #[error(
        "the producer stopped for good: {reason}; records it had not acknowledged may or may \
         not be written: restart the process (a new producer) and append them again"
    )]
    ProducerFatal { reason: String },

    #[error(
        "reading partition {partition} failed: {source}; check that the broker is reachable and \
         read again from the same offset"
    )]
    Read {
        partition: TopicPartition,
        #[source]
        source: Cause,
    },

    #[error(
        "consumer group `{group}` failed: {source}; check that the broker is reachable and the \
         topics exist, then join the group again"
    )]
    Group {
        group: String,
        #[source]
        source: Cause,
    },

    #[error(
        "committing offsets for group `{group}` failed: {source}; the records after the last \
         successful commit will be delivered again: poll (to take part in a rebalance) and \
         commit again after processing"
    )]
    Commit {
        group: String,
        #[source]
        source: Cause,
    },

    #[error(
        "cannot commit {partitions:?} for group `{group}`: this member does not own them (a \
         rebalance revoked them); drop their state and do not commit them, their new owner \
         processes them again"
    )]
    NotAssigned {
        group: String,
        partitions: Vec<TopicPartition>,
    },

    #[error(
        "could not read the offsets of partition {partition}: {source}; check that the broker \
         is reachable and the partition exists"
    )]
    Offsets {
        partition: TopicPartition,
        #[source]
        source: Cause,
    },

    #[error(
        "could not read the metadata of `{what}`: {source}; check that the broker is reachable"
    )]
    Metadata {
        what: String,
        #[source]
        source: Cause,
    },

    #[error(
        "topic administration failed for `{topic}`: {source}; check the broker's logs and that \
         the settings are valid for it"
    )]
    Admin {
        topic: String,
        #[source]
        source: Cause,
    },

    #[error(
        "the log has no consumer group `{group}` (groups with committed offsets: {known:?}); \
         list them with `dsr log groups`"
    )]
    UnknownGroup { group: String, known: Vec<String> },

    #[error(
        "consumer group `{group}` has {members} member(s) consuming now; stop them (stop dsr \
         up) before removing the group"
    )]
    GroupInUse { group: String, members: usize },

    #[error(
        "the embedded log in `{dir}`: {what}: {source}; check the disk (space, permissions) and \
         restart dsr — acknowledged records are on disk and recovery keeps them"
    )]
    Embedded {
        dir: String,
        what: String,
        #[source]
        source: Cause,
    },

    #[error(
        "the broker at `{bootstrap}` refused transactions: {reason}; run without \
         `--transactions` (dsr's output fences give effectively-once without them, \
         docs/architecture.md) or enable transactions on the broker"
    )]
    TransactionsRefused { bootstrap: String, reason: String },

    #[error(
        "a transaction of consumer group `{group}` failed and was aborted: {source}; nothing it \
         appended is readable (read committed) and its offsets are not committed: restart the \
         processor, which processes the same records again"
    )]
    Transaction {
        group: String,
        #[source]
        source: Cause,
    },

    #[error(
        "this log was not made with transactions: {what} needs a Kafka log made by \
         `KafkaLog::with_transactions` (`dsr process --transactions`)"
    )]
    NotTransactional { what: &'static str },

    #[error("{what} did not finish within {after:?}; check that the broker is reachable")]
    Timeout { what: String, after: Duration },
}
