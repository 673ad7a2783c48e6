//! The Confluent wire format: how a Kafka message says which registered schema wrote it.
//!
//! A message is a magic byte `0`, the schema's registry id as 4 bytes big-endian, then the
//! Avro binary datum (no container header). This is what Confluent's Avro serializers write and
//! deserializers expect, in every language; dsr frames what it produces the same way and
//! expects it on its source topics.
//!
//! ```
//! use dsr_contracts::wire::{frame, unframe};
//! let framed = frame(42, &[2, 4, 6]);
//! assert_eq!(framed, [0, 0, 0, 0, 42, 2, 4, 6]);
//! assert_eq!(unframe(&framed).unwrap(), (42, &[2u8, 4, 6][..]));
//! ```

/// The first byte of every framed message.
pub const MAGIC_BYTE: u8 = 0;

/// The magic byte and the schema id.
pub const HEADER_LEN: usize = 5;

/// Why bytes are not a message in the Confluent wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the message is {len} byte(s) long, shorter than the Confluent wire format's 5-byte header (magic byte 0, then the schema id as 4 bytes big-endian); the producer must use a Confluent Avro serializer (or frame its messages the same way)")]
    TooShort { len: usize },
    #[error("the message starts with byte {found} (0x{found:02x}), not the Confluent wire format's magic byte 0{}; the producer must use a Confluent Avro serializer, which writes the magic byte and the schema id before the Avro data", hint(*.found))]
    WrongMagicByte { found: u8 },
}

/// What a wrong first byte suggests the message is.
fn hint(found: u8) -> &'static str {
    match found {
        b'{' | b'[' => " (it looks like JSON)",
        0xC3 => " (it looks like Avro single-object encoding, marker C3 01)",
        b'O' => " (it may be an Avro container file, which starts with \"Obj\")",
        _ => "",
    }
}

/// The 5-byte header of a message written with schema `schema_id`.
pub fn header(schema_id: u32) -> [u8; HEADER_LEN] {
    let id = schema_id.to_be_bytes();
    [MAGIC_BYTE, id[0], id[1], id[2], id[3]]
}

/// A message: the header for `schema_id`, then `avro_body`.
pub fn frame(schema_id: u32, avro_body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + avro_body.len());
    out.extend_from_slice(&header(schema_id));
    out.extend_from_slice(avro_body);
    out
}

/// Appends the header for `schema_id` to `out`; append the Avro body after it (e.g. with
/// [`crate::avro::fast::encode_into`]) to frame without copying the body.
pub fn frame_into(schema_id: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&header(schema_id));
}

/// The schema id and the Avro body of a message. The body may be empty; decoding it then says
/// what is missing.
pub fn unframe(message: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match message {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [found, ..] if *found != MAGIC_BYTE => Err(WireError::WrongMagicByte { found: *found }),
        _ => Err(WireError::TooShort { len: message.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_then_unframe() {
        for id in [0, 1, 255, 256, 65_536, u32::MAX] {
            for body in [&[][..], &[0u8][..], &[1, 2, 3, 4, 5, 6, 7][..]] {
                let framed = frame(id, body);
                assert_eq!(framed.len(), HEADER_LEN + body.len());
                assert_eq!(framed[0], MAGIC_BYTE);
                assert_eq!(unframe(&framed), Ok((id, body)));
                let mut into = vec![9];
                frame_into(id, &mut into);
                into.extend_from_slice(body);
                assert_eq!(&into[1..], framed.as_slice());
            }
        }
    }

    #[test]
    fn the_id_is_big_endian() {
        assert_eq!(frame(0x0102_0304, &[0xAA]), [0, 1, 2, 3, 4, 0xAA]);
        assert_eq!(header(7), [0, 0, 0, 0, 7]);
    }

    #[test]
    fn too_short() {
        for len in 0..HEADER_LEN {
            let message = vec![0u8; len];
            assert_eq!(unframe(&message), Err(WireError::TooShort { len }));
        }
        let err = unframe(&[0, 0]).unwrap_err().to_string();
        assert!(err.contains("2 byte(s)"), "{err}");
        assert!(err.contains("Confluent Avro serializer"), "{err}");
    }

    #[test]
    fn wrong_magic_byte_names_the_byte() {
        let err = unframe(br#"{"event_id": "x"}"#).unwrap_err();
        assert_eq!(err, WireError::WrongMagicByte { found: b'{' });
        let message = err.to_string();
        assert!(message.contains("byte 123 (0x7b)"), "{message}");
        assert!(message.contains("looks like JSON"), "{message}");
        assert!(message.contains("Confluent Avro serializer"), "{message}");
        // Wrong first byte even when too short to hold a header.
        assert_eq!(unframe(&[1]), Err(WireError::WrongMagicByte { found: 1 }));
        let message = unframe(&[2, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(message.contains("byte 2 (0x02)"), "{message}");
        assert!(!message.contains("looks like"), "{message}");
    }
}
