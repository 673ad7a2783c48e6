//! The journal: one append-only sequence of segment files holding the frames of every topic,
//! partition and group commit, so that one `fdatasync` makes a whole group of appends durable
//! (this disk does ~4k fdatasync/s; one file per partition would pay one per partition).
//!
//! A position in the journal is a byte address across segments: segment files are named by the
//! address of their first byte (`00000000000268435456.log`) and a new one starts once the
//! active one passes its size ([`SEGMENT_BYTES`] unless the log was opened with another).

use super::frame::{self, Frame, FrameError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A new segment starts after this many bytes, by default. Compaction never touches the active
/// segment, so smaller segments let it reach records sooner, at the cost of more files.
pub const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// A segment file open for reading.
#[derive(Clone, Debug)]
pub struct Segment {
    pub base: u64,
    pub file: Arc<File>,
}

/// What recovery found and did, for the start-up log and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub frames: u64,
    pub bytes: u64,
    /// A torn or corrupt tail that was cut off (the writes it held were never acknowledged).
    pub truncated: Option<Truncated>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncated {
    pub segment: PathBuf,
    /// Where in the segment the valid data ends.
    pub at: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames in {} bytes of {} segment(s)",
            self.frames, self.bytes, self.segments
        )?;
        if let Some(t) = &self.truncated {
            write!(
                f,
                "; cut a torn tail of {} bytes at {} in {} ({})",
                t.dropped_bytes,
                t.at,
                t.segment.display(),
                t.reason
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{what} `{path}`: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "segment `{path}` is damaged at byte {at} ({reason}) and is not the last segment, so \
         this is not a torn write: restore the data directory from a backup, or move the damaged \
         segment and those after it away to start from the records before it"
    )]
    DamagedSegment {
        path: PathBuf,
        at: u64,
        reason: String,
    },
    #[error("segments do not follow each other: `{path}` starts at {base}, expected {expected}")]
    Gap {
        path: PathBuf,
        base: u64,
        expected: u64,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Reads every segment of `dir` in order, calling `visit(position, length, frame)` for each
/// valid frame; cuts a torn tail off the last segment. Returns the open segments (the last one
/// is where appends continue) and the report.
pub fn recover(
    dir: &Path,
    mut visit: impl FnMut(u64, u32, Frame),
) -> Result<(Vec<Segment>, RecoveryReport), JournalError> {
    std::fs::create_dir_all(dir).map_err(io("cannot create the log directory", dir))?;
    let mut bases: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("cannot list the log directory", dir))? {
        let entry = entry.map_err(io("cannot list the log directory", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".rekey") || name.ends_with(".compact") {
            // A re-encryption or compaction that stopped before renaming its new file over the
            // old one: the old file is whole and still the segment.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if let Some(base) = name
            .strip_suffix(".log")
            .and_then(|b| b.parse::<u64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut report = RecoveryReport {
        segments: bases.len(),
        ..Default::default()
    };
    let mut segments = Vec::new();
    let mut expected = 0u64;
    for (index, base) in bases.iter().copied().enumerate() {
        let path = segment_path(dir, base);
        if base != expected {
            return Err(JournalError::Gap {
                path,
                base,
                expected,
            });
        }
        let last = index + 1 == bases.len();
        let bytes = std::fs::read(&path).map_err(io("cannot read segment", &path))?;
        let mut at = 0usize;
        // A compacted segment spans more of the journal's addresses than its file holds.
        let mut logical_length = None;
        while at < bytes.len() {
            match frame::decode(&bytes[at..]) {
                Ok((
                    Frame::Compacted {
                        logical_length: spans,
                    },
                    length,
                )) if at == 0 => {
                    if spans < bytes.len() as u64 {
                        return Err(JournalError::DamagedSegment {
                            path,
                            at: 0,
                            reason: format!(
                                "its compaction marker says it spans {spans} bytes, but the \
                                 file holds {}",
                                bytes.len()
                            ),
                        });
                    }
                    logical_length = Some(spans);
                    report.frames += 1;
                    at += length;
                }
                Ok((frame, length)) => {
                    visit(base + at as u64, length as u32, frame);
                    report.frames += 1;
                    at += length;
                }
                Err(error) => {
                    let reason = error.to_string();
                    if !last {
                        return Err(JournalError::DamagedSegment {
                            path,
                            at: at as u64,
                            reason,
                        });
                    }
                    // Only the end of the last segment can hold a write that was never
                    // acknowledged; anything after the first bad frame is cut.
                    if let FrameError::Corrupt(_) = error {
                        tracing::warn!(segment = %path.display(), at, %reason, "corrupt frame at the end of the log");
                    }
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io("cannot open segment to cut its torn tail", &path))?;
                    file.set_len(at as u64)
                        .map_err(io("cannot cut the torn tail of segment", &path))?;
                    file.sync_all()
                        .map_err(io("cannot sync segment after cutting", &path))?;
                    report.truncated = Some(Truncated {
                        segment: path.clone(),
                        at: at as u64,
                        dropped_bytes: (bytes.len() - at) as u64,
                        reason,
                    });
                    break;
                }
            }
        }
        let length = report
            .truncated
            .as_ref()
            .filter(|t| t.segment == path)
            .map_or(bytes.len() as u64, |t| t.at);
        report.bytes += length;
        expected = base + logical_length.unwrap_or(length).max(length);
        let file = File::open(&path).map_err(io("cannot open segment", &path))?;
        segments.push(Segment {
            base,
            file: Arc::new(file),
        });
    }
    Ok((segments, report))
}

/// The segment being appended to.
pub struct Active {
    pub dir: PathBuf,
    pub base: u64,
    pub length: u64,
    file: File,
    /// Bytes written by [`Active::write_lazily`] and not yet synced.
    unsynced: bool,
    /// A new segment starts once this one holds this many bytes.
    segment_bytes: u64,
}

impl Active {
    /// Opens the last segment for appending at `end` (a global position), or creates the first.
    pub fn open(
        dir: &Path,
        segments: &[Segment],
        segment_bytes: u64,
    ) -> Result<(Active, Option<Segment>), JournalError> {
        match segments.last() {
            Some(last) => {
                let path = segment_path(dir, last.base);
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io("cannot open segment for appending", &path))?;
                let length = file
                    .metadata()
                    .map_err(io("cannot read the size of segment", &path))?
                    .len();
                Ok((
                    Active {
                        dir: dir.to_owned(),
                        base: last.base,
                        length,
                        file,
                        unsynced: false,
                        segment_bytes,
                    },
                    None,
                ))
            }
            None => Active::create(dir, 0, segment_bytes).map(|(a, s)| (a, Some(s))),
        }
    }

    fn create(
        dir: &Path,
        base: u64,
        segment_bytes: u64,
    ) -> Result<(Active, Segment), JournalError> {
        let path = segment_path(dir, base);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("cannot create segment", &path))?;
        // The new file's name must be durable too, or a crash could lose the segment.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot sync the log directory", dir))?;
        let reader = File::open(&path).map_err(io("cannot open segment", &path))?;
        Ok((
            Active {
                dir: dir.to_owned(),
                base,
                length: 0,
                file,
                unsynced: false,
                segment_bytes,
            },
            Segment {
                base,
                file: Arc::new(reader),
            },
        ))
    }

    /// The global position the next byte will have.
    pub fn end(&self) -> u64 {
        self.base + self.length
    }

    /// Writes `bytes` without waiting for the disk: they are on disk with the next
    /// [`Active::write_durably`] or [`Active::sync`] (a segment is synced before it rolls).
    /// For offset commits, which may be lost in a power failure (their consumers then see
    /// records again, as after any crash before a commit) but never torn.
    pub fn write_lazily(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.length += bytes.len() as u64;
                self.unsynced = true;
                Ok(())
            }
            Err(source) => {
                let _ = self.file.set_len(self.length);
                Err(JournalError::Io {
                    what: "cannot write to segment",
                    path: segment_path(&self.dir, self.base),
                    source,
                })
            }
        }
    }

    /// Puts what [`Active::write_lazily`] wrote on disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.unsynced {
            self.file.sync_data().map_err(|source| JournalError::Io {
                what: "cannot sync segment",
                path: segment_path(&self.dir, self.base),
                source,
            })?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Whether [`Active::write_lazily`] wrote something not yet on disk.
    pub fn is_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Writes `bytes` and waits until they are on disk (with anything written lazily before
    /// them). On error the segment is cut back to where it was, so a failed write leaves
    /// nothing behind that recovery would have to judge.
    pub fn write_durably(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        let before = self.length;
        self.write_lazily(bytes)?;
        self.sync().inspect_err(|_| {
            let _ = self.file.set_len(before);
            self.length = before;
        })
    }

    /// Starts a new segment now, unless this one is empty; returns it for the readers.
    pub fn roll_now(&mut self) -> Result<Option<Segment>, JournalError> {
        if self.length == 0 {
            return Ok(None);
        }
        self.sync()?;
        let (active, segment) = Active::create(&self.dir, self.end(), self.segment_bytes)?;
        *self = active;
        Ok(Some(segment))
    }

    /// Starts a new segment once this one is full; returns it for the readers.
    pub fn roll_if_full(&mut self) -> Result<Option<Segment>, JournalError> {
        if self.length < self.segment_bytes {
            return Ok(None);
        }
        self.sync()?;
        let (active, segment) = Active::create(&self.dir, self.end(), self.segment_bytes)?;
        *self = active;
        Ok(Some(segment))
    }
}

/// Why a segment file is being replaced; names the temporary file recovery removes.
#[derive(Clone, Copy, Debug)]
pub enum Rewrite {
    Reencrypt,
    Compact,
}

/// Replaces a (no longer active) segment's file with `bytes`, atomically: written to a
/// `.rekey` or `.compact` file, given the old file's modification time (retention reads a
/// segment's age from it), synced, renamed over the segment, directory synced. Returns the new
/// file, open for reading.
pub fn replace_segment(path: &Path, bytes: &[u8], why: Rewrite) -> Result<File, JournalError> {
    let tmp = path.with_extension(match why {
        Rewrite::Reencrypt => "log.rekey",
        Rewrite::Compact => "log.compact",
    });
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(io("cannot read the modification time of", path))?;
    let mut file = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.set_modified(modified))
        .and_then(|()| file.sync_all())
        .map_err(io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("cannot rename over", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot sync the log directory", dir))?;
    }
    File::open(path).map_err(io("cannot open segment", path))
}

/// Reads `length` bytes at global `position` from the segment holding it.
pub fn read_at(segments: &[Segment], position: u64, length: u32) -> std::io::Result<Vec<u8>> {
    let index = segments.partition_point(|s| s.base <= position);
    let segment = index
        .checked_sub(1)
        .and_then(|i| segments.get(i))
        .ok_or_else(|| std::io::Error::other(format!("no segment holds position {position}")))?;
    let mut buffer = vec![0; length as usize];
    segment
        .file
        .read_exact_at(&mut buffer, position - segment.base)?;
    Ok(buffer)
}
