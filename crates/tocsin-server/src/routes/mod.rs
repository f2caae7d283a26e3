//! The router, and the route table that the OpenAPI document and `explain` are built from.
//! One module per resource; request types live beside their handlers.

pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod console;
pub mod heartbeats;
pub mod identity;
pub mod integrations;
pub mod openapi;
pub mod ops;
pub mod opsgenie;
pub mod organization;
pub mod roles;
pub mod teams;
pub mod users;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post, put};
use serde::Deserialize;
use tocsin_core::permission::Permission;

/// What a route needs, as `explain` reports it.
#[derive(Clone, Copy, Debug)]
pub enum Needs {
    /// No credential at all.
    Public,
    /// Any valid credential.
    Authenticated,
    /// A permission on the organization.
    Org(Permission),
    /// A permission on the collection: team grants see their part, and create in their team
    /// (the one the body names: a create route's object belongs where its body puts it).
    AnyTeam(Permission),
    /// A permission on the team named by the path's `{id}`.
    Team(Permission),
    /// `teams:write` account-wide, or the `team_admin` role in the team named by the path's
    /// `{id}` (membership changes: `teams::require_member_manager`).
    TeamMembers,
    /// A permission on the key named by the path's `{id}` (its team, if any).
    Key(Permission),
    /// A permission on the integration named by the path's `{id}` (its team, if any).
    Integration(Permission),
    /// A permission on the alert named by the path's `{identifier}` (its teams).
    Alert(Permission),
}

pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub needs: Needs,
}

macro_rules! routes_table {
    ($( $method:literal $path:literal $needs:expr, $summary:literal; )+) => {
        pub const ROUTES: &[RouteInfo] = &[ $( RouteInfo { method: $method, path: $path, needs: $needs, summary: $summary } ),+ ];
    };
}

use Needs::*;
use Permission::*;
routes_table! {
    "GET" "/healthz" Public, "Process is up";
    "GET" "/readyz" Public, "Database is reachable and taking writes";
    "GET" "/metrics" Public, "Prometheus metrics";
    "GET" "/openapi.json" Public, "This OpenAPI document";
    "GET" "/" Public, "The web console (HTML)";
    "GET" "/console/{file}" Public, "The web console's scripts, styles and images";
    "POST" "/v1/auth/login" Public, "Log in with email and password; returns a 12-hour session token";
    "POST" "/v1/auth/console/login" Public, "Console sign-in: the session goes into an HttpOnly cookie; returns the CSRF token";
    "GET" "/v1/auth/console/session" Authenticated, "The signed-in console user and the session's CSRF token";
    "POST" "/v1/auth/console/logout" Authenticated, "End the console session and clear its cookie";
    "GET" "/v1/auth/whoami" Authenticated, "The calling credential, its roles and effective permissions";
    "POST" "/v1/auth/explain" Authenticated, "Would a route or permission be allowed, and why";
    "GET" "/v1/permissions" Authenticated, "The permission catalog";
    "GET" "/v1/organization" Authenticated, "The caller's organization and its settings";
    "PATCH" "/v1/organization" Org(SettingsWrite), "Change the organization's name or key expiry maximum (max_key_days)";
    "GET" "/v1/users" Org(UsersRead), "List users";
    "POST" "/v1/users" Org(UsersWrite), "Create a user";
    "GET" "/v1/users/{id}" Org(UsersRead), "Get a user";
    "PATCH" "/v1/users/{id}" Org(UsersWrite), "Change a user's name, role or active flag";
    "GET" "/v1/teams" AnyTeam(TeamsRead), "List teams";
    "POST" "/v1/teams" Org(TeamsWrite), "Create a team";
    "GET" "/v1/teams/{id}" Team(TeamsRead), "Get a team";
    "PATCH" "/v1/teams/{id}" Team(TeamsWrite), "Change a team";
    "DELETE" "/v1/teams/{id}" Org(TeamsWrite), "Delete a team";
    "GET" "/v1/teams/{id}/members" Team(TeamsRead), "List a team's members, newest membership first";
    "PUT" "/v1/teams/{id}/members/{user_id}" TeamMembers, "Add a member or set their team roles";
    "DELETE" "/v1/teams/{id}/members/{user_id}" TeamMembers, "Remove a member";
    "GET" "/v1/roles" AnyTeam(RolesRead), "List the built-in roles, then the custom roles, each by name";
    "POST" "/v1/roles" Org(RolesWrite), "Create a custom role";
    "PATCH" "/v1/roles/{name}" Org(RolesWrite), "Change a custom role";
    "DELETE" "/v1/roles/{name}" Org(RolesWrite), "Delete a custom role";
    "POST" "/v1/api_keys" Authenticated, "Create an API key; the token is shown once";
    "GET" "/v1/api_keys" Authenticated, "List the keys the caller may see";
    "GET" "/v1/api_keys/{id}" Key(ApiKeysRead), "Get a key (never its token)";
    "PATCH" "/v1/api_keys/{id}" Key(ApiKeysWrite), "Change a key's name, description, roles, networks or expiry";
    "POST" "/v1/api_keys/{id}/rotate" Key(ApiKeysWrite), "Issue a new token; the old one works until the grace period ends";
    "POST" "/v1/api_keys/{id}/revoke" Key(ApiKeysWrite), "Revoke a key at once (idempotent)";
    "GET" "/v1/audit_events" Org(AuditRead), "The audit trail, newest first";
    "GET" "/v1/integrations" AnyTeam(IntegrationsRead), "List API integrations";
    "POST" "/v1/integrations" AnyTeam(IntegrationsWrite), "Create an API integration; its first key's token is shown once";
    "GET" "/v1/integrations/{id}" Integration(IntegrationsRead), "Get an integration";
    "PATCH" "/v1/integrations/{id}" Integration(IntegrationsWrite), "Change an integration's name, access flags or enabled; its keys follow at once";
    "DELETE" "/v1/integrations/{id}" Integration(IntegrationsWrite), "Delete an integration and revoke its keys";
    "POST" "/v2/alerts" AnyTeam(AlertsWrite), "Create an alert (Opsgenie); an open alert with the same alias is counted instead";
    "GET" "/v2/alerts" AnyTeam(AlertsRead), "List alerts with Opsgenie's query syntax, sort, order, offset and limit";
    "GET" "/v2/alerts/count" AnyTeam(AlertsRead), "Count the alerts a query matches";
    "GET" "/v2/alerts/requests/{id}" AnyTeam(AlertsRead), "What became of an asynchronous (202) request";
    "GET" "/v2/alerts/saved-searches" Authenticated, "Saved searches: not implemented yet (501)";
    "POST" "/v2/alerts/saved-searches" Authenticated, "Saved searches: not implemented yet (501)";
    "GET" "/v2/alerts/saved-searches/{identifier}" Authenticated, "Saved searches: not implemented yet (501)";
    "PATCH" "/v2/alerts/saved-searches/{identifier}" Authenticated, "Saved searches: not implemented yet (501)";
    "DELETE" "/v2/alerts/saved-searches/{identifier}" Authenticated, "Saved searches: not implemented yet (501)";
    "GET" "/v2/alerts/{identifier}/attachments" Authenticated, "Alert attachments: not implemented yet (501)";
    "POST" "/v2/alerts/{identifier}/attachments" Authenticated, "Alert attachments: not implemented yet (501)";
    "GET" "/v2/alerts/{identifier}/attachments/{attachment_id}" Authenticated, "Alert attachments: not implemented yet (501)";
    "DELETE" "/v2/alerts/{identifier}/attachments/{attachment_id}" Authenticated, "Alert attachments: not implemented yet (501)";
    "GET" "/v2/alerts/{identifier}" Alert(AlertsRead), "Get an alert by id, tiny id or alias (identifierType)";
    "DELETE" "/v2/alerts/{identifier}" Alert(AlertsDelete), "Delete an alert";
    "POST" "/v2/alerts/{identifier}/{action}" Alert(AlertsWrite), "acknowledge, unacknowledge, close, snooze, escalate, assign, responders, teams, notes, tags, details";
    "POST" "/v2/alerts/{identifier}/actions/{name}" Alert(AlertsWrite), "Run one of the alert's custom actions";
    "PUT" "/v2/alerts/{identifier}/{action}" Alert(AlertsWrite), "Update the message, description or priority";
    "DELETE" "/v2/alerts/{identifier}/{action}" Alert(AlertsWrite), "Remove tags (?tags=a,b) or details (?keys=a,b)";
    "GET" "/v2/alerts/{identifier}/{action}" Alert(AlertsRead), "notes, logs or recipients of an alert";
    "GET" "/v2/integrations" AnyTeam(IntegrationsRead), "List integrations (Opsgenie shape; type, teamId, teamName filters)";
    "POST" "/v2/integrations" AnyTeam(IntegrationsWrite), "Create an API integration (Opsgenie shape); the response carries its apiKey once";
    "POST" "/v2/integrations/authenticate" Authenticated, "Check that the calling key belongs to an integration of a type";
    "GET" "/v2/integrations/{id}" Integration(IntegrationsRead), "Get an integration (Opsgenie shape)";
    "PUT" "/v2/integrations/{id}" Integration(IntegrationsWrite), "Replace an integration's name, flags and enabled";
    "DELETE" "/v2/integrations/{id}" Integration(IntegrationsWrite), "Delete an integration and revoke its keys";
    "POST" "/v2/integrations/{id}/{action}" Integration(IntegrationsWrite), "enable or disable an integration";
    "GET" "/v2/integrations/{id}/actions" Authenticated, "Integration actions: not implemented yet (501)";
    "PUT" "/v2/integrations/{id}/actions" Authenticated, "Integration actions: not implemented yet (501)";
    "POST" "/v2/integrations/{id}/actions" Authenticated, "Integration actions: not implemented yet (501)";
    "GET" "/v2/account" Authenticated, "The account (organization): name, user count, plan";
    "GET" "/v2/heartbeats" AnyTeam(IntegrationsRead), "List heartbeats (under data.heartbeats)";
    "POST" "/v2/heartbeats" AnyTeam(IntegrationsWrite), "Create a heartbeat: name, interval, intervalUnit, enabled, ownerTeam, alertMessage, alertTags, alertPriority";
    "GET" "/v2/heartbeats/{name}" AnyTeam(IntegrationsRead), "Get a heartbeat";
    "PATCH" "/v2/heartbeats/{name}" AnyTeam(IntegrationsWrite), "Change a heartbeat";
    "DELETE" "/v2/heartbeats/{name}" AnyTeam(IntegrationsWrite), "Delete a heartbeat";
    "POST" "/v2/heartbeats/{name}/ping" AnyTeam(AlertsWrite), "Ping a heartbeat (alerts:write where it belongs); answers PONG";
    "POST" "/v2/heartbeats/{name}/{action}" AnyTeam(IntegrationsWrite), "enable or disable a heartbeat";
    "PUT" "/v2/heartbeats/{name}/{action}" AnyTeam(IntegrationsWrite), "enable or disable a heartbeat (as POST; Opsgenie's migration guide says PUT works too)";
    "PATCH" "/v2/heartbeats/{name}/{action}" AnyTeam(IntegrationsWrite), "enable or disable a heartbeat (as POST; Opsgenie's migration guide says PATCH works too)";
    "GET" "/v2/heartbeats/{name}/ping" AnyTeam(AlertsWrite), "Ping a heartbeat (alerts:write where it belongs); answers PONG";
    "PUT" "/v2/heartbeats/{name}/ping" AnyTeam(AlertsWrite), "Ping a heartbeat (alerts:write where it belongs); answers PONG";
    "PATCH" "/v2/heartbeats/{name}/ping" AnyTeam(AlertsWrite), "Ping a heartbeat (alerts:write where it belongs); answers PONG";
}

pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(console::index))
        .route("/console/{file}", get(console::file))
        .route("/v1/auth/login", post(users::login))
        .route("/v1/auth/console/login", post(console::login))
        .route("/v1/auth/console/session", get(console::session))
        .route("/v1/auth/console/logout", post(console::logout))
        .route("/v1/auth/whoami", get(identity::whoami))
        .route("/v1/auth/explain", post(identity::explain))
        .route("/v1/permissions", get(roles::permissions))
        .route(
            "/v1/organization",
            get(organization::show).patch(organization::update),
        )
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{id}", get(users::show).patch(users::update))
        .route("/v1/teams", get(teams::list).post(teams::create))
        .route(
            "/v1/teams/{id}",
            get(teams::show).patch(teams::update).delete(teams::delete),
        )
        .route("/v1/teams/{id}/members", get(teams::members))
        .route(
            "/v1/teams/{id}/members/{user_id}",
            put(teams::put_member).delete(teams::delete_member),
        )
        .route("/v1/roles", get(roles::list).post(roles::create))
        .route(
            "/v1/roles/{name}",
            axum::routing::patch(roles::update).delete(roles::delete),
        )
        .route("/v1/api_keys", get(api_keys::list).post(api_keys::create))
        .route(
            "/v1/api_keys/{id}",
            get(api_keys::show).patch(api_keys::update),
        )
        .route("/v1/api_keys/{id}/rotate", post(api_keys::rotate))
        .route("/v1/api_keys/{id}/revoke", post(api_keys::revoke))
        .route("/v1/audit_events", get(audit::list))
        .route(
            "/v1/integrations",
            get(integrations::list).post(integrations::create),
        )
        .route(
            "/v1/integrations/{id}",
            get(integrations::show)
                .patch(integrations::update)
                .delete(integrations::delete),
        )
        .route("/v2/alerts", get(alerts::list).post(alerts::create))
        .route("/v2/alerts/count", get(alerts::count))
        .route("/v2/alerts/requests/{id}", get(alerts::request_status))
        .route(
            "/v2/alerts/saved-searches",
            get(not_built("Saved searches")).post(not_built("Saved searches")),
        )
        .route(
            "/v2/alerts/saved-searches/{identifier}",
            get(not_built("Saved searches"))
                .patch(not_built("Saved searches"))
                .delete(not_built("Saved searches")),
        )
        .route(
            "/v2/alerts/{identifier}/attachments",
            get(not_built("Alert attachments")).post(not_built("Alert attachments")),
        )
        .route(
            "/v2/alerts/{identifier}/attachments/{attachment_id}",
            get(not_built("Alert attachments")).delete(not_built("Alert attachments")),
        )
        .route(
            "/v2/alerts/{identifier}",
            get(alerts::show).delete(alerts::delete_alert),
        )
        .route(
            "/v2/alerts/{identifier}/{action}",
            post(alerts::post_action)
                .put(alerts::put_field)
                .delete(alerts::delete_field)
                .get(alerts::entries),
        )
        .route(
            "/v2/alerts/{identifier}/actions/{name}",
            post(alerts::custom_action),
        )
        .route(
            "/v2/integrations",
            get(opsgenie::list).post(opsgenie::create),
        )
        .route(
            "/v2/integrations/authenticate",
            post(opsgenie::authenticate),
        )
        .route(
            "/v2/integrations/{id}",
            get(opsgenie::show)
                .put(opsgenie::update)
                .delete(opsgenie::delete),
        )
        .route("/v2/integrations/{id}/{action}", post(opsgenie::toggle))
        .route(
            "/v2/integrations/{id}/actions",
            get(not_built("Integration actions"))
                .put(not_built("Integration actions"))
                .post(not_built("Integration actions")),
        )
        .route("/v2/account", get(opsgenie::account))
        .route(
            "/v2/heartbeats",
            get(heartbeats::list).post(heartbeats::create),
        )
        .route(
            "/v2/heartbeats/{name}",
            get(heartbeats::show)
                .patch(heartbeats::update)
                .delete(heartbeats::delete),
        )
        .route(
            "/v2/heartbeats/{name}/ping",
            get(heartbeats::ping)
                .post(heartbeats::ping)
                .put(heartbeats::ping)
                .patch(heartbeats::ping),
        )
        .route(
            "/v2/heartbeats/{name}/{action}",
            post(heartbeats::toggle)
                .put(heartbeats::toggle)
                .patch(heartbeats::toggle),
        );
    // The crate's own tests add a handler that panics, to show how one is answered (lib.rs).
    #[cfg(test)]
    let router = router
        .route("/v1/test/panic", get(panics))
        .route("/v1/test/internal", get(internal));
    router
        .fallback(|| async { ApiError::NoRoute })
        .with_state(state)
}

/// Sends an action on an alert whose alias (or id) is `requests`, `saved-searches` or `count`
/// to that alert. Those names are also fixed routes (`/v2/alerts/requests/{id}`,
/// `/v2/alerts/saved-searches/{id}`, `/v2/alerts/count`), which the router prefers, so
/// `POST /v2/alerts/requests/close?identifierType=alias` was a 405 and a client could not
/// close its alert. The fixed routes keep what they answer by their own methods (a request
/// status by GET, saved searches by GET, PATCH and DELETE, the count without an
/// `identifierType`); an action verb by another method, and `count` asked with an
/// `identifierType`, are the alert's. The name's first letter is percent-encoded, so the
/// router takes the alert's route, whose path parameter decodes it back.
pub(crate) fn alert_named_like_a_route<B>(req: &mut axum::http::Request<B>) {
    let Some(rest) = req.uri().path().strip_prefix("/v2/alerts/") else {
        return;
    };
    let method = req.method().as_str();
    let (name, verb) = match rest.split_once('/') {
        Some((name, verb)) => (name, Some(verb)),
        None => (rest, None),
    };
    let escaped = match (name, verb) {
        ("requests", Some(verb)) if method != "GET" && alerts::action_verb_known(method, verb) => {
            "%72equests"
        }
        ("saved-searches", Some(verb))
            if matches!(method, "POST" | "PUT") && alerts::action_verb_known(method, verb) =>
        {
            "%73aved-searches"
        }
        ("count", None)
            if method == "GET"
                && req.uri().query().is_some_and(|q| {
                    q.split('&')
                        .any(|pair| pair.split('=').next() == Some("identifierType"))
                }) =>
        {
            "%63ount"
        }
        _ => return,
    };
    let mut target = format!("/v2/alerts/{escaped}");
    if let Some(verb) = verb {
        target.push('/');
        target.push_str(verb);
    }
    if let Some(q) = req.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    let Ok(pq) = target.parse() else {
        return;
    };
    parts.path_and_query = Some(pq);
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// The handler of a route Opsgenie has and Tocsin does not yet: a 501 that names the feature,
/// where a 404 or 405 would suggest a wrong path or method.
fn not_built(
    feature: &'static str,
) -> impl Fn() -> std::future::Ready<ApiError> + Clone + Send + Sync + 'static {
    move || std::future::ready(ApiError::NotImplemented(feature.to_owned()))
}

#[cfg(test)]
async fn internal() -> ApiError {
    ApiError::Internal("a test's internal detail".into())
}

#[cfg(test)]
async fn panics() -> &'static str {
    panic!("a handler's bug (the crate's tests)")
}

/// Finds the route a method and concrete path would take, with the path's parameters.
pub fn match_route(
    method: &str,
    path: &str,
) -> Option<(&'static RouteInfo, Vec<(&'static str, String)>)> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES
        .iter()
        .filter(|r| r.method.eq_ignore_ascii_case(method))
        .find_map(|r| {
            let tsegs: Vec<&str> = r.path.trim_end_matches('/').split('/').collect();
            if tsegs.len() != segs.len() {
                return None;
            }
            let mut params = Vec::new();
            for (t, s) in tsegs.iter().zip(&segs) {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    if s.is_empty() {
                        return None;
                    }
                    params.push((name, (*s).to_owned()));
                } else if t != s {
                    return None;
                }
            }
            Some((r, params))
        })
}

/// A `/v1` list's page size when `limit` is not given.
pub const LIST_LIMIT_DEFAULT: usize = 50;
/// The largest `limit` a `/v1` list takes.
pub const LIST_LIMIT_MAX: usize = 500;

/// `limit` (default 50, at most 500) and `cursor` of every `/v1` list.
#[derive(Deserialize, Default)]
pub struct ListParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl ListParams {
    /// The cursor, when it can be one: cursors are the printable text this server handed
    /// out; a control character (which PostgreSQL refuses in text) or a very long value is
    /// refused here, naming the field, rather than failing in the store.
    pub fn cursor(&self) -> ApiResult<Option<&str>> {
        match self.cursor.as_deref() {
            Some(c) if c.len() > 256 || c.chars().any(char::is_control) => Err(Self::bad_cursor()),
            other => Ok(other),
        }
    }

    /// The cursor of a list paged by id: the id of the page before's last item, so anything
    /// not shaped like one of `parse`'s ids is refused (it would page from nowhere and answer
    /// an empty page that looks like the end of the list).
    pub fn id_cursor<T>(&self, parse: fn(&str) -> Option<T>) -> ApiResult<Option<&str>> {
        match self.cursor()? {
            Some(c) if parse(c).is_none() => Err(Self::bad_cursor()),
            other => Ok(other),
        }
    }

    /// The refusal of a cursor this server did not hand out.
    pub fn bad_cursor() -> ApiError {
        ApiError::validation(
            "cursor",
            "is not a cursor of this list; pass the next_cursor of the page before",
        )
    }

    pub fn limit(&self) -> ApiResult<usize> {
        match &self.limit {
            None => Ok(LIST_LIMIT_DEFAULT),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=LIST_LIMIT_MAX).contains(&n) => Ok(n),
                _ => Err(ApiError::validation(
                    "limit",
                    format!("`{s}` must be a whole number from 1 to {LIST_LIMIT_MAX}"),
                )),
            },
        }
    }
}

/// Parses a path id of the expected type; anything else is the same 404 as a missing object.
pub fn path_id<T>(raw: &str, parse: fn(&str) -> Option<T>, what: &'static str) -> ApiResult<T> {
    parse(raw).ok_or(ApiError::NotFound(what))
}
