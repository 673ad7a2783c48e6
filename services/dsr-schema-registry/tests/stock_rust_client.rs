//! A stock Rust client that is not ours, `schema_registry_converter`, against our registry:
//! it registers, encodes to the Confluent wire format, fetches by id and decodes. And dsr's
//! own `LifeEvent` bytes, framed with the id our registry gave, decode with it.

mod common;

use apache_avro::types::Value;
use common::Server;
use dsr_schema_registry::{register_dsr_schemas, Registry};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use std::sync::Arc;

const HEARTBEAT: &str = r#"{"type":"record","name":"Heartbeat","namespace":"dsr.test","fields":[{"name":"beat","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#;

fn settings(server: &Server) -> SrSettings {
    SrSettings::new_builder(server.url.clone())
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn encode_and_decode_with_schema_registry_converter() {
    let registry = Arc::new(Registry::in_memory());
    let server = Server::start(registry.clone()).await;

    let encoder = AvroEncoder::new(settings(&server));
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        "heartbeats".into(),
        false,
        SuppliedSchema::new(
            Some("dsr.test.Heartbeat".into()),
            SchemaType::Avro,
            HEARTBEAT.into(),
        ),
    );
    let bytes = encoder
        .encode(
            vec![
                ("beat", Value::Long(3)),
                (
                    "note",
                    Value::Union(1, Box::new(Value::String("hi".into()))),
                ),
            ],
            strategy,
        )
        .await
        .unwrap();

    // The client registered under `<topic>-value` and framed the body with our id.
    assert_eq!(registry.subjects(false), vec!["heartbeats-value"]);
    let id = registry
        .version(
            "heartbeats-value",
            dsr_schema_registry::VersionSpec::Latest,
            false,
        )
        .unwrap()
        .id;
    assert_eq!(bytes[0], 0, "magic byte");
    assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);

    // A fresh decoder fetches the schema by id from our registry.
    let decoded = AvroDecoder::new(settings(&server))
        .decode(Some(&bytes))
        .await
        .unwrap();
    assert_eq!(
        decoded.value,
        Value::Record(vec![
            ("beat".into(), Value::Long(3)),
            (
                "note".into(),
                Value::Union(1, Box::new(Value::String("hi".into())))
            ),
        ])
    );

    // Encoding with the latest schema of the subject (no schema supplied) uses the same id.
    let again = AvroEncoder::new(settings(&server))
        .encode(
            vec![
                ("beat", Value::Long(4)),
                ("note", Value::Union(0, Box::new(Value::Null))),
            ],
            SubjectNameStrategy::TopicNameStrategy("heartbeats".into(), false),
        )
        .await
        .unwrap();
    assert_eq!(again[1..5], bytes[1..5]);
    server.stop().await;
}

#[tokio::test]
async fn dsr_life_events_decode_with_a_stock_client() {
    let registry = Arc::new(Registry::in_memory());
    let id = register_dsr_schemas(&registry, &["life-events"]).unwrap();
    let server = Server::start(registry.clone()).await;

    for event in dsr_contracts::fixtures::one_of_each() {
        // dsr's bytes, in Confluent's wire format with our id.
        let mut framed = vec![0];
        framed.extend_from_slice(&id.to_be_bytes());
        framed.extend(dsr_contracts::encode(&event).unwrap());

        // A stock decoder reads them, with the schema it fetched from our registry.
        let decoder = AvroDecoder::new(settings(&server));
        let value = decoder.decode(Some(&framed)).await.unwrap().value;
        let Value::Record(fields) = &value else {
            panic!("not a record: {value:?}")
        };
        assert_eq!(
            fields.iter().find(|(n, _)| n == "event_id").map(|(_, v)| v),
            Some(&Value::Uuid(event.envelope.event_id)),
        );

        // A stock encoder writes it again (latest schema of the subject); dsr reads it back.
        let fields: Vec<(&str, Value)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone()))
            .collect();
        let bytes = AvroEncoder::new(settings(&server))
            .encode(
                fields,
                SubjectNameStrategy::TopicNameStrategy("life-events".into(), false),
            )
            .await
            .unwrap();
        assert_eq!(bytes[1..5], id.to_be_bytes());
        let writer = registry.parsed_schema(id).unwrap();
        let back = dsr_contracts::decode(&bytes[5..], &writer).unwrap();
        assert_eq!(back, event);
    }
    server.stop().await;
}
