//! The data keys and what is done with them.
//!
//! A sealed value is `0xE5, key id (u32 BE), nonce (12 bytes), AES-256-GCM ciphertext and tag`:
//! [`SEAL_OVERHEAD`] bytes more than the plaintext, whatever the key, so re-encrypting a value
//! under another key never changes its length (the embedded log relies on that to rewrite
//! records in place of their old bytes). Callers pass *associated data* naming where the value
//! lives (a store and key, a log position): a value copied to another place does not open.
//!
//! Nonces are a random 4-byte prefix drawn when the keyring is opened and a 64-bit counter, so
//! they never repeat within a process and collide across processes only if two of them draw the
//! same prefix for the same key; rotating the data key regularly (`dsr keys rotate-data-key`)
//! bounds both.
//!
//! The file `security/data-keys.json` holds the data keys wrapped by the KEK (never in the
//! clear), which one is active for new writes, when each was made, and the KEK's fingerprint.
//! It also holds the **index key**, used only for [`Pseudonym`]s. The index key is not rotated
//! with the data keys: pseudonyms are store keys, and changing them means rebuilding the stores
//! (documented in `docs/security.md`).

use crate::kek::{write_private, Kek};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::aead::{Aad, LessSafeKey, UnboundKey, AES_256_GCM};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use zeroize::Zeroizing;

const MAGIC: u8 = 0xE5;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes a sealed value has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = 1 + 4 + NONCE_LEN + TAG_LEN;
/// Magic byte, key id and nonce: where the ciphertext starts.
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const FILE_FORMAT: u32 = 1;

/// What went wrong; every variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{what} `{path}`: {source}; check the path and its permissions")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key-encryption key from {source_name} is unusable: {why}")]
    BadKek { source_name: String, why: String },
    #[error(
        "the key-encryption key from {given_from} (fingerprint {given}) is not the one the data \
         keys in `{file}` were wrapped with (fingerprint {expected}); start dsr with the KEK this \
         data directory was created with (DSR_KEK or the configured kek_file)"
    )]
    WrongKek {
        file: PathBuf,
        given_from: String,
        given: String,
        expected: String,
    },
    #[error("the data-key file `{file}` is damaged: {why}; restore it from a backup (without it the data cannot be read)")]
    BadKeyFile { file: PathBuf, why: String },
    #[error(
        "this value was sealed with data key {key_id}, which this keyring does not have (retired, \
         or a data directory from elsewhere); restore `security/data-keys.json` from a backup \
         taken before that key was retired"
    )]
    UnknownKey { key_id: u32 },
    #[error("a sealed value did not open ({why}): it was altered on disk, or moved from another place; restore the data from its source")]
    Tampered { why: &'static str },
    #[error("data key {key_id} is the active key; rotate first (`dsr keys rotate-data-key`), then retire the old one")]
    RetireActive { key_id: u32 },
    #[error(
        "data key {key_id} may still protect stored data: no re-encryption pass has finished \
         since it stopped being the active key (`dsr keys rotate-data-key` runs one and waits \
         for it); retiring it now could make data unreadable"
    )]
    StillInUse { key_id: u32 },
    #[error("there is no data key {key_id} (the keys are {known})")]
    NoSuchKey { key_id: u32, known: String },
}

/// A keyed pseudonym of an id: what a store uses as the key instead of the id itself.
pub type Pseudonym = [u8; 16];

/// A data key as listed to operators (never its bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub id: u32,
    pub created_ms: i64,
    pub active: bool,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: u32,
    kek_fingerprint: String,
    active: u32,
    /// The index key, wrapped.
    index_key: String,
    keys: Vec<StoredKey>,
    /// Every key below this id protects nothing any more: a re-encryption pass that started
    /// when this key was active has finished.
    #[serde(default)]
    reencrypted_below: u32,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    id: u32,
    created_ms: i64,
    /// Nonce and ciphertext of the key under the KEK, base64.
    wrapped: String,
}

struct DataKey {
    cipher: LessSafeKey,
    created_ms: i64,
    wrapped: String,
}

struct State {
    active: u32,
    reencrypted_below: u32,
    keys: BTreeMap<u32, DataKey>,
}

/// The data keys of one data directory (cheap to share behind an `Arc`).
pub struct Keyring {
    file: PathBuf,
    kek: Aes256Gcm,
    kek_fingerprint: String,
    index: Hmac<Sha256>,
    index_wrapped: String,
    state: RwLock<State>,
    nonce_prefix: [u8; 4],
    counter: AtomicU64,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("file", &self.file)
            .field("active", &self.active_key())
            .finish()
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn wrap(kek: &Aes256Gcm, label: &[u8], key: &[u8; 32]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ct = kek
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: key,
                aad: label,
            },
        )
        .expect("AES-GCM encryption of 32 bytes cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    b64().encode(out)
}

fn unwrap_key(
    kek: &Aes256Gcm,
    label: &[u8],
    wrapped: &str,
    file: &Path,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let bad = |why: String| CryptoError::BadKeyFile {
        file: file.to_owned(),
        why,
    };
    let raw = b64()
        .decode(wrapped)
        .map_err(|e| bad(format!("a wrapped key is not base64: {e}")))?;
    if raw.len() != NONCE_LEN + 32 + TAG_LEN {
        return Err(bad(format!("a wrapped key has {} bytes", raw.len())));
    }
    let plain = Zeroizing::new(
        kek.decrypt(
            Nonce::from_slice(&raw[..NONCE_LEN]),
            Payload {
                msg: &raw[NONCE_LEN..],
                aad: label,
            },
        )
        .map_err(|_| bad("a wrapped key does not open with this KEK".into()))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&plain);
    Ok(key)
}

fn data_key_label(id: u32) -> Vec<u8> {
    format!("dsr data key {id}").into_bytes()
}

const INDEX_LABEL: &[u8] = b"dsr index key";

/// A data key's AES-256-GCM (aws-lc: values are sealed and opened on every write and read,
/// and it did the work in a third of the time of the `aes-gcm` crate the KEK still uses).
fn data_cipher(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is an AES-256 key"))
}

/// Where a data directory keeps its keys: `DATA_DIR/security/`.
pub const KEY_FILE: &str = "data-keys.json";
pub const GENERATED_KEK_FILE: &str = "kek.key";

impl KeyFile {
    /// A data-key file's contents, checked: its format, and that `kek` is the KEK it is
    /// wrapped with.
    fn parse(file: &Path, bytes: &[u8], kek: &Kek) -> Result<KeyFile, CryptoError> {
        let stored: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| CryptoError::BadKeyFile {
                file: file.to_owned(),
                why: e.to_string(),
            })?;
        if stored.format != FILE_FORMAT {
            return Err(CryptoError::BadKeyFile {
                file: file.to_owned(),
                why: format!(
                    "format {} (this dsr reads format {FILE_FORMAT}); use the dsr that wrote it",
                    stored.format
                ),
            });
        }
        if stored.kek_fingerprint != kek.fingerprint() {
            return Err(CryptoError::WrongKek {
                file: file.to_owned(),
                given_from: kek.source.to_string(),
                given: kek.fingerprint(),
                expected: stored.kek_fingerprint,
            });
        }
        Ok(stored)
    }
}

/// Wraps the data keys in `file` (a `data-keys.json`) under the KEK `new` instead of `old`,
/// replacing the file atomically: how an operator changes the key-encryption key (a suspected
/// leak, a new secret store, moving it out of the data directory). The data keys themselves,
/// and so every sealed value, stay as they are: nothing else is rewritten. Returns how many
/// data keys were re-wrapped. Nothing may have the keyring open meanwhile (it would write the
/// file back under `old` on its next rotation): `dsr keys rewrap-kek` holds the data
/// directory's lock.
pub fn rewrap(file: &Path, old: &Kek, new: &Kek) -> Result<usize, CryptoError> {
    let bytes = std::fs::read(file).map_err(|e| CryptoError::Io {
        what: "reading the data keys",
        path: file.to_owned(),
        source: e,
    })?;
    let mut stored = KeyFile::parse(file, &bytes, old)?;
    if new.fingerprint() == old.fingerprint() {
        return Err(CryptoError::BadKek {
            source_name: new.source.to_string(),
            why: "it is the key-encryption key the data keys are already wrapped with".into(),
        });
    }
    let old_cipher = Aes256Gcm::new_from_slice(old.bytes.as_ref()).expect("32-byte key");
    let new_cipher = Aes256Gcm::new_from_slice(new.bytes.as_ref()).expect("32-byte key");
    let index = unwrap_key(&old_cipher, INDEX_LABEL, &stored.index_key, file)?;
    stored.index_key = wrap(&new_cipher, INDEX_LABEL, &index);
    for k in &mut stored.keys {
        let label = data_key_label(k.id);
        let key = unwrap_key(&old_cipher, &label, &k.wrapped, file)?;
        k.wrapped = wrap(&new_cipher, &label, &key);
    }
    stored.kek_fingerprint = new.fingerprint();
    write_private(
        file,
        &serde_json::to_vec_pretty(&stored).expect("serializable"),
    )?;
    Ok(stored.keys.len())
}

impl Keyring {
    /// The keyring of a data directory's `security` folder, as `dsr up` opens it: the KEK from
    /// `env_kek` (the `DSR_KEK` variable), else `kek_file`, else `security/kek.key` (generated
    /// on first use); the data keys in `security/data-keys.json`. Also returns the KEK (for its
    /// source and fingerprint) and whether the keyring was created now.
    pub fn open_directory(
        security_dir: &Path,
        env_kek: Option<&str>,
        kek_file: Option<&Path>,
        now_ms: i64,
    ) -> Result<(Keyring, Kek, bool), CryptoError> {
        let kek = Kek::resolve(env_kek, kek_file, &security_dir.join(GENERATED_KEK_FILE))?;
        let (keyring, created) = Keyring::open(&security_dir.join(KEY_FILE), &kek, now_ms)?;
        Ok((keyring, kek, created))
    }

    /// Opens the keyring in `file` (creating it with a first data key when missing), unwrapping
    /// the data keys with `kek`. Whether it was created is the second value.
    pub fn open(file: &Path, kek: &Kek, now_ms: i64) -> Result<(Keyring, bool), CryptoError> {
        let kek_cipher = Aes256Gcm::new_from_slice(kek.bytes.as_ref()).expect("32-byte key");
        let fingerprint = kek.fingerprint();
        let (stored, created) = match std::fs::read(file) {
            Ok(bytes) => (KeyFile::parse(file, &bytes, kek)?, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut index = Zeroizing::new([0u8; 32]);
                OsRng.fill_bytes(index.as_mut());
                let mut first = Zeroizing::new([0u8; 32]);
                OsRng.fill_bytes(first.as_mut());
                let stored = KeyFile {
                    format: FILE_FORMAT,
                    kek_fingerprint: fingerprint.clone(),
                    active: 1,
                    index_key: wrap(&kek_cipher, INDEX_LABEL, &index),
                    keys: vec![StoredKey {
                        id: 1,
                        created_ms: now_ms,
                        wrapped: wrap(&kek_cipher, &data_key_label(1), &first),
                    }],
                    reencrypted_below: 0,
                };
                write_private(
                    file,
                    &serde_json::to_vec_pretty(&stored).expect("serializable"),
                )?;
                (stored, true)
            }
            Err(e) => {
                return Err(CryptoError::Io {
                    what: "reading the data keys",
                    path: file.to_owned(),
                    source: e,
                })
            }
        };
        let index_key = unwrap_key(&kek_cipher, INDEX_LABEL, &stored.index_key, file)?;
        let mut keys = BTreeMap::new();
        for k in &stored.keys {
            let bytes = unwrap_key(&kek_cipher, &data_key_label(k.id), &k.wrapped, file)?;
            keys.insert(
                k.id,
                DataKey {
                    cipher: data_cipher(&bytes),
                    created_ms: k.created_ms,
                    wrapped: k.wrapped.clone(),
                },
            );
        }
        if !keys.contains_key(&stored.active) {
            return Err(CryptoError::BadKeyFile {
                file: file.to_owned(),
                why: format!("the active key {} is not among the keys", stored.active),
            });
        }
        let mut prefix = [0u8; 4];
        OsRng.fill_bytes(&mut prefix);
        Ok((
            Keyring {
                file: file.to_owned(),
                kek: kek_cipher,
                kek_fingerprint: fingerprint,
                index: <Hmac<Sha256> as Mac>::new_from_slice(index_key.as_ref())
                    .expect("HMAC takes any key length"),
                index_wrapped: stored.index_key,
                state: RwLock::new(State {
                    active: stored.active,
                    reencrypted_below: stored.reencrypted_below,
                    keys,
                }),
                nonce_prefix: prefix,
                counter: AtomicU64::new(0),
            },
            created,
        ))
    }

    /// The id of the key new values are sealed with.
    pub fn active_key(&self) -> u32 {
        self.state.read().expect("keyring lock").active
    }

    /// The data keys, oldest first.
    pub fn keys(&self) -> Vec<KeyInfo> {
        let state = self.state.read().expect("keyring lock");
        state
            .keys
            .iter()
            .map(|(id, k)| KeyInfo {
                id: *id,
                created_ms: k.created_ms,
                active: *id == state.active,
            })
            .collect()
    }

    /// Encrypts `plain` under the active key, bound to `aad` (where the value lives).
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let state = self.state.read().expect("keyring lock");
        self.seal_with(&state, state.active, plain, aad)
    }

    fn seal_with(&self, state: &State, key_id: u32, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let key = &state.keys[&key_id];
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.nonce_prefix);
        nonce[4..].copy_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        // Header, then the plaintext encrypted where it lies, then the tag: one buffer.
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
        out.push(MAGIC);
        out.extend_from_slice(&key_id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = key
            .cipher
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[HEADER_LEN..],
            )
            .expect("AES-GCM encryption cannot fail below 64 GiB");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The id of the key `sealed` was sealed with, if it is a sealed value at all.
    pub fn key_id_of(sealed: &[u8]) -> Option<u32> {
        (sealed.len() >= SEAL_OVERHEAD && sealed[0] == MAGIC)
            .then(|| u32::from_be_bytes(sealed[1..5].try_into().expect("4 bytes")))
    }

    /// Decrypts a value sealed with `aad`.
    pub fn open_sealed(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key_id = Self::key_id_of(sealed).ok_or(CryptoError::Tampered {
            why: "not a sealed value",
        })?;
        let state = self.state.read().expect("keyring lock");
        let key = state
            .keys
            .get(&key_id)
            .ok_or(CryptoError::UnknownKey { key_id })?;
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&sealed[5..HEADER_LEN])
            .expect("12-byte nonce");
        let mut buf = sealed[HEADER_LEN..].to_vec();
        let len = key
            .cipher
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Tampered {
                why: "authentication failed",
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// `sealed` re-encrypted under the active key, or `None` when it already is. Same length.
    pub fn reseal(&self, sealed: &[u8], aad: &[u8]) -> Result<Option<Vec<u8>>, CryptoError> {
        let active = self.active_key();
        if Self::key_id_of(sealed) == Some(active) {
            return Ok(None);
        }
        let plain = Zeroizing::new(self.open_sealed(sealed, aad)?);
        let state = self.state.read().expect("keyring lock");
        Ok(Some(self.seal_with(&state, state.active, &plain, aad)))
    }

    /// The pseudonym of `id` in `domain` (e.g. "household", "person"): equal ids give equal
    /// pseudonyms, and without the index key nobody can tell which id a pseudonym stands for.
    pub fn pseudonym(&self, domain: &str, id: &[u8]) -> Pseudonym {
        let mut mac = self.index.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(id);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A pseudonym as text (for the audit log, which is JSON): `ps:` and 32 hex digits.
    pub fn pseudonym_text(&self, domain: &str, id: &str) -> String {
        format!("ps:{}", hex::encode(self.pseudonym(domain, id.as_bytes())))
    }

    /// Makes a new data key the active one, for every write from now on; old keys still open
    /// what they sealed until retired. The new key is on disk before it is used.
    pub fn rotate(&self, now_ms: i64) -> Result<u32, CryptoError> {
        let mut state = self.state.write().expect("keyring lock");
        let id = state.keys.keys().next_back().copied().unwrap_or(0) + 1;
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        let key = DataKey {
            cipher: data_cipher(&bytes),
            created_ms: now_ms,
            wrapped: wrap(&self.kek, &data_key_label(id), &bytes),
        };
        self.save(id, &state, Some((id, now_ms, &key.wrapped)), None)?;
        state.keys.insert(id, key);
        state.active = id;
        Ok(id)
    }

    /// Forgets data key `key_id` for good. The caller must first make sure nothing sealed
    /// with it remains (the rotation's re-encryption pass does, and `retire` in dsr checks).
    pub fn retire(&self, key_id: u32) -> Result<(), CryptoError> {
        let mut state = self.state.write().expect("keyring lock");
        if key_id == state.active {
            return Err(CryptoError::RetireActive { key_id });
        }
        if state.keys.contains_key(&key_id) && key_id >= state.reencrypted_below {
            return Err(CryptoError::StillInUse { key_id });
        }
        if !state.keys.contains_key(&key_id) {
            return Err(CryptoError::NoSuchKey {
                key_id,
                known: state
                    .keys
                    .keys()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        self.save(state.active, &state, None, Some(key_id))?;
        state.keys.remove(&key_id);
        Ok(())
    }

    /// Records that a re-encryption pass which started while key `active_at_start` was active
    /// has finished: every older key now protects nothing and may be retired.
    pub fn mark_reencrypted(&self, active_at_start: u32) -> Result<(), CryptoError> {
        let mut state = self.state.write().expect("keyring lock");
        if active_at_start <= state.reencrypted_below {
            return Ok(());
        }
        let previous = state.reencrypted_below;
        state.reencrypted_below = active_at_start;
        if let Err(e) = self.save(state.active, &state, None, None) {
            state.reencrypted_below = previous;
            return Err(e);
        }
        Ok(())
    }

    /// The keys that may be retired (older than the last finished re-encryption's key).
    pub fn retirable(&self) -> Vec<u32> {
        let state = self.state.read().expect("keyring lock");
        state
            .keys
            .keys()
            .copied()
            .filter(|id| *id < state.reencrypted_below && *id != state.active)
            .collect()
    }

    fn save(
        &self,
        active: u32,
        state: &State,
        add: Option<(u32, i64, &str)>,
        remove: Option<u32>,
    ) -> Result<(), CryptoError> {
        let mut keys: Vec<StoredKey> = state
            .keys
            .iter()
            .filter(|(id, _)| Some(**id) != remove)
            .map(|(id, k)| StoredKey {
                id: *id,
                created_ms: k.created_ms,
                wrapped: k.wrapped.clone(),
            })
            .collect();
        if let Some((id, created_ms, wrapped)) = add {
            keys.push(StoredKey {
                id,
                created_ms,
                wrapped: wrapped.to_owned(),
            });
        }
        let file = KeyFile {
            format: FILE_FORMAT,
            kek_fingerprint: self.kek_fingerprint.clone(),
            active,
            index_key: self.index_wrapped.clone(),
            keys,
            reencrypted_below: state.reencrypted_below,
        };
        write_private(
            &self.file,
            &serde_json::to_vec_pretty(&file).expect("serializable"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kek(byte: &str) -> Kek {
        Kek::from_hex(&byte.repeat(32)).unwrap()
    }

    proptest! {
        /// The data keys' cipher (aws-lc) gives byte for byte what the `aes-gcm` crate, which
        /// sealed every value before it, gives: values sealed by either open with the other,
        /// so existing data directories read as before.
        #[test]
        fn data_cipher_is_the_aes_gcm_of_earlier_releases(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            plain in proptest::collection::vec(any::<u8>(), 0..2000),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let earlier = Aes256Gcm::new_from_slice(&key).unwrap()
                .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad })
                .unwrap();
            let cipher = data_cipher(&key);
            let mut now = plain.clone();
            let tag = cipher
                .seal_in_place_separate_tag(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad[..]),
                    &mut now,
                )
                .unwrap();
            now.extend_from_slice(tag.as_ref());
            prop_assert_eq!(&now, &earlier);
            let mut buf = earlier.clone();
            let opened = cipher
                .open_in_place(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad[..]),
                    &mut buf,
                )
                .unwrap();
            prop_assert_eq!(&opened[..], &plain[..]);
        }
    }

    fn keyring(dir: &Path) -> Keyring {
        Keyring::open(&dir.join("data-keys.json"), &kek("11"), 1)
            .unwrap()
            .0
    }

    #[test]
    fn a_rewrapped_keyring_opens_with_the_new_kek_only_and_reads_what_the_old_one_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data-keys.json");
        let ring = keyring(dir.path());
        ring.rotate(2).unwrap();
        let sealed = ring.seal(b"Zamwe Washongako", b"households/p0");
        let pseudonym = ring.pseudonym("person", b"P1");
        drop(ring);

        // The wrong old KEK, or the same KEK twice: refused, the file untouched.
        let before = std::fs::read(&file).unwrap();
        assert!(matches!(
            rewrap(&file, &kek("33"), &kek("22")),
            Err(CryptoError::WrongKek { .. })
        ));
        assert!(matches!(
            rewrap(&file, &kek("11"), &kek("11")),
            Err(CryptoError::BadKek { .. })
        ));
        assert_eq!(std::fs::read(&file).unwrap(), before);

        assert_eq!(rewrap(&file, &kek("11"), &kek("22")).unwrap(), 2);
        assert!(matches!(
            Keyring::open(&file, &kek("11"), 3),
            Err(CryptoError::WrongKek { .. })
        ));
        let (ring, created) = Keyring::open(&file, &kek("22"), 3).unwrap();
        assert!(!created);
        assert_eq!(ring.active_key(), 2);
        assert_eq!(
            ring.open_sealed(&sealed, b"households/p0").unwrap(),
            b"Zamwe Washongako"
        );
        assert_eq!(ring.pseudonym("person", b"P1"), pseudonym);
    }

    #[test]
    fn sealed_values_open_only_with_their_associated_data_and_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        let ring = keyring(dir.path());
        let sealed = ring.seal(b"Zamwe Washongako", b"households/p0");
        assert_eq!(sealed.len(), 16 + SEAL_OVERHEAD);
        assert!(!sealed.windows(5).any(|w| w == b"Zamwe"));
        assert_eq!(
            ring.open_sealed(&sealed, b"households/p0").unwrap(),
            b"Zamwe Washongako"
        );
        assert!(matches!(
            ring.open_sealed(&sealed, b"households/p1"),
            Err(CryptoError::Tampered { .. })
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(ring.open_sealed(&flipped, b"households/p0").is_err());
        assert!(ring.open_sealed(b"plain", b"").is_err());
    }

    #[test]
    fn keys_survive_a_restart_and_a_wrong_kek_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data-keys.json");
        let (ring, created) = Keyring::open(&file, &kek("11"), 1).unwrap();
        assert!(created);
        let sealed = ring.seal(b"P0000000100", b"x");
        let pseudonym = ring.pseudonym("person", b"P0000000100");
        drop(ring);
        let (ring, created) = Keyring::open(&file, &kek("11"), 2).unwrap();
        assert!(!created);
        assert_eq!(ring.open_sealed(&sealed, b"x").unwrap(), b"P0000000100");
        assert_eq!(ring.pseudonym("person", b"P0000000100"), pseudonym);
        assert_ne!(ring.pseudonym("household", b"P0000000100"), pseudonym);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&hex::encode("11".repeat(32))));
        let err = Keyring::open(&file, &kek("22"), 3).unwrap_err();
        assert!(matches!(err, CryptoError::WrongKek { .. }), "{err}");
        assert!(err.to_string().contains("fingerprint"), "{err}");
    }

    #[test]
    fn rotation_switches_new_writes_reseals_old_ones_and_retires_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data-keys.json");
        let ring = Keyring::open(&file, &kek("11"), 1).unwrap().0;
        let old = ring.seal(b"record", b"k");
        assert_eq!(Keyring::key_id_of(&old), Some(1));
        assert_eq!(ring.rotate(5).unwrap(), 2);
        assert_eq!(ring.active_key(), 2);
        assert_eq!(Keyring::key_id_of(&ring.seal(b"new", b"k")), Some(2));
        assert_eq!(ring.open_sealed(&old, b"k").unwrap(), b"record");
        let resealed = ring.reseal(&old, b"k").unwrap().unwrap();
        assert_eq!(resealed.len(), old.len());
        assert_eq!(Keyring::key_id_of(&resealed), Some(2));
        assert!(ring.reseal(&resealed, b"k").unwrap().is_none());
        assert!(matches!(
            ring.retire(2),
            Err(CryptoError::RetireActive { .. })
        ));
        assert!(matches!(ring.retire(9), Err(CryptoError::NoSuchKey { .. })));
        assert!(matches!(
            ring.retire(1),
            Err(CryptoError::StillInUse { key_id: 1 })
        ));
        assert!(ring.retirable().is_empty());
        ring.mark_reencrypted(2).unwrap();
        assert_eq!(ring.retirable(), vec![1]);
        ring.retire(1).unwrap();
        assert!(matches!(
            ring.open_sealed(&old, b"k"),
            Err(CryptoError::UnknownKey { key_id: 1 })
        ));
        drop(ring);
        let ring = Keyring::open(&file, &kek("11"), 9).unwrap().0;
        assert_eq!(
            ring.keys(),
            vec![KeyInfo {
                id: 2,
                created_ms: 5,
                active: true
            }]
        );
        assert_eq!(ring.open_sealed(&resealed, b"k").unwrap(), b"record");
        assert_eq!(ring.rotate(10).unwrap(), 3);
    }

    proptest! {
        #[test]
        fn every_value_round_trips_and_reseals_to_the_same_length(
            plain in proptest::collection::vec(any::<u8>(), 0..512),
            aad in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let ring = keyring(dir.path());
            let sealed = ring.seal(&plain, &aad);
            prop_assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
            prop_assert_eq!(ring.open_sealed(&sealed, &aad).unwrap(), plain.clone());
            ring.rotate(2).unwrap();
            let resealed = ring.reseal(&sealed, &aad).unwrap().unwrap();
            prop_assert_eq!(resealed.len(), sealed.len());
            prop_assert_eq!(ring.open_sealed(&resealed, &aad).unwrap(), plain);
        }
    }
}
