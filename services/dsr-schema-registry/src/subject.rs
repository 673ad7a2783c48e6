//! Subject names: under which name a topic's schemas are registered.
//!
//! dsr uses Confluent's default TopicNameStrategy: the schemas of a topic's record values are
//! registered under `<topic>-value`, those of its keys under `<topic>-key`. Stock serializers
//! derive the same names, so a producer and dsr agree without configuration.

/// The subject of a topic's record values: `<topic>-value`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The subject of a topic's record keys: `<topic>-key`.
pub fn key_subject(topic: &str) -> String {
    format!("{topic}-key")
}

/// Whether `subject` may be registered: not empty, no control characters (Confluent's rule).
pub(crate) fn is_valid(subject: &str) -> bool {
    !subject.is_empty() && !subject.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_strategy() {
        assert_eq!(value_subject("life-events"), "life-events-value");
        assert_eq!(key_subject("life-events"), "life-events-key");
    }

    #[test]
    fn validity() {
        assert!(is_valid("life-events-value"));
        assert!(is_valid("a/b c"));
        assert!(!is_valid(""));
        assert!(!is_valid("a\u{0}b"));
        assert!(!is_valid("a\nb"));
    }
}
