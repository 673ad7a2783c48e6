//! `dsr deliver`: program delivery on a Kafka cluster. `dsr up` runs the same webhook workers
//! on its embedded log; here they read the program topics from Kafka (consumer groups
//! `dsr-delivery.<program>`), so the scale-out deployment delivers exactly as the embedded one.
//!
//! The webhooks and the dead-letter store live in `--data-dir` (`delivery/`), sealed with the
//! data keys in `--data-dir/security` like everything `dsr up` keeps.

use super::{now_ms, open_keyring, program_topics, shutdown_signal};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use dsr_delivery::{DeadLetters, Delivery, Subscriptions, WebhookSpec};
use dsr_log::{KafkaConfig, KafkaLog};
use dsr_pipeline::runner::Topics;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Deliver {
    /// Run the webhook workers: every program with a webhook gets its eligibility changes and
    /// life events from Kafka, signed, retried, dead-lettered after the retry budget.
    Run(Run),
    /// Register or change a program's webhook (a new one's signing secret is printed once).
    Webhook(SetWebhook),
}

/// Where delivery keeps its state; shared by the subcommands.
#[derive(Args)]
pub struct Place {
    /// Data directory: webhooks and dead letters in `delivery/`, data keys in `security/`.
    #[arg(long, env = "DSR_DATA_DIR", default_value = "dsr-data")]
    data_dir: PathBuf,
    /// A file holding the key-encryption key (64 hex digits); `DSR_KEK` wins over it.
    #[arg(long, env = "DSR_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// Program definitions.
    #[arg(long, env = "DSR_PROGRAMS", default_value = "programs")]
    programs: PathBuf,
}

impl Place {
    fn subscriptions(&self, who: &str) -> Result<(Subscriptions, Arc<dsr_crypto::Keyring>)> {
        let keyring = Arc::new(open_keyring(
            &self.data_dir.join("security"),
            self.kek_file.as_deref(),
            who,
        )?);
        let dir = self.delivery_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let subscriptions = Subscriptions::open(&dir, Arc::clone(&keyring))
            .context("opening the webhook subscriptions")?;
        Ok((subscriptions, keyring))
    }

    fn delivery_dir(&self) -> PathBuf {
        self.data_dir.join("delivery")
    }
}

#[derive(Args)]
pub struct Run {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "DSR_BOOTSTRAP")]
    bootstrap: String,
    #[command(flatten)]
    place: Place,
    /// Seconds between the progress lines (0: none).
    #[arg(long, default_value_t = 30)]
    progress_seconds: u64,
    /// A PEM file of certificate authorities trusted for `https` webhook targets besides the
    /// system's (e.g. the ministry's own CA).
    #[arg(long, env = "DSR_WEBHOOK_CA_FILE")]
    webhook_ca_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct SetWebhook {
    /// The program (a file in `programs/`).
    program: String,
    /// Where to POST: `http://host[:port]/path` (no credentials in it).
    #[arg(long)]
    url: String,
    /// Changes per request (1: one per request; up to 1000 as `eligibility.batch`).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Allow a private, loopback or link-local address (a receiver inside the network).
    #[arg(long)]
    allow_private_network: bool,
    /// Attempts before a batch goes to the dead-letter store.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// First retry delay; doubles up to --max-backoff-ms, with jitter.
    #[arg(long)]
    initial_backoff_ms: Option<u64>,
    #[arg(long)]
    max_backoff_ms: Option<u64>,
    /// Do not send the current eligible set first: deliver every change the topics keep,
    /// from the first.
    #[arg(long)]
    no_backfill: bool,
    #[command(flatten)]
    place: Place,
}

impl Deliver {
    pub fn run(self) -> Result<()> {
        match self {
            Deliver::Run(run) => run.run(),
            Deliver::Webhook(set) => set.run(),
        }
    }
}

fn check_program(programs: &Path, id: &str) -> Result<Vec<dsr_core::eligibility::Program>> {
    let loaded = super::load_programs(programs)?;
    if !loaded.iter().any(|p| p.id.as_str() == id) {
        bail!(
            "no program `{id}` in {}; the programs are: {}",
            programs.display(),
            loaded
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(loaded)
}

impl SetWebhook {
    fn run(self) -> Result<()> {
        check_program(&self.place.programs, &self.program)?;
        tokio::runtime::Runtime::new()?
            .block_on(dsr_delivery::target::check_new_target(
                &self.url,
                self.allow_private_network,
            ))
            .with_context(|| format!("checking {}", self.url))?;
        let (subscriptions, _) = self.place.subscriptions("dsr deliver webhook")?;
        let (hook, secret) = subscriptions
            .put(
                &self.program,
                WebhookSpec {
                    url: self.url,
                    batch_size: self.batch_size,
                    allow_private_network: self.allow_private_network,
                    max_attempts: self.max_attempts,
                    initial_backoff_ms: self.initial_backoff_ms,
                    max_backoff_ms: self.max_backoff_ms,
                    timeout_ms: None,
                    backfill: Some(!self.no_backfill),
                },
                now_ms(),
            )
            .with_context(|| format!("setting the webhook of {}", self.program))?;
        println!(
            "webhook of {}: {} (batch size {}, {} attempts)",
            hook.program_id, hook.url, hook.batch_size, hook.max_attempts
        );
        match secret {
            Some(s) => println!(
                "signing secret (shown once; give it to the receiver): {}",
                s.expose()
            ),
            None => println!("the signing secret is unchanged"),
        }
        if !self.no_backfill {
            println!(
                "`dsr deliver run` first sends the eligible set as of when it starts (marked backfill), then the changes from then on"
            );
        }
        println!("a running `dsr deliver run` picks this up when restarted");
        Ok(())
    }
}

impl Run {
    fn run(self) -> Result<()> {
        let programs = super::load_programs(&self.place.programs)?;
        let (subscriptions, keyring) = self.place.subscriptions("dsr deliver")?;
        let dead_letters =
            DeadLetters::open(&self.place.delivery_dir().join("dead-letters"), keyring)
                .context("opening the delivery dead-letter store")?;
        let with_hooks: Vec<String> = programs
            .iter()
            .filter(|p| subscriptions.get(p.id.as_str()).is_some())
            .map(|p| p.id.to_string())
            .collect();
        if with_hooks.is_empty() {
            eprintln!(
                "dsr deliver: no program has a webhook yet; add one with `dsr deliver webhook PROGRAM --url URL`"
            );
        }
        let log = KafkaLog::new(KafkaConfig::new(&self.bootstrap))?;
        let delivery = Arc::new(super::with_webhook_ca(
            Delivery::new(
                program_topics(&programs, &Topics::default()),
                subscriptions,
                dead_letters,
                Arc::new(log.clone()),
            ),
            self.webhook_ca_file.as_deref(),
        )?);
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async move {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            eprintln!(
                "dsr deliver: on {}; webhooks of {}; state in {}",
                self.bootstrap,
                if with_hooks.is_empty() {
                    "no program".to_owned()
                } else {
                    with_hooks.join(", ")
                },
                self.place.delivery_dir().display()
            );
            let mut workers = tokio::spawn(Arc::clone(&delivery).run(log, stop_rx));
            let mut progress = tokio::time::interval(Duration::from_secs(
                self.progress_seconds.max(1),
            ));
            progress.tick().await;
            let stop = shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    done = &mut workers => {
                        done.context("the delivery workers panicked")??;
                        bail!("the delivery workers stopped by themselves");
                    }
                    _ = &mut stop => break,
                    _ = progress.tick(), if self.progress_seconds > 0 => {
                        for id in &with_hooks {
                            if let Ok(s) = delivery.status(id, now_ms()).await {
                                eprintln!(
                                    "dsr deliver: {id}: delivered {}, pending {}, retrying {}, dead-lettered {}",
                                    s.delivered, s.pending, s.retrying, s.dead_lettered
                                );
                            }
                        }
                    }
                }
            }
            eprintln!("dsr deliver: stopping");
            let _ = stop_tx.send(true);
            workers.await.context("the delivery workers panicked")??;
            eprintln!("dsr deliver: stopped; offsets of what was delivered are committed");
            Ok(())
        })
    }
}
