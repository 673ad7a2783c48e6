//! `dsr generate --households N --seed S --out DIR`: the synthetic population, with a
//! progress bar.

use anyhow::{Context, Result};
use clap::Args;
use dsr_synth::{Config, HouseholdSizes, Phase, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Args)]
pub struct Generate {
    /// Households registered by the initial survey.
    #[arg(long, default_value_t = 100_000)]
    households: u64,
    /// Seed; the same seed gives byte-identical output.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Months of life events after registration.
    #[arg(long, default_value_t = 12)]
    months: u32,
    /// Output directory (created if missing): areas.csv, households.jsonl, events.jsonl,
    /// manifest.json.
    #[arg(long, default_value = "dsr-population")]
    out: PathBuf,
    /// Worker threads (0: one per core). The output does not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Leave out area-wide shocks (droughts, floods).
    #[arg(long)]
    no_shocks: bool,
    /// Who lives together: `east-africa` (4.5–5 people a household) or `chile` (1.9, the size
    /// of Chile's Registro Social de Hogares: 17.1M people in 9M households).
    #[arg(long, value_enum, default_value_t = Sizes::EastAfrica)]
    household_sizes: Sizes,
}

/// `--household-sizes` (dsr-synth's [`HouseholdSizes`], which knows nothing of clap).
#[derive(Clone, Copy, clap::ValueEnum)]
enum Sizes {
    EastAfrica,
    Chile,
}

impl From<Sizes> for HouseholdSizes {
    fn from(s: Sizes) -> Self {
        match s {
            Sizes::EastAfrica => HouseholdSizes::EastAfrica,
            Sizes::Chile => HouseholdSizes::Chile,
        }
    }
}

impl Generate {
    pub fn run(self) -> Result<()> {
        let config = Config {
            months: self.months,
            threads: self.threads,
            shocks: !self.no_shocks,
            household_sizes: self.household_sizes.into(),
            ..Config::new(self.households, self.seed)
        };
        let started = Instant::now();
        let bar = ProgressBar::new(self.households);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>11} [{bar:40}] {pos}/{len} {msg} ({elapsed})")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix("households");
        let phase = Mutex::new(Phase::Households);
        let on_progress = |p: Progress| {
            let mut current = phase.lock().unwrap_or_else(|e| e.into_inner());
            if *current != p.phase {
                *current = p.phase;
                bar.set_prefix(match p.phase {
                    Phase::Households => "households",
                    Phase::Events => "events",
                    Phase::Done => "done",
                });
            }
            bar.set_length(p.total.max(1));
            bar.set_position(p.done);
            bar.set_message(format!("{} households, {} events", p.households, p.events));
        };
        let manifest = dsr_synth::write_dir(&config, &self.out, &on_progress)
            .with_context(|| format!("generating into {}", self.out.display()))?;
        bar.finish_and_clear();
        let s = &manifest.summary;
        println!(
            "wrote {} in {:.1}s: {} households, {} people, {} life events (seed {})",
            self.out.display(),
            started.elapsed().as_secs_f64(),
            s.households,
            s.persons,
            s.events,
            self.seed
        );
        Ok(())
    }
}
