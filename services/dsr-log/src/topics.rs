//! Topic declarations (`topics/*.yaml`, one file per topic) and [`apply`], which creates the
//! missing topics and reports drift without changing or deleting anything.
//!
//! A declaration:
//!
//! ```yaml
//! name: dsr.household-changelog
//! partitions: 12
//! replication_factor: 3
//! cleanup_policy: compact        # delete | compact
//! retention_ms: -1               # -1: keep forever
//! min_insync_replicas: 2
//! key: household_id
//! value_schema: dsr.state.HouseholdRecord
//! description: >-
//!   Why it exists, who writes and reads it, and why this many partitions.
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::LogError;
use crate::port::{CreateOutcome, NewTopicSpec, TopicAdmin, TopicDescription};

/// How old records leave a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Records older than `retention_ms` are deleted.
    Delete,
    /// Only the last record of each key is kept (a changelog).
    Compact,
}

impl CleanupPolicy {
    /// Kafka's `cleanup.policy` value.
    pub fn as_kafka(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_kafka())
    }
}

/// One topic, as declared in `topics/NAME.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDecl {
    /// The Kafka topic name; the file is `NAME.yaml`.
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub cleanup_policy: CleanupPolicy,
    /// How long records are kept, in milliseconds; `-1` keeps them forever.
    pub retention_ms: i64,
    pub min_insync_replicas: i16,
    /// What the record key is (e.g. `household_id`), which decides the partition.
    pub key: String,
    /// The Avro record of the values (e.g. `dsr.events.LifeEvent`).
    pub value_schema: String,
    pub description: String,
}

impl TopicDecl {
    /// The Kafka topic configuration this declaration sets.
    pub fn kafka_configs(&self) -> Vec<(String, String)> {
        vec![
            (
                "cleanup.policy".to_owned(),
                self.cleanup_policy.as_kafka().to_owned(),
            ),
            ("retention.ms".to_owned(), self.retention_ms.to_string()),
            (
                "min.insync.replicas".to_owned(),
                self.min_insync_replicas.to_string(),
            ),
        ]
    }
}

/// A declaration that cannot be used, with where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("cannot read {}: {source}; check that the path exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not a valid topic declaration: {message}; {fix}", file.display())]
    Parse {
        file: PathBuf,
        message: String,
        fix: &'static str,
    },

    #[error("{}: field `{field}`: {problem}; {fix}", file.display())]
    Invalid {
        file: PathBuf,
        field: &'static str,
        problem: String,
        fix: String,
    },

    #[error(
        "topic `{name}` is declared twice, in {} and {}; keep one file per topic",
        first.display(), second.display()
    )]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error("no topic declarations (*.yaml) in {}; add one file per topic", dir.display())]
    Empty { dir: PathBuf },
}

const PARSE_FIX: &str = "a declaration is a YAML map with exactly the fields name, partitions, \
                         replication_factor, cleanup_policy (delete|compact), retention_ms, \
                         min_insync_replicas, key, value_schema, description";

/// Parses and validates one declaration; `file` names it in errors and its stem must be the
/// topic name.
pub fn parse(file: &Path, text: &str) -> Result<TopicDecl, TopicsError> {
    let decl: TopicDecl = serde_yaml_ng::from_str(text).map_err(|error| TopicsError::Parse {
        file: file.to_owned(),
        message: error.to_string(),
        fix: PARSE_FIX,
    })?;
    validate(file, &decl)?;
    Ok(decl)
}

/// Reads one declaration file.
pub fn load_file(file: &Path) -> Result<TopicDecl, TopicsError> {
    let text = std::fs::read_to_string(file).map_err(|source| TopicsError::Io {
        path: file.to_owned(),
        source,
    })?;
    parse(file, &text)
}

/// Reads every `*.yaml` declaration in `dir`, sorted by topic name; rejects duplicates and an
/// empty directory.
pub fn load_dir(dir: &Path) -> Result<Vec<TopicDecl>, TopicsError> {
    let io = |source| TopicsError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    files.retain(|path| {
        path.extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
    });
    files.sort();
    if files.is_empty() {
        return Err(TopicsError::Empty {
            dir: dir.to_owned(),
        });
    }
    let mut by_name: BTreeMap<String, (PathBuf, TopicDecl)> = BTreeMap::new();
    for file in files {
        let decl = load_file(&file)?;
        if let Some((first, _)) = by_name.get(&decl.name) {
            return Err(TopicsError::Duplicate {
                name: decl.name.clone(),
                first: first.clone(),
                second: file,
            });
        }
        by_name.insert(decl.name.clone(), (file, decl));
    }
    Ok(by_name.into_values().map(|(_, decl)| decl).collect())
}

fn invalid(
    file: &Path,
    field: &'static str,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> TopicsError {
    TopicsError::Invalid {
        file: file.to_owned(),
        field,
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn validate(file: &Path, decl: &TopicDecl) -> Result<(), TopicsError> {
    let name = &decl.name;
    if name.is_empty()
        || name.len() > 249
        || name == "."
        || name == ".."
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            file,
            "name",
            format!("`{name}` is not a valid Kafka topic name"),
            "use 1 to 249 characters among a-z A-Z 0-9 . _ -",
        ));
    }
    let stem = file
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("");
    if stem != name {
        return Err(invalid(
            file,
            "name",
            format!("`{name}` differs from the file name `{stem}`"),
            format!("rename the file to {name}.yaml or fix the name"),
        ));
    }
    if !(1..=10_000).contains(&decl.partitions) {
        return Err(invalid(
            file,
            "partitions",
            format!("{} is out of range", decl.partitions),
            "use 1 to 10000 partitions",
        ));
    }
    if !(1..=16).contains(&decl.replication_factor) {
        return Err(invalid(
            file,
            "replication_factor",
            format!("{} is out of range", decl.replication_factor),
            "use 1 to 16 (3 in production)",
        ));
    }
    if decl.min_insync_replicas < 1 || decl.min_insync_replicas > decl.replication_factor {
        return Err(invalid(
            file,
            "min_insync_replicas",
            format!(
                "{} is not between 1 and replication_factor ({})",
                decl.min_insync_replicas, decl.replication_factor
            ),
            "use replication_factor - 1 (2 with 3 replicas), so acks=all survives one broker down",
        ));
    }
    if decl.retention_ms != -1 && decl.retention_ms < 1 {
        return Err(invalid(
            file,
            "retention_ms",
            format!("{} is not a retention", decl.retention_ms),
            "use a positive number of milliseconds, or -1 to keep records forever",
        ));
    }
    for (field, value) in [
        ("key", &decl.key),
        ("value_schema", &decl.value_schema),
        ("description", &decl.description),
    ] {
        if value.trim().is_empty() {
            return Err(invalid(
                file,
                field,
                "is empty",
                match field {
                    "key" => "say what the record key is, e.g. household_id",
                    "value_schema" => "name the Avro record of the values, e.g. dsr.events.LifeEvent",
                    _ => "say what the topic is for, who writes and reads it, and why this many partitions",
                },
            ));
        }
    }
    let schema = decl.value_schema.trim();
    if !schema.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        return Err(invalid(
            file,
            "value_schema",
            format!("`{schema}` is not an Avro full name"),
            "use namespace.Name, e.g. dsr.events.LifeEvent",
        ));
    }
    Ok(())
}

/// A declared setting that differs on the broker. `apply` never changes it: changing the
/// partition count moves keys to other partitions, and a policy change can delete data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub topic: String,
    /// `partitions`, `replication_factor`, `cleanup.policy`, `retention.ms`, `min.insync.replicas`.
    pub setting: String,
    pub declared: String,
    pub actual: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is {} on the broker but declared {}",
            self.topic, self.setting, self.actual, self.declared
        )
    }
}

/// What [`apply`] did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Topics that did not exist and were created.
    pub created: Vec<String>,
    /// Topics that exist and match their declaration.
    pub unchanged: Vec<String>,
    /// Settings that differ from the declarations (left as they are).
    pub drift: Vec<Drift>,
    /// Anything else worth knowing (e.g. a replication factor capped to the broker count).
    pub notes: Vec<String>,
}

impl Report {
    /// True when every declared topic exists as declared.
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for topic in &self.created {
            writeln!(f, "created    {topic}")?;
        }
        for topic in &self.unchanged {
            writeln!(f, "unchanged  {topic}")?;
        }
        for drift in &self.drift {
            writeln!(
                f,
                "DRIFT      {drift} (not changed: fix it by hand or fix the declaration)"
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note       {note}")?;
        }
        write!(
            f,
            "{} created, {} unchanged, {} drifted",
            self.created.len(),
            self.unchanged.len(),
            self.drift.len()
        )
    }
}

/// Creates the declared topics that are missing and reports how the existing ones differ from
/// their declarations. Idempotent; never deletes, re-partitions or reconfigures a topic.
///
/// A replication factor above the cluster's broker count (e.g. 3 on a one-broker test cluster)
/// is capped to the broker count, with `min.insync.replicas` capped to match, and noted.
pub async fn apply<A: TopicAdmin>(admin: &A, decls: &[TopicDecl]) -> Result<Report, LogError> {
    let brokers = admin.broker_count().await?.max(1);
    let max_replication = i16::try_from(brokers).unwrap_or(i16::MAX);
    let mut report = Report::default();
    for decl in decls {
        let replication_factor = decl.replication_factor.min(max_replication);
        let min_insync = decl.min_insync_replicas.min(replication_factor);
        if replication_factor < decl.replication_factor {
            report.notes.push(format!(
                "{}: replication_factor {} capped to {replication_factor} and \
                 min_insync_replicas {} to {min_insync} (the cluster has {brokers} broker(s))",
                decl.name, decl.replication_factor, decl.min_insync_replicas
            ));
        }
        match admin.describe_topic(&decl.name).await? {
            None => {
                let mut configs = decl.kafka_configs();
                for (key, value) in &mut configs {
                    if key == "min.insync.replicas" {
                        *value = min_insync.to_string();
                    }
                }
                let spec = NewTopicSpec {
                    name: decl.name.clone(),
                    partitions: decl.partitions,
                    replication_factor,
                    configs,
                };
                match admin.create_topic(&spec).await? {
                    CreateOutcome::Created => report.created.push(decl.name.clone()),
                    // Created by someone else in between: compare it next time.
                    CreateOutcome::AlreadyExists => report.unchanged.push(decl.name.clone()),
                }
            }
            Some(actual) => {
                let before = report.drift.len();
                compare(decl, replication_factor, min_insync, &actual, &mut report);
                if report.drift.len() == before {
                    report.unchanged.push(decl.name.clone());
                }
            }
        }
    }
    Ok(report)
}

fn compare(
    decl: &TopicDecl,
    replication_factor: i16,
    min_insync: i16,
    actual: &TopicDescription,
    report: &mut Report,
) {
    let mut drift = |setting: &str, declared: String, actual: String| {
        report.drift.push(Drift {
            topic: decl.name.clone(),
            setting: setting.to_owned(),
            declared,
            actual,
        });
    };
    if actual.partitions != decl.partitions {
        drift(
            "partitions",
            decl.partitions.to_string(),
            actual.partitions.to_string(),
        );
    }
    if actual.replication_factor < replication_factor {
        drift(
            "replication_factor",
            replication_factor.to_string(),
            actual.replication_factor.to_string(),
        );
    }
    if actual.configs.is_empty() {
        report.notes.push(format!(
            "{}: the broker reported no configuration; cleanup.policy, retention.ms and \
             min.insync.replicas were not compared",
            decl.name
        ));
        return;
    }
    let declared = [
        ("cleanup.policy", decl.cleanup_policy.as_kafka().to_owned()),
        ("retention.ms", decl.retention_ms.to_string()),
        ("min.insync.replicas", min_insync.to_string()),
    ];
    for (setting, want) in declared {
        match actual.config(setting) {
            Some(have) if same_setting(setting, &want, have) => {}
            Some(have) => drift(setting, want, have.to_owned()),
            None => report.notes.push(format!(
                "{}: the broker did not report {setting}; not compared",
                decl.name
            )),
        }
    }
}

fn same_setting(setting: &str, declared: &str, actual: &str) -> bool {
    if setting == "cleanup.policy" {
        // Kafka may report a list ("compact,delete"); compare as sets.
        let set = |value: &str| {
            let mut parts: Vec<String> = value
                .split(',')
                .map(|part| part.trim().to_ascii_lowercase())
                .filter(|part| !part.is_empty())
                .collect();
            parts.sort();
            parts
        };
        return set(declared) == set(actual);
    }
    declared.trim() == actual.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: dsr.test\npartitions: 12\nreplication_factor: 3\n\
        cleanup_policy: compact\nretention_ms: -1\nmin_insync_replicas: 2\nkey: household_id\n\
        value_schema: dsr.events.LifeEvent\ndescription: a test topic\n";

    fn file() -> PathBuf {
        PathBuf::from("topics/dsr.test.yaml")
    }

    #[test]
    fn parses_a_good_declaration() {
        let decl = parse(&file(), GOOD).unwrap();
        assert_eq!(decl.name, "dsr.test");
        assert_eq!(decl.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(
            decl.kafka_configs()[0],
            ("cleanup.policy".into(), "compact".into())
        );
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (
                GOOD.replace("partitions: 12", "partitions: 0"),
                "field `partitions`",
            ),
            (
                GOOD.replace("min_insync_replicas: 2", "min_insync_replicas: 4"),
                "field `min_insync_replicas`",
            ),
            (
                GOOD.replace("retention_ms: -1", "retention_ms: 0"),
                "field `retention_ms`",
            ),
            (GOOD.replace("key: household_id", "key: ''"), "field `key`"),
            (
                GOOD.replace("dsr.events.LifeEvent", "dsr..Life"),
                "field `value_schema`",
            ),
            (
                GOOD.replace("name: dsr.test", "name: dsr.other"),
                "field `name`",
            ),
            (
                GOOD.replace("name: dsr.test", "name: dsr/test"),
                "field `name`",
            ),
            (
                GOOD.replace("compact", "shred"),
                "not a valid topic declaration",
            ),
            (
                format!("{GOOD}colour: red\n"),
                "not a valid topic declaration",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&file(), &text).unwrap_err().to_string();
            assert!(error.contains("topics/dsr.test.yaml"), "{error}");
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
    }

    #[test]
    fn cleanup_policy_lists_compare_as_sets() {
        assert!(same_setting("cleanup.policy", "compact", "compact"));
        assert!(same_setting(
            "cleanup.policy",
            "compact,delete",
            "delete, compact"
        ));
        assert!(!same_setting("cleanup.policy", "compact", "delete"));
        assert!(same_setting("retention.ms", "-1", "-1"));
    }
}
