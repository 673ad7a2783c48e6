//! A registered client: who it is, what it may touch, and its keys.

use crate::keys::StoredKey;
use crate::projection::{FieldSet, Purpose};
use crate::role::Role;
use dsr_core::event::EVENT_TYPES;
use dsr_core::{AreaCode, Event, Household};
use serde::{Deserialize, Serialize};

/// Where a client may act.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AreaScope {
    /// The whole country (written `"*"` in a client's `areas`).
    Everywhere,
    /// These admin areas and everything inside them.
    Within(Vec<AreaCode>),
}

impl AreaScope {
    pub fn contains(&self, area: &AreaCode) -> bool {
        match self {
            AreaScope::Everywhere => true,
            AreaScope::Within(roots) => roots.iter().any(|root| area.is_within(root)),
        }
    }
}

/// A data-sharing agreement: a purpose the client may name when it reads personal data, and
/// the fields that purpose allows (see [`crate::projection::FIELDS`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// The agreement's reference (e.g. `DSA-2026-014`), recorded in the audit log.
    pub id: String,
    /// What the data is used for (e.g. `payment`), named by the client on each request.
    pub purpose: String,
    /// The household fields this purpose allows; `*` for all.
    pub fields: Vec<String>,
}

/// What an admin asks for when registering a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Lower-case letters, digits, `-`, `_`, `.`; unique.
    pub id: String,
    /// A human name (the department, the person).
    #[serde(default)]
    pub name: String,
    pub role: Role,
    /// Admin-area codes (and their subtrees) the client may act in; `["*"]` for everywhere.
    /// Required for source systems, programs and caseworkers.
    #[serde(default)]
    pub areas: Vec<String>,
    /// Event types a source system may publish (`*` for all); caseworkers may publish
    /// `DataCorrection` only.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// The `source_system` names a source system may publish as (`*` for any).
    #[serde(default)]
    pub source_names: Vec<String>,
    /// The program a program client reads for.
    #[serde(default)]
    pub program: Option<String>,
    #[serde(default)]
    pub agreements: Vec<Agreement>,
    /// Requests per second before `429` [default: 200].
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Every event batch must carry a valid detached JWS (`Dsr-Signature`) made with
    /// `signing_key`.
    #[serde(default)]
    pub must_sign: bool,
    /// The client's Ed25519 public key, 64 hex characters.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// How long the client's keys live, in days [default: 365].
    #[serde(default)]
    pub key_days: Option<u32>,
}

/// A client as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub scope: AreaScope,
    pub event_types: Vec<String>,
    pub source_names: Vec<String>,
    pub program: Option<String>,
    pub agreements: Vec<Agreement>,
    pub requests_per_second: u32,
    pub must_sign: bool,
    pub signing_key: Option<String>,
    pub key_days: u32,
    pub keys: Vec<StoredKey>,
    pub created_at_ms: i64,
}

/// Why a client specification was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidClient {
    #[error("client id `{0}` is not valid: use 1-64 lower-case letters, digits, `-`, `_` or `.`")]
    BadId(String),
    #[error("a {role} needs `areas` (admin-area codes, or [\"*\"] for everywhere)")]
    NoAreas { role: Role },
    #[error("area `{0}` is not an admin-area code (levels of letters and digits joined by dots, e.g. KE.01.002)")]
    BadArea(String),
    #[error("a source system needs `event_types` (e.g. [\"PersonBorn\", \"PersonDied\"] or [\"*\"]) and `source_names`")]
    NoEventTypes,
    #[error("unknown event type `{0}`; known: {known}", known = EVENT_TYPES.join(", "))]
    UnknownEventType(String),
    #[error("a caseworker may publish `DataCorrection` events only, not `{0}`")]
    CaseworkerEventType(String),
    #[error("a program client needs `program` (the program id it reads for)")]
    NoProgram,
    #[error("`{field}` is only for {roles}")]
    NotForRole {
        field: &'static str,
        roles: &'static str,
    },
    #[error("agreement `{agreement}`: {reason}")]
    BadAgreement { agreement: String, reason: String },
    #[error(
        "`must_sign` needs `signing_key`, the client's Ed25519 public key as 64 hex characters"
    )]
    NoSigningKey,
    #[error("`signing_key` is not an Ed25519 public key as 64 hex characters")]
    BadSigningKey,
    #[error("`requests_per_second` and `key_days` must be at least 1")]
    Zero,
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

impl ClientSpec {
    /// Checks the specification and turns it into a client without keys.
    pub fn validate(self, now_ms: i64) -> Result<Client, InvalidClient> {
        if !valid_id(&self.id) {
            return Err(InvalidClient::BadId(self.id));
        }
        let role = self.role;
        let area_bound = matches!(role, Role::SourceSystem | Role::Program | Role::Caseworker);
        let scope = if self.areas.iter().any(|a| a == "*") {
            AreaScope::Everywhere
        } else if self.areas.is_empty() {
            if area_bound {
                return Err(InvalidClient::NoAreas { role });
            }
            AreaScope::Everywhere
        } else {
            let mut roots = Vec::new();
            for a in &self.areas {
                let code = AreaCode::new(a);
                if !code.is_well_formed() {
                    return Err(InvalidClient::BadArea(a.clone()));
                }
                roots.push(code);
            }
            AreaScope::Within(roots)
        };
        let mut event_types = self.event_types;
        match role {
            Role::SourceSystem => {
                if event_types.is_empty() || self.source_names.is_empty() {
                    return Err(InvalidClient::NoEventTypes);
                }
                for t in &event_types {
                    if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
                        return Err(InvalidClient::UnknownEventType(t.clone()));
                    }
                }
            }
            Role::Caseworker => {
                if let Some(t) = event_types.iter().find(|t| *t != "DataCorrection") {
                    return Err(InvalidClient::CaseworkerEventType(t.clone()));
                }
                event_types = vec!["DataCorrection".into()];
            }
            _ if !event_types.is_empty() || !self.source_names.is_empty() => {
                return Err(InvalidClient::NotForRole {
                    field: "event_types/source_names",
                    roles: "source systems",
                })
            }
            _ => {}
        }
        match (role, &self.program) {
            (Role::Program, None) => return Err(InvalidClient::NoProgram),
            (Role::Program, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(InvalidClient::NotForRole {
                    field: "program",
                    roles: "program clients",
                })
            }
        }
        if !self.agreements.is_empty() && !matches!(role, Role::Program | Role::Caseworker) {
            return Err(InvalidClient::NotForRole {
                field: "agreements",
                roles: "programs and caseworkers (the roles that read personal data)",
            });
        }
        for a in &self.agreements {
            let bad = |reason: String| InvalidClient::BadAgreement {
                agreement: a.id.clone(),
                reason,
            };
            if a.id.trim().is_empty() || a.purpose.trim().is_empty() {
                return Err(bad("needs an `id` and a `purpose`".into()));
            }
            FieldSet::parse(&a.fields).map_err(bad)?;
        }
        if let Some(key) = &self.signing_key {
            crate::token::public_key_from_hex(key).ok_or(InvalidClient::BadSigningKey)?;
        }
        if self.must_sign && self.signing_key.is_none() {
            return Err(InvalidClient::NoSigningKey);
        }
        let requests_per_second = self.requests_per_second.unwrap_or(200);
        let key_days = self.key_days.unwrap_or(365);
        if requests_per_second == 0 || key_days == 0 {
            return Err(InvalidClient::Zero);
        }
        Ok(Client {
            name: if self.name.is_empty() {
                self.id.clone()
            } else {
                self.name
            },
            id: self.id,
            role,
            scope,
            event_types,
            source_names: self.source_names,
            program: self.program,
            agreements: self.agreements,
            requests_per_second,
            must_sign: self.must_sign,
            signing_key: self.signing_key,
            key_days,
            keys: Vec::new(),
            created_at_ms: now_ms,
        })
    }
}

impl Client {
    /// Whether this client may publish `event`: its type, the source name it carries, and
    /// every area it names must be registered for the client. `Err` says which is not.
    pub fn may_publish(&self, event: &Event) -> Result<(), String> {
        let event_type = event.payload.event_type();
        if !self.event_types.iter().any(|t| t == "*" || t == event_type) {
            return Err(format!(
                "client `{}` is not registered to publish {event_type} events (it may publish: {})",
                self.id,
                self.event_types.join(", ")
            ));
        }
        let source = event.envelope.source_system.as_str();
        if self.role == Role::SourceSystem
            && !self.source_names.iter().any(|s| s == "*" || s == source)
        {
            return Err(format!(
                "client `{}` may not publish as source system `{source}` (it may publish as: {})",
                self.id,
                self.source_names.join(", ")
            ));
        }
        if let Some(area) = event
            .payload
            .areas()
            .into_iter()
            .find(|a| !self.scope.contains(a))
        {
            return Err(format!(
                "client `{}` may not publish events about area {area}: outside its registered areas",
                self.id
            ));
        }
        Ok(())
    }

    /// Whether this client may see `household` at all: inside its areas and, for a program,
    /// currently one of its beneficiaries.
    pub fn may_see(&self, household: &Household) -> bool {
        if !self.scope.contains(&household.area) {
            return false;
        }
        match (self.role, &self.program) {
            (Role::Program, Some(program)) => household
                .programs
                .iter()
                .any(|p| p.program_id.as_str() == program && p.eligible),
            (Role::Caseworker, _) => true,
            _ => false,
        }
    }

    /// The purpose `name` as this client registered it, with the fields it allows.
    pub fn purpose(&self, name: &str) -> Option<Purpose> {
        self.agreements.iter().find(|a| a.purpose == name).map(|a| {
            Purpose::new(
                a,
                FieldSet::parse(&a.fields).unwrap_or_default(),
                self.program.clone(),
            )
        })
    }

    /// The purposes this client may name (for error messages).
    pub fn purposes(&self) -> Vec<&str> {
        self.agreements.iter().map(|a| a.purpose.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: Role) -> ClientSpec {
        ClientSpec {
            id: "c1".into(),
            name: String::new(),
            role,
            areas: vec!["KE.01".into()],
            event_types: Vec::new(),
            source_names: Vec::new(),
            program: None,
            agreements: Vec::new(),
            requests_per_second: None,
            must_sign: false,
            signing_key: None,
            key_days: None,
        }
    }

    #[test]
    fn scopes_hold_their_subtrees_only() {
        let scope = AreaScope::Within(vec![AreaCode::new("KE.01")]);
        assert!(scope.contains(&AreaCode::new("KE.01")));
        assert!(scope.contains(&AreaCode::new("KE.01.002")));
        assert!(!scope.contains(&AreaCode::new("KE.011")));
        assert!(!scope.contains(&AreaCode::new("KE")));
        assert!(AreaScope::Everywhere.contains(&AreaCode::new("KE")));
    }

    #[test]
    fn specs_are_checked_per_role() {
        assert_eq!(
            spec(Role::Program).validate(0),
            Err(InvalidClient::NoProgram)
        );
        assert_eq!(
            spec(Role::SourceSystem).validate(0),
            Err(InvalidClient::NoEventTypes)
        );
        let mut s = spec(Role::Caseworker);
        s.event_types = vec!["PersonBorn".into()];
        assert_eq!(
            s.validate(0),
            Err(InvalidClient::CaseworkerEventType("PersonBorn".into()))
        );
        let mut s = spec(Role::Caseworker);
        s.areas.clear();
        assert!(matches!(s.validate(0), Err(InvalidClient::NoAreas { .. })));
        let mut s = spec(Role::Auditor);
        s.agreements = vec![Agreement {
            id: "a".into(),
            purpose: "p".into(),
            fields: vec!["*".into()],
        }];
        assert!(matches!(
            s.validate(0),
            Err(InvalidClient::NotForRole { .. })
        ));
        let mut s = spec(Role::Caseworker);
        s.agreements = vec![Agreement {
            id: "a".into(),
            purpose: "p".into(),
            fields: vec!["members.salary".into()],
        }];
        assert!(matches!(
            s.validate(0),
            Err(InvalidClient::BadAgreement { .. })
        ));
        let mut s = spec(Role::Admin);
        s.id = "Admin!".into();
        assert!(matches!(s.validate(0), Err(InvalidClient::BadId(_))));
        let mut s = spec(Role::SourceSystem);
        s.must_sign = true;
        s.event_types = vec!["*".into()];
        s.source_names = vec!["crvs".into()];
        assert_eq!(s.validate(0), Err(InvalidClient::NoSigningKey));
    }

    #[test]
    fn a_caseworker_publishes_corrections_only() {
        let c = spec(Role::Caseworker).validate(0).unwrap();
        assert_eq!(c.event_types, vec!["DataCorrection".to_owned()]);
    }
}
