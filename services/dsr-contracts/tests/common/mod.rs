//! Helpers shared by the integration tests.
#![allow(dead_code)]

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use dsr_contracts::schemas::{self, SchemaSet};
use std::path::PathBuf;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The current schema files as JSON values, to edit.
pub fn current_json() -> Vec<(String, serde_json::Value)> {
    schemas::FILES
        .iter()
        .map(|(name, json)| (name.to_string(), serde_json::from_str(json).unwrap()))
        .collect()
}

/// A schema set from edited JSON files.
pub fn set_of(files: &[(String, serde_json::Value)]) -> SchemaSet {
    SchemaSet::from_files(
        files
            .iter()
            .map(|(n, j)| (n.clone(), serde_json::to_string(j).unwrap())),
    )
    .unwrap()
}

/// The JSON of type `name` in `files`.
pub fn type_json<'a>(
    files: &'a mut [(String, serde_json::Value)],
    name: &str,
) -> &'a mut serde_json::Value {
    &mut files.iter_mut().find(|(n, _)| n == name).unwrap().1
}

/// The field `path` (dot-separated, union branches entered transparently) of a record value.
pub fn field_mut<'a>(value: &'a mut Value, path: &str) -> &'a mut Value {
    let mut v = value;
    for name in path.split('.') {
        while let Value::Union(_, inner) = v {
            v = inner.as_mut();
        }
        v = match v {
            Value::Record(fields) => &mut fields.iter_mut().find(|(n, _)| n == name).unwrap().1,
            other => panic!("not a record at {name}: {other:?}"),
        };
    }
    v
}

/// Writes `value` as a datum of `schema`, bypassing dsr-contracts' encoder.
pub fn write_raw(schema: &Schema, value: Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}
