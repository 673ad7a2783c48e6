//! Shock-responsive scale-up: rules agreed before a shock, and what they do when one comes.
//!
//! A [`ScaleUpRule`] says which program scales up, on which trigger (a `ShockDeclared` event
//! matching hazard, areas and an indicator threshold such as VCI < 10, or a coordinator's
//! manual trigger), how (**vertical**: a top-up for current beneficiaries; **horizontal**:
//! temporary enrolment of other households above a relaxed need-score threshold, or the
//! neediest X% of each area as in Kenya's HSNP), for how long, within which caps, and who comes
//! first when a cap binds.
//!
//! [`plan`] answers "who and how much" for a rule and a shock over the registry's households.
//! The preview a coordinator sees and the activation a shock causes both call it, so their
//! numbers cannot disagree. [`RuleRecord`] is the rule's lifecycle (draft → previewed →
//! approved by someone else → armed → active → expired / revoked) with every transition and
//! who made it. [`start_changes`] and [`end_changes`] are the notifications to the program,
//! marked with the rule, the shock and the end date; their ids are derived, so a crash and a
//! second attempt produce the same ids.
//!
//! Pure: time comes in as arguments, households as [`Candidate`]s.

use crate::codes::{HazardType, ShockSeverity};
use crate::eligibility::ChangeKind;
use crate::event::ShockDeclared;
use crate::household::Household;
use crate::ids::*;
use crate::process::EligibilityChange;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Microseconds in a day.
const DAY: i64 = 86_400_000_000;

/// A pre-agreed scale-up rule (the file and API shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleUpRule {
    /// Stable identifier: letters, digits, `-` and `_`.
    pub id: CompactString,
    pub name: String,
    /// The program that scales up.
    pub program: CompactString,
    pub trigger: Trigger,
    pub mode: Mode,
    pub duration: Duration,
    #[serde(default)]
    pub caps: Caps,
    #[serde(default)]
    pub priority: Priority,
    /// Whether a household may get this rule's grant on top of another active rule's grant of
    /// the same kind for the same program (default: no — a household is topped up once).
    #[serde(default)]
    pub stacks: bool,
}

/// What starts the rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A `ShockDeclared` event: of one of `hazards` (any when empty), naming at least one area
    /// inside (or enclosing) `areas`, at `min_severity` or worse, with the indicator past its
    /// threshold.
    Shock {
        #[serde(default)]
        hazards: Vec<HazardType>,
        areas: Vec<AreaCode>,
        #[serde(default)]
        min_severity: Option<ShockSeverity>,
        #[serde(default)]
        indicator: Option<Threshold>,
    },
    /// Only a coordinator's trigger (for `areas`).
    Manual { areas: Vec<AreaCode> },
}

/// An indicator threshold, e.g. `vci` below 10.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub name: CompactString,
    #[serde(default)]
    pub below: Option<f64>,
    #[serde(default)]
    pub above: Option<f64>,
}

/// How the program scales up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    /// A top-up for the program's current beneficiaries in the affected areas: `extra_amount`
    /// plus the benefit × (`multiplier` − 1), per month.
    Vertical {
        #[serde(default)]
        extra_amount: f64,
        #[serde(default)]
        multiplier: Option<f64>,
    },
    /// Temporary enrolment of households that are not beneficiaries, paid `benefit` per month.
    Horizontal { benefit: f64, selection: Selection },
}

/// Which non-beneficiaries a horizontal scale-up enrols.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Selection {
    /// Need score at least `threshold` (relaxed from the program's own).
    MinNeedScore { threshold: f64 },
    /// The neediest `percent` % of each affected area's households (beneficiaries count
    /// towards it: HSNP's "coverage rises to 50% of registered households").
    TopPercent { percent: f64 },
}

/// How long a triggered rule stays active: until a date, or a number of days after the
/// trigger; the earlier when both are given. A `ShockEnded` event ends it sooner.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duration {
    #[serde(default)]
    pub ends_at: Option<Micros>,
    #[serde(default)]
    pub days: Option<u32>,
}

/// Limits; a grant that would pass one is not made (see [`Priority`] for who comes first).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    #[serde(default)]
    pub max_households: Option<u64>,
    /// Total cost over the rule's duration.
    #[serde(default)]
    pub budget_total: Option<f64>,
    /// Cost per affected area (the shock's area that contains the household).
    #[serde(default)]
    pub budget_per_area: Option<f64>,
}

/// Who comes first when a cap binds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Priority {
    /// Highest need score first (ties: household id).
    #[default]
    HighestNeedFirst,
    /// Households of the listed areas first, in the order given, then the rest; highest need
    /// first within each.
    AreasFirst { areas: Vec<AreaCode> },
}

/// Why a rule cannot be used as written.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("the rule id `{0}` must be 1-64 letters, digits, `-` or `_`")]
    Id(String),
    #[error("the rule needs a name")]
    Name,
    #[error("the rule's program `{0}` is not a program of this registry")]
    UnknownProgram(String),
    #[error("the trigger names no area: list the areas (codes of the master list) it covers")]
    NoAreas,
    #[error("the trigger names areas that are not in the geographic master list: {0}")]
    UnknownAreas(String),
    #[error("the indicator threshold `{0}` needs `below` or `above`")]
    Threshold(String),
    #[error("{0} must be a finite number >= 0")]
    Amount(&'static str),
    #[error("a vertical top-up needs extra_amount > 0 or a multiplier > 1")]
    NoTopUp,
    #[error("top_percent must be more than 0 and at most 100, not {0}")]
    Percent(f64),
    #[error("the duration needs ends_at or days (at least 1)")]
    Duration,
}

impl ScaleUpRule {
    /// Checks the rule against the registry's programs and master list (`areas` answers
    /// whether a code is in it).
    pub fn validate(
        &self,
        programs: &[&str],
        known_area: &dyn Fn(&AreaCode) -> bool,
    ) -> Result<(), RuleError> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(RuleError::Id(self.id.to_string()));
        }
        if self.name.trim().is_empty() {
            return Err(RuleError::Name);
        }
        if !programs.contains(&self.program.as_str()) {
            return Err(RuleError::UnknownProgram(self.program.to_string()));
        }
        let areas = self.areas();
        if areas.is_empty() {
            return Err(RuleError::NoAreas);
        }
        let unknown: Vec<&str> = areas
            .iter()
            .filter(|a| !known_area(a))
            .map(|a| a.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(RuleError::UnknownAreas(unknown.join(", ")));
        }
        if let Trigger::Shock {
            indicator: Some(t), ..
        } = &self.trigger
        {
            if t.below.is_none() && t.above.is_none() {
                return Err(RuleError::Threshold(t.name.to_string()));
            }
        }
        let finite = |v: f64, what| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(RuleError::Amount(what))
            }
        };
        match &self.mode {
            Mode::Vertical {
                extra_amount,
                multiplier,
            } => {
                finite(*extra_amount, "extra_amount")?;
                if let Some(m) = multiplier {
                    finite(*m, "multiplier")?;
                }
                if *extra_amount <= 0.0 && multiplier.is_none_or(|m| m <= 1.0) {
                    return Err(RuleError::NoTopUp);
                }
            }
            Mode::Horizontal { benefit, selection } => {
                finite(*benefit, "benefit")?;
                match selection {
                    Selection::MinNeedScore { threshold } => finite(*threshold, "threshold")?,
                    Selection::TopPercent { percent } => {
                        if !(percent.is_finite() && *percent > 0.0 && *percent <= 100.0) {
                            return Err(RuleError::Percent(*percent));
                        }
                    }
                }
            }
        }
        if self.duration.ends_at.is_none() && self.duration.days.is_none_or(|d| d == 0) {
            return Err(RuleError::Duration);
        }
        for (v, what) in [
            (self.caps.budget_total, "caps.budget_total"),
            (self.caps.budget_per_area, "caps.budget_per_area"),
        ] {
            if let Some(v) = v {
                finite(v, what)?;
            }
        }
        Ok(())
    }

    /// The areas the rule covers.
    pub fn areas(&self) -> &[AreaCode] {
        match &self.trigger {
            Trigger::Shock { areas, .. } | Trigger::Manual { areas } => areas,
        }
    }

    /// Whether `shock` triggers this rule (never for a manual rule).
    pub fn matches(&self, shock: &Shock) -> bool {
        let Trigger::Shock {
            hazards,
            areas,
            min_severity,
            indicator,
        } = &self.trigger
        else {
            return false;
        };
        if !hazards.is_empty() && !shock.hazard.is_some_and(|h| hazards.contains(&h)) {
            return false;
        }
        if let Some(min) = min_severity {
            if shock.severity.is_none_or(|s| s < *min) {
                return false;
            }
        }
        if let Some(t) = indicator {
            let Some(value) = shock
                .indicator
                .as_ref()
                .filter(|(name, _)| *name == t.name)
                .map(|(_, v)| *v)
            else {
                return false;
            };
            if t.below.is_some_and(|b| value >= b) || t.above.is_some_and(|a| value <= a) {
                return false;
            }
        }
        shock
            .areas
            .iter()
            .any(|s| areas.iter().any(|r| s.is_within(r) || r.is_within(s)))
    }

    /// When a rule triggered at `at` ends.
    pub fn ends_at(&self, at: Micros) -> Micros {
        let by_days = self
            .duration
            .days
            .map(|d| Micros(at.0 + i64::from(d) * DAY));
        match (self.duration.ends_at, by_days) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => at,
        }
    }

    /// Monthly payments over the rule's duration from `at` (30-day months, at least one).
    pub fn months(&self, at: Micros) -> f64 {
        let days = (self.ends_at(at).0 - at.0).max(0) as f64 / DAY as f64;
        (days / 30.0).ceil().max(1.0)
    }

    fn kind(&self) -> GrantKind {
        match self.mode {
            Mode::Vertical { .. } => GrantKind::TopUp,
            Mode::Horizontal { .. } => GrantKind::Enrolment,
        }
    }
}

/// An area-wide shock, real (from a `ShockDeclared` event) or hypothetical (for a preview, or
/// a coordinator's manual trigger).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shock {
    pub shock_id: ShockId,
    #[serde(default)]
    pub hazard: Option<HazardType>,
    pub areas: Vec<AreaCode>,
    #[serde(default)]
    pub severity: Option<ShockSeverity>,
    /// The indicator's name and value (`vci`, 8.5).
    #[serde(default)]
    pub indicator: Option<(CompactString, f64)>,
    pub starts_at: Micros,
    #[serde(default)]
    pub expected_end: Option<Micros>,
    /// The event that declared it (a derived id for a manual trigger).
    pub caused_by: EventId,
}

impl Shock {
    pub fn declared(event_id: EventId, d: &ShockDeclared) -> Shock {
        Shock {
            shock_id: d.shock_id.clone(),
            hazard: Some(d.hazard),
            areas: d.area_codes.clone(),
            severity: Some(d.severity),
            indicator: Some((d.indicator_name.clone(), d.indicator_value)),
            starts_at: d.starts_at,
            expected_end: d.expected_end,
            caused_by: event_id,
        }
    }

    /// A coordinator's trigger of `rule` at `at`: the rule's own areas.
    pub fn manual(rule: &ScaleUpRule, shock_id: ShockId, at: Micros) -> Shock {
        let caused_by = derived_id(
            &uuid::Uuid::nil(),
            &format!("scale-up-manual:{}:{shock_id}", rule.id),
        );
        Shock {
            shock_id,
            hazard: None,
            areas: rule.areas().to_vec(),
            severity: None,
            indicator: None,
            starts_at: at,
            expected_end: None,
            caused_by,
        }
    }
}

/// What a plan needs of one household, for one program.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub household_id: HouseholdId,
    pub area: AreaCode,
    pub need_score: f64,
    pub household_version: u64,
    /// A beneficiary of the program now.
    pub enrolled: bool,
    /// The program's benefit now (0 for a non-beneficiary).
    pub benefit: f64,
    /// The program's rule version that decided it.
    pub rule_version: u32,
}

impl Candidate {
    /// The household as the plan of `program` sees it; `None` for a dissolved household or one
    /// without a need score.
    pub fn of(household: &Household, program: &str) -> Option<Candidate> {
        if household.dissolved {
            return None;
        }
        let score = household.need_score.as_ref()?.score;
        let status = household.programs.iter().find(|p| p.program_id == program);
        Some(Candidate {
            household_id: household.household_id.clone(),
            area: household.area.clone(),
            need_score: score,
            household_version: household.version,
            enrolled: status.is_some_and(|s| s.eligible),
            benefit: status.filter(|s| s.eligible).map_or(0.0, |s| s.benefit),
            rule_version: status.map_or(0, |s| s.rule_version),
        })
    }
}

/// The households a plan chooses from, by column: the plan's passes over millions of
/// households then read a few dense arrays (and match each distinct area once, not each
/// household's), which is what makes a country-wide preview fast.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Candidates {
    ids: Vec<HouseholdId>,
    /// Index into `areas`.
    area: Vec<u32>,
    areas: Vec<AreaCode>,
    area_index: HashMap<AreaCode, u32>,
    score: Vec<f64>,
    enrolled: Vec<bool>,
    benefit: Vec<f64>,
    version: Vec<u64>,
    rule_version: Vec<u32>,
    /// False for a row kept in place for a household that is not a candidate now (dissolved,
    /// or without a need score): a table kept up to date by household keeps its rows.
    present: Vec<bool>,
}

impl Candidates {
    pub fn push(&mut self, c: Candidate) {
        let i = self.len();
        self.set(i, c, true);
    }

    fn area_index(&mut self, area: AreaCode) -> u32 {
        let next = self.areas.len() as u32;
        *self.area_index.entry(area.clone()).or_insert_with(|| {
            self.areas.push(area);
            next
        })
    }

    /// Sets row `i` (`i == len()` appends one); `present: false` keeps the row out of plans.
    pub fn set(&mut self, i: usize, c: Candidate, present: bool) {
        let area = self.area_index(c.area);
        if i == self.len() {
            self.ids.push(c.household_id);
            self.area.push(area);
            self.score.push(c.need_score);
            self.enrolled.push(c.enrolled);
            self.benefit.push(c.benefit);
            self.version.push(c.household_version);
            self.rule_version.push(c.rule_version);
            self.present.push(present);
        } else {
            self.ids[i] = c.household_id;
            self.area[i] = area;
            self.score[i] = c.need_score;
            self.enrolled[i] = c.enrolled;
            self.benefit[i] = c.benefit;
            self.version[i] = c.household_version;
            self.rule_version[i] = c.rule_version;
            self.present[i] = present;
        }
    }

    /// The household version row `i` holds.
    pub fn version(&self, i: usize) -> Option<u64> {
        self.version.get(i).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl FromIterator<Candidate> for Candidates {
    fn from_iter<I: IntoIterator<Item = Candidate>>(iter: I) -> Candidates {
        let mut c = Candidates::default();
        for x in iter {
            c.push(x);
        }
        c
    }
}

impl From<Vec<Candidate>> for Candidates {
    fn from(v: Vec<Candidate>) -> Candidates {
        v.into_iter().collect()
    }
}

/// Top-up or temporary enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    TopUp,
    Enrolment,
}

/// One household's share of an active rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub household_id: HouseholdId,
    /// The shock's area that contains the household.
    pub area: AreaCode,
    pub kind: GrantKind,
    /// Paid per month on top of (top-up) or instead of (enrolment) the program's benefit.
    pub amount: f64,
    /// The program's benefit when the rule started (0 for an enrolment).
    pub base_benefit: f64,
    pub household_version: u64,
    pub rule_version: u32,
}

/// A grant of another active rule, for overlap.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveGrant<'a> {
    pub rule_id: &'a str,
    pub program: &'a str,
    pub kind: GrantKind,
    pub stacks: bool,
    pub household_id: &'a HouseholdId,
}

/// Per affected area.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AreaTotals {
    /// Households of the area in the registry.
    pub households: u64,
    /// Those the rule's mode could reach (beneficiaries for a top-up; non-beneficiaries above
    /// the threshold for an enrolment).
    pub qualifying: u64,
    pub top_ups: u64,
    pub enrolments: u64,
    /// Qualifying households a cap left out.
    pub capped: u64,
    pub cost: f64,
}

/// Households near the cut: how many got in just above it and how many were left just below
/// (within 5 need-score points), so a coordinator sees how sensitive the threshold is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Marginal {
    /// The lowest need score that got a grant (none when nobody did).
    pub cut: Option<f64>,
    pub band: f64,
    pub just_in: u64,
    pub just_out: u64,
}

/// Households that another active rule already covers, so this one does not (or does, when
/// the rules stack).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overlap {
    pub rule_id: String,
    pub households: u64,
    pub stacked: bool,
}

/// Who and how much: what a preview shows and what an activation does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub rule_id: CompactString,
    pub program: CompactString,
    pub shock_id: ShockId,
    pub starts_at: Micros,
    pub ends_at: Micros,
    /// Monthly payments over the duration.
    pub months: f64,
    /// Households in the affected areas.
    pub affected: u64,
    pub top_ups: u64,
    pub enrolments: u64,
    /// Over the duration.
    pub total_cost: f64,
    pub capped: u64,
    pub per_area: BTreeMap<AreaCode, AreaTotals>,
    pub marginal: Marginal,
    pub overlap: Vec<Overlap>,
    pub grants: Vec<Grant>,
}

/// The band of [`Marginal`], in need-score points.
pub const MARGINAL_BAND: f64 = 5.0;

/// Decides who gets what under `rule` for `shock` among `households`, given the grants of
/// other active rules. Deterministic: the same inputs in any order give the same plan (the
/// same grants; in priority order when a cap binds, else in the households' order).
pub fn plan(
    rule: &ScaleUpRule,
    shock: &Shock,
    households: &Candidates,
    others: &[ActiveGrant<'_>],
) -> Plan {
    let starts_at = shock.starts_at;
    let mut ends_at = rule.ends_at(starts_at);
    if let Some(end) = shock.expected_end.filter(|e| *e > starts_at) {
        ends_at = ends_at.min(end);
    }
    let months = {
        let days = (ends_at.0 - starts_at.0).max(0) as f64 / DAY as f64;
        (days / 30.0).ceil().max(1.0)
    };
    // The shock's areas inside the rule's, most specific first, so a household is counted in
    // the smallest affected area that holds it.
    let mut affected_areas: Vec<AreaCode> = Vec::new();
    for s in &shock.areas {
        for r in rule.areas() {
            let area = if s.is_within(r) {
                s
            } else if r.is_within(s) {
                r
            } else {
                continue;
            };
            if !affected_areas.contains(area) {
                affected_areas.push(area.clone());
            }
        }
    }
    affected_areas.sort_by(|a, b| b.as_str().len().cmp(&a.as_str().len()).then(a.cmp(b)));
    // Each distinct area of the households matched once.
    let area_map: Vec<u32> = households
        .areas
        .iter()
        .map(|h| {
            affected_areas
                .iter()
                .position(|a| h.is_within(a))
                .map_or(u32::MAX, |p| p as u32)
        })
        .collect();
    let h = households;

    let kind = rule.kind();
    // Households work by index from here on: no hashing or string comparison per household
    // but for need-score ties and overlap.
    let mut totals = vec![AreaTotals::default(); affected_areas.len()];
    // Households grouped by area, for the one selection that needs them so (top X % per area).
    let by_area = matches!(
        rule.mode,
        Mode::Horizontal {
            selection: Selection::TopPercent { .. },
            ..
        }
    );
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); affected_areas.len()];
    let mut in_area: Vec<u32> = vec![u32::MAX; h.len()];
    let mut affected = 0u64;
    for (i, area) in h.area.iter().enumerate() {
        let a = area_map[*area as usize];
        if a != u32::MAX && h.present[i] {
            affected += 1;
            totals[a as usize].households += 1;
            if by_area {
                members[a as usize].push(i as u32);
            }
            in_area[i] = a;
        }
    }
    // Sorting by need compares precomputed keys; the households themselves (their ids) only
    // on an exact tie. Comparing through the indices instead costs a cache miss per comparison.
    let id_of = |i: u32| &h.ids[i as usize];

    // Who qualifies: (area, household, monthly amount).
    let mut qualifying: Vec<(u32, u32, f64)> = Vec::with_capacity(h.len() / 2);
    let affected_rows = || {
        in_area
            .iter()
            .enumerate()
            .filter(|(_, a)| **a != u32::MAX)
            .map(|(i, a)| (*a, i as u32))
    };
    match &rule.mode {
        Mode::Vertical {
            extra_amount,
            multiplier,
        } => {
            for (a, i) in affected_rows() {
                let amount =
                    extra_amount + h.benefit[i as usize] * (multiplier.unwrap_or(1.0) - 1.0);
                if h.enrolled[i as usize] && amount > 0.0 {
                    qualifying.push((a, i, amount));
                }
            }
        }
        Mode::Horizontal {
            benefit,
            selection: Selection::MinNeedScore { threshold },
        } => {
            for (a, i) in affected_rows() {
                if !h.enrolled[i as usize] && h.score[i as usize] >= *threshold {
                    qualifying.push((a, i, *benefit));
                }
            }
        }
        Mode::Horizontal {
            benefit,
            selection: Selection::TopPercent { percent },
        } => {
            for (a, list) in members.iter().enumerate() {
                let mut keyed: Vec<(u64, u32)> = list
                    .iter()
                    .map(|&i| (need_key(h.score[i as usize]), i))
                    .collect();
                // The neediest `quota` of the area, unordered (a selection, not a sort).
                let quota = ((keyed.len() as f64) * percent / 100.0).ceil() as usize;
                if quota > 0 && quota < keyed.len() {
                    keyed.select_nth_unstable_by(quota - 1, |x, y| {
                        x.0.cmp(&y.0).then_with(|| id_of(x.1).cmp(id_of(y.1)))
                    });
                }
                for &(_, i) in keyed.iter().take(quota) {
                    if !h.enrolled[i as usize] {
                        qualifying.push((a as u32, i, *benefit));
                    }
                }
            }
        }
    }

    // Overlap with other active rules.
    let covered: HashMap<&HouseholdId, Vec<(&str, bool)>> = others
        .iter()
        .filter(|g| g.program == rule.program && g.kind == kind && g.rule_id != rule.id.as_str())
        .fold(HashMap::new(), |mut m, g| {
            m.entry(g.household_id)
                .or_default()
                .push((g.rule_id, g.stacks));
            m
        });
    let mut overlap: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
    if !covered.is_empty() {
        qualifying.retain(|(_, i, _)| {
            let Some(rules) = covered.get(&h.ids[*i as usize]) else {
                return true;
            };
            let stacked = rule.stacks && rules.iter().all(|(_, s)| *s);
            for (other, _) in rules {
                overlap.entry(other).or_insert((0, stacked)).0 += 1;
            }
            stacked
        });
    }
    for (a, ..) in &qualifying {
        totals[*a as usize].qualifying += 1;
    }

    // Priority order, then the caps.
    let area_rank: Vec<usize> = h
        .areas
        .iter()
        .map(|area| match &rule.priority {
            Priority::HighestNeedFirst => 0,
            Priority::AreasFirst { areas } => areas
                .iter()
                .position(|p| area.is_within(p))
                .unwrap_or(areas.len()),
        })
        .collect();
    let mut ordered: Vec<(usize, u64, u32, u32, f64)> = qualifying
        .into_iter()
        .map(|(a, i, amount)| {
            let x = i as usize;
            (
                area_rank[h.area[x] as usize],
                need_key(h.score[x]),
                a,
                i,
                amount,
            )
        })
        .collect();
    // Order matters only when a cap binds; then the priority decides who is left out. When
    // none can, every qualifying household gets its grant and the grants stay in area order.
    let binds = {
        let mut area_cost = vec![0.0; affected_areas.len()];
        let mut total = 0.0;
        for (_, _, a, _, amount) in &ordered {
            area_cost[*a as usize] += amount * months;
            total += amount * months;
        }
        rule.caps
            .max_households
            .is_some_and(|m| (ordered.len() as u64) > m)
            || rule.caps.budget_total.is_some_and(|b| total > b + 1e-9)
            || rule
                .caps
                .budget_per_area
                .is_some_and(|b| area_cost.iter().any(|c| *c > b + 1e-9))
    };
    if binds {
        ordered.sort_unstable_by(|x, y| {
            (x.0, x.1)
                .cmp(&(y.0, y.1))
                .then_with(|| id_of(x.3).cmp(id_of(y.3)))
        });
    }
    let mut selected = vec![false; h.len()];
    let mut grants = Vec::with_capacity(ordered.len());
    let mut total_cost = 0.0;
    let mut capped = 0u64;
    let mut left_out: Vec<f64> = Vec::new();
    for (_, _, a, i, amount) in ordered {
        let x = i as usize;
        let cost = amount * months;
        let t = &mut totals[a as usize];
        let over = rule
            .caps
            .max_households
            .is_some_and(|m| grants.len() as u64 >= m)
            || rule
                .caps
                .budget_total
                .is_some_and(|b| total_cost + cost > b + 1e-9)
            || rule
                .caps
                .budget_per_area
                .is_some_and(|b| t.cost + cost > b + 1e-9);
        if over {
            capped += 1;
            t.capped += 1;
            left_out.push(h.score[x]);
            continue;
        }
        total_cost += cost;
        t.cost += cost;
        match kind {
            GrantKind::TopUp => t.top_ups += 1,
            GrantKind::Enrolment => t.enrolments += 1,
        }
        selected[x] = true;
        grants.push(Grant {
            household_id: h.ids[x].clone(),
            area: affected_areas[a as usize].clone(),
            kind,
            amount,
            base_benefit: h.benefit[x],
            household_version: h.version[x],
            rule_version: h.rule_version[x],
        });
    }

    // The margin: scores of those in and of those just out (below a threshold or capped).
    let cut = h
        .score
        .iter()
        .zip(&selected)
        .filter(|(_, s)| **s)
        .map(|(score, _)| *score)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.min(s))));
    let marginal = match cut {
        None => Marginal {
            cut: None,
            band: MARGINAL_BAND,
            ..Default::default()
        },
        Some(cut) => {
            let mut just_in = 0u64;
            let mut below = 0u64;
            for (i, &score) in h.score.iter().enumerate() {
                if selected[i] {
                    just_in += u64::from(score < cut + MARGINAL_BAND);
                } else if in_area[i] != u32::MAX
                    && h.enrolled[i] == (kind == GrantKind::TopUp)
                    && score < cut
                    && score >= cut - MARGINAL_BAND
                {
                    below += 1;
                }
            }
            let capped_near = left_out.iter().filter(|s| **s >= cut).count() as u64;
            Marginal {
                cut: Some(cut),
                band: MARGINAL_BAND,
                just_in,
                just_out: below + capped_near,
            }
        }
    };
    let top_ups = totals.iter().map(|t| t.top_ups).sum();
    let enrolments = totals.iter().map(|t| t.enrolments).sum();
    let per_area = affected_areas
        .into_iter()
        .zip(totals)
        .filter(|(_, t)| t.households > 0)
        .collect();
    Plan {
        rule_id: rule.id.clone(),
        program: rule.program.clone(),
        shock_id: shock.shock_id.clone(),
        starts_at,
        ends_at,
        months,
        affected,
        top_ups,
        enrolments,
        total_cost,
        capped,
        per_area,
        marginal,
        overlap: overlap
            .into_iter()
            .map(|(rule_id, (households, stacked))| Overlap {
                rule_id: rule_id.to_string(),
                households,
                stacked,
            })
            .collect(),
        grants,
    }
}

/// A digest of the set of households `ids` names (FNV-1a over the sorted ids): lets a preview
/// say exactly which households it selected — and a test or an auditor compare it with the
/// households the program was told about — without listing them.
pub fn households_digest<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.bytes().chain(std::iter::once(b'\n')) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// A sort key that puts the highest need score first (`f64::total_cmp` order, reversed).
fn need_key(score: f64) -> u64 {
    let bits = score.to_bits();
    let total = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    u64::MAX - total
}

/// Where a rule is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    Draft,
    Previewed,
    Approved,
    Armed,
    Active,
    Expired,
    Revoked,
}

impl RuleState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Draft => "draft",
            RuleState::Previewed => "previewed",
            RuleState::Approved => "approved",
            RuleState::Armed => "armed",
            RuleState::Active => "active",
            RuleState::Expired => "expired",
            RuleState::Revoked => "revoked",
        }
    }
}

/// One step of a rule's life: who moved it, when and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub from: Option<RuleState>,
    pub to: RuleState,
    pub by: String,
    pub why: String,
    pub at: Micros,
}

/// A triggered rule: the shock, the grants and when it ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub shock_id: ShockId,
    pub caused_by: EventId,
    pub starts_at: Micros,
    pub ends_at: Micros,
    pub grants: Vec<Grant>,
    /// The notifications of the start have all been written (a crash before that writes them
    /// again, with the same ids).
    #[serde(default)]
    pub started_sent: bool,
    /// Why it ended (expired, shock ended, revoked), once it has.
    #[serde(default)]
    pub ended: Option<(Micros, String)>,
    #[serde(default)]
    pub ended_sent: bool,
}

/// A rule and its life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub rule: ScaleUpRule,
    pub state: RuleState,
    pub drafted_by: String,
    #[serde(default)]
    pub approved_by: Option<String>,
    pub transitions: Vec<Transition>,
    #[serde(default)]
    pub activation: Option<Activation>,
}

/// A transition the rule's state or the actor does not allow.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LifecycleError {
    #[error("rule {rule} is {state}; {action} needs it to be {needed}")]
    State {
        rule: String,
        state: &'static str,
        action: &'static str,
        needed: &'static str,
    },
    #[error(
        "{by} drafted rule {rule}, so {by} cannot approve it: a second person must (four eyes)"
    )]
    OwnApproval { rule: String, by: String },
    #[error("give a reason for {0}: it is kept in the rule's history and the audit log")]
    NoReason(&'static str),
}

impl RuleRecord {
    pub fn draft(rule: ScaleUpRule, by: &str, at: Micros) -> RuleRecord {
        RuleRecord {
            rule,
            state: RuleState::Draft,
            drafted_by: by.to_string(),
            approved_by: None,
            transitions: vec![Transition {
                from: None,
                to: RuleState::Draft,
                by: by.to_string(),
                why: "drafted".into(),
                at,
            }],
            activation: None,
        }
    }

    fn check(
        &self,
        action: &'static str,
        allowed: &[RuleState],
        needed: &'static str,
    ) -> Result<(), LifecycleError> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(LifecycleError::State {
                rule: self.rule.id.to_string(),
                state: self.state.as_str(),
                action,
                needed,
            })
        }
    }

    fn go(&mut self, to: RuleState, by: &str, why: &str, at: Micros) {
        self.transitions.push(Transition {
            from: Some(self.state),
            to,
            by: by.to_string(),
            why: why.to_string(),
            at,
        });
        self.state = to;
    }

    /// A new text of a draft (or a previewed draft: it must be previewed again). The editor
    /// becomes a drafter too: they cannot approve it either.
    pub fn edit(&mut self, rule: ScaleUpRule, by: &str, at: Micros) -> Result<(), LifecycleError> {
        self.check(
            "editing",
            &[RuleState::Draft, RuleState::Previewed],
            "draft or previewed",
        )?;
        self.rule = rule;
        if self.drafted_by != by && !self.drafted_by.split(", ").any(|d| d == by) {
            self.drafted_by = format!("{}, {by}", self.drafted_by);
        }
        self.go(RuleState::Draft, by, "edited", at);
        Ok(())
    }

    pub fn previewed(&mut self, by: &str, at: Micros) -> Result<(), LifecycleError> {
        self.check(
            "a preview",
            &[RuleState::Draft, RuleState::Previewed],
            "draft or previewed",
        )?;
        if self.state == RuleState::Draft {
            self.go(RuleState::Previewed, by, "previewed", at);
        }
        Ok(())
    }

    pub fn approve(&mut self, by: &str, why: &str, at: Micros) -> Result<(), LifecycleError> {
        self.check("approval", &[RuleState::Previewed], "previewed")?;
        if self.drafted_by.split(", ").any(|d| d == by) {
            return Err(LifecycleError::OwnApproval {
                rule: self.rule.id.to_string(),
                by: by.to_string(),
            });
        }
        self.approved_by = Some(by.to_string());
        self.go(RuleState::Approved, by, why, at);
        Ok(())
    }

    pub fn arm(&mut self, by: &str, at: Micros) -> Result<(), LifecycleError> {
        self.check("arming", &[RuleState::Approved], "approved")?;
        self.go(RuleState::Armed, by, "armed", at);
        Ok(())
    }

    /// The rule starts: `plan` (from [`plan`]) becomes its grants.
    pub fn activate(
        &mut self,
        plan: &Plan,
        caused_by: EventId,
        by: &str,
        why: &str,
        at: Micros,
    ) -> Result<(), LifecycleError> {
        self.check("a trigger", &[RuleState::Armed], "armed")?;
        self.activation = Some(Activation {
            shock_id: plan.shock_id.clone(),
            caused_by,
            starts_at: plan.starts_at,
            ends_at: plan.ends_at,
            grants: plan.grants.clone(),
            started_sent: false,
            ended: None,
            ended_sent: false,
        });
        self.go(RuleState::Active, by, why, at);
        Ok(())
    }

    /// Ends an active rule (its end date passed, or its shock ended).
    pub fn expire(&mut self, by: &str, why: &str, at: Micros) -> Result<(), LifecycleError> {
        self.check("expiry", &[RuleState::Active], "active")?;
        if let Some(a) = &mut self.activation {
            a.ended = Some((at, why.to_string()));
        }
        self.go(RuleState::Expired, by, why, at);
        Ok(())
    }

    /// Stops the rule at once, whatever its state before it ended.
    pub fn revoke(&mut self, by: &str, why: &str, at: Micros) -> Result<(), LifecycleError> {
        if why.trim().is_empty() {
            return Err(LifecycleError::NoReason("a revocation"));
        }
        self.check(
            "revocation",
            &[
                RuleState::Draft,
                RuleState::Previewed,
                RuleState::Approved,
                RuleState::Armed,
                RuleState::Active,
            ],
            "not yet expired or revoked",
        )?;
        if let Some(a) = &mut self.activation {
            a.ended = Some((at, format!("revoked: {why}")));
        }
        self.go(RuleState::Revoked, by, why, at);
        Ok(())
    }

    /// Active and past its end at `now`.
    pub fn due(&self, now: Micros) -> bool {
        self.state == RuleState::Active
            && self.activation.as_ref().is_some_and(|a| now >= a.ends_at)
    }
}

/// What marks a notification as a scale-up's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleUpMark {
    pub rule_id: CompactString,
    pub shock_id: ShockId,
    pub ends_at: Micros,
}

/// The id of the notification of `phase` (`start`, `end`) of `rule` for `shock` about one
/// household.
pub fn notice_id(rule: &str, shock: &ShockId, household: &HouseholdId, phase: &str) -> EventId {
    derived_id(
        &uuid::Uuid::nil(),
        &format!("scale-up:{rule}:{shock}:{household}:{phase}"),
    )
}

/// The notifications of a rule's start: `entered` for a temporary enrolment, `changed` with
/// the topped-up benefit for a top-up.
pub fn start_changes(rule: &ScaleUpRule, a: &Activation) -> Vec<EligibilityChange> {
    a.grants
        .iter()
        .map(|g| {
            let (kind, benefit, reason) = match g.kind {
                GrantKind::TopUp => (
                    ChangeKind::Changed,
                    g.base_benefit + g.amount,
                    format!("scale-up top-up +{} per month", g.amount),
                ),
                GrantKind::Enrolment => (
                    ChangeKind::Entered,
                    g.amount,
                    "scale-up temporary enrolment".to_string(),
                ),
            };
            change(
                rule,
                a,
                g,
                "start",
                kind,
                benefit,
                reason,
                a.caused_by,
                a.starts_at,
            )
        })
        .collect()
}

/// The notifications of a rule's end: `exited` for a temporary enrolment, `changed` back to
/// the benefit before the top-up.
pub fn end_changes(rule: &ScaleUpRule, a: &Activation) -> Vec<EligibilityChange> {
    let (at, why) = a.ended.clone().unwrap_or((a.ends_at, "expired".into()));
    let caused_by = derived_id(&a.caused_by, &format!("scale-up-end:{}", rule.id));
    a.grants
        .iter()
        .map(|g| {
            let (kind, benefit, reason) = match g.kind {
                GrantKind::TopUp => (
                    ChangeKind::Changed,
                    g.base_benefit,
                    format!("scale-up top-up removed ({why})"),
                ),
                GrantKind::Enrolment => (
                    ChangeKind::Exited,
                    0.0,
                    format!("scale-up temporary enrolment ended ({why})"),
                ),
            };
            change(rule, a, g, "end", kind, benefit, reason, caused_by, at)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn change(
    rule: &ScaleUpRule,
    a: &Activation,
    g: &Grant,
    phase: &str,
    kind: ChangeKind,
    benefit: f64,
    reason: String,
    caused_by: EventId,
    at: Micros,
) -> EligibilityChange {
    EligibilityChange {
        change_id: notice_id(&rule.id, &a.shock_id, &g.household_id, phase),
        program_id: rule.program.clone(),
        household_id: g.household_id.clone(),
        kind,
        reasons: vec![
            reason,
            format!(
                "rule {} for shock {} until {}",
                rule.id, a.shock_id, a.ends_at
            ),
        ],
        benefit,
        rule_version: g.rule_version,
        household_version: g.household_version,
        caused_by,
        occurred_at: at,
        scale_up: Some(ScaleUpMark {
            rule_id: rule.id.clone(),
            shock_id: a.shock_id.clone(),
            ends_at: a.ends_at,
        }),
    }
}

#[cfg(test)]
mod tests;
