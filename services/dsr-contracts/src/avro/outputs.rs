//! The pipeline's outputs to and from Avro: `dsr_core::Household` as a `HouseholdRecord` (the
//! value of the compacted changelog `dsr.household-changelog`) and
//! `dsr_core::EligibilityChange` as an `EligibilityChange` (the value of
//! `dsr.eligibility.<program>`).
//!
//! As for life events, the conversion is written out field by field through apache-avro
//! values ([`household_to_value`], [`household_from_value`], ...), and decoding resolves data
//! written with another version of the schema to the current one. A rule input's value
//! (`dsr_core::eligibility::Scalar`) is the union `["boolean", "long", "double", "string",
//! "InputDigest"]`; a digest is the record `InputDigest { digest: long }`, its 64 bits stored
//! as they are (`u64` ↔ `i64` two's complement), since only equality means anything.

use super::read::{self, At, Fields};
use super::write::{self, record};
use super::{read_datum, DecodeError, EncodeError};
use crate::schemas::{self, ELIGIBILITY_CHANGE, HOUSEHOLD_RECORD};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Name, ResolvedSchema, Schema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use compact_str::CompactString;
use dsr_core::eligibility::{ChangeKind, InputValue, Scalar};
use dsr_core::household::{ProgramStatus, ShockDamage};
use dsr_core::rule_versions::ActivationRecord;
use dsr_core::scale_up::ScaleUpMark;
use dsr_core::score::ScoreSummary;
use dsr_core::{BeneficiaryEvent, EligibilityChange, Household};
use std::collections::HashMap;
use std::sync::OnceLock;

/// `ChangeKind` and its Avro symbols, in the order of the `ChangeKind` enum of the schema.
pub const CHANGE_KINDS: [(ChangeKind, &str); 4] = [
    (ChangeKind::Entered, "entered"),
    (ChangeKind::Changed, "changed"),
    (ChangeKind::Exited, "exited"),
    (ChangeKind::Unchanged, "unchanged"),
];

// ---- HouseholdRecord ----------------------------------------------------------------------

/// Encodes a household as one Avro binary datum of the current `HouseholdRecord` schema.
pub fn encode_household(household: &Household) -> Result<Vec<u8>, EncodeError> {
    let value = household_to_value(household)?;
    writer(HOUSEHOLD_RECORD)
        .write_value_to_vec(value)
        .map_err(|source| EncodeError::Record {
            record: HOUSEHOLD_RECORD,
            source,
        })
}

/// Decodes one Avro binary datum written with `writer_schema` (a `HouseholdRecord` schema:
/// [`crate::schemas::household_record_schema`] or a released version's), resolving it to the
/// current schema.
pub fn decode_household(bytes: &[u8], writer_schema: &Schema) -> Result<Household, DecodeError> {
    household_from_value(read_output(bytes, writer_schema, HOUSEHOLD_RECORD)?)
}

/// The Avro value of a household, for the current `HouseholdRecord` schema.
pub fn household_to_value(h: &Household) -> Result<Value, EncodeError> {
    let dwelling = match &h.dwelling {
        Some(d) => Some(write::dwelling("dwelling", d)?),
        None => None,
    };
    Ok(record([
        ("household_id", write::string(h.household_id.as_str())),
        ("area", write::string(h.area.as_str())),
        (
            "members",
            Value::Array(h.members.iter().map(write::member).collect()),
        ),
        ("dwelling", write::optional(dwelling, |v| v)),
        ("assets", write::assets("assets", &h.assets)?),
        (
            "shock_damage",
            write::optional(h.shock_damage.as_ref(), shock_damage),
        ),
        ("need_score", write::optional(h.need_score.as_ref(), score)),
        (
            "programs",
            Value::Array(
                h.programs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| program(&format!("programs[{i}]"), p))
                    .collect::<Result<_, _>>()?,
            ),
        ),
        ("version", long("version", h.version)?),
        ("as_of", Value::TimestampMicros(h.as_of.0)),
        (
            "recent_events",
            Value::Array(h.recent_events.iter().copied().map(Value::Uuid).collect()),
        ),
        ("late_events", long("late_events", h.late_events)?),
        ("dissolved", Value::Boolean(h.dissolved)),
    ]))
}

fn shock_damage(s: &ShockDamage) -> Value {
    record([
        ("hazard", write::code(s.hazard)),
        ("damage", write::code(s.damage)),
        ("estimated_loss", Value::Double(s.estimated_loss)),
        ("reported_on", Value::Date(s.reported_on.0)),
        (
            "shock_id",
            write::optional(s.shock_id.as_ref(), |id| write::string(id.as_str())),
        ),
    ])
}

fn score(s: &ScoreSummary) -> Value {
    record([
        ("score", Value::Double(s.score)),
        ("model_version", write::string(&s.model_version)),
    ])
}

fn program(at: &str, p: &ProgramStatus) -> Result<Value, EncodeError> {
    Ok(record([
        ("program_id", write::string(&p.program_id)),
        (
            "rule_version",
            write::int(&format!("{at}.rule_version"), p.rule_version)?,
        ),
        ("eligible", Value::Boolean(p.eligible)),
        ("benefit", Value::Double(p.benefit)),
        (
            "inputs",
            Value::Array(
                p.inputs
                    .iter()
                    .map(|(name, value)| input(name, value))
                    .collect(),
            ),
        ),
    ]))
}

/// The branch of `RuleInput.value`'s union for each kind of scalar.
pub(crate) fn scalar_branch(s: &Scalar) -> u32 {
    match s {
        Scalar::Bool(_) => 0,
        Scalar::Int(_) => 1,
        Scalar::Number(_) => 2,
        Scalar::Text(_) => 3,
        Scalar::Digest(_) => 4,
    }
}

fn input(name: &str, scalar: &Scalar) -> Value {
    let value = match scalar {
        Scalar::Bool(b) => Value::Boolean(*b),
        Scalar::Int(n) => Value::Long(*n),
        Scalar::Number(d) => Value::Double(*d),
        Scalar::Text(t) => write::string(t),
        Scalar::Digest(d) => record([("digest", Value::Long(*d as i64))]),
    };
    record([
        ("name", write::string(name)),
        (
            "value",
            Value::Union(scalar_branch(scalar), Box::new(value)),
        ),
    ])
}

/// A `u64` as an Avro long.
fn long(field: &str, value: u64) -> Result<Value, EncodeError> {
    i64::try_from(value)
        .map(Value::Long)
        .map_err(|_| EncodeError::OutOfRange {
            field: field.to_string(),
            value,
        })
}

/// The household in an Avro value of the current `HouseholdRecord` schema (as decoded, after
/// schema resolution).
pub fn household_from_value(value: Value) -> Result<Household, DecodeError> {
    let at = At::ROOT;
    let mut f = Fields::of(value, &at)?;
    Ok(Household {
        household_id: f.get("household_id", &at, read::id)?,
        area: f.get("area", &at, read::id)?,
        members: f.get("members", &at, |v, at| read::list(v, at, read::member))?,
        dwelling: f.get("dwelling", &at, |v, at| {
            read::optional(v, at, read::dwelling)
        })?,
        assets: f.get("assets", &at, read::assets)?,
        shock_damage: f.get("shock_damage", &at, |v, at| {
            read::optional(v, at, shock_damage_from)
        })?,
        need_score: f.get("need_score", &at, |v, at| read::optional(v, at, score_from))?,
        programs: f.get("programs", &at, |v, at| read::list(v, at, program_from))?,
        version: f.get("version", &at, ulong)?,
        as_of: f.get("as_of", &at, read::micros)?,
        recent_events: f.get("recent_events", &at, |v, at| read::list(v, at, read::uuid))?,
        late_events: f.get("late_events", &at, ulong)?,
        dissolved: f.get("dissolved", &at, read::boolean)?,
    })
}

fn shock_damage_from(v: Value, at: &At) -> Result<ShockDamage, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(ShockDamage {
        hazard: f.get("hazard", at, read::code)?,
        damage: f.get("damage", at, read::code)?,
        estimated_loss: f.get("estimated_loss", at, read::double)?,
        reported_on: f.get("reported_on", at, read::date)?,
        shock_id: f.get("shock_id", at, |v, at| read::optional(v, at, read::id))?,
    })
}

fn score_from(v: Value, at: &At) -> Result<ScoreSummary, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(ScoreSummary {
        score: f.get("score", at, read::double)?,
        model_version: f.get("model_version", at, read::compact)?,
    })
}

fn program_from(v: Value, at: &At) -> Result<ProgramStatus, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(ProgramStatus {
        program_id: f.get("program_id", at, read::compact)?,
        rule_version: f.get("rule_version", at, read::uint)?,
        eligible: f.get("eligible", at, read::boolean)?,
        benefit: f.get("benefit", at, read::double)?,
        inputs: f
            .get("inputs", at, |v, at| read::list(v, at, input_from))?
            .into(),
    })
}

fn input_from(v: Value, at: &At) -> Result<InputValue, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(InputValue {
        name: f.get("name", at, read::compact)?,
        value: f.get("value", at, scalar_from)?,
    })
}

/// A rule input's value, by the kind of the union's branch (not its index, so that a reader
/// whose union lists the branches in another order reads the same value).
fn scalar_from(v: Value, at: &At) -> Result<Scalar, DecodeError> {
    let inner = match v {
        Value::Union(_, inner) => *inner,
        other => other,
    };
    Ok(match inner {
        Value::Boolean(b) => Scalar::Bool(b),
        Value::Long(n) => Scalar::Int(n),
        Value::Int(n) => Scalar::Int(n.into()),
        Value::Double(d) => Scalar::Number(d),
        Value::String(s) => Scalar::Text(CompactString::from(s)),
        record @ Value::Record(_) => {
            let at = at.field("InputDigest");
            let mut f = Fields::of(record, &at)?;
            Scalar::Digest(f.get("digest", &at, |v, at| match v {
                Value::Long(n) => Ok(n as u64),
                other => Err(read::shape(at, "a long", &other)),
            })?)
        }
        other => {
            return Err(read::shape(
                at,
                "a boolean, long, double, string or InputDigest",
                &other,
            ))
        }
    })
}

/// An Avro long holding a `u64`.
fn ulong(v: Value, at: &At) -> Result<u64, DecodeError> {
    match v {
        Value::Long(n) => u64::try_from(n).map_err(|_| DecodeError::OutOfRange {
            field: at.render(),
            value: n,
        }),
        other => Err(read::shape(at, "a long", &other)),
    }
}

// ---- EligibilityChange --------------------------------------------------------------------

/// Encodes an eligibility change as one Avro binary datum of the current `EligibilityChange`
/// schema.
pub fn encode_eligibility_change(change: &EligibilityChange) -> Result<Vec<u8>, EncodeError> {
    let value = eligibility_change_to_value(change)?;
    writer(ELIGIBILITY_CHANGE)
        .write_value_to_vec(value)
        .map_err(|source| EncodeError::Record {
            record: ELIGIBILITY_CHANGE,
            source,
        })
}

/// Decodes one Avro binary datum written with `writer_schema` (an `EligibilityChange` schema:
/// [`crate::schemas::eligibility_change_schema`] or a released version's), resolving it to
/// the current schema.
pub fn decode_eligibility_change(
    bytes: &[u8],
    writer_schema: &Schema,
) -> Result<EligibilityChange, DecodeError> {
    eligibility_change_from_value(read_output(bytes, writer_schema, ELIGIBILITY_CHANGE)?)
}

/// The index of a change kind in the `ChangeKind` enum.
pub(crate) fn change_kind_index(kind: ChangeKind) -> u32 {
    CHANGE_KINDS
        .iter()
        .position(|(k, _)| *k == kind)
        .unwrap_or(0) as u32
}

/// The Avro value of an eligibility change, for the current `EligibilityChange` schema.
pub fn eligibility_change_to_value(c: &EligibilityChange) -> Result<Value, EncodeError> {
    let kind = change_kind_index(c.kind);
    Ok(record([
        ("change_id", Value::Uuid(c.change_id)),
        ("program_id", write::string(&c.program_id)),
        ("household_id", write::string(c.household_id.as_str())),
        (
            "kind",
            Value::Enum(kind, CHANGE_KINDS[kind as usize].1.to_string()),
        ),
        (
            "reasons",
            Value::Array(c.reasons.iter().map(|r| write::string(r)).collect()),
        ),
        ("benefit", Value::Double(c.benefit)),
        ("rule_version", write::int("rule_version", c.rule_version)?),
        (
            "household_version",
            long("household_version", c.household_version)?,
        ),
        ("caused_by", Value::Uuid(c.caused_by)),
        ("occurred_at", Value::TimestampMicros(c.occurred_at.0)),
        (
            "scale_up",
            write::optional(c.scale_up.as_ref(), scale_up_mark),
        ),
    ]))
}

fn scale_up_mark(m: &ScaleUpMark) -> Value {
    record([
        ("rule_id", write::string(&m.rule_id)),
        ("shock_id", write::string(m.shock_id.as_str())),
        ("ends_at", Value::TimestampMicros(m.ends_at.0)),
    ])
}

fn scale_up_mark_from(v: Value, at: &At) -> Result<ScaleUpMark, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(ScaleUpMark {
        rule_id: f.get("rule_id", at, read::compact)?,
        shock_id: f.get("shock_id", at, read::id)?,
        ends_at: f.get("ends_at", at, read::micros)?,
    })
}

/// The eligibility change in an Avro value of the current `EligibilityChange` schema.
pub fn eligibility_change_from_value(value: Value) -> Result<EligibilityChange, DecodeError> {
    let at = At::ROOT;
    let mut f = Fields::of(value, &at)?;
    Ok(EligibilityChange {
        change_id: f.get("change_id", &at, read::uuid)?,
        program_id: f.get("program_id", &at, read::compact)?,
        household_id: f.get("household_id", &at, read::id)?,
        kind: f.get("kind", &at, change_kind)?,
        reasons: f.get("reasons", &at, |v, at| read::list(v, at, read::string))?,
        benefit: f.get("benefit", &at, read::double)?,
        rule_version: f.get("rule_version", &at, read::uint)?,
        household_version: f.get("household_version", &at, ulong)?,
        caused_by: f.get("caused_by", &at, read::uuid)?,
        occurred_at: f.get("occurred_at", &at, read::micros)?,
        scale_up: f.get("scale_up", &at, |v, at| {
            read::optional(v, at, scale_up_mark_from)
        })?,
    })
}

fn change_kind(v: Value, at: &At) -> Result<ChangeKind, DecodeError> {
    let s = read::symbol(v, at)?;
    CHANGE_KINDS
        .iter()
        .find(|(_, sym)| *sym == s)
        .map(|(k, _)| *k)
        .ok_or_else(|| DecodeError::UnknownSymbol {
            field: at.render(),
            enum_name: "ChangeKind".into(),
            symbol: s,
            known: CHANGE_KINDS.iter().map(|(_, s)| s.to_string()).collect(),
        })
}

// ---- writers and readers ------------------------------------------------------------------

fn current_root(root: &'static str) -> &'static Schema {
    schemas::current().root(root).unwrap_or_else(|| {
        panic!("the embedded schemas define {root} (a dsr-contracts test checks it)")
    })
}

/// The current schema's writer, prepared once per root.
fn writer(root: &'static str) -> &'static GenericDatumWriter<'static> {
    static HOUSEHOLD: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
    static CHANGE: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
    let cell = if root == HOUSEHOLD_RECORD {
        &HOUSEHOLD
    } else {
        &CHANGE
    };
    cell.get_or_init(|| {
        GenericDatumWriter::builder(current_root(root))
            .build()
            .expect("the current schema's names resolved when it was loaded")
    })
}

/// What reading a root of the current schema needs, prepared once per root.
struct Prepared {
    reader: GenericDatumReader<'static>,
    names: HashMap<Name, Schema>,
}

fn prepared(root: &'static str) -> &'static Prepared {
    static HOUSEHOLD: OnceLock<Prepared> = OnceLock::new();
    static CHANGE: OnceLock<Prepared> = OnceLock::new();
    let cell = if root == HOUSEHOLD_RECORD {
        &HOUSEHOLD
    } else {
        &CHANGE
    };
    cell.get_or_init(|| {
        let schema = current_root(root);
        let names = ResolvedSchema::try_from(schema)
            .expect("the current schema's names resolved when it was loaded")
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        Prepared {
            reader: GenericDatumReader::builder(schema)
                .build()
                .expect("the current schema's names resolved when it was loaded"),
            names,
        }
    })
}

/// Reads a datum of `root` written with `writer_schema`, as a value of the current schema.
fn read_output(
    bytes: &[u8],
    writer_schema: &Schema,
    root: &'static str,
) -> Result<Value, DecodeError> {
    let current = current_root(root);
    let prepared = prepared(root);
    if std::ptr::eq(writer_schema, current) {
        return read_datum(&prepared.reader, bytes);
    }
    let writer = GenericDatumReader::builder(writer_schema)
        .build()
        .map_err(DecodeError::WriterSchema)?;
    let value = read_datum(&writer, bytes)?;
    if writer_schema.canonical_form() == current.canonical_form() {
        return Ok(value);
    }
    match value.clone().resolve_with_names(current, &prepared.names) {
        Ok(value) => Ok(value),
        Err(e) => Err(
            read::unknown_symbol(&value, writer_schema, schemas::current())
                .unwrap_or(DecodeError::Incompatible(e)),
        ),
    }
}

// ---- BeneficiaryEvent ---------------------------------------------------------------------

/// Encodes a beneficiary notice as one Avro binary datum of the current `BeneficiaryEvent`
/// schema. (Notices are rare — one per life event of a beneficiary — so the generic writer is
/// fast enough.)
pub fn encode_beneficiary_event(n: &BeneficiaryEvent) -> Result<Vec<u8>, EncodeError> {
    let schema = crate::schemas::beneficiary_event_schema();
    // EventType's symbols are dsr-core's EVENT_TYPES, in that order (a test checks it).
    let event_type = dsr_core::event::EVENT_TYPES
        .iter()
        .position(|t| *t == n.event_type)
        .unwrap_or(0) as u32;
    let value = record([
        ("notice_id", Value::Uuid(n.notice_id)),
        ("program_id", write::string(&n.program_id)),
        ("household_id", write::string(n.household_id.as_str())),
        (
            "event_type",
            Value::Enum(event_type, n.event_type.to_string()),
        ),
        (
            "person_id",
            match &n.person_id {
                Some(p) => Value::Union(1, Box::new(write::string(p.as_str()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        ("occurred_at", Value::TimestampMicros(n.occurred_at.0)),
        ("caused_by", Value::Uuid(n.caused_by)),
        (
            "household_version",
            long("household_version", n.household_version)?,
        ),
    ]);
    static WRITER: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
    WRITER
        .get_or_init(|| {
            GenericDatumWriter::builder(schema)
                .build()
                .expect("the current schema's names resolved when it was loaded")
        })
        .write_value_to_vec(value)
        .map_err(|source| EncodeError::Record {
            record: crate::schemas::BENEFICIARY_EVENT,
            source,
        })
}

/// Decodes one Avro binary datum of the current `BeneficiaryEvent` schema.
pub fn decode_beneficiary_event(bytes: &[u8]) -> Result<BeneficiaryEvent, DecodeError> {
    static READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
    let reader = READER.get_or_init(|| {
        GenericDatumReader::builder(crate::schemas::beneficiary_event_schema())
            .build()
            .expect("the current schema's names resolved when it was loaded")
    });
    let value = read_datum(reader, bytes)?;
    let at = At::ROOT;
    let mut f = Fields::of(value, &at)?;
    Ok(BeneficiaryEvent {
        notice_id: f.get("notice_id", &at, read::uuid)?,
        program_id: f.get("program_id", &at, read::compact)?,
        household_id: f.get("household_id", &at, read::id)?,
        event_type: f.get("event_type", &at, |v, at| {
            read::symbol(v, at).map(Into::into)
        })?,
        person_id: f.get("person_id", &at, |v, at| match v {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                other => read::id(other, at).map(Some),
            },
            Value::Null => Ok(None),
            other => read::id(other, at).map(Some),
        })?,
        occurred_at: f.get("occurred_at", &at, read::micros)?,
        caused_by: f.get("caused_by", &at, read::uuid)?,
        household_version: f.get("household_version", &at, ulong)?,
    })
}

/// Encodes an activated rule version as one Avro binary datum of the `RuleActivation` schema
/// (the program travels as its file in JSON).
pub fn encode_rule_activation(a: &ActivationRecord) -> Result<Vec<u8>, EncodeError> {
    let program = serde_json::to_string(&a.program).expect("a program file serializes to JSON");
    let value = record([
        ("activation_id", Value::Uuid(a.activation_id)),
        ("program_id", write::string(&a.program.id)),
        (
            "rule_version",
            Value::Int(i32::try_from(a.program.rule_version).map_err(|_| {
                EncodeError::OutOfRange {
                    field: "rule_version".into(),
                    value: u64::from(a.program.rule_version),
                }
            })?),
        ),
        ("activated_at", Value::TimestampMicros(a.activated_at.0)),
        ("activated_by", write::string(&a.activated_by)),
        ("program", write::string(&program)),
    ]);
    static WRITER: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
    WRITER
        .get_or_init(|| {
            GenericDatumWriter::builder(schemas::rule_activation_schema())
                .build()
                .expect("RuleActivation is self-contained")
        })
        .write_value_to_vec(value)
        .map_err(|source| EncodeError::Record {
            record: "RuleActivation",
            source,
        })
}

/// Decodes one Avro binary datum of the `RuleActivation` schema.
pub fn decode_rule_activation(bytes: &[u8]) -> Result<ActivationRecord, DecodeError> {
    static READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
    let reader = READER.get_or_init(|| {
        GenericDatumReader::builder(schemas::rule_activation_schema())
            .build()
            .expect("RuleActivation is self-contained")
    });
    let value = read_datum(reader, bytes)?;
    let at = At::ROOT;
    let mut f = Fields::of(value, &at)?;
    let activation_id = f.get("activation_id", &at, read::uuid)?;
    let activated_at = f.get("activated_at", &at, read::micros)?;
    let activated_by = f.get("activated_by", &at, read::string)?;
    let program = f.get("program", &at, read::string)?;
    let program = serde_json::from_str(&program).map_err(DecodeError::Json)?;
    Ok(ActivationRecord {
        activation_id,
        activated_at,
        activated_by,
        program,
    })
}

#[cfg(test)]
mod beneficiary_tests {
    use super::*;

    #[test]
    fn a_beneficiary_event_round_trips() {
        for person in [None, Some(dsr_core::PersonId::new("P-1"))] {
            let n = BeneficiaryEvent {
                notice_id: uuid::Uuid::from_u128(7),
                program_id: "food-aid".into(),
                household_id: dsr_core::HouseholdId::new("H-1"),
                event_type: "PersonDied".into(),
                person_id: person,
                occurred_at: dsr_core::Micros(1_700_000_000_000_000),
                caused_by: uuid::Uuid::from_u128(9),
                household_version: 4,
            };
            let bytes = encode_beneficiary_event(&n).unwrap();
            assert_eq!(decode_beneficiary_event(&bytes).unwrap(), n);
        }
    }
}

#[cfg(test)]
mod rule_activation_tests {
    use super::*;

    #[test]
    fn a_rule_activation_round_trips() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../programs/child-grant.yaml"),
        )
        .unwrap();
        let mut program: dsr_core::eligibility::ProgramFile =
            serde_yaml_ng::from_str(&text).unwrap();
        program.rule_version = 7;
        let a = ActivationRecord::new(program, "admin-1", dsr_core::Micros(1_700_000_000_000_000));
        let back = decode_rule_activation(&encode_rule_activation(&a).unwrap()).unwrap();
        assert_eq!(back.activation_id, a.activation_id);
        assert_eq!(back.program.rule, a.program.rule);
        assert_eq!(back.program.rule_version, 7);
        assert_eq!(back.activated_by, "admin-1");
        assert_eq!(back.compile().unwrap(), a.compile().unwrap());
    }
}
