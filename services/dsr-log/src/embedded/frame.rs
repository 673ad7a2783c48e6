//! The on-disk frame of the embedded log's journal. Every frame carries its own checksum, so a
//! torn or corrupted tail is found on start and a bad read is never returned as data.
//!
//! ```text
//! offset  size  field
//! 0       1     magic 0xD5
//! 1       1     kind: 1 record, 2 topic created, 3 group offsets committed, 4 sealed record,
//!               5 compacted segment, 6 group deleted
//! 2       4     body length, u32 little-endian
//! 6       4     CRC-32 (IEEE) of the kind byte and the body, u32 little-endian
//! 10      n     body (below)
//! ```
//!
//! Bodies (integers little-endian; `bytes?` is an i32 length, -1 for none, then the bytes;
//! `str` is a u16 length then UTF-8):
//! - record: topic id u32, partition u32, offset i64, timestamp ms i64 (`i64::MIN`: none),
//!   key `bytes?`, value `bytes?`, header count u16, then per header: name `str`, value `bytes?`;
//! - topic: topic id u32, partitions u32, replication factor i16, name `str`, config count u16,
//!   then per entry: name `str`, value `str`;
//! - commit: group `str`, count u32, then per partition: topic id u32, partition u32, offset i64;
//! - sealed record (what `dsr up` writes: records hold personal data): topic id u32, partition
//!   u32, offset i64, timestamp ms i64 in the clear (the index needs them, and they say nothing
//!   about a person), then the record's contents — key `bytes?`, value `bytes?`, header count
//!   u16, headers — sealed with the keyring's active data key (`dsr-crypto`), bound to the
//!   topic, partition and offset. Re-encrypting under another key keeps the frame's length, so
//!   a segment can be rewritten with every record at the same position;
//! - compacted segment: the segment's length before compaction, u64 (the first frame of a
//!   segment that compaction rewrote without its dead frames; the journal's byte addresses,
//!   and so every later segment's name, stay those of the original, see `compaction`);
//! - group deleted: group `str` (an operator removed the group: its earlier commits no longer
//!   count, and compaction no longer keeps records for it; a later commit starts it afresh).

use crate::port::{Header, Offset, Partition};

pub const MAGIC: u8 = 0xD5;
pub const HEADER_LEN: usize = 10;
/// Bodies above this are refused on write and treated as corruption on read.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Record = 1,
    Topic = 2,
    Commit = 3,
    Sealed = 4,
    Compacted = 5,
    GroupDeleted = 6,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Record),
            2 => Some(Kind::Topic),
            3 => Some(Kind::Commit),
            4 => Some(Kind::Sealed),
            5 => Some(Kind::Compacted),
            6 => Some(Kind::GroupDeleted),
            _ => None,
        }
    }
}

/// A record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub topic_id: u32,
    pub partition: Partition,
    pub offset: Offset,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTopic {
    pub topic_id: u32,
    pub partitions: u32,
    pub replication_factor: i16,
    pub name: String,
    pub configs: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCommit {
    pub group: String,
    pub offsets: Vec<(u32, Partition, Offset)>,
}

/// A record whose contents are sealed: what the index needs in the clear, and the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedRecord {
    pub topic_id: u32,
    pub partition: Partition,
    pub offset: Offset,
    pub timestamp_ms: Option<i64>,
    pub sealed: Vec<u8>,
}

impl SealedRecord {
    /// What a sealed record's contents are bound to.
    pub fn aad(topic_id: u32, partition: Partition, offset: Offset) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&topic_id.to_le_bytes());
        out[4..8].copy_from_slice(&(partition as u32).to_le_bytes());
        out[8..].copy_from_slice(&offset.to_le_bytes());
        out
    }

    /// The record, with its contents decrypted by `keyring`.
    pub fn open(&self, keyring: &dsr_crypto::Keyring) -> Result<StoredRecord, FrameError> {
        let plain = keyring
            .open_sealed(
                &self.sealed,
                &Self::aad(self.topic_id, self.partition, self.offset),
            )
            .map_err(|e| FrameError::Corrupt(e.to_string()))?;
        let mut body = Reader { bytes: &plain };
        let key = body.bytes()?;
        let value = body.bytes()?;
        let headers = body.headers()?;
        Ok(StoredRecord {
            topic_id: self.topic_id,
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key,
            value,
            headers,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Record(StoredRecord),
    Sealed(SealedRecord),
    Topic(StoredTopic),
    Commit(StoredCommit),
    /// The first frame of a compacted segment: how many bytes of the journal's address space
    /// the segment spans (its length before any compaction).
    /// An operator removed the consumer group `group` (`EmbeddedLog::delete_group`).
    GroupDeleted {
        group: String,
    },
    Compacted {
        logical_length: u64,
    },
}

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: a write that did not finish (a torn tail).
    Incomplete { needed: usize, have: usize },
    /// The bytes are there but wrong: bad magic, checksum mismatch or a malformed body.
    Corrupt(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete { needed, have } => {
                write!(f, "incomplete frame ({have} of {needed} bytes)")
            }
            FrameError::Corrupt(reason) => write!(f, "corrupt frame: {reason}"),
        }
    }
}

/// Appends the frame of a record to `out`; returns its length.
pub fn encode_record(out: &mut Vec<u8>, record: &StoredRecord) -> usize {
    let start = begin(out, Kind::Record);
    put_u32(out, record.topic_id);
    put_u32(out, record.partition as u32);
    put_i64(out, record.offset);
    put_i64(out, record.timestamp_ms.unwrap_or(i64::MIN));
    put_bytes(out, record.key.as_deref());
    put_bytes(out, record.value.as_deref());
    put_u16(out, record.headers.len() as u16);
    for header in &record.headers {
        put_str(out, &header.key);
        put_bytes(out, header.value.as_deref());
    }
    finish(out, start)
}

/// Appends the frame of a record with its contents sealed by `keyring`; returns its length.
pub fn encode_sealed_record(
    out: &mut Vec<u8>,
    record: &StoredRecord,
    keyring: &dsr_crypto::Keyring,
) -> usize {
    let mut plain = Vec::with_capacity(
        16 + record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len),
    );
    put_bytes(&mut plain, record.key.as_deref());
    put_bytes(&mut plain, record.value.as_deref());
    put_u16(&mut plain, record.headers.len() as u16);
    for header in &record.headers {
        put_str(&mut plain, &header.key);
        put_bytes(&mut plain, header.value.as_deref());
    }
    let sealed = keyring.seal(
        &plain,
        &SealedRecord::aad(record.topic_id, record.partition, record.offset),
    );
    let start = begin(out, Kind::Sealed);
    put_u32(out, record.topic_id);
    put_u32(out, record.partition as u32);
    put_i64(out, record.offset);
    put_i64(out, record.timestamp_ms.unwrap_or(i64::MIN));
    out.extend_from_slice(&sealed);
    finish(out, start)
}

/// Re-encrypts, in place, the sealed record frame at the start of `frame` under the keyring's
/// active key (same length; the checksum is recomputed). `Ok(false)` when there was nothing to
/// do (another kind of frame, or already under the active key).
pub fn reseal_in_place(
    frame: &mut [u8],
    keyring: &dsr_crypto::Keyring,
) -> Result<bool, FrameError> {
    let (decoded, length) = decode(frame)?;
    let Frame::Sealed(sealed) = decoded else {
        return Ok(false);
    };
    let Some(resealed) = keyring
        .reseal(
            &sealed.sealed,
            &SealedRecord::aad(sealed.topic_id, sealed.partition, sealed.offset),
        )
        .map_err(|e| FrameError::Corrupt(e.to_string()))?
    else {
        return Ok(false);
    };
    let at = HEADER_LEN + 4 + 4 + 8 + 8;
    debug_assert_eq!(at + resealed.len(), length);
    frame[at..length].copy_from_slice(&resealed);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&frame[1..2]);
    hasher.update(&frame[HEADER_LEN..length]);
    let crc = hasher.finalize();
    frame[6..10].copy_from_slice(&crc.to_le_bytes());
    Ok(true)
}

pub fn encode_topic(out: &mut Vec<u8>, topic: &StoredTopic) -> usize {
    let start = begin(out, Kind::Topic);
    put_u32(out, topic.topic_id);
    put_u32(out, topic.partitions);
    out.extend_from_slice(&topic.replication_factor.to_le_bytes());
    put_str(out, &topic.name);
    put_u16(out, topic.configs.len() as u16);
    for (name, value) in &topic.configs {
        put_str(out, name);
        put_str(out, value);
    }
    finish(out, start)
}

pub fn encode_commit(out: &mut Vec<u8>, commit: &StoredCommit) -> usize {
    let start = begin(out, Kind::Commit);
    put_str(out, &commit.group);
    put_u32(out, commit.offsets.len() as u32);
    for (topic_id, partition, offset) in &commit.offsets {
        put_u32(out, *topic_id);
        put_u32(out, *partition as u32);
        put_i64(out, *offset);
    }
    finish(out, start)
}

/// Appends the removal of consumer group `group`; returns its length.
pub fn encode_group_deleted(out: &mut Vec<u8>, group: &str) -> usize {
    let start = begin(out, Kind::GroupDeleted);
    put_str(out, group);
    finish(out, start)
}

/// Appends the marker that starts a compacted segment; returns its length.
pub fn encode_compacted(out: &mut Vec<u8>, logical_length: u64) -> usize {
    let start = begin(out, Kind::Compacted);
    out.extend_from_slice(&logical_length.to_le_bytes());
    finish(out, start)
}

/// Decodes the frame at the start of `bytes`; returns it and its length.
pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Incomplete {
            needed: HEADER_LEN,
            have: bytes.len(),
        });
    }
    if bytes[0] != MAGIC {
        return Err(FrameError::Corrupt(format!(
            "bad magic byte {:#04x}",
            bytes[0]
        )));
    }
    let length = u32::from_le_bytes(bytes[2..6].try_into().expect("4 bytes")) as usize;
    if length > MAX_BODY {
        return Err(FrameError::Corrupt(format!(
            "body length {length} above the limit {MAX_BODY}"
        )));
    }
    let total = HEADER_LEN + length;
    if bytes.len() < total {
        return Err(FrameError::Incomplete {
            needed: total,
            have: bytes.len(),
        });
    }
    let stored_crc = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes"));
    let body = &bytes[HEADER_LEN..total];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[1..2]);
    hasher.update(body);
    let crc = hasher.finalize();
    if crc != stored_crc {
        return Err(FrameError::Corrupt(format!(
            "checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
        )));
    }
    let kind = Kind::from_byte(bytes[1])
        .ok_or_else(|| FrameError::Corrupt(format!("unknown frame kind {}", bytes[1])))?;
    let mut body = Reader { bytes: body };
    let frame = match kind {
        Kind::Record => {
            let topic_id = body.u32()?;
            let partition = body.u32()? as Partition;
            let offset = body.i64()?;
            let timestamp = body.i64()?;
            let key = body.bytes()?;
            let value = body.bytes()?;
            let headers = body.headers()?;
            Frame::Record(StoredRecord {
                topic_id,
                partition,
                offset,
                timestamp_ms: (timestamp != i64::MIN).then_some(timestamp),
                key,
                value,
                headers,
            })
        }
        Kind::Sealed => {
            let topic_id = body.u32()?;
            let partition = body.u32()? as Partition;
            let offset = body.i64()?;
            let timestamp = body.i64()?;
            let sealed = body.take(body.bytes.len())?.to_vec();
            Frame::Sealed(SealedRecord {
                topic_id,
                partition,
                offset,
                timestamp_ms: (timestamp != i64::MIN).then_some(timestamp),
                sealed,
            })
        }
        Kind::Topic => {
            let topic_id = body.u32()?;
            let partitions = body.u32()?;
            let replication_factor = i16::from_le_bytes(body.take(2)?.try_into().expect("2"));
            let name = body.str()?;
            let count = body.u16()?;
            let mut configs = Vec::with_capacity(count as usize);
            for _ in 0..count {
                configs.push((body.str()?, body.str()?));
            }
            Frame::Topic(StoredTopic {
                topic_id,
                partitions,
                replication_factor,
                name,
                configs,
            })
        }
        Kind::Commit => {
            let group = body.str()?;
            let count = body.u32()?;
            let mut offsets = Vec::with_capacity(count.min(1 << 16) as usize);
            for _ in 0..count {
                offsets.push((body.u32()?, body.u32()? as Partition, body.i64()?));
            }
            Frame::Commit(StoredCommit { group, offsets })
        }
        Kind::GroupDeleted => Frame::GroupDeleted { group: body.str()? },
        Kind::Compacted => Frame::Compacted {
            logical_length: u64::from_le_bytes(body.take(8)?.try_into().expect("8 bytes")),
        },
    };
    if !body.bytes.is_empty() {
        return Err(FrameError::Corrupt(format!(
            "{} bytes left over after the body",
            body.bytes.len()
        )));
    }
    Ok((frame, total))
}

fn begin(out: &mut Vec<u8>, kind: Kind) -> usize {
    let start = out.len();
    out.extend_from_slice(&[MAGIC, kind as u8, 0, 0, 0, 0, 0, 0, 0, 0]);
    start
}

fn finish(out: &mut [u8], start: usize) -> usize {
    let length = out.len() - start - HEADER_LEN;
    out[start + 2..start + 6].copy_from_slice(&(length as u32).to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start + 1..start + 2]);
    hasher.update(&out[start + HEADER_LEN..]);
    let crc = hasher.finalize();
    out[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}
fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}
fn put_bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as i32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}
fn put_str(out: &mut Vec<u8>, value: &str) {
    put_u16(out, value.len() as u16);
    out.extend_from_slice(value.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.bytes.len() < n {
            return Err(FrameError::Corrupt(format!(
                "body ends early (wanted {n} more bytes, {} left)",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let length = i32::from_le_bytes(self.take(4)?.try_into().expect("4"));
        if length < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(length as usize)?.to_vec()))
    }
    fn headers(&mut self) -> Result<Vec<Header>, FrameError> {
        let count = self.u16()?;
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let key = self.str()?;
            let value = self.bytes()?;
            headers.push(Header { key, value });
        }
        Ok(headers)
    }
    fn str(&mut self) -> Result<String, FrameError> {
        let length = self.u16()? as usize;
        String::from_utf8(self.take(length)?.to_vec())
            .map_err(|_| FrameError::Corrupt("a name is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StoredRecord {
        StoredRecord {
            topic_id: 3,
            partition: 7,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"household-1".to_vec()),
            value: None,
            headers: vec![
                Header {
                    key: "dsr-src".into(),
                    value: Some(b"12:0".to_vec()),
                },
                Header {
                    key: "empty".into(),
                    value: None,
                },
            ],
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        let a = encode_record(&mut out, &record());
        let topic = StoredTopic {
            topic_id: 3,
            partitions: 12,
            replication_factor: 1,
            name: "dsr.household-changelog".into(),
            configs: vec![("cleanup.policy".into(), "compact".into())],
        };
        let b = encode_topic(&mut out, &topic);
        let commit = StoredCommit {
            group: "dsr-processor".into(),
            offsets: vec![(3, 7, 43)],
        };
        encode_commit(&mut out, &commit);
        let (first, length) = decode(&out).unwrap();
        assert_eq!((first, length), (Frame::Record(record()), a));
        let (second, length) = decode(&out[a..]).unwrap();
        assert_eq!((second, length), (Frame::Topic(topic), b));
        assert_eq!(
            decode(&out[a + b..]).unwrap().0,
            Frame::Commit(commit.clone())
        );
        let mut deleted = Vec::new();
        let d = encode_group_deleted(&mut deleted, "dsr-deliver-old-program");
        assert_eq!(
            decode(&deleted).unwrap(),
            (
                Frame::GroupDeleted {
                    group: "dsr-deliver-old-program".into()
                },
                d
            )
        );
        let mut marker = Vec::new();
        let c = encode_compacted(&mut marker, 268_435_456);
        assert_eq!(
            decode(&marker).unwrap(),
            (
                Frame::Compacted {
                    logical_length: 268_435_456
                },
                c
            )
        );
    }

    #[test]
    fn sealed_records_hide_their_contents_open_with_the_keyring_and_reseal_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (keyring, _, _) =
            dsr_crypto::Keyring::open_directory(dir.path(), None, None, 1).unwrap();
        let mut out = Vec::new();
        let length = encode_sealed_record(&mut out, &record(), &keyring);
        assert_eq!(out.len(), length);
        assert!(!out.windows(11).any(|w| w == b"household-1"));
        assert!(!out.windows(7).any(|w| w == b"dsr-src"));
        let (frame, read) = decode(&out).unwrap();
        assert_eq!(read, length);
        let Frame::Sealed(sealed) = frame else {
            panic!("a sealed frame")
        };
        assert_eq!(sealed.open(&keyring).unwrap(), record());
        // Moved to another offset, it does not open.
        let moved = SealedRecord {
            offset: 43,
            ..sealed.clone()
        };
        assert!(moved.open(&keyring).is_err());

        assert!(!reseal_in_place(&mut out, &keyring).unwrap());
        keyring.rotate(2).unwrap();
        let before = out.clone();
        assert!(reseal_in_place(&mut out, &keyring).unwrap());
        assert_eq!(out.len(), before.len());
        assert_ne!(out, before);
        let (Frame::Sealed(resealed), _) = decode(&out).unwrap() else {
            panic!("still a sealed frame")
        };
        assert_eq!(dsr_crypto::Keyring::key_id_of(&resealed.sealed), Some(2));
        keyring.mark_reencrypted(2).unwrap();
        keyring.retire(1).unwrap();
        assert_eq!(resealed.open(&keyring).unwrap(), record());
    }

    #[test]
    fn a_cut_frame_is_incomplete_and_a_flipped_bit_is_corrupt() {
        let mut out = Vec::new();
        let length = encode_record(&mut out, &record());
        for cut in 0..length {
            assert!(
                matches!(decode(&out[..cut]), Err(FrameError::Incomplete { .. })),
                "cut at {cut}"
            );
        }
        for byte in 1..length {
            let mut flipped = out.clone();
            flipped[byte] ^= 0x10;
            assert!(
                decode(&flipped).is_err(),
                "flipped byte {byte} went unnoticed"
            );
        }
    }
}
