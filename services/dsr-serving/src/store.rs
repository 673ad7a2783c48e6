//! The serving store on fjall: what queries read. Each changelog record replaces a household's
//! current record, adds a version to its history and moves its index entries, in one write
//! batch per poll, synced before the projector commits its offsets (so a crash re-applies a
//! poll at most, and re-applying is a no-op: versions at or below the stored one are skipped).
//!
//! Personal data is encrypted at rest: every id in a key is replaced by its keyed pseudonym
//! (16 bytes, `dsr-crypto`), and every value that names a household or holds a record is sealed
//! under the keyring's active data key, bound to its keyspace and key. Below, `H` is a
//! household's pseudonym and `P` a person's; `sealed(x)` is `x` encrypted.
//!
//! Keyspaces:
//! - `households`: H → sealed(current record);
//! - `history`: H, version (u64 big-endian) → when it was written (ms, i64 BE), then
//!   sealed(record);
//! - `persons`: P, H → sealed(household id): one entry for each person in each household's
//!   current record (written and removed as membership changes, so most updates write none);
//! - `meta`: format markers (`persons-format`: `2`, the layout above; version 1 was P → sealed
//!   household id and is migrated when the store opens);
//! - `by-area`: area code, `\0`, H → sealed(household id) (prefix scans by admin area);
//! - `by-status`: program id, `\0`, `eligible`/`not-eligible`, `\0`, H → sealed(household id);
//! - `by-score`: need score (order-preserving u64 BE), H → sealed(household id).
//!
//! [`ServingStore::reencrypt`] moves every value to the active key while the projector goes on
//! applying: both take the store's write lock, so no value is overwritten by an older copy.

use dsr_core::{EventId, Household, HouseholdId, PersonId};
use dsr_crypto::{Keyring, Pseudonym};
use dsr_store::codec;
use fjall::{Database, Keyspace, PersistMode};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const PSEUDONYM_BYTES: usize = std::mem::size_of::<Pseudonym>();

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("cannot open the serving store at `{path}`: {message}; check the directory's permissions and free space")]
    Open { path: String, message: String },
    #[error("the serving store failed: {0}; check the disk, then restart (the store is rebuilt from the changelog where needed)")]
    Backend(String),
    #[error("the serving store holds an unreadable {what}: {message}; delete the serving directory to rebuild it from the changelog")]
    Corrupt { what: String, message: String },
}

fn backend(e: fjall::Error) -> ServingError {
    ServingError::Backend(e.to_string())
}

/// One version of a household, as the registry published it.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub household: Household,
    /// When the processor wrote this version (ms since the Unix epoch).
    pub written_at_ms: i64,
    /// The events applied since the previous stored version, oldest first (those still in the
    /// record's recent-events window).
    pub events: Vec<EventId>,
}

/// A household eligible for a program at some time, with what it was entitled to.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Beneficiary {
    pub household_id: HouseholdId,
    pub benefit: f64,
    pub rule_version: u32,
    /// The household record's version the answer comes from.
    pub household_version: u64,
}

/// A program status for the status index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Eligible,
    NotEligible,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Eligible => "eligible",
            Status::NotEligible => "not-eligible",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "eligible" => Some(Status::Eligible),
            "not-eligible" => Some(Status::NotEligible),
            _ => None,
        }
    }
}

/// Counts for dashboards and `dsr demo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub households_updated: u64,
    pub skipped_as_old: u64,
}

/// A batch of the serving store worked out by [`ServingStore::prepare`] and not yet written.
pub struct Prepared {
    batch: fjall::OwnedWriteBatch,
    applied: Applied,
    write: Arc<Mutex<()>>,
}

impl Prepared {
    /// Writes the batch, synced, as one atomic step.
    pub fn commit(self) -> Result<Applied, ServingError> {
        let _guard = self.write.lock().expect("serving write lock");
        self.batch.commit().map_err(backend)?;
        Ok(self.applied)
    }
}

/// The keyspaces a projected batch writes to, in the order their writes are handed to fjall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Households,
    History,
    Persons,
    ByArea,
    ByStatus,
    ByScore,
}

/// The writes of one projected batch, collected so they reach fjall in key order.
///
/// Why: most of a batch's cost is inserting into the keyspaces' memtables (skip lists), and
/// the keys are pseudonyms, so in arrival order every insert walks to a random place in a
/// list far larger than the CPU's caches. Sorted, each insert lands next to the one before,
/// on a path that is still cached. A stable sort keeps two writes of one key (a household's
/// two versions in one batch, an entry removed and written again) in the order they were made,
/// so the last one still wins.
#[derive(Default)]
struct Writes {
    items: Vec<(Target, Vec<u8>, Option<Vec<u8>>)>,
}

impl Writes {
    fn insert(&mut self, target: Target, key: Vec<u8>, value: Vec<u8>) {
        self.items.push((target, key, Some(value)));
    }

    fn remove(&mut self, target: Target, key: Vec<u8>) {
        self.items.push((target, key, None));
    }

    /// One synced fjall batch of the writes, by keyspace and key.
    fn into_batch(mut self, store: &ServingStore) -> fjall::OwnedWriteBatch {
        self.items
            .sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut batch = store.db.batch().durability(Some(PersistMode::SyncData));
        for (target, key, value) in self.items {
            let keyspace = match target {
                Target::Households => &store.households,
                Target::History => &store.history,
                Target::Persons => &store.persons,
                Target::ByArea => &store.by_area,
                Target::ByStatus => &store.by_status,
                Target::ByScore => &store.by_score,
            };
            match value {
                Some(value) => batch.insert(keyspace, key, value),
                None => batch.remove(keyspace, key),
            }
        }
        batch
    }
}

/// What a re-encryption pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reencrypted {
    pub examined: u64,
    pub resealed: u64,
}

/// Values per re-encryption step (one synced batch under the write lock).
const REENCRYPT_STEP: usize = 512;

#[derive(Clone)]
pub struct ServingStore {
    db: Database,
    households: Keyspace,
    history: Keyspace,
    persons: Keyspace,
    by_area: Keyspace,
    by_status: Keyspace,
    by_score: Keyspace,
    meta: Keyspace,
    keyring: Arc<Keyring>,
    /// Taken by every write (the projector's batches and re-encryption steps).
    write: Arc<Mutex<()>>,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part);
    }
    out
}

/// Maps an f64 to a u64 whose big-endian bytes sort like the numbers.
fn score_bits(score: f64) -> [u8; 8] {
    let bits = score.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Associated data of a sealed value: its keyspace and key.
fn aad(keyspace: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keyspace.len() + 1 + key.len());
    out.extend_from_slice(keyspace.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

/// Bytes before the sealed part of a value (`history` keeps its write time in the clear, so
/// `as_of` could one day skip versions without decrypting them).
fn clear_prefix(keyspace: &str) -> usize {
    if keyspace == "history" {
        8
    } else {
        0
    }
}

impl ServingStore {
    pub fn open(
        dir: impl AsRef<Path>,
        keyring: Arc<Keyring>,
    ) -> Result<ServingStore, ServingError> {
        let dir = dir.as_ref();
        let open_err = |e: fjall::Error| ServingError::Open {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let db = dsr_store::fjall_state::open_database(dir).map_err(open_err)?;
        let ks = |name: &str| db.keyspace(name, dsr_store::fjall_state::keyspace_options);
        let store = ServingStore {
            households: ks("households").map_err(open_err)?,
            history: ks("history").map_err(open_err)?,
            persons: ks("persons").map_err(open_err)?,
            by_area: ks("by-area").map_err(open_err)?,
            by_status: ks("by-status").map_err(open_err)?,
            by_score: ks("by-score").map_err(open_err)?,
            meta: ks("meta").map_err(open_err)?,
            db,
            keyring,
            write: Arc::default(),
        };
        store.migrate_persons()?;
        Ok(store)
    }

    /// Brings a person index of format 1 (P → sealed household id, rewritten for every member
    /// on every update) to format 2 (P, H → sealed household id, written only when membership
    /// changes). Runs once; a crash part-way re-runs it (each step is idempotent).
    fn migrate_persons(&self) -> Result<(), ServingError> {
        const MARKER: &[u8] = b"persons-format";
        if self.meta.get(MARKER).map_err(backend)?.is_some() {
            return Ok(());
        }
        // In steps, reading on from the last key seen (a registry's index does not fit in
        // memory at once); the new keys sort right after the old ones they replace and are
        // passed over.
        let mut after: Option<Vec<u8>> = None;
        let mut migrated = 0u64;
        loop {
            let mut step: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(REENCRYPT_STEP);
            let mut last = None;
            let iter = match &after {
                Some(k) => self.persons.range::<&[u8], _>((
                    std::ops::Bound::Excluded(k.as_slice()),
                    std::ops::Bound::Unbounded,
                )),
                None => self.persons.iter(),
            };
            for kv in iter {
                let (k, v) = kv.into_inner().map_err(backend)?;
                last = Some(k.to_vec());
                if k.len() == PSEUDONYM_BYTES {
                    step.push((k.to_vec(), v.to_vec()));
                    if step.len() == REENCRYPT_STEP {
                        break;
                    }
                }
            }
            if step.is_empty() {
                break;
            }
            let _guard = self.write.lock().expect("serving write lock");
            let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
            for (k, v) in &step {
                let plain = self.open_value(&self.persons, k, v, || "person index entry".into())?;
                let household = HouseholdId::new(String::from_utf8_lossy(&plain));
                let pk: Pseudonym = k.as_slice().try_into().expect("length checked above");
                let new_key = self.person_key(&pk, &self.hk(&household));
                let sealed = self.seal(&self.persons, &new_key, &plain);
                batch.insert(&self.persons, new_key, sealed);
                batch.remove(&self.persons, k.clone());
            }
            batch.commit().map_err(backend)?;
            migrated += step.len() as u64;
            after = last;
        }
        if migrated > 0 {
            tracing::info!(
                entries = migrated,
                "migrated the serving store's person index to format 2"
            );
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        batch.insert(&self.meta, MARKER, b"2");
        batch.commit().map_err(backend)?;
        Ok(())
    }

    fn person_key(&self, pk: &Pseudonym, hk: &Pseudonym) -> [u8; 2 * PSEUDONYM_BYTES] {
        let mut key = [0u8; 2 * PSEUDONYM_BYTES];
        key[..PSEUDONYM_BYTES].copy_from_slice(pk);
        key[PSEUDONYM_BYTES..].copy_from_slice(hk);
        key
    }

    fn hk(&self, id: &HouseholdId) -> Pseudonym {
        self.keyring.pseudonym("household", id.as_str().as_bytes())
    }

    fn pk(&self, id: &PersonId) -> Pseudonym {
        self.keyring.pseudonym("person", id.as_str().as_bytes())
    }

    fn seal(&self, keyspace: &Keyspace, key: &[u8], plain: &[u8]) -> Vec<u8> {
        self.keyring
            .seal(plain, &aad(keyspace.name().as_ref(), key))
    }

    fn open_value(
        &self,
        keyspace: &Keyspace,
        key: &[u8],
        sealed: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, ServingError> {
        self.keyring
            .open_sealed(sealed, &aad(keyspace.name().as_ref(), key))
            .map_err(|e| ServingError::Corrupt {
                what: what(),
                message: e.to_string(),
            })
    }

    fn record(
        &self,
        id: &HouseholdId,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Household, ServingError> {
        let plain = self.open_value(&self.households, key, sealed, || {
            format!("record of household {id}")
        })?;
        codec::decode(&plain).map_err(|e| ServingError::Corrupt {
            what: format!("record of household {id}"),
            message: e.to_string(),
        })
    }

    /// Applies changelog records (household, when it was written), in changelog order, as one
    /// synced batch. A version at or below the stored one is skipped (re-delivery after a
    /// crash, or a restored changelog).
    pub fn apply(&self, records: Vec<(Household, i64)>) -> Result<Applied, ServingError> {
        let (prepared, _) = self.prepare(records, &HashMap::new())?;
        prepared.commit()
    }

    /// The first half of [`apply`](Self::apply): reads each household's stored record, works
    /// out and seals every write, and returns them as one batch not yet written, with the
    /// latest record of each household in it. `pending` holds the latest records of a batch
    /// prepared before and not yet known to be committed; they count as stored. A projector
    /// prepares its next batch while the one before commits ([`Prepared::commit`]), so the two
    /// halves run on both cores.
    pub fn prepare(
        &self,
        records: Vec<(Household, i64)>,
        pending: &HashMap<HouseholdId, Household>,
    ) -> Result<(Prepared, HashMap<HouseholdId, Household>), ServingError> {
        let mut applied = Applied::default();
        let mut writes = Writes::default();
        let mut latest: HashMap<HouseholdId, Household> = HashMap::with_capacity(records.len());
        for (household, written_at_ms) in records {
            let previous = match latest.remove(&household.household_id) {
                Some(h) => Some(h),
                None => match pending.get(&household.household_id) {
                    Some(h) => Some(h.clone()),
                    None => self.household(&household.household_id)?,
                },
            };
            if let Some(previous) = &previous {
                if previous.version >= household.version {
                    applied.skipped_as_old += 1;
                    latest.insert(previous.household_id.clone(), previous.clone());
                    continue;
                }
            }
            let hk = self.hk(&household.household_id);
            let encoded =
                codec::encode(&household).map_err(|e| ServingError::Backend(e.to_string()))?;
            writes.insert(
                Target::Households,
                hk.to_vec(),
                self.seal(&self.households, &hk, &encoded),
            );
            let version_key = [&hk[..], &household.version.to_be_bytes()].concat();
            let mut version = Vec::with_capacity(8 + encoded.len() + dsr_crypto::SEAL_OVERHEAD);
            version.extend_from_slice(&written_at_ms.to_be_bytes());
            version.extend_from_slice(&self.seal(&self.history, &version_key, &encoded));
            writes.insert(Target::History, version_key, version);
            self.reindex(&mut writes, previous.as_ref(), &household);
            applied.households_updated += 1;
            latest.insert(household.household_id.clone(), household);
        }
        Ok((
            Prepared {
                batch: writes.into_batch(self),
                applied,
                write: Arc::clone(&self.write),
            },
            latest,
        ))
    }

    /// An index entry: its key, and the household id sealed as its value.
    fn index_entry(&self, keyspace: &Keyspace, key: Vec<u8>, h: &Household) -> (Vec<u8>, Vec<u8>) {
        let value = self.seal(keyspace, &key, h.household_id.as_str().as_bytes());
        (key, value)
    }

    fn area_key(&self, h: &Household) -> Vec<u8> {
        key(&[h.area.as_str().as_bytes(), &self.hk(&h.household_id)])
    }

    fn status_key(&self, program: &str, status: Status, h: &Household) -> Vec<u8> {
        key(&[
            program.as_bytes(),
            status.as_str().as_bytes(),
            &self.hk(&h.household_id),
        ])
    }

    fn score_key(&self, score: f64, h: &Household) -> Vec<u8> {
        [&score_bits(score)[..], &self.hk(&h.household_id)].concat()
    }

    /// Brings the lookups from `previous` (if any) to `h`, writing only the entries that
    /// differ: most events change a household's income and score, not its members, area or
    /// statuses, and removing and re-sealing every entry (with a read per member to check who
    /// the person points at) made this the slowest stage of `dsr up`.
    fn reindex(&self, writes: &mut Writes, previous: Option<&Household>, h: &Household) {
        // The person index follows the members of the records this store holds: an entry
        // for each person of `h` who was not in `previous`, none any more for each person of
        // `previous` who is not in `h`. Every other update (most: income, score) writes none.
        fn members(x: &Household) -> &[dsr_core::Member] {
            if x.dissolved {
                &[]
            } else {
                &x.members
            }
        }
        // Members are kept sorted by person id.
        let holds = |list: &[dsr_core::Member], m: &dsr_core::Member| {
            list.binary_search_by(|x| x.person_id.cmp(&m.person_id))
                .is_ok()
        };
        let now = members(h);
        let before = previous.map(members).unwrap_or_default();
        let hk = self.hk(&h.household_id);
        for m in before {
            if !holds(now, m) {
                writes.remove(
                    Target::Persons,
                    self.person_key(&self.pk(&m.person_id), &hk).to_vec(),
                );
            }
        }
        for m in now {
            if !holds(before, m) {
                let key = self.person_key(&self.pk(&m.person_id), &hk);
                let value = self.seal(&self.persons, &key, h.household_id.as_str().as_bytes());
                writes.insert(Target::Persons, key.to_vec(), value);
            }
        }
        if previous.is_none_or(|p| p.area != h.area) {
            if let Some(p) = previous {
                writes.remove(Target::ByArea, self.area_key(p));
            }
            let (k, v) = self.index_entry(&self.by_area, self.area_key(h), h);
            writes.insert(Target::ByArea, k, v);
        }
        let status = |eligible: bool| {
            if eligible {
                Status::Eligible
            } else {
                Status::NotEligible
            }
        };
        if let Some(p) = previous {
            for old in &p.programs {
                let same = h
                    .programs
                    .iter()
                    .any(|s| s.program_id == old.program_id && s.eligible == old.eligible);
                if !same {
                    for st in [Status::Eligible, Status::NotEligible] {
                        writes.remove(Target::ByStatus, self.status_key(&old.program_id, st, p));
                    }
                }
            }
        }
        for s in &h.programs {
            let same = previous.is_some_and(|p| {
                p.programs
                    .iter()
                    .any(|o| o.program_id == s.program_id && o.eligible == s.eligible)
            });
            if !same {
                let key = self.status_key(&s.program_id, status(s.eligible), h);
                let (k, v) = self.index_entry(&self.by_status, key, h);
                writes.insert(Target::ByStatus, k, v);
            }
        }
        let old_score = previous.and_then(|p| p.need_score.as_ref().map(|s| s.score));
        let new_score = h.need_score.as_ref().map(|s| s.score);
        if previous.is_none() || old_score.map(f64::to_bits) != new_score.map(f64::to_bits) {
            if let (Some(p), Some(old)) = (previous, old_score) {
                writes.remove(Target::ByScore, self.score_key(old, p));
            }
            if let Some(new) = new_score {
                let (k, v) = self.index_entry(&self.by_score, self.score_key(new, h), h);
                writes.insert(Target::ByScore, k, v);
            }
        }
    }

    /// The current record of a household.
    pub fn household(&self, id: &HouseholdId) -> Result<Option<Household>, ServingError> {
        let hk = self.hk(id);
        match self.households.get(hk).map_err(backend)? {
            Some(bytes) => self.record(id, &hk, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every stored version of a household, oldest first.
    pub fn history(&self, id: &HouseholdId) -> Result<Vec<Version>, ServingError> {
        let prefix = self.hk(id);
        let mut versions: Vec<Version> = Vec::new();
        for kv in self.history.prefix(prefix) {
            let (k, value) = kv.into_inner().map_err(backend)?;
            let corrupt = |message: String| ServingError::Corrupt {
                what: format!("history of household {id}"),
                message,
            };
            if value.len() < 8 {
                return Err(corrupt(format!("{} bytes", value.len())));
            }
            let written_at_ms = i64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
            let plain = self.open_value(&self.history, &k, &value[8..], || {
                format!("history of household {id}")
            })?;
            let household = codec::decode(&plain).map_err(|e| corrupt(e.to_string()))?;
            let events = new_events(versions.last().map(|v| &v.household), &household);
            versions.push(Version {
                household,
                written_at_ms,
                events,
            });
        }
        Ok(versions)
    }

    /// The version the registry showed at `at_ms` (the last one written at or before it).
    pub fn as_of(&self, id: &HouseholdId, at_ms: i64) -> Result<Option<Version>, ServingError> {
        Ok(self
            .history(id)?
            .into_iter()
            .take_while(|v| v.written_at_ms <= at_ms)
            .last())
    }

    /// The households eligible for `program` as the registry showed them at `at_ms`: for each
    /// household the last version written at or before it. A payment cycle's list: once `at_ms`
    /// is past, later changes to the registry do not change the answer (versions are only ever
    /// added, with later write times). A scan of the whole history (the write time of each
    /// version is stored in the clear, so only the chosen version of each household is opened).
    pub fn beneficiaries_at(
        &self,
        program: &str,
        at_ms: i64,
    ) -> Result<Vec<Beneficiary>, ServingError> {
        let mut out = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        let mut chosen: Option<(fjall::Slice, fjall::Slice)> = None;
        let mut flush = |chosen: Option<(fjall::Slice, fjall::Slice)>| -> Result<(), ServingError> {
            let Some((k, v)) = chosen else {
                return Ok(());
            };
            let plain = self.open_value(&self.history, &k, &v[8..], || {
                "a household version".to_owned()
            })?;
            let household = codec::decode(&plain).map_err(|e| ServingError::Corrupt {
                what: "a household version".into(),
                message: e.to_string(),
            })?;
            if let Some(status) = household
                .programs
                .iter()
                .find(|s| s.program_id == program && s.eligible)
            {
                out.push(Beneficiary {
                    household_id: household.household_id.clone(),
                    benefit: status.benefit,
                    rule_version: status.rule_version,
                    household_version: household.version,
                });
            }
            Ok(())
        };
        for kv in self.history.iter() {
            let (k, v) = kv.into_inner().map_err(backend)?;
            if k.len() < 8 || v.len() < 8 {
                return Err(ServingError::Corrupt {
                    what: "the history".into(),
                    message: format!("a key of {} or a value of {} bytes", k.len(), v.len()),
                });
            }
            let hk = &k[..k.len() - 8];
            if current.as_deref() != Some(hk) {
                flush(chosen.take())?;
                current = Some(hk.to_vec());
            }
            let written = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            if written <= at_ms {
                chosen = Some((k, v));
            }
        }
        flush(chosen)?;
        out.sort_by(|a, b| a.household_id.cmp(&b.household_id));
        Ok(out)
    }

    /// The household a person belongs to. Two households can hold the same person for a
    /// moment (the one they moved to, on another partition, applied before the one they left):
    /// then the record whose latest event is newest wins.
    pub fn household_of(&self, person: &PersonId) -> Result<Option<HouseholdId>, ServingError> {
        let pk = self.pk(person);
        let mut found: Vec<HouseholdId> = Vec::new();
        for kv in self.persons.prefix(pk) {
            let (k, v) = kv.into_inner().map_err(backend)?;
            let plain =
                self.open_value(&self.persons, &k, &v, || format!("household of {person}"))?;
            found.push(HouseholdId::new(String::from_utf8_lossy(&plain)));
        }
        if found.len() <= 1 {
            return Ok(found.pop());
        }
        let mut best: Option<Household> = None;
        for id in found {
            if let Some(h) = self.household(&id)? {
                if best.as_ref().is_none_or(|b| h.as_of > b.as_of) {
                    best = Some(h);
                }
            }
        }
        Ok(best.map(|h| h.household_id))
    }

    /// Households whose area code starts with `prefix` (e.g. a district's code), in area order.
    pub fn by_area_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<HouseholdId>, ServingError> {
        self.ids(&self.by_area, self.by_area.prefix(prefix), limit)
    }

    /// Households with this status in a program.
    pub fn by_program_status(
        &self,
        program: &str,
        status: Status,
        limit: usize,
    ) -> Result<Vec<HouseholdId>, ServingError> {
        let prefix = key(&[program.as_bytes(), status.as_str().as_bytes(), b""]);
        self.ids(&self.by_status, self.by_status.prefix(prefix), limit)
    }

    /// Households with a need score in `[min, max]`, lowest first.
    pub fn by_score_range(
        &self,
        min: f64,
        max: f64,
        limit: usize,
    ) -> Result<Vec<HouseholdId>, ServingError> {
        let from = score_bits(min).to_vec();
        let mut to = score_bits(max).to_vec();
        to.push(0xff);
        self.ids(&self.by_score, self.by_score.range(from..to), limit)
    }

    fn ids(
        &self,
        keyspace: &Keyspace,
        iter: impl Iterator<Item = fjall::Guard>,
        limit: usize,
    ) -> Result<Vec<HouseholdId>, ServingError> {
        let mut out = Vec::new();
        for kv in iter.take(limit) {
            let (k, v) = kv.into_inner().map_err(backend)?;
            let plain = self.open_value(keyspace, &k, &v, || "index entry".into())?;
            out.push(HouseholdId::new(String::from_utf8_lossy(&plain)));
        }
        Ok(out)
    }

    /// Calls `f` with every current household record, in no particular order (a scan: for
    /// previews over the whole registry, not hot paths).
    pub fn for_each_household(&self, f: &mut dyn FnMut(Household)) -> Result<(), ServingError> {
        for kv in self.households.iter() {
            let (k, v) = kv.into_inner().map_err(backend)?;
            let plain =
                self.open_value(&self.households, &k, &v, || "a household record".into())?;
            f(codec::decode(&plain).map_err(|e| ServingError::Corrupt {
                what: "a household record".into(),
                message: e.to_string(),
            })?);
        }
        Ok(())
    }

    /// How many households the store holds (a scan: for dashboards, not hot paths).
    pub fn household_count(&self) -> Result<u64, ServingError> {
        let mut n = 0;
        for kv in self.households.iter() {
            kv.key().map_err(backend)?;
            n += 1;
        }
        Ok(n)
    }

    fn keyspaces(&self) -> [&Keyspace; 6] {
        [
            &self.households,
            &self.history,
            &self.persons,
            &self.by_area,
            &self.by_status,
            &self.by_score,
        ]
    }

    /// How many values a re-encryption pass will look at (approximately; for progress bars).
    pub fn approximate_len(&self) -> u64 {
        self.keyspaces()
            .iter()
            .map(|ks| ks.approximate_len() as u64)
            .sum()
    }

    /// Re-encrypts every value not under the keyring's active key, in steps, while the
    /// projector goes on; `progress` is told how many values were looked at. Old versions are
    /// compacted away afterwards, so the old key's ciphertexts leave the disk.
    pub fn reencrypt(&self, progress: &dyn Fn(u64)) -> Result<Reencrypted, ServingError> {
        let mut done = Reencrypted::default();
        for ks in self.keyspaces() {
            let name = ks.name().to_string();
            let skip = clear_prefix(&name);
            let mut after: Option<Vec<u8>> = None;
            loop {
                let keys: Vec<Vec<u8>> = {
                    let iter = match &after {
                        Some(k) => ks.range::<&[u8], _>((
                            std::ops::Bound::Excluded(k.as_slice()),
                            std::ops::Bound::Unbounded,
                        )),
                        None => ks.iter(),
                    };
                    let mut keys = Vec::with_capacity(REENCRYPT_STEP);
                    for kv in iter.take(REENCRYPT_STEP) {
                        keys.push(kv.key().map_err(backend)?.to_vec());
                    }
                    keys
                };
                let Some(last) = keys.last().cloned() else {
                    break;
                };
                let guard = self.write.lock().expect("serving write lock");
                let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
                for k in &keys {
                    done.examined += 1;
                    let Some(value) = ks.get(k).map_err(backend)? else {
                        continue;
                    };
                    if value.len() < skip {
                        continue;
                    }
                    let resealed = self
                        .keyring
                        .reseal(&value[skip..], &aad(&name, k))
                        .map_err(|e| ServingError::Corrupt {
                            what: format!("a value in {name}"),
                            message: e.to_string(),
                        })?;
                    if let Some(resealed) = resealed {
                        let mut out = value[..skip].to_vec();
                        out.extend_from_slice(&resealed);
                        batch.insert(ks, k.clone(), out);
                        done.resealed += 1;
                    }
                }
                batch.commit().map_err(backend)?;
                drop(guard);
                progress(done.examined);
                after = Some(last);
            }
            ks.rotate_memtable_and_wait().map_err(backend)?;
            ks.major_compact().map_err(backend)?;
        }
        Ok(done)
    }
}

/// The events in `current.recent_events` after the newest one `previous` had.
fn new_events(previous: Option<&Household>, current: &Household) -> Vec<EventId> {
    let Some(last) = previous.and_then(|p| p.recent_events.last()) else {
        return current.recent_events.clone();
    };
    match current.recent_events.iter().position(|e| e == last) {
        Some(i) => current.recent_events[i + 1..].to_vec(),
        None => current.recent_events.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_reencrypts_every_value_and_everything_reads_with_the_new_key_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (keyring, _, _) =
            Keyring::open_directory(&dir.path().join("security"), None, None, 1).unwrap();
        let keyring = Arc::new(keyring);
        let store = ServingStore::open(dir.path().join("serving"), Arc::clone(&keyring)).unwrap();
        let pop = dsr_synth::fixtures::small_population(5, 50);
        let households: Vec<Household> = pop
            .households
            .iter()
            .map(|e| dsr_core::apply(None, e).unwrap().household)
            .collect();
        store
            .apply(households.iter().map(|h| (h.clone(), 7)).collect())
            .unwrap();
        keyring.rotate(2).unwrap();
        let done = store.reencrypt(&|_| {}).unwrap();
        assert!(done.resealed >= 150, "{done:?}");
        keyring.mark_reencrypted(2).unwrap();
        keyring.retire(1).unwrap();
        for h in &households {
            assert_eq!(store.household(&h.household_id).unwrap().as_ref(), Some(h));
            assert_eq!(store.history(&h.household_id).unwrap().len(), 1);
            for m in &h.members {
                assert_eq!(
                    store.household_of(&m.person_id).unwrap().as_ref(),
                    Some(&h.household_id)
                );
            }
        }
        assert_eq!(
            store.by_area_prefix("R", 1000).unwrap().len(),
            households.len()
        );
    }

    fn households(n: u64) -> Vec<Household> {
        dsr_synth::fixtures::small_population(9, n)
            .households
            .iter()
            .map(|e| dsr_core::apply(None, e).unwrap().household)
            .collect()
    }

    fn open_store(dir: &Path) -> ServingStore {
        let (keyring, _, _) =
            Keyring::open_directory(&dir.join("security"), None, None, 1).unwrap();
        ServingStore::open(dir.join("serving"), Arc::new(keyring)).unwrap()
    }

    /// `person` leaves `from` for `to`: both households' next versions, newer than before.
    fn moved(from: &Household, to: &Household, person: &PersonId) -> (Household, Household) {
        let (mut from, mut to) = (from.clone(), to.clone());
        let i = from
            .members
            .iter()
            .position(|m| &m.person_id == person)
            .unwrap();
        let m = from.members.remove(i);
        to.members.push(m);
        to.members.sort_by(|a, b| a.person_id.cmp(&b.person_id));
        from.version += 1;
        to.version += 1;
        to.as_of = dsr_core::Micros(from.as_of.0.max(to.as_of.0) + 1);
        (from, to)
    }

    #[test]
    fn a_person_who_moved_points_at_the_new_household_whichever_record_is_applied_first() {
        for to_first in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = open_store(dir.path());
            let hs = households(2);
            store
                .apply(hs.iter().map(|h| (h.clone(), 1)).collect())
                .unwrap();
            let person = hs[0].members[0].person_id.clone();
            assert_eq!(
                store.household_of(&person).unwrap(),
                Some(hs[0].household_id.clone())
            );
            let (from, to) = moved(&hs[0], &hs[1], &person);
            let (first, second) = if to_first { (&to, &from) } else { (&from, &to) };
            store.apply(vec![(first.clone(), 2)]).unwrap();
            // Between the two records: the person is in no household yet (left first), or in
            // two, and the newer record wins.
            let between = store.household_of(&person).unwrap();
            if to_first {
                assert_eq!(between, Some(to.household_id.clone()));
            } else {
                assert_eq!(between, None);
            }
            store.apply(vec![(second.clone(), 3)]).unwrap();
            assert_eq!(
                store.household_of(&person).unwrap(),
                Some(to.household_id.clone()),
                "to_first = {to_first}"
            );
            // The others still point at their own households.
            for h in [&from, &to] {
                for m in &h.members {
                    assert_eq!(
                        store.household_of(&m.person_id).unwrap().as_ref(),
                        Some(&h.household_id)
                    );
                }
            }
        }
    }

    #[test]
    fn a_person_index_of_format_1_is_migrated_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let hs = households(200);
        let people: usize = hs.iter().map(|h| h.members.len()).sum();
        assert!(
            people > REENCRYPT_STEP,
            "more than one migration step: {people}"
        );
        {
            let store = open_store(dir.path());
            store
                .apply(hs.iter().map(|h| (h.clone(), 1)).collect())
                .unwrap();
            // Rewrite the index as format 1 had it: P → sealed household id, no marker.
            let mut batch = store.db.batch().durability(Some(PersistMode::SyncData));
            for h in &hs {
                let hk = store.hk(&h.household_id);
                for m in &h.members {
                    let pk = store.pk(&m.person_id);
                    batch.remove(&store.persons, store.person_key(&pk, &hk));
                    let sealed =
                        store.seal(&store.persons, &pk, h.household_id.as_str().as_bytes());
                    batch.insert(&store.persons, pk, sealed);
                }
            }
            batch.remove(&store.meta, b"persons-format");
            batch.commit().unwrap();
        }
        let store = open_store(dir.path());
        for h in &hs {
            for m in &h.members {
                let pk = store.pk(&m.person_id);
                assert!(
                    store.persons.get(pk).unwrap().is_none(),
                    "format-1 entry left"
                );
                assert_eq!(
                    store.household_of(&m.person_id).unwrap().as_ref(),
                    Some(&h.household_id)
                );
            }
        }
        assert!(store.meta.get(b"persons-format").unwrap().is_some());
    }

    #[test]
    fn score_keys_sort_like_the_scores() {
        let scores = [-3.5, -0.0, 0.0, 0.25, 1.0, 7.5, 1e9];
        let keys: Vec<_> = scores.iter().map(|s| score_bits(*s)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
