//! Avro value of the current `LifeEvent` schema → `Event`, field by field, with the path of
//! any field that does not fit (`payload.HouseholdRegistered.members[2].sex`).

use super::DecodeError;
use crate::schemas::{self, SchemaSet};
use apache_avro::schema::{ResolvedSchema, Schema, SchemaKind};
use apache_avro::types::Value;
use compact_str::CompactString;
use dsr_core::codes::*;
use dsr_core::event::*;
use dsr_core::household::{Assets, Disability, Dwelling, Incomes};
use dsr_core::ids::*;
use dsr_core::{CodeList, Envelope, Event, Member};

/// The event in an Avro value of the current `LifeEvent` schema (as decoded, after schema
/// resolution).
pub fn from_value(value: Value) -> Result<Event, DecodeError> {
    from_value_for(value, schemas::current())
}

pub(crate) fn from_value_for(value: Value, set: &SchemaSet) -> Result<Event, DecodeError> {
    let at = At::ROOT;
    let mut f = Fields::of(value, &at)?;
    let event_type = f.get("event_type", &at, symbol)?;
    let envelope = Envelope {
        event_id: f.get("event_id", &at, uuid)?,
        source_system: f.get("source_system", &at, compact)?,
        occurred_at: f.get("occurred_at", &at, micros)?,
        recorded_at: f.get("recorded_at", &at, micros)?,
        person_id: f.get("person_id", &at, |v, at| optional(v, at, id::<PersonId>))?,
        household_id: f.get("household_id", &at, |v, at| {
            optional(v, at, id::<HouseholdId>)
        })?,
        correlation_id: f.get("correlation_id", &at, |v, at| optional(v, at, uuid))?,
        schema_version: f.get("schema_version", &at, uint)?,
    };
    let payload = f.get("payload", &at, |v, at| {
        let (index, inner) = match v {
            Value::Union(i, inner) => (i as usize, *inner),
            other => return Err(shape(at, "a union of payload records", &other)),
        };
        let Some(name) = set.payload_types().get(index) else {
            return Err(shape(
                at,
                "a payload type of the current schema",
                &Value::Null,
            ));
        };
        if *name != event_type {
            if !EVENT_TYPES.contains(&event_type.as_str()) {
                return Err(DecodeError::UnknownSymbol {
                    field: "event_type".into(),
                    enum_name: "EventType".into(),
                    symbol: event_type.clone(),
                    known: EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
                });
            }
            return Err(DecodeError::EventTypeMismatch {
                event_type: event_type.clone(),
                payload: name.clone(),
            });
        }
        payload(name, inner, &at.field(name))
    })?;
    Ok(Event { envelope, payload })
}

fn payload(name: &str, v: Value, at: &At) -> Result<Payload, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(match name {
        "PersonBorn" => Payload::PersonBorn(PersonBorn {
            child: f.get("child", at, member)?,
            mother_id: f.get("mother_id", at, |v, at| optional(v, at, id))?,
            father_id: f.get("father_id", at, |v, at| optional(v, at, id))?,
        }),
        "PersonDied" => Payload::PersonDied(PersonDied {
            person_id: f.get("person_id", at, id)?,
            date_of_death: f.get("date_of_death", at, date)?,
        }),
        "MarriageRegistered" => Payload::MarriageRegistered(MarriageRegistered {
            person_id: f.get("person_id", at, id)?,
            spouse_id: f.get("spouse_id", at, id)?,
            date: f.get("date", at, date)?,
        }),
        "DivorceRegistered" => Payload::DivorceRegistered(DivorceRegistered {
            person_id: f.get("person_id", at, id)?,
            spouse_id: f.get("spouse_id", at, id)?,
            date: f.get("date", at, date)?,
        }),
        "PersonMoved" => Payload::PersonMoved(PersonMoved {
            person_id: f.get("person_id", at, id)?,
            from_household_id: f.get("from_household_id", at, id)?,
            to_household_id: f.get("to_household_id", at, id)?,
            founds_new_household: f.get("founds_new_household", at, boolean)?,
            new_area: f.get("new_area", at, id)?,
            relationship_in_new_household: f.get("relationship_in_new_household", at, code)?,
        }),
        "MemberJoined" => Payload::MemberJoined(MemberJoined {
            member: f.get("member", at, member)?,
            from_household_id: f.get("from_household_id", at, id)?,
            founds_new_household: f.get("founds_new_household", at, boolean)?,
            area: f.get("area", at, id)?,
            caused_by: f.get("caused_by", at, uuid)?,
        }),
        "HouseholdRegistered" => Payload::HouseholdRegistered(HouseholdRegistered {
            area: f.get("area", at, id)?,
            members: f.get("members", at, |v, at| list(v, at, member))?,
            dwelling: f.get("dwelling", at, dwelling)?,
            assets: f.get("assets", at, assets)?,
            registration_source: f.get("registration_source", at, code)?,
        }),
        "IncomeReported" => Payload::IncomeReported(IncomeReported {
            person_id: f.get("person_id", at, id)?,
            amount: f.get("amount", at, double)?,
            period: f.get("period", at, code)?,
            source: f.get("source", at, code)?,
        }),
        "EmploymentChanged" => Payload::EmploymentChanged(EmploymentChanged {
            person_id: f.get("person_id", at, id)?,
            status: f.get("status", at, code)?,
        }),
        "DisabilityAssessed" => Payload::DisabilityAssessed(DisabilityAssessed {
            person_id: f.get("person_id", at, id)?,
            disability_type: f.get("disability_type", at, code)?,
            severity: f.get("severity", at, code)?,
        }),
        "SchoolEnrollmentChanged" => Payload::SchoolEnrollmentChanged(SchoolEnrollmentChanged {
            person_id: f.get("person_id", at, id)?,
            enrolled: f.get("enrolled", at, boolean)?,
            education_level: f.get("education_level", at, code)?,
        }),
        "AssetsReported" => Payload::AssetsReported(AssetsReported {
            assets: f.get("assets", at, assets)?,
        }),
        "HouseholdShockReported" => Payload::HouseholdShockReported(HouseholdShockReported {
            hazard: f.get("hazard", at, code)?,
            damage: f.get("damage", at, code)?,
            estimated_loss: f.get("estimated_loss", at, double)?,
            shock_id: f.get("shock_id", at, |v, at| optional(v, at, id))?,
        }),
        "DataCorrection" => Payload::DataCorrection(DataCorrection {
            person_id: f.get("person_id", at, |v, at| optional(v, at, id))?,
            field: f.get("field", at, code)?,
            new_value: f.get("new_value", at, compact)?,
            reason: f.get("reason", at, string)?,
            caseworker_id: f.get("caseworker_id", at, compact)?,
        }),
        "ShockDeclared" => Payload::ShockDeclared(ShockDeclared {
            shock_id: f.get("shock_id", at, id)?,
            hazard: f.get("hazard", at, code)?,
            area_codes: f.get("area_codes", at, |v, at| list(v, at, id))?,
            severity: f.get("severity", at, code)?,
            indicator_name: f.get("indicator_name", at, compact)?,
            indicator_value: f.get("indicator_value", at, double)?,
            starts_at: f.get("starts_at", at, micros)?,
            expected_end: f.get("expected_end", at, |v, at| optional(v, at, micros))?,
            declared_by: f.get("declared_by", at, compact)?,
        }),
        "ShockEnded" => Payload::ShockEnded(ShockEnded {
            shock_id: f.get("shock_id", at, id)?,
            ended_at: f.get("ended_at", at, micros)?,
        }),
        other => {
            return Err(DecodeError::Shape {
                field: at.render(),
                expected: "a payload type dsr-core knows",
                found: format!("record {other}"),
            })
        }
    })
}

pub(crate) fn member(v: Value, at: &At) -> Result<Member, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(Member {
        person_id: f.get("person_id", at, id)?,
        given_name: f.get("given_name", at, compact)?,
        family_name: f.get("family_name", at, compact)?,
        sex: f.get("sex", at, code)?,
        birth_date: f.get("birth_date", at, date)?,
        relationship: f.get("relationship", at, code)?,
        marital_status: f.get("marital_status", at, code)?,
        education_level: f.get("education_level", at, code)?,
        enrolled_in_school: f.get("enrolled_in_school", at, boolean)?,
        employment: f.get("employment", at, code)?,
        incomes: f.get("incomes", at, incomes)?,
        disability: f.get("disability", at, |v, at| optional(v, at, disability))?,
    })
}

/// A list of `{source, monthly_amount}`; amounts of a source listed twice add up, as in the
/// serde form.
pub(crate) fn incomes(v: Value, at: &At) -> Result<Incomes, DecodeError> {
    let entries = list(v, at, |v, at| {
        let mut f = Fields::of(v, at)?;
        let source: IncomeSource = f.get("source", at, code)?;
        let amount = f.get("monthly_amount", at, double)?;
        Ok((source, amount))
    })?;
    let mut incomes = Incomes::default();
    for (source, amount) in entries {
        incomes.set(source, incomes.get(source) + amount);
    }
    Ok(incomes)
}

pub(crate) fn disability(v: Value, at: &At) -> Result<Disability, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(Disability {
        disability_type: f.get("disability_type", at, code)?,
        severity: f.get("severity", at, code)?,
    })
}

pub(crate) fn dwelling(v: Value, at: &At) -> Result<Dwelling, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(Dwelling {
        wall_material: f.get("wall_material", at, code)?,
        water_source: f.get("water_source", at, code)?,
        sanitation: f.get("sanitation", at, code)?,
        electricity: f.get("electricity", at, boolean)?,
        rooms: f.get("rooms", at, uint)?,
        tenure: f.get("tenure", at, code)?,
    })
}

pub(crate) fn assets(v: Value, at: &At) -> Result<Assets, DecodeError> {
    let mut f = Fields::of(v, at)?;
    Ok(Assets {
        land_hectares: f.get("land_hectares", at, double)?,
        livestock_tlu: f.get("livestock_tlu", at, double)?,
        mobile_phones: f.get("mobile_phones", at, uint)?,
        radio: f.get("radio", at, boolean)?,
        television: f.get("television", at, boolean)?,
        refrigerator: f.get("refrigerator", at, boolean)?,
        bicycle: f.get("bicycle", at, boolean)?,
        motorcycle: f.get("motorcycle", at, boolean)?,
        car: f.get("car", at, boolean)?,
    })
}

// ---- leaves -------------------------------------------------------------------------------

pub(crate) fn string(v: Value, at: &At) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(shape(at, "a string", &other)),
    }
}

pub(crate) fn compact(v: Value, at: &At) -> Result<CompactString, DecodeError> {
    string(v, at).map(CompactString::from)
}

/// The string ids of dsr-core (`PersonId`, `HouseholdId`, `AreaCode`, `ShockId`).
pub(crate) fn id<T: IdFromString>(v: Value, at: &At) -> Result<T, DecodeError> {
    compact(v, at).map(T::from_compact)
}

/// Builds a string id from its text without copying it again.
pub(crate) trait IdFromString {
    fn from_compact(s: CompactString) -> Self;
}

macro_rules! id_from_string {
    ($($t:ty),+) => {$(
        impl IdFromString for $t {
            fn from_compact(s: CompactString) -> Self {
                Self(s)
            }
        }
    )+};
}
id_from_string!(PersonId, HouseholdId, AreaCode, ShockId);

pub(crate) fn boolean(v: Value, at: &At) -> Result<bool, DecodeError> {
    match v {
        Value::Boolean(b) => Ok(b),
        other => Err(shape(at, "a boolean", &other)),
    }
}

pub(crate) fn double(v: Value, at: &At) -> Result<f64, DecodeError> {
    match v {
        Value::Double(d) => Ok(d),
        other => Err(shape(at, "a double", &other)),
    }
}

/// An Avro int holding a `u32`.
pub(crate) fn uint(v: Value, at: &At) -> Result<u32, DecodeError> {
    match v {
        Value::Int(i) => u32::try_from(i).map_err(|_| DecodeError::OutOfRange {
            field: at.render(),
            value: i.into(),
        }),
        other => Err(shape(at, "an int", &other)),
    }
}

pub(crate) fn date(v: Value, at: &At) -> Result<Date, DecodeError> {
    match v {
        Value::Date(d) => Ok(Date(d)),
        other => Err(shape(at, "a date", &other)),
    }
}

pub(crate) fn micros(v: Value, at: &At) -> Result<Micros, DecodeError> {
    match v {
        Value::TimestampMicros(t) => Ok(Micros(t)),
        other => Err(shape(at, "a timestamp-micros", &other)),
    }
}

pub(crate) fn uuid(v: Value, at: &At) -> Result<uuid::Uuid, DecodeError> {
    match v {
        Value::Uuid(u) => Ok(u),
        other => Err(shape(at, "a uuid", &other)),
    }
}

pub(crate) fn symbol(v: Value, at: &At) -> Result<String, DecodeError> {
    match v {
        Value::Enum(_, s) => Ok(s),
        other => Err(shape(at, "an enum symbol", &other)),
    }
}

/// A code-list value, by symbol (not by index, so a reordered enum cannot shift meanings).
pub(crate) fn code<C: CodeList>(v: Value, at: &At) -> Result<C, DecodeError> {
    let s = symbol(v, at)?;
    C::from_symbol(&s).ok_or_else(|| DecodeError::UnknownSymbol {
        field: at.render(),
        enum_name: C::NAME.into(),
        symbol: s,
        known: C::symbols().into_iter().map(String::from).collect(),
    })
}

/// `["null", T]`.
pub(crate) fn optional<T>(
    v: Value,
    at: &At,
    f: impl FnOnce(Value, &At) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match v {
        Value::Union(_, inner) => match *inner {
            Value::Null => Ok(None),
            inner => f(inner, at).map(Some),
        },
        Value::Null => Ok(None),
        other => Err(shape(at, "a union of null and a value", &other)),
    }
}

pub(crate) fn list<T>(
    v: Value,
    at: &At,
    mut f: impl FnMut(Value, &At) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| f(item, &at.index(i)))
            .collect(),
        other => Err(shape(at, "an array", &other)),
    }
}

pub(crate) fn shape(at: &At, expected: &'static str, found: &Value) -> DecodeError {
    DecodeError::Shape {
        field: at.render(),
        expected,
        found: format!("{:?}", SchemaKind::from(found)).to_lowercase(),
    }
}

// ---- records and paths --------------------------------------------------------------------

/// A decoded record's fields, taken out by name.
pub(crate) struct Fields(Vec<(String, Value)>);

impl Fields {
    pub(crate) fn of(v: Value, at: &At) -> Result<Self, DecodeError> {
        match v {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(shape(at, "a record", &other)),
        }
    }

    /// Takes field `name` and converts it with `f`, which gets the field's path.
    pub(crate) fn get<T>(
        &mut self,
        name: &str,
        at: &At,
        f: impl FnOnce(Value, &At) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let at = at.field(name);
        let value = self
            .0
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::mem::replace(v, Value::Null))
            .ok_or_else(|| DecodeError::MissingField { field: at.render() })?;
        f(value, &at)
    }
}

/// Where a value is, as a linked list of path segments on the stack; rendered only for errors.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    parent: Option<&'a At<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Field(&'a str),
    Index(usize),
}

impl<'a> At<'a> {
    pub(crate) const ROOT: At<'static> = At {
        parent: None,
        segment: Segment::Root,
    };

    pub(crate) fn field(&'a self, name: &'a str) -> At<'a> {
        At {
            parent: Some(self),
            segment: Segment::Field(name),
        }
    }

    pub(crate) fn index(&'a self, i: usize) -> At<'a> {
        At {
            parent: Some(self),
            segment: Segment::Index(i),
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut at = Some(self);
        while let Some(a) = at {
            segments.push(a.segment);
            at = a.parent;
        }
        let mut out = String::new();
        for s in segments.into_iter().rev() {
            match s {
                Segment::Root => {}
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

// ---- diagnosis ----------------------------------------------------------------------------

/// When schema resolution failed: the first enum symbol in `value` (decoded with the writer's
/// schema) that the reader's enum of the same name lacks and has no default for.
pub(crate) fn unknown_symbol(
    value: &Value,
    writer_schema: &Schema,
    reader: &SchemaSet,
) -> Option<DecodeError> {
    let resolved = ResolvedSchema::try_from(writer_schema).ok()?;
    find_symbol(value, writer_schema, &resolved, reader, &At::ROOT)
}

fn find_symbol(
    value: &Value,
    schema: &Schema,
    names: &ResolvedSchema<'_>,
    reader: &SchemaSet,
    at: &At,
) -> Option<DecodeError> {
    match (schema, value) {
        (Schema::Ref { name }, _) => {
            let schema = names.get_names().get(name)?;
            find_symbol(value, schema, names, reader, at)
        }
        (Schema::Record(r), Value::Record(fields)) => {
            r.fields.iter().zip(fields).find_map(|(field, (_, v))| {
                find_symbol(v, &field.schema, names, reader, &at.field(&field.name))
            })
        }
        (Schema::Union(u), Value::Union(i, inner)) => {
            let branch = u.variants().get(*i as usize)?;
            let non_null = u
                .variants()
                .iter()
                .filter(|v| !matches!(v, Schema::Null))
                .count();
            match branch.name() {
                Some(name) if non_null > 1 => {
                    find_symbol(inner, branch, names, reader, &at.field(name.name()))
                }
                _ => find_symbol(inner, branch, names, reader, at),
            }
        }
        (Schema::Array(a), Value::Array(items)) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_symbol(item, &a.items, names, reader, &at.index(i))),
        (Schema::Enum(e), Value::Enum(_, symbol)) => {
            let Some(Schema::Enum(known)) = reader.get(&e.name.fullname(None)) else {
                return None;
            };
            (!known.symbols.contains(symbol) && known.default.is_none()).then(|| {
                DecodeError::UnknownSymbol {
                    field: at.render(),
                    enum_name: known.name.name().to_string(),
                    symbol: symbol.clone(),
                    known: known.symbols.clone(),
                }
            })
        }
        _ => None,
    }
}
