//! Rule versions: a program's rule or benefit formula changes; the new version is previewed over
//! the registry, then activated, and every household is decided again under it.
//!
//! Preview and activation call the same function ([`reevaluate`]) on the same records, so the
//! counts a preview reports are the changes activation produces (the preview runs on a copy).

use crate::eligibility::{input_for, ChangeKind, EvalError, Program, ProgramError, ProgramFile};
use crate::facts::Facts;
use crate::household::{Household, RECENT_EVENTS};
use crate::ids::*;
use crate::process::{decide_program, Cause, ChangeIdFrom, EligibilityChange};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A new version of a program taking effect at a point in every input partition.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleActivation {
    /// Deterministic (from the program and version): the changes it causes derive their ids
    /// from it, so an activation processed again yields the same change ids.
    pub id: EventId,
    pub program: Program,
    /// When it was activated: the `occurred_at` of the changes it causes.
    pub at: Micros,
}

/// An activated version as it is kept and sent: the program file itself, so a processor
/// that meets the activation needs nothing else to apply it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActivationRecord {
    pub activation_id: EventId,
    pub activated_at: Micros,
    /// The client that activated it.
    pub activated_by: String,
    pub program: ProgramFile,
}

impl ActivationRecord {
    /// The activation of `program` (its `rule_version` is the version activated).
    pub fn new(program: ProgramFile, activated_by: &str, activated_at: Micros) -> ActivationRecord {
        ActivationRecord {
            activation_id: activation_id(&program.id, program.rule_version),
            activated_at,
            activated_by: activated_by.to_owned(),
            program,
        }
    }

    /// `program_id@rule_version`: its key on `dsr.program-rules`.
    pub fn key(&self) -> String {
        version_key(&self.program.id, self.program.rule_version)
    }

    /// The activation, with the program compiled (a rule that does not compile is an error).
    pub fn compile(&self) -> Result<RuleActivation, ProgramError> {
        Ok(RuleActivation {
            id: self.activation_id,
            program: Program::from_file(self.program.clone())?,
            at: self.activated_at,
        })
    }
}

/// `program@version`.
pub fn version_key(program: &str, version: u32) -> String {
    format!("{program}@{version}")
}

/// The id of the activation of `version` of `program`.
pub fn activation_id(program: &str, version: u32) -> EventId {
    derived_id(
        &uuid::Uuid::nil(),
        &format!("rule-activation:{program}:{version}"),
    )
}

/// The id of the change an activation causes for one household.
pub fn rule_change_id(activation: &EventId, household: &HouseholdId) -> EventId {
    derived_id(activation, &format!("household:{household}"))
}

/// Decides `h` again under the activated program and records the decision (a new version of
/// the record, the activation among its recent events). Returns the eligibility change, if
/// the household's eligibility or benefit changed. On error the record is as it was.
pub fn reevaluate(
    h: &mut Household,
    activation: &RuleActivation,
) -> Result<Option<EligibilityChange>, EvalError> {
    let facts = Facts::of(h);
    let mut statuses = std::mem::take(&mut h.programs);
    let version = h.version + 1;
    let result = {
        let input = input_for(h, &facts);
        decide_program(
            &mut statuses,
            &activation.program,
            &input,
            (&h.household_id, version),
            &Cause {
                change_id: ChangeIdFrom::Fixed(rule_change_id(&activation.id, &h.household_id)),
                caused_by: activation.id,
                occurred_at: activation.at,
            },
        )
    };
    h.programs = statuses;
    if result.is_ok() {
        h.version = version;
        if h.recent_events.len() >= RECENT_EVENTS {
            h.recent_events.remove(0);
        }
        h.recent_events.push(activation.id);
    }
    result
}

/// What activating a rule version would do to the registry as it stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RulePreview {
    pub program_id: CompactString,
    pub rule_version: u32,
    /// Households decided.
    pub households: u64,
    pub entered: u64,
    pub changed: u64,
    pub exited: u64,
    pub eligible_before: u64,
    pub eligible_after: u64,
    /// Sum of the eligible households' benefits, before and after.
    pub benefit_before: f64,
    pub benefit_after: f64,
    /// Households the new rule could not be evaluated for (they keep their status).
    pub rule_errors: u64,
    /// The same counts per area, at the level the preview was asked for.
    pub by_area: BTreeMap<String, AreaPreview>,
}

/// A preview's counts in one area.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AreaPreview {
    pub households: u64,
    pub entered: u64,
    pub changed: u64,
    pub exited: u64,
    pub eligible_after: u64,
}

impl RulePreview {
    pub fn new(activation: &RuleActivation) -> RulePreview {
        RulePreview {
            program_id: activation.program.id.clone(),
            rule_version: activation.program.rule_version,
            ..RulePreview::default()
        }
    }

    /// Counts what activation would do to `h` (decided on a copy), under the area `area_level`
    /// levels deep (1: the outermost, e.g. the region).
    pub fn add(&mut self, h: &Household, activation: &RuleActivation, area_level: usize) {
        let program = &activation.program.id;
        let before = h.programs.iter().find(|s| s.program_id == *program);
        let mut after = h.clone();
        let outcome = reevaluate(&mut after, activation);
        let area = h
            .area
            .path()
            .take(area_level.max(1))
            .last()
            .unwrap_or("")
            .to_owned();
        let a = self.by_area.entry(area).or_default();
        self.households += 1;
        a.households += 1;
        if before.is_some_and(|s| s.eligible) {
            self.eligible_before += 1;
            self.benefit_before += before.map_or(0.0, |s| s.benefit);
        }
        match outcome {
            Err(_) => self.rule_errors += 1,
            Ok(change) => {
                match change.map(|c| c.kind) {
                    Some(ChangeKind::Entered) => {
                        self.entered += 1;
                        a.entered += 1;
                    }
                    Some(ChangeKind::Changed) => {
                        self.changed += 1;
                        a.changed += 1;
                    }
                    Some(ChangeKind::Exited) => {
                        self.exited += 1;
                        a.exited += 1;
                    }
                    Some(ChangeKind::Unchanged) | None => {}
                }
                if let Some(s) = after
                    .programs
                    .iter()
                    .find(|s| s.program_id == *program && s.eligible)
                {
                    self.eligible_after += 1;
                    a.eligible_after += 1;
                    self.benefit_after += s.benefit;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::ProgramFile;
    use crate::strategies::*;
    use crate::{process, Context, PmtModel};
    use proptest::prelude::*;

    fn child_grant(rule: &str, version: u32) -> Program {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../programs/child-grant.yaml"),
        )
        .unwrap();
        let mut file: ProgramFile = serde_yaml_ng::from_str(&text).unwrap();
        file.rule = rule.into();
        file.rule_version = version;
        Program::from_file(file).unwrap()
    }

    fn activation(rule: &str) -> RuleActivation {
        let program = child_grant(rule, 2);
        RuleActivation {
            id: activation_id(&program.id, 2),
            program,
            at: Micros(1_800_000_000_000_000),
        }
    }

    proptest! {
        /// Whatever the households, the preview's counts are the changes activation makes, and
        /// the changes are what deciding the new rule on the record before and after says.
        #[test]
        fn preview_counts_what_activation_does(events in household_stream(1, 8)) {
            let model = PmtModel::default_model();
            let old = child_grant("household.need_score >= 60.0 && household.members.exists(m, m.age < 5)", 1);
            let programs = vec![old];
            let ctx = Context { model: &model, programs: &programs };
            let mut state = None;
            for e in &events {
                let _ = process(&mut state, e, &ctx);
            }
            let Some(h) = state else { return Ok(()) };
            let a = activation("household.need_score >= 40.0 && household.members.exists(m, m.age < 5)");
            let mut preview = RulePreview::new(&a);
            preview.add(&h, &a, 2);
            let mut after = h.clone();
            let change = reevaluate(&mut after, &a).unwrap();
            let kind = change.as_ref().map(|c| c.kind);
            prop_assert_eq!(preview.entered, u64::from(kind == Some(ChangeKind::Entered)));
            prop_assert_eq!(preview.exited, u64::from(kind == Some(ChangeKind::Exited)));
            prop_assert_eq!(preview.changed, u64::from(kind == Some(ChangeKind::Changed)));
            prop_assert_eq!(after.version, h.version + 1);
            let status = after.programs.iter().find(|s| s.program_id == "child-grant").unwrap();
            prop_assert_eq!(status.rule_version, 2);
            // A lower threshold never takes anyone out.
            prop_assert_ne!(kind, Some(ChangeKind::Exited));
            if let Some(c) = change {
                prop_assert_eq!(c.change_id, rule_change_id(&a.id, &h.household_id));
                prop_assert_eq!(c.caused_by, a.id);
                prop_assert_eq!(c.household_version, after.version);
            }
            // The same activation again changes nothing but the version.
            let mut again = after.clone();
            prop_assert_eq!(reevaluate(&mut again, &a).unwrap(), None);
        }
    }

    #[test]
    fn activation_ids_differ_by_program_and_version() {
        assert_ne!(activation_id("a", 1), activation_id("a", 2));
        assert_ne!(activation_id("a", 1), activation_id("b", 1));
        assert_eq!(activation_id("a", 1), activation_id("a", 1));
    }
}
