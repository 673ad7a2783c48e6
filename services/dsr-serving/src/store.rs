//! The serving store on fjall: what queries read. Each changelog record replaces a household's
//! current record, adds a version to its history and moves its index entries, in one write
//! batch per poll, synced before the projector commits its offsets (so a crash re-applies a
//! poll at most, and re-applying is a no-op: versions at or below the stored one are skipped).
//!
//! Keyspaces (`\0` separates key parts; ids never contain it):
//! - `households`: household id → current record;
//! - `history`: household id, version (u64 big-endian) → when it was written (ms, i64 BE), then
//!   the record;
//! - `persons`: person id → household id (current members only);
//! - `by-area`: area code, household id → () (prefix scans by admin area);
//! - `by-status`: program id, `eligible`/`not-eligible`, household id → ();
//! - `by-score`: need score (order-preserving u64 BE), household id → ().

use dsr_core::{EventId, Household, HouseholdId, PersonId};
use dsr_store::codec;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::HashMap;
use std::path::Path;

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

#[derive(Clone)]
pub struct ServingStore {
    db: Database,
    households: Keyspace,
    history: Keyspace,
    persons: Keyspace,
    by_area: Keyspace,
    by_status: Keyspace,
    by_score: Keyspace,
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

fn last_part(key: &[u8]) -> &[u8] {
    key.rsplit(|b| *b == 0).next().unwrap_or(key)
}

impl ServingStore {
    pub fn open(dir: impl AsRef<Path>) -> Result<ServingStore, ServingError> {
        let dir = dir.as_ref();
        let open_err = |e: fjall::Error| ServingError::Open {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let db = Database::builder(dir).open().map_err(open_err)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(ServingStore {
            households: ks("households").map_err(open_err)?,
            history: ks("history").map_err(open_err)?,
            persons: ks("persons").map_err(open_err)?,
            by_area: ks("by-area").map_err(open_err)?,
            by_status: ks("by-status").map_err(open_err)?,
            by_score: ks("by-score").map_err(open_err)?,
            db,
        })
    }

    /// Applies changelog records (household, when it was written), in changelog order, as one
    /// synced batch. A version at or below the stored one is skipped (re-delivery after a
    /// crash, or a restored changelog).
    pub fn apply(&self, records: Vec<(Household, i64)>) -> Result<Applied, ServingError> {
        let mut applied = Applied::default();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        let mut latest: HashMap<HouseholdId, Household> = HashMap::new();
        for (household, written_at_ms) in records {
            let previous = match latest.remove(&household.household_id) {
                Some(h) => Some(h),
                None => self.household(&household.household_id)?,
            };
            if let Some(previous) = &previous {
                if previous.version >= household.version {
                    applied.skipped_as_old += 1;
                    latest.insert(previous.household_id.clone(), previous.clone());
                    continue;
                }
                self.unindex(&mut batch, previous);
            }
            let hid = household.household_id.as_bytes_key();
            let encoded =
                codec::encode(&household).map_err(|e| ServingError::Backend(e.to_string()))?;
            batch.insert(&self.households, hid.clone(), encoded.clone());
            let mut version = Vec::with_capacity(8 + encoded.len());
            version.extend_from_slice(&written_at_ms.to_be_bytes());
            version.extend_from_slice(&encoded);
            batch.insert(
                &self.history,
                key(&[&hid, &household.version.to_be_bytes()]),
                version,
            );
            self.index(&mut batch, &household);
            applied.households_updated += 1;
            latest.insert(household.household_id.clone(), household);
        }
        batch.commit().map_err(backend)?;
        Ok(applied)
    }

    fn index(&self, batch: &mut fjall::OwnedWriteBatch, h: &Household) {
        let hid = h.household_id.as_bytes_key();
        if !h.dissolved {
            for m in &h.members {
                batch.insert(&self.persons, m.person_id.as_str(), hid.clone());
            }
        }
        batch.insert(&self.by_area, key(&[h.area.as_str().as_bytes(), &hid]), []);
        for p in &h.programs {
            let status = if p.eligible {
                Status::Eligible
            } else {
                Status::NotEligible
            };
            batch.insert(
                &self.by_status,
                key(&[p.program_id.as_bytes(), status.as_str().as_bytes(), &hid]),
                [],
            );
        }
        if let Some(score) = &h.need_score {
            batch.insert(&self.by_score, key(&[&score_bits(score.score), &hid]), []);
        }
    }

    fn unindex(&self, batch: &mut fjall::OwnedWriteBatch, h: &Household) {
        let hid = h.household_id.as_bytes_key();
        for m in &h.members {
            // Only if the person still points here (they may have moved to a household
            // processed earlier in this batch; that household's entry wins).
            if let Ok(Some(current)) = self.persons.get(m.person_id.as_str()) {
                if *current == *hid {
                    batch.remove(&self.persons, m.person_id.as_str());
                }
            }
        }
        batch.remove(&self.by_area, key(&[h.area.as_str().as_bytes(), &hid]));
        for p in &h.programs {
            for status in [Status::Eligible, Status::NotEligible] {
                batch.remove(
                    &self.by_status,
                    key(&[p.program_id.as_bytes(), status.as_str().as_bytes(), &hid]),
                );
            }
        }
        if let Some(score) = &h.need_score {
            batch.remove(&self.by_score, key(&[&score_bits(score.score), &hid]));
        }
    }

    /// The current record of a household.
    pub fn household(&self, id: &HouseholdId) -> Result<Option<Household>, ServingError> {
        match self.households.get(id.as_str()).map_err(backend)? {
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| ServingError::Corrupt {
                    what: format!("record of household {id}"),
                    message: e.to_string(),
                }),
            None => Ok(None),
        }
    }

    /// Every stored version of a household, oldest first.
    pub fn history(&self, id: &HouseholdId) -> Result<Vec<Version>, ServingError> {
        let prefix = key(&[id.as_str().as_bytes(), b""]);
        let mut versions: Vec<Version> = Vec::new();
        for kv in self.history.prefix(prefix) {
            let (_, value) = kv.into_inner().map_err(backend)?;
            let corrupt = |message: String| ServingError::Corrupt {
                what: format!("history of household {id}"),
                message,
            };
            if value.len() < 8 {
                return Err(corrupt(format!("{} bytes", value.len())));
            }
            let written_at_ms = i64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
            let household = codec::decode(&value[8..]).map_err(|e| corrupt(e.to_string()))?;
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

    pub fn household_of(&self, person: &PersonId) -> Result<Option<HouseholdId>, ServingError> {
        Ok(self
            .persons
            .get(person.as_str())
            .map_err(backend)?
            .map(|v| HouseholdId::new(String::from_utf8_lossy(&v))))
    }

    /// Households whose area code starts with `prefix` (e.g. a district's code), in area order.
    pub fn by_area_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<HouseholdId>, ServingError> {
        self.ids(self.by_area.prefix(prefix), limit)
    }

    /// Households with this status in a program.
    pub fn by_program_status(
        &self,
        program: &str,
        status: Status,
        limit: usize,
    ) -> Result<Vec<HouseholdId>, ServingError> {
        let prefix = key(&[program.as_bytes(), status.as_str().as_bytes(), b""]);
        self.ids(self.by_status.prefix(prefix), limit)
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
        self.ids(self.by_score.range(from..to), limit)
    }

    fn ids(
        &self,
        iter: impl Iterator<Item = fjall::Guard>,
        limit: usize,
    ) -> Result<Vec<HouseholdId>, ServingError> {
        let mut out = Vec::new();
        for kv in iter.take(limit) {
            let k = kv.key().map_err(backend)?;
            out.push(HouseholdId::new(String::from_utf8_lossy(last_part(&k))));
        }
        Ok(out)
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

trait AsKey {
    fn as_bytes_key(&self) -> Vec<u8>;
}

impl AsKey for HouseholdId {
    fn as_bytes_key(&self) -> Vec<u8> {
        self.as_str().as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_keys_sort_like_the_scores() {
        let scores = [-3.5, -0.0, 0.0, 0.25, 1.0, 7.5, 1e9];
        let keys: Vec<_> = scores.iter().map(|s| score_bits(*s)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
