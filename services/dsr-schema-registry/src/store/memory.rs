//! A store that keeps everything in memory: for tests and throw-away registries.

use super::{RegistryStore, StoreError, StoredSchema, VersionRecord, Write};
use crate::compat::CompatibilityLevel;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The registry's state in memory; gone when dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    schemas: BTreeMap<u32, StoredSchema>,
    versions: BTreeMap<String, BTreeMap<u32, VersionRecord>>,
    config: BTreeMap<Option<String>, CompatibilityLevel>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every write replaces the whole state at once, so a poisoned lock holds a consistent
        // state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RegistryStore for MemoryStore {
    fn get_schema(&self, id: u32) -> Result<Option<StoredSchema>, StoreError> {
        Ok(self.lock().schemas.get(&id).cloned())
    }

    fn schemas(&self) -> Result<Vec<(u32, StoredSchema)>, StoreError> {
        Ok(self
            .lock()
            .schemas
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect())
    }

    fn subjects(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .lock()
            .versions
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(s, _)| s.clone())
            .collect())
    }

    fn versions(&self, subject: &str) -> Result<Vec<VersionRecord>, StoreError> {
        Ok(self
            .lock()
            .versions
            .get(subject)
            .map(|v| v.values().copied().collect())
            .unwrap_or_default())
    }

    fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>, StoreError> {
        Ok(self
            .lock()
            .config
            .get(&subject.map(str::to_string))
            .copied())
    }

    fn configs(&self) -> Result<Vec<(Option<String>, CompatibilityLevel)>, StoreError> {
        Ok(self
            .lock()
            .config
            .iter()
            .map(|(s, l)| (s.clone(), *l))
            .collect())
    }

    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        for write in writes {
            match write {
                Write::Schema { id, schema } => {
                    next.schemas.insert(*id, schema.clone());
                }
                Write::Version { subject, record } => {
                    next.versions
                        .entry(subject.clone())
                        .or_default()
                        .insert(record.version, *record);
                }
                Write::RemoveVersion { subject, version } => {
                    if let Some(v) = next.versions.get_mut(subject) {
                        v.remove(version);
                    }
                }
                Write::Config { subject, level } => match level {
                    Some(level) => {
                        next.config.insert(subject.clone(), *level);
                    }
                    None => {
                        next.config.remove(subject);
                    }
                },
            }
        }
        *guard = next;
        Ok(())
    }
}
