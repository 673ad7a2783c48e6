//! The router on a real broker, with the household processor behind it: source topics in,
//! households out.
//!
//! 1. A first router sees an income report for a person nobody has registered yet (it parks
//!    it, durably), a malformed record (dead-lettered) and an area-wide shock (forwarded to
//!    the area topic); then it stops.
//! 2. The person's household is registered on another source topic. A second router (taking
//!    over the parked event from the parked topic) and the household processor run: the income
//!    report reaches the household, and an event for a person who never appears is
//!    dead-lettered after the maximum wait, saying why.

use dsr_core::codes::{IncomeSource, Sex};
use dsr_core::{Event, HouseholdId};
use dsr_log::{Log, Record};
use dsr_pipeline::codec::WireCodec;
use dsr_pipeline::runner::{Codec, ORIGIN_TOPIC_HEADER, REASON_HEADER};
use dsr_pipeline::source_router::{RouterTopics, SourceRouter};
use dsr_pipeline::testing::KafkaFixture;
use dsr_schema_registry::RegistryClient;
use dsr_synth::fixtures;
use std::path::Path;
use std::time::{Duration, Instant};

fn person_only(mut e: Event, name: &str) -> Event {
    e.envelope.household_id = None;
    e.envelope.event_id = fixtures::event_id(name);
    e
}

fn router(fx: &KafkaFixture, max_wait: Duration) -> SourceRouter<dsr_log::KafkaLog, WireCodec> {
    SourceRouter {
        log: dsr_log::KafkaLog::new(fx.config().clone()).unwrap(),
        codec: WireCodec::new(fx.ids).with_registry(RegistryClient::new(&fx.registry_url)),
        topics: RouterTopics::default(),
        group: "test-router".into(),
        batch_size: 500,
        max_wait,
    }
}

async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_finds_households_parks_unknown_people_and_dead_letters_bad_records() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = KafkaFixture::start(repo).await;
    let topics = RouterTopics::default();
    let source = |name: &str| format!("dsr.life-events.{name}");
    let encode = |e: &Event| fx.codec.encode_event(e).unwrap();

    // Phase 1: before the household exists.
    let income = person_only(
        fixtures::income(
            "H00000051",
            "P0000005100",
            IncomeSource::Wages,
            75.0,
            fixtures::at(2025, 11, 4),
        ),
        "router-income",
    );
    let shock = fixtures::small_population(4, 50)
        .events
        .into_iter()
        .find(|e| e.payload.is_area_event())
        .expect("the generator declares a shock");
    let malformed = dsr_contracts::wire::frame(fx.ids.life_event, &[0x04, 0xff, 0xff]);
    fx.log
        .append(
            &source("tax"),
            vec![Record::new("P0000005100", encode(&income))],
        )
        .await
        .unwrap();
    fx.log
        .append(&source("health"), vec![Record::new("X", malformed.clone())])
        .await
        .unwrap();
    fx.log
        .append(
            &source("disaster"),
            vec![Record::new("AREA", encode(&shock))],
        )
        .await
        .unwrap();

    let first = router(&fx, Duration::from_secs(600));
    let parked_topic = topics.parked.clone();
    let stats = first
        .run(async {
            until("the parked event", Duration::from_secs(120), async || {
                fx.read_topic(&parked_topic).await.len() == 1
                    && fx.read_topic(&topics.area_events).await.len() == 1
                    && fx.read_topic(&topics.dead_letter).await.len() == 1
            })
            .await
        })
        .await
        .unwrap();
    assert_eq!(
        (stats.parked, stats.area, stats.dead_letters),
        (1, 1, 1),
        "{stats:?}"
    );
    let area = fx.read_topic(&topics.area_events).await;
    assert_eq!(
        fx.codec
            .decode_event(area[0].value.as_deref().unwrap())
            .unwrap(),
        shock
    );
    let dead = fx.read_topic(&topics.dead_letter).await;
    assert_eq!(dead[0].value.as_deref(), Some(malformed.as_slice()));
    assert_eq!(
        dead[0].header(ORIGIN_TOPIC_HEADER),
        Some(source("health").as_bytes())
    );
    assert!(!dead[0].header(REASON_HEADER).unwrap_or_default().is_empty());
    assert!(
        fx.read_topic(&fx.topics.household_events).await.is_empty(),
        "nothing forwarded for a person nobody knows"
    );

    // Phase 2: the household is registered; someone nobody will ever register shows up.
    let registered = fixtures::household("H00000051")
        .head(Sex::Male, 45)
        .income(IncomeSource::Wages, 50.0)
        .build();
    let stranger = person_only(
        fixtures::income(
            "H00000099",
            "P0000009900",
            IncomeSource::Wages,
            10.0,
            fixtures::at(2025, 11, 5),
        ),
        "router-stranger",
    );
    fx.log
        .append(
            &source("crvs"),
            vec![Record::new("H00000051", encode(&registered))],
        )
        .await
        .unwrap();
    fx.log
        .append(
            &source("tax"),
            vec![Record::new("P0000009900", encode(&stranger))],
        )
        .await
        .unwrap();

    let second = router(&fx, Duration::from_secs(15));
    let state = tempfile::tempdir().unwrap();
    let processor = fx.processor(state.path(), "router-test-processor");
    let stop = tokio::sync::watch::channel(false);
    let (routed, processed, ()) = tokio::join!(
        second.run(async {
            let mut rx = stop.1.clone();
            let _ = rx.wait_for(|s| *s).await;
        }),
        processor.run(async {
            let mut rx = stop.1.clone();
            let _ = rx.wait_for(|s| *s).await;
        }),
        async {
            until(
                "the income report in the household",
                Duration::from_secs(180),
                async || {
                    fx.changelog()
                        .await
                        .get(&HouseholdId::new("H00000051"))
                        .is_some_and(|h| h.recent_events.contains(&income.envelope.event_id))
                },
            )
            .await;
            until(
                "the stranger's dead letter",
                Duration::from_secs(120),
                async || fx.read_topic(&topics.dead_letter).await.len() == 2,
            )
            .await;
            stop.0.send(true).unwrap();
        }
    );
    let routed = routed.unwrap();
    processed.unwrap();
    assert_eq!(
        routed.released, 1,
        "the parked income report, taken over: {routed:?}"
    );
    let forwarded: Vec<Event> = fx
        .read_topic(&fx.topics.household_events)
        .await
        .iter()
        .map(|r| fx.codec.decode_event(r.value.as_deref().unwrap()).unwrap())
        .collect();
    let mut with_household = income.clone();
    with_household.envelope.household_id = Some(HouseholdId::new("H00000051"));
    assert_eq!(forwarded.len(), 2, "{forwarded:#?}");
    assert!(forwarded.contains(&registered));
    assert!(
        forwarded.contains(&with_household),
        "the router fills in the household"
    );
    let dead = fx.read_topic(&topics.dead_letter).await;
    let stranger_letter = dead
        .iter()
        .find(|r| r.header(ORIGIN_TOPIC_HEADER) == Some(source("tax").as_bytes()))
        .expect("the stranger's dead letter");
    let reason = String::from_utf8_lossy(stranger_letter.header(REASON_HEADER).unwrap());
    assert!(
        reason.contains("P0000009900") && reason.contains("not known to the registry"),
        "{reason}"
    );
    assert_eq!(
        fx.codec
            .decode_event(stranger_letter.value.as_deref().unwrap())
            .unwrap(),
        stranger
    );
    // Nothing waits any more: the parked topic's records are all deleted (tombstones last).
    let mut last: std::collections::HashMap<Vec<u8>, bool> = Default::default();
    for r in fx.read_topic(&topics.parked).await {
        last.insert(r.key.clone().unwrap(), r.value.is_some());
    }
    assert!(last.values().all(|live| !live), "{last:?}");
}
