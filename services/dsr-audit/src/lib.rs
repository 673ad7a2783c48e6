//! dsr-audit: a tamper-evident record of every access to personal data and every
//! administrative action.
//!
//! An audit log is only worth something if whoever can write the file cannot quietly rewrite
//! its past. So every entry carries the hash of the one before it (a hash chain), and every
//! second the server *seals* the chain head with an ed25519 signature. [`verify()`] re-checks
//! all of it and says, line by line, what was edited, removed, inserted or moved.
//!
//! - [`entry`]: what one entry holds ([`AuditEntry`]), how it is stored ([`Recorded`]) and
//!   the bytes its hash covers.
//! - [`seal`]: the signing key ([`Sealer`]), its public half ([`PublicKey`]) and the seal line.
//! - [`log`]: the append-only file ([`AuditLog`]): append, seal, query, reopen after a crash.
//! - [`verify`](mod@verify): the offline check ([`verify()`], [`VerifyReport`], [`Problem`]).
//! - [`error`]: what can go wrong and what to do about it ([`AuditError`]).
//!
//! Entries hold ids and field *names* only, never personal values, so the audit log does not
//! become a second copy of the registry that needs the same protection.
//!
//! # File format
//!
//! `audit.log` is JSON lines, one entry or seal per line, in the order written.
//!
//! An **entry line** is a [`Recorded`] serialized with `serde_json` (compact, fields in
//! declaration order):
//!
//! ```text
//! {"seq":0,"at_ms":1700000000000,"who":"app-7","role":"caseworker","action":"household.read","subjects":["hh-1"],"fields":["members"],"purpose":"case review","agreement":null,"outcome":"allowed","prev":"000…000","hash":"3f1a…"}
//! ```
//!
//! - `seq` starts at 0 and grows by exactly 1 per entry.
//! - `prev` is the previous entry's `hash`; the first entry's `prev` is 64 zeros.
//! - `hash` is the lowercase hex SHA-256 of the bytes `prev || canonical`, where `prev` is
//!   the 64 ASCII hex digits of `prev` and `canonical` is the compact `serde_json` encoding
//!   (UTF-8, no whitespace, strings escaped the way `serde_json` escapes them) of the object
//!   with exactly these keys in this order:
//!   `seq, at_ms, who, role, action, subjects, fields, purpose, agreement, outcome`
//!   (absent `purpose` / `agreement` are `null`). That is the entry line without `prev` and
//!   `hash`; a test in [`entry`] pins it byte for byte.
//!
//! A **seal line** vouches for the chain up to one entry:
//!
//! ```text
//! {"seal":{"seq":255,"hash":"<entry 255's hash>","at_ms":1700000001000,"key_id":"<16 hex>","signature":"<128 hex>"}}
//! ```
//!
//! `signature` is the ed25519 signature of the UTF-8 text
//! `"dsr-audit-seal\n{seq}\n{hash}\n{at_ms}"`, and `key_id` is the first 16 hex digits of the
//! SHA-256 of the 32-byte public key. Because `hash` covers every entry before it through the
//! chain, one seal protects the whole prefix: editing an old entry *and* recomputing every
//! later hash still changes the sealed hash, and only the secret key can sign a new one.
//!
//! # What is detected, and what is not
//!
//! [`verify`](verify()) finds and locates: an entry edited in place; an entry edited with its
//! hash recomputed (the next entry's link breaks, or the seal over it); a removed entry (the
//! sequence jumps); entries moved or swapped; an inserted entry, with any hash; a seal that
//! was edited or forged, or that vouches for a chain the file no longer has.
//!
//! Its limits, which follow from what a chain can know:
//!
//! - **Cutting off the tail is not detectable.** A file truncated after some entry is a
//!   valid, shorter chain. Seals shrink the exposure: the server seals every second and at
//!   shutdown, so at most the last second of entries is unprotected. Entries after the last
//!   seal are reported as [`VerifyReport::unsealed_tail`]; they could also have been edited or
//!   appended by someone else without trace. Keeping a copy of recent seals elsewhere (or
//!   shipping the log off the machine) closes this gap.
//! - **Removing a seal line is not an attack on the chain**: a later seal covers the same
//!   entries. Missing seals only show up as a longer unsealed tail.
//! - **The secret key is the root of trust.** Whoever holds it can rewrite the whole file
//!   and sign it again. Keep it readable only by the server (it is created with mode 0600)
//!   and verify with a copy of the public key kept elsewhere. One log file is sealed with one
//!   key.

pub mod entry;
pub mod error;
mod line;
pub mod log;
pub mod seal;
#[cfg(test)]
mod testing;
pub mod verify;

pub use entry::{AuditEntry, Recorded};
pub use error::AuditError;
pub use log::{AuditLog, Filter, OpenReport, TornTail};
pub use seal::{PublicKey, Sealer};
pub use verify::{verify, Problem, VerifyReport};
