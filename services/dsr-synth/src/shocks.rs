//! Area-wide shocks: the droughts and floods of the simulated period.
//!
//! A schedule is drawn once per run (from the seed, not per chunk) so every chunk sees the
//! same shocks; each chunk then has its affected households report damage after a
//! declaration.

use crate::areas::Areas;
use crate::config::{micros, Config};
use crate::population::tenth;
use crate::rng::*;
use compact_str::{format_compact, CompactString};
use dsr_core::codes::*;
use dsr_core::event::*;
use dsr_core::ids::{ShockId, MICROS_PER_DAY};
use dsr_core::{AreaCode, Event, Micros};

const DAY: i64 = MICROS_PER_DAY;
const HOUR: i64 = 3_600_000_000;
const EARLY_WARNING: &str = "early-warning";

/// An area-wide shock of the schedule.
#[derive(Clone, Debug)]
pub(crate) struct Shock {
    pub id: ShockId,
    pub hazard: HazardType,
    pub area_codes: Vec<AreaCode>,
    /// `affected[v]`: village `v` lies in one of `area_codes`.
    pub affected: Vec<bool>,
    pub severity: ShockSeverity,
    pub indicator_name: &'static str,
    pub indicator_value: f64,
    pub declared_at: i64,
    pub starts_at: i64,
    pub expected_end: i64,
    pub ends_at: i64,
    /// Share of affected households that report damage.
    pub report_share: f64,
}

/// Draws the droughts and floods of the period: per year one or two droughts over several
/// districts of a (poorer) region, with a vegetation condition index below 35, and one to
/// three floods over a few sub-counties.
pub(crate) fn schedule_shocks(config: &Config, areas: &Areas) -> Vec<Shock> {
    let mut shocks = Vec::new();
    if !config.shocks || config.households == 0 || config.months == 0 {
        return shocks;
    }
    let mut rng = rng_for(config.seed, Stream::Shocks, 0);
    let period_start = micros(config.start).0;
    let period_end = micros(config.end()).0;
    let regions: Vec<&crate::Area> = areas
        .all()
        .iter()
        .filter(|a| a.level == crate::AreaLevel::Region)
        .collect();
    let districts: Vec<&crate::Area> = areas
        .all()
        .iter()
        .filter(|a| a.level == crate::AreaLevel::District)
        .collect();
    for year in 0..config.months.div_ceil(12) {
        let year_start = micros(config.month_start(year * 12)).0;
        let n_droughts = 1 + chance(&mut rng, 0.4) as u32;
        let n_floods = 1 + poisson(&mut rng, 0.8).min(2);
        let mut hit: Vec<usize> = Vec::new();
        for k in 0..n_droughts + n_floods {
            let drought = k < n_droughts;
            let mut codes = Vec::new();
            let (
                hazard,
                indicator_name,
                indicator_value,
                severity,
                declared_at,
                starts_at,
                expected_end,
                ends_at,
                share,
            );
            if drought {
                // Droughts hit the poorer, drier regions, not the capital's, and not the same
                // region twice in a year.
                let w: Vec<f64> = regions
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let excluded = (i == 0 && regions.len() > 1) || hit.contains(&i);
                        if excluded {
                            0.0
                        } else {
                            0.05 + r.poverty * r.poverty
                        }
                    })
                    .collect();
                if w.iter().sum::<f64>() == 0.0 {
                    continue;
                }
                let ri = weighted(&mut rng, &w);
                hit.push(ri);
                let region = regions[ri];
                for d in districts
                    .iter()
                    .filter(|d| d.parent.as_ref() == Some(&region.code))
                {
                    if chance(&mut rng, 0.7) {
                        codes.push(d.code.clone());
                    }
                }
                if codes.is_empty() {
                    codes.push(region.code.clone());
                }
                hazard = HazardType::Drought;
                indicator_name = "vci";
                indicator_value = tenth(8.0 + 26.9 * unit(&mut rng));
                severity = if indicator_value < 15.0 {
                    ShockSeverity::Extreme
                } else if indicator_value < 25.0 {
                    ShockSeverity::Severe
                } else {
                    ShockSeverity::Moderate
                };
                declared_at =
                    year_start + between(&mut rng, 45, 200) * DAY + between(&mut rng, 8, 17) * HOUR;
                starts_at = declared_at - between(&mut rng, 20, 45) * DAY;
                expected_end = declared_at + between(&mut rng, 90, 150) * DAY;
                ends_at = declared_at + between(&mut rng, 80, 200) * DAY;
                share = match severity {
                    ShockSeverity::Moderate => 0.15,
                    ShockSeverity::Severe => 0.3,
                    ShockSeverity::Extreme => 0.45,
                };
            } else {
                let district = districts[index(&mut rng, districts.len())];
                let subs: Vec<&crate::Area> = areas
                    .all()
                    .iter()
                    .filter(|a| a.parent.as_ref() == Some(&district.code))
                    .collect();
                let n = (1 + index(&mut rng, 3)).min(subs.len());
                let first = index(&mut rng, subs.len() - n + 1);
                codes.extend(subs[first..first + n].iter().map(|s| s.code.clone()));
                hazard = HazardType::Flood;
                indicator_name = "flood_depth_m";
                indicator_value = tenth(0.3 + 2.2 * unit(&mut rng));
                severity = if indicator_value < 0.8 {
                    ShockSeverity::Moderate
                } else if indicator_value < 1.6 {
                    ShockSeverity::Severe
                } else {
                    ShockSeverity::Extreme
                };
                declared_at =
                    year_start + between(&mut rng, 5, 350) * DAY + between(&mut rng, 6, 20) * HOUR;
                starts_at = declared_at - between(&mut rng, 0, 2) * DAY;
                expected_end = declared_at + between(&mut rng, 14, 30) * DAY;
                ends_at = declared_at + between(&mut rng, 10, 45) * DAY;
                share = match severity {
                    ShockSeverity::Moderate => 0.25,
                    ShockSeverity::Severe => 0.4,
                    ShockSeverity::Extreme => 0.6,
                };
            }
            if declared_at < period_start || declared_at >= period_end {
                continue;
            }
            let affected = (0..areas.village_count())
                .map(|v| {
                    let c = &areas.village(v).code;
                    codes.iter().any(|a| c.is_within(a))
                })
                .collect();
            shocks.push(Shock {
                id: ShockId::default(),
                hazard,
                area_codes: codes,
                affected,
                severity,
                indicator_name,
                indicator_value,
                declared_at,
                starts_at,
                expected_end,
                ends_at,
                report_share: share,
            });
        }
    }
    // Numbered in order of declaration: `DR-2026-001`, `FL-2026-002`, ...
    shocks.sort_by_key(|s| s.declared_at);
    for (i, s) in shocks.iter_mut().enumerate() {
        let (y, _, _) = Micros(s.declared_at).date().ymd();
        let prefix = if s.hazard == HazardType::Drought {
            "DR"
        } else {
            "FL"
        };
        s.id = ShockId(format_compact!("{prefix}-{y}-{:03}", i + 1));
    }
    shocks
}

/// The `ShockDeclared` and `ShockEnded` events of the schedule that fall in `[from, to)`.
pub(crate) fn shock_events(config: &Config, shocks: &[Shock], from: i64, to: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for (k, s) in shocks.iter().enumerate() {
        let env = |which: u64, at: i64| Envelope {
            event_id: event_id(config.seed, Stream::ShockIds, k as u64, which),
            source_system: CompactString::const_new(EARLY_WARNING),
            occurred_at: Micros(at),
            recorded_at: Micros(at + 2 * HOUR),
            person_id: None,
            household_id: None,
            correlation_id: None,
            schema_version: SCHEMA_VERSION,
        };
        if (from..to).contains(&s.declared_at) {
            out.push(Event {
                envelope: env(0, s.declared_at),
                payload: Payload::ShockDeclared(ShockDeclared {
                    shock_id: s.id.clone(),
                    hazard: s.hazard,
                    area_codes: s.area_codes.clone(),
                    severity: s.severity,
                    indicator_name: CompactString::const_new(s.indicator_name),
                    indicator_value: s.indicator_value,
                    starts_at: Micros(s.starts_at),
                    expected_end: Some(Micros(s.expected_end)),
                    declared_by: CompactString::const_new("national-disaster-agency"),
                }),
            });
        }
        if (from..to).contains(&s.ends_at) {
            out.push(Event {
                envelope: env(1, s.ends_at),
                payload: Payload::ShockEnded(ShockEnded {
                    shock_id: s.id.clone(),
                    ended_at: Micros(s.ends_at),
                }),
            });
        }
    }
    out.sort_by_key(|e| e.envelope.occurred_at);
    out
}
