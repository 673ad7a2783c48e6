//! The household task with its real state store: a generated population's registrations and
//! year of events, in batches of 1,000, each batch processed and committed (fjall, synced).
//! Outputs are built but not produced anywhere: this is the processor's own cost, the ceiling
//! a log adapter can reach.
//!
//! `cargo bench -p dsr-pipeline --bench task`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsr_core::eligibility::Program;
use dsr_core::PmtModel;
use dsr_pipeline::{HouseholdTask, Input};
use dsr_store::FjallState;

const PROGRAMS: [&str; 3] = [
    include_str!("../../../programs/child-grant.yaml"),
    include_str!("../../../programs/old-age-pension.yaml"),
    include_str!("../../../programs/food-aid.yaml"),
];

fn bench(c: &mut Criterion) {
    let pop = dsr_synth::fixtures::small_population(7, 20_000);
    let events: Vec<Option<Input>> = pop
        .households
        .into_iter()
        .chain(
            pop.events
                .into_iter()
                .filter(|e| !e.payload.is_area_event()),
        )
        .map(|e| Some(Input::Event(e)))
        .collect();
    let programs: Vec<Program> = PROGRAMS
        .iter()
        .map(|t| Program::from_yaml(t).unwrap())
        .collect();
    let mut group = c.benchmark_group("household-task");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.bench_function("process + commit, batches of 1000, fjall synced", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let state = FjallState::open(
                    dir.path().join("state"),
                    dsr_pipeline::testing::state_keyring(&dir.path().join("state")),
                )
                .unwrap();
                let mut task = HouseholdTask::new(
                    state.partition(0).unwrap(),
                    PmtModel::default_model(),
                    programs.clone(),
                )
                .unwrap();
                let mut outputs = 0;
                for chunk in events.chunks(1000) {
                    let out = task.process_batch(task.next_offset(), chunk).unwrap();
                    outputs += out.outputs.len();
                    task.commit(out).unwrap();
                }
                (dir, outputs)
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
