//! dsr-crypto: encryption at rest of the personal data dsr keeps (the embedded log's records,
//! the processor's household state, the serving store, bulk-ingest reports).
//!
//! Envelope encryption, so that the one secret an operator must guard — the
//! **key-encryption key** (KEK) — never touches the data, and data keys can be replaced
//! without touching the KEK:
//!
//! - [`kek`]: where the KEK comes from (the `DSR_KEK` environment variable, a file named in
//!   the configuration, or — for a laptop — a file generated in the data directory).
//! - [`keyring`]: the data keys (AES-256-GCM), kept wrapped by the KEK in
//!   `security/data-keys.json`; every sealed value starts with the id of the key that sealed it,
//!   so a rotation can switch new writes to a new key at once, re-encrypt old data in the
//!   background, and retire the old key when nothing uses it. Also the keyed **pseudonyms**
//!   (HMAC-SHA-256) that stores use as keys instead of household and person ids, so an id is
//!   never written in the clear but lookups by id still work. [`rewrap`] moves the data keys
//!   under a new KEK.

pub mod kek;
pub mod keyring;

pub use kek::{Kek, KekSource};
pub use keyring::{rewrap, CryptoError, KeyInfo, Keyring, Pseudonym, SEAL_OVERHEAD};
