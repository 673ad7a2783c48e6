//! [`Delivery`]: the programs' subscriptions, dead letters, counters and replay queue, shared
//! by the webhook workers ([`crate::worker`]) and the API (status, pull feed, replay).

use crate::access::LogAccess;
use crate::dead_letters::{DeadLetterError, DeadLetters};
use crate::message::Message;
use crate::subscriptions::{SubscriptionError, Subscriptions, WebhookView};
use dsr_log::{ConsumedRecord, LogError, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A program whose changes are delivered, and the topics they are read from.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramTopic {
    pub program_id: String,
    /// Its eligibility changes (`dsr.eligibility.<program>`).
    pub topic: String,
    /// Life events about beneficiaries of every program (`dsr.beneficiary-events`); this
    /// program's are the records whose `dsr-program` header names it.
    pub notices_topic: String,
    /// Whether the program may see member ids (`members.person_id` in `fields_allowed`): a
    /// life event names the person only then.
    pub person_ids_allowed: bool,
}

impl ProgramTopic {
    /// Both topics, the eligibility topic first.
    pub fn topics(&self) -> [&str; 2] {
        [self.topic.as_str(), self.notices_topic.as_str()]
    }

    /// The message of a record of either topic; `None` for another program's life event.
    pub fn message(&self, record: &ConsumedRecord) -> Option<Result<Message, String>> {
        if record.topic == self.notices_topic && !crate::message::is_for(record, &self.program_id) {
            return None;
        }
        Some(Message::from_program_record(
            record,
            &self.notices_topic,
            self.person_ids_allowed,
        ))
    }

    /// Every partition of both topics, in cursor order.
    pub(crate) async fn partitions(
        &self,
        log: &dyn LogAccess,
    ) -> Result<Vec<TopicPartition>, LogError> {
        let mut out = Vec::new();
        for topic in self.topics() {
            for p in 0..log.partitions(topic).await? {
                out.push(TopicPartition::new(topic, p));
            }
        }
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no program `{0}`; the programs are the files in programs/")]
    UnknownProgram(String),
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
    #[error("the log failed: {0}")]
    Log(#[from] LogError),
    #[error("the cursor `{0}` is not one this feed gave out; start without `after` or use the `next` of the last page")]
    BadCursor(String),
    #[error("{0}")]
    BadReplay(String),
    #[error("TLS for webhooks: {0}")]
    Tls(String),
}

/// The webhook client: HTTPS with rustls (ring) trusting the system's roots and `extra`;
/// redirects never followed (a 3xx could point a signed request anywhere).
fn http_client(
    extra: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<reqwest::Client, DeliveryError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 && extra.is_empty() {
        tracing::warn!(
            "no system CA certificates found: https webhooks will fail unless a CA file is given"
        );
    }
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| DeliveryError::Tls(format!("a CA certificate is not usable: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| DeliveryError::Tls(e.to_string()))
}

/// What a worker has done for a program since the registry started.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    pub delivered: u64,
    /// Messages in the batch now being retried (0 when the receiver is keeping up).
    pub retrying: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// The next offset to deliver, per topic partition (what the worker committed).
    pub positions: BTreeMap<(String, i32), i64>,
    pub replays_done: u64,
}

/// A program's delivery, as `GET /v1/programs/{id}/delivery` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    pub program_id: String,
    pub topic: String,
    /// The webhook, if the program has one (no secrets).
    pub webhook: Option<WebhookView>,
    /// Changes on the program's topic the webhook has not delivered yet.
    pub pending: u64,
    /// Changes delivered since the registry started.
    pub delivered: u64,
    /// Changes in the batch that is being retried now.
    pub retrying: u64,
    /// Attempts made on that batch so far.
    pub attempts: u32,
    /// Changes in the dead-letter store, waiting for a replay.
    pub dead_lettered: u64,
    /// How long the oldest undelivered change has waited, in seconds.
    pub oldest_undelivered_age_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// Replays waiting to run.
    pub replays_queued: usize,
    pub replays_done: u64,
}

/// A page of the pull feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedPage {
    pub messages: Vec<Message>,
    /// Pass as `after` for the next page.
    pub next: String,
}

/// What a program asks to have delivered again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Deliver the dead-letter store's messages again (removed once delivered).
    #[serde(default)]
    pub dead_letters: bool,
    /// Deliver again every change written at or after this time (RFC 3339).
    #[serde(default)]
    pub from: Option<String>,
    /// Deliver again from this change on (every change written at or after it).
    #[serde(default)]
    pub from_change_id: Option<String>,
}

/// A replay as queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Replay {
    DeadLetters,
    /// Changes the log stamped at or after this time (ms since the epoch).
    Since(i64),
}

/// Told of what was pushed to a program's webhook, for the audit log: the program, the
/// messages (household ids: personal data disclosed to the program), and the outcome
/// (`allowed: delivered`, or `failed: …` when the batch went to the dead-letter store).
pub type DeliveryAudit = Arc<dyn Fn(&str, &[Message], &str) + Send + Sync>;

/// Everything delivery keeps.
pub struct Delivery {
    pub programs: Vec<ProgramTopic>,
    pub subscriptions: Subscriptions,
    pub dead_letters: DeadLetters,
    pub(crate) log: Arc<dyn LogAccess>,
    pub(crate) counters: Mutex<HashMap<String, Counters>>,
    pub(crate) replays: Mutex<HashMap<String, VecDeque<Replay>>>,
    /// Wakes workers waiting for a subscription or a replay.
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) http: reqwest::Client,
    pub(crate) audit: std::sync::OnceLock<DeliveryAudit>,
}

impl Delivery {
    pub fn new(
        programs: Vec<ProgramTopic>,
        subscriptions: Subscriptions,
        dead_letters: DeadLetters,
        log: Arc<dyn LogAccess>,
    ) -> Delivery {
        let http = http_client(&[]).expect("an HTTPS client with the system's roots builds");
        Delivery {
            programs,
            subscriptions,
            dead_letters,
            log,
            counters: Mutex::default(),
            replays: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            http,
            audit: std::sync::OnceLock::new(),
        }
    }

    /// Records every push to a webhook with `audit` (once; later calls are ignored).
    pub fn set_audit(&self, audit: DeliveryAudit) {
        let _ = self.audit.set(audit);
    }

    pub(crate) fn audited(&self, program: &str, messages: &[Message], outcome: &str) {
        if let Some(audit) = self.audit.get() {
            audit(program, messages, outcome);
        }
    }

    /// Trusts the certificate authorities in `pem` (a PEM bundle, e.g. the ministry's own CA)
    /// for `https` webhook targets, besides the system's.
    pub fn with_extra_roots(mut self, pem: &[u8]) -> Result<Delivery, DeliveryError> {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    DeliveryError::Tls(format!("the CA file is not PEM certificates: {e}"))
                })?;
        if certs.is_empty() {
            return Err(DeliveryError::Tls(
                "the CA file holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        self.http = http_client(&certs)?;
        Ok(self)
    }

    pub fn program(&self, id: &str) -> Result<&ProgramTopic, DeliveryError> {
        self.programs
            .iter()
            .find(|p| p.program_id == id)
            .ok_or_else(|| DeliveryError::UnknownProgram(id.to_owned()))
    }

    /// The ends of the program's topics now: where a webhook registered now starts live
    /// delivery (its backfill is the eligible set as of there).
    pub async fn live_ends(
        &self,
        program: &str,
    ) -> Result<Vec<crate::subscriptions::LiveFrom>, DeliveryError> {
        let p = self.program(program)?.clone();
        let mut out = Vec::new();
        for tp in p.partitions(self.log.as_ref()).await? {
            let offset = self.log.end(&tp).await?;
            out.push(crate::subscriptions::LiveFrom {
                topic: tp.topic,
                partition: tp.partition,
                offset,
            });
        }
        Ok(out)
    }

    /// Tells the workers that a subscription changed.
    pub fn subscriptions_changed(&self) {
        self.wake.notify_waiters();
    }

    pub(crate) fn counters<T>(&self, program: &str, f: impl FnOnce(&mut Counters) -> T) -> T {
        let mut all = self.counters.lock().expect("delivery counters");
        f(all.entry(program.to_owned()).or_default())
    }

    /// The program's delivery state.
    pub async fn status(
        &self,
        program: &str,
        now_ms: i64,
    ) -> Result<DeliveryStatus, DeliveryError> {
        let p = self.program(program)?.clone();
        let c = self.counters(program, |c| c.clone());
        let mut pending = 0;
        let mut oldest: Option<i64> = None;
        for tp in p.partitions(self.log.as_ref()).await? {
            let end = self.log.end(&tp).await?;
            let position = match c.positions.get(&(tp.topic.clone(), tp.partition)) {
                Some(&o) => o,
                None => self.log.beginning(&tp).await?,
            };
            if end > position {
                pending += (end - position) as u64;
                let first = self
                    .log
                    .read(&tp, position, 1, Duration::from_millis(50))
                    .await?;
                if let Some(t) = first.first().and_then(|r| r.timestamp_ms) {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                }
            }
        }
        let webhook = self.subscriptions.get(program).map(|h| h.view(now_ms));
        Ok(DeliveryStatus {
            program_id: p.program_id,
            topic: p.topic,
            pending: if webhook.is_some() { pending } else { 0 },
            oldest_undelivered_age_seconds: webhook
                .as_ref()
                .and(oldest)
                .map(|t| (now_ms - t).max(0) as f64 / 1000.0),
            webhook,
            delivered: c.delivered,
            retrying: c.retrying,
            attempts: c.attempts,
            dead_lettered: self.dead_letters.count(program)?,
            last_error: c.last_error,
            last_error_at_ms: c.last_error_at_ms,
            replays_queued: self
                .replays
                .lock()
                .expect("replays")
                .get(program)
                .map_or(0, |q| q.len()),
            replays_done: c.replays_done,
        })
    }

    /// Up to `limit` messages after `after` (a cursor from an earlier page; none: from the
    /// beginning), waiting up to `wait` for one when there is none yet (long poll).
    pub async fn changes(
        &self,
        program: &str,
        after: Option<&str>,
        limit: usize,
        wait: Duration,
    ) -> Result<FeedPage, DeliveryError> {
        let p = self.program(program)?.clone();
        let partitions = p.partitions(self.log.as_ref()).await?;
        let mut positions = match after {
            Some(cursor) => decode_cursor(cursor, partitions.len() as i32)?,
            None => {
                let mut v = Vec::new();
                for tp in &partitions {
                    v.push(self.log.beginning(tp).await?);
                }
                v
            }
        };
        let limit = limit.clamp(1, 10_000);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut messages = Vec::new();
            for (i, tp) in partitions.iter().enumerate() {
                if messages.len() >= limit {
                    break;
                }
                let records = self
                    .log
                    .read(tp, positions[i], limit - messages.len(), Duration::ZERO)
                    .await?;
                for r in records {
                    positions[i] = r.next_offset();
                    // A record that does not decode cannot be shown; the webhook worker
                    // dead-letters it with the reason.
                    if let Some(Ok(m)) = p.message(&r) {
                        messages.push(m);
                    }
                }
            }
            if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(FeedPage {
                    messages,
                    next: encode_cursor(&positions),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Queues a replay for the program's webhook worker.
    pub async fn replay(
        &self,
        program: &str,
        request: ReplayRequest,
    ) -> Result<Vec<Replay>, DeliveryError> {
        let p = self.program(program)?.clone();
        if self.subscriptions.get(program).is_none() {
            return Err(SubscriptionError::NoWebhook(program.to_owned()).into());
        }
        let mut queued = Vec::new();
        if request.dead_letters {
            queued.push(Replay::DeadLetters);
        }
        match (&request.from, &request.from_change_id) {
            (Some(_), Some(_)) => {
                return Err(DeliveryError::BadReplay(
                    "give `from` or `from_change_id`, not both".into(),
                ))
            }
            (Some(t), None) => {
                let at = dsr_core::Micros::parse(t).ok_or_else(|| {
                    DeliveryError::BadReplay(format!(
                        "`from` must be an RFC 3339 time like 2026-12-01T00:00:00Z, not `{t}`"
                    ))
                })?;
                queued.push(Replay::Since(at.0.div_euclid(1000)));
            }
            (None, Some(id)) => {
                let at = self.written_at(&p.topic, id).await?;
                queued.push(Replay::Since(at));
            }
            (None, None) => {}
        }
        if queued.is_empty() {
            return Err(DeliveryError::BadReplay(
                "say what to replay: `dead_letters: true`, `from` (a time) or `from_change_id`"
                    .into(),
            ));
        }
        self.replays
            .lock()
            .expect("replays")
            .entry(program.to_owned())
            .or_default()
            .extend(queued.iter().cloned());
        self.wake.notify_waiters();
        Ok(queued)
    }

    /// When the log wrote the change `id` (a scan of the program's topic).
    async fn written_at(&self, topic: &str, id: &str) -> Result<i64, DeliveryError> {
        let partitions = self.log.partitions(topic).await?;
        for partition in 0..partitions {
            let tp = TopicPartition::new(topic.to_owned(), partition);
            let end = self.log.end(&tp).await?;
            let mut from = self.log.beginning(&tp).await?;
            while from < end {
                let records = self
                    .log
                    .read(&tp, from, 5_000, Duration::from_millis(200))
                    .await?;
                let Some(last) = records.last() else { break };
                from = last.next_offset();
                for r in &records {
                    if Message::from_record(r).is_ok_and(|m| m.id == id) {
                        return Ok(r.timestamp_ms.unwrap_or(0));
                    }
                }
            }
        }
        Err(DeliveryError::BadReplay(format!(
            "no change `{id}` on {topic}"
        )))
    }

    pub(crate) fn take_replays(&self, program: &str) -> Vec<Replay> {
        self.replays
            .lock()
            .expect("replays")
            .get_mut(program)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

/// `c1-<offset>.<offset>…`, one offset per partition: the eligibility topic's, then the
/// life events topic's.
pub fn encode_cursor(positions: &[i64]) -> String {
    let offsets: Vec<String> = positions.iter().map(|o| o.to_string()).collect();
    format!("c1-{}", offsets.join("."))
}

pub fn decode_cursor(cursor: &str, partitions: i32) -> Result<Vec<i64>, DeliveryError> {
    let bad = || DeliveryError::BadCursor(cursor.to_owned());
    let body = cursor.strip_prefix("c1-").ok_or_else(bad)?;
    let positions: Vec<i64> = body
        .split('.')
        .map(|o| o.parse::<i64>().ok().filter(|o| *o >= 0))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if positions.len() != partitions as usize {
        return Err(bad());
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let c = encode_cursor(&[0, 15, 3]);
        assert_eq!(c, "c1-0.15.3");
        assert_eq!(decode_cursor(&c, 3).unwrap(), vec![0, 15, 3]);
        for bad in ["", "c1-", "c1-1.x.3", "c2-1.2.3", "c1-1.2", "c1--1.2.3"] {
            assert!(decode_cursor(bad, 3).is_err(), "{bad}");
        }
    }
}
