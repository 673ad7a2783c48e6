//! The key-encryption key: 32 bytes that wrap every data key. It is the one secret that decides
//! who can read the data, so it comes from outside the data directory in production (an
//! environment variable filled from a secret store, or a file on a separate, restricted
//! mount). Only when neither is given does dsr generate one inside the data directory — fine on
//! a laptop, and loudly reported, because a copy of the directory then carries its own key.

use crate::keyring::CryptoError;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The environment variable that may hold the KEK as 64 hex digits.
pub const ENV_VAR: &str = "DSR_KEK";

/// Where the KEK was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KekSource {
    /// The `DSR_KEK` environment variable.
    Environment,
    /// A file named by the operator.
    File(PathBuf),
    /// A file dsr generated in the data directory (first start without a configured KEK).
    Generated(PathBuf),
    /// A file dsr generated earlier in the data directory.
    DataDirectory(PathBuf),
}

impl std::fmt::Display for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KekSource::Environment => write!(f, "the {ENV_VAR} environment variable"),
            KekSource::File(p) => write!(f, "{}", p.display()),
            KekSource::Generated(p) => write!(f, "{} (generated now)", p.display()),
            KekSource::DataDirectory(p) => write!(f, "{} (in the data directory)", p.display()),
        }
    }
}

/// A key-encryption key.
pub struct Kek {
    pub(crate) bytes: Zeroizing<[u8; 32]>,
    pub source: KekSource,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("fingerprint", &self.fingerprint())
            .field("source", &self.source)
            .finish()
    }
}

impl Kek {
    /// The KEK from, in this order: `DSR_KEK` (`env_value`), the file the operator named, or
    /// `default_file` in the data directory (created, readable by the owner only, when missing).
    pub fn resolve(
        env_value: Option<&str>,
        file: Option<&Path>,
        default_file: &Path,
    ) -> Result<Kek, CryptoError> {
        if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
            return Ok(Kek {
                bytes: parse_hex(value.trim()).map_err(|why| CryptoError::BadKek {
                    source_name: format!("the {ENV_VAR} environment variable"),
                    why,
                })?,
                source: KekSource::Environment,
            });
        }
        if let Some(path) = file {
            return Ok(Kek {
                bytes: read_file(path)?,
                source: KekSource::File(path.to_owned()),
            });
        }
        if default_file.exists() {
            return Ok(Kek {
                bytes: read_file(default_file)?,
                source: KekSource::DataDirectory(default_file.to_owned()),
            });
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        write_private(default_file, hex::encode(bytes.as_ref()).as_bytes())?;
        Ok(Kek {
            bytes,
            source: KekSource::Generated(default_file.to_owned()),
        })
    }

    /// A KEK from its 64 hex digits (tests, tools).
    pub fn from_hex(hex_digits: &str) -> Result<Kek, CryptoError> {
        Ok(Kek {
            bytes: parse_hex(hex_digits).map_err(|why| CryptoError::BadKek {
                source_name: "the given key".into(),
                why,
            })?,
            source: KekSource::Environment,
        })
    }

    /// A short public name of the key (first 8 bytes of its SHA-256), stored with the wrapped
    /// data keys so that starting with the wrong KEK is a clear error, not garbage.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.bytes.as_ref())[..8])
    }

    /// Whether the KEK lives next to the data it protects (worth a warning at start-up).
    pub fn is_in_data_directory(&self) -> bool {
        matches!(
            self.source,
            KekSource::Generated(_) | KekSource::DataDirectory(_)
        )
    }
}

fn parse_hex(text: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, bytes.as_mut())
        .map_err(|e| format!("expected 64 hex digits (32 bytes): {e}"))?;
    Ok(bytes)
}

fn read_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CryptoError::Io {
        what: "reading the key-encryption key",
        path: path.to_owned(),
        source: e,
    })?);
    parse_hex(text.trim()).map_err(|why| CryptoError::BadKek {
        source_name: path.display().to_string(),
        why,
    })
}

/// Writes `bytes` to `path` readable by the owner only (0600 on Unix), atomically.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    use std::io::Write;
    let io = |what: &'static str, e| CryptoError::Io {
        what,
        path: path.to_owned(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| io("creating", e))?;
    file.write_all(bytes).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replacing", e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins_then_the_named_file_then_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("kek.key");
        let generated = Kek::resolve(None, None, &default).unwrap();
        assert!(matches!(generated.source, KekSource::Generated(_)));
        assert!(generated.is_in_data_directory());
        let again = Kek::resolve(None, None, &default).unwrap();
        assert_eq!(again.fingerprint(), generated.fingerprint());
        assert!(matches!(again.source, KekSource::DataDirectory(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&default).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let named = dir.path().join("named.key");
        std::fs::write(&named, format!("{}\n", "ab".repeat(32))).unwrap();
        let from_file = Kek::resolve(None, Some(&named), &default).unwrap();
        assert_eq!(from_file.source, KekSource::File(named.clone()));
        assert_ne!(from_file.fingerprint(), generated.fingerprint());

        let from_env = Kek::resolve(Some(&"cd".repeat(32)), Some(&named), &default).unwrap();
        assert_eq!(from_env.source, KekSource::Environment);
        assert!(!from_env.is_in_data_directory());
    }

    #[test]
    fn a_malformed_kek_is_refused_with_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let err = Kek::resolve(Some("not hex"), None, &dir.path().join("k")).unwrap_err();
        assert!(err.to_string().contains("DSR_KEK"), "{err}");
        let short = dir.path().join("short.key");
        std::fs::write(&short, "abcd").unwrap();
        let err = Kek::resolve(None, Some(&short), &dir.path().join("k")).unwrap_err();
        assert!(err.to_string().contains("short.key"), "{err}");
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
