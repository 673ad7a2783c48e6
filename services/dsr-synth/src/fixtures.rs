//! Small, named fixtures for tests and examples elsewhere in dsr.
//!
//! Hand-built households ([`household`]) say exactly what a test is about ("a widow with
//! three children and no income"); [`small_population`] gives a realistic, consistent
//! population with a year of events when a test needs many households. Both are
//! deterministic, so a failing test fails the same way twice.

use crate::areas::Areas;
use crate::config::{micros, Config};
use crate::generate::{generate, Collect, Summary};
use crate::rng::mix64;
use compact_str::CompactString;
use dsr_core::codes::*;
use dsr_core::event::*;
use dsr_core::household::{Assets, Disability, Dwelling, Incomes};
use dsr_core::ids::MICROS_PER_DAY;
use dsr_core::{AreaCode, Date, Event, EventId, HouseholdId, Member, Micros, PersonId};

/// The village hand-built households live in unless told otherwise. It exists in every
/// generated hierarchy.
pub const AREA: &str = "R01.D01.S01.V001";

/// A generated population, in memory.
#[derive(Clone, Debug)]
pub struct Population {
    pub areas: Areas,
    /// One `HouseholdRegistered` per household, in household order.
    pub households: Vec<Event>,
    /// A year of life events from 2026-01-01, in `occurred_at` order.
    pub events: Vec<Event>,
    pub summary: Summary,
    pub config: Config,
}

/// The configuration `small_population` uses: 12 months from 2026-01-01, one thread.
pub fn small_config(seed: u64, households: u64) -> Config {
    Config {
        threads: 1,
        ..Config::new(households, seed)
    }
}

/// `households` households and a year of their life events, deterministic from `seed`.
pub fn small_population(seed: u64, households: u64) -> Population {
    population_of(small_config(seed, households))
}

/// The population `config` describes, in memory (e.g. [`small_config`] with other household
/// sizes).
pub fn population_of(config: Config) -> Population {
    let mut sink = Collect::default();
    let summary = generate(&config, &mut sink, &|_| {}).expect("fixture configurations are valid");
    Population {
        areas: sink.areas.expect("generation delivers the areas first"),
        households: sink.households,
        events: sink.events,
        summary,
        config,
    }
}

/// Midnight UTC of a civil date.
pub fn at(y: i32, m: u32, d: u32) -> Micros {
    micros(Date::from_ymd(y, m, d))
}

/// A clock reading after everything fixtures and a default `small_population` produce.
pub fn now() -> Micros {
    at(2027, 1, 1)
}

/// A member with defaults for everything but identity: never married, no schooling, out of
/// the labour force, no income, no disability.
pub fn member(person_id: &str, sex: Sex, birth_date: Date, relationship: Relationship) -> Member {
    Member {
        person_id: PersonId::new(person_id),
        given_name: CompactString::const_new("Amani"),
        family_name: CompactString::const_new("Kasoma"),
        sex,
        birth_date,
        relationship,
        marital_status: MaritalStatus::NeverMarried,
        education_level: EducationLevel::None,
        enrolled_in_school: false,
        employment: EmploymentStatus::OutOfLabourForce,
        incomes: Incomes::default(),
        disability: None,
    }
}

/// A modest rural dwelling: rudimentary walls, an improved well, a basic latrine, no
/// electricity.
pub fn rural_dwelling() -> Dwelling {
    Dwelling {
        wall_material: WallMaterial::Rudimentary,
        water_source: WaterSource::ImprovedOther,
        sanitation: Sanitation::Limited,
        electricity: false,
        rooms: 2,
        tenure: Tenure::Owned,
    }
}

/// The worst dwelling on every ladder.
pub fn poor_dwelling() -> Dwelling {
    Dwelling {
        wall_material: WallMaterial::Natural,
        water_source: WaterSource::SurfaceWater,
        sanitation: Sanitation::OpenDefecation,
        electricity: false,
        rooms: 1,
        tenure: Tenure::Informal,
    }
}

/// A deterministic event id for fixture events, from a name.
pub fn event_id(name: &str) -> EventId {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let hi = mix64(h);
    let lo = mix64(hi ^ h.rotate_left(32));
    uuid::Builder::from_custom_bytes((((hi as u128) << 64) | lo as u128).to_be_bytes()).into_uuid()
}

/// An event with a fixture envelope: `source_system` "fixture", recorded when it occurred,
/// and an id derived from everything else (so two different fixture events never share one).
pub fn event(
    household_id: Option<&str>,
    person_id: Option<&str>,
    occurred_at: Micros,
    payload: Payload,
) -> Event {
    let key = format!(
        "{household_id:?}|{person_id:?}|{}|{}",
        occurred_at.0,
        serde_json::to_string(&payload).unwrap_or_default()
    );
    Event {
        envelope: Envelope {
            event_id: event_id(&key),
            source_system: CompactString::const_new("fixture"),
            occurred_at,
            recorded_at: occurred_at,
            person_id: person_id.map(PersonId::new),
            household_id: household_id.map(HouseholdId::new),
            correlation_id: None,
            schema_version: SCHEMA_VERSION,
        },
        payload,
    }
}

/// `PersonBorn` of `child` to `mother` in `household`.
pub fn born(household: &str, child: Member, mother: &str, when: Micros) -> Event {
    let person = child.person_id.to_string();
    event(
        Some(household),
        Some(&person),
        when,
        Payload::PersonBorn(PersonBorn {
            child,
            mother_id: Some(PersonId::new(mother)),
            father_id: None,
        }),
    )
}

/// `PersonDied` of `person` of `household`, on the day of `when`.
pub fn died(household: &str, person: &str, when: Micros) -> Event {
    event(
        Some(household),
        Some(person),
        when,
        Payload::PersonDied(PersonDied {
            person_id: PersonId::new(person),
            date_of_death: when.date(),
        }),
    )
}

/// `PersonMoved` of `person` from `from` to `to` (founding it when `founds`).
pub fn moved(from: &str, to: &str, person: &str, founds: bool, area: &str, when: Micros) -> Event {
    event(
        Some(from),
        Some(person),
        when,
        Payload::PersonMoved(PersonMoved {
            person_id: PersonId::new(person),
            from_household_id: HouseholdId::new(from),
            to_household_id: HouseholdId::new(to),
            founds_new_household: founds,
            new_area: AreaCode::new(area),
            relationship_in_new_household: if founds {
                Relationship::Head
            } else {
                Relationship::OtherRelative
            },
        }),
    )
}

/// A monthly `IncomeReported`.
pub fn income(
    household: &str,
    person: &str,
    source: IncomeSource,
    monthly: f64,
    when: Micros,
) -> Event {
    event(
        Some(household),
        Some(person),
        when,
        Payload::IncomeReported(IncomeReported {
            person_id: PersonId::new(person),
            amount: monthly,
            period: IncomePeriod::Monthly,
            source,
        }),
    )
}

/// Builds one household by hand; see [`household`].
#[derive(Clone, Debug)]
pub struct HouseholdBuilder {
    household_id: HouseholdId,
    area: AreaCode,
    at: Micros,
    members: Vec<Member>,
    dwelling: Dwelling,
    assets: Assets,
    source: RegistrationSource,
}

/// Starts a household `household_id` in [`AREA`], surveyed on 2025-10-01 at 09:00, in a
/// [`rural_dwelling`] with no assets and no members yet.
///
/// ```
/// use dsr_core::codes::{IncomeSource, Sex};
/// let registered = dsr_synth::fixtures::household("H00000001")
///     .head(Sex::Female, 34)
///     .income(IncomeSource::Agriculture, 40.0)
///     .child(Sex::Male, 6)
///     .child(Sex::Female, 2)
///     .build();
/// assert!(registered.validate(dsr_synth::fixtures::now()).is_ok());
/// ```
pub fn household(household_id: &str) -> HouseholdBuilder {
    HouseholdBuilder {
        household_id: HouseholdId::new(household_id),
        area: AreaCode::new(AREA),
        at: Micros(at(2025, 10, 1).0 + 9 * 3_600_000_000),
        members: Vec::new(),
        dwelling: rural_dwelling(),
        assets: Assets::default(),
        source: RegistrationSource::Survey,
    }
}

impl HouseholdBuilder {
    pub fn area(mut self, code: &str) -> Self {
        self.area = AreaCode::new(code);
        self
    }

    /// When the household was registered; ages count to this day.
    pub fn registered_at(mut self, when: Micros) -> Self {
        self.at = when;
        self
    }

    pub fn source(mut self, source: RegistrationSource) -> Self {
        self.source = source;
        self
    }

    pub fn dwelling(mut self, dwelling: Dwelling) -> Self {
        self.dwelling = dwelling;
        self
    }

    pub fn assets(mut self, assets: Assets) -> Self {
        self.assets = assets;
        self
    }

    /// The id the next member gets: `P` + the household's digits + a 2-digit slot when the
    /// household id is `H` + digits, else `<household id>-<slot>`.
    fn next_person_id(&self) -> String {
        let n = self.members.len();
        let h = self.household_id.as_str();
        match h.strip_prefix('H') {
            Some(d) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => {
                format!("P{d}{n:02}")
            }
            _ => format!("{h}-{n:02}"),
        }
    }

    /// A member of `age` whole years on the registration day.
    pub fn person(mut self, sex: Sex, age: u32, relationship: Relationship) -> Self {
        let day = self.at.date();
        let (y, m, d) = day.ymd();
        // Born `age` years and a few months before the registration day.
        let birth = Date(Date::from_ymd(y - age as i32, m, d.min(28)).0 - 100);
        let mut mem = member(&self.next_person_id(), sex, birth, relationship);
        if age >= 15 {
            mem.education_level = EducationLevel::Primary;
        }
        if (6..=17).contains(&age) {
            mem.enrolled_in_school = true;
        }
        self.members.push(mem);
        self
    }

    pub fn head(self, sex: Sex, age: u32) -> Self {
        self.person(sex, age, Relationship::Head)
    }

    /// A spouse (of the other sex than the head); marks both married.
    pub fn spouse(mut self, age: u32) -> Self {
        let sex = match self.members.first().map(|m| m.sex) {
            Some(Sex::Male) => Sex::Female,
            _ => Sex::Male,
        };
        for m in &mut self.members {
            if m.relationship == Relationship::Head {
                m.marital_status = MaritalStatus::Married;
            }
        }
        self = self.person(sex, age, Relationship::Spouse);
        self.last().marital_status = MaritalStatus::Married;
        self
    }

    pub fn child(self, sex: Sex, age: u32) -> Self {
        self.person(sex, age, Relationship::Child)
    }

    pub fn parent(self, sex: Sex, age: u32) -> Self {
        let mut b = self.person(sex, age, Relationship::Parent);
        b.last().marital_status = MaritalStatus::Widowed;
        b
    }

    /// Adds a fully specified member.
    pub fn member(mut self, member: Member) -> Self {
        self.members.push(member);
        self
    }

    fn last(&mut self) -> &mut Member {
        self.members
            .last_mut()
            .expect("add a member before describing it")
    }

    /// Monthly income of the last member added (sets employment to match work income).
    pub fn income(mut self, source: IncomeSource, monthly: f64) -> Self {
        let m = self.last();
        m.incomes.set(source, monthly);
        m.employment = match source {
            IncomeSource::Wages => EmploymentStatus::Employee,
            IncomeSource::SelfEmployment | IncomeSource::Agriculture => {
                EmploymentStatus::SelfEmployed
            }
            _ => m.employment,
        };
        self
    }

    /// A disability of the last member added.
    pub fn disability(
        mut self,
        disability_type: DisabilityType,
        severity: DisabilitySeverity,
    ) -> Self {
        self.last().disability = Some(Disability {
            disability_type,
            severity,
        });
        self
    }

    /// Marital status of the last member added.
    pub fn marital(mut self, status: MaritalStatus) -> Self {
        self.last().marital_status = status;
        self
    }

    /// School enrolment of the last member added.
    pub fn enrolled(mut self, enrolled: bool) -> Self {
        self.last().enrolled_in_school = enrolled;
        self
    }

    pub fn household_id(&self) -> &HouseholdId {
        &self.household_id
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The household's `HouseholdRegistered` event.
    pub fn build(&self) -> Event {
        let hid = self.household_id.to_string();
        let mut e = event(
            Some(&hid),
            None,
            self.at,
            Payload::HouseholdRegistered(HouseholdRegistered {
                area: self.area.clone(),
                members: self.members.clone(),
                dwelling: self.dwelling,
                assets: self.assets,
                registration_source: self.source,
            }),
        );
        e.envelope.source_system = CompactString::const_new("survey");
        e
    }
}

/// A few households every test suite can name.
pub mod named {
    use super::*;

    /// A widow of 38 farming a little land, with three children (12, 8, 3); poor dwelling.
    pub fn widow_with_three_children() -> Event {
        household("H90000001")
            .head(Sex::Female, 38)
            .marital(MaritalStatus::Widowed)
            .income(IncomeSource::Agriculture, 35.0)
            .child(Sex::Male, 12)
            .child(Sex::Female, 8)
            .child(Sex::Female, 3)
            .dwelling(poor_dwelling())
            .assets(Assets {
                land_hectares: 0.4,
                livestock_tlu: 0.2,
                mobile_phones: 1,
                ..Assets::default()
            })
            .build()
    }

    /// An elderly man of 74 living alone, with a small pension and difficulty walking.
    pub fn elderly_alone() -> Event {
        household("H90000002")
            .head(Sex::Male, 74)
            .marital(MaritalStatus::Widowed)
            .income(IncomeSource::Pension, 60.0)
            .disability(
                DisabilityType::Walking,
                DisabilitySeverity::ALotOfDifficulty,
            )
            .build()
    }

    /// A salaried urban couple with one child, a finished house with piped water.
    pub fn urban_salaried_couple() -> Event {
        household("H90000003")
            .area("R01.D01.S01.V002")
            .head(Sex::Male, 41)
            .income(IncomeSource::Wages, 650.0)
            .spouse(36)
            .income(IncomeSource::SelfEmployment, 220.0)
            .child(Sex::Female, 9)
            .dwelling(Dwelling {
                wall_material: WallMaterial::Finished,
                water_source: WaterSource::Piped,
                sanitation: Sanitation::Safely,
                electricity: true,
                rooms: 4,
                tenure: Tenure::Owned,
            })
            .assets(Assets {
                mobile_phones: 2,
                television: true,
                refrigerator: true,
                car: true,
                ..Assets::default()
            })
            .build()
    }

    /// Every named household.
    pub fn all() -> Vec<Event> {
        vec![
            widow_with_three_children(),
            elderly_alone(),
            urban_salaried_couple(),
        ]
    }
}

/// Days in microseconds, for moving fixture times along.
pub const DAY: i64 = MICROS_PER_DAY;

/// What a population would give away if stored in the clear: every household id, person id,
/// given name and family name in it (names shorter than 5 letters are left out: they occur in
/// random bytes and in ordinary words), sorted and without repeats. Tests of encryption at rest
/// look for these in data directories with [`find_in_files`].
pub fn personal_strings(population: &Population) -> Vec<String> {
    let mut out = Vec::new();
    for event in population.households.iter().chain(&population.events) {
        if let Some(h) = &event.envelope.household_id {
            out.push(h.as_str().to_owned());
        }
        if let Some(p) = &event.envelope.person_id {
            out.push(p.as_str().to_owned());
        }
        if let Payload::HouseholdRegistered(r) = &event.payload {
            for m in &r.members {
                out.push(m.person_id.as_str().to_owned());
                out.push(m.given_name.to_string());
                out.push(m.family_name.to_string());
            }
        }
    }
    out.retain(|s| s.len() >= 5);
    out.sort();
    out.dedup();
    out
}

/// Every file under `dir` that holds one of `needles` as bytes (what `grep -r` and `strings`
/// would show), with the first needle found in it. One pass per file (Aho-Corasick), so a
/// data directory of many megabytes and thousands of needles takes seconds.
pub fn find_in_files(
    dir: &std::path::Path,
    needles: &[String],
) -> Vec<(std::path::PathBuf, String)> {
    let finder = aho_corasick::AhoCorasick::new(needles).expect("needles build an automaton");
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some(m) = finder.find(&bytes) {
            found.push((path, needles[m.pattern().as_usize()].clone()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_households_are_valid() {
        for e in named::all() {
            e.validate(now()).unwrap();
            let Payload::HouseholdRegistered(r) = &e.payload else {
                panic!("not a registration")
            };
            assert_eq!(
                r.members
                    .iter()
                    .filter(|m| m.relationship == Relationship::Head)
                    .count(),
                1
            );
        }
        let w = named::widow_with_three_children();
        let Payload::HouseholdRegistered(r) = &w.payload else {
            unreachable!()
        };
        assert_eq!(r.members[1].person_id.as_str(), "P9000000101");
        assert_eq!(r.members[3].age_on(Date::from_ymd(2025, 10, 1)), 3);
    }

    #[test]
    fn fixture_events_are_deterministic_and_distinct() {
        let a = died("H1", "P1", at(2026, 3, 1));
        let b = died("H1", "P1", at(2026, 3, 1));
        let c = died("H1", "P2", at(2026, 3, 1));
        assert_eq!(a, b);
        assert_ne!(a.envelope.event_id, c.envelope.event_id);
    }
}
