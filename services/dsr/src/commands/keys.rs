//! `dsr keys`: register clients and manage their API keys, and rotate and retire the data keys
//! that seal personal data at rest, through a running registry's admin API, as an admin (the
//! admin's own key from `--key-file` or `DSR_API_KEY`); and, offline, wrap the data keys under
//! a new key-encryption key (`rewrap-kek`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Where the registry is and how the admin proves who they are.
#[derive(Args, Clone)]
pub struct Admin {
    /// The registry's address.
    #[arg(long, env = "DSR_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A file holding the admin's API key (e.g. DATA_DIR/security/bootstrap-admin.key on a
    /// first start).
    #[arg(long, env = "DSR_API_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The admin's API key itself (prefer `--key-file`: command lines are visible to others).
    #[arg(long, env = "DSR_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[derive(Subcommand)]
pub enum Keys {
    /// Register a client; prints its first API key once (stdout), the client on stderr.
    Create(Create),
    /// List the clients and their keys (never the secrets).
    List(Admin),
    /// Give a client a new key; its current keys stay valid for `--overlap-seconds`.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 86_400)]
        overlap_seconds: i64,
        #[command(flatten)]
        admin: Admin,
    },
    /// Revoke one key of a client (`--key-id`) or all of them.
    Revoke {
        id: String,
        #[arg(long)]
        key_id: Option<String>,
        #[command(flatten)]
        admin: Admin,
    },
    /// List the data keys that seal personal data at rest, and the last rotation.
    #[command(name = "data-keys")]
    DataKeyList(Admin),
    /// Seal new writes with a new data key at once and re-encrypt everything stored in the
    /// background, with no downtime; shows the re-encryption's progress until it finishes.
    RotateDataKey {
        /// Return once the new key is active, without following the re-encryption.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        admin: Admin,
    },
    /// Forget an old data key for good (refused while anything may still be sealed with it).
    RetireDataKey {
        id: u32,
        #[command(flatten)]
        admin: Admin,
    },
    /// Wrap the data keys under a new key-encryption key (KEK), offline: `dsr up` must be
    /// stopped. Only `security/data-keys.json` is rewritten; the data stays as it is. The
    /// current KEK comes from DSR_KEK, --kek-file, or the data directory; the new one from
    /// DSR_NEW_KEK (64 hex digits) or --new-kek-file.
    #[command(name = "rewrap-kek")]
    RewrapKek(RewrapKek),
}

#[derive(Args)]
pub struct RewrapKek {
    /// The stopped registry's data directory.
    #[arg(long, default_value = "dsr-data")]
    data_dir: PathBuf,
    /// The current KEK's file (when it is not in DSR_KEK or the data directory).
    #[arg(long)]
    kek_file: Option<PathBuf>,
    /// The new KEK's file (64 hex digits), e.g. on a separate, restricted mount.
    #[arg(long)]
    new_kek_file: Option<PathBuf>,
}

impl RewrapKek {
    fn run(&self) -> Result<()> {
        use dsr_crypto::kek::{Kek, ENV_VAR};
        use dsr_crypto::keyring::GENERATED_KEK_FILE;
        let security = self.data_dir.join("security");
        let keys = security.join(dsr_crypto::keyring::KEY_FILE);
        if !keys.is_file() {
            bail!(
                "{} has no data keys ({} is missing): give the data directory of a registry \
                 `dsr up` has run on (--data-dir)",
                self.data_dir.display(),
                keys.display()
            );
        }
        let _lock = super::lock_data_dir(&self.data_dir)?;
        let env_old = std::env::var(ENV_VAR).ok().filter(|v| !v.trim().is_empty());
        let in_directory = security.join(GENERATED_KEK_FILE);
        if env_old.is_none() && self.kek_file.is_none() && !in_directory.is_file() {
            bail!(
                "give the current key-encryption key: {ENV_VAR}, or --kek-file FILE (there is \
                 none in {})",
                security.display()
            );
        }
        let old = Kek::resolve(env_old.as_deref(), self.kek_file.as_deref(), &in_directory)?;
        let new = match (std::env::var(NEW_KEK_VAR).ok(), &self.new_kek_file) {
            (Some(hex), None) => Kek::from_hex(hex.trim())
                .with_context(|| format!("the new key-encryption key in {NEW_KEK_VAR}"))?,
            (None, Some(file)) => Kek::resolve(None, Some(file), &in_directory)?,
            (Some(_), Some(_)) => bail!(
                "give the new key-encryption key once: {NEW_KEK_VAR} or --new-kek-file, not both"
            ),
            (None, None) => bail!(
                "give the new key-encryption key: {NEW_KEK_VAR} (64 hex digits) or \
                 --new-kek-file FILE"
            ),
        };
        let n = dsr_crypto::rewrap(&keys, &old, &new).context("re-wrapping the data keys")?;
        println!(
            "re-wrapped {n} data keys in {} under the key-encryption key {} (was {}); start dsr \
             up with the new one ({ENV_VAR} or kek_file)",
            keys.display(),
            new.fingerprint(),
            old.fingerprint()
        );
        if old.is_in_data_directory() {
            eprintln!(
                "dsr keys: the old key-encryption key {} no longer opens the data keys, but it \
                 opens any copy of {} made before now: delete it once such backups are gone",
                in_directory.display(),
                keys.display()
            );
        }
        Ok(())
    }
}

/// The environment variable that may hold the new KEK for `dsr keys rewrap-kek`.
pub const NEW_KEK_VAR: &str = "DSR_NEW_KEK";

#[derive(Args)]
pub struct Create {
    /// A JSON file with the whole client (see docs/security.md); the flags below fill in or
    /// override its fields.
    #[arg(long)]
    spec: Option<PathBuf>,
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// source_system, program, caseworker, emergency_coordinator, approver, auditor, admin.
    #[arg(long)]
    role: Option<String>,
    /// Admin-area codes, comma-separated, or `*`.
    #[arg(long, value_delimiter = ',')]
    areas: Vec<String>,
    /// Event types a source system may publish, comma-separated, or `*`.
    #[arg(long, value_delimiter = ',')]
    event_types: Vec<String>,
    /// The `source_system` names it may publish as, comma-separated, or `*`.
    #[arg(long, value_delimiter = ',')]
    source_names: Vec<String>,
    /// The program a program client reads for.
    #[arg(long)]
    program: Option<String>,
    /// A data-sharing agreement `ID:PURPOSE:FIELD,FIELD…` (repeatable; `*` for all fields).
    #[arg(long)]
    agreement: Vec<String>,
    #[arg(long)]
    requests_per_second: Option<u32>,
    #[arg(long)]
    key_days: Option<u32>,
    #[command(flatten)]
    admin: Admin,
}

impl Admin {
    fn key(&self) -> Result<String> {
        if let Some(key) = &self.key {
            return Ok(key.trim().to_owned());
        }
        let Some(file) = &self.key_file else {
            bail!(
                "give the admin's API key: --key-file FILE (or DSR_API_KEY_FILE), or DSR_API_KEY"
            );
        };
        Ok(std::fs::read_to_string(file)
            .with_context(|| format!("reading the admin key from {}", file.display()))?
            .trim()
            .to_owned())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(self.key()?);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}; is dsr up running there?"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{url} answered {status}: {}",
                body["error"].as_str().unwrap_or("(no reason given)")
            );
        }
        Ok(body)
    }
}

impl Keys {
    pub fn run(self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<()> {
        use reqwest::Method;
        match self {
            Keys::RewrapKek(rewrap) => rewrap.run(),
            Keys::Create(create) => {
                let spec = create.spec()?;
                let answer = create
                    .admin
                    .call(Method::POST, "/v1/admin/clients", Some(spec))
                    .await?;
                print_with_key(&answer)
            }
            Keys::List(admin) => {
                let clients = admin.call(Method::GET, "/v1/admin/clients", None).await?;
                for c in clients.as_array().into_iter().flatten() {
                    let live: Vec<&str> = c["keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|k| k["revoked_at_ms"].is_null())
                        .filter_map(|k| k["key_id"].as_str())
                        .collect();
                    println!(
                        "{:<24} {:<22} keys not revoked: {}",
                        c["id"].as_str().unwrap_or("?"),
                        c["role"].as_str().unwrap_or("?"),
                        live.join(", ")
                    );
                }
                Ok(())
            }
            Keys::Rotate {
                id,
                overlap_seconds,
                admin,
            } => {
                let answer = admin
                    .call(
                        Method::POST,
                        &format!("/v1/admin/clients/{id}/rotate"),
                        Some(json!({ "overlap_seconds": overlap_seconds })),
                    )
                    .await?;
                print_with_key(&answer)
            }
            Keys::DataKeyList(admin) => {
                let keys = admin.call(Method::GET, "/v1/admin/data-keys", None).await?;
                print_data_keys(&keys);
                Ok(())
            }
            Keys::RotateDataKey { no_wait, admin } => {
                let started = admin
                    .call(Method::POST, "/v1/admin/data-keys/rotate", None)
                    .await?;
                let key_id = started["rotation"]["key_id"].as_u64().unwrap_or_default();
                eprintln!("data key {key_id} is active: every new write is sealed with it");
                if no_wait {
                    eprintln!("re-encryption of stored data runs in the background; follow it with `dsr keys data-keys`");
                    return Ok(());
                }
                follow_rotation(&admin).await
            }
            Keys::RetireDataKey { id, admin } => {
                let keys = admin
                    .call(
                        Method::POST,
                        &format!("/v1/admin/data-keys/{id}/retire"),
                        None,
                    )
                    .await?;
                eprintln!("data key {id} is retired");
                print_data_keys(&keys);
                Ok(())
            }
            Keys::Revoke { id, key_id, admin } => {
                admin
                    .call(
                        Method::POST,
                        &format!("/v1/admin/clients/{id}/revoke"),
                        Some(json!({ "key_id": key_id })),
                    )
                    .await?;
                eprintln!(
                    "revoked {} of client {id}",
                    key_id.map_or("every key".to_owned(), |k| format!("key {k}"))
                );
                Ok(())
            }
        }
    }
}

fn print_data_keys(keys: &Value) {
    for k in keys["keys"].as_array().into_iter().flatten() {
        println!(
            "data key {:<4} created {} ms{}",
            k["id"],
            k["created_ms"],
            if k["active"] == true {
                "  (active)"
            } else {
                ""
            }
        );
    }
    let retirable: Vec<String> = keys["retirable"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    if !retirable.is_empty() {
        println!("may be retired: {}", retirable.join(", "));
    }
    let r = &keys["rotation"];
    if r["state"] != "idle" {
        println!(
            "last rotation: to key {}, {}{}",
            r["key_id"],
            r["state"].as_str().unwrap_or("?"),
            r["error"]
                .as_str()
                .map_or(String::new(), |e| format!(" ({e})"))
        );
    }
}

/// Polls the rotation until it ends, with a progress bar over every place's progress.
async fn follow_rotation(admin: &Admin) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "re-encrypting {bar:40} {percent:>3}% {msg} ({elapsed})",
        )
        .expect("a valid template"),
    );
    loop {
        let keys = admin
            .call(reqwest::Method::GET, "/v1/admin/data-keys", None)
            .await?;
        let r = &keys["rotation"];
        let places = r["places"].as_array().cloned().unwrap_or_default();
        let sum = |field: &str| -> u64 {
            places
                .iter()
                .map(|p| {
                    // Each place counts in its own units; weigh them equally.
                    let total = p["total"].as_u64().unwrap_or(0).max(1);
                    let value = p[field].as_u64().unwrap_or(0).min(total);
                    if field == "total" || p["finished"] == true {
                        1000
                    } else {
                        value * 1000 / total
                    }
                })
                .sum()
        };
        bar.set_length(sum("total"));
        bar.set_position(sum("done"));
        if let Some(current) = places.iter().find(|p| p["finished"] != true) {
            bar.set_message(current["name"].as_str().unwrap_or("").to_owned());
        }
        match r["state"].as_str() {
            Some("running") => {}
            Some("finished") => {
                bar.finish_and_clear();
                let resealed: u64 = places
                    .iter()
                    .map(|p| p["resealed"].as_u64().unwrap_or(0))
                    .sum();
                eprintln!("re-encryption finished: {resealed} values and records re-encrypted");
                for p in &places {
                    eprintln!(
                        "  {:<28} {} re-encrypted",
                        p["name"].as_str().unwrap_or("?"),
                        p["resealed"]
                    );
                }
                print_data_keys(&keys);
                eprintln!("retire an old key with `dsr keys retire-data-key ID` once backups made with it are gone");
                return Ok(());
            }
            _ => {
                bar.abandon();
                bail!(
                    "the re-encryption failed: {}; the old keys stay, run `dsr keys rotate-data-key` again",
                    r["error"].as_str().unwrap_or("(no reason given)")
                );
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn print_with_key(answer: &Value) -> Result<()> {
    eprintln!("{}", serde_json::to_string_pretty(&answer["client"])?);
    eprintln!("the API key below is shown once; dsr keeps only its hash:");
    println!("{}", answer["api_key"].as_str().unwrap_or_default());
    Ok(())
}

impl Create {
    fn spec(&self) -> Result<Value> {
        let mut spec = match &self.spec {
            Some(file) => serde_json::from_str(
                &std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?,
            )
            .with_context(|| format!("{} is not a JSON client", file.display()))?,
            None => json!({}),
        };
        let set = |spec: &mut Value, key: &str, value: Value| {
            spec[key] = value;
        };
        if let Some(v) = &self.id {
            set(&mut spec, "id", json!(v));
        }
        if let Some(v) = &self.name {
            set(&mut spec, "name", json!(v));
        }
        if let Some(v) = &self.role {
            set(&mut spec, "role", json!(v));
        }
        if !self.areas.is_empty() {
            set(&mut spec, "areas", json!(self.areas));
        }
        if !self.event_types.is_empty() {
            set(&mut spec, "event_types", json!(self.event_types));
        }
        if !self.source_names.is_empty() {
            set(&mut spec, "source_names", json!(self.source_names));
        }
        if let Some(v) = &self.program {
            set(&mut spec, "program", json!(v));
        }
        if !self.agreement.is_empty() {
            let mut agreements = Vec::new();
            for a in &self.agreement {
                let mut parts = a.splitn(3, ':');
                let (Some(id), Some(purpose), Some(fields)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    bail!("--agreement `{a}` is not ID:PURPOSE:FIELD,FIELD…");
                };
                agreements.push(json!({"id": id, "purpose": purpose, "fields": fields.split(',').collect::<Vec<_>>()}));
            }
            set(&mut spec, "agreements", json!(agreements));
        }
        if let Some(v) = self.requests_per_second {
            set(&mut spec, "requests_per_second", json!(v));
        }
        if let Some(v) = self.key_days {
            set(&mut spec, "key_days", json!(v));
        }
        if spec.get("id").is_none() || spec.get("role").is_none() {
            bail!("a client needs at least --id and --role (or a --spec file with them)");
        }
        Ok(spec)
    }
}
