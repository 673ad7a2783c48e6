//! Where the registry keeps its state.
//!
//! [`RegistryStore`] is the port: schemas by global id, each subject's versions (with their
//! soft-delete flag), and the compatibility levels. Changes go in through
//! [`RegistryStore::apply`], all of a change at once: a registration writes its new schema and
//! its subject version together, and is acknowledged only once both are durable.
//!
//! - [`FjallStore`]: the embedded durable store (fjall, an LSM tree) on a directory.
//! - [`MemoryStore`]: everything in memory, for tests and throw-away registries.
//!
//! The [`Registry`](crate::Registry) reads the whole store once when it opens and keeps a copy
//! in memory; after that, the store only takes writes.

mod fjall_store;
mod memory;

pub use self::fjall_store::FjallStore;
pub use self::memory::MemoryStore;

use crate::compat::CompatibilityLevel;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A schema as stored under its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchema {
    /// The schema text as first registered.
    pub schema: String,
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u32,
    /// The schema's global id.
    pub id: u32,
    /// Soft-deleted: hidden from reads and compatibility checks unless asked for, and its
    /// number is never reused.
    #[serde(default)]
    pub deleted: bool,
}

/// One change to the store; [`RegistryStore::apply`] takes several at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Adds a schema under a new id.
    Schema { id: u32, schema: StoredSchema },
    /// Adds or replaces a version of a subject.
    Version {
        subject: String,
        record: VersionRecord,
    },
    /// Removes a version of a subject for good (permanent delete).
    RemoveVersion { subject: String, version: u32 },
    /// Sets (`Some`) or clears (`None`) the level of a subject, or the global level
    /// (`subject: None`).
    Config {
        subject: Option<String>,
        level: Option<CompatibilityLevel>,
    },
}

/// The store failed; not the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the registry store in {path}: {message}; check that the directory is writable and that no other dsr process uses it")]
    Open { path: PathBuf, message: String },
    #[error("the registry store failed: {0}")]
    Backend(String),
    #[error("the registry store holds a record it cannot read ({what}): {message}; the store is damaged or was written by a newer dsr")]
    Corrupt { what: String, message: String },
}

/// Where a [`Registry`](crate::Registry) keeps its state.
///
/// Implementations must make [`apply`](RegistryStore::apply) atomic (all of the writes or
/// none) and durable before it returns: the registry acknowledges a registration right after.
pub trait RegistryStore: Send + Sync {
    /// The schema with this id.
    fn get_schema(&self, id: u32) -> Result<Option<StoredSchema>, StoreError>;
    /// Every schema, by id.
    fn schemas(&self) -> Result<Vec<(u32, StoredSchema)>, StoreError>;
    /// Every subject that has (or had) a version, in name order.
    fn subjects(&self) -> Result<Vec<String>, StoreError>;
    /// A subject's versions, soft-deleted ones included, oldest first.
    fn versions(&self, subject: &str) -> Result<Vec<VersionRecord>, StoreError>;
    /// The level set for a subject, or the global one (`None`), if any was set.
    fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>, StoreError>;
    /// Every level set: `(None, level)` for the global one, `(Some(subject), level)` for
    /// subjects.
    fn configs(&self) -> Result<Vec<(Option<String>, CompatibilityLevel)>, StoreError>;
    /// Applies `writes` atomically and durably.
    fn apply(&self, writes: &[Write]) -> Result<(), StoreError>;
}

impl<S: RegistryStore + ?Sized> RegistryStore for Box<S> {
    fn get_schema(&self, id: u32) -> Result<Option<StoredSchema>, StoreError> {
        (**self).get_schema(id)
    }
    fn schemas(&self) -> Result<Vec<(u32, StoredSchema)>, StoreError> {
        (**self).schemas()
    }
    fn subjects(&self) -> Result<Vec<String>, StoreError> {
        (**self).subjects()
    }
    fn versions(&self, subject: &str) -> Result<Vec<VersionRecord>, StoreError> {
        (**self).versions(subject)
    }
    fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>, StoreError> {
        (**self).config(subject)
    }
    fn configs(&self) -> Result<Vec<(Option<String>, CompatibilityLevel)>, StoreError> {
        (**self).configs()
    }
    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        (**self).apply(writes)
    }
}

#[cfg(test)]
mod tests {
    //! The same checks for every store.
    use super::*;

    pub(super) fn exercise(store: &dyn RegistryStore) {
        assert!(store.schemas().unwrap().is_empty());
        assert!(store.subjects().unwrap().is_empty());
        let s1 = StoredSchema {
            schema: "\"string\"".into(),
        };
        let v = |version, id, deleted| VersionRecord {
            version,
            id,
            deleted,
        };
        store
            .apply(&[
                Write::Schema {
                    id: 1,
                    schema: s1.clone(),
                },
                Write::Version {
                    subject: "b-value".into(),
                    record: v(1, 1, false),
                },
                Write::Version {
                    subject: "a-value".into(),
                    record: v(1, 1, false),
                },
                Write::Version {
                    subject: "a-value".into(),
                    record: v(2, 1, false),
                },
                Write::Config {
                    subject: None,
                    level: Some(CompatibilityLevel::Full),
                },
                Write::Config {
                    subject: Some("a-value".into()),
                    level: Some(CompatibilityLevel::None),
                },
            ])
            .unwrap();
        assert_eq!(store.get_schema(1).unwrap(), Some(s1.clone()));
        assert_eq!(store.get_schema(2).unwrap(), None);
        assert_eq!(store.schemas().unwrap(), vec![(1, s1)]);
        assert_eq!(store.subjects().unwrap(), vec!["a-value", "b-value"]);
        assert_eq!(
            store.versions("a-value").unwrap(),
            vec![v(1, 1, false), v(2, 1, false)]
        );
        // A subject that is a prefix of another does not see the other's versions.
        assert!(store.versions("a-valu").unwrap().is_empty());
        store
            .apply(&[
                Write::Version {
                    subject: "a-value".into(),
                    record: v(1, 1, true),
                },
                Write::RemoveVersion {
                    subject: "a-value".into(),
                    version: 2,
                },
                Write::Config {
                    subject: Some("a-value".into()),
                    level: None,
                },
            ])
            .unwrap();
        assert_eq!(store.versions("a-value").unwrap(), vec![v(1, 1, true)]);
        assert_eq!(store.config(None).unwrap(), Some(CompatibilityLevel::Full));
        assert_eq!(store.config(Some("a-value")).unwrap(), None);
        assert_eq!(
            store.configs().unwrap(),
            vec![(None, CompatibilityLevel::Full)]
        );
    }

    #[test]
    fn memory_store() {
        exercise(&MemoryStore::new());
    }

    #[test]
    fn fjall_store_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory that does not exist yet is created.
        let dir = tmp.path().join("state/registry");
        {
            let store = FjallStore::open(&dir).unwrap();
            exercise(&store);
        }
        let store = FjallStore::open(&dir).unwrap();
        assert_eq!(store.subjects().unwrap(), vec!["a-value", "b-value"]);
        assert_eq!(store.config(None).unwrap(), Some(CompatibilityLevel::Full));
    }

    #[test]
    fn fjall_store_is_locked_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let _store = FjallStore::open(dir.path()).unwrap();
        let second = FjallStore::open(dir.path());
        assert!(matches!(second, Err(StoreError::Open { .. })), "{second:?}");
    }
}
