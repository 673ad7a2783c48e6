//! What the tests of every deployment compare against (feature `testing`): the domain core
//! applied directly to the same events, with the pipeline's ordering rules and nothing else.

use dsr_core::eligibility::Program;
use dsr_core::reducer::target_household;
use dsr_core::waiting::{retry_waiting, waits, Attempt};
use dsr_core::{EligibilityChange, Event, EventId, Household, HouseholdId, PmtModel};
use std::collections::{HashMap, VecDeque};

/// The records, the number of derived events, and every eligibility change id.
pub struct Reference {
    pub households: HashMap<HouseholdId, Household>,
    pub derived: u64,
    /// Every derived event (joins from moves), in the order the replay produced them.
    pub derived_events: Vec<Event>,
    pub change_ids: Vec<EventId>,
    /// The eligibility change ids of each household.
    pub changes_by_household: HashMap<HouseholdId, Vec<EventId>>,
    /// How many derived events (joins from moves) each household receives.
    pub derived_by_household: HashMap<HouseholdId, u32>,
    /// Households whose record depends on the order in which a join derived from a move and a
    /// later re-registration (`HouseholdRegistered` of an existing household) reach them: both
    /// apply in either order, with different results. The reference applies derived events
    /// after every event already in the log; when events stream in while the pipeline runs,
    /// the join usually comes first.
    pub order_sensitive: std::collections::HashSet<HouseholdId>,
    /// Events were streamed in while the pipeline ran ([`Reference::streamed`]), so the
    /// order-sensitive households can end either way.
    pub streamed: bool,
    /// With [`Reference::streamed`]: the records that end differently when every derived
    /// event (a join from a move) applies right after the move that caused it instead of after
    /// the events already in the log — what happens when events stream in slower than the
    /// pipeline processes them (e.g. a member moves in, then the head dies: who becomes head
    /// depends on which came first). A streamed run may end with either record.
    pub alternative: HashMap<HouseholdId, Household>,
    /// With [`Reference::streamed`], for each household receiving derived events: its own
    /// events in log order and the derived events it receives. After a restart with a
    /// backlog the router and the processor's partitions catch up at different speeds, so a
    /// join can land anywhere among the household's own events; [`Reference::allows`] accepts
    /// the record of any such interleaving (for up to [`MAX_INTERLEAVED`] derived events).
    pub interleavable: HashMap<HouseholdId, (Vec<Event>, Vec<Event>)>,
    pub programs: Vec<Program>,
}

/// Households receiving more derived events than this are checked against the two orders only.
pub const MAX_INTERLEAVED: usize = 2;

impl Reference {
    /// The same reference for a run whose events stream in while the pipeline processes them
    /// (the same `events` and `programs`): also computes the [`Reference::alternative`] records.
    pub fn streamed(mut self, events: &[Event], programs: &[Program]) -> Self {
        self.streamed = true;
        let derived_first = replay(events, programs, DerivedEvents::RightAfterTheirCause);
        for (hid, h) in derived_first.households {
            if self
                .households
                .get(&hid)
                .is_some_and(|mine| content(mine) != content(&h))
            {
                self.alternative.insert(hid, h);
            }
        }
        self.programs = programs.to_vec();
        let mut derived: HashMap<HouseholdId, Vec<Event>> = HashMap::new();
        for d in derived_first.derived_events {
            if let Some(hid) = target_household(&d) {
                derived.entry(hid.clone()).or_default().push(d);
            }
        }
        for e in events {
            if let Some(hid) = target_household(e) {
                if derived.contains_key(hid) {
                    self.interleavable
                        .entry(hid.clone())
                        .or_default()
                        .0
                        .push(e.clone());
                }
            }
        }
        for (hid, joins) in derived {
            self.interleavable.entry(hid).or_default().1 = joins;
        }
        self
    }

    /// Whether `h` is the record of `hid` for some order of its own events (kept in log order)
    /// and the derived events it receives.
    fn some_interleaving_gives(&self, hid: &HouseholdId, h: &Household) -> bool {
        let Some((own, joins)) = self.interleavable.get(hid) else {
            return false;
        };
        if joins.len() > MAX_INTERLEAVED {
            return false;
        }
        let mut orders = vec![joins.clone()];
        if joins.len() == 2 {
            orders.push(vec![joins[1].clone(), joins[0].clone()]);
        }
        for joins in orders {
            for sequence in interleavings(own, &joins) {
                let r = replay(&sequence, &self.programs, DerivedEvents::AfterTheLog);
                if r.households
                    .get(hid)
                    .is_some_and(|got| content(got) == content(h))
                {
                    return true;
                }
            }
        }
        false
    }

    /// Whether `h` is a record this reference allows for `hid`: its own, or in a streamed run
    /// the alternative one.
    pub fn allows(&self, hid: &HouseholdId, h: &Household) -> bool {
        self.households
            .get(hid)
            .is_some_and(|want| content(want) == content(h))
            || (self.streamed
                && (self
                    .alternative
                    .get(hid)
                    .is_some_and(|alt| content(alt) == content(h))
                    || self.some_interleaving_gives(hid, h)))
    }

    /// Whether `hid`'s record can legitimately differ from the reference's (see
    /// [`Reference::order_sensitive`]).
    pub fn record_depends_on_timing(&self, hid: &HouseholdId) -> bool {
        self.streamed && self.order_sensitive.contains(hid)
    }

    /// Whether `hid`'s eligibility change ids can legitimately differ from the reference's:
    /// two derived events from moves processed on different partitions can reach it in either
    /// order; and when events stream in, even one derived event can come before or after the
    /// household's next own event (the record ends the same, the intermediate changes differ).
    pub fn changes_depend_on_timing(&self, hid: &HouseholdId) -> bool {
        let derived = self.derived_by_household.get(hid).copied().unwrap_or(0);
        derived >= 2 || (self.streamed && derived >= 1)
    }
}

/// Every event applied with `dsr_core::process` in log order per household; derived events
/// (the receiving side of moves) after the events already in the log, as the topic orders
/// them; an event whose household or member is not there yet waits and is tried again after
/// each later change of its household.
pub fn reference(events: &[Event], programs: &[Program]) -> Reference {
    replay(events, programs, DerivedEvents::AfterTheLog)
}

/// Every sequence of `own` (in order) with `joins` (in order) inserted at any positions.
fn interleavings(own: &[Event], joins: &[Event]) -> Vec<Vec<Event>> {
    let Some((first, rest)) = joins.split_first() else {
        return vec![own.to_vec()];
    };
    let mut out = Vec::new();
    for at in 0..=own.len() {
        for tail in interleavings(&own[at..], rest) {
            let mut s = own[..at].to_vec();
            s.push(first.clone());
            s.extend(tail);
            out.push(s);
        }
    }
    out
}

/// Where a derived event goes in the reference's queue.
#[derive(Clone, Copy, PartialEq)]
enum DerivedEvents {
    /// After every event already in the log (a pipeline with a backlog).
    AfterTheLog,
    /// Right after the event that caused it (a pipeline keeping up with the events).
    RightAfterTheirCause,
}

fn replay(events: &[Event], programs: &[Program], derived_at: DerivedEvents) -> Reference {
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
    let mut changes_by_household: HashMap<HouseholdId, Vec<EventId>> = HashMap::new();
    let mut derived_by_household: HashMap<HouseholdId, u32> = HashMap::new();
    let mut derived_events = Vec::new();
    while let Some(e) = queue.pop_front() {
        let Some(hid) = target_household(&e).cloned() else {
            continue;
        };
        // Derived events to apply before the next event of the log.
        let mut next: Vec<Event> = Vec::new();
        let slot = states.entry(hid.clone()).or_default();
        let mut apply =
            |e: &Event, slot: &mut Option<Household>| match dsr_core::process(slot, e, &ctx) {
                Ok(p) => {
                    for effect in &p.effects {
                        let d = effect.to_event(e);
                        if let Some(target) = target_household(&d) {
                            *derived_by_household.entry(target.clone()).or_default() += 1;
                        }
                        derived_events.push(d.clone());
                        match derived_at {
                            DerivedEvents::AfterTheLog => queue.push_back(d),
                            DerivedEvents::RightAfterTheirCause => next.push(d),
                        }
                        derived += 1;
                    }
                    change_ids.extend(p.changes.iter().map(|c| c.change_id));
                    changes_by_household
                        .entry(hid.clone())
                        .or_default()
                        .extend(p.changes.iter().map(|c| c.change_id));
                    Attempt::Applied
                }
                Err(err) if waits(&err) => Attempt::Waits(err),
                Err(_) => Attempt::Failed,
            };
        match apply(&e, slot) {
            Attempt::Applied => {
                // The household changed: what waits for it is tried again, in the core's order.
                let list = waiting.entry(hid.clone()).or_default();
                retry_waiting(list, |e| apply(e, slot));
            }
            Attempt::Waits(_) => waiting.entry(hid.clone()).or_default().push(e),
            Attempt::Failed => {}
        }
        for d in next.into_iter().rev() {
            queue.push_front(d);
        }
    }
    // Households re-registered after a move into them.
    let mut moved_into = std::collections::HashSet::new();
    let mut order_sensitive = std::collections::HashSet::new();
    for e in events {
        match &e.payload {
            dsr_core::Payload::PersonMoved(p) => {
                moved_into.insert(&p.to_household_id);
            }
            dsr_core::Payload::HouseholdRegistered(_) => {
                if let Some(hid) = e.envelope.household_id.as_ref() {
                    if moved_into.contains(hid) {
                        order_sensitive.insert(hid.clone());
                    }
                }
            }
            _ => {}
        }
    }
    Reference {
        order_sensitive,
        streamed: false,
        alternative: HashMap::new(),
        interleavable: HashMap::new(),
        programs: Vec::new(),
        derived_events,
        households: states
            .into_iter()
            .filter_map(|(k, v)| v.map(|h| (k, h)))
            .collect(),
        derived,
        change_ids,
        changes_by_household,
        derived_by_household,
    }
}

/// Checks the eligibility changes a run put on the program topics (in topic order) against
/// the households' final records and the reference, and says what is wrong:
///
/// - no change id appears twice;
/// - each household's changes for a program form a valid history (entered, then changed or
///   exited; entered again only after exited) that ends where the household's record says it
///   is (eligible or not, with the same benefit), so a change missing anywhere that matters
///   shows;
/// - a household whose change history does not depend on timing
///   ([`Reference::changes_depend_on_timing`]) has exactly the reference's change ids.
pub fn check_changes(
    expected: &Reference,
    households: &std::collections::BTreeMap<HouseholdId, Household>,
    changes: &[EligibilityChange],
) -> Result<(), String> {
    use dsr_core::eligibility::ChangeKind;
    let mut problems: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let duplicated = changes.iter().filter(|c| !seen.insert(c.change_id)).count();
    if duplicated > 0 {
        problems.push(format!("{duplicated} change ids appear more than once"));
    }
    // (household, program) -> (eligible, benefit) as the history goes.
    let mut state: HashMap<(HouseholdId, String), (bool, f64)> = HashMap::new();
    let mut bad_history = Vec::new();
    let mut by_household: HashMap<HouseholdId, Vec<EventId>> = HashMap::new();
    for c in changes {
        by_household
            .entry(c.household_id.clone())
            .or_default()
            .push(c.change_id);
        let key = (c.household_id.clone(), c.program_id.to_string());
        let (eligible, _) = state.get(&key).copied().unwrap_or((false, 0.0));
        let ok = match c.kind {
            ChangeKind::Entered => !eligible,
            ChangeKind::Changed => eligible,
            ChangeKind::Exited => eligible,
            ChangeKind::Unchanged => false,
        };
        if !ok {
            bad_history.push(format!(
                "{:?} {} for {}",
                c.kind, c.program_id, c.household_id
            ));
        }
        let now_eligible = !matches!(c.kind, ChangeKind::Exited);
        state.insert(key, (now_eligible, c.benefit));
    }
    if !bad_history.is_empty() {
        problems.push(format!(
            "{} changes do not follow from the one before (a change missing before them?), e.g. {:?}",
            bad_history.len(),
            &bad_history[..bad_history.len().min(3)]
        ));
    }
    let mut wrong_end = Vec::new();
    for (hid, h) in households {
        for p in &h.programs {
            let got = state
                .get(&(hid.clone(), p.program_id.to_string()))
                .copied()
                .unwrap_or((false, 0.0));
            let want_benefit = if p.eligible { p.benefit } else { got.1 };
            if got.0 != p.eligible || (p.eligible && (got.1 - want_benefit).abs() > 1e-9) {
                wrong_end.push(format!("{hid} {}", p.program_id));
            }
        }
    }
    if !wrong_end.is_empty() {
        problems.push(format!(
            "{} household programs end elsewhere than their record says, e.g. {:?}",
            wrong_end.len(),
            &wrong_end[..wrong_end.len().min(3)]
        ));
    }
    let mut differ = Vec::new();
    let mut compared = 0;
    for (hid, want) in &expected.changes_by_household {
        if expected.changes_depend_on_timing(hid) {
            continue;
        }
        compared += 1;
        let mut want = want.clone();
        let mut got = by_household.get(hid).cloned().unwrap_or_default();
        want.sort();
        got.sort();
        if want != got {
            differ.push(hid.clone());
        }
    }
    for hid in by_household.keys() {
        if !expected.changes_by_household.contains_key(hid) {
            differ.push(hid.clone());
        }
    }
    if compared * 2 < expected.changes_by_household.len() {
        problems.push(format!(
            "only {compared} of {} households with changes have a timing-independent history: \
             too few to compare with the domain core",
            expected.changes_by_household.len()
        ));
    }
    if !differ.is_empty() {
        problems.push(format!(
            "{} of {compared} households with a timing-independent history have other change ids than the domain core, e.g. {:?}",
            differ.len(),
            &differ[..differ.len().min(3)]
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
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

/// A log the fixtures can hand to another processor or router: a new Kafka client on the same
/// broker, or the same embedded log.
pub trait FixtureLog: dsr_log::Log + Sized + 'static {
    fn another(&self) -> Self;
}

impl FixtureLog for dsr_log::EmbeddedLog {
    fn another(&self) -> Self {
        self.clone()
    }
}

impl FixtureLog for dsr_log::KafkaLog {
    fn another(&self) -> Self {
        dsr_log::KafkaLog::new(self.config().clone()).expect("a Kafka client")
    }
}

/// What keeps a fixture's log alive.
pub enum Backend {
    /// A real broker (nisshi, started by the fixture) and the client settings for it.
    Kafka {
        broker: Box<dsr_log::testing::TestBroker>,
        config: dsr_log::KafkaConfig,
    },
    /// The embedded log's directory, when the fixture made it (a temporary one).
    Embedded(Option<tempfile::TempDir>),
}

/// A log with dsr's topics, dsr's schema registry on a free port with dsr's schemas
/// registered, and the codec those ids give: what every pipeline test starts from, on either
/// adapter ([`Fixture::kafka`] / [`Fixture::embedded`]).
pub struct Fixture<L> {
    pub log: L,
    pub backend: Backend,
    pub registry_url: String,
    pub ids: crate::codec::SchemaIds,
    pub codec: crate::codec::WireCodec,
    pub topics: crate::runner::Topics,
    pub programs: Vec<Program>,
}

/// The fixture on a real broker.
pub type KafkaFixture = Fixture<dsr_log::KafkaLog>;
/// The fixture on the embedded log in a temporary directory.
pub type EmbeddedFixture = Fixture<dsr_log::EmbeddedLog>;

/// Registry and schemas shared by both fixtures: `registry` served on a free port, with dsr's
/// schemas registered (already registered ones keep their ids).
async fn registry_and_schemas(
    repo: &std::path::Path,
    registry: dsr_schema_registry::Registry,
) -> (
    String,
    crate::codec::SchemaIds,
    crate::runner::Topics,
    Vec<Program>,
) {
    let registry = std::sync::Arc::new(registry);
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
        &topics.parked,
        &eligibility,
    )
    .await
    .expect("schemas registered");
    (registry_url, ids, topics, programs)
}

impl Fixture<dsr_log::KafkaLog> {
    /// Starts a broker. `repo` is the repository root (for `topics/` and `programs/`).
    pub async fn start(repo: &std::path::Path) -> KafkaFixture {
        Self::kafka(repo).await
    }

    pub async fn kafka(repo: &std::path::Path) -> KafkaFixture {
        use dsr_log::KafkaAdmin;
        let broker = dsr_log::testing::TestBroker::start().expect("the test broker starts");
        let config = dsr_log::KafkaConfig::new(broker.bootstrap());
        let decls = dsr_log::topics::load_dir(&repo.join("topics")).expect("topics/ loads");
        let admin = KafkaAdmin::new(&config).expect("an admin client");
        dsr_log::topics::apply(&admin, &decls)
            .await
            .expect("topics created");
        let (registry_url, ids, topics, programs) =
            registry_and_schemas(repo, dsr_schema_registry::Registry::in_memory()).await;
        Fixture {
            log: dsr_log::KafkaLog::new(config.clone()).expect("a Kafka client"),
            backend: Backend::Kafka {
                broker: Box::new(broker),
                config,
            },
            codec: crate::codec::WireCodec::new(ids)
                .with_registry(dsr_schema_registry::RegistryClient::new(&registry_url)),
            registry_url,
            ids,
            topics,
            programs,
        }
    }

    pub fn broker(&self) -> &dsr_log::testing::TestBroker {
        match &self.backend {
            Backend::Kafka { broker, .. } => broker,
            Backend::Embedded(_) => unreachable!("a Kafka fixture has a broker"),
        }
    }

    pub fn config(&self) -> &dsr_log::KafkaConfig {
        match &self.backend {
            Backend::Kafka { config, .. } => config,
            Backend::Embedded(_) => unreachable!("a Kafka fixture has a config"),
        }
    }
}

impl Fixture<dsr_log::EmbeddedLog> {
    /// Opens an embedded log in a new temporary directory with dsr's topics.
    pub async fn embedded(repo: &std::path::Path) -> EmbeddedFixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (log, _) = dsr_log::EmbeddedLog::open(dir.path()).expect("the embedded log opens");
        let decls = dsr_log::topics::load_dir(&repo.join("topics")).expect("topics/ loads");
        dsr_log::topics::apply(&log, &decls)
            .await
            .expect("topics created");
        let (registry_url, ids, topics, programs) =
            registry_and_schemas(repo, dsr_schema_registry::Registry::in_memory()).await;
        Fixture {
            log,
            backend: Backend::Embedded(Some(dir)),
            codec: crate::codec::WireCodec::new(ids)
                .with_registry(dsr_schema_registry::RegistryClient::new(&registry_url)),
            registry_url,
            ids,
            topics,
            programs,
        }
    }
}

impl Fixture<dsr_log::EmbeddedLog> {
    /// Opens what `dsr up --data-dir DATA` left in `data` (it must not be running): its log and
    /// its schema registry, so the records it wrote can be read and decoded.
    pub async fn embedded_at(repo: &std::path::Path, data: &std::path::Path) -> EmbeddedFixture {
        let env_kek = std::env::var(dsr_crypto::kek::ENV_VAR).ok();
        let (keyring, _, _) = dsr_crypto::Keyring::open_directory(
            &data.join("security"),
            env_kek.as_deref(),
            None,
            0,
        )
        .expect("dsr up's data keys open");
        let (log, _) =
            dsr_log::EmbeddedLog::open_encrypted(data.join("log"), std::sync::Arc::new(keyring))
                .expect("dsr up's embedded log opens");
        let registry = dsr_schema_registry::Registry::open(data.join("registry"))
            .expect("dsr up's schema registry opens");
        let (registry_url, ids, topics, programs) = registry_and_schemas(repo, registry).await;
        Fixture {
            log,
            backend: Backend::Embedded(None),
            codec: crate::codec::WireCodec::new(ids)
                .with_registry(dsr_schema_registry::RegistryClient::new(&registry_url)),
            registry_url,
            ids,
            topics,
            programs,
        }
    }
}

impl<L: FixtureLog> Fixture<L> {
    /// A household processor on this fixture's log and topics, with its state in `state`.
    pub fn processor(
        &self,
        state: &std::path::Path,
        group: &str,
    ) -> crate::runner::HouseholdProcessor<L, crate::codec::WireCodec> {
        crate::runner::HouseholdProcessor {
            log: self.log.another(),
            codec: crate::codec::WireCodec::new(self.ids)
                .with_registry(dsr_schema_registry::RegistryClient::new(&self.registry_url)),
            state: dsr_store::FjallState::open(state, state_keyring(state))
                .expect("a state directory"),
            model: PmtModel::default_model(),
            programs: self.programs.clone(),
            topics: self.topics.clone(),
            group: group.into(),
            batch_size: 2_000,
            linger: crate::runner::KAFKA_LINGER,
            max_parked_per_household: crate::task::MAX_PARKED_PER_HOUSEHOLD,
            cache_households: crate::task::DEFAULT_CACHE_CAPACITY,
            progress: Default::default(),
        }
    }

    /// Publishes events to `dsr.household-events`, keyed by household, in wire format.
    pub async fn publish(&self, events: &[Event]) {
        use crate::runner::Codec;
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
        use dsr_log::{PartitionReader, TopicPartition};
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

    /// Every eligibility change on every program topic, decoded, in topic order.
    pub async fn changes(&self) -> Vec<EligibilityChange> {
        let mut out = Vec::new();
        for p in &self.programs {
            for r in self.read_topic(&self.topics.eligibility(&p.id)).await {
                let bytes = r.value.as_deref().expect("a change has a value");
                let (_, body) = dsr_contracts::wire::unframe(bytes).expect("wire format");
                out.push(
                    dsr_contracts::avro::fast::decode_eligibility_change(body)
                        .expect("a change decodes"),
                );
            }
        }
        out
    }

    /// Every eligibility change id on every program topic, in topic order.
    pub async fn change_ids(&self) -> Vec<uuid::Uuid> {
        self.changes().await.iter().map(|c| c.change_id).collect()
    }
}

/// The scenario every deployment must pass, one body for both adapters: a generated
/// population's events go in as Avro in Confluent wire format; the processor runs until it has
/// processed every event and derived event; the changelog equals what the domain core computes
/// from the same events, every household has a need score, and the eligibility changes have
/// no duplicates, valid histories and the domain core's ids.
pub async fn generated_population_matches_the_domain_core<L: FixtureLog>(
    fx: &Fixture<L>,
    households: u64,
) {
    use std::sync::atomic::Ordering;
    let events = population(5, households);
    fx.publish(&events).await;
    let expected = reference(&events, &fx.programs);

    let state_dir = tempfile::tempdir().expect("a temporary directory");
    let processor = fx.processor(state_dir.path(), "test-processor");
    let progress = processor.progress.clone();
    let total = events.len() as u64 + expected.derived;
    let watched = progress.clone();
    let stats = run_until(&processor, async move || {
        watched.load(Ordering::Relaxed) >= total
    })
    .await
    .expect("the processor runs");
    assert_eq!(
        progress.load(Ordering::Relaxed),
        total,
        "every event and derived event processed ({stats:?})"
    );
    fx.assert_matches(&expected).await;
}

/// Runs `processor` until `done` (asked every 100 ms) says it is, for at most 10 minutes, then
/// stops it cleanly; what it returned, with how long it took on stderr.
pub async fn run_until<L: dsr_log::Log, C: crate::runner::Codec>(
    processor: &crate::runner::HouseholdProcessor<L, C>,
    mut done: impl AsyncFnMut() -> bool,
) -> Result<crate::runner::Stats, crate::runner::RunError> {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let stats = processor
        .run(async move {
            while !done().await && started.elapsed() < Duration::from_secs(600) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    eprintln!(
        "the processor ran {:.1}s: {stats:?}",
        started.elapsed().as_secs_f64()
    );
    stats
}

impl<L: FixtureLog> Fixture<L> {
    /// [`assert_outputs_match`] on what the topics hold now.
    pub async fn assert_matches(&self, expected: &Reference) {
        let households = self.changelog().await;
        assert_outputs_match(expected, &households, &self.changes().await);
    }
}

/// Whether `households` (a changelog's latest records) are exactly the reference's.
pub fn holds_the_reference(
    expected: &Reference,
    households: &std::collections::BTreeMap<HouseholdId, Household>,
) -> bool {
    households.len() == expected.households.len()
        && households.iter().all(|(hid, h)| {
            expected
                .households
                .get(hid)
                .is_some_and(|e| content(e) == content(h))
        })
}

/// Waits (up to ten minutes) until the changelog holds the reference's records, then returns
/// what is on the topics. (Eligibility changes are acknowledged before the changelog records
/// of the same batch are written, so they are out by then.)
pub async fn wait_for_outputs<L: FixtureLog>(
    fx: &Fixture<L>,
    expected: &Reference,
) -> (
    std::collections::BTreeMap<HouseholdId, Household>,
    Vec<EligibilityChange>,
) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let households = fx.changelog().await;
        if holds_the_reference(expected, &households) || Instant::now() > deadline {
            return (households, fx.changes().await);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The changelog equals the domain core's records, and the eligibility changes are right:
/// none twice, none missing ([`check_changes`]).
pub fn assert_outputs_match(
    expected: &Reference,
    households: &std::collections::BTreeMap<HouseholdId, Household>,
    changes: &[EligibilityChange],
) {
    assert_eq!(
        households.len(),
        expected.households.len(),
        "one record per household"
    );
    let differ: Vec<_> = households
        .iter()
        .filter(|(hid, _)| !expected.record_depends_on_timing(hid))
        .filter(|(hid, h)| !expected.allows(hid, h))
        .map(|(hid, _)| hid.clone())
        .collect();
    if let Some(first) = differ.first() {
        let (want, got) = (&expected.households[first], &households[first]);
        panic!(
            "{} households differ from the domain core, e.g. {first}: version {} vs {} (domain core vs run), members {} vs {}, as_of {:?} vs {:?}; \ndomain core: {want:?}\nrun:         {got:?}",
            differ.len(),
            want.version,
            got.version,
            want.members.len(),
            got.members.len(),
            want.as_of,
            got.as_of,
        );
    }
    assert!(
        households.values().all(|h| h.need_score.is_some()),
        "every household has a need score"
    );
    if let Err(problems) = check_changes(expected, households, changes) {
        panic!("eligibility changes: {problems}");
    }
}

/// The data keys of a test's state directory `state`, kept beside it (`STATE.keys/`), so a
/// processor restarted on the same directory reads what the last one wrote.
pub fn state_keyring(state: &std::path::Path) -> std::sync::Arc<dsr_crypto::Keyring> {
    let (keyring, _, _) =
        dsr_crypto::Keyring::open_directory(&state.with_extension("keys"), None, None, 0)
            .expect("the state's data keys open");
    std::sync::Arc::new(keyring)
}
