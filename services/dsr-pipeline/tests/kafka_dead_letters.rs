//! Bad records on a real broker: malformed Avro, an unknown schema id, an unknown enum symbol
//! (written with a newer schema registered through dsr's registry), and events for a household
//! that never appears. Each goes to `dsr.dead-letter` with its original bytes, its reason and
//! where it came from, and the good record after each of them is still processed.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use dsr_contracts::wire;
use dsr_core::codes::{IncomeSource, Sex};
use dsr_core::{Event, HouseholdId};
use dsr_log::{Log, Record};
use dsr_pipeline::runner::{
    Codec, ORIGIN_OFFSET_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_TOPIC_HEADER, REASON_HEADER,
};
use dsr_pipeline::testing::KafkaFixture;
use dsr_schema_registry::RegistryClient;
use dsr_synth::fixtures;
use std::path::Path;
use std::time::{Duration, Instant};

const HOUSEHOLD: &str = "H-DLQ";

fn income(n: u32) -> Event {
    let mut e = fixtures::income(
        HOUSEHOLD,
        "H-DLQ-00",
        IncomeSource::Agriculture,
        40.0 + f64::from(n),
        fixtures::at(2025, 11, n),
    );
    e.envelope.event_id = fixtures::event_id(&format!("dlq-income-{n}"));
    e
}

/// The current `LifeEvent` schema with one more `EventType` symbol: what a source system on a
/// newer release might write.
fn schema_with_a_new_event_type() -> (String, Schema, u32) {
    let mut json = serde_json::to_value(dsr_contracts::life_event_schema()).unwrap();
    let fields = json["fields"].as_array_mut().unwrap();
    let event_type = fields
        .iter_mut()
        .find(|f| f["name"] == "event_type")
        .unwrap();
    let symbols = event_type["type"]["symbols"].as_array_mut().unwrap();
    symbols.push("PersonAdopted".into());
    let index = symbols.len() as u32 - 1;
    let text = json.to_string();
    let schema = Schema::parse_str(&text).unwrap();
    (text, schema, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic_and_the_next_record_is_processed() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = KafkaFixture::start(repo).await;
    let topic = fx.topics.household_events.clone();

    let registered = fixtures::household(HOUSEHOLD)
        .head(Sex::Female, 40)
        .income(IncomeSource::Agriculture, 30.0)
        .build();
    let good = |e: &Event| Record::new(HOUSEHOLD, fx.codec.encode_event(e).unwrap());

    // 1. Malformed Avro: dsr's schema id, a body that is not a LifeEvent.
    let malformed = wire::frame(fx.ids.life_event, &[0x02, 0xff, 0xff, 0xff, 0x7f, 0x01]);
    // 2. An id the registry never gave out, with a valid body.
    let valid = fx.codec.encode_event(&income(20)).unwrap();
    let unknown_id = wire::frame(424_242, &valid[wire::HEADER_LEN..]);
    // 3. A newer schema, registered through dsr's registry API (backward compatible: it only
    //    adds a symbol), and an event of the new type.
    let (text, newer, new_symbol) = schema_with_a_new_event_type();
    let newer_id = RegistryClient::new(&fx.registry_url)
        .register(&format!("{topic}-value"), &text)
        .await
        .expect("a symbol added at the end is a backward-compatible change");
    assert_ne!(newer_id, fx.ids.life_event);
    let mut value = GenericDatumReader::builder(dsr_contracts::life_event_schema())
        .build()
        .unwrap()
        .read_value(&mut &valid[wire::HEADER_LEN..])
        .unwrap();
    let Value::Record(fields) = &mut value else {
        panic!("a record")
    };
    for (name, v) in fields.iter_mut() {
        if name == "event_type" {
            *v = Value::Enum(new_symbol, "PersonAdopted".into());
        }
    }
    let body = GenericDatumWriter::builder(&newer)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let unknown_symbol = wire::frame(newer_id, &body);
    // 4. Events for a household that never appears: parked, and with a limit of two waiting
    //    events, the oldest of three goes to the dead-letter topic.
    let nobody: Vec<Event> = (1..=3)
        .map(|n| {
            let mut e = fixtures::income(
                "H-NOBODY",
                "H-NOBODY-00",
                IncomeSource::Agriculture,
                10.0,
                fixtures::at(2025, 11, n),
            );
            e.envelope.event_id = fixtures::event_id(&format!("nobody-{n}"));
            e
        })
        .collect();

    let records = vec![
        good(&registered),
        Record::new(HOUSEHOLD, malformed.clone()),
        good(&income(1)),
        Record::new(HOUSEHOLD, unknown_id.clone()),
        good(&income(2)),
        Record::new(HOUSEHOLD, unknown_symbol.clone()),
        good(&income(3)),
        Record::new(HOUSEHOLD, fx.codec.encode_event(&nobody[0]).unwrap()),
        Record::new(HOUSEHOLD, fx.codec.encode_event(&nobody[1]).unwrap()),
        Record::new(HOUSEHOLD, fx.codec.encode_event(&nobody[2]).unwrap()),
        good(&income(4)),
    ];
    let appended = fx.log.append(&topic, records).await.unwrap();
    let partition = appended[0].partition;
    assert!(appended.iter().all(|a| a.partition == partition));
    let offset_of = |i: usize| {
        appended[i]
            .offset
            .expect("a fresh append on a running broker has offsets")
            .to_string()
    };

    let state = tempfile::tempdir().unwrap();
    let mut processor = fx.processor(state.path(), "dlq-test");
    processor.max_parked_per_household = 2;
    let last_good = income(4).envelope.event_id;
    let started = Instant::now();
    let changelog_has_last = || async {
        fx.changelog()
            .await
            .get(&HouseholdId::new(HOUSEHOLD))
            .is_some_and(|h| h.recent_events.contains(&last_good))
    };
    let stats = processor
        .run(async {
            while !changelog_has_last().await && started.elapsed() < Duration::from_secs(180) {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await
        .unwrap();
    let changelog = fx.changelog().await;
    let household = &changelog[&HouseholdId::new(HOUSEHOLD)];
    for n in 1..=4 {
        assert!(
            household
                .recent_events
                .contains(&income(n).envelope.event_id),
            "good income event {n} after a bad record was applied ({stats:?})"
        );
    }
    assert!(
        !changelog.contains_key(&HouseholdId::new("H-NOBODY")),
        "a household nobody registered has no record"
    );

    let dead = fx.read_topic(&fx.topics.dead_letter).await;
    let header = |r: &dsr_log::ConsumedRecord, h: &str| {
        String::from_utf8(r.header(h).unwrap_or_default().to_vec()).unwrap()
    };
    let reasons: Vec<String> = dead.iter().map(|r| header(r, REASON_HEADER)).collect();
    assert_eq!(dead.len(), 4, "four dead letters: {reasons:#?}");
    for r in &dead {
        assert_eq!(header(r, ORIGIN_TOPIC_HEADER), topic);
        assert_eq!(header(r, ORIGIN_PARTITION_HEADER), partition.to_string());
    }
    let find = |offset: String| {
        dead.iter()
            .find(|r| header(r, ORIGIN_OFFSET_HEADER) == offset)
            .unwrap_or_else(|| panic!("no dead letter from offset {offset}: {reasons:#?}"))
    };

    let r = find(offset_of(1));
    assert_eq!(
        r.value.as_deref(),
        Some(malformed.as_slice()),
        "original bytes"
    );
    assert!(!header(r, REASON_HEADER).is_empty());

    let r = find(offset_of(3));
    assert_eq!(r.value.as_deref(), Some(unknown_id.as_slice()));
    assert!(
        header(r, REASON_HEADER).contains("unknown schema id 424242"),
        "{}",
        header(r, REASON_HEADER)
    );

    let r = find(offset_of(5));
    assert_eq!(r.value.as_deref(), Some(unknown_symbol.as_slice()));
    let reason = header(r, REASON_HEADER);
    assert!(
        reason.contains(&format!("schema id {newer_id}")) && reason.contains("PersonAdopted"),
        "{reason}"
    );

    // The third event for H-NOBODY pushed the first out of the waiting list: its dead letter
    // names the event that waited and why.
    let r = find(offset_of(9));
    assert_eq!(
        r.value.as_deref(),
        Some(fx.codec.encode_event(&nobody[0]).unwrap().as_slice()),
        "the dead letter carries the event that waited, not the one that pushed it out"
    );
    let reason = header(r, REASON_HEADER);
    assert!(
        reason.contains(&nobody[0].envelope.event_id.to_string())
            && reason.contains("waited too long")
            && reason.contains("H-NOBODY"),
        "{reason}"
    );
}
