//! Roles: named permission sets. The built-ins are fixed here; custom roles are data,
//! validated by `CustomRole::new`. Account roles apply org-wide, team roles to one team.

use crate::permission::{PermSet, Permission, Permission::*};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleScope {
    Account,
    Team,
    /// Built-ins usable in either place.
    AccountOrTeam,
}

impl RoleScope {
    pub fn allows_account(self) -> bool {
        matches!(self, RoleScope::Account | RoleScope::AccountOrTeam)
    }
    pub fn allows_team(self) -> bool {
        matches!(self, RoleScope::Team | RoleScope::AccountOrTeam)
    }
    pub fn name(self) -> &'static str {
        match self {
            RoleScope::Account => "account",
            RoleScope::Team => "team",
            RoleScope::AccountOrTeam => "account_or_team",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "account" => Some(RoleScope::Account),
            "team" => Some(RoleScope::Team),
            "account_or_team" => Some(RoleScope::AccountOrTeam),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub scope: RoleScope,
    pub permissions: PermSet,
    pub builtin: bool,
}

fn reads() -> PermSet {
    Permission::ALL
        .iter()
        .copied()
        .filter(|p| p.name().ends_with(":read") && !matches!(p, AuditRead | ApiKeysRead))
        .collect()
}

fn set(ps: &[Permission]) -> PermSet {
    ps.iter().copied().collect()
}

/// The built-in roles, in the order the catalog lists them.
pub fn builtin_roles() -> Vec<Role> {
    let viewer = reads();
    let responder = viewer.union(set(&[AlertsWrite]));
    let alert_admin = responder.union(set(&[AlertsDelete]));
    let team_admin = PermSet::all().minus(account_only());
    let r = |name: &str, description: &str, scope, permissions| Role {
        name: name.to_owned(),
        description: description.to_owned(),
        scope,
        permissions,
        builtin: true,
    };
    vec![
        r(
            "owner",
            "Everything, including the organization's ownership.",
            RoleScope::Account,
            PermSet::all(),
        ),
        r(
            "admin",
            "Everything but transferring ownership.",
            RoleScope::Account,
            PermSet::all(),
        ),
        r(
            "viewer",
            "Read everything except the audit trail and API keys.",
            RoleScope::AccountOrTeam,
            viewer,
        ),
        r(
            "responder",
            "A viewer who can also create and work alerts.",
            RoleScope::AccountOrTeam,
            responder,
        ),
        r(
            "alert_admin",
            "A responder who can also delete alerts.",
            RoleScope::AccountOrTeam,
            alert_admin,
        ),
        r(
            "integrations_manage",
            "Read and manage integrations.",
            RoleScope::AccountOrTeam,
            set(&[IntegrationsRead, IntegrationsWrite]),
        ),
        r(
            "api_keys_manage",
            "Read and manage API keys.",
            RoleScope::AccountOrTeam,
            set(&[ApiKeysRead, ApiKeysWrite]),
        ),
        r(
            "audit_reader",
            "Read the audit trail.",
            RoleScope::Account,
            set(&[AuditRead]),
        ),
        r(
            "team_admin",
            "Everything within the team: its alerts, integrations, keys and members.",
            RoleScope::Team,
            team_admin,
        ),
    ]
}

pub fn builtin(name: &str) -> Option<Role> {
    builtin_roles().into_iter().find(|r| r.name == name)
}

pub fn is_builtin_name(name: &str) -> bool {
    builtin_roles().iter().any(|r| r.name == name)
}

/// Permissions that act on the whole organization (its users, roles, settings and audit
/// trail): a team role cannot hold them, since no route checks them within a team.
pub fn account_only() -> PermSet {
    let mut p = PermSet::EMPTY;
    for perm in [
        Permission::UsersWrite,
        Permission::RolesWrite,
        Permission::SettingsWrite,
        Permission::AuditRead,
    ] {
        p.insert(perm);
    }
    p
}

/// Why a custom role definition was refused, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleProblem {
    pub field: &'static str,
    pub reason: String,
}

impl Role {
    /// Checks a custom role definition. Returns every problem, not just the first.
    pub fn custom(
        name: &str,
        description: Option<&str>,
        scope: &str,
        permissions: &[String],
    ) -> Result<Role, Vec<RoleProblem>> {
        let mut problems = Vec::new();
        let name = name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            problems.push(RoleProblem {
                field: "name",
                reason: "must be 1-64 characters of lowercase letters, digits and underscores"
                    .into(),
            });
        } else if is_builtin_name(name) {
            problems.push(RoleProblem {
                field: "name",
                reason: format!("`{name}` is a built-in role and cannot be redefined"),
            });
        }
        let description = description.unwrap_or("").trim();
        if description.chars().count() > 1000 {
            problems.push(RoleProblem {
                field: "description",
                reason: "must be at most 1000 characters".into(),
            });
        }
        let scope = match scope {
            "account" => Some(RoleScope::Account),
            "team" => Some(RoleScope::Team),
            other => {
                problems.push(RoleProblem {
                    field: "scope",
                    reason: format!("`{other}` is not `account` or `team`"),
                });
                None
            }
        };
        let mut perms = PermSet::EMPTY;
        let unknown: Vec<&str> = permissions
            .iter()
            .filter(|p| Permission::parse(p).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            problems.push(RoleProblem {
                field: "permissions",
                reason: format!(
                    "unknown permissions: {} (GET /v1/permissions lists the catalog)",
                    unknown.join(", ")
                ),
            });
        }
        for p in permissions.iter().filter_map(|p| Permission::parse(p)) {
            perms.insert(p);
        }
        if permissions.is_empty() {
            problems.push(RoleProblem {
                field: "permissions",
                reason: "must name at least one permission".into(),
            });
        }
        let beyond_a_team = perms.intersect(account_only());
        if scope == Some(RoleScope::Team) && !beyond_a_team.is_empty() {
            problems.push(RoleProblem {
                field: "permissions",
                reason: format!(
                    "a team role cannot hold permissions that work only organization-wide: {}; put them in an account role",
                    beyond_a_team.names().join(", ")
                ),
            });
        }
        match (problems.is_empty(), scope) {
            (true, Some(scope)) => Ok(Role {
                name: name.to_owned(),
                description: description.to_owned(),
                scope,
                permissions: perms,
                builtin: false,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A team role holds only what routes check within a team: the organization-wide
    /// permissions are refused by name, and the same role as an account role is taken.
    #[test]
    fn a_team_role_cannot_hold_organization_wide_permissions() {
        let perms = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let refused = Role::custom(
            "auditors",
            None,
            "team",
            &perms(&["audit:read", "alerts:read"]),
        )
        .unwrap_err();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].field, "permissions");
        assert!(
            refused[0]
                .reason
                .ends_with("organization-wide: audit:read; put them in an account role"),
            "{refused:?}"
        );
        assert!(Role::custom("auditors", None, "account", &perms(&["audit:read"])).is_ok());
        assert!(
            Role::custom(
                "pager",
                None,
                "team",
                &perms(&["alerts:read", "teams:write"])
            )
            .is_ok()
        );
        // The built-in team role keeps to the same rule.
        let team_admin = builtin("team_admin").unwrap().permissions;
        assert!(team_admin.intersect(account_only()).is_empty());
    }

    #[test]
    fn builtins_follow_the_spec() {
        let viewer = builtin("viewer").unwrap().permissions;
        assert!(viewer.contains(AlertsRead));
        assert!(!viewer.contains(AuditRead));
        assert!(!viewer.contains(ApiKeysRead));
        assert!(!viewer.contains(AlertsWrite));
        let responder = builtin("responder").unwrap().permissions;
        assert_eq!(responder.minus(viewer).names(), vec!["alerts:write"]);
        let alert_admin = builtin("alert_admin").unwrap().permissions;
        assert_eq!(alert_admin.minus(responder).names(), vec!["alerts:delete"]);
        assert_eq!(builtin("owner").unwrap().permissions, PermSet::all());
        assert!(!builtin("team_admin").unwrap().scope.allows_account());
        assert!(!builtin("audit_reader").unwrap().scope.allows_team());
    }

    #[test]
    fn custom_roles_are_checked() {
        let ok = Role::custom("oncall_lead", Some("x"), "team", &["alerts:write".into()]).unwrap();
        assert_eq!(ok.scope, RoleScope::Team);
        let err = Role::custom("Viewer!", None, "galaxy", &["alerts:fly".into()]).unwrap_err();
        let fields: Vec<_> = err.iter().map(|p| p.field).collect();
        assert_eq!(fields, vec!["name", "scope", "permissions"]);
        let err = Role::custom("viewer", None, "account", &["alerts:read".into()]).unwrap_err();
        assert!(err[0].reason.contains("built-in"));
    }
}
