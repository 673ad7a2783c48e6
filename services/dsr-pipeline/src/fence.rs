//! Fences: what a restarted household processor already wrote to an output partition it writes
//! alone, so that re-processing after a crash writes nothing twice (`docs/architecture.md`,
//! "Effectively once without transactions").
//!
//! Only the last record of each append to an output partition carries its source (the
//! `dsr-src` header, [`SOURCE_HEADER`]): a header costs a broker such as nisshi a statement
//! per record, and the fence needs only the last one. The last record of a partition is
//! therefore the end of an append, unless a crash cut an append short (its records went out in
//! more than one produce request and only the first ones landed). Those records, after the last
//! one with a source, are the fence's *tail*: re-processing produces them again, byte for byte
//! (outputs are deterministic, and each carries a version or an id), and each is skipped once.

use crate::task::Source;
use dsr_log::{ConsumedRecord, Header, PartitionReader, Record, TopicPartition};
use std::collections::HashMap;
use std::time::Duration;

/// The header carrying an output's source (`offset:seq` of the input record), on the last
/// record of each append to an output partition.
pub const SOURCE_HEADER: &str = "dsr-src";

/// Records read per step when a partition's last record has no source and the fence reads
/// back to the last one that has.
const READ_BACK: i64 = 1_000;

/// A record's key, value and headers: what identifies a record of a cut-short append.
type Content = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>);

/// What an output partition already holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The source of the last record that carries one: every output at or below it was written.
    /// `None` when none does: the first append to the partition was cut short.
    pub source: Option<Source>,
    /// Records after that one, without a source (an append cut short), by content, with how
    /// many times each is still to be skipped. Tombstones are left out: deleting a key twice
    /// changes nothing, and two tombstones for one key are alike whenever they were written.
    tail: HashMap<Content, u32>,
    /// The input partition's end when the fence was read. The tail was produced from inputs
    /// before it, so inputs from here on cannot produce one of its records again.
    tail_until: u64,
}

/// Why a fence cannot be read. Never "no fence": without it outputs written before a crash
/// would be written again.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(transparent)]
    Log(#[from] dsr_log::LogError),
    #[error("cannot read the output fence of {partition}: {reason}")]
    Unreadable {
        partition: TopicPartition,
        reason: String,
    },
}

impl Fence {
    /// A fence at `source` with nothing after it.
    pub fn at(source: Option<Source>) -> Fence {
        Fence {
            source,
            tail: HashMap::new(),
            tail_until: 0,
        }
    }

    /// Reads the fence of `out`, a non-empty partition whose records are `[beginning, end)`.
    /// `input_end` is where the input partition ends now (asked only if the tail is not empty,
    /// which is rare: see the module documentation).
    pub async fn read<R: PartitionReader>(
        reader: &mut R,
        out: &TopicPartition,
        beginning: i64,
        end: i64,
        input_end: impl std::future::Future<Output = Result<i64, dsr_log::LogError>>,
    ) -> Result<Fence, FenceError> {
        let unreadable = |reason: String| FenceError::Unreadable {
            partition: out.clone(),
            reason,
        };
        // Records after the last one with a source, newest first.
        let mut tail: Vec<ConsumedRecord> = Vec::new();
        let mut to = end;
        // The usual case is one record: the end of the last append.
        let mut step = 1;
        while to > beginning {
            let from = (to - step).max(beginning);
            let mut window = Vec::new();
            let mut at = from;
            while at < to {
                let batch = reader
                    .read(out, at, (to - at) as usize, Duration::from_secs(10))
                    .await?;
                let Some(last) = batch.last() else {
                    return Err(unreadable(format!(
                        "the records from offset {at} to {to} could not be read"
                    )));
                };
                at = last.next_offset();
                window.extend(batch.into_iter().filter(|r| r.offset < to));
            }
            while let Some(r) = window.pop() {
                let Some(header) = r.header(SOURCE_HEADER) else {
                    tail.push(r);
                    continue;
                };
                let source = std::str::from_utf8(header)
                    .ok()
                    .and_then(Source::parse)
                    .ok_or_else(|| {
                        unreadable(format!(
                            "the record at offset {} has an unreadable {SOURCE_HEADER} header",
                            r.offset
                        ))
                    })?;
                return Fence::at(Some(source))
                    .with_tail(out, tail, input_end)
                    .await;
            }
            to = from;
            step = READ_BACK;
        }
        if beginning > 0 {
            // Records before these were deleted (retention): what they held is unknown.
            return Err(unreadable(format!(
                "no record from offset {beginning} to {end} has a {SOURCE_HEADER} header, and \
                 the records before {beginning} are deleted; was the partition written by \
                 something other than dsr's household processor?"
            )));
        }
        // The partition's first append, cut short.
        Fence::at(None).with_tail(out, tail, input_end).await
    }

    async fn with_tail(
        mut self,
        out: &TopicPartition,
        tail: Vec<ConsumedRecord>,
        input_end: impl std::future::Future<Output = Result<i64, dsr_log::LogError>>,
    ) -> Result<Fence, FenceError> {
        if tail.is_empty() {
            return Ok(self);
        }
        tracing::warn!(
            partition = %out,
            records = tail.len(),
            "an append was cut short; its records will not be written again"
        );
        self.tail_until = input_end.await?.max(0) as u64;
        for r in tail.into_iter().filter(|r| r.value.is_some()) {
            *self.tail.entry((r.key, r.value, r.headers)).or_default() += 1;
        }
        Ok(self)
    }

    /// Whether the output `record` from `source` is already in the partition (and is to be
    /// skipped). Outputs come in increasing source order.
    pub fn holds(&mut self, source: Source, record: &Record) -> bool {
        if self.source.is_some_and(|s| source <= s) {
            return true;
        }
        if self.tail.is_empty() || source.offset >= self.tail_until {
            return false;
        }
        let key = (
            record.key.clone(),
            record.value.clone(),
            record.headers.clone(),
        );
        match self.tail.get_mut(&key) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.tail.remove(&key);
                }
                true
            }
            None => false,
        }
    }

    /// Whether the fence can go once the input has reached `next_offset`: nothing from there on
    /// can be at or below its source or be one of its tail's records. (A fence is kept until
    /// then, as a replay can come back in smaller batches than the ones that first produced it.)
    pub fn passed(&self, next_offset: u64) -> bool {
        self.source.is_none_or(|s| s.offset < next_offset)
            && (self.tail.is_empty() || self.tail_until <= next_offset)
    }
}

/// Puts `source` on the last of `records` (one append to one output partition, in source
/// order), the one record its fence reads.
pub fn mark_last(records: &mut [Record], source: Source) {
    if let Some(last) = records.last_mut() {
        let r = std::mem::take(last);
        *last = r.with_header(SOURCE_HEADER, source.header());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(offset: u64, seq: u32) -> Source {
        Source { offset, seq }
    }

    fn rec(key: &str, value: &str) -> Record {
        Record::new(key, value.as_bytes().to_vec())
    }

    #[test]
    fn outputs_at_or_below_the_source_are_held() {
        let mut f = Fence::at(Some(src(10, 1)));
        assert!(f.holds(src(9, 5), &rec("a", "x")));
        assert!(f.holds(src(10, 1), &rec("a", "x")));
        assert!(!f.holds(src(10, 2), &rec("a", "x")));
        assert!(!f.holds(src(11, 0), &rec("a", "x")));
        assert!(!f.passed(10));
        assert!(f.passed(11));
    }

    #[test]
    fn a_tail_record_is_held_once_and_only_before_the_inputs_end() {
        let mut f = Fence::at(Some(src(10, 0)));
        f.tail
            .insert((Some(b"a".to_vec()), Some(b"x".to_vec()), Vec::new()), 1);
        f.tail_until = 20;
        assert!(!f.holds(src(11, 0), &rec("a", "y")), "another value");
        assert!(!f.holds(src(11, 0), &rec("b", "x")), "another key");
        assert!(
            !f.holds(src(11, 0), &rec("a", "x").with_header("dsr-change-id", "2")),
            "other headers"
        );
        assert!(!f.passed(11), "the tail is still expected");
        assert!(f.holds(src(12, 0), &rec("a", "x")));
        assert!(!f.holds(src(13, 0), &rec("a", "x")), "held once only");
        assert!(f.passed(11), "the tail is spent");

        let mut f = Fence::at(Some(src(10, 0)));
        f.tail
            .insert((Some(b"a".to_vec()), Some(b"x".to_vec()), Vec::new()), 1);
        f.tail_until = 20;
        assert!(
            !f.holds(src(20, 0), &rec("a", "x")),
            "an input after the old end cannot have produced the tail"
        );
        assert!(!f.passed(19));
        assert!(f.passed(20));
    }

    #[test]
    fn only_the_last_record_of_an_append_carries_its_source() {
        let mut records = vec![rec("a", "1"), rec("b", "2")];
        mark_last(&mut records, src(7, 3));
        assert_eq!(records[0].header(SOURCE_HEADER), None);
        assert_eq!(records[1].header(SOURCE_HEADER), Some(&b"7:3"[..]));
    }
}
