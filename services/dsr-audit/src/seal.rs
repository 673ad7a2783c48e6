//! The signing key that seals the chain, its public half for verifying, and the seal line.
//!
//! A seal signs `"dsr-audit-seal\n{seq}\n{hash}\n{at_ms}"`: the domain prefix keeps the
//! signature from being reusable as any other message signed with the same key, and the
//! sealed hash is the chain head, so one signature covers every entry up to `seq`.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AuditError;

/// The secret key that seals the log, and its key id.
pub struct Sealer {
    key: SigningKey,
    key_id: String,
}

/// The public half of a [`Sealer`]'s key: what [`verify`](crate::verify()) checks seals with.
#[derive(Clone)]
pub struct PublicKey {
    key: VerifyingKey,
}

/// A seal as stored on its line, inside `{"seal": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Seal {
    /// The last entry sealed.
    pub seq: u64,
    /// That entry's hash: the chain head at the time of sealing.
    pub hash: String,
    pub at_ms: i64,
    pub key_id: String,
    /// Hex ed25519 signature of [`message`].
    pub signature: String,
}

/// The text a seal signs.
fn message(seq: u64, hash: &str, at_ms: i64) -> String {
    format!("dsr-audit-seal\n{seq}\n{hash}\n{at_ms}")
}

impl Sealer {
    /// A new random key (from the operating system's generator).
    pub fn generate() -> Sealer {
        Sealer::from_key(SigningKey::generate(&mut OsRng))
    }

    /// Loads the secret key file (32 bytes, hex) or creates it (mode 0600 on unix) with its
    /// public key beside it (`<path>.pub`, hex).
    ///
    /// An existing `<path>.pub` must match the secret key, so that a replaced key file is
    /// noticed before it seals anything; a missing one is written again.
    pub fn load_or_create(path: &Path) -> Result<Sealer, AuditError> {
        let sealer = match fs::read_to_string(path) {
            Ok(text) => Sealer::from_hex(path, &text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Sealer::create(path)?,
            Err(e) => return Err(AuditError::io("read the key file", path, e)),
        };
        warn_if_readable_by_others(path);
        let public_path = public_key_path(path);
        match fs::read_to_string(&public_path) {
            Ok(text) => {
                let public = PublicKey::from_hex(&public_path, &text)?;
                if public.key != sealer.key.verifying_key() {
                    return Err(AuditError::KeyMismatch {
                        secret: path.to_owned(),
                        public: public_path,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let text = format!("{}\n", sealer.public_key().to_hex());
                fs::write(&public_path, text)
                    .map_err(|e| AuditError::io("write the public key file", &public_path, e))?;
            }
            Err(e) => return Err(AuditError::io("read the public key file", public_path, e)),
        }
        Ok(sealer)
    }

    /// The public key that verifies this sealer's seals.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// The first 16 hex digits of the SHA-256 of the public key; written into every seal so
    /// that a verifier with the wrong key says so instead of reporting forged seals.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs the chain head: entry `seq` with hash `hash`, at `at_ms`.
    pub(crate) fn seal(&self, seq: u64, hash: &str, at_ms: i64) -> Seal {
        let signature = self.key.sign(message(seq, hash, at_ms).as_bytes());
        Seal {
            seq,
            hash: hash.to_owned(),
            at_ms,
            key_id: self.key_id.clone(),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    fn from_key(key: SigningKey) -> Sealer {
        let key_id = key_id_of(&key.verifying_key());
        Sealer { key, key_id }
    }

    fn from_hex(path: &Path, text: &str) -> Result<Sealer, AuditError> {
        Ok(Sealer::from_key(SigningKey::from_bytes(&key_bytes(
            path, text,
        )?)))
    }

    /// Writes a new key to `path`, which must not exist yet; if another process created it
    /// first, that key is loaded instead.
    fn create(path: &Path) -> Result<Sealer, AuditError> {
        let sealer = Sealer::generate();
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(path)
                    .map_err(|e| AuditError::io("read the key file", path, e))?;
                return Sealer::from_hex(path, &text);
            }
            Err(e) => return Err(AuditError::io("create the key file", path, e)),
        };
        let text = format!("{}\n", hex::encode(sealer.key.to_bytes()));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| AuditError::io("write the key file", path, e))?;
        tracing::info!(path = %path.display(), key_id = sealer.key_id(), "created a new audit sealing key");
        Ok(sealer)
    }
}

impl fmt::Debug for Sealer {
    /// Shows the key id only: the secret key never goes into logs or panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Reads a public key file (32 bytes, hex), as [`Sealer::load_or_create`] writes it.
    pub fn from_file(path: &Path) -> Result<PublicKey, AuditError> {
        let text = fs::read_to_string(path)
            .map_err(|e| AuditError::io("read the public key file", path, e))?;
        PublicKey::from_hex(path, &text)
    }

    /// The 32 key bytes as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    /// The first 16 hex digits of the SHA-256 of the key bytes.
    pub fn key_id(&self) -> String {
        key_id_of(&self.key)
    }

    /// Whether `seal`'s signature is this key's over its seq, hash and time. Strict
    /// verification: no malleable or weak-key signatures.
    pub(crate) fn signed(&self, seal: &Seal) -> bool {
        let Ok(bytes) = hex::decode(&seal.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        let message = message(seal.seq, &seal.hash, seal.at_ms);
        self.key
            .verify_strict(message.as_bytes(), &signature)
            .is_ok()
    }

    fn from_hex(path: &Path, text: &str) -> Result<PublicKey, AuditError> {
        let key =
            VerifyingKey::from_bytes(&key_bytes(path, text)?).map_err(|e| AuditError::BadKey {
                path: path.to_owned(),
                reason: format!("it is not an ed25519 public key ({e})"),
            })?;
        Ok(PublicKey { key })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// `<secret key path>.pub`.
fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn key_id_of(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// The 32 bytes of a key file: 64 hex digits, surrounding whitespace ignored.
fn key_bytes(path: &Path, text: &str) -> Result<[u8; 32], AuditError> {
    let bad = |reason: String| AuditError::BadKey {
        path: path.to_owned(),
        reason,
    };
    let bytes = hex::decode(text.trim()).map_err(|e| bad(format!("it is not hex ({e})")))?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| bad(format!("it holds {len} bytes, not 32")))
}

/// A secret key that others can read is a key others may have: say so, but keep working, as
/// the operator may have reasons (e.g. a group-readable secrets mount).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the audit sealing key is readable by other users: whoever can read it can \
                     forge seals; `chmod 600` it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_with_its_key_only() {
        let sealer = Sealer::generate();
        let seal = sealer.seal(7, &"ab".repeat(32), 1000);
        assert_eq!(seal.key_id, sealer.key_id());
        assert_eq!(sealer.public_key().key_id(), sealer.key_id());
        assert!(sealer.public_key().signed(&seal));
        assert!(!Sealer::generate().public_key().signed(&seal));

        for edit in [
            |s: &mut Seal| s.seq += 1,
            |s: &mut Seal| s.hash = "cd".repeat(32),
            |s: &mut Seal| s.at_ms += 1,
            |s: &mut Seal| s.signature = "00".repeat(64),
            |s: &mut Seal| s.signature = "not hex".into(),
        ] {
            let mut edited = seal.clone();
            edit(&mut edited);
            assert!(!sealer.public_key().signed(&edited), "{edited:?}");
        }
    }

    #[test]
    fn load_or_create_writes_the_pair_once_and_loads_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let created = Sealer::load_or_create(&path).unwrap();
        let loaded = Sealer::load_or_create(&path).unwrap();
        assert_eq!(created.key_id(), loaded.key_id());

        let public = PublicKey::from_file(&public_key_path(&path)).unwrap();
        assert_eq!(public.to_hex(), created.public_key().to_hex());
        assert_eq!(public.key_id(), created.key_id());
        assert_eq!(created.key_id().len(), 16);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_replaced_public_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        Sealer::load_or_create(&path).unwrap();
        let other = Sealer::generate().public_key().to_hex();
        fs::write(public_key_path(&path), other).unwrap();
        let error = Sealer::load_or_create(&path).unwrap_err();
        assert!(matches!(error, AuditError::KeyMismatch { .. }), "{error}");
    }

    #[test]
    fn a_damaged_key_file_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        fs::write(&path, "abcd\n").unwrap();
        let error = Sealer::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("holds 2 bytes, not 32"), "{error}");
        fs::write(&path, "xyz").unwrap();
        let error = Sealer::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("not hex"), "{error}");
    }
}
