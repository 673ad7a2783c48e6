//! Webhook subscriptions: one per program, registered by an admin, kept in
//! `DATA_DIR/delivery/webhooks.json`. Signing secrets are sealed with the registry's data keys
//! (they are as sensitive as the data they protect) and shown once, when they are made.
//!
//! Rotation keeps the old secret valid for an overlap the admin chooses, during which every
//! request carries two signatures, so the receiver can switch to the new secret at its own pace.

use crate::signing::Secret;
use crate::target::{parse_target, TargetError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dsr_crypto::Keyring;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use url::Url;

/// What an admin sends to register or change a program's webhook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where to POST (http; see `target` for what is refused).
    pub url: String,
    /// Changes per request: 1 sends each change alone (the body is the change), more sends
    /// `eligibility.batch` bodies of up to this many [default: 1; at most 1000].
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Allow a private, loopback or link-local target (a receiver inside the ministry's
    /// network) [default: false].
    #[serde(default)]
    pub allow_private_network: bool,
    /// Attempts before a batch goes to the dead-letter store [default: 12].
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The first retry's delay in milliseconds, doubled each attempt, with jitter
    /// [default: 1000].
    #[serde(default)]
    pub initial_backoff_ms: Option<u64>,
    /// The longest delay between attempts in milliseconds [default: 300000].
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
    /// How long to wait for the receiver's answer in milliseconds [default: 10000].
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// A new webhook first receives the program's current eligible set (as `entered`
    /// changes marked `backfill`), then the changes from then on [default: true]. `false`:
    /// every change the topic keeps, from the first. Ignored when changing a webhook.
    #[serde(default)]
    pub backfill: Option<bool>,
}

/// Where a webhook's delivery starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Backfill {
    /// No backfill: delivery starts at the first change the topics keep.
    #[default]
    None,
    /// To do: the worker takes the topics' ends as the start of live delivery.
    Pending,
    /// The eligible set as of `live_from` is being sent (sent again, with the same ids, if
    /// the worker stops before it is through).
    Sending { live_from: Vec<LiveFrom> },
    /// Sent: live delivery goes on from `live_from` (records before it are not sent).
    Done {
        live_from: Vec<LiveFrom>,
        households: u64,
    },
}

/// Where live delivery starts on one topic partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveFrom {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Backfill {
    /// The first offset live delivery sends on `topic`/`partition` (0: all).
    pub fn live_from(&self, topic: &str, partition: i32) -> i64 {
        match self {
            Backfill::Sending { live_from } | Backfill::Done { live_from, .. } => live_from
                .iter()
                .find(|l| l.topic == topic && l.partition == partition)
                .map_or(0, |l| l.offset),
            Backfill::None | Backfill::Pending => 0,
        }
    }
}

/// A program's webhook, validated.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub program_id: String,
    pub url: Url,
    pub batch_size: usize,
    pub allow_private_network: bool,
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timeout_ms: u64,
    pub secrets: Vec<StoredSecret>,
    pub created_ms: i64,
    pub backfill: Backfill,
}

/// A signing secret and how long it stays valid.
#[derive(Clone, Debug)]
pub struct StoredSecret {
    pub secret: Secret,
    pub created_ms: i64,
    /// Set when a newer secret replaced it: valid until then.
    pub expires_ms: Option<i64>,
}

impl Webhook {
    /// The secrets to sign with at `now_ms` (the newest last).
    pub fn secrets_at(&self, now_ms: i64) -> Vec<&Secret> {
        self.secrets
            .iter()
            .filter(|s| s.expires_ms.is_none_or(|e| e > now_ms))
            .map(|s| &s.secret)
            .collect()
    }

    /// What may be shown about the webhook (no secrets).
    pub fn view(&self, now_ms: i64) -> WebhookView {
        WebhookView {
            url: self.url.to_string(),
            batch_size: self.batch_size,
            allow_private_network: self.allow_private_network,
            max_attempts: self.max_attempts,
            initial_backoff_ms: self.initial_backoff_ms,
            max_backoff_ms: self.max_backoff_ms,
            timeout_ms: self.timeout_ms,
            secrets_in_force: self.secrets_at(now_ms).len(),
            secret_expires_ms: self
                .secrets
                .iter()
                .filter(|s| s.expires_ms.is_some_and(|e| e > now_ms))
                .filter_map(|s| s.expires_ms)
                .collect(),
            backfill: self.backfill.clone(),
        }
    }
}

/// A webhook as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookView {
    pub url: String,
    pub batch_size: usize,
    pub allow_private_network: bool,
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timeout_ms: u64,
    /// How many secrets sign each request now (2 during a rotation's overlap).
    pub secrets_in_force: usize,
    /// When the old secrets of a rotation stop being used (ms since the epoch).
    pub secret_expires_ms: Vec<i64>,
    /// Whether the eligible set was sent first, and where live delivery started.
    pub backfill: Backfill,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{0}")]
    Invalid(String),
    #[error("program `{0}` has no webhook; register one with PUT /v1/programs/{0}/webhook")]
    NoWebhook(String),
    #[error("cannot read or write the webhook subscriptions in {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// The file's form: secrets sealed.
#[derive(Serialize, Deserialize)]
struct FileWebhook {
    url: String,
    batch_size: usize,
    allow_private_network: bool,
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    timeout_ms: u64,
    created_ms: i64,
    secrets: Vec<FileSecret>,
    #[serde(default)]
    backfill: Backfill,
}

#[derive(Serialize, Deserialize)]
struct FileSecret {
    /// base64 of the secret sealed with a data key, bound to the program id.
    sealed: String,
    created_ms: i64,
    expires_ms: Option<i64>,
}

/// Every program's webhook.
pub struct Subscriptions {
    path: PathBuf,
    keyring: Arc<Keyring>,
    hooks: RwLock<BTreeMap<String, Webhook>>,
}

fn aad(program: &str) -> Vec<u8> {
    format!("dsr-webhook-secret:{program}").into_bytes()
}

impl Subscriptions {
    /// Opens (or starts) `dir/webhooks.json`.
    pub fn open(dir: &Path, keyring: Arc<Keyring>) -> Result<Subscriptions, SubscriptionError> {
        let path = dir.join("webhooks.json");
        let io = |e: std::io::Error| SubscriptionError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut hooks = BTreeMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let file: BTreeMap<String, FileWebhook> =
                serde_json::from_str(&text).map_err(|e| SubscriptionError::Io {
                    path: path.clone(),
                    message: format!("not valid: {e}"),
                })?;
            for (program, f) in file {
                let mut secrets = Vec::new();
                for s in f.secrets {
                    let sealed = STANDARD
                        .decode(&s.sealed)
                        .map_err(|e| SubscriptionError::Io {
                            path: path.clone(),
                            message: format!("a sealed secret of {program} is not base64: {e}"),
                        })?;
                    let plain = keyring.open_sealed(&sealed, &aad(&program)).map_err(|e| {
                        SubscriptionError::Io {
                            path: path.clone(),
                            message: format!("the secret of {program} cannot be opened: {e}"),
                        }
                    })?;
                    secrets.push(StoredSecret {
                        secret: Secret::parse(&STANDARD.encode(plain))
                            .map_err(SubscriptionError::Invalid)?,
                        created_ms: s.created_ms,
                        expires_ms: s.expires_ms,
                    });
                }
                let url = parse_target(&f.url)?;
                hooks.insert(
                    program.clone(),
                    Webhook {
                        program_id: program,
                        url,
                        batch_size: f.batch_size,
                        allow_private_network: f.allow_private_network,
                        max_attempts: f.max_attempts,
                        initial_backoff_ms: f.initial_backoff_ms,
                        max_backoff_ms: f.max_backoff_ms,
                        timeout_ms: f.timeout_ms,
                        secrets,
                        created_ms: f.created_ms,
                        backfill: f.backfill,
                    },
                );
            }
        }
        Ok(Subscriptions {
            path,
            keyring,
            hooks: RwLock::new(hooks),
        })
    }

    /// The webhook of `program`, if it has one.
    pub fn get(&self, program: &str) -> Option<Webhook> {
        self.hooks
            .read()
            .expect("webhooks lock")
            .get(program)
            .cloned()
    }

    /// Registers or changes `program`'s webhook. A new webhook gets a new secret, returned
    /// (shown once); a changed one keeps its secrets (`None`). A new webhook's backfill is
    /// done from where its worker finds the topics' ends ([`Subscriptions::put_from`] fixes
    /// them at registration).
    pub fn put(
        &self,
        program: &str,
        spec: WebhookSpec,
        now_ms: i64,
    ) -> Result<(Webhook, Option<Secret>), SubscriptionError> {
        self.put_from(program, spec, now_ms, None)
    }

    /// [`Subscriptions::put`], with a new webhook's live delivery starting at `live_from` (the
    /// topics' ends when it was registered), its backfill the eligible set as of there.
    pub fn put_from(
        &self,
        program: &str,
        spec: WebhookSpec,
        now_ms: i64,
        live_from: Option<Vec<LiveFrom>>,
    ) -> Result<(Webhook, Option<Secret>), SubscriptionError> {
        let url = parse_target(&spec.url)?;
        let batch_size = spec.batch_size.unwrap_or(1);
        if !(1..=1000).contains(&batch_size) {
            return Err(SubscriptionError::Invalid(format!(
                "batch_size must be 1 to 1000, not {batch_size}"
            )));
        }
        let max_attempts = spec.max_attempts.unwrap_or(12);
        if max_attempts == 0 {
            return Err(SubscriptionError::Invalid(
                "max_attempts must be at least 1".into(),
            ));
        }
        let timeout_ms = spec.timeout_ms.unwrap_or(10_000);
        if timeout_ms == 0 {
            return Err(SubscriptionError::Invalid(
                "timeout_ms must be at least 1".into(),
            ));
        }
        let mut hooks = self.hooks.write().expect("webhooks lock");
        let previous = hooks.get(program);
        let backfill = match (previous, live_from) {
            (Some(p), _) => p.backfill.clone(),
            (None, _) if !spec.backfill.unwrap_or(true) => Backfill::None,
            (None, Some(live_from)) => Backfill::Sending { live_from },
            (None, None) => Backfill::Pending,
        };
        let (secrets, created_ms, new_secret) = match previous {
            Some(p) => (p.secrets.clone(), p.created_ms, None),
            None => {
                let s = Secret::generate();
                (
                    vec![StoredSecret {
                        secret: s.clone(),
                        created_ms: now_ms,
                        expires_ms: None,
                    }],
                    now_ms,
                    Some(s),
                )
            }
        };
        let hook = Webhook {
            program_id: program.to_owned(),
            url,
            batch_size,
            allow_private_network: spec.allow_private_network,
            max_attempts,
            initial_backoff_ms: spec.initial_backoff_ms.unwrap_or(1_000),
            max_backoff_ms: spec.max_backoff_ms.unwrap_or(300_000).max(1),
            timeout_ms,
            secrets,
            created_ms,
            backfill,
        };
        let mut next = hooks.clone();
        next.insert(program.to_owned(), hook.clone());
        self.save(&next)?;
        *hooks = next;
        Ok((hook, new_secret))
    }

    /// A new secret for `program`; the ones in force stay valid for `overlap_ms` more. Returns
    /// the new secret and the webhook as it is with it.
    pub fn rotate(
        &self,
        program: &str,
        overlap_ms: i64,
        now_ms: i64,
    ) -> Result<(Secret, Webhook), SubscriptionError> {
        let mut hooks = self.hooks.write().expect("webhooks lock");
        let mut next = hooks.clone();
        let hook = next
            .get_mut(program)
            .ok_or_else(|| SubscriptionError::NoWebhook(program.to_owned()))?;
        let until = now_ms + overlap_ms.max(0);
        hook.secrets
            .retain(|s| s.expires_ms.is_none_or(|e| e > now_ms));
        for s in &mut hook.secrets {
            s.expires_ms = Some(s.expires_ms.map_or(until, |e| e.min(until)));
        }
        let secret = Secret::generate();
        hook.secrets.push(StoredSecret {
            secret: secret.clone(),
            created_ms: now_ms,
            expires_ms: None,
        });
        let hook = hook.clone();
        self.save(&next)?;
        *hooks = next;
        Ok((secret, hook))
    }

    /// Records how far `program`'s backfill is (the webhook as it is then; `None` if it was
    /// removed meanwhile).
    pub fn set_backfill(
        &self,
        program: &str,
        backfill: Backfill,
    ) -> Result<Option<Webhook>, SubscriptionError> {
        let mut hooks = self.hooks.write().expect("webhooks lock");
        let mut next = hooks.clone();
        let Some(hook) = next.get_mut(program) else {
            return Ok(None);
        };
        hook.backfill = backfill;
        let hook = hook.clone();
        self.save(&next)?;
        *hooks = next;
        Ok(Some(hook))
    }

    /// Removes `program`'s webhook; whether it had one.
    pub fn remove(&self, program: &str) -> Result<bool, SubscriptionError> {
        let mut hooks = self.hooks.write().expect("webhooks lock");
        let mut next = hooks.clone();
        let had = next.remove(program).is_some();
        if had {
            self.save(&next)?;
            *hooks = next;
        }
        Ok(had)
    }

    /// Writes every secret again under the active data key (rotation of data keys).
    pub fn reencrypt(&self) -> Result<u64, SubscriptionError> {
        let hooks = self.hooks.write().expect("webhooks lock");
        self.save(&hooks)?;
        Ok(hooks.values().map(|h| h.secrets.len() as u64).sum())
    }

    /// How many secrets are kept.
    pub fn secret_count(&self) -> u64 {
        let hooks = self.hooks.read().expect("webhooks lock");
        hooks.values().map(|h| h.secrets.len() as u64).sum()
    }

    fn save(&self, hooks: &BTreeMap<String, Webhook>) -> Result<(), SubscriptionError> {
        let io = |e: std::io::Error| SubscriptionError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let file: BTreeMap<&str, FileWebhook> = hooks
            .iter()
            .map(|(program, h)| {
                (
                    program.as_str(),
                    FileWebhook {
                        url: h.url.to_string(),
                        batch_size: h.batch_size,
                        allow_private_network: h.allow_private_network,
                        max_attempts: h.max_attempts,
                        initial_backoff_ms: h.initial_backoff_ms,
                        max_backoff_ms: h.max_backoff_ms,
                        timeout_ms: h.timeout_ms,
                        created_ms: h.created_ms,
                        backfill: h.backfill.clone(),
                        secrets: h
                            .secrets
                            .iter()
                            .map(|s| FileSecret {
                                sealed: STANDARD
                                    .encode(self.keyring.seal(&s.secret.bytes(), &aad(program))),
                                created_ms: s.created_ms,
                                expires_ms: s.expires_ms,
                            })
                            .collect(),
                    },
                )
            })
            .collect();
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&serde_json::to_vec_pretty(&file).expect("webhooks serialize"))
                .map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(dir: &Path) -> Arc<Keyring> {
        let (k, _, _) = Keyring::open_directory(dir, None, None, 0).unwrap();
        Arc::new(k)
    }

    #[test]
    fn a_webhook_survives_a_restart_with_its_secrets_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keyring(&dir.path().join("security"));
        let subs = Subscriptions::open(&dir.path().join("delivery"), Arc::clone(&keys)).unwrap();
        let spec = WebhookSpec {
            url: "http://receiver.example/hook".into(),
            batch_size: Some(50),
            ..Default::default()
        };
        let (_, secret) = subs.put("food-aid", spec.clone(), 1_000).unwrap();
        let secret = secret.expect("a new webhook gets a secret");
        let (_, again) = subs.put("food-aid", spec, 2_000).unwrap();
        assert!(again.is_none(), "changing a webhook keeps its secret");
        let text = std::fs::read_to_string(dir.path().join("delivery/webhooks.json")).unwrap();
        assert!(
            !text.contains(&secret.expose()[6..]),
            "the secret is sealed on disk"
        );

        let (newer, rotated) = subs.rotate("food-aid", 60_000, 10_000).unwrap();
        assert_eq!(rotated.secrets_at(20_000), vec![&secret, &newer]);
        let reopened = Subscriptions::open(&dir.path().join("delivery"), keys).unwrap();
        let hook = reopened.get("food-aid").unwrap();
        assert_eq!(hook.batch_size, 50);
        assert_eq!(hook.secrets_at(20_000), vec![&secret, &newer]);
        assert_eq!(hook.secrets_at(70_000), vec![&newer]);
        assert!(matches!(
            reopened.rotate("child-grant", 0, 0),
            Err(SubscriptionError::NoWebhook(_))
        ));
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let subs = Subscriptions::open(dir.path(), keyring(&dir.path().join("s"))).unwrap();
        let bad = |spec: WebhookSpec| subs.put("p", spec, 0).unwrap_err().to_string();
        assert!(bad(WebhookSpec {
            url: "ftp://x/".into(),
            ..Default::default()
        })
        .contains("must use https"));
        assert!(bad(WebhookSpec {
            url: "http://x/".into(),
            batch_size: Some(0),
            ..Default::default()
        })
        .contains("batch_size"));
    }
}
