//! The webhook workers: one task per program, each a consumer group (`dsr-delivery.<program>`)
//! on the program's topic. A worker sends the changes of a partition in offset order, in
//! batches, and commits a batch's offsets only once the receiver took it (2xx) or, after the
//! retry budget, once it is in the dead-letter store; so a change is never lost, a household's
//! changes arrive in order, and a change sent twice (after a crash or a retry) carries the same
//! `webhook-id`. A slow or failing receiver holds up its own program only: the pipeline writes
//! the topic whatever the workers do, and every program has its own task.

use crate::message::{batch_body, rfc3339_ms, Message};
use crate::service::{Delivery, DeliveryError, ProgramTopic, Replay};
use crate::signing::signature_header;
use crate::subscriptions::{Backfill, Webhook};
use crate::target::check_addresses;
use dsr_log::{ConsumedRecord, GroupEvent, GroupMember, Log, TopicPartition};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a batch ended.
enum Sent {
    Delivered,
    Failed { error: String, attempts: u32 },
    Stopped,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The delay before attempt `attempt + 1`: doubling from the initial backoff up to the
/// maximum, with "full jitter" between half and all of it, so receivers coming back are not
/// hit by every sender at once.
pub fn backoff(hook: &Webhook, attempt: u32, random: u64) -> Duration {
    let base = hook
        .initial_backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(hook.max_backoff_ms);
    let half = base / 2;
    Duration::from_millis(half + random % (base - half + 1))
}

fn random() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64()
}

impl Delivery {
    /// Runs a worker per program until `stop` turns true.
    pub async fn run<L: Log + Clone + 'static>(
        self: Arc<Self>,
        log: L,
        stop: watch::Receiver<bool>,
    ) -> Result<(), DeliveryError> {
        let mut tasks = tokio::task::JoinSet::new();
        for program in self.programs.clone() {
            let me = Arc::clone(&self);
            let log = log.clone();
            let stop = stop.clone();
            tasks.spawn(async move { me.program_loop(log, program, stop).await });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => panic!("a delivery worker panicked: {e}"),
            }
        }
        Ok(())
    }

    async fn program_loop<L: Log>(
        self: Arc<Self>,
        log: L,
        program: ProgramTopic,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), DeliveryError> {
        let group = format!("dsr-delivery.{}", program.program_id);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            if self.subscriptions.get(&program.program_id).is_none() {
                let woken = self.wake.notified();
                tokio::select! {
                    _ = woken => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            // A new webhook gets the eligible set first, before the group is joined (a long
            // backfill must not keep a Kafka group member from polling).
            if let Some(hook) = self.subscriptions.get(&program.program_id) {
                if !self.backfill(&hook, &program, &mut stop).await? {
                    return Ok(());
                }
            }
            let mut member = log.join_group(&group, &program.topics())?;
            let result = self.deliver(&mut member, &program, &mut stop).await;
            let _ = member.leave().await;
            result?;
        }
    }

    /// Delivers while the program has a webhook.
    async fn deliver<M: GroupMember>(
        &self,
        member: &mut M,
        program: &ProgramTopic,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), DeliveryError> {
        let id = program.program_id.as_str();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let Some(hook) = self.subscriptions.get(id) else {
                return Ok(());
            };
            for replay in self.take_replays(id) {
                if !self.run_replay(&hook, program, replay, stop).await? {
                    return Ok(());
                }
            }
            let events = member
                .poll(
                    hook.batch_size.saturating_mul(10).max(500),
                    Duration::from_millis(300),
                )
                .await?;
            for event in events {
                match event {
                    GroupEvent::Assigned(tps) => {
                        let committed = member.committed(&tps).await?;
                        for (tp, c) in tps.iter().zip(committed) {
                            let at = match c {
                                Some(o) => o,
                                None => self.log.beginning(tp).await?,
                            }
                            .max(hook.backfill.live_from(&tp.topic, tp.partition));
                            self.counters(id, |c| {
                                c.positions.insert((tp.topic.clone(), tp.partition), at)
                            });
                        }
                    }
                    GroupEvent::Revoked(tps) => self.counters(id, |c| {
                        for tp in &tps {
                            c.positions.remove(&(tp.topic.clone(), tp.partition));
                        }
                    }),
                    GroupEvent::Records(records) => {
                        let mut by_partition: BTreeMap<(String, i32), Vec<ConsumedRecord>> =
                            BTreeMap::new();
                        for r in records {
                            by_partition
                                .entry((r.topic.clone(), r.partition))
                                .or_default()
                                .push(r);
                        }
                        // Offsets are committed once per poll (a commit is a durable write),
                        // for what was settled; a crash before it sends those again, same ids.
                        let mut settled: BTreeMap<TopicPartition, i64> = BTreeMap::new();
                        let mut stopped = false;
                        'partitions: for ((topic, partition), records) in by_partition {
                            let tp = TopicPartition::new(topic.clone(), partition);
                            // Before where live delivery starts (a backfill sent the state
                            // of things there): settled without sending.
                            let live_from = hook.backfill.live_from(&topic, partition);
                            let (before, records): (Vec<_>, Vec<_>) =
                                records.into_iter().partition(|r| r.offset < live_from);
                            if let Some(last) = before.last() {
                                settled.insert(tp.clone(), last.next_offset());
                            }
                            for chunk in records.chunks(hook.batch_size) {
                                if !self.send_chunk(&hook, program, chunk, stop).await? {
                                    stopped = true;
                                    break 'partitions;
                                }
                                let next = chunk.last().expect("a chunk").next_offset();
                                settled.insert(tp.clone(), next);
                                self.counters(id, |c| {
                                    c.positions.insert((topic.clone(), partition), next)
                                });
                            }
                        }
                        if !settled.is_empty() {
                            let offsets: Vec<(TopicPartition, i64)> = settled.into_iter().collect();
                            member.commit(&offsets).await?;
                        }
                        if stopped {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// A new webhook's backfill: takes the topics' ends as where live delivery starts, sends
    /// the program's eligible set as of there (each eligible household's last change, as an
    /// `entered` marked `backfill`, in topic order), then marks it done. Stopped midway, it
    /// starts over from the same ends, with the same message ids. `false` when stopped.
    async fn backfill(
        &self,
        hook: &Webhook,
        program: &ProgramTopic,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool, DeliveryError> {
        let id = program.program_id.as_str();
        let live_from = match &hook.backfill {
            Backfill::Sending { live_from } => live_from.clone(),
            Backfill::Pending => {
                let live_from = self.live_ends(id).await?;
                let sending = Backfill::Sending {
                    live_from: live_from.clone(),
                };
                if self.subscriptions.set_backfill(id, sending)?.is_none() {
                    return Ok(true);
                }
                live_from
            }
            Backfill::None | Backfill::Done { .. } => return Ok(true),
        };
        let mut set = Vec::new();
        for l in live_from.iter().filter(|l| l.topic == program.topic) {
            let tp = TopicPartition::new(l.topic.clone(), l.partition);
            // Each household's last change before the live start, with its offset.
            let mut last: HashMap<String, (i64, Message)> = HashMap::new();
            let mut from = self.log.beginning(&tp).await?;
            while from < l.offset {
                let records = self
                    .log
                    .read(&tp, from, 5_000, Duration::from_millis(200))
                    .await?;
                let Some(end) = records.last() else { break };
                from = end.next_offset();
                for r in records.iter().filter(|r| r.offset < l.offset) {
                    match Message::from_record(r) {
                        Ok(m) => {
                            last.insert(m.household_id().to_owned(), (r.offset, m));
                        }
                        Err(reason) => {
                            tracing::warn!(program = id, %reason, "a change the backfill cannot read is left out")
                        }
                    }
                }
            }
            let mut eligible: Vec<(i64, Message)> = last
                .into_values()
                .filter(|(_, m)| m.leaves_eligible())
                .collect();
            eligible.sort_by_key(|(offset, _)| *offset);
            set.extend(eligible.into_iter().map(|(_, m)| m.backfill()));
        }
        for chunk in set.chunks(hook.batch_size) {
            match self.send_with_retry(hook, id, chunk, stop).await {
                Sent::Delivered => self.counters(id, |c| c.delivered += chunk.len() as u64),
                Sent::Failed { error, attempts } => {
                    self.dead_letters
                        .add(id, chunk, &error, attempts, now_ms())?;
                }
                Sent::Stopped => return Ok(false),
            }
        }
        let households = set.len() as u64;
        self.subscriptions.set_backfill(
            id,
            Backfill::Done {
                live_from,
                households,
            },
        )?;
        tracing::info!(program = id, households, "backfill sent");
        Ok(true)
    }

    /// Sends one chunk of records (undecodable ones go straight to the dead-letter store);
    /// `false` when stopped before it was settled (nothing may be committed).
    async fn send_chunk(
        &self,
        hook: &Webhook,
        topics: &ProgramTopic,
        chunk: &[ConsumedRecord],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool, DeliveryError> {
        let program = topics.program_id.as_str();
        let mut messages = Vec::with_capacity(chunk.len());
        for r in chunk {
            match topics.message(r) {
                None => {}
                Some(Ok(m)) => messages.push(m),
                Some(Err(reason)) => {
                    let unreadable = Message {
                        id: format!("unreadable-{}-{}", r.partition, r.offset),
                        kind: "unreadable".into(),
                        timestamp: rfc3339_ms(r.timestamp_ms.unwrap_or(0)),
                        data: serde_json::json!({ "reason": reason }),
                        position: format!("{}:{}", r.partition, r.offset),
                    };
                    self.dead_letters
                        .add(program, &[unreadable], &reason, 0, now_ms())?;
                }
            }
        }
        if messages.is_empty() {
            return Ok(true);
        }
        match self.send_with_retry(hook, program, &messages, stop).await {
            Sent::Delivered => {
                self.counters(program, |c| c.delivered += messages.len() as u64);
                Ok(true)
            }
            Sent::Failed { error, attempts } => {
                tracing::warn!(program, changes = messages.len(), attempts, %error, "webhook delivery gave up; changes moved to the dead-letter store");
                self.dead_letters
                    .add(program, &messages, &error, attempts, now_ms())?;
                Ok(true)
            }
            Sent::Stopped => Ok(false),
        }
    }

    /// Posts `messages` until the receiver takes them or the budget is spent.
    async fn send_with_retry(
        &self,
        hook: &Webhook,
        program: &str,
        messages: &[Message],
        stop: &mut watch::Receiver<bool>,
    ) -> Sent {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The webhook as it is now: a secret rotated or a URL changed while this batch
            // was being retried applies to the next attempt.
            let current = self.subscriptions.get(program);
            let hook = current.as_ref().unwrap_or(hook);
            let (id, body) = if hook.batch_size == 1 && messages.len() == 1 {
                (messages[0].id.clone(), messages[0].body())
            } else {
                batch_body(messages, &rfc3339_ms(now_ms()))
            };
            let result = self.post(hook, &id, &body).await;
            let error = match result {
                Ok(()) => {
                    self.counters(program, |c| {
                        c.retrying = 0;
                        c.attempts = 0;
                    });
                    self.audited(program, messages, "allowed: delivered");
                    return Sent::Delivered;
                }
                Err(e) => e,
            };
            self.counters(program, |c| {
                c.retrying = messages.len() as u64;
                c.attempts = attempt;
                c.last_error = Some(error.clone());
                c.last_error_at_ms = Some(now_ms());
            });
            if attempt >= hook.max_attempts {
                self.counters(program, |c| {
                    c.retrying = 0;
                    c.attempts = 0;
                });
                // Sent, perhaps received: recorded like a delivery, with its failure.
                self.audited(
                    program,
                    messages,
                    &format!("failed after {attempt} attempts: {error}"),
                );
                return Sent::Failed {
                    error,
                    attempts: attempt,
                };
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(hook, attempt, random())) => {}
                _ = stop.wait_for(|s| *s) => return Sent::Stopped,
            }
        }
    }

    /// One request, signed with every secret in force. `Err` says why it did not count as
    /// delivered.
    async fn post(&self, hook: &Webhook, id: &str, body: &[u8]) -> Result<(), String> {
        check_addresses(&hook.url, hook.allow_private_network)
            .await
            .map_err(|e| e.to_string())?;
        let now = now_ms();
        let timestamp = now.div_euclid(1000);
        let signature = signature_header(hook.secrets_at(now), id, timestamp, body);
        let response = self
            .http
            .post(hook.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .timeout(Duration::from_millis(hook.timeout_ms))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                format!("posting to {}: {text}", hook.url)
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        Err(if status.is_redirection() {
            format!("the receiver answered {status} (redirects are not followed)")
        } else {
            format!("the receiver answered {status}: {detail}")
        })
    }

    /// Runs one replay; `false` when stopped.
    async fn run_replay(
        &self,
        hook: &Webhook,
        program: &ProgramTopic,
        replay: Replay,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool, DeliveryError> {
        let id = program.program_id.as_str();
        match replay {
            Replay::DeadLetters => {
                // A snapshot of what is there now: letters that fail again are kept (with the
                // old error), and are not retried in a loop.
                let letters = self.dead_letters.list(id, usize::MAX)?;
                for chunk in letters.chunks(hook.batch_size) {
                    let messages: Vec<Message> = chunk.iter().map(|l| l.message.clone()).collect();
                    match self.send_with_retry(hook, id, &messages, stop).await {
                        Sent::Delivered => {
                            let seqs: Vec<u64> = chunk.iter().map(|l| l.seq).collect();
                            self.dead_letters.remove(id, &seqs)?;
                            self.counters(id, |c| c.delivered += messages.len() as u64);
                        }
                        Sent::Failed { .. } => break,
                        Sent::Stopped => return Ok(false),
                    }
                }
            }
            Replay::Since(from_ms) => {
                for tp in program.partitions(self.log.as_ref()).await? {
                    let end = self.log.end(&tp).await?;
                    let mut from = self.log.beginning(&tp).await?;
                    while from < end {
                        let records = self
                            .log
                            .read(&tp, from, 5_000, Duration::from_millis(200))
                            .await?;
                        let Some(last) = records.last() else { break };
                        from = last.next_offset();
                        let wanted: Vec<ConsumedRecord> = records
                            .into_iter()
                            .filter(|r| {
                                r.offset < end && r.timestamp_ms.is_none_or(|t| t >= from_ms)
                            })
                            .collect();
                        for chunk in wanted.chunks(hook.batch_size) {
                            if !self.send_chunk(hook, program, chunk, stop).await? {
                                return Ok(false);
                            }
                        }
                    }
                }
            }
        }
        self.counters(id, |c| c.replays_done += 1);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Secret;
    use crate::subscriptions::StoredSecret;

    pub(super) fn hook() -> Webhook {
        Webhook {
            program_id: "p".into(),
            url: "http://x/".parse().unwrap(),
            batch_size: 1,
            allow_private_network: false,
            max_attempts: 5,
            initial_backoff_ms: 1000,
            max_backoff_ms: 8000,
            timeout_ms: 1000,
            secrets: vec![StoredSecret {
                secret: Secret::generate(),
                created_ms: 0,
                expires_ms: None,
            }],
            created_ms: 0,
            backfill: Backfill::None,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() {
        let h = hook();
        for (attempt, base) in [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (9, 8000)] {
            for r in [0, 1, 499, 12345, u64::MAX] {
                let d = backoff(&h, attempt, r).as_millis() as u64;
                assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d}");
            }
        }
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use crate::subscriptions::Subscriptions;
    use crate::DeadLetters;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A certificate authority and a receiver certificate for 127.0.0.1 it signed.
    struct Pki {
        ca_pem: String,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone()],
            key: rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    /// An HTTPS receiver answering 204 to every request; records each request's head.
    async fn receiver(pki: &Pki) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return; // the client refused our certificate
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = tls.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    tls.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tls.shutdown().await;
                });
            }
        });
        (address, heads)
    }

    fn delivery(dir: &std::path::Path) -> Delivery {
        let (keyring, _, _) =
            dsr_crypto::Keyring::open_directory(&dir.join("security"), None, None, 0).unwrap();
        let keyring = Arc::new(keyring);
        let (log, _) = dsr_log::EmbeddedLog::open(dir.join("log")).unwrap();
        Delivery::new(
            Vec::new(),
            Subscriptions::open(&dir.join("delivery"), Arc::clone(&keyring)).unwrap(),
            DeadLetters::open(&dir.join("dead-letters"), keyring).unwrap(),
            Arc::new(log),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn https_targets_are_verified_against_the_system_and_the_given_roots() {
        let pki = pki();
        let (address, heads) = receiver(&pki).await;
        let mut hook = super::tests::hook();
        hook.url = format!("https://{address}/hook").parse().unwrap();
        hook.allow_private_network = true;
        let dir = tempfile::tempdir().unwrap();

        // Not trusted: the system's roots do not know the receiver's CA.
        let untrusting = delivery(&dir.path().join("a"));
        let refused = untrusting.post(&hook, "msg_1", b"{}").await.unwrap_err();
        assert!(refused.contains("certificate"), "{refused}");
        assert!(heads.lock().unwrap().is_empty());

        // Trusted with the CA file: delivered, signed.
        let trusting = delivery(&dir.path().join("b"))
            .with_extra_roots(pki.ca_pem.as_bytes())
            .unwrap();
        trusting.post(&hook, "msg_1", b"{}").await.unwrap();
        let heads = heads.lock().unwrap();
        assert_eq!(heads.len(), 1);
        let head = heads[0].to_ascii_lowercase();
        assert!(head.starts_with("post /hook"), "{head}");
        assert!(head.contains("webhook-signature: v1,"), "{head}");

        // A CA file that is not PEM is refused with the reason.
        let bad = delivery(&dir.path().join("c")).with_extra_roots(b"not a certificate");
        assert!(matches!(bad, Err(DeliveryError::Tls(_))));
    }
}
