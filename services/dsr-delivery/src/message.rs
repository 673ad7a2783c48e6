//! What a program receives: one JSON message per eligibility change, shaped as a Standard
//! Webhooks payload (`type`, `timestamp`, `data`), the same on a webhook, in the pull feed and
//! in the dead-letter store. The message id is the change's deterministic id, so a message
//! delivered twice (after a crash, a retry or a replay) is recognisable as the same one.

use dsr_core::eligibility::ChangeKind;
use dsr_core::{BeneficiaryEvent, EligibilityChange, Micros};
use dsr_log::ConsumedRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One message to a program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The change id (the `webhook-id` of a single delivery).
    pub id: String,
    /// `eligibility.entered`, `eligibility.changed` or `eligibility.exited`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the event that caused it happened (RFC 3339).
    pub timestamp: String,
    /// The change: household id, kind, reasons, benefit, rule and household versions, cause.
    pub data: serde_json::Value,
    /// Where the message is in the program's topic: `partition:offset`. Not personal data; lets
    /// a program or an operator find the message again.
    pub position: String,
}

impl Message {
    /// The message for `change`, read at `partition:offset` of the program's topic.
    ///
    /// An eligibility change carries the household id and the inputs of the program's own rule
    /// (in `reasons`), which the program's data-sharing agreement covers by definition; nothing
    /// else about the household is sent.
    pub fn from_change(change: &EligibilityChange, partition: i32, offset: i64) -> Message {
        let kind = match change.kind {
            ChangeKind::Entered => "entered",
            ChangeKind::Changed => "changed",
            ChangeKind::Exited => "exited",
            ChangeKind::Unchanged => "unchanged",
        };
        Message {
            id: change.change_id.to_string(),
            kind: format!("eligibility.{kind}"),
            timestamp: change.occurred_at.to_string(),
            data: json!({
                "change_id": change.change_id.to_string(),
                "program_id": change.program_id.as_str(),
                "household_id": change.household_id.as_str(),
                "kind": kind,
                "reasons": change.reasons,
                "benefit": change.benefit,
                "rule_version": change.rule_version,
                "household_version": change.household_version,
                "caused_by": change.caused_by.to_string(),
                "occurred_at": change.occurred_at.to_string(),
                // A scale-up's top-up or temporary enrolment says which rule, which shock and
                // until when; `null` for the program's own rule.
                "scale_up": change.scale_up.as_ref().map(|m| json!({
                    "rule_id": m.rule_id.as_str(),
                    "shock_id": m.shock_id.as_str(),
                    "ends_at": m.ends_at.to_string(),
                })),
            }),
            position: format!("{partition}:{offset}"),
        }
    }

    /// The message for a life event about a beneficiary household, read at `partition:offset`
    /// of `dsr.beneficiary-events`. The person is named only when the program may see member
    /// ids (`members.person_id` in its `fields_allowed`).
    pub fn from_notice(
        n: &BeneficiaryEvent,
        person_ids_allowed: bool,
        partition: i32,
        offset: i64,
    ) -> Message {
        let kind = snake(&n.event_type);
        let mut data = json!({
            "notice_id": n.notice_id.to_string(),
            "program_id": n.program_id.as_str(),
            "household_id": n.household_id.as_str(),
            "event_type": n.event_type.as_str(),
            "occurred_at": n.occurred_at.to_string(),
            "caused_by": n.caused_by.to_string(),
            "household_version": n.household_version,
        });
        if person_ids_allowed {
            if let Some(p) = &n.person_id {
                data["person_id"] = json!(p.as_str());
            }
        }
        Message {
            id: n.notice_id.to_string(),
            kind: format!("life_event.{kind}"),
            timestamp: n.occurred_at.to_string(),
            data,
            position: format!("b{partition}:{offset}"),
        }
    }

    /// Decodes a record of a program's topics: its eligibility topic (Avro
    /// `EligibilityChange`) or `dsr.beneficiary-events` (Avro `BeneficiaryEvent`), both in
    /// Confluent wire format.
    pub fn from_program_record(
        record: &ConsumedRecord,
        notices_topic: &str,
        person_ids_allowed: bool,
    ) -> Result<Message, String> {
        if record.topic != notices_topic {
            return Message::from_record(record);
        }
        let body = avro_body(record)?;
        let notice = dsr_contracts::avro::decode_beneficiary_event(body).map_err(|e| {
            format!(
                "record {}:{} is not a beneficiary event: {e}",
                record.partition, record.offset
            )
        })?;
        Ok(Message::from_notice(
            &notice,
            person_ids_allowed,
            record.partition,
            record.offset,
        ))
    }

    /// Decodes a record of a program's eligibility topic (Confluent wire format, Avro
    /// `EligibilityChange`).
    pub fn from_record(record: &ConsumedRecord) -> Result<Message, String> {
        let body = avro_body(record)?;
        let change = dsr_contracts::avro::fast::decode_eligibility_change(body).map_err(|e| {
            format!(
                "record {}:{} is not an eligibility change: {e}",
                record.partition, record.offset
            )
        })?;
        Ok(Message::from_change(
            &change,
            record.partition,
            record.offset,
        ))
    }

    /// The household's place in the eligible set as a new subscriber gets it first: its last
    /// change (an `entered` or `changed`) turned into `eligibility.entered`, marked
    /// `"backfill": true`, with an id derived from the change's (the same every time).
    pub fn backfill(&self) -> Message {
        let mut m = self.clone();
        m.id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("backfill:{}", self.id).as_bytes(),
        )
        .to_string();
        m.kind = "eligibility.entered".into();
        m.data["kind"] = json!("entered");
        m.data["backfill"] = json!(true);
        m
    }

    /// Whether an eligibility message leaves its household eligible (entered or changed).
    pub fn leaves_eligible(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "eligibility.entered" | "eligibility.changed"
        )
    }

    /// The household the message is about.
    pub fn household_id(&self) -> &str {
        self.data
            .get("household_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    /// The body of a single delivery.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a message serializes")
    }
}

/// The body of a batched delivery: `{"type": "eligibility.batch", "timestamp", "data":
/// {"messages": [...]}}`, with `webhook-id` derived from the ids of the messages it holds, so
/// the same batch sent again carries the same id.
pub fn batch_body(messages: &[Message], timestamp: &str) -> (String, Vec<u8>) {
    let id = batch_id(messages);
    let body = json!({
        "type": "eligibility.batch",
        "timestamp": timestamp,
        "data": { "messages": messages },
    });
    (id, serde_json::to_vec(&body).expect("a batch serializes"))
}

/// `batch_<uuid v5 of the message ids>`; a batch of one is the message's own id.
pub fn batch_id(messages: &[Message]) -> String {
    if let [one] = messages {
        return one.id.clone();
    }
    let mut joined = String::with_capacity(messages.len() * 37);
    for m in messages {
        joined.push_str(&m.id);
        joined.push(',');
    }
    format!(
        "batch_{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, joined.as_bytes())
    )
}

/// `PersonDied` → `person_died`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Avro body of a record in the Confluent wire format.
fn avro_body(record: &ConsumedRecord) -> Result<&[u8], String> {
    let bytes = record
        .value
        .as_deref()
        .ok_or_else(|| format!("record {}:{} has no value", record.partition, record.offset))?;
    dsr_contracts::wire::unframe(bytes)
        .map(|(_, body)| body)
        .map_err(|e| {
            format!(
                "record {}:{} is not in the wire format: {e}",
                record.partition, record.offset
            )
        })
}

/// Whether a record of `dsr.beneficiary-events` is for `program` (its `dsr-program` header).
pub fn is_for(record: &ConsumedRecord, program: &str) -> bool {
    record.header("dsr-program") == Some(program.as_bytes())
}

/// Now, as RFC 3339, from milliseconds since the epoch.
pub fn rfc3339_ms(ms: i64) -> String {
    Micros(ms * 1000).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_becomes_a_message_with_its_id_and_kind() {
        for change in dsr_contracts::fixtures::eligibility_changes() {
            let m = Message::from_change(&change, 3, 17);
            assert_eq!(m.id, change.change_id.to_string());
            assert!(m.kind.starts_with("eligibility."));
            assert_eq!(m.household_id(), change.household_id.as_str());
            assert_eq!(m.position, "3:17");
            let back: Message = serde_json::from_slice(&m.body()).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn a_notice_names_the_person_only_when_allowed() {
        let n = BeneficiaryEvent {
            notice_id: uuid::Uuid::from_u128(1),
            program_id: "old-age-pension".into(),
            household_id: dsr_core::HouseholdId::new("H-1"),
            event_type: "PersonDied".into(),
            person_id: Some(dsr_core::PersonId::new("P-1")),
            occurred_at: Micros(0),
            caused_by: uuid::Uuid::from_u128(2),
            household_version: 3,
        };
        let m = Message::from_notice(&n, true, 1, 2);
        assert_eq!(m.kind, "life_event.person_died");
        assert_eq!(m.data["person_id"], "P-1");
        assert_eq!(m.position, "b1:2");
        assert!(Message::from_notice(&n, false, 1, 2)
            .data
            .get("person_id")
            .is_none());
    }

    #[test]
    fn a_backfill_message_is_an_entered_with_a_stable_id_of_its_own() {
        let mut c = dsr_contracts::fixtures::eligibility_changes().remove(0);
        c.kind = ChangeKind::Changed;
        let m = Message::from_change(&c, 3, 7);
        assert!(m.leaves_eligible());
        let b = m.backfill();
        assert_eq!(b.kind, "eligibility.entered");
        assert_eq!(b.data["kind"], "entered");
        assert_eq!(b.data["backfill"], true);
        assert_ne!(b.id, m.id);
        assert_eq!(b.id, m.backfill().id);
        assert_eq!(b.data["household_id"], m.data["household_id"]);
    }

    #[test]
    fn a_batch_id_depends_on_the_messages_only() {
        let all: Vec<Message> = dsr_contracts::fixtures::eligibility_changes()
            .iter()
            .map(|c| Message::from_change(c, 0, 0))
            .collect();
        assert!(all.len() >= 2);
        let (a, _) = batch_body(&all, "t1");
        let (b, _) = batch_body(&all, "t2");
        assert_eq!(a, b);
        let (c, _) = batch_body(&all[..1], "t1");
        assert_eq!(c, all[0].id);
        let (d, _) = batch_body(&all[1..], "t1");
        assert_ne!(a, d);
    }
}
