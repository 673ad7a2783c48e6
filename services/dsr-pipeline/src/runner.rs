//! The household processor on a log: consumer-group membership, state restore, fences,
//! produce-then-commit. Generic over the log port, so the same code runs on Kafka and on the
//! embedded log.
//!
//! Per batch of one partition: decode → [`HouseholdTask::process_batch`] → produce every output
//! its partition's fence ([`crate::fence`]) does not hold (eligibility changes, dead letters
//! and derived events first, then the changelog) and wait for the acknowledgements → commit the
//! state (records + next offset, one synced batch) → commit the group offset. See
//! `docs/architecture.md`, "Effectively once without transactions".

use crate::fence::{mark_last, Fence, FenceError};
use crate::task::{BatchOutput, HouseholdTask, Input, Output, Source};
use dsr_core::eligibility::Program;
use dsr_core::rule_versions::ActivationRecord;
use dsr_core::{EligibilityChange, Event, Household, HouseholdId, PmtModel};
use dsr_log::{GroupEvent, GroupMember, Log, LogError, PartitionReader, Record, TopicPartition};
use dsr_store::fjall_state::FjallPartition;
use dsr_store::{FjallState, PartitionState, StateBatch, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub use crate::fence::SOURCE_HEADER;
/// Dead-letter headers: why, and where the record came from.
pub const REASON_HEADER: &str = "dsr-reason";
pub const ORIGIN_TOPIC_HEADER: &str = "dsr-origin-topic";
pub const ORIGIN_PARTITION_HEADER: &str = "dsr-origin-partition";
pub const ORIGIN_OFFSET_HEADER: &str = "dsr-origin-offset";

/// How records are turned into bytes and back (Avro in Confluent wire format in production).
pub trait Codec: Send + Sync {
    /// Gets ready to decode these record values, e.g. fetches writer schemas not seen yet.
    /// An error here is the codec's infrastructure failing (the registry is unreachable), not
    /// a bad record: processing stops rather than dead-lettering good records.
    fn prepare(
        &self,
        values: &[&[u8]],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let _ = values;
        async { Ok(()) }
    }
    fn decode_event(&self, bytes: &[u8]) -> Result<Event, String>;
    fn encode_event(&self, event: &Event) -> Result<Vec<u8>, String>;
    fn encode_household(&self, household: &Household) -> Result<Vec<u8>, String>;
    fn decode_household(&self, bytes: &[u8]) -> Result<Household, String>;
    /// The member ids of a changelog record alone (the router's person directory reads every
    /// record for these); by default the whole record is decoded.
    fn decode_household_members(&self, bytes: &[u8]) -> Result<Vec<dsr_core::PersonId>, String> {
        self.decode_household(bytes).map(member_ids)
    }
    fn encode_change(&self, change: &EligibilityChange) -> Result<Vec<u8>, String>;
    fn encode_beneficiary(&self, notice: &dsr_core::BeneficiaryEvent) -> Result<Vec<u8>, String>;
    /// An activated rule version (the `dsr.program-rules` value) and back.
    fn encode_rule_activation(
        &self,
        a: &dsr_core::rule_versions::ActivationRecord,
    ) -> Result<Vec<u8>, String>;
    fn decode_rule_activation(
        &self,
        bytes: &[u8],
    ) -> Result<dsr_core::rule_versions::ActivationRecord, String>;
    /// A household's waiting list (the `dsr.household-parked` value) and back.
    fn encode_parked(&self, household: &HouseholdId, events: &[Event]) -> Result<Vec<u8>, String>;
    fn decode_parked(&self, bytes: &[u8]) -> Result<(HouseholdId, Vec<Event>), String>;
}

/// The batch size `dsr process` uses on Kafka unless told otherwise. Whatever its size, a batch
/// costs two produce round trips, a synced state write and a group commit, so a backlog is
/// worked off far faster in large batches (0.37 → 0.69 of raw rdkafka from 2,000 to 20,000, and
/// 0.78–0.81 → 0.81–0.95 from 20,000 to 30,000, in docs/performance.md); a poll tops a batch up
/// for at most 20 ms, so a large ceiling does not hold back events that trickle in.
pub const KAFKA_BATCH_SIZE: usize = 30_000;

/// How long `dsr process` tops a poll up towards its batch size ([`HouseholdProcessor::linger`]).
pub const KAFKA_LINGER: Duration = Duration::from_millis(20);

/// The topic of the activated versions of the programs' rules.
pub const PROGRAM_RULES: &str = "dsr.program-rules";

/// The topic of life events about programs' beneficiaries.
pub const BENEFICIARY_EVENTS: &str = "dsr.beneficiary-events";

/// The topics the processor reads and writes.
#[derive(Clone, Debug)]
pub struct Topics {
    pub household_events: String,
    pub changelog: String,
    /// The changelog of the events waiting for a household (compacted).
    pub parked: String,
    pub dead_letter: String,
    /// `dsr.eligibility.` — the program id follows.
    pub eligibility_prefix: String,
    /// Life events about programs' beneficiaries (every program; header `dsr-program`).
    pub beneficiary_events: String,
    /// Activated rule versions (compacted, key `program@version`).
    pub program_rules: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            household_events: "dsr.household-events".into(),
            changelog: "dsr.household-changelog".into(),
            parked: "dsr.household-parked".into(),
            dead_letter: "dsr.dead-letter".into(),
            eligibility_prefix: "dsr.eligibility.".into(),
            beneficiary_events: BENEFICIARY_EVENTS.into(),
            program_rules: PROGRAM_RULES.into(),
        }
    }
}

impl Topics {
    pub fn eligibility(&self, program: &str) -> String {
        format!("{}{program}", self.eligibility_prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Task(#[from] crate::task::TaskError),
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    #[error("the codec is not ready: {0}")]
    Codec(String),
    #[error("cannot encode an output: {0}")]
    Encode(String),
    #[error(transparent)]
    Fence(#[from] FenceError),
    #[error("restoring partition {partition} from {topic}: record at offset {offset} is unreadable: {reason}")]
    Restore {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
}

/// Counts, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub batches: u64,
    pub events: u64,
    pub produced: u64,
    pub fenced: u64,
    pub restored: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.batches += other.batches;
        self.events += other.events;
        self.produced += other.produced;
        self.fenced += other.fenced;
        self.restored += other.restored;
    }
}

struct Owned {
    task: HouseholdTask<FjallPartition>,
    /// What each exclusively written output partition already holds, by topic.
    fences: HashMap<String, Fence>,
}

/// The household processor of one `dsr process` instance.
pub struct HouseholdProcessor<L: Log, C: Codec> {
    pub log: L,
    pub codec: C,
    pub state: FjallState,
    pub model: PmtModel,
    pub programs: Vec<Program>,
    pub topics: Topics,
    pub group: String,
    pub batch_size: usize,
    /// How long a poll is topped up towards `batch_size` once it has fetched something. On
    /// Kafka a fetch brings one partition's chunk at a time and every batch costs produce round
    /// trips and a commit, so waiting a little ([`KAFKA_LINGER`]) makes batches fuller and the
    /// broker's work smaller. On the embedded log a poll returns everything already written, so
    /// `dsr up` does not wait (zero): a batch is what has arrived, batches grow by themselves
    /// under load, and an event at a low rate is not held back at every stage.
    pub linger: Duration,
    /// At most this many events wait per unknown household before the oldest is
    /// dead-lettered ([`crate::task::MAX_PARKED_PER_HOUSEHOLD`] by default).
    pub max_parked_per_household: usize,
    /// Household records each partition's task keeps in memory
    /// ([`crate::task::DEFAULT_CACHE_CAPACITY`] by default).
    pub cache_households: usize,
    /// Events processed so far (for progress displays and tests; counts re-processing too).
    pub progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<L: Log, C: Codec> HouseholdProcessor<L, C> {
    /// Runs until `stop` resolves (then leaves the group cleanly).
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Stats, RunError> {
        let mut member = self
            .log
            .join_group(&self.group, &[self.topics.household_events.as_str()])?;
        let mut owned: BTreeMap<i32, Owned> = BTreeMap::new();
        let mut stats = Stats::default();
        tokio::pin!(stop);
        loop {
            let mut events = tokio::select! {
                _ = &mut stop => break,
                polled = member.poll(self.batch_size, Duration::from_millis(200)) => polled?,
            };
            fill(&mut member, &mut events, self.batch_size, self.linger).await?;
            for event in events {
                match event {
                    GroupEvent::Assigned(tps) => {
                        // One request for the group's offsets, then every partition side by
                        // side: a take-over is a dozen round trips (fences, perhaps a
                        // restore), and a rebalance should not cost that times the partitions.
                        let committed = member.committed(&tps).await?;
                        let taken = futures_util::future::join_all(
                            tps.iter()
                                .zip(committed)
                                .map(|(tp, c)| self.take_over(tp, c.unwrap_or(0))),
                        )
                        .await;
                        for (tp, result) in tps.iter().zip(taken) {
                            let (o, restored) = result?;
                            stats.restored += restored;
                            owned.insert(tp.partition, o);
                        }
                    }
                    GroupEvent::Revoked(tps) => {
                        for tp in tps {
                            owned.remove(&tp.partition);
                            tracing::info!(partition = tp.partition, "partition revoked");
                        }
                    }
                    GroupEvent::Records(records) => {
                        let mut by_partition: BTreeMap<i32, Vec<dsr_log::ConsumedRecord>> =
                            BTreeMap::new();
                        for r in records {
                            by_partition.entry(r.partition).or_default().push(r);
                        }
                        // The partitions of one poll are processed side by side: their produce
                        // round trips overlap, and one group commit covers them all.
                        let work: Vec<_> = owned
                            .iter_mut()
                            .filter_map(|(p, o)| {
                                by_partition.remove(p).map(|records| (*p, o, records))
                            })
                            .collect();
                        if work.is_empty() {
                            continue;
                        }
                        if self.log.transactional() {
                            member.begin_transaction().await?;
                        }
                        let results = futures_util::future::join_all(
                            work.into_iter()
                                .map(|(p, o, records)| self.process(o, p, records)),
                        )
                        .await;
                        let mut offsets = Vec::new();
                        for result in results {
                            let (p, next, batch) = result?;
                            stats.add(&batch);
                            if let Some(next) = next {
                                offsets.push((
                                    TopicPartition::new(&self.topics.household_events, p),
                                    next,
                                ));
                            }
                        }
                        if !offsets.is_empty() {
                            // The partitions' state on disk (one fdatasync for all of them),
                            // then their offsets: the order a restart relies on.
                            let state = self.state.clone();
                            tokio::task::spawn_blocking(move || state.sync())
                                .await
                                .map_err(|e| {
                                    StoreError::Backend(format!("the state sync task failed: {e}"))
                                })??;
                        }
                        if self.log.transactional() {
                            // Outputs and offsets become visible together. State synced
                            // before a failed commit is ahead of the group's offset, and a
                            // take-over then rebuilds it from the changelog (`take_over`).
                            member.commit_transaction(&offsets).await?;
                        } else if !offsets.is_empty() {
                            member.commit(&offsets).await?;
                        }
                    }
                }
            }
        }
        member.leave().await?;
        Ok(stats)
    }

    /// Opens (restoring if needed) a partition's state and reads its output fences, given the
    /// group's committed offset for it. Returns it with the number of records restored.
    async fn take_over(
        &self,
        tp: &TopicPartition,
        committed: i64,
    ) -> Result<(Owned, u64), RunError> {
        let p = tp.partition;
        let state = self.state.partition(p as u32)?;
        let local = state.next_offset()? as i64;
        // No local state, or local state older than what the group has committed (this
        // instance owned the partition before and another one moved it on since): the
        // changelog has the current records. Local state at or past the committed offset is
        // this instance's own latest and is kept.
        // In transactions, local state ahead of the group's offset belongs to a transaction
        // that did not commit (its outputs were aborted): rebuilt too.
        let mut restored = 0;
        if local == 0 || local < committed || (self.log.transactional() && local != committed) {
            restored = self.restore(&state, p, committed).await?;
        }
        let task = HouseholdTask::new(state, self.model.clone(), self.programs.clone())?
            .with_max_parked(self.max_parked_per_household)
            .with_cache_capacity(self.cache_households);
        let mut fences = HashMap::new();
        if self.log.transactional() {
            // Aborted outputs are never read, committed ones came with their offsets: no
            // output can be written twice, so there is nothing to fence.
            tracing::info!(partition = p, "partition taken over (transactional)");
            return Ok((Owned { task, fences }, restored));
        }
        let mut exclusive = vec![
            self.topics.changelog.clone(),
            self.topics.parked.clone(),
            self.topics.dead_letter.clone(),
            self.topics.beneficiary_events.clone(),
        ];
        exclusive.extend(
            self.programs
                .iter()
                .map(|pr| self.topics.eligibility(&pr.id)),
        );
        // Where each output partition ends, asked side by side; then the last record of each
        // non-empty one, through one reader (a reader is a client of its own).
        let ends = futures_util::future::join_all(exclusive.into_iter().map(|topic| async move {
            let out = TopicPartition::new(&topic, p);
            let (beginning, end) = self.log.offsets(&out).await?;
            Ok::<_, LogError>((topic, out, (end > beginning).then_some((beginning, end))))
        }))
        .await;
        let mut reader = None;
        for end in ends {
            if let (topic, out, Some((beginning, end))) = end? {
                let reader = match &mut reader {
                    Some(r) => r,
                    None => reader.insert(self.log.reader()?),
                };
                let input_end = self.log.end_offset(tp);
                let fence = Fence::read(reader, &out, beginning, end, input_end).await?;
                fences.insert(topic, fence);
            }
        }
        tracing::info!(
            partition = p,
            next_offset = task.next_offset(),
            fences = fences.len(),
            "partition taken over"
        );
        Ok((Owned { task, fences }, restored))
    }

    /// Rebuilds a partition's records and waiting events from the compacted changelogs. The
    /// input offset resumes at the group's committed offset: events after it that the
    /// changelog already reflects are recognised by the reducer (recent event ids) and change
    /// nothing.
    async fn restore(
        &self,
        state: &FjallPartition,
        p: i32,
        resume_at: i64,
    ) -> Result<u64, RunError> {
        let mut households: HashMap<Vec<u8>, Household> = HashMap::new();
        self.read_compacted(&self.topics.changelog, p, |offset, key, value| {
            let Some(value) = value else {
                households.remove(key);
                return Ok(());
            };
            let h = self
                .codec
                .decode_household(value)
                .map_err(|reason| RunError::Restore {
                    topic: self.topics.changelog.clone(),
                    partition: p,
                    offset,
                    reason,
                })?;
            households.insert(key.to_vec(), h);
            Ok(())
        })
        .await?;
        let mut parked: HashMap<Vec<u8>, (HouseholdId, Vec<Event>)> = HashMap::new();
        self.read_compacted(&self.topics.parked, p, |offset, key, value| {
            let Some(value) = value else {
                parked.remove(key);
                return Ok(());
            };
            let list = self
                .codec
                .decode_parked(value)
                .map_err(|reason| RunError::Restore {
                    topic: self.topics.parked.clone(),
                    partition: p,
                    offset,
                    reason,
                })?;
            parked.insert(key.to_vec(), list);
            Ok(())
        })
        .await?;
        let n = households.len() as u64;
        let rules = self.restored_rules(&households).await?;
        state.clear()?;
        state.commit(&StateBatch {
            programs: rules
                .iter()
                .map(|(id, a)| (id.as_str(), a.as_slice()))
                .collect(),
            households: households.values().collect(),
            parked: parked
                .values()
                .filter(|(_, events)| !events.is_empty())
                .map(|(h, events)| (h, events.as_slice()))
                .collect(),
            next_offset: resume_at.max(0) as u64,
        })?;
        tracing::info!(
            partition = p,
            households = n,
            households_with_parked_events = parked.len(),
            resume_at,
            "partition restored from the changelog"
        );
        Ok(n)
    }

    /// The rule version a control record names, from `dsr.program-rules` (`Err`: why not, for
    /// the dead-letter topic).
    async fn activation_of(
        &self,
        r: &dsr_log::ConsumedRecord,
    ) -> Result<Result<ActivationRecord, String>, RunError> {
        let Some((program, version)) = crate::rules::marker(r) else {
            return Ok(Err(format!(
                "a control record this version of dsr does not know (header {})",
                crate::rules::CONTROL_HEADER
            )));
        };
        let all =
            crate::rules::activations(&self.log, &self.codec, &self.topics.program_rules).await?;
        let key = dsr_core::rule_versions::version_key(&program, version);
        Ok(all.get(&key).cloned().ok_or_else(|| {
            format!(
                "a rule activation marker for {key}, but {} has no such version",
                self.topics.program_rules
            )
        }))
    }

    /// The rule versions the restored records were decided under that are newer than the
    /// programs' files (the highest version each program's statuses name), from
    /// `dsr.program-rules`, as the state keeps them.
    async fn restored_rules(
        &self,
        households: &HashMap<Vec<u8>, Household>,
    ) -> Result<Vec<(String, Vec<u8>)>, RunError> {
        let mut highest: HashMap<&str, u32> = HashMap::new();
        for h in households.values() {
            for s in &h.programs {
                let v = highest.entry(s.program_id.as_str()).or_default();
                *v = (*v).max(s.rule_version);
            }
        }
        let newer: Vec<(&str, u32)> = self
            .programs
            .iter()
            .filter_map(|p| {
                highest
                    .get(p.id.as_str())
                    .filter(|v| **v > p.rule_version)
                    .map(|v| (p.id.as_str(), *v))
            })
            .collect();
        if newer.is_empty() {
            return Ok(Vec::new());
        }
        let all =
            crate::rules::activations(&self.log, &self.codec, &self.topics.program_rules).await?;
        let mut out = Vec::new();
        for (program, version) in newer {
            let key = dsr_core::rule_versions::version_key(program, version);
            match all.get(&key) {
                Some(a) => out.push((
                    program.to_owned(),
                    serde_json::to_vec(a).expect("an activation serializes to JSON"),
                )),
                None => tracing::warn!(
                    program,
                    version,
                    "restored records were decided under a rule version missing from {}; the partition decides under the file's version",
                    self.topics.program_rules
                ),
            }
        }
        Ok(out)
    }

    /// Calls `f(offset, key, value)` for every keyed record of partition `p` of a compacted
    /// topic, in order, up to its end offset as of now (`None`: a tombstone).
    async fn read_compacted(
        &self,
        topic: &str,
        p: i32,
        mut f: impl FnMut(i64, &[u8], Option<&[u8]>) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let tp = TopicPartition::new(topic, p);
        let (from, end) = self.log.offsets(&tp).await?;
        if from >= end {
            return Ok(());
        }
        let mut reader = self.log.reader()?;
        let reached = read_range(&mut reader, &tp, from, end, |r| match &r.key {
            Some(key) => f(r.offset, key, r.value.as_deref()),
            None => Ok(()),
        })
        .await?;
        // In transactions a partition ends with a commit marker, which readers never see: the
        // last record read is before the end offset.
        if reached < end && !self.log.transactional() {
            return Err(RunError::Restore {
                topic: topic.to_owned(),
                partition: p,
                offset: reached,
                reason: format!("no record could be read before the end offset {end}"),
            });
        }
        Ok(())
    }

    /// Processes one partition's records; returns the partition, the offset to commit to the
    /// group, and what the batch did.
    async fn process(
        &self,
        o: &mut Owned,
        p: i32,
        records: Vec<dsr_log::ConsumedRecord>,
    ) -> Result<(i32, Option<i64>, Stats), RunError> {
        let mut stats = Stats::default();
        let stats = &mut stats;
        let next = o.task.next_offset() as i64;
        let records: Vec<_> = records.into_iter().filter(|r| r.offset >= next).collect();
        let Some(first) = records.first() else {
            return Ok((p, None, Stats::default()));
        };
        if first.offset > next {
            tracing::warn!(
                partition = p,
                from = next,
                to = first.offset,
                "records missing from the log (retention?); skipping ahead"
            );
            o.task.skip_to(first.offset as u64);
        }
        let first_offset = first.offset as u64;
        // Consecutive offsets; a hole (should not happen on a delete-policy topic) is `None`.
        let last_offset = records
            .last()
            .map(|r| r.offset as u64)
            .unwrap_or(first_offset);
        let mut events: Vec<Option<Input>> = vec![None; (last_offset - first_offset + 1) as usize];
        let values: Vec<&[u8]> = records.iter().filter_map(|r| r.value.as_deref()).collect();
        self.codec.prepare(&values).await.map_err(RunError::Codec)?;
        let mut dead: Vec<(Source, Record)> = Vec::new();
        for r in &records {
            let i = (r.offset as u64 - first_offset) as usize;
            let decoded = if crate::rules::is_control(r) {
                match self.activation_of(r).await? {
                    Ok(a) => Some(Ok(Input::Activation(Box::new(a)))),
                    Err(reason) => Some(Err(reason)),
                }
            } else {
                r.value
                    .as_deref()
                    .map(|v| self.codec.decode_event(v).map(Input::Event))
            };
            match decoded {
                Some(Ok(input)) => events[i] = Some(input),
                Some(Err(reason)) => dead.push((
                    Source {
                        offset: r.offset as u64,
                        seq: 0,
                    },
                    dead_letter(
                        r.key.clone(),
                        r.value.clone().unwrap_or_default(),
                        &reason,
                        &r.topic,
                        p,
                        r.offset,
                    ),
                )),
                None => {}
            }
        }
        let out = o.task.process_batch(first_offset, &events)?;
        stats.events += out.events;
        self.progress
            .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.produce(o, p, &out, dead, &records, stats).await?;
        let next = out.next_offset as i64;
        // Synced once for every partition of the poll, before the group commit (`run`).
        o.task.write(out)?;
        stats.batches += 1;
        Ok((p, Some(next), stats.clone()))
    }

    async fn produce(
        &self,
        o: &mut Owned,
        p: i32,
        out: &BatchOutput,
        mut dead: Vec<(Source, Record)>,
        inputs: &[dsr_log::ConsumedRecord],
        stats: &mut Stats,
    ) -> Result<(), RunError> {
        let mut by_topic: BTreeMap<String, Vec<(Source, Record)>> = BTreeMap::new();
        let enc = RunError::Encode;
        for output in &out.outputs {
            let (topic, source, record) = match output {
                Output::Changelog {
                    household_id,
                    source,
                } => {
                    let h = &out.changed[household_id];
                    let value = self.codec.encode_household(h).map_err(enc)?;
                    (
                        self.topics.changelog.clone(),
                        *source,
                        Record::new(household_id.as_str(), value).with_partition(p),
                    )
                }
                Output::Parked {
                    household_id,
                    source,
                } => {
                    let events = out
                        .parked
                        .get(household_id)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let record = if events.is_empty() {
                        Record::tombstone(household_id.as_str())
                    } else {
                        let value = self
                            .codec
                            .encode_parked(household_id, events)
                            .map_err(enc)?;
                        Record::new(household_id.as_str(), value)
                    };
                    (
                        self.topics.parked.clone(),
                        *source,
                        record.with_partition(p),
                    )
                }
                Output::Eligibility { change, source } => {
                    let value = self.codec.encode_change(change).map_err(enc)?;
                    (
                        self.topics.eligibility(&change.program_id),
                        *source,
                        // The change id is in the value; no header: on nisshi each costs an
                        // SQL statement per record.
                        Record::new(change.household_id.as_str(), value).with_partition(p),
                    )
                }
                Output::Beneficiary { notice, source } => {
                    let value = self.codec.encode_beneficiary(notice).map_err(enc)?;
                    (
                        self.topics.beneficiary_events.clone(),
                        *source,
                        Record::new(notice.household_id.as_str(), value)
                            .with_partition(p)
                            .with_header("dsr-program", notice.program_id.as_str())
                            .with_header("dsr-notice-id", notice.notice_id.to_string()),
                    )
                }
                Output::Derived { event, source } => {
                    let value = self.codec.encode_event(event).map_err(enc)?;
                    let key = event
                        .envelope
                        .household_id
                        .as_ref()
                        .map(|h| h.as_str().to_owned())
                        .unwrap_or_default();
                    (
                        self.topics.household_events.clone(),
                        *source,
                        Record::new(key, value),
                    )
                }
                Output::DeadLetter {
                    offset,
                    reason,
                    source,
                    household_id,
                    parked,
                } => {
                    let (key, value) = match parked {
                        Some(event) => (
                            household_id
                                .as_ref()
                                .map(|h| h.as_str().as_bytes().to_vec()),
                            self.codec.encode_event(event).map_err(enc)?,
                        ),
                        None => inputs
                            .iter()
                            .find(|r| r.offset as u64 == *offset)
                            .map(|r| (r.key.clone(), r.value.clone().unwrap_or_default()))
                            .unwrap_or((None, Vec::new())),
                    };
                    dead.push((
                        *source,
                        dead_letter(
                            key,
                            value,
                            reason,
                            &self.topics.household_events,
                            p,
                            *offset as i64,
                        ),
                    ));
                    continue;
                }
            };
            by_topic.entry(topic).or_default().push((source, record));
        }
        dead.sort_by_key(|(s, _)| *s);
        for (s, r) in dead {
            by_topic
                .entry(self.topics.dead_letter.clone())
                .or_default()
                .push((s, r.with_partition(p)));
        }
        // Two phases: eligibility changes, dead letters and derived events are acknowledged
        // before the state changelogs (records, waiting events) are (`Log::append_phases`).
        // A processor that restores a partition from the changelog treats the events a
        // household already reflects as done, so whatever those events produced must already
        // be in the log.
        // In a transaction the order does not matter (all of it becomes readable, or none):
        // one phase.
        let mut state_changelogs = BTreeMap::new();
        if !self.log.transactional() {
            for topic in [&self.topics.changelog, &self.topics.parked] {
                if let Some(records) = by_topic.remove(topic) {
                    state_changelogs.insert(topic.clone(), records);
                }
            }
        }
        let mut phases = Vec::with_capacity(2);
        for phase in [by_topic, state_changelogs] {
            let mut sends = Vec::new();
            for (topic, records) in phase {
                let mut fence = o.fences.get_mut(&topic);
                let before = records.len();
                let mut last = None;
                let mut keep: Vec<Record> = records
                    .into_iter()
                    .filter(|(s, r)| !fence.as_mut().is_some_and(|f| f.holds(*s, r)))
                    .map(|(s, r)| {
                        last = Some(s);
                        r
                    })
                    .collect();
                stats.fenced += (before - keep.len()) as u64;
                let Some(last) = last else {
                    continue;
                };
                // The fence reads the last record of a partition; the rest go without.
                // (Derived events, the one output spread over partitions, are not fenced.)
                if topic != self.topics.household_events {
                    mark_last(&mut keep, last);
                }
                stats.produced += keep.len() as u64;
                sends.push((topic, keep));
            }
            phases.push(sends);
        }
        self.log.append_phases(phases).await?;
        // A fence is needed until the input has passed its offset: a replayed range can come
        // back in smaller batches than the ones that first produced it.
        o.fences.retain(|_, f| !f.passed(out.next_offset));
        Ok(())
    }
}

/// A decoded household's member ids, in record order.
pub fn member_ids(household: Household) -> Vec<dsr_core::PersonId> {
    household.members.into_iter().map(|m| m.person_id).collect()
}

/// Tops a poll up to `batch_size` records for up to `linger`: a poll returns as soon as anything
/// is fetched, and each batch costs two produce round trips, a synced state write and a group
/// commit, so fuller batches are cheaper per event. Records events in a row are merged (their
/// order kept); assignment changes stay where they happened.
async fn fill<M: GroupMember>(
    member: &mut M,
    events: &mut Vec<GroupEvent>,
    batch_size: usize,
    linger: Duration,
) -> Result<(), LogError> {
    let count = |events: &[GroupEvent]| -> usize {
        events
            .iter()
            .map(|e| match e {
                GroupEvent::Records(r) => r.len(),
                _ => 0,
            })
            .sum()
    };
    let mut have = count(events);
    if have == 0 || linger.is_zero() {
        return Ok(());
    }
    let until = std::time::Instant::now() + linger;
    while have < batch_size {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let more = member.poll(batch_size - have, left).await?;
        if more.is_empty() {
            break;
        }
        have += count(&more);
        for e in more {
            match (events.last_mut(), e) {
                (Some(GroupEvent::Records(last)), GroupEvent::Records(new)) => last.extend(new),
                (_, e) => events.push(e),
            }
        }
    }
    Ok(())
}

/// Reads `tp` from `from` up to `end` (exclusive), calling `f` for each record in order, and
/// returns the offset reached: `end`, or less if the log returned nothing before it.
pub(crate) async fn read_range<R: PartitionReader, E: From<LogError>>(
    reader: &mut R,
    tp: &TopicPartition,
    mut from: i64,
    end: i64,
    mut f: impl FnMut(&dsr_log::ConsumedRecord) -> Result<(), E>,
) -> Result<i64, E> {
    while from < end {
        let batch = reader
            .read(tp, from, 10_000, Duration::from_secs(5))
            .await?;
        if batch.is_empty() {
            break;
        }
        for r in &batch {
            if r.offset >= end {
                from = end;
                break;
            }
            f(r)?;
            from = r.next_offset();
        }
    }
    Ok(from)
}

/// A dead-letter record: the original key and bytes, the reason and where they came from.
pub(crate) fn dead_letter(
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    reason: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Record {
    let mut r = Record {
        key,
        value: Some(value),
        ..Record::default()
    };
    r = r
        .with_header(REASON_HEADER, reason.as_bytes().to_vec())
        .with_header(ORIGIN_TOPIC_HEADER, topic.as_bytes().to_vec())
        .with_header(ORIGIN_PARTITION_HEADER, partition.to_string())
        .with_header(ORIGIN_OFFSET_HEADER, offset.to_string());
    r
}
