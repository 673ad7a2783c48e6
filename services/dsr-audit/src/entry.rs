//! What one audit entry holds, how it is stored, and the exact bytes its hash covers.
//!
//! The canonical bytes are built from a private struct with a fixed field order rather than
//! from [`AuditEntry`] itself, so that reordering or adding a field of [`AuditEntry`] cannot
//! silently change the hash of entries already written: adding a field fails to compile in
//! `canonical_bytes` until someone decides how it is hashed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first entry: 64 zeros, a hash no content has.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, by whom, to whom. No personal field VALUES ever go here: only ids and field
/// names, so that the audit log is not a second copy of the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The client id that acted.
    pub who: String,
    /// The role it acted in, e.g. "caseworker".
    pub role: String,
    /// What it did, e.g. "household.read", "client.create".
    pub action: String,
    /// The household and person ids touched.
    pub subjects: Vec<String>,
    /// The names of the fields disclosed.
    pub fields: Vec<String>,
    /// The declared purpose of the access, if the request carried one.
    pub purpose: Option<String>,
    /// The data-sharing agreement the access was made under, if any.
    pub agreement: Option<String>,
    /// "allowed", "denied: …", "not found", …
    pub outcome: String,
}

/// An entry as stored: its position and chain links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// Position in the log: 0 for the first entry, then +1 per entry.
    pub seq: u64,
    /// When it happened, in milliseconds since the Unix epoch, by the caller's clock.
    pub at_ms: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The previous entry's `hash` (64 zeros for the first entry).
    pub prev: String,
    /// Hex SHA-256 of `prev` and the canonical bytes of this entry (see the crate docs).
    pub hash: String,
}

impl Recorded {
    /// The entry at `seq`, linked to `prev` and hashed.
    pub(crate) fn chained(seq: u64, at_ms: i64, entry: AuditEntry, prev: String) -> Recorded {
        let hash = content_hash(&prev, seq, at_ms, &entry);
        Recorded {
            seq,
            at_ms,
            entry,
            prev,
            hash,
        }
    }

    /// The hash this entry's content and `prev` give; equal to `hash` unless it was edited.
    pub(crate) fn content_hash(&self) -> String {
        content_hash(&self.prev, self.seq, self.at_ms, &self.entry)
    }
}

/// The object the hash covers, with its keys in their fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    at_ms: i64,
    who: &'a str,
    role: &'a str,
    action: &'a str,
    subjects: &'a [String],
    fields: &'a [String],
    purpose: Option<&'a str>,
    agreement: Option<&'a str>,
    outcome: &'a str,
}

/// Compact `serde_json` of `{seq, at_ms, who, role, action, subjects, fields, purpose,
/// agreement, outcome}`, in that order.
fn canonical_bytes(seq: u64, at_ms: i64, entry: &AuditEntry) -> Vec<u8> {
    // Destructured without `..` so that a new field of `AuditEntry` is a compile error here.
    let AuditEntry {
        who,
        role,
        action,
        subjects,
        fields,
        purpose,
        agreement,
        outcome,
    } = entry;
    let canonical = Canonical {
        seq,
        at_ms,
        who,
        role,
        action,
        subjects,
        fields,
        purpose: purpose.as_deref(),
        agreement: agreement.as_deref(),
        outcome,
    };
    serde_json::to_vec(&canonical).expect("a struct of strings and numbers always serializes")
}

/// Lowercase hex SHA-256 of `prev` (its hex text) followed by the canonical bytes.
fn content_hash(prev: &str, seq: u64, at_ms: i64, entry: &AuditEntry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(canonical_bytes(seq, at_ms, entry));
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            who: "app-7".into(),
            role: "caseworker".into(),
            action: "household.read".into(),
            subjects: vec!["hh-1".into(), "p-2".into()],
            fields: vec!["members".into()],
            purpose: Some("case review".into()),
            agreement: None,
            outcome: "allowed".into(),
        }
    }

    /// Pins the canonical bytes and the hash, so a change to either is a deliberate one: it
    /// would make every existing log fail verification.
    #[test]
    fn canonical_bytes_and_hash_are_fixed() {
        let canonical = canonical_bytes(3, 1_700_000_000_000, &entry());
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            r#"{"seq":3,"at_ms":1700000000000,"who":"app-7","role":"caseworker","action":"household.read","subjects":["hh-1","p-2"],"fields":["members"],"purpose":"case review","agreement":null,"outcome":"allowed"}"#
        );
        // `printf '%s%s' "$GENESIS" "$CANONICAL" | sha256sum`
        let recorded = Recorded::chained(3, 1_700_000_000_000, entry(), GENESIS.into());
        assert_eq!(
            recorded.hash,
            "ba1fd193ca8d271b57c275db7c6a498b70add1466bb197188c8877ad09e7b3cb"
        );
    }

    #[test]
    fn stored_line_is_the_flat_struct_in_order() {
        let recorded = Recorded::chained(0, 5, entry(), GENESIS.into());
        let line = serde_json::to_string(&recorded).unwrap();
        assert!(
            line.starts_with(r#"{"seq":0,"at_ms":5,"who":"app-7","#),
            "{line}"
        );
        assert!(line.ends_with(&format!(
            r#","prev":"{GENESIS}","hash":"{}"}}"#,
            recorded.hash
        )));
        assert_eq!(serde_json::from_str::<Recorded>(&line).unwrap(), recorded);
    }

    #[test]
    fn every_part_of_the_content_changes_the_hash() {
        let base = Recorded::chained(1, 2, entry(), GENESIS.into());
        let mut edited = base.clone();
        edited.entry.fields.push("income".into());
        assert_ne!(edited.content_hash(), base.hash);
        let mut moved = base.clone();
        moved.seq = 2;
        assert_ne!(moved.content_hash(), base.hash);
        let mut relinked = base.clone();
        relinked.prev = "1".repeat(64);
        assert_ne!(relinked.content_hash(), base.hash);
        assert_eq!(base.content_hash(), base.hash);
    }
}
