//! Facts derived from a household record in one pass over its members: what the need score
//! and eligibility rules both read, computed once per evaluation.

use crate::codes::*;
use crate::household::Household;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Facts {
    /// Each member's age on the household's as-of date, in member order (computed once:
    /// rules read ages many times per evaluation). Inline for up to 16 members: facts are
    /// derived on every event, and allocating this list was most of their allocator cost.
    pub ages: smallvec::SmallVec<[u32; 16]>,
    pub size: u32,
    pub children_under_5: u32,
    pub children_under_15: u32,
    pub children_under_18: u32,
    pub working_age: u32,
    pub elderly_65_plus: u32,
    pub disabled_members: u32,
    pub employed_members: u32,
    pub monthly_income: f64,
    pub female_headed: bool,
    pub head_education: Option<EducationLevel>,
}

impl Facts {
    pub fn of(h: &Household) -> Facts {
        let today = h.today();
        let mut f = Facts {
            size: h.members.len() as u32,
            ages: smallvec::SmallVec::with_capacity(h.members.len()),
            ..Facts::default()
        };
        for m in &h.members {
            let age = m.birth_date.years_until(today);
            f.ages.push(age);
            f.children_under_5 += (age < 5) as u32;
            f.children_under_15 += (age < 15) as u32;
            f.children_under_18 += (age < 18) as u32;
            f.working_age += (15..65).contains(&age) as u32;
            f.elderly_65_plus += (age >= 65) as u32;
            f.disabled_members += m.is_disabled() as u32;
            f.employed_members += matches!(
                m.employment,
                EmploymentStatus::Employee
                    | EmploymentStatus::SelfEmployed
                    | EmploymentStatus::Employer
                    | EmploymentStatus::ContributingFamilyWorker
            ) as u32;
            f.monthly_income += m.incomes.total();
            if m.relationship == Relationship::Head {
                f.female_headed = m.sex == Sex::Female;
                f.head_education = Some(m.education_level);
            }
        }
        f
    }

    /// Dependants (under 15 or 65 and over) per working-age member; with no working-age
    /// member, the number of dependants (a household of only dependants is the most
    /// dependent).
    pub fn dependency_ratio(&self) -> f64 {
        let dependants = (self.children_under_15 + self.elderly_65_plus) as f64;
        dependants / (self.working_age.max(1) as f64)
    }

    pub fn income_per_capita(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            self.monthly_income / self.size as f64
        }
    }
}
