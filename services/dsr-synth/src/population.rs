//! The registered population: households as an enumerator would find them.
//!
//! A household is built around its head: a spouse, children spaced like real births, and
//! sometimes elderly parents, grandchildren, siblings or a domestic worker; sizes average
//! about 4.5 and run from 1 past 12 (or, with `HouseholdSizes::Chile`, 1.9 with half living
//! alone). Everything else follows from age, sex and the village's
//! poverty and remoteness: education, school enrolment, work, log-normal incomes,
//! disability (Washington Group severities), and a dwelling and assets that track the
//! household's income. Each household becomes one `HouseholdRegistered` event.

use crate::areas::{Area, Areas};
use crate::config::{micros, Composition, Config, CHUNK_HOUSEHOLDS};
use crate::names::{FAMILY_NAMES, GIVEN_NAMES};
use crate::rng::*;
use crate::state::*;
use compact_str::CompactString;
use dsr_core::codes::*;
use dsr_core::event::{Envelope, HouseholdRegistered, SCHEMA_VERSION};
use dsr_core::household::{Assets, Disability, Dwelling, Incomes};
use dsr_core::ids::MICROS_PER_DAY;
use dsr_core::{Date, Event, Micros, Payload};

/// Names the source system of survey registrations.
pub const SURVEY_SOURCE: &str = "survey";

/// Education levels in order, for latent-score thresholds.
const LEVELS: [EducationLevel; 6] = [
    EducationLevel::None,
    EducationLevel::Primary,
    EducationLevel::LowerSecondary,
    EducationLevel::UpperSecondary,
    EducationLevel::PostSecondary,
    EducationLevel::Tertiary,
];

/// Earnings multiplier by education level (returns to schooling).
const EDUCATION_PAY: [f64; 6] = [1.0, 1.25, 1.55, 2.0, 2.8, 4.0];

pub(crate) fn level_rank(l: EducationLevel) -> usize {
    LEVELS.iter().position(|x| *x == l).unwrap_or(0)
}

pub(crate) fn level_at(rank: usize) -> EducationLevel {
    LEVELS[rank.min(LEVELS.len() - 1)]
}

/// The village-level context every draw of a household depends on.
pub(crate) struct Place<'a> {
    pub area: &'a Area,
    pub village: u32,
}

impl Place<'_> {
    fn urban(&self) -> f64 {
        self.area.urban as u8 as f64
    }
    /// Multiplier of all earnings in the area: poor and remote areas earn less.
    pub fn pay(&self) -> f64 {
        (-1.1 * self.area.poverty - 0.3 * self.area.remoteness + 0.35 * self.urban()).exp()
    }
}

/// Builds a household's people one by one.
struct Builder<'a> {
    rng: &'a mut Rng,
    persons: &'a mut Vec<Person>,
    household: u32,
    num: u64,
    slot: u64,
    on: Date,
    composition: Composition,
}

impl Builder<'_> {
    fn add(
        &mut self,
        sex: Sex,
        age: u32,
        rel: Relationship,
        marital: MaritalStatus,
        family: u16,
    ) -> u32 {
        let days = (age as f64 * 365.25 + unit(self.rng) * 365.0) as i32;
        let birth = Date(self.on.0 - days.max(0));
        let given = index(self.rng, GIVEN_NAMES) as u16;
        let idx = self.persons.len() as u32;
        self.persons.push(Person {
            num: self.num * SLOTS + self.slot,
            given,
            family,
            sex,
            birth,
            relationship: rel,
            marital,
            education: EducationLevel::None,
            enrolled: false,
            employment: EmploymentStatus::OutOfLabourForce,
            disability: None,
            alive: true,
            incomes: Incomes::default(),
            household: self.household,
            spouse: NO_ONE,
            last_birth: Date(i32::MIN / 2),
        });
        self.slot += 1;
        idx
    }
}

fn family_name(rng: &mut Rng) -> u16 {
    index(rng, FAMILY_NAMES) as u16
}

fn other_sex(s: Sex) -> Sex {
    if s == Sex::Male {
        Sex::Female
    } else {
        Sex::Male
    }
}

fn coin_sex(rng: &mut Rng, p_male: f64) -> Sex {
    if chance(rng, p_male) {
        Sex::Male
    } else {
        Sex::Female
    }
}

fn link(persons: &mut [Person], a: u32, b: u32) {
    persons[a as usize].spouse = b;
    persons[b as usize].spouse = a;
}

/// Draws the people of one household (ages, sexes, relationships, marriages); returns the
/// indices of its members.
fn compose(b: &mut Builder, place: &Place) -> Vec<u32> {
    let urban = place.urban();
    let pov = place.area.poverty;
    let mut members = Vec::with_capacity(8);
    let r = unit(b.rng);
    let mix = b.composition;
    let p_single = mix.single.0 + mix.single.1 * urban;
    let head_family = family_name(b.rng);
    if r < p_single {
        // One person: a young adult who left home, or an elderly person living alone.
        if chance(b.rng, 0.55) {
            let sex = coin_sex(b.rng, 0.6);
            let age = between(b.rng, 18, 35) as u32;
            let m = if chance(b.rng, 0.85) {
                MaritalStatus::NeverMarried
            } else {
                MaritalStatus::Divorced
            };
            members.push(b.add(sex, age, Relationship::Head, m, head_family));
        } else {
            let sex = coin_sex(b.rng, 0.35);
            let age = between(b.rng, 60, 88) as u32;
            let m = [
                MaritalStatus::Widowed,
                MaritalStatus::Divorced,
                MaritalStatus::NeverMarried,
            ][weighted(b.rng, &[0.7, 0.2, 0.1])];
            members.push(b.add(sex, age, Relationship::Head, m, head_family));
        }
        return members;
    }
    if r < p_single + mix.skipped_generation {
        // Skipped generation: grandparents raising grandchildren.
        let sex = coin_sex(b.rng, 0.35);
        let age = between(b.rng, 55, 80) as u32;
        let couple = chance(b.rng, 0.3);
        let m = if couple {
            MaritalStatus::Married
        } else {
            MaritalStatus::Widowed
        };
        let head = b.add(sex, age, Relationship::Head, m, head_family);
        members.push(head);
        if couple {
            let sage = (age as i64 + if sex == Sex::Male { -4 } else { 4 }).max(45) as u32;
            let fam = if chance(b.rng, 0.5) {
                head_family
            } else {
                family_name(b.rng)
            };
            let s = b.add(
                other_sex(sex),
                sage,
                Relationship::Spouse,
                MaritalStatus::Married,
                fam,
            );
            link(b.persons, head, s);
            members.push(s);
        }
        let n = 1 + poisson(b.rng, 1.3);
        for _ in 0..n {
            let sex = coin_sex(b.rng, 0.5);
            let age = between(b.rng, 0, 16) as u32;
            members.push(b.add(
                sex,
                age,
                Relationship::Grandchild,
                MaritalStatus::NeverMarried,
                head_family,
            ));
        }
        return members;
    }

    // A family: a couple or a single parent, their children, and sometimes relatives.
    let couple = chance(b.rng, mix.couple.0 + mix.couple.1 * urban);
    let head_age = (19.0 + lognormal(b.rng, 21.0, 0.42)).min(82.0) as u32;
    let head_sex = if couple {
        coin_sex(b.rng, 0.95)
    } else {
        coin_sex(b.rng, 0.2)
    };
    let head_marital = if couple {
        MaritalStatus::Married
    } else {
        [
            MaritalStatus::Widowed,
            MaritalStatus::Divorced,
            MaritalStatus::NeverMarried,
            MaritalStatus::Married,
            MaritalStatus::LegallySeparated,
        ][weighted(b.rng, &[0.3, 0.22, 0.22, 0.2, 0.06])]
    };
    let head = b.add(
        head_sex,
        head_age,
        Relationship::Head,
        head_marital,
        head_family,
    );
    members.push(head);
    let mut mother = if head_sex == Sex::Female {
        Some(head)
    } else {
        None
    };
    let mut mother_age = head_age as i64;
    if couple {
        let gap = lognormal(b.rng, 4.0, 0.6).min(20.0) as i64;
        let sage = if head_sex == Sex::Male {
            (head_age as i64 - gap).max(16)
        } else {
            head_age as i64 + gap
        } as u32;
        let fam = if chance(b.rng, 0.5) {
            head_family
        } else {
            family_name(b.rng)
        };
        let s = b.add(
            other_sex(head_sex),
            sage,
            Relationship::Spouse,
            MaritalStatus::Married,
            fam,
        );
        link(b.persons, head, s);
        members.push(s);
        if head_sex == Sex::Male {
            mother = Some(s);
            mother_age = sage as i64;
        }
    } else if head_sex == Sex::Male {
        mother_age = head_age as i64 - 5;
    }

    // Children: the mother's births from her first (around 20) on, about 2.7 years apart,
    // up to her completed fertility; grown children have often left home.
    let completed = (mix.fertility.0 + mix.fertility.1 * pov + mix.fertility.2 * urban).max(1.0);
    let wanted = poisson(b.rng, completed).min(11);
    let mut born_at = 16.0 + lognormal(b.rng, 4.0, 0.45);
    let mut youngest: Option<u32> = None;
    for _ in 0..wanted {
        if born_at > mother_age as f64 || born_at > 46.0 {
            break;
        }
        let age = (mother_age as f64 - born_at).floor() as i64;
        born_at += 1.2 + lognormal(b.rng, 1.4, 0.35);
        if age > 30 {
            continue;
        }
        let stays = if age < 15 {
            chance(b.rng, 0.96)
        } else {
            chance(
                b.rng,
                (mix.stays_at_15.0 - mix.stays_at_15.1 * (age - 15) as f64).max(0.05),
            )
        };
        if stays {
            let sex = coin_sex(b.rng, 0.51);
            let m = if age >= 20 && chance(b.rng, 0.1) {
                MaritalStatus::Divorced
            } else {
                MaritalStatus::NeverMarried
            };
            let c = b.add(sex, age as u32, Relationship::Child, m, head_family);
            members.push(c);
            youngest = Some(c);
        }
    }
    if let (Some(m), Some(c)) = (mother, youngest) {
        let born = b.persons[c as usize].birth;
        b.persons[m as usize].last_birth = born;
    }

    // Relatives.
    if head_age < 62 && chance(b.rng, mix.parents) {
        let both = chance(b.rng, 0.3);
        let page = (head_age + between(b.rng, 20, 32) as u32).min(95);
        let fsex = if both {
            Sex::Male
        } else {
            coin_sex(b.rng, 0.3)
        };
        let m = if both {
            MaritalStatus::Married
        } else {
            MaritalStatus::Widowed
        };
        let p1 = b.add(fsex, page, Relationship::Parent, m, head_family);
        members.push(p1);
        if both {
            let fam = family_name(b.rng);
            let p2 = b.add(
                Sex::Female,
                page.saturating_sub(4).max(40),
                Relationship::Parent,
                m,
                fam,
            );
            link(b.persons, p1, p2);
            members.push(p2);
        }
    }
    if head_age >= 42 && chance(b.rng, mix.grandchildren.0 + mix.grandchildren.1 * pov) {
        let n = 1 + poisson(b.rng, 0.7);
        let max_age = (head_age as i64 - 38).clamp(0, 14);
        for _ in 0..n {
            let sex = coin_sex(b.rng, 0.5);
            let a = between(b.rng, 0, max_age) as u32;
            members.push(b.add(
                sex,
                a,
                Relationship::Grandchild,
                MaritalStatus::NeverMarried,
                head_family,
            ));
        }
    }
    if chance(b.rng, mix.sibling) {
        let sex = coin_sex(b.rng, 0.5);
        let a = (head_age as i64 + between(b.rng, -8, 8)).max(15) as u32;
        members.push(b.add(
            sex,
            a,
            Relationship::Sibling,
            MaritalStatus::NeverMarried,
            head_family,
        ));
    }
    if chance(b.rng, mix.other_relative) {
        let sex = coin_sex(b.rng, 0.45);
        let a = between(b.rng, 8, 30) as u32;
        let fam = if chance(b.rng, 0.5) {
            head_family
        } else {
            family_name(b.rng)
        };
        members.push(b.add(
            sex,
            a,
            Relationship::OtherRelative,
            MaritalStatus::NeverMarried,
            fam,
        ));
    }
    if chance(b.rng, mix.non_relative.0 + mix.non_relative.1 * urban) {
        let sex = coin_sex(b.rng, 0.3);
        let a = between(b.rng, 15, 35) as u32;
        let fam = family_name(b.rng);
        members.push(b.add(
            sex,
            a,
            Relationship::NonRelative,
            MaritalStatus::NeverMarried,
            fam,
        ));
    }
    members
}

/// A new disability with Washington Group severity, more often mild than severe.
pub(crate) fn draw_disability(rng: &mut Rng) -> Disability {
    let disability_type =
        DisabilityType::ALL[weighted(rng, &[0.25, 0.12, 0.3, 0.12, 0.06, 0.05, 0.1])];
    let severity = [
        DisabilitySeverity::SomeDifficulty,
        DisabilitySeverity::ALotOfDifficulty,
        DisabilitySeverity::CannotDoAtAll,
    ][weighted(rng, &[0.45, 0.38, 0.17])];
    Disability {
        disability_type,
        severity,
    }
}

/// Probability that a child of `age` is enrolled in school.
pub(crate) fn enrolment_chance(age: u32, place: &Place) -> f64 {
    let (pov, rem, urban) = (place.area.poverty, place.area.remoteness, place.urban());
    match age {
        6..=13 => 0.97 - 0.25 * pov - 0.12 * rem + 0.03 * urban,
        14..=17 => 0.85 - 0.45 * pov - 0.2 * rem + 0.1 * urban,
        18..=23 => (0.1 + 0.2 * urban) * (1.0 - pov),
        _ => 0.0,
    }
    .clamp(0.0, 0.99)
}

/// The level a pupil of `age` has attained (completed), by the usual grade-for-age.
pub(crate) fn level_for_school_age(age: u32) -> EducationLevel {
    match age {
        0..=11 => EducationLevel::None,
        12..=14 => EducationLevel::Primary,
        15..=17 => EducationLevel::LowerSecondary,
        18..=20 => EducationLevel::UpperSecondary,
        _ => EducationLevel::PostSecondary,
    }
}

/// Draws everything about a person that follows from age, sex and place.
fn attributes(rng: &mut Rng, p: &mut Person, on: Date, place: &Place, family_edu: f64) {
    let age = p.age(on);
    let (pov, rem, urban) = (place.area.poverty, place.area.remoteness, place.urban());
    // Disability rises steeply with age.
    let p_dis = match age {
        0..=14 => 0.012,
        15..=49 => 0.025,
        50..=64 => 0.06,
        _ => 0.16,
    };
    if chance(rng, p_dis) {
        p.disability = Some(draw_disability(rng));
    }
    let disabled = p.disability.is_some_and(|d| {
        matches!(
            d.severity,
            DisabilitySeverity::ALotOfDifficulty | DisabilitySeverity::CannotDoAtAll
        )
    });

    // Education: a latent score shifted by place, family and cohort.
    let z = normal(rng) + family_edu + 1.0 * urban
        - 1.6 * pov
        - 0.4 * rem
        - 0.025 * (age as f64 - 30.0).max(0.0)
        - if p.sex == Sex::Female { 0.15 } else { 0.0 };
    let adult_level = level_at(match z {
        z if z < -0.7 => 0,
        z if z < 0.3 => 1,
        z if z < 0.9 => 2,
        z if z < 1.5 => 3,
        z if z < 2.0 => 4,
        _ => 5,
    });
    let enrol = enrolment_chance(age, place) * if disabled { 0.5 } else { 1.0 };
    match age {
        0..=5 => {}
        6..=17 => {
            p.enrolled = chance(rng, enrol);
            let expected = level_for_school_age(age);
            // Out-of-school children stopped somewhere below their grade-for-age.
            p.education = if p.enrolled {
                expected
            } else {
                level_at(level_rank(expected).min(level_rank(adult_level)))
            };
        }
        _ => {
            p.enrolled = age <= 23 && level_rank(adult_level) >= 3 && chance(rng, enrol * 2.0);
            p.education = if age <= 23 {
                level_at(level_rank(adult_level).min(level_rank(level_for_school_age(age))))
            } else {
                adult_level
            };
        }
    }

    // Work.
    if age >= 15 && !p.enrolled {
        use EmploymentStatus::*;
        const STATUSES: [EmploymentStatus; 6] = [
            Employee,
            SelfEmployed,
            Employer,
            ContributingFamilyWorker,
            Unemployed,
            OutOfLabourForce,
        ];
        let edu = level_rank(p.education) as f64;
        let female = (p.sex == Sex::Female) as u8 as f64;
        let mut w = if age >= 65 {
            [0.02, 0.25 * (1.0 - urban), 0.01, 0.08, 0.01, 0.65]
        } else if urban > 0.0 {
            [
                0.22 + 0.07 * edu,
                0.28,
                0.02 + 0.01 * edu,
                0.04,
                0.11,
                0.22 + 0.12 * female,
            ]
        } else {
            [
                0.06 + 0.04 * edu,
                0.45,
                0.01,
                0.18 + 0.08 * female,
                0.04,
                0.2 + 0.05 * female,
            ]
        };
        if disabled {
            w[5] *= 4.0;
        }
        p.employment = STATUSES[weighted(rng, &w)];
    }

    // Incomes, monthly, in whole units of the national currency.
    let pay = place.pay() * EDUCATION_PAY[level_rank(p.education)];
    let female_gap = if p.sex == Sex::Female { 0.8 } else { 1.0 };
    match p.employment {
        EmploymentStatus::Employee => {
            p.incomes.set(
                IncomeSource::Wages,
                money(lognormal(rng, 150.0 * pay * female_gap, 0.5)),
            );
        }
        EmploymentStatus::Employer => {
            p.incomes.set(
                IncomeSource::SelfEmployment,
                money(lognormal(rng, 380.0 * pay, 0.7)),
            );
        }
        EmploymentStatus::SelfEmployed => {
            if urban == 0.0 && chance(rng, 0.75) {
                let farm = 70.0 * place.pay() * (1.0 + 0.1 * level_rank(p.education) as f64);
                p.incomes
                    .set(IncomeSource::Agriculture, money(lognormal(rng, farm, 0.75)));
            } else {
                let shop = 110.0 * place.pay() * EDUCATION_PAY[level_rank(p.education)].sqrt();
                p.incomes.set(
                    IncomeSource::SelfEmployment,
                    money(lognormal(rng, shop * female_gap, 0.75)),
                );
            }
        }
        _ => {}
    }
    if age >= 60 && chance(rng, (0.06 + 0.22 * urban - 0.04 * pov).max(0.01)) {
        p.incomes.set(
            IncomeSource::Pension,
            money(lognormal(rng, 90.0 * pay.sqrt(), 0.4)),
        );
    }
    if age >= 18 && chance(rng, 0.012) {
        p.incomes
            .set(IncomeSource::Other, money(lognormal(rng, 30.0, 0.8)));
    }
}

/// Rounds an amount to whole currency units, at least one.
pub(crate) fn money(x: f64) -> f64 {
    x.round().max(1.0)
}

/// Rounds to one decimal, never negative.
pub(crate) fn tenth(x: f64) -> f64 {
    ((x * 10.0).round() / 10.0).max(0.0)
}

/// A latent wealth score of the household: income per head against the area, plus noise.
pub(crate) fn wealth(rng: &mut Rng, income: f64, size: usize, place: &Place) -> f64 {
    let per_head = income / size.max(1) as f64;
    0.7 * ((per_head + 5.0) / 40.0).ln() - 1.0 * place.area.poverty + 0.7 * place.urban()
        - 0.5 * place.area.remoteness
        + 0.6 * normal(rng)
}

/// A dwelling whose materials and services follow wealth and place.
pub(crate) fn dwelling(rng: &mut Rng, w: f64, size: usize, place: &Place) -> Dwelling {
    let urban = place.urban();
    let rem = place.area.remoteness;
    let s = w + 0.5 * normal(rng);
    let wall_material = if s < -0.7 - 0.5 * urban {
        WallMaterial::Natural
    } else if s < 0.4 - 0.4 * urban {
        WallMaterial::Rudimentary
    } else {
        WallMaterial::Finished
    };
    let s = w + 0.6 * normal(rng) - 0.8 * rem;
    let water_source = if urban > 0.0 {
        if s > -0.4 {
            WaterSource::Piped
        } else if s > -1.6 {
            WaterSource::ImprovedOther
        } else {
            WaterSource::Unimproved
        }
    } else if s > 1.2 {
        WaterSource::Piped
    } else if s > -0.6 {
        WaterSource::ImprovedOther
    } else if s > -1.6 {
        WaterSource::Unimproved
    } else {
        WaterSource::SurfaceWater
    };
    let s = w + 0.6 * normal(rng) + 0.4 * urban;
    let sanitation = if s > 1.3 {
        Sanitation::Safely
    } else if s > 0.3 {
        Sanitation::Basic
    } else if s > -0.4 {
        Sanitation::Limited
    } else if s > -1.4 {
        Sanitation::Unimproved
    } else {
        Sanitation::OpenDefecation
    };
    let electricity = chance(rng, sigmoid(1.6 * w + 2.0 * urban - 1.6 * rem - 0.6));
    let rooms = (1 + poisson(rng, (size as f64 / 3.0 + 0.5 * w).max(0.2))).min(9);
    let tenure = if urban > 0.0 {
        [
            Tenure::Owned,
            Tenure::Rented,
            Tenure::Informal,
            Tenure::RentFree,
        ][weighted(rng, &[0.38, 0.45, 0.1, 0.07])]
    } else {
        [
            Tenure::Owned,
            Tenure::Rented,
            Tenure::Informal,
            Tenure::RentFree,
        ][weighted(rng, &[0.8, 0.04, 0.06, 0.1])]
    };
    Dwelling {
        wall_material,
        water_source,
        sanitation,
        electricity,
        rooms,
        tenure,
    }
}

/// Assets: land and livestock in the countryside, phones and goods with wealth.
pub(crate) fn assets(
    rng: &mut Rng,
    w: f64,
    adults: usize,
    electricity: bool,
    place: &Place,
) -> Assets {
    let urban = place.urban();
    let rural = 1.0 - urban;
    let land_hectares = if chance(rng, 0.08 + 0.72 * rural) {
        tenth(lognormal(rng, 0.9 * (0.4 * w).exp(), 0.8)).max(0.1)
    } else {
        0.0
    };
    let livestock_tlu = if chance(rng, 0.1 + 0.5 * rural + 0.1 * place.area.remoteness) {
        tenth(lognormal(rng, 1.0 * (0.3 * w).exp(), 1.0))
    } else {
        0.0
    };
    let mobile_phones = poisson(
        rng,
        (adults as f64 * sigmoid(1.2 * w + 0.8 * urban + 0.3)).max(0.05),
    )
    .min(8);
    let radio = chance(rng, sigmoid(0.6 * w - 0.1));
    let television = electricity && chance(rng, sigmoid(1.4 * w + 0.5 * urban - 0.3));
    let refrigerator = electricity && chance(rng, sigmoid(1.8 * w - 2.0));
    let bicycle = chance(rng, 0.08 + 0.3 * rural);
    let motorcycle = chance(rng, sigmoid(1.0 * w - 2.3));
    let car = chance(rng, sigmoid(1.8 * w - 4.8));
    Assets {
        land_hectares,
        livestock_tlu,
        mobile_phones,
        radio,
        television,
        refrigerator,
        bicycle,
        motorcycle,
        car,
    }
}

/// When household `i` (0-based, of `n`) was surveyed. Enumerators sweep the areas in code
/// order, working 08:00–17:00, so registration time rises with the household number and
/// `households.jsonl` is in time order too.
pub(crate) fn registration_time(config: &Config, i: u64, jitter: f64) -> Micros {
    let n = config.households.max(1) as f64;
    let x = ((i as f64 + jitter) / n).min(0.999_999_999) * config.registration_days as f64;
    let day = x.floor();
    let hour_frac = x - day;
    let start = micros(config.registration_start()).0;
    let seconds = (8.0 * 3600.0 + hour_frac * 9.0 * 3600.0) as i64;
    Micros(start + day as i64 * MICROS_PER_DAY + seconds * 1_000_000)
}

/// Generates the households of `chunk` (numbers `chunk * CHUNK_HOUSEHOLDS + 1 ..`).
pub(crate) fn generate_chunk(config: &Config, areas: &Areas, chunk: u64) -> Chunk {
    let first = chunk * CHUNK_HOUSEHOLDS;
    let end = (first + CHUNK_HOUSEHOLDS).min(config.households);
    let mut rng = rng_for(config.seed, Stream::Households, chunk);
    let mut persons = Vec::with_capacity(((end - first) * 5) as usize);
    let mut households = Vec::with_capacity((end - first) as usize + 64);
    let mut registered_at = Vec::with_capacity((end - first) as usize);
    let mut by_village: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut v = areas.village_of_household(first);
    for i in first..end {
        while !areas.village_households(v).contains(&i) {
            v += 1;
        }
        let place = Place {
            area: areas.village(v),
            village: v as u32,
        };
        let at = registration_time(config, i, unit(&mut rng));
        registered_at.push(at);
        let local = households.len() as u32;
        let h = make_household(
            config.household_sizes.composition(),
            &mut rng,
            &mut persons,
            &place,
            i + 1,
            local,
            at.date(),
        );
        households.push(h);
        match by_village.last_mut() {
            Some((x, list)) if *x == v as u32 => list.push(local),
            _ => by_village.push((v as u32, vec![local])),
        }
    }
    let reserve = config.households + chunk * CHUNK_HOUSEHOLDS + 1;
    Chunk {
        index: chunk,
        persons,
        households,
        registered_at,
        by_village,
        next_founded: reserve,
        end_founded: reserve + CHUNK_HOUSEHOLDS,
        rng: rng_for(config.seed, Stream::Events, chunk),
        seq: 0,
        intent_seq: 0,
        pending: Default::default(),
        month_bytes: (end - first) as usize * 160,
    }
}

/// One household of the initial survey.
pub(crate) fn make_household(
    composition: Composition,
    rng: &mut Rng,
    persons: &mut Vec<Person>,
    place: &Place,
    num: u64,
    local: u32,
    on: Date,
) -> Hh {
    let first = persons.len();
    let members = {
        let mut b = Builder {
            rng,
            persons,
            household: local,
            num,
            slot: 0,
            on,
            composition,
        };
        compose(&mut b, place)
    };
    let family_edu = 0.5 * normal(rng);
    for p in &mut persons[first..] {
        attributes(rng, p, on, place, family_edu);
    }
    let size = members.len();
    let head = first;
    // Household-level incomes, on the head: remittances from migrants, rare transfers.
    let absent_spouse = persons[head].is_married() && persons[head].spouse == NO_ONE;
    if chance(
        rng,
        if absent_spouse {
            0.7
        } else {
            0.08 + 0.1 * place.area.remoteness
        },
    ) {
        persons[head]
            .incomes
            .set(IncomeSource::Remittances, money(lognormal(rng, 40.0, 0.7)));
    }
    let income: f64 = persons[first..].iter().map(|p| p.incomes.total()).sum();
    if chance(rng, 0.05 * place.area.poverty) {
        persons[head].incomes.set(
            IncomeSource::SocialTransfer,
            money(lognormal(rng, 25.0, 0.2)),
        );
    }
    let adults = persons[first..].iter().filter(|p| p.age(on) >= 15).count();
    let w = wealth(rng, income, size, place);
    let d = dwelling(rng, w, size, place);
    let a = assets(rng, w, adults, d.electricity, place);
    Hh {
        num,
        village: place.village,
        members,
        next_slot: size as u32,
        dwelling: d,
        assets: a,
        dissolved: false,
        founded: false,
        registered: true,
    }
}

/// A household's current record as a `HouseholdRegistered` event.
pub(crate) fn registration_event(
    areas: &Areas,
    chunk: &Chunk,
    h: u32,
    event_id: uuid::Uuid,
    at: Micros,
    recorded_at: Micros,
    source: RegistrationSource,
) -> Event {
    let hh = &chunk.households[h as usize];
    let members = hh
        .members
        .iter()
        .map(|p| chunk.persons[*p as usize].member())
        .collect();
    Event {
        envelope: Envelope {
            event_id,
            source_system: CompactString::const_new(match source {
                RegistrationSource::Survey => SURVEY_SOURCE,
                _ => "case-management",
            }),
            occurred_at: at,
            recorded_at,
            person_id: None,
            household_id: Some(hh.id()),
            correlation_id: None,
            schema_version: SCHEMA_VERSION,
        },
        payload: Payload::HouseholdRegistered(HouseholdRegistered {
            area: areas.village(hh.village as usize).code.clone(),
            members,
            dwelling: hh.dwelling,
            assets: hh.assets,
            registration_source: source,
        }),
    }
}

/// The `HouseholdRegistered` event of initial household `h` of a chunk.
pub(crate) fn initial_registration(config: &Config, areas: &Areas, chunk: &Chunk, h: u32) -> Event {
    let global = chunk.index * CHUNK_HOUSEHOLDS + h as u64;
    let at = chunk.registered_at[h as usize];
    // Survey data are entered the same evening or within a few days.
    let lag = (crate::rng::mix64(global ^ config.seed) % (3 * 86_400)) as i64 * 1_000_000;
    registration_event(
        areas,
        chunk,
        h,
        event_id(config.seed, Stream::RegistrationIds, global, 0),
        at,
        Micros(at.0 + 3_600_000_000 + lag),
        RegistrationSource::Survey,
    )
}
