//! Helpers for the crate's tests: sample entries and editing the log file line by line.

use std::fs;
use std::path::Path;

use crate::entry::AuditEntry;

/// A plausible entry, different for each `i`.
pub(crate) fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        who: format!("client-{}", i % 3),
        role: "caseworker".into(),
        action: "household.read".into(),
        subjects: vec![format!("hh-{i}"), format!("p-{i}")],
        fields: vec!["members".into(), "income".into()],
        purpose: Some("case review".into()),
        agreement: None,
        outcome: "allowed".into(),
    }
}

/// The file's lines, without their newlines.
pub(crate) fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Replaces the file with these lines, each ended by a newline.
pub(crate) fn write_lines(path: &Path, lines: &[String]) {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    fs::write(path, text).unwrap();
}
