//! The projector: reads the household changelog as a consumer group and applies it to the
//! serving store. Generic over the log port, like the processor, so it runs on Kafka and on the
//! embedded log alike.
//!
//! Per poll: decode → [`ServingStore::prepare`] → [`Prepared::commit`] (one synced batch) →
//! commit the group offsets. The three steps form a pipeline, each on its own thread: while
//! one batch commits, the next is prepared and the one after is polled and decoded, so the
//! projector uses both cores (alone, as at the end of an initial load, it was one core's
//! work; `docs/performance.md`). Batches commit in poll order, and a batch's offsets are
//! committed to the group only after its batch is in the store. A crash anywhere re-delivers
//! what was not committed; re-applying skips versions already stored.

use crate::store::{Applied, Prepared, ServingError, ServingStore};
use dsr_core::{Household, HouseholdId};
use dsr_log::{GroupEvent, GroupMember, Log, LogError, TopicPartition};
use dsr_pipeline::runner::Codec;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] ServingError),
    #[error("cannot start the serving store's {thread} thread: {source} (the process may be at its thread limit)")]
    Thread {
        thread: &'static str,
        source: std::io::Error,
    },
}

/// Progress, shared with the API (`/readyz`) and `dsr demo`.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Changelog records applied (households updated).
    pub applied: Arc<AtomicU64>,
    /// Changelog records that did not decode (a bug or a foreign writer; logged, skipped).
    pub undecodable: Arc<AtomicU64>,
    /// Set once the projector has read up to the end of the changelog at least once.
    pub caught_up: Arc<AtomicBool>,
}

pub struct Projector<L: Log, C: Codec> {
    pub log: L,
    pub codec: C,
    pub store: ServingStore,
    pub changelog: String,
    pub group: String,
    pub batch_size: usize,
    pub progress: Progress,
    /// Told of every batch of households before it is applied (the scale-up service keeps its
    /// candidate table current with it).
    pub observer: Option<Observer>,
}

/// Sees each batch of households the projector applies.
pub type Observer = Arc<dyn Fn(&[(dsr_core::Household, i64)]) + Send + Sync>;

/// A poll's records on their way through the pipeline, with the offsets to commit once they
/// are in the store.
struct Polled {
    records: Vec<(Household, i64)>,
    offsets: Vec<(TopicPartition, i64)>,
}

/// What the committing thread reports for each batch, in poll order.
type Done = Result<(Applied, Vec<(TopicPartition, i64)>), ServingError>;

/// Starts the preparing and the committing threads. They end when `polled` closes (after
/// finishing what they hold) or at the first error, which is the last thing sent on `done`.
fn start_stages(
    store: ServingStore,
    observer: Option<Observer>,
    mut polled: mpsc::Receiver<Polled>,
    done: mpsc::UnboundedSender<Done>,
) -> Result<(), ProjectError> {
    // No buffer: a prepared batch is handed over only when the one before it has committed,
    // so `pending` (the latest records of the batch handed over last) covers every write not
    // yet in the store when the next batch reads its households.
    let (prepared_tx, prepared_rx) =
        std::sync::mpsc::sync_channel::<(Prepared, Vec<(TopicPartition, i64)>)>(0);
    let failed = done.clone();
    std::thread::Builder::new()
        .name("serving-prepare".into())
        .spawn(move || {
            let mut pending: HashMap<HouseholdId, Household> = HashMap::new();
            while let Some(Polled { records, offsets }) = polled.blocking_recv() {
                if let Some(observe) = &observer {
                    observe(&records);
                }
                match store.prepare(records, &pending) {
                    Ok((prepared, latest)) => {
                        if prepared_tx.send((prepared, offsets)).is_err() {
                            return; // the committer stopped at an error it reported
                        }
                        pending = latest;
                    }
                    Err(e) => {
                        let _ = failed.send(Err(e));
                        return;
                    }
                }
            }
        })
        .map_err(|source| ProjectError::Thread {
            thread: "preparing",
            source,
        })?;
    std::thread::Builder::new()
        .name("serving-commit".into())
        .spawn(move || {
            for (prepared, offsets) in prepared_rx {
                let result = prepared.commit().map(|applied| (applied, offsets));
                let failed = result.is_err();
                if done.send(result).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|source| ProjectError::Thread {
            thread: "committing",
            source,
        })?;
    Ok(())
}

impl<L: Log, C: Codec> Projector<L, C> {
    /// Runs until `stop` resolves; then finishes the batches it has polled (their records
    /// applied and their offsets committed) and leaves the group.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ProjectError> {
        let mut member = self
            .log
            .join_group(&self.group, &[self.changelog.as_str()])?;
        let (to_prepare, polled) = mpsc::channel::<Polled>(1);
        let (done_tx, mut done) = mpsc::unbounded_channel::<Done>();
        start_stages(self.store.clone(), self.observer.clone(), polled, done_tx)?;
        // Partitions this member owns: offsets of a batch polled before a partition was
        // revoked are not committed (its new owner applies those records again, which skips
        // them as old).
        let mut owned: HashSet<TopicPartition> = HashSet::new();
        let mut in_flight = 0usize;
        tokio::pin!(stop);
        loop {
            while let Ok(finished) = done.try_recv() {
                in_flight -= 1;
                self.finish(&mut member, &owned, finished).await?;
            }
            let events = tokio::select! {
                _ = &mut stop => break,
                polled = member.poll(self.batch_size, Duration::from_millis(200)) => polled?,
            };
            let mut records = Vec::new();
            let mut offsets = BTreeMap::new();
            for event in events {
                match event {
                    GroupEvent::Assigned(partitions) => owned.extend(partitions),
                    GroupEvent::Revoked(partitions) => {
                        for tp in &partitions {
                            owned.remove(tp);
                        }
                    }
                    GroupEvent::Records(batch) => {
                        for r in batch {
                            offsets.insert(r.topic_partition(), r.next_offset());
                            let Some(value) = r.value.as_deref() else {
                                continue; // a tombstone: compaction's business, not a version
                            };
                            match self.codec.decode_household(value) {
                                Ok(h) => records.push((h, r.timestamp_ms.unwrap_or(0))),
                                Err(reason) => {
                                    self.progress.undecodable.fetch_add(1, Ordering::Relaxed);
                                    tracing::error!(partition = r.partition, offset = r.offset, %reason, "a changelog record does not decode; skipped");
                                }
                            }
                        }
                    }
                }
            }
            if offsets.is_empty() {
                if in_flight == 0 {
                    self.progress.caught_up.store(true, Ordering::Relaxed);
                }
                continue;
            }
            let batch = Polled {
                records,
                offsets: offsets.into_iter().collect(),
            };
            in_flight += 1;
            if to_prepare.send(batch).await.is_err() {
                break; // the stages stopped at an error, which `done` holds
            }
        }
        // Finish what is in flight: no more input, then every batch's report, in order.
        drop(to_prepare);
        while let Some(finished) = done.recv().await {
            self.finish(&mut member, &owned, finished).await?;
        }
        member.leave().await?;
        Ok(())
    }

    /// A batch is in the store: count it and commit its offsets (those of partitions still
    /// owned); or the error that stopped the pipeline.
    async fn finish(
        &self,
        member: &mut L::Member,
        owned: &HashSet<TopicPartition>,
        finished: Done,
    ) -> Result<(), ProjectError> {
        let (applied, offsets) = finished?;
        self.progress
            .applied
            .fetch_add(applied.households_updated, Ordering::Relaxed);
        let offsets: Vec<_> = offsets
            .into_iter()
            .filter(|(tp, _)| owned.contains(tp))
            .collect();
        if !offsets.is_empty() {
            member.commit(&offsets).await?;
        }
        Ok(())
    }
}
