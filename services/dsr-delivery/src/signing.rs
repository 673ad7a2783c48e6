//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): every request carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a space-separated
//! list of `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret in force. Two
//! secrets are in force while a program rotates: the receiver can switch at its own pace.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use std::fmt;

/// The prefix Standard Webhooks gives a secret when it is shown to people.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret: 32 random bytes, shown as `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A new random secret.
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// Parses `whsec_<base64>` (or bare base64).
    pub fn parse(text: &str) -> Result<Secret, String> {
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| format!("a webhook secret is `whsec_` and base64: {e}"))?;
        if bytes.len() < 24 || bytes.len() > 64 {
            return Err(format!(
                "a webhook secret has 24 to 64 bytes, this one has {}",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// The `whsec_…` form, to hand to the receiver once.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The raw key bytes (to seal it at rest).
    pub fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }

    /// One signature, `v1,<base64>`, over `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_example() {
        // The example of the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_give_two_signatures_and_a_secret_round_trips() {
        let a = Secret::generate();
        let b = Secret::generate();
        let header = signature_header([&a, &b], "id", 1, b"{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts, [a.sign("id", 1, b"{}"), b.sign("id", 1, b"{}")]);
        assert_eq!(Secret::parse(&a.expose()).unwrap(), a);
        assert!(Secret::parse("whsec_!!").is_err());
        assert!(Secret::parse("whsec_AAAA")
            .unwrap_err()
            .contains("24 to 64"));
    }
}
