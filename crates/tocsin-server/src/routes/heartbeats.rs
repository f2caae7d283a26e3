//! Opsgenie's Heartbeat API (`/v2/heartbeats`): pings, CRUD, enable/disable, and the sweep
//! that opens an alert (alias = the heartbeat's name) when one misses its interval; the next
//! ping closes it.

use crate::auth::Principal;
use crate::error::Path;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::routes::alerts::V2;
use crate::state::{App, AppState};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use time::OffsetDateTime;
use tocsin_core::TeamId;
use tocsin_core::alert::{self, Priority};
use tocsin_core::key::{KeyName, fmt_rfc3339};
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::validation::Problems;
use tocsin_store::alerts::{Action, AlertDraft, AlertOp, IdentifierType, OpKind, Responder};
use tocsin_store::heartbeats::Heartbeat;

/// The `source` of the alerts heartbeats raise.
const HEARTBEAT_SOURCE: &str = "Heartbeat";

async fn view(app: &App, h: &Heartbeat) -> Value {
    let mut v = json!({
        "name": h.name, "description": h.description, "interval": h.interval, "intervalUnit": h.interval_unit,
        "enabled": h.enabled, "expired": h.expired, "alertMessage": h.alert_message, "alertTags": h.alert_tags,
        "alertPriority": h.alert_priority,
    });
    if let Some(at) = h.last_ping_at {
        v["lastPingTime"] = json!(fmt_rfc3339(at));
    }
    if let Some(team) = h.owner_team_id.as_deref().and_then(TeamId::parse) {
        let name = app
            .store
            .get_team(&h.org_id, &team)
            .await
            .ok()
            .map(|t| t.name);
        v["ownerTeam"] = json!({"id": team, "name": name});
    }
    v
}

pub(crate) fn resource(h: &Heartbeat) -> Resource {
    Resource::Teams(
        h.owner_team_id
            .iter()
            .map(|t| TeamId::from_trusted(t.clone()))
            .collect(),
    )
}

async fn load(
    app: &App,
    p: &Principal,
    name: &str,
    permission: Permission,
) -> ApiResult<Heartbeat> {
    let h = app
        .store
        .get_heartbeat(&p.org_id, name)
        .await?
        .ok_or(ApiError::NotFoundBy("heartbeat", "name"))?;
    p.require(permission, &resource(&h))?;
    Ok(h)
}

/// Switches monitoring on or off. Switching it on starts the interval afresh: a disabled
/// heartbeat is not monitored, so the time it spent disabled is no missed interval; and it is
/// watched again (the store clears `expired` on that switch), so a heartbeat still silent
/// raises a new alert once the interval has passed. A missed heartbeat's alert left open is
/// closed by the next ping.
fn enable(h: &mut Heartbeat, enabled: bool) {
    if enabled && !h.enabled {
        h.enabled_at = Some(OffsetDateTime::now_utc());
        h.expired = false;
    }
    h.enabled = enabled;
}

/// The message of a missed heartbeat's alert when none is set: `<name> is expired`, cut to
/// an alert message's 130 characters (a heartbeat's name holds up to 200).
fn default_message(name: &str) -> String {
    alert::truncate(
        "alertMessage",
        &format!("{name} is expired"),
        alert::MESSAGE_MAX,
        &mut Vec::new(),
    )
}

/// Applies the fields of `b` to `h`; on create every required field must be there. Every
/// offending field is reported, with those `problems` already holds (the name's).
async fn apply_fields(
    app: &App,
    p: &Principal,
    h: &mut Heartbeat,
    b: &Map<String, Value>,
    creating: bool,
    mut problems: Problems,
) -> ApiResult<()> {
    if let Some(v) = b.get("description") {
        match v.as_str() {
            Some(d) if d.chars().count() <= 10_000 => h.description = d.to_owned(),
            _ => problems.add(
                "description",
                "must be a string of at most 10000 characters",
            ),
        }
    }
    match b.get("interval") {
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 => h.interval = n,
            _ => problems.add("interval", "must be a whole number, 1 or more"),
        },
        None if creating => problems.add("interval", "is required"),
        None => {}
    }
    match b.get("intervalUnit") {
        Some(v) => match v.as_str() {
            Some(u @ ("minutes" | "hours" | "days")) => h.interval_unit = u.to_owned(),
            _ => problems.add("intervalUnit", "must be minutes, hours or days"),
        },
        None if creating => problems.add("intervalUnit", "is required: minutes, hours or days"),
        None => {}
    }
    match b.get("enabled") {
        Some(v) => match v.as_bool() {
            Some(e) => enable(h, e),
            None => problems.add("enabled", "must be true or false"),
        },
        None if creating => problems.add("enabled", "is required"),
        None => {}
    }
    // Trimmed and cut to 130 characters as an alert's message is; blank (or null) is the
    // default message, as a heartbeat without one has in Opsgenie: an alert needs a message.
    match b.get("alertMessage") {
        None => {}
        Some(Value::Null) => h.alert_message = default_message(&h.name),
        Some(Value::String(m)) if m.trim().is_empty() => h.alert_message = default_message(&h.name),
        Some(Value::String(m)) => {
            h.alert_message = alert::truncate(
                "alertMessage",
                m.trim(),
                alert::MESSAGE_MAX,
                &mut Vec::new(),
            )
        }
        Some(_) => problems.add("alertMessage", "must be a string"),
    }
    if let Some(v) = b.get("alertTags") {
        h.alert_tags = alert::configured_tags("alertTags", v, &mut problems);
    }
    if let Some(v) = b.get("alertPriority") {
        match v.as_str().and_then(Priority::parse) {
            Some(pr) => h.alert_priority = pr.name().to_owned(),
            None => problems.add("alertPriority", "must be one of P1, P2, P3, P4, P5"),
        }
    }
    match crate::routes::opsgenie::owner_team(app, &p.org_id, b.get("ownerTeam")).await? {
        Ok(Some(t)) => h.owner_team_id = Some(t.to_string()),
        Ok(None) => {}
        Err(why) => problems.add("ownerTeam", why),
    }
    // A team integration's heartbeats belong to its team, as in Opsgenie.
    if let Some(team) = p.integration.as_ref().and_then(|i| i.team_id.as_ref()) {
        h.owner_team_id = Some(team.to_string());
    }
    problems.into_result().map_err(ApiError::Validation)
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    v2: V2,
    JsonBody(b): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let mut problems = Problems::new();
    let name = match b.get("name") {
        None | Some(Value::Null) => problems.take("name", KeyName::parse("")),
        Some(Value::String(n)) => problems.take("name", KeyName::parse(n)),
        Some(_) => {
            problems.add("name", "must be a string");
            None
        }
    };
    // Checked with every other field; a name that did not parse is never stored.
    let name = name.map(|n| n.as_str().to_owned()).unwrap_or_default();
    let mut h = Heartbeat {
        org_id: p.org_id.clone(),
        alert_message: default_message(&name),
        name,
        description: String::new(),
        interval: 10,
        interval_unit: "minutes".into(),
        enabled: true,
        owner_team_id: None,
        alert_tags: vec![],
        alert_priority: "P3".into(),
        last_ping_at: None,
        enabled_at: None,
        expired: false,
        created_at: OffsetDateTime::now_utc(),
    };
    apply_fields(&app, &p, &mut h, &b, true, problems).await?;
    p.require(Permission::IntegrationsWrite, &resource(&h))?;
    app.store
        .insert_heartbeat(&h)
        .await
        .map_err(crate::error::conflict(
            "name_taken",
            format!("A heartbeat named `{}` already exists.", h.name),
        ))?;
    let body =
        json!({"data": view(&app, &h).await, "took": v2.took(), "requestId": v2.request_id()});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    v2: V2,
) -> ApiResult<Response> {
    p.require(Permission::IntegrationsRead, &Resource::AnyTeam)?;
    let all = p.grants.account.contains(Permission::IntegrationsRead);
    let teams: Vec<String> = p
        .grants
        .teams_with(Permission::IntegrationsRead)
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut data = Vec::new();
    for h in app.store.list_heartbeats(&p.org_id).await? {
        if all || h.owner_team_id.as_ref().is_some_and(|t| teams.contains(t)) {
            data.push(view(&app, &h).await);
        }
    }
    // The Go SDK reads the list under `heartbeats`.
    Ok(v2.data(json!({"heartbeats": data})))
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    v2: V2,
) -> ApiResult<Response> {
    let h = load(&app, &p, &name, Permission::IntegrationsRead).await?;
    Ok(v2.data(view(&app, &h).await))
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    v2: V2,
    JsonBody(b): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let mut h = load(&app, &p, &name, Permission::IntegrationsWrite).await?;
    apply_fields(&app, &p, &mut h, &b, false, Problems::new()).await?;
    p.require(Permission::IntegrationsWrite, &resource(&h))?;
    app.store.update_heartbeat(&h).await?;
    Ok(v2.data(view(&app, &h).await))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    v2: V2,
) -> ApiResult<Response> {
    let h = load(&app, &p, &name, Permission::IntegrationsWrite).await?;
    p.require_configuration_delete(&resource(&h))?;
    app.store.delete_heartbeat(&p.org_id, &name).await?;
    Ok(
        Json(json!({"result": "Deleted", "took": v2.took(), "requestId": v2.request_id()}))
            .into_response(),
    )
}

pub async fn toggle(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((name, verb)): Path<(String, String)>,
    v2: V2,
) -> ApiResult<Response> {
    let enabled = match verb.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(ApiError::NoRoute),
    };
    let mut h = load(&app, &p, &name, Permission::IntegrationsWrite).await?;
    enable(&mut h, enabled);
    app.store.update_heartbeat(&h).await?;
    Ok(v2.data(json!({"name": h.name, "enabled": h.enabled, "expired": h.expired})))
}

/// A ping: Opsgenie answers PONG whether or not the heartbeat exists. The heartbeat's open
/// alert is closed. A ping keeps a heartbeat from raising its alert and closes that alert, so it
/// needs `alerts:write` where the heartbeat belongs (its owner team's, or account-wide for
/// one with no owner team): a read-only or another team's key cannot silence it.
pub async fn ping(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    v2: V2,
) -> ApiResult<Response> {
    let before = app.store.get_heartbeat(&p.org_id, &name).await?;
    if let Some(h) = &before {
        p.require(Permission::AlertsWrite, &resource(h))?;
        app.store
            .ping_heartbeat(h, OffsetDateTime::now_utc())
            .await?;
    }
    if let Some(before) = before
        && let Some(alert) = app
            .store
            .find_alert(&p.org_id, &before.name, IdentifierType::Alias)
            .await?
        && alert.status == "open"
        // The heartbeat's own alert (the sweep raises it as source `Heartbeat`), or one a
        // missed interval was counted into: closed on the next ping whatever happened to the
        // heartbeat in between (disabled, enabled, changed).
        && (before.expired || alert.source == HEARTBEAT_SOURCE)
        // Only an alert the caller may write: another team's alert with the heartbeat's name
        // as its alias is not the heartbeat's to close.
        && tocsin_core::policy::authorize(
            &p.grants,
            Permission::AlertsWrite,
            &crate::routes::alerts::alert_resource(&alert),
        )
        .is_allowed()
    {
        let op = AlertOp {
            org_id: p.org_id.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
            integration_id: None,
            kind: OpKind::Act {
                alert_id: alert.id,
                action: Action::Close,
                user: "Heartbeat".into(),
                note: Some(format!("Heartbeat {} was pinged again", before.name)),
                adjustments: vec![],
            },
        };
        app.alerts
            .submit(op)
            .await
            .map_err(|e| ApiError::Internal(format!("heartbeat close: {e}")))?;
    }
    let body = json!({"result": "PONG - Heartbeat received", "took": v2.took(), "requestId": v2.request_id()});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Opens an alert for every enabled heartbeat that missed its interval at `now`, and for any
/// whose alert an earlier sweep took and did not raise. An alert that is not raised is logged
/// and left owed: one the writer could not take (`heartbeat_alert_failed`) is tried again by
/// the next sweep, one refused or failed in its write two minutes on; the heartbeats after it
/// are still raised. Answers how many alerts were raised.
pub async fn sweep(app: &App, now: OffsetDateTime) -> ApiResult<usize> {
    let expired = app.store.take_expired_heartbeats(now).await?;
    let mut raised = 0;
    for h in &expired {
        let responders: Vec<Responder> = h
            .owner_team_id
            .iter()
            .map(|t| Responder {
                kind: "team".into(),
                id: t.clone(),
            })
            .collect();
        let draft = AlertDraft {
            message: h.alert_message.clone(),
            alias: Some(h.name.clone()),
            description: format!(
                "Heartbeat {} was not pinged within {} {}.",
                h.name, h.interval, h.interval_unit
            ),
            teams: h.owner_team_id.iter().cloned().collect(),
            responders,
            visible_to: vec![],
            owner_team_id: h.owner_team_id.clone(),
            integration: None,
            actions: vec![],
            tags: h.alert_tags.clone(),
            details: Map::new(),
            entity: h.name.clone(),
            source: HEARTBEAT_SOURCE.into(),
            priority: h.alert_priority.clone(),
            user: "Heartbeat".into(),
            note: None,
            adjustments: vec![],
            // As a create from the heartbeat's team: never counted into another team's alert
            // that happens to hold the heartbeat's name as its alias.
            write_teams: h.owner_team_id.clone().map(|t| vec![t]),
            received_at: None,
        };
        let op = AlertOp {
            org_id: h.org_id.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
            integration_id: None,
            kind: OpKind::Create(Box::new(draft)),
        };
        match app.alerts.submit(op).await {
            Ok(status) if status.success => {
                raised += 1;
                if let Err(e) = app.store.heartbeat_alert_raised(h, now).await {
                    tracing::error!(org = %h.org_id, heartbeat = %h.name, error = %e, "a missed heartbeat's alert was raised, but could not be marked so; it may be raised again (counted into the open alert)");
                }
            }
            // Refused (its alias is another team's open alert) or failed in the write: the
            // claim stands, and a sweep takes it again once it is `CLAIM_RETRY_MS` old, until
            // the alert is raised or the heartbeat is pinged or switched off and on.
            Ok(status) => {
                tracing::warn!(org = %h.org_id, heartbeat = %h.name, status = %status.status, "a missed heartbeat's alert was not raised; tried again in two minutes");
            }
            Err(e) => {
                tracing::error!(org = %h.org_id, heartbeat = %h.name, error = %e, "a missed heartbeat's alert could not be written; the next sweep tries again");
                if let Err(e) = app.store.heartbeat_alert_failed(h, now).await {
                    tracing::error!(org = %h.org_id, heartbeat = %h.name, error = %e, "a missed heartbeat's claim could not be released; tried again in two minutes");
                }
            }
        }
    }
    Ok(raised)
}
