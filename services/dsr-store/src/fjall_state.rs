//! The embedded adapter: fjall (an LSM tree; measured here at 130–160k durable writes/s in
//! batches of 1,000, several times redb's, which matters because every event rewrites a
//! household) on a directory. One keyspace per partition for the records; one `meta`
//! keyspace for the offsets. A commit is one fjall write batch across both, synced to disk.
//!
//! Personal data is encrypted at rest: a household's key is its keyed pseudonym (never the
//! id), its value the record sealed under the keyring's active data key, bound to the keyspace
//! and key (see `dsr-crypto`). [`FjallState::reencrypt`] moves every value to the active key
//! while processing goes on: it takes the same per-partition lock as [`FjallPartition::commit`],
//! so a record is never overwritten by an older copy of itself.

use crate::codec;
use crate::port::{PartitionState, StateBatch, StoreError};
use dsr_core::{Event, Household, HouseholdId};
use dsr_crypto::Keyring;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Records per re-encryption step (one synced batch, written while holding the partition's
/// lock, so processing of that partition waits at most one step).
const REENCRYPT_STEP: usize = 512;

/// What a re-encryption pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reencrypted {
    /// Values looked at.
    pub examined: u64,
    /// Values that were under an older key and now are under the active one.
    pub resealed: u64,
}

/// A processor's state directory; hands out one [`FjallPartition`] per owned partition.
#[derive(Clone)]
pub struct FjallState {
    db: Database,
    meta: Keyspace,
    keyring: Arc<Keyring>,
    /// One lock per partition, shared by its writers and the re-encryption pass.
    locks: Arc<Mutex<HashMap<u32, Arc<Mutex<()>>>>>,
}

impl FjallState {
    pub fn open(dir: impl AsRef<Path>, keyring: Arc<Keyring>) -> Result<FjallState, StoreError> {
        let dir = dir.as_ref();
        let open_err = |e: fjall::Error| StoreError::Open {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let db = open_database(dir).map_err(open_err)?;
        let meta = db.keyspace("meta", keyspace_options).map_err(open_err)?;
        Ok(FjallState {
            db,
            meta,
            keyring,
            locks: Arc::default(),
        })
    }

    /// Puts every partition's writes so far on disk (they share one journal): one `fdatasync`
    /// for a whole poll's partitions.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncData).map_err(backend)
    }

    fn lock_of(&self, partition: u32) -> Arc<Mutex<()>> {
        Arc::clone(
            self.locks
                .lock()
                .expect("lock table")
                .entry(partition)
                .or_default(),
        )
    }

    /// How many values a re-encryption pass will look at (approximately; for progress bars).
    pub fn approximate_len(&self) -> u64 {
        self.data_keyspaces()
            .iter()
            .map(|(_, ks)| ks.approximate_len() as u64)
            .sum()
    }

    /// The record and parked keyspaces of every partition this directory holds.
    fn data_keyspaces(&self) -> Vec<(u32, Keyspace)> {
        let mut out = Vec::new();
        for name in self.db.list_keyspace_names() {
            let name: &str = &name;
            let partition = name
                .strip_prefix("households-p")
                .or_else(|| name.strip_prefix("parked-p"))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(partition) = partition {
                if let Ok(ks) = self.db.keyspace(name, keyspace_options) {
                    out.push((partition, ks));
                }
            }
        }
        out
    }

    /// Re-encrypts every value not under the keyring's active key, in steps, while the
    /// partitions go on being processed; `progress` is told how many values were looked at.
    /// Afterwards old versions are compacted away, so the old key's ciphertexts leave the disk.
    pub fn reencrypt(&self, progress: &dyn Fn(u64)) -> Result<Reencrypted, StoreError> {
        let mut done = Reencrypted::default();
        for (partition, ks) in self.data_keyspaces() {
            let lock = self.lock_of(partition);
            let aad_prefix = ks.name().to_string();
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
                let _guard = lock.lock().expect("partition lock");
                let mut b = self.db.batch().durability(Some(PersistMode::SyncData));
                for key in &keys {
                    done.examined += 1;
                    let Some(value) = ks.get(key).map_err(backend)? else {
                        continue;
                    };
                    let aad = aad(&aad_prefix, key);
                    if let Some(resealed) =
                        self.keyring
                            .reseal(&value, &aad)
                            .map_err(|e| StoreError::Corrupt {
                                what: format!("a value in {aad_prefix}"),
                                message: e.to_string(),
                            })?
                    {
                        b.insert(&ks, key.clone(), resealed);
                        done.resealed += 1;
                    }
                }
                b.commit().map_err(backend)?;
                drop(_guard);
                progress(done.examined);
                after = Some(last);
            }
            ks.rotate_memtable_and_wait().map_err(backend)?;
            ks.major_compact().map_err(backend)?;
        }
        Ok(done)
    }

    /// The state of input partition `partition`.
    pub fn partition(&self, partition: u32) -> Result<FjallPartition, StoreError> {
        let households = self
            .db
            .keyspace(&format!("households-p{partition}"), keyspace_options)
            .map_err(backend)?;
        let parked = self
            .db
            .keyspace(&format!("parked-p{partition}"), keyspace_options)
            .map_err(backend)?;
        Ok(FjallPartition {
            keyring: Arc::clone(&self.keyring),
            lock: self.lock_of(partition),
            households_aad: format!("households-p{partition}"),
            parked_aad: format!("parked-p{partition}"),
            db: self.db.clone(),
            meta: self.meta.clone(),
            households,
            parked,
            partition,
        })
    }
}

pub struct FjallPartition {
    keyring: Arc<Keyring>,
    lock: Arc<Mutex<()>>,
    households_aad: String,
    parked_aad: String,
    db: Database,
    meta: Keyspace,
    households: Keyspace,
    parked: Keyspace,
    partition: u32,
}

/// Each keyspace's memtable (fjall's default is 64 MiB each, with no limit on their sum, which
/// grew with the registry: the state store has two keyspaces per partition, the serving store
/// six). Set when a keyspace is created.
pub const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// The value size from which values are kept apart from keys ([`keyspace_options`]): index
/// entries stay inline, sealed household records (~1 KB) go to blob files.
pub const SEPARATE_VALUES_FROM: u32 = 256;

/// How the stores of household records (this state store and `dsr-serving`'s serving store)
/// create their fjall keyspaces. Values of [`SEPARATE_VALUES_FROM`] bytes and more (household
/// records) are kept in blob files apart from the keys (fjall's key-value separation): every
/// event rewrites a household, and compacting the records themselves wrote several times the
/// embedded log's bytes in bursts that stalled the log's fdatasync (docs/performance.md, "the
/// disk, not the CPU"). Like the memtable size, set when a keyspace is created.
pub fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES)
        .with_kv_separation(Some(
            fjall::KvSeparationOptions::default().separation_threshold(SEPARATE_VALUES_FROM),
        ))
}

/// Opens (or creates) a fjall database the way every dsr store does: with one background
/// worker. With two or more, fjall's first worker re-queues every compaction for the others and
/// spins on it while they work, a core lost under load (docs/performance.md, "latency at 10,000
/// events/s").
pub fn open_database(dir: &Path) -> Result<Database, fjall::Error> {
    Database::builder(dir).worker_threads(1).open()
}

/// Keyspace options for stores that keep few records (dead letters, schemas): a small memtable
/// (fjall's default is 64 MiB).
pub fn small_keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().max_memtable_size(2 * 1024 * 1024)
}

fn backend(e: fjall::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Associated data of a sealed value: its keyspace and key, so a value moved elsewhere does
/// not open.
fn aad(keyspace: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keyspace.len() + 1 + key.len());
    out.extend_from_slice(keyspace.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

impl FjallPartition {
    fn offset_key(&self) -> Vec<u8> {
        format!("next-offset/{}", self.partition).into_bytes()
    }

    fn programs_prefix(&self) -> String {
        format!("program/{}/", self.partition)
    }

    fn key(&self, household: &HouseholdId) -> [u8; 16] {
        self.keyring
            .pseudonym("household", household.as_str().as_bytes())
    }

    fn open(&self, keyspace: &str, key: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.keyring
            .open_sealed(value, &aad(keyspace, key))
            .map_err(|e| StoreError::Corrupt {
                what: format!("a value in {keyspace}"),
                message: e.to_string(),
            })
    }

    fn household_of(&self, key: &[u8], value: &[u8]) -> Result<Household, StoreError> {
        codec::decode(&self.open(&self.households_aad, key, value)?)
    }

    /// A parked value: the household id (u16 length, bytes), then the events.
    fn parked_of(&self, key: &[u8], value: &[u8]) -> Result<(HouseholdId, Vec<Event>), StoreError> {
        let plain = self.open(&self.parked_aad, key, value)?;
        let corrupt = || StoreError::Corrupt {
            what: "parked events".into(),
            message: "too short".into(),
        };
        let len =
            u16::from_be_bytes(plain.get(..2).ok_or_else(corrupt)?.try_into().expect("2")) as usize;
        let id = plain.get(2..2 + len).ok_or_else(corrupt)?;
        Ok((
            HouseholdId::new(String::from_utf8_lossy(id)),
            codec::decode_events(&plain[2 + len..])?,
        ))
    }
}

impl PartitionState for FjallPartition {
    fn partition(&self) -> u32 {
        self.partition
    }

    fn get(&self, household: &HouseholdId) -> Result<Option<Household>, StoreError> {
        let key = self.key(household);
        match self.households.get(key).map_err(backend)? {
            Some(v) => self.household_of(&key, &v).map(Some),
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
        let key = self.key(household);
        match self.parked.get(key).map_err(backend)? {
            Some(v) => Ok(self.parked_of(&key, &v)?.1),
            None => Ok(Vec::new()),
        }
    }

    fn parked_households(&self) -> Result<Vec<HouseholdId>, StoreError> {
        let mut out = Vec::new();
        for kv in self.parked.iter() {
            let (k, v) = kv.into_inner().map_err(backend)?;
            out.push(self.parked_of(&k, &v)?.0);
        }
        Ok(out)
    }

    fn write(&self, batch: &StateBatch) -> Result<(), StoreError> {
        // No durability of its own: fjall writes the batch to its journal as one entry (a torn
        // entry is dropped whole on recovery); `sync` makes it durable.
        let mut b = self.db.batch();
        for h in &batch.households {
            let key = self.key(&h.household_id);
            let sealed = self
                .keyring
                .seal(&codec::encode(h)?, &aad(&self.households_aad, &key));
            b.insert(&self.households, key, sealed);
        }
        for (hid, events) in &batch.parked {
            let key = self.key(hid);
            if events.is_empty() {
                b.remove(&self.parked, key);
            } else {
                let id = hid.as_str().as_bytes();
                let mut plain = Vec::with_capacity(2 + id.len());
                plain.extend_from_slice(&(id.len() as u16).to_be_bytes());
                plain.extend_from_slice(id);
                plain.extend_from_slice(&codec::encode_events(events)?);
                let sealed = self.keyring.seal(&plain, &aad(&self.parked_aad, &key));
                b.insert(&self.parked, key, sealed);
            }
        }
        b.insert(
            &self.meta,
            self.offset_key(),
            batch.next_offset.to_be_bytes(),
        );
        for (program, activation) in &batch.programs {
            b.insert(
                &self.meta,
                format!("{}{program}", self.programs_prefix()),
                *activation,
            );
        }
        let _guard = self.lock.lock().expect("partition lock");
        b.commit().map_err(backend)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncData).map_err(backend)
    }

    fn programs(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = self.programs_prefix();
        let mut out = Vec::new();
        for kv in self.meta.prefix(&prefix) {
            let (k, v) = kv.into_inner().map_err(backend)?;
            let program = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((program, v.to_vec()));
        }
        Ok(out)
    }

    fn for_each(
        &self,
        f: &mut dyn FnMut(Household) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for kv in self.households.iter() {
            let (k, v) = kv.into_inner().map_err(backend)?;
            f(self.household_of(&k, &v)?)?;
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
        for kv in self.meta.prefix(self.programs_prefix()) {
            let k = kv.key().map_err(backend)?;
            b.remove(&self.meta, k);
        }
        let _guard = self.lock.lock().expect("partition lock");
        b.commit().map_err(backend)
    }
}
