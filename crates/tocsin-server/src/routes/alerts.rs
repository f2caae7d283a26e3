//! Opsgenie's Alert API v2 (`/v2/alerts`): create with alias de-duplication, get, list with
//! the search syntax, count, the action routes, notes and logs, and request statuses. Every
//! write is durable before its 202: it goes through the group-commit writer.

use crate::auth::Principal;
use crate::envelope::RequestId;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::error::{Path, Query as QueryParams};
use crate::state::{App, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tocsin_core::TeamId;
use tocsin_core::alert::{self, NewAlert, Priority, ResponderRef};
use tocsin_core::key::{KeyKind, fmt_rfc3339};
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::search;
use tocsin_core::validation::Problems;
use tocsin_store::alerts::{
    Action, Alert, AlertDraft, AlertIntegration, AlertOp, AlertScope, IdentifierType, OpKind,
    Responder, SortField,
};
use tocsin_store::audit::AuditTarget;

/// The per-request facts every `/v2` answer needs.
#[derive(Clone)]
pub struct V2 {
    request_id: String,
    started: std::time::Instant,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for V2 {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let ids = parts.extensions.get::<RequestId>();
        Ok(V2 {
            request_id: ids.map(|r| r.id.to_string()).unwrap_or_default(),
            started: ids.map_or_else(std::time::Instant::now, |r| r.started),
        })
    }
}

impl V2 {
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn took(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
    }

    pub fn data(&self, data: Value) -> Response {
        Json(json!({"data": data, "took": self.took(), "requestId": self.request_id}))
            .into_response()
    }

    /// Every 202 of the alert API. Written from a struct rather than a `json!` map (three
    /// keys and their values allocated, sorted, then written): the same bytes, in the map's
    /// key order (issue #5).
    pub fn accepted(&self) -> Response {
        #[derive(serde::Serialize)]
        struct Accepted<'a> {
            #[serde(rename = "requestId")]
            request_id: &'a str,
            result: &'static str,
            took: f64,
        }
        let body = Accepted {
            request_id: &self.request_id,
            result: "Request will be processed",
            took: self.took(),
        };
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }
}

/// The alert as Opsgenie shows it; list items leave out the long fields.
pub fn view(a: &Alert, full: bool) -> Value {
    let mut v = json!({
        "id": a.id, "tinyId": a.tiny_id.to_string(), "alias": a.alias, "message": a.message, "status": a.status,
        "acknowledged": a.acknowledged, "isSeen": a.is_seen, "tags": a.tags, "snoozed": a.snoozed,
        "count": a.count, "lastOccurredAt": fmt_rfc3339(a.last_occurred_at), "createdAt": fmt_rfc3339(a.created_at),
        "updatedAt": fmt_rfc3339(a.updated_at), "source": a.source, "owner": a.owner, "priority": a.priority,
        "responders": a.responders, "teams": a.teams.iter().map(|t| json!({"id": t})).collect::<Vec<_>>(),
    });
    let o = v.as_object_mut().expect("an object");
    if let Some(until) = a.snoozed_until {
        o.insert("snoozedUntil".into(), json!(fmt_rfc3339(until)));
    }
    if let Some(i) = &a.integration {
        o.insert("integration".into(), json!(i));
    }
    if let Some(t) = &a.owner_team_id {
        o.insert("ownerTeamId".into(), json!(t));
    }
    let mut report = Map::new();
    if let Some(t) = a.ack_time {
        report.insert("ackTime".into(), json!(t));
    }
    if let Some(t) = a.close_time {
        report.insert("closeTime".into(), json!(t));
    }
    if let Some(b) = &a.acknowledged_by {
        report.insert("acknowledgedBy".into(), json!(b));
    }
    if let Some(b) = &a.closed_by {
        report.insert("closedBy".into(), json!(b));
    }
    o.insert("report".into(), Value::Object(report));
    if full {
        o.insert("actions".into(), json!(a.actions));
        o.insert("entity".into(), json!(a.entity));
        o.insert("description".into(), json!(a.description));
        o.insert("details".into(), Value::Object(a.details.clone()));
    }
    v
}

/// What the caller may read: every alert with an account grant, else its teams' alerts.
fn read_scope(p: &Principal) -> ApiResult<AlertScope> {
    p.require(Permission::AlertsRead, &Resource::AnyTeam)?;
    Ok(AlertScope {
        all: p.grants.account.contains(Permission::AlertsRead),
        teams: p
            .grants
            .teams_with(Permission::AlertsRead)
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

pub(crate) fn alert_resource(a: &Alert) -> Resource {
    Resource::Teams(
        a.teams
            .iter()
            .map(|t| TeamId::from_trusted(t.clone()))
            .collect(),
    )
}

fn display_name(p: &Principal) -> String {
    match (&p.user, &p.integration) {
        (Some(u), _) => u.email.clone(),
        (None, Some(i)) => i.name.clone(),
        _ => p.describe.name.clone(),
    }
}

/// Opsgenie's refusal for accounts that insist on integration keys for alerts.
pub(crate) fn require_integration_key(p: &Principal) -> ApiResult<()> {
    if p.key_kind() == Some(KeyKind::Integration) || !p.org.alerts_require_integration_key {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        code: "integration_key_required",
        message: "To perform this action, use an API key from an API integration: this organization requires integration keys for alert writes (alerts_require_integration_key). Create one with POST /v1/integrations (or POST /v1/api_keys with kind \"integration\") and send it as `Authorization: GenieKey <token>`.".into(),
    })
}

/// How a team that does not exist is taken.
#[derive(Clone, Copy)]
enum UnknownTeam {
    /// Kept by the name it was given, as unknown users are, and owning nothing: an alert
    /// is never refused (and lost: Alertmanager does not retry a 4xx) for naming a team
    /// Tocsin does not have yet. Opsgenie answers a create 202 before it looks responders up.
    KeepName,
    /// A 422 naming the body field it came in: the `teams` action, which gives the alert to
    /// a team and so needs one that exists.
    Refuse { field: &'static str },
}

/// Turns responders (by id or name) into stored responders, and collects the teams among them.
async fn resolve_responders(
    app: &App,
    p: &Principal,
    refs: &[ResponderRef],
    unknown: UnknownTeam,
) -> ApiResult<(Vec<Responder>, Vec<String>)> {
    let mut responders = Vec::new();
    let mut teams = Vec::new();
    for r in refs {
        let id = if r.kind == "team" {
            let by_id = r.id.as_deref().and_then(TeamId::parse);
            let found = match by_id {
                Some(id) => app
                    .store
                    .get_team(&p.org_id, &id)
                    .await
                    .ok()
                    .map(|t| t.id.to_string()),
                None => {
                    let wanted = r.name.as_deref().or(r.id.as_deref()).unwrap_or("");
                    app.store
                        .find_team_by_name(&p.org_id, wanted)
                        .await?
                        .map(|t| t.id.to_string())
                }
            };
            match found {
                Some(id) => {
                    if !teams.contains(&id) {
                        teams.push(id.clone());
                    }
                    id
                }
                None => {
                    let named = r.name.clone().or(r.id.clone()).unwrap_or_default();
                    match unknown {
                        UnknownTeam::KeepName => named,
                        UnknownTeam::Refuse { field } => {
                            return Err(ApiError::validation(
                                field,
                                format!(
                                    "no team `{named}` exists in this organization; create it with POST /v1/teams, or name one that exists"
                                ),
                            ));
                        }
                    }
                }
            }
        } else if r.kind == "user" {
            match (&r.id, &r.name) {
                (Some(id), _) => id.clone(),
                (None, Some(name)) => {
                    match app.store.find_org_user_by_email(&p.org_id, name).await? {
                        Some(c) => c.user.id.to_string(),
                        None => name.clone(),
                    }
                }
                (None, None) => continue,
            }
        } else {
            r.id.clone().or(r.name.clone()).unwrap_or_default()
        };
        let responder = Responder {
            kind: r.kind.clone(),
            id,
        };
        if !responders.contains(&responder) {
            responders.push(responder);
        }
    }
    Ok((responders, teams))
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    v2: V2,
    JsonBody(body): JsonBody<alert::AlertFields>,
) -> ApiResult<Response> {
    let mut new = NewAlert::check(body).map_err(ApiError::Validation)?;
    require_integration_key(&p)?;
    let (mut responders, mut teams) =
        resolve_responders(&app, &p, &new.responders, UnknownTeam::KeepName).await?;
    let (visible_to, _) =
        resolve_responders(&app, &p, &new.visible_to, UnknownTeam::KeepName).await?;
    // A team integration's alerts belong to its team; a caller that may write alerts only
    // within teams makes its first such team the owner.
    let owner_team = match &p.integration {
        Some(i) => i.team_id.as_ref().map(ToString::to_string),
        None if !p.grants.account.contains(Permission::AlertsWrite) => p
            .grants
            .teams_with(Permission::AlertsWrite)
            .first()
            .map(ToString::to_string),
        None => None,
    };
    if let Some(team) = &owner_team {
        let r = Responder {
            kind: "team".into(),
            id: team.clone(),
        };
        if p.integration.is_some() {
            // Opsgenie overwrites a team integration's responders with its owner team (users,
            // escalations and schedules too), and so does Tocsin, saying in the request
            // status what it dropped. `visibleTo` is kept: Opsgenie overwrites only these.
            let dropped: Vec<String> = responders
                .iter()
                .filter(|d| **d != r)
                .map(|d| format!("{} {}", d.kind, d.id))
                .collect();
            if !dropped.is_empty() {
                new.adjustments.push(format!(
                    "responders {} were replaced by the integration's team: a team integration's alerts go to its team alone",
                    dropped.join(", ")
                ));
            }
            responders.clear();
            teams.clear();
        }
        if !responders.contains(&r) {
            responders.insert(0, r);
        }
        if !teams.contains(team) {
            teams.insert(0, team.clone());
        }
    }
    p.require(
        Permission::AlertsWrite,
        &Resource::Teams(
            teams
                .iter()
                .map(|t| TeamId::from_trusted(t.clone()))
                .collect(),
        ),
    )?;
    let details: Map<String, Value> = new
        .details
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let draft = AlertDraft {
        message: new.message,
        alias: new.alias,
        description: new.description,
        responders,
        teams,
        visible_to,
        owner_team_id: owner_team,
        integration: p.integration.as_ref().map(|i| AlertIntegration {
            id: i.id.to_string(),
            name: i.name.clone(),
            kind: i.kind.clone(),
        }),
        actions: new.actions,
        tags: new.tags,
        details,
        entity: new.entity,
        source: new.source.unwrap_or_else(|| peer.ip().to_string()),
        priority: new.priority.name().to_owned(),
        user: new.user.unwrap_or_else(|| display_name(&p)),
        note: new.note,
        adjustments: new.adjustments,
        write_teams: (!p.grants.account.contains(Permission::AlertsWrite)).then(|| {
            p.grants
                .teams_with(Permission::AlertsWrite)
                .iter()
                .map(ToString::to_string)
                .collect()
        }),
        received_at: None,
    };
    submit(&app, &p, &v2, OpKind::Create(Box::new(draft))).await
}

async fn submit(app: &App, p: &Principal, v2: &V2, kind: OpKind) -> ApiResult<Response> {
    let create = matches!(kind, OpKind::Create(_));
    let op = AlertOp {
        org_id: p.org_id.clone(),
        request_id: v2.request_id.clone(),
        integration_id: p.integration.as_ref().map(|i| i.id.to_string()),
        kind,
    };
    // A refused write is a 503 `store_unavailable`, anything else a 500 (ApiError's From).
    // A create is answered once durable: on SQLite, once the alert log holds it (the tables
    // take it right after, before any read of alerts; issue #5).
    let mut resp = v2.accepted();
    if create {
        app.alerts.accept(op).await?;
        return Ok(resp);
    }
    let status = app.alerts.submit(op).await?;
    // An action's audit event names the alert by its id, which the write resolved (an alias
    // or tiny id): `?target_id=<alert id>` then finds it. Moved from the write's answer; an
    // action whose alert was not found names none. A create names none: the target's index
    // row cost 6-8% of a create's CPU (issue #5), and the create is found from the alert
    // all the same, by the request id its log and request status keep.
    if !status.alert_id.is_empty() {
        resp.extensions_mut().insert(alert_target(status.alert_id));
    }
    Ok(resp)
}

/// How the audit trail names an alert.
fn alert_target(id: String) -> AuditTarget {
    AuditTarget {
        kind: "alert".into(),
        id,
    }
}

#[derive(Deserialize, Default)]
pub struct IdentifierQuery {
    #[serde(rename = "identifierType")]
    identifier_type: Option<String>,
    // DELETE routes carry these in the query string.
    user: Option<String>,
    note: Option<String>,
    tags: Option<String>,
    keys: Option<String>,
}

/// The 404 for an alert looked up by `kind`, naming what it was looked up by.
pub(crate) fn no_alert(kind: IdentifierType) -> ApiError {
    ApiError::NotFoundBy(
        "alert",
        match kind {
            IdentifierType::Id => "id",
            IdentifierType::Tiny => "tiny id",
            IdentifierType::Alias => "alias",
        },
    )
}

pub(crate) fn identifier_type(q: &IdentifierQuery) -> ApiResult<IdentifierType> {
    IdentifierType::parse(q.identifier_type.as_deref())
        .ok_or_else(|| ApiError::validation("identifierType", "must be id, tiny or alias"))
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(identifier): Path<String>,
    QueryParams(q): QueryParams<IdentifierQuery>,
    v2: V2,
) -> ApiResult<Response> {
    let kind = identifier_type(&q)?;
    let alert = app
        .store
        .find_alert(&p.org_id, &identifier, kind)
        .await?
        .ok_or_else(|| no_alert(kind))?;
    p.require(Permission::AlertsRead, &alert_resource(&alert))?;
    let mut resp = v2.data(view(&alert, true));
    resp.extensions_mut().insert(alert_target(alert.id));
    Ok(resp)
}

/// The page size of the alert list and of an alert's notes and logs when `limit` is not
/// given (Opsgenie's).
pub const PAGE_LIMIT_DEFAULT: i64 = 20;
/// The largest `limit` the alert list and an alert's notes and logs take (Opsgenie's).
pub const PAGE_LIMIT_MAX: i64 = 100;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    query: Option<String>,
    #[serde(rename = "searchIdentifier")]
    search_identifier: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
    sort: Option<String>,
    order: Option<String>,
}

fn parse_query(q: Option<&str>) -> ApiResult<search::Query> {
    search::parse(q.unwrap_or("")).map_err(|e| ApiError::validation("query", e.to_string()))
}

/// Reads team names in `teams:` and `responders:` terms (and users' emails in `responders:`)
/// as the ids alerts store, as Opsgenie's saved queries name them: `teams:sre`. A value that
/// is an id already, or names nothing in the organization, is left as it is.
async fn ids_for_names(app: &App, p: &Principal, query: &mut search::Query) -> ApiResult<()> {
    fn terms<'a>(q: &'a mut search::Query, out: &mut Vec<&'a mut search::Term>) {
        match q {
            search::Query::And(a, b) | search::Query::Or(a, b) => {
                terms(a, out);
                terms(b, out);
            }
            search::Query::Not(a) => terms(a, out),
            search::Query::Term(t) => out.push(t),
            search::Query::All => {}
        }
    }
    let mut named = Vec::new();
    terms(query, &mut named);
    named.retain(|t| {
        matches!(t.field, search::Field::Teams | search::Field::Responders)
            && t.op == search::Op::Eq
            && TeamId::parse(&t.value).is_none()
            && tocsin_core::UserId::parse(&t.value).is_none()
    });
    for term in named {
        if let Some(team) = app.store.find_team_by_name(&p.org_id, &term.value).await? {
            term.value = team.id.to_string();
        } else if term.field == search::Field::Responders
            && let Some(user) = app
                .store
                .find_org_user_by_email(&p.org_id, &term.value)
                .await?
        {
            term.value = user.user.id.to_string();
        }
    }
    Ok(())
}

fn saved_searches_unsupported(q: &ListQuery) -> ApiResult<()> {
    match &q.search_identifier {
        Some(_) => Err(ApiError::NotImplemented(
            "Saved searches (searchIdentifier)".into(),
        )),
        None => Ok(()),
    }
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    QueryParams(q): QueryParams<ListQuery>,
    v2: V2,
) -> ApiResult<Response> {
    saved_searches_unsupported(&q)?;
    let scope = read_scope(&p)?;
    let mut problems = Problems::new();
    let query = parse_query(q.query.as_deref());
    let offset = match q.offset.as_deref() {
        None => 0,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .unwrap_or_else(|| {
                problems.add("offset", format!("`{s}` must be a whole number, 0 or more"));
                0
            }),
    };
    let limit = match q.limit.as_deref() {
        None => PAGE_LIMIT_DEFAULT,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
            .unwrap_or_else(|| {
                problems.add(
                    "limit",
                    format!("`{s}` must be a whole number from 1 to {PAGE_LIMIT_MAX}"),
                );
                PAGE_LIMIT_DEFAULT
            }),
    };
    let sort_name = q.sort.as_deref().unwrap_or("createdAt");
    let sort = SortField::parse(sort_name).unwrap_or_else(|| {
        problems.add("sort", format!("`{sort_name}` is not a sortable field such as createdAt, updatedAt, tinyId or count"));
        SortField::CreatedAt
    });
    let descending = descending(q.order.as_deref(), &mut problems);
    let query = match query {
        Ok(q) => Some(q),
        Err(ApiError::Validation(mut e)) => {
            problems.0.append(&mut e.0);
            None
        }
        Err(other) => return Err(other),
    };
    problems.into_result().map_err(ApiError::Validation)?;
    let mut query = query.expect("checked");
    ids_for_names(&app, &p, &mut query).await?;
    let alerts = app
        .store
        .list_alerts(&p.org_id, &scope, &query, sort, descending, offset, limit)
        .await?;
    let total = app.store.count_alerts(&p.org_id, &scope, &query).await?;
    let link = |offset: i64| {
        let mut url = format!("{}/v2/alerts?", app.settings.public_url);
        let mut pairs = Vec::new();
        if let Some(query) = &q.query {
            pairs.push(format!("query={}", encode(query)));
        }
        pairs.push(format!(
            "offset={offset}&limit={limit}&sort={}&order={}",
            encode(sort_name),
            if descending { "desc" } else { "asc" }
        ));
        url.push_str(&pairs.join("&"));
        url
    };
    let mut paging = Map::new();
    paging.insert("first".into(), json!(link(0)));
    // Saturating: an offset near i64::MAX has no next page, not a wrapped negative one.
    if offset.saturating_add(limit) < total {
        paging.insert("next".into(), json!(link(offset + limit)));
    }
    if offset > 0 {
        paging.insert("prev".into(), json!(link((offset - limit).max(0))));
    }
    paging.insert(
        "last".into(),
        json!(link(((total - 1).max(0) / limit) * limit)),
    );
    let data: Vec<Value> = alerts.iter().map(|a| view(a, false)).collect();
    Ok(
        Json(
            json!({"data": data, "paging": paging, "took": v2.took(), "requestId": v2.request_id}),
        )
        .into_response(),
    )
}

/// Opsgenie's `order` (`asc` or `desc`, in any case; `desc` when absent) as "descending";
/// anything else is noted in `problems` on `order`.
fn descending(order: Option<&str>, problems: &mut Problems) -> bool {
    match order.map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            problems.add("order", format!("`{other}` is not asc or desc"));
            true
        }
    }
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub async fn count(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    QueryParams(q): QueryParams<ListQuery>,
    v2: V2,
) -> ApiResult<Response> {
    saved_searches_unsupported(&q)?;
    let scope = read_scope(&p)?;
    let mut query = parse_query(q.query.as_deref())?;
    ids_for_names(&app, &p, &mut query).await?;
    let n = app.store.count_alerts(&p.org_id, &scope, &query).await?;
    Ok(v2.data(json!({"count": n})))
}

pub async fn request_status(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    v2: V2,
) -> ApiResult<Response> {
    p.require(Permission::AlertsRead, &Resource::AnyTeam)?;
    let s = app
        .store
        .request_status(&p.org_id, &id)
        .await?
        .ok_or(ApiError::NotFound("request"))?;
    // A caller held to some teams sees the statuses of requests on alerts it may read, of
    // its own integration's requests, of requests that reached no alert and of requests on
    // alerts deleted since (its own deletes among them; a deleted alert has no team left to
    // keep); a status naming another team's alert is no request for it, as another
    // organization's is.
    if p.require(Permission::AlertsRead, &Resource::Org).is_err() && !s.alert_id.is_empty() {
        let own = s.integration_id.is_some()
            && s.integration_id.as_deref() == p.integration.as_ref().map(|i| i.id.as_str());
        let readable = own
            || match app
                .store
                .find_alert(&p.org_id, &s.alert_id, IdentifierType::Id)
                .await?
            {
                Some(a) => p
                    .require(Permission::AlertsRead, &alert_resource(&a))
                    .is_ok(),
                None => true,
            };
        if !readable {
            return Err(ApiError::NotFound("request"));
        }
    }
    Ok(v2.data(json!({
        "success": s.success, "isSuccess": s.success, "action": s.action, "processedAt": fmt_rfc3339(s.processed_at),
        "integrationId": s.integration_id.unwrap_or_default(), "status": s.status, "alertId": s.alert_id, "alias": s.alias,
    })))
}

/// The action routes: `POST /v2/alerts/{identifier}/{action}` and friends.
async fn act(
    app: &App,
    p: &Principal,
    v2: &V2,
    identifier: &str,
    q: &IdentifierQuery,
    body: &Value,
    action: Action,
) -> ApiResult<Response> {
    let kind = identifier_type(q)?;
    let permission = if matches!(action, Action::Delete) {
        Permission::AlertsDelete
    } else {
        Permission::AlertsWrite
    };
    if !matches!(action, Action::Delete | Action::AddNote) {
        require_integration_key(p)?;
    }
    let mut problems = Problems::new();
    // `user` and `note` from the body, else (the DELETE routes) from the query string; cut
    // to their limits as create cuts them, and the request status says so.
    let text = |field: &str, query: Option<&String>, problems: &mut Problems| match body.get(field)
    {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        // As create reads text.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            query.filter(|s| !s.is_empty()).cloned()
        }
        Some(_) => {
            problems.add(field, "must be a string");
            None
        }
    };
    let mut adjustments = Vec::new();
    let user = text("user", q.user.as_ref(), &mut problems)
        .map(|u| alert::cut_user(u, &mut adjustments))
        .unwrap_or_else(|| display_name(p));
    let note =
        text("note", q.note.as_ref(), &mut problems).map(|n| alert::cut_note(n, &mut adjustments));
    problems.into_result().map_err(ApiError::Validation)?;
    let found = app.store.find_alert(&p.org_id, identifier, kind).await?;
    let kind = match found {
        // Opsgenie answers 202 and reports the missing alert in the request status.
        None => {
            p.require(permission, &Resource::AnyTeam)?;
            OpKind::Fail {
                action: action.name(),
                status: "Alert does not exist".into(),
                alias: String::new(),
            }
        }
        Some(a) => {
            p.require(permission, &alert_resource(&a))?;
            OpKind::Act {
                alert_id: a.id,
                action,
                user,
                note,
                adjustments,
            }
        }
    };
    submit(app, p, v2, kind).await
}

/// A required object naming something by one of `keys`: `{"owner": {"username": "ann"}}`.
/// A name is at most `alert::REFERENCE_MAX` characters, refused rather than cut: cut, it
/// would name someone else.
fn reference(body: &Value, field: &str, keys: &[&str]) -> ApiResult<String> {
    let found = body.get(field).and_then(|o| {
        keys.iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str).map(|v| (*k, v)))
    });
    match found {
        Some((key, v)) if v.chars().count() > alert::REFERENCE_MAX => Err(ApiError::validation(
            &format!("{field}.{key}"),
            format!(
                "is {} characters long; at most {} are allowed",
                v.chars().count(),
                alert::REFERENCE_MAX
            ),
        )),
        Some((_, v)) if !v.is_empty() => Ok(v.to_owned()),
        _ => {
            let forms: Vec<String> = keys.iter().map(|k| format!("{{\"{k}\"}}")).collect();
            Err(ApiError::validation(
                field,
                format!("{field} is required: {}", forms.join(" or ")),
            ))
        }
    }
}

/// A required text field of an action's body, read as create reads text: a string, or a
/// number or boolean as its text. Over-long text is cut where the action is applied, which
/// notes it in the request status.
fn required_string(body: &Value, field: &str) -> ApiResult<String> {
    match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        None | Some(Value::Null) => {
            Err(ApiError::validation(field, format!("{field} is required")))
        }
        Some(Value::String(_)) => Err(ApiError::validation(
            field,
            format!("{field} must not be blank"),
        )),
        Some(_) => Err(ApiError::validation(
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// The tags of an add-tags body, read as create reads them: a list of strings or numbers (or
/// one string), trimmed, blanks left out. Any other item is refused by its place in the list,
/// and so is a list with no tag left: the action would otherwise report tags it never added.
/// Over-long tags and tags past the alert's limit are noted in the request status.
fn tags_to_add(body: &Value) -> ApiResult<Vec<String>> {
    let items: Vec<&Value> = match body.get("tags") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::String(_)) => vec![one],
        _ => {
            return Err(ApiError::validation(
                "tags",
                "tags must be a non-empty list of strings",
            ));
        }
    };
    let mut tags = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let tag = match item {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(ApiError::validation(
                    &format!("tags[{i}]"),
                    "must be a string",
                ));
            }
        };
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        return Err(ApiError::validation(
            "tags",
            "tags must hold at least one tag that is not blank",
        ));
    }
    Ok(tags)
}

fn csv(v: Option<&str>, field: &str) -> ApiResult<Vec<String>> {
    let items: Vec<String> = v
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err(ApiError::validation(
            field,
            format!("give {field} in the query string, comma-separated"),
        ));
    }
    Ok(items)
}

/// The verbs `/v2/alerts/{identifier}/{action}` answers, by method: the one list of them.
/// The handlers (`post_action`, `put_field`, `delete_field`, `entries`) answer 404 to any
/// other before anything else (`known_verb`), and explain (identity.rs) tells a route from a
/// path that only looks like one by it.
pub(crate) fn action_verb_known(method: &str, verb: &str) -> bool {
    match method {
        "POST" => matches!(
            verb,
            "acknowledge"
                | "unacknowledge"
                | "close"
                | "notes"
                | "snooze"
                | "tags"
                | "details"
                | "assign"
                | "teams"
                | "responders"
                | "escalate"
        ),
        "PUT" => matches!(verb, "message" | "description" | "priority"),
        "DELETE" => matches!(verb, "tags" | "details"),
        "GET" => matches!(verb, "notes" | "logs" | "recipients"),
        _ => false,
    }
}

/// A verb the action route does not answer is no route (404), unless it answers it by other
/// methods (`PUT .../acknowledge`): 405, naming them, as for any route.
fn known_verb(method: &str, verb: &str) -> ApiResult<()> {
    if action_verb_known(method, verb) {
        return Ok(());
    }
    let allowed: Vec<&'static str> = ["GET", "POST", "PUT", "DELETE"]
        .into_iter()
        .filter(|m| action_verb_known(m, verb))
        .collect();
    if allowed.is_empty() {
        Err(ApiError::NoRoute)
    } else {
        Err(ApiError::MethodNotAllowed(allowed))
    }
}

pub async fn post_action(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((identifier, verb)): Path<(String, String)>,
    QueryParams(q): QueryParams<IdentifierQuery>,
    v2: V2,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    known_verb("POST", &verb)?;
    let action = match verb.as_str() {
        "acknowledge" => Action::Acknowledge,
        "unacknowledge" => Action::Unacknowledge,
        "close" => Action::Close,
        "notes" => {
            required_string(&body, "note")?;
            Action::AddNote
        }
        "snooze" => {
            let raw = required_string(&body, "endTime")?;
            let until = OffsetDateTime::parse(&raw, &Rfc3339).map_err(|_| {
                ApiError::validation(
                    "endTime",
                    format!("`{raw}` is not an ISO 8601 time such as 2026-11-23T10:00:00Z"),
                )
            })?;
            if until <= OffsetDateTime::now_utc() {
                return Err(ApiError::validation("endTime", "must be in the future"));
            }
            Action::Snooze { until }
        }
        "tags" => Action::AddTags(tags_to_add(&body)?),
        "details" => match body.get("details") {
            Some(Value::Object(d)) if !d.is_empty() => Action::AddDetails(
                d.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!(
                                v.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| v.to_string())
                            ),
                        )
                    })
                    .collect(),
            ),
            _ => {
                return Err(ApiError::validation(
                    "details",
                    "details must be a non-empty object of strings",
                ));
            }
        },
        "assign" => Action::Assign {
            owner: reference(&body, "owner", &["username", "id"])?,
        },
        "teams" => {
            let team = body.get("team").cloned().unwrap_or(Value::Null);
            let r = ResponderRef {
                kind: "team".into(),
                id: team.get("id").and_then(Value::as_str).map(str::to_owned),
                name: team.get("name").and_then(Value::as_str).map(str::to_owned),
            };
            if r.id.is_none() && r.name.is_none() {
                return Err(ApiError::validation(
                    "team",
                    "team is required: {\"id\"} or {\"name\"}",
                ));
            }
            let (_, teams) =
                resolve_responders(&app, &p, &[r], UnknownTeam::Refuse { field: "team" }).await?;
            Action::AddTeam {
                team_id: teams.into_iter().next().unwrap_or_default(),
            }
        }
        "responders" => {
            let responder = match body.get("responder") {
                Some(r @ Value::Object(_)) => r.clone(),
                _ => {
                    return Err(ApiError::validation(
                        "responder",
                        "responder is required: {type, id | name | username}",
                    ));
                }
            };
            let mut problems = Problems::new();
            let refs =
                alert::parse_responders(Some(&json!([responder])), "responder", &mut problems);
            // The one responder is not a list: `responder.type`, not `responder[0].type`.
            for p in &mut problems.0 {
                if let Some(rest) = p.field.strip_prefix("responder[0]") {
                    p.field = format!("responder{rest}");
                }
            }
            problems.into_result().map_err(ApiError::Validation)?;
            let (resolved, _) = resolve_responders(&app, &p, &refs, UnknownTeam::KeepName).await?;
            match resolved.into_iter().next() {
                Some(r) => Action::AddResponder(r),
                None => {
                    return Err(ApiError::validation(
                        "responder",
                        "responder is required: {type, id | name | username}",
                    ));
                }
            }
        }
        "escalate" => Action::Escalate {
            escalation: reference(&body, "escalation", &["id", "name"])?,
        },
        _ => return Err(ApiError::NoRoute),
    };
    act(&app, &p, &v2, &identifier, &q, &body, action).await
}

pub async fn custom_action(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((identifier, name)): Path<(String, String)>,
    QueryParams(q): QueryParams<IdentifierQuery>,
    v2: V2,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    act(
        &app,
        &p,
        &v2,
        &identifier,
        &q,
        &body,
        Action::Custom { name },
    )
    .await
}

pub async fn put_field(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((identifier, field)): Path<(String, String)>,
    QueryParams(q): QueryParams<IdentifierQuery>,
    v2: V2,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    known_verb("PUT", &field)?;
    let action = match field.as_str() {
        "message" => Action::SetMessage(required_string(&body, "message")?),
        // A description may be emptied.
        "description" => Action::SetDescription(match body.get("description") {
            Some(Value::String(d)) => d.clone(),
            None | Some(Value::Null) => {
                return Err(ApiError::validation(
                    "description",
                    "description is required",
                ));
            }
            Some(_) => {
                return Err(ApiError::validation(
                    "description",
                    "description must be a string",
                ));
            }
        }),
        "priority" => {
            let raw = required_string(&body, "priority")?;
            let p = Priority::parse(&raw).ok_or_else(|| {
                ApiError::validation(
                    "priority",
                    format!("`{raw}` is not one of P1, P2, P3, P4, P5"),
                )
            })?;
            Action::SetPriority(p.name().to_owned())
        }
        _ => return Err(ApiError::NoRoute),
    };
    act(&app, &p, &v2, &identifier, &q, &body, action).await
}

pub async fn delete_alert(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(identifier): Path<String>,
    QueryParams(q): QueryParams<IdentifierQuery>,
    v2: V2,
) -> ApiResult<Response> {
    act(&app, &p, &v2, &identifier, &q, &json!({}), Action::Delete).await
}

pub async fn delete_field(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((identifier, field)): Path<(String, String)>,
    QueryParams(q): QueryParams<IdentifierQuery>,
    v2: V2,
) -> ApiResult<Response> {
    known_verb("DELETE", &field)?;
    let action = match field.as_str() {
        "tags" => Action::RemoveTags(csv(q.tags.as_deref(), "tags")?),
        "details" => Action::RemoveDetails(csv(q.keys.as_deref(), "keys")?),
        _ => return Err(ApiError::NoRoute),
    };
    act(&app, &p, &v2, &identifier, &q, &json!({}), action).await
}

#[derive(Deserialize, Default)]
pub struct EntriesQuery {
    #[serde(rename = "identifierType")]
    identifier_type: Option<String>,
    offset: Option<String>,
    direction: Option<String>,
    limit: Option<String>,
    order: Option<String>,
}

pub async fn entries(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((identifier, what)): Path<(String, String)>,
    QueryParams(q): QueryParams<EntriesQuery>,
    v2: V2,
) -> ApiResult<Response> {
    known_verb("GET", &what)?;
    let kind = IdentifierType::parse(q.identifier_type.as_deref())
        .ok_or_else(|| ApiError::validation("identifierType", "must be id, tiny or alias"))?;
    let alert = app
        .store
        .find_alert(&p.org_id, &identifier, kind)
        .await?
        .ok_or_else(|| no_alert(kind))?;
    p.require(Permission::AlertsRead, &alert_resource(&alert))?;
    if what == "recipients" {
        // Tocsin does not notify people yet, so no one has been a recipient: one empty page,
        // with `paging` as the notes and logs have it (its `first`, and no `next`).
        let first = format!(
            "{}/v2/alerts/{}/recipients?identifierType=id",
            app.settings.public_url,
            encode(&alert.id)
        );
        return Ok(Json(json!({
            "data": [], "paging": {"first": first}, "took": v2.took(), "requestId": v2.request_id,
        }))
        .into_response());
    }
    let logs = match what.as_str() {
        "notes" => false,
        "logs" => true,
        _ => return Err(ApiError::NoRoute),
    };
    let limit = match q.limit.as_deref() {
        None => PAGE_LIMIT_DEFAULT,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::validation(
                    "limit",
                    format!("`{s}` must be a whole number from 1 to {PAGE_LIMIT_MAX}"),
                )
            })?,
    };
    // Opsgenie's words, in any case; anything else is refused rather than read as the default.
    let mut problems = Problems::new();
    let desc = descending(q.order.as_deref(), &mut problems);
    // `direction=prev` walks back towards the start of the order.
    let prev = match q
        .direction
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("next") => false,
        Some("prev") => true,
        Some(other) => {
            problems.add("direction", format!("`{other}` is not next or prev"));
            false
        }
    };
    // A cursor is the `offset` of a line a page gave (a UUID); any other would read as the
    // end of the list.
    if let Some(offset) = q.offset.as_deref()
        && uuid::Uuid::try_parse(offset).is_err()
    {
        problems.add(
            "offset",
            format!(
                "`{offset}` is not the offset of a note or log line (give one a page returned)"
            ),
        );
    }
    problems.into_result().map_err(ApiError::Validation)?;
    let walk_desc = if prev { !desc } else { desc };
    let mut items = app
        .store
        .alert_entries(
            &p.org_id,
            &alert.id,
            logs,
            q.offset.as_deref(),
            walk_desc,
            limit,
        )
        .await?;
    if walk_desc != desc {
        items.reverse();
    }
    let data: Vec<Value> = items
        .iter()
        .map(|e| {
            if logs {
                json!({"log": e.text, "type": e.kind, "owner": e.owner, "createdAt": fmt_rfc3339(e.created_at), "offset": e.id})
            } else {
                json!({"note": e.text, "owner": e.owner, "createdAt": fmt_rfc3339(e.created_at), "offset": e.id})
            }
        })
        .collect();
    let mut paging = Map::new();
    if let Some(last) = items.last() {
        paging.insert(
            "next".into(),
            json!(format!(
                "{}/v2/alerts/{}/{what}?identifierType=id&offset={}&direction=next&limit={limit}&order={}",
                app.settings.public_url,
                encode(&alert.id),
                encode(&last.id),
                if desc { "desc" } else { "asc" }
            )),
        );
    }
    paging.insert(
        "first".into(),
        json!(format!(
            "{}/v2/alerts/{}/{what}?identifierType=id&limit={limit}&order={}",
            app.settings.public_url,
            encode(&alert.id),
            if desc { "desc" } else { "asc" }
        )),
    );
    Ok(
        Json(
            json!({"data": data, "paging": paging, "took": v2.took(), "requestId": v2.request_id}),
        )
        .into_response(),
    )
}
