//! The household processor on Kafka against raw rdkafka on the same broker, in the same run.
//!
//! `cargo bench -p dsr-pipeline --bench kafka_pipeline` starts nisshi (as the tests do),
//! publishes a generated population's events to `dsr.household-events`, then measures:
//!
//! 1. **raw rdkafka**: a consumer-group member with dsr's consumer settings reads every record
//!    and a producer with dsr's producer settings (idempotent, acks=all) writes each one to
//!    another topic; offsets committed per poll batch. No decoding, no state: the broker's and
//!    the client's cost of moving the records once.
//! 2. **the pipeline**: `HouseholdProcessor` (decode, reduce, score, eligibility, outputs with
//!    fences, synced state commit, group commit) until every event and derived event is done.
//!
//! 3. **raw rdkafka again**, as in 1 with a new group and output topic: the broker's store has
//!    grown by then (nisshi keeps it in SQLite), so the baseline is taken on both sides of the
//!    pipeline and the ratio is against their mean.
//!
//! All read the same records from the beginning. Prints events/s for each and the ratio.
//! `DSR_BENCH_HOUSEHOLDS` sets the population (default 20,000: ~123k events); `DSR_BENCH_BATCH`
//! the records per poll batch of both (default `dsr process`'s, `KAFKA_BATCH_SIZE`).

use dsr_pipeline::testing::{population, KafkaFixture};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing we use.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let households: u64 = std::env::var("DSR_BENCH_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let fx = KafkaFixture::start(repo).await;
    let events = population(21, households);
    let n = events.len() as u64;
    let started = Instant::now();
    fx.publish(&events).await;
    let publish_s = started.elapsed().as_secs_f64();
    println!(
        "published {n} events ({households} households) in {publish_s:.1}s ({:.0}/s, dsr publish path)",
        n as f64 / publish_s
    );

    let raw_before = raw_consume_produce(&fx, n, "before").await;

    let state = tempfile::tempdir().expect("a temp dir");
    let mut processor = fx.processor(state.path(), "bench-pipeline");
    processor.batch_size = batch_size();
    let progress = processor.progress.clone();
    let started = Instant::now();
    // Every event once; derived events (receiving sides of moves) come on top and are work the
    // raw baseline does not do.
    let stats = processor
        .run(async {
            while progress.load(Ordering::Relaxed) < n
                && started.elapsed() < Duration::from_secs(900)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the pipeline runs");
    let pipeline_s = started.elapsed().as_secs_f64();
    println!(
        "pipeline (HouseholdProcessor): {n} events in {pipeline_s:.2}s = {:.0} events/s ({stats:?})",
        n as f64 / pipeline_s
    );
    let raw_after = raw_consume_produce(&fx, n, "after").await;
    let raw_rate = (n as f64 / raw_before + n as f64 / raw_after) / 2.0;
    println!(
        "ratio pipeline / raw (mean of before and after: {raw_rate:.0} records/s) = {:.2} (goal >= 0.8)",
        (n as f64 / pipeline_s) / raw_rate
    );
}

/// Records per poll batch, for both measurements (`DSR_BENCH_BATCH`, default: `dsr process`'s).
fn batch_size() -> usize {
    std::env::var("DSR_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(dsr_pipeline::runner::KAFKA_BATCH_SIZE)
}

/// Seconds for a group member to read `n` records of `dsr.household-events` and write each to
/// another topic, acknowledged, with offsets committed. `run` names the measurement (its group
/// and output topic).
async fn raw_consume_produce(fx: &KafkaFixture, n: u64, run: &str) -> f64 {
    let out_topic = format!("bench.raw-out-{run}");
    let admin: AdminClient<_> = fx
        .config()
        .producer_config()
        .create()
        .expect("an admin client");
    admin
        .create_topics(
            &[NewTopic::new(&out_topic, 12, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("the output topic is created");
    let consumer: BaseConsumer = fx
        .config()
        .member_config(&format!("bench-raw-{run}"))
        .create()
        .expect("a consumer");
    consumer
        .subscribe(&[fx.topics.household_events.as_str()])
        .expect("subscribed");
    let producer: FutureProducer = fx.config().producer_config().create().expect("a producer");
    let started = Instant::now();
    let mut done = 0u64;
    while done < n {
        let mut pending = Vec::new();
        let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
        // Drain what is fetched, up to a batch, like the processor's poll.
        for _ in 0..batch_size() {
            match consumer.poll(Duration::from_millis(if pending.is_empty() {
                100
            } else {
                0
            })) {
                Some(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
                    let record = FutureRecord::to(&out_topic)
                        .payload(m.payload().unwrap_or_default())
                        .key(m.key().unwrap_or_default());
                    pending.push(producer.send_result(record).expect("queued"));
                }
                Some(Err(e)) => panic!("consume error: {e}"),
                None => break,
            }
        }
        done += pending.len() as u64;
        for delivery in pending {
            delivery.await.expect("not cancelled").expect("delivered");
        }
        if !next.is_empty() {
            let mut offsets = TopicPartitionList::new();
            for (p, o) in next {
                offsets
                    .add_partition_offset(&fx.topics.household_events, p, Offset::Offset(o))
                    .expect("a valid offset");
            }
            consumer
                .commit(&offsets, CommitMode::Sync)
                .expect("committed");
        }
        if started.elapsed() > Duration::from_secs(900) {
            panic!("raw consume+produce did not finish in 15 minutes ({done} of {n})");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "raw rdkafka consume+produce ({run} the pipeline): {n} records in {seconds:.2}s = {:.0} records/s",
        n as f64 / seconds
    );
    seconds
}
