//! The scale-up plan (`dsr_core::scale_up::plan`: who and how much) over a country-sized
//! registry held in memory: the computation behind both a preview and an activation.
//!
//! `cargo bench -p dsr-core --bench scale_up` (10M households; `DSR_BENCH_HOUSEHOLDS=N` for
//! another size). Prints, per scenario, the best and median of 5 runs. The households are
//! synthetic candidates (8 regions × 12 districts × 100 villages, continuous need scores 0-100, a third
//! of them beneficiaries); building them is not timed.

use dsr_core::scale_up::*;
use dsr_core::{AreaCode, HouseholdId, Micros};
use std::time::{Duration as Elapsed, Instant};

fn candidates(n: usize) -> Candidates {
    let villages: Vec<AreaCode> = (0..8)
        .flat_map(|r| {
            (0..12).flat_map(move |d| {
                (0..100).map(move |v| AreaCode::new(format!("R{r:02}.D{d:02}.V{v:03}")))
            })
        })
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Continuous, like a PMT score (few exact ties).
            let score = (x >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
            let enrolled = x.is_multiple_of(3);
            Candidate {
                household_id: HouseholdId::new(format!("H{i:09}")),
                area: villages[(x >> 20) as usize % villages.len()].clone(),
                need_score: score,
                household_version: 1,
                enrolled,
                benefit: if enrolled { 150.0 } else { 0.0 },
                rule_version: 1,
            }
        })
        .collect()
}

fn rule(mode: Mode, caps: Caps) -> ScaleUpRule {
    ScaleUpRule {
        id: "bench".into(),
        name: "bench".into(),
        program: "food-aid".into(),
        trigger: Trigger::Manual {
            areas: (0..8).map(|r| AreaCode::new(format!("R{r:02}"))).collect(),
        },
        mode,
        duration: Duration {
            ends_at: None,
            days: Some(90),
        },
        caps,
        priority: Priority::HighestNeedFirst,
        stacks: false,
    }
}

fn time(name: &str, n: usize, f: impl Fn() -> Plan) {
    let mut runs: Vec<Elapsed> = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let start = Instant::now();
        let plan = f();
        runs.push(start.elapsed());
        last = Some(plan);
    }
    runs.sort();
    let plan = last.expect("five runs");
    println!(
        "{name:<44} {n:>10} households  best {:>7.3} s  median {:>7.3} s  ({} affected, {} grants, {} capped, {} areas)",
        runs[0].as_secs_f64(),
        runs[2].as_secs_f64(),
        plan.affected,
        plan.grants.len(),
        plan.capped,
        plan.per_area.len()
    );
}

fn main() {
    let n: usize = std::env::var("DSR_BENCH_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let start = Instant::now();
    let households = candidates(n);
    println!(
        "built {n} candidates in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let country = Shock {
        shock_id: "bench".into(),
        hazard: None,
        areas: (0..8).map(|r| AreaCode::new(format!("R{r:02}"))).collect(),
        severity: None,
        indicator: None,
        starts_at: Micros(1_790_000_000_000_000),
        expected_end: None,
        caused_by: uuid::Uuid::nil(),
    };
    let two_regions = Shock {
        areas: vec!["R00".into(), "R01".into()],
        ..country.clone()
    };
    let vertical = rule(
        Mode::Vertical {
            extra_amount: 50.0,
            multiplier: None,
        },
        Caps::default(),
    );
    let min_score = rule(
        Mode::Horizontal {
            benefit: 100.0,
            selection: Selection::MinNeedScore { threshold: 60.0 },
        },
        Caps::default(),
    );
    let top_percent = rule(
        Mode::Horizontal {
            benefit: 100.0,
            selection: Selection::TopPercent { percent: 50.0 },
        },
        Caps::default(),
    );
    let capped = rule(
        Mode::Horizontal {
            benefit: 100.0,
            selection: Selection::MinNeedScore { threshold: 40.0 },
        },
        Caps {
            max_households: Some(1_000_000),
            budget_total: None,
            budget_per_area: Some(3_000_000.0),
        },
    );
    time("vertical top-up, whole country", n, || {
        plan(&vertical, &country, &households, &[])
    });
    time("vertical top-up, two of eight regions", n, || {
        plan(&vertical, &two_regions, &households, &[])
    });
    time("horizontal, need score >= 60, whole country", n, || {
        plan(&min_score, &country, &households, &[])
    });
    time("horizontal, top 50% of each region", n, || {
        plan(&top_percent, &country, &households, &[])
    });
    time("horizontal, capped (1M households, per area)", n, || {
        plan(&capped, &country, &households, &[])
    });
}
