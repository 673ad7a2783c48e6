//! Running a generation: the areas, the households chunk by chunk, then the life events
//! month by month, each step in parallel over chunks and delivered in a fixed order.
//!
//! Chunks never share state or randomness, and results are always delivered in chunk order
//! (households) or in `(occurred_at, chunk, sequence)` order (events), so the output is the
//! same whatever the thread count and however the threads were scheduled.

use crate::areas::{AreaLevel, Areas};
use crate::batch::{Batch, Pool};
use crate::config::{micros, Config, Phase, Progress};
use crate::error::Error;
use crate::events::{schedule_shocks, shock_events, simulate_month, Ctx};
use crate::population::{generate_chunk, initial_registration};
use crate::state::Chunk;
use dsr_core::event::EVENT_TYPES;
use dsr_core::Event;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Receives a generation's output, in order: the areas once, every `HouseholdRegistered`
/// of the initial survey in household-number order, then the life events in `occurred_at`
/// order.
pub trait Sink {
    fn areas(&mut self, areas: &Areas) -> Result<(), Error> {
        let _ = areas;
        Ok(())
    }
    fn household(&mut self, event: Event) -> Result<(), Error>;
    fn event(&mut self, event: Event) -> Result<(), Error>;
}

/// A sink that keeps everything in memory (tests, fixtures, small runs).
#[derive(Clone, Debug, Default)]
pub struct Collect {
    pub areas: Option<Areas>,
    pub households: Vec<Event>,
    pub events: Vec<Event>,
}

impl Sink for Collect {
    fn areas(&mut self, areas: &Areas) -> Result<(), Error> {
        self.areas = Some(areas.clone());
        Ok(())
    }
    fn household(&mut self, event: Event) -> Result<(), Error> {
        self.households.push(event);
        Ok(())
    }
    fn event(&mut self, event: Event) -> Result<(), Error> {
        self.events.push(event);
        Ok(())
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Households of the initial survey.
    pub households: u64,
    /// People in them.
    pub persons: u64,
    /// Households founded by moves during the period.
    pub founded_households: u64,
    /// Life events (everything after the initial survey).
    pub events: u64,
    /// Life events per type; every type of `EVENT_TYPES` is listed, with 0 if none.
    pub event_counts: BTreeMap<String, u64>,
    /// Areas per level.
    pub areas: BTreeMap<String, u64>,
}

/// Where the driver delivers ordered output.
pub(crate) trait Out {
    fn areas(&mut self, areas: &Areas) -> Result<(), Error>;
    fn households(&mut self, batch: Batch) -> Result<(), Error>;
    /// One month of events, each batch in time order; see [`merge_order`].
    fn events(&mut self, batches: Vec<Batch>) -> Result<(), Error>;
    /// Called after each step, so a writer can flush or report.
    fn progress(&mut self, _p: Progress) {}
}

struct SinkOut<'a>(&'a mut dyn Sink);

impl Out for SinkOut<'_> {
    fn areas(&mut self, areas: &Areas) -> Result<(), Error> {
        self.0.areas(areas)
    }
    fn households(&mut self, batch: Batch) -> Result<(), Error> {
        let mut batch = batch;
        for e in std::mem::take(&mut batch.events).into_iter().flatten() {
            self.0.household(e)?;
        }
        Ok(())
    }
    fn events(&mut self, mut batches: Vec<Batch>) -> Result<(), Error> {
        for (_, b, i) in merge_order(&batches) {
            if let Some(e) = batches[b as usize].events[i as usize].take() {
                self.0.event(e)?;
            }
        }
        Ok(())
    }
}

/// The output order of a month's batches: `(occurred_at, batch, index)` sorted, so ties in
/// time go to the lower batch (area-wide events first, then chunk order), then the earlier
/// event of the batch.
pub(crate) fn merge_order(batches: &[Batch]) -> Vec<(i64, u32, u32)> {
    let total: usize = batches.iter().map(|b| b.len()).sum();
    let mut order = Vec::with_capacity(total);
    for (b, batch) in batches.iter().enumerate() {
        for (i, t) in batch.times.iter().enumerate() {
            order.push((*t, b as u32, i as u32));
        }
    }
    order.sort_unstable();
    order
}

/// Generates the population and its life events into `sink`.
///
/// `progress` is called from the calling thread after each step.
pub fn generate(
    config: &Config,
    sink: &mut dyn Sink,
    progress: &dyn Fn(Progress),
) -> Result<Summary, Error> {
    run(config, false, &mut SinkOut(sink), progress)
}

/// The number of worker threads to use.
pub(crate) fn threads(config: &Config) -> usize {
    if config.threads > 0 {
        config.threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Applies `f` to every item on `threads` threads, returning the results in item order.
pub(crate) fn par_map_mut<T: Send, R: Send>(
    items: &mut [T],
    threads: usize,
    f: &(dyn Fn(usize, &mut T) -> R + Sync),
) -> Vec<R> {
    let n = items.len();
    if threads <= 1 || n <= 1 {
        return items.iter_mut().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let slots: Vec<Mutex<Option<&mut T>>> = items.iter_mut().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.min(n) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let item = slots[i].lock().map(|mut g| g.take()).ok().flatten();
                if let Some(item) = item {
                    let r = f(i, item);
                    if let Ok(mut g) = results[i].lock() {
                        *g = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .expect("every item was processed: a worker that panics propagates its panic")
        })
        .collect()
}

/// The generation itself, for both the value sink and the JSON writer.
pub(crate) fn run(
    config: &Config,
    json: bool,
    out: &mut dyn Out,
    progress: &dyn Fn(Progress),
) -> Result<Summary, Error> {
    config.validate()?;
    let threads = threads(config);
    let areas = Areas::generate(config.households, config.seed);
    out.areas(&areas)?;
    let shocks = schedule_shocks(config, &areas);
    let n_chunks = config.chunks() as usize;

    let mut summary = Summary::default();
    for level in [
        AreaLevel::Region,
        AreaLevel::District,
        AreaLevel::SubCounty,
        AreaLevel::Village,
    ] {
        summary
            .areas
            .insert(level.as_str().to_string(), areas.count(level) as u64);
    }
    let report = |out: &mut dyn Out, p: Progress| {
        out.progress(p);
        progress(p);
    };

    let pool = Arc::new(Pool::default());

    // The initial survey, in waves of chunks so memory stays bounded.
    let mut chunks: Vec<Chunk> = Vec::with_capacity(n_chunks);
    let wave = (threads * 8).max(1);
    let mut start = 0;
    while start < n_chunks {
        let end = (start + wave).min(n_chunks);
        let mut ids: Vec<usize> = (start..end).collect();
        let survey = |_: usize, c: &mut usize| -> Result<(Chunk, Batch), Error> {
            let chunk = generate_chunk(config, &areas, *c as u64);
            // About 2.1 kB of JSON per household: reserve it rather than regrow.
            let mut batch = Batch::pooled(json, chunk.households.len() * 2300, &pool);
            for h in 0..chunk.households.len() {
                batch.push(initial_registration(config, &areas, &chunk, h as u32))?;
            }
            Ok((chunk, batch))
        };
        let results = par_map_mut(&mut ids, threads, &survey);
        for r in results {
            let (chunk, batch) = r?;
            summary.households += chunk.households.len() as u64;
            summary.persons += chunk.persons.len() as u64;
            out.households(batch)?;
            chunks.push(chunk);
        }
        start = end;
        report(
            out,
            Progress {
                phase: Phase::Households,
                done: summary.households,
                total: config.households,
                households: summary.households,
                events: 0,
            },
        );
    }

    // The life events, month by month.
    let ctx = Ctx {
        config,
        areas: &areas,
        shocks: &shocks,
    };
    let mut counts = [0u64; EVENT_TYPES.len()];
    for m in 0..config.months {
        let from = micros(config.month_start(m)).0;
        let to = micros(config.month_start(m + 1)).0;
        let simulate = |_: usize, chunk: &mut Chunk| -> Result<Batch, Error> {
            // Size the buffer from the chunk's last month rather than regrow it.
            let expected = chunk.month_bytes + chunk.month_bytes / 4 + 4096;
            let mut batch = Batch::pooled(json, expected, &pool);
            simulate_month(&ctx, chunk, m, &mut batch)?;
            chunk.month_bytes = batch.bytes.len();
            Ok(batch)
        };
        let results = par_map_mut(&mut chunks, threads, &simulate);
        // Batch 0 holds the area-wide events, so a declaration precedes the reports it causes
        // even at the same microsecond.
        let mut batches = Vec::with_capacity(results.len() + 1);
        let mut area_batch = Batch::new(json);
        for e in shock_events(config, &shocks, from, to) {
            area_batch.push(e)?;
        }
        batches.push(area_batch);
        for r in results {
            batches.push(r?);
        }
        for batch in &batches {
            for (c, n) in counts.iter_mut().zip(batch.counts.iter()) {
                *c += n;
            }
            summary.events += batch.len() as u64;
        }
        out.events(batches)?;
        report(
            out,
            Progress {
                phase: Phase::Events,
                done: (m as u64 + 1) * n_chunks as u64,
                total: config.months as u64 * n_chunks as u64,
                households: summary.households,
                events: summary.events,
            },
        );
    }
    for (t, c) in EVENT_TYPES.iter().zip(counts) {
        summary.event_counts.insert(t.to_string(), c);
    }
    summary.founded_households = chunks
        .iter()
        .map(|c| c.households.iter().filter(|h| h.founded).count() as u64)
        .sum();
    report(
        out,
        Progress {
            phase: Phase::Done,
            done: 1,
            total: 1,
            households: summary.households,
            events: summary.events,
        },
    );
    Ok(summary)
}
