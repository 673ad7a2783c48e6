//! The fast codec of the pipeline's outputs: `HouseholdRecord` and `EligibilityChange`, the
//! bytes of [`crate::encode_household`] and [`crate::encode_eligibility_change`], with their
//! errors and field paths.

use super::{
    int, member_out, parse, read, uint, write, ArrayOf, AssetsIn, AssetsOut, Code, DwellingIn,
    DwellingOut, ListOf, MemberIn, MemberOut, UuidText,
};
use crate::avro::outputs::change_kind_index;
use crate::avro::{DecodeError, EncodeError, CHANGE_KINDS};
use crate::schemas::{self, ELIGIBILITY_CHANGE, HOUSEHOLD_RECORD};
use compact_str::CompactString;
use dsr_core::codes::{DamageLevel, HazardType};
use dsr_core::eligibility::{ChangeKind, InputValue, RuleInputs, Scalar};
use dsr_core::household::{ProgramStatus, ShockDamage};
use dsr_core::ids::*;
use dsr_core::scale_up::ScaleUpMark;
use dsr_core::score::ScoreSummary;
use dsr_core::{EligibilityChange, Household, Member};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

fn household_schema() -> &'static serde_avro_fast::Schema {
    static SCHEMA: OnceLock<serde_avro_fast::Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(schemas::household_record_schema(), HOUSEHOLD_RECORD))
}

fn change_schema() -> &'static serde_avro_fast::Schema {
    static SCHEMA: OnceLock<serde_avro_fast::Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(schemas::eligibility_change_schema(), ELIGIBILITY_CHANGE))
}

/// Encodes a household as one Avro binary datum of the current `HouseholdRecord` schema; the
/// same bytes as [`crate::encode_household`].
pub fn encode_household(household: &Household) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(1024);
    encode_household_into(household, &mut out)?;
    Ok(out)
}

/// [`encode_household`], appending to `out`; on error `out` is left as it was.
pub fn encode_household_into(household: &Household, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write(
        &HouseholdRecordOut::of(household)?,
        household_schema(),
        HOUSEHOLD_RECORD,
        out,
    )
}

/// Decodes one Avro binary datum written with the current `HouseholdRecord` schema (for data
/// written with another version use [`crate::decode_household`]).
pub fn decode_household(bytes: &[u8]) -> Result<Household, DecodeError> {
    read::<HouseholdRecordIn>(bytes, household_schema())?.into_household()
}

/// The member ids of one Avro binary datum of the current `HouseholdRecord` schema, in record
/// order, read without building the household: the fields after `members` are not read at all
/// (so the rest of the datum is not checked). For the router's person directory, which reads
/// every changelog record for these alone.
pub fn decode_household_members(bytes: &[u8]) -> Result<Vec<PersonId>, DecodeError> {
    let members: HouseholdMembersIn = super::read_prefix(bytes, household_schema())?;
    Ok(members.0)
}

/// A household record's `members`, its person ids only.
struct HouseholdMembersIn(Vec<PersonId>);

#[derive(Deserialize)]
struct MemberIdIn {
    person_id: PersonId,
}

impl<'de> Deserialize<'de> for HouseholdMembersIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = HouseholdMembersIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a HouseholdRecord")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                #[serde(field_identifier, rename_all = "snake_case")]
                enum Field {
                    Members,
                    #[serde(other)]
                    Other,
                }
                while let Some(field) = map.next_key::<Field>()? {
                    if matches!(field, Field::Members) {
                        let members: Vec<MemberIdIn> = map.next_value()?;
                        // Stop here: nothing after the members is needed.
                        return Ok(HouseholdMembersIn(
                            members.into_iter().map(|m| m.person_id).collect(),
                        ));
                    }
                    map.next_value::<de::IgnoredAny>()?;
                }
                Err(de::Error::missing_field("members"))
            }
        }
        deserializer.deserialize_struct("HouseholdRecord", &["members"], Members)
    }
}

/// Encodes an eligibility change as one Avro binary datum of the current `EligibilityChange`
/// schema; the same bytes as [`crate::encode_eligibility_change`].
pub fn encode_eligibility_change(change: &EligibilityChange) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode_eligibility_change_into(change, &mut out)?;
    Ok(out)
}

/// [`encode_eligibility_change`], appending to `out`; on error `out` is left as it was.
pub fn encode_eligibility_change_into(
    change: &EligibilityChange,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    write(
        &EligibilityChangeOut::of(change)?,
        change_schema(),
        ELIGIBILITY_CHANGE,
        out,
    )
}

/// Decodes one Avro binary datum written with the current `EligibilityChange` schema (for
/// data written with another version use [`crate::decode_eligibility_change`]).
pub fn decode_eligibility_change(bytes: &[u8]) -> Result<EligibilityChange, DecodeError> {
    read::<EligibilityChangeIn>(bytes, change_schema())?.into_change()
}

/// A `u64` as an Avro long, or the error the slow path gives for it.
fn long(field: &str, value: u64) -> Result<i64, EncodeError> {
    i64::try_from(value).map_err(|_| EncodeError::OutOfRange {
        field: field.to_string(),
        value,
    })
}

/// An Avro long holding a `u64`, or the error the slow path gives for it.
fn ulong(field: &str, value: i64) -> Result<u64, DecodeError> {
    u64::try_from(value).map_err(|_| DecodeError::OutOfRange {
        field: field.to_string(),
        value,
    })
}

// ---- HouseholdRecord: encoding -------------------------------------------------------------

#[derive(Serialize)]
struct HouseholdRecordOut<'a> {
    household_id: &'a str,
    area: &'a str,
    members: ArrayOf<'a, Member, MemberOut<'a>>,
    dwelling: Option<DwellingOut>,
    assets: AssetsOut,
    shock_damage: Option<ShockDamageOut<'a>>,
    need_score: Option<NeedScoreOut<'a>>,
    programs: ArrayOf<'a, ProgramStatus, ProgramStatusOut<'a>>,
    version: i64,
    as_of: i64,
    recent_events: ArrayOf<'a, EventId, UuidText>,
    late_events: i64,
    dissolved: bool,
}

#[derive(Serialize)]
#[serde(rename = "ShockDamage")]
struct ShockDamageOut<'a> {
    hazard: Code<HazardType>,
    damage: Code<DamageLevel>,
    estimated_loss: f64,
    reported_on: i32,
    shock_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename = "NeedScore")]
struct NeedScoreOut<'a> {
    score: f64,
    model_version: &'a str,
}

#[derive(Serialize)]
struct ProgramStatusOut<'a> {
    program_id: &'a str,
    rule_version: i32,
    eligible: bool,
    benefit: f64,
    inputs: RuleInputsOut<'a>,
}

/// A status's inputs as an Avro array of `RuleInput`.
struct RuleInputsOut<'a>(&'a RuleInputs);

impl Serialize for RuleInputsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(name, value)| RuleInputOut {
            name,
            value: ScalarOut(value),
        }))
    }
}

#[derive(Serialize)]
struct RuleInputOut<'a> {
    name: &'a str,
    value: ScalarOut<'a>,
}

/// `["boolean", "long", "double", "string", "InputDigest"]`: serde_avro_fast picks the branch
/// by the kind of value serialized (a digest by its record's name).
struct ScalarOut<'a>(&'a Scalar);

#[derive(Serialize)]
#[serde(rename = "InputDigest")]
struct InputDigestOut {
    digest: i64,
}

impl Serialize for ScalarOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Scalar::Bool(b) => s.serialize_bool(*b),
            Scalar::Int(n) => s.serialize_i64(*n),
            Scalar::Number(d) => s.serialize_f64(*d),
            Scalar::Text(t) => s.serialize_str(t),
            // The digest's 64 bits as they are.
            Scalar::Digest(d) => InputDigestOut { digest: *d as i64 }.serialize(s),
        }
    }
}

impl<'a> HouseholdRecordOut<'a> {
    /// Checks the values an Avro int or long may not hold in the slow path's order, so that the
    /// same value fails with the same path.
    fn of(h: &'a Household) -> Result<Self, EncodeError> {
        let dwelling = match &h.dwelling {
            Some(d) => Some(super::dwelling_out("dwelling", d)?),
            None => None,
        };
        let assets = super::assets_out("assets", &h.assets)?;
        for (i, p) in h.programs.iter().enumerate() {
            int(|| format!("programs[{i}].rule_version"), p.rule_version)?;
        }
        Ok(HouseholdRecordOut {
            household_id: h.household_id.as_str(),
            area: h.area.as_str(),
            members: ArrayOf(&h.members, member_out),
            dwelling,
            assets,
            shock_damage: h.shock_damage.as_ref().map(|s| ShockDamageOut {
                hazard: Code(s.hazard),
                damage: Code(s.damage),
                estimated_loss: s.estimated_loss,
                reported_on: s.reported_on.0,
                shock_id: s.shock_id.as_ref().map(ShockId::as_str),
            }),
            need_score: h.need_score.as_ref().map(|s| NeedScoreOut {
                score: s.score,
                model_version: &s.model_version,
            }),
            programs: ArrayOf(&h.programs, program_out),
            version: long("version", h.version)?,
            as_of: h.as_of.0,
            recent_events: ArrayOf(&h.recent_events, |id| UuidText(*id)),
            late_events: long("late_events", h.late_events)?,
            dissolved: h.dissolved,
        })
    }
}

/// A program status whose `rule_version` was checked to fit an Avro int.
fn program_out(p: &ProgramStatus) -> ProgramStatusOut<'_> {
    ProgramStatusOut {
        program_id: &p.program_id,
        rule_version: p.rule_version as i32,
        eligible: p.eligible,
        benefit: p.benefit,
        inputs: RuleInputsOut(&p.inputs),
    }
}

// ---- HouseholdRecord: decoding -------------------------------------------------------------

#[derive(Deserialize)]
struct HouseholdRecordIn {
    household_id: HouseholdId,
    area: AreaCode,
    members: ListOf<MemberIn, Member>,
    dwelling: Option<DwellingIn>,
    assets: AssetsIn,
    shock_damage: Option<ShockDamageIn>,
    need_score: Option<NeedScoreIn>,
    programs: Vec<ProgramStatusIn>,
    version: i64,
    as_of: i64,
    recent_events: ListOf<UuidText, EventId>,
    late_events: i64,
    dissolved: bool,
}

#[derive(Deserialize)]
struct ShockDamageIn {
    hazard: Code<HazardType>,
    damage: Code<DamageLevel>,
    estimated_loss: f64,
    reported_on: i32,
    shock_id: Option<ShockId>,
}

#[derive(Deserialize)]
struct NeedScoreIn {
    score: f64,
    model_version: CompactString,
}

#[derive(Deserialize)]
struct ProgramStatusIn {
    program_id: CompactString,
    rule_version: i32,
    eligible: bool,
    benefit: f64,
    inputs: ListOf<RuleInputIn, InputValue>,
}

#[derive(Deserialize)]
struct RuleInputIn {
    name: CompactString,
    value: ScalarIn,
}

/// The union's branch as serde_avro_fast names it: the type for primitives, the full name
/// for records.
#[derive(Deserialize)]
enum ScalarIn {
    Boolean(bool),
    Long(i64),
    Double(f64),
    String(CompactString),
    #[serde(rename = "dsr.events.InputDigest")]
    Digest(InputDigestIn),
}

#[derive(Deserialize)]
struct InputDigestIn {
    digest: i64,
}

impl From<RuleInputIn> for InputValue {
    fn from(i: RuleInputIn) -> InputValue {
        InputValue {
            name: i.name,
            value: match i.value {
                ScalarIn::Boolean(b) => Scalar::Bool(b),
                ScalarIn::Long(n) => Scalar::Int(n),
                ScalarIn::Double(d) => Scalar::Number(d),
                ScalarIn::String(t) => Scalar::Text(t),
                ScalarIn::Digest(d) => Scalar::Digest(d.digest as u64),
            },
        }
    }
}

impl From<UuidText> for EventId {
    fn from(u: UuidText) -> EventId {
        u.0
    }
}

impl HouseholdRecordIn {
    /// The household; checks in the slow path's (field) order.
    fn into_household(self) -> Result<Household, DecodeError> {
        let dwelling = match self.dwelling {
            Some(d) => Some(d.into_dwelling("dwelling")?),
            None => None,
        };
        let assets = self.assets.into_assets("assets")?;
        let programs = self
            .programs
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(ProgramStatus {
                    program_id: p.program_id,
                    rule_version: uint(|| format!("programs[{i}].rule_version"), p.rule_version)?,
                    eligible: p.eligible,
                    benefit: p.benefit,
                    inputs: p.inputs.0.into(),
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Household {
            household_id: self.household_id,
            area: self.area,
            members: self.members.0,
            dwelling,
            assets,
            shock_damage: self.shock_damage.map(|s| ShockDamage {
                hazard: s.hazard.0,
                damage: s.damage.0,
                estimated_loss: s.estimated_loss,
                reported_on: Date(s.reported_on),
                shock_id: s.shock_id,
            }),
            need_score: self.need_score.map(|s| ScoreSummary {
                score: s.score,
                model_version: s.model_version,
            }),
            programs,
            version: ulong("version", self.version)?,
            as_of: Micros(self.as_of),
            recent_events: self.recent_events.0,
            late_events: ulong("late_events", self.late_events)?,
            dissolved: self.dissolved,
        })
    }
}

// ---- EligibilityChange ---------------------------------------------------------------------

/// A change kind, as its index in the `ChangeKind` enum.
#[derive(Clone, Copy)]
struct Kind(ChangeKind);

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(change_kind_index(self.0))
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an index of the Avro enum ChangeKind")
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<Kind, E> {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| CHANGE_KINDS.get(i))
                    .map(|(k, _)| Kind(*k))
                    .ok_or_else(|| {
                        E::custom(format_args!(
                            "enum index {i} is out of range for ChangeKind ({} symbols)",
                            CHANGE_KINDS.len()
                        ))
                    })
            }
        }
        d.deserialize_u64(V)
    }
}

#[derive(Serialize)]
struct EligibilityChangeOut<'a> {
    change_id: UuidText,
    program_id: &'a str,
    household_id: &'a str,
    kind: Kind,
    reasons: &'a [String],
    benefit: f64,
    rule_version: i32,
    household_version: i64,
    caused_by: UuidText,
    occurred_at: i64,
    scale_up: Option<ScaleUpMarkOut<'a>>,
}

#[derive(Serialize)]
struct ScaleUpMarkOut<'a> {
    rule_id: &'a str,
    shock_id: &'a str,
    ends_at: i64,
}

#[derive(Deserialize)]
struct ScaleUpMarkIn {
    rule_id: CompactString,
    shock_id: ShockId,
    ends_at: i64,
}

impl<'a> EligibilityChangeOut<'a> {
    fn of(c: &'a EligibilityChange) -> Result<Self, EncodeError> {
        Ok(EligibilityChangeOut {
            change_id: UuidText(c.change_id),
            program_id: &c.program_id,
            household_id: c.household_id.as_str(),
            kind: Kind(c.kind),
            reasons: &c.reasons,
            benefit: c.benefit,
            rule_version: int(|| "rule_version".into(), c.rule_version)?,
            household_version: long("household_version", c.household_version)?,
            caused_by: UuidText(c.caused_by),
            occurred_at: c.occurred_at.0,
            scale_up: c.scale_up.as_ref().map(|m| ScaleUpMarkOut {
                rule_id: &m.rule_id,
                shock_id: m.shock_id.as_str(),
                ends_at: m.ends_at.0,
            }),
        })
    }
}

#[derive(Deserialize)]
struct EligibilityChangeIn {
    change_id: UuidText,
    program_id: CompactString,
    household_id: HouseholdId,
    kind: Kind,
    reasons: Vec<String>,
    benefit: f64,
    rule_version: i32,
    household_version: i64,
    caused_by: UuidText,
    occurred_at: i64,
    scale_up: Option<ScaleUpMarkIn>,
}

impl EligibilityChangeIn {
    fn into_change(self) -> Result<EligibilityChange, DecodeError> {
        Ok(EligibilityChange {
            change_id: self.change_id.0,
            program_id: self.program_id,
            household_id: self.household_id,
            kind: self.kind.0,
            reasons: self.reasons,
            benefit: self.benefit,
            rule_version: uint(|| "rule_version".into(), self.rule_version)?,
            household_version: ulong("household_version", self.household_version)?,
            caused_by: self.caused_by.0,
            occurred_at: Micros(self.occurred_at),
            scale_up: self.scale_up.map(|m| ScaleUpMark {
                rule_id: m.rule_id,
                shock_id: m.shock_id,
                ends_at: Micros(m.ends_at),
            }),
        })
    }
}
