//! The one place where personal data is cut down to what a purpose allows.
//!
//! Every answer that carries a household is built from [`Purpose::household`]; no endpoint
//! filters fields of its own. A field not named by the purpose's agreement is absent from the
//! answer (not `null`: absence cannot be mistaken for "no value").

use crate::client::Agreement;
use dsr_core::Household;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The household fields an agreement can name. `household_id` is always disclosed: it is what
/// the client asked for.
pub const FIELDS: &[&str] = &[
    "area",
    "members.person_id",
    "members.given_name",
    "members.family_name",
    "members.sex",
    "members.birth_date",
    "members.relationship",
    "members.marital_status",
    "members.education_level",
    "members.enrolled_in_school",
    "members.employment",
    "members.incomes",
    "members.disability",
    "dwelling",
    "assets",
    "shock_damage",
    "need_score",
    "programs",
    "version",
    "as_of",
    "dissolved",
];

/// Top-level fields of the record that are bookkeeping, disclosed only to `*`.
const BOOKKEEPING: &[&str] = &["recent_events", "late_events"];

/// The fields an agreement allows.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FieldSet {
    /// `*`: every field.
    All,
    Only(BTreeSet<String>),
    #[default]
    Nothing,
}

impl FieldSet {
    /// Parses an agreement's field list; `Err` names an unknown field and lists the known.
    pub fn parse(fields: &[String]) -> Result<FieldSet, String> {
        if fields.iter().any(|f| f == "*") {
            return Ok(FieldSet::All);
        }
        let mut set = BTreeSet::new();
        for f in fields {
            let f = f.trim();
            if f == "members" {
                set.extend(
                    FIELDS
                        .iter()
                        .filter(|k| k.starts_with("members."))
                        .map(|k| k.to_string()),
                );
            } else if FIELDS.contains(&f) {
                set.insert(f.to_owned());
            } else {
                return Err(format!(
                    "unknown field `{f}`; fields: `*`, `members`, {}",
                    FIELDS.join(", ")
                ));
            }
        }
        Ok(if set.is_empty() {
            FieldSet::Nothing
        } else {
            FieldSet::Only(set)
        })
    }

    pub fn allows(&self, field: &str) -> bool {
        match self {
            FieldSet::All => true,
            FieldSet::Only(set) => set.contains(field),
            FieldSet::Nothing => false,
        }
    }
}

/// A purpose named on a request, resolved against the client's agreement.
#[derive(Clone, Debug, PartialEq)]
pub struct Purpose {
    pub name: String,
    pub agreement_id: String,
    pub fields: FieldSet,
    /// For a program client: only this program's status is disclosed.
    pub program: Option<String>,
}

impl Purpose {
    pub fn new(agreement: &Agreement, fields: FieldSet, program: Option<String>) -> Self {
        Purpose {
            name: agreement.purpose.clone(),
            agreement_id: agreement.id.clone(),
            fields,
            program,
        }
    }

    pub fn allows(&self, field: &str) -> bool {
        self.fields.allows(field)
    }

    /// The field names this purpose discloses, for the audit log.
    pub fn disclosed(&self) -> Vec<String> {
        let mut out = vec!["household_id".to_owned()];
        match &self.fields {
            FieldSet::All => out.push("*".into()),
            FieldSet::Only(set) => out.extend(set.iter().cloned()),
            FieldSet::Nothing => {}
        }
        out
    }

    /// `household` cut down to this purpose's fields.
    pub fn household(&self, household: &Household) -> Value {
        let Value::Object(full) = serde_json::to_value(household).expect("a household serializes")
        else {
            unreachable!("a household serializes to an object")
        };
        let mut out = Map::new();
        for (key, value) in full {
            let keep = match key.as_str() {
                "household_id" => Some(value),
                "members" => self.members(value),
                "programs" if self.allows("programs") => Some(self.programs(value)),
                k if BOOKKEEPING.contains(&k) => (self.fields == FieldSet::All).then_some(value),
                k => self.allows(k).then_some(value),
            };
            if let Some(value) = keep {
                out.insert(key, value);
            }
        }
        Value::Object(out)
    }

    fn members(&self, members: Value) -> Option<Value> {
        if self.fields == FieldSet::All {
            return Some(members);
        }
        if !FIELDS
            .iter()
            .any(|f| f.starts_with("members.") && self.allows(f))
        {
            return None;
        }
        let Value::Array(members) = members else {
            return None;
        };
        Some(Value::Array(
            members
                .into_iter()
                .map(|m| match m {
                    Value::Object(m) => Value::Object(
                        m.into_iter()
                            .filter(|(k, _)| self.allows(&format!("members.{k}")))
                            .collect(),
                    ),
                    other => other,
                })
                .collect(),
        ))
    }

    /// A program sees its own status only, not which other programs a household is in.
    fn programs(&self, programs: Value) -> Value {
        match (&self.program, programs) {
            (Some(own), Value::Array(all)) => Value::Array(
                all.into_iter()
                    .filter(|p| p.get("program_id").and_then(Value::as_str) == Some(own))
                    .collect(),
            ),
            (_, programs) => programs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsr_core::household::ProgramStatus;
    use dsr_core::{AreaCode, HouseholdId};

    fn purpose(fields: &[&str], program: Option<&str>) -> Purpose {
        let agreement = Agreement {
            id: "DSA-1".into(),
            purpose: "payment".into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        };
        Purpose::new(
            &agreement,
            FieldSet::parse(&agreement.fields).unwrap(),
            program.map(str::to_owned),
        )
    }

    fn household() -> Household {
        let mut h = Household::new(HouseholdId::new("H1"), AreaCode::new("R1.D1"));
        for p in ["cash", "pension"] {
            h.programs.push(ProgramStatus {
                program_id: p.into(),
                rule_version: 1,
                eligible: true,
                benefit: 10.0,
                inputs: Default::default(),
            });
        }
        h
    }

    #[test]
    fn only_named_fields_are_disclosed() {
        let v = purpose(&["area", "programs"], Some("cash")).household(&household());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["area", "household_id", "programs"]);
        assert_eq!(v["programs"].as_array().unwrap().len(), 1);
        assert_eq!(v["programs"][0]["program_id"], "cash");
    }

    #[test]
    fn everything_is_disclosed_to_star_and_nothing_to_an_empty_list() {
        let all = purpose(&["*"], None).household(&household());
        assert_eq!(all, serde_json::to_value(household()).unwrap());
        let none = purpose(&[], None).household(&household());
        assert_eq!(none, serde_json::json!({"household_id": "H1"}));
    }

    #[test]
    fn unknown_fields_are_refused_with_the_known_ones() {
        let e = FieldSet::parse(&["members.salary".into()]).unwrap_err();
        assert!(
            e.contains("members.salary") && e.contains("members.given_name"),
            "{e}"
        );
        assert_eq!(
            FieldSet::parse(&["members".into()]).unwrap(),
            FieldSet::parse(
                &FIELDS
                    .iter()
                    .filter(|f| f.starts_with("members."))
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
            )
            .unwrap()
        );
    }
}
