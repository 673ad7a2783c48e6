//! What to generate: size, seed, period and rates.

use crate::error::Error;
use dsr_core::ids::MICROS_PER_DAY;
use dsr_core::{Date, Micros};
use serde::{Deserialize, Serialize};

/// Households per chunk. A chunk is the unit of parallel work and of randomness (its own
/// generator, seeded from the run's seed and the chunk's number), so this constant is part
/// of what a seed means: changing it changes every output. Moves and marriages stay within a
/// chunk, so it is large enough to hold several villages.
pub const CHUNK_HOUSEHOLDS: u64 = 1_000;

/// Household numbers are 8 digits and person ids add a 2-digit slot (`P` + 10 digits); half
/// the household numbers are reserved for households founded by moves.
pub const MAX_HOUSEHOLDS: u64 = 49_000_000;

/// Annual rates of the life-event stream. The age schedules (fertility by age of the mother,
/// mortality by age) have the shape of a young, low-income population and are scaled so the
/// crude rates come out near these numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rates {
    /// Live births per 1000 people per year.
    pub births_per_1000: f64,
    /// Deaths per 1000 people per year.
    pub deaths_per_1000: f64,
    /// Share of people who change household in a year. It scales the leaving-home schedule
    /// (young adults most); moves after marriages and divorces come on top, and at the default
    /// the two together come out near this share.
    pub moves_per_person: f64,
    /// Marriages per never-married, divorced or widowed adult (18–45) per year.
    pub marriages_per_single_adult: f64,
    /// Divorces per co-resident married couple per year.
    pub divorces_per_couple: f64,
    /// Income reports per earner per year ("quarterly-ish").
    pub income_reports_per_earner: f64,
    /// Employment status changes per working-age adult per year.
    pub employment_changes_per_adult: f64,
    /// New disability assessments per 1000 people per year (reassessments come on top).
    pub disability_onsets_per_1000: f64,
    /// Assets re-reports per household per year.
    pub assets_reports_per_household: f64,
    /// Household-specific shocks (fire, illness, theft, ...) per household per year.
    pub household_shocks_per_household: f64,
    /// Caseworker data corrections per household per year.
    pub corrections_per_household: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            births_per_1000: 30.0,
            deaths_per_1000: 8.0,
            moves_per_person: 0.03,
            marriages_per_single_adult: 0.10,
            divorces_per_couple: 0.008,
            income_reports_per_earner: 3.0,
            employment_changes_per_adult: 0.08,
            disability_onsets_per_1000: 3.0,
            assets_reports_per_household: 0.15,
            household_shocks_per_household: 0.03,
            corrections_per_household: 0.006,
        }
    }
}

/// Who lives together in the registered households: the composition the initial survey
/// draws from. The life-event stream follows from the people drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HouseholdSizes {
    /// A young, rural, low-income population (the default): couples with several children and
    /// often relatives, few people living alone; 4.5–5 people a household.
    #[default]
    EastAfrica,
    /// Households the size of Chile's Registro Social de Hogares (17.1M people in 9M
    /// households, 1.9 a household): almost half live alone, few children, relatives rare.
    /// The registry's own scale target, so load tests can run the population it names.
    Chile,
}

/// The probabilities and means `HouseholdSizes` stands for (see `population::compose`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Composition {
    /// Living alone: base + per unit of urbanness.
    pub single: (f64, f64),
    /// Grandparents raising grandchildren.
    pub skipped_generation: f64,
    /// A family household headed by a couple: base + per unit of urbanness.
    pub couple: (f64, f64),
    /// A mother's completed fertility: base + per unit of poverty + per unit of urbanness.
    pub fertility: (f64, f64, f64),
    /// Chance that a child of 15 still lives at home, and how much it falls a year after.
    pub stays_at_15: (f64, f64),
    /// Chances of relatives living in: a parent of the head, grandchildren (base + per unit
    /// of poverty), a sibling, another relative, a non-relative (base + per unit of urbanness).
    pub parents: f64,
    pub grandchildren: (f64, f64),
    pub sibling: f64,
    pub other_relative: f64,
    pub non_relative: (f64, f64),
}

impl HouseholdSizes {
    pub(crate) fn composition(self) -> Composition {
        match self {
            HouseholdSizes::EastAfrica => Composition {
                single: (0.06, 0.07),
                skipped_generation: 0.04,
                couple: (0.80, -0.06),
                fertility: (4.2, 1.6, -1.4),
                stays_at_15: (0.92, 0.07),
                parents: 0.12,
                grandchildren: (0.28, 0.1),
                sibling: 0.08,
                other_relative: 0.14,
                non_relative: (0.015, 0.03),
            },
            HouseholdSizes::Chile => Composition {
                single: (0.45, 0.06),
                skipped_generation: 0.01,
                couple: (0.55, -0.05),
                fertility: (1.5, 0.6, -0.3),
                stays_at_15: (0.75, 0.10),
                parents: 0.03,
                grandchildren: (0.06, 0.03),
                sibling: 0.02,
                other_relative: 0.03,
                non_relative: (0.005, 0.01),
            },
        }
    }
}

/// What to generate. The same configuration always gives the same bytes, whatever
/// `threads` is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Households registered by the initial survey.
    pub households: u64,
    pub seed: u64,
    /// Length of the simulated period of life events, in calendar months.
    pub months: u32,
    /// First day of the simulated period (default 2026-01-01).
    pub start: Date,
    /// The registration survey runs for this many days, ending the day before `start`.
    pub registration_days: u32,
    /// Worker threads; 0 means one per available core. Does not affect the output.
    pub threads: usize,
    /// Whether to declare area-wide shocks (droughts, floods).
    pub shocks: bool,
    /// Who lives together (the default keeps every earlier seed's output as it was).
    pub household_sizes: HouseholdSizes,
    pub rates: Rates,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            households: 10_000,
            seed: 1,
            months: 12,
            start: Date::from_ymd(2026, 1, 1),
            registration_days: 184,
            threads: 0,
            shocks: true,
            household_sizes: HouseholdSizes::default(),
            rates: Rates::default(),
        }
    }
}

impl Config {
    /// The default configuration for `households` households and `seed`.
    pub fn new(households: u64, seed: u64) -> Self {
        Config {
            households,
            seed,
            ..Config::default()
        }
    }

    /// Checks that the configuration can be generated.
    pub fn validate(&self) -> Result<(), Error> {
        if self.households > MAX_HOUSEHOLDS {
            return Err(Error::Config(format!(
                "{} households is more than the id space allows ({MAX_HOUSEHOLDS})",
                self.households
            )));
        }
        if self.months > 1200 {
            return Err(Error::Config(format!(
                "{} months is over a century",
                self.months
            )));
        }
        if self.registration_days == 0 {
            return Err(Error::Config("registration_days must be at least 1".into()));
        }
        let (y, _, d) = self.start.ymd();
        if !(1900..=2200).contains(&y) || d != 1 {
            return Err(Error::Config(format!(
                "start {} must be the first day of a month between 1900 and 2200",
                self.start
            )));
        }
        let r = &self.rates;
        for (name, v) in [
            ("births_per_1000", r.births_per_1000),
            ("deaths_per_1000", r.deaths_per_1000),
            ("moves_per_person", r.moves_per_person),
            ("marriages_per_single_adult", r.marriages_per_single_adult),
            ("divorces_per_couple", r.divorces_per_couple),
            ("income_reports_per_earner", r.income_reports_per_earner),
            (
                "employment_changes_per_adult",
                r.employment_changes_per_adult,
            ),
            ("disability_onsets_per_1000", r.disability_onsets_per_1000),
            (
                "assets_reports_per_household",
                r.assets_reports_per_household,
            ),
            (
                "household_shocks_per_household",
                r.household_shocks_per_household,
            ),
            ("corrections_per_household", r.corrections_per_household),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!("rates.{name} must be >= 0, not {v}")));
            }
        }
        if r.income_reports_per_earner > 12.0 {
            return Err(Error::Config(
                "rates.income_reports_per_earner is at most 12 (one a month)".into(),
            ));
        }
        Ok(())
    }

    /// Number of chunks the households are generated in.
    pub fn chunks(&self) -> u64 {
        self.households.div_ceil(CHUNK_HOUSEHOLDS)
    }

    /// First day of month `m` of the period (`m == months` is the day after the period).
    pub fn month_start(&self, m: u32) -> Date {
        let (y, mo, _) = self.start.ymd();
        let total = (y as i64) * 12 + (mo as i64 - 1) + m as i64;
        Date::from_ymd(
            total.div_euclid(12) as i32,
            total.rem_euclid(12) as u32 + 1,
            1,
        )
    }

    /// The day after the period.
    pub fn end(&self) -> Date {
        self.month_start(self.months)
    }

    /// First day of the registration survey.
    pub fn registration_start(&self) -> Date {
        Date(self.start.0 - self.registration_days as i32)
    }

    /// A clock reading after every generated event's `occurred_at`, for `Event::validate`.
    pub fn now_after(&self) -> Micros {
        micros(self.end())
    }
}

/// Midnight UTC at the start of `d`.
pub fn micros(d: Date) -> Micros {
    Micros(d.0 as i64 * MICROS_PER_DAY)
}

/// How far generation has got, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// Work units done and in all, for this phase (households in `Households`, chunk-months
    /// in `Events`).
    pub done: u64,
    pub total: u64,
    /// Households written so far.
    pub households: u64,
    /// Life events written so far.
    pub events: u64,
}

/// The phases of a run, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Households,
    Events,
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_years() {
        let c = Config {
            start: Date::from_ymd(2026, 11, 1),
            months: 3,
            ..Config::default()
        };
        assert_eq!(c.month_start(1), Date::from_ymd(2026, 12, 1));
        assert_eq!(c.end(), Date::from_ymd(2027, 2, 1));
        assert_eq!(
            Config::default().registration_start(),
            Date::from_ymd(2025, 7, 1)
        );
    }

    #[test]
    fn rejects_impossible_configs() {
        assert!(Config::new(MAX_HOUSEHOLDS + 1, 1).validate().is_err());
        let mut c = Config::new(10, 1);
        c.rates.deaths_per_1000 = -1.0;
        assert!(c.validate().is_err());
        assert!(Config::new(10, 1).validate().is_ok());
    }
}
