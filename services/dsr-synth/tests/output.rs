//! Determinism and the on-disk format.

use dsr_core::Event;
use dsr_synth::output::{AREAS_FILE, EVENTS_FILE, HOUSEHOLDS_FILE, MANIFEST_FILE};
use dsr_synth::{generate, write_dir, Collect, Config, Manifest, Phase};
use std::cell::RefCell;
use std::path::Path;

/// Three chunks, so thread counts really interleave differently.
fn config(seed: u64, threads: usize) -> Config {
    Config {
        threads,
        ..Config::new(2_500, seed)
    }
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ma = write_dir(&config(7, 1), a.path(), &|_| {}).unwrap();
    let mb = write_dir(&config(7, 3), b.path(), &|_| {}).unwrap();
    for f in [AREAS_FILE, HOUSEHOLDS_FILE, EVENTS_FILE] {
        assert!(
            read(a.path(), f) == read(b.path(), f),
            "{f} differs between 1 and 3 threads"
        );
    }
    assert_eq!(ma.summary, mb.summary);
    assert_eq!(ma.files, mb.files);
}

#[test]
fn different_seeds_differ() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_dir(&config(1, 2), a.path(), &|_| {}).unwrap();
    write_dir(&config(2, 2), b.path(), &|_| {}).unwrap();
    for f in [AREAS_FILE, HOUSEHOLDS_FILE, EVENTS_FILE] {
        assert!(
            read(a.path(), f) != read(b.path(), f),
            "{f} is the same for seeds 1 and 2"
        );
    }
}

fn parse_lines(bytes: &[u8]) -> Vec<Event> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

#[test]
fn the_files_hold_exactly_what_the_sink_receives() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(11, 2);
    let seen = RefCell::new(Vec::new());
    let manifest = write_dir(&cfg, dir.path(), &|p| seen.borrow_mut().push(p)).unwrap();
    let mut sink = Collect::default();
    let summary = generate(&config(11, 1), &mut sink, &|_| {}).unwrap();
    assert_eq!(manifest.summary, summary);

    let households = parse_lines(&read(dir.path(), HOUSEHOLDS_FILE));
    let events = parse_lines(&read(dir.path(), EVENTS_FILE));
    assert_eq!(households, sink.households);
    assert_eq!(events, sink.events);
    assert_eq!(events.len() as u64, manifest.summary.events);

    let areas = sink.areas.unwrap();
    let csv = String::from_utf8(read(dir.path(), AREAS_FILE)).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("code,name,level,parent_code"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), areas.len());
    assert_eq!(rows[0], vec!["R01", "Central", "region", ""]);
    for (row, area) in rows.iter().zip(areas.all()) {
        assert_eq!(row[0], area.code.as_str());
        assert_eq!(
            row[3],
            area.parent.as_ref().map(|p| p.as_str()).unwrap_or("")
        );
    }

    let text = read(dir.path(), MANIFEST_FILE);
    let on_disk: Manifest = serde_json::from_slice(&text).unwrap();
    assert_eq!(on_disk, manifest);
    assert_eq!(on_disk.seed, 11);
    assert_eq!(on_disk.event_period.first_day, "2026-01-01");
    assert_eq!(on_disk.event_period.last_day, "2026-12-31");
    assert_eq!(on_disk.registration_period.first_day, "2025-07-01");
    assert_eq!(
        on_disk.files[EVENTS_FILE],
        read(dir.path(), EVENTS_FILE).len() as u64
    );

    let seen = seen.into_inner();
    assert_eq!(seen.last().unwrap().phase, Phase::Done);
    assert!(seen
        .iter()
        .any(|p| p.phase == Phase::Households && p.done == p.total));
    assert!(seen
        .iter()
        .any(|p| p.phase == Phase::Events && p.done == p.total));
}

#[test]
fn generating_twice_in_memory_gives_equal_values() {
    let small = Config::new(300, 5);
    let (mut a, mut b) = (Collect::default(), Collect::default());
    generate(&small, &mut a, &|_| {}).unwrap();
    generate(&small, &mut b, &|_| {}).unwrap();
    assert_eq!(a.households, b.households);
    assert_eq!(a.events, b.events);
}

#[test]
fn invalid_configurations_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Config {
        registration_days: 0,
        ..Config::new(10, 1)
    };
    assert!(matches!(
        write_dir(&bad, &dir.path().join("out"), &|_| {}),
        Err(dsr_synth::Error::Config(_))
    ));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn empty_and_tiny_populations_work() {
    for n in [0, 1, 3] {
        let mut sink = Collect::default();
        let s = generate(&Config::new(n, 9), &mut sink, &|_| {}).unwrap();
        assert_eq!(s.households, n);
        assert_eq!(sink.households.len() as u64, n);
        let now = Config::default().now_after();
        for e in sink.households.iter().chain(&sink.events) {
            e.validate(now).unwrap();
        }
    }
}
