//! `dsr programs check`: load every program file and report what is wrong with each.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use dsr_core::eligibility::Program;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum Programs {
    /// Load and compile every `*.yaml` in a directory (default `programs/`).
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    #[arg(default_value = "programs")]
    dir: PathBuf,
}

/// Loads every program file in `dir`, sorted by file name.
pub fn load_dir(
    dir: &Path,
) -> Result<
    Vec<(
        PathBuf,
        Result<Program, dsr_core::eligibility::ProgramError>,
    )>,
> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading program directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            Ok((p, Program::from_yaml(&text)))
        })
        .collect()
}

impl Programs {
    pub fn run(self) -> Result<()> {
        let Programs::Check(args) = self;
        let loaded = load_dir(&args.dir)?;
        if loaded.is_empty() {
            bail!("no program files (*.yaml) in {}", args.dir.display());
        }
        let mut failed = 0;
        for (path, result) in loaded {
            match result {
                Ok(p) => println!(
                    "ok    {}  {} (rule v{}, reads: {})",
                    path.display(),
                    p.id,
                    p.rule_version,
                    p.rule
                        .household_fields
                        .iter()
                        .map(|f| f.name())
                        .chain(p.rule.member_fields.iter().map(|f| f.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => {
                    failed += 1;
                    println!("FAIL  {}  {e}", path.display());
                }
            }
        }
        if failed > 0 {
            bail!("{failed} program file(s) failed to load");
        }
        Ok(())
    }
}
