//! Eligibility changes delivered per second to a webhook receiver on the same machine, single
//! (one change per request) and batched (100 per request), through the real worker: changes
//! already on a program topic of an embedded log, a Standard Webhooks signature on every
//! request, offsets committed after each 2xx. The receiver (an axum server in this process)
//! counts messages and answers 204; it does not verify signatures, so the figure is dsr's side.
//!
//! A third run writes changes at a fixed rate (`DSR_BENCH_RATE`, default 10,000 changes/s, 100
//! every 10 ms) while the worker delivers them in batches, and reports the latency from the
//! change's append to its arrival at the receiver (p50/p99): the delivery part of event →
//! webhook (the processing part, event → eligibility change, is the `up_ingest` bench's).
//!
//! `cargo bench -p dsr-delivery --bench deliver`; `DSR_BENCH_CHANGES` (default 200,000
//! batched; a quarter of it single). Figures go to docs/performance.md.

use axum::body::Bytes;
use dsr_core::eligibility::ChangeKind;
use dsr_core::{EligibilityChange, HouseholdId, Micros};
use dsr_delivery::{DeadLetters, Delivery, ProgramTopic, Subscriptions, WebhookSpec};
use dsr_log::{EmbeddedLog, Log, NewTopicSpec, Record, TopicAdmin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "dsr.eligibility.bench";
const NOTICES: &str = "dsr.beneficiary-events";

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn change(i: u64) -> Vec<u8> {
    change_at(i, 1_790_000_000_000_000 + i as i64)
}

/// A change whose `occurred_at` is `at` (the latency run stamps the append time there).
fn change_at(i: u64, at: i64) -> Vec<u8> {
    let c = EligibilityChange {
        change_id: uuid::Uuid::from_u128(0xbe00_0000_0000_4000_8000_0000_0000_0000 | i as u128),
        program_id: "bench".into(),
        household_id: HouseholdId::new(format!("H{:08}", i % 50_000)),
        kind: ChangeKind::Entered,
        reasons: vec!["need_score: 58.20 → 63.10".into()],
        benefit: 140.0,
        rule_version: 1,
        household_version: i,
        caused_by: uuid::Uuid::from_u128(i as u128),
        occurred_at: Micros(at),
        scale_up: None,
    };
    let mut out = dsr_contracts::wire::header(1).to_vec();
    dsr_contracts::avro::fast::encode_eligibility_change_into(&c, &mut out).unwrap();
    out
}

/// `rate`: `None` writes every change before delivery starts (throughput); `Some(r)` writes
/// them at `r` per second while delivery runs (latency). Returns changes/s and, with a rate,
/// the sorted append → receipt latencies in ms.
async fn run(batch_size: usize, changes: u64, rate: Option<u64>) -> (f64, Vec<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EmbeddedLog::open(dir.path().join("log")).unwrap();
    for name in [TOPIC, NOTICES] {
        log.create_topic(&NewTopicSpec {
            name: name.into(),
            partitions: 12,
            replication_factor: 1,
            configs: Vec::new(),
        })
        .await
        .unwrap();
    }
    let mut i = 0;
    while rate.is_none() && i < changes {
        let n = 5_000.min(changes - i);
        let records: Vec<Record> = (i..i + n)
            .map(|j| Record::new(format!("H{:08}", j % 50_000), change(j)))
            .collect();
        log.append(TOPIC, records).await.unwrap();
        i += n;
    }

    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counter = Arc::clone(&received);
    let seen = Arc::clone(&latencies);
    let timed = rate.is_some();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let counter = Arc::clone(&counter);
            let seen = Arc::clone(&seen);
            async move {
                // A batch carries one `"change_id"` per message.
                let n = memchr_count(&body, b"\"change_id\"");
                if timed {
                    let arrived = now_micros();
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let mut seen = seen.lock().unwrap();
                    for m in body["data"]["messages"].as_array().unwrap() {
                        let at = Micros::parse(m["timestamp"].as_str().unwrap()).unwrap();
                        seen.push((arrived - at.0) as f64 / 1000.0);
                    }
                }
                counter.fetch_add(n, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (keyring, _, _) =
        dsr_crypto::Keyring::open_directory(&dir.path().join("security"), None, None, 0).unwrap();
    let keyring = Arc::new(keyring);
    let subscriptions =
        Subscriptions::open(&dir.path().join("delivery"), Arc::clone(&keyring)).unwrap();
    subscriptions
        .put(
            "bench",
            WebhookSpec {
                url: format!("http://{address}/hook"),
                batch_size: Some(batch_size),
                allow_private_network: true,
                // Every change on the topic is measured, not the eligible set.
                backfill: Some(false),
                ..Default::default()
            },
            0,
        )
        .unwrap();
    let delivery = Arc::new(Delivery::new(
        vec![ProgramTopic {
            program_id: "bench".into(),
            topic: TOPIC.into(),
            notices_topic: NOTICES.into(),
            person_ids_allowed: false,
        }],
        subscriptions,
        DeadLetters::open(&dir.path().join("dead-letters"), keyring).unwrap(),
        Arc::new(log.clone()),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let worker = tokio::spawn(Arc::clone(&delivery).run(log.clone(), stop_rx));
    if let Some(rate) = rate {
        // 100 changes every 100 / rate seconds, stamped with their append time.
        let mut tick = tokio::time::interval(Duration::from_micros(100_000_000 / rate));
        let mut i = 0;
        while i < changes {
            tick.tick().await;
            let at = now_micros();
            let records: Vec<Record> = (i..i + 100)
                .map(|j| Record::new(format!("H{:08}", j % 50_000), change_at(j, at)))
                .collect();
            log.append(TOPIC, records).await.unwrap();
            i += 100;
        }
    }
    while received.load(Ordering::Relaxed) < changes {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    worker.await.unwrap().unwrap();
    log.close();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_by(f64::total_cmp);
    (changes as f64 / seconds, latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn memchr_count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

fn main() {
    let changes: u64 = std::env::var("DSR_BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (single, _) = run(1, changes / 4, None).await;
        println!(
            "single  (1 change per request):    {:>9.0} changes/s ({} changes)",
            single,
            changes / 4
        );
        let (batched, _) = run(100, changes, None).await;
        println!(
            "batched (100 changes per request): {:>9.0} changes/s ({} changes)",
            batched, changes
        );
        let rate: u64 = std::env::var("DSR_BENCH_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let (_, latencies) = run(100, (rate * 20).div_ceil(100) * 100, Some(rate)).await;
        println!(
            "latency at {rate} changes/s, batches of up to 100: append -> receiver p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} changes)",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default(),
            latencies.len()
        );
    });
}
