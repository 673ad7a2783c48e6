//! One module per subcommand, and the loading they share.

pub mod audit;
pub mod deliver;
pub mod demo;
pub mod generate;
pub mod keys;
pub mod log;
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

/// The lock file a running `dsr up` holds in its data directory.
pub const DATA_DIR_LOCK: &str = "dsr.lock";

/// Takes the data directory's lock (`DATA_DIR/dsr.lock`), held until the returned file is
/// dropped or the process ends, however it ends. `dsr up` holds it while it runs; a command that
/// must not run beside it (`dsr keys rewrap-kek`, which rewrites the data-key file `dsr up`
/// keeps open) takes it too, and two `dsr up` on one directory are refused at once with a
/// clear message instead of a store's lock error.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(DATA_DIR_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the data directory's lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the data directory {} is in use by another dsr process (a running `dsr up` or \
             `dsr keys rewrap-kek`); stop it first, or give another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

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

/// Milliseconds since the epoch, now.
/// The clock of the scale-up service: the system's, or — for tests of expiry — the time in
/// the file `DSR_TEST_CLOCK_FILE` names (RFC 3339 or microseconds since the epoch) while that
/// file exists.
pub fn clock() -> dsr_scale_up::Clock {
    let file = std::env::var_os("DSR_TEST_CLOCK_FILE").map(std::path::PathBuf::from);
    if let Some(f) = &file {
        eprintln!(
            "dsr: warning: DSR_TEST_CLOCK_FILE is set: scale-up reads the time from {} (a test clock)",
            f.display()
        );
    }
    std::sync::Arc::new(move || {
        let test_time = file.as_ref().and_then(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let text = text.trim();
            text.parse::<i64>()
                .ok()
                .map(dsr_core::Micros)
                .or_else(|| dsr_core::Micros::parse(text))
        });
        test_time.unwrap_or(dsr_core::Micros(now_ms() * 1000))
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The data keys in `keys_dir` (created on first use), unwrapped by the key-encryption key
/// from `DSR_KEK`, `kek_file` or, failing both, one generated beside them (with a warning from
/// `who`, since a copy of that directory can then be read).
pub fn open_keyring(
    keys_dir: &Path,
    kek_file: Option<&Path>,
    who: &str,
) -> Result<dsr_crypto::Keyring> {
    let env_kek = std::env::var(dsr_crypto::kek::ENV_VAR).ok();
    let (keyring, kek, _) =
        dsr_crypto::Keyring::open_directory(keys_dir, env_kek.as_deref(), kek_file, now_ms())
            .with_context(|| format!("opening the data keys in {}", keys_dir.display()))?;
    if kek.is_in_data_directory() {
        eprintln!(
            "{who}: warning: the key-encryption key is kept in {}; in production give it with DSR_KEK or --kek-file",
            keys_dir.display()
        );
    }
    Ok(keyring)
}

/// `delivery`, trusting the CA certificates in `ca_file` (PEM) for https webhooks too.
pub fn with_webhook_ca(
    delivery: dsr_delivery::Delivery,
    ca_file: Option<&Path>,
) -> Result<dsr_delivery::Delivery> {
    match ca_file {
        None => Ok(delivery),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the webhook CA file {}", path.display()))?;
            delivery
                .with_extra_roots(&pem)
                .with_context(|| format!("the webhook CA file {}", path.display()))
        }
    }
}

/// What delivery reads for each program: its eligibility topic and the life-event topic.
pub fn program_topics(
    programs: &[Program],
    topics: &dsr_pipeline::runner::Topics,
) -> Vec<dsr_delivery::ProgramTopic> {
    programs
        .iter()
        .map(|p| dsr_delivery::ProgramTopic {
            program_id: p.id.to_string(),
            topic: topics.eligibility(&p.id),
            notices_topic: topics.beneficiary_events.clone(),
            person_ids_allowed: p.fields_allowed.iter().any(|f| f == "members.person_id"),
        })
        .collect()
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
