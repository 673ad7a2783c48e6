//! A direct JSON encoder for events, byte for byte what `serde_json::to_writer` produces.
//!
//! Encoding is most of the generator's work (two thirds of a million-household run was
//! serde_json escaping keys and formatting timestamps through `core::fmt`). This encoder writes
//! keys as literals, code symbols and ids without scanning, and dates and times digit by
//! digit. It covers the envelope and the two payloads that make up almost all the bytes
//! (`HouseholdRegistered`, `IncomeReported`); other payloads go through serde_json. The test
//! `fast_encoder_matches_serde_json` compares it with serde_json on every event of a
//! generated year, so a change to dsr-core's JSON form fails loudly instead of drifting.

use dsr_core::codes::CodeList;
use dsr_core::event::{Envelope, HouseholdRegistered, IncomeReported};
use dsr_core::household::{Assets, Dwelling};
use dsr_core::ids::MICROS_PER_DAY;
use dsr_core::{Date, Event, Member, Micros, Payload};
use serde_json::ser::{CompactFormatter, Formatter};

/// Appends `event` as JSON (no newline) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, event: &Event) -> Result<(), serde_json::Error> {
    envelope(out, &event.envelope);
    out.extend_from_slice(b",\"event_type\":\"");
    out.extend_from_slice(event.event_type().as_bytes());
    out.extend_from_slice(b"\",\"payload\":");
    match &event.payload {
        Payload::HouseholdRegistered(p) => registered(out, p),
        Payload::IncomeReported(p) => income(out, p),
        Payload::PersonBorn(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::PersonDied(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::MarriageRegistered(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::DivorceRegistered(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::PersonMoved(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::MemberJoined(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::EmploymentChanged(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::DisabilityAssessed(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::SchoolEnrollmentChanged(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::AssetsReported(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::HouseholdShockReported(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::DataCorrection(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::ShockDeclared(p) => serde_json::to_writer(&mut *out, p)?,
        Payload::ShockEnded(p) => serde_json::to_writer(&mut *out, p)?,
    }
    out.push(b'}');
    Ok(())
}

/// The envelope's fields, opening the event object (left open for the payload).
fn envelope(out: &mut Vec<u8>, e: &Envelope) {
    out.extend_from_slice(b"{\"event_id\":\"");
    uuid(out, &e.event_id);
    out.extend_from_slice(b"\",\"source_system\":");
    string(out, &e.source_system);
    out.extend_from_slice(b",\"occurred_at\":");
    micros(out, e.occurred_at);
    out.extend_from_slice(b",\"recorded_at\":");
    micros(out, e.recorded_at);
    out.extend_from_slice(b",\"person_id\":");
    match &e.person_id {
        Some(p) => string(out, p.as_str()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"household_id\":");
    match &e.household_id {
        Some(h) => string(out, h.as_str()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"correlation_id\":");
    match &e.correlation_id {
        Some(c) => {
            out.push(b'"');
            uuid(out, c);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"schema_version\":");
    let _ = CompactFormatter.write_u32(out, e.schema_version);
}

fn registered(out: &mut Vec<u8>, p: &HouseholdRegistered) {
    out.extend_from_slice(b"{\"area\":");
    string(out, p.area.as_str());
    out.extend_from_slice(b",\"members\":[");
    for (i, m) in p.members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        member(out, m);
    }
    out.extend_from_slice(b"],\"dwelling\":");
    dwelling(out, &p.dwelling);
    out.extend_from_slice(b",\"assets\":");
    assets(out, &p.assets);
    out.extend_from_slice(b",\"registration_source\":");
    code(out, p.registration_source);
    out.push(b'}');
}

fn income(out: &mut Vec<u8>, p: &IncomeReported) {
    out.extend_from_slice(b"{\"person_id\":");
    string(out, p.person_id.as_str());
    out.extend_from_slice(b",\"amount\":");
    f64(out, p.amount);
    out.extend_from_slice(b",\"period\":");
    code(out, p.period);
    out.extend_from_slice(b",\"source\":");
    code(out, p.source);
    out.push(b'}');
}

fn member(out: &mut Vec<u8>, m: &Member) {
    out.extend_from_slice(b"{\"person_id\":");
    string(out, m.person_id.as_str());
    out.extend_from_slice(b",\"given_name\":");
    string(out, &m.given_name);
    out.extend_from_slice(b",\"family_name\":");
    string(out, &m.family_name);
    out.extend_from_slice(b",\"sex\":");
    code(out, m.sex);
    out.extend_from_slice(b",\"birth_date\":");
    date(out, m.birth_date);
    out.extend_from_slice(b",\"relationship\":");
    code(out, m.relationship);
    out.extend_from_slice(b",\"marital_status\":");
    code(out, m.marital_status);
    out.extend_from_slice(b",\"education_level\":");
    code(out, m.education_level);
    out.extend_from_slice(b",\"enrolled_in_school\":");
    bool(out, m.enrolled_in_school);
    out.extend_from_slice(b",\"employment\":");
    code(out, m.employment);
    out.extend_from_slice(b",\"incomes\":[");
    for (i, (source, amount)) in m.incomes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"source\":");
        code(out, source);
        out.extend_from_slice(b",\"monthly_amount\":");
        f64(out, amount);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"disability\":");
    match &m.disability {
        Some(d) => {
            out.extend_from_slice(b"{\"disability_type\":");
            code(out, d.disability_type);
            out.extend_from_slice(b",\"severity\":");
            code(out, d.severity);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn dwelling(out: &mut Vec<u8>, d: &Dwelling) {
    out.extend_from_slice(b"{\"wall_material\":");
    code(out, d.wall_material);
    out.extend_from_slice(b",\"water_source\":");
    code(out, d.water_source);
    out.extend_from_slice(b",\"sanitation\":");
    code(out, d.sanitation);
    out.extend_from_slice(b",\"electricity\":");
    bool(out, d.electricity);
    out.extend_from_slice(b",\"rooms\":");
    let _ = CompactFormatter.write_u32(out, d.rooms);
    out.extend_from_slice(b",\"tenure\":");
    code(out, d.tenure);
    out.push(b'}');
}

fn assets(out: &mut Vec<u8>, a: &Assets) {
    out.extend_from_slice(b"{\"land_hectares\":");
    f64(out, a.land_hectares);
    out.extend_from_slice(b",\"livestock_tlu\":");
    f64(out, a.livestock_tlu);
    out.extend_from_slice(b",\"mobile_phones\":");
    let _ = CompactFormatter.write_u32(out, a.mobile_phones);
    for (key, v) in [
        (&b",\"radio\":"[..], a.radio),
        (b",\"television\":", a.television),
        (b",\"refrigerator\":", a.refrigerator),
        (b",\"bicycle\":", a.bicycle),
        (b",\"motorcycle\":", a.motorcycle),
        (b",\"car\":", a.car),
    ] {
        out.extend_from_slice(key);
        bool(out, v);
    }
    out.push(b'}');
}

fn bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// As serde_json writes an `f64`: shortest round-trip form, `null` when not finite.
fn f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn code<C: CodeList>(out: &mut Vec<u8>, c: C) {
    out.push(b'"');
    out.extend_from_slice(c.symbol().as_bytes());
    out.push(b'"');
}

/// A JSON string; text that needs escaping goes through serde_json.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
}

fn digits(out: &mut Vec<u8>, v: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut n = v;
    for i in (0..width).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

fn date_digits(out: &mut Vec<u8>, d: Date) -> bool {
    let (y, m, day) = d.ymd();
    if !(0..=9999).contains(&y) {
        return false;
    }
    digits(out, y as u32, 4);
    out.push(b'-');
    digits(out, m, 2);
    out.push(b'-');
    digits(out, day, 2);
    true
}

/// `"YYYY-MM-DD"`, as dsr-core's `Date` serializes.
fn date(out: &mut Vec<u8>, d: Date) {
    out.push(b'"');
    if !date_digits(out, d) {
        out.pop();
        let _ = serde_json::to_writer(&mut *out, &d);
        return;
    }
    out.push(b'"');
}

/// `"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"`, as dsr-core's `Micros` serializes.
fn micros(out: &mut Vec<u8>, t: Micros) {
    out.push(b'"');
    if !date_digits(out, t.date()) {
        out.pop();
        let _ = serde_json::to_writer(&mut *out, &t);
        return;
    }
    let in_day = t.0.rem_euclid(MICROS_PER_DAY);
    let secs = (in_day / 1_000_000) as u32;
    let frac = (in_day % 1_000_000) as u32;
    out.push(b'T');
    digits(out, secs / 3600, 2);
    out.push(b':');
    digits(out, secs / 60 % 60, 2);
    out.push(b':');
    digits(out, secs % 60, 2);
    if frac != 0 {
        out.push(b'.');
        digits(out, frac, 6);
    }
    out.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn same(e: &Event) {
        let mut fast = Vec::new();
        encode(&mut fast, e).unwrap();
        let slow = serde_json::to_vec(e).unwrap();
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
    }

    #[test]
    fn fast_encoder_matches_serde_json() {
        let p = fixtures::small_population(3, 1_500);
        for e in p.households.iter().chain(&p.events) {
            same(e);
        }
        for e in fixtures::named::all() {
            same(&e);
        }
    }

    #[test]
    fn odd_values_match_too() {
        let mut e = fixtures::income(
            "H\"1",
            "P\\1\n",
            dsr_core::codes::IncomeSource::Wages,
            1e-7,
            Micros(-1),
        );
        same(&e);
        e.envelope.occurred_at = Micros(1_234_567_891_234_567);
        e.envelope.correlation_id = Some(fixtures::event_id("x"));
        if let Payload::IncomeReported(p) = &mut e.payload {
            p.amount = f64::NAN;
        }
        same(&e);
        let mut h = fixtures::named::elderly_alone();
        if let Payload::HouseholdRegistered(r) = &mut h.payload {
            r.members[0].birth_date = Date(-800_000);
            r.members[0].given_name = "Ñandú \u{1}".into();
            r.assets.land_hectares = 0.1 + 0.2;
        }
        same(&h);
    }
}
