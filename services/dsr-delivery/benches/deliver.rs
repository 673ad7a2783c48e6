//! Eligibility changes delivered per second to a webhook receiver on the same machine, single
//! (one change per request) and batched (100 per request), through the real worker: changes
//! already on a program topic of an embedded log, a Standard Webhooks signature on every
//! request, offsets committed after each 2xx. The receiver (an axum server in this process)
//! counts messages and answers 204; it does not verify signatures, so the figure is dsr's side.
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

fn change(i: u64) -> Vec<u8> {
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
        occurred_at: Micros(1_790_000_000_000_000 + i as i64),
    };
    let mut out = dsr_contracts::wire::header(1).to_vec();
    dsr_contracts::avro::fast::encode_eligibility_change_into(&c, &mut out).unwrap();
    out
}

async fn run(batch_size: usize, changes: u64) -> f64 {
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
    while i < changes {
        let n = 5_000.min(changes - i);
        let records: Vec<Record> = (i..i + n)
            .map(|j| Record::new(format!("H{:08}", j % 50_000), change(j)))
            .collect();
        log.append(TOPIC, records).await.unwrap();
        i += n;
    }

    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let counter = Arc::clone(&counter);
            async move {
                // A batch carries one `"change_id"` per message.
                let n = memchr_count(&body, b"\"change_id\"");
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
    while received.load(Ordering::Relaxed) < changes {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    worker.await.unwrap().unwrap();
    log.close();
    changes as f64 / seconds
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
        let single = run(1, changes / 4).await;
        println!(
            "single  (1 change per request):    {:>9.0} changes/s ({} changes)",
            single,
            changes / 4
        );
        let batched = run(100, changes).await;
        println!(
            "batched (100 changes per request): {:>9.0} changes/s ({} changes)",
            batched, changes
        );
    });
}
