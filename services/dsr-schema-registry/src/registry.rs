//! The registry's logic: schemas, their global ids, subjects and their versions, soft deletes,
//! compatibility levels.
//!
//! - A schema's **id** is global: the same schema registered under several subjects gets the
//!   same id, and registering it again under a subject that has it returns its id without a
//!   new version. Ids start at 1 and are never reused.
//! - A schema's **identity** is its parsed form written out again by apache-avro (key order and
//!   whitespace do not matter; defaults, docs, aliases and custom attributes do). It is
//!   recomputed from the stored text whenever the registry opens, never stored.
//! - A subject's **versions** count from 1; soft-deleted versions keep their numbers, are left
//!   out of reads unless `deleted` is asked for, and are not checked for compatibility.
//! - The **compatibility level** of a subject is its own, else the global one, else
//!   `BACKWARD`; a new version is checked as [`compat::check`] says.
//!
//! Every change is persisted by the [`RegistryStore`] before it is acknowledged. Reads are
//! served from a copy of the store in memory, loaded when the registry opens.

use crate::compat::{self, CompatibilityLevel};
use crate::error::RegistryError;
use crate::store::{
    FjallStore, MemoryStore, RegistryStore, StoreError, StoredSchema, VersionRecord, Write,
};
use crate::subject;
use apache_avro::schema::Schema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A schema's global id, the one in the wire format's 4 bytes after the magic byte.
pub type SchemaId = u32;

/// The only schema type this registry holds.
pub const AVRO: &str = "AVRO";

/// A schema as clients send it: `{"schema": "...", "schemaType": "AVRO", "references": []}`.
/// Other fields (`metadata`, `ruleSet`) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaInput {
    /// The Avro schema, as JSON text.
    #[serde(default)]
    pub schema: Option<String>,
    /// `AVRO` or absent; anything else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    /// Schema references: refused when not empty (dsr's schemas are self-contained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<serde_json::Value>>,
}

impl SchemaInput {
    /// An Avro schema given as JSON text.
    pub fn avro(schema: impl Into<String>) -> Self {
        SchemaInput {
            schema: Some(schema.into()),
            schema_type: None,
            references: None,
        }
    }
}

/// One version of a subject, as `GET /subjects/{subject}/versions/{version}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectSchema {
    pub subject: String,
    pub version: u32,
    pub id: SchemaId,
    /// The schema text, as first registered.
    pub schema: String,
}

/// A subject and one of its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
}

/// Which version of a subject: a number, or the latest (`latest`, or `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl FromStr for VersionSpec {
    type Err = RegistryError;

    /// `latest`, `-1`, or a number from 1 to 2^31-1; anything else is 42202.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<u32>() {
            Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }
}

impl std::fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionSpec::Latest => f.write_str("latest"),
            VersionSpec::Number(n) => write!(f, "{n}"),
        }
    }
}

/// The schema registry: what the HTTP API, `dsr up` and the pipeline call.
pub struct Registry {
    store: Box<dyn RegistryStore>,
    state: RwLock<State>,
    /// Serializes changes, so that each is checked against the state it is applied to.
    writer: Mutex<()>,
}

struct Entry {
    text: Arc<str>,
    schema: Arc<Schema>,
}

#[derive(Default)]
struct State {
    schemas: HashMap<SchemaId, Entry>,
    by_identity: HashMap<String, SchemaId>,
    /// Each subject's versions, oldest first; soft-deleted ones included.
    subjects: BTreeMap<String, Vec<VersionRecord>>,
    global: Option<CompatibilityLevel>,
    levels: HashMap<String, CompatibilityLevel>,
    next_id: SchemaId,
}

/// A schema the registry accepted as valid Avro.
struct Parsed {
    text: String,
    schema: Schema,
    identity: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("Registry")
            .field("schemas", &state.schemas.len())
            .field("subjects", &state.subjects.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens (or creates) a durable registry in `dir`, with a [`FjallStore`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, RegistryError> {
        Self::with_store(FjallStore::open(dir)?)
    }

    /// A registry that forgets everything when dropped.
    pub fn in_memory() -> Self {
        Self::with_store(MemoryStore::new()).expect("an empty memory store loads")
    }

    /// A registry on `store`, loading everything the store holds.
    pub fn with_store(store: impl RegistryStore + 'static) -> Result<Self, RegistryError> {
        let state = State::load(&store)?;
        tracing::info!(
            schemas = state.schemas.len(),
            subjects = state.subjects.len(),
            "schema registry loaded"
        );
        Ok(Registry {
            store: Box::new(store),
            state: RwLock::new(state),
            writer: Mutex::new(()),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `input` under `subject` and returns its global id. A schema the subject
    /// already has (as a live version) returns its id and changes nothing; otherwise it is
    /// checked against the subject's earlier versions at the subject's level (409 with what
    /// broke) and becomes the subject's next version, persisted before this returns.
    pub fn register(&self, subject: &str, input: &SchemaInput) -> Result<SchemaId, RegistryError> {
        check_subject(subject)?;
        let parsed = parse(input)?;
        let _writer = self.lock_writer();
        let state = self.read();
        let versions = state
            .subjects
            .get(subject)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let known = state.by_identity.get(&parsed.identity).copied();
        if let Some(id) = known {
            if let Some(v) = versions.iter().rev().find(|v| !v.deleted && v.id == id) {
                tracing::debug!(
                    subject,
                    id,
                    version = v.version,
                    "schema already registered"
                );
                return Ok(id);
            }
        }
        let level = state.level(subject);
        let previous = state.live_schemas(versions);
        let messages = compat::check(level, &parsed.schema, &previous);
        if !messages.is_empty() {
            tracing::info!(subject, %level, problems = messages.len(), "refused an incompatible schema");
            return Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                level,
                messages,
            });
        }
        let id = known.unwrap_or(state.next_id);
        let version = versions.last().map_or(1, |v| v.version + 1);
        let record = VersionRecord {
            version,
            id,
            deleted: false,
        };
        let mut writes = Vec::with_capacity(2);
        if known.is_none() {
            writes.push(Write::Schema {
                id,
                schema: StoredSchema {
                    schema: parsed.text.clone(),
                },
            });
        }
        writes.push(Write::Version {
            subject: subject.to_string(),
            record,
        });
        drop(state);
        self.store.apply(&writes)?;
        let mut state = self.write();
        if known.is_none() {
            state.insert_schema(
                id,
                parsed.text.into(),
                Arc::new(parsed.schema),
                parsed.identity,
            );
        }
        state
            .subjects
            .entry(subject.to_string())
            .or_default()
            .push(record);
        tracing::info!(
            subject,
            id,
            version,
            new_schema = known.is_none(),
            "registered a schema version"
        );
        Ok(id)
    }

    /// Is `input` registered under `subject`? Its latest version with that schema (soft-deleted
    /// ones too when `deleted`); 40401 without the subject, 40403 without the schema.
    pub fn lookup(
        &self,
        subject: &str,
        input: &SchemaInput,
        deleted: bool,
    ) -> Result<SubjectSchema, RegistryError> {
        let parsed = parse(input)?;
        let state = self.read();
        let versions = state.visible(subject, deleted)?;
        let id = state
            .by_identity
            .get(&parsed.identity)
            .ok_or_else(|| RegistryError::SchemaNotFound(subject.to_string()))?;
        let v = versions
            .iter()
            .rev()
            .find(|v| v.id == *id)
            .ok_or_else(|| RegistryError::SchemaNotFound(subject.to_string()))?;
        Ok(state.subject_schema(subject, v))
    }

    /// The subjects that have a live version (or any version, when `deleted`), by name.
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.read()
            .subjects
            .iter()
            .filter(|(_, v)| v.iter().any(|v| deleted || !v.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// A subject's version numbers, oldest first; 40401 if it has none.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        let state = self.read();
        Ok(state
            .visible(subject, deleted)?
            .iter()
            .map(|v| v.version)
            .collect())
    }

    /// One version of a subject; 40401 without the subject, 40402 without the version.
    pub fn version(
        &self,
        subject: &str,
        version: VersionSpec,
        deleted: bool,
    ) -> Result<SubjectSchema, RegistryError> {
        let state = self.read();
        let versions = state.visible(subject, deleted)?;
        let v = find_version(subject, &versions, version)?;
        Ok(state.subject_schema(subject, v))
    }

    /// The schema text with this id (soft-deleted versions do not hide it: data written with
    /// it must stay readable); 40403 if no schema has it.
    pub fn schema(&self, id: SchemaId) -> Result<Arc<str>, RegistryError> {
        self.read()
            .schemas
            .get(&id)
            .map(|e| e.text.clone())
            .ok_or_else(|| RegistryError::SchemaIdNotFound(id.to_string()))
    }

    /// The parsed schema with this id, for decoding; 40403 if no schema has it.
    pub fn parsed_schema(&self, id: SchemaId) -> Result<Arc<Schema>, RegistryError> {
        self.read()
            .schemas
            .get(&id)
            .map(|e| e.schema.clone())
            .ok_or_else(|| RegistryError::SchemaIdNotFound(id.to_string()))
    }

    /// Every subject version that has the schema with this id; 40403 if no schema has it.
    pub fn schema_versions(
        &self,
        id: SchemaId,
        deleted: bool,
    ) -> Result<Vec<SubjectVersion>, RegistryError> {
        let state = self.read();
        if !state.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaIdNotFound(id.to_string()));
        }
        Ok(state
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |v| v.id == id && (deleted || !v.deleted))
                    .map(move |v| SubjectVersion {
                        subject: subject.clone(),
                        version: v.version,
                    })
            })
            .collect())
    }

    /// The subjects that have the schema with this id; 40403 if no schema has it.
    pub fn schema_subjects(
        &self,
        id: SchemaId,
        deleted: bool,
    ) -> Result<Vec<String>, RegistryError> {
        let mut subjects: Vec<String> = self
            .schema_versions(id, deleted)?
            .into_iter()
            .map(|sv| sv.subject)
            .collect();
        subjects.dedup();
        Ok(subjects)
    }

    /// Deletes a subject: soft (its live versions are hidden, their numbers kept), or, when
    /// `permanent`, for good (only after a soft delete). Returns the versions deleted.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let _writer = self.lock_writer();
        let state = self.read();
        let versions = state
            .subjects
            .get(subject)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let live: Vec<VersionRecord> = versions.iter().filter(|v| !v.deleted).copied().collect();
        let (writes, deleted): (Vec<Write>, Vec<u32>) = if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
            }
            let mut writes: Vec<Write> = versions
                .iter()
                .map(|v| Write::RemoveVersion {
                    subject: subject.to_string(),
                    version: v.version,
                })
                .collect();
            if state.levels.contains_key(subject) {
                writes.push(Write::Config {
                    subject: Some(subject.to_string()),
                    level: None,
                });
            }
            (writes, versions.iter().map(|v| v.version).collect())
        } else {
            if live.is_empty() {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
            }
            let writes = live
                .iter()
                .map(|v| Write::Version {
                    subject: subject.to_string(),
                    record: VersionRecord {
                        deleted: true,
                        ..*v
                    },
                })
                .collect();
            (writes, live.iter().map(|v| v.version).collect())
        };
        drop(state);
        self.store.apply(&writes)?;
        let mut state = self.write();
        if permanent {
            state.subjects.remove(subject);
            state.levels.remove(subject);
        } else if let Some(versions) = state.subjects.get_mut(subject) {
            versions.iter_mut().for_each(|v| v.deleted = true);
        }
        tracing::info!(
            subject,
            permanent,
            versions = deleted.len(),
            "deleted a subject"
        );
        Ok(deleted)
    }

    /// Deletes one version of a subject: soft, or, when `permanent`, for good (only after a
    /// soft delete). `latest` is the latest live version. Returns the version deleted.
    pub fn delete_version(
        &self,
        subject: &str,
        version: VersionSpec,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        let _writer = self.lock_writer();
        let state = self.read();
        let versions = state
            .subjects
            .get(subject)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let record = match version {
            VersionSpec::Latest => versions.iter().rev().find(|v| !v.deleted),
            VersionSpec::Number(n) => versions.iter().find(|v| v.version == n),
        }
        .copied()
        .ok_or_else(|| RegistryError::VersionNotFound {
            subject: subject.to_string(),
            version: version.to_string(),
        })?;
        let n = record.version;
        let write = match (permanent, record.deleted) {
            (false, true) => {
                return Err(RegistryError::VersionSoftDeleted {
                    subject: subject.to_string(),
                    version: n,
                })
            }
            (true, false) => {
                return Err(RegistryError::VersionNotSoftDeleted {
                    subject: subject.to_string(),
                    version: n,
                })
            }
            (false, false) => Write::Version {
                subject: subject.to_string(),
                record: VersionRecord {
                    deleted: true,
                    ..record
                },
            },
            (true, true) => Write::RemoveVersion {
                subject: subject.to_string(),
                version: n,
            },
        };
        drop(state);
        self.store.apply(&[write])?;
        let mut state = self.write();
        if let Some(versions) = state.subjects.get_mut(subject) {
            if permanent {
                versions.retain(|v| v.version != n);
            } else if let Some(v) = versions.iter_mut().find(|v| v.version == n) {
                v.deleted = true;
            }
            if versions.is_empty() {
                state.subjects.remove(subject);
            }
        }
        tracing::info!(subject, version = n, permanent, "deleted a subject version");
        Ok(n)
    }

    /// Would `input` be accepted as the next version of `subject`? Against one version
    /// (`Some`), or against the versions the subject's level names (`None`). Returns what
    /// breaks; empty when compatible. A subject without versions accepts anything, unless a
    /// numbered version is asked for (40401 / 40402).
    pub fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        input: &SchemaInput,
    ) -> Result<Vec<String>, RegistryError> {
        let parsed = parse(input)?;
        let state = self.read();
        let level = state.level(subject);
        let live: Vec<VersionRecord> = state
            .subjects
            .get(subject)
            .map(|v| v.iter().filter(|v| !v.deleted).copied().collect())
            .unwrap_or_default();
        let against: Vec<VersionRecord> = match version {
            None => live,
            Some(VersionSpec::Latest) => live.last().copied().into_iter().collect(),
            Some(spec @ VersionSpec::Number(_)) => {
                if live.is_empty() {
                    return Err(RegistryError::SubjectNotFound(subject.to_string()));
                }
                vec![*find_version(subject, &live, spec)?]
            }
        };
        let previous = state.live_schemas(&against);
        Ok(compat::check(level, &parsed.schema, &previous))
    }

    /// The compatibility level: the global one (`None`), or a subject's. A subject without its
    /// own level has the global one when `default_to_global`, else 40408.
    pub fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let state = self.read();
        match subject {
            None => Ok(state.global.unwrap_or_default()),
            Some(s) => match state.levels.get(s) {
                Some(level) => Ok(*level),
                None if default_to_global => Ok(state.global.unwrap_or_default()),
                None => Err(RegistryError::SubjectConfigNotFound(s.to_string())),
            },
        }
    }

    /// Sets the global level (`None`) or a subject's (the subject need not exist yet).
    pub fn set_config(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let _writer = self.lock_writer();
        self.store.apply(&[Write::Config {
            subject: subject.map(str::to_string),
            level: Some(level),
        }])?;
        let mut state = self.write();
        match subject {
            None => state.global = Some(level),
            Some(s) => {
                state.levels.insert(s.to_string(), level);
            }
        }
        tracing::info!(subject = subject.unwrap_or("(global)"), %level, "set the compatibility level");
        Ok(())
    }

    /// Clears a subject's level (40408 if it had none), or resets the global one to
    /// `BACKWARD`. Returns the level it had.
    pub fn delete_config(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let _writer = self.lock_writer();
        let previous = self.config(subject, false)?;
        self.store.apply(&[Write::Config {
            subject: subject.map(str::to_string),
            level: None,
        }])?;
        let mut state = self.write();
        match subject {
            None => state.global = None,
            Some(s) => {
                state.levels.remove(s);
            }
        }
        tracing::info!(
            subject = subject.unwrap_or("(global)"),
            "cleared the compatibility level"
        );
        Ok(previous)
    }

    /// The schema types this registry holds: `["AVRO"]`.
    pub fn schema_types(&self) -> Vec<&'static str> {
        vec![AVRO]
    }
}

impl State {
    fn load(store: &dyn RegistryStore) -> Result<Self, RegistryError> {
        let mut state = State {
            next_id: 1,
            ..State::default()
        };
        for (id, stored) in store.schemas()? {
            let parsed =
                parse(&SchemaInput::avro(stored.schema)).map_err(|e| StoreError::Corrupt {
                    what: format!("schema {id}"),
                    message: e.to_string(),
                })?;
            state.insert_schema(
                id,
                parsed.text.into(),
                Arc::new(parsed.schema),
                parsed.identity,
            );
        }
        for subject in store.subjects()? {
            let mut versions = store.versions(&subject)?;
            versions.sort_by_key(|v| v.version);
            if !versions.is_empty() {
                state.subjects.insert(subject, versions);
            }
        }
        for (subject, level) in store.configs()? {
            match subject {
                None => state.global = Some(level),
                Some(s) => {
                    state.levels.insert(s, level);
                }
            }
        }
        Ok(state)
    }

    fn insert_schema(
        &mut self,
        id: SchemaId,
        text: Arc<str>,
        schema: Arc<Schema>,
        identity: String,
    ) {
        // Should two stored schemas have one identity (after an apache-avro upgrade changed
        // how schemas are written out), the smaller id stays the one returned.
        let slot = self.by_identity.entry(identity).or_insert(id);
        *slot = (*slot).min(id);
        self.schemas.insert(id, Entry { text, schema });
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    fn level(&self, subject: &str) -> CompatibilityLevel {
        self.levels
            .get(subject)
            .copied()
            .or(self.global)
            .unwrap_or_default()
    }

    /// The subject's versions a read may see; 40401 if there are none.
    fn visible(&self, subject: &str, deleted: bool) -> Result<Vec<VersionRecord>, RegistryError> {
        let versions: Vec<VersionRecord> = self
            .subjects
            .get(subject)
            .map(|v| {
                v.iter()
                    .filter(|v| deleted || !v.deleted)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(versions)
    }

    /// `(version, schema)` of the live versions among `versions`, oldest first.
    fn live_schemas<'a>(&'a self, versions: &[VersionRecord]) -> Vec<(u32, &'a Schema)> {
        versions
            .iter()
            .filter(|v| !v.deleted)
            .filter_map(|v| self.schemas.get(&v.id).map(|e| (v.version, &*e.schema)))
            .collect()
    }

    fn subject_schema(&self, subject: &str, v: &VersionRecord) -> SubjectSchema {
        SubjectSchema {
            subject: subject.to_string(),
            version: v.version,
            id: v.id,
            schema: self
                .schemas
                .get(&v.id)
                .map(|e| e.text.to_string())
                .unwrap_or_default(),
        }
    }
}

fn find_version<'a>(
    subject: &str,
    versions: &'a [VersionRecord],
    version: VersionSpec,
) -> Result<&'a VersionRecord, RegistryError> {
    match version {
        VersionSpec::Latest => versions.last(),
        VersionSpec::Number(n) => versions.iter().find(|v| v.version == n),
    }
    .ok_or_else(|| RegistryError::VersionNotFound {
        subject: subject.to_string(),
        version: version.to_string(),
    })
}

fn check_subject(subject: &str) -> Result<(), RegistryError> {
    if subject::is_valid(subject) {
        Ok(())
    } else {
        Err(RegistryError::InvalidSubject(subject.to_string()))
    }
}

/// Checks that `input` is an Avro schema this registry can hold, and computes its identity.
fn parse(input: &SchemaInput) -> Result<Parsed, RegistryError> {
    let invalid = |m: String| RegistryError::InvalidSchema(m);
    if let Some(t) = input.schema_type.as_deref() {
        if !t.eq_ignore_ascii_case(AVRO) {
            return Err(invalid(format!(
                "schemaType {t} is not supported: this registry (dsr) holds only AVRO schemas; send \"schemaType\": \"AVRO\" or leave it out"
            )));
        }
    }
    if input.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(invalid(
            "schema references are not supported: send a self-contained schema, with every named type defined in it".into(),
        ));
    }
    let text = input.schema.as_deref().unwrap_or_default();
    if text.trim().is_empty() {
        return Err(invalid(
            "the request has no schema: send {\"schema\": \"<the Avro schema's JSON, as a string>\"}".into(),
        ));
    }
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        return Err(invalid(format!("the schema is not valid JSON: {e}")));
    }
    let schema = Schema::parse_str(text)
        .map_err(|e| invalid(format!("the schema is not valid Avro: {e}")))?;
    let identity = serde_json::to_string(&schema)
        .map_err(|e| invalid(format!("the schema cannot be written out again: {e}")))?;
    Ok(Parsed {
        text: text.to_string(),
        schema,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str =
        r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
    const V1_SPACED: &str = "{ \"namespace\" : \"t\",\n  \"type\": \"record\", \"name\": \"R\",\n  \"fields\": [ {\"type\": \"string\", \"name\": \"a\"} ] }";
    const V2: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;

    fn avro(s: &str) -> SchemaInput {
        SchemaInput::avro(s)
    }

    #[test]
    fn ids_are_global_and_stable() {
        let r = Registry::in_memory();
        let id = r.register("a-value", &avro(V1)).unwrap();
        assert_eq!(id, 1);
        assert_eq!(r.register("a-value", &avro(V1)).unwrap(), id);
        assert_eq!(r.register("a-value", &avro(V1_SPACED)).unwrap(), id);
        assert_eq!(r.versions("a-value", false).unwrap(), vec![1]);
        assert_eq!(r.register("b-value", &avro(V1_SPACED)).unwrap(), id);
        assert_eq!(r.register("a-value", &avro(V2)).unwrap(), 2);
        assert_eq!(r.versions("a-value", false).unwrap(), vec![1, 2]);
        // The first text registered is the one returned.
        assert_eq!(&*r.schema(id).unwrap(), V1);
        assert_eq!(
            r.schema_versions(id, false).unwrap(),
            vec![
                SubjectVersion {
                    subject: "a-value".into(),
                    version: 1
                },
                SubjectVersion {
                    subject: "b-value".into(),
                    version: 1
                }
            ]
        );
    }

    #[test]
    fn a_default_is_part_of_the_identity() {
        let r = Registry::in_memory();
        r.set_config(None, CompatibilityLevel::None).unwrap();
        let with = r.register("s", &avro(V2)).unwrap();
        let without = r.register("s", &avro(V2_NO_DEFAULT)).unwrap();
        assert_ne!(with, without);
    }

    #[test]
    fn incompatible_is_refused_and_names_the_field() {
        let r = Registry::in_memory();
        r.register("s", &avro(V1)).unwrap();
        let err = r.register("s", &avro(V2_NO_DEFAULT)).unwrap_err();
        assert_eq!(err.error_code(), 409);
        assert!(err.to_string().contains("R.b"), "{err}");
        assert_eq!(r.versions("s", false).unwrap(), vec![1]);
        r.set_config(Some("s"), CompatibilityLevel::None).unwrap();
        assert_eq!(r.register("s", &avro(V2_NO_DEFAULT)).unwrap(), 2);
    }

    #[test]
    fn soft_and_permanent_deletes() {
        let r = Registry::in_memory();
        r.register("s", &avro(V1)).unwrap();
        r.register("s", &avro(V2)).unwrap();
        assert_eq!(r.delete_subject("s", true).unwrap_err().error_code(), 40405);
        assert_eq!(
            r.delete_version("s", VersionSpec::Latest, false).unwrap(),
            2
        );
        assert_eq!(
            r.delete_version("s", VersionSpec::Number(2), false)
                .unwrap_err()
                .error_code(),
            40406
        );
        assert_eq!(r.versions("s", false).unwrap(), vec![1]);
        assert_eq!(r.versions("s", true).unwrap(), vec![1, 2]);
        assert_eq!(r.delete_subject("s", false).unwrap(), vec![1]);
        assert!(r.subjects(false).is_empty());
        assert_eq!(r.subjects(true), vec!["s"]);
        assert_eq!(
            r.delete_subject("s", false).unwrap_err().error_code(),
            40404
        );
        // The schema stays readable by id.
        assert_eq!(&*r.schema(1).unwrap(), V1);
        // Registering again after a soft delete makes a new version with the same id.
        assert_eq!(r.register("s", &avro(V1)).unwrap(), 1);
        assert_eq!(r.versions("s", false).unwrap(), vec![3]);
        assert_eq!(r.delete_subject("s", false).unwrap(), vec![3]);
        assert_eq!(r.delete_subject("s", true).unwrap(), vec![1, 2, 3]);
        assert_eq!(
            r.delete_subject("s", false).unwrap_err().error_code(),
            40401
        );
    }

    #[test]
    fn version_specs() {
        assert_eq!(
            "latest".parse::<VersionSpec>().unwrap(),
            VersionSpec::Latest
        );
        assert_eq!("-1".parse::<VersionSpec>().unwrap(), VersionSpec::Latest);
        assert_eq!("7".parse::<VersionSpec>().unwrap(), VersionSpec::Number(7));
        for bad in ["0", "x", "-2", "2147483648", ""] {
            assert_eq!(
                bad.parse::<VersionSpec>().unwrap_err().error_code(),
                42202,
                "{bad}"
            );
        }
    }

    #[test]
    fn invalid_schemas() {
        let r = Registry::in_memory();
        for (input, says) in [
            (avro(""), "no schema"),
            (avro("{not json"), "not valid JSON"),
            (avro(r#"{"type":"record","name":"R"}"#), "not valid Avro"),
            (
                SchemaInput {
                    schema_type: Some("PROTOBUF".into()),
                    ..avro(V1)
                },
                "PROTOBUF",
            ),
            (
                SchemaInput {
                    references: Some(vec![serde_json::json!({"name": "x"})]),
                    ..avro(V1)
                },
                "references",
            ),
        ] {
            let err = r.register("s", &input).unwrap_err();
            assert_eq!(err.error_code(), 42201, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
