//! dsr-schema-registry: dsr serves the Confluent Schema Registry REST API itself.
//!
//! Every Kafka record dsr writes is in Confluent wire format (magic byte `0`, a 4-byte
//! big-endian schema id, the Avro body). So that a stock Kafka client with a stock Avro
//! serializer works against dsr and no other server, dsr answers the Schema Registry's REST
//! API from its own embedded, durable store.
//!
//! - [`registry`]: the logic — register and look up schemas, global ids, versions per
//!   subject, soft deletes, compatibility levels. [`Registry`] is what everything else calls.
//! - [`compat`]: the compatibility levels (`BACKWARD`, `FULL_TRANSITIVE`, ...) and the checks
//!   behind them (Avro schema resolution via `dsr_contracts::compat`), naming what broke.
//! - [`store`]: where the registry keeps its state: the small [`RegistryStore`] trait, a
//!   durable [`FjallStore`] on a directory and a [`MemoryStore`] for tests.
//! - [`api`]: the HTTP API (axum): [`api::router`] to mount in a bigger server,
//!   [`api::serve`] to run it on a listener.
//! - [`error`]: what can go wrong, as Confluent's error codes (`40401`, `409`, `42201`, ...).
//! - [`subject`]: subject names for topics (TopicNameStrategy: `<topic>-value`).
//! - [`bootstrap`]: registers dsr's own `LifeEvent` schema for its topics.
//! - [`client`]: the client side, for a dsr process registering with a registry (its own or a
//!   user's) and fetching writer schemas by id.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use dsr_schema_registry::{api, bootstrap, Registry};
//!
//! let registry = Arc::new(Registry::open("/var/lib/dsr/registry").expect("open the registry"));
//! bootstrap::register_dsr_schemas(&registry, &["life-events"]).expect("register LifeEvent");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! api::serve(listener, registry).await
//! # }
//! ```

pub mod api;
pub mod bootstrap;
pub mod client;
pub mod compat;
pub mod error;
pub mod registry;
pub mod store;
pub mod subject;

pub use bootstrap::register_dsr_schemas;
pub use client::{ClientError, RegistryClient};
pub use compat::CompatibilityLevel;
pub use error::{ErrorBody, RegistryError};
pub use registry::{Registry, SchemaId, SchemaInput, SubjectSchema, SubjectVersion, VersionSpec};
pub use store::{FjallStore, MemoryStore, RegistryStore, StoreError};
pub use subject::{key_subject, value_subject};
