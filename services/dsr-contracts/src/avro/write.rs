//! `Event` → Avro value, field by field, in the shape of `schemas/*.avsc`.

use super::EncodeError;
use crate::schemas::{self, SchemaSet};
use apache_avro::types::Value;
use dsr_core::event::*;
use dsr_core::household::{Assets, Disability, Dwelling, Incomes};
use dsr_core::{CodeList, Event, Member};

/// The Avro value of an event, for the current `LifeEvent` schema.
pub fn to_value(event: &Event) -> Result<Value, EncodeError> {
    to_value_for(event, schemas::current())
}

pub(crate) fn to_value_for(event: &Event, set: &SchemaSet) -> Result<Value, EncodeError> {
    let env = &event.envelope;
    let event_type = event.event_type();
    let payload_index = set
        .payload_types()
        .iter()
        .position(|t| t == event_type)
        .ok_or(EncodeError::NoPayloadType(event_type))?;
    let event_type_index = EVENT_TYPES
        .iter()
        .position(|t| *t == event_type)
        .ok_or(EncodeError::NoPayloadType(event_type))?;
    Ok(record([
        ("event_id", Value::Uuid(env.event_id)),
        (
            "event_type",
            Value::Enum(event_type_index as u32, event_type.into()),
        ),
        ("source_system", string(&env.source_system)),
        ("occurred_at", Value::TimestampMicros(env.occurred_at.0)),
        ("recorded_at", Value::TimestampMicros(env.recorded_at.0)),
        (
            "person_id",
            optional(env.person_id.as_ref(), |p| string(p.as_str())),
        ),
        (
            "household_id",
            optional(env.household_id.as_ref(), |h| string(h.as_str())),
        ),
        ("correlation_id", optional(env.correlation_id, Value::Uuid)),
        ("schema_version", int("schema_version", env.schema_version)?),
        (
            "payload",
            Value::Union(payload_index as u32, Box::new(payload(&event.payload)?)),
        ),
    ]))
}

fn payload(payload: &Payload) -> Result<Value, EncodeError> {
    Ok(match payload {
        Payload::PersonBorn(p) => record([
            ("child", member(&p.child)),
            (
                "mother_id",
                optional(p.mother_id.as_ref(), |m| string(m.as_str())),
            ),
            (
                "father_id",
                optional(p.father_id.as_ref(), |f| string(f.as_str())),
            ),
        ]),
        Payload::PersonDied(p) => record([
            ("person_id", string(p.person_id.as_str())),
            ("date_of_death", Value::Date(p.date_of_death.0)),
        ]),
        Payload::MarriageRegistered(MarriageRegistered {
            person_id,
            spouse_id,
            date,
        })
        | Payload::DivorceRegistered(DivorceRegistered {
            person_id,
            spouse_id,
            date,
        }) => record([
            ("person_id", string(person_id.as_str())),
            ("spouse_id", string(spouse_id.as_str())),
            ("date", Value::Date(date.0)),
        ]),
        Payload::PersonMoved(p) => record([
            ("person_id", string(p.person_id.as_str())),
            ("from_household_id", string(p.from_household_id.as_str())),
            ("to_household_id", string(p.to_household_id.as_str())),
            (
                "founds_new_household",
                Value::Boolean(p.founds_new_household),
            ),
            ("new_area", string(p.new_area.as_str())),
            (
                "relationship_in_new_household",
                code(p.relationship_in_new_household),
            ),
        ]),
        Payload::MemberJoined(p) => record([
            ("member", member(&p.member)),
            ("from_household_id", string(p.from_household_id.as_str())),
            (
                "founds_new_household",
                Value::Boolean(p.founds_new_household),
            ),
            ("area", string(p.area.as_str())),
            ("caused_by", Value::Uuid(p.caused_by)),
        ]),
        Payload::HouseholdRegistered(p) => record([
            ("area", string(p.area.as_str())),
            (
                "members",
                Value::Array(p.members.iter().map(member).collect()),
            ),
            ("dwelling", dwelling("payload.dwelling", &p.dwelling)?),
            ("assets", assets("payload.assets", &p.assets)?),
            ("registration_source", code(p.registration_source)),
        ]),
        Payload::IncomeReported(p) => record([
            ("person_id", string(p.person_id.as_str())),
            ("amount", Value::Double(p.amount)),
            ("period", code(p.period)),
            ("source", code(p.source)),
        ]),
        Payload::EmploymentChanged(p) => record([
            ("person_id", string(p.person_id.as_str())),
            ("status", code(p.status)),
        ]),
        Payload::DisabilityAssessed(p) => record([
            ("person_id", string(p.person_id.as_str())),
            ("disability_type", code(p.disability_type)),
            ("severity", code(p.severity)),
        ]),
        Payload::SchoolEnrollmentChanged(p) => record([
            ("person_id", string(p.person_id.as_str())),
            ("enrolled", Value::Boolean(p.enrolled)),
            ("education_level", code(p.education_level)),
        ]),
        Payload::AssetsReported(p) => record([("assets", assets("payload.assets", &p.assets)?)]),
        Payload::HouseholdShockReported(p) => record([
            ("hazard", code(p.hazard)),
            ("damage", code(p.damage)),
            ("estimated_loss", Value::Double(p.estimated_loss)),
            (
                "shock_id",
                optional(p.shock_id.as_ref(), |s| string(s.as_str())),
            ),
        ]),
        Payload::DataCorrection(p) => record([
            (
                "person_id",
                optional(p.person_id.as_ref(), |s| string(s.as_str())),
            ),
            ("field", code(p.field)),
            ("new_value", string(&p.new_value)),
            ("reason", string(&p.reason)),
            ("caseworker_id", string(&p.caseworker_id)),
        ]),
        Payload::ShockDeclared(p) => record([
            ("shock_id", string(p.shock_id.as_str())),
            ("hazard", code(p.hazard)),
            (
                "area_codes",
                Value::Array(p.area_codes.iter().map(|a| string(a.as_str())).collect()),
            ),
            ("severity", code(p.severity)),
            ("indicator_name", string(&p.indicator_name)),
            ("indicator_value", Value::Double(p.indicator_value)),
            ("starts_at", Value::TimestampMicros(p.starts_at.0)),
            (
                "expected_end",
                optional(p.expected_end, |m| Value::TimestampMicros(m.0)),
            ),
            ("declared_by", string(&p.declared_by)),
        ]),
        Payload::ShockEnded(p) => record([
            ("shock_id", string(p.shock_id.as_str())),
            ("ended_at", Value::TimestampMicros(p.ended_at.0)),
        ]),
    })
}

pub(crate) fn member(m: &Member) -> Value {
    record([
        ("person_id", string(m.person_id.as_str())),
        ("given_name", string(&m.given_name)),
        ("family_name", string(&m.family_name)),
        ("sex", code(m.sex)),
        ("birth_date", Value::Date(m.birth_date.0)),
        ("relationship", code(m.relationship)),
        ("marital_status", code(m.marital_status)),
        ("education_level", code(m.education_level)),
        ("enrolled_in_school", Value::Boolean(m.enrolled_in_school)),
        ("employment", code(m.employment)),
        ("incomes", incomes(&m.incomes)),
        ("disability", optional(m.disability.as_ref(), disability)),
    ])
}

/// `Incomes` is a fixed array by source; its Avro form lists the sources with income, in
/// code-list order, as the serde form does.
pub(crate) fn incomes(incomes: &Incomes) -> Value {
    Value::Array(
        incomes
            .iter()
            .map(|(source, amount)| {
                record([
                    ("source", code(source)),
                    ("monthly_amount", Value::Double(amount)),
                ])
            })
            .collect(),
    )
}

pub(crate) fn disability(d: &Disability) -> Value {
    record([
        ("disability_type", code(d.disability_type)),
        ("severity", code(d.severity)),
    ])
}

pub(crate) fn dwelling(at: &str, d: &Dwelling) -> Result<Value, EncodeError> {
    Ok(record([
        ("wall_material", code(d.wall_material)),
        ("water_source", code(d.water_source)),
        ("sanitation", code(d.sanitation)),
        ("electricity", Value::Boolean(d.electricity)),
        ("rooms", int(&format!("{at}.rooms"), d.rooms)?),
        ("tenure", code(d.tenure)),
    ]))
}

pub(crate) fn assets(at: &str, a: &Assets) -> Result<Value, EncodeError> {
    Ok(record([
        ("land_hectares", Value::Double(a.land_hectares)),
        ("livestock_tlu", Value::Double(a.livestock_tlu)),
        (
            "mobile_phones",
            int(&format!("{at}.mobile_phones"), a.mobile_phones)?,
        ),
        ("radio", Value::Boolean(a.radio)),
        ("television", Value::Boolean(a.television)),
        ("refrigerator", Value::Boolean(a.refrigerator)),
        ("bicycle", Value::Boolean(a.bicycle)),
        ("motorcycle", Value::Boolean(a.motorcycle)),
        ("car", Value::Boolean(a.car)),
    ]))
}

pub(crate) fn record<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
    )
}

pub(crate) fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

/// `["null", T]`: branch 0 is null.
pub(crate) fn optional<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(f(v))),
    }
}

/// A code list value: the Avro enum's symbols are the code list's, in the same order (a test
/// checks it), so the index is the position in `ALL`.
pub(crate) fn code<C: CodeList + PartialEq>(c: C) -> Value {
    let index = C::ALL.iter().position(|x| *x == c).unwrap_or(0);
    Value::Enum(index as u32, c.symbol().to_string())
}

/// A `u32` as an Avro int.
pub(crate) fn int(field: &str, value: u32) -> Result<Value, EncodeError> {
    i32::try_from(value)
        .map(Value::Int)
        .map_err(|_| EncodeError::OutOfRange {
            field: field.to_string(),
            value: value.into(),
        })
}
