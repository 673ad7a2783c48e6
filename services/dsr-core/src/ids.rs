//! Identifiers and time values shared by every event and state.
//!
//! Ids are `CompactString`s: national ID numbers and household numbers are short, so they
//! live inline and cloning a household on the hot path allocates nothing for them.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether two short texts are equal, compared a word at a time inline (see [`text_order`]).
#[inline]
pub fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("chunks of 8"));
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    (&mut x).zip(&mut y).all(|(x, y)| word(x) == word(y))
        && x.remainder().iter().zip(y.remainder()).all(|(x, y)| x == y)
}

/// The byte order of two short texts (the order of `str`), compared eight bytes at a time
/// inline: for ids and names of a few dozen bytes the call to `memcmp` cost more than the
/// comparison.
#[inline]
pub fn text_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let word = |c: &[u8]| u64::from_be_bytes(c.try_into().expect("chunks of 8"));
    let (mut x, mut y) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        let (p, q) = (word(p), word(q));
        if p != q {
            return p.cmp(&q);
        }
    }
    for (p, q) in x.remainder().iter().zip(y.remainder()) {
        if p != q {
            return p.cmp(q);
        }
    }
    a.len().cmp(&b.len())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Eq, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(pub CompactString);

        // Byte order, as `str` orders, compared inline: ids are compared on every event (a
        // member found by binary search, a household key), and the library comparison's call
        // to `memcmp` was most of that cost for ids this short.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                same_text(&self.0, &other.0)
            }
        }
        // Hashes the text, as `str` does (equal texts, equal hashes).
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.as_str().hash(state)
            }
        }
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                text_order(self.0.as_bytes(), other.0.as_bytes())
            }
        }
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(CompactString::new(s.as_ref()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }
    };
}

string_id!(
    /// A person's registry identifier (the ID authority's UIN, or a birth registration number
    /// until a UIN is issued).
    PersonId
);
string_id!(
    /// A household's registry identifier.
    HouseholdId
);
string_id!(
    /// An administrative-area code path from the geographic master list, levels joined by `.`:
    /// `R01.D03.S12.V045` is village 045 of sub-county 12 of district 03 of region 01. Every
    /// prefix that ends at a `.` is the code of an enclosing area, so "households in district
    /// R01.D03" is a prefix scan.
    AreaCode
);
string_id!(
    /// Identifies one area-wide shock declaration (drought, flood, ...).
    ShockId
);

impl AreaCode {
    /// True when `self` is `ancestor` or lies inside it.
    pub fn is_within(&self, ancestor: &AreaCode) -> bool {
        self.is_within_str(ancestor.as_str())
    }

    /// [`AreaCode::is_within`] for an ancestor's code as text.
    pub fn is_within_str(&self, a: &str) -> bool {
        let s = self.as_str();
        s == a || (s.starts_with(a) && s.as_bytes().get(a.len()) == Some(&b'.'))
    }

    /// The code paths of this area and every enclosing area, outermost first.
    pub fn path(&self) -> impl Iterator<Item = &str> {
        let s = self.as_str();
        s.match_indices('.')
            .map(move |(i, _)| &s[..i])
            .chain(std::iter::once(s))
    }

    /// Syntactic check: non-empty levels of ASCII letters, digits, `-` or `_`.
    pub fn is_well_formed(&self) -> bool {
        !self.0.is_empty()
            && self.0.split('.').all(|level| {
                !level.is_empty()
                    && level
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }
}

/// An event's globally unique id (UUID). Deterministic ids for derived records are built
/// with [`derived_id`].
pub type EventId = uuid::Uuid;

/// A map keyed by household, with seeded foldhash instead of SipHash: processors look
/// households up several times per event, and SipHash was a tenth of the domain core's
/// per-event cost in its benchmark. Still seeded per map, so crafted ids cannot degrade it.
pub type HouseholdMap<V> = std::collections::HashMap<HouseholdId, V, foldhash::fast::RandomState>;

/// A set of households, hashed as [`HouseholdMap`].
pub type HouseholdSet = std::collections::HashSet<HouseholdId, foldhash::fast::RandomState>;

/// Builds the id of a record derived from another (a household's side of a move, an
/// eligibility change), so that a record produced again after a crash carries the same id.
pub fn derived_id(parent: &EventId, purpose: &str) -> EventId {
    uuid::Uuid::new_v5(parent, purpose.as_bytes())
}

/// A point in time: microseconds since 1970-01-01T00:00:00Z (Avro `timestamp-micros`).
/// In JSON it is RFC 3339 text (`2026-03-01T08:30:00Z`); a number of microseconds is accepted
/// too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub i64);

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Micros {
    pub fn date(self) -> Date {
        Date(self.0.div_euclid(MICROS_PER_DAY) as i32)
    }
}

/// A calendar date: days since 1970-01-01 (Avro `date`). In JSON it is `YYYY-MM-DD`; a number
/// of days is accepted too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Date(pub i32);

impl Date {
    /// Whole years from `self` (a birth date) to `on`; 0 for dates before birth.
    pub fn years_until(self, on: Date) -> u32 {
        let (from, to) = (self.march_year(), on.march_year());
        (to.0 - from.0 - i64::from(to.1 < from.1)).max(0) as u32
    }

    /// The year counted from 1 March and the day in it (0 = 1 March … 365 = 29 February): the
    /// first half of [`Date::ymd`]. Ages need nothing more, because the day in a March year is
    /// a function of month and day alone, and counting anniversaries from 1 March or from 1
    /// January gives the same count (someone born on 29 February turns a year older on
    /// 1 March in common years either way). Ages are computed for every member on every event.
    fn march_year(self) -> (i64, i64) {
        let z = self.0 as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        (yoe + era * 400, doy)
    }

    /// Civil (proleptic Gregorian) year, month, day. Howard Hinnant's algorithm.
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = self.0 as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
    }

    /// The date of a civil year, month and day.
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Date {
        let y = if m <= 2 { y as i64 - 1 } else { y as i64 };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
        let doy = (153 * mp + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Date((era * 146_097 + doe - 719_468) as i32)
    }
}

/// Whole years from civil date `from` to `to` (an age); 0 when `to` is earlier.
pub fn years_between(from: (i32, u32, u32), to: (i32, u32, u32)) -> u32 {
    let mut age = to.0 - from.0;
    if (to.1, to.2) < (from.1, from.2) {
        age -= 1;
    }
    age.max(0) as u32
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Date {
    /// Parses `YYYY-MM-DD` (a real calendar date).
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let y: i32 = s.get(..4)?.parse().ok()?;
        let m: u32 = s.get(5..7)?.parse().ok()?;
        let d: u32 = s.get(8..10)?.parse().ok()?;
        if b.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        let date = Date::from_ymd(y, m, d);
        (date.ymd() == (y, m, d)).then_some(date)
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = self.date();
        let in_day = self.0.rem_euclid(MICROS_PER_DAY);
        let secs = in_day / 1_000_000;
        let frac = in_day % 1_000_000;
        write!(
            f,
            "{date}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if frac != 0 {
            write!(f, ".{frac:06}")?;
        }
        f.write_str("Z")
    }
}

impl Micros {
    /// Parses RFC 3339: `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)`.
    pub fn parse(s: &str) -> Option<Micros> {
        let date = Date::parse(s.get(..10)?)?;
        let rest = s.get(10..)?;
        let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
        let num = |t: &str| -> Option<i64> {
            (t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())?
        };
        let (h, mi, sec) = (
            num(rest.get(0..2)?)?,
            num(rest.get(3..5)?)?,
            num(rest.get(6..8)?)?,
        );
        if rest.get(2..3)? != ":" || rest.get(5..6)? != ":" || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut rest = rest.get(8..)?;
        let mut micros = 0i64;
        if let Some(f) = rest.strip_prefix('.') {
            let digits = f.bytes().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let frac = &f[..digits];
            let mut v: i64 = frac[..digits.min(6)].parse().ok()?;
            for _ in digits.min(6)..6 {
                v *= 10;
            }
            micros = v;
            rest = &f[digits..];
        }
        let offset_secs = match rest {
            "Z" | "z" => 0,
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
                let v = num(&o[1..3])? * 3600 + num(&o[4..6])? * 60;
                if o.starts_with('-') {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        Some(Micros(
            date.0 as i64 * MICROS_PER_DAY
                + ((h * 60 + mi) * 60 + sec - offset_secs) * 1_000_000
                + micros,
        ))
    }
}

/// Accepts text (parsed by `parse`) or an integer, for the JSON forms of dates and times.
macro_rules! text_or_number_serde {
    ($ty:ident, $inner:ty, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // Text for people (JSON); the plain number for binary formats.
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).ok_or_else(|| E::custom(format!("`{v}` is not {}", $what)))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        <$inner>::try_from(v)
                            .map($ty)
                            .map_err(|_| E::custom(format!("{v} is out of range for {}", $what)))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        <$inner>::try_from(v)
                            .map($ty)
                            .map_err(|_| E::custom(format!("{v} is out of range for {}", $what)))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_any(V)
                } else {
                    <$inner>::deserialize(d).map($ty)
                }
            }
        }
    };
}

text_or_number_serde!(Date, i32, "a date YYYY-MM-DD");
text_or_number_serde!(Micros, i64, "an RFC 3339 time like 2026-03-01T08:30:00Z");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn area_paths_nest_at_dots_only() {
        let v = AreaCode::new("R01.D03.S12.V045");
        assert!(v.is_within(&AreaCode::new("R01.D03")));
        assert!(v.is_within(&v.clone()));
        assert!(!v.is_within(&AreaCode::new("R01.D0")));
        assert_eq!(
            v.path().collect::<Vec<_>>(),
            ["R01", "R01.D03", "R01.D03.S12", "R01.D03.S12.V045"]
        );
        assert!(!AreaCode::new("R01..V1").is_well_formed());
    }

    #[test]
    fn ages_count_whole_years() {
        let born = Date::from_ymd(2000, 3, 15);
        assert_eq!(born.years_until(Date::from_ymd(2010, 3, 14)), 9);
        assert_eq!(born.years_until(Date::from_ymd(2010, 3, 15)), 10);
        assert_eq!(Date::from_ymd(1970, 1, 1), Date(0));
        assert_eq!(Date::from_ymd(2026, 11, 23).to_string(), "2026-11-23");
    }

    #[test]
    fn json_dates_and_times_are_text() {
        let t = Micros(Date::from_ymd(2026, 3, 1).0 as i64 * MICROS_PER_DAY + 30_600_000_123);
        assert_eq!(t.to_string(), "2026-03-01T08:30:00.000123Z");
        assert_eq!(Micros::parse("2026-03-01T10:30:00.000123+02:00"), Some(t));
        assert_eq!(
            serde_json::to_string(&Date::from_ymd(1990, 5, 1)).unwrap(),
            "\"1990-05-01\""
        );
        assert_eq!(serde_json::from_str::<Date>("7425").unwrap(), Date(7425));
        assert!(serde_json::from_str::<Date>("\"1990-02-30\"").is_err());
        assert!(Micros::parse("2026-03-01 08:30").is_none());
    }

    proptest! {
        #[test]
        fn times_round_trip_through_text(us in -4_000_000_000_000_000i64..4_000_000_000_000_000) {
            prop_assert_eq!(Micros::parse(&Micros(us).to_string()), Some(Micros(us)));
        }

        #[test]
        fn ages_from_march_years_are_ages_from_calendar_dates(
            born in -30_000i32..30_000,
            later in -400i32..50_000,
        ) {
            let on = Date(born + later);
            let (b, d) = (Date(born), on);
            prop_assert_eq!(b.years_until(d), years_between(b.ymd(), d.ymd()));
        }

        #[test]
        fn texts_compare_as_str_does(
            a in "[A-C0-9]{0,20}",
            b in "[A-C0-9]{0,20}",
            shared in "[A-C0-9]{0,20}",
        ) {
            // A shared prefix makes the interesting cases (equal words, then a difference).
            let (a, b) = (format!("{shared}{a}"), format!("{shared}{b}"));
            prop_assert_eq!(text_order(a.as_bytes(), b.as_bytes()), a.as_str().cmp(b.as_str()));
            prop_assert_eq!(same_text(&a, &b), a == b);
            prop_assert_eq!(PersonId::new(&a).cmp(&PersonId::new(&b)), a.cmp(&b));
            prop_assert_eq!(PersonId::new(&a) == PersonId::new(&b), a == b);
        }

        #[test]
        fn dates_round_trip(days in -200_000i32..200_000) {
            let (y, m, d) = Date(days).ymd();
            prop_assert_eq!(Date::from_ymd(y, m, d), Date(days));
        }
    }
}
