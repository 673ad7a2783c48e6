//! What can go wrong, as the Confluent Schema Registry reports it.
//!
//! Every error has Confluent's numeric `error_code` ([`RegistryError::error_code`]) and goes
//! over HTTP as `{"error_code": 40401, "message": "..."}` ([`ErrorBody`]) with the status the
//! code starts with (`40401` → 404, `42201` → 422, `409` → 409). Bad input is always a 4xx;
//! `50001` is kept for the store failing.

use crate::compat::CompatibilityLevel;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};

/// The JSON body of every error response: `{"error_code": 40401, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: u32,
    pub message: String,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 40401.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402.
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    /// 40403: no schema has this id.
    #[error("Schema {0} not found")]
    SchemaIdNotFound(String),
    /// 40403: the schema is not registered under the subject (lookup).
    #[error("Schema not found: the schema is not registered under subject '{0}'")]
    SchemaNotFound(String),
    /// 40404.
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405.
    #[error("Subject '{0}' was not deleted first before being permanently deleted; delete it without permanent=true first")]
    SubjectNotSoftDeleted(String),
    /// 40406.
    #[error("Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently")]
    VersionSoftDeleted { subject: String, version: u32 },
    /// 40407.
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted; delete it without permanent=true first")]
    VersionNotSoftDeleted { subject: String, version: u32 },
    /// 40408.
    #[error("Subject '{0}' does not have subject-level compatibility configured; add defaultToGlobal=true to get the global level")]
    SubjectConfigNotFound(String),
    /// 409: the schema breaks the subject's compatibility level.
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}; compatibility: {level}]",
        .messages.join("; ")
    )]
    Incompatible {
        subject: String,
        level: CompatibilityLevel,
        /// One line per problem, each naming the field or type that broke.
        messages: Vec<String>,
    },
    /// 42201.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// 42202.
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    /// 42203.
    #[error("Invalid compatibility level '{0}'. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel(String),
    /// 42208.
    #[error("Invalid subject {0:?}: a subject is a non-empty name without control characters")]
    InvalidSubject(String),
    /// 50001: the store failed; nothing the client sent is at fault.
    #[error("Error in the backend data store: {0}")]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// Confluent's error code.
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound { .. } => 40402,
            RegistryError::SchemaIdNotFound(_) | RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectConfigNotFound(_) => 40408,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibilityLevel(_) => 42203,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::Store(_) => 50001,
        }
    }

    /// The HTTP status: the first three digits of the error code.
    pub fn status(&self) -> u16 {
        status_of(self.error_code())
    }

    /// The JSON body sent to clients.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: self.error_code(),
            message: self.to_string(),
        }
    }
}

/// The HTTP status of a Confluent error code (`40401` → 404, `409` → 409).
pub(crate) fn status_of(error_code: u32) -> u16 {
    let mut code = error_code;
    while code >= 1000 {
        code /= 10;
    }
    u16::try_from(code).unwrap_or(500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_error_codes() {
        assert_eq!(status_of(40401), 404);
        assert_eq!(status_of(409), 409);
        assert_eq!(status_of(42201), 422);
        assert_eq!(status_of(50001), 500);
        assert_eq!(status_of(422), 422);
    }

    #[test]
    fn body_shape() {
        let e = RegistryError::SubjectNotFound("t-value".into());
        let json = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error_code": 40401, "message": "Subject 't-value' not found."})
        );
        assert_eq!(e.status(), 404);
    }
}
