//! `dsr schemas check` and `dsr schemas docs`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Schemas {
    /// Check that the schemas parse and that each is BACKWARD compatible with every released
    /// version (Avro schema resolution: the new schema can read what the old one wrote).
    Check(CheckArgs),
    /// Write the data dictionary (every field: type, meaning, code list, sensitivity).
    Docs(DocsArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// Directory with the current schemas.
    #[arg(long, default_value = "schemas")]
    dir: PathBuf,
    /// Directory with released versions (`v1/`, `v2/`, ...).
    #[arg(long, default_value = "schemas/released")]
    released: PathBuf,
}

#[derive(Args)]
pub struct DocsArgs {
    /// Where to write the Markdown; `-` for standard output.
    #[arg(long, default_value = "docs/data-dictionary.md")]
    out: PathBuf,
}

impl Schemas {
    pub fn run(self) -> Result<()> {
        match self {
            Schemas::Check(a) => {
                let versions =
                    dsr_contracts::compat::check_all(&a.dir, &a.released).with_context(|| {
                        format!(
                            "schemas in {} are not backward compatible with {}",
                            a.dir.display(),
                            a.released.display()
                        )
                    })?;
                println!(
                    "ok: {} parse; backward compatible with released {}",
                    a.dir.display(),
                    versions.join(", ")
                );
                Ok(())
            }
            Schemas::Docs(a) => {
                let md = dsr_contracts::dictionary::data_dictionary();
                if a.out.as_os_str() == "-" {
                    print!("{md}");
                } else {
                    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&a.out, md)
                        .with_context(|| format!("writing {}", a.out.display()))?;
                    println!("wrote {}", a.out.display());
                }
                Ok(())
            }
        }
    }
}
