//! proptest strategies for households and event streams, shared by the property tests of
//! every module here. Person ids come from a small pool per household so that generated
//! events often hit existing members and sometimes miss (exercising the error paths).

use crate::codes::*;
use crate::event::*;
use crate::household::{Assets, Disability, Dwelling, Incomes, Member};
use crate::ids::*;
use proptest::prelude::*;

pub const DAY: i64 = MICROS_PER_DAY;
pub const START: i64 = 20_454 * DAY; // 2026-01-01

pub fn code<T: CodeList + std::fmt::Debug>() -> impl Strategy<Value = T> {
    proptest::sample::select(T::ALL)
}

pub fn person(h: u32, p: u32) -> PersonId {
    PersonId::new(format!("P{h:03}{p:02}"))
}

pub fn household_id(h: u32) -> HouseholdId {
    HouseholdId::new(format!("H{h:03}"))
}

pub fn member(h: u32, p: u32) -> impl Strategy<Value = Member> {
    (
        code::<Sex>(),
        0i32..(90 * 365),
        code::<Relationship>(),
        code::<MaritalStatus>(),
        code::<EducationLevel>(),
        any::<bool>(),
        code::<EmploymentStatus>(),
        prop::collection::vec((code::<IncomeSource>(), 0.0f64..20_000.0), 0..3),
        prop::option::of((code::<DisabilityType>(), code::<DisabilitySeverity>())),
    )
        .prop_map(
            move |(sex, age_days, rel, ms, edu, enrolled, emp, incomes, dis)| {
                let mut inc = Incomes::default();
                for (s, v) in incomes {
                    inc.set(s, v);
                }
                Member {
                    person_id: person(h, p),
                    given_name: "Test".into(),
                    family_name: format!("Family{h}").into(),
                    sex,
                    birth_date: Date((START / DAY) as i32 - age_days),
                    relationship: rel,
                    marital_status: ms,
                    education_level: edu,
                    enrolled_in_school: enrolled,
                    employment: emp,
                    incomes: inc,
                    disability: dis.map(|(t, s)| Disability {
                        disability_type: t,
                        severity: s,
                    }),
                }
            },
        )
}

pub fn dwelling() -> impl Strategy<Value = Dwelling> {
    (
        code::<WallMaterial>(),
        code::<WaterSource>(),
        code::<Sanitation>(),
        any::<bool>(),
        1u32..8,
        code::<Tenure>(),
    )
        .prop_map(|(w, wa, s, e, r, t)| Dwelling {
            wall_material: w,
            water_source: wa,
            sanitation: s,
            electricity: e,
            rooms: r,
            tenure: t,
        })
}

pub fn assets() -> impl Strategy<Value = Assets> {
    (0.0f64..50.0, 0.0f64..60.0, 0u32..4, any::<[bool; 6]>()).prop_map(|(land, tlu, phones, b)| {
        Assets {
            land_hectares: land,
            livestock_tlu: tlu,
            mobile_phones: phones,
            radio: b[0],
            television: b[1],
            refrigerator: b[2],
            bicycle: b[3],
            motorcycle: b[4],
            car: b[5],
        }
    })
}

pub fn area(h: u32) -> AreaCode {
    AreaCode::new(format!("R0{}.D0{}.S01.V{h:03}", 1 + h % 3, h % 4))
}

/// An envelope for household `h`'s `n`-th event (ids unique per (h, n, salt)).
pub fn envelope(h: u32, n: u32, day: i64, person: Option<PersonId>) -> Envelope {
    Envelope {
        event_id: uuid::Uuid::from_u128(((h as u128) << 64) | n as u128),
        source_system: "test".into(),
        occurred_at: Micros(START + day * DAY),
        recorded_at: Micros(START + day * DAY),
        person_id: person,
        household_id: Some(household_id(h)),
        correlation_id: None,
        schema_version: SCHEMA_VERSION,
    }
}

pub fn registration(h: u32) -> impl Strategy<Value = Event> {
    (
        prop::collection::vec(0u32..6, 1..6),
        dwelling(),
        assets(),
        0i64..30,
    )
        .prop_flat_map(move |(ps, d, a, day)| {
            let mut ps = ps;
            ps.sort();
            ps.dedup();
            let members: Vec<_> = ps.into_iter().map(|p| member(h, p)).collect();
            (members, Just(d), Just(a), Just(day))
        })
        .prop_map(move |(members, dwelling, assets, day)| Event {
            envelope: envelope(h, 0, day, None),
            payload: Payload::HouseholdRegistered(HouseholdRegistered {
                area: area(h),
                members,
                dwelling,
                assets,
                registration_source: RegistrationSource::Survey,
            }),
        })
}

/// A life event for household `h` (its `n`-th), about a person from the pool; moves go to
/// household `h + 1000` (outside the generated set, so effects leave the stream).
pub fn life_event(h: u32, n: u32) -> impl Strategy<Value = Event> {
    let p = 0u32..8;
    let day = 0i64..400;
    prop_oneof![
        (p.clone(), day.clone(), member(h, 6)).prop_map(move |(_, d, mut child)| {
            child.person_id = person(h, 10 + n % 80);
            child.birth_date = Date((START / DAY + d) as i32);
            child.relationship = Relationship::Child;
            Event {
                envelope: envelope(h, n, d, Some(child.person_id.clone())),
                payload: Payload::PersonBorn(PersonBorn {
                    child,
                    mother_id: None,
                    father_id: None,
                }),
            }
        }),
        (p.clone(), day.clone()).prop_map(move |(p, d)| Event {
            envelope: envelope(h, n, d, Some(person(h, p))),
            payload: Payload::PersonDied(PersonDied {
                person_id: person(h, p),
                date_of_death: Date((START / DAY + d) as i32),
            }),
        }),
        (
            p.clone(),
            day.clone(),
            0.0f64..30_000.0,
            code::<IncomeSource>(),
            code::<IncomePeriod>()
        )
            .prop_map(move |(p, d, amount, source, period)| Event {
                envelope: envelope(h, n, d, Some(person(h, p))),
                payload: Payload::IncomeReported(IncomeReported {
                    person_id: person(h, p),
                    amount,
                    period,
                    source,
                }),
            }),
        (p.clone(), day.clone(), code::<EmploymentStatus>()).prop_map(move |(p, d, status)| {
            Event {
                envelope: envelope(h, n, d, Some(person(h, p))),
                payload: Payload::EmploymentChanged(EmploymentChanged {
                    person_id: person(h, p),
                    status,
                }),
            }
        }),
        (
            p.clone(),
            day.clone(),
            code::<DisabilityType>(),
            code::<DisabilitySeverity>()
        )
            .prop_map(move |(p, d, t, s)| Event {
                envelope: envelope(h, n, d, Some(person(h, p))),
                payload: Payload::DisabilityAssessed(DisabilityAssessed {
                    person_id: person(h, p),
                    disability_type: t,
                    severity: s,
                }),
            }),
        (p.clone(), p.clone(), day.clone()).prop_map(move |(a, b, d)| Event {
            envelope: envelope(h, n, d, Some(person(h, a))),
            payload: Payload::MarriageRegistered(MarriageRegistered {
                person_id: person(h, a),
                spouse_id: person(h, b),
                date: Date((START / DAY + d) as i32),
            }),
        }),
        (p.clone(), day.clone(), any::<bool>()).prop_map(move |(p, d, founds)| Event {
            envelope: envelope(h, n, d, Some(person(h, p))),
            payload: Payload::PersonMoved(PersonMoved {
                person_id: person(h, p),
                from_household_id: household_id(h),
                to_household_id: household_id(h + 1000),
                founds_new_household: founds,
                new_area: area(h + 1000),
                relationship_in_new_household: Relationship::OtherRelative,
            }),
        }),
        (day.clone(), assets()).prop_map(move |(d, assets)| Event {
            envelope: envelope(h, n, d, None),
            payload: Payload::AssetsReported(AssetsReported { assets }),
        }),
        (day.clone(), code::<HazardType>(), code::<DamageLevel>()).prop_map(move |(d, hz, dm)| {
            Event {
                envelope: envelope(h, n, d, None),
                payload: Payload::HouseholdShockReported(HouseholdShockReported {
                    hazard: hz,
                    damage: dm,
                    estimated_loss: 100.0,
                    shock_id: None,
                }),
            }
        }),
        (
            p.clone(),
            day.clone(),
            code::<EducationLevel>(),
            any::<bool>()
        )
            .prop_map(move |(p, d, lvl, enrolled)| Event {
                envelope: envelope(h, n, d, Some(person(h, p))),
                payload: Payload::SchoolEnrollmentChanged(SchoolEnrollmentChanged {
                    person_id: person(h, p),
                    enrolled,
                    education_level: lvl,
                }),
            }),
    ]
}

/// A household's stream: its registration, then up to `max` life events.
pub fn household_stream(h: u32, max: usize) -> impl Strategy<Value = Vec<Event>> {
    (registration(h), 0..=max).prop_flat_map(move |(reg, n)| {
        let events: Vec<_> = (1..=n as u32).map(|i| life_event(h, i)).collect();
        (Just(reg), events).prop_map(|(reg, mut evs)| {
            evs.insert(0, reg);
            evs
        })
    })
}

/// A fixed member for unit tests: born `years` before 2026-01-01.
pub fn fixed_member(h: u32, p: u32, years: i32, rel: Relationship, sex: Sex) -> Member {
    Member {
        person_id: person(h, p),
        given_name: "Test".into(),
        family_name: "Fixture".into(),
        sex,
        birth_date: Date::from_ymd(2026 - years, 1, 1),
        relationship: rel,
        marital_status: MaritalStatus::Married,
        education_level: EducationLevel::Primary,
        enrolled_in_school: false,
        employment: EmploymentStatus::SelfEmployed,
        incomes: Incomes::default(),
        disability: None,
    }
}

/// Household `h` registered on day 0: a head (40), spouse (38), two children (3 and 10) and a
/// grandparent (70).
pub fn fixed_registration(h: u32) -> Event {
    use Relationship::*;
    Event {
        envelope: envelope(h, 0, 0, None),
        payload: Payload::HouseholdRegistered(HouseholdRegistered {
            area: area(h),
            members: vec![
                fixed_member(h, 0, 40, Head, Sex::Male),
                fixed_member(h, 1, 38, Spouse, Sex::Female),
                fixed_member(h, 2, 3, Child, Sex::Female),
                fixed_member(h, 3, 10, Child, Sex::Male),
                fixed_member(h, 4, 70, Parent, Sex::Female),
            ],
            dwelling: Dwelling {
                wall_material: WallMaterial::Natural,
                water_source: WaterSource::Unimproved,
                sanitation: Sanitation::Unimproved,
                electricity: false,
                rooms: 2,
                tenure: Tenure::Owned,
            },
            assets: Assets {
                mobile_phones: 1,
                livestock_tlu: 1.0,
                land_hectares: 0.5,
                ..Assets::default()
            },
            registration_source: RegistrationSource::Survey,
        }),
    }
}

/// An event for household `h` with the given payload on `day`.
pub fn event(h: u32, n: u32, day: i64, payload: Payload) -> Event {
    Event {
        envelope: envelope(h, n, day, None),
        payload,
    }
}
