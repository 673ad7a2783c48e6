//! dsr's log layer: the log port that processing code depends on ([`port`]), its Kafka adapter
//! on `rdkafka` ([`kafka`]), its embedded adapter on a directory for `dsr up` ([`embedded`]), the topic declarations of `topics/` and `apply` ([`topics`]), and —
//! behind the `testing` feature — a real broker for integration tests ([`testing`]).
//!
//! Processing code is generic over [`Log`]; nothing outside [`kafka`] names `rdkafka`.

pub mod embedded;
pub mod error;
pub mod kafka;
pub mod port;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;

pub use embedded::EmbeddedLog;
pub use error::LogError;
pub use kafka::{KafkaAdmin, KafkaConfig, KafkaLog, KafkaMember, KafkaReader};
pub use port::{
    murmur2, partition_for_key, Appended, ConsumedRecord, CreateOutcome, EventSink, GroupEvent,
    GroupMember, Header, Log, NewTopicSpec, Offset, Partition, PartitionReader, Record, TopicAdmin,
    TopicDescription, TopicPartition,
};
