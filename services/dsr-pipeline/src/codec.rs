//! The production [`Codec`]: Avro in Confluent wire format (magic byte, 4-byte schema id,
//! body), with the schema ids a registry assigned. Records written with dsr's current
//! `LifeEvent` schema decode directly; records written with another registered version are
//! resolved against their writer schema, fetched from the registry once per id.

use crate::runner::Codec;
use apache_avro::Schema;
use dsr_contracts::{avro, schemas, wire};
use dsr_core::{EligibilityChange, Event, Household, HouseholdId};
use dsr_schema_registry::{ClientError, RegistryClient};
use std::collections::HashMap;
use std::sync::RwLock;

/// The ids of dsr's schemas in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaIds {
    pub life_event: u32,
    pub household: u32,
    pub change: u32,
    pub parked: u32,
    pub beneficiary: u32,
    /// `dsr.program-rules`.
    pub rule_activation: u32,
}

impl SchemaIds {
    /// Ids 1–6 in the order of the fields, for a codec that never meets a schema registry
    /// (tests and benchmarks that write and read their own records).
    pub const LOCAL: SchemaIds = SchemaIds {
        life_event: 1,
        household: 2,
        change: 3,
        parked: 4,
        beneficiary: 5,
        rule_activation: 6,
    };
}

/// Registers dsr's schemas for the topics that carry them (TopicNameStrategy subjects) and
/// returns their ids.
pub async fn register(
    client: &RegistryClient,
    life_event_topics: &[&str],
    changelog_topic: &str,
    parked_topic: &str,
    eligibility_topics: &[&str],
) -> Result<SchemaIds, ClientError> {
    let set = schemas::current();
    let json = |s: &Schema| serde_json::to_string(s).expect("an Avro schema serialises to JSON");
    let life = json(set.life_event());
    let household = json(schemas::household_record_schema());
    let change = json(schemas::eligibility_change_schema());
    let mut life_event = None;
    for t in life_event_topics {
        life_event = Some(client.register(&format!("{t}-value"), &life).await?);
    }
    let household = client
        .register(&format!("{changelog_topic}-value"), &household)
        .await?;
    let parked = client
        .register(
            &format!("{parked_topic}-value"),
            &json(schemas::parked_events_schema()),
        )
        .await?;
    let mut change_id = None;
    for t in eligibility_topics {
        change_id = Some(client.register(&format!("{t}-value"), &change).await?);
    }
    // With no topic of a kind, register under a dsr subject so the id exists all the same.
    let life_event = match life_event {
        Some(id) => id,
        None => client.register("dsr.events.LifeEvent", &life).await?,
    };
    let change = match change_id {
        Some(id) => id,
        None => {
            client
                .register("dsr.events.EligibilityChange", &change)
                .await?
        }
    };
    let beneficiary = client
        .register(
            &format!("{}-value", crate::runner::BENEFICIARY_EVENTS),
            &json(schemas::beneficiary_event_schema()),
        )
        .await?;
    let rule_activation = client
        .register(
            &format!("{}-value", crate::runner::PROGRAM_RULES),
            &json(schemas::rule_activation_schema()),
        )
        .await?;
    Ok(SchemaIds {
        life_event,
        household,
        change,
        parked,
        beneficiary,
        rule_activation,
    })
}

/// Avro in Confluent wire format.
pub struct WireCodec {
    ids: SchemaIds,
    /// Writer schemas of other ids, as fetched from the registry.
    writers: RwLock<HashMap<u32, Schema>>,
    /// Where writer schemas of ids not seen yet are fetched from (a stock client registers
    /// its own schema text, which can get an id of its own).
    registry: Option<RegistryClient>,
}

impl WireCodec {
    /// A codec that knows only dsr's own schema ids.
    pub fn new(ids: SchemaIds) -> WireCodec {
        WireCodec {
            ids,
            writers: RwLock::new(HashMap::new()),
            registry: None,
        }
    }

    /// Fetches the writer schema of any other id from this registry before decoding.
    pub fn with_registry(mut self, registry: RegistryClient) -> WireCodec {
        self.registry = Some(registry);
        self
    }

    pub fn ids(&self) -> SchemaIds {
        self.ids
    }

    /// The schema id of a framed record whose writer schema is not known yet.
    pub fn unknown_id(&self, bytes: &[u8]) -> Option<u32> {
        let (id, _) = wire::unframe(bytes).ok()?;
        if id == self.ids.life_event || id == self.ids.household || id == self.ids.change {
            return None;
        }
        let known = self
            .writers
            .read()
            .map(|w| w.contains_key(&id))
            .unwrap_or(false);
        (!known).then_some(id)
    }

    /// Learns the writer schema of `id` from the registry. An id the registry does not know
    /// stays unknown: records with it are dead-lettered, saying so.
    pub async fn learn(&self, client: &RegistryClient, id: u32) -> Result<(), ClientError> {
        let text = match client.schema(id).await {
            Ok(t) => t,
            Err(ClientError::UnknownId { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match Schema::parse_str(&text) {
            Ok(schema) => {
                if let Ok(mut w) = self.writers.write() {
                    w.insert(id, schema);
                }
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "registry returned a schema that does not parse")
            }
        }
        Ok(())
    }
}

impl Codec for WireCodec {
    async fn prepare(&self, values: &[&[u8]]) -> Result<(), String> {
        let Some(registry) = &self.registry else {
            return Ok(());
        };
        let unknown: std::collections::BTreeSet<u32> =
            values.iter().filter_map(|v| self.unknown_id(v)).collect();
        for id in unknown {
            self.learn(registry, id).await.map_err(|e| {
                format!("fetching the writer schema of id {id} from the schema registry: {e}")
            })?;
        }
        Ok(())
    }

    fn decode_event(&self, bytes: &[u8]) -> Result<Event, String> {
        let (id, body) = wire::unframe(bytes).map_err(|e| e.to_string())?;
        if id == self.ids.life_event {
            // Written with dsr's current schema: the direct (serde_avro_fast) decoder.
            return avro::fast::decode(body).map_err(|e| e.to_string());
        }
        let writers = self
            .writers
            .read()
            .map_err(|_| "schema cache poisoned".to_string())?;
        match writers.get(&id) {
            Some(writer) => avro::decode(body, writer).map_err(|e| {
                format!("record written with schema id {id} does not resolve to LifeEvent: {e}")
            }),
            None => Err(format!(
                "unknown schema id {id}: the schema registry has no schema with this id; the producer must register its schema first"
            )),
        }
    }

    fn encode_event(&self, event: &Event) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(256);
        wire::frame_into(self.ids.life_event, &mut out);
        avro::fast::encode_into(event, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn encode_household(&self, household: &Household) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(1024);
        wire::frame_into(self.ids.household, &mut out);
        avro::fast::encode_household_into(household, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn decode_household(&self, bytes: &[u8]) -> Result<Household, String> {
        let (id, body) = wire::unframe(bytes).map_err(|e| e.to_string())?;
        if id != self.ids.household {
            let writers = self
                .writers
                .read()
                .map_err(|_| "schema cache poisoned".to_string())?;
            if let Some(w) = writers.get(&id) {
                return avro::decode_household(body, w).map_err(|e| e.to_string());
            }
            return Err(format!("changelog record with unknown schema id {id}"));
        }
        avro::fast::decode_household(body).map_err(|e| e.to_string())
    }

    fn decode_household_members(&self, bytes: &[u8]) -> Result<Vec<dsr_core::PersonId>, String> {
        let (id, body) = wire::unframe(bytes).map_err(|e| e.to_string())?;
        if id != self.ids.household {
            // Another writer's schema: the whole record, resolved.
            return self.decode_household(bytes).map(crate::runner::member_ids);
        }
        avro::fast::decode_household_members(body).map_err(|e| e.to_string())
    }

    fn encode_change(&self, change: &EligibilityChange) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(256);
        wire::frame_into(self.ids.change, &mut out);
        avro::fast::encode_eligibility_change_into(change, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn encode_beneficiary(&self, notice: &dsr_core::BeneficiaryEvent) -> Result<Vec<u8>, String> {
        let body = avro::encode_beneficiary_event(notice).map_err(|e| e.to_string())?;
        Ok(wire::frame(self.ids.beneficiary, &body))
    }

    fn encode_rule_activation(
        &self,
        a: &dsr_core::rule_versions::ActivationRecord,
    ) -> Result<Vec<u8>, String> {
        let body = avro::encode_rule_activation(a).map_err(|e| e.to_string())?;
        Ok(wire::frame(self.ids.rule_activation, &body))
    }

    fn decode_rule_activation(
        &self,
        bytes: &[u8],
    ) -> Result<dsr_core::rule_versions::ActivationRecord, String> {
        let (_, body) = wire::unframe(bytes).map_err(|e| e.to_string())?;
        avro::decode_rule_activation(body).map_err(|e| e.to_string())
    }

    fn encode_parked(&self, household: &HouseholdId, events: &[Event]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(64 + 300 * events.len());
        wire::frame_into(self.ids.parked, &mut out);
        // ParkedEvents { household_id: string, events: array<bytes> }, Avro binary by hand
        // (a test reads it back with apache-avro against the schema).
        write_bytes(&mut out, household.as_str().as_bytes());
        if !events.is_empty() {
            write_long(&mut out, events.len() as i64);
            for e in events {
                write_bytes(&mut out, &self.encode_event(e)?);
            }
        }
        write_long(&mut out, 0);
        Ok(out)
    }

    fn decode_parked(&self, bytes: &[u8]) -> Result<(HouseholdId, Vec<Event>), String> {
        let (id, mut body) = wire::unframe(bytes).map_err(|e| e.to_string())?;
        if id != self.ids.parked {
            return Err(format!(
                "parked-events record with schema id {id}, expected {}",
                self.ids.parked
            ));
        }
        let household = String::from_utf8(read_bytes(&mut body)?.to_vec())
            .map_err(|_| "household_id is not UTF-8".to_string())?;
        let mut events = Vec::new();
        loop {
            let mut n = read_long(&mut body)?;
            if n == 0 {
                break;
            }
            if n < 0 {
                // A block with its byte size: skip the size, the items follow.
                n = -n;
                read_long(&mut body)?;
            }
            for _ in 0..n {
                events.push(self.decode_event(read_bytes(&mut body)?)?);
            }
        }
        Ok((HouseholdId::new(household), events))
    }
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn read_long(input: &mut &[u8]) -> Result<i64, String> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input
            .split_first()
            .ok_or_else(|| "truncated Avro long".to_string())?;
        *input = rest;
        z |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    Err("Avro long longer than 10 bytes".into())
}

fn read_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let n = read_long(input)?;
    let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
    if input.len() < n {
        return Err(format!(
            "truncated: {n} bytes announced, {} left",
            input.len()
        ));
    }
    let (b, rest) = input.split_at(n);
    *input = rest;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_events_round_trip_and_read_with_the_schema() {
        let codec = WireCodec::new(SchemaIds {
            life_event: 1,
            household: 2,
            change: 3,
            parked: 4,
            beneficiary: 99,
            rule_activation: 98,
        });
        let pop = dsr_synth::fixtures::small_population(3, 5);
        let events: Vec<Event> = pop.events.into_iter().take(3).collect();
        let hid = HouseholdId::new("H-parked");
        for list in [&events[..], &[]] {
            let bytes = codec.encode_parked(&hid, list).unwrap();
            let (back_hid, back) = codec.decode_parked(&bytes).unwrap();
            assert_eq!(back_hid, hid);
            assert_eq!(back, list);
            // A stock Avro reader with the schema file reads the same thing.
            let (id, mut body) = wire::unframe(&bytes).unwrap();
            assert_eq!(id, 4);
            let value = apache_avro::reader::datum::GenericDatumReader::builder(
                schemas::parked_events_schema(),
            )
            .build()
            .unwrap()
            .read_value(&mut body)
            .unwrap();
            let apache_avro::types::Value::Record(fields) = value else {
                panic!("a record")
            };
            assert_eq!(
                fields[0].1,
                apache_avro::types::Value::String("H-parked".into())
            );
            let apache_avro::types::Value::Array(items) = &fields[1].1 else {
                panic!("an array")
            };
            assert_eq!(items.len(), list.len());
            assert!(body.is_empty(), "nothing left over");
        }
        assert!(codec.decode_parked(&[0, 0, 0, 0, 4, 2]).is_err());
    }
}
