//! The household task: a pure fold of a batch of events over the partition's state, with the
//! outputs it must produce. No I/O except through the state port.

use dsr_core::eligibility::Program;
use dsr_core::ids::{HouseholdMap, HouseholdSet};
use dsr_core::reducer::{target_household, ApplyError};
use dsr_core::rule_versions::{reevaluate, ActivationRecord, RuleActivation};
use dsr_core::waiting::{retry_waiting, waits, Attempt};
use dsr_core::{process, Context, EligibilityChange, Event, Household, HouseholdId, PmtModel};
use dsr_store::{PartitionState, StateBatch, StoreError};

/// Where an output came from: the input offset and the output's number among that input's
/// outputs. Carried as the `dsr-src` header; the fence on restart compares these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub offset: u64,
    pub seq: u32,
}

impl Source {
    /// The header form, `offset:seq`.
    pub fn header(&self) -> String {
        format!("{}:{}", self.offset, self.seq)
    }

    pub fn parse(s: &str) -> Option<Source> {
        let (o, q) = s.split_once(':')?;
        Some(Source {
            offset: o.parse().ok()?,
            seq: q.parse().ok()?,
        })
    }
}

/// One input record of the household topic.
// Events are nearly every input: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// A life event (or a derived one) for one household.
    Event(Event),
    /// A rule version taking effect: every household of the partition is decided again.
    Activation(Box<ActivationRecord>),
}

/// One record the batch must produce.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The household's latest record in this batch (in [`BatchOutput::changed`]), to the
    /// compacted changelog: one per household per batch, tagged with the source of the last
    /// event that changed it (a compacted topic keeps only the last record per key anyway).
    Changelog {
        household_id: HouseholdId,
        source: Source,
    },
    /// An eligibility change, to the program's topic.
    Eligibility {
        change: EligibilityChange,
        source: Source,
    },
    /// A life event about a household that was a program's beneficiary, to
    /// `dsr.beneficiary-events`.
    Beneficiary {
        notice: dsr_core::BeneficiaryEvent,
        source: Source,
    },
    /// A derived event for another household (the receiving side of a move), to
    /// `dsr.household-events`.
    Derived { event: Box<Event>, source: Source },
    /// The household's waiting list changed (in [`BatchOutput::parked`]; empty: a
    /// tombstone), to `dsr.household-parked`: one per household per batch, like the changelog.
    Parked {
        household_id: HouseholdId,
        source: Source,
    },
    /// An event that cannot be applied: to the dead-letter topic with the reason.
    DeadLetter {
        offset: u64,
        household_id: Option<HouseholdId>,
        reason: String,
        source: Source,
        /// A parked event given up on: the dead letter carries it (re-encoded), not the
        /// record at `offset` that pushed it out.
        parked: Option<Box<Event>>,
    },
}

/// What one batch did: the outputs in input order, and the state to commit after they are
/// acknowledged.
#[derive(Debug, Default)]
pub struct BatchOutput {
    pub outputs: Vec<Output>,
    /// Households changed by the batch (their latest record).
    pub changed: HouseholdMap<Household>,
    /// The source of the last event that changed each household (the changelog record's).
    pub last_change: HouseholdMap<Source>,
    /// The offset after the batch's last event.
    pub next_offset: u64,
    /// Parked events by household, for every household the batch touched (written whole).
    pub parked: HouseholdMap<Vec<Event>>,
    pub events: u64,
    pub duplicates: u64,
    /// Households whose parked list changed (only those are written), with the source of
    /// the last change (the `dsr.household-parked` record's).
    pub parked_dirty: HouseholdSet,
    pub parked_last: HouseholdMap<Source>,
    /// Events parked / taken out of parking in this batch.
    pub parked_now: u64,
    pub unparked: u64,
    /// Rule versions that took effect (program id, the activation as the state keeps it).
    pub programs: Vec<(String, Vec<u8>)>,
    pub activations: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the rule version kept for program `{program}` is unreadable: {reason} (restore the partition from its changelog)")]
    KeptRule { program: String, reason: String },
    #[error("the batch starts at offset {got}, but partition {partition} expects {expected}; the runner must read from the state's next offset")]
    OutOfOrder {
        partition: u32,
        expected: u64,
        got: u64,
    },
}

/// One partition's household processor.
///
/// It keeps a read cache of the records it has seen (the store stays the durable truth: the
/// cache only ever holds what was committed), and the set of households with parked events,
/// so the hot path reads the store only for households it has not seen yet.
pub struct HouseholdTask<S: PartitionState> {
    state: S,
    model: PmtModel,
    programs: Vec<Program>,
    next_offset: u64,
    cache: HouseholdMap<Option<Household>>,
    cache_capacity: usize,
    /// The map a batch works in, kept empty between batches for its capacity.
    batch_cache: HouseholdMap<Option<Household>>,
    with_parked: HouseholdSet,
    max_parked: usize,
}

/// Records cached per task by default (~2 KB each, so ~20 MB per partition). Memory, not
/// speed, sets it: a registry of millions of households cannot keep them all in memory, and
/// the store holds every one (a miss costs one read, decryption and decoding).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

impl<S: PartitionState> HouseholdTask<S> {
    /// A task for `state` deciding `programs`, except where the partition has met a newer
    /// version of a program's rule (kept in the state): that version is used.
    pub fn new(state: S, model: PmtModel, mut programs: Vec<Program>) -> Result<Self, TaskError> {
        for (id, kept) in state.programs()? {
            let bad = |reason: String| TaskError::KeptRule {
                program: id.clone(),
                reason,
            };
            let record: ActivationRecord =
                serde_json::from_slice(&kept).map_err(|e| bad(e.to_string()))?;
            let activation = record.compile().map_err(|e| bad(e.to_string()))?;
            if let Some(p) = programs.iter_mut().find(|p| p.id == activation.program.id) {
                if activation.program.rule_version > p.rule_version {
                    *p = activation.program;
                }
            }
        }
        let next_offset = state.next_offset()?;
        let with_parked = state.parked_households()?.into_iter().collect();
        Ok(HouseholdTask {
            state,
            model,
            programs,
            next_offset,
            cache: HouseholdMap::default(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            batch_cache: HouseholdMap::default(),
            with_parked,
            max_parked: MAX_PARKED_PER_HOUSEHOLD,
        })
    }

    /// Keeps at most `n` household records in memory (at least one batch's worth is held
    /// while a batch is processed, whatever `n` is).
    pub fn with_cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// At most `n` events wait per household; beyond it the oldest goes to the dead-letter
    /// topic, saying why (default [`MAX_PARKED_PER_HOUSEHOLD`]).
    pub fn with_max_parked(mut self, n: usize) -> Self {
        self.max_parked = n;
        self
    }

    /// The input offset to read from next.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Moves past records the log no longer has (retention); committed with the next batch.
    pub fn skip_to(&mut self, offset: u64) {
        if offset > self.next_offset {
            self.next_offset = offset;
        }
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    /// The programs as this partition decides them now (rule versions it has met included).
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }

    /// Processes `events` (consecutive input records starting at `first_offset`; `None` marks
    /// a record that could not be decoded, already dead-lettered by the caller) without
    /// committing anything.
    pub fn process_batch(
        &mut self,
        first_offset: u64,
        events: &[Option<Input>],
    ) -> Result<BatchOutput, TaskError> {
        if first_offset != self.next_offset {
            return Err(TaskError::OutOfOrder {
                partition: self.state.partition(),
                expected: self.next_offset,
                got: first_offset,
            });
        }
        // Sized for the batch up front: growing these maps batch after batch showed in profiles.
        let mut out = BatchOutput {
            next_offset: first_offset + events.len() as u64,
            parked: HouseholdMap::with_capacity_and_hasher(events.len(), Default::default()),
            last_change: HouseholdMap::with_capacity_and_hasher(events.len(), Default::default()),
            ..BatchOutput::default()
        };
        // The batch's working map is the task's, emptied, with the room of earlier batches:
        // a fresh one per batch (~300 bytes an entry) had the allocator fetch fresh pages from
        // the kernel each time, which zeroed them (~3% of `dsr up`'s CPU under load).
        let mut cache = std::mem::take(&mut self.batch_cache);
        cache.reserve(events.len());
        for (i, event) in events.iter().enumerate() {
            let offset = first_offset + i as u64;
            let event = match event {
                None => continue,
                Some(Input::Activation(record)) => {
                    out.activations += 1;
                    self.activate(record, offset, &mut cache, &mut out)?;
                    continue;
                }
                Some(Input::Event(event)) => event,
            };
            // The next event's household starts loading into the CPU's cache while this one is
            // processed (`Household::prefetch`: most of the domain core's cost is that wait).
            if let Some(Some(Input::Event(next))) = events.get(i + 1) {
                if let Some(Some(h)) = target_household(next)
                    .and_then(|hid| cache.get(hid).or_else(|| self.cache.get(hid)))
                {
                    h.prefetch();
                }
            }
            let ctx = Context {
                model: &self.model,
                programs: &self.programs,
            };
            out.events += 1;
            let mut seq = 0u32;
            let Some(hid) = target_household(event).cloned() else {
                out.outputs.push(Output::DeadLetter {
                    offset,
                    household_id: None,
                    reason: format!(
                        "a {} event on the household topic names no household",
                        event.event_type()
                    ),
                    source: Source { offset, seq },
                    parked: None,
                });
                continue;
            };
            if !cache.contains_key(&hid) {
                // Taken out of the task's cache (the store still has the committed record if the
                // batch is abandoned); `commit` puts the new record back.
                let loaded = match self.cache.remove(&hid) {
                    Some(h) => h,
                    None => self.state.get(&hid)?,
                };
                cache.insert(hid.clone(), loaded);
            }
            if !out.parked.contains_key(&hid) {
                let parked = if self.with_parked.contains(&hid) {
                    self.state.parked(&hid)?
                } else {
                    Vec::new()
                };
                out.parked.insert(hid.clone(), parked);
            }
            let slot = cache.get_mut(&hid).expect("inserted above");
            match self.apply_one(slot, event, offset, &mut seq, &ctx, &mut out) {
                Ok(true) => {
                    // The household changed: events parked for it may apply now.
                    self.retry_parked(&hid, slot, offset, &mut seq, &ctx, &mut out);
                }
                Ok(false) => {}
                Err(e) if waits(&e) => {
                    let parked = out.parked.get_mut(&hid).expect("loaded above");
                    parked.push(event.clone());
                    out.parked_now += 1;
                    out.parked_dirty.insert(hid.clone());
                    out.parked_last.insert(hid.clone(), next(offset, &mut seq));
                    if parked.len() > self.max_parked {
                        let oldest = parked.remove(0);
                        out.outputs.push(Output::DeadLetter {
                            offset,
                            household_id: Some(hid.clone()),
                            reason: format!(
                                "event {} waited too long ({} later events for the same household also wait): {}",
                                oldest.envelope.event_id, self.max_parked, e
                            ),
                            source: next(offset, &mut seq),
                            parked: Some(Box::new(oldest)),
                        });
                    }
                }
                Err(e) => out.outputs.push(Output::DeadLetter {
                    offset,
                    household_id: Some(hid.clone()),
                    reason: e.to_string(),
                    source: next(offset, &mut seq),
                    parked: None,
                }),
            }
        }
        // One changelog record per changed household, in the order of their last change, so
        // the changelog partition's sources only ever increase (the fence relies on it).
        let mut last: Vec<(Source, HouseholdId)> = out
            .last_change
            .iter()
            .map(|(h, s)| (*s, h.clone()))
            .collect();
        last.sort();
        out.changed.reserve(last.len());
        for (source, household_id) in last {
            if let Some(Some(h)) = cache.remove(&household_id) {
                out.changed.insert(household_id.clone(), h);
            }
            out.outputs.push(Output::Changelog {
                household_id,
                source,
            });
        }
        // The same for the waiting lists that changed.
        let mut last: Vec<(Source, HouseholdId)> = out
            .parked_last
            .iter()
            .map(|(h, s)| (*s, h.clone()))
            .collect();
        last.sort();
        for (source, household_id) in last {
            out.outputs.push(Output::Parked {
                household_id,
                source,
            });
        }
        // Unchanged households go back to the task's cache as they were.
        for (hid, h) in cache.drain() {
            self.cache.insert(hid, h);
        }
        self.batch_cache = cache;
        Ok(out)
    }

    /// A rule version takes effect: every household of the partition (those this batch holds,
    /// as the batch left them, and the rest from the store), in household id order, is decided
    /// again under it ([`reevaluate`], the function a preview runs); from here on the
    /// partition decides the program under the new version.
    fn activate(
        &mut self,
        record: &ActivationRecord,
        offset: u64,
        cache: &mut HouseholdMap<Option<Household>>,
        out: &mut BatchOutput,
    ) -> Result<(), TaskError> {
        let mut seq = 0u32;
        let dead = |reason: String, seq: &mut u32, out: &mut BatchOutput| {
            out.outputs.push(Output::DeadLetter {
                offset,
                household_id: None,
                reason,
                source: next(offset, seq),
                parked: None,
            })
        };
        let activation: RuleActivation = match record.compile() {
            Ok(a) => a,
            Err(e) => {
                dead(
                    format!("rule activation {}: {e}", record.key()),
                    &mut seq,
                    out,
                );
                return Ok(());
            }
        };
        let Some(index) = self
            .programs
            .iter()
            .position(|p| p.id == activation.program.id)
        else {
            dead(
                format!(
                    "rule activation {}: this processor has no program `{}` (add its file to programs/ and restart)",
                    record.key(),
                    activation.program.id
                ),
                &mut seq,
                out,
            );
            return Ok(());
        };
        if activation.program.rule_version <= self.programs[index].rule_version {
            // Met again (an older marker, or one re-read): the version is in effect already.
            return Ok(());
        }
        let mut stored = Vec::new();
        self.state.for_each(&mut |h| {
            if !cache.contains_key(&h.household_id) {
                stored.push(h);
            }
            Ok(())
        })?;
        for h in stored {
            self.cache.remove(&h.household_id);
            cache.insert(h.household_id.clone(), Some(h));
        }
        let mut ids: Vec<HouseholdId> = cache
            .iter()
            .filter(|(_, h)| h.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        for hid in ids {
            let h = cache
                .get_mut(&hid)
                .and_then(Option::as_mut)
                .expect("listed above");
            match reevaluate(h, &activation) {
                Ok(change) => {
                    if let Some(change) = change {
                        out.outputs.push(Output::Eligibility {
                            change,
                            source: next(offset, &mut seq),
                        });
                    }
                    let source = next(offset, &mut seq);
                    out.last_change.insert(hid, source);
                }
                Err(e) => out.outputs.push(Output::DeadLetter {
                    offset,
                    household_id: Some(hid.clone()),
                    reason: format!(
                        "rule activation {}: the rule cannot be evaluated for household {hid}: {e}; it keeps its status",
                        record.key()
                    ),
                    source: next(offset, &mut seq),
                    parked: None,
                }),
            }
        }
        self.programs[index] = activation.program;
        out.programs.retain(|(id, _)| *id != record.program.id);
        out.programs.push((
            record.program.id.clone(),
            serde_json::to_vec(record).expect("an activation serializes to JSON"),
        ));
        Ok(())
    }

    /// Applies one event; `Ok(true)` when the household changed.
    fn apply_one(
        &self,
        slot: &mut Option<Household>,
        event: &Event,
        offset: u64,
        seq: &mut u32,
        ctx: &Context,
        out: &mut BatchOutput,
    ) -> Result<bool, ApplyError> {
        let p = process(slot, event, ctx)?;
        if p.duplicate {
            out.duplicates += 1;
            return Ok(false);
        }
        let hid = &slot
            .as_ref()
            .expect("a processed event leaves a household")
            .household_id;
        for effect in &p.effects {
            out.outputs.push(Output::Derived {
                event: Box::new(effect.to_event(event)),
                source: next(offset, seq),
            });
        }
        for change in p.changes {
            out.outputs.push(Output::Eligibility {
                change,
                source: next(offset, seq),
            });
        }
        for notice in p.notices {
            out.outputs.push(Output::Beneficiary {
                notice,
                source: next(offset, seq),
            });
        }
        let source = next(offset, seq);
        match out.last_change.get_mut(hid) {
            Some(s) => *s = source,
            None => {
                out.last_change.insert(hid.clone(), source);
            }
        }
        Ok(true)
    }

    /// Applies parked events of `hid` that fit now, oldest first, until none does (in the
    /// domain core's order: [`dsr_core::waiting::retry_waiting`]).
    fn retry_parked(
        &self,
        hid: &HouseholdId,
        slot: &mut Option<Household>,
        offset: u64,
        seq: &mut u32,
        ctx: &Context,
        out: &mut BatchOutput,
    ) {
        let mut waiting = std::mem::take(out.parked.get_mut(hid).expect("loaded before"));
        let changed = retry_waiting(&mut waiting, |e| {
            match self.apply_one(slot, e, offset, seq, ctx, out) {
                Ok(_) => {
                    out.unparked += 1;
                    Attempt::Applied
                }
                Err(err) if waits(&err) => Attempt::Waits(err),
                Err(err) => {
                    out.outputs.push(Output::DeadLetter {
                        offset,
                        household_id: Some(hid.clone()),
                        reason: format!("parked event {}: {err}", e.envelope.event_id),
                        source: next(offset, seq),
                        parked: Some(Box::new(e.clone())),
                    });
                    Attempt::Failed
                }
            }
        });
        if changed {
            out.parked_dirty.insert(hid.clone());
            out.parked_last.insert(hid.clone(), next(offset, seq));
        }
        *out.parked.get_mut(hid).expect("loaded before") = waiting;
    }

    /// Writes the batch's state and offset (after its outputs are acknowledged), on disk when
    /// this returns.
    pub fn commit(&mut self, batch: BatchOutput) -> Result<(), TaskError> {
        self.write(batch)?;
        Ok(self.state.sync()?)
    }

    /// Writes the batch's state and offset atomically, on disk after the state's next
    /// [`PartitionState::sync`]: the processor writes every partition of a poll, syncs once,
    /// and only then commits the group's offsets.
    pub fn write(&mut self, batch: BatchOutput) -> Result<(), TaskError> {
        self.state.write(&StateBatch {
            households: batch.changed.values().collect(),
            parked: batch
                .parked
                .iter()
                .filter(|(h, _)| batch.parked_dirty.contains(*h))
                .map(|(h, events)| (h, events.as_slice()))
                .collect(),
            next_offset: batch.next_offset,
            programs: batch
                .programs
                .iter()
                .map(|(id, a)| (id.as_str(), a.as_slice()))
                .collect(),
        })?;
        self.next_offset = batch.next_offset;
        // Only now, with the batch written, does the cache take its records (a failed sync
        // stops the processor, and the cache with it).
        let room = self.cache_capacity.saturating_sub(batch.changed.len());
        if self.cache.len() > room {
            // Evict arbitrary records (the map's order has nothing to do with which
            // households get events), a tenth more than needed so that this does not run on
            // every batch. Emptying the whole cache made every household a miss at once.
            let keep = room - room / 10;
            let mut kept = 0;
            self.cache.retain(|_, _| {
                kept += 1;
                kept <= keep
            });
        }
        for hid in &batch.parked_dirty {
            match batch.parked.get(hid) {
                Some(list) if !list.is_empty() => {
                    self.with_parked.insert(hid.clone());
                }
                _ => {
                    self.with_parked.remove(hid);
                }
            }
        }
        for (hid, h) in batch.changed {
            self.cache.insert(hid, Some(h));
        }
        Ok(())
    }
}

/// At most this many events wait per household; beyond it the oldest is dead-lettered, so a
/// household that never appears cannot grow the state without bound.
pub const MAX_PARKED_PER_HOUSEHOLD: usize = 100;

fn next(offset: u64, seq: &mut u32) -> Source {
    let s = Source { offset, seq: *seq };
    *seq += 1;
    s
}
