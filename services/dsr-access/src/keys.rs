//! API keys: `dsr_<key id>_<secret>`, 16 hex characters of key id (public, names the key in
//! lists and the audit log) and 64 hex characters (256 bits) of secret.
//!
//! The secret is shown once, when the key is created, and stored only as its SHA-256 hash.
//! A slow password hash (argon2, bcrypt) protects guessable human passwords; a 256-bit random
//! secret cannot be guessed, so a fast hash loses nothing and keeps every request cheap.
//! Comparison is constant-time.

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "dsr_";

/// A key as the registry keeps it: never the secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredKey {
    pub key_id: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
}

impl StoredKey {
    /// Usable at `now_ms`: not revoked, not expired.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && now_ms < self.expires_at_ms
    }
}

/// A freshly generated key: the text to hand to the client once, and what to store.
pub struct NewKey {
    pub text: String,
    pub stored: StoredKey,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new key valid from `now_ms` for `valid_ms`.
pub fn generate(now_ms: i64, valid_ms: i64) -> NewKey {
    let key_id = random_hex(8);
    let secret = random_hex(32);
    NewKey {
        text: format!("{PREFIX}{key_id}_{secret}"),
        stored: StoredKey {
            secret_sha256: sha256_hex(&secret),
            key_id,
            created_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(valid_ms),
            revoked_at_ms: None,
        },
    }
}

/// Splits a presented key into its key id and secret; `None` when it does not have the shape
/// of a dsr API key.
pub fn parse(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let hexdigits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexdigits(key_id, 16) && hexdigits(secret, 64)).then_some((key_id, secret))
}

/// Whether `secret` is the one `stored` was made from (constant-time).
pub fn matches(stored: &StoredKey, secret: &str) -> bool {
    sha256_hex(secret)
        .as_bytes()
        .ct_eq(stored.secret_sha256.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_only_itself() {
        let a = generate(0, 1000);
        let b = generate(0, 1000);
        let (id, secret) = parse(&a.text).unwrap();
        assert_eq!(id, a.stored.key_id);
        assert!(matches(&a.stored, secret));
        assert!(!matches(&b.stored, secret));
        assert!(!a.text.contains(&a.stored.secret_sha256));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for text in [
            "",
            "dsr_",
            "dsr_0123456789abcdef",
            "dsr_0123456789abcdef_short",
            "xyz_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            "dsr_0123456789abcdeg_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn keys_expire_and_can_be_revoked() {
        let mut k = generate(100, 50).stored;
        assert!(k.is_live(149));
        assert!(!k.is_live(150));
        k.revoked_at_ms = Some(120);
        assert!(!k.is_live(130));
    }
}
