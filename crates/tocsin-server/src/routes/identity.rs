//! `whoami` and `explain`: what the calling credential is, and what it (or another key) may do.

use crate::auth::{Principal, key_teams, principal_for_key};
use crate::error::{ApiError, ApiResult, JsonBody, found, not_found};
use crate::routes::api_keys::is_own_personal;
use crate::routes::{Needs, RouteInfo, match_route};
use crate::state::{App, AppState};
use crate::views;
use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use time::OffsetDateTime;
use tocsin_core::key::KeyKind;
use tocsin_core::permission::Permission;
use tocsin_core::policy::{self, Decision, Resource, explain_outcome};
use tocsin_core::{IntegrationId, KeyId, TeamId};

/// Opsgenie's rule that an organization may ask for integration keys for alert writes, as
/// the alert handlers apply it (routes/alerts.rs, `create` and `act`): before the permission,
/// on every alert write but adding a note.
fn integration_rule(
    subject: &Principal,
    route: &RouteInfo,
    params: &[(&'static str, String)],
) -> ApiResult<()> {
    let alert_write = matches!(
        route.needs,
        Needs::AnyTeam(Permission::AlertsWrite) | Needs::Alert(Permission::AlertsWrite)
    );
    let note = route.method == "POST" && param(params, "action") == Some("notes");
    // A heartbeat's ping needs alerts:write, but it is no alert write of the caller's.
    let ping = route.path.ends_with("/ping");
    if alert_write && !note && !ping {
        crate::routes::alerts::require_integration_key(subject)?;
    }
    Ok(())
}

/// The routes that delete configuration (`Principal::require_configuration_delete`).
fn deletes_configuration(route: &RouteInfo) -> bool {
    matches!(
        (route.method, route.path),
        ("DELETE", "/v2/heartbeats/{name}")
            | ("DELETE", "/v1/integrations/{id}")
            | ("DELETE", "/v2/integrations/{id}")
    )
}

fn param<'p>(params: &'p [(&'static str, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// A refusal as explain answers it: the route's own code, message and fixes.
/// A server-side failure (the store) stays the error it is.
fn refused(
    e: ApiError,
    route: Option<&str>,
    permission: Option<Permission>,
) -> ApiResult<Json<Value>> {
    let info = e.info();
    if !info.status.is_client_error() {
        return Err(e);
    }
    let fixes = match info.details.get("fixes") {
        Some(f) => f.clone(),
        None => json!([match info.code {
            "integration_key_required" =>
                "Send the request with an integration's key (POST /v1/integrations creates an integration and its key), or turn alerts_require_integration_key off (PATCH /v1/organization).",
            "escalation_denied" =>
                "Do it with a credential that holds everything the key would hold, from the networks the key is limited to.",
            "not_found" => "Check the identifier in the path: nothing in this organization has it.",
            "validation_failed" => "Change what the reason names, then send the request again.",
            _ => "Ask the key's own user to do it, or revoke the key instead.",
        }]),
    };
    Ok(Json(json!({
        "allowed": false, "code": info.code, "route": route, "permission": permission.map(Permission::name),
        "reasons": [info.message], "fixes": fixes,
    })))
}

/// Notes on what a route open to any credential decides by the body (POST /v1/api_keys:
/// the kind of key asked for).
fn body_rules(subject: &Principal, route: &RouteInfo) -> Option<String> {
    (route.method == "POST"
        && route.path == "/v1/api_keys"
        && !matches!(subject.key_kind(), None | Some(KeyKind::Personal)))
    .then(|| {
        format!(
            "This {} key may not create personal keys: a personal key acts as its user, so only that user can create it (with a session or one of their personal keys).",
            subject.key_kind().map_or("session", KeyKind::name)
        )
    })
}

/// The body is rendered once per cached principal (`Principal::whoami`): this route is
/// what clients call to check a key, so it answers from the cache like the check itself.
pub async fn whoami(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
) -> ApiResult<Response> {
    let body = match p.whoami.get() {
        Some(body) => body.clone(),
        None => {
            let rendered =
                axum::body::Bytes::from(serde_json::to_vec(&whoami_body(&app, &p)?).map_err(
                    |e| ApiError::Internal(format!("whoami body did not serialize: {e}")),
                )?);
            p.whoami.get_or_init(|| rendered).clone()
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn whoami_body(app: &App, p: &Principal) -> ApiResult<Value> {
    let org = &p.org;
    let (permissions, team_permissions) = views::permission_fields(&p.grants);
    let organization = json!({"id": org.id, "name": org.name});
    let body = match &p.key {
        Some(k) => {
            let mut body = json!({
            "id": k.id, "name": k.name, "kind": k.kind.name(), "organization": organization,
            "team_id": k.team_id, "team_ids": k.team_ids, "integration_id": k.integration_id, "user_id": k.user_id,
            "service_account_id": k.service_account_id, "region": k.region,
            "role_names": k.role_names, "team_role_names": k.team_role_names,
            "permissions": permissions, "team_permissions": team_permissions,
            "expires_at": views::t(k.expires_at), "grace_period_ends_at": views::ot(p.state.grace_period_ends_at),
            "created_by": k.created_by, "token_hint": k.token_hint, "actor": p.actor,
            });
            // A personal key acts as its user, narrowed to its own roles when it has any:
            // the user's current role is the other half of its permissions.
            if let (KeyKind::Personal, Some(u)) = (k.kind, &p.user) {
                body["user_role_name"] = json!(u.role_name);
            }
            body
        }
        None => {
            let u = p
                .user
                .as_ref()
                .ok_or_else(|| ApiError::Internal("session without user".into()))?;
            json!({
                "id": null, "name": u.email, "kind": "session", "organization": organization, "user_id": u.id,
                "region": app.settings.region, "role_names": [u.role_name], "team_role_names": [],
                "permissions": permissions, "team_permissions": team_permissions,
                "expires_at": views::t(p.state.expires_at), "grace_period_ends_at": null, "created_by": null,
                "token_hint": p.token_hint, "actor": p.actor,
            })
        }
    };
    Ok(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    method: Option<String>,
    path: Option<String>,
    permission: Option<String>,
    team_id: Option<String>,
    key_id: Option<String>,
}

/// The `identifierType` of an explained path's query string, read as the alert routes read
/// it (`alerts::identifier_type`, percent-decoding included): absent or empty is `id`;
/// anything but id, tiny or alias is the route's 422.
fn identifier_type_of(path: &str) -> ApiResult<tocsin_store::alerts::IdentifierType> {
    let query = path
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| axum::extract::Query::try_from_uri(&uri).ok())
        .map(|q| q.0)
        .unwrap_or_default();
    crate::routes::alerts::identifier_type(&query)
}

/// Explains without performing: the same checks, in the same order, as a real request.
pub async fn explain(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Arc<Principal>>,
    JsonBody(req): JsonBody<ExplainRequest>,
) -> ApiResult<Json<Value>> {
    // Whose decision: the caller's, or another key's: one the caller may read with
    // api_keys:read, or the caller's own personal key (as GET /v1/api_keys/{id} allows; the
    // console's key page explains a user's own keys).
    let subject: Arc<Principal> = match &req.key_id {
        None => caller.clone(),
        Some(raw) => {
            let id = KeyId::parse(raw).ok_or(ApiError::NotFound("API key"))?;
            let key = app
                .store
                .get_key(&caller.org_id, &id)
                .await
                .map_err(not_found("API key"))?;
            if !is_own_personal(&caller, &key) {
                caller.require(Permission::ApiKeysRead, &Resource::Teams(key_teams(&key)))?;
            }
            // Explained as its current token would be judged.
            Arc::new(principal_for_key(&app, key, None).await?)
        }
    };
    // The route and its path's parameters, when a route is explained, and the API key it
    // addresses, if any.
    let mut matched = None;
    let mut target_key = None;
    let mut missing_alert = None;
    // What the route answers once the credential passes the door, before any permission (a
    // read of an alert that does not exist, a bad `identifierType`).
    let mut answered = None;
    let (permission, resource, route_note) = match (&req.method, &req.path, &req.permission) {
        (Some(method), Some(path), None) => {
            let matched_route = match_route(method, path).filter(|(route, params)| {
                route.path != "/v2/alerts/{identifier}/{action}"
                    || param(params, "action").is_some_and(|verb| {
                        crate::routes::alerts::action_verb_known(route.method, verb)
                    })
            });
            let Some((route, params)) = matched_route else {
                return Err(ApiError::validation(
                    "path",
                    format!(
                        "no route matches {} {path}; GET /openapi.json lists every route",
                        method.to_uppercase()
                    ),
                ));
            };
            let id = params
                .iter()
                .find(|(n, _)| *n == "id")
                .map(|(_, v)| v.clone());
            let (permission, resource) = match route.needs {
                Needs::Public | Needs::Authenticated => {
                    let note = if matches!(route.needs, Needs::Public) {
                        "needs no credential"
                    } else {
                        "needs any valid credential"
                    };
                    let outcome = policy::check_state(
                        &subject.state,
                        OffsetDateTime::now_utc(),
                        Some(peer.ip()),
                    );
                    // A token a rotation replaced may not create keys (api_keys.rs, `issue`).
                    if outcome.is_ok()
                        && let Some(doing) = crate::routes::api_keys::refused_to_replaced_token(
                            route.method,
                            route.path,
                        )
                        && let Err(e) = crate::routes::api_keys::check_not_replaced(&subject, doing)
                    {
                        return refused(e, Some(route.path), None);
                    }
                    let allowed = outcome.is_ok();
                    let (reasons, fixes, code) = match outcome {
                        Ok(()) => (
                            [format!("{} {} {note}.", route.method, route.path)]
                                .into_iter()
                                .chain(body_rules(&subject, route))
                                .collect(),
                            vec![],
                            None,
                        ),
                        Err(r) => {
                            let (m, f) = policy::describe_refusal(&r, Some(&subject.describe));
                            (vec![m], f, Some(r.code()))
                        }
                    };
                    return Ok(Json(
                        json!({"allowed": allowed, "code": code, "route": route.path, "permission": null, "reasons": reasons, "fixes": fixes}),
                    ));
                }
                // A user's read parses the id before anything else (users.rs, `show`).
                Needs::Org(p)
                    if route.method == "GET"
                        && route.path == "/v1/users/{id}"
                        && id.as_deref().and_then(tocsin_core::UserId::parse).is_none() =>
                {
                    answered = Some(ApiError::NotFound("user"));
                    (p, Resource::Org)
                }
                Needs::Org(p) => (p, Resource::Org),
                // A heartbeat is looked up by name before any permission, then judged in its
                // owner team (heartbeats.rs, `load`). (A ping of a heartbeat that does not
                // exist is answered PONG, as before.)
                Needs::AnyTeam(p)
                    if route.path.starts_with("/v2/heartbeats/{name}")
                        && !route.path.ends_with("/ping") =>
                {
                    let name = param(&params, "name").unwrap_or_default();
                    match app.store.get_heartbeat(&caller.org_id, name).await? {
                        Some(h) => (p, crate::routes::heartbeats::resource(&h)),
                        None => {
                            answered = Some(ApiError::NotFoundBy("heartbeat", "name"));
                            (p, Resource::AnyTeam)
                        }
                    }
                }
                Needs::AnyTeam(p) => (p, Resource::AnyTeam),
                // The team, key and integration routes look their object up before any
                // permission (teams.rs, api_keys.rs and integrations.rs, `load`): one that does
                // not exist is answered 404 to any credential the door lets through.
                Needs::Team(_) | Needs::TeamMembers => {
                    let team = id.and_then(|i| TeamId::parse(&i));
                    let exists = match &team {
                        Some(t) => found(app.store.get_team(&caller.org_id, t).await)?,
                        None => false,
                    };
                    if !exists {
                        answered = Some(ApiError::NotFound("team"));
                    }
                    let p = match route.needs {
                        Needs::Team(p) => p,
                        _ => Permission::TeamsWrite,
                    };
                    (p, Resource::Teams(team.into_iter().collect()))
                }
                Needs::Key(p) => {
                    target_key = match id.and_then(|i| KeyId::parse(&i)) {
                        Some(kid) => match app.store.get_key(&caller.org_id, &kid).await {
                            Ok(k) => Some(k),
                            Err(tocsin_store::StoreError::NotFound) => None,
                            Err(e) => return Err(e.into()),
                        },
                        None => None,
                    };
                    if target_key.is_none() {
                        answered = Some(ApiError::NotFound("API key"));
                    }
                    let teams = target_key.as_ref().map(key_teams).unwrap_or_default();
                    (p, Resource::Teams(teams))
                }
                Needs::Alert(p) => {
                    let ident = params
                        .iter()
                        .find(|(n, _)| *n == "identifier")
                        .map(|(_, v)| v.clone());
                    // The alert as the route finds it: by the `identifierType` of the
                    // explained path's query (id by default).
                    let kind = identifier_type_of(path);
                    let teams = match (ident, kind) {
                        (_, Err(e)) => {
                            answered = Some(e);
                            Resource::AnyTeam
                        }
                        (Some(i), Ok(kind)) => {
                            match app.store.find_alert(&caller.org_id, &i, kind).await {
                                Ok(Some(a)) => Resource::Teams(
                                    a.teams.into_iter().map(TeamId::from_trusted).collect(),
                                ),
                                // No such alert: once the credential passes the door, a read
                                // answers 404 whoever asks; an action is judged by the
                                // permission in any team, then accepted and failed in its
                                // request status (routes/alerts.rs, `show` and `act`).
                                Ok(None) if route.method == "GET" => {
                                    answered = Some(crate::routes::alerts::no_alert(kind));
                                    Resource::AnyTeam
                                }
                                Ok(None) => {
                                    missing_alert = Some((i, kind));
                                    Resource::AnyTeam
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        (None, Ok(_)) => Resource::AnyTeam,
                    };
                    (p, teams)
                }
                Needs::Integration(p) => {
                    let integration = match id.and_then(|i| IntegrationId::parse(&i)) {
                        Some(iid) => match app.store.get_integration(&caller.org_id, &iid).await {
                            Ok(i) => Some(i),
                            Err(tocsin_store::StoreError::NotFound) => None,
                            Err(e) => return Err(e.into()),
                        },
                        None => None,
                    };
                    if integration.is_none() {
                        answered = Some(ApiError::NotFound("integration"));
                    }
                    let teams = integration.and_then(|i| i.team_id).into_iter().collect();
                    (p, Resource::Teams(teams))
                }
            };
            matched = Some((route, params));
            (permission, resource, Some(route.path))
        }
        (None, None, Some(name)) => {
            let p = Permission::parse(name).ok_or_else(|| {
                ApiError::validation(
                    "permission",
                    format!("`{name}` is not in the catalog; GET /v1/permissions lists it"),
                )
            })?;
            let resource = match &req.team_id {
                Some(t) => Resource::Teams(vec![
                    TeamId::parse(t)
                        .ok_or_else(|| ApiError::validation("team_id", "is not a team id"))?,
                ]),
                None => Resource::Org,
            };
            (p, resource, None)
        }
        _ => {
            return Err(ApiError::validation(
                "body",
                "send either {\"method\", \"path\"} or {\"permission\", \"team_id\"?}, optionally with \"key_id\"",
            ));
        }
    };
    let state = policy::check_state(&subject.state, OffsetDateTime::now_utc(), Some(peer.ip()));
    if state.is_ok()
        && let Some(e) = answered
    {
        return refused(e, route_note, Some(permission));
    }
    if state.is_ok()
        && let Some((route, params)) = &matched
        && let Err(e) = integration_rule(&subject, route, params)
    {
        return refused(e, route_note, Some(permission));
    }
    // A user manages their own personal keys without the permission (routes/api_keys.rs,
    // `load`).
    let own_key = target_key
        .as_ref()
        .is_some_and(|k| is_own_personal(&subject, k));
    let outcome = state.map(|()| {
        if own_key {
            Decision::Allowed
        } else {
            policy::authorize(&subject.grants, permission, &resource)
        }
    });
    let mut e = explain_outcome(outcome.clone(), &subject.describe, permission);
    debug_assert_eq!(e.allowed, matches!(outcome, Ok(Decision::Allowed)));
    if own_key && e.allowed {
        e.reasons = vec![format!(
            "{} is a personal key of this user, who may manage it without `{permission}`.",
            target_key
                .as_ref()
                .map_or_else(String::new, |k| k.id.to_string())
        )];
    }
    if e.allowed
        && let (Some((ident, kind)), Some((route, _))) = (&missing_alert, &matched)
    {
        let by = match kind {
            tocsin_store::alerts::IdentifierType::Id => "id",
            tocsin_store::alerts::IdentifierType::Tiny => "tiny id",
            tocsin_store::alerts::IdentifierType::Alias => "alias",
        };
        e.reasons.push(format!(
            "No alert has the {by} `{ident}` in this organization: {} {} would be accepted (202), and its request status would say the alert does not exist.",
            route.method, route.path
        ));
    }
    // A token a rotation replaced may not make or change credentials (api_keys.rs).
    if e.allowed
        && let Some((route, _)) = &matched
        && let Some(doing) =
            crate::routes::api_keys::refused_to_replaced_token(route.method, route.path)
        && let Err(e) = crate::routes::api_keys::check_not_replaced(&subject, doing)
    {
        return refused(e, route_note, Some(permission));
    }
    // An integration key deletes configuration only with its integration's delete access
    // (heartbeats.rs `delete`, integrations.rs `remove`).
    if e.allowed
        && let Some((route, _)) = &matched
        && deletes_configuration(route)
        && let Err(e) = subject.require_configuration_delete(&resource)
    {
        return refused(e, route_note, Some(permission));
    }
    // Past the permission, what the key routes check of the key they change.
    if e.allowed
        && let (Some((route, _)), Some(key)) = (&matched, &target_key)
    {
        use crate::routes::api_keys::{
            check_not_replaced, check_own_personal, check_within_caller,
        };
        match (route.method, route.path) {
            ("POST", "/v1/api_keys/{id}/rotate") => {
                let check = match check_not_replaced(&subject, "rotate keys")
                    .and_then(|()| check_own_personal(&subject, key, "rotate"))
                {
                    Ok(()) => check_within_caller(&app, &subject, key).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = check {
                    return refused(e, route_note, Some(permission));
                }
                // Not a refusal of the credential, but of this key's rotation now.
                if let Err(why) = tocsin_core::key::check_rotation_expiry(
                    key.id.as_str(),
                    key.expires_at,
                    OffsetDateTime::now_utc(),
                    subject.org.max_key_days,
                ) {
                    e.reasons.push(format!(
                        "The rotation itself would be refused (422 validation_failed): the key's expires_at {why}."
                    ));
                }
            }
            ("PATCH", "/v1/api_keys/{id}") => {
                if check_own_personal(&subject, key, "change").is_err() {
                    e.reasons.push(format!(
                        "Only the user of personal key {} may change its roles or networks; its name, description and expiry may be changed.",
                        key.id
                    ));
                }
                // What the body may change depends on what the key holds (api_keys.rs,
                // `update`).
                if let Some(missing) =
                    crate::routes::api_keys::lacking_for(&app, &subject, key).await?
                {
                    e.reasons.push(format!(
                        "Key {} holds permissions this credential lacks ({}): the change may rename it, change its description, move its expires_at earlier or lower its rate_limit, but a later expires_at, a looser rate_limit, or other roles or networks are refused (escalation_denied).",
                        key.id,
                        crate::error::describe_missing(&missing)
                    ));
                }
            }
            _ => {}
        }
    }
    // A membership change: past `teams:write` in the team, the team_admin role there, and no
    // change to a member stronger than the caller (teams.rs, `put_member`, `delete_member`).
    if e.allowed
        && let Some((route, params)) = &matched
        && matches!(route.needs, Needs::TeamMembers)
        && let Some(team) = param(params, "id").and_then(TeamId::parse)
    {
        use crate::routes::teams::{check_membership_within_caller, require_member_manager};
        let check = match require_member_manager(&subject, &team) {
            Ok(()) => match param(params, "user_id").and_then(tocsin_core::UserId::parse) {
                Some(user) => {
                    let roles = crate::auth::RoleBook::load(&app, &subject.org_id).await?;
                    check_membership_within_caller(&app, &subject, &roles, &team, &user)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = check {
            return refused(e, route_note, Some(permission));
        }
    }
    // Past the permission, the routes that look their object up only then (users.rs, roles.rs,
    // and the membership routes) answer 404 for one that does not exist.
    if e.allowed
        && let Some((route, params)) = &matched
        && let Some(missing) = missing_after_permission(&app, &subject, route, params).await?
    {
        return refused(missing, route_note, Some(permission));
    }
    // A create whose body names the team: a grant held only within teams creates only there.
    if e.allowed
        && let Some((route, _)) = &matched
        && route.method == "POST"
        && matches!(
            route.path,
            "/v1/integrations" | "/v2/integrations" | "/v2/heartbeats"
        )
        && !subject.grants.account.contains(permission)
    {
        let teams: Vec<String> = subject
            .grants
            .teams_with(permission)
            .iter()
            .map(ToString::to_string)
            .collect();
        e.reasons.push(format!(
            "`{permission}` is held only within team(s) {}: what is created must belong to one of them (the body's team_id, or ownerTeam on /v2; a team integration's key puts a heartbeat in its team); a global one, or another team's, is refused.",
            teams.join(", ")
        ));
    }
    Ok(Json(json!({
        "allowed": e.allowed, "code": e.code, "route": route_note, "permission": permission.name(),
        "reasons": e.reasons, "fixes": e.fixes,
    })))
}

/// What a route that checks its permission before it looks up the object of its path answers
/// when that object does not exist: a user (`/v1/users/{id}`), a custom role
/// (`/v1/roles/{name}`), a membership's user (PUT) or the membership itself (DELETE). `None`
/// when it exists, or the route has no such object.
async fn missing_after_permission(
    app: &App,
    subject: &Principal,
    route: &RouteInfo,
    params: &[(&'static str, String)],
) -> ApiResult<Option<ApiError>> {
    let org = &subject.org_id;
    let user = || param(params, "user_id").or_else(|| param(params, "id"));
    Ok(match (route.method, route.path) {
        (_, "/v1/users/{id}") => {
            let exists = match user().and_then(tocsin_core::UserId::parse) {
                Some(u) => found(app.store.get_user(org, &u).await)?,
                None => false,
            };
            (!exists).then_some(ApiError::NotFound("user"))
        }
        ("PATCH" | "DELETE", "/v1/roles/{name}") => {
            let name = param(params, "name").unwrap_or_default();
            if tocsin_core::role::is_builtin_name(name) {
                Some(crate::routes::roles::read_only(name))
            } else {
                let book = crate::auth::RoleBook::load(app, org).await?;
                book.get(name)
                    .is_none()
                    .then_some(ApiError::NotFoundBy("role", "name"))
            }
        }
        // The team's delete needs the permission account-wide, then finds the team.
        ("DELETE", "/v1/teams/{id}") => {
            let exists = match param(params, "id").and_then(TeamId::parse) {
                Some(t) => found(app.store.get_team(org, &t).await)?,
                None => false,
            };
            (!exists).then_some(ApiError::NotFound("team"))
        }
        ("PUT", "/v1/teams/{id}/members/{user_id}") => {
            let exists = match user().and_then(tocsin_core::UserId::parse) {
                Some(u) => found(app.store.get_user(org, &u).await)?,
                None => false,
            };
            (!exists).then_some(ApiError::NotFound("user"))
        }
        ("DELETE", "/v1/teams/{id}/members/{user_id}") => {
            let team = param(params, "id").and_then(TeamId::parse);
            let member = match (team, user().and_then(tocsin_core::UserId::parse)) {
                (Some(t), Some(u)) => app
                    .store
                    .memberships_of(org, &u)
                    .await?
                    .iter()
                    .any(|m| m.team_id == t),
                _ => false,
            };
            (!member).then_some(ApiError::NotFound("member"))
        }
        _ => None,
    })
}
