//! The embedded adapter: fjall (an LSM tree; measured here at 130–160k durable writes/s in
//! batches of 1,000, several times redb's, which matters because every event rewrites a
//! household) on a directory. One keyspace per partition for the records; one `meta`
//! keyspace for the offsets. A commit is one fjall write batch across both, synced to disk.

use crate::codec;
use crate::port::{PartitionState, StateBatch, StoreError};
use dsr_core::{Event, Household, HouseholdId};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

/// A processor's state directory; hands out one [`FjallPartition`] per owned partition.
#[derive(Clone)]
pub struct FjallState {
    db: Database,
    meta: Keyspace,
}

impl FjallState {
    pub fn open(dir: impl AsRef<Path>) -> Result<FjallState, StoreError> {
        let dir = dir.as_ref();
        let open_err = |e: fjall::Error| StoreError::Open {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let db = Database::builder(dir).open().map_err(open_err)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(open_err)?;
        Ok(FjallState { db, meta })
    }

    /// The state of input partition `partition`.
    pub fn partition(&self, partition: u32) -> Result<FjallPartition, StoreError> {
        let households = self
            .db
            .keyspace(
                &format!("households-p{partition}"),
                KeyspaceCreateOptions::default,
            )
            .map_err(backend)?;
        let parked = self
            .db
            .keyspace(
                &format!("parked-p{partition}"),
                KeyspaceCreateOptions::default,
            )
            .map_err(backend)?;
        Ok(FjallPartition {
            db: self.db.clone(),
            meta: self.meta.clone(),
            households,
            parked,
            partition,
        })
    }
}

pub struct FjallPartition {
    db: Database,
    meta: Keyspace,
    households: Keyspace,
    parked: Keyspace,
    partition: u32,
}

fn backend(e: fjall::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl FjallPartition {
    fn offset_key(&self) -> Vec<u8> {
        format!("next-offset/{}", self.partition).into_bytes()
    }
}

impl PartitionState for FjallPartition {
    fn partition(&self) -> u32 {
        self.partition
    }

    fn get(&self, household: &HouseholdId) -> Result<Option<Household>, StoreError> {
        match self.households.get(household.as_str()).map_err(backend)? {
            Some(v) => codec::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    fn next_offset(&self) -> Result<u64, StoreError> {
        match self.meta.get(self.offset_key()).map_err(backend)? {
            Some(v) => <[u8; 8]>::try_from(&*v)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    what: format!("offset of partition {}", self.partition),
                    message: format!("{} bytes, not 8", v.len()),
                }),
            None => Ok(0),
        }
    }

    fn parked(&self, household: &HouseholdId) -> Result<Vec<Event>, StoreError> {
        match self.parked.get(household.as_str()).map_err(backend)? {
            Some(v) => codec::decode_events(&v),
            None => Ok(Vec::new()),
        }
    }

    fn parked_households(&self) -> Result<Vec<HouseholdId>, StoreError> {
        let mut out = Vec::new();
        for kv in self.parked.iter() {
            let k = kv.key().map_err(backend)?;
            out.push(HouseholdId::new(String::from_utf8_lossy(&k)));
        }
        Ok(out)
    }

    fn commit(&self, batch: &StateBatch) -> Result<(), StoreError> {
        let mut b = self.db.batch().durability(Some(PersistMode::SyncData));
        for h in &batch.households {
            b.insert(&self.households, h.household_id.as_str(), codec::encode(h)?);
        }
        for (hid, events) in &batch.parked {
            if events.is_empty() {
                b.remove(&self.parked, hid.as_str());
            } else {
                b.insert(&self.parked, hid.as_str(), codec::encode_events(events)?);
            }
        }
        b.insert(
            &self.meta,
            self.offset_key(),
            batch.next_offset.to_be_bytes(),
        );
        b.commit().map_err(backend)
    }

    fn for_each(
        &self,
        f: &mut dyn FnMut(Household) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for kv in self.households.iter() {
            let (_, v) = kv.into_inner().map_err(backend)?;
            f(codec::decode(&v)?)?;
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        let mut b = self.db.batch().durability(Some(PersistMode::SyncData));
        for kv in self.households.iter() {
            let k = kv.key().map_err(backend)?;
            b.remove(&self.households, k);
        }
        for kv in self.parked.iter() {
            let k = kv.key().map_err(backend)?;
            b.remove(&self.parked, k);
        }
        b.remove(&self.meta, self.offset_key());
        b.commit().map_err(backend)
    }
}
