//! The one door every route passes: credential -> `Principal` (cache first, store on a miss),
//! checked in the fixed order of SPEC section 4, then an audit event for the request.

use crate::error::{ApiError, ApiResult, ErrorInfo};
use crate::state::App;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;
use tocsin_core::key::KeyKind;
use tocsin_core::permission::{PermSet, Permission};
use tocsin_core::policy::{self, CredentialState, Describe, Grants, Refusal, Resource};
use tocsin_core::role::{Role, builtin_roles};
use tocsin_core::token::{Token, TokenDigest, TokenKind};
use tocsin_core::{IntegrationId, OrgId, TeamId};
use tocsin_store::audit::{AuditActor, AuditTarget, Caller, RequestRecord};
use tocsin_store::integrations::Integration;
use tocsin_store::keys::{Actor, ApiKey};
use tocsin_store::orgs::Organization;
use tocsin_store::teams::Membership;
use tocsin_store::users::User;

/// Who is calling, with everything a handler needs to authorize and attribute.
#[derive(Debug)]
pub struct Principal {
    pub org_id: OrgId,
    /// The organization as it was when this credential was resolved (organization changes
    /// invalidate cached credentials, so it is never stale for long).
    pub org: Organization,
    /// `None` for a login session.
    pub key: Option<ApiKey>,
    pub user: Option<User>,
    /// Set for integration keys.
    pub integration: Option<Integration>,
    pub grants: Grants,
    pub describe: Describe,
    /// How the audit trail names this principal.
    pub actor: AuditActor,
    /// How objects this principal creates name their creator.
    pub creator: Actor,
    pub state: CredentialState,
    pub token_hint: String,
    /// Unix seconds of the last use handed to the last-used tracker (throttles it to once a minute... ish).
    last_reported: AtomicI64,
    /// `GET /v1/auth/whoami`'s body, rendered on first use. Everything in it comes from this
    /// principal, which is rebuilt whenever its credential or organization changes.
    pub whoami: std::sync::OnceLock<axum::body::Bytes>,
    /// How request events name this principal, built on first use and shared by them.
    caller: std::sync::OnceLock<Arc<Caller>>,
}

impl Principal {
    /// The caller part of this principal's request events.
    pub fn caller(&self) -> &Arc<Caller> {
        self.caller.get_or_init(|| {
            Arc::new(Caller {
                org_id: self.org_id.clone(),
                actor: self.actor.clone(),
                api_key_id: self.key.as_ref().map(|k| k.id.clone()),
                token_hint: self.token_hint.clone(),
            })
        })
    }

    pub fn key_kind(&self) -> Option<KeyKind> {
        self.key.as_ref().map(|k| k.kind)
    }

    /// Checks a permission on a resource; the refusal names the key and its roles.
    pub fn require(&self, permission: Permission, resource: &Resource) -> ApiResult<()> {
        match policy::authorize(&self.grants, permission, resource) {
            policy::Decision::Allowed => Ok(()),
            denied => Err(ApiError::refused(
                Refusal::Denied(denied),
                Some(self.describe.clone()),
            )),
        }
    }
}

impl Principal {
    /// Checks the right to delete configuration (a heartbeat, an integration) owned as
    /// `resource`: `integrations:write` there and, for an integration key, its integration's
    /// delete access (Opsgenie's "configuration (+ write/delete)").
    pub fn require_configuration_delete(&self, resource: &Resource) -> ApiResult<()> {
        self.require(Permission::IntegrationsWrite, resource)?;
        match &self.integration {
            Some(i) if !i.flags.deletes_configuration() => {
                let (message, fix) = policy::configuration_delete_refusal(&self.describe);
                Err(ApiError::ForbiddenWithFix {
                    code: "permission_denied",
                    message,
                    fix,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Built-in and custom roles of one organization, by name.
pub struct RoleBook(HashMap<String, Role>);

/// What every credential of an organization shares: its roles and its settings. Kept per
/// organization beside the credential cache and dropped with it (every role or settings
/// change invalidates credentials, here and on the other nodes), so a key that is not in the
/// cache costs its own rows only.
pub struct OrgContext {
    pub roles: RoleBook,
    pub org: Organization,
}

impl OrgContext {
    pub async fn get(app: &App, org: &OrgId) -> ApiResult<Arc<OrgContext>> {
        if let Some(hit) = app.orgs.get(org) {
            return Ok(hit);
        }
        let generation = app.generation.load(Ordering::SeqCst);
        let context = Arc::new(OrgContext {
            roles: RoleBook::load(app, org).await?,
            org: app.store.get_org(org).await?,
        });
        // As in `lookup`: an invalidation that ran meanwhile must not be outlived.
        app.orgs.insert(org.clone(), context.clone());
        if app.generation.load(Ordering::SeqCst) != generation {
            app.orgs.remove(org);
        }
        Ok(context)
    }
}

impl RoleBook {
    pub async fn load(app: &App, org: &OrgId) -> ApiResult<RoleBook> {
        let mut map: HashMap<String, Role> = builtin_roles()
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        for r in app.store.list_custom_roles(org).await? {
            map.insert(r.name.clone(), r);
        }
        Ok(RoleBook(map))
    }

    pub fn get(&self, name: &str) -> Option<&Role> {
        self.0.get(name)
    }

    pub fn perms(&self, names: &[String]) -> PermSet {
        names
            .iter()
            .filter_map(|n| self.0.get(n))
            .fold(PermSet::EMPTY, |acc, r| acc.union(r.permissions))
    }

    pub fn all(&self) -> impl Iterator<Item = &Role> {
        self.0.values()
    }

    /// A user's current grants: the account role, plus each membership's team roles.
    pub async fn user_grants(&self, app: &App, user: &User) -> ApiResult<Grants> {
        let memberships = app.store.memberships_of(&user.org_id, &user.id).await?;
        Ok(self.grants_of(user, memberships))
    }

    /// `user_grants` from memberships already read.
    pub fn grants_of(&self, user: &User, memberships: Vec<Membership>) -> Grants {
        let mut g = Grants::account(self.perms(std::slice::from_ref(&user.role_name)));
        for m in memberships {
            g.add_team(m.team_id, self.perms(&m.team_role_names));
        }
        g
    }

    /// The grants a key holds by its own definition (before any user narrowing).
    pub fn key_grants(&self, key: &ApiKey) -> Grants {
        match key.kind {
            KeyKind::Team => {
                let mut g = Grants::account(self.perms(&key.role_names));
                if let Some(team) = &key.team_id {
                    g.add_team(team.clone(), self.perms(&key.team_role_names));
                }
                g
            }
            KeyKind::Organization => {
                let mut g = Grants::account(self.perms(&key.role_names));
                for team in &key.team_ids {
                    g.add_team(team.clone(), self.perms(&key.team_role_names));
                }
                g
            }
            KeyKind::Personal | KeyKind::Integration => Grants::default(),
        }
    }
}

/// What a key may do right now, and whether something switched it off: personal keys follow
/// their user's current permissions, integration keys their integration's current flags.
pub struct Standing {
    pub grants: Grants,
    pub user: Option<User>,
    pub integration: Option<Integration>,
    pub disabled_reason: Option<String>,
}

pub async fn standing(app: &App, roles: &RoleBook, key: &ApiKey) -> ApiResult<Standing> {
    let mut s = Standing {
        grants: Grants::default(),
        user: None,
        integration: None,
        disabled_reason: None,
    };
    match key.kind {
        KeyKind::Personal => {
            let user_id = key
                .user_id
                .as_ref()
                .ok_or_else(|| ApiError::Internal("personal key without user".into()))?;
            // The user and their memberships are read side by side (both need only the
            // key's user id): on PostgreSQL a key missing from the cache waits for two round
            // trips, not three. (On SQLite both are point reads on this thread.)
            let (user, memberships) = tokio::try_join!(
                app.store.get_user(&key.org_id, user_id),
                app.store.memberships_of(&key.org_id, user_id),
            )?;
            if !user.active {
                s.disabled_reason = Some(format!("its user {} is deactivated", user.name));
            }
            s.grants = roles.grants_of(&user, memberships);
            if key.is_narrowed() {
                // role_names narrow everywhere; team_role_names only what is held within teams.
                let account_mask = roles.perms(&key.role_names);
                let team_mask = account_mask.union(roles.perms(&key.team_role_names));
                let narrowed = s.grants.narrowed(team_mask);
                s.grants = Grants {
                    account: s.grants.account.intersect(account_mask),
                    teams: narrowed.teams,
                };
            }
            s.user = Some(user);
        }
        KeyKind::Team | KeyKind::Organization => s.grants = roles.key_grants(key),
        KeyKind::Integration => {
            let id = key
                .integration_id
                .as_deref()
                .and_then(IntegrationId::parse)
                .ok_or_else(|| ApiError::Internal("integration key without integration".into()))?;
            match app.store.get_integration(&key.org_id, &id).await {
                Ok(integration) => {
                    if !integration.enabled {
                        s.disabled_reason = Some(format!(
                            "its integration `{}` is disabled",
                            integration.name
                        ));
                    }
                    s.grants = integration.flags.grants(integration.team_id.as_ref());
                    s.integration = Some(integration);
                }
                // Deleting an integration revokes its keys; this only covers the moment between.
                Err(tocsin_store::StoreError::NotFound) => {
                    s.disabled_reason = Some("its integration was deleted".into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(s)
}

/// Builds the principal for a key.
pub async fn principal_for_key(
    app: &App,
    key: ApiKey,
    grace: Option<OffsetDateTime>,
) -> ApiResult<Principal> {
    let context = OrgContext::get(app, &key.org_id).await?;
    let standing = standing(app, &context.roles, &key).await?;
    let state = CredentialState {
        expires_at: key.expires_at,
        revoked_at: key.revoked_at,
        revoked_by_name: key.revoked_by.as_ref().map(|a| a.name.clone()),
        grace_period_ends_at: grace,
        disabled_reason: standing.disabled_reason,
        allowed_cidrs: key
            .allowed_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
    };
    // A personal key without roles of its own acts with its user's: name that role, not
    // "no roles".
    let role_names = match &standing.user {
        Some(user) if !key.is_narrowed() => {
            vec![format!("{} (its user's role)", user.role_name)]
        }
        _ => key.role_names.clone(),
    };
    let describe = Describe {
        kind: format!("{} key", key.kind.name()),
        name: key.name.clone(),
        role_names,
        team_role_names: key.team_role_names.clone(),
        flags: standing.integration.as_ref().map(|i| i.flags),
    };
    let key_actor = Actor {
        kind: "api_key".into(),
        id: key.id.to_string(),
        name: key.name.clone(),
    };
    let (actor, creator) = match (&standing.user, key.kind) {
        (Some(user), _) => (
            AuditActor {
                kind: "user".into(),
                id: user.id.to_string(),
                name: user.name.clone(),
            },
            Actor {
                kind: "user".into(),
                id: user.id.to_string(),
                name: user.name.clone(),
            },
        ),
        (None, KeyKind::Integration) => (
            AuditActor {
                kind: "integration".into(),
                id: key.integration_id.clone().unwrap_or_default(),
                name: standing
                    .integration
                    .as_ref()
                    .map(|i| i.name.clone())
                    .unwrap_or_else(|| key.name.clone()),
            },
            key_actor,
        ),
        (None, _) => {
            let sa = key
                .service_account_id
                .clone()
                .ok_or_else(|| ApiError::Internal("key without service account".into()))?;
            let name = app.store.get_service_account_name(&key.org_id, &sa).await?;
            (
                AuditActor {
                    kind: "service_account".into(),
                    id: sa.to_string(),
                    name,
                },
                key_actor,
            )
        }
    };
    let org = context.org.clone();
    Ok(Principal {
        org_id: key.org_id.clone(),
        org,
        token_hint: key.token_hint.clone(),
        key: Some(key),
        user: standing.user,
        integration: standing.integration,
        grants: standing.grants,
        describe,
        actor,
        creator,
        state,
        last_reported: AtomicI64::new(0),
        whoami: Default::default(),
        caller: Default::default(),
    })
}

async fn principal_for_session(
    app: &App,
    digest: &TokenDigest,
    hint: String,
) -> ApiResult<Option<Principal>> {
    let Some(session) = app.store.find_session(digest).await? else {
        return Ok(None);
    };
    let user = app
        .store
        .get_user(&session.org_id, &session.user_id)
        .await?;
    let context = OrgContext::get(app, &session.org_id).await?;
    let grants = context.roles.user_grants(app, &user).await?;
    let state = CredentialState {
        expires_at: session.expires_at,
        revoked_at: None,
        revoked_by_name: None,
        grace_period_ends_at: None,
        disabled_reason: (!user.active).then(|| format!("user {} is deactivated", user.name)),
        allowed_cidrs: vec![],
    };
    let describe = Describe {
        kind: "session of user".into(),
        name: user.email.clone(),
        role_names: vec![user.role_name.clone()],
        team_role_names: vec![],
        flags: None,
    };
    let actor = AuditActor {
        kind: "user".into(),
        id: user.id.to_string(),
        name: user.name.clone(),
    };
    let creator = Actor {
        kind: "user".into(),
        id: user.id.to_string(),
        name: user.name.clone(),
    };
    let org = context.org.clone();
    Ok(Some(Principal {
        org_id: session.org_id,
        org,
        key: None,
        user: Some(user),
        integration: None,
        grants,
        describe,
        actor,
        creator,
        state,
        token_hint: hint,
        last_reported: AtomicI64::new(0),
        whoami: Default::default(),
        caller: Default::default(),
    }))
}

/// Looks a parsed token up: the cache, or the store on a miss.
pub async fn lookup(app: &App, token: &Token) -> ApiResult<Option<Arc<Principal>>> {
    let digest = app.hasher.digest(token);
    if let Some(hit) = app.cache.get(&digest) {
        app.cache_hits.fetch_add(1, Ordering::Relaxed);
        return Ok(hit);
    }
    // Boxed: the store's read is a future of several KB, and every request's future (the
    // door's, moved whole into its box) would carry that space for the rare miss (issue #5).
    Box::pin(lookup_uncached(app, token, digest)).await
}

/// A cache miss: reads the key (or session) from the store and caches what it found.
async fn lookup_uncached(
    app: &App,
    token: &Token,
    digest: TokenDigest,
) -> ApiResult<Option<Arc<Principal>>> {
    app.cache_misses.fetch_add(1, Ordering::Relaxed);
    let generation = app.generation.load(Ordering::SeqCst);
    let found = if token.kind() == TokenKind::Session {
        principal_for_session(app, &digest, token.hint())
            .await?
            .map(Arc::new)
    } else {
        match app.store.find_key_by_digest(&digest).await? {
            Some((key, m)) if KeyKind::from_token_kind(token.kind()) == Some(key.kind) => {
                let grace = if m.is_current {
                    None
                } else {
                    m.grace_ends_at.or(Some(OffsetDateTime::UNIX_EPOCH))
                };
                let mut p = principal_for_key(app, key, grace).await?;
                // During a grace period the previous token's hint is what was presented.
                p.token_hint = token.hint();
                Some(Arc::new(p))
            }
            _ => None,
        }
    };
    // Insert, then re-check: an invalidation that ran meanwhile may have cleared the cache
    // before this insert, and the entry would then outlive the change it predates.
    app.cache.insert(digest, found.clone());
    if app.generation.load(Ordering::SeqCst) != generation {
        app.cache.remove(&digest);
    }
    Ok(found)
}

/// The credential of a request, from `Authorization: Bearer|GenieKey <token>`.
/// Opsgenie's legacy `?apiKey=` on `/v2` routes, when the operator allows it; the header wins.
pub fn query_api_key<'a>(app: &App, path: &str, query: Option<&'a str>) -> Option<&'a str> {
    if !app.settings.allow_query_api_key || !path.starts_with("/v2/") {
        return None;
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("apiKey="))
}

pub fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("geniekey") {
        Some(rest.trim_start_matches(' '))
    } else {
        None
    }
}

/// What is wrong with an `Authorization` header that `credential` found no token in, in
/// words for the refusal; `None` when no such header was sent. Never repeats the header's
/// value: it may be a token.
pub fn header_problem(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?;
    let Ok(value) = value.to_str() else {
        return Some("its value is not plain ASCII text".into());
    };
    let value = value.trim();
    Some(match value.split_once(' ') {
        _ if value.is_empty() => "it is empty".into(),
        None if value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("geniekey") => {
            format!("it names the scheme `{value}` and no token after it")
        }
        None if value.starts_with("tcs_") => {
            "it holds a token without a scheme: put `Bearer ` before the token".into()
        }
        None => "it has no scheme (`Bearer` or `GenieKey`) before its value".into(),
        Some((scheme, _))
            if scheme.len() <= 20
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            format!("its scheme `{scheme}` is not one Tocsin accepts")
        }
        Some(_) => "its scheme is not one Tocsin accepts".into(),
    })
}

/// Why a request was not authenticated.
pub enum AuthFailure {
    /// A refusal, with the principal when the key was identified (for the audit trail).
    Refused(Refusal, Option<Arc<Principal>>),
    /// The store could not be asked; never reported as an unknown key.
    Unavailable(ApiError),
    /// Identified, but the request itself is refused (a cookie without its CSRF token).
    Forbidden(ApiError, Arc<Principal>),
}

/// Runs the checks up to (not including) the permission check, in SPEC order.
pub async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    query_key: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<Arc<Principal>, AuthFailure> {
    let Some(raw) = credential(headers).or(query_key) else {
        let header = header_problem(headers);
        return Err(AuthFailure::Refused(
            Refusal::MissingCredentials {
                header,
                ignored_query_key: false,
            },
            None,
        ));
    };
    let token =
        Token::parse(raw).map_err(|e| AuthFailure::Refused(Refusal::MalformedToken(e), None))?;
    if token.region() != app.settings.region {
        let region = token.region().to_owned();
        let url = app.settings.regions.get(&region).cloned();
        return Err(AuthFailure::Refused(
            Refusal::WrongRegion { region, url },
            None,
        ));
    }
    let principal = match lookup(app, &token).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(AuthFailure::Refused(Refusal::UnknownKey, None)),
        // A database that cannot be reached answers 503 `store_unavailable` with
        // Retry-After (error.rs), as a refused write does; anything else stays a 500.
        Err(ApiError::Unavailable { message, detail }) => {
            return Err(AuthFailure::Unavailable(ApiError::Unavailable {
                message,
                detail: format!("credential lookup failed: {detail}"),
            }));
        }
        Err(e) => {
            return Err(AuthFailure::Unavailable(ApiError::Internal(format!(
                "credential lookup failed: {e:?}"
            ))));
        }
    };
    match policy::check_state(&principal.state, OffsetDateTime::now_utc(), ip) {
        Ok(()) => Ok(principal),
        Err(refusal) => Err(AuthFailure::Refused(refusal, Some(principal))),
    }
}

/// The route request events and metrics name when no route matched the path: bounded text,
/// never the client's path.
pub const UNMATCHED: &str = "unmatched";

/// Whether a request carries a key (an `Authorization` header, well-formed or not, or the
/// legacy `?apiKey=` where allowed). The console's session cookie does not count: a browser
/// sends it to any path of the site (`/favicon.ico`, a mistyped console address), which is no
/// request made with a key.
fn presents_credential(app: &App, req: &Request) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || query_api_key(app, req.uri().path(), req.uri().query()).is_some()
}

/// Routes that need no credential (SPEC: login; operations endpoints).
pub fn is_public(route: &str) -> bool {
    matches!(
        route,
        "/v1/auth/login"
            | "/v1/auth/console/login"
            | "/"
            | "/console/{file}"
            | "/healthz"
            | "/readyz"
            | "/metrics"
            | "/openapi.json"
    )
}

pub fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client's `User-Agent` as audit events keep it: its first 256 characters.
fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

fn request_id(extensions: &axum::http::Extensions) -> Option<uuid::Uuid> {
    extensions.get::<crate::envelope::RequestId>().map(|r| r.id)
}

/// The auth step of the door (lib.rs): authenticates, runs the handler, records the audit
/// event and last use.
/// `route` is the matched route's template (`route_text`), `None` when no route matched;
/// `next` runs the rest of the request (the route's handler).
pub(crate) async fn run<F: Future<Output = Response>>(
    app: &App,
    mut req: Request,
    route: Option<&'static str>,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let route = match route {
        Some(route) => route,
        // No route has this path. A request that presents no credential is answered the 404
        // as it is; one that does is a request made with a key, and passes the door as any
        // other so that the audit trail has it (a stolen key probing the API leaves a
        // trace): under the route `UNMATCHED`, never the raw path.
        None if presents_credential(app, &req) => UNMATCHED,
        None => return next(req).await,
    };
    if is_public(route) {
        return next(req).await;
    }
    let route = named_alert_action(route, req.method(), req.uri().path());
    let started = std::time::Instant::now();
    let ip = client_ip(req.extensions());
    let method = method_text(req.method());
    let user_agent = user_agent(req.headers()).map(String::into_boxed_str);
    let request_id = request_id(req.extensions());
    let target = target_of(route, req.uri().path());
    let query_key = query_api_key(app, req.uri().path(), req.uri().query()).map(str::to_owned);
    // The console's cookie counts only when no other credential is sent (console_session.rs).
    let cookie = crate::console_session::cookie_credential(req.headers(), query_key.is_some());
    let mut outcome = authenticate(app, req.headers(), query_key.as_deref().or(cookie), ip).await;
    // A key sent as Opsgenie's legacy `?apiKey=` where it is not read: the refusal says so,
    // not that nothing was sent.
    if let Err(AuthFailure::Refused(
        Refusal::MissingCredentials {
            header: None,
            ignored_query_key,
        },
        _,
    )) = &mut outcome
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("apiKey=")))
    {
        *ignored_query_key = true;
    }
    let outcome = match (outcome, cookie) {
        (Ok(p), Some(cookie)) => {
            crate::console_session::check_csrf(app, req.method(), req.headers(), cookie, p)
        }
        (other, _) => other,
    };
    hot_metrics()
        .verification
        .record(started.elapsed().as_secs_f64());
    // Each way out of this layer records one event at most, so the request's own values move
    // into it rather than being copied.
    let record =
        move |principal: Option<&Principal>, outcome: &'static str, status: u16| RequestRecord {
            occurred_at: OffsetDateTime::now_utc(),
            caller: principal.map(|p| p.caller().clone()),
            outcome,
            method,
            route: Cow::Borrowed(route),
            status,
            ip,
            user_agent,
            request_id,
            target: target.map(Box::new),
        };
    let principal = match outcome {
        Ok(p) => p,
        Err(AuthFailure::Unavailable(e)) => return e.into_response(),
        Err(AuthFailure::Forbidden(e, principal)) => {
            let resp = e.into_response();
            let code = resp
                .extensions()
                .get::<ErrorInfo>()
                .map_or("forbidden", |i| i.code);
            count_outcome(code, resp.status().as_u16());
            let event = record(Some(&principal), code, resp.status().as_u16());
            app.audit.record_request(event).await;
            return resp;
        }
        Err(AuthFailure::Refused(refusal, principal)) => {
            let describe = principal.as_ref().map(|p| p.describe.clone());
            // Guessing tokens is throttled per client address; valid keys never pass here.
            let counted = matches!(
                refusal,
                Refusal::MalformedToken(_)
                    | Refusal::UnknownKey
                    | Refusal::RevokedKey { .. }
                    | Refusal::ExpiredKey { .. }
            );
            let throttled = if counted {
                app.failed_auth_throttle(ip).await
            } else {
                None
            };
            let (resp, outcome) = match throttled {
                Some(retry_after) => (
                    ApiError::RateLimited {
                        message: format!(
                            "Too many failed authentications from {} (more than {} a minute); try again in {retry_after} s. Check the token with `tocsin doctor <token>`.",
                            ip.map(|i| i.to_string()).unwrap_or_default(),
                            app.settings.failed_auth_per_minute
                        ),
                        retry_after,
                        limit: None,
                    }
                    .into_response(),
                    "rate_limited",
                ),
                None => (ApiError::refused(refusal.clone(), describe).into_response(), refusal.code()),
            };
            // Counted as answered: a throttled guess is `rate_limited`, as its audit event says.
            metrics::counter!("tocsin_auth_outcomes_total", "code" => outcome).increment(1);
            let event = record(principal.as_deref(), outcome, resp.status().as_u16());
            app.audit.record_request(event).await;
            return resp;
        }
    };
    if let Some(key) = &principal.key
        && let Some(limit) = key.rate_limit
        && let domain = crate::rate_limit::Domain::of(req.method(), req.uri().path())
        && let Some(retry_after) = app.key_over_limit(&key.id, domain, limit).await
    {
        metrics::counter!("tocsin_auth_outcomes_total", "code" => "rate_limited").increment(1);
        let resp = ApiError::RateLimited {
            message: format!(
                "{} may make {limit} {} per minute (its rate_limit, which each part of the API counts on its own) and has used them; try again in {retry_after} s. A holder of api_keys:write for this key can raise the limit: PATCH /v1/api_keys/{} {{\"rate_limit\": <requests per minute>}}.",
                principal.describe.summary(),
                domain.describe(),
                key.id
            ),
            retry_after,
            limit: Some(limit),
        }
        .into_response();
        let event = record(Some(&principal), "rate_limited", resp.status().as_u16());
        app.audit.record_request(event).await;
        return resp;
    }
    req.extensions_mut().insert(principal.clone());
    if !app.settings.track_requests {
        let resp = next(req).await;
        count_outcome(outcome_of(&resp), resp.status().as_u16());
        return resp;
    }
    note_use(app, &principal, ip);
    let mut resp = next(req).await;
    let outcome = outcome_of(&resp);
    count_outcome(outcome, resp.status().as_u16());
    let mut event = record(Some(&principal), outcome, resp.status().as_u16());
    if let Some(named) = resp.extensions_mut().remove::<AuditTarget>() {
        // The handler names the object better than the path can: what a create made, the
        // alert an alias or tiny id resolved to.
        event.target = Some(Box::new(named));
    }
    app.audit.record_request(event).await;
    resp
}

/// A request's outcome past the door: `allowed`, or the code of the error it was answered
/// with (`validation_failed`, `not_found`, `permission_denied`, `escalation_denied`...), so
/// that `GET /v1/audit_events?outcome=` finds those too. An error the framework answered
/// (405 for a method the route does not take, 413 for a body over the limit) has no
/// `ErrorInfo` yet, which the envelope adds later: its code is the one the envelope will
/// send. No allocation: a lookup in the response's extensions, and a status check.
fn outcome_of(resp: &Response) -> &'static str {
    match resp.extensions().get::<ErrorInfo>() {
        Some(info) => info.code,
        None if resp.status().is_client_error() || resp.status().is_server_error() => {
            crate::envelope::framework_code(resp.status())
        }
        None => "allowed",
    }
}

/// Counts a request that passed the door in `tocsin_auth_outcomes_total`: a refusal made
/// past it (401, 403, 429: `permission_denied`, `scope_denied`, `escalation_denied`, a
/// console request without its CSRF token...) under its own code, anything else (an answer,
/// or an error that is not a refusal, such as `validation_failed` or `not_found`) as
/// `allowed`, since authentication and authorization let it through. The allowed counter is
/// a handle registered once; a refusal's is looked up by its code.
fn count_outcome(outcome: &'static str, status: u16) {
    if matches!(status, 401 | 403 | 429) && outcome != "allowed" {
        metrics::counter!("tocsin_auth_outcomes_total", "code" => outcome).increment(1);
    } else {
        hot_metrics().allowed.increment(1);
    }
}

/// The metrics every request touches, registered once: the registry's lookup by name and
/// labels cost more per request than the update itself.
struct HotMetrics {
    verification: metrics::Histogram,
    allowed: metrics::Counter,
}

fn hot_metrics() -> &'static HotMetrics {
    static HOT: std::sync::OnceLock<HotMetrics> = std::sync::OnceLock::new();
    HOT.get_or_init(|| {
        // The recorder is installed before the handles are taken, or they would record nothing.
        crate::routes::ops::prometheus();
        HotMetrics {
            verification: metrics::histogram!("tocsin_key_verification_seconds"),
            allowed: metrics::counter!("tocsin_auth_outcomes_total", "code" => "allowed"),
        }
    })
}

/// A request's method as its audit event stores it; the common ones are not copied.
fn method_text(method: &axum::http::Method) -> Cow<'static, str> {
    use axum::http::Method;
    Cow::Borrowed(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => return Cow::Owned(method.as_str().to_owned()),
    })
}

/// The request behind a change, for the audit event the change records (a key's lifecycle
/// event): the method, route, client address, user agent and request id that the request's
/// own `http.request` event has. Read only by the handlers that record such events.
pub struct RequestFacts {
    method: Cow<'static, str>,
    route: Option<&'static str>,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    request_id: Option<uuid::Uuid>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestFacts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestFacts {
            method: method_text(&parts.method),
            route: parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|m| route_text(m.as_str())),
            ip: client_ip(&parts.extensions),
            user_agent: user_agent(&parts.headers),
            request_id: request_id(&parts.extensions),
        })
    }
}

impl RequestFacts {
    /// Fills `r`'s request fields; `status` is what the request answers when the change
    /// goes through.
    pub fn fill(&self, r: &mut tocsin_store::audit::AuditRecord, status: u16) {
        r.method = Some(self.method.clone().into_owned());
        r.route = self.route.map(str::to_owned);
        r.status = Some(status);
        r.ip = self.ip.map(tocsin_store::audit::ip_text);
        r.user_agent = self.user_agent.clone();
        r.request_id = self.request_id.map(|u| u.hyphenated().to_string());
    }
}

/// A route template as request events store it. Templates come from the router, so there
/// are only so many: each is kept once for the life of the process and not copied again.
pub(crate) fn route_text(route: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static ROUTES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    // The router's own templates, not a client's text: a fast fixed hash (issue #5).
    thread_local! {
        static SEEN: std::cell::RefCell<HashSet<&'static str, foldhash::fast::FixedState>> =
            Default::default();
    }
    SEEN.with_borrow_mut(|seen| {
        if let Some(&r) = seen.get(route) {
            return r;
        }
        let mut all = ROUTES.lock().unwrap_or_else(|p| p.into_inner());
        let all = all.get_or_insert_with(HashSet::new);
        let r = match all.get(route) {
            Some(&r) => r,
            None => {
                let r: &'static str = Box::leak(route.to_owned().into_boxed_str());
                all.insert(r);
                r
            }
        };
        seen.insert(r);
        r
    })
}

/// The route of every alert action (`routes::alerts`): its requests are recorded under the
/// template with the action named, `/v2/alerts/{identifier}/close`, so that the trail tells
/// a close from an acknowledge. A verb the route does not know keeps the general template.
fn named_alert_action(
    route: &'static str,
    method: &axum::http::Method,
    path: &str,
) -> &'static str {
    const ACTION: &str = "/v2/alerts/{identifier}/{action}";
    if route != ACTION {
        return route;
    }
    /// Each verb's template, written out: no allocation per request.
    const NAMED: &[&str] = &[
        "/v2/alerts/{identifier}/acknowledge",
        "/v2/alerts/{identifier}/unacknowledge",
        "/v2/alerts/{identifier}/close",
        "/v2/alerts/{identifier}/notes",
        "/v2/alerts/{identifier}/snooze",
        "/v2/alerts/{identifier}/tags",
        "/v2/alerts/{identifier}/details",
        "/v2/alerts/{identifier}/assign",
        "/v2/alerts/{identifier}/teams",
        "/v2/alerts/{identifier}/responders",
        "/v2/alerts/{identifier}/escalate",
        "/v2/alerts/{identifier}/message",
        "/v2/alerts/{identifier}/description",
        "/v2/alerts/{identifier}/priority",
        "/v2/alerts/{identifier}/logs",
        "/v2/alerts/{identifier}/recipients",
    ];
    match path.rsplit('/').next() {
        Some(verb) if crate::routes::alerts::action_verb_known(method.as_str(), verb) => NAMED
            .iter()
            .find(|t| t.rsplit('/').next() == Some(verb))
            .copied()
            .unwrap_or(route),
        _ => route,
    }
}

/// Hands a use to the last-used tracker at most once every 30 seconds per credential.
fn note_use(app: &App, p: &Principal, ip: Option<IpAddr>) {
    let Some(key) = &p.key else { return };
    let now = OffsetDateTime::now_utc();
    let secs = now.unix_timestamp();
    let last = p.last_reported.load(Ordering::Relaxed);
    if secs - last >= 30
        && p.last_reported
            .compare_exchange(last, secs, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        app.last_used
            .record(&key.id, now, &ip.map(|i| i.to_string()).unwrap_or_default());
    }
}

/// The teams of a key, for team-scoped grants ("a key is a team's when it is that team's team key").
pub fn key_teams(key: &ApiKey) -> Vec<TeamId> {
    match key.kind {
        // An integration key records its integration's team as its team_id.
        KeyKind::Team | KeyKind::Integration => key.team_id.iter().cloned().collect(),
        // An organization key spans teams but belongs to none: only account grants reach it.
        _ => vec![],
    }
}

/// The object a request addresses, from its route and path: `/v1/api_keys/{id}/rotate`
/// targets the API key `{id}`.
fn target_of(route: &str, path: &str) -> Option<AuditTarget> {
    // Most requests' routes name no object; splitting their paths cost more than the rest of
    // this function.
    if !route.contains('{') {
        return None;
    }
    let mut template = route.split('/');
    let mut actual = path.split('/');
    let (_, _, collection) = (template.next()?, template.next()?, template.next()?);
    let (_, _, _) = (actual.next()?, actual.next()?, actual.next()?);
    let (param, id) = (template.next()?, actual.next()?);
    if !param.starts_with('{') || id.is_empty() || id.len() > 200 {
        return None;
    }
    let kind = match collection {
        "api_keys" => "api_key",
        "teams" => "team",
        "users" => "user",
        "roles" => "role",
        "alerts" => "alert",
        "integrations" => "integration",
        "heartbeats" => "heartbeat",
        other => other,
    };
    Some(AuditTarget {
        kind: kind.to_owned(),
        // A token pasted where an id belongs is not kept in the audit trail.
        id: tocsin_core::token::redact(id).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every verb the alert action route answers is recorded under its own template.
    #[test]
    fn every_alert_action_is_named_in_the_trail() {
        const ACTION: &str = "/v2/alerts/{identifier}/{action}";
        let verbs = [
            "acknowledge",
            "unacknowledge",
            "close",
            "notes",
            "snooze",
            "tags",
            "details",
            "assign",
            "teams",
            "responders",
            "escalate",
            "message",
            "description",
            "priority",
            "logs",
            "recipients",
        ];
        let mut named = 0;
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let m = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
            for verb in verbs {
                let route = named_alert_action(ACTION, &m, &format!("/v2/alerts/x/{verb}"));
                if crate::routes::alerts::action_verb_known(method, verb) {
                    assert_eq!(route, format!("/v2/alerts/{{identifier}}/{verb}"));
                    named += 1;
                } else {
                    assert_eq!(route, ACTION, "{method} {verb}");
                }
            }
        }
        assert_eq!(named, 19);
        let post = axum::http::Method::POST;
        assert_eq!(
            named_alert_action(ACTION, &post, "/v2/alerts/x/reopen"),
            ACTION
        );
        assert_eq!(
            named_alert_action("/v1/teams", &post, "/v1/teams"),
            "/v1/teams"
        );
    }
}
