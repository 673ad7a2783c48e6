//! The scale-up service: the rule book's lifecycle actions, previews, triggers, expiry and
//! the notifications to the programs.
//!
//! Order of writes, so a crash anywhere loses nothing and sends nothing twice under two ids:
//! a transition (and an activation's grants) is written to the rule book first; then the
//! notifications it implies are appended to the program's eligibility topic; then the book
//! records that they were sent. A crash between the last two makes the next start append them
//! again with the same ids (derived from rule, shock, household and phase), which a program
//! recognises as already handled. A `ShockDeclared` read twice (the trigger loop commits its
//! offset after acting) finds its rules active already and does nothing.

use crate::book::{BookError, RuleBook, ShockRecord};
use crate::table::CandidateTable;
use dsr_core::areas::AreaList;
use dsr_core::event::Payload;
use dsr_core::ids::ShockId;
use dsr_core::scale_up::{
    end_changes, plan, start_changes, ActiveGrant, Candidate, Candidates, LifecycleError, Plan,
    RuleError, RuleRecord, RuleState, ScaleUpRule, Shock,
};
use dsr_core::{EligibilityChange, Event, Micros};
use dsr_log::{EventSink, GroupEvent, GroupMember, Log, LogError, Record};
use dsr_pipeline::codec::WireCodec;
use dsr_pipeline::runner::{Codec, Topics};
use dsr_serving::ServingStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The time, from the deployment: the system clock, or a test clock.
pub type Clock = Arc<dyn Fn() -> Micros + Send + Sync>;

/// Who acts: a client id and its role (`dsr` itself for triggers by events and expiry).
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: String,
    pub role: String,
}

impl Actor {
    /// dsr itself: a shock event's trigger, an expiry.
    pub fn registry() -> Actor {
        Actor {
            id: "dsr-scale-up".into(),
            role: "registry".into(),
        }
    }
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum ScaleUpError {
    #[error("the rule cannot be used: {0}")]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("there is no scale-up rule `{0}`; GET /v1/scale-up/rules lists them")]
    UnknownRule(String),
    #[error("a scale-up rule `{0}` exists already; edit it, or choose another id")]
    Exists(String),
    #[error("the shock cannot be used: {0}")]
    Shock(String),
    #[error(transparent)]
    Book(#[from] BookError),
    #[error("the serving store failed: {0}")]
    Store(String),
    #[error("appending notifications failed: {0}")]
    Log(#[from] LogError),
    #[error("a notification does not encode: {0}")]
    Encode(String),
    #[error("the audit log failed, so the action was not recorded: {0}")]
    Audit(String),
}

/// Everything the service needs; cheap to share behind an `Arc`.
pub struct ScaleUp {
    pub book: RuleBook,
    pub store: ServingStore,
    pub areas: Arc<AreaList>,
    /// The ids of the registry's programs.
    pub programs: Vec<String>,
    pub sink: Arc<dyn EventSink>,
    pub codec: WireCodec,
    pub topics: Topics,
    pub clock: Clock,
    pub audit: Arc<dsr_audit::AuditLog>,
    /// Notifications appended since start.
    pub sent: AtomicU64,
    sending: tokio::sync::Mutex<()>,
    /// The households as plans see them, once loaded ([`ScaleUp::load_table`]); until then a
    /// plan scans the serving store.
    table: Arc<std::sync::RwLock<CandidateTable>>,
    table_ready: Arc<std::sync::atomic::AtomicBool>,
}

/// The grants of the active rules other than `rule_id`, for overlap.
fn active_grants<'a>(book: &'a crate::book::Book, rule_id: &str) -> Vec<ActiveGrant<'a>> {
    book.rules
        .values()
        .filter(|r| r.state == RuleState::Active && r.rule.id != rule_id)
        .flat_map(|r| {
            r.activation.iter().flat_map(move |a| {
                a.grants.iter().map(move |g| ActiveGrant {
                    rule_id: &r.rule.id,
                    program: &r.rule.program,
                    kind: g.kind,
                    stacks: r.rule.stacks,
                    household_id: &g.household_id,
                })
            })
        })
        .collect()
}

/// Notifications per append.
const CHUNK: usize = 10_000;

impl ScaleUp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        book: RuleBook,
        store: ServingStore,
        areas: Arc<AreaList>,
        programs: Vec<String>,
        sink: Arc<dyn EventSink>,
        codec: WireCodec,
        topics: Topics,
        clock: Clock,
        audit: Arc<dsr_audit::AuditLog>,
    ) -> ScaleUp {
        ScaleUp {
            book,
            store,
            areas,
            sink,
            codec,
            topics,
            clock,
            audit,
            table: Arc::new(std::sync::RwLock::new(CandidateTable::new(&programs))),
            table_ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            programs,
            sent: AtomicU64::new(0),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes households the serving projector applied into the candidate table.
    pub fn observe(&self, households: &[(dsr_core::Household, i64)]) {
        let mut table = self.table.write().expect("candidate table lock");
        for (h, _) in households {
            table.apply(h);
        }
    }

    /// Loads the candidate table with one scan of the serving store (the projector's updates
    /// during the scan are kept: newer versions win). Plans use the table from then on.
    pub async fn load_table(&self) -> Result<usize, ScaleUpError> {
        let store = self.store.clone();
        let table = Arc::clone(&self.table);
        let loaded = tokio::task::spawn_blocking(move || {
            let mut n = 0usize;
            store
                .for_each_household(&mut |h| {
                    table.write().expect("candidate table lock").apply(&h);
                    n += 1;
                })
                .map(|()| n)
        })
        .await
        .map_err(|e| ScaleUpError::Store(format!("the scan task failed: {e}")))?
        .map_err(|e| ScaleUpError::Store(e.to_string()))?;
        self.table_ready.store(true, Ordering::Release);
        Ok(loaded)
    }

    pub fn now(&self) -> Micros {
        (self.clock)()
    }

    fn validate(&self, rule: &ScaleUpRule) -> Result<(), RuleError> {
        let programs: Vec<&str> = self.programs.iter().map(String::as_str).collect();
        rule.validate(&programs, &|a| self.areas.get(a).is_some())
    }

    fn record(
        &self,
        who: &Actor,
        rule_id: &str,
        action: &str,
        outcome: String,
    ) -> Result<(), ScaleUpError> {
        let entry = dsr_audit::AuditEntry {
            who: who.id.clone(),
            role: who.role.clone(),
            action: format!("scale_up.{action}"),
            subjects: vec![format!("scale-up-rule:{rule_id}")],
            fields: Vec::new(),
            purpose: None,
            agreement: None,
            outcome,
        };
        self.audit
            .append(self.now().0.div_euclid(1000), entry)
            .map(|_| ())
            .map_err(|e| ScaleUpError::Audit(e.to_string()))
    }

    /// Records the last transition of `r` in the audit log: who, from what to what, and why.
    fn audit_transition(&self, r: &RuleRecord, action: &str) -> Result<(), ScaleUpError> {
        let t = r.transitions.last().expect("a rule has a transition");
        let who = Actor {
            id: t.by.clone(),
            role: String::new(),
        };
        let from = t.from.map_or("new", |s| s.as_str());
        self.record(
            &who,
            &r.rule.id,
            action,
            format!("{from} → {}: {}", t.to.as_str(), t.why),
        )
    }

    pub fn rules(&self) -> Vec<RuleRecord> {
        self.book.read(|b| b.rules.values().cloned().collect())
    }

    pub fn rule(&self, id: &str) -> Result<RuleRecord, ScaleUpError> {
        self.book
            .read(|b| b.rules.get(id).cloned())
            .ok_or_else(|| ScaleUpError::UnknownRule(id.to_string()))
    }

    pub fn shocks(&self) -> Vec<ShockRecord> {
        self.book.read(|b| b.shocks.values().cloned().collect())
    }

    /// A new draft.
    pub fn draft(&self, rule: ScaleUpRule, who: &Actor) -> Result<RuleRecord, ScaleUpError> {
        self.validate(&rule)?;
        let now = self.now();
        let record = self.book.update(|b| {
            if b.rules.contains_key(rule.id.as_str()) {
                return Err(ScaleUpError::Exists(rule.id.to_string()));
            }
            let r = RuleRecord::draft(rule.clone(), &who.id, now);
            b.rules.insert(rule.id.to_string(), r.clone());
            Ok(r)
        })?;
        self.record(who, &record.rule.id, "draft", "new → draft: drafted".into())?;
        Ok(record)
    }

    fn change(
        &self,
        id: &str,
        action: &str,
        f: impl FnOnce(&mut RuleRecord) -> Result<(), LifecycleError>,
    ) -> Result<RuleRecord, ScaleUpError> {
        let record = self.book.update(|b| {
            let r = b
                .rules
                .get_mut(id)
                .ok_or_else(|| ScaleUpError::UnknownRule(id.to_string()))?;
            f(r)?;
            Ok::<_, ScaleUpError>(r.clone())
        })?;
        self.audit_transition(&record, action)?;
        Ok(record)
    }

    /// Imports the rules of `dir` (`*.yaml`, `*.yml`, `*.json`, one rule a file) as drafts,
    /// drafted by `file:<name>`: rules agreed on paper before a shock, kept with the
    /// deployment's configuration, still previewed and approved like any draft. A rule whose
    /// id the book holds already is left alone. One answer per file: what happened, in words.
    pub fn import_drafts(&self, dir: &std::path::Path) -> Vec<(String, Result<String, String>)> {
        let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect(),
            Err(e) => {
                return vec![(
                    dir.display().to_string(),
                    Err(format!("cannot read the directory: {e}")),
                )]
            }
        };
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let name = path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let outcome = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read it: {e}"))
                    .and_then(|text| {
                        serde_yaml_ng::from_str::<ScaleUpRule>(&text)
                            .map_err(|e| format!("not a scale-up rule: {e}"))
                    })
                    .and_then(|rule| {
                        if self.book.read(|b| b.rules.contains_key(rule.id.as_str())) {
                            return Ok(format!("rule {} is in the rule book already", rule.id));
                        }
                        let who = Actor {
                            id: format!("file:{name}"),
                            role: "file".into(),
                        };
                        self.draft(rule, &who)
                            .map(|r| format!("rule {} drafted", r.rule.id))
                            .map_err(|e| e.to_string())
                    });
                (name, outcome)
            })
            .collect()
    }

    /// A new text for a draft (it must be previewed again).
    pub fn edit(
        &self,
        id: &str,
        rule: ScaleUpRule,
        who: &Actor,
    ) -> Result<RuleRecord, ScaleUpError> {
        if rule.id != id {
            return Err(
                RuleError::Id(format!("{} (the rule's id must stay {id})", rule.id)).into(),
            );
        }
        self.validate(&rule)?;
        let now = self.now();
        self.change(id, "edit", |r| r.edit(rule, &who.id, now))
    }

    /// The plan of `rule` for `shock` over the registry as it is now, with the grants of the
    /// other active rules for overlap. The one computation behind previews and activations.
    pub async fn plan(&self, rule: &ScaleUpRule, shock: &Shock) -> Result<Plan, ScaleUpError> {
        let book = self.book.snapshot();
        let (rule, shock) = (rule.clone(), shock.clone());
        if self.table_ready.load(Ordering::Acquire) {
            let table = Arc::clone(&self.table);
            return tokio::task::spawn_blocking(move || {
                let others = active_grants(&book, &rule.id);
                let table = table.read().expect("candidate table lock");
                let none = Candidates::default();
                let candidates = table.candidates(&rule.program).unwrap_or(&none);
                plan(&rule, &shock, candidates, &others)
            })
            .await
            .map_err(|e| ScaleUpError::Store(format!("the plan task failed: {e}")));
        }
        // Before the table is loaded: one scan of the serving store.
        let program = rule.program.to_string();
        let store = self.store.clone();
        let candidates = tokio::task::spawn_blocking(move || {
            let mut out = Candidates::default();
            store
                .for_each_household(&mut |h| {
                    if let Some(c) = Candidate::of(&h, &program) {
                        out.push(c);
                    }
                })
                .map(|()| out)
        })
        .await
        .map_err(|e| ScaleUpError::Store(format!("the scan task failed: {e}")))?
        .map_err(|e| ScaleUpError::Store(e.to_string()))?;
        let others = active_grants(&book, &rule.id);
        Ok(plan(&rule, &shock, &candidates, &others))
    }

    /// Checks a hypothetical shock's areas against the master list.
    pub fn check_shock(&self, shock: &Shock) -> Result<(), ScaleUpError> {
        if shock.areas.is_empty() {
            return Err(ScaleUpError::Shock("it names no area".into()));
        }
        let unknown = self.areas.unknown(&shock.areas);
        if !unknown.is_empty() {
            return Err(ScaleUpError::Shock(format!(
                "these areas are not in the geographic master list: {}",
                unknown
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// Previews rule `id` for `shock` (by default: a manual trigger over all its areas now),
    /// and marks a draft previewed.
    pub async fn preview(
        &self,
        id: &str,
        shock: Option<Shock>,
        who: &Actor,
    ) -> Result<(Plan, RuleRecord), ScaleUpError> {
        let record = self.rule(id)?;
        let shock = match shock {
            Some(s) => {
                self.check_shock(&s)?;
                s
            }
            None => Shock::manual(&record.rule, ShockId::new("preview"), self.now()),
        };
        let plan = self.plan(&record.rule, &shock).await?;
        let now = self.now();
        let record = if matches!(record.state, RuleState::Draft | RuleState::Previewed) {
            let record = self.book.update(|b| {
                let r = b
                    .rules
                    .get_mut(id)
                    .ok_or_else(|| ScaleUpError::UnknownRule(id.to_string()))?;
                r.previewed(&who.id, now)?;
                Ok::<_, ScaleUpError>(r.clone())
            })?;
            record
        } else {
            record
        };
        self.record(
            who,
            id,
            "preview",
            format!(
                "shock {}: {} households affected, {} top-ups, {} enrolments, cost {:.2}",
                shock.shock_id, plan.affected, plan.top_ups, plan.enrolments, plan.total_cost
            ),
        )?;
        Ok((plan, record))
    }

    pub fn approve(&self, id: &str, who: &Actor, why: &str) -> Result<RuleRecord, ScaleUpError> {
        let now = self.now();
        let why = if why.trim().is_empty() {
            "approved"
        } else {
            why
        };
        match self.change(id, "approve", |r| r.approve(&who.id, why, now)) {
            Err(ScaleUpError::Lifecycle(e @ LifecycleError::OwnApproval { .. })) => {
                self.record(who, id, "approve", format!("denied: {e}"))?;
                Err(e.into())
            }
            other => other,
        }
    }

    pub fn arm(&self, id: &str, who: &Actor) -> Result<RuleRecord, ScaleUpError> {
        let now = self.now();
        self.change(id, "arm", |r| r.arm(&who.id, now))
    }

    /// A coordinator's trigger of an armed rule over its own areas.
    pub async fn trigger(
        &self,
        id: &str,
        shock_id: Option<String>,
        who: &Actor,
        why: &str,
    ) -> Result<RuleRecord, ScaleUpError> {
        let record = self.rule(id)?;
        let now = self.now();
        let shock_id = ShockId::new(shock_id.unwrap_or_else(|| format!("manual-{id}-{}", now.0)));
        let shock = Shock::manual(&record.rule, shock_id, now);
        let why = if why.trim().is_empty() {
            "triggered by hand"
        } else {
            why
        };
        self.start(id, shock, "manual", who, why).await
    }

    async fn start(
        &self,
        id: &str,
        shock: Shock,
        source: &str,
        who: &Actor,
        why: &str,
    ) -> Result<RuleRecord, ScaleUpError> {
        let record = self.rule(id)?;
        if record.state != RuleState::Armed {
            return Err(LifecycleError::State {
                rule: id.to_string(),
                state: record.state.as_str(),
                action: "a trigger",
                needed: "armed",
            }
            .into());
        }
        let plan = self.plan(&record.rule, &shock).await?;
        let now = self.now();
        let record = self.book.update(|b| {
            let r = b
                .rules
                .get_mut(id)
                .ok_or_else(|| ScaleUpError::UnknownRule(id.to_string()))?;
            r.activate(&plan, shock.caused_by, &who.id, why, now)?;
            let s = b
                .shocks
                .entry(shock.shock_id.to_string())
                .or_insert_with(|| ShockRecord {
                    shock: shock.clone(),
                    source: source.to_string(),
                    ended_at: None,
                    rules: Vec::new(),
                });
            s.rules.push(id.to_string());
            Ok::<_, ScaleUpError>(r.clone())
        })?;
        self.audit_transition(&record, "activate")?;
        tracing::info!(rule = id, shock = %shock.shock_id, households = plan.grants.len(), "scale-up rule active");
        self.send_pending().await?;
        self.rule(id)
    }

    /// Stops a rule at once; an active one's grants end now.
    pub async fn revoke(
        &self,
        id: &str,
        who: &Actor,
        why: &str,
    ) -> Result<RuleRecord, ScaleUpError> {
        let now = self.now();
        self.change(id, "revoke", |r| r.revoke(&who.id, why, now))?;
        self.send_pending().await?;
        self.rule(id)
    }

    /// Acts on an area-wide event from `dsr.area-events`.
    pub async fn on_event(&self, event: &Event) -> Result<(), ScaleUpError> {
        match &event.payload {
            Payload::ShockDeclared(d) => {
                let shock = Shock::declared(event.envelope.event_id, d);
                self.book.update(|b| {
                    b.shocks
                        .entry(shock.shock_id.to_string())
                        .or_insert_with(|| ShockRecord {
                            shock: shock.clone(),
                            source: "declared".into(),
                            ended_at: None,
                            rules: Vec::new(),
                        });
                    Ok::<_, ScaleUpError>(())
                })?;
                let matching: Vec<String> = self.book.read(|b| {
                    b.rules
                        .values()
                        .filter(|r| r.state == RuleState::Armed && r.rule.matches(&shock))
                        .map(|r| r.rule.id.to_string())
                        .collect()
                });
                for id in matching {
                    let why = format!(
                        "shock {} declared by {} ({} {} = {})",
                        d.shock_id,
                        d.declared_by,
                        dsr_core::CodeList::symbol(d.hazard),
                        d.indicator_name,
                        d.indicator_value
                    );
                    match self
                        .start(&id, shock.clone(), "declared", &Actor::registry(), &why)
                        .await
                    {
                        // Revoked (or triggered by hand) since it was read as armed: nothing to do.
                        Err(ScaleUpError::Lifecycle(e)) => {
                            tracing::warn!(rule = %id, reason = %e, "a matching rule was not triggered")
                        }
                        other => {
                            other?;
                        }
                    }
                }
            }
            Payload::ShockEnded(e) => {
                let now = self.now();
                let ended: Vec<RuleRecord> = self.book.update(|b| {
                    if let Some(s) = b.shocks.get_mut(e.shock_id.as_str()) {
                        s.ended_at.get_or_insert(e.ended_at);
                    }
                    let mut ended = Vec::new();
                    for r in b.rules.values_mut() {
                        let ours = r
                            .activation
                            .as_ref()
                            .is_some_and(|a| a.shock_id == e.shock_id);
                        if r.state == RuleState::Active && ours {
                            r.expire(
                                &Actor::registry().id,
                                &format!("shock {} ended", e.shock_id),
                                now,
                            )?;
                            ended.push(r.clone());
                        }
                    }
                    Ok::<_, ScaleUpError>(ended)
                })?;
                for r in &ended {
                    self.audit_transition(r, "expire")?;
                }
                self.send_pending().await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the rules whose time is up, and sends what a crash left unsent.
    pub async fn tick(&self) -> Result<(), ScaleUpError> {
        let now = self.now();
        let due: Vec<String> = self.book.read(|b| {
            b.rules
                .values()
                .filter(|r| r.due(now))
                .map(|r| r.rule.id.to_string())
                .collect()
        });
        for id in due {
            self.change(&id, "expire", |r| {
                r.expire(&Actor::registry().id, "its end date passed", now)
            })?;
        }
        self.send_pending().await
    }

    /// Appends every start and end notification not yet sent, then records them as sent.
    async fn send_pending(&self) -> Result<(), ScaleUpError> {
        let _one_at_a_time = self.sending.lock().await;
        let book = self.book.snapshot();
        for (id, r) in &book.rules {
            let Some(a) = &r.activation else { continue };
            if !a.started_sent {
                self.append(&r.rule.program, start_changes(&r.rule, a))
                    .await?;
                self.mark_sent(id, true)?;
            }
            if a.ended.is_some() && !a.ended_sent {
                self.append(&r.rule.program, end_changes(&r.rule, a))
                    .await?;
                self.mark_sent(id, false)?;
            }
        }
        Ok(())
    }

    fn mark_sent(&self, id: &str, start: bool) -> Result<(), ScaleUpError> {
        self.book.update(|b| {
            if let Some(a) = b.rules.get_mut(id).and_then(|r| r.activation.as_mut()) {
                if start {
                    a.started_sent = true;
                } else {
                    a.ended_sent = true;
                }
            }
            Ok::<_, ScaleUpError>(())
        })
    }

    async fn append(
        &self,
        program: &str,
        changes: Vec<EligibilityChange>,
    ) -> Result<(), ScaleUpError> {
        let topic = self.topics.eligibility(program);
        for chunk in changes.chunks(CHUNK) {
            let records = chunk
                .iter()
                .map(|c| {
                    self.codec
                        .encode_change(c)
                        .map(|v| Record::new(c.household_id.as_str().as_bytes().to_vec(), v))
                        .map_err(ScaleUpError::Encode)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.sink.append(&topic, records).await?;
            self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Notifications sent for rule `r` (its start and, once ended, its end).
    pub fn notifications_sent(r: &RuleRecord) -> u64 {
        r.activation.as_ref().map_or(0, |a| {
            let n = a.grants.len() as u64;
            n * (u64::from(a.started_sent) + u64::from(a.ended_sent))
        })
    }

    /// The trigger loop: reads `topic` (`dsr.area-events`) in consumer group `group`, acts on
    /// every shock, and every `tick` ends rules whose time is up. An event that does not decode
    /// is logged and skipped (the router validated it already); an action that fails stops
    /// the loop before its offset is committed, so the event is read again after a restart.
    pub async fn run<L: Log>(
        &self,
        log: &L,
        topic: &str,
        group: &str,
        tick: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ScaleUpError> {
        let mut member = log.join_group(group, &[topic])?;
        self.tick().await?;
        tokio::pin!(stop);
        loop {
            let events = tokio::select! {
                _ = &mut stop => break,
                polled = member.poll(100, tick) => polled?,
            };
            let mut offsets = std::collections::BTreeMap::new();
            for event in events {
                let GroupEvent::Records(batch) = event else {
                    continue;
                };
                let values: Vec<&[u8]> = batch.iter().filter_map(|r| r.value.as_deref()).collect();
                if let Err(reason) = self.codec.prepare(&values).await {
                    tracing::warn!(%reason, "cannot prepare to decode area events; will retry");
                    break;
                }
                for r in &batch {
                    if let Some(value) = r.value.as_deref() {
                        match self.codec.decode_event(value) {
                            Ok(event) => self.on_event(&event).await?,
                            Err(reason) => {
                                tracing::error!(partition = r.partition, offset = r.offset, %reason, "an area event does not decode; skipped")
                            }
                        }
                    }
                    offsets.insert(r.topic_partition(), r.next_offset());
                }
            }
            if !offsets.is_empty() {
                let offsets: Vec<_> = offsets.into_iter().collect();
                member.commit(&offsets).await?;
            }
            self.tick().await?;
        }
        member.leave().await?;
        Ok(())
    }
}
