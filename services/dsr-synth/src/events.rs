//! The life-event stream: a simulated period of births, deaths, moves, marriages, income
//! and work changes, disability assessments, school changes, asset and shock reports,
//! corrections, and area-wide droughts and floods.
//!
//! Each chunk is simulated month by month against its own state, so every event is
//! consistent with the population as it is at that moment: only living members die, give
//! birth or move; a person who moved is reported by their new household; nobody is reported
//! after death; a household that lost its last member gets no further events. Within a month
//! candidate events ("intents") are drawn with random times and then applied in time order,
//! each re-checked against the state, which also lets one event schedule its consequences
//! (a marriage, then the bride's move; a change of job, then the new income; a declared
//! drought, then the households' damage reports).
//!
//! The tracked record follows dsr-core's reducer where the reducer decides something (head
//! succession when a head dies or leaves, a corrected income replacing the breakdown), so
//! every event applies cleanly and a household's on-demand re-registration matches the
//! reducer's record of it (the tests check both).

use crate::areas::Areas;
use crate::config::{micros, Config};
use crate::population::{
    assets, draw_disability, dwelling, enrolment_chance, level_at, level_for_school_age,
    level_rank, money, registration_event, tenth, wealth, Place,
};
use crate::rng::*;
use crate::state::*;
use compact_str::{format_compact, CompactString};
use dsr_core::codes::*;
use dsr_core::event::*;
use dsr_core::household::{Disability, Incomes};
use dsr_core::ids::MICROS_PER_DAY;
use dsr_core::{Date, EventId, HouseholdId, Micros, PersonId};
use std::cmp::{Ordering, Reverse};

pub(crate) use crate::batch::Batch;
pub(crate) use crate::shocks::{schedule_shocks, shock_events, Shock};

const DAY: i64 = MICROS_PER_DAY;

/// Source systems, as a deployment would name them.
const CRVS: &str = "crvs";
const CASE: &str = "case-management";
const TAX: &str = "tax";
const PENSION: &str = "pension-fund";
const LABOUR: &str = "labour-ministry";
const HEALTH: &str = "health";
const EMIS: &str = "emis";
const TRANSFERS: &str = "social-protection-mis";

/// Calendar month (1–12) in which the school year starts.
pub const SCHOOL_YEAR_MONTH: u32 = 2;

/// Something that may happen to a person or household, re-checked when its time comes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Intent {
    Death(u32),
    Birth(u32),
    Move(u32),
    Marriage(u32),
    Divorce(u32),
    Income(u32),
    Employment(u32),
    IncomeAfterJob(u32),
    Disability(u32),
    School {
        p: u32,
        enrolled: bool,
        level: EducationLevel,
    },
    Assets(u32),
    HouseholdShock {
        h: u32,
        shock: u32,
    },
    Correction(u32),
    Register(u32),
    JoinSpouse {
        p: u32,
        spouse: u32,
        rel: Relationship,
    },
    FoundWithSpouse {
        p: u32,
        spouse: u32,
    },
    LeaveAfterDivorce(u32),
}

/// An intent with its time; ordered by time, then by when it was scheduled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub at: i64,
    pub seq: u64,
    pub intent: Intent,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What every chunk's simulation reads and nobody writes.
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub areas: &'a Areas,
    pub shocks: &'a [Shock],
}

/// Annual probability of dying at `age` (shape of a young, low-income population).
fn mortality(age: u32) -> f64 {
    match age {
        0 => 0.045,
        1..=4 => 0.007,
        5..=14 => 0.0015,
        15..=29 => 0.0025,
        30..=44 => 0.004,
        45..=59 => 0.009,
        60..=69 => 0.022,
        70..=79 => 0.05,
        _ => 0.12,
    }
}

/// Annual births per woman at `age` (total fertility about 4.4).
fn fertility(age: u32) -> f64 {
    match age {
        15..=19 => 0.09,
        20..=24 => 0.22,
        25..=29 => 0.22,
        30..=34 => 0.18,
        35..=39 => 0.12,
        40..=44 => 0.05,
        45..=49 => 0.012,
        _ => 0.0,
    }
}

/// Annual probability of leaving home at `age` (marriages and divorces come on top).
fn leaving(age: u32) -> f64 {
    match age {
        0..=14 => 0.015,
        15..=17 => 0.04,
        18..=24 => 0.11,
        25..=34 => 0.07,
        _ => 0.02,
    }
}

/// Monthly probabilities derived from the annual rates, with the calibration of the age
/// schedules folded in.
struct Monthly {
    death: f64,
    birth: f64,
    moves: f64,
    marriage: f64,
    divorce: f64,
    income: f64,
    employment: f64,
    onset: f64,
    reassess: f64,
    dropout: f64,
    assets: f64,
    shock: f64,
    correction: f64,
}

impl Monthly {
    fn new(config: &Config) -> Self {
        let r = &config.rates;
        // Calibration factors: the age schedules above, applied to the generated population,
        // give these crude rates at factor 1 (measured; see the distribution tests).
        const DEATHS_AT_1: f64 = 7.0;
        const BIRTHS_AT_1: f64 = 24.8;
        const MOVES_AT_1: f64 = 0.03;
        Monthly {
            death: r.deaths_per_1000 / DEATHS_AT_1 / 12.0,
            birth: r.births_per_1000 / BIRTHS_AT_1 / 12.0,
            moves: r.moves_per_person / MOVES_AT_1 / 12.0,
            // Each single adult can propose, so half the per-person rate per proposer.
            marriage: r.marriages_per_single_adult / 2.0 / 12.0,
            divorce: r.divorces_per_couple / 12.0,
            income: r.income_reports_per_earner / 12.0,
            employment: r.employment_changes_per_adult / 12.0,
            onset: r.disability_onsets_per_1000 / 1000.0 / 12.0,
            reassess: 0.15 / 12.0,
            dropout: 0.02 / 12.0,
            assets: r.assets_reports_per_household / 12.0,
            shock: r.household_shocks_per_household / 12.0,
            correction: r.corrections_per_household / 12.0,
        }
    }
}

/// The simulation of one chunk during one month.
struct Sim<'a, 'b> {
    ctx: &'a Ctx<'a>,
    chunk: &'b mut Chunk,
    out: &'b mut Batch,
    rates: Monthly,
}

/// Simulates month `m` of the period for `chunk`, appending its events (in time order) to
/// `out`.
pub(crate) fn simulate_month(
    ctx: &Ctx,
    chunk: &mut Chunk,
    m: u32,
    out: &mut Batch,
) -> Result<(), serde_json::Error> {
    let config = ctx.config;
    let from = micros(config.month_start(m)).0;
    let to = micros(config.month_start(m + 1)).0;
    let mut sim = Sim {
        ctx,
        chunk,
        out,
        rates: Monthly::new(config),
    };
    sim.draw(from, to);
    while let Some(Reverse(p)) = sim.chunk.pending.peek().copied() {
        if p.at >= to {
            break;
        }
        sim.chunk.pending.pop();
        sim.process(p.at, p.intent)?;
    }
    Ok(())
}

fn ages_on(birth: Date, at: i64) -> u32 {
    age_years(birth, Micros(at).date())
}

fn is_earning_source(s: IncomeSource) -> bool {
    matches!(
        s,
        IncomeSource::Wages | IncomeSource::SelfEmployment | IncomeSource::Agriculture
    )
}

impl Sim<'_, '_> {
    fn rng(&mut self) -> &mut Rng {
        &mut self.chunk.rng
    }

    fn schedule(&mut self, at: i64, intent: Intent) {
        let seq = self.chunk.intent_seq;
        self.chunk.intent_seq += 1;
        self.chunk
            .pending
            .push(Reverse(Pending { at, seq, intent }));
    }

    /// A time `lo..=hi` days after `at`, on a whole second.
    fn later(&mut self, at: i64, lo_days: i64, hi_days: i64) -> i64 {
        let span = ((hi_days - lo_days).max(0) * 86_400).max(1);
        let s = between(self.rng(), 0, span - 1);
        at + lo_days * DAY + s * 1_000_000
    }

    fn place(&self, h: u32) -> Place<'_> {
        let v = self.chunk.households[h as usize].village;
        Place {
            area: self.ctx.areas.village(v as usize),
            village: v,
        }
    }

    /// Draws this month's intents of every living person and household.
    fn draw(&mut self, from: i64, to: i64) {
        let today = Micros(from).date();
        let span_s = (to - from) / 1_000_000;
        let (_, month, _) = today.ymd();
        let school_month = month == SCHOOL_YEAR_MONTH;
        let r = &self.rates;
        let (death, birth, moves, marriage, divorce, income, employment, onset, reassess, dropout) = (
            r.death,
            r.birth,
            r.moves,
            r.marriage,
            r.divorce,
            r.income,
            r.employment,
            r.onset,
            r.reassess,
            r.dropout,
        );
        let (assets_p, shock_p, correction_p) = (r.assets, r.shock, r.correction);
        // The largest each probability below can be, income aside.
        let bound = death * 0.12 * 1.8
            + birth * 0.22 * 1.25
            + moves * 0.11
            + marriage * 1.5
            + divorce
            + employment
            + reassess.max(onset * 5.0)
            + dropout;
        let mut intents: Vec<(i64, Intent)> = Vec::with_capacity(self.chunk.households.len());
        for h in 0..self.chunk.households.len() {
            let hh = &self.chunk.households[h];
            if hh.dissolved {
                continue;
            }
            let size = hh.members.len();
            let rng = &mut self.chunk.rng;
            let at = |rng: &mut Rng| from + between(rng, 0, span_s - 1) * 1_000_000;
            let u = unit(rng);
            let h32 = h as u32;
            if u < assets_p {
                intents.push((at(rng), Intent::Assets(h32)));
            } else if u < assets_p + shock_p {
                intents.push((
                    at(rng),
                    Intent::HouseholdShock {
                        h: h32,
                        shock: NO_ONE,
                    },
                ));
            } else if u < assets_p + shock_p + correction_p {
                intents.push((at(rng), Intent::Correction(h32)));
            }
            for &p in &hh.members {
                let person = &self.chunk.persons[p as usize];
                let mut u = unit(rng);
                // Most person-months have no event: skip them on an upper bound of the sum of
                // the probabilities below (exact: no event could have been picked).
                if u >= bound + if person.earns() { income } else { 0.0 } {
                    continue;
                }
                let age = person.age(today);
                let female = person.sex == Sex::Female;
                let married = person.is_married();
                // Married people move with their spouse (marriage, divorce); a head does not
                // walk out on the household.
                let heads_others = person.relationship == Relationship::Head && size > 1;
                let can_leave = !(married || heads_others);
                let disabled = person.disability.is_some_and(|d| {
                    matches!(
                        d.severity,
                        DisabilitySeverity::ALotOfDifficulty | DisabilitySeverity::CannotDoAtAll
                    )
                });
                let mut pick = |prob: f64| {
                    let hit = u < prob;
                    u -= prob;
                    hit
                };
                let intent = if pick(death * mortality(age) * if disabled { 1.8 } else { 1.0 }) {
                    Some(Intent::Death(p))
                } else if female
                    && (15..=49).contains(&age)
                    && today.0 - person.last_birth.0 >= 365
                    && pick(birth * fertility(age) * if married { 1.25 } else { 0.45 })
                {
                    Some(Intent::Birth(p))
                } else if can_leave && pick(moves * leaving(age)) {
                    Some(Intent::Move(p))
                } else if !married
                    && (18..=45).contains(&age)
                    && pick(
                        marriage
                            * match age {
                                18..=19 => 0.8,
                                20..=29 => 1.5,
                                30..=39 => 0.8,
                                _ => 0.4,
                            },
                    )
                {
                    Some(Intent::Marriage(p))
                } else if married
                    && female
                    && person.spouse != NO_ONE
                    && self.chunk.persons[person.spouse as usize].household == person.household
                    && pick(divorce)
                {
                    Some(Intent::Divorce(p))
                } else if person.earns() && pick(income) {
                    Some(Intent::Income(p))
                } else if (15..=64).contains(&age) && !person.enrolled && pick(employment) {
                    Some(Intent::Employment(p))
                } else if pick(if person.disability.is_some() {
                    reassess
                } else {
                    onset
                        * match age {
                            0..=14 => 0.4,
                            15..=49 => 0.8,
                            50..=64 => 2.0,
                            _ => 5.0,
                        }
                }) {
                    Some(Intent::Disability(p))
                } else if person.enrolled && (12..=19).contains(&age) && pick(dropout) {
                    Some(Intent::School {
                        p,
                        enrolled: false,
                        level: person.education,
                    })
                } else {
                    None
                };
                if let Some(i) = intent {
                    intents.push((at(rng), i));
                }
            }
        }
        if school_month {
            self.school_year(from, &mut intents);
        }
        for (at, i) in intents {
            self.schedule(at, i);
        }
        self.declared_shocks(from, to);
    }

    /// The start of a school year: new pupils enrol, pupils who finish a level move on or
    /// leave, a few out-of-school children return.
    fn school_year(&mut self, from: i64, intents: &mut Vec<(i64, Intent)>) {
        let today = Micros(from).date();
        for h in 0..self.chunk.households.len() {
            if self.chunk.households[h].dissolved {
                continue;
            }
            let place = self.place(h as u32);
            let pov = place.area.poverty;
            let urban = place.area.urban as u8 as f64;
            let enrol6 = enrolment_chance(6, &place);
            let members = self.chunk.households[h].members.clone();
            for p in members {
                let person = &self.chunk.persons[p as usize];
                let age = person.age(today);
                if !(5..=24).contains(&age) {
                    continue;
                }
                let (enrolled, level) = (person.enrolled, person.education);
                let rng = &mut self.chunk.rng;
                let (mut e, mut l) = (enrolled, level);
                if enrolled {
                    let expected = level_for_school_age(age);
                    if level_rank(expected) > level_rank(level) {
                        // Finished a level: carry on, or leave school with it.
                        l = level_at(level_rank(level) + 1);
                        let carry_on = match l {
                            EducationLevel::Primary => 0.9 - 0.3 * pov,
                            EducationLevel::LowerSecondary => 0.75 - 0.35 * pov + 0.1 * urban,
                            EducationLevel::UpperSecondary => 0.15 + 0.2 * urban,
                            _ => 0.0,
                        };
                        e = chance(rng, carry_on);
                    }
                    if age >= 23 {
                        e = false;
                    }
                } else if (6..=7).contains(&age) && level == EducationLevel::None {
                    e = chance(rng, enrol6);
                } else if (8..=14).contains(&age) {
                    e = chance(rng, 0.08);
                }
                if (e, l) != (enrolled, level) {
                    let at = from + between(rng, 0, 20 * 86_400) * 1_000_000;
                    intents.push((
                        at,
                        Intent::School {
                            p,
                            enrolled: e,
                            level: l,
                        },
                    ));
                }
            }
        }
    }

    /// Households of the chunk hit by a shock declared this month schedule their reports.
    fn declared_shocks(&mut self, from: i64, to: i64) {
        for (k, s) in self.ctx.shocks.iter().enumerate() {
            if !(from..to).contains(&s.declared_at) {
                continue;
            }
            for h in 0..self.chunk.households.len() {
                let hh = &self.chunk.households[h];
                if hh.dissolved || !s.affected[hh.village as usize] {
                    continue;
                }
                let pov = self.ctx.areas.village(hh.village as usize).poverty;
                let p = s.report_share * (0.6 + 0.8 * pov);
                if chance(self.rng(), p) {
                    let delay = (exponential(self.rng(), 18.0) as i64).min(60);
                    let at = self.later(s.declared_at, delay, delay + 1);
                    self.schedule(
                        at,
                        Intent::HouseholdShock {
                            h: h as u32,
                            shock: k as u32,
                        },
                    );
                }
            }
        }
    }

    /// Appends an event to the output.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        at: i64,
        recorded_after: i64,
        source: &'static str,
        person: Option<PersonId>,
        household: Option<HouseholdId>,
        correlation: Option<EventId>,
        payload: Payload,
    ) -> Result<EventId, serde_json::Error> {
        let id = event_id(
            self.ctx.config.seed,
            Stream::EventIds,
            self.chunk.index,
            self.chunk.seq,
        );
        self.chunk.seq += 1;
        self.out.push(Event {
            envelope: Envelope {
                event_id: id,
                source_system: CompactString::const_new(source),
                occurred_at: Micros(at),
                recorded_at: Micros(at + recorded_after.max(0)),
                person_id: person,
                household_id: household,
                correlation_id: correlation,
                schema_version: SCHEMA_VERSION,
            },
            payload,
        })?;
        Ok(id)
    }

    fn delay(&mut self, lo_hours: i64, hi_hours: i64) -> i64 {
        between(self.rng(), lo_hours * 3600, hi_hours * 3600) * 1_000_000
    }

    fn person(&self, p: u32) -> &Person {
        &self.chunk.persons[p as usize]
    }

    fn hh_id(&self, h: u32) -> HouseholdId {
        self.chunk.households[h as usize].id()
    }

    /// The head of a household with other members cannot walk out on them.
    fn movable(&self, p: u32) -> bool {
        let person = self.person(p);
        person.alive
            && !(person.relationship == Relationship::Head
                && self.chunk.households[person.household as usize]
                    .members
                    .len()
                    > 1)
    }

    /// Takes `p` out of their household; the household dissolves when empty, and gets a new
    /// head when the head left, by dsr-core's succession rule (the spouse, else the oldest
    /// member aged 18 or more, else the oldest; ties to the smaller person id) so the record
    /// tracked here stays the one the reducer computes.
    fn remove_member(&mut self, p: u32, at: i64) {
        let h = self.person(p).household;
        let hh = &mut self.chunk.households[h as usize];
        hh.members.retain(|x| *x != p);
        if hh.members.is_empty() {
            hh.dissolved = true;
            let v = hh.village;
            self.chunk.remove_from_village(v, h);
            return;
        }
        let persons = &self.chunk.persons;
        if hh
            .members
            .iter()
            .any(|m| persons[*m as usize].relationship == Relationship::Head)
        {
            return;
        }
        let today = Micros(at).date();
        let oldest = |adult: bool| {
            hh.members
                .iter()
                .copied()
                .filter(|m| !adult || persons[*m as usize].birth.years_until(today) >= 18)
                .min_by_key(|m| (persons[*m as usize].birth, persons[*m as usize].num))
        };
        let spouse = hh
            .members
            .iter()
            .copied()
            .filter(|m| persons[*m as usize].relationship == Relationship::Spouse)
            .min_by_key(|m| persons[*m as usize].num);
        if let Some(new_head) = spouse.or_else(|| oldest(true)).or_else(|| oldest(false)) {
            self.chunk.persons[new_head as usize].relationship = Relationship::Head;
        }
    }

    fn process(&mut self, at: i64, intent: Intent) -> Result<(), serde_json::Error> {
        match intent {
            Intent::Death(p) => self.death(at, p),
            Intent::Birth(p) => self.birth(at, p),
            Intent::Move(p) => self.leave_home(at, p, 0.55),
            Intent::LeaveAfterDivorce(p) => self.leave_home(at, p, 0.5),
            Intent::Marriage(p) => self.marriage(at, p),
            Intent::Divorce(p) => self.divorce(at, p),
            Intent::Income(p) => self.income(at, p),
            Intent::Employment(p) => self.employment(at, p),
            Intent::IncomeAfterJob(p) => self.income_after_job(at, p),
            Intent::Disability(p) => self.disability(at, p),
            Intent::School { p, enrolled, level } => self.school(at, p, enrolled, level),
            Intent::Assets(h) => self.assets(at, h),
            Intent::HouseholdShock { h, shock } => self.household_shock(at, h, shock),
            Intent::Correction(h) => self.correction(at, h),
            Intent::Register(h) => self.register(at, h),
            Intent::JoinSpouse { p, spouse, rel } => self.join_spouse(at, p, spouse, rel),
            Intent::FoundWithSpouse { p, spouse } => self.found_with_spouse(at, p, spouse),
        }
    }

    fn death(&mut self, at: i64, p: u32) -> Result<(), serde_json::Error> {
        if !self.person(p).alive {
            return Ok(());
        }
        let h = self.person(p).household;
        let delay = self.delay(24, 30 * 24);
        self.emit(
            at,
            delay,
            CRVS,
            Some(self.person(p).id()),
            Some(self.hh_id(h)),
            None,
            Payload::PersonDied(PersonDied {
                person_id: self.person(p).id(),
                date_of_death: Micros(at).date(),
            }),
        )?;
        let spouse = self.person(p).spouse;
        if spouse != NO_ONE {
            let s = &mut self.chunk.persons[spouse as usize];
            s.marital = MaritalStatus::Widowed;
            s.spouse = NO_ONE;
        }
        let person = &mut self.chunk.persons[p as usize];
        person.alive = false;
        person.spouse = NO_ONE;
        self.remove_member(p, at);
        Ok(())
    }

    fn birth(&mut self, at: i64, mother: u32) -> Result<(), serde_json::Error> {
        let today = Micros(at).date();
        let m = self.person(mother).clone();
        let h = m.household;
        let age = m.age(today);
        if !m.alive || !(15..=49).contains(&age) || today.0 - m.last_birth.0 < 300 {
            return Ok(());
        }
        let slot = self.chunk.households[h as usize].next_slot as u64;
        if slot >= SLOTS {
            return Ok(());
        }
        let father = if m.spouse != NO_ONE && self.person(m.spouse).alive {
            Some(m.spouse)
        } else {
            None
        };
        let relationship = match m.relationship {
            Relationship::Head | Relationship::Spouse => Relationship::Child,
            Relationship::Child => Relationship::Grandchild,
            Relationship::Parent => Relationship::Sibling,
            Relationship::NonRelative => Relationship::NonRelative,
            _ => Relationship::OtherRelative,
        };
        let rng = self.rng();
        let sex = if chance(rng, 0.512) {
            Sex::Male
        } else {
            Sex::Female
        };
        let given = index(rng, crate::names::GIVEN_NAMES) as u16;
        let family = father.map(|f| self.person(f).family).unwrap_or(m.family);
        let num = self.chunk.households[h as usize].num * SLOTS + slot;
        let child = Person {
            num,
            given,
            family,
            sex,
            birth: today,
            relationship,
            marital: MaritalStatus::NeverMarried,
            education: EducationLevel::None,
            enrolled: false,
            employment: EmploymentStatus::OutOfLabourForce,
            disability: None,
            alive: true,
            incomes: Incomes::default(),
            household: h,
            spouse: NO_ONE,
            last_birth: Date(i32::MIN / 2),
        };
        let delay = self.delay(24, 60 * 24);
        self.emit(
            at,
            delay,
            CRVS,
            Some(child.id()),
            Some(self.hh_id(h)),
            None,
            Payload::PersonBorn(PersonBorn {
                child: child.member(),
                mother_id: Some(m.id()),
                father_id: father.map(|f| self.person(f).id()),
            }),
        )?;
        let c = self.chunk.persons.len() as u32;
        self.chunk.persons.push(child);
        let hh = &mut self.chunk.households[h as usize];
        hh.members.push(c);
        hh.next_slot += 1;
        self.chunk.persons[mother as usize].last_birth = today;
        Ok(())
    }

    /// A founded household in a village near `from_village` (same village, same district) or
    /// in a town.
    fn destination_village(&mut self, from_village: u32) -> u32 {
        let areas = self.ctx.areas;
        let r = unit(self.rng());
        if r < 0.55 {
            from_village
        } else if r < 0.8 || areas.urban_villages().is_empty() {
            let range = areas.district_villages(from_village as usize);
            (range.start + index(self.rng(), range.len())) as u32
        } else {
            let towns = areas.urban_villages();
            towns[index(self.rng(), towns.len())]
        }
    }

    /// Moves `p` out of their household into `to` (an existing household of the chunk) or,
    /// when `to` is `None`, into a household they found in `village`. Returns the household.
    fn move_person(
        &mut self,
        at: i64,
        p: u32,
        to: Option<u32>,
        village: u32,
        rel: Relationship,
    ) -> Result<Option<u32>, serde_json::Error> {
        let from = self.person(p).household;
        let founds = to.is_none();
        let target = match to {
            Some(t) => t,
            None => {
                if self.chunk.next_founded >= self.chunk.end_founded {
                    return Ok(None);
                }
                let num = self.chunk.next_founded;
                self.chunk.next_founded += 1;
                let place = Place {
                    area: self.ctx.areas.village(village as usize),
                    village,
                };
                let income = self.person(p).incomes.total();
                let rng = &mut self.chunk.rng;
                let w = wealth(rng, income, 1, &place);
                let d = dwelling(rng, w, 1, &place);
                let a = assets(rng, w * 0.8 - 0.3, 1, d.electricity, &place);
                let h = self.chunk.households.len() as u32;
                self.chunk.households.push(Hh {
                    num,
                    village,
                    members: Vec::new(),
                    next_slot: 0,
                    dwelling: d,
                    assets: a,
                    dissolved: false,
                    founded: true,
                    registered: false,
                });
                self.chunk.add_to_village(village, h);
                h
            }
        };
        let new_area = self
            .ctx
            .areas
            .village(self.chunk.households[target as usize].village as usize)
            .code
            .clone();
        let delay = self.delay(2, 30 * 24);
        self.emit(
            at,
            delay,
            CRVS,
            Some(self.person(p).id()),
            Some(self.hh_id(from)),
            None,
            Payload::PersonMoved(PersonMoved {
                person_id: self.person(p).id(),
                from_household_id: self.hh_id(from),
                to_household_id: self.hh_id(target),
                founds_new_household: founds,
                new_area,
                relationship_in_new_household: rel,
            }),
        )?;
        self.remove_member(p, at);
        let person = &mut self.chunk.persons[p as usize];
        person.household = target;
        person.relationship = rel;
        self.chunk.households[target as usize].members.push(p);
        if founds {
            // A new household soon asks to be registered in full, or at least reports assets.
            let r = unit(self.rng());
            if r < 0.5 {
                let t = self.later(at, 20, 90);
                self.schedule(t, Intent::Register(target));
            } else if r < 0.8 {
                let t = self.later(at, 10, 60);
                self.schedule(t, Intent::Assets(target));
            }
        }
        Ok(Some(target))
    }

    /// An existing household of the chunk for `p` to join: usually in the same village.
    fn host_household(&mut self, p: u32) -> Option<u32> {
        let from = self.person(p).household;
        let village = self.chunk.households[from as usize].village;
        for attempt in 0..12 {
            let candidate = if attempt < 6 {
                let len = self.chunk.village_households(village).len();
                if len == 0 {
                    continue;
                }
                let i = index(self.rng(), len);
                self.chunk.village_households(village)[i]
            } else {
                let n = self.chunk.households.len();
                index(self.rng(), n) as u32
            };
            let hh = &self.chunk.households[candidate as usize];
            if candidate != from && !hh.dissolved {
                return Some(candidate);
            }
        }
        None
    }

    /// A person leaves home: founds a household (adults, with probability `found`) or joins
    /// relatives or an employer's household.
    fn leave_home(&mut self, at: i64, p: u32, found: f64) -> Result<(), serde_json::Error> {
        if !self.movable(p) || self.person(p).is_married() {
            return Ok(());
        }
        let age = ages_on(self.person(p).birth, at);
        let alone = self.chunk.households[self.person(p).household as usize]
            .members
            .len()
            == 1;
        if age >= 18 && !alone && chance(self.rng(), found) {
            let v = self.chunk.households[self.person(p).household as usize].village;
            let village = self.destination_village(v);
            if self
                .move_person(at, p, None, village, Relationship::Head)?
                .is_some()
            {
                return Ok(());
            }
        }
        let Some(host) = self.host_household(p) else {
            return Ok(());
        };
        let rel = if age < 15 {
            [Relationship::Grandchild, Relationship::OtherRelative][index(self.rng(), 2)]
        } else {
            [
                Relationship::OtherRelative,
                Relationship::Sibling,
                Relationship::NonRelative,
            ][weighted(self.rng(), &[0.45, 0.2, 0.35])]
        };
        let village = self.chunk.households[host as usize].village;
        self.move_person(at, p, Some(host), village, rel)?;
        Ok(())
    }

    /// An unmarried adult of the other sex in another household of the chunk, preferably in
    /// the same village, of a plausible age.
    fn partner(&mut self, p: u32, at: i64) -> Option<u32> {
        let me = self.person(p).clone();
        let my_age = ages_on(me.birth, at) as i64;
        let my_village = self.chunk.households[me.household as usize].village;
        let n = self.chunk.persons.len();
        let mut fallback = None;
        for attempt in 0..80 {
            let q = index(self.rng(), n) as u32;
            let o = self.person(q);
            if !o.alive
                || o.sex == me.sex
                || o.is_married()
                || o.spouse != NO_ONE
                || o.household == me.household
            {
                continue;
            }
            let age = ages_on(o.birth, at) as i64;
            // Husbands are usually older.
            let gap = if me.sex == Sex::Male {
                my_age - age
            } else {
                age - my_age
            };
            if !(18..=55).contains(&age) || !(-4..=14).contains(&gap) {
                continue;
            }
            if self.chunk.households[o.household as usize].village == my_village {
                return Some(q);
            }
            if fallback.is_none() {
                fallback = Some(q);
            }
            if attempt >= 50 && fallback.is_some() {
                break;
            }
        }
        fallback
    }

    fn marriage(&mut self, at: i64, p: u32) -> Result<(), serde_json::Error> {
        let me = self.person(p);
        let age = ages_on(me.birth, at);
        if !me.alive || me.is_married() || me.spouse != NO_ONE || !(18..=50).contains(&age) {
            return Ok(());
        }
        let Some(q) = self.partner(p, at) else {
            return Ok(());
        };
        let (man, woman) = if self.person(p).sex == Sex::Male {
            (p, q)
        } else {
            (q, p)
        };
        let head = |s: &Self, x: u32| s.person(x).relationship == Relationship::Head;
        // Who moves where: a wife joins her husband's household, or the husband hers, or the
        // young couple sets up their own.
        let plan = if head(self, man) && self.movable(woman) {
            Intent::JoinSpouse {
                p: woman,
                spouse: man,
                rel: Relationship::Spouse,
            }
        } else if head(self, woman) && self.movable(man) {
            Intent::JoinSpouse {
                p: man,
                spouse: woman,
                rel: Relationship::Spouse,
            }
        } else if self.movable(man) && self.movable(woman) {
            if chance(self.rng(), 0.6) {
                Intent::FoundWithSpouse {
                    p: man,
                    spouse: woman,
                }
            } else {
                Intent::JoinSpouse {
                    p: woman,
                    spouse: man,
                    rel: Relationship::OtherRelative,
                }
            }
        } else {
            return Ok(());
        };
        let date = Micros(at).date();
        let (hp, hq) = (self.person(p).household, self.person(q).household);
        let delay = self.delay(24, 14 * 24);
        let first = self.emit(
            at,
            delay,
            CRVS,
            Some(self.person(p).id()),
            Some(self.hh_id(hp)),
            None,
            Payload::MarriageRegistered(MarriageRegistered {
                person_id: self.person(p).id(),
                spouse_id: self.person(q).id(),
                date,
            }),
        )?;
        // The other spouse's household hears of it too: same transaction, own event.
        self.emit(
            at,
            delay,
            CRVS,
            Some(self.person(q).id()),
            Some(self.hh_id(hq)),
            Some(first),
            Payload::MarriageRegistered(MarriageRegistered {
                person_id: self.person(q).id(),
                spouse_id: self.person(p).id(),
                date,
            }),
        )?;
        for (x, y) in [(p, q), (q, p)] {
            let person = &mut self.chunk.persons[x as usize];
            person.marital = MaritalStatus::Married;
            person.spouse = y;
        }
        let t = self.later(at, 3, 45);
        self.schedule(t, plan);
        Ok(())
    }

    fn still_married(&self, p: u32, spouse: u32) -> bool {
        self.person(p).alive && self.person(spouse).alive && self.person(p).spouse == spouse
    }

    fn join_spouse(
        &mut self,
        at: i64,
        p: u32,
        spouse: u32,
        rel: Relationship,
    ) -> Result<(), serde_json::Error> {
        if !self.still_married(p, spouse) || !self.movable(p) {
            return Ok(());
        }
        let target = self.person(spouse).household;
        if target == self.person(p).household || self.chunk.households[target as usize].dissolved {
            return Ok(());
        }
        let rel = if rel == Relationship::Spouse
            && self.person(spouse).relationship != Relationship::Head
        {
            Relationship::OtherRelative
        } else {
            rel
        };
        let village = self.chunk.households[target as usize].village;
        self.move_person(at, p, Some(target), village, rel)?;
        Ok(())
    }

    fn found_with_spouse(&mut self, at: i64, p: u32, spouse: u32) -> Result<(), serde_json::Error> {
        if !self.still_married(p, spouse) || !self.movable(p) {
            return Ok(());
        }
        let v = self.chunk.households[self.person(p).household as usize].village;
        let village = self.destination_village(v);
        match self.move_person(at, p, None, village, Relationship::Head)? {
            Some(_) => {
                let t = self.later(at, 1, 10);
                self.schedule(
                    t,
                    Intent::JoinSpouse {
                        p: spouse,
                        spouse: p,
                        rel: Relationship::Spouse,
                    },
                );
            }
            None => {
                let t = self.later(at, 1, 10);
                self.schedule(
                    t,
                    Intent::JoinSpouse {
                        p: spouse,
                        spouse: p,
                        rel: Relationship::OtherRelative,
                    },
                );
            }
        }
        Ok(())
    }

    fn divorce(&mut self, at: i64, p: u32) -> Result<(), serde_json::Error> {
        let s = self.person(p).spouse;
        if s == NO_ONE || !self.still_married(p, s) {
            return Ok(());
        }
        let (hp, hs) = (self.person(p).household, self.person(s).household);
        let date = Micros(at).date();
        let delay = self.delay(24, 30 * 24);
        let first = self.emit(
            at,
            delay,
            CRVS,
            Some(self.person(p).id()),
            Some(self.hh_id(hp)),
            None,
            Payload::DivorceRegistered(DivorceRegistered {
                person_id: self.person(p).id(),
                spouse_id: self.person(s).id(),
                date,
            }),
        )?;
        if hs != hp {
            self.emit(
                at,
                delay,
                CRVS,
                Some(self.person(s).id()),
                Some(self.hh_id(hs)),
                Some(first),
                Payload::DivorceRegistered(DivorceRegistered {
                    person_id: self.person(s).id(),
                    spouse_id: self.person(p).id(),
                    date,
                }),
            )?;
        }
        for x in [p, s] {
            let person = &mut self.chunk.persons[x as usize];
            person.marital = MaritalStatus::Divorced;
            person.spouse = NO_ONE;
        }
        if hp == hs {
            // Whoever is not the head leaves; between two non-heads, the wife.
            let leaver = if self.person(p).relationship == Relationship::Head {
                s
            } else if self.person(s).relationship == Relationship::Head
                || self.person(p).sex == Sex::Female
            {
                p
            } else {
                s
            };
            if chance(self.rng(), 0.85) {
                let t = self.later(at, 1, 45);
                self.schedule(t, Intent::LeaveAfterDivorce(leaver));
            }
        }
        Ok(())
    }

    /// The income source a person's work pays through.
    fn work_source(&mut self, p: u32) -> Option<IncomeSource> {
        let urban = self.place(self.person(p).household).area.urban;
        match self.person(p).employment {
            EmploymentStatus::Employee => Some(IncomeSource::Wages),
            EmploymentStatus::Employer => Some(IncomeSource::SelfEmployment),
            EmploymentStatus::SelfEmployed => {
                let current = self.person(p).incomes;
                if current.get(IncomeSource::Agriculture) > 0.0 {
                    Some(IncomeSource::Agriculture)
                } else if current.get(IncomeSource::SelfEmployment) > 0.0 || urban {
                    Some(IncomeSource::SelfEmployment)
                } else {
                    Some(IncomeSource::Agriculture)
                }
            }
            _ => None,
        }
    }

    /// A fresh monthly amount for `source`, as a new job or harvest would pay.
    fn fresh_amount(&mut self, p: u32, source: IncomeSource) -> f64 {
        let place = self.place(self.person(p).household);
        let pay = place.pay();
        let edu = level_rank(self.person(p).education) as f64;
        let rng = &mut self.chunk.rng;
        money(match source {
            IncomeSource::Wages => lognormal(rng, 150.0 * pay * (1.0 + 0.35 * edu), 0.5),
            IncomeSource::SelfEmployment => lognormal(rng, 110.0 * pay * (1.0 + 0.15 * edu), 0.75),
            IncomeSource::Agriculture => lognormal(rng, 70.0 * pay, 0.75),
            IncomeSource::Pension => lognormal(rng, 90.0, 0.4),
            _ => lognormal(rng, 35.0, 0.7),
        })
    }

    fn report_income(
        &mut self,
        at: i64,
        p: u32,
        source: IncomeSource,
        monthly: f64,
    ) -> Result<(), serde_json::Error> {
        let h = self.person(p).household;
        let rng = self.rng();
        let (period, amount) = if monthly == 0.0 {
            (IncomePeriod::Monthly, 0.0)
        } else {
            let w: &[f64] = if source == IncomeSource::Agriculture {
                &[0.4, 0.3, 0.3]
            } else {
                &[0.85, 0.1, 0.05]
            };
            match weighted(rng, w) {
                0 => (IncomePeriod::Monthly, money(monthly)),
                1 => (IncomePeriod::Quarterly, money(monthly * 3.0)),
                _ => (IncomePeriod::Annual, money(monthly * 12.0)),
            }
        };
        let report = IncomeReported {
            person_id: self.person(p).id(),
            amount,
            period,
            source,
        };
        let stored = report.monthly_amount();
        let src = match source {
            IncomeSource::Wages => TAX,
            IncomeSource::Pension => PENSION,
            IncomeSource::SocialTransfer => TRANSFERS,
            _ => CASE,
        };
        let delay = self.delay(1, 5 * 24);
        self.emit(
            at,
            delay,
            src,
            Some(self.person(p).id()),
            Some(self.hh_id(h)),
            None,
            Payload::IncomeReported(report),
        )?;
        self.chunk.persons[p as usize].incomes.set(source, stored);
        Ok(())
    }

    fn income(&mut self, at: i64, p: u32) -> Result<(), serde_json::Error> {
        if !self.person(p).alive {
            return Ok(());
        }
        let incomes = self.person(p).incomes;
        let sources: Vec<(IncomeSource, f64)> = incomes.iter().collect();
        let (source, old) = if sources.is_empty() {
            match self.work_source(p) {
                Some(s) => (s, 0.0),
                None => return Ok(()),
            }
        } else if sources.len() == 1 || chance(self.rng(), 0.75) {
            sources
                .iter()
                .copied()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or(sources[0])
        } else {
            sources[index(self.rng(), sources.len())]
        };
        let new = if old == 0.0 {
            self.fresh_amount(p, source)
        } else {
            let rng = self.rng();
            match source {
                IncomeSource::Pension => money(old * if chance(rng, 0.3) { 1.05 } else { 1.0 }),
                IncomeSource::Remittances | IncomeSource::SocialTransfer | IncomeSource::Other => {
                    if chance(rng, 0.1) {
                        0.0
                    } else {
                        money(old * lognormal(rng, 1.0, 0.35))
                    }
                }
                IncomeSource::Agriculture => money(old * lognormal(rng, 1.0, 0.25)),
                _ => money(old * lognormal(rng, 1.01, 0.12)),
            }
        };
        self.report_income(at, p, source, new)
    }

    fn employment(&mut self, at: i64, p: u32) -> Result<(), serde_json::Error> {
        use EmploymentStatus::*;
        let person = self.person(p);
        let age = ages_on(person.birth, at);
        if !person.alive || !(15..=64).contains(&age) || person.enrolled {
            return Ok(());
        }
        let current = person.employment;
        let h = person.household;
        let (options, w): (&[EmploymentStatus], &[f64]) = match current {
            Employee => (
                &[Unemployed, SelfEmployed, OutOfLabourForce],
                &[0.4, 0.3, 0.3],
            ),
            SelfEmployed => (
                &[
                    Employee,
                    Unemployed,
                    ContributingFamilyWorker,
                    OutOfLabourForce,
                ],
                &[0.3, 0.3, 0.1, 0.3],
            ),
            Employer => (&[SelfEmployed, Employee], &[0.5, 0.5]),
            ContributingFamilyWorker => (
                &[SelfEmployed, Employee, OutOfLabourForce],
                &[0.5, 0.3, 0.2],
            ),
            Unemployed => (
                &[Employee, SelfEmployed, OutOfLabourForce],
                &[0.45, 0.45, 0.1],
            ),
            OutOfLabourForce => (
                &[Unemployed, SelfEmployed, Employee, ContributingFamilyWorker],
                &[0.3, 0.4, 0.2, 0.1],
            ),
        };
        let status = options[weighted(self.rng(), w)];
        let delay = self.delay(24, 20 * 24);
        self.emit(
            at,
            delay,
            LABOUR,
            Some(self.person(p).id()),
            Some(self.hh_id(h)),
            None,
            Payload::EmploymentChanged(EmploymentChanged {
                person_id: self.person(p).id(),
                status,
            }),
        )?;
        self.chunk.persons[p as usize].employment = status;
        let t = self.later(at, 0, 14);
        self.schedule(t, Intent::IncomeAfterJob(p));
        Ok(())
    }

    /// After a change of work: earnings from the old work stop, the new work's are reported.
    fn income_after_job(&mut self, at: i64, p: u32) -> Result<(), serde_json::Error> {
        if !self.person(p).alive {
            return Ok(());
        }
        let new_source = self.work_source(p);
        let incomes = self.person(p).incomes;
        for (s, v) in incomes.iter().collect::<Vec<_>>() {
            if is_earning_source(s) && Some(s) != new_source && v > 0.0 {
                self.report_income(at, p, s, 0.0)?;
            }
        }
        if let Some(s) = new_source {
            if self.person(p).incomes.get(s) == 0.0 {
                let amount = self.fresh_amount(p, s);
                self.report_income(at + 1_000_000, p, s, amount)?;
            }
        }
        Ok(())
    }

    fn disability(&mut self, at: i64, p: u32) -> Result<(), serde_json::Error> {
        if !self.person(p).alive {
            return Ok(());
        }
        let h = self.person(p).household;
        let rng = &mut self.chunk.rng;
        let d = match self.chunk.persons[p as usize].disability {
            None => draw_disability(rng),
            Some(old) => {
                let ladder = [
                    DisabilitySeverity::None,
                    DisabilitySeverity::SomeDifficulty,
                    DisabilitySeverity::ALotOfDifficulty,
                    DisabilitySeverity::CannotDoAtAll,
                ];
                let i = ladder.iter().position(|s| *s == old.severity).unwrap_or(1) as i64;
                let step = [0, 1, -1][weighted(rng, &[0.6, 0.25, 0.15])];
                Disability {
                    disability_type: old.disability_type,
                    severity: ladder[(i + step).clamp(0, 3) as usize],
                }
            }
        };
        let delay = self.delay(2, 10 * 24);
        self.emit(
            at,
            delay,
            HEALTH,
            Some(self.person(p).id()),
            Some(self.hh_id(h)),
            None,
            Payload::DisabilityAssessed(DisabilityAssessed {
                person_id: self.person(p).id(),
                disability_type: d.disability_type,
                severity: d.severity,
            }),
        )?;
        self.chunk.persons[p as usize].disability = Some(d);
        Ok(())
    }

    fn school(
        &mut self,
        at: i64,
        p: u32,
        enrolled: bool,
        level: EducationLevel,
    ) -> Result<(), serde_json::Error> {
        let person = self.person(p);
        if !person.alive || (person.enrolled, person.education) == (enrolled, level) {
            return Ok(());
        }
        let h = person.household;
        let delay = self.delay(24, 14 * 24);
        self.emit(
            at,
            delay,
            EMIS,
            Some(self.person(p).id()),
            Some(self.hh_id(h)),
            None,
            Payload::SchoolEnrollmentChanged(SchoolEnrollmentChanged {
                person_id: self.person(p).id(),
                enrolled,
                education_level: level,
            }),
        )?;
        let person = &mut self.chunk.persons[p as usize];
        person.enrolled = enrolled;
        person.education = level;
        Ok(())
    }

    fn in_drought(&self, h: u32, at: i64) -> bool {
        let v = self.chunk.households[h as usize].village as usize;
        self.ctx.shocks.iter().any(|s| {
            s.hazard == HazardType::Drought
                && s.affected[v]
                && (s.starts_at..s.ends_at).contains(&at)
        })
    }

    fn assets(&mut self, at: i64, h: u32) -> Result<(), serde_json::Error> {
        if self.chunk.households[h as usize].dissolved {
            return Ok(());
        }
        let drought = self.in_drought(h, at);
        let hh = &self.chunk.households[h as usize];
        let adults = hh.members.len() as u32;
        let electricity = hh.dwelling.electricity;
        let mut a = hh.assets;
        let rng = &mut self.chunk.rng;
        // Herds shrink in a drought and grow slowly otherwise; goods come and go.
        a.livestock_tlu =
            tenth(a.livestock_tlu * lognormal(rng, if drought { 0.7 } else { 1.03 }, 0.2));
        if chance(rng, 0.05) {
            a.land_hectares = tenth(a.land_hectares * lognormal(rng, 1.0, 0.3));
        }
        if chance(rng, 0.2) {
            a.mobile_phones = (a.mobile_phones + 1).min(adults.max(1) + 1);
        } else if a.mobile_phones > 0 && chance(rng, 0.08) {
            a.mobile_phones -= 1;
        }
        if chance(rng, 0.05) {
            a.radio = !a.radio;
        }
        if electricity && chance(rng, 0.04) {
            a.television = true;
        }
        if electricity && chance(rng, 0.02) {
            a.refrigerator = true;
        }
        if chance(rng, 0.05) {
            a.bicycle = !a.bicycle;
        }
        if chance(rng, 0.02) {
            a.motorcycle = !a.motorcycle;
        }
        let delay = self.delay(0, 3 * 24);
        self.emit(
            at,
            delay,
            CASE,
            None,
            Some(self.hh_id(h)),
            None,
            Payload::AssetsReported(AssetsReported { assets: a }),
        )?;
        self.chunk.households[h as usize].assets = a;
        Ok(())
    }

    fn household_shock(&mut self, at: i64, h: u32, shock: u32) -> Result<(), serde_json::Error> {
        if self.chunk.households[h as usize].dissolved {
            return Ok(());
        }
        let rural = !self.place(h).area.urban;
        let (hazard, severity, shock_id) = if shock == NO_ONE {
            let hazards = [
                HazardType::Fire,
                HazardType::Epidemic,
                HazardType::PriceShock,
                HazardType::Other,
                HazardType::Conflict,
                HazardType::Landslide,
            ];
            let w = [0.2, 0.25, 0.2, 0.25, 0.04, if rural { 0.06 } else { 0.0 }];
            (
                hazards[weighted(self.rng(), &w)],
                ShockSeverity::Moderate,
                None,
            )
        } else {
            let s = &self.ctx.shocks[shock as usize];
            (s.hazard, s.severity, Some(s.id.clone()))
        };
        let w: &[f64] = match (hazard, severity) {
            (HazardType::Flood, ShockSeverity::Extreme) | (HazardType::Fire, _) => {
                &[0.05, 0.3, 0.4, 0.25]
            }
            (HazardType::Flood, _) => &[0.1, 0.45, 0.35, 0.1],
            (HazardType::Drought, ShockSeverity::Extreme) => &[0.05, 0.35, 0.55, 0.05],
            (HazardType::Drought, _) => &[0.1, 0.55, 0.33, 0.02],
            _ => &[0.1, 0.6, 0.28, 0.02],
        };
        let damage = DamageLevel::ALL[weighted(self.rng(), w)];
        let hh = &self.chunk.households[h as usize];
        let scale = 1.0
            + hh.assets.livestock_tlu * 0.3
            + hh.assets.land_hectares * 0.2
            + hh.assets.durable_goods() as f64 * 0.15;
        let median = match damage {
            DamageLevel::None => 0.0,
            DamageLevel::Minor => 20.0,
            DamageLevel::Major => 120.0,
            DamageLevel::Destroyed => 500.0,
        };
        let loss = if median == 0.0 {
            0.0
        } else {
            money(lognormal(self.rng(), median * scale, 0.6))
        };
        let delay = self.delay(2, 7 * 24);
        self.emit(
            at,
            delay,
            CASE,
            None,
            Some(self.hh_id(h)),
            None,
            Payload::HouseholdShockReported(HouseholdShockReported {
                hazard,
                damage,
                estimated_loss: loss,
                shock_id,
            }),
        )?;
        Ok(())
    }

    fn caseworker(&mut self, h: u32) -> CompactString {
        let v = self.chunk.households[h as usize].village as usize;
        let district = self.ctx.areas.district_villages(v).start;
        let n = (district % 997) * 10 + index(self.rng(), 10);
        format_compact!("CW{n:04}")
    }

    fn correction(&mut self, at: i64, h: u32) -> Result<(), serde_json::Error> {
        let hh = &self.chunk.households[h as usize];
        if hh.dissolved {
            return Ok(());
        }
        let members = hh.members.clone();
        let today = Micros(at).date();
        let fields = CorrectableField::ALL;
        // birth_date sex relationship education monthly_income area wall water sanitation
        // electricity; dwelling fields only once the household has a dwelling record.
        let dwelling = if hh.registered { 1.0 } else { 0.0 };
        let w = [
            0.3,
            0.04,
            0.08,
            0.15,
            0.1,
            0.05,
            0.1 * dwelling,
            0.1 * dwelling,
            0.1 * dwelling,
            0.06 * dwelling,
        ];
        let field = fields[weighted(self.rng(), &w)];
        let p = members[index(self.rng(), members.len())];
        let (person, new_value, reason): (Option<u32>, CompactString, &str) = match field {
            CorrectableField::BirthDate => {
                let old = self.person(p).birth;
                let age = ages_on(old, at);
                let max_shift = if age < 5 { 60 } else { 700 };
                let shift = between(self.rng(), -max_shift, max_shift);
                let new = Date((old.0 + shift as i32).min(today.0 - 1));
                self.chunk.persons[p as usize].birth = new;
                (
                    Some(p),
                    format_compact!("{new}"),
                    "birth certificate presented",
                )
            }
            CorrectableField::Sex => {
                let s = if self.person(p).sex == Sex::Male {
                    Sex::Female
                } else {
                    Sex::Male
                };
                if self.person(p).is_married() || ages_on(self.person(p).birth, at) >= 5 {
                    return Ok(());
                }
                self.chunk.persons[p as usize].sex = s;
                (
                    Some(p),
                    CompactString::const_new(s.symbol()),
                    "enumerator data-entry error",
                )
            }
            CorrectableField::EducationLevel => {
                if ages_on(self.person(p).birth, at) < 18 {
                    return Ok(());
                }
                let r = level_rank(self.person(p).education) as i64;
                let step = if r == 0 || chance(self.rng(), 0.5) {
                    1
                } else {
                    -1
                };
                let l = level_at((r + step).max(0) as usize);
                self.chunk.persons[p as usize].education = l;
                (
                    Some(p),
                    CompactString::const_new(l.symbol()),
                    "certificate verified at home visit",
                )
            }
            CorrectableField::MonthlyIncome => {
                // A corrected total replaces the breakdown by source (dsr-core keeps it as
                // "other").
                let total = self.person(p).incomes.total();
                if total == 0.0 {
                    return Ok(());
                }
                let new = money(total * lognormal(self.rng(), 1.0, 0.3));
                let mut incomes = Incomes::default();
                incomes.set(IncomeSource::Other, new);
                self.chunk.persons[p as usize].incomes = incomes;
                (
                    Some(p),
                    format_compact!("{new}"),
                    "income verified with payslips",
                )
            }
            CorrectableField::Relationship => {
                // The head changes only by succession; others' relationships can be wrong.
                let old = self.person(p).relationship;
                if matches!(old, Relationship::Head | Relationship::Spouse) {
                    return Ok(());
                }
                let options = [
                    Relationship::Child,
                    Relationship::Grandchild,
                    Relationship::Sibling,
                    Relationship::OtherRelative,
                    Relationship::NonRelative,
                ];
                let r = options[index(self.rng(), options.len())];
                if r == old {
                    return Ok(());
                }
                self.chunk.persons[p as usize].relationship = r;
                (
                    Some(p),
                    CompactString::const_new(r.symbol()),
                    "relationship confirmed by the household",
                )
            }
            CorrectableField::Area => {
                let v = self.chunk.households[h as usize].village;
                let range = self.ctx.areas.district_villages(v as usize);
                let nv = (range.start + index(self.rng(), range.len())) as u32;
                if nv == v {
                    return Ok(());
                }
                self.chunk.remove_from_village(v, h);
                self.chunk.add_to_village(nv, h);
                self.chunk.households[h as usize].village = nv;
                let code = self.ctx.areas.village(nv as usize).code.as_str();
                (
                    None,
                    CompactString::new(code),
                    "household located on the village register",
                )
            }
            CorrectableField::WallMaterial => {
                let d = &mut self.chunk.households[h as usize].dwelling;
                d.wall_material = match d.wall_material {
                    WallMaterial::Natural => WallMaterial::Rudimentary,
                    WallMaterial::Rudimentary => WallMaterial::Natural,
                    WallMaterial::Finished => WallMaterial::Rudimentary,
                };
                (
                    None,
                    CompactString::const_new(d.wall_material.symbol()),
                    "verified at home visit",
                )
            }
            CorrectableField::WaterSource => {
                let d = &mut self.chunk.households[h as usize].dwelling;
                d.water_source = match d.water_source {
                    WaterSource::Piped => WaterSource::ImprovedOther,
                    WaterSource::ImprovedOther => WaterSource::Unimproved,
                    WaterSource::Unimproved => WaterSource::ImprovedOther,
                    WaterSource::SurfaceWater => WaterSource::Unimproved,
                };
                (
                    None,
                    CompactString::const_new(d.water_source.symbol()),
                    "verified at home visit",
                )
            }
            CorrectableField::Sanitation => {
                let d = &mut self.chunk.households[h as usize].dwelling;
                d.sanitation = match d.sanitation {
                    Sanitation::Safely => Sanitation::Basic,
                    Sanitation::Basic => Sanitation::Limited,
                    Sanitation::Limited => Sanitation::Basic,
                    Sanitation::Unimproved => Sanitation::Limited,
                    Sanitation::OpenDefecation => Sanitation::Unimproved,
                };
                (
                    None,
                    CompactString::const_new(d.sanitation.symbol()),
                    "grievance resolved after home visit",
                )
            }
            CorrectableField::Electricity => {
                let d = &mut self.chunk.households[h as usize].dwelling;
                d.electricity = !d.electricity;
                (
                    None,
                    CompactString::const_new(if d.electricity { "true" } else { "false" }),
                    "utility connection record checked",
                )
            }
        };
        let caseworker_id = self.caseworker(h);
        let delay = self.delay(0, 2);
        self.emit(
            at,
            delay,
            CASE,
            person.map(|p| self.person(p).id()),
            Some(self.hh_id(h)),
            None,
            Payload::DataCorrection(DataCorrection {
                person_id: person.map(|p| self.person(p).id()),
                field,
                new_value,
                reason: reason.to_string(),
                caseworker_id,
            }),
        )?;
        Ok(())
    }

    /// A household founded by a move registers in full, on demand.
    fn register(&mut self, at: i64, h: u32) -> Result<(), serde_json::Error> {
        if self.chunk.households[h as usize].dissolved {
            return Ok(());
        }
        let id = event_id(
            self.ctx.config.seed,
            Stream::EventIds,
            self.chunk.index,
            self.chunk.seq,
        );
        self.chunk.seq += 1;
        let delay = self.delay(1, 24);
        let e = registration_event(
            self.ctx.areas,
            self.chunk,
            h,
            id,
            Micros(at),
            Micros(at + delay),
            RegistrationSource::OnDemand,
        );
        self.chunk.households[h as usize].registered = true;
        self.out.push(e)
    }
}

/// An exponential variate with the given mean (delays: most soon, a few late).
fn exponential(rng: &mut Rng, mean: f64) -> f64 {
    -(1.0 - unit(rng)).ln() * mean
}
