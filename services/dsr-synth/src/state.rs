//! The generator's own lightweight record of the population while it simulates.
//!
//! People are stored compactly (names as table indices, ids as numbers) and turned into
//! dsr-core [`Member`]s only when an event carries them. A chunk owns its households and
//! people outright, so chunks are simulated in parallel without sharing anything.

use crate::names;
use crate::rng::Rng;
use compact_str::CompactString;
use dsr_core::codes::*;
use dsr_core::household::{Assets, Disability, Dwelling, Incomes};
use dsr_core::{Date, HouseholdId, Member, PersonId};

/// "No one" in an index field.
pub(crate) const NO_ONE: u32 = u32::MAX;

/// Person ids are the household number they were first registered in, times this, plus a
/// slot; births take the next free slot of the mother's household.
pub(crate) const SLOTS: u64 = 100;

/// One person as the simulation tracks them.
#[derive(Clone, Debug)]
pub(crate) struct Person {
    /// Id number: `P` + 10 digits.
    pub num: u64,
    pub given: u16,
    pub family: u16,
    pub sex: Sex,
    pub birth: Date,
    pub relationship: Relationship,
    pub marital: MaritalStatus,
    pub education: EducationLevel,
    pub enrolled: bool,
    pub employment: EmploymentStatus,
    pub disability: Option<Disability>,
    pub alive: bool,
    pub incomes: Incomes,
    /// Index (in the chunk) of the household the person lives in now.
    pub household: u32,
    /// Index of the person's current spouse, or [`NO_ONE`].
    pub spouse: u32,
    /// Date of this woman's last live birth (to space births), or far in the past.
    pub last_birth: Date,
}

impl Person {
    pub fn id(&self) -> PersonId {
        PersonId(id_text(b'P', self.num, 10))
    }

    /// Age in whole years, approximately (365.25-day years); precise enough for hazards and
    /// much cheaper than calendar arithmetic.
    #[inline]
    pub fn age(&self, on: Date) -> u32 {
        age_years(self.birth, on)
    }

    pub fn member(&self) -> Member {
        let t = names::tables();
        let given = match self.sex {
            Sex::Female => &t.female[self.given as usize],
            _ => &t.male[self.given as usize],
        };
        Member {
            person_id: self.id(),
            given_name: CompactString::new(given),
            family_name: CompactString::new(&t.family[self.family as usize]),
            sex: self.sex,
            birth_date: self.birth,
            relationship: self.relationship,
            marital_status: self.marital,
            education_level: self.education,
            enrolled_in_school: self.enrolled,
            employment: self.employment,
            incomes: self.incomes,
            disability: self.disability,
        }
    }

    pub fn is_married(&self) -> bool {
        self.marital == MaritalStatus::Married
    }

    /// Has an income or paid work (and so reports income now and then).
    pub fn earns(&self) -> bool {
        matches!(
            self.employment,
            EmploymentStatus::Employee
                | EmploymentStatus::SelfEmployed
                | EmploymentStatus::Employer
        ) || self.incomes.iter().next().is_some()
    }
}

/// Whole years from `birth` to `on`, with 365.25-day years.
#[inline]
pub(crate) fn age_years(birth: Date, on: Date) -> u32 {
    ((on.0 - birth.0).max(0) as u64 * 4 / 1461) as u32
}

/// One household as the simulation tracks it.
#[derive(Clone, Debug)]
pub(crate) struct Hh {
    /// Id number: `H` + 8 digits.
    pub num: u64,
    /// Village number (see [`crate::Areas::village`]).
    pub village: u32,
    /// Current members (person indices in the chunk), in arrival order.
    pub members: Vec<u32>,
    /// Next free person-id slot, for births.
    pub next_slot: u32,
    pub dwelling: Dwelling,
    pub assets: Assets,
    /// The last member died or left.
    pub dissolved: bool,
    /// Founded by a move during the simulation (not in the initial survey).
    pub founded: bool,
    /// The registry has a full record (dwelling included): surveyed, or registered on demand
    /// after being founded.
    pub registered: bool,
}

impl Hh {
    pub fn id(&self) -> HouseholdId {
        household_id(self.num)
    }
}

pub(crate) fn household_id(num: u64) -> HouseholdId {
    HouseholdId(id_text(b'H', num, 8))
}

/// `prefix` followed by `num` zero-padded to `width` digits (more if it does not fit).
pub(crate) fn id_text(prefix: u8, num: u64, width: usize) -> CompactString {
    let mut buf = [b'0'; 24];
    buf[0] = prefix;
    let mut digits = [0u8; 20];
    let mut n = num;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let total = len.max(width);
    for i in 0..len {
        buf[1 + total - 1 - i] = digits[i];
    }
    // The buffer holds ASCII only.
    CompactString::new(std::str::from_utf8(&buf[..1 + total]).unwrap_or_default())
}

/// All the state of one chunk of households.
pub(crate) struct Chunk {
    pub index: u64,
    pub persons: Vec<Person>,
    pub households: Vec<Hh>,
    /// Registration time of each initial household (same order as the first households).
    pub registered_at: Vec<dsr_core::Micros>,
    /// Households of the chunk per village, for choosing where a mover goes.
    pub by_village: Vec<(u32, Vec<u32>)>,
    /// The next household number this chunk may give a founded household, and the end of its
    /// reserved range.
    pub next_founded: u64,
    pub end_founded: u64,
    /// The chunk's life-event generator (persists across months).
    pub rng: Rng,
    /// Events counted so far: the `b` of each event id.
    pub seq: u64,
    /// Tie-breaker of scheduled intents.
    pub intent_seq: u64,
    pub pending: std::collections::BinaryHeap<std::cmp::Reverse<crate::events::Pending>>,
    /// JSON bytes of the chunk's last month, to size the next month's buffer.
    pub month_bytes: usize,
}

impl Chunk {
    /// Households of the chunk in village `v`.
    pub fn village_households(&self, v: u32) -> &[u32] {
        self.by_village
            .iter()
            .find(|(x, _)| *x == v)
            .map(|(_, h)| h.as_slice())
            .unwrap_or(&[])
    }

    pub fn add_to_village(&mut self, v: u32, h: u32) {
        match self.by_village.iter_mut().find(|(x, _)| *x == v) {
            Some((_, list)) => list.push(h),
            None => self.by_village.push((v, vec![h])),
        }
    }

    pub fn remove_from_village(&mut self, v: u32, h: u32) {
        if let Some((_, list)) = self.by_village.iter_mut().find(|(x, _)| *x == v) {
            list.retain(|x| *x != h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_padded() {
        assert_eq!(id_text(b'P', 1234501, 10).as_str(), "P0001234501");
        assert_eq!(household_id(42).as_str(), "H00000042");
        assert_eq!(id_text(b'H', 123_456_789, 8).as_str(), "H123456789");
    }

    #[test]
    fn approximate_age_matches_calendar_age_mostly() {
        let birth = Date::from_ymd(1990, 6, 15);
        assert_eq!(age_years(birth, Date::from_ymd(2026, 1, 1)), 35);
        assert_eq!(age_years(birth, Date::from_ymd(2026, 7, 1)), 36);
    }
}
