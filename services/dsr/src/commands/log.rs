//! `dsr log compact`: one compaction and retention pass over a stopped registry's embedded log,
//! now — for an operator who needs the disk space back before `dsr up`'s next pass (it runs one
//! every `--compaction-seconds` by itself). The same pass as `dsr up`'s
//! (`dsr_log::EmbeddedLog::compact`), after starting a new segment so it reaches every record.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum LogCommand {
    /// Compact the embedded log and apply its topics' retention now, offline (`dsr up` must be
    /// stopped): superseded household records, records past their topic's retention and
    /// superseded offset commits are removed (docs/architecture.md).
    Compact(Compact),
}

#[derive(Args)]
pub struct Compact {
    /// The stopped registry's data directory.
    #[arg(long, default_value = "dsr-data")]
    data_dir: PathBuf,
    /// The key-encryption key's file (when it is not in DSR_KEK or the data directory).
    #[arg(long)]
    kek_file: Option<PathBuf>,
}

impl LogCommand {
    pub fn run(self) -> Result<()> {
        match self {
            LogCommand::Compact(c) => c.run(),
        }
    }
}

impl Compact {
    fn run(&self) -> Result<()> {
        let security = self.data_dir.join("security");
        let keys = security.join(dsr_crypto::keyring::KEY_FILE);
        let log_dir = self.data_dir.join("log");
        if !keys.is_file() || !log_dir.is_dir() {
            bail!(
                "{} holds no registry ({} or {} is missing): give the data directory of a \
                 registry `dsr up` has run on (--data-dir)",
                self.data_dir.display(),
                keys.display(),
                log_dir.display()
            );
        }
        let _lock = super::lock_data_dir(&self.data_dir)?;
        let env_kek = std::env::var(dsr_crypto::kek::ENV_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let (keyring, _, _) = dsr_crypto::Keyring::open_directory(
            &security,
            env_kek.as_deref(),
            self.kek_file.as_deref(),
            super::now_ms(),
        )
        .context("opening the data keys (the key-encryption key: DSR_KEK or --kek-file)")?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let (log, report) = dsr_log::EmbeddedLog::open_encrypted(&log_dir, Arc::new(keyring))
                .context("opening the embedded log")?;
            eprintln!("dsr log: opened {} ({report})", log_dir.display());
            log.roll_segment().await.context("starting a new segment")?;
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "compacting {bar:40} {bytes}/{total_bytes} ({elapsed})",
                )
                .expect("a valid template"),
            );
            let shown = bar.clone();
            let done = log
                .compact(std::time::SystemTime::now(), move |read, total| {
                    shown.set_length(total);
                    shown.set_position(read);
                })
                .await
                .context("compacting the log")?;
            bar.finish_and_clear();
            log.close();
            println!("dsr log: {done}");
            anyhow::Ok(())
        })
    }
}
