//! The REST API against a real server on 127.0.0.1: every endpoint's answers and error codes,
//! compatibility, and durability across a restart.

mod common;

use common::{Client, Server};
use serde_json::{json, Value};

const V1: &str = r#"{"type":"record","name":"Person","namespace":"t","fields":[{"name":"name","type":"string"}]}"#;
const V1_SPACED: &str = "{\n  \"namespace\": \"t\", \"type\": \"record\",\n  \"name\": \"Person\",\n  \"fields\": [ { \"type\": \"string\", \"name\": \"name\" } ]\n}";
const V2_WITH_DEFAULT: &str = r#"{"type":"record","name":"Person","namespace":"t","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0}]}"#;
const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"Person","namespace":"t","fields":[{"name":"name","type":"string"},{"name":"age","type":"int"}]}"#;
const V3_REMOVED_NAME: &str = r#"{"type":"record","name":"Person","namespace":"t","fields":[{"name":"age","type":"int","default":0}]}"#;

fn schema_body(schema: &str) -> Value {
    json!({ "schema": schema })
}

#[tokio::test]
async fn root_types_and_mode() {
    let server = Server::in_memory().await;
    let c = Client::new(&server);
    assert_eq!(c.get("/").await.ok(), &json!({}));
    assert_eq!(c.get("/schemas/types").await.ok(), &json!(["AVRO"]));
    assert_eq!(c.get("/mode").await.ok(), &json!({"mode": "READWRITE"}));
    assert_eq!(c.get("/subjects").await.ok(), &json!([]));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn register_and_read_back() {
    let server = Server::in_memory().await;
    let c = Client::new(&server);

    assert_eq!(c.register("people-value", V1).await.ok(), &json!({"id": 1}));
    // The same schema again, or with other whitespace and key order: the same id, no new version.
    assert_eq!(c.register("people-value", V1).await.ok(), &json!({"id": 1}));
    assert_eq!(
        c.register("people-value", V1_SPACED).await.ok(),
        &json!({"id": 1})
    );
    // Under another subject: the same global id.
    assert_eq!(
        c.register("staff-value", V1_SPACED).await.ok(),
        &json!({"id": 1})
    );
    assert_eq!(
        c.register("people-value", V2_WITH_DEFAULT).await.ok(),
        &json!({"id": 2})
    );

    assert_eq!(
        c.get("/subjects").await.ok(),
        &json!(["people-value", "staff-value"])
    );
    assert_eq!(
        c.get("/subjects/people-value/versions").await.ok(),
        &json!([1, 2])
    );
    assert_eq!(
        c.get("/subjects/staff-value/versions").await.ok(),
        &json!([1])
    );

    let v1 = c.get("/subjects/people-value/versions/1").await;
    assert_eq!(
        v1.ok(),
        &json!({"subject": "people-value", "version": 1, "id": 1, "schema": V1})
    );
    assert!(v1.body.get("schemaType").is_none(), "omitted for AVRO");
    assert_eq!(
        c.get("/subjects/people-value/versions/latest").await.ok(),
        &json!({"subject": "people-value", "version": 2, "id": 2, "schema": V2_WITH_DEFAULT})
    );
    assert_eq!(
        c.get("/subjects/people-value/versions/-1").await.ok()["version"],
        2
    );
    // The raw schema is the schema itself, not a string holding it.
    let raw = c.get("/subjects/people-value/versions/1/schema").await;
    assert_eq!(raw.ok(), &serde_json::from_str::<Value>(V1).unwrap());
    assert_eq!(
        c.get("/subjects/people-value/versions/1/referencedby")
            .await
            .ok(),
        &json!([])
    );

    assert_eq!(c.get("/schemas/ids/1").await.ok(), &json!({"schema": V1}));
    assert_eq!(
        c.get("/schemas/ids/2/schema").await.ok(),
        &serde_json::from_str::<Value>(V2_WITH_DEFAULT).unwrap()
    );
    assert_eq!(
        c.get("/schemas/ids/1/versions").await.ok(),
        &json!([
            {"subject": "people-value", "version": 1},
            {"subject": "staff-value", "version": 1}
        ])
    );
    assert_eq!(
        c.get("/schemas/ids/1/subjects").await.ok(),
        &json!(["people-value", "staff-value"])
    );

    // Lookup: is this schema registered under the subject?
    assert_eq!(
        c.post("/subjects/people-value", &schema_body(V1_SPACED))
            .await
            .ok(),
        &json!({"subject": "people-value", "version": 1, "id": 1, "schema": V1})
    );
    c.post("/subjects/staff-value", &schema_body(V2_WITH_DEFAULT))
        .await
        .error(404, 40403);
    c.post("/subjects/nobody-value", &schema_body(V1))
        .await
        .error(404, 40401);

    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn error_codes() {
    let server = Server::in_memory().await;
    let c = Client::new(&server);
    c.register("people-value", V1).await.ok();

    let m = c
        .get("/subjects/nobody-value/versions")
        .await
        .error(404, 40401);
    assert!(m.contains("nobody-value"), "{m}");
    c.get("/subjects/nobody-value/versions/1")
        .await
        .error(404, 40401);
    c.get("/subjects/people-value/versions/9")
        .await
        .error(404, 40402);
    for bad in ["0", "abc", "-2", "2147483648"] {
        c.get(&format!("/subjects/people-value/versions/{bad}"))
            .await
            .error(422, 42202);
    }
    c.get("/schemas/ids/999").await.error(404, 40403);
    c.get("/schemas/ids/abc").await.error(404, 40403);
    c.get("/schemas/ids/999/versions").await.error(404, 40403);

    // Invalid schemas: 42201, saying what is wrong.
    let m = c
        .register("people-value", "{\"type\": \"record\"")
        .await
        .error(422, 42201);
    assert!(m.contains("not valid JSON"), "{m}");
    let m = c
        .register("people-value", r#"{"type":"record","name":"X"}"#)
        .await
        .error(422, 42201);
    assert!(m.contains("not valid Avro"), "{m}");
    let m = c.register("people-value", "").await.error(422, 42201);
    assert!(m.contains("no schema"), "{m}");
    let m = c
        .post(
            "/subjects/people-value/versions",
            &json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
        )
        .await
        .error(422, 42201);
    assert!(m.contains("PROTOBUF") && m.contains("AVRO"), "{m}");
    let m = c
        .post(
            "/subjects/people-value/versions",
            &json!({"schema": V1, "references": [{"name": "x", "subject": "y", "version": 1}]}),
        )
        .await
        .error(422, 42201);
    assert!(m.contains("references"), "{m}");
    // A subject with control characters cannot be registered.
    c.register("bad%01subject", V1).await.error(422, 42208);

    // Malformed JSON, the wrong JSON, no body: 422 in Confluent's shape, never a 500.
    let url = format!("{}/subjects/people-value/versions", c.base);
    let raw = |body: &'static str| {
        c.http
            .post(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body)
    };
    let m = c.send(raw("{\"schema\": ")).await.error(422, 422);
    assert!(m.contains("not the JSON expected"), "{m}");
    c.send(raw("[1, 2]")).await.error(422, 422);
    c.send(raw("{\"schema\": 5}")).await.error(422, 422);
    c.send(raw("")).await.error(422, 422);

    // Too large: 413 in Confluent's shape.
    let big = format!(
        "{{\"schema\": \"{}\"}}",
        "x".repeat(dsr_schema_registry::api::BODY_LIMIT + 10)
    );
    let m = c
        .send(
            c.http
                .post(&url)
                .header("content-type", "application/json")
                .body(big),
        )
        .await
        .error(413, 413);
    assert!(m.contains("1024 KiB"), "{m}");

    // A media type the registry does not take.
    c.send(
        c.http
            .post(&url)
            .header("content-type", "text/plain")
            .body(schema_body(V1).to_string()),
    )
    .await
    .error(415, 415);

    // Invalid compatibility level.
    let m = c
        .put("/config", &json!({"compatibility": "SIDEWAYS"}))
        .await
        .error(422, 42203);
    assert!(
        m.contains("SIDEWAYS") && m.contains("backward_transitive"),
        "{m}"
    );
    c.put("/config/people-value", &json!({}))
        .await
        .error(422, 42203);

    // Routes and methods that do not exist.
    c.get("/nothing/here").await.error(404, 404);
    c.send(c.http.patch(format!("{}/subjects", c.base)))
        .await
        .error(405, 405);

    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn request_and_response_media_types() {
    let server = Server::in_memory().await;
    let c = Client::new(&server);
    let url = format!("{}/subjects/people-value/versions", c.base);
    for ct in [
        Some("application/json"),
        Some("application/octet-stream"),
        Some("application/vnd.schemaregistry.v1+json; charset=utf-8"),
        None,
    ] {
        let mut req = c.http.post(&url).body(schema_body(V1).to_string());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_eq!(c.send(req).await.ok(), &json!({"id": 1}), "{ct:?}");
    }
    let json_only = c
        .send(
            c.http
                .get(format!("{}/subjects", c.base))
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(json_only.status, 200);
    assert_eq!(json_only.content_type, "application/json");
    let error = c
        .send(
            c.http
                .get(format!("{}/subjects/x/versions", c.base))
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(error.content_type, "application/json");
    error.error(404, 40401);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn compatibility_is_enforced_and_reported() {
    let server = Server::in_memory().await;
    let c = Client::new(&server);
    c.register("people-value", V1).await.ok();

    // Adding a field without a default is not BACKWARD compatible: 409 naming the field.
    let m = c
        .register("people-value", V2_NO_DEFAULT)
        .await
        .error(409, 409);
    assert!(m.contains("Person.age"), "{m}");
    assert!(m.contains("people-value") && m.contains("BACKWARD"), "{m}");
    assert_eq!(
        c.get("/subjects/people-value/versions").await.ok(),
        &json!([1])
    );

    // The compatibility endpoint agrees.
    for path in [
        "/compatibility/subjects/people-value/versions/latest",
        "/compatibility/subjects/people-value/versions/1",
        "/compatibility/subjects/people-value/versions",
    ] {
        assert_eq!(
            c.post(path, &schema_body(V2_NO_DEFAULT)).await.ok(),
            &json!({"is_compatible": false}),
            "{path}"
        );
        let verbose = c
            .post(&format!("{path}?verbose=true"), &schema_body(V2_NO_DEFAULT))
            .await;
        assert_eq!(verbose.ok()["is_compatible"], false);
        let messages = verbose.body["messages"].as_array().unwrap();
        assert!(
            messages
                .iter()
                .any(|m| m.as_str().unwrap().contains("Person.age")),
            "{messages:?}"
        );
        assert_eq!(
            c.post(
                &format!("{path}?verbose=true"),
                &schema_body(V2_WITH_DEFAULT)
            )
            .await
            .ok(),
            &json!({"is_compatible": true, "messages": []})
        );
    }
    c.post(
        "/compatibility/subjects/people-value/versions/7",
        &schema_body(V1),
    )
    .await
    .error(404, 40402);
    c.post(
        "/compatibility/subjects/nobody-value/versions/1",
        &schema_body(V1),
    )
    .await
    .error(404, 40401);
    // A subject without versions accepts anything.
    assert_eq!(
        c.post(
            "/compatibility/subjects/nobody-value/versions/latest",
            &schema_body(V1)
        )
        .await
        .ok(),
        &json!({"is_compatible": true})
    );
    c.post(
        "/compatibility/subjects/people-value/versions/latest",
        &schema_body("{"),
    )
    .await
    .error(422, 42201);

    // Adding a field with a default is fine; removing a field is BACKWARD compatible.
    assert_eq!(
        c.register("people-value", V2_WITH_DEFAULT).await.ok(),
        &json!({"id": 2})
    );
    assert_eq!(
        c.register("people-value", V3_REMOVED_NAME).await.ok(),
        &json!({"id": 3})
    );

    // FORWARD: removing a field without a default is not (old readers need it).
    c.put("/config/staff-value", &json!({"compatibility": "FORWARD"}))
        .await
        .ok();
    c.register("staff-value", V2_WITH_DEFAULT).await.ok();
    let m = c
        .register("staff-value", V3_REMOVED_NAME)
        .await
        .error(409, 409);
    assert!(m.contains("Person.name") && m.contains("FORWARD"), "{m}");
    // ...but adding one without a default is (old readers skip it).
    let v3_extra = r#"{"type":"record","name":"Person","namespace":"t","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0},{"name":"email","type":"string"}]}"#;
    c.register("staff-value", v3_extra).await.ok();

    // BACKWARD_TRANSITIVE checks every version, BACKWARD only the latest.
    c.put("/config/t-value", &json!({"compatibility": "BACKWARD"}))
        .await
        .ok();
    c.register("t-value", V1).await.ok();
    c.register("t-value", V2_WITH_DEFAULT).await.ok();
    assert_eq!(
        c.post(
            "/compatibility/subjects/t-value/versions",
            &schema_body(V2_NO_DEFAULT)
        )
        .await
        .ok(),
        &json!({"is_compatible": true})
    );
    c.put(
        "/config/t-value",
        &json!({"compatibility": "BACKWARD_TRANSITIVE"}),
    )
    .await
    .ok();
    assert_eq!(
        c.post(
            "/compatibility/subjects/t-value/versions",
            &schema_body(V2_NO_DEFAULT)
        )
        .await
        .ok(),
        &json!({"is_compatible": false})
    );
    let m = c.register("t-value", V2_NO_DEFAULT).await.error(409, 409);
    assert!(m.contains("version 1") && m.contains("Person.age"), "{m}");

    // NONE accepts anything Avro.
    c.put("/config/t-value", &json!({"compatibility": "none"}))
        .await
        .ok();
    c.register("t-value", r#""string""#).await.ok();

    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn config_global_and_per_subject() {
    let server = Server::in_memory().await;
    let c = Client::new(&server);
    assert_eq!(
        c.get("/config").await.ok(),
        &json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        c.put("/config", &json!({"compatibility": "full"}))
            .await
            .ok(),
        &json!({"compatibility": "FULL"})
    );
    assert_eq!(
        c.get("/config").await.ok(),
        &json!({"compatibilityLevel": "FULL"})
    );

    c.get("/config/people-value").await.error(404, 40408);
    assert_eq!(
        c.get("/config/people-value?defaultToGlobal=true")
            .await
            .ok(),
        &json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        c.put(
            "/config/people-value",
            &json!({"compatibility": "FORWARD_TRANSITIVE"})
        )
        .await
        .ok(),
        &json!({"compatibility": "FORWARD_TRANSITIVE"})
    );
    assert_eq!(
        c.get("/config/people-value").await.ok(),
        &json!({"compatibilityLevel": "FORWARD_TRANSITIVE"})
    );
    assert_eq!(
        c.delete("/config/people-value").await.ok(),
        &json!({"compatibilityLevel": "FORWARD_TRANSITIVE"})
    );
    c.get("/config/people-value").await.error(404, 40408);
    c.delete("/config/people-value").await.error(404, 40408);

    assert_eq!(
        c.delete("/config").await.ok(),
        &json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        c.get("/config").await.ok(),
        &json!({"compatibilityLevel": "BACKWARD"})
    );
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn soft_and_permanent_deletes() {
    let server = Server::in_memory().await;
    let c = Client::new(&server);
    c.register("people-value", V1).await.ok();
    c.register("people-value", V2_WITH_DEFAULT).await.ok();

    c.delete("/subjects/people-value?permanent=true")
        .await
        .error(404, 40405);
    c.delete("/subjects/people-value/versions/2?permanent=true")
        .await
        .error(404, 40407);
    assert_eq!(
        c.delete("/subjects/people-value/versions/2").await.ok(),
        &json!(2)
    );
    c.delete("/subjects/people-value/versions/2")
        .await
        .error(404, 40406);
    c.delete("/subjects/people-value/versions/5")
        .await
        .error(404, 40402);
    c.get("/subjects/people-value/versions/2")
        .await
        .error(404, 40402);
    assert_eq!(
        c.get("/subjects/people-value/versions/2?deleted=true")
            .await
            .ok()["id"],
        2
    );
    assert_eq!(
        c.get("/subjects/people-value/versions").await.ok(),
        &json!([1])
    );
    assert_eq!(
        c.get("/subjects/people-value/versions?deleted=true")
            .await
            .ok(),
        &json!([1, 2])
    );
    // A soft-deleted version's schema stays readable by id: data written with it must be.
    assert_eq!(
        c.get("/schemas/ids/2").await.ok()["schema"],
        V2_WITH_DEFAULT
    );
    assert_eq!(c.get("/schemas/ids/2/versions").await.ok(), &json!([]));
    assert_eq!(
        c.get("/schemas/ids/2/versions?deleted=true").await.ok(),
        &json!([{"subject": "people-value", "version": 2}])
    );

    assert_eq!(c.delete("/subjects/people-value").await.ok(), &json!([1]));
    c.delete("/subjects/people-value").await.error(404, 40404);
    assert_eq!(c.get("/subjects").await.ok(), &json!([]));
    assert_eq!(
        c.get("/subjects?deleted=true").await.ok(),
        &json!(["people-value"])
    );
    c.get("/subjects/people-value/versions")
        .await
        .error(404, 40401);

    // Registering again after a soft delete: the same id, the next version number.
    assert_eq!(c.register("people-value", V1).await.ok(), &json!({"id": 1}));
    assert_eq!(
        c.get("/subjects/people-value/versions").await.ok(),
        &json!([3])
    );
    assert_eq!(c.delete("/subjects/people-value").await.ok(), &json!([3]));
    assert_eq!(
        c.delete("/subjects/people-value?permanent=true").await.ok(),
        &json!([1, 2, 3])
    );
    c.delete("/subjects/people-value").await.error(404, 40401);
    assert_eq!(c.get("/subjects?deleted=true").await.ok(), &json!([]));
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_agree_on_ids() {
    let server = Server::in_memory().await;
    let c = std::sync::Arc::new(Client::new(&server));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let schema = if i % 2 == 0 { V1 } else { V1_SPACED };
            let a = c.register(&format!("s{}-value", i % 4), schema).await;
            a.ok()["id"].as_u64().unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1);
    }
    for s in 0..4 {
        assert_eq!(
            c.get(&format!("/subjects/s{s}-value/versions")).await.ok(),
            &json!([1])
        );
    }
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path()).await;
    let c = Client::new(&server);
    c.register("people-value", V1).await.ok();
    c.register("people-value", V2_WITH_DEFAULT).await.ok();
    c.register("staff-value", V1).await.ok();
    c.register("gone-value", V3_REMOVED_NAME).await.ok();
    c.delete("/subjects/gone-value").await.ok();
    c.delete("/subjects/people-value/versions/1").await.ok();
    c.put("/config", &json!({"compatibility": "FULL"}))
        .await
        .ok();
    c.put("/config/staff-value", &json!({"compatibility": "NONE"}))
        .await
        .ok();
    let paths = [
        "/subjects",
        "/subjects?deleted=true",
        "/subjects/people-value/versions",
        "/subjects/people-value/versions?deleted=true",
        "/subjects/people-value/versions/latest",
        "/subjects/people-value/versions/1?deleted=true",
        "/subjects/staff-value/versions/1",
        "/schemas/ids/1",
        "/schemas/ids/2",
        "/schemas/ids/3",
        "/schemas/ids/1/versions?deleted=true",
        "/config",
        "/config/staff-value",
    ];
    let mut before = Vec::new();
    for p in paths {
        before.push(c.get(p).await.ok().clone());
    }
    drop(c);
    server.stop().await;

    // The store is closed: the same directory opens again, with everything in it.
    let server = Server::open(dir.path()).await;
    let c = Client::new(&server);
    for (p, expected) in paths.iter().zip(&before) {
        assert_eq!(c.get(p).await.ok(), expected, "{p}");
    }
    // Ids go on from where they were; identical schemas keep theirs.
    assert_eq!(
        c.register("staff-value", V1_SPACED).await.ok(),
        &json!({"id": 1})
    );
    assert_eq!(
        c.register("gone-value", V3_REMOVED_NAME).await.ok(),
        &json!({"id": 3})
    );
    let new = r#"{"type":"record","name":"Other","fields":[{"name":"x","type":"long"}]}"#;
    assert_eq!(c.register("other-value", new).await.ok(), &json!({"id": 4}));
    // Compatibility still enforced after the restart (global FULL: version 1 readers need
    // `name`).
    let m = c
        .register("people-value", V3_REMOVED_NAME)
        .await
        .error(409, 409);
    assert!(m.contains("Person.name") && m.contains("FULL"), "{m}");
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn life_event_schema_over_http() {
    let registry = std::sync::Arc::new(dsr_schema_registry::Registry::in_memory());
    let id = dsr_schema_registry::register_dsr_schemas(&registry, &["life-events"]).unwrap();
    let server = Server::start(registry).await;
    let c = Client::new(&server);
    let latest = c.get("/subjects/life-events-value/versions/latest").await;
    assert_eq!(latest.ok()["id"], id);
    let text = latest.body["schema"].as_str().unwrap();
    let parsed = apache_avro::Schema::parse_str(text).unwrap();
    assert_eq!(&parsed, dsr_contracts::life_event_schema());
    // Docs and dsr's `sensitivity` attributes are kept.
    assert!(text.contains("\"sensitivity\""));
    drop(c);
    server.stop().await;
}
