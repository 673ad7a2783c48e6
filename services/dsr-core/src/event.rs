//! Life events: the envelope every event carries and one payload per kind of event.
//!
//! These types mirror `schemas/*.avsc` field for field; `dsr-contracts` converts between them
//! and Avro. The JSON form (serde) is the one `dsr publish` and the HTTP API accept.

use crate::codes::*;
use crate::household::{Assets, Dwelling, Member};
use crate::ids::*;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Current version of the event contracts; the envelope's `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// Metadata every life event carries, whatever its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; the reducer ignores an id it has already applied.
    pub event_id: EventId,
    /// The system that published the event (`crvs`, `id-authority`, `tax`, ...).
    pub source_system: CompactString,
    /// When the event happened in the world.
    pub occurred_at: Micros,
    /// When the source system recorded it.
    pub recorded_at: Micros,
    /// The person the event is about, if any.
    #[serde(default)]
    pub person_id: Option<PersonId>,
    /// The household the event is about, if any. Person events without it are routed
    /// through the person→household index.
    #[serde(default)]
    pub household_id: Option<HouseholdId>,
    /// Ties together events caused by one real-world transaction.
    #[serde(default)]
    pub correlation_id: Option<EventId>,
    /// Version of the contracts the producer used.
    pub schema_version: u32,
}

/// A life event: envelope plus payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub payload: Payload,
}

/// What happened. The JSON form is `"event_type": "<variant>", "payload": {...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum Payload {
    PersonBorn(PersonBorn),
    PersonDied(PersonDied),
    MarriageRegistered(MarriageRegistered),
    DivorceRegistered(DivorceRegistered),
    PersonMoved(PersonMoved),
    MemberJoined(MemberJoined),
    HouseholdRegistered(HouseholdRegistered),
    IncomeReported(IncomeReported),
    EmploymentChanged(EmploymentChanged),
    DisabilityAssessed(DisabilityAssessed),
    SchoolEnrollmentChanged(SchoolEnrollmentChanged),
    AssetsReported(AssetsReported),
    HouseholdShockReported(HouseholdShockReported),
    DataCorrection(DataCorrection),
    ShockDeclared(ShockDeclared),
    ShockEnded(ShockEnded),
}

/// The kinds of event, by name (the envelope's `event_type`).
pub const EVENT_TYPES: &[&str] = &[
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
];

impl Payload {
    /// The admin areas the event names itself (a registration's location, a move's
    /// destination, a shock's affected areas). Access control checks a source system's area
    /// scope against these; events about a person name no area (their household's area is
    /// known only once routed).
    pub fn areas(&self) -> Vec<&AreaCode> {
        match self {
            Payload::PersonMoved(m) => vec![&m.new_area],
            Payload::MemberJoined(j) => vec![&j.area],
            Payload::HouseholdRegistered(r) => vec![&r.area],
            Payload::ShockDeclared(s) => s.area_codes.iter().collect(),
            _ => Vec::new(),
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            Payload::PersonBorn(_) => "PersonBorn",
            Payload::PersonDied(_) => "PersonDied",
            Payload::MarriageRegistered(_) => "MarriageRegistered",
            Payload::DivorceRegistered(_) => "DivorceRegistered",
            Payload::PersonMoved(_) => "PersonMoved",
            Payload::MemberJoined(_) => "MemberJoined",
            Payload::HouseholdRegistered(_) => "HouseholdRegistered",
            Payload::IncomeReported(_) => "IncomeReported",
            Payload::EmploymentChanged(_) => "EmploymentChanged",
            Payload::DisabilityAssessed(_) => "DisabilityAssessed",
            Payload::SchoolEnrollmentChanged(_) => "SchoolEnrollmentChanged",
            Payload::AssetsReported(_) => "AssetsReported",
            Payload::HouseholdShockReported(_) => "HouseholdShockReported",
            Payload::DataCorrection(_) => "DataCorrection",
            Payload::ShockDeclared(_) => "ShockDeclared",
            Payload::ShockEnded(_) => "ShockEnded",
        }
    }

    /// Area-wide events are about areas, not one household; the scale-up processor takes them.
    pub fn is_area_event(&self) -> bool {
        matches!(self, Payload::ShockDeclared(_) | Payload::ShockEnded(_))
    }
}

/// A live birth registered by civil registration. The child joins the household named in
/// the envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersonBorn {
    pub child: Member,
    #[serde(default)]
    pub mother_id: Option<PersonId>,
    #[serde(default)]
    pub father_id: Option<PersonId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersonDied {
    pub person_id: PersonId,
    pub date_of_death: Date,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarriageRegistered {
    pub person_id: PersonId,
    pub spouse_id: PersonId,
    pub date: Date,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DivorceRegistered {
    pub person_id: PersonId,
    pub spouse_id: PersonId,
    pub date: Date,
}

/// A person leaves `from_household_id` and joins `to_household_id`, which is founded by the
/// move when `founds_new_household` is set. The event goes to the household being left; the
/// reducer answers with a [`crate::Effect::JoinHousehold`] for the other one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersonMoved {
    pub person_id: PersonId,
    pub from_household_id: HouseholdId,
    pub to_household_id: HouseholdId,
    pub founds_new_household: bool,
    /// Where the household joined lives (for a founded household, its first address).
    pub new_area: AreaCode,
    pub relationship_in_new_household: Relationship,
}

/// The receiving household's side of a move. dsr derives it from [`PersonMoved`] with a
/// deterministic id; source systems do not publish it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberJoined {
    pub member: Member,
    pub from_household_id: HouseholdId,
    pub founds_new_household: bool,
    pub area: AreaCode,
    /// The move event this was derived from.
    pub caused_by: EventId,
}

/// A household registered or re-surveyed: replaces the household's record as a whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HouseholdRegistered {
    pub area: AreaCode,
    pub members: Vec<Member>,
    pub dwelling: Dwelling,
    pub assets: Assets,
    pub registration_source: RegistrationSource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncomeReported {
    pub person_id: PersonId,
    /// Amount in the national currency's main unit for `period`; replaces earlier income from
    /// the same source.
    pub amount: f64,
    pub period: IncomePeriod,
    pub source: IncomeSource,
}

impl IncomeReported {
    pub fn monthly_amount(&self) -> f64 {
        match self.period {
            IncomePeriod::Monthly => self.amount,
            IncomePeriod::Quarterly => self.amount / 3.0,
            IncomePeriod::Annual => self.amount / 12.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmploymentChanged {
    pub person_id: PersonId,
    pub status: EmploymentStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisabilityAssessed {
    pub person_id: PersonId,
    pub disability_type: DisabilityType,
    pub severity: DisabilitySeverity,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchoolEnrollmentChanged {
    pub person_id: PersonId,
    pub enrolled: bool,
    /// Highest level attained so far.
    pub education_level: EducationLevel,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetsReported {
    pub assets: Assets,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HouseholdShockReported {
    pub hazard: HazardType,
    pub damage: DamageLevel,
    /// Estimated loss in the national currency's main unit.
    pub estimated_loss: f64,
    /// The area-wide shock this damage belongs to, if declared.
    #[serde(default)]
    pub shock_id: Option<ShockId>,
}

/// A caseworker's correction of one field, with the reason. `person_id` names the member;
/// without it the field is a household field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataCorrection {
    #[serde(default)]
    pub person_id: Option<PersonId>,
    pub field: CorrectableField,
    /// The new value as text: a date `YYYY-MM-DD`, a code symbol, a number, `true`/`false`.
    pub new_value: CompactString,
    pub reason: String,
    pub caseworker_id: CompactString,
}

/// An authority declares an area-wide shock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShockDeclared {
    pub shock_id: ShockId,
    pub hazard: HazardType,
    pub area_codes: Vec<AreaCode>,
    pub severity: ShockSeverity,
    /// E.g. `vci` (vegetation condition index), `rainfall_anomaly_pct`, `flood_depth_m`.
    pub indicator_name: CompactString,
    pub indicator_value: f64,
    pub starts_at: Micros,
    #[serde(default)]
    pub expected_end: Option<Micros>,
    pub declared_by: CompactString,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShockEnded {
    pub shock_id: ShockId,
    pub ended_at: Micros,
}

/// Why an event is not acceptable, whatever the state of the registry.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidEvent {
    #[error("`{field}` is required for {event_type} events")]
    Missing {
        event_type: &'static str,
        field: &'static str,
    },
    #[error("`{field}` is {value}, but it must be a finite number >= 0")]
    NegativeOrNotFinite { field: &'static str, value: f64 },
    #[error("`{field}` ({date}) is after the event occurred ({occurred})")]
    DateAfterEvent {
        field: &'static str,
        date: Date,
        occurred: Date,
    },
    #[error("occurred_at is {by_seconds}s in the future of the receiving clock; check the source system's clock")]
    InTheFuture { by_seconds: i64 },
    #[error("`{field}` value `{value}` is not a well-formed area code path like R01.D03.S12.V045")]
    BadAreaCode { field: &'static str, value: String },
    #[error("`{field}` ({value}) is outside the years 1800 to 9999 dsr accepts; check the source system's date handling")]
    OutOfRange { field: &'static str, value: String },
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error(
        "schema_version {0} is newer than this dsr understands ({SCHEMA_VERSION}); upgrade dsr"
    )]
    NewerSchema(u32),
    #[error("{0}")]
    Inconsistent(String),
}

/// Clock skew tolerated between a source system and dsr before an event counts as "in the
/// future".
pub const MAX_CLOCK_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;

impl Event {
    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    /// Checks what can be checked without the registry: required subjects, numbers, dates,
    /// area codes. `now` is the receiving clock, passed in so the core never reads one.
    pub fn validate(&self, now: Micros) -> Result<(), InvalidEvent> {
        let env = &self.envelope;
        let et = self.event_type();
        if env.schema_version > SCHEMA_VERSION {
            return Err(InvalidEvent::NewerSchema(env.schema_version));
        }
        if env.source_system.is_empty() {
            return Err(InvalidEvent::Empty {
                field: "source_system",
            });
        }
        // An id that is present must name something: an empty one would be a household or
        // person nobody can ever be (and an empty store key).
        if env.household_id.as_ref().is_some_and(|h| h.0.is_empty()) {
            return Err(InvalidEvent::Empty {
                field: "household_id",
            });
        }
        if env.person_id.as_ref().is_some_and(|p| p.0.is_empty()) {
            return Err(InvalidEvent::Empty { field: "person_id" });
        }
        if env.occurred_at.0 > now.0 + MAX_CLOCK_SKEW_MICROS {
            return Err(InvalidEvent::InTheFuture {
                by_seconds: (env.occurred_at.0 - now.0) / 1_000_000,
            });
        }
        // Four-digit years only: the JSON and text forms are ISO 8601 dates and times.
        let min = Date::from_ymd(1800, 1, 1);
        let max = Date::from_ymd(9999, 12, 31);
        let in_range = |field: &'static str, d: Date, shown: String| {
            if d < min || d > max {
                Err(InvalidEvent::OutOfRange {
                    field,
                    value: shown,
                })
            } else {
                Ok(())
            }
        };
        in_range(
            "occurred_at",
            env.occurred_at.date(),
            env.occurred_at.0.to_string(),
        )?;
        in_range(
            "recorded_at",
            env.recorded_at.date(),
            env.recorded_at.0.to_string(),
        )?;
        let occurred = env.occurred_at.date();
        let not_after = |field: &'static str, date: Date| {
            in_range(field, date, date.0.to_string())?;
            if date > occurred {
                Err(InvalidEvent::DateAfterEvent {
                    field,
                    date,
                    occurred,
                })
            } else {
                Ok(())
            }
        };
        let amount = |field: &'static str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(InvalidEvent::NegativeOrNotFinite { field, value })
            }
        };
        let area = |field: &'static str, code: &AreaCode| {
            if code.is_well_formed() {
                Ok(())
            } else {
                Err(InvalidEvent::BadAreaCode {
                    field,
                    value: code.to_string(),
                })
            }
        };
        let needs_household = || {
            env.household_id
                .as_ref()
                .filter(|h| !h.0.is_empty())
                .map(|_| ())
                .ok_or(InvalidEvent::Missing {
                    event_type: et,
                    field: "household_id",
                })
        };
        let check_member = |m: &Member| -> Result<(), InvalidEvent> {
            if m.person_id.0.is_empty() {
                return Err(InvalidEvent::Empty {
                    field: "member.person_id",
                });
            }
            not_after("member.birth_date", m.birth_date)?;
            for (_, v) in m.incomes.iter() {
                amount("member.incomes.monthly_amount", v)?;
            }
            Ok(())
        };
        match &self.payload {
            Payload::PersonBorn(p) => {
                needs_household()?;
                check_member(&p.child)?;
            }
            Payload::PersonDied(p) => not_after("date_of_death", p.date_of_death)?,
            Payload::MarriageRegistered(MarriageRegistered {
                person_id,
                spouse_id,
                date,
            })
            | Payload::DivorceRegistered(DivorceRegistered {
                person_id,
                spouse_id,
                date,
            }) => {
                not_after("date", *date)?;
                if person_id == spouse_id {
                    return Err(InvalidEvent::Inconsistent(format!(
                        "person_id and spouse_id are both {person_id}"
                    )));
                }
            }
            Payload::PersonMoved(p) => {
                area("new_area", &p.new_area)?;
                if p.from_household_id == p.to_household_id {
                    return Err(InvalidEvent::Inconsistent(format!(
                        "a move from household {} to itself",
                        p.from_household_id
                    )));
                }
            }
            Payload::MemberJoined(p) => {
                needs_household()?;
                area("area", &p.area)?;
                check_member(&p.member)?;
            }
            Payload::HouseholdRegistered(p) => {
                needs_household()?;
                area("area", &p.area)?;
                if p.members.is_empty() {
                    return Err(InvalidEvent::Empty { field: "members" });
                }
                for m in &p.members {
                    check_member(m)?;
                }
                p.assets.validate()?;
            }
            Payload::IncomeReported(p) => amount("amount", p.amount)?,
            Payload::AssetsReported(p) => {
                needs_household()?;
                p.assets.validate()?;
            }
            Payload::HouseholdShockReported(p) => {
                needs_household()?;
                amount("estimated_loss", p.estimated_loss)?;
            }
            Payload::DataCorrection(p) => {
                if p.reason.trim().is_empty() {
                    return Err(InvalidEvent::Empty { field: "reason" });
                }
                if p.person_id.is_none() {
                    needs_household()?;
                }
            }
            Payload::ShockDeclared(p) => {
                if p.area_codes.is_empty() {
                    return Err(InvalidEvent::Empty {
                        field: "area_codes",
                    });
                }
                for a in &p.area_codes {
                    area("area_codes", a)?;
                }
                if !p.indicator_value.is_finite() {
                    return Err(InvalidEvent::NegativeOrNotFinite {
                        field: "indicator_value",
                        value: p.indicator_value,
                    });
                }
                if let Some(end) = p.expected_end {
                    if end < p.starts_at {
                        return Err(InvalidEvent::Inconsistent(
                            "expected_end is before starts_at".into(),
                        ));
                    }
                }
            }
            Payload::EmploymentChanged(_)
            | Payload::DisabilityAssessed(_)
            | Payload::SchoolEnrollmentChanged(_)
            | Payload::ShockEnded(_) => {}
        }
        Ok(())
    }

    /// The person the event is about: the envelope's, or the payload's.
    pub fn subject_person(&self) -> Option<&PersonId> {
        let from_payload = match &self.payload {
            Payload::PersonDied(p) => Some(&p.person_id),
            Payload::MarriageRegistered(p) => Some(&p.person_id),
            Payload::DivorceRegistered(p) => Some(&p.person_id),
            Payload::PersonMoved(p) => Some(&p.person_id),
            Payload::IncomeReported(p) => Some(&p.person_id),
            Payload::EmploymentChanged(p) => Some(&p.person_id),
            Payload::DisabilityAssessed(p) => Some(&p.person_id),
            Payload::SchoolEnrollmentChanged(p) => Some(&p.person_id),
            Payload::DataCorrection(p) => p.person_id.as_ref(),
            Payload::PersonBorn(p) => Some(&p.child.person_id),
            Payload::MemberJoined(p) => Some(&p.member.person_id),
            _ => None,
        };
        from_payload.or(self.envelope.person_id.as_ref())
    }
}

#[cfg(test)]
mod validation_tests {
    use super::*;

    fn income(household_id: &str, person_id: &str) -> Event {
        serde_json::from_str(&format!(
            r#"{{"event_id":"85b8efd2-bd30-8c30-93c8-080b8b25f9d0","source_system":"tax",
            "occurred_at":"2026-02-20T03:09:43Z","recorded_at":"2026-02-23T00:01:08Z",
            "person_id":"{person_id}","household_id":"{household_id}","correlation_id":null,
            "schema_version":1,"event_type":"IncomeReported","payload":{{"person_id":"P1",
            "amount":1308.0,"period":"annual","source":"agriculture"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn an_id_that_is_present_but_empty_is_refused_by_name() {
        let now = Micros(i64::MAX / 2);
        assert!(income("H1", "P1").validate(now).is_ok());
        assert!(matches!(
            income("", "P1").validate(now),
            Err(InvalidEvent::Empty {
                field: "household_id"
            })
        ));
        assert!(matches!(
            income("H1", "").validate(now),
            Err(InvalidEvent::Empty { field: "person_id" })
        ));
    }
}
