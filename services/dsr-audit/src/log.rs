//! The append-only audit file: append, seal, query, and reopening after a crash.
//!
//! Every append is one `write` of one whole line to a file opened for appending, so an entry
//! is in the operating system's hands when [`AuditLog::append`] returns; seals are where the
//! file is synced to disk, which is why the server seals every second. A crash can leave a
//! partly written last line: [`AuditLog::open`] cuts it off and says so, and the chain goes on
//! from the last whole entry.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Deserialize;

use crate::entry::{AuditEntry, Recorded, GENESIS};
use crate::error::AuditError;
use crate::line::{entry_text, seal_text, Line};
use crate::seal::Sealer;

/// The log's file name inside its directory.
pub const FILE_NAME: &str = "audit.log";

/// How many entries [`AuditLog::append`] lets pass before it seals by itself, unless
/// [`AuditLog::with_seal_every`] says otherwise.
pub const DEFAULT_SEAL_EVERY: u64 = 256;

/// The audit log of one process. All methods take `&self`: it is shared by every request
/// handler (`Send + Sync`, one lock around the file and the chain head).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    sealer: Sealer,
    seal_every: u64,
    state: Mutex<State>,
}

/// What [`AuditLog::open`] found in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The seq the next entry gets: the number of entries the chain already has.
    pub next_seq: u64,
    /// Entries after the last seal, left by a process that stopped before sealing; the next
    /// [`AuditLog::seal`] covers them.
    pub unsealed: u64,
    /// The partial last line that was cut off, if the previous writer stopped mid-line.
    pub torn_tail: Option<TornTail>,
}

/// A partial last line, cut off by [`AuditLog::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Its 1-based line number.
    pub line: u64,
    /// Its byte offset: the file's length after the cut.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
}

/// Which entries [`AuditLog::query`] returns. Every given condition must hold; an empty filter
/// matches every entry. Deserializable so that it can come straight from query parameters.
#[derive(Default, Clone, Debug, Deserialize)]
pub struct Filter {
    /// The client id that acted, exactly.
    pub who: Option<String>,
    /// The action, exactly (e.g. "household.read").
    pub action: Option<String>,
    /// A household or person id among the entry's subjects.
    pub subject: Option<String>,
    /// Entries at or after this time (ms since the Unix epoch).
    pub from_ms: Option<i64>,
    /// Entries before this time (exclusive, so that consecutive windows do not overlap).
    pub to_ms: Option<i64>,
    /// Entries with a greater seq: a cursor for reading forward page by page.
    pub after_seq: Option<u64>,
}

impl Filter {
    /// Whether `recorded` meets every condition of the filter.
    pub fn matches(&self, recorded: &Recorded) -> bool {
        let entry = &recorded.entry;
        self.who.as_ref().is_none_or(|who| entry.who == *who)
            && self.action.as_ref().is_none_or(|a| entry.action == *a)
            && self
                .subject
                .as_ref()
                .is_none_or(|s| entry.subjects.contains(s))
            && self.from_ms.is_none_or(|from| recorded.at_ms >= from)
            && self.to_ms.is_none_or(|to| recorded.at_ms < to)
            && self.after_seq.is_none_or(|after| recorded.seq > after)
    }
}

/// What the lock guards: the file and where the chain stands.
#[derive(Debug)]
struct State {
    file: File,
    /// The file's length in whole lines written by this process or found at open; readers
    /// read no further, so they never see a line being written.
    len: u64,
    next_seq: u64,
    /// The last entry's hash: the next entry's `prev`.
    head: String,
    /// Entries since the last seal.
    unsealed: u64,
    /// A seal was written but the file not yet synced (the sync failed): the next seal syncs.
    unsynced: bool,
    /// A failed write left a partial line that could not be removed: appending more would
    /// glue entries onto it.
    broken: bool,
}

impl AuditLog {
    /// Opens (creating) `dir/audit.log`; continues the chain from the last entry (reads the
    /// file once; if the tail line is torn (no newline / not JSON) it is truncated and that is
    /// reported via `tracing::warn` and returned in an [`OpenReport`]).
    ///
    /// Opening does not verify the chain (that is [`verify`](crate::verify())): it trusts the
    /// last entry's hash and links to it, so that a tampered file stays visibly tampered.
    pub fn open(dir: &Path, sealer: Sealer) -> Result<(AuditLog, OpenReport), AuditError> {
        fs::create_dir_all(dir).map_err(|e| AuditError::io("create the directory", dir, e))?;
        let path = dir.join(FILE_NAME);
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        // Ids of people are personal data too: the log is for the server's eyes only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| AuditError::io("open", &path, e))?;

        let tail = scan(&path, &file)?;
        if let Some(torn) = &tail.torn {
            file.set_len(torn.offset)
                .and_then(|()| file.sync_data())
                .map_err(|e| AuditError::io("cut the partial last line of", &path, e))?;
            tracing::warn!(
                path = %path.display(),
                line = torn.line,
                bytes = torn.bytes,
                "cut off a partial last line of the audit log: the previous process stopped while \
                 writing it, so that entry was never completed"
            );
        }
        let (next_seq, head) = match tail.last_entry {
            Some(last) => (last.seq + 1, last.hash),
            None => (0, GENESIS.to_owned()),
        };
        let report = OpenReport {
            next_seq,
            unsealed: tail.unsealed,
            torn_tail: tail.torn,
        };
        let state = State {
            file,
            len: tail.len,
            next_seq,
            head,
            unsealed: tail.unsealed,
            unsynced: false,
            broken: false,
        };
        let log = AuditLog {
            path,
            sealer,
            seal_every: DEFAULT_SEAL_EVERY,
            state: Mutex::new(state),
        };
        Ok((log, report))
    }

    /// Seals by itself after every `n` entries (0: only when [`seal`](Self::seal) is called).
    pub fn with_seal_every(mut self, n: u64) -> AuditLog {
        self.seal_every = n;
        self
    }

    /// Appends one entry at time `at_ms` (caller's clock — pass it in, so tests control time),
    /// returns its seq (0-based, increasing by 1). Written and flushed to the OS before
    /// returning. Seals automatically every `seal_every` entries (default 256,
    /// [`with_seal_every`](Self::with_seal_every) builder).
    ///
    /// A failed automatic seal is logged, not returned: the entry is written, and the next
    /// seal covers it.
    pub fn append(&self, at_ms: i64, entry: AuditEntry) -> Result<u64, AuditError> {
        let mut state = self.lock();
        let seq = state.next_seq;
        let recorded = Recorded::chained(seq, at_ms, entry, state.head.clone());
        state.write_line(&self.path, &entry_text(&recorded))?;
        state.next_seq += 1;
        state.head = recorded.hash;
        state.unsealed += 1;
        if self.seal_every > 0 && state.unsealed >= self.seal_every {
            if let Err(error) = self.seal_locked(&mut state, at_ms) {
                tracing::warn!(%error, seq, "could not seal the audit log; the next seal retries");
            }
        }
        Ok(seq)
    }

    /// Writes a seal over everything appended since the last seal (no-op returning `None` if
    /// nothing new) and fdatasyncs the file. The server calls this every second and at
    /// shutdown. Returns the seq of the last entry sealed.
    pub fn seal(&self, at_ms: i64) -> Result<Option<u64>, AuditError> {
        let mut state = self.lock();
        self.seal_locked(&mut state, at_ms)
    }

    /// Entries matching the filter, newest last, at most `limit`, read from the file.
    ///
    /// Without `after_seq` these are the newest `limit` matches; with it, the first `limit`
    /// matches after that seq, so that a reader can page forward with the last seq it got.
    /// Damaged lines are skipped with a warning: the verifier is the place to examine them.
    pub fn query(&self, filter: &Filter, limit: usize) -> Result<Vec<Recorded>, AuditError> {
        let len = self.lock().len;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let file = File::open(&self.path).map_err(|e| AuditError::io("open", &self.path, e))?;
        let paging_forward = filter.after_seq.is_some();
        let mut found = VecDeque::new();
        for (index, line) in BufReader::new(file.take(len)).split(b'\n').enumerate() {
            let line = line.map_err(|e| AuditError::io("read", &self.path, e))?;
            let recorded = match parse(&line) {
                Ok(Line::Entry(recorded)) => recorded,
                Ok(Line::Seal(_)) => continue,
                Err(reason) => {
                    tracing::warn!(
                        path = %self.path.display(),
                        line = index + 1,
                        reason,
                        "skipped a damaged line of the audit log; run the verifier on it"
                    );
                    continue;
                }
            };
            if !filter.matches(&recorded) {
                continue;
            }
            found.push_back(recorded);
            if found.len() > limit {
                found.pop_front();
            }
            if paging_forward && found.len() == limit {
                break;
            }
        }
        Ok(found.into())
    }

    /// The log file: `dir/audit.log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn seal_locked(&self, state: &mut State, at_ms: i64) -> Result<Option<u64>, AuditError> {
        let sealed = if state.unsealed > 0 {
            let seq = state.next_seq - 1;
            let seal = self.sealer.seal(seq, &state.head, at_ms);
            state.write_line(&self.path, &seal_text(&seal))?;
            state.unsealed = 0;
            state.unsynced = true;
            Some(seq)
        } else {
            None
        };
        if state.unsynced {
            state
                .file
                .sync_data()
                .map_err(|e| AuditError::io("sync", &self.path, e))?;
            state.unsynced = false;
        }
        Ok(sealed)
    }

    /// The state, also after a panic elsewhere while it was held: every change to it is made
    /// after its write succeeded, so it is consistent at every point a panic could occur.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Writes `text` and a newline in one write. If that fails, cuts the file back to its last
    /// whole line, so that the next line does not start in the middle of this one.
    fn write_line(&mut self, path: &Path, text: &str) -> Result<(), AuditError> {
        if self.broken {
            return Err(AuditError::Broken {
                path: path.to_owned(),
            });
        }
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        match self.file.write_all(&bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(path = %path.display(), error = %cut, "could not remove a partial line from the audit log");
                    self.broken = true;
                }
                Err(AuditError::io("append to", path, e))
            }
        }
    }
}

/// What [`scan`] learns from the file.
struct Tail {
    /// Length of the whole lines to keep.
    len: u64,
    last_entry: Option<Recorded>,
    /// Entries after the last seal.
    unsealed: u64,
    torn: Option<TornTail>,
}

/// Reads the file once, front to back, without parsing the lines in the middle: only the last
/// line (which may be torn) and the last entry are parsed. Lines are told apart by their
/// start, as the log writes seals as `{"seal":…`.
fn scan(path: &Path, file: &File) -> Result<Tail, AuditError> {
    /// A whole line, judged once it is known whether it is the last.
    struct Whole {
        line: u64,
        offset: u64,
        text: Vec<u8>,
    }

    let mut reader = BufReader::new(file);
    let mut offset = 0u64;
    let mut line = 0u64;
    let mut previous: Option<Whole> = None;
    let mut last_entry: Option<Whole> = None;
    let mut unsealed = 0u64;
    let mut torn = None;
    loop {
        let mut text = Vec::new();
        let read = reader
            .read_until(b'\n', &mut text)
            .map_err(|e| AuditError::io("read", path, e))? as u64;
        if read == 0 {
            break;
        }
        line += 1;
        if text.pop() != Some(b'\n') {
            // Only the very last piece of a file can lack its newline.
            torn = Some(TornTail {
                line,
                offset,
                bytes: read,
            });
            break;
        }
        if let Some(whole) = previous.take() {
            if whole.text.starts_with(br#"{"seal":"#) {
                unsealed = 0;
            } else {
                unsealed += 1;
                last_entry = Some(whole);
            }
        }
        previous = Some(Whole { line, offset, text });
        offset += read;
    }

    let mut len = offset;
    let mut last = None;
    if let Some(whole) = previous {
        match parse(&whole.text) {
            Ok(Line::Seal(_)) => unsealed = 0,
            Ok(Line::Entry(recorded)) => {
                unsealed += 1;
                last = Some(recorded);
            }
            Err(reason) if torn.is_none() => {
                tracing::debug!(
                    line = whole.line,
                    reason,
                    "the last line of the audit log is torn"
                );
                len = whole.offset;
                torn = Some(TornTail {
                    line: whole.line,
                    offset: whole.offset,
                    bytes: whole.text.len() as u64 + 1,
                });
            }
            Err(reason) => {
                return Err(AuditError::Damaged {
                    path: path.to_owned(),
                    line: whole.line,
                    reason,
                })
            }
        }
    }
    if last.is_none() {
        if let Some(whole) = last_entry {
            match parse(&whole.text) {
                Ok(Line::Entry(recorded)) => last = Some(recorded),
                Ok(Line::Seal(_)) => {
                    return Err(AuditError::Damaged {
                        path: path.to_owned(),
                        line: whole.line,
                        reason: "a seal not written the way the log writes seals".into(),
                    })
                }
                Err(reason) => {
                    return Err(AuditError::Damaged {
                        path: path.to_owned(),
                        line: whole.line,
                        reason,
                    })
                }
            }
        }
    }
    Ok(Tail {
        len,
        last_entry: last,
        unsealed,
        torn,
    })
}

/// Parses one line's bytes (without the newline).
fn parse(bytes: &[u8]) -> Result<Line, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    Line::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{entry, read_lines, write_lines};

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_log_is_shared_across_threads() {
        assert_send_sync::<AuditLog>();
    }

    #[test]
    fn appends_from_many_threads_make_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::generate();
        let key = sealer.public_key();
        let (log, _) = AuditLog::open(dir.path(), sealer).unwrap();
        let log = log.with_seal_every(7);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let log = &log;
                scope.spawn(move || {
                    for i in 0..50 {
                        log.append(i, entry(t * 100 + i as usize)).unwrap();
                    }
                });
            }
        });
        log.seal(99).unwrap();
        let all = log.query(&Filter::default(), 1_000).unwrap();
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (0..200).collect::<Vec<_>>()
        );
        let report = crate::verify(log.path(), &key).unwrap();
        assert!(report.is_intact(), "{report}");
        assert_eq!((report.entries, report.unsealed_tail), (200, 0));
    }

    #[test]
    fn appends_chain_and_number_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        assert_eq!(
            report,
            OpenReport {
                next_seq: 0,
                unsealed: 0,
                torn_tail: None
            }
        );
        assert_eq!(log.path(), dir.path().join("audit.log"));
        for i in 0..3 {
            assert_eq!(log.append(100 + i as i64, entry(i)).unwrap(), i as u64);
        }
        let all = log.query(&Filter::default(), 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].prev, GENESIS);
        assert_eq!(all[1].prev, all[0].hash);
        assert_eq!(all[2].prev, all[1].hash);
        assert!(all.iter().all(|r| r.content_hash() == r.hash));
        assert_eq!(all[2].at_ms, 102);
    }

    #[test]
    fn seal_covers_what_is_new_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        assert_eq!(log.seal(1).unwrap(), None);
        log.append(1, entry(0)).unwrap();
        log.append(2, entry(1)).unwrap();
        assert_eq!(log.seal(3).unwrap(), Some(1));
        assert_eq!(log.seal(4).unwrap(), None);
        let lines = read_lines(log.path());
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with(r#"{"seal":{"seq":1,"#), "{}", lines[2]);
    }

    #[test]
    fn seals_by_itself_every_n_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        let log = log.with_seal_every(2);
        for i in 0..5 {
            log.append(i, entry(i as usize)).unwrap();
        }
        let seals: Vec<_> = read_lines(log.path())
            .into_iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with(r#"{"seal""#))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(seals, [3, 6]);
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let sealer_path = dir.path().join("key");
        let (log, _) =
            AuditLog::open(dir.path(), Sealer::load_or_create(&sealer_path).unwrap()).unwrap();
        log.append(1, entry(0)).unwrap();
        log.append(2, entry(1)).unwrap();
        log.seal(3).unwrap();
        log.append(4, entry(2)).unwrap();
        drop(log);

        let (log, report) =
            AuditLog::open(dir.path(), Sealer::load_or_create(&sealer_path).unwrap()).unwrap();
        assert_eq!(
            report,
            OpenReport {
                next_seq: 3,
                unsealed: 1,
                torn_tail: None
            }
        );
        assert_eq!(log.append(5, entry(3)).unwrap(), 3);
        assert_eq!(log.seal(6).unwrap(), Some(3));
        let all = log.query(&Filter::default(), 10).unwrap();
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(all[3].prev, all[2].hash);

        let key = Sealer::load_or_create(&sealer_path).unwrap().public_key();
        let report = crate::verify(log.path(), &key).unwrap();
        assert!(report.is_intact(), "{report}");
        assert_eq!(report.unsealed_tail, 0);
    }

    #[test]
    fn reopening_after_a_seal_starts_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        log.append(1, entry(0)).unwrap();
        log.seal(2).unwrap();
        drop(log);
        let (log, report) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        assert_eq!(report.next_seq, 1);
        assert_eq!(report.unsealed, 0);
        assert_eq!(log.seal(3).unwrap(), None);
    }

    #[test]
    fn a_torn_tail_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let sealer_path = dir.path().join("key");
        let (log, _) =
            AuditLog::open(dir.path(), Sealer::load_or_create(&sealer_path).unwrap()).unwrap();
        log.append(1, entry(0)).unwrap();
        log.append(2, entry(1)).unwrap();
        let path = log.path().to_owned();
        drop(log);
        let whole = fs::read(&path).unwrap();
        let mut lines = read_lines(&path);
        let half = lines[1][..40].to_owned();
        lines[1] = half.clone();
        fs::write(&path, format!("{}\n{}", lines[0], half)).unwrap();

        let (log, report) =
            AuditLog::open(dir.path(), Sealer::load_or_create(&sealer_path).unwrap()).unwrap();
        let first_len = lines[0].len() as u64 + 1;
        assert_eq!(
            report,
            OpenReport {
                next_seq: 1,
                unsealed: 1,
                torn_tail: Some(TornTail {
                    line: 2,
                    offset: first_len,
                    bytes: 40
                })
            }
        );
        assert_eq!(fs::read(&path).unwrap(), whole[..first_len as usize]);
        assert_eq!(log.append(3, entry(2)).unwrap(), 1);
        log.seal(4).unwrap();
        let key = Sealer::load_or_create(&sealer_path).unwrap().public_key();
        let report = crate::verify(&path, &key).unwrap();
        assert!(report.is_intact(), "{report}");
    }

    #[test]
    fn a_whole_but_unreadable_last_line_is_cut_too() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        log.append(1, entry(0)).unwrap();
        let path = log.path().to_owned();
        drop(log);
        let mut lines = read_lines(&path);
        lines.push("\0\0\0\0".into());
        write_lines(&path, &lines);
        let (_, report) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        assert_eq!(report.next_seq, 1);
        assert_eq!(report.torn_tail.unwrap().line, 2);
        assert_eq!(read_lines(&path).len(), 1);
    }

    #[test]
    fn a_damaged_last_entry_before_the_tail_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        log.append(1, entry(0)).unwrap();
        log.seal(2).unwrap();
        let path = log.path().to_owned();
        drop(log);
        let mut lines = read_lines(&path);
        lines[0] = "garbage".into();
        write_lines(&path, &lines);
        let error = AuditLog::open(dir.path(), Sealer::generate()).unwrap_err();
        assert!(
            matches!(error, AuditError::Damaged { line: 1, .. }),
            "{error}"
        );
    }

    #[test]
    fn query_filters_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path(), Sealer::generate()).unwrap();
        let log = log.with_seal_every(3);
        for i in 0..10 {
            let mut e = entry(i);
            e.who = if i % 2 == 0 { "even" } else { "odd" }.into();
            e.action = if i < 5 {
                "household.read"
            } else {
                "client.create"
            }
            .into();
            e.subjects = vec![format!("hh-{}", i % 3)];
            log.append(1000 + i as i64, e).unwrap();
        }
        let seqs = |filter: Filter, limit| -> Vec<u64> {
            log.query(&filter, limit)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect()
        };
        assert_eq!(seqs(Filter::default(), 100), (0..10).collect::<Vec<_>>());
        assert_eq!(seqs(Filter::default(), 3), [7, 8, 9]);
        assert_eq!(seqs(Filter::default(), 0), Vec::<u64>::new());
        let who = |w: &str| Filter {
            who: Some(w.into()),
            ..Filter::default()
        };
        assert_eq!(seqs(who("odd"), 100), [1, 3, 5, 7, 9]);
        assert_eq!(seqs(who("nobody"), 100), Vec::<u64>::new());
        let action = Filter {
            action: Some("client.create".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(action, 100), [5, 6, 7, 8, 9]);
        let subject = Filter {
            subject: Some("hh-1".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(subject, 100), [1, 4, 7]);
        let window = Filter {
            from_ms: Some(1002),
            to_ms: Some(1005),
            ..Filter::default()
        };
        assert_eq!(seqs(window, 100), [2, 3, 4]);
        let page = |after| Filter {
            after_seq: Some(after),
            ..Filter::default()
        };
        assert_eq!(seqs(page(2), 3), [3, 4, 5]);
        assert_eq!(seqs(page(5), 3), [6, 7, 8]);
        assert_eq!(seqs(page(8), 3), [9]);
        let combined = Filter {
            who: Some("even".into()),
            action: Some("household.read".into()),
            from_ms: Some(1001),
            ..Filter::default()
        };
        assert_eq!(seqs(combined, 100), [2, 4]);
    }

    #[test]
    fn filter_comes_from_query_parameters() {
        let filter: Filter =
            serde_json::from_str(r#"{"who":"app-7","after_seq":41,"to_ms":5}"#).unwrap();
        assert_eq!(filter.who.as_deref(), Some("app-7"));
        assert_eq!(filter.after_seq, Some(41));
        assert_eq!(filter.to_ms, Some(5));
        assert!(filter.action.is_none());
    }
}
