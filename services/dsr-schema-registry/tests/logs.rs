//! Requests are traced at info level, and schema contents never show up at that level.

mod common;

use common::{Client, Server};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn info_logs_name_requests_but_not_schemas() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let server = Server::in_memory().await;
    let c = Client::new(&server);
    let v1 = r#"{"type":"record","name":"Secretive","fields":[{"name":"classified_field","type":"string"}]}"#;
    let v2 = r#"{"type":"record","name":"Secretive","fields":[{"name":"classified_field","type":"string"},{"name":"hidden_extra","type":"int"}]}"#;
    c.register("logs-value", v1).await.ok();
    c.register("logs-value", v2).await.error(409, 409);
    c.register("logs-value", "{\"type\": \"hidden_broken\"}")
        .await
        .error(422, 42201);
    c.get("/schemas/ids/1").await.ok();
    drop(c);
    server.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("registered a schema version"), "{logs}");
    assert!(logs.contains("/subjects/{subject}/versions"), "{logs}");
    assert!(logs.contains("status=409"), "{logs}");
    for secret in [
        "Secretive",
        "classified_field",
        "hidden_extra",
        "hidden_broken",
    ] {
        assert!(!logs.contains(secret), "{secret} in the info logs:\n{logs}");
    }
}
