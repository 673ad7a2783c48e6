//! A real registry server on 127.0.0.1 with an ephemeral port, for the integration tests.
#![allow(dead_code)]

use dsr_schema_registry::{api, Registry};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Server {
    pub url: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `registry` on a fresh port.
    pub async fn start(registry: Arc<Registry>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve_with_shutdown(listener, registry, async {
            let _ = stopped.await;
        }));
        Server {
            url,
            shutdown,
            task,
        }
    }

    /// Serves a durable registry opened on `dir`; nothing else holds it.
    pub async fn open(dir: &Path) -> Server {
        Server::start(Arc::new(Registry::open(dir).unwrap())).await
    }

    /// Serves a registry that lives in memory.
    pub async fn in_memory() -> Server {
        Server::start(Arc::new(Registry::in_memory())).await
    }

    /// Stops the server and waits until it has released the registry.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(std::time::Duration::from_secs(20), self.task)
            .await
            .expect("the server stops within 20 s")
            .unwrap()
            .unwrap();
    }
}

/// A response: status, content type and JSON body (`Value::Null` if not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    /// Asserts a Confluent error answer with this status and code; returns its message.
    #[track_caller]
    pub fn error(&self, status: u16, code: u64) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["error_code"], code, "{self:?}");
        assert_eq!(
            self.body.as_object().map(|o| o.len()),
            Some(2),
            "only error_code and message: {self:?}"
        );
        self.body["message"]
            .as_str()
            .expect("a message")
            .to_string()
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(
            self.content_type, "application/vnd.schemaregistry.v1+json",
            "{self:?}"
        );
        &self.body
    }
}

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(server: &Server) -> Client {
        Client {
            base: server.url.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = res.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            content_type,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.with_body(self.http.post(format!("{}{path}", self.base)), body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send(self.with_body(self.http.put(format!("{}{path}", self.base)), body))
            .await
    }

    fn with_body(&self, req: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
        req.header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
    }

    /// Registers `schema` under `subject`; returns the answer.
    pub async fn register(&self, subject: &str, schema: &str) -> Answer {
        self.post(
            &format!("/subjects/{subject}/versions"),
            &serde_json::json!({ "schema": schema }),
        )
        .await
    }
}
