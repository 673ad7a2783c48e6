//! A fast codec for data written with the **current** schemas: life events, and the
//! pipeline's outputs (household records, eligibility changes).
//!
//! [`crate::encode`] and [`crate::decode`] go through apache-avro's generic `Value` tree: a
//! heap allocation per field and a string per field name. This module goes straight between
//! `dsr_core::Event` and Avro binary with [`serde_avro_fast`], through private serde mirror
//! structs shaped exactly like the schema (the envelope's fields in schema order, then
//! `payload` as the union of payload records), converted to and from `Event` field by field.
//!
//! - **The same bytes.** [`encode`] writes exactly what [`crate::encode`] writes (tests
//!   compare every fixture and a generated population byte for byte), and [`decode`] reads
//!   what [`crate::encode`] wrote into the same event.
//! - **Only the current schema.** There is no schema resolution: use this module when the
//!   writer schema *is* the current one (the pipeline knows the writer schema id of each
//!   message and compares it with the id of the current schema); data written with any other
//!   version goes through [`crate::decode`] / [`crate::Decoder`].
//! - **The same errors**, as far as they can arise with the current schema: bytes that do not
//!   decode are [`DecodeError::Malformed`] (including an enum or union index the schema does
//!   not have, a string that is not UTF-8 and a UUID that does not parse), extra bytes are
//!   [`DecodeError::TrailingBytes`], a negative count is [`DecodeError::OutOfRange`] with the
//!   same field path, an `event_type` that does not name the payload is
//!   [`DecodeError::EventTypeMismatch`]; encoding a count beyond an Avro int is
//!   [`EncodeError::OutOfRange`] with the same path. The differences: the source inside
//!   `Malformed` is serde_avro_fast's error (its message differs from apache-avro's), and the
//!   errors that need another writer schema never occur here (`UnknownSymbol`,
//!   `UnknownEventType`, `Incompatible`, `WriterSchema`; a symbol index beyond the current code
//!   list is `Malformed`, as it is on the slow path with the current schema). `Shape` and
//!   `MissingField` cannot occur: the mirrors are checked against the schema by the tests.
//!
//! The outputs have the same pair: [`encode_household`] / [`decode_household`] and
//! [`encode_eligibility_change`] / [`decode_eligibility_change`] write the bytes of
//! [`crate::encode_household`] and [`crate::encode_eligibility_change`], for the changelog and
//! the eligibility topics, where a record is written for every event processed.
//!
//! Code-list values are written and read by index, which is their position in
//! `CodeList::ALL`; the first use of this module checks that every code list's symbols are the
//! Avro enum's, in order (a test checks it too), so an index always means the same symbol.

use super::{DecodeError, EncodeError};
use crate::schemas::{self, ROOT};
use dsr_core::codes::*;
use dsr_core::event::*;
use dsr_core::household::{Assets, Disability, Dwelling, Incomes};
use dsr_core::ids::*;
use dsr_core::{CodeList, Envelope, Event, Member};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_avro_fast::de::DeserializerState;
use serde_avro_fast::ser::SerializerConfig;
use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

mod outputs;

pub use outputs::{
    decode_eligibility_change, decode_household, decode_household_members,
    encode_eligibility_change, encode_eligibility_change_into, encode_household,
    encode_household_into,
};

/// Encodes an event as one Avro binary datum of the current `LifeEvent` schema; the same
/// bytes as [`crate::encode`].
pub fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode_into(event, &mut out)?;
    Ok(out)
}

/// [`encode`], appending to `out` (after a wire-format header, say: see [`crate::wire`]).
/// On error `out` is left as it was.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write(&LifeEventOut::of(event)?, life_event_schema(), ROOT, out)
}

/// Decodes one Avro binary datum written with the current `LifeEvent` schema (for data
/// written with another version use [`crate::decode`]).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    read::<LifeEventIn>(bytes, life_event_schema())?.into_event()
}

/// Writes a mirror as a datum of `schema`, appending to `out`; on error `out` is left as it
/// was.
fn write<T: Serialize>(
    mirror: &T,
    schema: &serde_avro_fast::Schema,
    record: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut config = SerializerConfig::new(schema);
    let start = out.len();
    match serde_avro_fast::to_datum(mirror, &mut *out, &mut config) {
        Ok(_) => Ok(()),
        Err(source) => {
            out.truncate(start);
            Err(EncodeError::Fast {
                record,
                source: Box::new(source),
            })
        }
    }
}

/// Reads a mirror from one whole datum of `schema`.
/// Like [`read`], for a reader that stops part-way through the datum on purpose: bytes left
/// after it are not an error.
fn read_prefix<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    schema: &serde_avro_fast::Schema,
) -> Result<T, DecodeError> {
    let mut state = DeserializerState::from_slice(bytes, schema);
    T::deserialize(state.deserializer()).map_err(|e| DecodeError::Malformed(Box::new(e)))
}

fn read<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    schema: &serde_avro_fast::Schema,
) -> Result<T, DecodeError> {
    let mut state = DeserializerState::from_slice(bytes, schema);
    let mirror =
        T::deserialize(state.deserializer()).map_err(|e| DecodeError::Malformed(Box::new(e)))?;
    let extra = std::io::BufRead::fill_buf(&mut state.into_reader())
        .map(<[u8]>::len)
        .unwrap_or(0);
    if extra > 0 {
        return Err(DecodeError::TrailingBytes {
            extra,
            total: bytes.len(),
        });
    }
    Ok(mirror)
}

/// The current `LifeEvent` schema as serde_avro_fast reads it, parsed once.
fn life_event_schema() -> &'static serde_avro_fast::Schema {
    static SCHEMA: OnceLock<serde_avro_fast::Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(schemas::life_event_schema(), ROOT))
}

/// A current top-level schema as serde_avro_fast reads it.
///
/// # Panics
/// If a code list's symbols are not its Avro enum's, in order, or the schema does not parse;
/// `cargo test -p dsr-contracts` rules out both for any build whose tests pass.
fn parse(schema: &apache_avro::Schema, root: &str) -> serde_avro_fast::Schema {
    if let Err(e) = check_code_lists() {
        panic!("dsr-contracts' fast codec cannot use the embedded schemas: {e}");
    }
    let json = serde_json::to_string(schema).expect("a parsed schema serializes to JSON");
    json.parse()
        .unwrap_or_else(|e| panic!("serde_avro_fast cannot parse the embedded {root} schema: {e}"))
}

/// Every code list the mirrors write by index has the symbols of its Avro enum, in order, and
/// `EventType` is `EVENT_TYPES`.
pub(crate) fn check_code_lists() -> Result<(), String> {
    fn same<C: CodeList>() -> Result<(), String> {
        symbols_are(C::NAME, &C::symbols())
    }
    fn symbols_are(name: &str, expected: &[&str]) -> Result<(), String> {
        match schemas::current().get(name) {
            Some(apache_avro::Schema::Enum(e)) if e.symbols == expected => Ok(()),
            Some(apache_avro::Schema::Enum(e)) => Err(format!(
                "the Avro enum {name} has the symbols {:?}, dsr-core's code list {:?}",
                e.symbols, expected
            )),
            _ => Err(format!("no Avro enum {name}")),
        }
    }
    same::<Sex>()?;
    same::<MaritalStatus>()?;
    same::<Relationship>()?;
    same::<EducationLevel>()?;
    same::<EmploymentStatus>()?;
    same::<DisabilityType>()?;
    same::<DisabilitySeverity>()?;
    same::<IncomeSource>()?;
    same::<IncomePeriod>()?;
    same::<WallMaterial>()?;
    same::<WaterSource>()?;
    same::<Sanitation>()?;
    same::<Tenure>()?;
    same::<HazardType>()?;
    same::<ShockSeverity>()?;
    same::<DamageLevel>()?;
    same::<RegistrationSource>()?;
    same::<CorrectableField>()?;
    let kinds: Vec<&str> = super::CHANGE_KINDS.iter().map(|(_, s)| *s).collect();
    symbols_are("ChangeKind", &kinds)?;
    symbols_are("EventType", EVENT_TYPES)
}

// ---- leaves --------------------------------------------------------------------------------

/// A code-list value, written and read as its Avro enum index (its position in `C::ALL`).
#[derive(Clone, Copy)]
struct Code<C>(C);

impl<C: CodeList + PartialEq> Serialize for Code<C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = C::ALL.iter().position(|c| *c == self.0).unwrap_or(0);
        s.serialize_u32(index as u32)
    }
}

impl<'de, C: CodeList> Deserialize<'de> for Code<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<C>(PhantomData<C>);
        impl<C: CodeList> Visitor<'_> for V<C> {
            type Value = C;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an index of the Avro enum {}", C::NAME)
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<C, E> {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| C::ALL.get(i))
                    .copied()
                    .ok_or_else(|| {
                        E::custom(format_args!(
                            "enum index {i} is out of range for {} ({} symbols)",
                            C::NAME,
                            C::ALL.len()
                        ))
                    })
            }
        }
        // serde_avro_fast reads an Avro enum's index without looking up its symbol.
        d.deserialize_u64(V(PhantomData)).map(Code)
    }
}

/// The envelope's `event_type`, as an index into `EVENT_TYPES`.
#[derive(Clone, Copy)]
struct EventTypeIndex(usize);

impl Serialize for EventTypeIndex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0 as u32)
    }
}

impl<'de> Deserialize<'de> for EventTypeIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EventTypeIndex;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an index of the Avro enum EventType")
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<EventTypeIndex, E> {
                usize::try_from(i)
                    .ok()
                    .filter(|i| *i < EVENT_TYPES.len())
                    .map(EventTypeIndex)
                    .ok_or_else(|| {
                        E::custom(format_args!(
                            "enum index {i} is out of range for EventType ({} symbols)",
                            EVENT_TYPES.len()
                        ))
                    })
            }
        }
        d.deserialize_u64(V)
    }
}

/// A UUID as Avro `string`/`uuid`: hyphenated, lower case (as apache-avro writes it), parsed
/// as leniently as apache-avro parses it (`Uuid::parse_str`).
#[derive(Clone, Copy)]
struct UuidText(uuid::Uuid);

impl Serialize for UuidText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        s.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
    }
}

impl<'de> Deserialize<'de> for UuidText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UuidText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a UUID as text")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<UuidText, E> {
                uuid::Uuid::parse_str(s)
                    .map(UuidText)
                    .map_err(|e| E::custom(format_args!("`{s}` is not a UUID: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// A `u32` as an Avro int, or the error the slow path gives for it.
fn int(field: impl FnOnce() -> String, value: u32) -> Result<i32, EncodeError> {
    i32::try_from(value).map_err(|_| EncodeError::OutOfRange {
        field: field(),
        value: value.into(),
    })
}

/// An Avro int holding a `u32`, or the error the slow path gives for it.
fn uint(field: impl FnOnce() -> String, value: i32) -> Result<u32, DecodeError> {
    u32::try_from(value).map_err(|_| DecodeError::OutOfRange {
        field: field(),
        value: value.into(),
    })
}

/// Serializes a slice as an Avro array, each element converted by a function, without
/// collecting the converted elements.
struct ArrayOf<'a, T, M>(&'a [T], fn(&'a T) -> M);

impl<'a, T, M: Serialize> Serialize for ArrayOf<'a, T, M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(self.1)(item))?;
        }
        seq.end()
    }
}

/// Reads an Avro array of `M`s into a `Vec<T>`, converting each as it is read.
struct ListOf<M, T>(Vec<T>, PhantomData<M>);

impl<'de, M: Deserialize<'de> + Into<T>, T> Deserialize<'de> for ListOf<M, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<M, T>(PhantomData<(M, T)>);
        impl<'de, M: Deserialize<'de> + Into<T>, T> Visitor<'de> for V<M, T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element::<M>()? {
                    out.push(item.into());
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V::<M, T>(PhantomData))
            .map(|v| ListOf(v, PhantomData))
    }
}

// ---- encoding mirrors ----------------------------------------------------------------------
//
// Field order is the schema's: serde_avro_fast writes fields as they come when they come in
// schema order, and would buffer them otherwise.

#[derive(Serialize)]
struct LifeEventOut<'a> {
    event_id: UuidText,
    event_type: EventTypeIndex,
    source_system: &'a str,
    occurred_at: i64,
    recorded_at: i64,
    person_id: Option<&'a str>,
    household_id: Option<&'a str>,
    correlation_id: Option<UuidText>,
    schema_version: i32,
    payload: PayloadOut<'a>,
}

impl<'a> LifeEventOut<'a> {
    fn of(event: &'a Event) -> Result<Self, EncodeError> {
        let env = &event.envelope;
        let event_type = event.event_type();
        let event_type_index = EVENT_TYPES
            .iter()
            .position(|t| *t == event_type)
            .ok_or(EncodeError::NoPayloadType(event_type))?;
        Ok(LifeEventOut {
            event_id: UuidText(env.event_id),
            event_type: EventTypeIndex(event_type_index),
            source_system: &env.source_system,
            occurred_at: env.occurred_at.0,
            recorded_at: env.recorded_at.0,
            person_id: env.person_id.as_ref().map(PersonId::as_str),
            household_id: env.household_id.as_ref().map(HouseholdId::as_str),
            correlation_id: env.correlation_id.map(UuidText),
            schema_version: int(|| "schema_version".into(), env.schema_version)?,
            payload: PayloadOut::of(&event.payload)?,
        })
    }
}

/// The payload union: serde_avro_fast picks the union's branch by the variant's name, which
/// is the record's.
#[derive(Serialize)]
enum PayloadOut<'a> {
    PersonBorn(PersonBornOut<'a>),
    PersonDied(PersonDiedOut<'a>),
    MarriageRegistered(CoupleOut<'a>),
    DivorceRegistered(CoupleOut<'a>),
    PersonMoved(PersonMovedOut<'a>),
    MemberJoined(MemberJoinedOut<'a>),
    HouseholdRegistered(HouseholdRegisteredOut<'a>),
    IncomeReported(IncomeReportedOut<'a>),
    EmploymentChanged(EmploymentChangedOut<'a>),
    DisabilityAssessed(DisabilityAssessedOut<'a>),
    SchoolEnrollmentChanged(SchoolEnrollmentChangedOut<'a>),
    AssetsReported(AssetsReportedOut),
    HouseholdShockReported(HouseholdShockReportedOut<'a>),
    DataCorrection(DataCorrectionOut<'a>),
    ShockDeclared(ShockDeclaredOut<'a>),
    ShockEnded(ShockEndedOut<'a>),
}

#[derive(Serialize)]
struct PersonBornOut<'a> {
    child: MemberOut<'a>,
    mother_id: Option<&'a str>,
    father_id: Option<&'a str>,
}

#[derive(Serialize)]
struct PersonDiedOut<'a> {
    person_id: &'a str,
    date_of_death: i32,
}

/// `MarriageRegistered` and `DivorceRegistered`.
#[derive(Serialize)]
struct CoupleOut<'a> {
    person_id: &'a str,
    spouse_id: &'a str,
    date: i32,
}

#[derive(Serialize)]
struct PersonMovedOut<'a> {
    person_id: &'a str,
    from_household_id: &'a str,
    to_household_id: &'a str,
    founds_new_household: bool,
    new_area: &'a str,
    relationship_in_new_household: Code<Relationship>,
}

#[derive(Serialize)]
struct MemberJoinedOut<'a> {
    member: MemberOut<'a>,
    from_household_id: &'a str,
    founds_new_household: bool,
    area: &'a str,
    caused_by: UuidText,
}

#[derive(Serialize)]
struct HouseholdRegisteredOut<'a> {
    area: &'a str,
    members: ArrayOf<'a, Member, MemberOut<'a>>,
    dwelling: DwellingOut,
    assets: AssetsOut,
    registration_source: Code<RegistrationSource>,
}

#[derive(Serialize)]
struct IncomeReportedOut<'a> {
    person_id: &'a str,
    amount: f64,
    period: Code<IncomePeriod>,
    source: Code<IncomeSource>,
}

#[derive(Serialize)]
struct EmploymentChangedOut<'a> {
    person_id: &'a str,
    status: Code<EmploymentStatus>,
}

#[derive(Serialize)]
struct DisabilityAssessedOut<'a> {
    person_id: &'a str,
    disability_type: Code<DisabilityType>,
    severity: Code<DisabilitySeverity>,
}

#[derive(Serialize)]
struct SchoolEnrollmentChangedOut<'a> {
    person_id: &'a str,
    enrolled: bool,
    education_level: Code<EducationLevel>,
}

#[derive(Serialize)]
struct AssetsReportedOut {
    assets: AssetsOut,
}

#[derive(Serialize)]
struct HouseholdShockReportedOut<'a> {
    hazard: Code<HazardType>,
    damage: Code<DamageLevel>,
    estimated_loss: f64,
    shock_id: Option<&'a str>,
}

#[derive(Serialize)]
struct DataCorrectionOut<'a> {
    person_id: Option<&'a str>,
    field: Code<CorrectableField>,
    new_value: &'a str,
    reason: &'a str,
    caseworker_id: &'a str,
}

#[derive(Serialize)]
struct ShockDeclaredOut<'a> {
    shock_id: &'a str,
    hazard: Code<HazardType>,
    area_codes: ArrayOf<'a, AreaCode, &'a str>,
    severity: Code<ShockSeverity>,
    indicator_name: &'a str,
    indicator_value: f64,
    starts_at: i64,
    expected_end: Option<i64>,
    declared_by: &'a str,
}

#[derive(Serialize)]
struct ShockEndedOut<'a> {
    shock_id: &'a str,
    ended_at: i64,
}

#[derive(Serialize)]
struct MemberOut<'a> {
    person_id: &'a str,
    given_name: &'a str,
    family_name: &'a str,
    sex: Code<Sex>,
    birth_date: i32,
    relationship: Code<Relationship>,
    marital_status: Code<MaritalStatus>,
    education_level: Code<EducationLevel>,
    enrolled_in_school: bool,
    employment: Code<EmploymentStatus>,
    incomes: IncomesOut<'a>,
    disability: Option<DisabilityOut>,
}

/// Named like the Avro record, so that serde_avro_fast finds the branch of `["null",
/// "Disability"]` by name.
#[derive(Serialize)]
#[serde(rename = "Disability")]
struct DisabilityOut {
    disability_type: Code<DisabilityType>,
    severity: Code<DisabilitySeverity>,
}

/// The sources with income, in code-list order, as `{source, monthly_amount}` entries.
struct IncomesOut<'a>(&'a Incomes);

#[derive(Serialize)]
struct IncomeEntryOut {
    source: Code<IncomeSource>,
    monthly_amount: f64,
}

impl Serialize for IncomesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.iter().count()))?;
        for (source, monthly_amount) in self.0.iter() {
            seq.serialize_element(&IncomeEntryOut {
                source: Code(source),
                monthly_amount,
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(rename = "Dwelling")]
struct DwellingOut {
    wall_material: Code<WallMaterial>,
    water_source: Code<WaterSource>,
    sanitation: Code<Sanitation>,
    electricity: bool,
    rooms: i32,
    tenure: Code<Tenure>,
}

#[derive(Serialize)]
#[serde(rename = "Assets")]
struct AssetsOut {
    land_hectares: f64,
    livestock_tlu: f64,
    mobile_phones: i32,
    radio: bool,
    television: bool,
    refrigerator: bool,
    bicycle: bool,
    motorcycle: bool,
    car: bool,
}

impl<'a> PayloadOut<'a> {
    fn of(payload: &'a Payload) -> Result<Self, EncodeError> {
        Ok(match payload {
            Payload::PersonBorn(p) => PayloadOut::PersonBorn(PersonBornOut {
                child: member_out(&p.child),
                mother_id: p.mother_id.as_ref().map(PersonId::as_str),
                father_id: p.father_id.as_ref().map(PersonId::as_str),
            }),
            Payload::PersonDied(p) => PayloadOut::PersonDied(PersonDiedOut {
                person_id: p.person_id.as_str(),
                date_of_death: p.date_of_death.0,
            }),
            Payload::MarriageRegistered(p) => PayloadOut::MarriageRegistered(CoupleOut {
                person_id: p.person_id.as_str(),
                spouse_id: p.spouse_id.as_str(),
                date: p.date.0,
            }),
            Payload::DivorceRegistered(p) => PayloadOut::DivorceRegistered(CoupleOut {
                person_id: p.person_id.as_str(),
                spouse_id: p.spouse_id.as_str(),
                date: p.date.0,
            }),
            Payload::PersonMoved(p) => PayloadOut::PersonMoved(PersonMovedOut {
                person_id: p.person_id.as_str(),
                from_household_id: p.from_household_id.as_str(),
                to_household_id: p.to_household_id.as_str(),
                founds_new_household: p.founds_new_household,
                new_area: p.new_area.as_str(),
                relationship_in_new_household: Code(p.relationship_in_new_household),
            }),
            Payload::MemberJoined(p) => PayloadOut::MemberJoined(MemberJoinedOut {
                member: member_out(&p.member),
                from_household_id: p.from_household_id.as_str(),
                founds_new_household: p.founds_new_household,
                area: p.area.as_str(),
                caused_by: UuidText(p.caused_by),
            }),
            Payload::HouseholdRegistered(p) => {
                PayloadOut::HouseholdRegistered(HouseholdRegisteredOut {
                    area: p.area.as_str(),
                    members: ArrayOf(&p.members, member_out),
                    dwelling: dwelling_out("payload.dwelling", &p.dwelling)?,
                    assets: assets_out("payload.assets", &p.assets)?,
                    registration_source: Code(p.registration_source),
                })
            }
            Payload::IncomeReported(p) => PayloadOut::IncomeReported(IncomeReportedOut {
                person_id: p.person_id.as_str(),
                amount: p.amount,
                period: Code(p.period),
                source: Code(p.source),
            }),
            Payload::EmploymentChanged(p) => PayloadOut::EmploymentChanged(EmploymentChangedOut {
                person_id: p.person_id.as_str(),
                status: Code(p.status),
            }),
            Payload::DisabilityAssessed(p) => {
                PayloadOut::DisabilityAssessed(DisabilityAssessedOut {
                    person_id: p.person_id.as_str(),
                    disability_type: Code(p.disability_type),
                    severity: Code(p.severity),
                })
            }
            Payload::SchoolEnrollmentChanged(p) => {
                PayloadOut::SchoolEnrollmentChanged(SchoolEnrollmentChangedOut {
                    person_id: p.person_id.as_str(),
                    enrolled: p.enrolled,
                    education_level: Code(p.education_level),
                })
            }
            Payload::AssetsReported(p) => PayloadOut::AssetsReported(AssetsReportedOut {
                assets: assets_out("payload.assets", &p.assets)?,
            }),
            Payload::HouseholdShockReported(p) => {
                PayloadOut::HouseholdShockReported(HouseholdShockReportedOut {
                    hazard: Code(p.hazard),
                    damage: Code(p.damage),
                    estimated_loss: p.estimated_loss,
                    shock_id: p.shock_id.as_ref().map(ShockId::as_str),
                })
            }
            Payload::DataCorrection(p) => PayloadOut::DataCorrection(DataCorrectionOut {
                person_id: p.person_id.as_ref().map(PersonId::as_str),
                field: Code(p.field),
                new_value: &p.new_value,
                reason: &p.reason,
                caseworker_id: &p.caseworker_id,
            }),
            Payload::ShockDeclared(p) => PayloadOut::ShockDeclared(ShockDeclaredOut {
                shock_id: p.shock_id.as_str(),
                hazard: Code(p.hazard),
                area_codes: ArrayOf(&p.area_codes, AreaCode::as_str),
                severity: Code(p.severity),
                indicator_name: &p.indicator_name,
                indicator_value: p.indicator_value,
                starts_at: p.starts_at.0,
                expected_end: p.expected_end.map(|m| m.0),
                declared_by: &p.declared_by,
            }),
            Payload::ShockEnded(p) => PayloadOut::ShockEnded(ShockEndedOut {
                shock_id: p.shock_id.as_str(),
                ended_at: p.ended_at.0,
            }),
        })
    }
}

fn member_out(m: &Member) -> MemberOut<'_> {
    MemberOut {
        person_id: m.person_id.as_str(),
        given_name: &m.given_name,
        family_name: &m.family_name,
        sex: Code(m.sex),
        birth_date: m.birth_date.0,
        relationship: Code(m.relationship),
        marital_status: Code(m.marital_status),
        education_level: Code(m.education_level),
        enrolled_in_school: m.enrolled_in_school,
        employment: Code(m.employment),
        incomes: IncomesOut(&m.incomes),
        disability: m.disability.map(|d| DisabilityOut {
            disability_type: Code(d.disability_type),
            severity: Code(d.severity),
        }),
    }
}

fn dwelling_out(at: &str, d: &Dwelling) -> Result<DwellingOut, EncodeError> {
    Ok(DwellingOut {
        wall_material: Code(d.wall_material),
        water_source: Code(d.water_source),
        sanitation: Code(d.sanitation),
        electricity: d.electricity,
        rooms: int(|| format!("{at}.rooms"), d.rooms)?,
        tenure: Code(d.tenure),
    })
}

fn assets_out(at: &str, a: &Assets) -> Result<AssetsOut, EncodeError> {
    Ok(AssetsOut {
        land_hectares: a.land_hectares,
        livestock_tlu: a.livestock_tlu,
        mobile_phones: int(|| format!("{at}.mobile_phones"), a.mobile_phones)?,
        radio: a.radio,
        television: a.television,
        refrigerator: a.refrigerator,
        bicycle: a.bicycle,
        motorcycle: a.motorcycle,
        car: a.car,
    })
}

// ---- decoding mirrors ----------------------------------------------------------------------
//
// Ids are read straight into dsr-core's id types (transparent `CompactString`s: short ones are
// stored inline, without allocating).

#[derive(Deserialize)]
struct LifeEventIn {
    event_id: UuidText,
    event_type: EventTypeIndex,
    source_system: compact_str::CompactString,
    occurred_at: i64,
    recorded_at: i64,
    person_id: Option<PersonId>,
    household_id: Option<HouseholdId>,
    correlation_id: Option<UuidText>,
    schema_version: i32,
    payload: PayloadIn,
}

/// The payload union: serde_avro_fast names the branch it read by the record's full name.
#[derive(Deserialize)]
enum PayloadIn {
    #[serde(rename = "dsr.events.PersonBorn")]
    PersonBorn(PersonBornIn),
    #[serde(rename = "dsr.events.PersonDied")]
    PersonDied(PersonDiedIn),
    #[serde(rename = "dsr.events.MarriageRegistered")]
    MarriageRegistered(CoupleIn),
    #[serde(rename = "dsr.events.DivorceRegistered")]
    DivorceRegistered(CoupleIn),
    #[serde(rename = "dsr.events.PersonMoved")]
    PersonMoved(PersonMovedIn),
    #[serde(rename = "dsr.events.MemberJoined")]
    MemberJoined(MemberJoinedIn),
    #[serde(rename = "dsr.events.HouseholdRegistered")]
    HouseholdRegistered(HouseholdRegisteredIn),
    #[serde(rename = "dsr.events.IncomeReported")]
    IncomeReported(IncomeReportedIn),
    #[serde(rename = "dsr.events.EmploymentChanged")]
    EmploymentChanged(EmploymentChangedIn),
    #[serde(rename = "dsr.events.DisabilityAssessed")]
    DisabilityAssessed(DisabilityAssessedIn),
    #[serde(rename = "dsr.events.SchoolEnrollmentChanged")]
    SchoolEnrollmentChanged(SchoolEnrollmentChangedIn),
    #[serde(rename = "dsr.events.AssetsReported")]
    AssetsReported(AssetsReportedIn),
    #[serde(rename = "dsr.events.HouseholdShockReported")]
    HouseholdShockReported(HouseholdShockReportedIn),
    #[serde(rename = "dsr.events.DataCorrection")]
    DataCorrection(DataCorrectionIn),
    #[serde(rename = "dsr.events.ShockDeclared")]
    ShockDeclared(ShockDeclaredIn),
    #[serde(rename = "dsr.events.ShockEnded")]
    ShockEnded(ShockEndedIn),
}

#[derive(Deserialize)]
struct PersonBornIn {
    child: MemberIn,
    mother_id: Option<PersonId>,
    father_id: Option<PersonId>,
}

#[derive(Deserialize)]
struct PersonDiedIn {
    person_id: PersonId,
    date_of_death: i32,
}

#[derive(Deserialize)]
struct CoupleIn {
    person_id: PersonId,
    spouse_id: PersonId,
    date: i32,
}

#[derive(Deserialize)]
struct PersonMovedIn {
    person_id: PersonId,
    from_household_id: HouseholdId,
    to_household_id: HouseholdId,
    founds_new_household: bool,
    new_area: AreaCode,
    relationship_in_new_household: Code<Relationship>,
}

#[derive(Deserialize)]
struct MemberJoinedIn {
    member: MemberIn,
    from_household_id: HouseholdId,
    founds_new_household: bool,
    area: AreaCode,
    caused_by: UuidText,
}

#[derive(Deserialize)]
struct HouseholdRegisteredIn {
    area: AreaCode,
    members: ListOf<MemberIn, Member>,
    dwelling: DwellingIn,
    assets: AssetsIn,
    registration_source: Code<RegistrationSource>,
}

#[derive(Deserialize)]
struct IncomeReportedIn {
    person_id: PersonId,
    amount: f64,
    period: Code<IncomePeriod>,
    source: Code<IncomeSource>,
}

#[derive(Deserialize)]
struct EmploymentChangedIn {
    person_id: PersonId,
    status: Code<EmploymentStatus>,
}

#[derive(Deserialize)]
struct DisabilityAssessedIn {
    person_id: PersonId,
    disability_type: Code<DisabilityType>,
    severity: Code<DisabilitySeverity>,
}

#[derive(Deserialize)]
struct SchoolEnrollmentChangedIn {
    person_id: PersonId,
    enrolled: bool,
    education_level: Code<EducationLevel>,
}

#[derive(Deserialize)]
struct AssetsReportedIn {
    assets: AssetsIn,
}

#[derive(Deserialize)]
struct HouseholdShockReportedIn {
    hazard: Code<HazardType>,
    damage: Code<DamageLevel>,
    estimated_loss: f64,
    shock_id: Option<ShockId>,
}

#[derive(Deserialize)]
struct DataCorrectionIn {
    person_id: Option<PersonId>,
    field: Code<CorrectableField>,
    new_value: compact_str::CompactString,
    reason: String,
    caseworker_id: compact_str::CompactString,
}

#[derive(Deserialize)]
struct ShockDeclaredIn {
    shock_id: ShockId,
    hazard: Code<HazardType>,
    area_codes: Vec<AreaCode>,
    severity: Code<ShockSeverity>,
    indicator_name: compact_str::CompactString,
    indicator_value: f64,
    starts_at: i64,
    expected_end: Option<i64>,
    declared_by: compact_str::CompactString,
}

#[derive(Deserialize)]
struct ShockEndedIn {
    shock_id: ShockId,
    ended_at: i64,
}

#[derive(Deserialize)]
struct MemberIn {
    person_id: PersonId,
    given_name: compact_str::CompactString,
    family_name: compact_str::CompactString,
    sex: Code<Sex>,
    birth_date: i32,
    relationship: Code<Relationship>,
    marital_status: Code<MaritalStatus>,
    education_level: Code<EducationLevel>,
    enrolled_in_school: bool,
    employment: Code<EmploymentStatus>,
    incomes: IncomesIn,
    disability: Option<DisabilityIn>,
}

impl From<MemberIn> for Member {
    fn from(m: MemberIn) -> Member {
        Member {
            person_id: m.person_id,
            given_name: m.given_name,
            family_name: m.family_name,
            sex: m.sex.0,
            birth_date: Date(m.birth_date),
            relationship: m.relationship.0,
            marital_status: m.marital_status.0,
            education_level: m.education_level.0,
            enrolled_in_school: m.enrolled_in_school,
            employment: m.employment.0,
            incomes: m.incomes.0,
            disability: m.disability.map(|d| Disability {
                disability_type: d.disability_type.0,
                severity: d.severity.0,
            }),
        }
    }
}

#[derive(Deserialize)]
struct DisabilityIn {
    disability_type: Code<DisabilityType>,
    severity: Code<DisabilitySeverity>,
}

/// A list of `{source, monthly_amount}`; amounts of a source listed twice add up, as on the
/// slow path and in the serde form.
struct IncomesIn(Incomes);

#[derive(Deserialize)]
struct IncomeEntryIn {
    source: Code<IncomeSource>,
    monthly_amount: f64,
}

impl<'de> Deserialize<'de> for IncomesIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Incomes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of IncomeEntry")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Incomes, A::Error> {
                let mut incomes = Incomes::default();
                while let Some(e) = seq.next_element::<IncomeEntryIn>()? {
                    incomes.set(e.source.0, incomes.get(e.source.0) + e.monthly_amount);
                }
                Ok(incomes)
            }
        }
        d.deserialize_seq(V).map(IncomesIn)
    }
}

#[derive(Deserialize)]
struct DwellingIn {
    wall_material: Code<WallMaterial>,
    water_source: Code<WaterSource>,
    sanitation: Code<Sanitation>,
    electricity: bool,
    rooms: i32,
    tenure: Code<Tenure>,
}

impl DwellingIn {
    fn into_dwelling(self, at: &str) -> Result<Dwelling, DecodeError> {
        Ok(Dwelling {
            wall_material: self.wall_material.0,
            water_source: self.water_source.0,
            sanitation: self.sanitation.0,
            electricity: self.electricity,
            rooms: uint(|| format!("{at}.rooms"), self.rooms)?,
            tenure: self.tenure.0,
        })
    }
}

#[derive(Deserialize)]
struct AssetsIn {
    land_hectares: f64,
    livestock_tlu: f64,
    mobile_phones: i32,
    radio: bool,
    television: bool,
    refrigerator: bool,
    bicycle: bool,
    motorcycle: bool,
    car: bool,
}

impl AssetsIn {
    fn into_assets(self, at: &str) -> Result<Assets, DecodeError> {
        Ok(Assets {
            land_hectares: self.land_hectares,
            livestock_tlu: self.livestock_tlu,
            mobile_phones: uint(|| format!("{at}.mobile_phones"), self.mobile_phones)?,
            radio: self.radio,
            television: self.television,
            refrigerator: self.refrigerator,
            bicycle: self.bicycle,
            motorcycle: self.motorcycle,
            car: self.car,
        })
    }
}

impl PayloadIn {
    fn event_type(&self) -> &'static str {
        match self {
            PayloadIn::PersonBorn(_) => "PersonBorn",
            PayloadIn::PersonDied(_) => "PersonDied",
            PayloadIn::MarriageRegistered(_) => "MarriageRegistered",
            PayloadIn::DivorceRegistered(_) => "DivorceRegistered",
            PayloadIn::PersonMoved(_) => "PersonMoved",
            PayloadIn::MemberJoined(_) => "MemberJoined",
            PayloadIn::HouseholdRegistered(_) => "HouseholdRegistered",
            PayloadIn::IncomeReported(_) => "IncomeReported",
            PayloadIn::EmploymentChanged(_) => "EmploymentChanged",
            PayloadIn::DisabilityAssessed(_) => "DisabilityAssessed",
            PayloadIn::SchoolEnrollmentChanged(_) => "SchoolEnrollmentChanged",
            PayloadIn::AssetsReported(_) => "AssetsReported",
            PayloadIn::HouseholdShockReported(_) => "HouseholdShockReported",
            PayloadIn::DataCorrection(_) => "DataCorrection",
            PayloadIn::ShockDeclared(_) => "ShockDeclared",
            PayloadIn::ShockEnded(_) => "ShockEnded",
        }
    }

    /// The payload; error paths are the slow path's (`payload.<Record>.<field>`).
    fn into_payload(self) -> Result<Payload, DecodeError> {
        Ok(match self {
            PayloadIn::PersonBorn(p) => Payload::PersonBorn(PersonBorn {
                child: p.child.into(),
                mother_id: p.mother_id,
                father_id: p.father_id,
            }),
            PayloadIn::PersonDied(p) => Payload::PersonDied(PersonDied {
                person_id: p.person_id,
                date_of_death: Date(p.date_of_death),
            }),
            PayloadIn::MarriageRegistered(p) => Payload::MarriageRegistered(MarriageRegistered {
                person_id: p.person_id,
                spouse_id: p.spouse_id,
                date: Date(p.date),
            }),
            PayloadIn::DivorceRegistered(p) => Payload::DivorceRegistered(DivorceRegistered {
                person_id: p.person_id,
                spouse_id: p.spouse_id,
                date: Date(p.date),
            }),
            PayloadIn::PersonMoved(p) => Payload::PersonMoved(PersonMoved {
                person_id: p.person_id,
                from_household_id: p.from_household_id,
                to_household_id: p.to_household_id,
                founds_new_household: p.founds_new_household,
                new_area: p.new_area,
                relationship_in_new_household: p.relationship_in_new_household.0,
            }),
            PayloadIn::MemberJoined(p) => Payload::MemberJoined(MemberJoined {
                member: p.member.into(),
                from_household_id: p.from_household_id,
                founds_new_household: p.founds_new_household,
                area: p.area,
                caused_by: p.caused_by.0,
            }),
            PayloadIn::HouseholdRegistered(p) => {
                Payload::HouseholdRegistered(HouseholdRegistered {
                    area: p.area,
                    members: p.members.0,
                    dwelling: p
                        .dwelling
                        .into_dwelling("payload.HouseholdRegistered.dwelling")?,
                    assets: p.assets.into_assets("payload.HouseholdRegistered.assets")?,
                    registration_source: p.registration_source.0,
                })
            }
            PayloadIn::IncomeReported(p) => Payload::IncomeReported(IncomeReported {
                person_id: p.person_id,
                amount: p.amount,
                period: p.period.0,
                source: p.source.0,
            }),
            PayloadIn::EmploymentChanged(p) => Payload::EmploymentChanged(EmploymentChanged {
                person_id: p.person_id,
                status: p.status.0,
            }),
            PayloadIn::DisabilityAssessed(p) => Payload::DisabilityAssessed(DisabilityAssessed {
                person_id: p.person_id,
                disability_type: p.disability_type.0,
                severity: p.severity.0,
            }),
            PayloadIn::SchoolEnrollmentChanged(p) => {
                Payload::SchoolEnrollmentChanged(SchoolEnrollmentChanged {
                    person_id: p.person_id,
                    enrolled: p.enrolled,
                    education_level: p.education_level.0,
                })
            }
            PayloadIn::AssetsReported(p) => Payload::AssetsReported(AssetsReported {
                assets: p.assets.into_assets("payload.AssetsReported.assets")?,
            }),
            PayloadIn::HouseholdShockReported(p) => {
                Payload::HouseholdShockReported(HouseholdShockReported {
                    hazard: p.hazard.0,
                    damage: p.damage.0,
                    estimated_loss: p.estimated_loss,
                    shock_id: p.shock_id,
                })
            }
            PayloadIn::DataCorrection(p) => Payload::DataCorrection(DataCorrection {
                person_id: p.person_id,
                field: p.field.0,
                new_value: p.new_value,
                reason: p.reason,
                caseworker_id: p.caseworker_id,
            }),
            PayloadIn::ShockDeclared(p) => Payload::ShockDeclared(ShockDeclared {
                shock_id: p.shock_id,
                hazard: p.hazard.0,
                area_codes: p.area_codes,
                severity: p.severity.0,
                indicator_name: p.indicator_name,
                indicator_value: p.indicator_value,
                starts_at: Micros(p.starts_at),
                expected_end: p.expected_end.map(Micros),
                declared_by: p.declared_by,
            }),
            PayloadIn::ShockEnded(p) => Payload::ShockEnded(ShockEnded {
                shock_id: p.shock_id,
                ended_at: Micros(p.ended_at),
            }),
        })
    }
}

impl LifeEventIn {
    /// The event; checks in the slow path's order (envelope, then `event_type` against the
    /// payload, then the payload's fields).
    fn into_event(self) -> Result<Event, DecodeError> {
        let envelope = Envelope {
            event_id: self.event_id.0,
            source_system: self.source_system,
            occurred_at: Micros(self.occurred_at),
            recorded_at: Micros(self.recorded_at),
            person_id: self.person_id,
            household_id: self.household_id,
            correlation_id: self.correlation_id.map(|u| u.0),
            schema_version: uint(|| "schema_version".into(), self.schema_version)?,
        };
        let event_type = EVENT_TYPES[self.event_type.0];
        let payload_type = self.payload.event_type();
        if event_type != payload_type {
            return Err(DecodeError::EventTypeMismatch {
                event_type: event_type.into(),
                payload: payload_type.into(),
            });
        }
        Ok(Event {
            envelope,
            payload: self.payload.into_payload()?,
        })
    }
}
