//! One module per subcommand, and the loading they share.

pub mod audit;
pub mod demo;
pub mod generate;
pub mod keys;
pub mod process;
pub mod programs;
pub mod publish;
pub mod route;
pub mod schemas;
pub mod score;
pub mod sealed_places;
pub mod tail;
pub mod topics;
pub mod up;

use anyhow::{Context, Result};
use dsr_core::eligibility::Program;
use dsr_core::PmtModel;
use std::path::Path;

/// The need-score model from a TOML file, or the shipped default.
pub fn load_model(path: Option<&Path>) -> Result<PmtModel> {
    match path {
        Some(p) => PmtModel::from_toml(
            &std::fs::read_to_string(p)
                .with_context(|| format!("reading model {}", p.display()))?,
        )
        .with_context(|| format!("loading model {}", p.display())),
        None => Ok(PmtModel::default_model()),
    }
}

/// Every program definition in `dir`, sorted by id; the first that does not load is an error.
pub fn load_programs(dir: &Path) -> Result<Vec<Program>> {
    let mut programs: Vec<Program> = Vec::new();
    for (path, loaded) in programs::load_dir(dir)? {
        programs.push(loaded.with_context(|| format!("loading {}", path.display()))?);
    }
    programs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(programs)
}
