//! `dsr up`: the whole registry in one process on the embedded default — the embedded log,
//! the router, the household processor, the serving store and the HTTP API with the schema
//! registry — with every byte of data in `--data-dir`. No Kafka, no database server.
//!
//! The processing code is the one `dsr route` and `dsr process` run on Kafka; only the log
//! adapter differs (`dsr_log::EmbeddedLog`).

use super::{now_ms, shutdown_signal};
use anyhow::{bail, Context, Result};
use clap::Args;
use dsr_api::ApiState;
use dsr_log::{EmbeddedLog, Log};
use dsr_pipeline::codec::{register, WireCodec};
use dsr_pipeline::runner::{HouseholdProcessor, Topics};
use dsr_pipeline::source_router::{RouterTopics, SourceRouter};
use dsr_schema_registry::{Registry, RegistryClient};
use dsr_serving::{Progress, Projector, ServingStore};

/// The consumer groups of `dsr up`'s own stages. Removing one would make its stage read the
/// log from the beginning again, so `dsr log delete-group` refuses them.
pub const STAGE_GROUPS: [&str; 4] = [ROUTER_GROUP, PROCESSOR_GROUP, SERVING_GROUP, SCALE_UP_GROUP];
const ROUTER_GROUP: &str = "dsr-router";
const PROCESSOR_GROUP: &str = "dsr-household-processor";
const SERVING_GROUP: &str = "dsr-serving";
const SCALE_UP_GROUP: &str = "dsr-scale-up";
use dsr_store::FjallState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The command line of `dsr up` (and `dsr demo`). Every setting can also come from the
/// environment (`DSR_*`) or a configuration file (`--config dsr.toml`); a flag wins over the
/// environment, which wins over the file, which wins over the default.
#[derive(Args, Clone)]
pub struct Up {
    /// A TOML configuration file with any of the settings below (by their long names, with
    /// underscores: `data_dir = "/var/lib/dsr"`).
    #[arg(long, env = "DSR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where everything is kept (log, schema registry, processor state, serving store)
    /// [default: dsr-data].
    #[arg(long, env = "DSR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the HTTP API (and the schema registry API) listens [default: 127.0.0.1:8080].
    #[arg(long, env = "DSR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Topic declarations [default: topics].
    #[arg(long, env = "DSR_TOPICS")]
    pub topics: Option<PathBuf>,
    /// Program definitions [default: programs].
    #[arg(long, env = "DSR_PROGRAMS")]
    pub programs: Option<PathBuf>,
    /// Need-score model [default: the shipped one].
    #[arg(long, env = "DSR_MODEL")]
    pub model: Option<PathBuf>,
    /// Records per batch in the router and the processor [default: 10000]. Under load a
    /// batch's fixed costs (a state sync, a group commit) are shared by more events; at a low
    /// rate a poll returns what there is, so nothing waits for a batch to fill.
    #[arg(long, env = "DSR_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// How long an event for a person not known yet waits before it is dead-lettered, in
    /// seconds [default: 3600].
    #[arg(long, env = "DSR_MAX_WAIT_SECONDS")]
    pub max_wait_seconds: Option<u64>,
    /// Household records each partition's processor keeps in memory (about 2 KB each; 12
    /// partitions) [default: 10000]. More is faster when most households get events, less
    /// keeps memory down; the store on disk holds every household either way.
    #[arg(long, env = "DSR_CACHE_HOUSEHOLDS")]
    pub cache_households: Option<usize>,
    /// A file holding the key-encryption key (64 hex digits) that wraps the data keys sealing
    /// personal data at rest. `DSR_KEK` (the key itself) wins over it; without either, dsr
    /// generates one in DATA_DIR/security/kek.key (fine on a laptop, not in production).
    #[arg(long, env = "DSR_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// A PEM file of certificate authorities trusted for `https` webhook targets besides the
    /// system's (e.g. the ministry's own CA).
    #[arg(long, env = "DSR_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// The geographic master list (CSV `code,name,level,parent_code`, as `dsr generate`
    /// writes `areas.csv`) [default: DATA_DIR/areas.csv when it exists]. Scale-up needs it.
    #[arg(long, env = "DSR_AREAS")]
    pub areas: Option<PathBuf>,
    /// Scale-up rules agreed in advance (`*.yaml` or `*.json`, one rule a file), imported as
    /// drafts at start when the rule book does not hold them yet [default: scale-up, when it
    /// exists].
    #[arg(long, env = "DSR_SCALE_UP_RULES")]
    pub scale_up_rules: Option<PathBuf>,
    /// Seconds between compaction passes over the embedded log: the household changelog keeps
    /// each household's latest record, topics with a retention lose their old records
    /// (`topics/`), superseded offset commits go. 0 turns compaction off [default: 600].
    #[arg(long, env = "DSR_COMPACTION_SECONDS")]
    pub compaction_seconds: Option<u64>,
    /// A pass runs only once this share of the log was written since the last one (or a day
    /// after it), like Kafka's `min.cleanable.dirty.ratio`: a pass reads the whole log twice.
    /// 0 runs one every --compaction-seconds [default: 0.5].
    #[arg(long, env = "DSR_COMPACTION_MIN_DIRTY_RATIO")]
    pub compaction_min_dirty_ratio: Option<f64>,
    /// Size of the embedded log's segment files, in MiB. Compaction reaches a record once its
    /// segment is full [default: 256].
    #[arg(long, env = "DSR_LOG_SEGMENT_MB")]
    pub log_segment_mb: Option<u64>,
}

/// The configuration file: the same settings, all optional; an unknown key is an error (a
/// misspelt setting must not be ignored silently).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    topics: Option<PathBuf>,
    programs: Option<PathBuf>,
    model: Option<PathBuf>,
    batch_size: Option<usize>,
    max_wait_seconds: Option<u64>,
    cache_households: Option<usize>,
    kek_file: Option<PathBuf>,
    webhook_ca_file: Option<PathBuf>,
    areas: Option<PathBuf>,
    scale_up_rules: Option<PathBuf>,
    compaction_seconds: Option<u64>,
    compaction_min_dirty_ratio: Option<f64>,
    log_segment_mb: Option<u64>,
}

/// `dsr up`'s settings, resolved (flags, environment, file, defaults) and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct UpConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub topics: PathBuf,
    pub programs: PathBuf,
    pub model: Option<PathBuf>,
    pub batch_size: usize,
    pub max_wait_seconds: u64,
    pub cache_households: usize,
    pub kek_file: Option<PathBuf>,
    pub webhook_ca_file: Option<PathBuf>,
    pub areas: Option<PathBuf>,
    pub scale_up_rules: Option<PathBuf>,
    /// 0: no compaction.
    pub compaction_seconds: u64,
    /// Share of the log written since the last pass that makes the next one due.
    pub compaction_min_dirty_ratio: f64,
    pub log_segment_mb: u64,
}

impl Up {
    /// Merges the flags and environment with the configuration file and the defaults, and
    /// validates the result.
    pub fn resolve(self) -> Result<UpConfig> {
        let file = match &self.config {
            None => ConfigFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the configuration file {}", path.display())
                })?;
                toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "the configuration file {} is not valid: {e}\nsettings: data_dir, listen, topics, programs, model, batch_size, max_wait_seconds, cache_households, kek_file, webhook_ca_file, areas, scale_up_rules, compaction_seconds, compaction_min_dirty_ratio, log_segment_mb",
                        path.display()
                    )
                })?
            }
        };
        let config = UpConfig {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| "dsr-data".into()),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            topics: self
                .topics
                .or(file.topics)
                .unwrap_or_else(|| "topics".into()),
            programs: self
                .programs
                .or(file.programs)
                .unwrap_or_else(|| "programs".into()),
            model: self.model.or(file.model),
            batch_size: self.batch_size.or(file.batch_size).unwrap_or(10_000),
            max_wait_seconds: self
                .max_wait_seconds
                .or(file.max_wait_seconds)
                .unwrap_or(3600),
            cache_households: self
                .cache_households
                .or(file.cache_households)
                .unwrap_or(dsr_pipeline::task::DEFAULT_CACHE_CAPACITY),
            kek_file: self.kek_file.or(file.kek_file),
            webhook_ca_file: self.webhook_ca_file.or(file.webhook_ca_file),
            areas: self.areas.or(file.areas),
            scale_up_rules: self.scale_up_rules.or(file.scale_up_rules),
            compaction_seconds: self
                .compaction_seconds
                .or(file.compaction_seconds)
                .unwrap_or(600),
            compaction_min_dirty_ratio: self
                .compaction_min_dirty_ratio
                .or(file.compaction_min_dirty_ratio)
                .unwrap_or(dsr_log::embedded::compaction::PassPolicy::DEFAULT_MIN_DIRTY_RATIO),
            log_segment_mb: self
                .log_segment_mb
                .or(file.log_segment_mb)
                .unwrap_or(dsr_log::embedded::journal::SEGMENT_BYTES >> 20),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn run(self) -> Result<()> {
        let config = self.resolve()?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(config.serve(None))
    }
}

impl UpConfig {
    fn validate(&self) -> Result<()> {
        if !self.topics.is_dir() {
            bail!(
                "the topic declarations directory `{}` does not exist; run dsr up from the \
                 repository root or set topics (--topics DIR, DSR_TOPICS, or the file)",
                self.topics.display()
            );
        }
        if !self.programs.is_dir() {
            bail!(
                "the program definitions directory `{}` does not exist; run dsr up from the \
                 repository root or set programs (--programs DIR, DSR_PROGRAMS, or the file)",
                self.programs.display()
            );
        }
        if let Some(model) = &self.model {
            if !model.is_file() {
                bail!(
                    "the need-score model file `{}` does not exist",
                    model.display()
                );
            }
        }
        if self.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.compaction_min_dirty_ratio) {
            bail!(
                "compaction_min_dirty_ratio must be between 0 and 1 (it is {}): the share of \
                 the log written since the last compaction pass that makes the next one due",
                self.compaction_min_dirty_ratio
            );
        }
        if !(1..=4096).contains(&self.log_segment_mb) {
            bail!(
                "log_segment_mb must be between 1 and 4096 MiB (it is {})",
                self.log_segment_mb
            );
        }
        if let Some(ca) = &self.webhook_ca_file {
            if !ca.is_file() {
                bail!(
                    "the webhook CA file `{}` does not exist (webhook_ca_file: a PEM file of CA certificates)",
                    ca.display()
                );
            }
        }
        if let Some(areas) = &self.areas {
            if !areas.is_file() {
                bail!(
                    "the geographic master list `{}` does not exist (areas: a CSV file code,name,level,parent_code; `dsr generate` writes one as areas.csv)",
                    areas.display()
                );
            }
        }
        if let Some(dir) = &self.scale_up_rules {
            if !dir.is_dir() {
                bail!(
                    "the scale-up rules directory `{}` does not exist (scale_up_rules: a directory of *.yaml or *.json rules)",
                    dir.display()
                );
            }
        }
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            bail!(
                "the data directory `{}` is a file, not a directory",
                self.data_dir.display()
            );
        }
        Ok(())
    }

    /// The geographic master list: `areas`, or DATA_DIR/areas.csv when it exists.
    fn master_list(&self) -> Result<Option<(dsr_core::areas::AreaList, PathBuf)>> {
        let path = match &self.areas {
            Some(p) => p.clone(),
            None => {
                let p = self.data_dir.join("areas.csv");
                if !p.is_file() {
                    return Ok(None);
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the geographic master list {}", path.display()))?;
        let list = dsr_core::areas::AreaList::from_csv(&text).with_context(|| {
            format!(
                "the geographic master list {} cannot be used",
                path.display()
            )
        })?;
        Ok(Some((list, path)))
    }

    /// Runs everything; `demo`, when given, is started once the API listens (`dsr demo`).
    pub(crate) async fn serve(self, demo: Option<super::demo::Demo>) -> Result<()> {
        let model = super::load_model(self.model.as_deref())?;
        let programs = super::load_programs(&self.programs)?;
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating the data directory {}", self.data_dir.display()))?;
        // Held until `serve` returns (or the process ends).
        let _lock = super::lock_data_dir(&self.data_dir)?;

        // The data keys that seal personal data at rest, wrapped by the key-encryption key.
        let security_dir = self.data_dir.join("security");
        let env_kek = std::env::var(dsr_crypto::kek::ENV_VAR).ok();
        let (keyring, kek, created) = dsr_crypto::Keyring::open_directory(
            &security_dir,
            env_kek.as_deref(),
            self.kek_file.as_deref(),
            now_ms(),
        )
        .context("opening the data keys")?;
        eprintln!(
            "dsr up: personal data is encrypted at rest (AES-256-GCM, data key {}{}); key-encryption key {} from {}",
            keyring.active_key(),
            if created { ", created now" } else { "" },
            kek.fingerprint(),
            kek.source
        );
        if kek.is_in_data_directory() {
            eprintln!(
                "dsr up: warning: the key-encryption key is kept in the data directory, so a copy of \
                 the directory can be read; in production give it with DSR_KEK or --kek-file from \
                 a separate secret store (docs/security.md)"
            );
        }
        let keyring = Arc::new(keyring);

        // The log, with dsr's topics.
        let (log, report) = EmbeddedLog::open_encrypted_with_segment_bytes(
            self.data_dir.join("log"),
            Arc::clone(&keyring),
            self.log_segment_mb << 20,
        )?;
        eprintln!(
            "dsr up: log {}: {report}",
            self.data_dir.join("log").display()
        );
        let decls = dsr_log::topics::load_dir(&self.topics)?;
        let applied = dsr_log::topics::apply(&log, &decls).await?;
        if !applied.is_clean() {
            eprintln!("dsr up: topics differ from their declarations:\n{applied}");
        }

        // The schema registry: served on the API port for clients, and on a loopback port of
        // its own for dsr's codecs (which need the ids before the API can start).
        let registry = Arc::new(
            Registry::open(self.data_dir.join("registry"))
                .context("opening the schema registry")?,
        );
        let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let registry_url = format!("http://{}", internal.local_addr()?);
        tokio::spawn(dsr_schema_registry::api::serve(
            internal,
            Arc::clone(&registry),
        ));
        let client = RegistryClient::new(&registry_url);
        let topics = Topics::default();
        let router_topics = RouterTopics::default();
        let eligibility_topics: Vec<String> =
            programs.iter().map(|p| topics.eligibility(&p.id)).collect();
        let eligibility: Vec<&str> = eligibility_topics.iter().map(String::as_str).collect();
        let mut life_event_topics: Vec<&str> =
            router_topics.sources.iter().map(String::as_str).collect();
        life_event_topics.extend([
            router_topics.household_events.as_str(),
            router_topics.area_events.as_str(),
            router_topics.parked.as_str(),
        ]);
        let ids = register(
            &client,
            &life_event_topics,
            &topics.changelog,
            &topics.parked,
            &eligibility,
        )
        .await
        .context("registering dsr's schemas")?;
        let codec = || WireCodec::new(ids).with_registry(client.clone());

        let ingest_topic = router_topics
            .sources
            .iter()
            .find(|t| t.ends_with("legacy-http"))
            .cloned()
            .context("no legacy-http source topic among the router's sources")?;
        log.partition_count(&ingest_topic).await?;

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };

        let router = SourceRouter {
            log: log.clone(),
            codec: codec(),
            topics: router_topics,
            group: ROUTER_GROUP.into(),
            batch_size: self.batch_size,
            max_wait: Duration::from_secs(self.max_wait_seconds),
        };
        let state = FjallState::open(self.data_dir.join("processor"), Arc::clone(&keyring))?;
        // Delivery to the programs: webhooks, dead letters, the pull feed.
        let delivery_dir = self.data_dir.join("delivery");
        let delivery = Arc::new(super::with_webhook_ca(
            dsr_delivery::Delivery::new(
                super::program_topics(&programs, &topics),
                dsr_delivery::Subscriptions::open(&delivery_dir, Arc::clone(&keyring))
                    .context("opening the webhook subscriptions")?,
                dsr_delivery::DeadLetters::open(
                    &delivery_dir.join("dead-letters"),
                    Arc::clone(&keyring),
                )
                .context("opening the delivery dead-letter store")?,
                Arc::new(log.clone()),
            ),
            self.webhook_ca_file.as_deref(),
        )?);
        // The API shows (and previews against) each program's latest activated rule version;
        // each processor partition keeps the version it has met in its own state.
        let mut program_list = programs.clone();
        let activated =
            dsr_pipeline::rules::activations(&log, &codec(), &topics.program_rules).await?;
        dsr_pipeline::rules::overlay(&mut program_list, &activated)
            .context("an activated rule version in dsr.program-rules does not compile")?;
        for p in &program_list {
            if programs
                .iter()
                .any(|f| f.id == p.id && f.rule_version < p.rule_version)
            {
                eprintln!(
                    "dsr up: program {} runs rule version {} (activated; the file has an older one)",
                    p.id, p.rule_version
                );
            }
        }
        let processor = HouseholdProcessor {
            log: log.clone(),
            codec: codec(),
            state: state.clone(),
            model: model.clone(),
            programs,
            topics: topics.clone(),
            group: PROCESSOR_GROUP.into(),
            batch_size: self.batch_size,
            // A poll of the embedded log returns all there is: no waiting for more.
            linger: std::time::Duration::ZERO,
            max_parked_per_household: dsr_pipeline::task::MAX_PARKED_PER_HOUSEHOLD,
            cache_households: self.cache_households,
            progress: Default::default(),
        };
        let store = ServingStore::open(self.data_dir.join("serving"), Arc::clone(&keyring))?;
        let serving = Progress::default();
        let mut projector = Projector {
            log: log.clone(),
            codec: codec(),
            store: store.clone(),
            changelog: topics.changelog.clone(),
            group: SERVING_GROUP.into(),
            // Each poll is one synced batch of the serving store: under load, more records
            // share its sync (5,000 → 20,000: +5% events/s end to end, docs/performance.md).
            batch_size: 20_000,
            progress: serving.clone(),
            observer: None,
        };
        let serving_progress = serving.clone();
        let backlog = stage_backlog(
            &log,
            vec![
                (
                    "router",
                    router.group.clone(),
                    router.topics.sources.clone(),
                ),
                (
                    "household processor",
                    processor.group.clone(),
                    vec![topics.household_events.clone()],
                ),
                (
                    "serving store",
                    projector.group.clone(),
                    vec![topics.changelog.clone()],
                ),
            ],
        );
        // Identities and the audit log.
        let (clients, bootstrap) = dsr_access::ClientRegistry::open(&security_dir, now_ms())
            .context("opening the client registry")?;
        let clients = Arc::new(clients);
        if let Some(b) = &bootstrap {
            eprintln!(
                "dsr up: first start: the first admin's API key is in {} (readable by you only). \
                 Use it to register clients (POST /v1/admin/clients or `dsr keys create`), then delete the file.",
                b.admin_key_file.display()
            );
        }
        let sealer = dsr_audit::Sealer::load_or_create(&security_dir.join("audit-seal.key"))
            .context("loading the audit log's sealing key")?;
        let (audit, audit_report) = dsr_audit::AuditLog::open(&self.data_dir.join("audit"), sealer)
            .context("opening the audit log")?;
        eprintln!(
            "dsr up: audit log {}: {} entries{}{}",
            audit.path().display(),
            audit_report.next_seq,
            match audit_report.unsealed {
                0 => String::new(),
                n => format!(", {n} left unsealed by the last run (sealed now)"),
            },
            audit_report
                .torn_tail
                .as_ref()
                .map_or(String::new(), |t| format!(
                    ", a torn last line ({} bytes at line {}) cut off",
                    t.bytes, t.line
                )),
        );
        audit.seal(now_ms()).context("sealing the audit log")?;
        let audit = Arc::new(audit);
        {
            // Every push of household ids to a program's webhook is recorded, like a read.
            let audit = Arc::clone(&audit);
            let keyring = Arc::clone(&keyring);
            let purposes: std::collections::HashMap<String, (String, String)> = program_list
                .iter()
                .map(|p| {
                    (
                        p.id.to_string(),
                        (p.purpose.clone(), p.data_sharing_agreement.clone()),
                    )
                })
                .collect();
            delivery.set_audit(Arc::new(move |program, messages, outcome| {
                let mut subjects = vec![format!("program:{program}")];
                let mut households = std::collections::BTreeSet::new();
                let mut fields = std::collections::BTreeSet::new();
                for m in messages {
                    if households.insert(m.household_id().to_owned()) {
                        subjects.push(keyring.pseudonym_text("subject", m.household_id()));
                    }
                    if let Some(data) = m.data.as_object() {
                        fields.extend(data.keys().cloned());
                    }
                }
                let (purpose, agreement) = purposes.get(program).cloned().unzip();
                let entry = dsr_audit::AuditEntry {
                    who: "dsr-delivery".into(),
                    role: "system".into(),
                    action: "program.webhook.deliver".into(),
                    subjects,
                    fields: fields.into_iter().collect(),
                    purpose,
                    agreement,
                    outcome: outcome.to_owned(),
                };
                if let Err(error) = audit.append(now_ms(), entry) {
                    tracing::error!(%error, program, "a webhook delivery could not be recorded in the audit log");
                }
            }));
        }
        // Scale-up: the master list, the rule book, the trigger loop on dsr.area-events.
        let scale_up = match self.master_list()? {
            None => {
                eprintln!(
                    "dsr up: no geographic master list (--areas FILE or DATA_DIR/areas.csv): scale-up and /v1/areas are off"
                );
                None
            }
            Some((areas, path)) => {
                eprintln!(
                    "dsr up: geographic master list {}: {} areas, version {}",
                    path.display(),
                    areas.len(),
                    areas.version()
                );
                let service = Arc::new(dsr_scale_up::ScaleUp::new(
                    dsr_scale_up::RuleBook::open(
                        &self.data_dir.join("scale-up"),
                        Arc::clone(&keyring),
                    )
                    .context("opening the scale-up rule book")?,
                    store.clone(),
                    Arc::new(areas),
                    program_list.iter().map(|p| p.id.to_string()).collect(),
                    Arc::new(log.clone()),
                    codec(),
                    topics.clone(),
                    super::clock(),
                    Arc::clone(&audit),
                ));
                let rules_dir = self
                    .scale_up_rules
                    .clone()
                    .or_else(|| Some(PathBuf::from("scale-up")).filter(|d| d.is_dir()));
                if let Some(dir) = rules_dir {
                    for (file, outcome) in service.import_drafts(&dir) {
                        match outcome {
                            Ok(what) => {
                                eprintln!("dsr up: scale-up rules {}/{file}: {what}", dir.display())
                            }
                            Err(why) => eprintln!(
                                "dsr up: warning: scale-up rules {}/{file} not imported: {why}",
                                dir.display()
                            ),
                        }
                    }
                }
                // The candidate table: kept current by the projector from now on, loaded
                // with one scan of the serving store in the background.
                let observed = Arc::clone(&service);
                projector.observer = Some(Arc::new(move |households| observed.observe(households)));
                Some(service)
            }
        };
        let state = Arc::new(ApiState {
            log: Arc::new(log.clone()),
            codec: codec(),
            store: store.clone(),
            model,
            ingest_topic,
            serving,
            reports_dir: self.data_dir.join("bulk-reports"),
            backlog,
            clients: Arc::clone(&clients),
            audit: Arc::clone(&audit),
            data_keys: Arc::new(dsr_api::data_keys::DataKeys::new(
                Arc::clone(&keyring),
                vec![
                    Arc::new(super::sealed_places::Log(log.clone())),
                    Arc::new(super::sealed_places::State(state)),
                    Arc::new(super::sealed_places::Serving(store.clone())),
                    Arc::new(dsr_api::bulk::Reports {
                        dir: self.data_dir.join("bulk-reports"),
                        keyring: Arc::clone(&keyring),
                    }),
                    Arc::new(super::sealed_places::Delivery(Arc::clone(&delivery))),
                ],
            )),
            programs: std::sync::RwLock::new(program_list),
            rule_drafts: Default::default(),
            topics: topics.clone(),
            delivery: Arc::clone(&delivery),
            scale_up: scale_up.clone(),
        });
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("listening on {}", self.listen))?;
        let address = listener.local_addr()?;
        let app = dsr_api::router(state, registry);

        let mut tasks = tokio::task::JoinSet::new();
        {
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                router
                    .run(stop(rx))
                    .await
                    .map(|_| "router")
                    .context("the router stopped")
            });
        }
        {
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                processor
                    .run(stop(rx))
                    .await
                    .map(|_| "household processor")
                    .context("the household processor stopped")
            });
        }
        {
            // Below the critical path's priority: under load the serving store may lag by a
            // moment, but an event's eligibility change does not wait behind it (the
            // projector was a third of the CPU; docs/performance.md).
            let rx = stop_rx.clone();
            let projected = at_low_priority("dsr-projector", async move {
                projector
                    .run(stop(rx))
                    .await
                    .map(|_| "serving projector")
                    .context("the serving projector stopped")
            })?;
            tasks.spawn(projected);
        }
        {
            let rx = stop_rx.clone();
            let log = log.clone();
            tasks.spawn(async move {
                delivery
                    .run(log, rx)
                    .await
                    .map(|_| "program delivery")
                    .context("program delivery stopped")
            });
        }
        if let Some(scale_up) = scale_up {
            {
                let scale_up = Arc::clone(&scale_up);
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    match scale_up.load_table().await {
                        Ok(n) => eprintln!(
                            "dsr up: scale-up candidate table: {n} households loaded in {:.1} s",
                            started.elapsed().as_secs_f64()
                        ),
                        Err(e) => eprintln!(
                            "dsr up: warning: the scale-up candidate table could not be loaded ({e}); previews scan the serving store"
                        ),
                    }
                });
            }
            let rx = stop_rx.clone();
            let log = log.clone();
            let area_events = RouterTopics::default().area_events;
            tasks.spawn(async move {
                scale_up
                    .run(
                        &log,
                        &area_events,
                        SCALE_UP_GROUP,
                        Duration::from_millis(500),
                        stop(rx),
                    )
                    .await
                    .map(|_| "scale-up")
                    .context("the scale-up service stopped")
            });
        }
        {
            // Seals the audit log every second, so at most the last second of entries is
            // not yet covered by a signature; and once more on the way out.
            let audit = Arc::clone(&audit);
            let mut rx = stop_rx.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = rx.wait_for(|stopped| *stopped) => break,
                    }
                    let audit = Arc::clone(&audit);
                    tokio::task::spawn_blocking(move || audit.seal(now_ms()))
                        .await?
                        .context("sealing the audit log")?;
                }
                Ok("audit sealer")
            });
        }
        if self.compaction_seconds > 0 {
            let every = Duration::from_secs(self.compaction_seconds);
            let policy = dsr_log::embedded::compaction::PassPolicy {
                min_dirty_ratio: self.compaction_min_dirty_ratio,
                max_interval: Duration::from_secs(24 * 60 * 60),
            };
            let log = log.clone();
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                compact_the_log(log, every, policy, rx).await;
                Ok("log compaction")
            });
        }
        {
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop(rx))
                    .await
                    .map(|_| "HTTP API")
                    .context("the HTTP API stopped")
            });
        }
        eprintln!(
            "dsr up: listening on http://{address}\n  \
             POST http://{address}/v1/events             life events (JSON or Avro)\n  \
             POST http://{address}/v1/events:bulk        JSON-lines or CSV files, streamed\n  \
             GET  http://{address}/v1/households/ID      a household, its need score and programs\n  \
             GET  http://{address}/v1/households/ID/history\n  \
             GET  http://{address}/v1/status             backlog of each stage\n  \
             GET  http://{address}/v1/programs           programs; PUT …/ID/webhook, GET …/ID/changes\n  \
             GET  http://{address}/dashboard             the scale-up coordinator dashboard\n  \
             GET  http://{address}/readyz                ready once the serving store caught up\n  \
             GET  http://{address}/subjects              the schema registry API\n  \
             GET  http://{address}/openapi.json          the OpenAPI document of this API\n  \
             every other call needs an API key (Authorization: Bearer dsr_…); see docs/security.md\n\
             data in {}; Ctrl-C or SIGTERM stops cleanly",
            self.data_dir.display()
        );

        if let Some(demo) = demo {
            let watched = super::demo::Watched {
                log: log.clone(),
                base: format!("http://{address}"),
                clients: Arc::clone(&clients),
                security_dir: security_dir.clone(),
                serving: serving_progress.clone(),
                eligibility_topics,
            };
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                demo.run(watched, stop(rx))
                    .await
                    .map(|_| "demo")
                    .context("the demo stopped")
            });
        }

        let mut failure = None;
        tokio::select! {
            _ = shutdown_signal() => eprintln!("dsr up: stopping"),
            Some(done) = tasks.join_next() => {
                failure = Some(match done {
                    Ok(Ok(name)) => anyhow::anyhow!("the {name} stopped unexpectedly"),
                    Ok(Err(e)) => e,
                    Err(e) => anyhow::anyhow!("a component panicked: {e}"),
                });
            }
        }
        let _ = stop_tx.send(true);
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    eprintln!("dsr up: {e:#}");
                }
                Err(e) => eprintln!("dsr up: a component panicked: {e}"),
            }
        }
        log.close();
        if let Err(e) = audit.seal(now_ms()) {
            eprintln!("dsr up: sealing the audit log on the way out failed: {e}");
        }
        match failure {
            Some(e) => Err(e),
            None => {
                eprintln!("dsr up: stopped; everything acknowledged is on disk");
                Ok(())
            }
        }
    }
}

/// Runs `work` on a thread of its own, with a runtime of its own, at nice +10 (threads it
/// starts, such as its blocking pool, inherit that), so that the stages on the path from an
/// event to its eligibility change get the CPU first when both cores are busy. Resolves with
/// `work`'s result.
fn at_low_priority<T: Send + 'static>(
    name: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<T>>> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // Linux: with `who` 0, PRIO_PROCESS sets the calling thread's nice value (a
            // per-thread attribute). Raising it needs no privilege; failing to is harmless.
            // SAFETY: setpriority reads no memory of ours.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            }
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime")
                .and_then(|runtime| runtime.block_on(work));
            let _ = done.send(outcome);
        })
        .with_context(|| format!("starting the {name} thread"))?;
    let name = name.to_owned();
    Ok(async move {
        result.await.unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the {name} thread stopped without a result"
            ))
        })
    })
}

/// The backlog of each stage `(name, consumer group, topics it reads)` on the embedded log.
fn stage_backlog(
    log: &EmbeddedLog,
    stages: Vec<(&'static str, String, Vec<String>)>,
) -> dsr_api::Backlog {
    let log = log.clone();
    Arc::new(move || {
        stages
            .iter()
            .map(|(stage, group, topics)| {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                dsr_api::StageBacklog {
                    stage,
                    // The topics exist (created at start), so this cannot fail; if it ever
                    // did, reporting a backlog keeps the registry from claiming to be idle.
                    backlog: log.lag(group, &topics).unwrap_or(u64::MAX),
                }
            })
            .collect()
    })
}

/// Looks every `every` whether a compaction pass over the embedded log is due by `policy` and
/// runs it; the first look comes `every` after the start (a processor's take-over after a
/// crash, which reads the end of its output partitions, is long done by then), and the first
/// pass after a start is always due. A pass that fails is reported and tried again at the next
/// tick: the log is whole either way (a pass replaces a segment file only by an atomic rename).
async fn compact_the_log(
    log: EmbeddedLog,
    every: Duration,
    policy: dsr_log::embedded::compaction::PassPolicy,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    // The log's size right after the last pass, and when that was.
    let mut clean_bytes = 0;
    let mut last_pass = std::time::Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
        let bytes = log.disk_bytes();
        if !policy.due(bytes, clean_bytes, last_pass.elapsed()) {
            tracing::debug!(
                bytes,
                clean_bytes,
                "embedded log: no compaction pass due yet"
            );
            continue;
        }
        let started = std::time::Instant::now();
        let done = log.compact(std::time::SystemTime::now(), |_, _| {}).await;
        if done.is_ok() {
            clean_bytes = log.disk_bytes();
            last_pass = std::time::Instant::now();
        }
        match done {
            Ok(done) if done.segments_rewritten > 0 => tracing::info!(
                %done,
                seconds = started.elapsed().as_secs_f64(),
                "embedded log compacted"
            ),
            Ok(done) => tracing::debug!(%done, "embedded log: nothing to compact"),
            Err(error) => {
                eprintln!(
                    "dsr up: warning: compacting the log failed, tried again in {} s: {error}",
                    every.as_secs()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing_set() -> Up {
        Up {
            config: None,
            data_dir: None,
            listen: None,
            topics: None,
            programs: None,
            model: None,
            batch_size: None,
            max_wait_seconds: None,
            cache_households: None,
            kek_file: None,
            webhook_ca_file: None,
            areas: None,
            scale_up_rules: None,
            compaction_seconds: None,
            compaction_min_dirty_ratio: None,
            log_segment_mb: None,
        }
    }

    /// Topics and programs exist relative to the repository root, where these paths point.
    fn repo_dirs(up: Up) -> Up {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Up {
            topics: up.topics.or(Some(repo.join("topics"))),
            programs: up.programs.or(Some(repo.join("programs"))),
            ..up
        }
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dsr.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/dsr\"\nlisten = \"0.0.0.0:9000\"\nbatch_size = 10\n",
        )
        .unwrap();
        let config = repo_dirs(Up {
            config: Some(file),
            batch_size: Some(99),
            ..nothing_set()
        })
        .resolve()
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/dsr"));
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.batch_size, 99);
        assert_eq!(config.max_wait_seconds, 3600);
        assert_eq!(config.compaction_min_dirty_ratio, 0.5);
    }

    #[test]
    fn a_misspelt_setting_or_a_bad_value_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dsr.toml");
        std::fs::write(&file, "batch_sise = 10\n").unwrap();
        let error = repo_dirs(Up {
            config: Some(file.clone()),
            ..nothing_set()
        })
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `batch_sise`"), "{error}");
        std::fs::write(&file, "listen = \"localhost\"\n").unwrap();
        let error = repo_dirs(Up {
            config: Some(file),
            ..nothing_set()
        })
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(error.contains("listen"), "{error}");
        let error = repo_dirs(Up {
            batch_size: Some(0),
            ..nothing_set()
        })
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(error.contains("batch_size must be at least 1"), "{error}");
        let error = repo_dirs(Up {
            compaction_min_dirty_ratio: Some(1.5),
            ..nothing_set()
        })
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("compaction_min_dirty_ratio must be between 0 and 1 (it is 1.5)"),
            "{error}"
        );
        let error = Up {
            topics: Some("/nowhere".into()),
            ..nothing_set()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(error.contains("`/nowhere` does not exist"), "{error}");
    }
}
