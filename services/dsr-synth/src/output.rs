//! Writing a generation to a directory: `areas.csv`, `households.jsonl`, `events.jsonl` and
//! `manifest.json`.
//!
//! Events are encoded to JSON in the worker threads (encoding is most of the cost); a writer
//! thread merges each month's lines into time order and hands them to the kernel with
//! vectored writes, while the workers go on with the next month.

use crate::areas::Areas;
use crate::batch::Batch;
use crate::config::{Config, Progress};
use crate::error::Error;
use crate::generate::{merge_order, run, Out, Summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bumped whenever the same configuration starts producing different output, so a manifest
/// says which generator a data set needs to be reproduced.
pub const ALGORITHM_VERSION: u32 = 1;

pub const AREAS_FILE: &str = "areas.csv";
pub const HOUSEHOLDS_FILE: &str = "households.jsonl";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const MANIFEST_FILE: &str = "manifest.json";

/// `manifest.json`: how the files were made and what they hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: String,
    pub generator_version: String,
    pub algorithm_version: u32,
    pub seed: u64,
    /// The registration survey (`households.jsonl`), first and last day.
    pub registration_period: Period,
    /// The simulated period (`events.jsonl`), first and last day.
    pub event_period: Period,
    #[serde(flatten)]
    pub summary: Summary,
    /// Size in bytes of each data file written (the manifest aside).
    pub files: BTreeMap<String, u64>,
    /// The configuration, to reproduce the run. `threads` is recorded as 0 (one per core):
    /// it does not change the output, so it must not change the manifest either.
    pub config: Config,
}

/// A closed range of days, as `YYYY-MM-DD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub first_day: String,
    pub last_day: String,
}

/// What the writer thread is asked to write.
enum Job {
    Households(Box<Batch>),
    Events(Vec<Batch>),
}

/// Writes on a thread of its own, so encoding the next chunks or month overlaps the copying
/// of this one into the files.
struct Files {
    dir: PathBuf,
    areas_bytes: u64,
    jobs: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<Result<BTreeMap<String, u64>, Error>>>,
}

impl Files {
    fn start(dir: &Path) -> Result<Files, Error> {
        let households = create(&dir.join(HOUSEHOLDS_FILE))?;
        let events = create(&dir.join(EVENTS_FILE))?;
        // Two jobs in flight bound memory to a couple of months of JSON.
        let (tx, rx) = sync_channel::<Job>(1);
        let d = dir.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("dsr-synth-writer".into())
            .spawn(move || write_jobs(&d, households, events, rx))
            .map_err(Error::io(dir))?;
        Ok(Files {
            dir: dir.to_path_buf(),
            areas_bytes: 0,
            jobs: Some(tx),
            writer: Some(writer),
        })
    }

    fn send(&mut self, job: Job) -> Result<(), Error> {
        let sent = self
            .jobs
            .as_ref()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            // The writer stopped early: its error says why.
            Err(self.finish().err().unwrap_or_else(|| {
                Error::io(&self.dir)(io::Error::other("the writer thread stopped"))
            }))
        }
    }

    /// Waits for everything to be written; returns the size of each file.
    fn finish(&mut self) -> Result<BTreeMap<String, u64>, Error> {
        self.jobs = None;
        let mut sizes = match self.writer.take() {
            Some(w) => w.join().map_err(|_| {
                Error::io(&self.dir)(io::Error::other("the writer thread panicked"))
            })??,
            None => BTreeMap::new(),
        };
        sizes.insert(AREAS_FILE.to_string(), self.areas_bytes);
        Ok(sizes)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Out for Files {
    fn areas(&mut self, areas: &Areas) -> Result<(), Error> {
        let path = self.dir.join(AREAS_FILE);
        let mut buf = Vec::new();
        areas.write_csv(&mut buf).map_err(Error::io(&path))?;
        std::fs::write(&path, &buf).map_err(Error::io(&path))?;
        self.areas_bytes = buf.len() as u64;
        Ok(())
    }

    fn households(&mut self, batch: Batch) -> Result<(), Error> {
        self.send(Job::Households(Box::new(batch)))
    }

    fn events(&mut self, batches: Vec<Batch>) -> Result<(), Error> {
        self.send(Job::Events(batches))
    }
}

fn create(path: &Path) -> Result<File, Error> {
    File::create(path).map_err(Error::io(path))
}

/// The writer thread: whole household batches, and each month's events merged into time
/// order and written with vectored writes (no copy of the lines in user space).
fn write_jobs(
    dir: &Path,
    mut households: File,
    mut events: File,
    jobs: Receiver<Job>,
) -> Result<BTreeMap<String, u64>, Error> {
    let (hpath, epath) = (dir.join(HOUSEHOLDS_FILE), dir.join(EVENTS_FILE));
    let (mut hbytes, mut ebytes) = (0u64, 0u64);
    for job in jobs {
        match job {
            Job::Households(batch) => {
                households
                    .write_all(&batch.bytes)
                    .map_err(Error::io(&hpath))?;
                hbytes += batch.bytes.len() as u64;
            }
            Job::Events(batches) => {
                let order = merge_order(&batches);
                let mut slices: Vec<IoSlice> = Vec::with_capacity(LINES_PER_WRITE);
                for (_, b, i) in order {
                    let line = batches[b as usize].line(i as usize);
                    ebytes += line.len() as u64;
                    slices.push(IoSlice::new(line));
                    if slices.len() == LINES_PER_WRITE {
                        write_all_vectored(&mut events, &mut slices).map_err(Error::io(&epath))?;
                        slices.clear();
                    }
                }
                write_all_vectored(&mut events, &mut slices).map_err(Error::io(&epath))?;
            }
        }
    }
    households.flush().map_err(Error::io(&hpath))?;
    events.flush().map_err(Error::io(&epath))?;
    Ok(BTreeMap::from([
        (HOUSEHOLDS_FILE.to_string(), hbytes),
        (EVENTS_FILE.to_string(), ebytes),
    ]))
}

/// Lines per `writev` (the usual `IOV_MAX` is 1024).
const LINES_PER_WRITE: usize = 1024;

fn write_all_vectored(f: &mut File, slices: &mut [IoSlice]) -> io::Result<()> {
    let mut bufs = slices;
    while !bufs.is_empty() {
        let n = f.write_vectored(bufs)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Generates `config` into `out_dir` (created if missing; existing files are replaced) and
/// returns the manifest it wrote.
pub fn write_dir(
    config: &Config,
    out_dir: &Path,
    progress: &dyn Fn(Progress),
) -> Result<Manifest, Error> {
    config.validate()?;
    std::fs::create_dir_all(out_dir).map_err(Error::io(out_dir))?;
    let mut files = Files::start(out_dir)?;
    let summary = run(config, true, &mut files, progress)?;
    let sizes = files.finish()?;
    let day = |d: dsr_core::Date| d.to_string();
    let manifest = Manifest {
        generator: env!("CARGO_PKG_NAME").to_string(),
        generator_version: env!("CARGO_PKG_VERSION").to_string(),
        algorithm_version: ALGORITHM_VERSION,
        seed: config.seed,
        registration_period: Period {
            first_day: day(config.registration_start()),
            last_day: day(dsr_core::Date(config.start.0 - 1)),
        },
        event_period: Period {
            first_day: day(config.start),
            last_day: day(dsr_core::Date(config.end().0 - 1)),
        },
        summary,
        files: sizes,
        config: Config {
            threads: 0,
            ..config.clone()
        },
    };
    let path = out_dir.join(MANIFEST_FILE);
    let text = serde_json::to_vec_pretty(&manifest)?;
    std::fs::write(&path, &text).map_err(Error::io(&path))?;
    Ok(manifest)
}
