//! dsr-access: who may do what with the registry's data.
//!
//! A social registry holds the most sensitive data a state has about its poorest people, so
//! every request carries an identity and every read of personal data is bound to a purpose.
//! This crate is the policy; `dsr-api` enforces it on every route and `dsr-audit` records it.
//!
//! - [`role`]: the roles (source system, program, caseworker, emergency coordinator, approver,
//!   auditor, admin), the actions of the API, and the matrix of which role may do which.
//! - [`client`]: a registered client: its role, area scope, the event types it may publish,
//!   its data-sharing agreements (purpose → fields), rate limit and keys.
//! - [`keys`]: API keys: generated once, shown once, stored only as SHA-256 hashes.
//! - [`registry`]: the clients of one deployment, kept in a file in the data directory,
//!   authenticating API keys and tokens.
//! - [`token`]: OAuth2 client-credentials access tokens (JWT, EdDSA/Ed25519), the JWKS that
//!   publishes their key, and detached JWS signatures on event batches.
//! - [`projection`]: the one place where a household is cut down to the fields a purpose
//!   allows.
//! - [`limits`]: per-client rate limits.

pub mod client;
pub mod keys;
pub mod limits;
pub mod projection;
pub mod registry;
pub mod role;
pub mod token;

pub use client::{Agreement, AreaScope, Client, ClientSpec};
pub use registry::{AccessError, ClientRegistry, Identity};
pub use role::{Action, Role};
