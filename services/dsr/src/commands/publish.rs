//! `dsr publish --bootstrap HOST:PORT --schema-registry URL --file events.jsonl`: life events
//! as JSON lines (the format `dsr generate` writes), validated against the contracts, encoded
//! as Avro in Confluent wire format and appended to a topic, keyed by household. Lines that
//! are not valid events are reported (line number and reason) and not published; the others
//! are.

use anyhow::{Context, Result};
use clap::Args;
use dsr_core::Micros;
use dsr_log::{KafkaConfig, KafkaLog, Log, Record};
use dsr_pipeline::codec::{register, WireCodec};
use dsr_pipeline::ingest;
use dsr_pipeline::runner::Topics;
use dsr_schema_registry::RegistryClient;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct Publish {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "DSR_BOOTSTRAP")]
    bootstrap: String,
    /// Confluent Schema Registry API (dsr's own, or yours); the LifeEvent schema is
    /// registered under `<topic>-value` if it is not there yet.
    #[arg(long, env = "DSR_SCHEMA_REGISTRY")]
    schema_registry: String,
    /// JSON lines, one life event per line (`-` reads standard input).
    #[arg(long)]
    file: PathBuf,
    /// The topic to append to. Events are keyed by their household, so every event of a
    /// household lands on one partition in order.
    #[arg(long, default_value = "dsr.household-events")]
    topic: String,
    /// Where to write the rejected lines, as JSON lines `{"line":N,"reason":"...","input":"..."}`.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Records per append (each append waits for every acknowledgement).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
}

/// A line that was not published, and why.
struct Reject {
    line: u64,
    reason: String,
    input: String,
}

impl Publish {
    pub fn run(self) -> Result<()> {
        let (reader, size): (Box<dyn BufRead>, u64) = if self.file.as_os_str() == "-" {
            (Box::new(BufReader::new(std::io::stdin())), 0)
        } else {
            let f = std::fs::File::open(&self.file)
                .with_context(|| format!("opening {}", self.file.display()))?;
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            (Box::new(BufReader::new(f)), size)
        };
        let bar = if size > 0 {
            let bar = ProgressBar::new(size);
            bar.set_style(
                ProgressStyle::with_template(
                    "publishing [{bar:40}] {bytes}/{total_bytes} {msg} ({elapsed}, eta {eta})",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::new_spinner()
        };
        let runtime = tokio::runtime::Runtime::new()?;
        let (accepted, rejects) = runtime.block_on(self.publish(reader, &bar))?;
        bar.finish_and_clear();
        println!(
            "{}: {accepted} published to {}, {} rejected",
            self.file.display(),
            self.topic,
            rejects.len()
        );
        let mut by_reason: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for r in &rejects {
            let kind = r.reason.split(':').next().unwrap_or(&r.reason);
            by_reason.entry(kind).or_default().push(r.line);
        }
        for (reason, lines) in &by_reason {
            let shown: Vec<String> = lines.iter().take(5).map(u64::to_string).collect();
            let more = if lines.len() > 5 { ", ..." } else { "" };
            println!(
                "  {} × {reason} (lines {}{more})",
                lines.len(),
                shown.join(", ")
            );
        }
        for r in rejects.iter().take(10) {
            println!("  line {}: {}", r.line, r.reason);
        }
        if let Some(path) = &self.rejects {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            for r in &rejects {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({"line": r.line, "reason": r.reason, "input": r.input}),
                )?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            println!("rejected lines written to {}", path.display());
        }
        Ok(())
    }

    async fn publish(
        &self,
        reader: Box<dyn BufRead>,
        bar: &ProgressBar,
    ) -> Result<(u64, Vec<Reject>)> {
        let client = RegistryClient::new(&self.schema_registry);
        let topics = Topics::default();
        let ids = register(
            &client,
            &[self.topic.as_str()],
            &topics.changelog,
            &topics.parked,
            &[],
        )
        .await
        .context("registering the LifeEvent schema")?;
        let codec = WireCodec::new(ids);
        let log = KafkaLog::new(KafkaConfig::new(&self.bootstrap))?;
        let now = Micros(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_micros() as i64,
        );
        let mut accepted = 0u64;
        let mut rejects = Vec::new();
        let mut pending: Vec<Record> = Vec::with_capacity(self.batch);
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line.with_context(|| format!("reading line {line_no}"))?;
            bar.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            match encode(&codec, &line, now, self.topic == topics.household_events) {
                Ok(record) => pending.push(record),
                Err(reason) => rejects.push(Reject {
                    line: line_no,
                    reason,
                    input: line,
                }),
            }
            if pending.len() >= self.batch {
                accepted += pending.len() as u64;
                log.append(&self.topic, std::mem::take(&mut pending))
                    .await
                    .with_context(|| format!("appending to {}", self.topic))?;
                bar.set_message(format!("{accepted} published, {} rejected", rejects.len()));
            }
        }
        if !pending.is_empty() {
            accepted += pending.len() as u64;
            log.append(&self.topic, pending)
                .await
                .with_context(|| format!("appending to {}", self.topic))?;
        }
        Ok((accepted, rejects))
    }
}

/// One line to a record, or the reason it cannot be published.
fn encode(
    codec: &WireCodec,
    line: &str,
    now: Micros,
    household_topic: bool,
) -> Result<Record, String> {
    let event = ingest::parse_json(line)?;
    ingest::to_record(codec, &event, now, household_topic)
}
