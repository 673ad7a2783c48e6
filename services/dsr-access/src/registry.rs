//! The clients of one deployment and how a request proves which one it is.
//!
//! Clients live in `clients.json` in the security directory, rewritten atomically (temporary
//! file, fsync, rename) on every change: a handful of changes a day, read on every request from
//! memory. On the very first start the registry creates one admin client and writes its key to
//! `bootstrap-admin.key` (owner-only): the operator reads it once, creates the real clients,
//! and deletes the file.

use crate::client::{Client, ClientSpec, InvalidClient};
use crate::keys;
use crate::limits::RateLimits;
use crate::role::Role;
use crate::token::{TokenError, TokenIssuer};
use base64::Engine;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// How long an access token lives.
pub const TOKEN_SECONDS: i64 = 300;

const DAY_MS: i64 = 86_400_000;

/// Who is asking, as established for one request.
#[derive(Clone, Debug)]
pub struct Identity {
    pub client: Arc<Client>,
    /// `api_key` or `token`.
    pub via: &'static str,
    /// The key used (API keys only).
    pub key_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no credentials: send `Authorization: Bearer <API key or access token>` (or HTTP Basic with the client id and an API key)")]
    Missing,
    #[error("the Authorization header is neither `Bearer <API key or access token>` nor `Basic base64(client id:API key)`")]
    MalformedHeader,
    #[error("the API key is not valid")]
    InvalidKey,
    #[error("the API key {key_id} expired; ask an admin to rotate the client's key")]
    KeyExpired { key_id: String },
    #[error("the API key {key_id} was revoked")]
    KeyRevoked { key_id: String },
    #[error("the access token is not valid: {0}")]
    Token(#[from] TokenError),
    #[error("client `{0}` does not exist (any more)")]
    UnknownClient(String),
    #[error("client `{0}` has no key `{1}`")]
    UnknownKey(String, String),
    #[error("client `{0}` already exists; rotate its key instead of creating it again")]
    Exists(String),
    #[error(transparent)]
    Invalid(#[from] InvalidClient),
    #[error(
        "the last admin with a live key cannot be revoked: nobody could manage clients any more"
    )]
    LastAdmin,
    #[error("{path}: {source}; check that the data directory is readable and writable by dsr")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid clients file ({source}); restore it from a backup")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl AccessError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            AccessError::Missing
            | AccessError::MalformedHeader
            | AccessError::InvalidKey
            | AccessError::KeyExpired { .. }
            | AccessError::KeyRevoked { .. }
            | AccessError::Token(_) => 401,
            AccessError::UnknownClient(_) | AccessError::UnknownKey(..) => 404,
            AccessError::Exists(_) | AccessError::LastAdmin => 409,
            AccessError::Invalid(_) => 422,
            AccessError::Io { .. } | AccessError::Corrupt { .. } => 500,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AccessError + '_ {
    move |source| AccessError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Default)]
struct State {
    clients: BTreeMap<String, Arc<Client>>,
    /// key id → client id
    by_key: HashMap<String, String>,
}

impl State {
    fn from_clients(clients: Vec<Client>) -> State {
        let mut state = State::default();
        for c in clients {
            for k in &c.keys {
                state.by_key.insert(k.key_id.clone(), c.id.clone());
            }
            state.clients.insert(c.id.clone(), Arc::new(c));
        }
        state
    }
}

/// The registered clients, their keys, and the token issuer.
pub struct ClientRegistry {
    dir: PathBuf,
    state: RwLock<State>,
    tokens: TokenIssuer,
    pub limits: RateLimits,
}

/// What [`ClientRegistry::open`] did on a first start.
pub struct Bootstrap {
    /// Where the first admin's key was written.
    pub admin_key_file: PathBuf,
}

impl ClientRegistry {
    /// Opens the security directory `dir` (creating it and a first admin on a first start).
    pub fn open(
        dir: &Path,
        now_ms: i64,
    ) -> Result<(ClientRegistry, Option<Bootstrap>), AccessError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key_file = dir.join("token-signing.key");
        let tokens =
            TokenIssuer::new(crate::token::load_or_create_key(&key_file).map_err(io(&key_file))?);
        let file = dir.join("clients.json");
        let (clients, first) = match std::fs::read(&file) {
            Ok(bytes) => (
                serde_json::from_slice::<Vec<Client>>(&bytes).map_err(|source| {
                    AccessError::Corrupt {
                        path: file.clone(),
                        source,
                    }
                })?,
                false,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), true),
            Err(e) => return Err(io(&file)(e)),
        };
        let registry = ClientRegistry {
            dir: dir.to_owned(),
            state: RwLock::new(State::from_clients(clients)),
            tokens,
            limits: RateLimits::default(),
        };
        if !first {
            return Ok((registry, None));
        }
        let spec = ClientSpec {
            id: "admin".into(),
            name: "first administrator (created on the first start)".into(),
            role: Role::Admin,
            areas: Vec::new(),
            event_types: Vec::new(),
            source_names: Vec::new(),
            program: None,
            agreements: Vec::new(),
            requests_per_second: None,
            must_sign: false,
            signing_key: None,
            key_days: Some(30),
        };
        let (_, key) = registry.create(spec, now_ms)?;
        let admin_key_file = dir.join("bootstrap-admin.key");
        let _ = std::fs::remove_file(&admin_key_file);
        crate::token::write_private(&admin_key_file, format!("{key}\n").as_bytes())
            .map_err(io(&admin_key_file))?;
        Ok((registry, Some(Bootstrap { admin_key_file })))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().expect("client registry poisoned")
    }

    /// Establishes who sent a request from its `Authorization` header.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        now_ms: i64,
    ) -> Result<Identity, AccessError> {
        let header = authorization.ok_or(AccessError::Missing)?.trim();
        if let Some(token) = header.strip_prefix("Bearer ") {
            let token = token.trim();
            if keys::parse(token).is_some() {
                return self.authenticate_key(token, now_ms);
            }
            let claims = self.tokens.verify(token, now_ms)?;
            let client = self
                .read()
                .clients
                .get(&claims.sub)
                .cloned()
                .ok_or(AccessError::UnknownClient(claims.sub))?;
            if !client.keys.iter().any(|k| k.is_live(now_ms)) {
                // A client whose keys were all revoked loses its tokens with them.
                return Err(AccessError::KeyRevoked {
                    key_id: "(all of the client's keys)".into(),
                });
            }
            return Ok(Identity {
                client,
                via: "token",
                key_id: None,
            });
        }
        if let Some(encoded) = header.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(AccessError::MalformedHeader)?;
            let (user, key) = decoded
                .split_once(':')
                .ok_or(AccessError::MalformedHeader)?;
            let identity = self.authenticate_key(key, now_ms)?;
            if identity.client.id != user {
                return Err(AccessError::InvalidKey);
            }
            return Ok(identity);
        }
        Err(AccessError::MalformedHeader)
    }

    /// The client an API key belongs to, if the key is valid at `now_ms`.
    pub fn authenticate_key(&self, text: &str, now_ms: i64) -> Result<Identity, AccessError> {
        let (key_id, secret) = keys::parse(text).ok_or(AccessError::InvalidKey)?;
        let state = self.read();
        let client = state
            .by_key
            .get(key_id)
            .and_then(|id| state.clients.get(id))
            .ok_or(AccessError::InvalidKey)?;
        let stored = client
            .keys
            .iter()
            .find(|k| k.key_id == key_id)
            .ok_or(AccessError::InvalidKey)?;
        if !keys::matches(stored, secret) {
            return Err(AccessError::InvalidKey);
        }
        if stored.revoked_at_ms.is_some() {
            return Err(AccessError::KeyRevoked {
                key_id: key_id.into(),
            });
        }
        if !stored.is_live(now_ms) {
            return Err(AccessError::KeyExpired {
                key_id: key_id.into(),
            });
        }
        Ok(Identity {
            client: Arc::clone(client),
            via: "api_key",
            key_id: Some(key_id.into()),
        })
    }

    /// OAuth2 client credentials: a short-lived access token for `client_id` proving itself
    /// with one of its API keys.
    pub fn issue_token(
        &self,
        client_id: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<(String, i64), AccessError> {
        let identity = self.authenticate_key(secret, now_ms)?;
        if identity.client.id != client_id {
            return Err(AccessError::InvalidKey);
        }
        Ok((
            self.tokens.issue(
                client_id,
                identity.client.role.as_str(),
                now_ms,
                TOKEN_SECONDS,
            ),
            TOKEN_SECONDS,
        ))
    }

    /// The JSON Web Key Set with the tokens' public key.
    pub fn jwks(&self) -> serde_json::Value {
        self.tokens.jwks()
    }

    /// Registers a client and gives it its first key (the returned text, shown once).
    pub fn create(&self, spec: ClientSpec, now_ms: i64) -> Result<(Client, String), AccessError> {
        let mut client = spec.validate(now_ms)?;
        let key = keys::generate(now_ms, i64::from(client.key_days) * DAY_MS);
        client.keys.push(key.stored);
        self.change(|state| {
            if state.clients.contains_key(&client.id) {
                return Err(AccessError::Exists(client.id.clone()));
            }
            state
                .clients
                .insert(client.id.clone(), Arc::new(client.clone()));
            Ok(())
        })?;
        Ok((client, key.text))
    }

    /// Every client, without key hashes.
    pub fn list(&self) -> Vec<Arc<Client>> {
        self.read().clients.values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.read().clients.get(id).cloned()
    }

    /// Gives `id` a new key; its other live keys stay valid for `overlap_ms` more (so the
    /// client can switch without downtime), then expire.
    pub fn rotate(
        &self,
        id: &str,
        now_ms: i64,
        overlap_ms: i64,
    ) -> Result<(Client, String), AccessError> {
        let mut text = String::new();
        let client = self.update(id, |client| {
            let key = keys::generate(now_ms, i64::from(client.key_days) * DAY_MS);
            for k in client.keys.iter_mut().filter(|k| k.is_live(now_ms)) {
                k.expires_at_ms = k.expires_at_ms.min(now_ms.saturating_add(overlap_ms));
            }
            client.keys.push(key.stored);
            text = key.text;
            Ok(())
        })?;
        Ok((client, text))
    }

    /// Revokes one key of `id`, or all of them (`key_id` `None`): the client can do nothing
    /// until it is given a new key.
    pub fn revoke(
        &self,
        id: &str,
        key_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Client, AccessError> {
        let admins_left = |state: &State| {
            state
                .clients
                .values()
                .filter(|c| c.role == Role::Admin && c.keys.iter().any(|k| k.is_live(now_ms)))
                .count()
        };
        let before = admins_left(&self.read());
        let client = self.update(id, |client| {
            let mut found = false;
            for k in client.keys.iter_mut() {
                if key_id.is_none_or(|wanted| wanted == k.key_id) {
                    found = true;
                    k.revoked_at_ms.get_or_insert(now_ms);
                }
            }
            if !found {
                return Err(AccessError::UnknownKey(
                    id.into(),
                    key_id.unwrap_or("(any)").into(),
                ));
            }
            if client.role == Role::Admin
                && before <= 1
                && !client.keys.iter().any(|k| k.is_live(now_ms))
            {
                return Err(AccessError::LastAdmin);
            }
            Ok(())
        })?;
        Ok(client)
    }

    fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Client) -> Result<(), AccessError>,
    ) -> Result<Client, AccessError> {
        let mut out = None;
        self.change(|state| {
            let current = state
                .clients
                .get(id)
                .ok_or_else(|| AccessError::UnknownClient(id.into()))?;
            let mut client = Client::clone(current);
            f(&mut client)?;
            for k in &client.keys {
                state.by_key.insert(k.key_id.clone(), client.id.clone());
            }
            out = Some(client.clone());
            state.clients.insert(id.into(), Arc::new(client));
            Ok(())
        })?;
        Ok(out.expect("set on success"))
    }

    /// Applies `f` to a copy of the state, writes it durably, then makes it current: a
    /// failed write changes nothing.
    fn change(
        &self,
        f: impl FnOnce(&mut State) -> Result<(), AccessError>,
    ) -> Result<(), AccessError> {
        let mut guard = self.state.write().expect("client registry poisoned");
        let mut next = State {
            clients: guard.clients.clone(),
            by_key: guard.by_key.clone(),
        };
        f(&mut next)?;
        for c in next.clients.values() {
            for k in &c.keys {
                next.by_key.insert(k.key_id.clone(), c.id.clone());
            }
        }
        self.save(&next)?;
        *guard = next;
        Ok(())
    }

    fn save(&self, state: &State) -> Result<(), AccessError> {
        use std::io::Write;
        let clients: Vec<&Client> = state.clients.values().map(Arc::as_ref).collect();
        let bytes = serde_json::to_vec_pretty(&clients).expect("clients serialize");
        let file = self.dir.join("clients.json");
        let tmp = self.dir.join("clients.json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

/// A client as shown to admins: everything but the key hashes.
pub fn client_view(client: &Client) -> serde_json::Value {
    let mut v = serde_json::to_value(client).expect("a client serializes");
    if let Some(keys) = v.get_mut("keys").and_then(|k| k.as_array_mut()) {
        for k in keys {
            if let Some(k) = k.as_object_mut() {
                k.remove("secret_sha256");
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_spec(id: &str) -> ClientSpec {
        serde_json::from_value(serde_json::json!({
            "id": id, "role": "source_system", "areas": ["*"],
            "event_types": ["*"], "source_names": ["crvs"]
        }))
        .unwrap()
    }

    #[test]
    fn first_start_creates_an_admin_whose_key_works_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, boot) = ClientRegistry::open(dir.path(), 1_000).unwrap();
        let key = std::fs::read_to_string(boot.unwrap().admin_key_file).unwrap();
        let id = registry
            .authenticate(Some(&format!("Bearer {}", key.trim())), 2_000)
            .unwrap();
        assert_eq!(id.client.role, Role::Admin);
        drop(registry);
        let (registry, boot) = ClientRegistry::open(dir.path(), 3_000).unwrap();
        assert!(boot.is_none());
        assert!(registry.authenticate_key(key.trim(), 3_000).is_ok());
        let stored = std::fs::read_to_string(dir.path().join("clients.json")).unwrap();
        assert!(
            !stored.contains(key.trim()),
            "the key itself is never stored"
        );
    }

    #[test]
    fn keys_rotate_with_an_overlap_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, _) = ClientRegistry::open(dir.path(), 0).unwrap();
        let (_, old) = registry.create(source_spec("crvs"), 0).unwrap();
        let (_, new) = registry.rotate("crvs", 10, 100).unwrap();
        assert!(registry.authenticate_key(&old, 50).is_ok());
        assert!(registry.authenticate_key(&new, 50).is_ok());
        assert!(matches!(
            registry.authenticate_key(&old, 110),
            Err(AccessError::KeyExpired { .. })
        ));
        registry.revoke("crvs", None, 120).unwrap();
        assert!(matches!(
            registry.authenticate_key(&new, 130),
            Err(AccessError::KeyRevoked { .. })
        ));
        assert!(matches!(
            registry.create(source_spec("crvs"), 0),
            Err(AccessError::Exists(_))
        ));
    }

    #[test]
    fn tokens_and_basic_auth_name_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, _) = ClientRegistry::open(dir.path(), 0).unwrap();
        let (_, key) = registry.create(source_spec("crvs"), 0).unwrap();
        let (token, ttl) = registry.issue_token("crvs", &key, 1_000).unwrap();
        assert_eq!(ttl, TOKEN_SECONDS);
        let id = registry
            .authenticate(Some(&format!("Bearer {token}")), 2_000)
            .unwrap();
        assert_eq!((id.client.id.as_str(), id.via), ("crvs", "token"));
        assert!(registry.issue_token("admin", &key, 1_000).is_err());
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("crvs:{key}"));
        assert!(registry
            .authenticate(Some(&format!("Basic {basic}")), 0)
            .is_ok());
        let wrong = base64::engine::general_purpose::STANDARD.encode(format!("admin:{key}"));
        assert!(registry
            .authenticate(Some(&format!("Basic {wrong}")), 0)
            .is_err());
        assert!(matches!(
            registry.authenticate(None, 0),
            Err(AccessError::Missing)
        ));
        assert!(matches!(
            registry.authenticate(Some("Digest x"), 0),
            Err(AccessError::MalformedHeader)
        ));
        // Revoking the client's keys ends its tokens too.
        registry.revoke("crvs", None, 1_500).unwrap();
        assert!(registry
            .authenticate(Some(&format!("Bearer {token}")), 2_000)
            .is_err());
    }

    #[test]
    fn the_last_admin_cannot_be_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, _) = ClientRegistry::open(dir.path(), 0).unwrap();
        assert!(matches!(
            registry.revoke("admin", None, 1),
            Err(AccessError::LastAdmin)
        ));
        assert!(registry
            .get("admin")
            .unwrap()
            .keys
            .iter()
            .all(|k| k.revoked_at_ms.is_none()));
    }
}
