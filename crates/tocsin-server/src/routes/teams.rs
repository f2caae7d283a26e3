//! Teams and their members. A team admin manages their own team's members.

use crate::auth::{Principal, RoleBook};
use crate::error::{ApiError, ApiResult, JsonBody, conflict, created_target, not_found};
use crate::error::{Path, Query};
use crate::routes::{ListParams, path_id};
use crate::state::{App, AppState};
use crate::views;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;
use tocsin_core::key::{KeyName, parse_description};
use tocsin_core::permission::Permission;
use tocsin_core::policy::{Grants, MissingGrant, Resource, check_no_escalation};
use tocsin_core::role::builtin;
use tocsin_core::validation::Problems;
use tocsin_core::{TeamId, UserId};
use tocsin_store::StoreError;
use tocsin_store::teams::MembershipWas;
use tocsin_store::teams::{Team, TeamDependents};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamBody {
    name: Option<String>,
    description: Option<String>,
}

fn name_taken(name: &str) -> impl FnOnce(StoreError) -> ApiError {
    conflict(
        "name_taken",
        format!("A team named `{name}` already exists (names ignore case)."),
    )
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    JsonBody(req): JsonBody<TeamBody>,
) -> ApiResult<Response> {
    p.require(Permission::TeamsWrite, &Resource::Org)?;
    let mut problems = Problems::new();
    let name = problems.take("name", KeyName::parse(req.name.as_deref().unwrap_or("")));
    let description = problems.take("description", parse_description(req.description.as_deref()));
    problems.into_result().map_err(ApiError::Validation)?;
    let (name, description) = (name.expect("checked"), description.expect("checked"));
    let now = OffsetDateTime::now_utc();
    let team = Team {
        id: TeamId::generate(),
        org_id: p.org_id.clone(),
        name: name.as_str().to_owned(),
        description,
        created_at: now,
        updated_at: now,
    };
    app.store
        .insert_team(&team)
        .await
        .map_err(name_taken(&team.name))?;
    Ok(created_target(views::team(&team), "team", team.id.as_str()))
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<views::List>> {
    p.require(Permission::TeamsRead, &Resource::AnyTeam)?;
    let (limit, cursor) = (q.limit()?, q.id_cursor(TeamId::parse)?);
    // A caller that reads teams only within some teams lists only those, in the query itself:
    // filtered afterwards, a page's cursor could be the id of a team it may not see.
    let page = if p.grants.account.contains(Permission::TeamsRead) {
        app.store.list_teams(&p.org_id, limit, cursor).await?
    } else {
        let mine = p.grants.teams_with(Permission::TeamsRead);
        app.store
            .list_teams_among(&p.org_id, &mine, limit, cursor)
            .await?
    };
    Ok(Json(views::List {
        data: page.items.iter().map(views::team).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Loads a team of the caller's organization that the caller holds `permission` on.
async fn load(app: &AppState, p: &Principal, raw: &str, permission: Permission) -> ApiResult<Team> {
    let id = path_id(raw, TeamId::parse, "team")?;
    let team = app
        .store
        .get_team(&p.org_id, &id)
        .await
        .map_err(not_found("team"))?;
    p.require(permission, &Resource::Teams(vec![team.id.clone()]))?;
    Ok(team)
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let team = load(&app, &p, &id, Permission::TeamsRead).await?;
    Ok(Json(views::team(&team)))
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<TeamBody>,
) -> ApiResult<Json<Value>> {
    let team = load(&app, &p, &id, Permission::TeamsWrite).await?;
    let mut problems = Problems::new();
    let name = req
        .name
        .as_deref()
        .and_then(|n| problems.take("name", KeyName::parse(n)));
    let description = req
        .description
        .as_deref()
        .and_then(|d| problems.take("description", parse_description(Some(d))));
    problems.into_result().map_err(ApiError::Validation)?;
    let name = name.map(|n| n.as_str().to_owned());
    let team = app
        .store
        .update_team(&p.org_id, &team.id, name.as_deref(), description.as_deref())
        .await
        .map_err(name_taken(name.as_deref().unwrap_or("")))?;
    Ok(Json(views::team(&team)))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Permission::TeamsWrite, &Resource::Org)?;
    let team = load(&app, &p, &id, Permission::TeamsWrite).await?;
    // Named here, not sent to a listing: `GET /v1/api_keys?team_id=` lists the team's own
    // keys, not the organization keys granted on the team, which block the delete as well.
    const NAMED: usize = 10;
    let used = app
        .store
        .delete_team_unless_used(&p.org_id, &team.id, NAMED)
        .await
        .map_err(not_found("team"))?;
    if !used.is_empty() {
        return Err(team_in_use(&p, &team, &used));
    }
    app.drop_cached_credentials();
    Ok(StatusCode::NO_CONTENT)
}

/// The refusal of a team delete: what depends on the team, named to a caller who may read
/// it, and how to clear each.
fn team_in_use(p: &Principal, team: &Team, used: &TeamDependents) -> ApiError {
    let more = |count: i64, named: usize| match count as usize > named {
        true => format!(" and {} more", count as usize - named),
        false => String::new(),
    };
    let mut blockers = Vec::new();
    let mut fixes = Vec::new();
    if used.keys > 0 {
        // The keys are named only to a caller who may read every key: `teams:write` alone
        // does not show other people's keys.
        let which = if p.require(Permission::ApiKeysRead, &Resource::Org).is_ok() {
            let named: Vec<String> = used
                .named_keys
                .iter()
                .map(|(id, name, kind)| format!("{id} ({kind} key \"{name}\")"))
                .collect();
            format!(": {}{}", named.join(", "), more(used.keys, named.len()))
        } else {
            " (someone holding api_keys:read can see which)".to_owned()
        };
        blockers.push(format!(
            "{} live API key(s) are granted on this team{which}",
            used.keys
        ));
        fixes.push(
            "Revoke those keys (POST /v1/api_keys/{id}/revoke, or `tocsin keys revoke <id>`).",
        );
    }
    // Its integrations and heartbeats would be left owned by a team that no longer exists
    // (their alerts paging nobody), even with no key left.
    let sees_configuration = p
        .require(
            Permission::IntegrationsRead,
            &Resource::Teams(vec![team.id.clone()]),
        )
        .is_ok();
    let hidden = " (someone holding integrations:read can see which)";
    if used.integrations > 0 {
        let which = match sees_configuration {
            true => {
                let named: Vec<String> = used
                    .named_integrations
                    .iter()
                    .map(|(id, name)| format!("{id} (\"{name}\")"))
                    .collect();
                format!(
                    ": {}{}",
                    named.join(", "),
                    more(used.integrations, named.len())
                )
            }
            false => hidden.to_owned(),
        };
        blockers.push(format!(
            "it owns {} integration(s){which}",
            used.integrations
        ));
        fixes.push(
            "Delete those integrations (DELETE /v1/integrations/{id}, which revokes their keys).",
        );
    }
    if used.heartbeats > 0 {
        let which = match sees_configuration {
            true => format!(
                ": {}{}",
                used.named_heartbeats.join(", "),
                more(used.heartbeats, used.named_heartbeats.len())
            ),
            false => hidden.to_owned(),
        };
        blockers.push(format!("it owns {} heartbeat(s){which}", used.heartbeats));
        fixes.push("Delete those heartbeats (DELETE /v2/heartbeats/{name}) or give them another owner team (PATCH /v2/heartbeats/{name} with ownerTeam).");
    }
    ApiError::ConflictWithFix {
        code: "team_in_use",
        message: format!(
            "{}. The team cannot be deleted while these remain.",
            blockers.join("; ")
        ),
        fix: format!("{} Then delete the team.", fixes.join(" ")),
    }
}

pub async fn members(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<views::List>> {
    let limit = q.limit()?;
    let team = load(&app, &p, &id, Permission::TeamsRead).await?;
    let page = app
        .store
        .list_members(&p.org_id, &team.id, limit, q.cursor()?)
        .await?
        .ok_or_else(ListParams::bad_cursor)?;
    Ok(Json(views::List {
        data: page.items.iter().map(views::member).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    team_role_names: Option<Vec<String>>,
}

pub async fn put_member(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((id, user_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<MemberBody>,
) -> ApiResult<Json<Value>> {
    let team = load(&app, &p, &id, Permission::TeamsWrite).await?;
    require_member_manager(&p, &team.id)?;
    let user_id = path_id(&user_id, UserId::parse, "user")?;
    let user = app
        .store
        .get_user(&p.org_id, &user_id)
        .await
        .map_err(not_found("user"))?;
    let roles = RoleBook::load(&app, &p.org_id).await?;
    let names = req.team_role_names.unwrap_or_default();
    let mut problems = Problems::new();
    if names.is_empty() {
        problems.add(
            "team_role_names",
            "must name at least one team role, such as responder or team_admin",
        );
    }
    let bad: Vec<&str> = names
        .iter()
        .filter(|n| !roles.get(n).is_some_and(|r| r.scope.allows_team()))
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        problems.add(
            "team_role_names",
            format!(
                "not team roles: {} (GET /v1/roles lists them)",
                bad.join(", ")
            ),
        );
    }
    problems.into_result().map_err(ApiError::Validation)?;
    let current = check_membership_within_caller(&app, &p, &roles, &team.id, &user_id).await?;
    let wanted = roles.perms(&names);
    let held = p.grants.account.union(p.grants.team(&team.id));
    let missing = wanted.minus(held);
    if !missing.is_empty() {
        return Err(ApiError::Escalation(vec![MissingGrant {
            team: Some(team.id.clone()),
            permissions: missing,
        }]));
    }
    // Written only if the membership is still what was judged above: a promotion landing
    // in between is not overwritten by a caller weaker than the promoted member.
    let was = match &current {
        Some(roles) => MembershipWas::Roles(roles),
        None => MembershipWas::Absent,
    };
    app.store
        .put_member(&p.org_id, &team.id, &user.id, &names, was)
        .await?;
    app.drop_cached_credentials();
    Ok(Json(
        json!({"team_id": team.id, "user_id": user.id, "team_role_names": names}),
    ))
}

pub async fn delete_member(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let team = load(&app, &p, &id, Permission::TeamsWrite).await?;
    require_member_manager(&p, &team.id)?;
    let user_id = path_id(&user_id, UserId::parse, "member")?;
    let roles = RoleBook::load(&app, &p.org_id).await?;
    let current = check_membership_within_caller(&app, &p, &roles, &team.id, &user_id).await?;
    let was = match &current {
        Some(roles) => MembershipWas::Roles(roles),
        None => MembershipWas::Absent,
    };
    app.store
        .delete_member(&p.org_id, &team.id, &user_id, was)
        .await
        .map_err(not_found("member"))?;
    app.drop_cached_credentials();
    Ok(StatusCode::NO_CONTENT)
}

/// Adding, changing or removing a team's members needs `teams:write` account-wide, or the
/// `team_admin` role in that team (SPEC, identity endpoints). A team grant of `teams:write`
/// alone, as a custom team role or a team key may hold, renames the team but does not
/// manage its members: it could otherwise demote or evict the team's admins. The role is
/// judged by what it grants: a caller holding, in the team, everything `team_admin` grants
/// there (whether by that role, a custom role with the same rights, or account roles) is
/// as strong as a team admin and may do what one does; a personal key narrowed below that
/// may not.
pub(crate) fn require_member_manager(p: &Principal, team: &TeamId) -> ApiResult<()> {
    p.require(Permission::TeamsWrite, &Resource::Teams(vec![team.clone()]))?;
    if p.grants.account.contains(Permission::TeamsWrite) {
        return Ok(());
    }
    let team_admin = builtin("team_admin")
        .map(|r| r.permissions)
        .ok_or_else(|| ApiError::Internal("the built-in role team_admin is missing".into()))?;
    let lacking = team_admin.minus(p.grants.account.union(p.grants.team(team)));
    if lacking.is_empty() {
        return Ok(());
    }
    Err(ApiError::ForbiddenWithFix {
        code: "permission_denied",
        message: format!(
            "Adding, changing or removing a team's members needs `teams:write` account-wide, or the team_admin role in that team; {} holds `teams:write` only within team(s) {}, and in team {team} lacks what team_admin grants there: {}.",
            p.describe.summary(),
            p.grants
                .teams_with(Permission::TeamsWrite)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            lacking.names().join(", ")
        ),
        fix: "Make the change with a session or key that holds the team_admin role in this team, or `teams:write` account-wide (for example admin or owner); or ask a team admin of this team to make it.".into(),
    })
}

/// No escalation on memberships: changing or removing someone's membership needs every
/// permission their team roles grant in that team, as deactivating a user needs every right
/// they hold (users.rs, `update`). Nobody lacking a team admin's rights can demote or evict
/// one. No membership yet: nothing to compare (the route answers a missing one). The answer
/// is the membership's team roles as judged, which the route's write passes to the store
/// (`MembershipWas`), so that it is refused if they changed in between.
pub(crate) async fn check_membership_within_caller(
    app: &App,
    p: &Principal,
    roles: &RoleBook,
    team: &TeamId,
    user: &UserId,
) -> ApiResult<Option<Vec<String>>> {
    let Some(membership) = app
        .store
        .memberships_of(&p.org_id, user)
        .await?
        .into_iter()
        .find(|m| &m.team_id == team)
    else {
        return Ok(None);
    };
    let mut theirs = Grants::default();
    theirs.add_team(team.clone(), roles.perms(&membership.team_role_names));
    match check_no_escalation(&p.grants, &theirs) {
        Ok(()) => Ok(Some(membership.team_role_names)),
        Err(missing) => Err(ApiError::EscalationIn {
            missing,
            change: format!(
                "User {user} is a member of team {team} with the team roles {}, which grant permissions you do not hold there, so you may not change or remove their membership",
                membership.team_role_names.join(", ")
            ),
            fix: "Ask someone who holds every permission of those roles in this team (a team admin of it, or an owner or admin) to make the change.".into(),
        }),
    }
}
