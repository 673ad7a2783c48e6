//! A household's record as the registry keeps it: members, dwelling, assets, location, need
//! score, per-program status, and the bookkeeping that makes applying events idempotent.

use crate::codes::*;
use crate::event::InvalidEvent;
use crate::ids::*;
use crate::score::ScoreSummary;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// One person in a household.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub person_id: PersonId,
    pub given_name: CompactString,
    pub family_name: CompactString,
    pub sex: Sex,
    pub birth_date: Date,
    pub relationship: Relationship,
    pub marital_status: MaritalStatus,
    pub education_level: EducationLevel,
    pub enrolled_in_school: bool,
    pub employment: EmploymentStatus,
    /// Income by source, monthly, in the national currency's main unit.
    #[serde(default)]
    pub incomes: Incomes,
    #[serde(default)]
    pub disability: Option<Disability>,
}

impl Member {
    pub fn age_on(&self, date: Date) -> u32 {
        self.birth_date.years_until(date)
    }

    /// A functional limitation counts as a disability from "a lot of difficulty" up
    /// (the Washington Group's recommended cut-off).
    pub fn is_disabled(&self) -> bool {
        matches!(
            self.disability,
            Some(Disability {
                severity: DisabilitySeverity::ALotOfDifficulty | DisabilitySeverity::CannotDoAtAll,
                ..
            })
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disability {
    pub disability_type: DisabilityType,
    pub severity: DisabilitySeverity,
}

/// Monthly income by source. A fixed array, not a map: cloning a member allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Incomes([f64; 7]);

impl Incomes {
    fn slot(source: IncomeSource) -> usize {
        IncomeSource::ALL
            .iter()
            .position(|s| *s == source)
            .unwrap_or(0)
    }
    pub fn set(&mut self, source: IncomeSource, monthly: f64) {
        self.0[Self::slot(source)] = monthly;
    }
    pub fn get(&self, source: IncomeSource) -> f64 {
        self.0[Self::slot(source)]
    }
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }
    /// The sources with a non-zero amount, in code-list order.
    pub fn iter(&self) -> impl Iterator<Item = (IncomeSource, f64)> + '_ {
        IncomeSource::ALL
            .iter()
            .zip(self.0.iter())
            .filter(|(_, v)| **v != 0.0)
            .map(|(s, v)| (*s, *v))
    }
}

/// Serialized as a list of `{source, monthly_amount}`, the shape of the Avro schema.
#[derive(Serialize, Deserialize)]
struct IncomeEntry {
    source: IncomeSource,
    monthly_amount: f64,
}

impl Serialize for Incomes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The length up front: binary formats (the state store's) need it.
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.iter().count()))?;
        for (source, monthly_amount) in self.iter() {
            seq.serialize_element(&IncomeEntry {
                source,
                monthly_amount,
            })?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Incomes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<IncomeEntry>::deserialize(d)?;
        let mut incomes = Incomes::default();
        for e in entries {
            incomes.set(e.source, incomes.get(e.source) + e.monthly_amount);
        }
        Ok(incomes)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dwelling {
    pub wall_material: WallMaterial,
    pub water_source: WaterSource,
    pub sanitation: Sanitation,
    pub electricity: bool,
    pub rooms: u32,
    pub tenure: Tenure,
}

#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Assets {
    pub land_hectares: f64,
    /// Tropical livestock units (cattle 0.7, goat/sheep 0.1, ...).
    pub livestock_tlu: f64,
    pub mobile_phones: u32,
    pub radio: bool,
    pub television: bool,
    pub refrigerator: bool,
    pub bicycle: bool,
    pub motorcycle: bool,
    pub car: bool,
}

impl Assets {
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        for (field, value) in [
            ("assets.land_hectares", self.land_hectares),
            ("assets.livestock_tlu", self.livestock_tlu),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(InvalidEvent::NegativeOrNotFinite { field, value });
            }
        }
        Ok(())
    }

    /// Count of durable goods owned (a phone counts once).
    pub fn durable_goods(&self) -> u32 {
        (self.mobile_phones > 0) as u32
            + self.radio as u32
            + self.television as u32
            + self.refrigerator as u32
            + self.bicycle as u32
            + self.motorcycle as u32
            + self.car as u32
    }
}

/// Damage the household reported from its most recent shock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShockDamage {
    pub hazard: HazardType,
    pub damage: DamageLevel,
    pub estimated_loss: f64,
    pub reported_on: Date,
    pub shock_id: Option<ShockId>,
}

/// A program's view of the household at its last evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramStatus {
    pub program_id: CompactString,
    pub rule_version: u32,
    pub eligible: bool,
    pub benefit: f64,
    /// The rule's inputs as they were, to say which changed.
    pub inputs: crate::eligibility::RuleInputs,
}

/// How many applied event ids a household remembers for idempotency. Redelivery from the log
/// happens within a batch or two; the pipeline's offsets cover anything older.
pub const RECENT_EVENTS: usize = 32;

/// The registry's record of one household.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Household {
    pub household_id: HouseholdId,
    pub area: AreaCode,
    /// Sorted by `person_id`, so the record does not depend on the order members arrived in.
    pub members: Vec<Member>,
    #[serde(default)]
    pub dwelling: Option<Dwelling>,
    #[serde(default)]
    pub assets: Assets,
    #[serde(default)]
    pub shock_damage: Option<ShockDamage>,
    #[serde(default)]
    pub need_score: Option<ScoreSummary>,
    /// One entry per program that has evaluated the household, sorted by program id.
    #[serde(default)]
    pub programs: Vec<ProgramStatus>,
    /// Number of events applied.
    #[serde(default)]
    pub version: u64,
    /// The latest `occurred_at` applied; ages are computed on this date, so the record never
    /// depends on when it is read.
    #[serde(default)]
    pub as_of: Micros,
    /// Ids of the most recently applied events, newest last (at most [`RECENT_EVENTS`]).
    #[serde(default)]
    pub recent_events: Vec<EventId>,
    /// Events applied after a newer one (their `occurred_at` earlier than `as_of`).
    #[serde(default)]
    pub late_events: u64,
    /// Set when the last member died or left; events for it are still accepted.
    #[serde(default)]
    pub dissolved: bool,
}

impl Household {
    /// An empty record, before its first event.
    pub fn new(household_id: HouseholdId, area: AreaCode) -> Self {
        Household {
            household_id,
            area,
            members: Vec::new(),
            dwelling: None,
            assets: Assets::default(),
            shock_damage: None,
            need_score: None,
            programs: Vec::new(),
            version: 0,
            as_of: Micros(0),
            recent_events: Vec::new(),
            late_events: 0,
            dissolved: false,
        }
    }

    pub fn head(&self) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.relationship == Relationship::Head)
    }

    pub fn member(&self, id: &PersonId) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.person_id.cmp(id))
            .ok()
            .map(|i| &self.members[i])
    }

    pub fn member_mut(&mut self, id: &PersonId) -> Option<&mut Member> {
        self.members
            .binary_search_by(|m| m.person_id.cmp(id))
            .ok()
            .map(move |i| &mut self.members[i])
    }

    /// Inserts or replaces a member, keeping the order by person id.
    pub fn upsert_member(&mut self, member: Member) {
        match self
            .members
            .binary_search_by(|m| m.person_id.cmp(&member.person_id))
        {
            Ok(i) => self.members[i] = member,
            Err(i) => self.members.insert(i, member),
        }
    }

    pub fn remove_member(&mut self, id: &PersonId) -> Option<Member> {
        self.members
            .binary_search_by(|m| m.person_id.cmp(id))
            .ok()
            .map(|i| self.members.remove(i))
    }

    /// Asks the CPU to start loading this record's heap data — members, recent event ids and
    /// program statuses with their inputs — into its cache, and returns at once.
    ///
    /// Why: with more households than fit in the CPU's cache, most of an event's cost is waiting
    /// for its household's memory (the domain-core benchmark ran twice as fast on a population
    /// small enough to stay cached). A processor that calls this for the *next* event's household
    /// before it processes the current one overlaps that wait with useful work: +30% events/s in
    /// the benchmark (`docs/performance.md`). A hint only: it changes no state and no result.
    #[inline]
    pub fn prefetch(&self) {
        prefetch_lines(&self.members);
        prefetch_lines(&self.recent_events);
        prefetch_lines(&self.programs);
    }

    pub fn has_applied(&self, id: &EventId) -> bool {
        self.recent_events.iter().rev().any(|e| e == id)
    }

    pub fn today(&self) -> Date {
        self.as_of.date()
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Total monthly income of all members.
    pub fn monthly_income(&self) -> f64 {
        self.members.iter().map(|m| m.incomes.total()).sum()
    }

    pub fn program(&self, id: &str) -> Option<&ProgramStatus> {
        self.programs
            .binary_search_by(|p| p.program_id.as_str().cmp(id))
            .ok()
            .map(|i| &self.programs[i])
    }

    pub fn set_program(&mut self, status: ProgramStatus) {
        match self
            .programs
            .binary_search_by(|p| p.program_id.cmp(&status.program_id))
        {
            Ok(i) => self.programs[i] = status,
            Err(i) => self.programs.insert(i, status),
        }
    }
}

/// Prefetches the cache lines of `items` (see [`Household::prefetch`]).
#[inline]
fn prefetch_lines<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = items.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(items)).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults, whatever the address; the address
            // is inside the slice anyway (`wrapping_add` keeps the arithmetic defined).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}
