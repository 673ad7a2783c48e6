//! reduce + score + eligibility per event, on one core: the per-event work of a stream
//! processor, over a realistic year of life events from the shared synthetic population.
//! State lookups use a HashMap, as a processor's in-memory cache would.
//!
//! `cargo bench -p dsr-core --bench process` (`DSR_BENCH_HOUSEHOLDS=N` for another population size)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsr_core::eligibility::Program;
use dsr_core::ids::HouseholdMap;
use dsr_core::reducer::target_household;
use dsr_core::{process, Context, Household, PmtModel};

const PROGRAMS: [&str; 3] = [
    include_str!("../../../programs/child-grant.yaml"),
    include_str!("../../../programs/old-age-pension.yaml"),
    include_str!("../../../programs/food-aid.yaml"),
];

fn bench(c: &mut Criterion) {
    // DSR_BENCH_HOUSEHOLDS: a smaller population fits in the CPU's caches, which shows how
    // much of the per-event cost is memory rather than arithmetic.
    let households = std::env::var("DSR_BENCH_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let population = dsr_synth::fixtures::small_population(7, households);
    let model = PmtModel::default_model();
    let programs: Vec<Program> = PROGRAMS
        .iter()
        .map(|t| Program::from_yaml(t).expect("shipped programs load"))
        .collect();
    let ctx = Context {
        model: &model,
        programs: &programs,
    };
    // The pipeline's household map (seeded foldhash).
    let mut registered: HouseholdMap<Option<Household>> = HouseholdMap::default();
    for e in &population.households {
        let hid = target_household(e)
            .expect("registrations name their household")
            .clone();
        let slot = registered.entry(hid).or_default();
        process(slot, e, &ctx).expect("registrations apply");
    }
    // Person events without a household id would go through the person index; the generated
    // stream names the household on every household event.
    let events: Vec<_> = population
        .events
        .iter()
        .filter(|e| !e.payload.is_area_event())
        .cloned()
        .collect();

    let mut group = c.benchmark_group("pipeline-core");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.bench_function("process (apply + score + 3 programs) per life event", |b| {
        b.iter_batched(
            || registered.clone(),
            |mut states| {
                let mut changes = 0usize;
                for (i, e) in events.iter().enumerate() {
                    // As a processor does: the next event's household starts loading into the
                    // CPU's cache while this event is processed (`Household::prefetch`).
                    if let Some(Some(next)) = events
                        .get(i + 1)
                        .and_then(target_household)
                        .and_then(|hid| states.get(hid))
                    {
                        next.prefetch();
                    }
                    let hid = target_household(e).expect("household events name their household");
                    let out = match states.get_mut(hid) {
                        Some(slot) => process(slot, e, &ctx),
                        None => {
                            let mut slot = None;
                            let out = process(&mut slot, e, &ctx);
                            if slot.is_some() {
                                states.insert(hid.clone(), slot);
                            }
                            out
                        }
                    };
                    if let Ok(out) = out {
                        changes += out.changes.len();
                    }
                }
                // Returned, so the states are dropped outside the measurement.
                (states, changes)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(population.households.len() as u64));
    group.bench_function("score only, per household", |b| {
        b.iter(|| {
            registered
                .values()
                .flatten()
                .map(|h| model.score(h).score)
                .sum::<f64>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
