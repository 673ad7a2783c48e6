//! One event through the whole domain: apply it, re-score the household, decide every
//! program. This is the unit of work of a stream processor, and what the benchmark measures.

use crate::eligibility::{change_reasons, input_for, ChangeKind, EvalError, Program};
use crate::event::Event;
use crate::facts::Facts;
use crate::household::{Household, ProgramStatus};
use crate::ids::*;
use crate::reducer::{apply_to, new_household_for, ApplyError, Effect};
use crate::score::PmtModel;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// What a processor holds fixed while it processes events.
pub struct Context<'a> {
    pub model: &'a PmtModel,
    pub programs: &'a [Program],
}

/// A household's eligibility for a program changed. Its id is derived from the event that
/// caused it and the program, so the same event processed again yields the same id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EligibilityChange {
    pub change_id: EventId,
    pub program_id: CompactString,
    pub household_id: HouseholdId,
    pub kind: ChangeKind,
    pub reasons: Vec<String>,
    pub benefit: f64,
    pub rule_version: u32,
    pub household_version: u64,
    pub caused_by: EventId,
    pub occurred_at: Micros,
    /// Set on a shock-responsive scale-up's notification: which rule, which shock, until when.
    #[serde(default)]
    pub scale_up: Option<crate::scale_up::ScaleUpMark>,
}

/// A life event about a household that was a program's beneficiary when it happened (a death,
/// a birth, a move, a disability assessment: what the program's `notify_life_events` lists).
/// Its id is derived from the event and the program, like a change's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BeneficiaryEvent {
    pub notice_id: EventId,
    pub program_id: CompactString,
    pub household_id: HouseholdId,
    /// The life event's type (`PersonDied`, …).
    pub event_type: CompactString,
    /// The person it is about, when the event names one.
    pub person_id: Option<PersonId>,
    pub occurred_at: Micros,
    pub caused_by: EventId,
    /// The household record's version after the event.
    pub household_version: u64,
}

/// The id of the beneficiary notice `event` caused for `program_id`.
pub fn notice_id(event: &EventId, program_id: &str) -> EventId {
    derived_id(event, &format!("life-event:{program_id}"))
}

/// The id of the eligibility change `event` caused for `program_id`.
pub fn change_id(event: &EventId, program_id: &str) -> EventId {
    derived_id(event, &format!("eligibility:{program_id}"))
}

/// What processing one event did. The household itself is updated in place.
#[derive(Clone, Debug, PartialEq)]
pub struct Processed {
    pub effects: Vec<Effect>,
    pub changes: Vec<EligibilityChange>,
    /// Life events about households that were a program's beneficiaries (one per program).
    pub notices: Vec<BeneficiaryEvent>,
    /// Programs whose rule could not be evaluated for this household (status kept as it was).
    pub rule_errors: Vec<(CompactString, EvalError)>,
    pub duplicate: bool,
    pub late: bool,
}

/// Applies `event` to `state` (`None`: not registered yet), re-scores, and decides every
/// program, updating the household in place. On error `state` is exactly as it was.
pub fn process(
    state: &mut Option<Household>,
    event: &Event,
    ctx: &Context,
) -> Result<Processed, ApplyError> {
    let created = state.is_none();
    let h = match state {
        Some(h) => h,
        None => state.insert(new_household_for(event)?),
    };
    let applied = match apply_to(h, event) {
        Ok(a) => a,
        Err(e) => {
            if created {
                *state = None;
            }
            return Err(e);
        }
    };
    let mut changes = Vec::new();
    let mut notices = Vec::new();
    let mut rule_errors = Vec::new();
    if !applied.duplicate {
        // Facts do not depend on the score, so one derivation serves both.
        let facts = Facts::of(h);
        h.need_score = Some(ctx.model.score_with(h, &facts));
        // Rules never read program statuses: take them out so the household can be read
        // while they are updated in place (no per-event allocation for unchanged inputs).
        let mut statuses = std::mem::take(&mut h.programs);
        let input = input_for(h, &facts);
        for p in ctx.programs {
            let event_type = event.payload.event_type();
            let was_beneficiary = statuses
                .iter()
                .any(|s| s.eligible && same_text(&s.program_id, &p.id));
            if was_beneficiary && p.life_events.iter().any(|t| same_text(t, event_type)) {
                notices.push(BeneficiaryEvent {
                    notice_id: notice_id(&event.envelope.event_id, &p.id),
                    program_id: p.id.clone(),
                    household_id: h.household_id.clone(),
                    event_type: event_type.into(),
                    person_id: event.subject_person().cloned(),
                    occurred_at: event.envelope.occurred_at,
                    caused_by: event.envelope.event_id,
                    household_version: h.version,
                });
            }
            let cause = Cause {
                change_id: ChangeIdFrom::EventAndProgram,
                caused_by: event.envelope.event_id,
                occurred_at: event.envelope.occurred_at,
            };
            match decide_program(
                &mut statuses,
                p,
                &input,
                (&h.household_id, h.version),
                &cause,
            ) {
                Ok(Some(change)) => changes.push(change),
                Ok(None) => {}
                Err(e) => rule_errors.push((p.id.clone(), e)),
            }
        }
        h.programs = statuses;
    }
    Ok(Processed {
        effects: applied.effects,
        changes,
        notices,
        rule_errors,
        duplicate: applied.duplicate,
        late: applied.late,
    })
}

/// What a decision is attributed to: the change id it gets, the event (or rule activation)
/// that caused it, and when.
pub(crate) struct Cause {
    pub change_id: ChangeIdFrom,
    pub caused_by: EventId,
    pub occurred_at: Micros,
}

/// How a change's id is made. Derived only when a change is actually emitted: most events
/// change nothing for most programs, and the derivation (SHA-1) would otherwise be a tenth of
/// the per-event cost.
pub(crate) enum ChangeIdFrom {
    /// [`change_id`] of the causing event and the program.
    EventAndProgram,
    /// Given by the caller (a rule activation's own derivation).
    Fixed(EventId),
}

/// Decides `program` for a household (`input`, whose statuses are `statuses`, taken out of the
/// record) and updates its status in place: the one decision both event processing and a rule
/// activation make. Returns the change, if any; on error the status is left as it was.
///
/// The status keeps the rule's inputs as they are now, a function of the household alone:
/// keeping them only when the status changes would be cheaper (a sixth of the per-event cost)
/// but would make the stored record depend on the order in which a household's own events
/// and the joins from other households arrived, which legitimately varies.
pub(crate) fn decide_program(
    statuses: &mut Vec<ProgramStatus>,
    p: &Program,
    input: &crate::eligibility::Input,
    (household_id, household_version): (&HouseholdId, u64),
    cause: &Cause,
) -> Result<Option<EligibilityChange>, EvalError> {
    let (eligible, benefit) = p.verdict(input)?;
    let index = statuses
        .iter()
        .position(|s| same_text(&s.program_id, &p.id));
    let kind = ChangeKind::between(
        index.map(|i| (statuses[i].eligible, statuses[i].benefit)),
        (eligible, benefit),
    );
    // On a change the reasons compare the status as it was with the inputs as they are now,
    // which the refresh below computes anyway (computing them a second time for the reasons,
    // members' digest and all, was a tenth of the cost of a change).
    let before = match (kind, index) {
        (ChangeKind::Unchanged, _) | (_, None) => None,
        (_, Some(i)) => Some(statuses[i].clone()),
    };
    // Update in place: an unchanged household allocates nothing here.
    let index = match index {
        Some(i) => {
            let s = &mut statuses[i];
            s.eligible = eligible;
            s.benefit = benefit;
            s.rule_version = p.rule_version;
            p.refresh_inputs(input, &mut s.inputs);
            i
        }
        None => {
            let at = statuses
                .binary_search_by(|s| s.program_id.cmp(&p.id))
                .unwrap_or_else(|i| i);
            let mut inputs = Default::default();
            p.refresh_inputs(input, &mut inputs);
            statuses.insert(
                at,
                ProgramStatus {
                    program_id: p.id.clone(),
                    rule_version: p.rule_version,
                    eligible,
                    benefit,
                    inputs,
                },
            );
            at
        }
    };
    Ok((kind != ChangeKind::Unchanged).then(|| EligibilityChange {
        change_id: match cause.change_id {
            ChangeIdFrom::EventAndProgram => change_id(&cause.caused_by, &p.id),
            ChangeIdFrom::Fixed(id) => id,
        },
        program_id: p.id.clone(),
        household_id: household_id.clone(),
        kind,
        reasons: change_reasons(before.as_ref(), &statuses[index].inputs, benefit, p),
        benefit,
        rule_version: p.rule_version,
        household_version,
        caused_by: cause.caused_by,
        occurred_at: cause.occurred_at,
        scale_up: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::Program;
    use crate::event::{Payload, PersonDied};
    use crate::strategies::*;

    fn programs() -> Vec<Program> {
        [
            include_str!("../../../programs/child-grant.yaml"),
            include_str!("../../../programs/food-aid.yaml"),
        ]
        .iter()
        .map(|t| Program::from_yaml(t).unwrap())
        .collect()
    }

    #[test]
    fn an_event_flows_through_reducer_score_and_programs() {
        let model = PmtModel::default_model();
        let programs = programs();
        let ctx = Context {
            model: &model,
            programs: &programs,
        };
        let mut state = None;
        let reg = fixed_registration(1);
        let out = process(&mut state, &reg, &ctx).unwrap();
        let h = state.as_ref().unwrap();
        assert!(h.need_score.is_some());
        assert_eq!(h.programs.len(), 2, "every program recorded a status");
        let entered: Vec<_> = out
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Entered)
            .collect();
        assert!(
            !entered.is_empty(),
            "a needy household with a child under 5 enters the child grant"
        );
        for c in &out.changes {
            assert_eq!(
                c.change_id,
                change_id(&reg.envelope.event_id, &c.program_id)
            );
        }
        // The same event again: nothing changes, no change is emitted.
        let before = state.clone();
        let again = process(&mut state, &reg, &ctx).unwrap();
        assert!(again.duplicate && again.changes.is_empty());
        assert_eq!(state, before);
        // The child under 5 dies: the household exits the child grant.
        let died = event(
            1,
            1,
            3,
            Payload::PersonDied(PersonDied {
                person_id: person(1, 2),
                date_of_death: crate::ids::Date(0),
            }),
        );
        let out = process(&mut state, &died, &ctx).unwrap();
        assert!(out
            .changes
            .iter()
            .any(|c| c.program_id == "child-grant" && c.kind == ChangeKind::Exited));
        // The child grant was told of the death of its beneficiary's child, with its own id.
        let notice = out
            .notices
            .iter()
            .find(|n| n.program_id == "child-grant")
            .expect("a notice to the child grant");
        assert_eq!(notice.event_type, "PersonDied");
        assert_eq!(notice.person_id, Some(person(1, 2)));
        assert_eq!(
            notice.notice_id,
            notice_id(&died.envelope.event_id, "child-grant")
        );
    }

    #[test]
    fn a_failing_event_leaves_the_state_as_it_was() {
        let model = PmtModel::default_model();
        let ctx = Context {
            model: &model,
            programs: &[],
        };
        let mut state = None;
        let died = event(
            1,
            1,
            3,
            Payload::PersonDied(PersonDied {
                person_id: person(1, 2),
                date_of_death: crate::ids::Date(0),
            }),
        );
        assert!(process(&mut state, &died, &ctx).is_err());
        assert!(state.is_none(), "an unknown household stays unknown");
    }
}
