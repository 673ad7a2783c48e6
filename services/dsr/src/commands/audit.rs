//! `dsr audit verify`: checks the audit log in a data directory for edited, removed, inserted
//! or reordered entries and bad seals, and says where.

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Audit {
    /// Verify the hash chain and the seals of the audit log; exits non-zero on any problem.
    Verify {
        /// The data directory of `dsr up`.
        #[arg(long, env = "DSR_DATA_DIR", default_value = "dsr-data")]
        data_dir: PathBuf,
        /// The seals' public key (hex). Keep a copy outside the data directory: someone who
        /// can rewrite the log can rewrite a key stored beside it [default:
        /// DATA_DIR/security/audit-seal.key.pub].
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

impl Audit {
    pub fn run(self) -> Result<()> {
        match self {
            Audit::Verify {
                data_dir,
                public_key,
            } => {
                let key_file =
                    public_key.unwrap_or_else(|| data_dir.join("security/audit-seal.key.pub"));
                let key = dsr_audit::PublicKey::from_file(&key_file)
                    .with_context(|| format!("reading the seal key {}", key_file.display()))?;
                let log = data_dir.join("audit/audit.log");
                let report = dsr_audit::verify(&log, &key)
                    .with_context(|| format!("verifying {}", log.display()))?;
                println!("{}: {report}", log.display());
                if report.is_intact() {
                    Ok(())
                } else {
                    anyhow::bail!("the audit log has been tampered with (see above)")
                }
            }
        }
    }
}
