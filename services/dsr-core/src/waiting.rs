//! Events that wait for their household or person, and the order in which they are tried again.
//!
//! An event can reach a household before what it needs: a report about a person who is moving
//! in (the join comes from the household being left, on another partition, possibly much
//! later), or any event for a household founded by a move that has not arrived yet. Such events
//! wait, in arrival order, and are tried again after each change of their household.
//!
//! The rule this module exists for: **two events about one person apply in the order they
//! arrived**, even when the person arrives in between. When an earlier waiting event still
//! waits for person P, every later waiting event about P stays behind it in that pass — except
//! the event that brings P into the household (a join or a birth), which is what the earlier
//! one waits for. Without it, a pass could apply a newer income report and then, once the
//! person had joined, the older one on top of it. Every deployment and the reference the tests
//! compare with use this one function, so they cannot order waiting events differently.

use crate::event::{Event, Payload};
use crate::ids::PersonId;
use crate::reducer::ApplyError;

/// What trying one waiting event again did.
#[derive(Debug)]
pub enum Attempt {
    /// It applied (or was recognised as a duplicate): it no longer waits.
    Applied,
    /// It still waits for its household or person (the error says which).
    Waits(ApplyError),
    /// It cannot apply, ever (the caller dead-letters it): it no longer waits.
    Failed,
}

/// Whether an error means the event must wait (rather than fail).
pub fn waits(error: &ApplyError) -> bool {
    matches!(
        error,
        ApplyError::UnknownHousehold { .. } | ApplyError::UnknownPerson { .. }
    )
}

/// Tries `waiting` again, oldest first, pass after pass until a pass applies none; what still
/// waits stays in `waiting` in its order. Returns whether the list changed.
///
/// `attempt` applies one event to the household (and records whatever it produced).
pub fn retry_waiting(waiting: &mut Vec<Event>, mut attempt: impl FnMut(&Event) -> Attempt) -> bool {
    let mut changed = false;
    loop {
        let before = waiting.len();
        if before == 0 {
            return changed;
        }
        // People an earlier event of this pass still waits for.
        let mut awaited: Vec<PersonId> = Vec::new();
        let mut still = Vec::with_capacity(before);
        for event in std::mem::take(waiting) {
            if behind_an_earlier_event(&event, &awaited) {
                still.push(event);
                continue;
            }
            match attempt(&event) {
                Attempt::Applied | Attempt::Failed => {}
                Attempt::Waits(error) => {
                    if let ApplyError::UnknownPerson { person_id, .. } = error {
                        if !awaited.contains(&person_id) {
                            awaited.push(person_id);
                        }
                    }
                    still.push(event);
                }
            }
        }
        *waiting = still;
        if waiting.len() == before {
            return changed;
        }
        changed = true;
    }
}

/// Whether `event` is about a person an earlier waiting event still waits for (and is not the
/// event that brings that person in).
fn behind_an_earlier_event(event: &Event, awaited: &[PersonId]) -> bool {
    if awaited.is_empty() || brings_in_its_person(event) {
        return false;
    }
    event.subject_person().is_some_and(|p| awaited.contains(p))
}

fn brings_in_its_person(event: &Event) -> bool {
    matches!(
        event.payload,
        Payload::MemberJoined(_) | Payload::PersonBorn(_) | Payload::HouseholdRegistered(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{IncomePeriod, IncomeSource, Relationship, Sex};
    use crate::event::{IncomeReported, MemberJoined};
    use crate::household::Household;
    use crate::reducer::apply;
    use crate::strategies::*;

    fn income(n: u32, p: u32, amount: f64) -> Event {
        event(
            1,
            n,
            n as i64,
            Payload::IncomeReported(IncomeReported {
                person_id: person(1, p),
                amount,
                period: IncomePeriod::Monthly,
                source: IncomeSource::Agriculture,
            }),
        )
    }

    fn joins(n: u32, p: u32) -> Event {
        let mut e = event(
            1,
            n,
            n as i64,
            Payload::MemberJoined(MemberJoined {
                member: fixed_member(1, p, 30, Relationship::OtherRelative, Sex::Female),
                from_household_id: household_id(2),
                founds_new_household: false,
                area: area(1),
                caused_by: uuid::Uuid::from_u128(n as u128),
            }),
        );
        e.envelope.person_id = Some(person(1, p));
        e
    }

    fn attempt(h: &mut Household, e: &Event) -> Attempt {
        match apply(Some(h), e) {
            Ok(a) => {
                *h = a.household;
                Attempt::Applied
            }
            Err(e) if waits(&e) => Attempt::Waits(e),
            Err(_) => Attempt::Failed,
        }
    }

    fn agriculture(h: &Household, p: u32) -> f64 {
        let m = h.members.iter().find(|m| m.person_id == person(1, p));
        m.expect("a member").incomes.get(IncomeSource::Agriculture)
    }

    #[test]
    fn reports_about_one_person_keep_their_order_when_the_person_joins_in_between() {
        let mut h = apply(None, &fixed_registration(1)).unwrap().household;
        // The older report, the join, the newer report: the older one must not land last.
        let mut waiting = vec![income(10, 9, 100.0), joins(11, 9), income(12, 9, 250.0)];
        assert!(retry_waiting(&mut waiting, |e| attempt(&mut h, e)));
        assert!(waiting.is_empty(), "all applied: {waiting:?}");
        assert_eq!(agriculture(&h, 9), 250.0, "the newer report wins");
    }

    #[test]
    fn events_about_other_people_are_not_held_back() {
        let mut h = apply(None, &fixed_registration(1)).unwrap().household;
        let member = h.members[0].person_id.clone();
        let mut about_member = income(11, 0, 80.0);
        if let Payload::IncomeReported(p) = &mut about_member.payload {
            p.person_id = member.clone();
        }
        about_member.envelope.person_id = Some(member);
        let mut waiting = vec![income(10, 9, 100.0), about_member];
        assert!(retry_waiting(&mut waiting, |e| attempt(&mut h, e)));
        assert_eq!(waiting.len(), 1, "the report about person 9 still waits");
        assert_eq!(h.members[0].incomes.get(IncomeSource::Agriculture), 80.0);
        // A pass that applies nothing changes nothing.
        assert!(!retry_waiting(&mut waiting, |e| attempt(&mut h, e)));
        assert_eq!(waiting.len(), 1);
    }
}
