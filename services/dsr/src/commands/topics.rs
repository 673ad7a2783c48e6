//! `dsr topics apply --bootstrap HOST:PORT`: create the declared topics that are missing,
//! report drift, never destroy data.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use dsr_log::{KafkaAdmin, KafkaConfig};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Topics {
    /// Create missing topics from `topics/*.yaml`; idempotent; reports drift (e.g. a wrong
    /// partition count) without changing the topic.
    Apply(ApplyArgs),
}

#[derive(Args)]
pub struct ApplyArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "DSR_BOOTSTRAP")]
    bootstrap: String,
    /// Directory of topic declarations.
    #[arg(long, default_value = "topics")]
    dir: PathBuf,
}

impl Topics {
    pub fn run(self) -> Result<()> {
        let Topics::Apply(a) = self;
        let decls = dsr_log::topics::load_dir(&a.dir)
            .with_context(|| format!("loading topic declarations from {}", a.dir.display()))?;
        let runtime = tokio::runtime::Runtime::new()?;
        let report = runtime.block_on(async {
            let admin = KafkaAdmin::new(&KafkaConfig::new(&a.bootstrap))?;
            dsr_log::topics::apply(&admin, &decls).await
        })?;
        println!("{report}");
        if !report.is_clean() {
            bail!(
                "{} topic setting(s) differ from the declarations (nothing was changed)",
                report.drift.len()
            );
        }
        Ok(())
    }
}
