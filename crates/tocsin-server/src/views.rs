//! The JSON shapes of `/v1` objects, built from store records. Tokens never appear here:
//! the one response that carries a token adds it beside the view.

use crate::auth::RoleBook;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tocsin_core::key::fmt_rfc3339;
use tocsin_core::policy::Grants;
use tocsin_core::role::Role;
use tocsin_store::audit::AuditEvent;
use tocsin_store::keys::ApiKey;
use tocsin_store::teams::{Membership, Team};
use tocsin_store::users::User;

pub fn t(v: OffsetDateTime) -> String {
    fmt_rfc3339(v)
}

pub fn ot(v: Option<OffsetDateTime>) -> Value {
    v.map(|v| json!(t(v))).unwrap_or(Value::Null)
}

/// `permissions`: everything held anywhere; `team_permissions`: what is held only within teams.
pub fn permission_fields(grants: &Grants) -> (Vec<&'static str>, Value) {
    let teams: serde_json::Map<String, Value> = grants
        .teams
        .iter()
        .map(|(team, p)| (team.to_string(), json!(p.names())))
        .collect();
    (grants.anywhere().names(), Value::Object(teams))
}

/// A key as the API shows it. `disabled_reason`: why its requests are refused
/// `key_disabled` although it is neither revoked nor expired (its user is deactivated, its
/// integration disabled).
pub fn key(k: &ApiKey, grants: &Grants, disabled_reason: Option<&str>) -> Value {
    let (permissions, team_permissions) = permission_fields(grants);
    json!({
        "id": k.id, "name": k.name, "description": k.description, "kind": k.kind.name(),
        "organization_id": k.org_id,
        "team_id": k.team_id, "team_ids": k.team_ids, "integration_id": k.integration_id, "user_id": k.user_id,
        "service_account_id": k.service_account_id, "role_names": k.role_names, "team_role_names": k.team_role_names,
        "permissions": permissions, "team_permissions": team_permissions,
        "region": k.region, "token_hint": k.token_hint,
        "created_at": t(k.created_at), "updated_at": t(k.updated_at), "created_by": k.created_by,
        "expires_at": t(k.expires_at), "token_last_issued_at": t(k.token_last_issued_at),
        "grace_period_ends_at": ot(k.grace_period_ends_at), "last_used_at": ot(k.last_used_at),
        "last_used_ip": k.last_used_ip, "revoked_at": ot(k.revoked_at), "revoked_by": k.revoked_by,
        "rate_limit": k.rate_limit,
        "allowed_cidrs": k.allowed_cidrs,
        "status": status(k, disabled_reason.is_some()), "disabled_reason": disabled_reason,
    })
}

pub fn status(k: &ApiKey, disabled: bool) -> &'static str {
    let now = OffsetDateTime::now_utc();
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at <= now {
        "expired"
    } else if disabled {
        "disabled"
    } else if k.grace_period_ends_at.is_some_and(|g| g > now) {
        "rotating"
    } else {
        "active"
    }
}

pub fn user(u: &User) -> Value {
    json!({
        "id": u.id, "organization_id": u.org_id, "email": u.email, "name": u.name, "role_name": u.role_name,
        "active": u.active, "created_at": t(u.created_at), "updated_at": t(u.updated_at),
    })
}

pub fn team(tm: &Team) -> Value {
    json!({
        "id": tm.id, "organization_id": tm.org_id, "name": tm.name, "description": tm.description,
        "created_at": t(tm.created_at), "updated_at": t(tm.updated_at),
    })
}

pub fn member(m: &Membership) -> Value {
    json!({"team_id": m.team_id, "user_id": m.user_id, "team_role_names": m.team_role_names, "created_at": t(m.created_at)})
}

pub fn role(r: &Role) -> Value {
    json!({
        "name": r.name, "description": r.description, "scope": r.scope.name(),
        "permissions": r.permissions.names(), "builtin": r.builtin,
    })
}

/// A page of an organization's roles: the built-in roles by name, then the custom roles by
/// name, `limit` of them after the role named `after` (the cursor: the last name of the page
/// before). The cursor holds its place when that role has been deleted meanwhile: only a
/// custom role can be, and a custom role's place is known from its name.
pub fn roles(book: &RoleBook, limit: usize, after: Option<&str>) -> List {
    fn place(builtin: bool, name: &str) -> (bool, &str) {
        (!builtin, name)
    }
    let mut all: Vec<&Role> = book.all().collect();
    all.sort_by(|a, b| place(a.builtin, &a.name).cmp(&place(b.builtin, &b.name)));
    let start = after.map_or(0, |name| {
        let cursor = place(tocsin_core::role::is_builtin_name(name), name);
        all.partition_point(|r| place(r.builtin, &r.name) <= cursor)
    });
    let rest = &all[start..];
    List {
        data: rest.iter().take(limit).map(|r| role(r)).collect(),
        next_cursor: (rest.len() > limit).then(|| rest[limit - 1].name.clone()),
    }
}

pub fn audit_event(e: &AuditEvent) -> Value {
    let r = &e.record;
    json!({
        "id": r.id, "occurred_at": t(r.occurred_at), "organization_id": r.org_id, "actor": r.actor,
        "api_key_id": r.api_key_id, "token_hint": r.token_hint, "action": r.action, "method": r.method,
        "route": r.route, "target": r.target, "outcome": r.outcome, "status": r.status, "ip": r.ip,
        "user_agent": r.user_agent, "request_id": r.request_id, "seq": e.seq, "hash": e.hash,
    })
}

#[derive(Serialize)]
pub struct List {
    pub data: Vec<Value>,
    pub next_cursor: Option<String>,
}
