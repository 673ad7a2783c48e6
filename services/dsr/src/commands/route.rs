//! `dsr route --bootstrap HOST:PORT --schema-registry URL`: the router on a Kafka cluster.
//! Reads the source topics (`dsr.life-events.*`), validates each event, finds its household
//! (through the person directory built from the household changelog) and forwards it to
//! `dsr.household-events`; bad records go to `dsr.dead-letter.sources` with the reason.
//! Instances started with the same `--group` share the source partitions.

use anyhow::{Context, Result};
use clap::Args;
use dsr_log::{KafkaConfig, KafkaLog};
use dsr_pipeline::codec::{register, WireCodec};
use dsr_pipeline::runner::Topics;
use dsr_pipeline::source_router::{RouterTopics, SourceRouter};
use dsr_schema_registry::RegistryClient;
use std::time::Duration;

#[derive(Args)]
pub struct Route {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "DSR_BOOTSTRAP")]
    bootstrap: String,
    /// Confluent Schema Registry API (dsr's own, or yours).
    #[arg(long, env = "DSR_SCHEMA_REGISTRY")]
    schema_registry: String,
    /// Consumer group; instances in one group share the source partitions.
    #[arg(long, default_value = "dsr-router")]
    group: String,
    /// Records per poll.
    #[arg(long, default_value_t = 2000)]
    batch_size: usize,
    /// How long an event about a person the registry does not know yet waits for the person's
    /// household to be registered, in seconds, before it is dead-lettered.
    #[arg(long, default_value_t = 3600)]
    max_wait_seconds: u64,
}

impl Route {
    pub fn run(self) -> Result<()> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let client = RegistryClient::new(&self.schema_registry);
            let topics = RouterTopics::default();
            let household = Topics::default();
            let mut life_event_topics: Vec<&str> =
                topics.sources.iter().map(String::as_str).collect();
            life_event_topics.push(&topics.household_events);
            life_event_topics.push(&topics.area_events);
            life_event_topics.push(&topics.parked);
            let ids = register(
                &client,
                &life_event_topics,
                &household.changelog,
                &household.parked,
                &[],
            )
            .await
            .context("registering dsr's schemas")?;
            let router = SourceRouter {
                log: KafkaLog::new(KafkaConfig::new(&self.bootstrap))?,
                codec: WireCodec::new(ids).with_registry(client.clone()),
                topics,
                group: self.group.clone(),
                batch_size: self.batch_size,
                max_wait: Duration::from_secs(self.max_wait_seconds),
            };
            eprintln!("dsr route: group {} on {}", self.group, self.bootstrap);
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let stats = router.run(stop).await?;
            eprintln!("dsr route: stopped: {stats:?}");
            anyhow::Ok(())
        })
    }
}
