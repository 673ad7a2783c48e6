//! Where generated events go before they are written: one batch per chunk and step, either
//! encoded to JSON lines in the worker thread or kept as values.

use dsr_core::event::EVENT_TYPES;
use dsr_core::Event;
use std::sync::{Arc, Mutex};

/// Where a chunk-month's events go: encoded to JSON lines right away (in the worker thread)
/// or kept as values.
pub(crate) struct Batch {
    pub json: bool,
    /// `occurred_at` of each event, in order.
    pub times: Vec<i64>,
    /// End offset in `bytes` of each event's line (JSON mode).
    pub ends: Vec<usize>,
    pub bytes: Vec<u8>,
    pub events: Vec<Option<Event>>,
    /// Events per type, in [`EVENT_TYPES`] order.
    pub counts: [u64; EVENT_TYPES.len()],
    /// Where `bytes` goes back when the batch has been written.
    pool: Option<Arc<Pool>>,
}

/// Recycled JSON buffers. A run pushes gigabytes through buffers of a few megabytes; reusing
/// them spares the kernel zeroing fresh pages for every chunk and month.
#[derive(Default)]
pub(crate) struct Pool(Mutex<Vec<Vec<u8>>>);

impl Pool {
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut b = self
            .0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        b.clear();
        b.reserve(capacity);
        b
    }

    fn put(&self, b: Vec<u8>) {
        if b.capacity() > 0 {
            if let Ok(mut v) = self.0.lock() {
                if v.len() < 4096 {
                    v.push(b);
                }
            }
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.put(std::mem::take(&mut self.bytes));
        }
    }
}

impl Batch {
    pub fn new(json: bool) -> Self {
        Self::with_capacity(json, 0)
    }

    /// A batch expecting about `bytes` of JSON.
    pub fn with_capacity(json: bool, bytes: usize) -> Self {
        Self::build(json, bytes, None)
    }

    /// A batch whose JSON buffer comes from, and returns to, `pool`.
    pub fn pooled(json: bool, bytes: usize, pool: &Arc<Pool>) -> Self {
        Self::build(json, bytes, json.then(|| pool.clone()))
    }

    fn build(json: bool, bytes: usize, pool: Option<Arc<Pool>>) -> Self {
        let events = if json { bytes / 300 } else { 0 };
        Batch {
            json,
            times: Vec::with_capacity(bytes / 300),
            ends: Vec::with_capacity(events),
            bytes: match &pool {
                Some(p) => p.take(bytes),
                None => Vec::with_capacity(if json { bytes } else { 0 }),
            },
            events: Vec::new(),
            counts: [0; EVENT_TYPES.len()],
            pool,
        }
    }

    pub fn push(&mut self, e: Event) -> Result<(), serde_json::Error> {
        let t = e.event_type();
        if let Some(i) = EVENT_TYPES.iter().position(|x| *x == t) {
            self.counts[i] += 1;
        }
        self.times.push(e.envelope.occurred_at.0);
        if self.json {
            crate::json::encode(&mut self.bytes, &e)?;
            self.bytes.push(b'\n');
            self.ends.push(self.bytes.len());
        } else {
            self.events.push(Some(e));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// The JSON line of event `i` (JSON mode), newline included.
    pub fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}
