//! The household reducer: `apply(household, event) -> (household, effects)`.
//!
//! Rules the rest of dsr relies on:
//! - **Deterministic**: the result depends only on the household and the event.
//! - **Idempotent per `event_id`**: an event whose id is among the household's recently
//!   applied ids changes nothing (`Applied::duplicate` says so).
//! - **Typed errors, never panics**, for events that do not fit the record: unknown household,
//!   unknown member, a birth of a person already registered.
//! - **Late events** (an `occurred_at` earlier than one already applied) are applied in arrival
//!   order and counted in `late_events`; `Applied::late` marks them.
//! - **Head succession** (when the head dies or leaves): the head's spouse if one is in the
//!   household; otherwise the oldest member aged 18 or more; otherwise the oldest member. Ties
//!   go to the smaller person id, so the choice is deterministic.
//! - **Moves** are applied to the household being left; an [`Effect::JoinHousehold`] carries
//!   the member to the other household, where [`Effect::to_event`] turns it into a
//!   `MemberJoined` event with an id derived from the move's, so both records stay consistent
//!   and a replay produces the same id.

use crate::codes::*;
use crate::event::*;
use crate::household::{Disability, Household, Member, ShockDamage, RECENT_EVENTS};
use crate::ids::*;
use compact_str::CompactString;

/// What applying an event asks of the rest of the system.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Another household must take in a member: the receiving side of a move.
    JoinHousehold {
        household_id: HouseholdId,
        member: Member,
        from_household_id: HouseholdId,
        founds_new_household: bool,
        area: AreaCode,
    },
}

impl Effect {
    /// The event that carries this effect to its household, with an id derived from the
    /// causing event's id (same cause, same id: safe to produce again after a crash).
    pub fn to_event(&self, cause: &Event) -> Event {
        match self {
            Effect::JoinHousehold {
                household_id,
                member,
                from_household_id,
                founds_new_household,
                area,
            } => Event {
                envelope: Envelope {
                    event_id: derived_id(&cause.envelope.event_id, "member-joined"),
                    source_system: CompactString::const_new("dsr"),
                    occurred_at: cause.envelope.occurred_at,
                    recorded_at: cause.envelope.recorded_at,
                    person_id: Some(member.person_id.clone()),
                    household_id: Some(household_id.clone()),
                    correlation_id: Some(
                        cause
                            .envelope
                            .correlation_id
                            .unwrap_or(cause.envelope.event_id),
                    ),
                    schema_version: SCHEMA_VERSION,
                },
                payload: Payload::MemberJoined(MemberJoined {
                    member: member.clone(),
                    from_household_id: from_household_id.clone(),
                    founds_new_household: *founds_new_household,
                    area: area.clone(),
                    caused_by: cause.envelope.event_id,
                }),
            },
        }
    }
}

/// Why an event could not be applied to a household. The pipeline dead-letters or parks the
/// event with this reason; the household is unchanged.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApplyError {
    #[error("household {household_id} is not registered; a {event_type} event needs a registered household (register it with HouseholdRegistered first)")]
    UnknownHousehold {
        household_id: HouseholdId,
        event_type: &'static str,
    },
    #[error("person {person_id} is not a member of household {household_id}; check the person id or route the event through the person index")]
    UnknownPerson {
        person_id: PersonId,
        household_id: HouseholdId,
    },
    #[error("person {person_id} is already a member of household {household_id}; a birth or join must name a new person")]
    DuplicatePerson {
        person_id: PersonId,
        household_id: HouseholdId,
    },
    #[error(
        "{event_type} is an area-wide event; it goes to the scale-up processor, not to a household"
    )]
    NotAHouseholdEvent { event_type: &'static str },
    #[error(
        "the event names household {event_household} but was applied to household {household_id}"
    )]
    WrongHousehold {
        event_household: HouseholdId,
        household_id: HouseholdId,
    },
    #[error("a {event_type} event must name its person (person_id)")]
    MissingPerson { event_type: &'static str },
    #[error("correction of `{field}` to `{value}` is not valid: {reason}")]
    BadCorrection {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// The result of applying one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub household: Household,
    pub effects: Vec<Effect>,
    /// The event had already been applied; `household` is the input, unchanged.
    pub duplicate: bool,
    /// The event is older than one already applied.
    pub late: bool,
}

/// The household an event is addressed to: the envelope's, or for a move the household being
/// left. `None` for person events that must be routed through the person index.
pub fn target_household(event: &Event) -> Option<&HouseholdId> {
    match &event.payload {
        Payload::PersonMoved(p) => Some(&p.from_household_id),
        _ => event.envelope.household_id.as_ref(),
    }
}

/// What applying an event did, besides changing the household.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    /// The event had already been applied; the household is unchanged.
    pub duplicate: bool,
    /// The event is older than one already applied.
    pub late: bool,
}

/// Applies `event` to `state` (`None`: the household is not registered yet) and returns the
/// new record; `state` is left as it is.
pub fn apply(state: Option<&Household>, event: &Event) -> Result<Applied, ApplyError> {
    let mut h = match state {
        Some(h) => h.clone(),
        None => new_household_for(event)?,
    };
    let out = apply_to(&mut h, event)?;
    Ok(Applied {
        household: h,
        effects: out.effects,
        duplicate: out.duplicate,
        late: out.late,
    })
}

/// The blank record a household-creating event (`HouseholdRegistered`, or `MemberJoined` that
/// founds a household) starts from; any other event needs a registered household.
pub fn new_household_for(event: &Event) -> Result<Household, ApplyError> {
    let household_id = target_household(event).cloned().unwrap_or_default();
    match &event.payload {
        Payload::HouseholdRegistered(p) => Ok(Household::new(household_id, p.area.clone())),
        Payload::MemberJoined(p) if p.founds_new_household => {
            Ok(Household::new(household_id, p.area.clone()))
        }
        _ => Err(ApplyError::UnknownHousehold {
            household_id,
            event_type: event.event_type(),
        }),
    }
}

/// Applies `event` to `h` in place: the same rules as [`apply`], without copying the record.
/// On error `h` is exactly as it was: every arm finishes its checks before its first change
/// (a property test holds it to that).
pub fn apply_to(h: &mut Household, event: &Event) -> Result<Outcome, ApplyError> {
    let event_type = event.event_type();
    if event.payload.is_area_event() {
        return Err(ApplyError::NotAHouseholdEvent { event_type });
    }
    if let Some(target) = target_household(event) {
        if *target != h.household_id {
            return Err(ApplyError::WrongHousehold {
                event_household: target.clone(),
                household_id: h.household_id.clone(),
            });
        }
    }
    if h.has_applied(&event.envelope.event_id) {
        return Ok(Outcome {
            effects: Vec::new(),
            duplicate: true,
            late: false,
        });
    }
    let mut effects = Vec::new();
    let late = h.version > 0 && event.envelope.occurred_at < h.as_of;
    let hid = h.household_id.clone();
    let unknown_person = |p: &PersonId| ApplyError::UnknownPerson {
        person_id: p.clone(),
        household_id: hid.clone(),
    };

    match &event.payload {
        Payload::HouseholdRegistered(p) => {
            h.area = p.area.clone();
            h.members = p.members.clone();
            h.members.sort_by(|a, b| a.person_id.cmp(&b.person_id));
            h.members.dedup_by(|a, b| a.person_id == b.person_id);
            h.dwelling = Some(p.dwelling);
            h.assets = p.assets;
            ensure_one_head(h);
        }
        Payload::PersonBorn(p) => {
            if h.member(&p.child.person_id).is_some() {
                return Err(ApplyError::DuplicatePerson {
                    person_id: p.child.person_id.clone(),
                    household_id: hid,
                });
            }
            let mut child = p.child.clone();
            if child.relationship == Relationship::Head && h.head().is_some() {
                child.relationship = Relationship::Child;
            }
            h.upsert_member(child);
        }
        Payload::PersonDied(p) => {
            let died = h
                .remove_member(&p.person_id)
                .ok_or_else(|| unknown_person(&p.person_id))?;
            // The surviving partner of the head couple is widowed (spouses are recorded by
            // their relationship to the head).
            let partner = match died.relationship {
                Relationship::Head => Some(Relationship::Spouse),
                Relationship::Spouse => Some(Relationship::Head),
                _ => None,
            };
            if let Some(partner) = partner {
                for m in h.members.iter_mut() {
                    if m.relationship == partner && m.marital_status == MaritalStatus::Married {
                        m.marital_status = MaritalStatus::Widowed;
                    }
                }
            }
        }
        Payload::MarriageRegistered(p) => {
            set_marital(h, &p.person_id, &p.spouse_id, MaritalStatus::Married)
                .map_err(|id| unknown_person(&id))?;
        }
        Payload::DivorceRegistered(p) => {
            set_marital(h, &p.person_id, &p.spouse_id, MaritalStatus::Divorced)
                .map_err(|id| unknown_person(&id))?;
        }
        Payload::PersonMoved(p) => {
            let mut mover = h
                .remove_member(&p.person_id)
                .ok_or_else(|| unknown_person(&p.person_id))?;
            mover.relationship = if p.founds_new_household {
                Relationship::Head
            } else {
                p.relationship_in_new_household
            };
            effects.push(Effect::JoinHousehold {
                household_id: p.to_household_id.clone(),
                member: mover,
                from_household_id: h.household_id.clone(),
                founds_new_household: p.founds_new_household,
                area: p.new_area.clone(),
            });
        }
        Payload::MemberJoined(p) => {
            if h.member(&p.member.person_id).is_some() {
                return Err(ApplyError::DuplicatePerson {
                    person_id: p.member.person_id.clone(),
                    household_id: hid,
                });
            }
            let mut member = p.member.clone();
            if member.relationship == Relationship::Head && h.head().is_some() {
                member.relationship = Relationship::OtherRelative;
            }
            if h.members.is_empty() {
                member.relationship = Relationship::Head;
                h.area = p.area.clone();
            }
            h.upsert_member(member);
        }
        Payload::IncomeReported(p) => {
            let m = h
                .member_mut(&p.person_id)
                .ok_or_else(|| unknown_person(&p.person_id))?;
            m.incomes.set(p.source, p.monthly_amount());
        }
        Payload::EmploymentChanged(p) => {
            h.member_mut(&p.person_id)
                .ok_or_else(|| unknown_person(&p.person_id))?
                .employment = p.status;
        }
        Payload::DisabilityAssessed(p) => {
            h.member_mut(&p.person_id)
                .ok_or_else(|| unknown_person(&p.person_id))?
                .disability = Some(Disability {
                disability_type: p.disability_type,
                severity: p.severity,
            });
        }
        Payload::SchoolEnrollmentChanged(p) => {
            let m = h
                .member_mut(&p.person_id)
                .ok_or_else(|| unknown_person(&p.person_id))?;
            m.enrolled_in_school = p.enrolled;
            m.education_level = p.education_level;
        }
        Payload::AssetsReported(p) => h.assets = p.assets,
        Payload::HouseholdShockReported(p) => {
            h.shock_damage = Some(ShockDamage {
                hazard: p.hazard,
                damage: p.damage,
                estimated_loss: p.estimated_loss,
                reported_on: event.envelope.occurred_at.date(),
                shock_id: p.shock_id.clone(),
            });
        }
        Payload::DataCorrection(p) => correct(h, p).map_err(|e| match e {
            CorrectionError::Person(id) => unknown_person(&id),
            CorrectionError::Bad(e) => e,
        })?,
        // Turned away at the top of `apply`.
        Payload::ShockDeclared(_) | Payload::ShockEnded(_) => {}
    }

    // Whatever happened, a household with members has exactly one head.
    choose_new_head(h);
    h.dissolved = h.members.is_empty();
    h.version += 1;
    h.as_of = h.as_of.max(event.envelope.occurred_at);
    if late {
        h.late_events += 1;
    }
    if h.recent_events.len() >= RECENT_EVENTS {
        h.recent_events.remove(0);
    }
    h.recent_events.push(event.envelope.event_id);
    Ok(Outcome {
        effects,
        duplicate: false,
        late,
    })
}

fn set_marital(
    h: &mut Household,
    person: &PersonId,
    spouse: &PersonId,
    status: MaritalStatus,
) -> Result<(), PersonId> {
    h.member_mut(person)
        .ok_or_else(|| person.clone())?
        .marital_status = status;
    // The spouse may live in another household (the event reaches it separately).
    if let Some(s) = h.member_mut(spouse) {
        s.marital_status = status;
    }
    Ok(())
}

/// A registration with no head or several gets exactly one, by the succession rule.
fn ensure_one_head(h: &mut Household) {
    let heads = h
        .members
        .iter()
        .filter(|m| m.relationship == Relationship::Head)
        .count();
    if heads == 1 {
        return;
    }
    if heads > 1 {
        let keep = succession_order(h, |m| m.relationship == Relationship::Head);
        for m in h.members.iter_mut() {
            if m.relationship == Relationship::Head && Some(&m.person_id) != keep.as_ref() {
                m.relationship = Relationship::OtherRelative;
            }
        }
        return;
    }
    choose_new_head(h);
}

/// Applies the succession rule (see the module docs) when the household has no head.
fn choose_new_head(h: &mut Household) {
    if h.head().is_some() {
        return;
    }
    let spouse = h
        .members
        .iter()
        .filter(|m| m.relationship == Relationship::Spouse)
        .map(|m| m.person_id.clone())
        .next();
    let chosen = spouse
        .or_else(|| {
            let today = h.today();
            succession_order(h, |m| m.age_on(today) >= 18)
        })
        .or_else(|| succession_order(h, |_| true));
    if let Some(id) = chosen {
        if let Some(m) = h.member_mut(&id) {
            m.relationship = Relationship::Head;
        }
    }
}

/// The oldest member satisfying `filter` (earliest birth date), smaller person id first.
fn succession_order(h: &Household, filter: impl Fn(&Member) -> bool) -> Option<PersonId> {
    h.members
        .iter()
        .filter(|m| filter(m))
        .min_by(|a, b| {
            a.birth_date
                .cmp(&b.birth_date)
                .then_with(|| a.person_id.cmp(&b.person_id))
        })
        .map(|m| m.person_id.clone())
}

enum CorrectionError {
    Person(PersonId),
    Bad(ApplyError),
}

fn correct(h: &mut Household, c: &DataCorrection) -> Result<(), CorrectionError> {
    let field = c.field.symbol();
    let value = c.new_value.as_str();
    let bad = |reason: &str| {
        CorrectionError::Bad(ApplyError::BadCorrection {
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        })
    };
    fn code<T: CodeList>(value: &str) -> Option<T> {
        T::from_symbol(value)
    }
    let member_field = matches!(
        c.field,
        CorrectableField::BirthDate
            | CorrectableField::Sex
            | CorrectableField::Relationship
            | CorrectableField::EducationLevel
            | CorrectableField::MonthlyIncome
    );
    if member_field {
        let Some(pid) = &c.person_id else {
            return Err(bad("a member field needs the person_id of the member"));
        };
        let m = h
            .member_mut(pid)
            .ok_or_else(|| CorrectionError::Person(pid.clone()))?;
        match c.field {
            CorrectableField::BirthDate => {
                m.birth_date = parse_date(value).ok_or_else(|| bad("expected YYYY-MM-DD"))?
            }
            CorrectableField::Sex => {
                m.sex = code(value).ok_or_else(|| bad("expected a Sex code"))?
            }
            CorrectableField::Relationship => {
                let r: Relationship =
                    code(value).ok_or_else(|| bad("expected a Relationship code"))?;
                if r == Relationship::Head {
                    return Err(bad(
                        "the head changes only by succession or re-registration",
                    ));
                }
                if m.relationship == Relationship::Head {
                    return Err(bad("the head's relationship cannot be corrected"));
                }
                m.relationship = r;
            }
            CorrectableField::EducationLevel => {
                m.education_level =
                    code(value).ok_or_else(|| bad("expected an EducationLevel code"))?
            }
            CorrectableField::MonthlyIncome => {
                let v: f64 = value
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad("expected a number >= 0"))?;
                // A corrected total replaces the breakdown by source.
                m.incomes = Default::default();
                m.incomes.set(IncomeSource::Other, v);
            }
            _ => {}
        }
        return Ok(());
    }
    match c.field {
        CorrectableField::Area => {
            let a = AreaCode::new(value);
            if !a.is_well_formed() {
                return Err(bad("expected an area code path like R01.D03.S12.V045"));
            }
            h.area = a;
        }
        CorrectableField::WallMaterial
        | CorrectableField::WaterSource
        | CorrectableField::Sanitation
        | CorrectableField::Electricity => {
            let Some(d) = h.dwelling.as_mut() else {
                return Err(bad("the household has no dwelling record to correct"));
            };
            match c.field {
                CorrectableField::WallMaterial => {
                    d.wall_material =
                        code(value).ok_or_else(|| bad("expected a WallMaterial code"))?
                }
                CorrectableField::WaterSource => {
                    d.water_source =
                        code(value).ok_or_else(|| bad("expected a WaterSource code"))?
                }
                CorrectableField::Sanitation => {
                    d.sanitation = code(value).ok_or_else(|| bad("expected a Sanitation code"))?
                }
                _ => d.electricity = value.parse().map_err(|_| bad("expected true or false"))?,
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn registered(h: u32) -> Household {
        apply(None, &fixed_registration(h)).unwrap().household
    }

    fn died(h: u32, n: u32, p: u32, day: i64) -> Event {
        event(
            h,
            n,
            day,
            Payload::PersonDied(PersonDied {
                person_id: person(h, p),
                date_of_death: Date(0),
            }),
        )
    }

    #[test]
    fn registration_creates_a_sorted_household_with_one_head() {
        let h = registered(1);
        assert_eq!(h.version, 1);
        assert_eq!(h.members.len(), 5);
        assert!(h
            .members
            .windows(2)
            .all(|w| w[0].person_id < w[1].person_id));
        assert_eq!(h.head().unwrap().person_id, person(1, 0));
    }

    #[test]
    fn a_person_event_for_an_unknown_household_is_a_typed_error() {
        let e = died(9, 1, 0, 1);
        assert_eq!(
            apply(None, &e),
            Err(ApplyError::UnknownHousehold {
                household_id: household_id(9),
                event_type: "PersonDied"
            })
        );
        let h = registered(1);
        let e = died(1, 1, 7, 1);
        assert!(matches!(
            apply(Some(&h), &e),
            Err(ApplyError::UnknownPerson { .. })
        ));
    }

    #[test]
    fn the_same_event_twice_changes_nothing() {
        let h = registered(1);
        let e = died(1, 1, 4, 5);
        let once = apply(Some(&h), &e).unwrap();
        let twice = apply(Some(&once.household), &e).unwrap();
        assert!(twice.duplicate);
        assert_eq!(twice.household, once.household);
    }

    #[test]
    fn death_of_the_head_passes_headship_to_the_spouse_then_the_oldest_adult() {
        let h = registered(1);
        let h = apply(Some(&h), &died(1, 1, 0, 5)).unwrap().household;
        let head = h.head().unwrap();
        assert_eq!(head.person_id, person(1, 1), "the spouse becomes head");
        assert_eq!(head.marital_status, MaritalStatus::Widowed);
        let h = apply(Some(&h), &died(1, 2, 1, 6)).unwrap().household;
        assert_eq!(
            h.member(&person(1, 4)).unwrap().marital_status,
            MaritalStatus::Married,
            "only the head couple is widowed"
        );
        assert_eq!(
            h.head().unwrap().person_id,
            person(1, 4),
            "then the oldest adult (70)"
        );
        let h = apply(Some(&h), &died(1, 3, 4, 7)).unwrap().household;
        assert_eq!(
            h.head().unwrap().person_id,
            person(1, 3),
            "then the oldest member (10)"
        );
        let h = apply(Some(&h), &died(1, 4, 3, 8)).unwrap().household;
        let h = apply(Some(&h), &died(1, 5, 2, 9)).unwrap().household;
        assert!(h.dissolved && h.members.is_empty());
    }

    #[test]
    fn a_move_yields_the_join_for_the_other_household() {
        let h = registered(1);
        let mv = event(
            1,
            1,
            3,
            Payload::PersonMoved(PersonMoved {
                person_id: person(1, 3),
                from_household_id: household_id(1),
                to_household_id: household_id(2),
                founds_new_household: true,
                new_area: area(2),
                relationship_in_new_household: Relationship::Child,
            }),
        );
        let out = apply(Some(&h), &mv).unwrap();
        assert!(out.household.member(&person(1, 3)).is_none());
        assert_eq!(out.effects.len(), 1);
        let join = out.effects[0].to_event(&mv);
        assert_eq!(
            join.envelope.event_id,
            out.effects[0].to_event(&mv).envelope.event_id
        );
        assert_eq!(join.envelope.household_id, Some(household_id(2)));
        let other = apply(None, &join).unwrap().household;
        assert_eq!(other.members.len(), 1);
        assert_eq!(other.head().unwrap().person_id, person(1, 3));
        assert_eq!(other.area, area(2));
        // Joining an existing household that already has a head keeps that head.
        let h2 = registered(2);
        let join_existing = Effect::JoinHousehold {
            household_id: household_id(2),
            member: fixed_member(1, 3, 10, Relationship::Head, Sex::Male),
            from_household_id: household_id(1),
            founds_new_household: false,
            area: area(2),
        }
        .to_event(&mv);
        let h2 = apply(Some(&h2), &join_existing).unwrap().household;
        assert_eq!(h2.head().unwrap().person_id, person(2, 0));
        assert_eq!(h2.members.len(), 6);
    }

    #[test]
    fn late_events_are_applied_and_recorded() {
        let h = registered(1);
        let h = apply(Some(&h), &died(1, 1, 4, 50)).unwrap().household;
        let late = apply(Some(&h), &died(1, 2, 3, 10)).unwrap();
        assert!(late.late);
        assert_eq!(late.household.late_events, 1);
        assert!(late.household.member(&person(1, 3)).is_none());
        assert_eq!(late.household.as_of, h.as_of, "as_of never goes back");
    }

    #[test]
    fn corrections_are_checked() {
        let h = registered(1);
        let fix = |field, value: &str, p: Option<u32>| {
            event(
                1,
                9,
                2,
                Payload::DataCorrection(DataCorrection {
                    person_id: p.map(|p| person(1, p)),
                    field,
                    new_value: value.into(),
                    reason: "birth certificate seen".into(),
                    caseworker_id: "cw-7".into(),
                }),
            )
        };
        let ok = apply(
            Some(&h),
            &fix(CorrectableField::BirthDate, "2020-02-29", Some(2)),
        )
        .unwrap();
        assert_eq!(
            ok.household.member(&person(1, 2)).unwrap().birth_date,
            Date::from_ymd(2020, 2, 29)
        );
        assert!(matches!(
            apply(
                Some(&h),
                &fix(CorrectableField::BirthDate, "2021-02-29", Some(2))
            ),
            Err(ApplyError::BadCorrection { .. })
        ));
        assert!(matches!(
            apply(Some(&h), &fix(CorrectableField::Sex, "x", Some(2))),
            Err(ApplyError::BadCorrection { .. })
        ));
        let ok = apply(Some(&h), &fix(CorrectableField::Electricity, "true", None)).unwrap();
        assert!(ok.household.dwelling.unwrap().electricity);
    }

    #[test]
    fn area_events_are_not_household_events() {
        let e = event(
            1,
            1,
            1,
            Payload::ShockEnded(ShockEnded {
                shock_id: ShockId::new("S1"),
                ended_at: Micros(0),
            }),
        );
        assert!(matches!(
            apply(Some(&registered(1)), &e),
            Err(ApplyError::NotAHouseholdEvent { .. })
        ));
    }

    /// Folds a stream; events that do not apply leave the state as it was.
    fn fold(start: Option<Household>, events: &[Event]) -> (Option<Household>, Vec<Effect>) {
        let mut state = start;
        let mut effects = Vec::new();
        for e in events {
            if let Ok(a) = apply(state.as_ref(), e) {
                effects.extend(a.effects);
                state = Some(a.household);
            }
        }
        (state, effects)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn applying_a_sequence_twice_equals_once(events in household_stream(1, 25)) {
            let (once, effects) = fold(None, &events);
            let (twice, more) = fold(once.clone(), &events);
            prop_assert_eq!(&twice, &once);
            prop_assert!(more.is_empty(), "replayed events must not repeat effects");
            // Each event delivered twice in a row, too.
            let doubled: Vec<Event> = events.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
            let (d, d_effects) = fold(None, &doubled);
            prop_assert_eq!(d, once);
            prop_assert_eq!(d_effects, effects);
        }

        #[test]
        fn any_interleaving_of_household_streams_gives_the_same_states(
            streams in (household_stream(1, 12), household_stream(2, 12), household_stream(3, 12)),
            choices in prop::collection::vec(0usize..3, 0..60),
        ) {
            let streams = [streams.0, streams.1, streams.2];
            let run = |order: &mut dyn Iterator<Item = usize>| {
                let mut states: BTreeMap<HouseholdId, Household> = BTreeMap::new();
                let mut effects: BTreeMap<HouseholdId, Vec<Effect>> = BTreeMap::new();
                let mut next = [0usize; 3];
                let mut step = |i: usize, states: &mut BTreeMap<HouseholdId, Household>| {
                    let Some(e) = streams[i].get(next[i]) else { return false };
                    next[i] += 1;
                    let hid = target_household(e).unwrap().clone();
                    if let Ok(a) = apply(states.get(&hid), e) {
                        effects.entry(hid.clone()).or_default().extend(a.effects);
                        states.insert(hid, a.household);
                    }
                    true
                };
                for i in order {
                    step(i, &mut states);
                }
                for i in 0..3 {
                    while step(i, &mut states) {}
                }
                (states, effects)
            };
            let sequential = run(&mut std::iter::empty());
            let interleaved = run(&mut choices.iter().copied());
            prop_assert_eq!(sequential, interleaved);
        }

        #[test]
        fn an_event_that_fails_leaves_the_household_exactly_as_it_was(events in household_stream(1, 25)) {
            let mut h: Option<Household> = None;
            for e in &events {
                match h.as_mut() {
                    None => h = apply(None, e).ok().map(|a| a.household),
                    Some(cur) => {
                        let before = cur.clone();
                        if apply_to(cur, e).is_err() {
                            prop_assert_eq!(&*cur, &before);
                        }
                    }
                }
            }
        }

        #[test]
        fn a_move_keeps_both_households_consistent(events in household_stream(1, 20)) {
            // Apply effects to their households; every person ends up in exactly one place.
            let mut states: BTreeMap<HouseholdId, Household> = BTreeMap::new();
            for e in &events {
                let hid = target_household(e).unwrap().clone();
                if let Ok(a) = apply(states.get(&hid), e) {
                    states.insert(hid, a.household);
                    for eff in &a.effects {
                        let join = eff.to_event(e);
                        let to = join.envelope.household_id.clone().unwrap();
                        if let Ok(j) = apply(states.get(&to), &join) {
                            states.insert(to, j.household);
                        }
                    }
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for h in states.values() {
                prop_assert!(h.members.len() <= 1 || h.head().is_some(), "a household with members has a head");
                for m in &h.members {
                    prop_assert!(seen.insert(m.person_id.clone()), "{} is in two households", m.person_id);
                }
                prop_assert_eq!(h.members.iter().filter(|m| m.relationship == Relationship::Head).count(), usize::from(!h.members.is_empty()));
            }
        }
    }
}
