//! Roles, actions and the matrix between them.
//!
//! Roles are coarse on purpose: what a client may see *within* an allowed action is narrowed
//! further by its area scope, its registered event types and its data-sharing agreements
//! ([`crate::Client`]). No role reads personal data without a purpose, and the admin, who
//! manages clients, reads no household at all: least privilege, so one stolen admin key does
//! not open the registry.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a client is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A source system (civil registration, tax, labour, ...) publishing life events of the
    /// types and areas it is registered for.
    SourceSystem,
    /// A program (cash transfer, pension, ...) reading its own beneficiaries, projected to the
    /// fields its purpose allows.
    Program,
    /// A caseworker reading and correcting households in the areas assigned to them.
    Caseworker,
    /// Drafts scale-up rules before a shock.
    EmergencyCoordinator,
    /// Approves scale-up rules; never the one who drafted them.
    Approver,
    /// Reads the audit log (which holds ids and field names, never personal values).
    Auditor,
    /// Manages clients and keys; reads no personal data.
    Admin,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::SourceSystem,
        Role::Program,
        Role::Caseworker,
        Role::EmergencyCoordinator,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SourceSystem => "source_system",
            Role::Program => "program",
            Role::Caseworker => "caseworker",
            Role::EmergencyCoordinator => "emergency_coordinator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does, as far as access control is concerned. Each API route maps to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `POST /v1/events`, `POST /v1/events:bulk` and reading one's own bulk reports.
    PublishEvents,
    /// `GET /v1/households/{id}` (also `?as_of=`), its history, a person's household.
    ReadHousehold,
    /// `GET /v1/status`: backlog counts, no personal data.
    ReadStatus,
    /// Schema registry writes (register a schema, change compatibility).
    RegisterSchema,
    /// `GET /v1/audit`.
    ReadAudit,
    /// `/v1/admin/clients…`: create, list, rotate and revoke clients' keys; and
    /// `/v1/admin/data-keys…`: rotate and retire the data keys that seal personal data.
    ManageClients,
    /// Draft and preview scale-up rules (the scale-up API).
    DraftScaleUp,
    /// Approve, trigger or revoke scale-up rules (the scale-up API).
    ApproveScaleUp,
    /// `/v1/programs/{id}/changes`, `…/dead-letters`, `…/replay`: a program's own
    /// eligibility changes (household ids), pulled or replayed to its webhook.
    ReadProgramFeed,
    /// `/v1/programs/{id}/webhook…`: register, change, remove a program's webhook and rotate
    /// its signing secret.
    ManageDelivery,
    /// `/v1/programs/{id}/rule-versions…`: preview a new version of a program's rule and
    /// activate it.
    ManageRules,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::PublishEvents,
        Action::ReadHousehold,
        Action::ReadStatus,
        Action::RegisterSchema,
        Action::ReadAudit,
        Action::ManageClients,
        Action::DraftScaleUp,
        Action::ApproveScaleUp,
        Action::ReadProgramFeed,
        Action::ManageDelivery,
        Action::ManageRules,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::PublishEvents => "events.publish",
            Action::ReadHousehold => "household.read",
            Action::ReadStatus => "status.read",
            Action::RegisterSchema => "schema.register",
            Action::ReadAudit => "audit.read",
            Action::ManageClients => "clients.manage",
            Action::DraftScaleUp => "scale_up.draft",
            Action::ApproveScaleUp => "scale_up.approve",
            Action::ReadProgramFeed => "program.feed.read",
            Action::ManageDelivery => "program.delivery.manage",
            Action::ManageRules => "program.rules.manage",
        }
    }

    /// What narrows the action further for a role that may do it (the matrix's footnotes).
    fn condition(self, role: Role) -> &'static str {
        match (self, role) {
            (Action::PublishEvents, Role::SourceSystem) => {
                "registered event types, source names and areas only"
            }
            (Action::PublishEvents, Role::Caseworker) => "`DataCorrection` in assigned areas only",
            (Action::ReadHousehold, Role::Program) => {
                "own current beneficiaries only; fields of the named purpose"
            }
            (Action::ReadHousehold, Role::Caseworker) => {
                "assigned areas only; fields of the named purpose"
            }
            (Action::ApproveScaleUp, Role::Approver) => "never a rule they drafted",
            (Action::ReadProgramFeed, Role::Program) => "its own program only",
            _ => "",
        }
    }
}

/// The matrix: whether `role` may do `action` at all.
pub fn permits(role: Role, action: Action) -> bool {
    use Action::*;
    use Role::*;
    match action {
        PublishEvents => matches!(role, SourceSystem | Caseworker),
        ReadHousehold => matches!(role, Program | Caseworker),
        ReadStatus => true,
        RegisterSchema => matches!(role, SourceSystem | Admin),
        ReadAudit => matches!(role, Auditor),
        ManageClients => matches!(role, Admin),
        DraftScaleUp => matches!(role, EmergencyCoordinator),
        ApproveScaleUp => matches!(role, Approver),
        ReadProgramFeed => matches!(role, Program),
        ManageDelivery => matches!(role, Admin),
        ManageRules => matches!(role, Admin),
    }
}

/// The matrix as a Markdown table, as `docs/security.md` shows it (a test keeps the two equal).
pub fn matrix_markdown() -> String {
    let mut out = String::from("| action |");
    for role in Role::ALL {
        out.push_str(&format!(" {role} |"));
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for action in Action::ALL {
        out.push_str(&format!("| `{}` |", action.as_str()));
        for role in Role::ALL {
            let cell = match (permits(role, action), action.condition(role)) {
                (false, _) => "—".to_owned(),
                (true, "") => "yes".to_owned(),
                (true, condition) => format!("yes: {condition}"),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn no_role_but_program_and_caseworker_reads_households() {
        for role in Role::ALL {
            assert_eq!(
                permits(role, Action::ReadHousehold),
                matches!(role, Role::Program | Role::Caseworker),
                "{role}"
            );
        }
    }

    #[test]
    fn drafting_and_approving_belong_to_different_roles() {
        for role in Role::ALL {
            assert!(
                !(permits(role, Action::DraftScaleUp) && permits(role, Action::ApproveScaleUp))
            );
        }
    }

    #[test]
    fn the_documented_matrix_is_the_enforced_one() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/security.md"
        ))
        .expect("docs/security.md exists");
        assert!(
            doc.contains(&matrix_markdown()),
            "docs/security.md must contain the role matrix exactly as enforced:\n{}",
            matrix_markdown()
        );
    }
}
