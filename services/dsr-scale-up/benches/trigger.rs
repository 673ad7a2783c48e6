//! Trigger → every notification emitted, and a preview, on the embedded deployment: a serving
//! store holding N households (default 1M; `DSR_BENCH_HOUSEHOLDS`), the embedded log (durable
//! appends, sealed), the rule book, the audit log — the `ScaleUp` service `dsr up` runs.
//!
//! `cargo bench -p dsr-scale-up --bench trigger`. Times loading the candidate table (one scan
//! of the serving store, as `dsr up` does at start), then, for a vertical top-up of every
//! beneficiary and a horizontal enrolment of everyone else over the whole country:
//! the preview (plan over the candidate table), and the trigger (plan + the book
//! written + every notification encoded and durably appended to the program's topic + the book
//! marked). Loading the store is not timed (it is reported).

use dsr_core::areas::AreaList;
use dsr_core::scale_up::ScaleUpRule;
use dsr_core::Household;
use dsr_log::EmbeddedLog;
use dsr_pipeline::codec::{SchemaIds, WireCodec};
use dsr_pipeline::runner::Topics;
use dsr_scale_up::service::Actor;
use dsr_scale_up::{RuleBook, ScaleUp};
use dsr_serving::ServingStore;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let n: usize = std::env::var("DSR_BENCH_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(
        std::env::var_os("DSR_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .expect("a temporary directory");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (keyring, _, _) =
        dsr_crypto::Keyring::open_directory(&dir.path().join("security"), None, None, 0).unwrap();
    let keyring = Arc::new(keyring);

    // The households: copies of a generated population's, spread over its villages, with
    // need scores and food-aid statuses (a third beneficiaries).
    let population = dsr_synth::fixtures::small_population(7, 2_000);
    let mut csv = Vec::new();
    population.areas.write_csv(&mut csv).unwrap();
    let areas = AreaList::from_csv(std::str::from_utf8(&csv).unwrap()).unwrap();
    let villages: Vec<_> = areas
        .all()
        .iter()
        .filter(|a| a.level == "village")
        .map(|a| a.code.clone())
        .collect();
    let templates: Vec<Household> = population
        .households
        .iter()
        .map(|e| dsr_core::apply(None, e).unwrap().household)
        .collect();
    let store = ServingStore::open(dir.path().join("serving"), Arc::clone(&keyring)).unwrap();
    let start = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let mut h = templates[i % templates.len()].clone();
        h.household_id = dsr_core::HouseholdId::new(format!("H{i:09}"));
        h.area = villages[(i * 7919) % villages.len()].clone();
        let score = ((i * 2_654_435_761) % 10_000) as f64 / 100.0;
        h.need_score = Some(dsr_core::score::ScoreSummary {
            score,
            model_version: "bench".into(),
        });
        h.programs = vec![dsr_core::household::ProgramStatus {
            program_id: "food-aid".into(),
            rule_version: 1,
            eligible: i.is_multiple_of(3),
            benefit: if i.is_multiple_of(3) { 150.0 } else { 0.0 },
            inputs: Default::default(),
        }];
        batch.push((h, 0));
        if batch.len() == 10_000 {
            store.apply(std::mem::take(&mut batch)).unwrap();
        }
    }
    store.apply(batch).unwrap();
    println!(
        "loaded {n} households into the serving store in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let (log, _) =
        EmbeddedLog::open_encrypted(dir.path().join("log"), Arc::clone(&keyring)).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let decls = dsr_log::topics::load_dir(&repo.join("topics")).unwrap();
    runtime
        .block_on(dsr_log::topics::apply(&log, &decls))
        .unwrap();
    let sealer = dsr_audit::Sealer::load_or_create(&dir.path().join("audit-seal.key")).unwrap();
    let (audit, _) = dsr_audit::AuditLog::open(&dir.path().join("audit"), sealer).unwrap();
    let ids = SchemaIds::LOCAL;
    let regions: Vec<String> = areas
        .children(None)
        .iter()
        .map(|a| a.code.to_string())
        .collect();
    let service = ScaleUp::new(
        RuleBook::open(&dir.path().join("scale-up"), Arc::clone(&keyring)).unwrap(),
        store,
        Arc::new(areas),
        vec!["food-aid".into()],
        Arc::new(log),
        WireCodec::new(ids),
        Topics::default(),
        Arc::new(|| dsr_core::Micros(1_790_000_000_000_000)),
        Arc::new(audit),
    );
    let start = Instant::now();
    let loaded = runtime.block_on(service.load_table()).unwrap();
    println!(
        "loaded the candidate table ({loaded} households, one scan of the serving store) in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let coordinator = Actor {
        id: "coordinator".into(),
        role: "emergency_coordinator".into(),
    };
    let approver = Actor {
        id: "approver".into(),
        role: "approver".into(),
    };
    for (id, mode) in [
        (
            "vertical",
            serde_json::json!({"kind": "vertical", "extra_amount": 50.0}),
        ),
        (
            "horizontal",
            serde_json::json!({"kind": "horizontal", "benefit": 100.0,
                "selection": {"kind": "min_need_score", "threshold": 0.0}}),
        ),
    ] {
        let rule: ScaleUpRule = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "program": "food-aid",
            "trigger": {"kind": "manual", "areas": regions},
            "mode": mode, "duration": {"days": 90}, "stacks": true
        }))
        .unwrap();
        service.draft(rule, &coordinator).unwrap();
        let start = Instant::now();
        let (plan, _) = runtime
            .block_on(service.preview(id, None, &coordinator))
            .unwrap();
        let preview = start.elapsed();
        service.approve(id, &approver, "bench").unwrap();
        service.arm(id, &approver).unwrap();
        let before = service.sent.load(std::sync::atomic::Ordering::Relaxed);
        let start = Instant::now();
        let record = runtime
            .block_on(service.trigger(id, None, &approver, "bench"))
            .unwrap();
        let trigger = start.elapsed();
        let sent = service.sent.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert_eq!(sent as usize, plan.grants.len());
        assert_eq!(ScaleUp::notifications_sent(&record), sent);
        println!(
            "{id:<10} {n} households: preview {:.2} s ({} grants); trigger → {} notifications durably appended in {:.2} s ({:.0}/s)",
            preview.as_secs_f64(),
            plan.grants.len(),
            sent,
            trigger.as_secs_f64(),
            sent as f64 / trigger.as_secs_f64()
        );
    }
}
