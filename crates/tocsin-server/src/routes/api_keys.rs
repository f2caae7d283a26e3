//! API keys: create (every kind's rules), list, show, patch, rotate with grace, revoke.
//! The token appears once, in the create or rotate response.

use crate::auth::{Principal, RequestFacts, RoleBook, key_teams};
use crate::error::{ApiError, ApiResult, JsonBody, conflict, created_target, found, not_found};
use crate::error::{Path, Query};
use crate::routes::{ListParams, path_id};
use crate::state::{App, AppState};
use crate::views;
use axum::Json;
use axum::extract::{Extension, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use tocsin_core::key::{self, KeyKind, KeyName};
use tocsin_core::permission::{PermSet, Permission};
use tocsin_core::policy::{Resource, check_no_escalation};
use tocsin_core::token::Token;
use tocsin_core::validation::Problems;
use tocsin_core::{IntegrationId, KeyId, ServiceAccountId, TeamId};
use tocsin_store::StoreError;
use tocsin_store::audit::{AuditRecord, AuditTarget};
use tocsin_store::keys::{ApiKey, KeyFilter, KeyPatch, KeyVisibility, ServiceAccount};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: Option<String>,
    kind: Option<String>,
    description: Option<String>,
    #[serde(default)]
    role_names: Vec<String>,
    team_id: Option<String>,
    #[serde(default)]
    team_ids: Vec<String>,
    #[serde(default)]
    team_role_names: Vec<String>,
    integration_id: Option<String>,
    expires_at: Option<String>,
    #[serde(default)]
    allowed_cidrs: Vec<String>,
    /// Requests per minute (429 above it); absent or null: no limit of its own.
    rate_limit: Option<i64>,
}

/// Tells a field that is absent (`None`) from one set to null (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Checks role names exist and fit the scope they are used in.
fn check_roles(p: &mut Problems, roles: &RoleBook, field: &str, names: &[String], team: bool) {
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| roles.get(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        p.add(
            field,
            format!(
                "unknown roles: {} (GET /v1/roles lists them)",
                unknown.join(", ")
            ),
        );
    }
    let misplaced: Vec<&str> = names
        .iter()
        .filter(|n| {
            roles.get(n).is_some_and(|r| {
                if team {
                    !r.scope.allows_team()
                } else {
                    !r.scope.allows_account()
                }
            })
        })
        .map(String::as_str)
        .collect();
    if !misplaced.is_empty() {
        let want = if team { "team" } else { "account" };
        p.add(
            field,
            format!("{} cannot be used as {want} roles", misplaced.join(", ")),
        );
    }
}

/// The effective grants of a stored key, for its view.
async fn view(app: &App, k: &ApiKey) -> ApiResult<Value> {
    let roles = RoleBook::load(app, &k.org_id).await?;
    shown(app, &roles, k).await
}

/// A key as the API shows it, with its effective permissions and whether it is disabled.
async fn shown(app: &App, roles: &RoleBook, k: &ApiKey) -> ApiResult<Value> {
    let standing = crate::auth::standing(app, roles, k).await?;
    Ok(views::key(
        k,
        &standing.grants,
        standing.disabled_reason.as_deref(),
    ))
}

/// A key's lifecycle event, with the request that made the change (`status`: what that
/// request answers).
fn lifecycle(
    p: &Principal,
    action: &str,
    key: &ApiKey,
    request: &RequestFacts,
    status: u16,
) -> AuditRecord {
    let mut r = AuditRecord::new(Some(p.org_id.clone()), action, "allowed");
    request.fill(&mut r, status);
    r.actor = Some(p.actor.clone());
    r.api_key_id = p.key.as_ref().map(|k| k.id.clone());
    r.token_hint = Some(p.token_hint.clone());
    r.target = Some(AuditTarget {
        kind: "api_key".into(),
        id: key.id.to_string(),
    });
    r
}

fn name_taken(kind: KeyKind) -> impl FnOnce(StoreError) -> ApiError {
    conflict(
        "name_taken",
        format!(
            "{} {} key with this name already exists in the same scope and is not revoked (names ignore case; an expired key keeps its name until it is revoked); choose another name or revoke that key.",
            match kind.article() {
                "an" => "An",
                _ => "A",
            },
            kind.name()
        ),
    )
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    request: RequestFacts,
    JsonBody(req): JsonBody<CreateKey>,
) -> ApiResult<Response> {
    let now = OffsetDateTime::now_utc();
    let org = app.store.get_org(&p.org_id).await?;
    let roles = RoleBook::load(&app, &p.org_id).await?;
    let mut problems = Problems::new();
    let kind_name = req.kind.as_deref().unwrap_or("personal");
    let kind = KeyKind::parse(kind_name);
    if kind.is_none() {
        problems.add(
            "kind",
            format!("`{kind_name}` is not personal, team, organization or integration"),
        );
    }
    let name = problems.take("name", KeyName::parse(req.name.as_deref().unwrap_or("")));
    let expires_at = problems.take(
        "expires_at",
        key::parse_expires_at(req.expires_at.as_deref(), now, org.max_key_days),
    );
    let description = problems.take(
        "description",
        key::parse_description(req.description.as_deref()),
    );
    let cidrs = problems.take("allowed_cidrs", key::parse_cidrs(&req.allowed_cidrs));
    let rate_limit = req
        .rate_limit
        .and_then(|n| problems.take("rate_limit", key::parse_rate_limit(n)));
    let Some(kind) = kind else {
        return Err(ApiError::Validation(problems));
    };

    let mut team_id = None;
    let mut team_ids = Vec::new();
    let mut integration = None;
    // Never dropped silently: without `"kind": "integration"` the key would be a personal key
    // with its user's full rights, not the integration key that was meant.
    if kind != KeyKind::Integration && req.integration_id.is_some() {
        problems.add(
            "integration_id",
            format!(
                "is only for kind `integration`, and this is {} {} key; to make a key for an integration, send \"kind\": \"integration\", or leave integration_id out",
                kind.article(),
                kind.name()
            ),
        );
    }
    match kind {
        KeyKind::Personal => {
            check_roles(&mut problems, &roles, "role_names", &req.role_names, false);
            check_roles(
                &mut problems,
                &roles,
                "team_role_names",
                &req.team_role_names,
                true,
            );
            for (field, set) in [
                ("team_id", req.team_id.is_some()),
                ("team_ids", !req.team_ids.is_empty()),
            ] {
                if set {
                    problems.add(field, "personal keys act as their user and take no teams; narrow them with role_names");
                }
            }
        }
        KeyKind::Team => {
            match req.team_id.as_deref() {
                None => problems.add("team_id", "is required for a team key"),
                Some(raw) => match TeamId::parse(raw) {
                    Some(t) if found(app.store.get_team(&p.org_id, &t).await)? => team_id = Some(t),
                    _ => problems.add(
                        "team_id",
                        format!("no team `{raw}` exists in this organization"),
                    ),
                },
            }
            if req.team_role_names.is_empty() {
                problems.add(
                    "team_role_names",
                    "must name at least one team role for a team key",
                );
            }
            if !req.team_ids.is_empty() {
                problems.add("team_ids", "a team key names its one team as team_id");
            }
            check_roles(
                &mut problems,
                &roles,
                "team_role_names",
                &req.team_role_names,
                true,
            );
            check_roles(&mut problems, &roles, "role_names", &req.role_names, false);
        }
        KeyKind::Organization => {
            if req.team_ids.is_empty() != req.team_role_names.is_empty() {
                problems.add(
                    "team_role_names",
                    "team_ids and team_role_names go together: give both (those team roles in each listed team) or neither",
                );
            }
            if req.role_names.is_empty() && req.team_ids.is_empty() {
                problems.add("role_names", "an organization key needs at least one grant: role_names, or team_ids with team_role_names");
            }
            if req.team_id.is_some() {
                problems.add("team_id", "organization keys list their teams in team_ids");
            }
            let mut missing = Vec::new();
            for raw in &req.team_ids {
                match TeamId::parse(raw) {
                    Some(t) if found(app.store.get_team(&p.org_id, &t).await)? => team_ids.push(t),
                    _ => missing.push(raw.as_str()),
                }
            }
            if !missing.is_empty() {
                problems.add(
                    "team_ids",
                    format!("no such teams in this organization: {}", missing.join(", ")),
                );
            }
            check_roles(&mut problems, &roles, "role_names", &req.role_names, false);
            check_roles(
                &mut problems,
                &roles,
                "team_role_names",
                &req.team_role_names,
                true,
            );
        }
        KeyKind::Integration => {
            match req.integration_id.as_deref() {
                None => problems.add("integration_id", "is required for an integration key"),
                Some(raw) => match IntegrationId::parse(raw) {
                    Some(id) => match app.store.get_integration(&p.org_id, &id).await {
                        Ok(i) => integration = Some(i),
                        Err(StoreError::NotFound) => problems.add(
                            "integration_id",
                            format!("no integration `{raw}` exists in this organization"),
                        ),
                        // The database failing is not the request's fault.
                        Err(e) => return Err(e.into()),
                    },
                    None => problems.add(
                        "integration_id",
                        format!("no integration `{raw}` exists in this organization"),
                    ),
                },
            }
            let extras = [
                ("role_names", !req.role_names.is_empty()),
                ("team_role_names", !req.team_role_names.is_empty()),
                ("team_id", req.team_id.is_some()),
                ("team_ids", !req.team_ids.is_empty()),
            ];
            for (field, set) in extras {
                if set {
                    problems.add(field, "an integration key's rights come from its integration's access flags; change those instead");
                }
            }
        }
    }
    problems.into_result().map_err(ApiError::Validation)?;
    let (name, expires_at, description, cidrs) = (
        name.expect("checked"),
        expires_at.expect("checked"),
        description.expect("checked"),
        cidrs.expect("checked"),
    );

    // Who may create which kind.
    match kind {
        KeyKind::Personal => {
            if !matches!(p.key_kind(), None | Some(KeyKind::Personal)) {
                return Err(ApiError::Forbidden {
                    code: "permission_denied",
                    message: format!(
                        "Personal keys act as a user, so only that user can create them (with a session or one of their personal keys); this request used {}.",
                        match p.key_kind() {
                            Some(KeyKind::Organization) => "an organization key",
                            Some(KeyKind::Integration) => "an integration key",
                            Some(KeyKind::Team) => "a team key",
                            Some(KeyKind::Personal) => "a personal key",
                            None => "a session",
                        }
                    ),
                });
            }
        }
        KeyKind::Team => {
            let team = team_id.clone().expect("checked");
            p.require(Permission::ApiKeysWrite, &Resource::Teams(vec![team]))?;
        }
        KeyKind::Organization => {
            if p.grants.account != PermSet::all() {
                return Err(ApiError::Forbidden {
                    code: "permission_denied",
                    message: format!(
                        "Only owners and admins can create organization keys; {} is not one.",
                        p.describe.summary()
                    ),
                });
            }
        }
        KeyKind::Integration => {
            let i = integration.as_ref().expect("checked");
            let scope = Resource::Teams(i.team_id.iter().cloned().collect());
            p.require(Permission::IntegrationsWrite, &scope)?;
            team_id = i.team_id.clone();
        }
    }

    let token = Token::generate(kind.token_kind(), &app.settings.region);
    let service_account =
        matches!(kind, KeyKind::Team | KeyKind::Organization).then(|| ServiceAccount {
            id: ServiceAccountId::generate(),
            name: format!("{} key: {}", kind.name(), name.as_str()),
            team_id: team_id.clone(),
        });
    let mut key = ApiKey::new(
        p.org_id.clone(),
        kind,
        name.as_str().to_owned(),
        p.creator.clone(),
        expires_at,
        app.settings.region.clone(),
        token.hint(),
    );
    key.description = description;
    key.user_id = if kind == KeyKind::Personal {
        p.user.as_ref().map(|u| u.id.clone())
    } else {
        None
    };
    key.team_id = team_id;
    key.integration_id = integration.as_ref().map(|i| i.id.to_string());
    key.service_account_id = service_account.as_ref().map(|s| s.id.clone());
    key.role_names = req.role_names;
    key.team_ids = team_ids;
    key.team_role_names = req.team_role_names;
    key.allowed_cidrs = cidrs.iter().map(ToString::to_string).collect();
    key.rate_limit = rate_limit;
    // The new key is checked like a new key of the service account it would create: the
    // service account row does not exist yet, so only grants, networks and the rate limit are
    // compared.
    check_within_caller(&app, &p, &key).await?;
    let id = key.id.to_string();
    let body = issue(&app, &p, key, &token, service_account, &request).await?;
    Ok(created_target(body, "api_key", &id))
}

/// Nobody obtains or reshapes a key that could do more than they can: checked when a key is
/// created, rotated (which hands out a token) or given other roles or networks. A caller
/// restricted to some networks cannot make a key that is less restricted.
pub(crate) async fn check_within_caller(app: &App, p: &Principal, key: &ApiKey) -> ApiResult<()> {
    if let Some(missing) = lacking_for(app, p, key).await? {
        return Err(ApiError::Escalation(missing));
    }
    check_networks(p, &key.allowed_cidrs)?;
    check_rate_limit(p, key.rate_limit)
}

/// What a caller lacks of everything `key` may do now (`None`: nothing).
pub(crate) async fn lacking_for(
    app: &App,
    p: &Principal,
    key: &ApiKey,
) -> ApiResult<Option<Vec<tocsin_core::policy::MissingGrant>>> {
    let roles = RoleBook::load(app, &p.org_id).await?;
    let grants = crate::auth::standing(app, &roles, key).await?.grants;
    Ok(check_no_escalation(&p.grants, &grants).err())
}

/// A `PATCH` that gives a key a later `expires_at` or a looser `rate_limit` (`changed` is the
/// key as it would be): the caller must hold everything the key holds, from its networks, as
/// for a rotation. The refusal names the change and what the caller may do instead.
async fn check_prolonged_within_caller(
    app: &App,
    p: &Principal,
    current: &ApiKey,
    changed: &ApiKey,
    extends: bool,
    loosens: bool,
) -> ApiResult<()> {
    if let Some(missing) = lacking_for(app, p, changed).await? {
        let mut changes = Vec::new();
        if extends {
            changes.push(format!(
                "a later expires_at (it now expires at {})",
                key::fmt_rfc3339(current.expires_at)
            ));
        }
        if loosens {
            changes.push(match current.rate_limit {
                Some(n) => format!("a looser rate_limit (it is now {n} requests per minute)"),
                None => "a looser rate_limit".to_owned(),
            });
        }
        return Err(ApiError::EscalationIn {
            missing,
            change: format!(
                "Key {} holds permissions you do not, so you may not give it {}: only someone who holds everything a key holds may extend it or loosen its rate limit, as only they may rotate it",
                current.id,
                changes.join(" or ")
            ),
            fix: "Leave expires_at as it is or move it earlier, and keep rate_limit or lower it (renaming and changing the description are allowed too); to extend the key or loosen its limit, ask someone who holds every permission it holds.".into(),
        });
    }
    check_networks(p, &changed.allowed_cidrs)?;
    check_rate_limit(p, changed.rate_limit)
}

/// A calling key with a rate limit cannot make a key with a looser one (or none), nor loosen
/// its own: the limit would be lifted by minting a sibling. Sessions have no limit of their own.
fn check_rate_limit(p: &Principal, limit: Option<u32>) -> ApiResult<()> {
    match p.key.as_ref().and_then(|k| k.rate_limit) {
        Some(mine) if limit.is_none_or(|n| n > mine) => Err(ApiError::Forbidden {
            code: "escalation_denied",
            message: format!(
                "The calling key is limited to {mine} requests per minute (rate_limit); a key it creates, rotates or changes (itself included) must have a rate_limit of at most {mine}. To go higher, ask someone whose key or session has no such limit."
            ),
        }),
        _ => Ok(()),
    }
}

/// A caller restricted to some networks cannot make a key that is less restricted.
pub fn check_networks(p: &Principal, cidrs: &[String]) -> ApiResult<()> {
    let key_cidrs = cidrs;
    if !p.state.allowed_cidrs.is_empty() {
        let within = !key_cidrs.is_empty()
            && key_cidrs.iter().all(|c| {
                c.parse::<ipnet::IpNet>()
                    .is_ok_and(|net| p.state.allowed_cidrs.iter().any(|mine| mine.contains(&net)))
            });
        if !within {
            return Err(ApiError::Forbidden {
                code: "escalation_denied",
                message: "The calling key is restricted to certain networks (allowed_cidrs); a key it creates, rotates or changes must be restricted to those networks or narrower ones.".into(),
            });
        }
    }
    Ok(())
}

/// Stores a new key (its caller has checked it against the creator's rights), records
/// `api_key.created`, and builds `{"api_key", "token"}`: the one response that carries the token.
pub async fn issue(
    app: &App,
    p: &Principal,
    key: ApiKey,
    token: &Token,
    account: Option<ServiceAccount>,
    request: &RequestFacts,
) -> ApiResult<Value> {
    check_not_replaced(p, "create keys")?;
    app.store
        .insert_key(&key, &app.hasher.digest(token), account.as_ref())
        .await
        .map_err(name_taken(key.kind))?;
    recorded(
        app,
        lifecycle(p, "api_key.created", &key, request, 201),
        format!("The key {} was created, but its token is not shown: revoke the key and create it again", key.id),
    )
    .await?;
    Ok(json!({"api_key": view(app, &key).await?, "token": token.expose()}))
}

/// Records a key's lifecycle event and waits until it is written, as the response must. Should
/// the write fail, the change (`done`, said in the 503) stands and the event is kept and written
/// once the database takes writes again; the caller learns both.
async fn recorded(app: &App, event: AuditRecord, done: String) -> ApiResult<()> {
    app.audit.record_durable(event).await.map_err(|e| match e {
        StoreError::WriteFailed(why) => ApiError::Unavailable {
            message: format!(
                "{done}; its audit event could not be written yet (it is kept, and written once the database takes writes again: /readyz tells when)."
            ),
            detail: why,
        },
        other => other.into(),
    })
}

/// A token a rotation replaced keeps working until its grace period ends, so deployments can
/// switch over, but it may not make or change credentials (keys, integrations with their key,
/// passwords): otherwise a leaked token would outlive the rotation meant to end it (rotate
/// again with no grace, make itself a new key, or set a password and sign in). Revoking stays
/// open to it.
pub(crate) fn check_not_replaced(p: &Principal, doing: &str) -> ApiResult<()> {
    match p.state.grace_period_ends_at {
        None => Ok(()),
        Some(end) => Err(ApiError::ForbiddenWithFix {
            code: "replaced_token",
            message: format!(
                "This request is made with a token that a rotation replaced. It keeps working for other requests until its grace period ends at {}, but it may not {doing}. Use the key's current token (the one the rotation returned).",
                key::fmt_rfc3339(end)
            ),
            fix: "Use the token the rotation returned (the key's current token) for this request; if that token was lost, someone who may manage the key can rotate it again, or revoke it.".into(),
        }),
    }
}

/// What a route refuses to a token a rotation replaced, whatever its body (`doing`, as
/// `check_not_replaced` words it there): for `explain`, which must give the route's verdict.
/// Rotation is explained with the rotate route's other checks; setting a password depends on
/// the body.
pub(crate) fn refused_to_replaced_token(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        ("POST", "/v1/api_keys") => Some("create keys"),
        ("PATCH", "/v1/api_keys/{id}") => Some("change keys"),
        ("POST", "/v1/integrations" | "/v2/integrations") => Some("create integrations"),
        _ => None,
    }
}

/// Only a personal key's own user may rotate or reshape it; anyone allowed may revoke it.
pub(crate) fn check_own_personal(p: &Principal, key: &ApiKey, doing: &str) -> ApiResult<()> {
    if key.kind == KeyKind::Personal
        && (key.user_id.is_none()
            || key.user_id != p.user.as_ref().map(|u| u.id.clone())
            || !matches!(p.key_kind(), None | Some(KeyKind::Personal)))
    {
        return Err(ApiError::Forbidden {
            code: "permission_denied",
            message: format!(
                "A personal key acts as its user, so only that user can {doing} it; you may revoke it instead (POST /v1/api_keys/{}/revoke).",
                key.id
            ),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct ListQuery {
    kind: Option<String>,
    team_id: Option<String>,
    integration_id: Option<String>,
    include_revoked: Option<String>,
    #[serde(flatten)]
    page: ListParams,
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<views::List>> {
    let limit = q.page.limit()?;
    let mut problems = Problems::new();
    let kind = q.kind.as_deref().and_then(|k| {
        let parsed = KeyKind::parse(k);
        if parsed.is_none() {
            problems.add(
                "kind",
                format!("`{k}` is not personal, team, organization or integration"),
            );
        }
        parsed
    });
    let include_revoked = match q.include_revoked.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            problems.add("include_revoked", format!("`{other}` is not true or false"));
            false
        }
    };
    problems.into_result().map_err(ApiError::Validation)?;
    let visible = KeyVisibility {
        all: p.grants.account.contains(Permission::ApiKeysRead),
        teams: p.grants.teams_with(Permission::ApiKeysRead),
        // A session or an unnarrowed personal key lists its user's personal keys; a narrowed
        // one manages only itself (`is_own_personal`), so it lists by its permissions alone.
        user: match &p.key {
            None => p.user.as_ref().map(|u| u.id.clone()),
            Some(k) if k.kind == KeyKind::Personal && !k.is_narrowed() => {
                p.user.as_ref().map(|u| u.id.clone())
            }
            Some(_) => None,
        },
    };
    let filter = KeyFilter {
        kind,
        team_id: q
            .team_id
            .as_deref()
            .map(|t| TeamId::from_trusted(t.to_owned())),
        integration_id: q.integration_id,
        include_revoked,
    };
    let page = app
        .store
        .list_keys(
            &p.org_id,
            &filter,
            &visible,
            limit,
            q.page.id_cursor(KeyId::parse)?,
        )
        .await?;
    let roles = RoleBook::load(&app, &p.org_id).await?;
    let mut data = Vec::with_capacity(page.items.len());
    for k in &page.items {
        data.push(shown(&app, &roles, k).await?);
    }
    Ok(Json(views::List {
        data,
        next_cursor: page.next_cursor,
    }))
}

/// Loads a key the caller may act on with `permission`: their own personal keys always,
/// others by the permission within the key's teams (account-wide for keys of no team).
async fn load(app: &App, p: &Principal, raw: &str, permission: Permission) -> ApiResult<ApiKey> {
    let id = path_id(raw, KeyId::parse, "API key")?;
    let key = app
        .store
        .get_key(&p.org_id, &id)
        .await
        .map_err(not_found("API key"))?;
    if !is_own_personal(p, &key) {
        p.require(permission, &Resource::Teams(key_teams(&key)))?;
    }
    Ok(key)
}

/// True when `key` is a personal key of the caller's user and the caller acts as that user
/// (a session or one of their personal keys): such a caller manages the key without the
/// permission. A personal key narrowed to some roles (account or team roles) manages only
/// itself: a leaked read-only key must not revoke, rotate or reshape its user's other keys.
pub(crate) fn is_own_personal(p: &Principal, key: &ApiKey) -> bool {
    key.kind == KeyKind::Personal
        && key.user_id.is_some()
        && key.user_id == p.user.as_ref().map(|u| u.id.clone())
        && match &p.key {
            None => true,
            Some(mine) => {
                mine.kind == KeyKind::Personal && (!mine.is_narrowed() || mine.id == key.id)
            }
        }
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let key = load(&app, &p, &id, Permission::ApiKeysRead).await?;
    Ok(Json(view(&app, &key).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    name: Option<String>,
    description: Option<String>,
    role_names: Option<Vec<String>>,
    team_role_names: Option<Vec<String>>,
    allowed_cidrs: Option<Vec<String>>,
    expires_at: Option<String>,
    /// Requests per minute; null removes the key's limit.
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<i64>>,
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    request: RequestFacts,
    JsonBody(req): JsonBody<UpdateKey>,
) -> ApiResult<Json<Value>> {
    let key = load(&app, &p, &id, Permission::ApiKeysWrite).await?;
    check_not_replaced(&p, "change keys")?;
    if key.revoked_at.is_some() {
        return Err(ApiError::Conflict {
            code: "key_revoked",
            message: "This key is revoked; revoked keys cannot be changed.".into(),
        });
    }
    // A later expiry would bring an expired token back to life, without a rotation; an
    // expired key is therefore as final as rotate treats it.
    if key.expires_at <= OffsetDateTime::now_utc() {
        return Err(key_expired(key.expires_at, "changed or extended"));
    }
    let org = app.store.get_org(&p.org_id).await?;
    let roles = RoleBook::load(&app, &p.org_id).await?;
    let now = OffsetDateTime::now_utc();
    let mut problems = Problems::new();
    let name = req
        .name
        .as_deref()
        .and_then(|n| problems.take("name", KeyName::parse(n)));
    let description = req
        .description
        .as_deref()
        .and_then(|d| problems.take("description", key::parse_description(Some(d))));
    let cidrs = req
        .allowed_cidrs
        .as_deref()
        .and_then(|c| problems.take("allowed_cidrs", key::parse_cidrs(c)));
    let expires_at = req.expires_at.as_deref().and_then(|e| {
        problems.take(
            "expires_at",
            key::parse_new_expiry(e, now, org.max_key_days, key.expires_at),
        )
    });
    let rate_limit: Option<Option<u32>> = match req.rate_limit {
        None => None,
        Some(None) => Some(None),
        Some(Some(n)) => problems
            .take("rate_limit", key::parse_rate_limit(n))
            .map(Some),
    };
    if key.kind == KeyKind::Integration {
        for (field, set) in [
            ("role_names", req.role_names.is_some()),
            ("team_role_names", req.team_role_names.is_some()),
        ] {
            if set {
                problems.add(field, "an integration key's rights come from its integration's access flags; change those instead");
            }
        }
    }
    if let Some(r) = &req.role_names {
        check_roles(&mut problems, &roles, "role_names", r, false);
        if key.kind == KeyKind::Organization && r.is_empty() && key.team_ids.is_empty() {
            problems.add("role_names", "an organization key needs at least one grant");
        }
    }
    if let Some(r) = &req.team_role_names {
        check_roles(&mut problems, &roles, "team_role_names", r, true);
        let needs_team_roles = key.kind == KeyKind::Team
            || (key.kind == KeyKind::Organization && !key.team_ids.is_empty());
        if needs_team_roles && r.is_empty() {
            problems.add(
                "team_role_names",
                "must stay non-empty for this key's teams",
            );
        }
    }
    problems.into_result().map_err(ApiError::Validation)?;
    let mut changed = key.clone();
    if let Some(r) = &req.role_names {
        changed.role_names = r.clone();
    }
    if let Some(r) = &req.team_role_names {
        changed.team_role_names = r.clone();
    }
    if let Some(c) = &cidrs {
        changed.allowed_cidrs = c.iter().map(ToString::to_string).collect();
    }
    if let Some(limit) = rate_limit {
        changed.rate_limit = limit;
    }
    // A later expiry keeps the key's rights alive longer, and a looser rate limit lets them
    // be used more: like a rotation, neither is open to someone holding less than the key.
    let extends = expires_at.is_some_and(|e| e > key.expires_at);
    let loosens = rate_limit.is_some_and(|new| match (key.rate_limit, new) {
        (Some(_), None) => true,
        (Some(old), Some(n)) => n > old,
        (None, _) => false,
    });
    if req.role_names.is_some() || req.team_role_names.is_some() || cidrs.is_some() {
        check_own_personal(&p, &key, "change the roles or networks of")?;
        // The key as it would be, its new rate limit included.
        check_within_caller(&app, &p, &changed).await?;
    } else if extends || loosens {
        check_prolonged_within_caller(&app, &p, &key, &changed, extends, loosens).await?;
    } else if rate_limit.is_some() {
        check_rate_limit(&p, changed.rate_limit)?;
    }
    let patch = KeyPatch {
        name: name.map(|n| n.as_str().to_owned()),
        description,
        role_names: req.role_names,
        team_role_names: req.team_role_names,
        allowed_cidrs: cidrs.map(|c| c.iter().map(ToString::to_string).collect()),
        expires_at,
        rate_limit,
    };
    let updated = app
        .store
        .update_key(&p.org_id, &key.id, &patch)
        .await
        .map_err(name_taken(key.kind))?;
    app.drop_cached_credentials();
    recorded(
        &app,
        lifecycle(&p, "api_key.updated", &updated, &request, 200),
        format!("The key {} was updated", updated.id),
    )
    .await?;
    Ok(Json(view(&app, &updated).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    grace_period_seconds: Option<i64>,
}

pub async fn rotate(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    request: RequestFacts,
    JsonBody(req): JsonBody<RotateKey>,
) -> ApiResult<Json<Value>> {
    let key = load(&app, &p, &id, Permission::ApiKeysWrite).await?;
    check_not_replaced(&p, "rotate keys")?;
    // Rotating hands the caller a working token: it must not open more than the caller holds.
    check_own_personal(&p, &key, "rotate")?;
    check_within_caller(&app, &p, &key).await?;
    let grace = req
        .grace_period_seconds
        .unwrap_or(key::DEFAULT_GRACE_SECONDS);
    if !(0..=key::MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::validation(
            "grace_period_seconds",
            format!(
                "{grace} is outside 0..{} (seven days)",
                key::MAX_GRACE_SECONDS
            ),
        ));
    }
    let revoked = || ApiError::Conflict {
        code: "key_revoked",
        message: "This key is revoked; create a new key instead.".into(),
    };
    if key.revoked_at.is_some() {
        return Err(revoked());
    }
    if key.expires_at <= OffsetDateTime::now_utc() {
        return Err(key_expired(key.expires_at, "rotated"));
    }
    // The new token lives until the key's expiry, which must be within the maximum in force
    // now (it may have been lowered since the key was made).
    let org = app.store.get_org(&p.org_id).await?;
    key::check_rotation_expiry(
        key.id.as_str(),
        key.expires_at,
        OffsetDateTime::now_utc(),
        org.max_key_days,
    )
    .map_err(|why| ApiError::validation("expires_at", why))?;
    let token = Token::generate(key.kind.token_kind(), &app.settings.region);
    let grace_end = (grace > 0).then(|| OffsetDateTime::now_utc() + Duration::seconds(grace));
    let rotated = app
        .store
        .rotate_key(
            &p.org_id,
            &key.id,
            &app.hasher.digest(&token),
            &token.hint(),
            grace_end,
        )
        .await
        // The key was loaded live a moment ago; the store rotates only a live key, so one
        // not found now was revoked in between (keys are never deleted).
        .map_err(|e| match e {
            StoreError::NotFound => revoked(),
            other => other.into(),
        })?;
    app.drop_cached_credentials();
    recorded(
        &app,
        lifecycle(&p, "api_key.rotated", &rotated, &request, 200),
        format!(
            "The key {} was rotated, but its new token is not shown: rotate it again",
            rotated.id
        ),
    )
    .await?;
    Ok(Json(
        json!({"api_key": view(&app, &rotated).await?, "token": token.expose()}),
    ))
}

pub async fn revoke(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    request: RequestFacts,
) -> ApiResult<Json<Value>> {
    let key = load(&app, &p, &id, Permission::ApiKeysWrite).await?;
    let revoked = revoke_recorded(&app, &p, &key.id, &request, 200).await?;
    Ok(Json(view(&app, &revoked).await?))
}

/// Revokes a key at once and, when this call revoked it (revoking is idempotent), records its
/// `api_key.revoked` event for `request` (which answers `status`). Every revocation a request
/// makes goes through here: the revoke route, and an integration's delete for each of its keys.
pub(crate) async fn revoke_recorded(
    app: &App,
    p: &Principal,
    id: &KeyId,
    request: &RequestFacts,
    status: u16,
) -> ApiResult<ApiKey> {
    let (revoked, changed) = app.store.revoke_key(&p.org_id, id, &p.creator).await?;
    app.drop_cached_credentials();
    if changed {
        recorded(
            app,
            lifecycle(p, "api_key.revoked", &revoked, request, status),
            format!("The key {} was revoked", revoked.id),
        )
        .await?;
    }
    Ok(revoked)
}

/// 409 `key_expired`: an expired key is final; it can be neither rotated nor extended, since
/// either would make a token that has expired (perhaps after it leaked) work again.
fn key_expired(at: OffsetDateTime, what: &str) -> ApiError {
    ApiError::ConflictWithFix {
        code: "key_expired",
        message: format!(
            "This key expired at {}; an expired key cannot be {what}, as that would make its expired token work again.",
            views::t(at)
        ),
        fix: tocsin_core::policy::EXPIRED_KEY_FIX.into(),
    }
}
