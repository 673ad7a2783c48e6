//! The per-program dead-letter store: messages a receiver did not take within the retry
//! budget, each with the last error and how many attempts were made, kept (sealed: they name
//! households) until the program replays them. A fjall keyspace, key `program \0 sequence`.

use crate::message::Message;
use dsr_crypto::Keyring;
use fjall::{Database, Keyspace, PersistMode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One message that could not be delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its place in the store (for replay and removal).
    pub seq: u64,
    pub message: Message,
    /// The last attempt's error, as the receiver or the network gave it.
    pub last_error: String,
    pub attempts: u32,
    pub failed_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("the delivery dead-letter store failed: {0}")]
    Store(String),
    #[error("a dead letter cannot be read: {0}")]
    Corrupt(String),
}

fn store(e: fjall::Error) -> DeadLetterError {
    DeadLetterError::Store(e.to_string())
}

/// Every program's dead letters.
#[derive(Clone)]
pub struct DeadLetters {
    db: Database,
    letters: Keyspace,
    keyring: Arc<Keyring>,
    next: Arc<Mutex<HashMap<String, u64>>>,
}

fn key(program: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(program.len() + 9);
    k.extend_from_slice(program.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn prefix(program: &str) -> Vec<u8> {
    let mut k = program.as_bytes().to_vec();
    k.push(0);
    k
}

impl DeadLetters {
    pub fn open(dir: &Path, keyring: Arc<Keyring>) -> Result<DeadLetters, DeadLetterError> {
        let db = dsr_store::fjall_state::open_database(dir).map_err(store)?;
        let letters = db
            .keyspace(
                "dead-letters",
                dsr_store::fjall_state::small_keyspace_options,
            )
            .map_err(store)?;
        Ok(DeadLetters {
            db,
            letters,
            keyring,
            next: Arc::default(),
        })
    }

    fn next_seq(&self, program: &str) -> Result<u64, DeadLetterError> {
        let mut next = self.next.lock().expect("dead-letter counter");
        if let Some(n) = next.get_mut(program) {
            *n += 1;
            return Ok(*n);
        }
        let last = match self.letters.prefix(prefix(program)).next_back() {
            Some(kv) => {
                let k = kv.key().map_err(store)?;
                u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"))
            }
            None => 0,
        };
        next.insert(program.to_owned(), last + 1);
        Ok(last + 1)
    }

    /// Stores `messages` of `program` with the error that stopped them; durable on return.
    pub fn add(
        &self,
        program: &str,
        messages: &[Message],
        last_error: &str,
        attempts: u32,
        now_ms: i64,
    ) -> Result<(), DeadLetterError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for m in messages {
            let seq = self.next_seq(program)?;
            let k = key(program, seq);
            let letter = DeadLetter {
                seq,
                message: m.clone(),
                last_error: last_error.to_owned(),
                attempts,
                failed_at_ms: now_ms,
            };
            let plain = serde_json::to_vec(&letter).expect("a dead letter serializes");
            batch.insert(&self.letters, k.clone(), self.keyring.seal(&plain, &k));
        }
        batch.commit().map_err(store)
    }

    /// Up to `limit` dead letters of `program`, oldest first.
    pub fn list(&self, program: &str, limit: usize) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let mut out = Vec::new();
        for kv in self.letters.prefix(prefix(program)).take(limit) {
            let (k, v) = kv.into_inner().map_err(store)?;
            let plain = self
                .keyring
                .open_sealed(&v, &k)
                .map_err(|e| DeadLetterError::Corrupt(e.to_string()))?;
            out.push(
                serde_json::from_slice(&plain)
                    .map_err(|e| DeadLetterError::Corrupt(e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// How many dead letters `program` has.
    pub fn count(&self, program: &str) -> Result<u64, DeadLetterError> {
        let mut n = 0;
        for kv in self.letters.prefix(prefix(program)) {
            kv.key().map_err(store)?;
            n += 1;
        }
        Ok(n)
    }

    /// Removes delivered dead letters.
    pub fn remove(&self, program: &str, seqs: &[u64]) -> Result<(), DeadLetterError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for s in seqs {
            batch.remove(&self.letters, key(program, *s));
        }
        batch.commit().map_err(store)
    }

    /// How many letters are kept (all programs).
    pub fn len(&self) -> u64 {
        self.letters.iter().filter_map(|kv| kv.key().ok()).count() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seals every letter again under the active data key.
    pub fn reencrypt(&self) -> Result<u64, DeadLetterError> {
        let mut n = 0;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for kv in self.letters.iter() {
            let (k, v) = kv.into_inner().map_err(store)?;
            if let Some(resealed) = self
                .keyring
                .reseal(&v, &k)
                .map_err(|e| DeadLetterError::Corrupt(e.to_string()))?
            {
                batch.insert(&self.letters, k.to_vec(), resealed);
                n += 1;
            }
        }
        batch.commit().map_err(store)?;
        self.letters.rotate_memtable_and_wait().map_err(store)?;
        self.letters.major_compact().map_err(store)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_kept_per_program_in_order_and_removed_after_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (k, _, _) = Keyring::open_directory(&dir.path().join("s"), None, None, 0).unwrap();
        let keys = Arc::new(k);
        let messages: Vec<Message> = dsr_contracts::fixtures::eligibility_changes()
            .iter()
            .map(|c| Message::from_change(c, 0, 1))
            .collect();
        {
            let dl = DeadLetters::open(&dir.path().join("dl"), Arc::clone(&keys)).unwrap();
            dl.add("food-aid", &messages, "the receiver answered 500", 3, 7)
                .unwrap();
            dl.add("child-grant", &messages[..1], "refused", 1, 8)
                .unwrap();
        }
        let dl = DeadLetters::open(&dir.path().join("dl"), Arc::clone(&keys)).unwrap();
        let listed = dl.list("food-aid", 100).unwrap();
        assert_eq!(listed.len(), messages.len());
        assert_eq!(listed[0].message, messages[0]);
        assert_eq!(listed[0].last_error, "the receiver answered 500");
        dl.add("food-aid", &messages[..1], "again", 2, 9).unwrap();
        let seqs: Vec<u64> = dl
            .list("food-aid", 100)
            .unwrap()
            .iter()
            .map(|l| l.seq)
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        dl.remove("food-aid", &seqs[..seqs.len() - 1]).unwrap();
        assert_eq!(dl.count("food-aid").unwrap(), 1);
        assert_eq!(dl.count("child-grant").unwrap(), 1);
        keys.rotate(10).unwrap();
        assert_eq!(dl.reencrypt().unwrap(), 2);
        assert_eq!(dl.list("food-aid", 10).unwrap()[0].last_error, "again");
    }
}
