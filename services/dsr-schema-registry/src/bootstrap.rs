//! dsr's own schemas, registered when the registry starts.

use crate::error::RegistryError;
use crate::registry::{Registry, SchemaId, SchemaInput};
use crate::subject::value_subject;

/// The `LifeEvent` schema as registered: the embedded schema
/// (`dsr_contracts::schemas::current().life_event()`), self-contained, written out as JSON with
/// its docs, defaults and `sensitivity` attributes.
pub fn life_event_schema_json() -> String {
    serde_json::to_string(dsr_contracts::schemas::current().life_event())
        .expect("an Avro schema always serializes to JSON")
}

/// Registers the embedded `LifeEvent` schema under `<topic>-value` for each topic and returns
/// its id (the same for every topic). Idempotent: a subject that has it already is left as it
/// is. A subject whose latest version is an older `LifeEvent` gets a new version, checked at
/// the subject's level (`BACKWARD` by default). `topics` must not be empty (42208).
pub fn register_dsr_schemas(
    registry: &Registry,
    topics: &[&str],
) -> Result<SchemaId, RegistryError> {
    let input = SchemaInput::avro(life_event_schema_json());
    let mut id = None;
    for topic in topics {
        let subject = value_subject(topic);
        id = Some(registry.register(&subject, &input)?);
    }
    id.ok_or_else(|| RegistryError::InvalidSubject(String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_life_event_once_per_topic() {
        let r = Registry::in_memory();
        let id = register_dsr_schemas(&r, &["life-events", "corrections"]).unwrap();
        assert_eq!(register_dsr_schemas(&r, &["life-events"]).unwrap(), id);
        assert_eq!(
            r.subjects(false),
            vec!["corrections-value", "life-events-value"]
        );
        assert_eq!(r.versions("life-events-value", false).unwrap(), vec![1]);
        let parsed = r.parsed_schema(id).unwrap();
        assert_eq!(&*parsed, dsr_contracts::schemas::current().life_event());
        assert!(register_dsr_schemas(&r, &[]).is_err());
    }
}
