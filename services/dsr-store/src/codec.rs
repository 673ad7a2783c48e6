//! Household records in the store: a format byte, then postcard (a compact binary serde
//! format). The byte lets a later release change the encoding and still read old records.

use crate::port::StoreError;
use dsr_core::Household;

const FORMAT_POSTCARD_V1: u8 = 1;

pub fn encode(h: &Household) -> Result<Vec<u8>, StoreError> {
    // Written straight into a buffer the size of a typical record (~1 KB): growing one from
    // empty and copying it after the format byte cost a realloc and copy per step.
    let mut out = Vec::with_capacity(1536);
    out.push(FORMAT_POSTCARD_V1);
    postcard::to_io(h, out)
        .map_err(|e| StoreError::Backend(format!("encoding household {}: {e}", h.household_id)))
}

pub fn decode(bytes: &[u8]) -> Result<Household, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_POSTCARD_V1, body)) => {
            postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
                what: "household record".into(),
                message: e.to_string(),
            })
        }
        Some((other, _)) => Err(StoreError::Corrupt {
            what: "household record".into(),
            message: format!("unknown format byte {other}; written by a newer dsr?"),
        }),
        None => Err(StoreError::Corrupt {
            what: "household record".into(),
            message: "empty value".into(),
        }),
    }
}

/// Parked events are rare; they are kept as JSON lines (the events' own JSON form), which the
/// event types support fully (their envelope is flattened, which binary formats cannot do).
pub fn encode_events(events: &[dsr_core::Event]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for e in events {
        serde_json::to_writer(&mut out, e)
            .map_err(|e| StoreError::Backend(format!("encoding a parked event: {e}")))?;
        out.push(b'\n');
    }
    Ok(out)
}

pub fn decode_events(bytes: &[u8]) -> Result<Vec<dsr_core::Event>, StoreError> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).map_err(|e| StoreError::Corrupt {
                what: "parked event".into(),
                message: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dsr_core::eligibility::{InputValue, RuleInputs, Scalar};

    /// Records written before statuses shared their input names (a list of `{name, value}`)
    /// read the same, and are written the same.
    #[test]
    fn rule_inputs_keep_the_stored_format_of_a_list_of_name_and_value() {
        let pairs = vec![
            InputValue {
                name: "need_score".into(),
                value: Scalar::Number(61.5),
            },
            InputValue {
                name: "area".into(),
                value: Scalar::Text("R01/D02".into()),
            },
            InputValue {
                name: "members.age".into(),
                value: Scalar::Digest(u64::MAX),
            },
        ];
        let inputs: RuleInputs = pairs.clone().into_iter().collect();
        let old = postcard::to_stdvec(&pairs).unwrap();
        assert_eq!(postcard::to_stdvec(&inputs).unwrap(), old);
        assert_eq!(postcard::from_bytes::<RuleInputs>(&old).unwrap(), inputs);
        assert_eq!(
            serde_json::to_value(&inputs).unwrap(),
            serde_json::to_value(&pairs).unwrap()
        );
        assert_eq!(inputs.to_vec(), pairs);
    }
}
