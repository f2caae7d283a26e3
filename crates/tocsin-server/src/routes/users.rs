//! Users, and login with email and password (Argon2id), which yields a 12-hour session token.

use crate::auth::{Principal, RoleBook};
use crate::error::{ApiError, ApiResult, JsonBody, conflict, created_target, not_found};
use crate::error::{Path, Query};
use crate::routes::{ListParams, path_id};
use crate::state::{App, AppState};
use crate::views;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use time::{Duration, OffsetDateTime};
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::token::{Token, TokenKind};
use tocsin_core::validation::Problems;
use tocsin_core::{OrgId, SessionId, UserId};
use tocsin_store::users::{Session, User, UserPatch, UserStanding, UserUpdate};

pub const SESSION_HOURS: i64 = 12;

pub fn hash_password(password: &str) -> ApiResult<String> {
    // A salt need only be unique: 122 random bits from a v4 UUID will do.
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| ApiError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
}

/// Verifies against `hash`, or against a fixed dummy hash when there is none, so an unknown
/// email costs the same time as a wrong password.
fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default());
    let real = hash.is_some();
    let Ok(parsed) = PasswordHash::new(hash.unwrap_or(dummy)) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        && real
}

fn check_email(p: &mut Problems, email: &str) {
    let e = email.trim();
    if e.len() > 254
        || !e.contains('@')
        || e.starts_with('@')
        || e.ends_with('@')
        || e.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        p.add("email", "must be an email address such as ann@example.com");
    }
}

fn check_password(p: &mut Problems, password: Option<&str>) {
    if let Some(pw) = password
        && pw.chars().count() < 8
    {
        p.add("password", "must be at least 8 characters");
    }
}

/// Validates an account role name against the organization's roles and the caller's rights.
fn check_account_role(p: &mut Problems, roles: &RoleBook, name: &str) {
    match roles.get(name) {
        None => p.add(
            "role_name",
            format!("`{name}` is not a role; GET /v1/roles lists them"),
        ),
        Some(r) if !r.scope.allows_account() => p.add(
            "role_name",
            format!("`{name}` is a team role, not an account role"),
        ),
        Some(_) => {}
    }
}

/// Only an owner may make an owner; nobody may hand out an account role beyond their own.
fn check_role_grant(caller: &Principal, roles: &RoleBook, name: &str) -> ApiResult<()> {
    if name == "owner" && caller.user.as_ref().map(|u| u.role_name.as_str()) != Some("owner") {
        return Err(ApiError::Forbidden {
            code: "escalation_denied",
            message: "Only an owner can make another user an owner.".into(),
        });
    }
    let wanted = roles.perms(&[name.to_owned()]);
    let missing = wanted.minus(caller.grants.account);
    if !missing.is_empty() {
        return Err(ApiError::Escalation(vec![
            tocsin_core::policy::MissingGrant {
                team: None,
                permissions: missing,
            },
        ]));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: Option<String>,
    name: Option<String>,
    role_name: Option<String>,
    password: Option<String>,
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<Response> {
    p.require(Permission::UsersWrite, &Resource::Org)?;
    let roles = RoleBook::load(&app, &p.org_id).await?;
    let mut problems = Problems::new();
    let email = req.email.unwrap_or_default();
    check_email(&mut problems, &email);
    // Required (SPEC): the name shown in lists, audit trails and alert logs; an email in
    // its place would be a guess.
    let name = match req.name.as_deref() {
        Some(n) => problems.take("name", tocsin_core::key::KeyName::parse(n)),
        None => {
            problems.add(
                "name",
                "is required: the user's display name, such as \"Ann Lee\"",
            );
            None
        }
    };
    // Required (SPEC): a default would hand out rights nobody chose.
    match &req.role_name {
        Some(r) => check_account_role(&mut problems, &roles, r),
        None => problems.add(
            "role_name",
            "is required: the user's account role, such as viewer, responder or admin (GET /v1/roles lists them)",
        ),
    }
    check_password(&mut problems, req.password.as_deref());
    problems.into_result().map_err(ApiError::Validation)?;
    let role_name = req.role_name.unwrap_or_default();
    check_role_grant(&p, &roles, &role_name)?;
    // A password is a credential: a token a rotation replaced may not set one (api_keys.rs).
    if req.password.is_some() {
        crate::routes::api_keys::check_not_replaced(&p, "set passwords")?;
    }
    // Argon2 is deliberately slow: keep it off the async workers.
    let hash = match req.password.clone() {
        Some(pw) => Some(
            tokio::task::spawn_blocking(move || hash_password(&pw))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??,
        ),
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    let user = User {
        id: UserId::generate(),
        org_id: p.org_id.clone(),
        email: email.trim().to_owned(),
        name: name.map(|n| n.as_str().to_owned()).unwrap_or_default(),
        role_name,
        active: true,
        created_at: now,
        updated_at: now,
    };
    app.store
        .insert_user(&user, hash.as_deref())
        .await
        .map_err(conflict(
            "email_taken",
            format!(
                "A user with the email {} already exists in this organization.",
                user.email
            ),
        ))?;
    Ok(created_target(views::user(&user), "user", user.id.as_str()))
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<views::List>> {
    p.require(Permission::UsersRead, &Resource::Org)?;
    let page = app
        .store
        .list_users(&p.org_id, q.limit()?, q.id_cursor(UserId::parse)?)
        .await?;
    Ok(Json(views::List {
        data: page.items.iter().map(views::user).collect(),
        next_cursor: page.next_cursor,
    }))
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = path_id(&id, UserId::parse, "user")?;
    if p.user.as_ref().map(|u| &u.id) != Some(&id) {
        p.require(Permission::UsersRead, &Resource::Org)?;
    }
    let user = app
        .store
        .get_user(&p.org_id, &id)
        .await
        .map_err(not_found("user"))?;
    Ok(Json(views::user(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    name: Option<String>,
    role_name: Option<String>,
    active: Option<bool>,
    /// A new password for signing in (the console); ends the user's sessions.
    password: Option<String>,
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateUser>,
) -> ApiResult<Json<Value>> {
    p.require(Permission::UsersWrite, &Resource::Org)?;
    let id = path_id(&id, UserId::parse, "user")?;
    let target = app
        .store
        .get_user(&p.org_id, &id)
        .await
        .map_err(not_found("user"))?;
    let roles = RoleBook::load(&app, &p.org_id).await?;
    let mut problems = Problems::new();
    let name = req
        .name
        .as_deref()
        .and_then(|n| problems.take("name", tocsin_core::key::KeyName::parse(n)));
    if let Some(r) = &req.role_name {
        check_account_role(&mut problems, &roles, r);
    }
    check_password(&mut problems, req.password.as_deref());
    problems.into_result().map_err(ApiError::Validation)?;
    // An owner is changed only by an owner: a refusal of who is asking, not of the body.
    let caller_is_owner = p.user.as_ref().map(|u| u.role_name.as_str()) == Some("owner");
    if target.role_name == "owner" && !caller_is_owner {
        let demotes =
            req.active == Some(false) || req.role_name.as_deref().is_some_and(|r| r != "owner");
        let doing = match (demotes, req.password.is_some()) {
            (true, _) => Some("demote or deactivate an owner"),
            (false, true) => Some("set an owner's password"),
            (false, false) => None,
        };
        if let Some(doing) = doing {
            return Err(ApiError::Forbidden {
                code: "escalation_denied",
                message: format!(
                    "Only an owner can {doing}; this request is made by {}. Ask an owner to do it.",
                    p.describe.summary()
                ),
            });
        }
    }
    if let Some(r) = &req.role_name {
        check_role_grant(&p, &roles, r)?;
    }
    if req.password.is_some() {
        crate::routes::api_keys::check_not_replaced(&p, "set passwords")?;
    }
    // Changing someone's role, switching them off or setting their password needs every
    // right they hold now, their team roles included: otherwise a holder of users:write alone
    // could demote an admin, or set a team admin's password and sign in as them. A narrowed
    // key therefore cannot set even its own user's password.
    // The change is written only while the user still holds what was judged here (the
    // store compares in the write's transaction): a promotion landing in between refuses it
    // rather than being undone by a caller weaker than the promoted user.
    let mut was = None;
    if req.role_name.is_some() || req.active.is_some() || req.password.is_some() {
        let memberships = app.store.memberships_of(&p.org_id, &target.id).await?;
        was = Some(UserStanding::of(&target.role_name, &memberships));
        let theirs = roles.grants_of(&target, memberships);
        tocsin_core::policy::check_no_escalation(&p.grants, &theirs)
            .map_err(ApiError::Escalation)?;
    }
    // Argon2 is deliberately slow: keep it off the async workers.
    let password_hash = match req.password {
        Some(password) => Some(
            tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??,
        ),
        None => None,
    };
    let patch = UserPatch {
        name: name.map(|n| n.as_str().to_owned()),
        role_name: req.role_name,
        active: req.active,
        password_hash,
        was,
    };
    let user = match app.store.update_user(&p.org_id, &id, &patch).await? {
        UserUpdate::Updated(user) => user,
        UserUpdate::LastOwner => {
            let change = match req.active {
                Some(false) => "deactivating",
                _ => "demoting",
            };
            return Err(ApiError::ConflictWithFix {
                code: "last_owner",
                message: format!(
                    "An organization must always have at least one active owner, and {} is its only one: {change} them would leave nobody able to manage the organization. Nothing was changed.",
                    target.email
                ),
                fix: "Make another user owner first (PATCH /v1/users/{id} with {\"role_name\": \"owner\"}), then change this one.".into(),
            });
        }
    };
    // A demoted or deactivated user's keys change at once; a new password ends their sessions.
    app.drop_cached_credentials();
    Ok(Json(views::user(&user)))
}

#[derive(Deserialize)]
pub struct Login {
    pub email: Option<String>,
    pub password: Option<String>,
    /// Which organization to sign in to, needed only when the email and password match users
    /// of more than one (an email is unique within an organization, not across them).
    pub organization_id: Option<String>,
}

/// How many password checks (Argon2 each) every login makes: one for each active user with a
/// password who holds the email (the oldest, when more do and no `organization_id` narrows
/// it), and dummy checks for the rest. Always the same number, so that a login's time says
/// nothing about how many users, in any organization, hold an email.
pub const LOGIN_CANDIDATES: usize = 4;

pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    JsonBody(req): JsonBody<Login>,
) -> ApiResult<Response> {
    let (token, session, user) = password_login(&app, peer.ip(), req).await?;
    let body = json!({
        "session_token": token.expose(), "expires_at": views::t(session.expires_at), "user": views::user(&user),
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// Checks an email and password (throttled per client address, equal time for unknown
/// emails) and opens a 12-hour session: shared by the API's login and the console's.
///
/// The email may belong to users of several organizations. The password is checked against
/// each of them (at most `LOGIN_CANDIDATES`, or only the one of `organization_id`); if it
/// opens more than one, the caller is asked to choose, and told the organizations it proved
/// it may enter, never any other.
pub async fn password_login(
    app: &App,
    ip: std::net::IpAddr,
    req: Login,
) -> ApiResult<(Token, Session, User)> {
    let mut problems = Problems::new();
    if req.email.as_deref().unwrap_or("").is_empty() {
        problems.add("email", "is required");
    }
    if req.password.as_deref().unwrap_or("").is_empty() {
        problems.add("password", "is required");
    }
    let org = req.organization_id.as_deref().and_then(|id| {
        problems.take(
            "organization_id",
            OrgId::parse(id).ok_or_else(|| {
                "must be an organization id (`org_` and 32 hex digits), as the choices of a login that matched several organizations name them".to_owned()
            }),
        )
    });
    problems.into_result().map_err(ApiError::Validation)?;
    // Every attempt counts against the address's budget, before any hashing: an address
    // past it costs no Argon2 work.
    if let Some(retry_after) = app.failed_auth_throttle(Some(ip)).await {
        return Err(ApiError::RateLimited {
            message: format!(
                "Too many logins and failed authentications from {ip} (more than {} a minute); try again in {retry_after} s.",
                app.settings.failed_auth_per_minute
            ),
            retry_after,
            limit: None,
        });
    }
    let email = req.email.unwrap_or_default();
    let password = req.password.unwrap_or_default();
    let candidates = match &org {
        Some(org) => app
            .store
            .find_org_user_by_email(org, email.trim())
            .await?
            .into_iter()
            .collect(),
        None => {
            app.store
                .find_login_candidates(email.trim(), LOGIN_CANDIDATES)
                .await?
        }
    };
    // A deactivated user's password is not checked (a dummy check takes its place), so only
    // active users can be opened.
    let hashes: Vec<Option<String>> = candidates
        .iter()
        .map(|c| c.password_hash.clone().filter(|_| c.user.active))
        .collect();
    let opened = tokio::task::spawn_blocking(move || {
        (0..LOGIN_CANDIDATES)
            .map(|i| {
                let hash = hashes.get(i).and_then(Option::as_deref);
                // A check against the dummy hash when there is no password to check.
                verify_password(&password, hash)
            })
            .collect::<Vec<bool>>()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut opened: Vec<User> = candidates
        .into_iter()
        .zip(opened)
        .filter(|(_, ok)| *ok)
        .map(|(c, _)| c.user)
        .collect();
    let user = match opened.len() {
        1 => opened.remove(0),
        0 => return Err(login_refused()),
        _ => {
            let mut choices = Vec::with_capacity(opened.len());
            for user in &opened {
                let org = app.store.get_org(&user.org_id).await?;
                choices.push((org.id, org.name));
            }
            return Err(ApiError::ChooseOrganization(choices));
        }
    };
    let token = Token::generate(TokenKind::Session, &app.settings.region);
    let session = Session {
        id: SessionId::generate(),
        org_id: user.org_id.clone(),
        user_id: user.id.clone(),
        expires_at: OffsetDateTime::now_utc() + Duration::hours(SESSION_HOURS),
    };
    app.store
        .insert_session(&session, &app.hasher.digest(&token))
        .await?;
    Ok((token, session, user))
}

fn login_refused() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_credentials",
        message: "The email or password is wrong, or the user is deactivated.".into(),
    }
}
