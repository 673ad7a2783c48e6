//! `dsr_core::Event` to and from Avro, and to and from JSON.
//!
//! The Avro form is one binary datum of the `LifeEvent` schema, with no container file header
//! and no framing; whoever carries it (a Kafka topic, a file) records which schema version
//! wrote it. Decoding resolves the writer's schema to the current one (Avro schema
//! resolution), so events written with any released version can be read.
//!
//! The pipeline's outputs, `HouseholdRecord` and `EligibilityChange`, have their own encoders
//! and decoders ([`encode_household`], [`decode_eligibility_change`], ...), built the same way.
//!
//! [`fast`] encodes and decodes events and output records of the current schemas without
//! going through Avro values, several times faster, byte for byte the same; the pipeline uses
//! it whenever the writer schema is the current one, and this module's functions otherwise.
//!
//! The conversion between `Event` and Avro values is written out field by field
//! ([`to_value`], [`from_value`]) rather than derived through serde, so that a change on one
//! side cannot silently change the other: a field the schema has and the code does not is
//! an error, and the round-trip tests cover every kind of event.

pub mod fast;
mod outputs;
mod read;
mod write;

use crate::schemas::{self, SchemaSet};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use dsr_core::Event;
use std::sync::OnceLock;

pub use outputs::{
    decode_beneficiary_event, decode_eligibility_change, decode_household, decode_rule_activation,
    eligibility_change_from_value, eligibility_change_to_value, encode_beneficiary_event,
    encode_eligibility_change, encode_household, encode_rule_activation, household_from_value,
    household_to_value, CHANGE_KINDS,
};
pub use read::from_value;
pub use write::to_value;

/// Why an event (or an output record) could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("`{field}` is {value}, more than its Avro type can hold (an int holds up to 2147483647, a long up to 9223372036854775807); the value is surely wrong, fix it at the source")]
    OutOfRange { field: String, value: u64 },
    #[error("the current LifeEvent schema has no payload type `{0}`; dsr-core and schemas/ disagree, add {0}.avsc to the payload union of LifeEvent.avsc")]
    NoPayloadType(&'static str),
    #[error("the Avro value built for a {event_type} event does not fit the current LifeEvent schema ({source}); dsr-core and schemas/ disagree, run `cargo test -p dsr-contracts` to find where")]
    Avro {
        event_type: &'static str,
        #[source]
        source: apache_avro::Error,
    },
    #[error("the Avro value built for a {record} does not fit the current {record} schema ({source}); dsr-core and schemas/ disagree, run `cargo test -p dsr-contracts` to find where")]
    Record {
        record: &'static str,
        #[source]
        source: apache_avro::Error,
    },
    #[error("the fast Avro encoder could not write a {record} in the shape of the current schema ({source}); dsr-core and schemas/ disagree, run `cargo test -p dsr-contracts` to find where")]
    Fast {
        record: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot write the event as JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// Why bytes (or JSON) could not be decoded into an event (or an output record).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the writer schema cannot be used to decode: {0}; pass a self-contained schema such as `SchemaSet::life_event()` of a set loaded with `schemas::load_dir`")]
    WriterSchema(#[source] apache_avro::Error),
    /// The bytes do not decode with the writer schema. The source is apache-avro's error (the
    /// schema-resolving path) or serde_avro_fast's ([`fast`]).
    #[error("the bytes are not an Avro datum of the given writer schema ({0}); check that the producer used that schema version, that the message is complete, and that any framing (e.g. a schema-registry header) was removed before decoding")]
    Malformed(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{extra} bytes are left over after the event ({total} bytes in all); the message holds more than one datum or was written with a different schema version")]
    TrailingBytes { extra: usize, total: usize },
    #[error("`{field}` is `{symbol}`, which is not a symbol of the code list {enum_name} in this version of dsr (known: {}); the producer uses a newer code list: upgrade dsr, or correct the producer if the symbol is wrong", .known.join(", "))]
    UnknownSymbol {
        field: String,
        enum_name: String,
        symbol: String,
        known: Vec<String>,
    },
    #[error("data written with the writer schema cannot be read with the current schema ({0}); check the writer schema against the current one with `dsr schemas check`")]
    Incompatible(#[source] apache_avro::Error),
    #[error("the event is a {0}, a kind of event this version of dsr does not know; upgrade dsr")]
    UnknownEventType(String),
    #[error("event_type is `{event_type}` but the payload is a {payload}; the producer must set event_type to the payload's type")]
    EventTypeMismatch { event_type: String, payload: String },
    #[error("`{field}` is {value}, but it must be 0 or more (a count or a version); correct the producer")]
    OutOfRange { field: String, value: i64 },
    #[error("`{field}` should be {expected} but is {found}; the current schema and dsr-core disagree (a dsr-contracts bug: run `cargo test -p dsr-contracts`)")]
    Shape {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("`{field}` is missing from the decoded record; the current schema and dsr-core disagree (a dsr-contracts bug: run `cargo test -p dsr-contracts`)")]
    MissingField { field: String },
    #[error("not a valid JSON life event (or program definition): {0}")]
    Json(#[source] serde_json::Error),
}

/// Encodes an event as one Avro binary datum of the current `LifeEvent` schema.
pub fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    encode_with(event, schemas::current())
}

/// Encodes an event as one Avro binary datum of `set`'s `LifeEvent` schema.
pub fn encode_with(event: &Event, set: &SchemaSet) -> Result<Vec<u8>, EncodeError> {
    let value = write::to_value_for(event, set)?;
    let avro = |source| EncodeError::Avro {
        event_type: event.event_type(),
        source,
    };
    if std::ptr::eq(set, schemas::current()) {
        return current_writer().write_value_to_vec(value).map_err(avro);
    }
    GenericDatumWriter::builder(set.life_event())
        .build()
        .map_err(avro)?
        .write_value_to_vec(value)
        .map_err(avro)
}

/// Preparing a writer or reader resolves every name in the schema; for the current schema it
/// is done once.
fn current_writer() -> &'static GenericDatumWriter<'static> {
    static WRITER: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
    WRITER.get_or_init(|| {
        GenericDatumWriter::builder(schemas::life_event_schema())
            .build()
            .expect("the current schema's names resolved when it was loaded")
    })
}

fn current_reader() -> &'static GenericDatumReader<'static> {
    static READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
    READER.get_or_init(|| {
        GenericDatumReader::builder(schemas::life_event_schema())
            .build()
            .expect("the current schema's names resolved when it was loaded")
    })
}

/// Decodes one Avro binary datum written with `writer_schema` (the `LifeEvent` schema of the
/// version the producer used, e.g. [`crate::life_event_schema`] or a released version's
/// `SchemaSet::life_event()`), resolving it to the current schema.
pub fn decode(bytes: &[u8], writer_schema: &Schema) -> Result<Event, DecodeError> {
    decode_with(bytes, writer_schema, schemas::current())
}

/// [`decode`], with `reader` as the current schema.
pub fn decode_with(
    bytes: &[u8],
    writer_schema: &Schema,
    reader: &SchemaSet,
) -> Result<Event, DecodeError> {
    if std::ptr::eq(writer_schema, schemas::life_event_schema())
        && std::ptr::eq(reader, schemas::current())
    {
        let value = read_datum(current_reader(), bytes)?;
        return read::from_value_for(value, reader);
    }
    let resolve = !std::ptr::eq(writer_schema, reader.life_event());
    Decoder::prepare(writer_schema, reader, resolve)?.decode(bytes)
}

/// Decodes events written with one writer schema, with the schema prepared once: for a
/// stream of events from one producer or schema version.
pub struct Decoder<'s> {
    writer_schema: &'s Schema,
    writer: GenericDatumReader<'s>,
    writer_types: Vec<String>,
    reader: &'s SchemaSet,
    resolve: bool,
}

impl<'s> Decoder<'s> {
    /// A decoder of data written with `writer_schema`, read as the current schema.
    pub fn new(writer_schema: &'s Schema) -> Result<Self, DecodeError> {
        Self::with_reader(writer_schema, schemas::current())
    }

    /// A decoder of data written with `writer_schema`, read as `reader`'s `LifeEvent`.
    /// When both schemas are the same but for docs and defaults (same Parsing Canonical
    /// Form), data is decoded without schema resolution.
    pub fn with_reader(
        writer_schema: &'s Schema,
        reader: &'s SchemaSet,
    ) -> Result<Self, DecodeError> {
        let resolve = !std::ptr::eq(writer_schema, reader.life_event())
            && writer_schema.canonical_form() != reader.life_event().canonical_form();
        Self::prepare(writer_schema, reader, resolve)
    }

    fn prepare(
        writer_schema: &'s Schema,
        reader: &'s SchemaSet,
        resolve: bool,
    ) -> Result<Self, DecodeError> {
        Ok(Decoder {
            writer_schema,
            writer: GenericDatumReader::builder(writer_schema)
                .build()
                .map_err(DecodeError::WriterSchema)?,
            writer_types: schemas::payload_types(writer_schema),
            reader,
            resolve,
        })
    }

    /// Decodes one Avro binary datum.
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        let value = read_datum(&self.writer, bytes)?;
        if !self.resolve {
            return read::from_value_for(value, self.reader);
        }
        match resolve(value, &self.writer_types, self.reader) {
            Ok(value) => read::from_value_for(value, self.reader),
            Err(DecodeError::Incompatible(e)) => {
                // Say which field and symbol when an enum symbol is what failed. The bytes
                // decoded once already, so they decode again.
                let value = read_datum(&self.writer, bytes)?;
                Err(
                    read::unknown_symbol(&value, self.writer_schema, self.reader)
                        .unwrap_or(DecodeError::Incompatible(e)),
                )
            }
            Err(e) => Err(e),
        }
    }
}

/// Avro schema resolution of a `LifeEvent` value from the writer's schema to the reader's,
/// matching the payload's record by name (see [`crate::schemas`]'s `Resolution`).
fn resolve(
    value: Value,
    writer_types: &[String],
    reader: &SchemaSet,
) -> Result<Value, DecodeError> {
    let shape = |found: &str| DecodeError::Shape {
        field: "payload".into(),
        expected: "a union of payload records",
        found: found.into(),
    };
    let Value::Record(mut fields) = value else {
        return Err(shape("not a record"));
    };
    let Some(at) = fields.iter().position(|(name, _)| name == "payload") else {
        return Err(DecodeError::MissingField {
            field: "payload".into(),
        });
    };
    let Value::Union(writer_index, payload) = fields.remove(at).1 else {
        return Err(shape("not a union"));
    };
    let Some(event_type) = writer_types.get(writer_index as usize) else {
        return Err(shape("a branch the writer schema does not have"));
    };
    let Some(reader_index) = reader.payload_types().iter().position(|t| t == event_type) else {
        return Err(DecodeError::UnknownEventType(event_type.clone()));
    };
    let r = reader.resolution();
    let payload = payload
        .resolve_with_names(&r.payloads[reader_index], &r.names)
        .map_err(DecodeError::Incompatible)?;
    let Value::Record(mut envelope) = Value::Record(fields)
        .resolve_with_names(&r.envelope, &r.names)
        .map_err(DecodeError::Incompatible)?
    else {
        return Err(shape("not a record"));
    };
    envelope.push((
        "payload".into(),
        Value::Union(reader_index as u32, Box::new(payload)),
    ));
    Ok(Value::Record(envelope))
}

pub(crate) fn read_datum(
    reader: &GenericDatumReader<'_>,
    bytes: &[u8],
) -> Result<Value, DecodeError> {
    let mut input = Tracked {
        rest: bytes,
        hit_end: false,
    };
    let value = reader
        .read_value(&mut input)
        .map_err(|e| DecodeError::Malformed(e.into()))?;
    if input.hit_end {
        // apache-avro reads a union index cut off by the end of the data as branch 0 (null)
        // instead of failing: a message truncated there would decode.
        return Err(DecodeError::Malformed(Box::new(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the data ended before the datum did ({} bytes in all)",
                bytes.len()
            ),
        ))));
    }
    if !input.rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            extra: input.rest.len(),
            total: bytes.len(),
        });
    }
    Ok(value)
}

/// The bytes being decoded, noting any attempt to read past their end (which decoding a
/// complete datum never makes).
struct Tracked<'a> {
    rest: &'a [u8],
    hit_end: bool,
}

impl std::io::Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.hit_end = true;
        }
        self.rest.read(buf)
    }
}

/// The JSON form of an event (the one `dsr publish` and the HTTP API accept) as one line,
/// ending in `\n`, for JSON Lines files and streams.
///
/// JSON has no NaN or infinity: serde_json writes such amounts as `null`, which does not
/// decode. `Event::validate` rejects them before events get this far.
pub fn encode_json_line(event: &Event) -> Result<String, EncodeError> {
    let mut line = serde_json::to_string(event).map_err(EncodeError::Json)?;
    line.push('\n');
    Ok(line)
}

/// Parses the JSON form of one event (surrounding whitespace, such as a line's `\n`, is
/// ignored).
pub fn decode_json(json: &str) -> Result<Event, DecodeError> {
    serde_json::from_str(json).map_err(DecodeError::Json)
}
