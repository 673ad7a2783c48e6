//! `dsr demo`: `dsr up` plus a country to watch. Generates a population whose year of life
//! events ends today, loads the registrations through the HTTP API, then streams the events at
//! `--rate` per second and prints live counts (events/s, households updated, eligibility
//! changes per program) until Ctrl-C.

use anyhow::{Context, Result};
use clap::Args;
use dsr_core::{Date, Event, Micros};
use dsr_log::{EmbeddedLog, Log, TopicPartition};
use dsr_serving::Progress;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Households in the generated population.
    #[arg(long, default_value_t = 100_000)]
    households: u64,
    /// Life events per second streamed after the registrations are loaded.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Seed of the generated population.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[command(flatten)]
    up: super::up::Up,
}

impl DemoArgs {
    pub fn run(self) -> Result<()> {
        let demo = Demo {
            households: self.households,
            rate: self.rate.max(1),
            seed: self.seed,
        };
        let mut config = self.up.resolve()?;
        // The generated country's geographic master list, so scale-up and the dashboard work.
        if config.areas.is_none() {
            let path = config.data_dir.join("areas.csv");
            if !path.exists() {
                std::fs::create_dir_all(&config.data_dir)?;
                let mut csv = Vec::new();
                dsr_synth::areas::Areas::generate(demo.households, demo.seed)
                    .write_csv(&mut csv)?;
                std::fs::write(&path, csv)
                    .with_context(|| format!("writing the master list {}", path.display()))?;
            }
            config.areas = Some(path);
        }
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(config.serve(Some(demo)))
    }
}

pub(crate) struct Demo {
    households: u64,
    rate: u64,
    seed: u64,
}

/// What the demo watches in the running registry.
pub(crate) struct Watched {
    pub log: EmbeddedLog,
    pub base: String,
    pub serving: Progress,
    pub eligibility_topics: Vec<String>,
    pub clients: std::sync::Arc<dsr_access::ClientRegistry>,
    pub security_dir: std::path::PathBuf,
}

/// The demo's own clients: a source system that publishes the generated events, and a
/// caseworker (everywhere, purpose `demo`, every field) for the person looking at the demo.
/// Each run gives them fresh keys. Returns (source key, file holding the caseworker's key).
fn demo_clients(watched: &Watched) -> Result<(String, std::path::PathBuf)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let key = |spec: serde_json::Value| -> Result<String> {
        let spec: dsr_access::ClientSpec = serde_json::from_value(spec)?;
        let id = spec.id.clone();
        let (_, key) = match watched.clients.get(&id) {
            Some(_) => watched.clients.rotate(&id, now, 0),
            None => watched.clients.create(spec, now),
        }
        .with_context(|| format!("registering the demo client {id}"))?;
        Ok(key)
    };
    let source = key(serde_json::json!({
        "id": "demo-source", "name": "dsr demo: the generated source systems",
        "role": "source_system", "areas": ["*"], "event_types": ["*"], "source_names": ["*"],
        "requests_per_second": 10000, "key_days": 7
    }))?;
    let caseworker = key(serde_json::json!({
        "id": "demo-caseworker", "name": "dsr demo: the person watching",
        "role": "caseworker", "areas": ["*"], "key_days": 7,
        "agreements": [{"id": "DEMO", "purpose": "demo", "fields": ["*"]}]
    }))?;
    let file = watched.security_dir.join("demo-caseworker.key");
    let _ = std::fs::remove_file(&file);
    dsr_access::token::write_private(&file, format!("{caseworker}\n").as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok((source, file))
}

fn today() -> Date {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Micros(now.as_micros() as i64).date()
}

impl Demo {
    pub(crate) async fn run(
        self,
        watched: Watched,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(stop);
        let (year, month, _) = today().ymd();
        let config = dsr_synth::Config {
            households: self.households,
            seed: self.seed,
            months: 12,
            // A year of events ending about now, so none is refused as "in the future".
            start: Date::from_ymd(year - 1, month, 1),
            shocks: true,
            ..dsr_synth::Config::default()
        };
        eprintln!(
            "dsr demo: generating {} households and a year of life events…",
            self.households
        );
        let population = tokio::task::spawn_blocking(move || {
            let mut sink = dsr_synth::Collect::default();
            dsr_synth::generate(&config, &mut sink, &|_| {}).map(|_| sink)
        })
        .await?
        .context("generating the demo population")?;
        let now = Micros(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros() as i64,
        );
        let events: Vec<Event> = population
            .events
            .into_iter()
            .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
            .collect();
        let (source_key, caseworker_key_file) = demo_clients(&watched)?;
        let client = reqwest::Client::new();
        let url = format!("{}/v1/events", watched.base);
        let post = |batch: &[Event]| {
            let request = client.post(&url).bearer_auth(&source_key).json(batch);
            async move {
                let response = request.send().await.context("posting events")?;
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let accepted = body["accepted"].as_array().map_or(0, Vec::len);
                if !status.is_success() && accepted == 0 {
                    anyhow::bail!("the API refused a batch ({status}): {body}");
                }
                anyhow::Ok(accepted)
            }
        };

        eprintln!(
            "dsr demo: loading {} household registrations through {url}",
            population.households.len()
        );
        for chunk in population.households.chunks(2_000) {
            post(chunk).await?;
        }
        let first = population.households[0]
            .envelope
            .household_id
            .as_ref()
            .map_or("H00000001", |h| h.as_str());
        eprintln!(
            "dsr demo: streaming {} life events at {}/s. Look at (as the demo's caseworker):\n  \
             curl -H \"Authorization: Bearer $(cat {key})\" -H 'Dsr-Purpose: demo' {base}/v1/households/{first}\n  \
             the same with /history at the end\n  Ctrl-C stops.",
            events.len(),
            self.rate,
            key = caseworker_key_file.display(),
            base = watched.base,
        );

        let started = Instant::now();
        let mut sent = 0usize;
        let mut last_report = Instant::now();
        let mut last_sent = 0usize;
        let mut last_line = String::new();
        let tick = Duration::from_millis(100);
        loop {
            // The events due by now, in batches.
            let due =
                ((started.elapsed().as_secs_f64() * self.rate as f64) as usize).min(events.len());
            if due > sent {
                for chunk in events[sent..due].chunks(2_000) {
                    post(chunk).await?;
                }
                sent = due;
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                let rate = (sent - last_sent) as f64 / last_report.elapsed().as_secs_f64();
                let mut changes = Vec::new();
                for topic in &watched.eligibility_topics {
                    let mut total = 0;
                    for p in 0..watched.log.partition_count(topic).await? {
                        total += watched
                            .log
                            .end_offset(&TopicPartition::new(topic.clone(), p))
                            .await?;
                    }
                    changes.push(format!(
                        "{}={total}",
                        topic.rsplit('.').next().unwrap_or(topic)
                    ));
                }
                let line = format!(
                    "{sent}/{} events sent, {} household versions served; eligibility changes: {}",
                    events.len(),
                    watched.serving.applied.load(Ordering::Relaxed),
                    changes.join(" ")
                );
                // Quiet once everything is sent and processed.
                if line != last_line {
                    eprintln!("dsr demo: {line} ({rate:.0} events/s)");
                    last_line = line;
                }
                last_report = Instant::now();
                last_sent = sent;
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}
