//! What delivery needs from the log outside a consumer group, as an object-safe trait, so the
//! API can hold it without knowing which log runs underneath (embedded or Kafka).

use dsr_log::{ConsumedRecord, Log, LogError, PartitionReader, TopicPartition};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reads a program topic: partition count, offsets, records from an offset.
pub trait LogAccess: Send + Sync {
    fn partitions<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32, LogError>>;
    fn beginning<'a>(&'a self, tp: &'a TopicPartition) -> BoxFuture<'a, Result<i64, LogError>>;
    fn end<'a>(&'a self, tp: &'a TopicPartition) -> BoxFuture<'a, Result<i64, LogError>>;
    fn read<'a>(
        &'a self,
        tp: &'a TopicPartition,
        from: i64,
        max: usize,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<ConsumedRecord>, LogError>>;
}

impl<L: Log + 'static> LogAccess for L {
    fn partitions<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32, LogError>> {
        Box::pin(self.partition_count(topic))
    }
    fn beginning<'a>(&'a self, tp: &'a TopicPartition) -> BoxFuture<'a, Result<i64, LogError>> {
        Box::pin(self.beginning_offset(tp))
    }
    fn end<'a>(&'a self, tp: &'a TopicPartition) -> BoxFuture<'a, Result<i64, LogError>> {
        Box::pin(self.end_offset(tp))
    }
    fn read<'a>(
        &'a self,
        tp: &'a TopicPartition,
        from: i64,
        max: usize,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<ConsumedRecord>, LogError>> {
        Box::pin(async move {
            let mut reader = self.reader()?;
            reader.read(tp, from, max, timeout).await
        })
    }
}
