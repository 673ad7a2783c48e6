//! Generates a data set to a directory and reports how long it took.
//!
//! `cargo run --release -p dsr-synth --example synth -- --households 1000000 --out /tmp/synth`
//! (other flags: `--seed N`, `--months N`, `--threads N`).

use dsr_synth::{write_dir, Config, Phase};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut config = Config::new(10_000, 1);
    let mut out = PathBuf::from("dsr-data/synth");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let number = || {
            value
                .replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--households" => config.households = number(),
            "--seed" => config.seed = number(),
            "--months" => config.months = number() as u32,
            "--threads" => config.threads = number() as usize,
            "--out" => out = PathBuf::from(&value),
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    let started = Instant::now();
    let manifest = write_dir(&config, &out, &|p| {
        if p.phase == Phase::Done || p.done == p.total {
            eprintln!(
                "{:>7.2}s {:?}: {} households, {} events",
                started.elapsed().as_secs_f64(),
                p.phase,
                p.households,
                p.events
            );
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::to_string_pretty(&manifest.summary).unwrap()
    );
    let bytes: u64 = manifest.files.values().sum();
    println!(
        "{} households, {} persons, {} events, {:.1} MB in {:.2} s",
        manifest.summary.households,
        manifest.summary.persons,
        manifest.summary.events,
        bytes as f64 / 1e6,
        secs
    );
}
