//! The Kafka adapter of the log port, on `rdkafka` with its bundled librdkafka.
//!
//! - [`KafkaLog`] — an idempotent producer (`enable.idempotence=true`, `acks=all`,
//!   `partitioner=murmur2_random`, the Java client's default for keyed records), offsets and
//!   metadata, and the factory of [`KafkaReader`]s and [`KafkaMember`]s.
//! - [`KafkaReader`] — a group-less consumer that reads one partition from an offset.
//! - [`KafkaMember`] — a consumer-group member with manual commits (`enable.auto.commit=false`)
//!   that reports assignment changes in order with the records.
//! - [`KafkaAdmin`] — topic creation and description.
//!
//! Blocking librdkafka calls (metadata, offsets, synchronous commits, closing a consumer) run on
//! tokio's blocking pool, so the adapter needs a tokio runtime.
//!
//! The settings and why are in `docs/kafka-compatibility.md`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};

use crate::error::{Cause, LogError};
use crate::port::{
    Appended, ConsumedRecord, CreateOutcome, GroupEvent, GroupMember, Header, Log, NewTopicSpec,
    Offset, PartitionReader, Record, TopicAdmin, TopicDescription, TopicPartition,
};

/// How dsr connects to Kafka. [`KafkaConfig::new`] has dsr's defaults; [`KafkaConfig::set`]
/// overrides any librdkafka property (it wins over the defaults).
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `HOST:PORT[,HOST:PORT...]`.
    pub bootstrap: String,
    /// `client.id`, shown in broker logs.
    pub client_id: String,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch waiting for data. librdkafka's
    /// default (500) makes a caught-up consumer see a new record ~500 ms late; dsr uses 10.
    pub fetch_wait_max_ms: u32,
    /// `session.timeout.ms`: after how long without heartbeats a member (e.g. a killed process)
    /// is dropped and its partitions move. dsr uses 10 s (librdkafka: 45 s).
    pub session_timeout_ms: u32,
    /// Timeout of metadata, offset, commit and admin requests.
    pub request_timeout: Duration,
    /// Extra librdkafka properties, applied last.
    pub overrides: Vec<(String, String)>,
    /// `transactional.id` of a transactional producer ([`KafkaLog::with_transactions`]).
    pub transactional_id: Option<String>,
}

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            client_id: "dsr".to_owned(),
            fetch_wait_max_ms: 10,
            session_timeout_ms: 10_000,
            request_timeout: Duration::from_secs(10),
            overrides: Vec::new(),
            transactional_id: None,
        }
    }

    /// Sets a librdkafka property (builder style), e.g. `set("linger.ms", "20")`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &self.client_id);
        config
    }

    fn apply_overrides(&self, config: &mut ClientConfig) {
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
    }

    /// The producer's settings: idempotent, acknowledged by all in-sync replicas, Kafka's
    /// default partitioner for keyed records, no automatic topic creation.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("allow.auto.create.topics", "false")
            .set("linger.ms", "5");
        if let Some(id) = &self.transactional_id {
            config.set("transactional.id", id);
        }
        self.apply_overrides(&mut config);
        config
    }

    /// The consumer-group member's settings: manual commits, start at the beginning of a
    /// partition that has no committed offset, low fetch wait.
    pub fn member_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 4).max(100).to_string(),
            );
        self.apply_overrides(&mut config);
        config
    }

    /// The partition reader's settings: no commits, no subscription. librdkafka needs a
    /// `group.id` to assign partitions; the reader's is unique and never joins or commits.
    pub fn reader_config(&self) -> ClientConfig {
        static READERS: AtomicU64 = AtomicU64::new(0);
        let mut config = self.base();
        let group_id = format!(
            "{}-reader-{}-{}",
            self.client_id,
            std::process::id(),
            READERS.fetch_add(1, Ordering::Relaxed)
        );
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string());
        self.apply_overrides(&mut config);
        config
    }

    fn client_error(&self, error: KafkaError) -> LogError {
        LogError::Client {
            bootstrap: self.bootstrap.clone(),
            source: Box::new(error),
        }
    }
}

/// librdkafka's logs and client errors, sent to `tracing`.
#[derive(Clone, Debug, Default)]
pub struct TracingContext;

fn log_to_tracing(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for TracingContext {}

fn blocking_error(what: &str, error: tokio::task::JoinError) -> Cause {
    format!("{what} stopped: {error}").into()
}

/// The Kafka log: an idempotent producer plus offset and metadata look-ups. Clones share the
/// producer (one connection pool per process).
#[derive(Clone)]
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer<TracingContext>,
    partition_counts: std::sync::Arc<Mutex<HashMap<String, i32>>>,
    /// Made by [`KafkaLog::with_transactions`]: its group members commit in transactions.
    transactional: bool,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap", &self.config.bootstrap)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Creates the producer. No connection is made until the first request.
    pub fn new(config: KafkaConfig) -> Result<Self, LogError> {
        let producer = config
            .producer_config()
            .create_with_context(TracingContext)
            .map_err(|error| config.client_error(error))?;
        Ok(Self {
            config,
            producer,
            partition_counts: Default::default(),
            transactional: false,
        })
    }

    /// A log whose producer is transactional (`transactional.id`), for a processor that
    /// appends its outputs and commits its input offsets in one Kafka transaction
    /// ([`GroupMember::begin_transaction`]). `transactional_id` must be stable across restarts
    /// of one instance and differ between instances: a restarted instance fences its previous
    /// incarnation's producer and aborts its open transaction. Fails with
    /// [`LogError::TransactionsRefused`] when the broker does not support transactions.
    pub async fn with_transactions(
        mut config: KafkaConfig,
        transactional_id: impl Into<String>,
    ) -> Result<Self, LogError> {
        config.transactional_id = Some(transactional_id.into());
        let mut log = Self::new(config)?;
        log.transactional = true;
        let producer = log.producer.clone();
        let timeout = log.config.request_timeout;
        let refused = |reason: String| LogError::TransactionsRefused {
            bootstrap: log.config.bootstrap.clone(),
            reason,
        };
        tokio::task::spawn_blocking(move || producer.init_transactions(timeout))
            .await
            .map_err(|error| {
                refused(blocking_error("initialising transactions", error).to_string())
            })?
            .map_err(|error| refused(error.to_string()))?;
        Ok(log)
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Waits until every record handed to the producer is acknowledged or failed.
    pub async fn flush(&self) -> Result<(), LogError> {
        let producer = self.producer.clone();
        let timeout = self.config.request_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|error| LogError::Append {
                topic: "*".to_owned(),
                source: blocking_error("flush", error),
            })?
            .map_err(|error| LogError::Append {
                topic: "*".to_owned(),
                source: Box::new(error),
            })
    }

    fn delivery_error(&self, topic: &str, error: KafkaError) -> LogError {
        if let Some((_, reason)) = self.producer.client().fatal_error() {
            return LogError::ProducerFatal { reason };
        }
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                LogError::UnknownTopic {
                    topic: topic.to_owned(),
                }
            }
            Some(RDKafkaErrorCode::Fatal) => LogError::ProducerFatal {
                reason: error.to_string(),
            },
            _ => LogError::Append {
                topic: topic.to_owned(),
                source: Box::new(error),
            },
        }
    }

    async fn delivered(&self, topic: &str, delivery: DeliveryFuture) -> Result<Appended, LogError> {
        match delivery.await {
            Ok(Ok(delivery)) => Ok(Appended {
                partition: delivery.partition,
                offset: Some(delivery.offset),
            }),
            Ok(Err((error, _message))) => Err(self.delivery_error(topic, error)),
            Err(_canceled) => Err(LogError::Append {
                topic: topic.to_owned(),
                source: "the producer was shut down before the broker answered".into(),
            }),
        }
    }

    async fn watermarks(&self, partition: &TopicPartition) -> Result<(Offset, Offset), LogError> {
        let producer = self.producer.clone();
        let timeout = self.config.request_timeout;
        let (topic, number) = (partition.topic.clone(), partition.partition);
        tokio::task::spawn_blocking(move || {
            producer.client().fetch_watermarks(&topic, number, timeout)
        })
        .await
        .map_err(|error| LogError::Offsets {
            partition: partition.clone(),
            source: blocking_error("fetching offsets", error),
        })?
        .map_err(|error| match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => LogError::UnknownTopic {
                topic: partition.topic.clone(),
            },
            _ => LogError::Offsets {
                partition: partition.clone(),
                source: Box::new(error),
            },
        })
    }
}

fn to_kafka_headers(headers: &[Header]) -> Option<OwnedHeaders> {
    if headers.is_empty() {
        return None;
    }
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for header in headers {
        owned = owned.insert(KafkaHeader {
            key: &header.key,
            value: header.value.as_deref(),
        });
    }
    Some(owned)
}

fn from_kafka_message(message: &BorrowedMessage<'_>) -> ConsumedRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| Header {
                    key: header.key.to_owned(),
                    value: header.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

async fn fetch_partition_count(
    client: FutureProducer<TracingContext>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, LogError> {
    let name = topic.to_owned();
    let metadata =
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(Some(&name), timeout))
            .await
            .map_err(|error| LogError::Metadata {
                what: topic.to_owned(),
                source: blocking_error("fetching metadata", error),
            })?
            .map_err(|error| LogError::Metadata {
                what: topic.to_owned(),
                source: Box::new(error),
            })?;
    let unknown = || LogError::UnknownTopic {
        topic: topic.to_owned(),
    };
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(unknown)?;
    if found.error().is_some() || found.partitions().is_empty() {
        return Err(unknown());
    }
    Ok(found.partitions().len() as i32)
}

impl Log for KafkaLog {
    type Reader = KafkaReader;
    type Member = KafkaMember;

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // Fails fast on a topic that does not exist (instead of after the message timeout).
        self.partition_count(topic).await?;

        let mut appended: Vec<Option<Appended>> = vec![None; records.len()];
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
        for (index, record) in records.iter().enumerate() {
            let mut message = FutureRecord::<[u8], [u8]>::to(topic);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
            if let Some(headers) = to_kafka_headers(&record.headers) {
                message = message.headers(headers);
            }
            if let Some(timestamp) = record.timestamp_ms {
                message = message.timestamp(timestamp);
            }
            if let Some(partition) = record.partition {
                message = message.partition(partition);
            }
            loop {
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        pending.push_back((index, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: wait for the oldest record in flight.
                        message = back;
                        match pending.pop_front() {
                            Some((done, delivery)) => {
                                appended[done] = Some(self.delivered(topic, delivery).await?);
                            }
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((error, _)) => return Err(self.delivery_error(topic, error)),
                }
            }
        }
        for (done, delivery) in pending {
            appended[done] = Some(self.delivered(topic, delivery).await?);
        }
        Ok(forget_offsets_of_duplicates(
            appended.into_iter().flatten().collect(),
        ))
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, LogError> {
        if let Some(count) = self
            .partition_counts
            .lock()
            .expect("partition count cache")
            .get(topic)
        {
            return Ok(*count);
        }
        let count =
            fetch_partition_count(self.producer.clone(), topic, self.config.request_timeout)
                .await?;
        self.partition_counts
            .lock()
            .expect("partition count cache")
            .insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn beginning_offset(&self, partition: &TopicPartition) -> Result<Offset, LogError> {
        Ok(self.watermarks(partition).await?.0)
    }

    async fn end_offset(&self, partition: &TopicPartition) -> Result<Offset, LogError> {
        Ok(self.watermarks(partition).await?.1)
    }

    async fn offsets(&self, partition: &TopicPartition) -> Result<(Offset, Offset), LogError> {
        self.watermarks(partition).await
    }

    fn transactional(&self) -> bool {
        self.transactional
    }

    fn reader(&self) -> Result<KafkaReader, LogError> {
        KafkaReader::new(&self.config)
    }

    fn join_group(&self, group_id: &str, topics: &[&str]) -> Result<KafkaMember, LogError> {
        let mut member = KafkaMember::join(&self.config, group_id, topics)?;
        if self.transactional {
            member.transactions = Some(self.producer.clone());
        }
        Ok(member)
    }
}

/// Reads single partitions, outside any consumer group.
pub struct KafkaReader {
    consumer: StreamConsumer<TracingContext>,
    /// The partition assigned and the offset of the next record it will return.
    position: Option<(TopicPartition, Offset)>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl KafkaReader {
    pub fn new(config: &KafkaConfig) -> Result<Self, LogError> {
        let consumer = config
            .reader_config()
            .create_with_context(TracingContext)
            .map_err(|error| config.client_error(error))?;
        Ok(Self {
            consumer,
            position: None,
        })
    }
}

/// Errors a consumer reports that need the caller (the rest are retried by librdkafka).
fn consume_error_is_fatal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::Fatal
        )
    )
}

impl PartitionReader for KafkaReader {
    async fn read(
        &mut self,
        partition: &TopicPartition,
        from: Offset,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>, LogError> {
        let read_error = |error: KafkaError| match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                LogError::UnknownTopic {
                    topic: partition.topic.clone(),
                }
            }
            _ => LogError::Read {
                partition: partition.clone(),
                source: Box::new(error),
            },
        };
        if self.position.as_ref() != Some(&(partition.clone(), from)) {
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(
                    &partition.topic,
                    partition.partition,
                    KafkaOffset::Offset(from),
                )
                .map_err(read_error)?;
            self.consumer.assign(&assignment).map_err(read_error)?;
            self.position = Some((partition.clone(), from));
        }

        let deadline = Instant::now() + timeout;
        let mut records = Vec::new();
        while records.len() < max_records {
            let received = if records.is_empty() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::time::timeout(remaining, self.consumer.recv())
                    .await
                    .ok()
            } else {
                self.consumer.recv().now_or_never()
            };
            match received {
                None => break,
                Some(Ok(message)) => {
                    let record = from_kafka_message(&message);
                    // Only the assigned partition is read; skip anything before `from`.
                    if record.topic == partition.topic
                        && record.partition == partition.partition
                        && record.offset >= from
                    {
                        self.position = Some((partition.clone(), record.next_offset()));
                        records.push(record);
                    }
                }
                Some(Err(error)) if consume_error_is_fatal(&error) => {
                    return Err(read_error(error))
                }
                Some(Err(error)) => {
                    tracing::warn!(%partition, %error, "reading a partition: retrying");
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        Ok(records)
    }
}

/// What the rebalance callback saw, for [`KafkaMember::poll`] to report in order.
#[derive(Debug)]
enum Change {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// The consumer-group context: records assignment changes as librdkafka applies them (inside
/// the poll that serves the rebalance).
#[derive(Debug, Default)]
pub struct MemberContext {
    changes: Mutex<Vec<Change>>,
    assignment: Mutex<BTreeSet<TopicPartition>>,
}

fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|element| TopicPartition::new(element.topic(), element.partition()))
        .collect()
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for MemberContext {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let mut assignment = self.assignment.lock().expect("assignment");
        let change = match rebalance {
            Rebalance::Assign(list) => {
                let partitions = partitions_of(list);
                assignment.extend(partitions.iter().cloned());
                Change::Assigned(partitions)
            }
            Rebalance::Revoke(list) => {
                let partitions = partitions_of(list);
                for partition in &partitions {
                    assignment.remove(partition);
                }
                Change::Revoked(partitions)
            }
            Rebalance::Error(error) => {
                tracing::warn!(%error, "consumer group rebalance failed; librdkafka rejoins");
                return;
            }
        };
        tracing::debug!(?change, "consumer group assignment changed");
        self.changes.lock().expect("changes").push(change);
    }
}

/// One member of a consumer group, with manual commits.
pub struct KafkaMember {
    consumer: Arc<StreamConsumer<MemberContext>>,
    group: String,
    topics: Vec<String>,
    request_timeout: Duration,
    /// The log's transactional producer, when the log was made with transactions.
    transactions: Option<FutureProducer<TracingContext>>,
}

impl std::fmt::Debug for KafkaMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaMember")
            .field("group", &self.group)
            .field("assignment", &self.assignment())
            .finish_non_exhaustive()
    }
}

impl KafkaMember {
    pub fn join(config: &KafkaConfig, group_id: &str, topics: &[&str]) -> Result<Self, LogError> {
        let consumer: StreamConsumer<MemberContext> = config
            .member_config(group_id)
            .create_with_context(MemberContext::default())
            .map_err(|error| config.client_error(error))?;
        consumer
            .subscribe(topics)
            .map_err(|error| LogError::Group {
                group: group_id.to_owned(),
                source: Box::new(error),
            })?;
        Ok(Self {
            consumer: Arc::new(consumer),
            group: group_id.to_owned(),
            topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
            request_timeout: config.request_timeout,
            transactions: None,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Moves the assignment changes seen so far into `events`, after the records gathered so
    /// far; records of revoked partitions are dropped (their new owner reads them again).
    fn take_changes(&self, events: &mut Vec<GroupEvent>, records: &mut Vec<ConsumedRecord>) {
        let changes =
            std::mem::take(&mut *self.consumer.context().changes.lock().expect("changes"));
        for change in changes {
            match change {
                Change::Revoked(partitions) => {
                    let revoked: BTreeSet<&TopicPartition> = partitions.iter().collect();
                    let owned = |record: &ConsumedRecord| {
                        !revoked
                            .contains(&TopicPartition::new(record.topic.clone(), record.partition))
                    };
                    records.retain(owned);
                    for event in events.iter_mut() {
                        if let GroupEvent::Records(batch) = event {
                            batch.retain(owned);
                        }
                    }
                    events.retain(
                        |event| !matches!(event, GroupEvent::Records(batch) if batch.is_empty()),
                    );
                    if !records.is_empty() {
                        events.push(GroupEvent::Records(std::mem::take(records)));
                    }
                    if !partitions.is_empty() {
                        events.push(GroupEvent::Revoked(partitions));
                    }
                }
                Change::Assigned(partitions) => {
                    if !records.is_empty() {
                        events.push(GroupEvent::Records(std::mem::take(records)));
                    }
                    if !partitions.is_empty() {
                        events.push(GroupEvent::Assigned(partitions));
                    }
                }
            }
        }
    }

    /// The log's transactional producer, or what was asked of a member without one.
    fn transactional_producer(
        &self,
        what: &'static str,
    ) -> Result<&FutureProducer<TracingContext>, LogError> {
        self.transactions
            .as_ref()
            .ok_or(LogError::NotTransactional { what })
    }

    /// `offsets` as librdkafka's list, after checking that this member owns every partition.
    fn owned_offsets(
        &self,
        offsets: &[(TopicPartition, Offset)],
    ) -> Result<TopicPartitionList, LogError> {
        let not_owned: Vec<TopicPartition> = {
            let assignment = self
                .consumer
                .context()
                .assignment
                .lock()
                .expect("assignment");
            offsets
                .iter()
                .filter(|(partition, _)| !assignment.contains(partition))
                .map(|(partition, _)| partition.clone())
                .collect()
        };
        if !not_owned.is_empty() {
            return Err(LogError::NotAssigned {
                group: self.group.clone(),
                partitions: not_owned,
            });
        }
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for (partition, offset) in offsets {
            list.add_partition_offset(
                &partition.topic,
                partition.partition,
                KafkaOffset::Offset(*offset),
            )
            .map_err(|error| LogError::Commit {
                group: self.group.clone(),
                source: Box::new(error),
            })?;
        }
        Ok(list)
    }

    fn group_error(&self, error: KafkaError) -> LogError {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                LogError::UnknownTopic {
                    topic: self.topics.join("`, `"),
                }
            }
            _ => LogError::Group {
                group: self.group.clone(),
                source: Box::new(error),
            },
        }
    }
}

impl GroupMember for KafkaMember {
    async fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<GroupEvent>, LogError> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        let mut records = Vec::new();
        loop {
            self.take_changes(&mut events, &mut records);
            if records.len() >= max_records {
                break;
            }
            let received = if records.is_empty() && events.is_empty() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::time::timeout(remaining, self.consumer.recv())
                    .await
                    .ok()
            } else {
                self.consumer.recv().now_or_never()
            };
            match received {
                None => {
                    self.take_changes(&mut events, &mut records);
                    break;
                }
                Some(Ok(message)) => {
                    let record = from_kafka_message(&message);
                    drop(message);
                    // A rebalance served by this recv happened before the message.
                    self.take_changes(&mut events, &mut records);
                    records.push(record);
                }
                Some(Err(error)) if consume_error_is_fatal(&error) => {
                    return Err(self.group_error(error));
                }
                Some(Err(error)) => {
                    tracing::warn!(group = %self.group, %error, "consumer: retrying");
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        if !records.is_empty() {
            events.push(GroupEvent::Records(records));
        }
        Ok(events)
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, Offset)]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let list = self.owned_offsets(offsets)?;
        let commit_error = |source: Cause| LogError::Commit {
            group: self.group.clone(),
            source,
        };
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|error| commit_error(blocking_error("committing", error)))?
            .map_err(|error| commit_error(Box::new(error)))
    }

    async fn begin_transaction(&mut self) -> Result<(), LogError> {
        self.transactional_producer("begin_transaction")?
            .begin_transaction()
            .map_err(|error| LogError::Transaction {
                group: self.group.clone(),
                source: Box::new(error),
            })
    }

    async fn commit_transaction(
        &mut self,
        offsets: &[(TopicPartition, Offset)],
    ) -> Result<(), LogError> {
        let producer = self.transactional_producer("commit_transaction")?.clone();
        let group = self.group.clone();
        let failed = |source: Cause| LogError::Transaction {
            group: group.clone(),
            source,
        };
        let list = self.owned_offsets(offsets)?;
        let metadata = self.consumer.group_metadata().ok_or_else(|| {
            failed("the consumer has no group metadata (it has not joined the group)".into())
        })?;
        let timeout = self.request_timeout;
        tokio::task::spawn_blocking(move || {
            let result = if list.count() > 0 {
                producer.send_offsets_to_transaction(&list, &metadata, timeout)
            } else {
                Ok(())
            }
            .and_then(|()| producer.commit_transaction(timeout));
            if result.is_err() {
                // Whatever the failure, nothing of this transaction may become readable; the
                // records are processed again after a restart.
                if let Err(error) = producer.abort_transaction(timeout) {
                    tracing::warn!(%error, "aborting the failed transaction failed too");
                }
            }
            result
        })
        .await
        .map_err(|error| failed(blocking_error("committing the transaction", error)))?
        .map_err(|error| failed(Box::new(error)))
    }

    async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<Offset>>, LogError> {
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for partition in partitions {
            list.add_partition(&partition.topic, partition.partition);
        }
        let consumer = Arc::clone(&self.consumer);
        let timeout = self.request_timeout;
        let list = tokio::task::spawn_blocking(move || consumer.committed_offsets(list, timeout))
            .await
            .map_err(|error| LogError::Group {
                group: self.group.clone(),
                source: blocking_error("reading committed offsets", error),
            })?
            .map_err(|error| self.group_error(error))?;
        let offsets = list.to_topic_map();
        Ok(partitions
            .iter()
            .map(
                |partition| match offsets.get(&(partition.topic.clone(), partition.partition)) {
                    Some(KafkaOffset::Offset(offset)) => Some(*offset),
                    _ => None,
                },
            )
            .collect())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer
            .context()
            .assignment
            .lock()
            .expect("assignment")
            .iter()
            .cloned()
            .collect()
    }

    async fn leave(self) -> Result<(), LogError> {
        let group = self.group.clone();
        let consumer = self.consumer;
        // Dropping the last handle closes the consumer: it revokes its partitions and sends
        // LeaveGroup, polling until done (blocking).
        tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .map_err(|error| LogError::Group {
                group,
                source: blocking_error("leaving the group", error),
            })
    }
}

/// Topic administration on Kafka.
pub struct KafkaAdmin {
    admin: Arc<AdminClient<TracingContext>>,
    request_timeout: Duration,
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin").finish_non_exhaustive()
    }
}

impl KafkaAdmin {
    pub fn new(config: &KafkaConfig) -> Result<Self, LogError> {
        let mut client = config.base();
        // A metadata request must not create the topic it asks about (librdkafka's default for
        // a producer-type handle, and brokers like nisshi honour it).
        client.set("allow.auto.create.topics", "false");
        config.apply_overrides(&mut client);
        let admin = client
            .create_with_context(TracingContext)
            .map_err(|error| config.client_error(error))?;
        Ok(Self {
            admin: Arc::new(admin),
            request_timeout: config.request_timeout,
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.request_timeout))
            .operation_timeout(Some(self.request_timeout))
    }

    async fn metadata(&self, topic: Option<&str>) -> Result<rdkafka::metadata::Metadata, LogError> {
        let admin = Arc::clone(&self.admin);
        let timeout = self.request_timeout;
        let name = topic.map(str::to_owned);
        let what = topic.unwrap_or("the cluster").to_owned();
        tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(name.as_deref(), timeout))
            .await
            .map_err(|error| LogError::Metadata {
                what: what.clone(),
                source: blocking_error("fetching metadata", error),
            })?
            .map_err(|error| LogError::Metadata {
                what,
                source: Box::new(error),
            })
    }
}

impl TopicAdmin for KafkaAdmin {
    async fn create_topic(&self, spec: &NewTopicSpec) -> Result<CreateOutcome, LogError> {
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(i32::from(spec.replication_factor)),
        );
        for (key, value) in &spec.configs {
            topic = topic.set(key, value);
        }
        let admin_error = |source: Cause| LogError::Admin {
            topic: spec.name.clone(),
            source,
        };
        let results = self
            .admin
            .create_topics([&topic], &self.options())
            .await
            .map_err(|error| admin_error(Box::new(error)))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(CreateOutcome::Created),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                Ok(CreateOutcome::AlreadyExists)
            }
            Some(Err((_, code))) => Err(admin_error(Box::new(KafkaError::AdminOp(code)))),
            None => Err(admin_error("the broker returned no result".into())),
        }
    }

    async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, LogError> {
        let metadata = self.metadata(Some(name)).await?;
        let Some(topic) = metadata.topics().iter().find(|topic| topic.name() == name) else {
            return Ok(None);
        };
        if topic.error().is_some() || topic.partitions().is_empty() {
            return Ok(None);
        }
        let partitions = topic.partitions().len() as i32;
        let replication_factor = topic
            .partitions()
            .iter()
            .find(|partition| partition.id() == 0)
            .map_or(1, |partition| partition.replicas().len().max(1))
            as i16;

        let configs = match self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &self.options())
            .await
        {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(resource)) => resource
                    .entries
                    .into_iter()
                    .filter_map(|entry| entry.value.map(|value| (entry.name, value)))
                    .collect(),
                Some(Err(code)) => {
                    tracing::warn!(topic = name, %code, "the broker did not describe the topic's configuration");
                    Vec::new()
                }
                None => Vec::new(),
            },
            Err(error) => {
                tracing::warn!(topic = name, %error, "the broker did not describe the topic's configuration");
                Vec::new()
            }
        };
        Ok(Some(TopicDescription {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs,
        }))
    }

    async fn broker_count(&self) -> Result<usize, LogError> {
        Ok(self.metadata(None).await?.brokers().len())
    }
}

/// librdkafka acknowledges a batch the broker answered with DUPLICATE_SEQUENCE_NUMBER (an
/// idempotent retry of a batch already written, typically across a broker restart) as delivered
/// with base offset -1, and numbers the batch's records -1, 0, 1, … from it. Those numbers are
/// not positions in the log. From the first such record on, the offsets of that partition in
/// this append are reported as unknown rather than wrong (seen on nisshi; see
/// docs/kafka-compatibility.md).
fn forget_offsets_of_duplicates(mut appended: Vec<Appended>) -> Vec<Appended> {
    let mut unknown = std::collections::HashSet::new();
    for at in &mut appended {
        if at.offset.is_some_and(|offset| offset < 0) {
            unknown.insert(at.partition);
        }
        if unknown.contains(&at.partition) {
            at.offset = None;
        }
    }
    appended
}

#[cfg(test)]
mod duplicate_offsets {
    use super::*;

    #[test]
    fn offsets_from_a_duplicate_batch_are_unknown_from_its_first_record_on() {
        let at = |partition, offset| Appended {
            partition,
            offset: Some(offset),
        };
        let appended = vec![at(0, 40), at(1, 7), at(0, -1), at(0, 0), at(1, 8), at(0, 1)];
        let offsets: Vec<_> = forget_offsets_of_duplicates(appended)
            .into_iter()
            .map(|a| a.offset)
            .collect();
        assert_eq!(offsets, vec![Some(40), Some(7), None, None, Some(8), None]);
    }
}
