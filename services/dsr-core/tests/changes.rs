//! Every eligibility change `process` emits is the one `Program::decide` gives from the
//! status the household had before the event and the household after it (kind, benefit,
//! reasons), and the status `process` stores is `decide`'s. `process` takes a faster path —
//! it refreshes the stored inputs in place and builds the reasons from them — so this holds it
//! to the plain definition, over a synthetic population (the shared generator: realistic
//! households, so programs are entered, changed and exited).

use dsr_core::eligibility::{input_for, ChangeKind, Program};
use dsr_core::facts::Facts;
use dsr_core::ids::HouseholdMap;
use dsr_core::reducer::target_household;
use dsr_core::{process, Context, Household, PmtModel};
use proptest::prelude::*;

fn programs() -> Vec<Program> {
    [
        include_str!("../../../programs/child-grant.yaml"),
        include_str!("../../../programs/old-age-pension.yaml"),
        include_str!("../../../programs/food-aid.yaml"),
    ]
    .iter()
    .map(|t| Program::from_yaml(t).expect("shipped programs load"))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn every_change_is_what_decide_says(seed in 0u64..10_000) {
        let population = dsr_synth::fixtures::small_population(seed, 300);
        let model = PmtModel::default_model();
        let programs = programs();
        let ctx = Context { model: &model, programs: &programs };
        let mut states: HouseholdMap<Option<Household>> = HouseholdMap::default();
        let mut kinds = std::collections::BTreeSet::new();
        for e in population.households.iter().chain(&population.events) {
            let Some(hid) = target_household(e).cloned() else { continue };
            let slot = states.entry(hid).or_default();
            let before = slot.clone();
            let Ok(out) = process(slot, e, &ctx) else { continue };
            let h = slot.as_ref().expect("a processed event leaves a record");
            let facts = Facts::of(h);
            for p in &programs {
                let previous = before
                    .as_ref()
                    .and_then(|b| b.programs.iter().find(|s| s.program_id == p.id));
                let d = p.decide(previous, &input_for(h, &facts)).expect("rules evaluate");
                match out.changes.iter().find(|c| c.program_id == p.id) {
                    None => prop_assert!(
                        out.duplicate || d.kind == ChangeKind::Unchanged,
                        "{}: decide says {:?}, process emitted nothing", p.id, d.kind
                    ),
                    Some(c) => {
                        kinds.insert(format!("{:?}", c.kind));
                        prop_assert_eq!(c.kind, d.kind);
                        prop_assert_eq!(c.benefit, d.status.benefit);
                        prop_assert_eq!(&c.reasons, &d.reasons);
                    }
                }
                if !out.duplicate {
                    let stored = h.programs.iter().find(|s| s.program_id == p.id);
                    prop_assert_eq!(stored, Some(&d.status));
                }
            }
        }
        // The population exercises every kind of change (a test that saw none would prove
        // nothing).
        prop_assert!(kinds.contains("Entered"), "{kinds:?}");
        prop_assert!(kinds.len() >= 2, "{kinds:?}");
    }
}
