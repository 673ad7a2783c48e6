//! One line of `audit.log`: an entry or a seal, and their exact text.

use serde::{Deserialize, Serialize};

use crate::entry::Recorded;
use crate::seal::Seal;

/// A parsed line of the log.
#[derive(Debug)]
pub(crate) enum Line {
    Entry(Recorded),
    Seal(Seal),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealLine {
    seal: Seal,
}

impl Line {
    /// Parses a line's text (without its newline). The error says why it is neither an entry
    /// nor a seal.
    pub(crate) fn parse(text: &str) -> Result<Line, String> {
        // Through a `Value` so that the `seal` key decides the kind wherever it stands, and
        // the error is the one of the kind the line claims to be.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("seal").is_some() {
            serde_json::from_value::<SealLine>(value)
                .map(|line| Line::Seal(line.seal))
                .map_err(|e| format!("not a valid seal: {e}"))
        } else {
            serde_json::from_value::<Recorded>(value)
                .map(Line::Entry)
                .map_err(|e| format!("not a valid entry: {e}"))
        }
    }
}

/// An entry's line as the log writes it (without the newline). Verification compares lines
/// against this, so text that the hash does not cover (an extra key, a repeated key) shows.
pub(crate) fn entry_text(recorded: &Recorded) -> String {
    serde_json::to_string(recorded).expect("a struct of strings and numbers always serializes")
}

/// A seal's line as the log writes it (without the newline).
pub(crate) fn seal_text(seal: &Seal) -> String {
    serde_json::to_string(&SealLine { seal: seal.clone() })
        .expect("a struct of strings and numbers always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{AuditEntry, GENESIS};
    use crate::seal::Sealer;

    #[test]
    fn lines_round_trip() {
        let entry = AuditEntry {
            who: "a".into(),
            role: "r".into(),
            action: "x.read".into(),
            subjects: vec![],
            fields: vec![],
            purpose: None,
            agreement: Some("dsa-1".into()),
            outcome: "allowed".into(),
        };
        let recorded = Recorded::chained(0, 1, entry, GENESIS.into());
        let Line::Entry(parsed) = Line::parse(&entry_text(&recorded)).unwrap() else {
            panic!("not an entry")
        };
        assert_eq!(parsed, recorded);

        let seal = Sealer::generate().seal(0, &recorded.hash, 2);
        let text = seal_text(&seal);
        assert!(text.starts_with(r#"{"seal":{"seq":0,"hash":""#), "{text}");
        let Line::Seal(parsed) = Line::parse(&text).unwrap() else {
            panic!("not a seal")
        };
        assert_eq!(parsed, seal);
    }

    #[test]
    fn bad_lines_say_what_they_are_not() {
        assert!(Line::parse(r#"{"seq":1"#)
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(Line::parse(r#"{"seq":1}"#)
            .unwrap_err()
            .starts_with("not a valid entry"));
        assert!(Line::parse(r#"{"seal":{"seq":1}}"#)
            .unwrap_err()
            .starts_with("not a valid seal"));
    }
}
