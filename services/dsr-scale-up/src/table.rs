//! The candidate table: every household as each program's plan sees it, in memory, by
//! column ([`Candidates`], one per program, rows shared by household).
//!
//! A preview over the whole country must not read and decrypt every household from the
//! serving store (about 40 s for 10M); the table is loaded once at start with one scan and then
//! kept current by the serving projector, which hands it every household it applies. A newer
//! household version always wins, so the scan and the projector may run side by side.

use dsr_core::scale_up::{Candidate, Candidates};
use dsr_core::{Household, HouseholdId};
use std::collections::{BTreeMap, HashMap};

pub struct CandidateTable {
    rows: HashMap<HouseholdId, usize>,
    programs: BTreeMap<String, Candidates>,
}

impl CandidateTable {
    pub fn new(programs: &[String]) -> CandidateTable {
        CandidateTable {
            rows: HashMap::new(),
            programs: programs
                .iter()
                .map(|p| (p.clone(), Candidates::default()))
                .collect(),
        }
    }

    /// Takes a household in, unless the table holds a newer version of it.
    pub fn apply(&mut self, h: &Household) {
        let next = self.rows.len();
        let row = *self.rows.entry(h.household_id.clone()).or_insert(next);
        for (program, candidates) in &mut self.programs {
            if candidates.version(row).is_some_and(|v| v > h.version) {
                return;
            }
            let candidate = Candidate::of(h, program);
            let present = candidate.is_some();
            let c = candidate.unwrap_or_else(|| Candidate {
                household_id: h.household_id.clone(),
                area: h.area.clone(),
                need_score: 0.0,
                household_version: h.version,
                enrolled: false,
                benefit: 0.0,
                rule_version: 0,
            });
            candidates.set(row, c, present);
        }
    }

    /// The candidates of `program` (`None` for a program the table does not know).
    pub fn candidates(&self, program: &str) -> Option<&Candidates> {
        self.programs.get(program)
    }

    /// Households in the table.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsr_core::scale_up::*;

    #[test]
    fn the_table_plans_like_a_fresh_list_and_newer_versions_win() {
        let population = dsr_synth::fixtures::small_population(11, 80);
        let households: Vec<Household> = population
            .households
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut h = dsr_core::apply(None, e).unwrap().household;
                h.need_score = Some(dsr_core::score::ScoreSummary {
                    score: (i * 37 % 100) as f64,
                    model_version: "test".into(),
                });
                h
            })
            .collect();
        let mut table = CandidateTable::new(&["food-aid".to_string()]);
        for h in &households {
            table.apply(h);
        }
        // An older version arriving late changes nothing; a newer one does.
        let mut newer = households[0].clone();
        newer.version += 5;
        newer.dissolved = true;
        table.apply(&newer);
        table.apply(&households[0]);
        assert_eq!(table.len(), households.len());

        let fresh: Candidates = households
            .iter()
            .skip(1)
            .filter_map(|h| Candidate::of(h, "food-aid"))
            .collect();
        let rule: ScaleUpRule = serde_json::from_value(serde_json::json!({
            "id": "r", "name": "r", "program": "food-aid",
            "trigger": {"kind": "manual", "areas": ["R01"]},
            "mode": {"kind": "horizontal", "benefit": 10.0,
                     "selection": {"kind": "min_need_score", "threshold": 0.0}},
            "duration": {"days": 30}
        }))
        .unwrap();
        let shock = Shock::manual(&rule, "s".into(), dsr_core::Micros(0));
        let from_table = plan(&rule, &shock, table.candidates("food-aid").unwrap(), &[]);
        let from_list = plan(&rule, &shock, &fresh, &[]);
        assert!(from_table.affected > 0);
        assert_eq!(from_table.affected, from_list.affected);
        assert_eq!(from_table.grants, from_list.grants);
        assert!(!from_table
            .grants
            .iter()
            .any(|g| g.household_id == households[0].household_id));
    }
}
