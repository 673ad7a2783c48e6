//! The durable store: fjall (an embedded LSM tree) on a directory.
//!
//! Three keyspaces:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `schemas` | id, 4 bytes big-endian | [`StoredSchema`] as JSON |
//! | `versions` | subject, `0x00`, version (4 bytes big-endian) | [`VersionRecord`] as JSON |
//! | `config` | `0x00` (global) or the subject | the level's name |
//!
//! Subjects never hold control characters, so `0x00` separates and sorts before any of them.
//! Every [`apply`](RegistryStore::apply) is one fjall write batch (atomic across keyspaces)
//! persisted with `SyncAll` (fsync) before it returns.

use super::{RegistryStore, StoreError, StoredSchema, VersionRecord, Write};
use crate::compat::CompatibilityLevel;
use fjall::{Database, Keyspace, PersistMode};
use std::path::Path;

/// The registry's state in a fjall database on a directory. One process at a time: opening a
/// directory another store has open fails.
pub struct FjallStore {
    db: Database,
    schemas: Keyspace,
    versions: Keyspace,
    config: Keyspace,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore").finish_non_exhaustive()
    }
}

const GLOBAL: &[u8] = &[0];

impl FjallStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let open_err = |e: fjall::Error| StoreError::Open {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let db = dsr_store::fjall_state::open_database(dir).map_err(open_err)?;
        let keyspace = |name: &str| {
            db.keyspace(name, dsr_store::fjall_state::small_keyspace_options)
                .map_err(open_err)
        };
        let schemas = keyspace("schemas")?;
        let versions = keyspace("versions")?;
        let config = keyspace("config")?;
        Ok(FjallStore {
            db,
            schemas,
            versions,
            config,
        })
    }
}

fn backend(e: fjall::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: impl Into<String>, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        message: message.to_string(),
    }
}

fn version_key(subject: &str, version: u32) -> Vec<u8> {
    let mut key = subject_prefix(subject);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn subject_prefix(subject: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(subject.len() + 5);
    key.extend_from_slice(subject.as_bytes());
    key.push(0);
    key
}

fn config_key(subject: Option<&str>) -> Vec<u8> {
    match subject {
        None => GLOBAL.to_vec(),
        Some(s) => s.as_bytes().to_vec(),
    }
}

fn parse_level(key: &[u8], value: &[u8]) -> Result<CompatibilityLevel, StoreError> {
    let what = || format!("config {}", String::from_utf8_lossy(key));
    let name = std::str::from_utf8(value).map_err(|e| corrupt(what(), e))?;
    name.parse()
        .map_err(|_| corrupt(what(), format!("unknown level {name:?}")))
}

fn parse_schema(id: u32, value: &[u8]) -> Result<StoredSchema, StoreError> {
    serde_json::from_slice(value).map_err(|e| corrupt(format!("schema {id}"), e))
}

impl RegistryStore for FjallStore {
    fn get_schema(&self, id: u32) -> Result<Option<StoredSchema>, StoreError> {
        match self.schemas.get(id.to_be_bytes()).map_err(backend)? {
            Some(v) => parse_schema(id, &v).map(Some),
            None => Ok(None),
        }
    }

    fn schemas(&self) -> Result<Vec<(u32, StoredSchema)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.schemas.iter() {
            let (k, v) = kv.into_inner().map_err(backend)?;
            let id = <[u8; 4]>::try_from(&*k)
                .map(u32::from_be_bytes)
                .map_err(|_| corrupt("schema key", format!("{} bytes, not 4", k.len())))?;
            out.push((id, parse_schema(id, &v)?));
        }
        Ok(out)
    }

    fn subjects(&self) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        for kv in self.versions.iter() {
            let key = kv.key().map_err(backend)?;
            let end = key
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| corrupt("version key", "no separator"))?;
            let subject =
                std::str::from_utf8(&key[..end]).map_err(|e| corrupt("version key", e))?;
            if out.last().map(String::as_str) != Some(subject) {
                out.push(subject.to_string());
            }
        }
        Ok(out)
    }

    fn versions(&self, subject: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.versions.prefix(subject_prefix(subject)) {
            let (_, v) = kv.into_inner().map_err(backend)?;
            let record: VersionRecord = serde_json::from_slice(&v)
                .map_err(|e| corrupt(format!("a version of subject {subject}"), e))?;
            out.push(record);
        }
        Ok(out)
    }

    fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>, StoreError> {
        let key = config_key(subject);
        match self.config.get(&key).map_err(backend)? {
            Some(v) => parse_level(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn configs(&self) -> Result<Vec<(Option<String>, CompatibilityLevel)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.config.iter() {
            let (k, v) = kv.into_inner().map_err(backend)?;
            let level = parse_level(&k, &v)?;
            let subject = if &*k == GLOBAL {
                None
            } else {
                Some(String::from_utf8(k.to_vec()).map_err(|e| corrupt("config key", e))?)
            };
            out.push((subject, level));
        }
        Ok(out)
    }

    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for write in writes {
            match write {
                Write::Schema { id, schema } => {
                    let value = serde_json::to_vec(schema)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    batch.insert(&self.schemas, id.to_be_bytes(), value);
                }
                Write::Version { subject, record } => {
                    let value = serde_json::to_vec(record)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    batch.insert(&self.versions, version_key(subject, record.version), value);
                }
                Write::RemoveVersion { subject, version } => {
                    batch.remove(&self.versions, version_key(subject, *version));
                }
                Write::Config { subject, level } => {
                    let key = config_key(subject.as_deref());
                    match level {
                        Some(level) => batch.insert(&self.config, key, level.as_str()),
                        None => batch.remove(&self.config, key),
                    }
                }
            }
        }
        batch.commit().map_err(backend)
    }
}
