//! Roles (built-in, read-only; custom, per organization) and the permission catalog.

use crate::auth::{Principal, RoleBook};
use crate::error::{ApiError, ApiResult, JsonBody, conflict, created_target, not_found_by};
use crate::error::{Path, Query};
use crate::routes::ListParams;
use crate::state::AppState;
use crate::views;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::role::{Role, RoleScope, is_builtin_name};
use tocsin_core::validation::Problems;
use tocsin_store::roles::RoleUsage;

pub async fn permissions() -> Json<Value> {
    let data: Vec<Value> = Permission::ALL
        .iter()
        .map(|p| json!({"name": p.name(), "description": p.description()}))
        .collect();
    Json(json!({"data": data}))
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<views::List>> {
    p.require(Permission::RolesRead, &Resource::AnyTeam)?;
    let limit = q.limit()?;
    let book = RoleBook::load(&app, &p.org_id).await?;
    Ok(Json(views::roles(&book, limit, q.cursor()?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    name: Option<String>,
    description: Option<String>,
    scope: Option<String>,
    permissions: Option<Vec<String>>,
}

fn to_problems(problems: Vec<tocsin_core::role::RoleProblem>) -> ApiError {
    let mut p = Problems::new();
    for problem in problems {
        p.add(problem.field, problem.reason);
    }
    ApiError::Validation(p)
}

/// A custom role may not hold what its author does not hold account-wide.
fn check_grantable(p: &Principal, role: &Role) -> ApiResult<()> {
    let missing = role.permissions.minus(p.grants.account);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Escalation(vec![
            tocsin_core::policy::MissingGrant {
                team: None,
                permissions: missing,
            },
        ]))
    }
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    JsonBody(req): JsonBody<RoleBody>,
) -> ApiResult<Response> {
    p.require(Permission::RolesWrite, &Resource::Org)?;
    let role = Role::custom(
        req.name.as_deref().unwrap_or(""),
        req.description.as_deref(),
        req.scope.as_deref().unwrap_or("account"),
        &req.permissions.unwrap_or_default(),
    )
    .map_err(to_problems)?;
    check_grantable(&p, &role)?;
    app.store
        .insert_role(&p.org_id, &role)
        .await
        .map_err(conflict(
            "name_taken",
            format!("A custom role named `{}` already exists.", role.name),
        ))?;
    // Credentials resolve roles through each organization's cached role book
    // (`auth::OrgContext`): a new role must reach it, here and on every node.
    app.drop_cached_credentials();
    Ok(created_target(views::role(&role), "role", &role.name))
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<RoleBody>,
) -> ApiResult<Json<Value>> {
    p.require(Permission::RolesWrite, &Resource::Org)?;
    if is_builtin_name(&name) {
        return Err(read_only(&name));
    }
    let book = RoleBook::load(&app, &p.org_id).await?;
    let current = book
        .get(&name)
        .cloned()
        .ok_or(ApiError::NotFoundBy("role", "name"))?;
    let perms = req.permissions.unwrap_or_else(|| {
        current
            .permissions
            .names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let role = Role::custom(
        &name,
        Some(req.description.as_deref().unwrap_or(&current.description)),
        req.scope.as_deref().unwrap_or(current.scope.name()),
        &perms,
    )
    .map_err(to_problems)?;
    check_grantable(&p, &role)?;
    let held = app
        .store
        .update_role_unless_held(&p.org_id, &role)
        .await
        .map_err(not_found_by("role", "name"))?;
    if let Some((was, usage)) = held {
        return Err(scope_in_use(&role, was, &usage));
    }
    app.drop_cached_credentials();
    Ok(Json(views::role(&role)))
}

/// The refusal of a scope change that would drop a use the role's holders make of it (see
/// `Store::update_role_unless_held`): an account role held by users or keys cannot become a
/// team role (they would keep it organization-wide, which no create or update would allow),
/// nor a team role held in memberships or by keys an account role.
fn scope_in_use(new: &Role, was: RoleScope, usage: &RoleUsage) -> ApiError {
    let drops_account = was.allows_account() && !new.scope.allows_account();
    let name = &new.name;
    let (holders, fix) = if drops_account {
        (
            [(usage.users, "user(s)"), (usage.keys_account, "key(s)")],
            "give those users another account role (PATCH /v1/users/{id} with `role_name`) and take the role from those keys (PATCH /v1/api_keys/{id} with `role_names`, or revoke them)",
        )
    } else {
        (
            [
                (usage.memberships, "team membership(s)"),
                (usage.keys_team, "key(s)"),
            ],
            "take the role from those memberships (PUT /v1/teams/{id}/members/{user_id} with `team_role_names`) and from those keys (PATCH /v1/api_keys/{id} with `team_role_names`, or revoke them)",
        )
    };
    let held: Vec<String> = holders
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    let (from, to) = (was.name(), new.scope.name());
    let as_from = if drops_account {
        "an account role"
    } else {
        "a team role"
    };
    ApiError::ConflictWithFix {
        code: "role_in_use",
        message: format!(
            "The role `{name}` is held as {as_from} by {}; its scope cannot change from `{from}` to `{to}` while they hold it, or they would keep using it as {as_from}.",
            held.join(" and ")
        ),
        fix: format!(
            "Create a new role with scope `{to}` and these permissions instead, or first {fix}, then change the scope."
        ),
    }
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Permission::RolesWrite, &Resource::Org)?;
    if is_builtin_name(&name) {
        return Err(read_only(&name));
    }
    let uses = app
        .store
        .delete_role_unless_held(&p.org_id, &name)
        .await
        .map_err(not_found_by("role", "name"))?
        .total();
    if uses > 0 {
        return Err(ApiError::Conflict {
            code: "role_in_use",
            message: format!(
                "The role `{name}` is still held by {uses} user(s), membership(s) or key(s); take it from them first."
            ),
        });
    }
    app.drop_cached_credentials();
    Ok(StatusCode::NO_CONTENT)
}

/// The refusal of a change to a built-in role (they live in code).
pub(crate) fn read_only(name: &str) -> ApiError {
    ApiError::validation(
        "name",
        format!("`{name}` is a built-in role; built-in roles are read-only"),
    )
}
