//! The offline check of a whole log file: hashes, links, sequence, order and seals.
//!
//! The checks look at entries by their sequence number, not only by their place in the file,
//! so that one change is reported once, where it is, instead of breaking every check after
//! it:
//!
//! 1. Every line parses, and every entry's hash matches its content and its line is exactly
//!    what the log writes (an edit in place).
//! 2. Of two entries with the same seq, the one the chain goes on from is kept; the other was
//!    inserted.
//! 3. The longest run of entries whose seqs increase in file order is in place; any other
//!    entry was moved (a swap shows as one moved entry).
//! 4. Seqs missing between entries in place were removed.
//! 5. Every entry's `prev` is the hash of the entry numbered one less (an edit with the hash
//!    recomputed breaks the next link).
//! 6. Every seal is signed by the given key and vouches for a hash the chain has; entries
//!    standing before a seal are covered by it (nothing was added after sealing).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::entry::{Recorded, GENESIS};
use crate::error::AuditError;
use crate::line::{entry_text, seal_text, Line};
use crate::seal::{PublicKey, Seal};

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entry lines in the file.
    pub entries: u64,
    /// Seal lines in the file.
    pub seals: u64,
    /// Every sign of tampering or damage, in file order.
    pub problems: Vec<Problem>,
    /// Entries after the last valid seal: not protected by a signature, so changes to them,
    /// or their removal, would leave no trace.
    pub unsealed_tail: u64,
}

/// One sign of tampering or damage, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file.
    pub line: u64,
    /// The entry on that line, if it is one.
    pub seq: Option<u64>,
    /// What is wrong and what it means, e.g. "entry 41's hash does not match its content: it
    /// was edited".
    pub what: String,
}

impl VerifyReport {
    /// Whether no problem was found. An unsealed tail is not a problem (the last second of a
    /// running server is always unsealed) but is not vouched for either: see
    /// [`unsealed_tail`](Self::unsealed_tail).
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = plural(self.entries, "entry", "entries");
        let seals = plural(self.seals, "seal", "seals");
        if self.is_intact() {
            write!(f, "{entries} and {seals}: intact")?;
        } else {
            let problems = plural(self.problems.len() as u64, "problem", "problems");
            write!(f, "{entries} and {seals}: {problems}")?;
            for problem in &self.problems {
                write!(f, "\n  {problem}")?;
            }
        }
        if self.unsealed_tail > 0 {
            write!(
                f,
                "\n{} after the last valid seal {} not protected by a signature: changes to \
                 them, or their removal, would leave no trace",
                plural(self.unsealed_tail, "entry", "entries"),
                if self.unsealed_tail == 1 { "is" } else { "are" },
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "line {} (entry {seq}): {}", self.line, self.what),
            None => write!(f, "line {}: {}", self.line, self.what),
        }
    }
}

/// Checks the whole file: every entry's hash, the links between entries, sequence numbers,
/// and every seal's signature against `key`.
///
/// Reads the file once, keeping only each entry's position, seq and hashes in memory. Errors
/// only when the file cannot be read; everything wrong inside it is a [`Problem`].
pub fn verify(log_file: &Path, key: &PublicKey) -> Result<VerifyReport, AuditError> {
    let file = File::open(log_file).map_err(|e| AuditError::io("open", log_file, e))?;
    let mut reader = BufReader::new(file);
    let mut check = Check::default();
    let mut line = 0u64;
    loop {
        let mut bytes = Vec::new();
        let read = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| AuditError::io("read", log_file, e))?;
        if read == 0 {
            break;
        }
        line += 1;
        let whole = bytes.last() == Some(&b'\n');
        if whole {
            bytes.pop();
        }
        check.line(line, &bytes, whole);
    }
    Ok(check.finish(key))
}

/// An entry as far as the checks need it.
struct Seen {
    line: u64,
    seq: u64,
    prev: String,
    hash: String,
    /// Its hash matches its content.
    hash_ok: bool,
    /// Already reported as inserted or moved: later checks leave it alone.
    reported: bool,
}

#[derive(Default)]
struct Check {
    entries: Vec<Seen>,
    seals: Vec<(u64, Seal)>,
    problems: Vec<Problem>,
}

impl Check {
    fn problem(&mut self, line: u64, seq: Option<u64>, what: String) {
        self.problems.push(Problem { line, seq, what });
    }

    /// Step 1: one line on its own.
    fn line(&mut self, line: u64, bytes: &[u8], whole: bool) {
        let parsed = std::str::from_utf8(bytes)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|text| Line::parse(text).map(|parsed| (text, parsed)));
        match parsed {
            Err(reason) if !whole => self.problem(
                line,
                None,
                format!(
                    "the last line is cut short ({reason}): the writer stopped while writing \
                     it; opening the log cuts it off"
                ),
            ),
            Err(reason) => self.problem(
                line,
                None,
                format!("line {line} is neither an entry nor a seal ({reason}): it was damaged or edited"),
            ),
            Ok((text, Line::Entry(recorded))) => self.entry(line, text, recorded),
            Ok((text, Line::Seal(seal))) => {
                if seal_text(&seal) != text {
                    self.problem(
                        line,
                        None,
                        format!(
                            "seal at line {line} is not written the way the log writes seals \
                             (an added or repeated key, or different formatting): it was edited"
                        ),
                    );
                }
                self.seals.push((line, seal));
            }
        }
    }

    fn entry(&mut self, line: u64, text: &str, recorded: Recorded) {
        let seq = recorded.seq;
        let hash_ok = recorded.content_hash() == recorded.hash;
        if !hash_ok {
            self.problem(
                line,
                Some(seq),
                format!("entry {seq}'s hash does not match its content: it was edited"),
            );
        } else if entry_text(&recorded) != text {
            self.problem(
                line,
                Some(seq),
                format!(
                    "entry {seq}'s line holds text that its hash does not cover (an added or \
                     repeated key, or different formatting): it was edited"
                ),
            );
        }
        self.entries.push(Seen {
            line,
            seq,
            prev: recorded.prev,
            hash: recorded.hash,
            hash_ok,
            reported: false,
        });
    }

    fn finish(mut self, key: &PublicKey) -> VerifyReport {
        let genuine = self.keep_one_per_seq(key);
        self.check_order(&genuine);
        self.check_links(&genuine);
        let sealed_through = self.check_seals(key, &genuine);
        let unsealed_tail = genuine
            .keys()
            .filter(|&&seq| sealed_through.is_none_or(|sealed| seq > sealed))
            .count() as u64;
        self.problems.sort_by_key(|p| p.line);
        VerifyReport {
            entries: self.entries.len() as u64,
            seals: self.seals.len() as u64,
            problems: self.problems,
            unsealed_tail,
        }
    }

    /// Step 2: for each seq, the entry the chain goes on from (its hash is the `prev` of an
    /// entry numbered one more, or a valid seal vouches for it, or its hash is right, or it
    /// comes first). Returns seq → index into `entries`.
    fn keep_one_per_seq(&mut self, key: &PublicKey) -> BTreeMap<u64, usize> {
        let mut by_seq: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (index, entry) in self.entries.iter().enumerate() {
            by_seq.entry(entry.seq).or_default().push(index);
        }
        let linked: HashSet<(u64, &str)> = self
            .entries
            .iter()
            .filter_map(|e| Some((e.seq.checked_sub(1)?, e.prev.as_str())))
            .collect();
        let sealed: HashSet<(u64, &str)> = self
            .seals
            .iter()
            .filter(|(_, seal)| key.signed(seal))
            .map(|(_, seal)| (seal.seq, seal.hash.as_str()))
            .collect();

        let mut genuine = BTreeMap::new();
        let mut inserted = Vec::new();
        for (seq, candidates) in by_seq {
            let evidence = |&index: &usize| {
                let e = &self.entries[index];
                let id = (seq, e.hash.as_str());
                (
                    linked.contains(&id),
                    sealed.contains(&id),
                    e.hash_ok,
                    std::cmp::Reverse(e.line),
                )
            };
            let kept = *candidates
                .iter()
                .max_by_key(|index| evidence(index))
                .expect("every seq has an entry");
            genuine.insert(seq, kept);
            inserted.extend(
                candidates
                    .into_iter()
                    .filter(|&index| index != kept)
                    .map(|index| (index, kept)),
            );
        }
        for (index, kept) in inserted {
            let (line, seq, kept_line) = (
                self.entries[index].line,
                self.entries[index].seq,
                self.entries[kept].line,
            );
            self.entries[index].reported = true;
            self.problem(
                line,
                Some(seq),
                format!(
                    "a second entry {seq}: the chain goes on from entry {seq} at line \
                     {kept_line}, so this one was inserted (or copied)"
                ),
            );
        }
        genuine
    }

    /// Steps 3 and 4: moved entries, then entries missing between those in place.
    fn check_order(&mut self, genuine: &BTreeMap<u64, usize>) {
        let mut in_file_order: Vec<usize> = genuine.values().copied().collect();
        in_file_order.sort_by_key(|&index| self.entries[index].line);
        let seqs: Vec<u64> = in_file_order.iter().map(|&i| self.entries[i].seq).collect();
        let keep = longest_increasing(&seqs);
        let placed: BTreeMap<u64, u64> = in_file_order
            .iter()
            .zip(&keep)
            .filter(|(_, &kept)| kept)
            .map(|(&i, _)| (self.entries[i].seq, self.entries[i].line))
            .collect();

        let mut previous: Option<u64> = None;
        for (&index, &in_place) in in_file_order.iter().zip(&keep) {
            let (line, seq) = (self.entries[index].line, self.entries[index].seq);
            if !in_place {
                self.entries[index].reported = true;
                let place = match (placed.range(..seq).next_back(), placed.range(seq..).next()) {
                    (Some((before, at)), _) if before + 1 == seq => {
                        format!("right after entry {before} (line {at})")
                    }
                    (Some((before, at)), _) => format!("after entry {before} (line {at})"),
                    (None, Some((after, at))) => format!("before entry {after} (line {at})"),
                    (None, None) => unreachable!("an entry out of place has one in place"),
                };
                self.problem(
                    line,
                    Some(seq),
                    format!(
                        "entries out of order: entry {seq} belongs {place}: entries were moved"
                    ),
                );
                continue;
            }
            let from = previous.map_or(0, |p| p + 1);
            let expected = seq - from;
            let missing = expected - genuine.range(from..seq).count() as u64;
            if missing > 0 {
                let removed = if missing == 1 && expected == 1 {
                    format!("entry {from} was removed")
                } else if missing == expected {
                    format!("entries {from} to {} were removed", seq - 1)
                } else {
                    format!("{missing} of the entries between them were removed")
                };
                let what = match previous {
                    Some(p) => format!("sequence jumps from {p} to {seq}: {removed}"),
                    None => format!("the log starts at entry {seq}, not 0: {removed}"),
                };
                self.problem(line, Some(seq), what);
            }
            previous = Some(seq);
        }
    }

    /// Step 5: each entry links to the hash of the entry numbered one less. Where that entry
    /// is missing, step 4 has said so.
    fn check_links(&mut self, genuine: &BTreeMap<u64, usize>) {
        for (&seq, &index) in genuine {
            let entry = &self.entries[index];
            let what = if seq == 0 {
                (entry.prev != GENESIS).then(|| {
                    "entry 0 does not start a chain (its previous hash is not 64 zeros): it was \
                     edited, or entries before it were removed"
                        .to_owned()
                })
            } else {
                let Some(&before) = genuine.get(&(seq - 1)) else {
                    continue;
                };
                let before = &self.entries[before];
                (entry.prev != before.hash).then(|| {
                    format!(
                        "entry {seq} links to a previous hash that is not entry {}'s (line {}): \
                         entry {} was edited and its hash recomputed, or an entry was removed \
                         or inserted before entry {seq}",
                        seq - 1,
                        before.line,
                        seq - 1
                    )
                })
            };
            if let Some(what) = what {
                let line = entry.line;
                self.problem(line, Some(seq), what);
            }
        }
    }

    /// Step 6: seals. Returns the last seq that a valid seal vouches for.
    fn check_seals(&mut self, key: &PublicKey, genuine: &BTreeMap<u64, usize>) -> Option<u64> {
        let key_id = key.key_id();
        let mut intact: Vec<(u64, u64)> = Vec::new(); // (line, seq) of seals that hold
        let mut last_good: Option<u64> = None;
        let seals = std::mem::take(&mut self.seals);
        for (line, seal) in &seals {
            let line = *line;
            if seal.key_id != key_id {
                self.problem(
                    line,
                    None,
                    format!(
                        "seal at line {line} names key {}, not the given key {key_id}: verify \
                         with the public key that sealed this log, or the seal was forged",
                        seal.key_id
                    ),
                );
                continue;
            }
            if !key.signed(seal) {
                self.problem(
                    line,
                    None,
                    format!(
                        "seal at line {line} has an invalid signature: it was edited or forged"
                    ),
                );
                continue;
            }
            let sealed = genuine.get(&seal.seq).map(|&i| &self.entries[i]);
            let what = match sealed {
                None => Some(format!(
                    "seal at line {line} vouches for entry {}, which the log does not have: it \
                     was removed",
                    seal.seq
                )),
                Some(entry) if entry.hash != seal.hash => {
                    // The change is somewhere after the last seal that holds.
                    let from = last_good.map_or(0, |seq| seq + 1);
                    let lines = genuine
                        .range(from..=seal.seq)
                        .map(|(_, &i)| self.entries[i].line);
                    let changed = match (lines.clone().min(), lines.max()) {
                        (Some(first), _) if from == seal.seq => {
                            format!("entry {from} (line {first}) was")
                        }
                        (Some(first), Some(last)) => {
                            format!(
                                "entries {from} to {} (lines {first} to {last}) were",
                                seal.seq
                            )
                        }
                        _ => format!("entries {from} to {} were", seal.seq),
                    };
                    Some(format!(
                        "seal at line {line} vouches for entry {} with a hash the chain no longer \
                         has: {changed} changed after sealing",
                        seal.seq
                    ))
                }
                Some(entry) if entry.line > line => Some(format!(
                    "seal at line {line} vouches for entry {}, which stands after it at line \
                     {}: lines were moved",
                    seal.seq, entry.line
                )),
                Some(_) => None,
            };
            match what {
                Some(what) => self.problem(line, None, what),
                None => {
                    intact.push((line, seal.seq));
                    last_good = last_good.max(Some(seal.seq));
                }
            }
        }
        self.seals = seals;

        // Entries before a seal must be among those it vouches for; if not, they were
        // written there after sealing.
        for &index in genuine.values() {
            let entry = &self.entries[index];
            if entry.reported {
                continue;
            }
            let next_seal = intact.partition_point(|&(line, _)| line < entry.line);
            if let Some(&(seal_line, sealed)) = intact.get(next_seal) {
                if entry.seq > sealed {
                    let (line, seq) = (entry.line, entry.seq);
                    self.problem(
                        line,
                        Some(seq),
                        format!(
                            "entry {seq} stands before the seal at line {seal_line}, which \
                             vouches only for entries up to {sealed}: it was added after sealing"
                        ),
                    );
                }
            }
        }
        last_good
    }
}

/// Marks one longest strictly increasing subsequence of `seqs`: the entries in place. The
/// others are the fewest entries whose moving explains the order.
fn longest_increasing(seqs: &[u64]) -> Vec<bool> {
    // Patience sorting: `ends[k]` is the index ending the best run of length k + 1 so far.
    let mut ends: Vec<usize> = Vec::new();
    let mut before: Vec<Option<usize>> = vec![None; seqs.len()];
    for (index, &seq) in seqs.iter().enumerate() {
        let at = ends.partition_point(|&end| seqs[end] < seq);
        before[index] = at.checked_sub(1).map(|k| ends[k]);
        if at == ends.len() {
            ends.push(index);
        } else {
            ends[at] = index;
        }
    }
    let mut keep = vec![false; seqs.len()];
    let mut next = ends.last().copied();
    while let Some(index) = next {
        keep[index] = true;
        next = before[index];
    }
    keep
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::log::AuditLog;
    use crate::seal::Sealer;
    use crate::testing::{entry, read_lines, write_lines};

    /// A log of entries 0..=9 sealed after 3, 7 and 9:
    ///
    /// ```text
    /// line:  1  2  3  4  5      6  7  8  9  10     11 12 13
    ///        e0 e1 e2 e3 seal3  e4 e5 e6 e7 seal7  e8 e9 seal9
    /// ```
    struct Sample {
        _dir: tempfile::TempDir,
        path: PathBuf,
        key: PublicKey,
        /// A key that did not seal this log.
        other: Sealer,
    }

    fn sample() -> Sample {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::generate();
        let key = sealer.public_key();
        let (log, _) = AuditLog::open(dir.path(), sealer).unwrap();
        let log = log.with_seal_every(4);
        for i in 0..10 {
            log.append(1_000 + i as i64, entry(i)).unwrap();
        }
        log.seal(2_000).unwrap();
        let path = log.path().to_owned();
        Sample {
            _dir: dir,
            path,
            key,
            other: Sealer::generate(),
        }
    }

    impl Sample {
        fn lines(&self) -> Vec<String> {
            read_lines(&self.path)
        }

        fn write(&self, lines: &[String]) {
            write_lines(&self.path, lines);
        }

        fn verify(&self) -> VerifyReport {
            verify(&self.path, &self.key).unwrap()
        }
    }

    fn parse_entry(line: &str) -> Recorded {
        serde_json::from_str(line).unwrap()
    }

    fn rehash(recorded: &mut Recorded) {
        recorded.hash = recorded.content_hash();
    }

    fn text(recorded: &Recorded) -> String {
        entry_text(recorded)
    }

    /// The problems' lines, and each problem's text for failure messages.
    fn lines_of(report: &VerifyReport) -> Vec<u64> {
        report.problems.iter().map(|p| p.line).collect()
    }

    fn assert_problems(report: &VerifyReport, lines: &[u64], words: &[&str]) {
        assert_eq!(lines_of(report), lines, "{report}");
        let all = report.to_string();
        for word in words {
            assert!(all.contains(word), "`{word}` not in:\n{all}");
        }
    }

    #[test]
    fn an_untouched_log_is_intact() {
        let sample = sample();
        assert_eq!(sample.lines().len(), 13);
        let report = sample.verify();
        assert!(report.is_intact(), "{report}");
        assert_eq!(
            (report.entries, report.seals, report.unsealed_tail),
            (10, 3, 0)
        );
        assert_eq!(report.to_string(), "10 entries and 3 seals: intact");
    }

    #[test]
    fn an_empty_log_is_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "").unwrap();
        let report = verify(&path, &Sealer::generate().public_key()).unwrap();
        assert!(report.is_intact());
        assert_eq!(
            (report.entries, report.seals, report.unsealed_tail),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let error = verify(
            Path::new("/nonexistent/audit.log"),
            &Sealer::generate().public_key(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("could not open"), "{error}");
    }

    #[test]
    fn an_entry_edited_in_place() {
        let sample = sample();
        let mut lines = sample.lines();
        lines[6] = lines[6].replace(r#""outcome":"allowed""#, r#""outcome":"denied""#);
        sample.write(&lines);
        let report = sample.verify();
        assert_problems(
            &report,
            &[7],
            &[
                "line 7 (entry 5)",
                "entry 5's hash does not match its content: it was edited",
            ],
        );
        assert_eq!(report.problems[0].seq, Some(5));
    }

    #[test]
    fn an_entry_edited_with_its_hash_recomputed_breaks_the_next_link() {
        let sample = sample();
        let mut lines = sample.lines();
        let mut edited = parse_entry(&lines[6]);
        edited.entry.fields.clear();
        rehash(&mut edited);
        lines[6] = text(&edited);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[8],
            &["entry 6 links to a previous hash that is not entry 5's (line 7)"],
        );
    }

    #[test]
    fn the_last_sealed_entry_edited_with_its_hash_recomputed_breaks_the_seal() {
        let sample = sample();
        let mut lines = sample.lines();
        let mut edited = parse_entry(&lines[11]);
        edited.entry.who = "someone-else".into();
        rehash(&mut edited);
        lines[11] = text(&edited);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[13],
            &["seal at line 13 vouches for entry 9 with a hash the chain no longer has: entries 8 to 9 (lines 11 to 12) were changed after sealing"],
        );
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_the_seals() {
        let sample = sample();
        let mut lines = sample.lines();
        // Edit entry 5 and recompute every hash and link after it.
        let mut head = parse_entry(&lines[5]).hash;
        for line in &mut lines[6..] {
            if line.starts_with(r#"{"seal""#) {
                continue;
            }
            let mut recorded = parse_entry(line);
            if recorded.seq == 5 {
                recorded.entry.subjects = vec!["hh-other".into()];
            }
            recorded.prev = head;
            rehash(&mut recorded);
            head = recorded.hash.clone();
            *line = text(&recorded);
        }
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[10, 13],
            &[
                "line 10: seal at line 10 vouches for entry 7 with a hash the chain no longer \
                 has: entries 4 to 7 (lines 6 to 9) were changed after sealing",
                "line 13: seal at line 13 vouches for entry 9 with a hash the chain no longer \
                 has: entries 4 to 9 (lines 6 to 12) were changed",
            ],
        );
    }

    #[test]
    fn a_deleted_entry() {
        let sample = sample();
        let mut lines = sample.lines();
        lines.remove(6);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[7],
            &["line 7 (entry 6): sequence jumps from 4 to 6: entry 5 was removed"],
        );
    }

    #[test]
    fn deleted_entries_at_the_start() {
        let sample = sample();
        let mut lines = sample.lines();
        lines.drain(0..2);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[1],
            &["the log starts at entry 2, not 0: entries 0 to 1 were removed"],
        );
    }

    #[test]
    fn two_swapped_entries() {
        let sample = sample();
        let mut lines = sample.lines();
        lines.swap(6, 7);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[7],
            &["line 7 (entry 6): entries out of order: entry 6 belongs right after entry 5 (line 8)"],
        );
    }

    #[test]
    fn an_entry_moved_to_the_end() {
        let sample = sample();
        let mut lines = sample.lines();
        let moved = lines.remove(1);
        lines.insert(11, moved);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[12],
            &["entry 1 belongs right after entry 0 (line 1)"],
        );
    }

    #[test]
    fn an_inserted_entry_with_a_made_up_hash() {
        let sample = sample();
        let mut lines = sample.lines();
        let mut forged = parse_entry(&lines[6]);
        forged.entry.who = "intruder".into();
        forged.hash = "f".repeat(64);
        lines.insert(6, text(&forged));
        sample.write(&lines);
        let report = sample.verify();
        assert_problems(
            &report,
            &[7, 7],
            &[
                "entry 5's hash does not match",
                "a second entry 5: the chain goes on from entry 5 at line 8",
            ],
        );
    }

    #[test]
    fn an_inserted_entry_that_links_and_hashes_correctly() {
        let sample = sample();
        let mut lines = sample.lines();
        // Entry 5 forged after entry 4, linked to it, hashed right, placed before the real 5.
        let mut forged = parse_entry(&lines[6]);
        forged.entry.action = "household.delete".into();
        rehash(&mut forged);
        lines.insert(6, text(&forged));
        sample.write(&lines);
        assert_problems(&sample.verify(), &[7], &["a second entry 5: the chain goes on from entry 5 at line 8, so this one was inserted"]);

        // The same placed after the real entry 5.
        let mut lines = sample.lines();
        let forged = lines.remove(6);
        lines.insert(7, forged);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[8],
            &["the chain goes on from entry 5 at line 7"],
        );
    }

    #[test]
    fn an_inserted_entry_with_a_new_number() {
        let sample = sample();
        let mut lines = sample.lines();
        let mut forged = parse_entry(&lines[6]);
        forged.seq = 1_000;
        rehash(&mut forged);
        lines.insert(6, text(&forged));
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[7],
            &["entry 1000 belongs after entry 9 (line 13)"],
        );
    }

    #[test]
    fn an_entry_added_before_the_last_seal() {
        let sample = sample();
        let mut lines = sample.lines();
        let last = parse_entry(&lines[11]);
        let forged = Recorded::chained(10, 1_999, entry(42), last.hash);
        lines.insert(12, text(&forged));
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[13],
            &["entry 10 stands before the seal at line 14, which vouches only for entries up to 9: it was added after sealing"],
        );
    }

    #[test]
    fn a_line_that_is_not_an_entry() {
        let sample = sample();
        let mut lines = sample.lines();
        lines.insert(3, "hello".into());
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[4],
            &["line 4 is neither an entry nor a seal (not JSON"],
        );
    }

    #[test]
    fn text_outside_the_hash() {
        let sample = sample();
        let mut lines = sample.lines();
        lines[2] = lines[2].replacen('{', r#"{"note":"looked fine to me","#, 1);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[3],
            &["entry 2's line holds text that its hash does not cover"],
        );
    }

    #[test]
    fn a_seal_with_a_changed_signature() {
        let sample = sample();
        let mut lines = sample.lines();
        let at = lines[9].find(r#""signature":""#).unwrap() + r#""signature":""#.len();
        let flipped = if &lines[9][at..at + 1] == "0" {
            "1"
        } else {
            "0"
        };
        lines[9].replace_range(at..at + 1, flipped);
        sample.write(&lines);
        assert_problems(
            &sample.verify(),
            &[10],
            &["seal at line 10 has an invalid signature: it was edited or forged"],
        );
    }

    #[test]
    fn a_seal_over_a_different_hash() {
        let sample = sample();
        let mut lines = sample.lines();
        let sealed = parse_entry(&lines[8]).hash;
        lines[9] = lines[9].replace(&sealed, &"a".repeat(64));
        sample.write(&lines);
        assert_problems(&sample.verify(), &[10], &["invalid signature"]);
    }

    #[test]
    fn a_seal_signed_with_another_key() {
        let sample = sample();
        let mut lines = sample.lines();
        let last = parse_entry(&lines[11]);
        let mut forged = sample.other.seal(last.seq, &last.hash, 3_000);
        forged.key_id = sample.key.key_id();
        lines[12] = seal_text(&forged);
        sample.write(&lines);
        let report = sample.verify();
        assert_problems(
            &report,
            &[13],
            &["seal at line 13 has an invalid signature"],
        );
        assert_eq!(report.unsealed_tail, 2);
    }

    #[test]
    fn verifying_with_the_wrong_key_says_so() {
        let sample = sample();
        let other = Sealer::generate().public_key();
        let report = verify(&sample.path, &other).unwrap();
        assert_problems(
            &report,
            &[5, 10, 13],
            &["verify with the public key that sealed this log"],
        );
        assert_eq!(report.unsealed_tail, 10);
    }

    #[test]
    fn removed_seals_only_grow_the_unsealed_tail() {
        let sample = sample();
        let mut lines = sample.lines();
        lines.remove(9);
        sample.write(&lines);
        let report = sample.verify();
        assert!(report.is_intact(), "{report}");
        assert_eq!(report.unsealed_tail, 0);

        lines.pop();
        sample.write(&lines);
        let report = sample.verify();
        assert!(report.is_intact(), "{report}");
        assert_eq!((report.seals, report.unsealed_tail), (1, 6));
        assert_eq!(
            report.to_string(),
            "10 entries and 1 seal: intact\n6 entries after the last valid seal are not \
             protected by a signature: changes to them, or their removal, would leave no trace"
        );
    }

    #[test]
    fn a_cut_short_last_line() {
        let sample = sample();
        let mut text = std::fs::read_to_string(&sample.path).unwrap();
        text.push_str(r#"{"seq":10,"at_"#);
        std::fs::write(&sample.path, text).unwrap();
        assert_problems(&sample.verify(), &[14], &["the last line is cut short"]);
    }

    #[test]
    fn problems_are_listed_one_per_line_in_file_order() {
        let sample = sample();
        let mut lines = sample.lines();
        lines[9] = lines[9].replace(r#""at_ms":"#, r#""at_ms":1"#);
        lines[2] = lines[2].replace("caseworker", "admin");
        sample.write(&lines);
        let report = sample.verify();
        let text = report.to_string();
        let mut shown = text.lines();
        assert_eq!(shown.next(), Some("10 entries and 3 seals: 2 problems"));
        assert!(
            shown.next().unwrap().starts_with("  line 3 (entry 2): "),
            "{text}"
        );
        assert!(
            shown
                .next()
                .unwrap()
                .starts_with("  line 10: seal at line 10"),
            "{text}"
        );
        assert_eq!(shown.next(), None);
    }

    #[test]
    fn longest_increasing_keeps_the_most_entries_in_place() {
        let kept = |seqs: &[u64]| -> Vec<u64> {
            seqs.iter()
                .zip(longest_increasing(seqs))
                .filter(|(_, keep)| *keep)
                .map(|(&s, _)| s)
                .collect()
        };
        assert_eq!(kept(&[0, 1, 2, 3]), [0, 1, 2, 3]);
        assert_eq!(kept(&[0, 2, 1, 3]), [0, 1, 3]);
        assert_eq!(kept(&[9, 0, 1, 2]), [0, 1, 2]);
        assert_eq!(kept(&[0, 1, 9, 2, 3]), [0, 1, 2, 3]);
        assert_eq!(kept(&[]), Vec::<u64>::new());
    }
}
