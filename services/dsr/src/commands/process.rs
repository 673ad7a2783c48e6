//! `dsr process --bootstrap HOST:PORT --schema-registry URL`: the household processor on a
//! Kafka cluster. Instances started with the same `--group` share the partitions.

use anyhow::{Context, Result};
use clap::Args;
use dsr_log::{KafkaConfig, KafkaLog};
use dsr_pipeline::codec::{register, WireCodec};
use dsr_pipeline::runner::{HouseholdProcessor, Topics};
use dsr_schema_registry::RegistryClient;
use dsr_store::FjallState;
use std::path::PathBuf;

#[derive(Args)]
pub struct Process {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "DSR_BOOTSTRAP")]
    bootstrap: String,
    /// Confluent Schema Registry API (dsr's own, from `dsr up`, or yours).
    #[arg(long, env = "DSR_SCHEMA_REGISTRY")]
    schema_registry: String,
    /// Consumer group; instances in one group share the partitions.
    #[arg(long, default_value = "dsr-household-processor")]
    group: String,
    /// Where this instance keeps the state of the partitions it owns.
    #[arg(long, default_value = "dsr-data/processor")]
    state_dir: PathBuf,
    /// Program definitions.
    #[arg(long, default_value = "programs")]
    programs: PathBuf,
    /// Need-score model (default: the shipped one).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Most records per batch (each batch and partition: two produce round trips, one synced
    /// state write; a poll waits at most 20 ms to fill a batch).
    #[arg(long, default_value_t = dsr_pipeline::runner::KAFKA_BATCH_SIZE)]
    batch_size: usize,
    /// Events that may wait per household not known yet (e.g. a birth before the household's
    /// registration arrives); beyond it the oldest goes to the dead-letter topic.
    #[arg(long, default_value_t = dsr_pipeline::task::MAX_PARKED_PER_HOUSEHOLD)]
    max_parked_per_household: usize,
    /// Household records each partition's processor keeps in memory (about 2 KB each). More
    /// is faster when most households get events, less keeps memory down.
    #[arg(long, env = "DSR_CACHE_HOUSEHOLDS", default_value_t = dsr_pipeline::task::DEFAULT_CACHE_CAPACITY)]
    cache_households: usize,
    /// Where the data keys that seal the state at rest are kept (`data-keys.json`, and the
    /// generated key-encryption key when neither DSR_KEK nor --kek-file gives one).
    #[arg(long, default_value = "dsr-data/security")]
    keys_dir: PathBuf,
    /// A file holding the key-encryption key (64 hex digits); `DSR_KEK` wins over it.
    #[arg(long, env = "DSR_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// Append each poll's outputs and commit its offsets in one Kafka transaction, for brokers
    /// that support transactions (nisshi and tansu do not). Without it, dsr's output fences
    /// give effectively-once (docs/architecture.md).
    #[arg(long, env = "DSR_TRANSACTIONS")]
    transactions: bool,
    /// The producer's `transactional.id` with `--transactions`: stable across restarts of this
    /// instance, different for every instance (default: the group, the host name and the state
    /// directory).
    #[arg(long, requires = "transactions")]
    transactional_id: Option<String>,
}

impl Process {
    pub fn run(self) -> Result<()> {
        let model = super::load_model(self.model.as_deref())?;
        let programs = super::load_programs(&self.programs)?;
        std::fs::create_dir_all(&self.state_dir)?;
        let keyring = super::open_keyring(&self.keys_dir, self.kek_file.as_deref(), "dsr process")?;
        let state = FjallState::open(&self.state_dir, std::sync::Arc::new(keyring))?;
        let topics = Topics::default();
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let client = RegistryClient::new(&self.schema_registry);
            let eligibility: Vec<String> =
                programs.iter().map(|p| topics.eligibility(&p.id)).collect();
            let eligibility: Vec<&str> = eligibility.iter().map(String::as_str).collect();
            let ids = register(
                &client,
                &[topics.household_events.as_str()],
                &topics.changelog,
                &topics.parked,
                &eligibility,
            )
            .await
            .context("registering dsr's schemas")?;
            let config = KafkaConfig::new(&self.bootstrap);
            let log = if self.transactions {
                let id = match &self.transactional_id {
                    Some(id) => id.clone(),
                    None => default_transactional_id(&self.group, &self.state_dir)?,
                };
                eprintln!("dsr process: transactions on, transactional.id {id}");
                KafkaLog::with_transactions(config, id).await?
            } else {
                KafkaLog::new(config)?
            };
            let processor = HouseholdProcessor {
                log,
                codec: WireCodec::new(ids).with_registry(client.clone()),
                state,
                model,
                programs,
                topics,
                group: self.group.clone(),
                batch_size: self.batch_size,
                linger: dsr_pipeline::runner::KAFKA_LINGER,
                max_parked_per_household: self.max_parked_per_household,
                cache_households: self.cache_households,
                progress: Default::default(),
            };
            eprintln!(
                "dsr process: group {} on {}; state in {}",
                self.group,
                self.bootstrap,
                self.state_dir.display()
            );
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let stats = processor.run(stop).await?;
            eprintln!(
                "dsr process: stopped after {} events in {} batches",
                stats.events, stats.batches
            );
            anyhow::Ok(())
        })
    }
}

/// One instance's `transactional.id`: it must outlive restarts (a restarted instance fences its
/// previous incarnation) and differ between instances, as each instance's state directory does.
fn default_transactional_id(group: &str, state_dir: &std::path::Path) -> Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let dir = std::fs::canonicalize(state_dir)
        .with_context(|| format!("resolving the state directory {}", state_dir.display()))?;
    Ok(format!("{group}@{host}:{}", dir.display()))
}
