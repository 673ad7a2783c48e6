//! The need score: a proxy means test (PMT).
//!
//! A PMT predicts a household's log consumption per capita from things that are easy to
//! observe and hard to hide (size, who lives there, the dwelling, assets, income reported by
//! other agencies) with a linear model estimated on a household survey. dsr maps the
//! prediction onto 0–100, higher meaning needier:
//!
//! ```text
//! y     = intercept + Σ weight_f · x_f + Σ area adjustments along the area's path
//! score = 100 · (y_score_0 − y) / (y_score_0 − y_score_100), bounded to [0, 100]
//! ```
//!
//! Because the map is linear, the score splits exactly into one contribution per feature
//! (`−100 · weight_f · x_f / span`), a baseline from the intercept, one for the area, and — only
//! when the bound applies — a bounding term. [`Explanation::contributions`] lists them; they
//! sum to the score. Models are data (`models/*.toml`); each has a version, and every score
//! records the version that produced it. See `docs/need-score.md`.

use crate::codes::*;
use crate::facts::Facts;
use crate::household::Household;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The score a household has, and the model version that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub score: f64,
    pub model_version: CompactString,
}

macro_rules! features {
    ($($(#[$doc:meta])* $variant:ident = $name:literal),+ $(,)?) => {
        /// The household features a PMT model may weight.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Feature { $($(#[$doc])* $variant),+ }

        impl Feature {
            pub const ALL: &'static [Feature] = &[$(Feature::$variant),+];
            pub fn name(self) -> &'static str {
                match self { $(Feature::$variant => $name),+ }
            }
            pub fn from_name(name: &str) -> Option<Feature> {
                match name { $($name => Some(Feature::$variant),)+ _ => None }
            }
        }
    };
}

features! {
    /// Natural log of the number of members (economies of scale make size log-linear).
    LnHouseholdSize = "ln_household_size",
    /// Dependants (under 15, 65+) per working-age member.
    DependencyRatio = "dependency_ratio",
    ChildrenUnder5 = "children_under_5",
    Elderly65Plus = "elderly_65_plus",
    /// Members with a lot of difficulty or worse in a Washington Group domain.
    DisabledMembers = "disabled_members",
    FemaleHead = "female_head",
    HeadEducationPrimary = "head_education_primary",
    HeadEducationLowerSecondary = "head_education_lower_secondary",
    HeadEducationUpperSecondary = "head_education_upper_secondary",
    HeadEducationPostSecondary = "head_education_post_secondary",
    HeadEducationTertiary = "head_education_tertiary",
    EmployedMembers = "employed_members",
    /// ln(1 + reported monthly income per member).
    LnIncomePerCapita = "ln_income_per_capita",
    WallRudimentary = "wall_rudimentary",
    WallFinished = "wall_finished",
    WaterPiped = "water_piped",
    WaterImprovedOther = "water_improved_other",
    /// Safely managed or basic sanitation.
    SanitationImproved = "sanitation_improved",
    Electricity = "electricity",
    /// Hectares, capped at 20 (large holdings are rare and badly measured).
    LandHectares = "land_hectares",
    /// Tropical livestock units, capped at 30.
    LivestockTlu = "livestock_tlu",
    /// Count of durable goods owned.
    DurableGoods = "durable_goods",
    /// Major damage or destruction reported in a shock within the last 365 days.
    RecentMajorDamage = "recent_major_damage",
}

const N_FEATURES: usize = Feature::ALL.len();

/// The feature values of one household, in `Feature::ALL` order.
pub fn feature_values(h: &Household, facts: &Facts) -> [f64; N_FEATURES] {
    let edu = facts.head_education;
    let d = h.dwelling;
    let today = h.today();
    let mut x = [0.0; N_FEATURES];
    for (i, f) in Feature::ALL.iter().enumerate() {
        x[i] = match f {
            Feature::LnHouseholdSize => (facts.size.max(1) as f64).ln(),
            Feature::DependencyRatio => facts.dependency_ratio(),
            Feature::ChildrenUnder5 => facts.children_under_5 as f64,
            Feature::Elderly65Plus => facts.elderly_65_plus as f64,
            Feature::DisabledMembers => facts.disabled_members as f64,
            Feature::FemaleHead => facts.female_headed as u8 as f64,
            Feature::HeadEducationPrimary => (edu == Some(EducationLevel::Primary)) as u8 as f64,
            Feature::HeadEducationLowerSecondary => {
                (edu == Some(EducationLevel::LowerSecondary)) as u8 as f64
            }
            Feature::HeadEducationUpperSecondary => {
                (edu == Some(EducationLevel::UpperSecondary)) as u8 as f64
            }
            Feature::HeadEducationPostSecondary => {
                (edu == Some(EducationLevel::PostSecondary)) as u8 as f64
            }
            Feature::HeadEducationTertiary => (edu == Some(EducationLevel::Tertiary)) as u8 as f64,
            Feature::EmployedMembers => facts.employed_members as f64,
            Feature::LnIncomePerCapita => facts.income_per_capita().max(0.0).ln_1p(),
            Feature::WallRudimentary => {
                d.is_some_and(|d| d.wall_material == WallMaterial::Rudimentary) as u8 as f64
            }
            Feature::WallFinished => {
                d.is_some_and(|d| d.wall_material == WallMaterial::Finished) as u8 as f64
            }
            Feature::WaterPiped => {
                d.is_some_and(|d| d.water_source == WaterSource::Piped) as u8 as f64
            }
            Feature::WaterImprovedOther => {
                d.is_some_and(|d| d.water_source == WaterSource::ImprovedOther) as u8 as f64
            }
            Feature::SanitationImproved => d
                .is_some_and(|d| matches!(d.sanitation, Sanitation::Safely | Sanitation::Basic))
                as u8 as f64,
            Feature::Electricity => d.is_some_and(|d| d.electricity) as u8 as f64,
            Feature::LandHectares => h.assets.land_hectares.clamp(0.0, 20.0),
            Feature::LivestockTlu => h.assets.livestock_tlu.clamp(0.0, 30.0),
            Feature::DurableGoods => h.assets.durable_goods() as f64,
            Feature::RecentMajorDamage => h.shock_damage.as_ref().is_some_and(|s| {
                matches!(s.damage, DamageLevel::Major | DamageLevel::Destroyed)
                    && today.0 - s.reported_on.0 <= 365
            }) as u8 as f64,
        };
    }
    x
}

/// How a model file is written (see `models/pmt-2026.1.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    version: String,
    description: String,
    intercept: f64,
    log_consumption_at_score_0: f64,
    log_consumption_at_score_100: f64,
    weights: BTreeMap<String, f64>,
    #[serde(default)]
    area_adjustments: BTreeMap<String, f64>,
}

/// A PMT model, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct PmtModel {
    pub version: CompactString,
    pub description: String,
    pub intercept: f64,
    pub log_consumption_at_score_0: f64,
    pub log_consumption_at_score_100: f64,
    /// In `Feature::ALL` order; a feature the file leaves out weighs 0.
    pub weights: [f64; N_FEATURES],
    /// Added to the prediction for every household in or under the area.
    pub area_adjustments: Vec<(CompactString, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model file is not valid TOML or has an unexpected key: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("weight `{0}` names no known feature; known features: {1}")]
    UnknownFeature(String, String),
    #[error("`{0}` must be a finite number")]
    NotFinite(String),
    #[error("log_consumption_at_score_0 ({0}) must be greater than log_consumption_at_score_100 ({1}): richer households score lower")]
    BadScale(f64, f64),
    #[error("area adjustment key `{0}` is not an area code path like R01 or R01.D03")]
    BadArea(String),
}

/// The model shipped with dsr, used when no other is configured.
pub const DEFAULT_MODEL_TOML: &str = include_str!("../../../models/pmt-2026.1.toml");

impl PmtModel {
    pub fn default_model() -> PmtModel {
        PmtModel::from_toml(DEFAULT_MODEL_TOML).expect("the shipped model is valid (tested)")
    }

    pub fn from_toml(text: &str) -> Result<PmtModel, ModelError> {
        let file: ModelFile = toml::from_str(text)?;
        let mut weights = [0.0; N_FEATURES];
        for (name, w) in &file.weights {
            let f = Feature::from_name(name).ok_or_else(|| {
                ModelError::UnknownFeature(
                    name.clone(),
                    Feature::ALL
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })?;
            if !w.is_finite() {
                return Err(ModelError::NotFinite(format!("weights.{name}")));
            }
            weights[f as usize] = *w;
        }
        for (k, v) in [
            ("intercept", file.intercept),
            (
                "log_consumption_at_score_0",
                file.log_consumption_at_score_0,
            ),
            (
                "log_consumption_at_score_100",
                file.log_consumption_at_score_100,
            ),
        ] {
            if !v.is_finite() {
                return Err(ModelError::NotFinite(k.into()));
            }
        }
        if file.log_consumption_at_score_0 <= file.log_consumption_at_score_100 {
            return Err(ModelError::BadScale(
                file.log_consumption_at_score_0,
                file.log_consumption_at_score_100,
            ));
        }
        let mut area_adjustments = Vec::new();
        for (area, v) in file.area_adjustments {
            if !crate::ids::AreaCode::new(&area).is_well_formed() {
                return Err(ModelError::BadArea(area));
            }
            if !v.is_finite() {
                return Err(ModelError::NotFinite(format!("area_adjustments.{area}")));
            }
            area_adjustments.push((CompactString::new(area), v));
        }
        Ok(PmtModel {
            version: file.version.into(),
            description: file.description,
            intercept: file.intercept,
            log_consumption_at_score_0: file.log_consumption_at_score_0,
            log_consumption_at_score_100: file.log_consumption_at_score_100,
            weights,
            area_adjustments,
        })
    }

    fn span(&self) -> f64 {
        self.log_consumption_at_score_0 - self.log_consumption_at_score_100
    }

    fn area_adjustment(&self, h: &Household) -> f64 {
        self.area_adjustments
            .iter()
            .filter(|(a, _)| h.area.is_within_str(a))
            .map(|(_, v)| v)
            .sum()
    }

    /// The score alone. Equal to `explain(h).score`.
    pub fn score(&self, h: &Household) -> ScoreSummary {
        self.score_with(h, &Facts::of(h))
    }

    /// The score from facts already derived (the hot path derives them once per event).
    pub fn score_with(&self, h: &Household, facts: &Facts) -> ScoreSummary {
        let x = feature_values(h, facts);
        let y = self.intercept
            + self
                .weights
                .iter()
                .zip(x.iter())
                .map(|(w, v)| w * v)
                .sum::<f64>()
            + self.area_adjustment(h);
        ScoreSummary {
            score: self.bound(self.raw_score(y)),
            model_version: self.version.clone(),
        }
    }

    fn raw_score(&self, y: f64) -> f64 {
        100.0 * (self.log_consumption_at_score_0 - y) / self.span()
    }

    fn bound(&self, raw: f64) -> f64 {
        if raw.is_nan() {
            100.0
        } else {
            raw.clamp(0.0, 100.0)
        }
    }

    /// The score with one contribution per feature, summing to it.
    pub fn explain(&self, h: &Household) -> Explanation {
        let facts = Facts::of(h);
        let x = feature_values(h, &facts);
        let span = self.span();
        let mut contributions = Vec::with_capacity(N_FEATURES + 3);
        contributions.push(Contribution {
            feature: "baseline".into(),
            value: 1.0,
            weight: self.intercept,
            points: 100.0 * (self.log_consumption_at_score_0 - self.intercept) / span,
        });
        for (i, f) in Feature::ALL.iter().enumerate() {
            if self.weights[i] != 0.0 {
                contributions.push(Contribution {
                    feature: f.name().into(),
                    value: x[i],
                    weight: self.weights[i],
                    points: -100.0 * self.weights[i] * x[i] / span,
                });
            }
        }
        let area = self.area_adjustment(h);
        if area != 0.0 {
            contributions.push(Contribution {
                feature: "area_adjustment".into(),
                value: 1.0,
                weight: area,
                points: -100.0 * area / span,
            });
        }
        let y = self.intercept
            + self
                .weights
                .iter()
                .zip(x.iter())
                .map(|(w, v)| w * v)
                .sum::<f64>()
            + area;
        let raw = self.raw_score(y);
        let score = self.bound(raw);
        let listed: f64 = contributions.iter().map(|c| c.points).sum();
        if score != listed {
            // The bound, plus the last bits of floating-point rounding, so the list sums exactly.
            contributions.push(Contribution {
                feature: "bounded_to_0_100".into(),
                value: raw,
                weight: 0.0,
                points: score - listed,
            });
        }
        Explanation {
            score,
            model_version: self.version.clone(),
            predicted_log_consumption_per_capita: y,
            contributions,
        }
    }
}

/// One line of an explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: CompactString,
    /// The household's value of the feature.
    pub value: f64,
    pub weight: f64,
    /// Score points this feature adds (negative: makes the household look less needy).
    pub points: f64,
}

/// A score and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub score: f64,
    pub model_version: CompactString,
    pub predicted_log_consumption_per_capita: f64,
    pub contributions: Vec<Contribution>,
}

impl Explanation {
    /// Contributions by size of effect, largest first (the baseline excluded).
    pub fn top(&self, n: usize) -> Vec<&Contribution> {
        let mut v: Vec<&Contribution> = self
            .contributions
            .iter()
            .filter(|c| c.feature != "baseline")
            .collect();
        v.sort_by(|a, b| b.points.abs().total_cmp(&a.points.abs()));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reducer::apply;
    use crate::strategies::*;
    use proptest::prelude::*;

    #[test]
    fn the_shipped_model_loads_and_scores_a_poor_household_as_needy() {
        let m = PmtModel::default_model();
        assert_eq!(m.version, "pmt-2026.1");
        let h = apply(None, &fixed_registration(1)).unwrap().household;
        let e = m.explain(&h);
        assert!(
            e.score > 60.0,
            "a five-member household with no income, natural walls and no electricity is needy: {}",
            e.score
        );
        let sum: f64 = e.contributions.iter().map(|c| c.points).sum();
        assert!((sum - e.score).abs() < 1e-9);
        assert_eq!(m.score(&h).score, e.score);
    }

    #[test]
    fn model_files_are_validated() {
        let bad = DEFAULT_MODEL_TOML.replace("electricity = 0.14", "electrcity = 0.14");
        let err = PmtModel::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("`electrcity`"), "{err}");
        let bad = DEFAULT_MODEL_TOML.replace(
            "log_consumption_at_score_0 = 9.30",
            "log_consumption_at_score_0 = 6.0",
        );
        assert!(matches!(
            PmtModel::from_toml(&bad),
            Err(ModelError::BadScale(..))
        ));
        let bad = DEFAULT_MODEL_TOML.replace("\"R01\" = 0.05", "\"R01..\" = 0.05");
        assert!(matches!(
            PmtModel::from_toml(&bad),
            Err(ModelError::BadArea(..))
        ));
    }

    #[test]
    fn area_adjustments_follow_the_path() {
        let m = PmtModel::default_model();
        let mut h = apply(None, &fixed_registration(1)).unwrap().household;
        h.area = crate::ids::AreaCode::new("R03.D01.S01.V001");
        let r3 = m.explain(&h);
        h.area = crate::ids::AreaCode::new("R01.D01.S01.V001");
        let r1 = m.explain(&h);
        assert!(
            r3.score > r1.score,
            "R03 has the lower adjustment, so it scores needier"
        );
        assert!(r1
            .contributions
            .iter()
            .any(|c| c.feature == "area_adjustment"));
    }

    proptest! {
        #[test]
        fn score_is_bounded_and_contributions_sum_to_it(
            events in household_stream(1, 10),
            intercept in 4.0f64..12.0,
        ) {
            let mut h = None;
            for e in &events {
                if let Ok(a) = apply(h.as_ref(), e) { h = Some(a.household); }
            }
            let h = h.unwrap();
            let mut model = PmtModel::default_model();
            for m in [model.clone(), { model.intercept = intercept; model }] {
                let e = m.explain(&h);
                prop_assert!((0.0..=100.0).contains(&e.score));
                let sum: f64 = e.contributions.iter().map(|c| c.points).sum();
                prop_assert!((sum - e.score).abs() < 1e-9, "sum {} vs score {}", sum, e.score);
                prop_assert_eq!(m.score(&h).score, e.score);
            }
        }
    }
}
