//! Compatibility levels, and the checks behind them.
//!
//! A subject's level says which earlier versions a new schema is checked against and in which
//! direction, exactly as in Confluent's registry:
//!
//! | level | against | check |
//! |---|---|---|
//! | `NONE` | nothing | — |
//! | `BACKWARD` (default) | the latest version | the new schema reads data written with it |
//! | `FORWARD` | the latest version | it reads data written with the new schema |
//! | `FULL` | the latest version | both |
//! | `*_TRANSITIVE` | every version | the same, against each |
//!
//! The verdict is Avro schema resolution (apache-avro's, through
//! [`dsr_contracts::compat::check_backward`] and [`check_forward`](dsr_contracts::compat::check_forward)),
//! and every message names the field or type that broke. Under Avro's rules a reader may drop
//! a field, and may add one only with a default: so removing a field is backward compatible,
//! and adding one without a default is not.

use apache_avro::schema::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A subject's (or the registry's) compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    /// Every level, in Confluent's order.
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    /// The name on the wire: `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Checked against every earlier version, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = String;

    /// Parses a level, ignoring case (`backward`, `FULL_TRANSITIVE`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CompatibilityLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| s.to_string())
    }
}

/// Checks `new` against the earlier versions `previous` (`(version, schema)`, oldest first)
/// as `level` demands: against the last one, or against each for a transitive level. Returns
/// one message per problem, naming the version, the direction and the field; empty when `new`
/// is compatible.
pub fn check(level: CompatibilityLevel, new: &Schema, previous: &[(u32, &Schema)]) -> Vec<String> {
    let against: &[(u32, &Schema)] = if level.is_transitive() {
        previous
    } else {
        match previous.split_last() {
            Some((last, _)) => std::slice::from_ref(last),
            None => &[],
        }
    };
    let mut messages = Vec::new();
    for (version, old) in against {
        if level.backward() {
            for problem in backward_problems(new, old) {
                messages.push(format!(
                    "backward (the new schema must read data written with version {version}): {problem}"
                ));
            }
        }
        if level.forward() {
            for problem in backward_problems(old, new) {
                messages.push(format!(
                    "forward (readers on version {version} must read data written with the new schema): {problem}"
                ));
            }
        }
    }
    messages
}

/// What keeps `reader` from reading every datum written with `writer`; empty when it can.
fn backward_problems(reader: &Schema, writer: &Schema) -> Vec<String> {
    if reader.name().is_some() && writer.name().is_some() {
        // dsr-contracts' check walks named schemas side by side and names the field.
        return match dsr_contracts::compat::check_backward(reader, writer) {
            Ok(()) => Vec::new(),
            Err(e) => {
                let problems = e.problems();
                if problems.is_empty() {
                    vec![e.to_string()]
                } else {
                    problems.iter().map(|p| p.to_string()).collect()
                }
            }
        };
    }
    // An unnamed top level (a primitive, array, map or union): Avro resolution's own verdict.
    let inline = |s: &Schema| dsr_contracts::compat::inline_all(s).unwrap_or_else(|_| s.clone());
    match SchemaCompatibility::can_read(&inline(writer), &inline(reader)) {
        Ok(Compatibility::Full) => Vec::new(),
        Ok(Compatibility::Partial) => vec![format!(
            "{} can be read as {} only for some values",
            kind(writer),
            kind(reader)
        )],
        Err(e) => vec![format!(
            "{} cannot be read as {}: {e}",
            kind(writer),
            kind(reader)
        )],
    }
}

fn kind(schema: &Schema) -> String {
    match schema.name() {
        Some(n) => n.fullname(None),
        None => format!("{:?}", apache_avro::schema::SchemaKind::from(schema)).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Schema {
        Schema::parse_str(s).unwrap()
    }

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    const ADD_NO_DEFAULT: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;
    const ADD_DEFAULT: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const REMOVED: &str = r#"{"type":"record","name":"R","fields":[]}"#;

    #[test]
    fn levels_parse_ignoring_case() {
        assert_eq!(
            "backward_transitive".parse(),
            Ok(CompatibilityLevel::BackwardTransitive)
        );
        assert_eq!("FULL".parse(), Ok(CompatibilityLevel::Full));
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
        assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
        assert_eq!(
            serde_json::to_string(&CompatibilityLevel::FullTransitive).unwrap(),
            "\"FULL_TRANSITIVE\""
        );
    }

    #[test]
    fn adding_a_field_without_default_is_not_backward() {
        let (v1, new) = (parse(V1), parse(ADD_NO_DEFAULT));
        let m = check(CompatibilityLevel::Backward, &new, &[(1, &v1)]);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("R.b"), "{m:?}");
        assert!(m[0].contains("version 1"), "{m:?}");
        // Forward: old readers ignore the new field.
        assert!(check(CompatibilityLevel::Forward, &new, &[(1, &v1)]).is_empty());
        assert!(!check(CompatibilityLevel::Full, &new, &[(1, &v1)]).is_empty());
        assert!(check(CompatibilityLevel::None, &new, &[(1, &v1)]).is_empty());
    }

    #[test]
    fn adding_a_field_with_default_is_full() {
        let (v1, new) = (parse(V1), parse(ADD_DEFAULT));
        assert!(check(CompatibilityLevel::FullTransitive, &new, &[(1, &v1)]).is_empty());
    }

    #[test]
    fn removing_a_field_is_backward_not_forward() {
        let (v1, new) = (parse(V1), parse(REMOVED));
        assert!(check(CompatibilityLevel::Backward, &new, &[(1, &v1)]).is_empty());
        let m = check(CompatibilityLevel::Forward, &new, &[(1, &v1)]);
        assert!(m.iter().any(|m| m.contains("R.a")), "{m:?}");
    }

    #[test]
    fn transitive_checks_every_version() {
        // v1 has no b; v2 adds b with a default; v3 drops the default: fine against v2
        // (b is there), not against v1.
        let v1 = parse(V1);
        let v2 = parse(ADD_DEFAULT);
        let v3 = parse(ADD_NO_DEFAULT);
        let previous = [(1, &v1), (2, &v2)];
        assert!(check(CompatibilityLevel::Backward, &v3, &previous).is_empty());
        let m = check(CompatibilityLevel::BackwardTransitive, &v3, &previous);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("version 1") && m[0].contains("R.b"), "{m:?}");
    }

    #[test]
    fn unnamed_schemas() {
        let (s, i, l) = (parse(r#""string""#), parse(r#""int""#), parse(r#""long""#));
        assert!(check(CompatibilityLevel::Backward, &l, &[(1, &i)]).is_empty());
        assert!(!check(CompatibilityLevel::Backward, &i, &[(1, &l)]).is_empty());
        let m = check(CompatibilityLevel::Backward, &s, &[(1, &i)]);
        assert!(m[0].contains("int") && m[0].contains("string"), "{m:?}");
    }
}
