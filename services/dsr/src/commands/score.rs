//! `dsr score --household FILE.json --explain`.

use anyhow::{Context, Result};
use clap::Args;
use dsr_core::score::PmtModel;
use dsr_core::{Date, Household, Micros};
use std::path::PathBuf;

#[derive(Args)]
pub struct Score {
    /// A household record as JSON (the shape `GET /v1/households/{id}` returns; see
    /// `examples/household.json`).
    #[arg(long)]
    household: PathBuf,
    /// Print each feature's contribution, largest first.
    #[arg(long)]
    explain: bool,
    /// How many contributions to print with --explain.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// A model file; the shipped default model otherwise.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Date ages are computed on (YYYY-MM-DD) when the file has no `as_of`; default today.
    #[arg(long)]
    as_of: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Score {
    pub fn run(self) -> Result<()> {
        let text = std::fs::read_to_string(&self.household)
            .with_context(|| format!("reading {}", self.household.display()))?;
        let mut h: Household = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a household record (see examples/household.json)",
                self.household.display()
            )
        })?;
        if h.as_of == Micros(0) {
            let date = match &self.as_of {
                Some(s) => dsr_core::reducer::parse_date(s)
                    .with_context(|| format!("--as-of {s}: expected YYYY-MM-DD"))?,
                None => today(),
            };
            h.as_of = Micros(date.0 as i64 * dsr_core::ids::MICROS_PER_DAY);
        }
        let model = match &self.model {
            Some(p) => PmtModel::from_toml(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("loading model {}", p.display()))?,
            None => PmtModel::default_model(),
        };
        let e = model.explain(&h);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&e)?);
            return Ok(());
        }
        println!(
            "household {}  need score {:.1} / 100  (model {})",
            h.household_id, e.score, e.model_version
        );
        if self.explain {
            println!(
                "predicted log consumption per capita: {:.3}",
                e.predicted_log_consumption_per_capita
            );
            let baseline = e.contributions.iter().find(|c| c.feature == "baseline");
            if let Some(b) = baseline {
                println!("  {:<32} {:>+8.2}", "baseline (intercept)", b.points);
            }
            let top = e.top(self.top);
            for c in &top {
                println!(
                    "  {:<32} {:>+8.2}   (value {:.3} × weight {:+.3})",
                    c.feature, c.points, c.value, c.weight
                );
            }
            let shown: f64 =
                baseline.map_or(0.0, |b| b.points) + top.iter().map(|c| c.points).sum::<f64>();
            let rest = e.score - shown;
            if e.contributions.len() > top.len() + 1 {
                println!(
                    "  {:<32} {:>+8.2}",
                    format!("{} other features", e.contributions.len() - top.len() - 1),
                    rest
                );
            }
            println!("  {:<32} {:>8.2}", "= need score", e.score);
        }
        Ok(())
    }
}

/// Today's date from the system clock: the CLI is the edge where reading a clock is allowed.
fn today() -> Date {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Date((secs / 86_400) as i32)
}
