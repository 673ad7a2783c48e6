//! Made-up but plausible names, from syllables.
//!
//! The tables of person names are fixed (built from a constant seed) so that a person is
//! stored as two small indices and turned into text only when an event is written; the run's
//! seed chooses which entries people get. No real name list is used: nothing here can
//! identify anyone.

use crate::rng::{index, Rng};
use rand::SeedableRng;
use std::collections::HashSet;
use std::sync::OnceLock;

const ONSETS: &[&str] = &[
    "b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "w", "y", "z", "ch",
    "sh", "ny", "mb", "nd", "ng", "kw", "tw", "bw", "mw", "ki", "ts",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "a", "i"];
const FEMALE_ENDINGS: &[&str] = &["a", "e", "i", "na", "ya", "da", "la", "ti", "ne", "ma"];
const MALE_ENDINGS: &[&str] = &["o", "u", "i", "e", "ko", "to", "mbo", "ru", "nde", "si"];
const FAMILY_PREFIXES: &[&str] = &[
    "Ka", "Na", "Mu", "Wa", "Ki", "O", "A", "Ba", "Ma", "Nya", "Bu", "Lu", "Tu", "Se", "",
];

/// Number of entries in each given-name table.
pub const GIVEN_NAMES: usize = 1500;
/// Number of entries in the family-name table.
pub const FAMILY_NAMES: usize = 4000;

/// The fixed tables of person names.
pub struct NameTables {
    pub female: Vec<String>,
    pub male: Vec<String>,
    pub family: Vec<String>,
}

fn capitalise(mut s: String) -> String {
    if let Some(first) = s.get(0..1) {
        let upper = first.to_ascii_uppercase();
        s.replace_range(0..1, &upper);
    }
    s
}

fn syllable(rng: &mut Rng, out: &mut String) {
    out.push_str(ONSETS[index(rng, ONSETS.len())]);
    out.push_str(VOWELS[index(rng, VOWELS.len())]);
}

/// A place or person name of `syllables` syllables (plus an ending, if given).
pub(crate) fn word(rng: &mut Rng, syllables: usize, endings: &[&str]) -> String {
    let mut s = String::with_capacity(12);
    for _ in 0..syllables {
        syllable(rng, &mut s);
    }
    if !endings.is_empty() {
        // Endings replace the last vowel so "kama" + "na" reads "kamna", not "kamana".
        s.pop();
        let e = endings[index(rng, endings.len())];
        if !e.starts_with(['a', 'e', 'i', 'o', 'u']) && s.ends_with(|c: char| !"aeiou".contains(c))
        {
            s.push('a');
        }
        s.push_str(e);
    }
    capitalise(s)
}

fn unique_list(rng: &mut Rng, n: usize, mut make: impl FnMut(&mut Rng) -> String) -> Vec<String> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let w = make(rng);
        if w.len() >= 3 && w.len() <= 14 && seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// The tables, built once per process.
pub fn tables() -> &'static NameTables {
    static TABLES: OnceLock<NameTables> = OnceLock::new();
    TABLES.get_or_init(build)
}

fn build() -> NameTables {
    {
        let mut rng = Rng::seed_from_u64(0x4453_525f_4e41_4d45); // "DSR_NAME"
        let female = unique_list(&mut rng, GIVEN_NAMES, |r| {
            let n = 1 + index(r, 2);
            word(r, n, FEMALE_ENDINGS)
        });
        let male = unique_list(&mut rng, GIVEN_NAMES, |r| {
            let n = 1 + index(r, 2);
            word(r, n, MALE_ENDINGS)
        });
        let family = unique_list(&mut rng, FAMILY_NAMES, |r| {
            let prefix = FAMILY_PREFIXES[index(r, FAMILY_PREFIXES.len())];
            let n = 1 + index(r, 2);
            let rest = word(r, n, MALE_ENDINGS);
            if prefix.is_empty() {
                rest
            } else {
                format!("{prefix}{}", rest.to_ascii_lowercase())
            }
        });
        NameTables {
            female,
            male,
            family,
        }
    }
}

/// Names of regions, as a country's regions are often named.
pub(crate) const REGION_NAMES: &[&str] = &[
    "Central",
    "Northern",
    "Eastern",
    "Western",
    "Southern",
    "North Eastern",
    "North Western",
    "South Eastern",
    "South Western",
    "Lakeside",
    "Highlands",
    "Coastal",
];

/// A place name of two or three syllables.
pub(crate) fn place(rng: &mut Rng) -> String {
    let n = 2 + index(rng, 2);
    word(rng, n, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_unique_and_stable() {
        let t = tables();
        assert_eq!(t.female.len(), GIVEN_NAMES);
        assert_eq!(t.family.len(), FAMILY_NAMES);
        let set: HashSet<_> = t.family.iter().collect();
        assert_eq!(set.len(), FAMILY_NAMES);
        assert!(t
            .male
            .iter()
            .all(|n| n.chars().next().unwrap().is_ascii_uppercase()));
        // Fixed tables: every build is the same.
        let again = build();
        assert_eq!(t.female, again.female);
        assert_eq!(t.family, again.family);
    }
}
