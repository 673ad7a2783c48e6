//! The projector: reads the household changelog as a consumer group and applies it to the
//! serving store. Generic over the log port, like the processor, so it runs on Kafka and on the
//! embedded log alike.
//!
//! Per poll: decode → [`ServingStore::apply`] (one synced batch) → commit the group offsets.
//! A crash between the two re-delivers the poll; re-applying skips versions already stored.

use crate::store::{ServingError, ServingStore};
use dsr_log::{GroupEvent, GroupMember, Log, LogError};
use dsr_pipeline::runner::Codec;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] ServingError),
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

impl<L: Log, C: Codec> Projector<L, C> {
    /// Runs until `stop` resolves.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ProjectError> {
        let mut member = self
            .log
            .join_group(&self.group, &[self.changelog.as_str()])?;
        tokio::pin!(stop);
        loop {
            let events = tokio::select! {
                _ = &mut stop => break,
                polled = member.poll(self.batch_size, Duration::from_millis(200)) => polled?,
            };
            let mut records = Vec::new();
            let mut offsets = BTreeMap::new();
            for event in events {
                if let GroupEvent::Records(batch) = event {
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
            if offsets.is_empty() {
                self.progress.caught_up.store(true, Ordering::Relaxed);
                continue;
            }
            let store = self.store.clone();
            let observer = self.observer.clone();
            let applied = tokio::task::spawn_blocking(move || {
                if let Some(observe) = &observer {
                    observe(&records);
                }
                store.apply(records)
            })
            .await
            .map_err(|e| ServingError::Backend(format!("the store task failed: {e}")))??;
            self.progress
                .applied
                .fetch_add(applied.households_updated, Ordering::Relaxed);
            let offsets: Vec<_> = offsets.into_iter().collect();
            member.commit(&offsets).await?;
        }
        member.leave().await?;
        Ok(())
    }
}
