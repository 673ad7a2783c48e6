//! Rule versions on the log: how an activated version reaches every household processor
//! partition at a definite point.
//!
//! Activation writes the version to `dsr.program-rules` (compacted, key `program@version`,
//! Avro `RuleActivation`: the whole program file), then a *marker* to every partition of
//! `dsr.household-events`: a record with no value and the headers `dsr-control:
//! rule-activation`, `dsr-program`, `dsr-rule-version`. A processor that meets a marker reads
//! the version from `dsr.program-rules` and decides every household of the partition again
//! under it ([`crate::task::Input::Activation`]); the marker's offset is the activation's
//! place in each household's order, so re-processing after a crash produces the same changes
//! with the same ids, fenced like every other output.

use crate::runner::{Codec, Topics};
use dsr_core::eligibility::{Program, ProgramError};
use dsr_core::rule_versions::ActivationRecord;
use dsr_log::{ConsumedRecord, Log, LogError, Record, TopicPartition};
use std::collections::BTreeMap;

/// The header that marks a control record on `dsr.household-events`.
pub const CONTROL_HEADER: &str = "dsr-control";
/// Its value for a rule activation.
pub const RULE_ACTIVATION: &str = "rule-activation";
pub const PROGRAM_HEADER: &str = "dsr-program";
pub const RULE_VERSION_HEADER: &str = "dsr-rule-version";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot encode the activation: {0}")]
    Encode(String),
    #[error("record {offset} of {topic} is not a rule activation: {reason}")]
    Decode {
        topic: String,
        offset: i64,
        reason: String,
    },
}

/// The program and version a marker names, if the record is one.
pub fn marker(record: &ConsumedRecord) -> Option<(String, u32)> {
    if record.header(CONTROL_HEADER) != Some(RULE_ACTIVATION.as_bytes()) {
        return None;
    }
    let text = |h| {
        record
            .header(h)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    let program = text(PROGRAM_HEADER).unwrap_or_default();
    let version = text(RULE_VERSION_HEADER)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((program, version))
}

/// Whether the record is a control record (a marker, readable or not).
pub fn is_control(record: &ConsumedRecord) -> bool {
    record.header(CONTROL_HEADER).is_some()
}

/// The records that activate a version: the version for `dsr.program-rules`, and a marker
/// for each of the `partitions` partitions of the household topic (append them in that order).
pub fn activation_records<C: Codec>(
    codec: &C,
    record: &ActivationRecord,
    partitions: i32,
) -> Result<(Record, Vec<Record>), RulesError> {
    let value = codec
        .encode_rule_activation(record)
        .map_err(RulesError::Encode)?;
    let version = Record::new(record.key(), value);
    let markers = (0..partitions)
        .map(|p| {
            let mut r = Record {
                key: Some(record.key().into_bytes()),
                ..Record::default()
            }
            .with_header(CONTROL_HEADER, RULE_ACTIVATION)
            .with_header(PROGRAM_HEADER, record.program.id.as_str())
            .with_header(RULE_VERSION_HEADER, record.program.rule_version.to_string())
            .with_partition(p);
            r.timestamp_ms = Some(record.activated_at.0 / 1000);
            r
        })
        .collect();
    Ok((version, markers))
}

/// Activates a version: the version to `dsr.program-rules`, then a marker to every partition
/// of the household topic. Appending again (after an error) is harmless: a partition that
/// meets a version it already has ignores the marker.
pub async fn activate<L: Log, C: Codec>(
    log: &L,
    codec: &C,
    topics: &Topics,
    record: &ActivationRecord,
) -> Result<(), RulesError> {
    let partitions = log.partition_count(&topics.household_events).await?;
    let (version, markers) = activation_records(codec, record, partitions)?;
    log.append(&topics.program_rules, vec![version]).await?;
    log.append(&topics.household_events, markers).await?;
    Ok(())
}

/// Every activated version on `dsr.program-rules`, by `program@version`.
pub async fn activations<L: Log, C: Codec>(
    log: &L,
    codec: &C,
    topic: &str,
) -> Result<BTreeMap<String, ActivationRecord>, RulesError> {
    use dsr_log::PartitionReader;
    let mut out = BTreeMap::new();
    let tp = TopicPartition::new(topic, 0);
    let (mut from, end) = log.offsets(&tp).await?;
    if from >= end {
        return Ok(out);
    }
    let mut reader = log.reader()?;
    while from < end {
        let batch = reader
            .read(&tp, from, 1000, std::time::Duration::from_secs(10))
            .await?;
        let Some(last) = batch.last() else { break };
        from = last.next_offset();
        for r in batch {
            let Some(value) = r.value.as_deref() else {
                continue;
            };
            let a = codec
                .decode_rule_activation(value)
                .map_err(|reason| RulesError::Decode {
                    topic: topic.to_owned(),
                    offset: r.offset,
                    reason,
                })?;
            out.insert(a.key(), a);
        }
    }
    Ok(out)
}

/// The latest version of each program among `activations`.
pub fn latest(activations: &BTreeMap<String, ActivationRecord>) -> Vec<&ActivationRecord> {
    let mut by_program: BTreeMap<&str, &ActivationRecord> = BTreeMap::new();
    for a in activations.values() {
        let entry = by_program.entry(a.program.id.as_str()).or_insert(a);
        if a.program.rule_version > entry.program.rule_version {
            *entry = a;
        }
    }
    by_program.into_values().collect()
}

/// `programs` with each one replaced by its latest activated version, when that is newer
/// than the file's. (A version of a program that has no file is ignored.)
pub fn overlay(
    programs: &mut [Program],
    activations: &BTreeMap<String, ActivationRecord>,
) -> Result<(), ProgramError> {
    for a in latest(activations) {
        if let Some(p) = programs.iter_mut().find(|p| p.id == a.program.id) {
            if a.program.rule_version > p.rule_version {
                *p = Program::from_file(a.program.clone())?;
            }
        }
    }
    Ok(())
}
