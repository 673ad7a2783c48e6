//! The administrative hierarchy: region → district → sub-county → village.
//!
//! Sized from the household count (about one village per 220 households, 4–10 regions for
//! any realistic size) and carrying, per area, the poverty and remoteness that drive incomes,
//! dwellings and school enrolment: real areas differ, and targeting only means something
//! when they do. Codes are the dotted paths of [`AreaCode`] (`R01.D03.S12.V045`), numbered
//! within their parent, so code order is the depth-first order and a district's villages are
//! contiguous.

use crate::names::{self, REGION_NAMES};
use crate::rng::{index, lognormal, normal, rng_for, unit, Rng, Stream};
use dsr_core::AreaCode;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::ops::Range;

/// Mean households per village.
pub const HOUSEHOLDS_PER_VILLAGE: u64 = 220;

/// The four levels of the hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AreaLevel {
    Region,
    District,
    SubCounty,
    Village,
}

impl AreaLevel {
    /// The text written in `areas.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            AreaLevel::Region => "region",
            AreaLevel::District => "district",
            AreaLevel::SubCounty => "sub_county",
            AreaLevel::Village => "village",
        }
    }
}

/// One administrative area.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Area {
    pub code: AreaCode,
    pub name: String,
    pub level: AreaLevel,
    pub parent: Option<AreaCode>,
    /// 0 (well-off) to 1 (poorest). Lowers incomes and education, worsens dwellings.
    pub poverty: f64,
    /// 0 (town centre) to 1 (remote). Worsens water, electricity and school access.
    pub remoteness: f64,
    /// A town (village-level areas only; a higher area is urban when its capital is).
    pub urban: bool,
    /// Households registered in the area at the start.
    pub households: u64,
}

/// The whole hierarchy, in code order.
#[derive(Clone, Debug)]
pub struct Areas {
    areas: Vec<Area>,
    /// Indices into `areas` of the villages, in code order.
    villages: Vec<u32>,
    /// `village_start[v]` is the index of village `v`'s first household (one past the end at
    /// `villages.len()`).
    village_start: Vec<u64>,
    /// For each village, the range of villages (village indices) of its district.
    district_villages: Vec<(u32, u32)>,
    /// Village indices of the urban villages (where migrants founding households go).
    urban_villages: Vec<u32>,
    by_code: HashMap<AreaCode, u32>,
}

/// Splits `total` items into `weights.len()` buckets, each at least one, in proportion to the
/// weights (largest remainder). `total` must be at least the number of buckets.
fn split(total: u64, weights: &[f64]) -> Vec<u64> {
    let n = weights.len() as u64;
    debug_assert!(total >= n);
    let rest = total - n;
    let sum: f64 = weights.iter().sum();
    let shares: Vec<f64> = weights.iter().map(|w| rest as f64 * w / sum).collect();
    let mut out: Vec<u64> = shares.iter().map(|s| 1 + s.floor() as u64).collect();
    let mut left = total - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = shares[a] - shares[a].floor();
        let fb = shares[b] - shares[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for i in order.into_iter().cycle() {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

fn jitter(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| lo + (hi - lo) * unit(rng)).collect()
}

fn clamp01(x: f64) -> f64 {
    x.clamp(0.02, 0.98)
}

fn unique_name(rng: &mut Rng, taken: &mut HashSet<String>) -> String {
    loop {
        let n = names::place(rng);
        if taken.insert(n.clone()) {
            return n;
        }
    }
}

impl Areas {
    /// The hierarchy for a population of `households`, deterministic from `seed`.
    pub fn generate(households: u64, seed: u64) -> Areas {
        let mut rng = rng_for(seed, Stream::Areas, 0);
        let n = households.max(1);
        let v_total = ((n as f64 / HOUSEHOLDS_PER_VILLAGE as f64).round() as u64).max(1);
        let vf = v_total as f64;
        let mut regions = (vf.powf(0.25).round() as u64).clamp(1, 10);
        if v_total >= 16 {
            regions = regions.max(4);
        }
        let per_region = (vf / regions as f64).cbrt().clamp(1.0, 12.0);
        let d_total = ((regions as f64 * per_region).round() as u64).clamp(regions, v_total);
        let per_district = (vf / d_total as f64).sqrt().clamp(1.0, 30.0);
        let s_total = ((d_total as f64 * per_district).round() as u64).clamp(d_total, v_total);

        let districts_per_region = split(d_total, &jitter(&mut rng, regions as usize, 0.6, 1.4));
        let subs_per_district = split(s_total, &jitter(&mut rng, d_total as usize, 0.5, 1.5));
        let villages_per_sub: Vec<u64> = {
            let w: Vec<f64> = (0..s_total)
                .map(|_| lognormal(&mut rng, 1.0, 0.5))
                .collect();
            split(v_total, &w)
        };

        // Region names: R01 is the capital's region, "Central"; the rest are shuffled.
        let mut region_names: Vec<&str> = REGION_NAMES[1..].to_vec();
        for i in (1..region_names.len()).rev() {
            region_names.swap(i, index(&mut rng, i + 1));
        }
        region_names.insert(0, REGION_NAMES[0]);

        let mut areas = Vec::with_capacity((regions + d_total + s_total + v_total) as usize);
        let mut villages = Vec::with_capacity(v_total as usize);
        let mut village_weight = Vec::with_capacity(v_total as usize);
        let mut district_names = HashSet::new();
        let (mut d_i, mut s_i) = (0usize, 0usize);
        for r in 0..regions as usize {
            let r_code = AreaCode::new(format!("R{:02}", r + 1));
            let r_pov = if r == 0 {
                0.15 + 0.15 * unit(&mut rng)
            } else {
                0.3 + 0.55 * unit(&mut rng)
            };
            let r_rem = clamp01(0.25 + 0.6 * r_pov + 0.15 * normal(&mut rng));
            areas.push(Area {
                code: r_code.clone(),
                name: region_names[r % region_names.len()].to_string(),
                level: AreaLevel::Region,
                parent: None,
                poverty: r_pov,
                remoteness: r_rem,
                urban: false,
                households: 0,
            });
            for d in 0..districts_per_region[r] as usize {
                let d_code = AreaCode::new(format!("{r_code}.D{:02}", d + 1));
                let capital = r == 0 && d == 0;
                let d_pov =
                    clamp01(r_pov + 0.1 * normal(&mut rng) - if capital { 0.1 } else { 0.0 });
                let d_rem =
                    clamp01(r_rem + 0.1 * normal(&mut rng) - if capital { 0.3 } else { 0.0 });
                areas.push(Area {
                    code: d_code.clone(),
                    name: unique_name(&mut rng, &mut district_names),
                    level: AreaLevel::District,
                    parent: Some(r_code.clone()),
                    poverty: d_pov,
                    remoteness: d_rem,
                    urban: false,
                    households: 0,
                });
                let mut sub_names = HashSet::new();
                for s in 0..subs_per_district[d_i] as usize {
                    let s_code = AreaCode::new(format!("{d_code}.S{:02}", s + 1));
                    // The first sub-county of a district holds the district town.
                    let town = s == 0 || (capital && unit(&mut rng) < 0.6);
                    let s_pov =
                        clamp01(d_pov + 0.08 * normal(&mut rng) - if town { 0.1 } else { 0.0 });
                    let s_rem =
                        clamp01(d_rem + 0.08 * normal(&mut rng) - if town { 0.25 } else { 0.0 });
                    areas.push(Area {
                        code: s_code.clone(),
                        name: unique_name(&mut rng, &mut sub_names),
                        level: AreaLevel::SubCounty,
                        parent: Some(d_code.clone()),
                        poverty: s_pov,
                        remoteness: s_rem,
                        urban: false,
                        households: 0,
                    });
                    let mut village_names = HashSet::new();
                    for v in 0..villages_per_sub[s_i] as usize {
                        let urban = unit(&mut rng) < if town { 0.7 } else { 0.04 };
                        let mut pov = clamp01(s_pov + 0.06 * normal(&mut rng));
                        let mut rem = clamp01(s_rem + 0.06 * normal(&mut rng));
                        if urban {
                            pov = clamp01(pov * 0.55);
                            rem = clamp01(rem * 0.2);
                        }
                        villages.push(areas.len() as u32);
                        // Towns are denser: more households per village.
                        village_weight
                            .push(lognormal(&mut rng, 1.0, 0.3) * if urban { 1.6 } else { 1.0 });
                        areas.push(Area {
                            code: AreaCode::new(format!("{s_code}.V{:03}", v + 1)),
                            name: unique_name(&mut rng, &mut village_names),
                            level: AreaLevel::Village,
                            parent: Some(s_code.clone()),
                            poverty: pov,
                            remoteness: rem,
                            urban,
                            households: 0,
                        });
                    }
                    s_i += 1;
                }
                d_i += 1;
            }
        }

        let counts = split(n, &village_weight);
        let mut village_start = Vec::with_capacity(villages.len() + 1);
        let mut acc = 0u64;
        for (v, c) in villages.iter().zip(&counts) {
            village_start.push(acc);
            acc += c;
            areas[*v as usize].households = *c;
        }
        village_start.push(acc);
        if households == 0 {
            // An empty population still has a hierarchy, with no one in it.
            for a in &mut areas {
                a.households = 0;
            }
            village_start.iter_mut().for_each(|s| *s = 0);
        }

        let by_code: HashMap<AreaCode, u32> = areas
            .iter()
            .enumerate()
            .map(|(i, a)| (a.code.clone(), i as u32))
            .collect();
        // Totals up the tree: children follow their parent in code order, so walk backwards.
        for i in (0..areas.len()).rev() {
            if let Some(p) = areas[i].parent.clone() {
                let h = areas[i].households;
                let pi = by_code[&p] as usize;
                areas[pi].households += h;
                if areas[i].urban && areas[i].level == AreaLevel::Village {
                    areas[pi].urban = true;
                }
            }
        }

        let mut district_villages = Vec::with_capacity(villages.len());
        let mut start = 0usize;
        while start < villages.len() {
            let district = district_of(&areas[villages[start] as usize].code);
            let mut end = start + 1;
            while end < villages.len()
                && district_of(&areas[villages[end] as usize].code) == district
            {
                end += 1;
            }
            for _ in start..end {
                district_villages.push((start as u32, end as u32));
            }
            start = end;
        }
        let urban_villages = villages
            .iter()
            .enumerate()
            .filter(|(_, a)| areas[**a as usize].urban)
            .map(|(v, _)| v as u32)
            .collect();

        Areas {
            areas,
            villages,
            village_start,
            district_villages,
            urban_villages,
            by_code,
        }
    }

    /// Every area, in code order (each area after its parent).
    pub fn all(&self) -> &[Area] {
        &self.areas
    }

    pub fn len(&self) -> usize {
        self.areas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    pub fn get(&self, code: &AreaCode) -> Option<&Area> {
        self.by_code.get(code).map(|i| &self.areas[*i as usize])
    }

    /// Number of areas at `level`.
    pub fn count(&self, level: AreaLevel) -> usize {
        self.areas.iter().filter(|a| a.level == level).count()
    }

    pub fn village_count(&self) -> usize {
        self.villages.len()
    }

    /// Village number `v` (0-based, code order).
    pub fn village(&self, v: usize) -> &Area {
        &self.areas[self.villages[v] as usize]
    }

    pub fn villages(&self) -> impl Iterator<Item = &Area> + '_ {
        self.villages.iter().map(|i| &self.areas[*i as usize])
    }

    /// The village (number) household `household_index` (0-based) is registered in.
    pub fn village_of_household(&self, household_index: u64) -> usize {
        self.village_start[1..].partition_point(|s| *s <= household_index)
    }

    /// The household indices registered in village `v`.
    pub fn village_households(&self, v: usize) -> Range<u64> {
        self.village_start[v]..self.village_start[v + 1]
    }

    /// The village numbers of village `v`'s district.
    pub fn district_villages(&self, v: usize) -> Range<usize> {
        let (a, b) = self.district_villages[v];
        a as usize..b as usize
    }

    /// Village numbers of the towns.
    pub fn urban_villages(&self) -> &[u32] {
        &self.urban_villages
    }

    /// Writes `areas.csv`: `code,name,level,parent_code`, one area per line in code order.
    pub fn write_csv(&self, mut w: impl Write) -> io::Result<()> {
        writeln!(w, "code,name,level,parent_code")?;
        for a in &self.areas {
            writeln!(
                w,
                "{},{},{},{}",
                a.code,
                csv_field(&a.name),
                a.level.as_str(),
                a.parent.as_ref().map(|p| p.as_str()).unwrap_or("")
            )?;
        }
        Ok(())
    }
}

fn district_of(code: &AreaCode) -> &str {
    let s = code.as_str();
    let mut dots = s.match_indices('.');
    dots.nth(1).map(|(i, _)| &s[..i]).unwrap_or(s)
}

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_from_households() {
        let a = Areas::generate(1_000_000, 1);
        let v = a.count(AreaLevel::Village);
        assert!((3_000..7_000).contains(&v), "{v} villages");
        let r = a.count(AreaLevel::Region);
        assert!((4..=10).contains(&r), "{r} regions");
        let regions: u64 = a
            .all()
            .iter()
            .filter(|x| x.level == AreaLevel::Region)
            .map(|x| x.households)
            .sum();
        assert_eq!(regions, 1_000_000);
        let total: u64 = a.villages().map(|v| v.households).sum();
        assert_eq!(total, 1_000_000);
        assert!(a.all().iter().all(|x| x.code.is_well_formed()));
        assert!(a.urban_villages().len() > 10);
    }

    #[test]
    fn codes_nest_and_sort() {
        let a = Areas::generate(10_000, 5);
        let codes: Vec<&str> = a.all().iter().map(|x| x.code.as_str()).collect();
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(codes, sorted);
        for x in a.all() {
            if let Some(p) = &x.parent {
                assert!(x.code.is_within(p));
                assert!(a.get(p).is_some());
            }
        }
        let v = a.village_of_household(0);
        assert_eq!(v, 0);
        let last = a.village_count() - 1;
        assert_eq!(a.village_of_household(9_999), last);
        assert!(a.village_households(last).contains(&9_999));
        let dv = a.district_villages(last);
        assert!(dv.contains(&last));
    }

    #[test]
    fn tiny_populations_still_have_four_levels() {
        for n in [0, 1, 7, 300] {
            let a = Areas::generate(n, 2);
            assert!(a.village_count() >= 1);
            assert_eq!(a.count(AreaLevel::Region), 1);
            assert_eq!(a.all()[0].households, n);
        }
    }

    #[test]
    fn split_is_exact() {
        assert_eq!(split(10, &[1.0, 1.0, 1.0]).iter().sum::<u64>(), 10);
        assert_eq!(split(3, &[5.0, 1.0, 1.0]), vec![1, 1, 1]);
    }
}
