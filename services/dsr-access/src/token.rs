//! Signed tokens: OAuth2 client-credentials access tokens (compact JWS/JWT, `alg: EdDSA`,
//! Ed25519) and detached JWS signatures on event batches.
//!
//! Both are the same few lines of RFC 7515 around `ed25519-dalek`: the signing input is
//! `base64url(header) "." base64url(payload)`, the signature Ed25519 over it. An access token
//! is short-lived and names only its client (`sub`); what the client may do is looked up on
//! every request, so revoking a client takes effect before its tokens expire.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Who issues access tokens, as `iss`.
pub const ISSUER: &str = "dsr";

/// An access token's claims.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The client id.
    pub sub: String,
    pub role: String,
    /// Seconds since the epoch.
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is not a compact JWS (three base64url parts joined by dots)")]
    Malformed,
    #[error("the token's header is not `alg: EdDSA` with this registry's key id; ask this registry for a new token")]
    WrongKey,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token expired; ask for a new one at POST /oauth2/client/token")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// Reads a 32-byte Ed25519 secret key kept as hex in `path`, or creates one (readable by the
/// owner only).
pub fn load_or_create_key(path: &Path) -> std::io::Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is not an Ed25519 secret key (64 hex characters)",
                            path.display()
                        ),
                    )
                })?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut OsRng);
            write_private(path, hex::encode(key.to_bytes()).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a new file only its owner can read, durably.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The key id of a public key: the first 16 hex characters of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// An Ed25519 public key from 64 hex characters; `None` when it is not one.
pub fn public_key_from_hex(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

fn signing_input(header: &Header, payload: &[u8]) -> String {
    let header = serde_json::to_vec(header).expect("a header serializes");
    format!("{}.{}", B64.encode(header), B64.encode(payload))
}

/// Issues and checks access tokens with the registry's Ed25519 key.
pub struct TokenIssuer {
    key: SigningKey,
    kid: String,
}

impl TokenIssuer {
    pub fn new(key: SigningKey) -> Self {
        let kid = key_id(&key.verifying_key());
        TokenIssuer { key, kid }
    }

    /// A token for `client_id` valid for `ttl_s` seconds from `now_ms`.
    pub fn issue(&self, client_id: &str, role: &str, now_ms: i64, ttl_s: i64) -> String {
        let now_s = now_ms.div_euclid(1000);
        let claims = Claims {
            iss: ISSUER.into(),
            sub: client_id.into(),
            role: role.into(),
            iat: now_s,
            exp: now_s + ttl_s,
            jti: hex::encode(&Sha256::digest(format!("{client_id}:{now_ms}:{}", rand_u64()))[..8]),
        };
        let header = Header {
            alg: "EdDSA".into(),
            typ: Some("JWT".into()),
            kid: Some(self.kid.clone()),
        };
        let input = signing_input(
            &header,
            &serde_json::to_vec(&claims).expect("claims serialize"),
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.to_bytes()))
    }

    /// The claims of a token this issuer signed and that has not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "EdDSA" || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::WrongKey);
        }
        let signature = B64
            .decode(s)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        self.key
            .verifying_key()
            .verify(format!("{h}.{p}").as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::WrongKey);
        }
        if now_ms.div_euclid(1000) >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// The JSON Web Key Set publishing the public key (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": B64.encode(self.key.verifying_key().as_bytes()),
            }]
        })
    }
}

fn rand_u64() -> u64 {
    use rand_core::RngCore;
    OsRng.next_u64()
}

/// A detached JWS over `payload` (RFC 7515 appendix F): `header..signature`, the payload
/// left out because it travels as the request body.
pub fn sign_detached(key: &SigningKey, payload: &[u8]) -> String {
    let header = Header {
        alg: "EdDSA".into(),
        typ: None,
        kid: Some(key_id(&key.verifying_key())),
    };
    let input = signing_input(&header, payload);
    let signature = key.sign(input.as_bytes());
    let (h, _) = input.split_once('.').expect("the input has a dot");
    format!("{h}..{}", B64.encode(signature.to_bytes()))
}

/// Checks a detached JWS over `payload` made with `key`; `Err` says what is wrong.
pub fn verify_detached(jws: &str, payload: &[u8], key: &VerifyingKey) -> Result<(), String> {
    let Some((h, s)) = jws.split_once("..") else {
        return Err("the signature is not a detached JWS (`header..signature`)".into());
    };
    let header: Header = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the signature's header is not base64url JSON")?;
    if header.alg != "EdDSA" {
        return Err(format!(
            "the signature uses `{}`; this registry accepts EdDSA (Ed25519) only",
            header.alg
        ));
    }
    let signature = B64
        .decode(s)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("the signature part is not a base64url Ed25519 signature")?;
    let input = format!("{h}.{}", B64.encode(payload));
    key.verify(input.as_bytes(), &signature)
        .map_err(|_| "the signature does not match the body and the client's registered key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(SigningKey::generate(&mut OsRng))
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let i = issuer();
        let t = i.issue("prog-1", "program", 1_000_000, 300);
        let c = i.verify(&t, 1_000_000).unwrap();
        assert_eq!((c.sub.as_str(), c.role.as_str()), ("prog-1", "program"));
        assert_eq!(
            i.verify(&t, 1_000_000 + 299_999).map(|c| c.sub),
            Ok("prog-1".into())
        );
        assert_eq!(i.verify(&t, 1_000_000 + 300_000), Err(TokenError::Expired));
    }

    #[test]
    fn a_changed_or_foreign_token_is_refused() {
        let (a, b) = (issuer(), issuer());
        let t = a.issue("x", "admin", 0, 60);
        assert_eq!(b.verify(&t, 0), Err(TokenError::WrongKey));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged =
            B64.encode(br#"{"iss":"dsr","sub":"y","role":"admin","iat":0,"exp":60,"jti":"1"}"#);
        parts[1] = &forged;
        assert_eq!(a.verify(&parts.join("."), 0), Err(TokenError::BadSignature));
        assert_eq!(a.verify("abc", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn jwks_publishes_the_verifying_key() {
        let i = issuer();
        let jwks = i.jwks();
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        assert_eq!(B64.decode(x).unwrap(), i.key.verifying_key().as_bytes());
    }

    #[test]
    fn detached_signatures_bind_the_body() {
        let key = SigningKey::generate(&mut OsRng);
        let jws = sign_detached(&key, b"[1,2,3]");
        assert!(verify_detached(&jws, b"[1,2,3]", &key.verifying_key()).is_ok());
        assert!(verify_detached(&jws, b"[1,2,4]", &key.verifying_key()).is_err());
        let other = SigningKey::generate(&mut OsRng);
        assert!(verify_detached(&jws, b"[1,2,3]", &other.verifying_key()).is_err());
        assert!(verify_detached("nonsense", b"", &key.verifying_key()).is_err());
    }
}
