//! The router: the first stage after a source topic. It decodes and validates each record,
//! finds the household the event belongs to, and says where the record goes next. Pure: the
//! decoder and the person → household index are passed in.

use dsr_core::reducer::target_household;
use dsr_core::{Event, HouseholdId, Micros, PersonId};

/// Looks up which household a person belongs to now (fed from the household changelog).
pub trait PersonIndex {
    fn household_of(&self, person: &PersonId) -> Option<HouseholdId>;
}

/// Where a source record goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// To `dsr.household-events`, keyed by this household.
    Household {
        household: HouseholdId,
        event: Box<Event>,
    },
    /// An area-wide event (shock declared or ended): to the scale-up processor.
    Area(Box<Event>),
    /// The person is not known yet: keep the event until the index learns them.
    Wait { person: PersonId, event: Box<Event> },
    /// Unusable: the original bytes go to the dead-letter topic with this reason.
    DeadLetter { reason: String },
}

/// Routes one source record. `decode` turns the record's bytes into an event or says why not;
/// `now` is the receiving clock (events more than a few minutes in its future are refused).
pub fn route(
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<Event, String>,
    now: Micros,
    index: &dyn PersonIndex,
) -> Route {
    let event = match decode(bytes) {
        Ok(e) => e,
        Err(reason) => return Route::DeadLetter { reason },
    };
    route_event(event, now, index)
}

/// Routes an already decoded event (the HTTP API decodes JSON itself).
pub fn route_event(mut event: Event, now: Micros, index: &dyn PersonIndex) -> Route {
    if let Err(e) = event.validate(now) {
        return Route::DeadLetter {
            reason: format!(
                "{} event {}: {e}",
                event.event_type(),
                event.envelope.event_id
            ),
        };
    }
    if event.payload.is_area_event() {
        return Route::Area(Box::new(event));
    }
    if let Some(h) = target_household(&event) {
        return Route::Household {
            household: h.clone(),
            event: Box::new(event),
        };
    }
    let Some(person) = event.subject_person().cloned() else {
        return Route::DeadLetter {
            reason: format!(
                "{} event {} names neither a household nor a person",
                event.event_type(),
                event.envelope.event_id
            ),
        };
    };
    match index.household_of(&person) {
        Some(household) => {
            event.envelope.household_id = Some(household.clone());
            Route::Household {
                household,
                event: Box::new(event),
            }
        }
        None => Route::Wait {
            person,
            event: Box::new(event),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsr_synth::fixtures;
    use std::collections::HashMap;

    struct Index(HashMap<PersonId, HouseholdId>);
    impl PersonIndex for Index {
        fn household_of(&self, person: &PersonId) -> Option<HouseholdId> {
            self.0.get(person).cloned()
        }
    }

    #[test]
    fn person_events_find_their_household_or_wait() {
        let died = fixtures::died("H1", "P1", fixtures::at(2026, 2, 1));
        let mut no_household = died.clone();
        no_household.envelope.household_id = None;
        let index = Index(HashMap::from([(
            PersonId::new("P1"),
            HouseholdId::new("H1"),
        )]));
        match route_event(no_household.clone(), fixtures::now(), &index) {
            Route::Household { household, event } => {
                assert_eq!(household, HouseholdId::new("H1"));
                assert_eq!(event.envelope.household_id, Some(HouseholdId::new("H1")));
            }
            other => panic!("{other:?}"),
        }
        let empty = Index(HashMap::new());
        assert!(matches!(
            route_event(no_household, fixtures::now(), &empty),
            Route::Wait { .. }
        ));
    }

    #[test]
    fn bad_records_are_dead_lettered_with_the_reason() {
        let index = Index(HashMap::new());
        let r = route(
            b"\x00garbage",
            |_| Err("malformed Avro: unexpected end".into()),
            fixtures::now(),
            &index,
        );
        assert_eq!(
            r,
            Route::DeadLetter {
                reason: "malformed Avro: unexpected end".into()
            }
        );
        let mut future = fixtures::died("H1", "P1", fixtures::at(2026, 2, 1));
        future.envelope.occurred_at = Micros(fixtures::now().0 + 86_400_000_000);
        match route_event(future, fixtures::now(), &index) {
            Route::DeadLetter { reason } => assert!(reason.contains("in the future"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
