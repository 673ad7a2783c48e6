//! The schema files.
//!
//! The current schemas are embedded in the binary with `include_str!`, so dsr works from any
//! directory; a directory of `.avsc` files (a released version, `schemas/released/vN`, or a
//! schema being edited) can also be loaded at run time with [`load_dir`].
//!
//! A set of schema files parses into a [`SchemaSet`]: every named type, and the top-level
//! records ([`ROOTS`]: `LifeEvent`, and the pipeline's outputs `HouseholdRecord` and
//! `EligibilityChange` when the set has them) made self-contained (each named type defined at
//! its first use, referred to by name after that), ready for encoding and decoding.

use apache_avro::schema::{Name, RecordSchema, ResolvedSchema, Schema};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The Avro namespace of every dsr event type.
pub const NAMESPACE: &str = "dsr.events";

/// The name of the top-level record: the message on the life-event topic.
pub const ROOT: &str = "LifeEvent";

macro_rules! embed {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../../../schemas/", $name, ".avsc")))),+]
    };
}

/// The top-level record of the household changelog (`dsr.household-changelog`).
pub const HOUSEHOLD_RECORD: &str = "HouseholdRecord";

/// The top-level record of the eligibility topics (`dsr.eligibility.<program>`).
pub const ELIGIBILITY_CHANGE: &str = "EligibilityChange";

/// The top-level record of `dsr.beneficiary-events` (life events about programs' beneficiaries).
pub const BENEFICIARY_EVENT: &str = "BeneficiaryEvent";

/// The top-level records, one per kind of topic: `LifeEvent` (required in every set) and the
/// pipeline's outputs (sets of released versions before they existed lack them).
pub const ROOTS: &[&str] = &[
    ROOT,
    HOUSEHOLD_RECORD,
    ELIGIBILITY_CHANGE,
    BENEFICIARY_EVENT,
];

/// The current schema files as `(type name, JSON)`, in dependency order: code lists, shared
/// records, payloads, `LifeEvent`, then the pipeline's outputs (`HouseholdRecord`,
/// `EligibilityChange` and the records only they use). The file of type `T` is
/// `schemas/T.avsc`.
pub const FILES: &[(&str, &str)] = embed!(
    // Code lists.
    "EventType",
    "Sex",
    "MaritalStatus",
    "VitalEvent",
    "Relationship",
    "EducationLevel",
    "EmploymentStatus",
    "DisabilityType",
    "DisabilitySeverity",
    "IncomeSource",
    "IncomePeriod",
    "WallMaterial",
    "WaterSource",
    "Sanitation",
    "Tenure",
    "HazardType",
    "ShockSeverity",
    "DamageLevel",
    "RegistrationSource",
    "CorrectableField",
    "ChangeKind",
    // Shared records.
    "Disability",
    "IncomeEntry",
    "Member",
    "Dwelling",
    "Assets",
    // Payloads, in `dsr_core::event::EVENT_TYPES` order.
    "PersonBorn",
    "PersonDied",
    "MarriageRegistered",
    "DivorceRegistered",
    "PersonMoved",
    "MemberJoined",
    "HouseholdRegistered",
    "IncomeReported",
    "EmploymentChanged",
    "DisabilityAssessed",
    "SchoolEnrollmentChanged",
    "AssetsReported",
    "HouseholdShockReported",
    "DataCorrection",
    "ShockDeclared",
    "ShockEnded",
    // The envelope.
    "LifeEvent",
    // The pipeline's outputs: their parts, then the top-level records.
    "NeedScore",
    "ShockDamage",
    "InputDigest",
    "RuleInput",
    "ProgramStatus",
    "HouseholdRecord",
    "ScaleUpMark",
    "EligibilityChange",
    "BeneficiaryEvent",
    // The household processor's internal state changelog.
    "ParkedEvents",
    // Activated rule versions (dsr.program-rules).
    "RuleActivation",
);

/// Why a set of schema files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema directory or file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no .avsc files in {0}; point at a directory like schemas/ or schemas/released/v1")]
    NoFiles(PathBuf),
    #[error(
        "{file} is not valid JSON: {source}; fix the file (every .avsc file holds one JSON object)"
    )]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file} defines `{defined}`; a schema file must be named after the type it defines ({defined}.avsc) and define exactly one named type")]
    FileName { file: String, defined: String },
    #[error("the schema files are not valid Avro: {0}; check the type names each file refers to and that no type is defined twice")]
    Avro(#[source] apache_avro::Error),
    #[error("no file defines the top-level record `{NAMESPACE}.{ROOT}`; add {ROOT}.avsc")]
    NoRoot,
    #[error("`{NAMESPACE}.{ROOT}` refers to a type no file defines: {0}")]
    Unresolved(#[source] apache_avro::Error),
    #[error("`{NAMESPACE}.{root}` refers to a type no file defines: {source}")]
    UnresolvedIn {
        root: String,
        #[source]
        source: apache_avro::Error,
    },
}

/// A parsed set of schema files.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    files: Vec<(String, String)>,
    named: Vec<Schema>,
    life_event: Schema,
    /// `HouseholdRecord` and `EligibilityChange`, self-contained, when the set has them.
    outputs: Vec<(&'static str, Schema)>,
    payload_types: Vec<String>,
    resolution: Resolution,
}

/// What decoding needs to resolve data of another schema to this one, prepared once.
///
/// apache-avro resolves a union of records by trying the reader's records in order until one
/// fits the data's shape, so a `HouseholdRegistered` could come out as an `AssetsReported`
/// (it has an `assets` field). Avro's rules match records by name, so dsr resolves the
/// payload itself: the envelope against `envelope`, the payload against the reader's record
/// of the same name.
#[derive(Debug, Clone)]
pub(crate) struct Resolution {
    /// Every named type of `LifeEvent`, by full name.
    pub(crate) names: HashMap<Name, Schema>,
    /// `LifeEvent` without its `payload` field.
    pub(crate) envelope: Schema,
    /// The payload union's records, in union order (definitions or references).
    pub(crate) payloads: Vec<Schema>,
}

impl SchemaSet {
    /// Parses schema files given as `(type name, JSON)`. Each file defines one named type,
    /// called like the file; files may refer to each other's types in any order.
    pub fn from_files<N, J>(files: impl IntoIterator<Item = (N, J)>) -> Result<Self, SchemaError>
    where
        N: Into<String>,
        J: Into<String>,
    {
        let files: Vec<(String, String)> = files
            .into_iter()
            .map(|(n, j)| (n.into(), j.into()))
            .collect();
        // Parse the JSON first: apache-avro's errors do not say which file is broken.
        for (name, json) in &files {
            serde_json::from_str::<serde_json::Value>(json).map_err(|source| {
                SchemaError::Json {
                    file: format!("{name}.avsc"),
                    source,
                }
            })?;
        }
        let named =
            Schema::parse_list(files.iter().map(|(_, j)| j.as_str())).map_err(SchemaError::Avro)?;
        for ((file, _), schema) in files.iter().zip(&named) {
            let defined = schema
                .name()
                .map(|n| n.name().to_string())
                .unwrap_or_default();
            if &defined != file {
                return Err(SchemaError::FileName {
                    file: format!("{file}.avsc"),
                    defined,
                });
            }
        }
        let root = Name::new(format!("{NAMESPACE}.{ROOT}")).map_err(SchemaError::Avro)?;
        let mut life_event = named
            .iter()
            .find(|s| s.name() == Some(&root))
            .cloned()
            .ok_or(SchemaError::NoRoot)?;
        life_event
            .denormalize(&named)
            .map_err(SchemaError::Unresolved)?;
        let mut outputs = Vec::new();
        for root in &ROOTS[1..] {
            let name = Name::new(format!("{NAMESPACE}.{root}")).map_err(SchemaError::Avro)?;
            if let Some(schema) = named.iter().find(|s| s.name() == Some(&name)) {
                let mut schema = schema.clone();
                schema
                    .denormalize(&named)
                    .map_err(|source| SchemaError::UnresolvedIn {
                        root: (*root).to_string(),
                        source,
                    })?;
                outputs.push((*root, schema));
            }
        }
        let payload_types = payload_types(&life_event);
        let resolution = Resolution::new(&life_event).map_err(SchemaError::Unresolved)?;
        Ok(SchemaSet {
            files,
            named,
            life_event,
            outputs,
            payload_types,
            resolution,
        })
    }

    /// The top-level `LifeEvent` schema, self-contained.
    pub fn life_event(&self) -> &Schema {
        &self.life_event
    }

    /// The top-level record `name` (one of [`ROOTS`]), self-contained; `None` for an output
    /// record the set does not have (a release from before it existed) or another name.
    pub fn root(&self, name: &str) -> Option<&Schema> {
        if name == ROOT {
            return Some(&self.life_event);
        }
        self.outputs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }

    /// The top-level `HouseholdRecord` schema (the changelog's value), self-contained, if the
    /// set has it.
    pub fn household_record(&self) -> Option<&Schema> {
        self.root(HOUSEHOLD_RECORD)
    }

    /// The top-level `EligibilityChange` schema, self-contained, if the set has it.
    pub fn eligibility_change(&self) -> Option<&Schema> {
        self.root(ELIGIBILITY_CHANGE)
    }

    /// The names of the record types in `LifeEvent.payload`'s union, in union order (empty if
    /// the set has no such union).
    pub fn payload_types(&self) -> &[String] {
        &self.payload_types
    }

    /// Every named type, in file order. Types they use appear as references by name
    /// ([`Schema::Ref`]); look them up with [`SchemaSet::get`].
    pub fn named(&self) -> &[Schema] {
        &self.named
    }

    /// A named type by its name, with or without the namespace (`Member`, `dsr.events.Member`).
    pub fn get(&self, name: &str) -> Option<&Schema> {
        let short = name.strip_prefix("dsr.events.").unwrap_or(name);
        self.named.iter().find(|s| {
            s.name()
                .is_some_and(|n| n.name() == short && n.namespace() == Some(NAMESPACE))
        })
    }

    /// The record called `name`, if there is one.
    pub fn record(&self, name: &str) -> Option<&RecordSchema> {
        match self.get(name) {
            Some(Schema::Record(r)) => Some(r),
            _ => None,
        }
    }

    /// The files the set was parsed from, `(type name, JSON)`.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    pub(crate) fn resolution(&self) -> &Resolution {
        &self.resolution
    }
}

impl Resolution {
    fn new(life_event: &Schema) -> Result<Self, apache_avro::Error> {
        let names = ResolvedSchema::try_from(life_event)?
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        let (envelope, payloads) = match life_event {
            Schema::Record(r) => {
                let mut envelope = r.clone();
                envelope.fields.retain(|f| f.name != "payload");
                envelope.lookup = envelope
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.name.clone(), i))
                    .collect::<BTreeMap<_, _>>();
                let payloads = r
                    .fields
                    .iter()
                    .find(|f| f.name == "payload")
                    .and_then(|f| match &f.schema {
                        Schema::Union(u) => Some(u.variants().to_vec()),
                        _ => None,
                    })
                    .unwrap_or_default();
                (Schema::Record(envelope), payloads)
            }
            other => (other.clone(), Vec::new()),
        };
        Ok(Resolution {
            names,
            envelope,
            payloads,
        })
    }
}

/// The names of the records in a `LifeEvent` schema's `payload` union, in union order.
pub fn payload_types(life_event: &Schema) -> Vec<String> {
    match life_event {
        Schema::Record(r) => r
            .fields
            .iter()
            .find(|f| f.name == "payload")
            .and_then(|f| match &f.schema {
                Schema::Union(u) => Some(
                    u.variants()
                        .iter()
                        .filter_map(|v| v.name().map(|n| n.name().to_string()))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The current schemas, embedded in the binary.
///
/// # Panics
/// If the embedded files do not parse, which `cargo test -p dsr-contracts` rules out for any
/// build of this crate whose tests pass.
pub fn current() -> &'static SchemaSet {
    static CURRENT: OnceLock<SchemaSet> = OnceLock::new();
    CURRENT.get_or_init(|| {
        SchemaSet::from_files(FILES.iter().copied())
            .unwrap_or_else(|e| panic!("the schemas embedded in dsr-contracts are invalid: {e}"))
    })
}

/// The current top-level `LifeEvent` schema (embedded), the reader schema of [`crate::decode`].
pub fn life_event_schema() -> &'static Schema {
    current().life_event()
}

/// The current top-level `HouseholdRecord` schema (embedded): the value of the household
/// changelog.
pub fn household_record_schema() -> &'static Schema {
    current()
        .household_record()
        .expect("the embedded schemas define HouseholdRecord (a dsr-contracts test checks it)")
}

/// The current top-level `EligibilityChange` schema (embedded): the value of the eligibility
/// topics.
pub fn eligibility_change_schema() -> &'static Schema {
    current()
        .eligibility_change()
        .expect("the embedded schemas define EligibilityChange (a dsr-contracts test checks it)")
}

/// The current top-level `BeneficiaryEvent` schema (embedded): the value of
/// `dsr.beneficiary-events`.
pub fn beneficiary_event_schema() -> &'static Schema {
    current()
        .root(BENEFICIARY_EVENT)
        .expect("the embedded schemas define BeneficiaryEvent (a dsr-contracts test checks it)")
}

/// The `ParkedEvents` schema (embedded): the value of `dsr.household-parked`, the changelog
/// of the events a household processor keeps waiting. Self-contained (it uses no named type).
pub fn parked_events_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let json = FILES
            .iter()
            .find(|(name, _)| *name == "ParkedEvents")
            .map(|(_, json)| *json)
            .expect("ParkedEvents.avsc is embedded");
        Schema::parse_str(json).expect("ParkedEvents.avsc parses (a dsr-contracts test checks it)")
    })
}

/// The `RuleActivation` schema (embedded): the value of `dsr.program-rules`, the activated
/// versions of the programs' rules. Self-contained (it uses no named type).
pub fn rule_activation_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let json = FILES
            .iter()
            .find(|(name, _)| *name == "RuleActivation")
            .map(|(_, json)| *json)
            .expect("RuleActivation.avsc is embedded");
        Schema::parse_str(json)
            .expect("RuleActivation.avsc parses (a dsr-contracts test checks it)")
    })
}

/// Loads every `*.avsc` file in `dir` (not its sub-directories), e.g. `schemas/released/v1`.
/// Files are taken in name order; their order does not matter to the result.
pub fn load_dir(dir: &Path) -> Result<SchemaSet, SchemaError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SchemaError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "avsc") && path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(SchemaError::NoFiles(dir.to_path_buf()));
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let json = std::fs::read_to_string(&path).map_err(io(&path))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((name, json));
    }
    SchemaSet::from_files(files)
}

/// The directory of the current schemas in a source checkout (`<repo>/schemas`), for tests and
/// development tools; installed binaries use the embedded copy ([`current`]).
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}
