//! `dsr log`: offline maintenance of a stopped registry's embedded log.
//!
//! - `compact`: one compaction and retention pass now — for an operator who needs the disk
//!   space back before `dsr up`'s next pass (it runs one every `--compaction-seconds` by
//!   itself). The same pass as `dsr up`'s (`dsr_log::EmbeddedLog::compact`), after starting a
//!   new segment so it reaches every record.
//! - `groups`: the consumer groups with committed offsets, and how far behind each is.
//! - `delete-group`: removes a group that stopped for good (a program taken out of
//!   `programs/`): until then compaction keeps every record it has not read.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum LogCommand {
    /// Compact the embedded log and apply its topics' retention now, offline (`dsr up` must be
    /// stopped): superseded household records, records past their topic's retention and
    /// superseded offset commits are removed (docs/architecture.md).
    Compact(Offline),
    /// List the consumer groups with committed offsets, with the records each has not read
    /// (what compaction keeps for it), offline.
    Groups(Offline),
    /// Remove a consumer group that stopped for good, offline: compaction no longer keeps the
    /// records it has not read. A consumer that joins under the name again starts from the
    /// beginning. `dsr up`'s own stages cannot be removed.
    DeleteGroup(DeleteGroup),
}

/// Where the stopped registry is.
#[derive(Args)]
pub struct Offline {
    /// The stopped registry's data directory.
    #[arg(long, default_value = "dsr-data")]
    data_dir: PathBuf,
    /// The key-encryption key's file (when it is not in DSR_KEK or the data directory).
    #[arg(long)]
    kek_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct DeleteGroup {
    /// The group's name, as `dsr log groups` lists it (e.g. `dsr-delivery.old-program`).
    group: String,
    #[command(flatten)]
    at: Offline,
}

impl LogCommand {
    pub fn run(self) -> Result<()> {
        match self {
            LogCommand::Compact(at) => at.with_log(compact),
            LogCommand::Groups(at) => at.with_log(|log| async move {
                print_groups(&log);
                Ok(log)
            }),
            LogCommand::DeleteGroup(d) => {
                if super::up::STAGE_GROUPS.contains(&d.group.as_str()) {
                    bail!(
                        "`{}` is a stage of dsr up itself (its groups: {}); removing it would make \
                         the stage process the whole log again, so it is refused",
                        d.group,
                        super::up::STAGE_GROUPS.join(", ")
                    );
                }
                let group = d.group.clone();
                d.at.with_log(|log| async move {
                    let behind = log
                        .groups()
                        .into_iter()
                        .find(|g| g.group == group)
                        .map(|g| g.behind);
                    log.delete_group(&group)
                        .await
                        .with_context(|| format!("removing consumer group `{group}`"))?;
                    println!(
                        "dsr log: removed consumer group `{group}` ({} record(s) it had not read \
                         are no longer kept for it; `dsr log compact` or dsr up's next pass frees them)",
                        behind.unwrap_or(0)
                    );
                    Ok(log)
                })
            }
        }
    }
}

fn print_groups(log: &dsr_log::EmbeddedLog) {
    let groups = log.groups();
    if groups.is_empty() {
        println!("no consumer group has committed offsets");
        return;
    }
    let width = groups
        .iter()
        .map(|g| g.group.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!("{:width$}  {:>12}  topics", "group", "not read");
    for g in &groups {
        println!(
            "{:width$}  {:>12}  {}",
            g.group,
            g.behind,
            g.topics.join(", ")
        );
    }
}

async fn compact(log: dsr_log::EmbeddedLog) -> Result<dsr_log::EmbeddedLog> {
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
    println!("dsr log: {done}");
    Ok(log)
}

impl Offline {
    /// Opens the stopped registry's log (holding its data directory's lock, so `dsr up`
    /// cannot start meanwhile), runs `work` on it and closes it.
    fn with_log<F, Fut>(&self, work: F) -> Result<()>
    where
        F: FnOnce(dsr_log::EmbeddedLog) -> Fut,
        Fut: std::future::Future<Output = Result<dsr_log::EmbeddedLog>>,
    {
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
            let log = work(log).await?;
            log.close();
            anyhow::Ok(())
        })
    }
}
