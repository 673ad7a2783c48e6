//! `dsr tail --bootstrap HOST:PORT --schema-registry URL --topic T`: a topic's records decoded
//! to JSON lines, for people debugging the pipeline. Each line holds the partition, offset,
//! key, headers and the value decoded with its writer schema (fetched from the registry by the
//! id in the record). A value that is not valid wire-format Avro is shown with the reason and
//! its bytes in hex, never skipped.
//!
//! The output contains personal data as it is on the topic: use it on a terminal of a person
//! allowed to see it, and do not paste it into tickets.

use anyhow::{Context, Result};
use apache_avro::Schema;
use clap::{Args, ValueEnum};
use dsr_contracts::wire;
use dsr_log::{KafkaConfig, KafkaLog, Log, PartitionReader, TopicPartition};
use dsr_schema_registry::{ClientError, RegistryClient};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

#[derive(Args)]
pub struct Tail {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "DSR_BOOTSTRAP")]
    bootstrap: String,
    /// Confluent Schema Registry API the records' schema ids are looked up in.
    #[arg(long, env = "DSR_SCHEMA_REGISTRY")]
    schema_registry: String,
    /// The topic to read.
    #[arg(long)]
    topic: String,
    /// Only this partition (default: every partition, one after the other).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the beginning of each partition, or only show the last `--last` records.
    #[arg(long, value_enum, default_value_t = From::Beginning)]
    from: From,
    /// With `--from end`: how many of the latest records of each partition to show first.
    #[arg(long, default_value_t = 10)]
    last: i64,
    /// Stop after this many records in all.
    #[arg(long)]
    max: Option<u64>,
    /// Keep waiting for new records (Ctrl-C stops).
    #[arg(long)]
    follow: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum From {
    Beginning,
    End,
}

impl Tail {
    pub fn run(self) -> Result<()> {
        tokio::runtime::Runtime::new()?.block_on(self.tail())
    }

    async fn tail(&self) -> Result<()> {
        let log = KafkaLog::new(KafkaConfig::new(&self.bootstrap))?;
        let registry = RegistryClient::new(&self.schema_registry);
        let count = log
            .partition_count(&self.topic)
            .await
            .with_context(|| format!("looking up topic {}", self.topic))?;
        let partitions: Vec<i32> = match self.partition {
            Some(p) if (0..count).contains(&p) => vec![p],
            Some(p) => anyhow::bail!(
                "topic {} has partitions 0..{}; there is no partition {p}",
                self.topic,
                count - 1
            ),
            None => (0..count).collect(),
        };
        let mut next: HashMap<i32, i64> = HashMap::new();
        for &p in &partitions {
            let tp = TopicPartition::new(&self.topic, p);
            let start = match self.from {
                From::Beginning => log.beginning_offset(&tp).await?,
                From::End => (log.end_offset(&tp).await? - self.last.max(0))
                    .max(log.beginning_offset(&tp).await?),
            };
            next.insert(p, start);
        }
        let mut schemas: HashMap<u32, Result<Schema, String>> = HashMap::new();
        let mut reader = log.reader()?;
        let stdout = std::io::stdout();
        let mut shown = 0u64;
        loop {
            let mut any = false;
            for &p in &partitions {
                let tp = TopicPartition::new(&self.topic, p);
                let end = log.end_offset(&tp).await?;
                while next[&p] < end {
                    let batch = reader
                        .read(&tp, next[&p], 1_000, Duration::from_secs(5))
                        .await?;
                    let Some(last) = batch.last() else { break };
                    next.insert(p, last.next_offset());
                    for r in batch {
                        any = true;
                        let value = match &r.value {
                            None => serde_json::Value::Null,
                            Some(bytes) => decode(&registry, &mut schemas, bytes).await?,
                        };
                        let headers: serde_json::Map<String, serde_json::Value> = r
                            .headers
                            .iter()
                            .map(|h| {
                                let v = h
                                    .value
                                    .as_deref()
                                    .map(|v| String::from_utf8_lossy(v).into_owned());
                                (h.key.clone(), v.into())
                            })
                            .collect();
                        let line = serde_json::json!({
                            "partition": r.partition,
                            "offset": r.offset,
                            "key": r.key.as_deref().map(String::from_utf8_lossy),
                            "headers": headers,
                            "value": value,
                        });
                        let mut out = stdout.lock();
                        serde_json::to_writer(&mut out, &line)?;
                        out.write_all(b"\n")?;
                        shown += 1;
                        if self.max.is_some_and(|m| shown >= m) {
                            return Ok(());
                        }
                    }
                }
            }
            if !self.follow {
                return Ok(());
            }
            if !any {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// A value in wire format decoded to JSON with its writer schema, or an object saying why it
/// cannot be (with the bytes in hex).
async fn decode(
    registry: &RegistryClient,
    schemas: &mut HashMap<u32, Result<Schema, String>>,
    bytes: &[u8],
) -> Result<serde_json::Value> {
    let undecodable = |reason: String| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        serde_json::json!({ "undecodable": reason, "bytes_hex": hex })
    };
    let (id, mut body) = match wire::unframe(bytes) {
        Ok(framed) => framed,
        Err(e) => return Ok(undecodable(e.to_string())),
    };
    if let std::collections::hash_map::Entry::Vacant(slot) = schemas.entry(id) {
        let schema = match registry.schema(id).await {
            Ok(text) => Schema::parse_str(&text)
                .map_err(|e| format!("the registry's schema {id} does not parse: {e}")),
            Err(ClientError::UnknownId { .. }) => Err(format!(
                "unknown schema id {id}: the registry has no such schema"
            )),
            Err(e) => return Err(e).context("asking the schema registry"),
        };
        slot.insert(schema);
    }
    let schema = match &schemas[&id] {
        Ok(s) => s,
        Err(reason) => return Ok(undecodable(reason.clone())),
    };
    let read = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_value(&mut body));
    let value = match read {
        Ok(v) => v,
        Err(e) => return Ok(undecodable(format!("not Avro of schema {id}: {e}"))),
    };
    Ok(serde_json::Value::try_from(value)
        .unwrap_or_else(|e| undecodable(format!("cannot show as JSON: {e}"))))
}
