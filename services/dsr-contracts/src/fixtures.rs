//! Hand-built events of every kind, for tests, benchmarks, demos and the CLI.
//!
//! [`one_of_each`] holds one event per payload type, in `EVENT_TYPES` order, with every
//! optional field set; [`edge_cases`] adds events with every optional field empty and with
//! extreme values. Ids and times are fixed, so the events are the same on every call.
//!
//! For the pipeline's outputs, [`household_records`] holds household records with every field
//! set (every kind of rule input among them) and with every optional field empty, and
//! [`eligibility_changes`] one eligibility change of each kind.

use compact_str::CompactString;
use dsr_core::codes::*;
use dsr_core::eligibility::{ChangeKind, InputValue, Scalar};
use dsr_core::event::*;
use dsr_core::household::{Assets, Disability, Dwelling, Incomes, ProgramStatus, ShockDamage};
use dsr_core::ids::*;
use dsr_core::score::ScoreSummary;
use dsr_core::{EligibilityChange, Envelope, Event, Household, Member};
use uuid::Uuid;

/// 2026-03-01T08:30:00Z.
pub const OCCURRED_AT: Micros = Micros(1_772_353_800_000_000);

/// Every fixture event: [`one_of_each`] followed by [`edge_cases`].
pub fn all() -> Vec<Event> {
    let mut events = one_of_each();
    events.extend(edge_cases());
    events
}

/// One event per payload type, in `dsr_core::event::EVENT_TYPES` order.
pub fn one_of_each() -> Vec<Event> {
    vec![
        person_born(),
        person_died(),
        marriage_registered(),
        divorce_registered(),
        person_moved(),
        member_joined(),
        household_registered(),
        income_reported(),
        employment_changed(),
        disability_assessed(),
        school_enrollment_changed(),
        assets_reported(),
        household_shock_reported(),
        data_correction(),
        shock_declared(),
        shock_ended(),
    ]
}

/// An envelope with id `n`, about `person` in `household`.
pub fn envelope(n: u128, person: Option<&str>, household: Option<&str>) -> Envelope {
    Envelope {
        event_id: Uuid::from_u128(0x0dd5_0000_0000_4000_8000_0000_0000_0000 | n),
        source_system: "crvs".into(),
        occurred_at: OCCURRED_AT,
        recorded_at: Micros(OCCURRED_AT.0 + 90_000_000),
        person_id: person.map(PersonId::new),
        household_id: household.map(HouseholdId::new),
        correlation_id: Some(Uuid::from_u128(0xc0_0000_0000_4000_8000_0000_0000_0000 | n)),
        schema_version: SCHEMA_VERSION,
    }
}

/// A member with income from two sources and an assessed disability.
pub fn member(person_id: &str, given_name: &str, relationship: Relationship) -> Member {
    let mut incomes = Incomes::default();
    incomes.set(IncomeSource::Agriculture, 1_250.5);
    incomes.set(IncomeSource::Remittances, 300.0);
    Member {
        person_id: PersonId::new(person_id),
        given_name: given_name.into(),
        family_name: "Nakato".into(),
        sex: Sex::Female,
        birth_date: Date::from_ymd(1988, 7, 14),
        relationship,
        marital_status: MaritalStatus::Married,
        education_level: EducationLevel::LowerSecondary,
        enrolled_in_school: false,
        employment: EmploymentStatus::SelfEmployed,
        incomes,
        disability: Some(Disability {
            disability_type: DisabilityType::Walking,
            severity: DisabilitySeverity::ALotOfDifficulty,
        }),
    }
}

/// A newborn: no income, no disability assessed.
pub fn newborn(person_id: &str) -> Member {
    Member {
        person_id: PersonId::new(person_id),
        given_name: "Amani".into(),
        family_name: "Nakato".into(),
        sex: Sex::Male,
        birth_date: Date::from_ymd(2026, 2, 27),
        relationship: Relationship::Child,
        marital_status: MaritalStatus::NeverMarried,
        education_level: EducationLevel::None,
        enrolled_in_school: false,
        employment: EmploymentStatus::OutOfLabourForce,
        incomes: Incomes::default(),
        disability: None,
    }
}

pub fn dwelling() -> Dwelling {
    Dwelling {
        wall_material: WallMaterial::Rudimentary,
        water_source: WaterSource::ImprovedOther,
        sanitation: Sanitation::Limited,
        electricity: false,
        rooms: 2,
        tenure: Tenure::Owned,
    }
}

pub fn assets() -> Assets {
    Assets {
        land_hectares: 0.75,
        livestock_tlu: 1.6,
        mobile_phones: 1,
        radio: true,
        television: false,
        refrigerator: false,
        bicycle: true,
        motorcycle: false,
        car: false,
    }
}

pub fn person_born() -> Event {
    Event {
        envelope: envelope(1, Some("P-1003"), Some("H-100")),
        payload: Payload::PersonBorn(PersonBorn {
            child: newborn("P-1003"),
            mother_id: Some(PersonId::new("P-1002")),
            father_id: Some(PersonId::new("P-1001")),
        }),
    }
}

pub fn person_died() -> Event {
    Event {
        envelope: envelope(2, Some("P-1001"), Some("H-100")),
        payload: Payload::PersonDied(PersonDied {
            person_id: PersonId::new("P-1001"),
            date_of_death: Date::from_ymd(2026, 2, 28),
        }),
    }
}

pub fn marriage_registered() -> Event {
    Event {
        envelope: envelope(3, Some("P-2001"), Some("H-200")),
        payload: Payload::MarriageRegistered(MarriageRegistered {
            person_id: PersonId::new("P-2001"),
            spouse_id: PersonId::new("P-3001"),
            date: Date::from_ymd(2026, 2, 14),
        }),
    }
}

pub fn divorce_registered() -> Event {
    Event {
        envelope: envelope(4, Some("P-2001"), Some("H-200")),
        payload: Payload::DivorceRegistered(DivorceRegistered {
            person_id: PersonId::new("P-2001"),
            spouse_id: PersonId::new("P-3001"),
            date: Date::from_ymd(2026, 1, 5),
        }),
    }
}

pub fn person_moved() -> Event {
    Event {
        envelope: envelope(5, Some("P-2002"), Some("H-200")),
        payload: Payload::PersonMoved(PersonMoved {
            person_id: PersonId::new("P-2002"),
            from_household_id: HouseholdId::new("H-200"),
            to_household_id: HouseholdId::new("H-201"),
            founds_new_household: true,
            new_area: AreaCode::new("R01.D03.S12.V046"),
            relationship_in_new_household: Relationship::Head,
        }),
    }
}

pub fn member_joined() -> Event {
    let mut envelope = envelope(6, Some("P-2002"), Some("H-201"));
    envelope.source_system = "dsr".into();
    Event {
        envelope,
        payload: Payload::MemberJoined(MemberJoined {
            member: member("P-2002", "Grace", Relationship::Head),
            from_household_id: HouseholdId::new("H-200"),
            founds_new_household: true,
            area: AreaCode::new("R01.D03.S12.V046"),
            caused_by: person_moved().envelope.event_id,
        }),
    }
}

pub fn household_registered() -> Event {
    let mut envelope = envelope(7, None, Some("H-100"));
    envelope.source_system = "survey-2026".into();
    Event {
        envelope,
        payload: Payload::HouseholdRegistered(HouseholdRegistered {
            area: AreaCode::new("R01.D03.S12.V045"),
            members: vec![
                member("P-1001", "Joseph", Relationship::Head),
                member("P-1002", "Sarah", Relationship::Spouse),
                newborn("P-1004"),
            ],
            dwelling: dwelling(),
            assets: assets(),
            registration_source: RegistrationSource::Survey,
        }),
    }
}

pub fn income_reported() -> Event {
    let mut envelope = envelope(8, Some("P-1001"), None);
    envelope.source_system = "tax".into();
    Event {
        envelope,
        payload: Payload::IncomeReported(IncomeReported {
            person_id: PersonId::new("P-1001"),
            amount: 7_200.0,
            period: IncomePeriod::Quarterly,
            source: IncomeSource::Wages,
        }),
    }
}

pub fn employment_changed() -> Event {
    Event {
        envelope: envelope(9, Some("P-1001"), None),
        payload: Payload::EmploymentChanged(EmploymentChanged {
            person_id: PersonId::new("P-1001"),
            status: EmploymentStatus::Unemployed,
        }),
    }
}

pub fn disability_assessed() -> Event {
    Event {
        envelope: envelope(10, Some("P-1002"), None),
        payload: Payload::DisabilityAssessed(DisabilityAssessed {
            person_id: PersonId::new("P-1002"),
            disability_type: DisabilityType::Seeing,
            severity: DisabilitySeverity::CannotDoAtAll,
        }),
    }
}

pub fn school_enrollment_changed() -> Event {
    Event {
        envelope: envelope(11, Some("P-1004"), None),
        payload: Payload::SchoolEnrollmentChanged(SchoolEnrollmentChanged {
            person_id: PersonId::new("P-1004"),
            enrolled: true,
            education_level: EducationLevel::Primary,
        }),
    }
}

pub fn assets_reported() -> Event {
    let mut assets = assets();
    assets.motorcycle = true;
    assets.mobile_phones = 3;
    Event {
        envelope: envelope(12, None, Some("H-100")),
        payload: Payload::AssetsReported(AssetsReported { assets }),
    }
}

pub fn household_shock_reported() -> Event {
    Event {
        envelope: envelope(13, None, Some("H-100")),
        payload: Payload::HouseholdShockReported(HouseholdShockReported {
            hazard: HazardType::Flood,
            damage: DamageLevel::Major,
            estimated_loss: 18_500.25,
            shock_id: Some(ShockId::new("SHK-2026-007")),
        }),
    }
}

pub fn data_correction() -> Event {
    let mut envelope = envelope(14, Some("P-1002"), Some("H-100"));
    envelope.source_system = "caseworker-app".into();
    Event {
        envelope,
        payload: Payload::DataCorrection(DataCorrection {
            person_id: Some(PersonId::new("P-1002")),
            field: CorrectableField::BirthDate,
            new_value: "1989-07-14".into(),
            reason: "Birth certificate shown at the district office.".into(),
            caseworker_id: "CW-0042".into(),
        }),
    }
}

pub fn shock_declared() -> Event {
    let mut envelope = envelope(15, None, None);
    envelope.source_system = "early-warning".into();
    Event {
        envelope,
        payload: Payload::ShockDeclared(ShockDeclared {
            shock_id: ShockId::new("SHK-2026-007"),
            hazard: HazardType::Drought,
            area_codes: vec![AreaCode::new("R01.D03"), AreaCode::new("R02")],
            severity: ShockSeverity::Severe,
            indicator_name: "vci".into(),
            indicator_value: 18.4,
            starts_at: OCCURRED_AT,
            expected_end: Some(Micros(OCCURRED_AT.0 + 90 * MICROS_PER_DAY)),
            declared_by: "National Drought Management Authority".into(),
        }),
    }
}

pub fn shock_ended() -> Event {
    let mut envelope = envelope(16, None, None);
    envelope.source_system = "early-warning".into();
    Event {
        envelope,
        payload: Payload::ShockEnded(ShockEnded {
            shock_id: ShockId::new("SHK-2026-007"),
            ended_at: Micros(OCCURRED_AT.0 + 60 * MICROS_PER_DAY),
        }),
    }
}

/// Events with every optional field empty, and with extreme values: dates before 1970,
/// times from year 1 to 9999, empty and non-ASCII text, the largest counts, every code of a
/// list.
pub fn edge_cases() -> Vec<Event> {
    let bare = |n: u128, payload: Payload| Event {
        envelope: Envelope {
            event_id: Uuid::from_u128(n),
            source_system: CompactString::new("x"),
            // The widest times the JSON form (RFC 3339, four-digit years) can carry.
            occurred_at: Micros(Date::from_ymd(1, 1, 1).0 as i64 * MICROS_PER_DAY),
            recorded_at: Micros(Date::from_ymd(10000, 1, 1).0 as i64 * MICROS_PER_DAY - 1),
            person_id: None,
            household_id: None,
            correlation_id: None,
            schema_version: 0,
        },
        payload,
    };
    let mut old = newborn("P-9");
    old.birth_date = Date::from_ymd(1899, 12, 31);
    old.given_name = "Ñandú Øster 李".into();
    old.family_name = "".into();
    let mut every_income = Incomes::default();
    for (i, source) in IncomeSource::ALL.iter().enumerate() {
        every_income.set(*source, i as f64 + 0.125);
    }
    old.incomes = every_income;
    let mut large = dwelling();
    large.rooms = i32::MAX as u32;
    let mut many = assets();
    many.mobile_phones = i32::MAX as u32;
    many.land_hectares = f64::MAX;
    many.livestock_tlu = f64::MIN_POSITIVE;
    let mut events = vec![
        bare(
            101,
            Payload::PersonBorn(PersonBorn {
                child: old.clone(),
                mother_id: None,
                father_id: None,
            }),
        ),
        bare(
            102,
            Payload::HouseholdRegistered(HouseholdRegistered {
                area: AreaCode::new("R99"),
                members: Vec::new(),
                dwelling: large,
                assets: many,
                registration_source: RegistrationSource::Migration,
            }),
        ),
        bare(
            103,
            Payload::HouseholdShockReported(HouseholdShockReported {
                hazard: HazardType::Other,
                damage: DamageLevel::None,
                estimated_loss: 0.0,
                shock_id: None,
            }),
        ),
        bare(
            104,
            Payload::DataCorrection(DataCorrection {
                person_id: None,
                field: CorrectableField::Electricity,
                new_value: "true".into(),
                reason: "Grid connection verified\non site.".into(),
                caseworker_id: "".into(),
            }),
        ),
        bare(
            105,
            Payload::ShockDeclared(ShockDeclared {
                shock_id: ShockId::new(""),
                hazard: HazardType::PriceShock,
                area_codes: Vec::new(),
                severity: ShockSeverity::Extreme,
                indicator_name: "".into(),
                indicator_value: -3.5,
                starts_at: Micros(-1),
                expected_end: None,
                declared_by: "".into(),
            }),
        ),
    ];
    // Every symbol of the marital-status and sex lists, through a member each.
    for (i, status) in MaritalStatus::ALL.iter().enumerate() {
        let mut m = member(&format!("P-M{i}"), "Test", Relationship::OtherRelative);
        m.marital_status = *status;
        m.sex = Sex::ALL[i % Sex::ALL.len()];
        m.disability = None;
        events.push(bare(
            200 + i as u128,
            Payload::MemberJoined(MemberJoined {
                member: m,
                from_household_id: HouseholdId::new("H-1"),
                founds_new_household: false,
                area: AreaCode::new("R01"),
                caused_by: Uuid::nil(),
            }),
        ));
    }
    events
}

/// Household records: one with every field set (shock damage, need score, programs whose
/// inputs hold every kind of value), one with every optional field empty and no members
/// (dissolved), and one with extreme values.
pub fn household_records() -> Vec<Household> {
    let input = |name: &str, value: Scalar| InputValue {
        name: name.into(),
        value,
    };
    let full = Household {
        household_id: HouseholdId::new("H-1001"),
        area: AreaCode::new("R01.D03.S12.V045"),
        members: vec![
            member("P-1001", "Achieng", Relationship::Head),
            newborn("P-1002"),
        ],
        dwelling: Some(dwelling()),
        assets: assets(),
        shock_damage: Some(ShockDamage {
            hazard: HazardType::Flood,
            damage: DamageLevel::Major,
            estimated_loss: 4_200.75,
            reported_on: Date::from_ymd(2026, 4, 2),
            shock_id: Some(ShockId::new("SHK-2026-007")),
        }),
        need_score: Some(ScoreSummary {
            score: 63.25,
            model_version: "pmt-2026.1".into(),
        }),
        programs: vec![
            ProgramStatus {
                program_id: "child-grant".into(),
                rule_version: 1,
                eligible: true,
                benefit: 150.0,
                inputs: vec![
                    input("need_score", Scalar::Number(63.25)),
                    input("size", Scalar::Int(2)),
                    input("members.age", Scalar::Digest(0xcbf2_9ce4_8422_2325)),
                ]
                .into(),
            },
            ProgramStatus {
                program_id: "food-aid".into(),
                rule_version: 3,
                eligible: false,
                benefit: 0.0,
                inputs: vec![
                    input("dissolved", Scalar::Bool(false)),
                    input("area", Scalar::Text("R01.D03.S12.V045".into())),
                    input("members.sex", Scalar::Digest(u64::MAX)),
                ]
                .into(),
            },
        ],
        version: 17,
        as_of: OCCURRED_AT,
        recent_events: (1..=3)
            .map(|n| Uuid::from_u128(0x0dd5_0000_0000_4000_8000_0000_0000_0000 | n))
            .collect(),
        late_events: 2,
        dissolved: false,
    };
    let mut empty = Household::new(HouseholdId::new("H-2"), AreaCode::new("R02"));
    empty.dissolved = true;
    let extreme = Household {
        household_id: HouseholdId::new(""),
        area: AreaCode::new("R99.D99.S99.V999.with-a-long-tail_beyond-inline"),
        members: vec![member("P-Ñ", "Ñandú Øster 李", Relationship::Head)],
        dwelling: Some(Dwelling {
            rooms: i32::MAX as u32,
            ..dwelling()
        }),
        assets: Assets {
            mobile_phones: i32::MAX as u32,
            land_hectares: f64::MAX,
            ..assets()
        },
        shock_damage: Some(ShockDamage {
            hazard: HazardType::Other,
            damage: DamageLevel::None,
            estimated_loss: 0.0,
            reported_on: Date(i32::MIN),
            shock_id: None,
        }),
        need_score: Some(ScoreSummary {
            score: 0.0,
            model_version: "".into(),
        }),
        programs: vec![ProgramStatus {
            program_id: "x".into(),
            rule_version: i32::MAX as u32,
            eligible: true,
            benefit: -0.0,
            inputs: vec![
                input("", Scalar::Int(i64::MIN)),
                input("max", Scalar::Int(i64::MAX)),
                input("zero digest", Scalar::Digest(0)),
                input("high bit", Scalar::Digest(1 << 63)),
                input("empty", Scalar::Text("".into())),
                input("true", Scalar::Bool(true)),
                input("tiny", Scalar::Number(f64::MIN_POSITIVE)),
            ]
            .into(),
        }],
        version: i64::MAX as u64,
        as_of: Micros(i64::MIN),
        recent_events: vec![Uuid::nil(), Uuid::max()],
        late_events: i64::MAX as u64,
        dissolved: false,
    };
    vec![full, empty, extreme]
}

/// One eligibility change of each kind, `entered` first.
pub fn eligibility_changes() -> Vec<EligibilityChange> {
    let kinds = [
        ChangeKind::Entered,
        ChangeKind::Changed,
        ChangeKind::Exited,
        ChangeKind::Unchanged,
    ];
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let caused_by = Uuid::from_u128(0x0dd5_0000_0000_4000_8000_0000_0000_0000 | i as u128);
            EligibilityChange {
                change_id: dsr_core::process::change_id(&caused_by, "child-grant"),
                program_id: "child-grant".into(),
                household_id: HouseholdId::new("H-1001"),
                kind: *kind,
                reasons: match kind {
                    ChangeKind::Entered => vec!["first evaluation for this program".into()],
                    ChangeKind::Changed => vec![
                        "members.age: changed".into(),
                        "benefit: 150.00 → 300.00".into(),
                    ],
                    ChangeKind::Exited => vec!["need_score: 61.20 → 48.00".into()],
                    ChangeKind::Unchanged => Vec::new(),
                },
                benefit: match kind {
                    ChangeKind::Exited => 0.0,
                    ChangeKind::Changed => 300.0,
                    _ => 150.0,
                },
                rule_version: 1,
                household_version: 3 + i as u64,
                caused_by,
                occurred_at: Micros(OCCURRED_AT.0 + i as i64),
                // A scale-up's top-up, so the codecs are checked with the mark too.
                scale_up: (*kind == ChangeKind::Changed).then(|| dsr_core::scale_up::ScaleUpMark {
                    rule_id: "drought-topup".into(),
                    shock_id: "DR-2026-01".into(),
                    ends_at: Micros(OCCURRED_AT.0 + 90 * 86_400_000_000),
                }),
            }
        })
        .collect()
}
