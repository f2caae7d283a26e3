//! Roles (built-in, read-only; custom, per organization) and the permission catalog.

use crate::auth::{Principal, RoleBook};
use crate::error::{ApiError, ApiResult, JsonBody, conflict, created, not_found};
use crate::routes::ListParams;
use crate::state::AppState;
use crate::views;
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::role::{Role, is_builtin_name};
use tocsin_core::validation::Problems;

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
    app.invalidate_credentials().await;
    Ok(created(views::role(&role)))
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<RoleBody>,
) -> ApiResult<Json<Value>> {
    p.require(Permission::RolesWrite, &Resource::Org)?;
    if is_builtin_name(&name) {
        return Err(ApiError::validation(
            "name",
            format!("`{name}` is a built-in role; built-in roles are read-only"),
        ));
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
    app.store.update_role(&p.org_id, &role).await?;
    app.invalidate_credentials().await;
    Ok(Json(views::role(&role)))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Permission::RolesWrite, &Resource::Org)?;
    if is_builtin_name(&name) {
        return Err(ApiError::validation(
            "name",
            format!("`{name}` is a built-in role; built-in roles are read-only"),
        ));
    }
    let uses = app.store.role_usage(&p.org_id, &name).await?;
    if uses > 0 {
        return Err(ApiError::Conflict {
            code: "role_in_use",
            message: format!(
                "The role `{name}` is still held by {uses} user(s), membership(s) or key(s); take it from them first."
            ),
        });
    }
    app.store
        .delete_role(&p.org_id, &name)
        .await
        .map_err(not_found("role"))?;
    app.invalidate_credentials().await;
    Ok(StatusCode::NO_CONTENT)
}
