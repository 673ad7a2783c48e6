//! The router on a log: the first stage after the source topics (`dsr.life-events.*`).
//!
//! Per poll: decode and validate each source record ([`crate::router::route`]) →
//! - an event that names its household goes to `dsr.household-events`, keyed by household;
//! - an event about a person only is looked up in the person → household directory (fed from
//!   the household changelog) and forwarded with the household filled in;
//! - a person the directory does not know yet is *parked*: written to the compacted topic
//!   `dsr.router-parked` (so a router that dies loses nothing) and forwarded as soon as the
//!   directory learns the person, or dead-lettered after `max_wait`;
//! - area-wide events go to `dsr.area-events` (the scale-up processor's input);
//! - a record that cannot be used goes to `dsr.dead-letter.sources` with its original bytes,
//!   the reason and where it came from.
//!
//! All outputs of a poll are acknowledged before the group offsets are committed: at least
//! once. A record forwarded twice after a crash carries the same `event_id`, which the
//! household processor recognises (the household remembers the ids of its recent events) — so
//! the pipeline as a whole applies it once.

use crate::router::{route_event, PersonIndex, Route};
use crate::runner::{dead_letter, read_range, Codec};
use dsr_core::{Event, HouseholdId, Micros, PersonId};
use dsr_log::{GroupEvent, GroupMember, Log, LogError, Record, TopicPartition};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The header of a parked record naming the person it waits for.
pub const WAITING_FOR_HEADER: &str = "dsr-waiting-for";

/// The topics the router reads and writes.
#[derive(Clone, Debug)]
pub struct RouterTopics {
    pub sources: Vec<String>,
    pub household_events: String,
    pub changelog: String,
    pub area_events: String,
    pub parked: String,
    pub dead_letter: String,
}

impl Default for RouterTopics {
    fn default() -> Self {
        RouterTopics {
            sources: [
                "crvs",
                "id-authority",
                "tax",
                "labour",
                "health",
                "disaster",
                "legacy-http",
            ]
            .iter()
            .map(|s| format!("dsr.life-events.{s}"))
            .collect(),
            household_events: "dsr.household-events".into(),
            changelog: "dsr.household-changelog".into(),
            area_events: "dsr.area-events".into(),
            parked: "dsr.router-parked".into(),
            dead_letter: "dsr.dead-letter.sources".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the codec is not ready: {0}")]
    Codec(String),
    #[error("cannot encode a routed event: {0}")]
    Encode(String),
}

/// Who belongs to which household now, as the household changelog says.
///
/// It holds every person of the registry in memory (17M people in Chile's registry), so it
/// is laid out for size: each household id is kept once, in a slot, and people point at the
/// slot (about 0.4 KB per household of five, against 0.95 KB when every person held a copy
/// of the household id and every household a map entry of its own).
#[derive(Default)]
pub struct PersonDirectory {
    /// Person → slot of their household in `households`.
    household_of: HashMap<PersonId, u32>,
    /// Household id → its slot.
    slot_of: HashMap<HouseholdId, u32>,
    /// Per slot: the household and its members now (empty once it is gone: the slot is
    /// reused by the next new household).
    households: Vec<(HouseholdId, Box<[PersonId]>)>,
    /// Slots of households that are gone.
    free: Vec<u32>,
}

impl PersonIndex for PersonDirectory {
    fn household_of(&self, person: &PersonId) -> Option<HouseholdId> {
        let slot = *self.household_of.get(person)?;
        Some(self.households[slot as usize].0.clone())
    }
}

impl PersonDirectory {
    /// Takes the member ids of a household's latest record (none: the household is gone or
    /// dissolved); returns the people it newly knows.
    pub fn learn(&mut self, household_id: &HouseholdId, members: Vec<PersonId>) -> Vec<PersonId> {
        let now: Box<[PersonId]> = members.into_boxed_slice();
        let slot = match self.slot_of.get(household_id) {
            Some(&slot) => slot,
            None if now.is_empty() => return Vec::new(),
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.households[slot as usize] = (household_id.clone(), Box::default());
                        slot
                    }
                    None => {
                        self.households.push((household_id.clone(), Box::default()));
                        u32::try_from(self.households.len() - 1)
                            .expect("fewer than 4 billion households")
                    }
                };
                self.slot_of.insert(household_id.clone(), slot);
                slot
            }
        };
        if self.households[slot as usize].1 == now {
            // Most records change a household's income or score, not who lives there: the
            // directory already says what this one would, and re-inserting every member (a
            // hash, a clone and a lookup each) was a tenth of the router's time.
            return Vec::new();
        }
        let before = std::mem::take(&mut self.households[slot as usize].1);
        for p in before.iter() {
            if !now.contains(p) && self.household_of.get(p) == Some(&slot) {
                self.household_of.remove(p);
            }
        }
        let mut new = Vec::new();
        for p in now.iter() {
            if self.household_of.insert(p.clone(), slot) != Some(slot) {
                new.push(p.clone());
            }
        }
        if now.is_empty() {
            self.slot_of.remove(household_id);
            self.households[slot as usize] = (HouseholdId::default(), Box::default());
            self.free.push(slot);
        } else {
            self.households[slot as usize].1 = now;
        }
        new
    }

    pub fn len(&self) -> usize {
        self.household_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.household_of.is_empty()
    }
}

/// Counts, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub records: u64,
    pub forwarded: u64,
    pub area: u64,
    pub parked: u64,
    pub released: u64,
    pub dead_letters: u64,
}

/// An event waiting for its person.
struct Waiting {
    key: String,
    origin: TopicPartition,
    event: Event,
    since: Instant,
}

/// The router of one `dsr route` instance.
pub struct SourceRouter<L: Log, C: Codec> {
    pub log: L,
    pub codec: C,
    pub topics: RouterTopics,
    pub group: String,
    pub batch_size: usize,
    /// How long an event for an unknown person waits before it is dead-lettered.
    pub max_wait: Duration,
}

impl<L: Log, C: Codec> SourceRouter<L, C> {
    /// Runs until `stop` resolves (then leaves the group cleanly).
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<RouterStats, RouterError> {
        let sources: Vec<&str> = self.topics.sources.iter().map(String::as_str).collect();
        let mut member = self.log.join_group(&self.group, &sources)?;
        let mut stats = RouterStats::default();
        let mut directory = PersonDirectory::default();
        let mut changelog_at: HashMap<i32, i64> = HashMap::new();
        let mut reader = self.log.reader()?;
        let mut waiting: HashMap<PersonId, Vec<Waiting>> = HashMap::new();
        let mut owned: HashSet<TopicPartition> = HashSet::new();
        tokio::pin!(stop);
        loop {
            // The directory first: a person registered a moment ago is found.
            let learned = self
                .follow_changelog(&mut reader, &mut directory, &mut changelog_at)
                .await?;
            self.release(&learned, &directory, &mut waiting, &mut stats)
                .await?;
            self.expire(&mut waiting, &mut stats).await?;
            let events = tokio::select! {
                _ = &mut stop => break,
                polled = member.poll(self.batch_size, Duration::from_millis(200)) => polled?,
            };
            for event in events {
                match event {
                    GroupEvent::Assigned(tps) => {
                        let new: HashSet<TopicPartition> =
                            tps.into_iter().filter(|tp| !owned.contains(tp)).collect();
                        self.load_parked(&mut reader, &new, &mut waiting).await?;
                        owned.extend(new);
                    }
                    GroupEvent::Revoked(tps) => {
                        for tp in &tps {
                            owned.remove(tp);
                        }
                        for list in waiting.values_mut() {
                            list.retain(|w| owned.contains(&w.origin));
                        }
                        waiting.retain(|_, l| !l.is_empty());
                    }
                    GroupEvent::Records(records) => {
                        let next = self
                            .route_records(records, &directory, &mut waiting, &mut stats)
                            .await?;
                        let offsets: Vec<(TopicPartition, i64)> = next.into_iter().collect();
                        member.commit(&offsets).await?;
                    }
                }
            }
        }
        member.leave().await?;
        Ok(stats)
    }

    /// Reads what the changelog gained since the last call into the directory; returns the
    /// people it newly knows.
    async fn follow_changelog(
        &self,
        reader: &mut L::Reader,
        directory: &mut PersonDirectory,
        at: &mut HashMap<i32, i64>,
    ) -> Result<Vec<PersonId>, RouterError> {
        let mut learned = Vec::new();
        let partitions = self.log.partition_count(&self.topics.changelog).await?;
        for p in 0..partitions {
            let tp = TopicPartition::new(&self.topics.changelog, p);
            let end = self.log.end_offset(&tp).await?;
            let from = match at.get(&p) {
                Some(o) => *o,
                None => self.log.beginning_offset(&tp).await?,
            };
            let codec = &self.codec;
            let from = read_range(reader, &tp, from, end, |r| {
                let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
                    return Ok::<(), RouterError>(());
                };
                let household_id = HouseholdId::new(key);
                let members = match r.value.as_deref() {
                    Some(v) => match codec.decode_household_members(v) {
                        Ok(members) => members,
                        Err(reason) => {
                            tracing::warn!(partition = p, offset = r.offset, %reason, "unreadable changelog record; the person directory skips it");
                            return Ok(());
                        }
                    },
                    None => Vec::new(), // a tombstone: the household is gone
                };
                learned.extend(directory.learn(&household_id, members));
                Ok(())
            })
            .await?;
            at.insert(p, from);
        }
        Ok(learned)
    }

    /// Decodes, routes and writes one poll's records; returns the offsets to commit.
    async fn route_records(
        &self,
        records: Vec<dsr_log::ConsumedRecord>,
        directory: &PersonDirectory,
        waiting: &mut HashMap<PersonId, Vec<Waiting>>,
        stats: &mut RouterStats,
    ) -> Result<BTreeMap<TopicPartition, i64>, RouterError> {
        let values: Vec<&[u8]> = records.iter().filter_map(|r| r.value.as_deref()).collect();
        self.codec
            .prepare(&values)
            .await
            .map_err(RouterError::Codec)?;
        let now = wall_clock();
        let mut out: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut parked_now: Vec<(PersonId, Waiting)> = Vec::new();
        for r in &records {
            stats.records += 1;
            next.insert(r.topic_partition(), r.next_offset());
            let bytes = r.value.as_deref().unwrap_or_default();
            let routed = match self.codec.decode_event(bytes) {
                Ok(event) => route_event(event, now, directory),
                Err(reason) => Route::DeadLetter { reason },
            };
            match routed {
                Route::Household { household, event } => {
                    stats.forwarded += 1;
                    let value = self
                        .codec
                        .encode_event(&event)
                        .map_err(RouterError::Encode)?;
                    out.entry(self.topics.household_events.clone())
                        .or_default()
                        .push(Record::new(household.as_str(), value));
                }
                Route::Area(event) => {
                    stats.area += 1;
                    let value = self
                        .codec
                        .encode_event(&event)
                        .map_err(RouterError::Encode)?;
                    let key = r.key.clone().unwrap_or_default();
                    out.entry(self.topics.area_events.clone())
                        .or_default()
                        .push(Record::new(key, value));
                }
                Route::Wait { person, event } => {
                    stats.parked += 1;
                    let key = format!("{}|{}|{}", r.topic, r.partition, r.offset);
                    let value = self
                        .codec
                        .encode_event(&event)
                        .map_err(RouterError::Encode)?;
                    out.entry(self.topics.parked.clone()).or_default().push(
                        Record::new(key.as_str(), value)
                            .with_header(WAITING_FOR_HEADER, person.as_str()),
                    );
                    parked_now.push((
                        person,
                        Waiting {
                            key,
                            origin: r.topic_partition(),
                            event: *event,
                            since: Instant::now(),
                        },
                    ));
                }
                Route::DeadLetter { reason } => {
                    stats.dead_letters += 1;
                    out.entry(self.topics.dead_letter.clone())
                        .or_default()
                        .push(dead_letter(
                            r.key.clone(),
                            bytes.to_vec(),
                            &reason,
                            &r.topic,
                            r.partition,
                            r.offset,
                        ));
                }
            }
        }
        self.append_all(out).await?;
        for (person, w) in parked_now {
            waiting.entry(person).or_default().push(w);
        }
        Ok(next)
    }

    /// Forwards the events waiting for people the directory now knows, then deletes them from
    /// the parked topic.
    async fn release(
        &self,
        learned: &[PersonId],
        directory: &PersonDirectory,
        waiting: &mut HashMap<PersonId, Vec<Waiting>>,
        stats: &mut RouterStats,
    ) -> Result<(), RouterError> {
        let mut forward = Vec::new();
        let mut tombstones = Vec::new();
        for person in learned {
            let Some(list) = waiting.remove(person) else {
                continue;
            };
            for w in list {
                match route_event(w.event, wall_clock(), directory) {
                    Route::Household { household, event } => {
                        let value = self
                            .codec
                            .encode_event(&event)
                            .map_err(RouterError::Encode)?;
                        forward.push(Record::new(household.as_str(), value));
                        tombstones.push(Record::tombstone(w.key.as_str()));
                        stats.released += 1;
                    }
                    _ => {
                        // Validated before parking and the person is known now: cannot
                        // happen; keep it waiting rather than lose it.
                        tracing::warn!("a released event did not route; it stays parked");
                    }
                }
            }
        }
        if forward.is_empty() {
            return Ok(());
        }
        self.log
            .append(&self.topics.household_events, forward)
            .await?;
        self.log.append(&self.topics.parked, tombstones).await?;
        Ok(())
    }

    /// Dead-letters events that waited longer than `max_wait` for their person.
    async fn expire(
        &self,
        waiting: &mut HashMap<PersonId, Vec<Waiting>>,
        stats: &mut RouterStats,
    ) -> Result<(), RouterError> {
        let mut dead = Vec::new();
        let mut tombstones = Vec::new();
        for (person, list) in waiting.iter_mut() {
            let (expired, kept): (Vec<Waiting>, Vec<Waiting>) = list
                .drain(..)
                .partition(|w| w.since.elapsed() >= self.max_wait);
            *list = kept;
            for w in expired {
                let reason = format!(
                    "{} event {}: person {person} is not known to the registry (no household lists them) after waiting {:?}; register the person's household, then replay this record",
                    w.event.event_type(),
                    w.event.envelope.event_id,
                    self.max_wait
                );
                let value = self
                    .codec
                    .encode_event(&w.event)
                    .map_err(RouterError::Encode)?;
                let offset = w
                    .key
                    .rsplit('|')
                    .next()
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(-1);
                dead.push(dead_letter(
                    Some(person.as_str().as_bytes().to_vec()),
                    value,
                    &reason,
                    &w.origin.topic,
                    w.origin.partition,
                    offset,
                ));
                tombstones.push(Record::tombstone(w.key.as_str()));
                stats.dead_letters += 1;
            }
        }
        waiting.retain(|_, l| !l.is_empty());
        if dead.is_empty() {
            return Ok(());
        }
        self.log.append(&self.topics.dead_letter, dead).await?;
        self.log.append(&self.topics.parked, tombstones).await?;
        Ok(())
    }

    /// Loads the parked events of newly owned source partitions from the parked topic.
    async fn load_parked(
        &self,
        reader: &mut L::Reader,
        owned: &HashSet<TopicPartition>,
        waiting: &mut HashMap<PersonId, Vec<Waiting>>,
    ) -> Result<(), RouterError> {
        let mut latest: HashMap<String, Option<(PersonId, Event)>> = HashMap::new();
        let partitions = self.log.partition_count(&self.topics.parked).await?;
        for p in 0..partitions {
            let tp = TopicPartition::new(&self.topics.parked, p);
            let (from, end) = self.log.offsets(&tp).await?;
            let codec = &self.codec;
            read_range(reader, &tp, from, end, |r| {
                let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
                    return Ok::<(), RouterError>(());
                };
                let entry = match (&r.value, r.header(WAITING_FOR_HEADER)) {
                    (Some(v), Some(person)) => match codec.decode_event(v) {
                        Ok(e) => Some((PersonId::new(String::from_utf8_lossy(person)), e)),
                        Err(reason) => {
                            tracing::warn!(%reason, "unreadable parked record; skipped");
                            None
                        }
                    },
                    _ => None,
                };
                latest.insert(key.to_owned(), entry);
                Ok(())
            })
            .await?;
        }
        let mut loaded = 0;
        for (key, entry) in latest {
            let Some((person, event)) = entry else {
                continue;
            };
            let mut parts = key.rsplitn(3, '|');
            let (Some(_offset), Some(partition), Some(topic)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(partition) = partition.parse() else {
                continue;
            };
            let origin = TopicPartition::new(topic, partition);
            if !owned.contains(&origin) {
                continue;
            }
            loaded += 1;
            waiting.entry(person).or_default().push(Waiting {
                key,
                origin,
                event,
                since: Instant::now(),
            });
        }
        if loaded > 0 {
            tracing::info!(loaded, "parked events taken over");
        }
        Ok(())
    }

    async fn append_all(&self, out: BTreeMap<String, Vec<Record>>) -> Result<(), RouterError> {
        let sends = out
            .into_iter()
            .map(|(topic, records)| async move { self.log.append(&topic, records).await });
        for result in futures_util::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }
}

/// The receiving clock, for refusing events dated in the future.
fn wall_clock() -> Micros {
    Micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsr_core::codes::Sex;
    use dsr_core::Household;

    #[test]
    fn the_directory_follows_moves_and_dissolutions() {
        let h1 = dsr_synth::fixtures::household("H00000001")
            .head(Sex::Female, 40)
            .build();
        let mut state = None;
        let model = dsr_core::PmtModel::default_model();
        let ctx = dsr_core::Context {
            model: &model,
            programs: &[],
        };
        dsr_core::process(&mut state, &h1, &ctx).unwrap();
        let h = state.unwrap();
        let ids = |h: &Household| h.members.iter().map(|m| m.person_id.clone()).collect();
        let mut d = PersonDirectory::default();
        let hid = HouseholdId::new("H00000001");
        let head = h.members[0].person_id.clone();
        assert_eq!(d.learn(&hid, ids(&h)), vec![head.clone()]);
        assert_eq!(d.household_of(&head), Some(hid.clone()));
        assert!(
            d.learn(&hid, ids(&h)).is_empty(),
            "nothing new the second time"
        );
        // The person shows up in another household (a move) before the old record changes.
        let mut other = h.clone();
        other.household_id = HouseholdId::new("H00000002");
        let hid2 = other.household_id.clone();
        assert_eq!(d.learn(&hid2, ids(&other)), vec![head.clone()]);
        // A record of the old household from before the move (its partition is read behind
        // the other's) lists the same members as before: it changes nothing, so the person
        // stays with the household that has them now.
        assert!(d.learn(&hid, ids(&h)).is_empty());
        assert_eq!(d.household_of(&head), Some(hid2.clone()));
        // The old household dissolves: the person stays with the new one.
        d.learn(&hid, Vec::new());
        assert_eq!(d.household_of(&head), Some(hid2.clone()));
        d.learn(&hid2, Vec::new());
        assert!(d.is_empty());
        // A gone household's slot is reused: the next household's people point at it, and
        // nobody still points at the old household.
        let mut third = h.clone();
        third.household_id = HouseholdId::new("H00000003");
        third.members.truncate(1);
        third.members[0].person_id = PersonId::new("P-other");
        let hid3 = third.household_id.clone();
        assert_eq!(d.learn(&hid3, ids(&third)).len(), 1);
        assert_eq!(d.households.len(), 2, "slot reused, not added");
        assert_eq!(d.household_of(&PersonId::new("P-other")), Some(hid3));
        assert_eq!(d.household_of(&head), None);
        assert_eq!(d.len(), 1);
    }
}
