//! End-to-end ingest through `dsr up` on the embedded log, as a source system on the same
//! machine sees it (docs/performance.md, "dsr up"):
//!
//! 1. the disk's fsync ceiling, measured first in the same directory (small write + fdatasync,
//!    one after another): what durable writes without group commit could do;
//! 2. durable ingest: a generated population's events posted over HTTP by `DSR_BENCH_CLIENTS`
//!    concurrent clients in batches of `DSR_BENCH_BATCH`; each 202 comes after fsync. Reported:
//!    events/s acknowledged, and events/s until every stage is idle (records, need scores and
//!    eligibility changes all written and served);
//! 3. resident memory of `dsr up` with those households loaded;
//! 4. event → eligibility change latency at a fixed rate (`DSR_BENCH_RATE`, default 10,000
//!    events/s, in batches of 100 every 10 ms): the held-back last fifth of the events; from the
//!    log's own append timestamps (ms) of each event's source record and of each eligibility
//!    change it caused;
//! 5. event → webhook delivered at that rate: every program gets a webhook on a receiver in
//!    this process (batches of up to 100) before the fixed-rate phase; the receiver's clock at
//!    each change's arrival against the log's append timestamp of the event that caused it.
//!
//! `cargo bench -p dsr --bench up_ingest` (release build). `DSR_BENCH_HOUSEHOLDS` (default
//! 50,000) sets the population size.

#[path = "../tests/support/mod.rs"]
mod support;

use dsr_core::Event;
use dsr_pipeline::runner::Codec;
use dsr_pipeline::testing::{population, EmbeddedFixture};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};
use support::up::{now, start_with, stop_with, try_post, Api};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

/// fdatasync/s for small appends to a file in `dir`, one after another.
fn fsync_ceiling(dir: &std::path::Path) -> f64 {
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let n = 2_000;
    let started = Instant::now();
    for _ in 0..n {
        file.write_all(&[7u8; 200]).unwrap();
        file.sync_data().unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(dir.join("fsync-probe")).unwrap();
    rate
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used so far, in seconds: per event it is a
/// steadier measure than wall-clock throughput on a VM whose speed drifts while other work
/// shares its cores.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the 1st, utime the 12th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// Polls `/v1/status` every 20 ms until every stage is idle; the time it first was.
async fn until_idle(client: &Api, base: &str) -> Instant {
    loop {
        let body: serde_json::Value = client
            .get(format!("{base}/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["idle"].as_bool() == Some(true) {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_all(client: &Api, base: &str, batch: &[Event]) {
    let (status, body) = try_post(client, base, batch).await.expect("dsr up answers");
    assert_eq!(
        status,
        202,
        "{} events refused, e.g. {}",
        body["rejected"].as_array().map_or(0, Vec::len),
        body["rejected"][0]
    );
}

/// Posts `events` with `clients` requests in flight, `batch` events per request.
async fn post_concurrently(
    client: &Api,
    base: &str,
    events: &[Event],
    clients: usize,
    batch: usize,
) {
    let chunks: Vec<&[Event]> = events.chunks(batch).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let mine: Vec<Vec<Event>> = chunks
            .iter()
            .skip(c)
            .step_by(clients)
            .map(|b| b.to_vec())
            .collect();
        let client = client.clone();
        let base = base.to_owned();
        tasks.spawn(async move {
            for b in mine {
                post_all(&client, &base, &b).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let households = env_or("DSR_BENCH_HOUSEHOLDS", 50_000);
    let clients = env_or("DSR_BENCH_CLIENTS", 4) as usize;
    let batch = env_or("DSR_BENCH_BATCH", 5_000) as usize;
    let rate = env_or("DSR_BENCH_RATE", 10_000);

    let data = tempfile::tempdir().unwrap();
    let syncs = fsync_ceiling(data.path());
    println!("fsync ceiling: {syncs:.0} fdatasync/s (200 B appends, one after another)");

    let now = now();
    // Events recorded by now, and of those only the ones whose households exist by then: a
    // household founded by a move recorded after now never appears, and the API rightly
    // refuses events about it once the pipeline is idle.
    let mut known = std::collections::HashSet::new();
    let events: Vec<Event> = population(29, households)
        .into_iter()
        .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
        .filter(|e| match &e.payload {
            dsr_core::Payload::HouseholdRegistered(_) => {
                known.extend(e.envelope.household_id.clone());
                true
            }
            payload => {
                let keep = dsr_core::reducer::target_household(e).is_none_or(|h| known.contains(h));
                match payload {
                    dsr_core::Payload::PersonMoved(m) if keep && m.founds_new_household => {
                        known.insert(m.to_household_id.clone());
                        true
                    }
                    dsr_core::Payload::PersonMoved(m) => keep && known.contains(&m.to_household_id),
                    _ => keep,
                }
            }
        })
        .collect();
    let split = events.len() * 4 / 5;
    let (load, live) = events.split_at(split);
    println!(
        "population: {households} households, {} events ({} loaded at full speed, {} at {rate}/s)",
        events.len(),
        load.len(),
        live.len()
    );

    let mut up = start_with(data.path(), &[]);
    let base = up.base.clone();
    let client = up.api().await;
    let rss_empty = rss_kib(up.child.id());

    // Durable ingest at full speed, `clients` requests in flight: the registrations first (an
    // event about a household the registry does not know is refused while it is idle), then
    // the life events.
    let (registrations, life): (Vec<Event>, Vec<Event>) = load
        .iter()
        .cloned()
        .partition(|e| matches!(e.payload, dsr_core::Payload::HouseholdRegistered(_)));
    let started = Instant::now();
    let cpu_before = cpu_seconds(up.child.id());
    post_concurrently(&client, &base, &registrations, clients, batch).await;
    post_concurrently(&client, &base, &life, clients, batch).await;
    let acknowledged = started.elapsed();
    let idle = until_idle(&client, &base).await.duration_since(started);
    let cpu = cpu_seconds(up.child.id()) - cpu_before;
    let n = load.len() as f64;
    println!(
        "durable ingest: {} events acknowledged in {:.2} s = {:.0} events/s ({clients} clients, batches of {batch})",
        load.len(),
        acknowledged.as_secs_f64(),
        n / acknowledged.as_secs_f64()
    );
    println!(
        "end to end (acknowledged, processed, eligibility changes written, served): {:.2} s = {:.0} events/s",
        idle.as_secs_f64(),
        n / idle.as_secs_f64()
    );
    println!(
        "CPU of dsr up for it: {cpu:.1} s = {:.1} µs per event ({:.2} of this machine's {} cores busy on average)",
        cpu / n * 1e6,
        cpu / idle.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rss = rss_kib(up.child.id());
    println!(
        "resident memory of dsr up: {:.0} MiB empty, {:.0} MiB with {households} households loaded: {:.0} MiB per million households (growth, extrapolated)",
        rss_empty as f64 / 1024.0,
        rss as f64 / 1024.0,
        rss.saturating_sub(rss_empty) as f64 / 1024.0 * 1e6 / households as f64
    );

    // Webhooks for every program on a receiver in this process, registered now: live delivery
    // starts at the topics' ends (after the eligible set, sent first), so the fixed-rate phase
    // below measures event → webhook.
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(uuid::Uuid, i64)>::new()));
    let programs =
        start_receiver_and_webhooks(&client, &base, std::sync::Arc::clone(&arrivals)).await;

    // Fixed rate: 100-event batches every 100 / rate seconds.
    let live_ids: std::collections::HashSet<uuid::Uuid> =
        live.iter().map(|e| e.envelope.event_id).collect();
    let period = Duration::from_secs_f64(100.0 / rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acks = tokio::task::JoinSet::new();
    let mut ack_ms = Vec::new();
    let live_started = Instant::now();
    // Requests overlap, but a household registered (or founded by a move) in one request may
    // be named in a later one only once that request is acknowledged, as a source system
    // would do: otherwise the later one can arrive first and be refused.
    let mut registering: HashMap<dsr_core::HouseholdId, tokio::sync::watch::Receiver<bool>> =
        HashMap::new();
    for b in live.chunks(100) {
        ticker.tick().await;
        let client = client.clone();
        let base = base.clone();
        let b = b.to_vec();
        let mut after: Vec<_> = b
            .iter()
            .filter_map(dsr_core::reducer::target_household)
            .filter_map(|h| registering.get(h).cloned())
            .collect();
        let (done, acknowledged) = tokio::sync::watch::channel(false);
        for e in &b {
            let founded = match &e.payload {
                dsr_core::Payload::HouseholdRegistered(_) => e.envelope.household_id.clone(),
                dsr_core::Payload::PersonMoved(m) if m.founds_new_household => {
                    Some(m.to_household_id.clone())
                }
                _ => None,
            };
            if let Some(h) = founded {
                registering.insert(h, acknowledged.clone());
            }
        }
        acks.spawn(async move {
            for earlier in &mut after {
                let _ = earlier.wait_for(|acknowledged| *acknowledged).await;
            }
            let sent = Instant::now();
            post_all(&client, &base, &b).await;
            let _ = done.send(true);
            sent.elapsed().as_micros() as i64
        });
        while let Some(done) = acks.try_join_next() {
            ack_ms.push(done.unwrap());
        }
    }
    while let Some(done) = acks.join_next().await {
        ack_ms.push(done.unwrap());
    }
    let offered = live.len() as f64 / live_started.elapsed().as_secs_f64();
    until_idle(&client, &base).await;
    until_delivered(&client, &base, &programs).await;
    assert!(stop_with(&mut up, "-TERM").success());
    drop(up);

    // Latency from the log's append timestamps.
    let fx = EmbeddedFixture::embedded_at(&support::repo(), data.path()).await;
    let mut ingested: HashMap<uuid::Uuid, i64> = HashMap::new();
    for r in fx.read_topic("dsr.life-events.legacy-http").await {
        let e = fx.codec.decode_event(r.value.as_deref().unwrap()).unwrap();
        if live_ids.contains(&e.envelope.event_id) {
            ingested.insert(e.envelope.event_id, r.timestamp_ms.unwrap());
        }
    }
    // Where each event reached its household's partition (the router's output), to split the
    // latency into its two hops.
    let mut routed: HashMap<uuid::Uuid, i64> = HashMap::new();
    for r in fx.read_topic(&fx.topics.household_events).await {
        let Some(value) = r.value.as_deref() else {
            continue; // a rule activation's marker
        };
        if let Ok(e) = fx.codec.decode_event(value) {
            if ingested.contains_key(&e.envelope.event_id) {
                routed
                    .entry(e.envelope.event_id)
                    .or_insert(r.timestamp_ms.unwrap());
            }
        }
    }
    let mut route_hop: Vec<i64> = routed.iter().map(|(id, at)| at - ingested[id]).collect();
    route_hop.sort_unstable();
    let mut process_hop = Vec::new();
    let mut timeline: Vec<(i64, i64)> = Vec::new();
    let mut latencies = Vec::new();
    for p in &fx.programs {
        for r in fx.read_topic(&fx.topics.eligibility(&p.id)).await {
            let (_, body) = dsr_contracts::wire::unframe(r.value.as_deref().unwrap()).unwrap();
            let change = dsr_contracts::avro::fast::decode_eligibility_change(body).unwrap();
            if let Some(at) = ingested.get(&change.caused_by) {
                latencies.push(r.timestamp_ms.unwrap() - at);
            }
            if let Some(at) = routed.get(&change.caused_by) {
                process_hop.push(r.timestamp_ms.unwrap() - at);
            }
            if let Some(at) = ingested.get(&change.caused_by) {
                timeline.push((*at, r.timestamp_ms.unwrap() - at));
            }
        }
    }
    // The same latencies by tenth of the fixed-rate phase: a stall (a store's compaction, say)
    // shows as the tenths it spans.
    timeline.sort_unstable();
    let tenths: Vec<(usize, i64, i64)> = match (timeline.first(), timeline.last()) {
        (Some(first), Some(last)) => {
            let span = (last.0 - first.0).max(1);
            let mut buckets = vec![Vec::new(); 10];
            for (at, l) in &timeline {
                buckets[(((at - first.0) * 10 / span) as usize).min(9)].push(*l);
            }
            buckets
                .into_iter()
                .filter(|b| !b.is_empty())
                .map(|mut b| {
                    b.sort_unstable();
                    (b.len(), b[b.len() / 2], b[b.len() - 1])
                })
                .collect()
        }
        _ => Vec::new(),
    };
    latencies.sort_unstable();
    process_hop.sort_unstable();
    ack_ms.sort_unstable();
    println!(
        "at {offered:.0} events/s offered: acknowledgement p50 {:.1} ms, p99 {:.1} ms (100-event requests)",
        percentile(&ack_ms, 0.5) as f64 / 1000.0,
        percentile(&ack_ms, 0.99) as f64 / 1000.0
    );
    if latencies.is_empty() {
        println!("no eligibility change was caused by the fixed-rate events");
    } else {
        println!(
            "event → eligibility change ({} changes): p50 {} ms, p99 {} ms, max {} ms (log append timestamps, ms resolution)",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().unwrap()
        );
    }
    if !route_hop.is_empty() && !process_hop.is_empty() {
        println!(
            "  of which event → routed to its household's partition ({} events): p50 {} ms, p99 {} ms; routed → eligibility change: p50 {} ms, p99 {} ms",
            route_hop.len(),
            percentile(&route_hop, 0.5),
            percentile(&route_hop, 0.99),
            percentile(&process_hop, 0.5),
            percentile(&process_hop, 0.99)
        );
    }
    if !tenths.is_empty() {
        let show = |f: fn(&(usize, i64, i64)) -> i64| {
            tenths
                .iter()
                .map(|t| f(t).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "  by tenth of the phase: p50 {} ms; max {} ms",
            show(|t| t.1),
            show(|t| t.2)
        );
    }
    let mut delivered: Vec<i64> = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(cause, at)| ingested.get(cause).map(|t| at - t))
        .collect();
    delivered.sort_unstable();
    if delivered.is_empty() {
        println!("no webhook message was caused by the fixed-rate events");
    } else {
        println!(
            "event → webhook delivered ({} changes, batches of up to 100): p50 {} ms, p99 {} ms, max {} ms (receiver clock at arrival vs log append timestamp, ms)",
            delivered.len(),
            percentile(&delivered, 0.5),
            percentile(&delivered, 0.99),
            delivered.last().unwrap()
        );
    }
    // Compaction and retention of what this run left: one pass over the whole log (dsr up's
    // own pass, every --compaction-seconds, default 600, did not come during the run), and the
    // log's size before and after.
    let log_dir = data.path().join("log");
    let before = dir_bytes(&log_dir);
    fx.log.roll_segment().await.unwrap();
    let started = std::time::Instant::now();
    let done = fx
        .log
        .compact(std::time::SystemTime::now(), |_, _| {})
        .await
        .unwrap();
    println!(
        "compaction of the embedded log: {:.1} s, {} MiB -> {} MiB ({done})",
        started.elapsed().as_secs_f64(),
        before >> 20,
        dir_bytes(&log_dir) >> 20
    );
    fx.log.close();
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A receiver that notes when each eligibility change arrives (its `caused_by`), and a webhook
/// on it for every program; returns the program ids once every backfill is sent.
async fn start_receiver_and_webhooks(
    client: &Api,
    base: &str,
    arrivals: std::sync::Arc<std::sync::Mutex<Vec<(uuid::Uuid, i64)>>>,
) -> Vec<String> {
    let app = axum::Router::new().route(
        "/hook/{program}",
        axum::routing::post(move |body: axum::body::Bytes| {
            let arrivals = std::sync::Arc::clone(&arrivals);
            async move {
                let at = now_ms();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let messages = if body["type"] == "eligibility.batch" {
                    body["data"]["messages"].as_array().unwrap().clone()
                } else {
                    vec![body]
                };
                let mut arrivals = arrivals.lock().unwrap();
                for m in messages {
                    let live_change = m["type"].as_str().unwrap().starts_with("eligibility.")
                        && m["data"]["backfill"] != true;
                    if live_change {
                        if let Some(cause) = m["data"]["caused_by"].as_str() {
                            arrivals.push((cause.parse().unwrap(), at));
                        }
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let listed: serde_json::Value = client
        .admin
        .get(format!("{base}/v1/programs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let programs: Vec<String> = listed["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    for program in &programs {
        let response = client
            .admin
            .put(format!("{base}/v1/programs/{program}/webhook"))
            .json(&serde_json::json!({
                "url": format!("http://{address}/hook/{program}"),
                "allow_private_network": true,
                "batch_size": 100,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    for program in &programs {
        while delivery(client, base, program).await["webhook"]["backfill"]["state"] != "done" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    programs
}

async fn delivery(client: &Api, base: &str, program: &str) -> serde_json::Value {
    client
        .admin
        .get(format!("{base}/v1/programs/{program}/delivery"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until every program's webhook has everything on its topics.
async fn until_delivered(client: &Api, base: &str, programs: &[String]) {
    for program in programs {
        loop {
            let s = delivery(client, base, program).await;
            if s["pending"] == 0 && s["retrying"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
