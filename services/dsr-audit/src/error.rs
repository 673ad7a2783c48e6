//! Errors of the audit log. Each says what went wrong and what to do about it.
//!
//! Tampering is not an error: [`verify`](crate::verify()) reports it as
//! [`Problem`](crate::Problem)s, because a damaged log is exactly what it exists to describe.

use std::path::PathBuf;

/// An error of the audit log or its keys.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "could not {action} `{}`: {source}; check that the directory exists, that this process \
         may read and write it, and that the disk is not full",
        .path.display()
    )]
    Io {
        /// What was being done, e.g. "append to".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the key file `{}` is not usable: {reason}; it must hold one 32-byte key as 64 hex \
         digits. Restore it from a backup; if the key is lost, move it (and its `.pub`) aside \
         so a new key is created: seals made with the old key then verify only with the old \
         public key",
        .path.display()
    )]
    BadKey { path: PathBuf, reason: String },

    #[error(
        "the secret key `{}` does not belong to the public key `{}` beside it: one of them was \
         replaced. Restore the pair from a backup, or, if the secret key is the right one, \
         delete the public key file so that it is written again",
        .secret.display(),
        .public.display()
    )]
    KeyMismatch { secret: PathBuf, public: PathBuf },

    #[error(
        "the audit log `{}` cannot be continued: its last entry, line {line}, is damaged \
         ({reason}), so the chain's head is unknown. Run the audit verifier on the file to see \
         what happened, then move it aside so that a new log starts",
        .path.display()
    )]
    Damaged {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    #[error(
        "the audit log `{}` stopped accepting entries: an earlier write failed part-way and \
         the partial line could not be removed. Restart the process: opening the log again \
         truncates the partial line",
        .path.display()
    )]
    Broken { path: PathBuf },
}

impl AuditError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AuditError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
