//! What the tests of every deployment compare against (feature `testing`): the domain core
//! applied directly to the same events, with the pipeline's ordering rules and nothing else.

use dsr_core::eligibility::Program;
use dsr_core::reducer::target_household;
use dsr_core::{ApplyError, Event, EventId, Household, HouseholdId, PmtModel};
use std::collections::{HashMap, VecDeque};

/// The records, the number of derived events, and every eligibility change id.
pub struct Reference {
    pub households: HashMap<HouseholdId, Household>,
    pub derived: u64,
    pub change_ids: Vec<EventId>,
}

/// Every event applied with `dsr_core::process` in log order per household; derived events
/// (the receiving side of moves) after the events already in the log, as the topic orders
/// them; an event whose household or member is not there yet waits and is tried again after
/// each later change of its household.
pub fn reference(events: &[Event], programs: &[Program]) -> Reference {
    let model = PmtModel::default_model();
    let ctx = dsr_core::Context {
        model: &model,
        programs,
    };
    let mut states: HashMap<HouseholdId, Option<Household>> = HashMap::new();
    let mut queue: VecDeque<Event> = events.iter().cloned().collect();
    let mut derived = 0;
    let mut change_ids = Vec::new();
    let mut waiting: HashMap<HouseholdId, Vec<Event>> = HashMap::new();
    while let Some(e) = queue.pop_front() {
        let Some(hid) = target_household(&e).cloned() else {
            continue;
        };
        let mut pending = vec![e];
        let mut progressed = false;
        while let Some(e) = pending.pop() {
            let slot = states.entry(hid.clone()).or_default();
            match dsr_core::process(slot, &e, &ctx) {
                Ok(p) => {
                    for effect in &p.effects {
                        queue.push_back(effect.to_event(&e));
                        derived += 1;
                    }
                    change_ids.extend(p.changes.iter().map(|c| c.change_id));
                    if !p.duplicate {
                        progressed = true;
                    }
                }
                Err(ApplyError::UnknownHousehold { .. } | ApplyError::UnknownPerson { .. }) => {
                    waiting.entry(hid.clone()).or_default().push(e);
                }
                Err(_) => {}
            }
            if pending.is_empty() && progressed {
                progressed = false;
                let mut retry = waiting.remove(&hid).unwrap_or_default();
                retry.reverse();
                pending = retry;
            }
        }
    }
    Reference {
        households: states
            .into_iter()
            .filter_map(|(k, v)| v.map(|h| (k, h)))
            .collect(),
        derived,
        change_ids,
    }
}

/// The parts of a record that do not depend on how derived events from other partitions
/// interleave with a household's own events (which ids are "recent", which count as late).
pub fn content(h: &Household) -> Household {
    let mut c = h.clone();
    c.recent_events.clear();
    c.late_events = 0;
    c
}

/// A generated population's registrations and year of household events (area-wide events go
/// to the scale-up processor, not here), deterministic from `seed`.
pub fn population(seed: u64, households: u64) -> Vec<Event> {
    let pop = dsr_synth::fixtures::small_population(seed, households);
    pop.households
        .into_iter()
        .chain(
            pop.events
                .into_iter()
                .filter(|e| !e.payload.is_area_event()),
        )
        .collect()
}

/// The programs of a directory of program files, sorted by id.
pub fn load_programs(dir: &std::path::Path) -> Vec<Program> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the programs directory exists")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    let mut programs: Vec<Program> = files
        .iter()
        .map(|f| Program::from_yaml(&std::fs::read_to_string(f).expect("readable")).expect("valid"))
        .collect();
    programs.sort_by(|a, b| a.id.cmp(&b.id));
    programs
}

/// A real broker with dsr's topics, dsr's schema registry on a free port with dsr's schemas
/// registered, and the codec those ids give: what every Kafka test starts from.
pub struct KafkaFixture {
    pub broker: dsr_log::testing::TestBroker,
    pub config: dsr_log::KafkaConfig,
    pub log: dsr_log::KafkaLog,
    pub registry_url: String,
    pub ids: crate::codec::SchemaIds,
    pub codec: crate::codec::WireCodec,
    pub topics: crate::runner::Topics,
    pub programs: Vec<Program>,
}

impl KafkaFixture {
    /// `repo` is the repository root (for `topics/` and `programs/`).
    pub async fn start(repo: &std::path::Path) -> KafkaFixture {
        use dsr_log::KafkaAdmin;
        let broker = dsr_log::testing::TestBroker::start().expect("the test broker starts");
        let config = dsr_log::KafkaConfig::new(broker.bootstrap());
        let decls = dsr_log::topics::load_dir(&repo.join("topics")).expect("topics/ loads");
        let admin = KafkaAdmin::new(&config).expect("an admin client");
        dsr_log::topics::apply(&admin, &decls)
            .await
            .expect("topics created");
        let registry = std::sync::Arc::new(dsr_schema_registry::Registry::in_memory());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let registry_url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(dsr_schema_registry::api::serve(listener, registry));
        let topics = crate::runner::Topics::default();
        let programs = load_programs(&repo.join("programs"));
        let eligibility: Vec<String> = programs.iter().map(|p| topics.eligibility(&p.id)).collect();
        let eligibility: Vec<&str> = eligibility.iter().map(String::as_str).collect();
        let ids = crate::codec::register(
            &dsr_schema_registry::RegistryClient::new(&registry_url),
            &[topics.household_events.as_str()],
            &topics.changelog,
            &eligibility,
        )
        .await
        .expect("schemas registered");
        KafkaFixture {
            log: dsr_log::KafkaLog::new(config.clone()).expect("a Kafka client"),
            broker,
            config,
            codec: crate::codec::WireCodec::new(ids)
                .with_registry(dsr_schema_registry::RegistryClient::new(&registry_url)),
            registry_url,
            ids,
            topics,
            programs,
        }
    }

    /// Publishes events to `dsr.household-events`, keyed by household, in wire format.
    pub async fn publish(&self, events: &[Event]) {
        use crate::runner::Codec;
        use dsr_log::Log;
        for chunk in events.chunks(10_000) {
            let records: Vec<dsr_log::Record> = chunk
                .iter()
                .map(|e| {
                    dsr_log::Record::new(
                        target_household(e)
                            .expect("household events name their household")
                            .as_str(),
                        self.codec.encode_event(e).expect("events encode"),
                    )
                })
                .collect();
            self.log
                .append(&self.topics.household_events, records)
                .await
                .expect("published");
        }
    }

    /// Every record of every partition of `topic`, as of now.
    pub async fn read_topic(&self, topic: &str) -> Vec<dsr_log::ConsumedRecord> {
        use dsr_log::{Log, PartitionReader, TopicPartition};
        let mut reader = self.log.reader().expect("a reader");
        let mut records = Vec::new();
        for p in 0..self
            .log
            .partition_count(topic)
            .await
            .expect("the topic exists")
        {
            let tp = TopicPartition::new(topic, p);
            let end = self.log.end_offset(&tp).await.expect("offsets");
            let mut from = self.log.beginning_offset(&tp).await.expect("offsets");
            while from < end {
                let batch = reader
                    .read(&tp, from, 10_000, std::time::Duration::from_secs(5))
                    .await
                    .expect("read");
                from = batch.last().map(|r| r.next_offset()).unwrap_or(end);
                records.extend(batch);
            }
        }
        records
    }

    /// The latest changelog record of every household.
    pub async fn changelog(&self) -> std::collections::BTreeMap<HouseholdId, Household> {
        use crate::runner::Codec;
        let mut out = std::collections::BTreeMap::new();
        for r in self.read_topic(&self.topics.changelog).await {
            let h = self
                .codec
                .decode_household(r.value.as_deref().expect("a changelog value"))
                .expect("changelog records decode");
            out.insert(h.household_id.clone(), h);
        }
        out
    }

    /// Every eligibility change id on every program topic, in topic order.
    pub async fn change_ids(&self) -> Vec<uuid::Uuid> {
        let mut ids = Vec::new();
        for p in &self.programs {
            for r in self.read_topic(&self.topics.eligibility(&p.id)).await {
                let id = r
                    .header("dsr-change-id")
                    .expect("every change carries its id");
                ids.push(
                    std::str::from_utf8(id)
                        .expect("utf-8")
                        .parse()
                        .expect("a uuid"),
                );
            }
        }
        ids
    }
}
