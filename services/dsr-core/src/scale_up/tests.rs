use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

const T0: Micros = Micros(1_780_000_000_000_000);

fn candidate(id: &str, area: &str, score: f64, enrolled: bool, benefit: f64) -> Candidate {
    Candidate {
        household_id: id.into(),
        area: area.into(),
        need_score: score,
        household_version: 3,
        enrolled,
        benefit: if enrolled { benefit } else { 0.0 },
        rule_version: 1,
    }
}

fn rule(mode: Mode) -> ScaleUpRule {
    ScaleUpRule {
        id: "drought-topup".into(),
        name: "Drought top-up".into(),
        program: "food-aid".into(),
        trigger: Trigger::Shock {
            hazards: vec![HazardType::Drought],
            areas: vec!["R01".into()],
            min_severity: None,
            indicator: Some(Threshold {
                name: "vci".into(),
                below: Some(10.0),
                above: None,
            }),
        },
        mode,
        duration: Duration {
            ends_at: None,
            days: Some(90),
        },
        caps: Caps::default(),
        priority: Priority::default(),
        stacks: false,
    }
}

fn vertical() -> Mode {
    Mode::Vertical {
        extra_amount: 50.0,
        multiplier: None,
    }
}

fn shock(areas: &[&str], vci: f64) -> Shock {
    Shock {
        shock_id: "DR-2026-01".into(),
        hazard: Some(HazardType::Drought),
        areas: areas.iter().map(|a| AreaCode::new(*a)).collect(),
        severity: Some(ShockSeverity::Severe),
        indicator: Some(("vci".into(), vci)),
        starts_at: T0,
        expected_end: None,
        caused_by: uuid::Uuid::from_u128(7),
    }
}

fn households() -> Vec<Candidate> {
    vec![
        candidate("H1", "R01.D01.V1", 80.0, true, 200.0),
        candidate("H2", "R01.D01.V1", 70.0, false, 0.0),
        candidate("H3", "R01.D01.V2", 62.0, false, 0.0),
        candidate("H4", "R01.D02.V1", 90.0, true, 100.0),
        candidate("H5", "R01.D02.V1", 40.0, false, 0.0),
        candidate("H6", "R02.D01.V1", 95.0, true, 300.0), // outside the shock
    ]
}

/// The granted households, sorted (grants come in priority order).
fn ids(plan: &Plan) -> Vec<&str> {
    let mut ids: Vec<&str> = plan
        .grants
        .iter()
        .map(|g| g.household_id.as_str())
        .collect();
    ids.sort_unstable();
    ids
}

fn grant<'a>(plan: &'a Plan, id: &str) -> &'a Grant {
    plan.grants
        .iter()
        .find(|g| g.household_id.as_str() == id)
        .unwrap_or_else(|| panic!("no grant for {id}"))
}

#[test]
fn a_shock_matches_on_hazard_area_and_indicator() {
    let r = rule(vertical());
    assert!(r.matches(&shock(&["R01.D01"], 8.0)));
    assert!(r.matches(&shock(&["R01"], 8.0)), "an enclosing area");
    assert!(!r.matches(&shock(&["R02"], 8.0)), "another region");
    assert!(!r.matches(&shock(&["R01.D01"], 12.0)), "VCI above 10");
    let mut flood = shock(&["R01.D01"], 8.0);
    flood.hazard = Some(HazardType::Flood);
    assert!(!r.matches(&flood));
    let mut other_indicator = shock(&["R01.D01"], 8.0);
    other_indicator.indicator = Some(("rainfall_anomaly_pct".into(), 8.0));
    assert!(!r.matches(&other_indicator));
    let manual = ScaleUpRule {
        trigger: Trigger::Manual {
            areas: vec!["R01".into()],
        },
        ..r
    };
    assert!(
        !manual.matches(&shock(&["R01"], 8.0)),
        "manual rules only by hand"
    );
}

#[test]
fn vertical_tops_up_beneficiaries_of_the_affected_areas_only() {
    let r = rule(Mode::Vertical {
        extra_amount: 50.0,
        multiplier: Some(1.5),
    });
    let p = plan(
        &r,
        &shock(&["R01.D01", "R01.D02"], 8.0),
        &households().into(),
        &[],
    );
    assert_eq!(ids(&p), ["H1", "H4"]);
    assert_eq!(p.affected, 5);
    assert_eq!(p.top_ups, 2);
    assert_eq!(p.enrolments, 0);
    // 50 + 200 × 0.5 = 150 and 50 + 100 × 0.5 = 100 a month, three months.
    assert_eq!(grant(&p, "H1").amount, 150.0);
    assert_eq!(grant(&p, "H4").amount, 100.0);
    assert_eq!(p.months, 3.0);
    assert_eq!(p.total_cost, 750.0);
    assert_eq!(p.per_area[&AreaCode::new("R01.D01")].cost, 450.0);
    assert_eq!(p.per_area[&AreaCode::new("R01.D02")].households, 2);
    assert_eq!(p.ends_at, Micros(T0.0 + 90 * DAY));
}

#[test]
fn horizontal_enrols_non_beneficiaries_above_the_relaxed_threshold() {
    let r = rule(Mode::Horizontal {
        benefit: 100.0,
        selection: Selection::MinNeedScore { threshold: 60.0 },
    });
    let p = plan(&r, &shock(&["R01"], 8.0), &households().into(), &[]);
    assert_eq!(ids(&p), ["H2", "H3"]);
    assert_eq!(p.enrolments, 2);
    assert_eq!(p.marginal.cut, Some(62.0));
    assert_eq!(
        p.marginal.just_in, 1,
        "H3 at 62 is within 5 points of the cut"
    );
    assert_eq!(p.marginal.just_out, 0, "H5 at 40 is far below");
}

#[test]
fn horizontal_top_percent_counts_beneficiaries_towards_each_areas_coverage() {
    // 50% of each district: D01 has H1 (enrolled), H2, H3 → the top 2 are H1 and H2, and
    // only H2 needs enrolling; D02 has H4 (enrolled), H5 → top 1 is H4, nobody new.
    let r = rule(Mode::Horizontal {
        benefit: 100.0,
        selection: Selection::TopPercent { percent: 50.0 },
    });
    let p = plan(
        &r,
        &shock(&["R01.D01", "R01.D02"], 8.0),
        &households().into(),
        &[],
    );
    assert_eq!(ids(&p), ["H2"]);
}

#[test]
fn a_binding_cap_keeps_the_households_that_come_first() {
    let mut r = rule(Mode::Horizontal {
        benefit: 100.0,
        selection: Selection::MinNeedScore { threshold: 0.0 },
    });
    r.caps.max_households = Some(2);
    let p = plan(&r, &shock(&["R01"], 8.0), &households().into(), &[]);
    assert_eq!(
        ids(&p),
        ["H2", "H3"],
        "the two neediest of H2 70, H3 62, H5 40"
    );
    assert_eq!(p.capped, 1);

    // Budget per area: 300 = one household for 3 months per district.
    r.caps = Caps {
        budget_per_area: Some(300.0),
        ..Caps::default()
    };
    let p = plan(
        &r,
        &shock(&["R01.D01", "R01.D02"], 8.0),
        &households().into(),
        &[],
    );
    assert_eq!(ids(&p), ["H2", "H5"]);
    assert_eq!(p.per_area[&AreaCode::new("R01.D01")].capped, 1);

    // District D02 first: H5 (40) beats H3 (62) for the one place the budget leaves.
    r.caps = Caps {
        budget_total: Some(300.0),
        ..Caps::default()
    };
    r.priority = Priority::AreasFirst {
        areas: vec!["R01.D02".into()],
    };
    let p = plan(&r, &shock(&["R01"], 8.0), &households().into(), &[]);
    assert_eq!(ids(&p), ["H5"]);
    assert_eq!(p.capped, 2);
}

#[test]
fn overlapping_rules_do_not_top_up_twice_unless_both_stack() {
    let r = rule(vertical());
    let h1: HouseholdId = "H1".into();
    let others = [ActiveGrant {
        rule_id: "flood-topup",
        program: "food-aid",
        kind: GrantKind::TopUp,
        stacks: false,
        household_id: &h1,
    }];
    let p = plan(&r, &shock(&["R01"], 8.0), &households().into(), &others);
    assert_eq!(ids(&p), ["H4"]);
    assert_eq!(
        p.overlap,
        vec![Overlap {
            rule_id: "flood-topup".into(),
            households: 1,
            stacked: false
        }]
    );
    // Both rules say they stack: H1 gets both.
    let stacking = ScaleUpRule {
        stacks: true,
        ..r.clone()
    };
    let others_stacking = [ActiveGrant {
        stacks: true,
        ..others[0].clone()
    }];
    let p = plan(
        &stacking,
        &shock(&["R01"], 8.0),
        &households().into(),
        &others_stacking,
    );
    assert_eq!(ids(&p), ["H1", "H4"]);
    assert!(p.overlap[0].stacked);
    // Another program's grant is not an overlap.
    let elsewhere = [ActiveGrant {
        program: "child-grant",
        ..others[0].clone()
    }];
    assert_eq!(
        ids(&plan(
            &r,
            &shock(&["R01"], 8.0),
            &households().into(),
            &elsewhere
        )),
        ["H1", "H4"]
    );
}

#[test]
fn the_lifecycle_needs_a_second_person_to_approve() {
    let mut rec = RuleRecord::draft(rule(vertical()), "coordinator-a", T0);
    assert!(matches!(
        rec.approve("approver-b", "ok", T0),
        Err(LifecycleError::State { .. })
    ));
    rec.previewed("coordinator-a", T0).unwrap();
    assert_eq!(
        rec.approve("coordinator-a", "mine", T0),
        Err(LifecycleError::OwnApproval {
            rule: "drought-topup".into(),
            by: "coordinator-a".into()
        })
    );
    // An editor is a drafter too.
    rec.edit(rule(vertical()), "approver-b", T0).unwrap();
    rec.previewed("approver-b", T0).unwrap();
    assert!(matches!(
        rec.approve("approver-b", "ok", T0),
        Err(LifecycleError::OwnApproval { .. })
    ));
    rec.approve("approver-c", "agreed with the drought committee", T0)
        .unwrap();
    assert!(rec.edit(rule(vertical()), "coordinator-a", T0).is_err());
    rec.arm("coordinator-a", T0).unwrap();
    let p = plan(&rec.rule, &shock(&["R01"], 8.0), &households().into(), &[]);
    rec.activate(&p, uuid::Uuid::from_u128(7), "dsr", "shock DR-2026-01", T0)
        .unwrap();
    assert!(!rec.due(Micros(T0.0 + 89 * DAY)));
    assert!(rec.due(Micros(T0.0 + 90 * DAY)));
    rec.expire("dsr", "end date reached", Micros(T0.0 + 90 * DAY))
        .unwrap();
    assert_eq!(rec.state, RuleState::Expired);
    assert!(rec.revoke("coordinator-a", "late", T0).is_err());
    let states: Vec<&str> = rec.transitions.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(
        states,
        [
            "draft",
            "previewed",
            "draft",
            "previewed",
            "approved",
            "armed",
            "active",
            "expired"
        ]
    );
}

#[test]
fn start_and_end_notifications_are_marked_and_keep_their_ids() {
    let r = rule(vertical());
    let h = rule(Mode::Horizontal {
        benefit: 100.0,
        selection: Selection::MinNeedScore { threshold: 60.0 },
    });
    for (rule, start_kind, end_kind) in [
        (&r, ChangeKind::Changed, ChangeKind::Changed),
        (&h, ChangeKind::Entered, ChangeKind::Exited),
    ] {
        let mut rec = RuleRecord::draft(rule.clone(), "a", T0);
        rec.previewed("a", T0).unwrap();
        rec.approve("b", "ok", T0).unwrap();
        rec.arm("a", T0).unwrap();
        let p = plan(rule, &shock(&["R01"], 8.0), &households().into(), &[]);
        rec.activate(&p, uuid::Uuid::from_u128(7), "dsr", "shock", T0)
            .unwrap();
        let start = start_changes(rule, rec.activation.as_ref().unwrap());
        assert_eq!(start.len(), p.grants.len());
        assert!(start.iter().all(|c| c.kind == start_kind));
        let mark = start[0].scale_up.as_ref().unwrap();
        assert_eq!(mark.rule_id, rule.id);
        assert_eq!(mark.shock_id.as_str(), "DR-2026-01");
        assert_eq!(mark.ends_at, Micros(T0.0 + 90 * DAY));
        assert_eq!(start, start_changes(rule, rec.activation.as_ref().unwrap()));
        rec.revoke("a", "declared in error", Micros(T0.0 + DAY))
            .unwrap();
        let end = end_changes(rule, rec.activation.as_ref().unwrap());
        assert!(end.iter().all(|c| c.kind == end_kind));
        let start_ids: HashSet<_> = start.iter().map(|c| c.change_id).collect();
        assert!(end.iter().all(|c| !start_ids.contains(&c.change_id)));
        if start_kind == ChangeKind::Changed {
            assert_eq!(
                end.iter()
                    .find(|c| c.household_id.as_str() == "H1")
                    .unwrap()
                    .benefit,
                200.0,
                "back to the benefit before the top-up"
            );
            let h1 = start
                .iter()
                .find(|c| c.household_id.as_str() == "H1")
                .unwrap();
            assert_eq!(h1.benefit, 250.0);
        }
    }
}

#[test]
fn rules_that_cannot_work_are_refused() {
    let known = |a: &AreaCode| a.is_within(&AreaCode::new("R01"));
    let programs = ["food-aid"];
    assert_eq!(rule(vertical()).validate(&programs, &known), Ok(()));
    let mut r = rule(vertical());
    r.program = "nope".into();
    assert_eq!(
        r.validate(&programs, &known),
        Err(RuleError::UnknownProgram("nope".into()))
    );
    let mut r = rule(vertical());
    r.trigger = Trigger::Manual {
        areas: vec!["R09".into()],
    };
    assert_eq!(
        r.validate(&programs, &known),
        Err(RuleError::UnknownAreas("R09".into()))
    );
    let r = rule(Mode::Vertical {
        extra_amount: 0.0,
        multiplier: Some(1.0),
    });
    assert_eq!(r.validate(&programs, &known), Err(RuleError::NoTopUp));
    let mut r = rule(vertical());
    r.duration = Duration::default();
    assert_eq!(r.validate(&programs, &known), Err(RuleError::Duration));
    let r = rule(Mode::Horizontal {
        benefit: 1.0,
        selection: Selection::TopPercent { percent: 150.0 },
    });
    assert_eq!(
        r.validate(&programs, &known),
        Err(RuleError::Percent(150.0))
    );
    // The JSON shape refuses a misspelt field.
    let text = r#"{"id":"x","name":"x","program":"food-aid","trigger":{"kind":"manual","areas":["R01"]},
        "mode":{"kind":"vertical","extra_amount":5},"duration":{"days":30},"capz":{}}"#;
    assert!(serde_json::from_str::<ScaleUpRule>(text).is_err());
}

fn arb_households() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec((0u8..3, 0u8..3, 0u32..100, any::<bool>(), 0u32..400), 0..60).prop_map(
        |rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, (d, v, score, enrolled, benefit))| {
                    candidate(
                        &format!("H{i:03}"),
                        &format!("R01.D0{d}.V{v}"),
                        f64::from(score),
                        enrolled,
                        f64::from(benefit),
                    )
                })
                .collect()
        },
    )
}

proptest! {
    /// The plan is the same in any input order (the same grants), and never breaks a cap.
    #[test]
    fn plans_are_order_free_and_within_caps(
        mut hs in arb_households(),
        max in prop::option::of(0u64..20),
        budget in prop::option::of(0u32..5000),
        per_area in prop::option::of(0u32..2000),
        horizontal in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut r = rule(if horizontal {
            Mode::Horizontal { benefit: 100.0, selection: Selection::MinNeedScore { threshold: 30.0 } }
        } else {
            vertical()
        });
        r.caps = Caps {
            max_households: max,
            budget_total: budget.map(f64::from),
            budget_per_area: per_area.map(f64::from),
        };
        let s = shock(&["R01.D00", "R01.D01"], 5.0);
        let mut p = plan(&r, &s, &hs.clone().into(), &[]);
        p.grants.sort_by(|a, b| a.household_id.cmp(&b.household_id));
        // Shuffle deterministically and plan again.
        let n = hs.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(i as u64 + 1) >> 7) as usize % (i + 1);
            hs.swap(i, j);
        }
        let mut again = plan(&r, &s, &hs.into(), &[]);
        again.grants.sort_by(|a, b| a.household_id.cmp(&b.household_id));
        prop_assert_eq!(&again, &p);
        if let Some(m) = max { prop_assert!(p.grants.len() as u64 <= m); }
        if let Some(b) = budget { prop_assert!(p.total_cost <= f64::from(b) + 1e-6); }
        if let Some(b) = per_area {
            for t in p.per_area.values() { prop_assert!(t.cost <= f64::from(b) + 1e-6); }
        }
        prop_assert_eq!(p.top_ups + p.enrolments, p.grants.len() as u64);
        prop_assert!(p.grants.iter().all(|g| !g.area.as_str().starts_with("R01.D02")));
    }
}

proptest! {
    /// The need key sorts like `f64::total_cmp`, highest first.
    #[test]
    fn need_keys_sort_highest_need_first(a in any::<f64>(), b in any::<f64>()) {
        prop_assert_eq!(need_key(a).cmp(&need_key(b)), b.total_cmp(&a));
    }
}
