//! The rule book: scale-up rules with their lifecycle and grants, and the shocks seen, in one
//! file (`DATA_DIR/scale-up/book.sealed`).
//!
//! Small (rules and shocks are counted in tens; grants in the households they cover) and
//! changed rarely, so the whole book is rewritten on every change: to a temporary file, synced,
//! renamed over the old one and the directory synced — a crash leaves the old book or the new
//! one, never a torn one. It is sealed with the registry's data keys (AES-256-GCM) because the
//! grants name households.

use dsr_core::scale_up::{RuleRecord, Shock};
use dsr_core::Micros;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the book holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Book {
    pub rules: BTreeMap<String, RuleRecord>,
    pub shocks: BTreeMap<String, ShockRecord>,
}

/// A shock as the registry learnt of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShockRecord {
    pub shock: Shock,
    /// `declared` (a ShockDeclared event) or `manual` (a coordinator's trigger).
    pub source: String,
    #[serde(default)]
    pub ended_at: Option<Micros>,
    /// The rules it triggered.
    #[serde(default)]
    pub rules: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("cannot {what} the scale-up rule book {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the scale-up rule book {path} cannot be opened: {reason}; restore it from a backup (it is sealed with the registry's data keys)")]
    Corrupt { path: PathBuf, reason: String },
}

/// The book, shared by the API and the trigger loop.
pub struct RuleBook {
    path: PathBuf,
    keyring: Arc<dsr_crypto::Keyring>,
    book: Mutex<Book>,
}

const FILE: &str = "book.sealed";
const AAD: &[u8] = b"dsr-scale-up-book";

impl RuleBook {
    /// Opens the book in `dir` (created when missing).
    pub fn open(dir: &Path, keyring: Arc<dsr_crypto::Keyring>) -> Result<RuleBook, BookError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| BookError::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create the directory of", dir))?;
        let path = dir.join(FILE);
        let book = match std::fs::read(&path) {
            Ok(sealed) => {
                let corrupt = |reason: String| BookError::Corrupt {
                    path: path.clone(),
                    reason,
                };
                let plain = keyring
                    .open_sealed(&sealed, AAD)
                    .map_err(|e| corrupt(e.to_string()))?;
                serde_json::from_slice(&plain).map_err(|e| corrupt(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::default(),
            Err(e) => return Err(io("read", &path)(e)),
        };
        Ok(RuleBook {
            path,
            keyring,
            book: Mutex::new(book),
        })
    }

    /// A copy of the book as it is now.
    pub fn snapshot(&self) -> Book {
        self.book.lock().expect("rule book lock").clone()
    }

    /// Reads the book.
    pub fn read<R>(&self, f: impl FnOnce(&Book) -> R) -> R {
        f(&self.book.lock().expect("rule book lock"))
    }

    /// Changes the book with `f`; the change is kept (written durably) only when `f` succeeds,
    /// and answered only once it is on disk.
    pub fn update<R, E: From<BookError>>(
        &self,
        f: impl FnOnce(&mut Book) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut guard = self.book.lock().expect("rule book lock");
        let mut next = guard.clone();
        let out = f(&mut next)?;
        self.write(&next)?;
        *guard = next;
        Ok(out)
    }

    fn write(&self, book: &Book) -> Result<(), BookError> {
        let io = |what| {
            let path = self.path.clone();
            move |source| BookError::Io { what, path, source }
        };
        let plain = serde_json::to_vec(book).expect("the book serializes");
        let sealed = self.keyring.seal(&plain, AAD);
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io("write"))?;
        file.write_all(&sealed).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        std::fs::rename(&tmp, &self.path).map_err(io("replace"))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync the directory of"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsr_core::scale_up::*;

    fn keyring(dir: &Path) -> Arc<dsr_crypto::Keyring> {
        let (k, _, _) = dsr_crypto::Keyring::open_directory(dir, None, None, 0).unwrap();
        Arc::new(k)
    }

    #[test]
    fn the_book_survives_a_reopen_sealed_and_a_failed_change_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keyring(&dir.path().join("security"));
        let book = RuleBook::open(&dir.path().join("scale-up"), Arc::clone(&keys)).unwrap();
        let rule: ScaleUpRule = serde_json::from_value(serde_json::json!({
            "id": "r1", "name": "R1", "program": "food-aid",
            "trigger": {"kind": "manual", "areas": ["R01"]},
            "mode": {"kind": "vertical", "extra_amount": 10.0},
            "duration": {"days": 30}
        }))
        .unwrap();
        book.update(|b| {
            b.rules.insert(
                "r1".into(),
                RuleRecord::draft(rule.clone(), "coordinator", Micros(1)),
            );
            Ok::<_, BookError>(())
        })
        .unwrap();
        let failed: Result<(), BookError> = book.update(|b| {
            b.rules.clear();
            Err(BookError::Corrupt {
                path: "x".into(),
                reason: "refused".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(book.read(|b| b.rules.len()), 1);
        let raw = std::fs::read(dir.path().join("scale-up").join(FILE)).unwrap();
        assert!(
            !raw.windows(8).any(|w| w == b"food-aid"),
            "the book is sealed on disk"
        );
        drop(book);
        let again = RuleBook::open(&dir.path().join("scale-up"), keys).unwrap();
        assert_eq!(again.snapshot().rules["r1"].rule, rule);
    }
}
