//! Encode and decode cost per event: `cargo bench -p dsr-contracts`.
//!
//! - `one_of_each`: the hand-built fixtures, one event of each kind.
//! - `population`: every event of a generated population (registrations and a year of life
//!   events of `DSR_BENCH_HOUSEHOLDS` households, 20,000 by default), through the
//!   `Value` path (`avro::encode`/`decode`) and the fast path (`avro::fast`); the throughput is
//!   in events per second.
//! - `household_record`, `eligibility_change`: the pipeline's outputs, from 2,000 households
//!   processed with the shipped model and programs, through both paths.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dsr_contracts::avro::fast;
use dsr_contracts::schemas::{self, life_event_schema};
use dsr_contracts::{decode, decode_json, encode, encode_json_line, fixtures};
use dsr_core::eligibility::Program;
use dsr_core::reducer::target_household;
use dsr_core::{process, Context, Event, Household, HouseholdId, PmtModel};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

fn codec(c: &mut Criterion) {
    let events = fixtures::one_of_each();
    let avro: Vec<Vec<u8>> = events.iter().map(|e| encode(e).unwrap()).collect();
    let json: Vec<String> = events
        .iter()
        .map(|e| encode_json_line(e).unwrap())
        .collect();
    // A writer schema that is not the reader's object: the schema-resolution path, as for
    // events written with a released version.
    let v1 = schemas::load_dir(&schemas::source_dir().join("released/v1")).unwrap();

    let mut g = c.benchmark_group("one_of_each");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("avro_encode", |b| {
        b.iter(|| {
            for e in &events {
                black_box(encode(black_box(e)).unwrap());
            }
        })
    });
    g.bench_function("avro_decode", |b| {
        b.iter(|| {
            for bytes in &avro {
                black_box(decode(black_box(bytes), life_event_schema()).unwrap());
            }
        })
    });
    g.bench_function("fast_encode", |b| {
        b.iter(|| {
            for e in &events {
                black_box(fast::encode(black_box(e)).unwrap());
            }
        })
    });
    g.bench_function("fast_decode", |b| {
        b.iter(|| {
            for bytes in &avro {
                black_box(fast::decode(black_box(bytes)).unwrap());
            }
        })
    });
    g.bench_function("avro_decode_resolving_v1", |b| {
        b.iter(|| {
            for bytes in &avro {
                black_box(decode(black_box(bytes), v1.life_event()).unwrap());
            }
        })
    });
    let prepared = dsr_contracts::Decoder::new(v1.life_event()).unwrap();
    g.bench_function("avro_decode_prepared_v1", |b| {
        b.iter(|| {
            for bytes in &avro {
                black_box(prepared.decode(black_box(bytes)).unwrap());
            }
        })
    });
    g.bench_function("json_encode", |b| {
        b.iter(|| {
            for e in &events {
                black_box(encode_json_line(black_box(e)).unwrap());
            }
        })
    });
    g.bench_function("json_decode", |b| {
        b.iter(|| {
            for line in &json {
                black_box(decode_json(black_box(line)).unwrap());
            }
        })
    });
    g.finish();

    let household = fixtures::household_registered();
    let bytes = encode(&household).unwrap();
    c.bench_function("household_registered/avro_decode", |b| {
        b.iter_batched(
            || bytes.clone(),
            |bytes| black_box(decode(&bytes, life_event_schema()).unwrap()),
            BatchSize::SmallInput,
        )
    });
    let sizes: Vec<usize> = avro.iter().map(Vec::len).collect();
    let json_sizes: Vec<usize> = json.iter().map(String::len).collect();
    println!(
        "bytes per event, Avro: {:?} (total {}); JSON: total {}",
        sizes,
        sizes.iter().sum::<usize>(),
        json_sizes.iter().sum::<usize>()
    );
}

fn population(c: &mut Criterion) {
    let households = std::env::var("DSR_BENCH_HOUSEHOLDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let population = dsr_synth::fixtures::small_population(7, households);
    let events: Vec<Event> = population
        .households
        .iter()
        .chain(&population.events)
        .cloned()
        .collect();
    let avro: Vec<Vec<u8>> = events.iter().map(|e| encode(e).unwrap()).collect();
    for (e, bytes) in events.iter().zip(&avro) {
        assert_eq!(
            &fast::encode(e).unwrap(),
            bytes,
            "the fast path writes the same bytes"
        );
    }
    let bytes: usize = avro.iter().map(Vec::len).sum();
    println!(
        "population: {households} households, {} events, {:.1} Avro bytes per event",
        events.len(),
        bytes as f64 / events.len() as f64
    );

    let mut g = c.benchmark_group("population");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("avro_encode (Value path)", |b| {
        b.iter(|| {
            for e in &events {
                black_box(encode(black_box(e)).unwrap());
            }
        })
    });
    g.bench_function("fast_encode", |b| {
        b.iter(|| {
            for e in &events {
                black_box(fast::encode(black_box(e)).unwrap());
            }
        })
    });
    let mut buf = Vec::with_capacity(4096);
    g.bench_function("fast_encode_into (reused buffer)", |b| {
        b.iter(|| {
            for e in &events {
                buf.clear();
                fast::encode_into(black_box(e), &mut buf).unwrap();
                black_box(&buf);
            }
        })
    });
    g.bench_function("avro_decode (Value path)", |b| {
        b.iter(|| {
            for bytes in &avro {
                black_box(decode(black_box(bytes), life_event_schema()).unwrap());
            }
        })
    });
    g.bench_function("fast_decode", |b| {
        b.iter(|| {
            for bytes in &avro {
                black_box(fast::decode(black_box(bytes)).unwrap());
            }
        })
    });
    g.finish();
}

fn outputs(c: &mut Criterion) {
    let population = dsr_synth::fixtures::small_population(7, 2_000);
    let model = PmtModel::default_model();
    let programs: Vec<Program> = [
        include_str!("../../../programs/child-grant.yaml"),
        include_str!("../../../programs/old-age-pension.yaml"),
        include_str!("../../../programs/food-aid.yaml"),
    ]
    .iter()
    .map(|t| Program::from_yaml(t).unwrap())
    .collect();
    let ctx = Context {
        model: &model,
        programs: &programs,
    };
    let mut states: HashMap<HouseholdId, Option<Household>> = HashMap::new();
    let mut changes = Vec::new();
    for e in population.households.iter().chain(&population.events) {
        let Some(hid) = target_household(e) else {
            continue;
        };
        let slot = states.entry(hid.clone()).or_default();
        if let Ok(p) = process(slot, e, &ctx) {
            changes.extend(p.changes);
        }
    }
    let records: Vec<Household> = states.into_values().flatten().collect();
    let encoded: Vec<Vec<u8>> = records
        .iter()
        .map(|h| dsr_contracts::encode_household(h).unwrap())
        .collect();
    let encoded_changes: Vec<Vec<u8>> = changes
        .iter()
        .map(|c| dsr_contracts::encode_eligibility_change(c).unwrap())
        .collect();
    println!(
        "outputs: {} household records ({:.1} bytes each), {} eligibility changes ({:.1} bytes each)",
        records.len(),
        encoded.iter().map(Vec::len).sum::<usize>() as f64 / records.len() as f64,
        changes.len(),
        encoded_changes.iter().map(Vec::len).sum::<usize>() as f64 / changes.len().max(1) as f64
    );
    let household_schema = schemas::household_record_schema();
    let change_schema = schemas::eligibility_change_schema();

    let mut g = c.benchmark_group("household_record");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.sample_size(10);
    g.bench_function("avro_encode (Value path)", |b| {
        b.iter(|| {
            for h in &records {
                black_box(dsr_contracts::encode_household(black_box(h)).unwrap());
            }
        })
    });
    g.bench_function("fast_encode", |b| {
        b.iter(|| {
            for h in &records {
                black_box(fast::encode_household(black_box(h)).unwrap());
            }
        })
    });
    g.bench_function("fast_decode", |b| {
        b.iter(|| {
            for bytes in &encoded {
                black_box(fast::decode_household(black_box(bytes)).unwrap());
            }
        })
    });
    g.bench_function("avro_decode (Value path)", |b| {
        b.iter(|| {
            for bytes in &encoded {
                black_box(
                    dsr_contracts::decode_household(black_box(bytes), household_schema).unwrap(),
                );
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("eligibility_change");
    g.throughput(Throughput::Elements(changes.len() as u64));
    g.sample_size(10);
    g.bench_function("avro_encode (Value path)", |b| {
        b.iter(|| {
            for ch in &changes {
                black_box(dsr_contracts::encode_eligibility_change(black_box(ch)).unwrap());
            }
        })
    });
    g.bench_function("fast_encode", |b| {
        b.iter(|| {
            for ch in &changes {
                black_box(fast::encode_eligibility_change(black_box(ch)).unwrap());
            }
        })
    });
    g.bench_function("fast_decode", |b| {
        b.iter(|| {
            for bytes in &encoded_changes {
                black_box(fast::decode_eligibility_change(black_box(bytes)).unwrap());
            }
        })
    });
    g.bench_function("avro_decode (Value path)", |b| {
        b.iter(|| {
            for bytes in &encoded_changes {
                black_box(
                    dsr_contracts::decode_eligibility_change(black_box(bytes), change_schema)
                        .unwrap(),
                );
            }
        })
    });
    g.finish();
}

criterion_group!(benches, codec, population, outputs);
criterion_main!(benches);
