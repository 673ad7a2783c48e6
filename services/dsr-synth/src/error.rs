//! Errors of the generator and its writers.

use std::io;
use std::path::PathBuf;

/// Why generation or writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be generated (too many households for the id space, no
    /// months, ...). Checked before any work starts.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An event could not be encoded; with dsr-core's types this means a bug.
    #[error("could not encode an event as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A [`crate::Sink`] refused a record.
    #[error("the sink stopped generation: {0}")]
    Sink(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
