//! What the `dsr` binary's Kafka tests share: where the repository is, how `dsr process` is
//! started, and how long to wait for the pipeline to finish.

#![allow(dead_code)] // each test binary uses its own part

pub mod scale_up;
pub mod up;
pub mod webhooks;

use dsr_pipeline::testing::KafkaFixture;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `dsr process` against the fixture, with its state in `state`; its log goes to
/// `<state>.log` so a failing test can be read.
pub fn start_process(fx: &KafkaFixture, state: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.with_extension("log"))
        .expect("a log file");
    Command::new(env!("CARGO_BIN_EXE_dsr"))
        .args([
            "process",
            "--bootstrap",
            &fx.broker().bootstrap(),
            "--schema-registry",
            &fx.registry_url,
            "--batch-size",
            "100",
        ])
        .arg("--state-dir")
        .arg(state)
        .env("DSR_LOG", "info")
        .env("NO_COLOR", "1")
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("dsr process starts")
}
