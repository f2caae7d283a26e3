//! Alerts, their notes, logs and request statuses. Every write is an `AlertOp` applied inside
//! a transaction that the group-commit writer (`AlertWriter`) shares among many requests; a
//! request is answered only once its batch has committed.

use crate::alert_search::{SqlValue, to_sql};
pub(crate) use crate::answer::Reply;
use crate::batch::BatchConn;
use crate::{Db, Result, Store, StoreError, from_json, from_ms, ms, on_db, safe, to_json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;
use tocsin_core::OrgId;
use tocsin_core::search::Query;
use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responder {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertIntegration {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Clone, Debug)]
pub struct Alert {
    pub id: String,
    pub org_id: OrgId,
    pub tiny_id: i64,
    pub alias: String,
    pub message: String,
    pub status: String,
    pub acknowledged: bool,
    pub is_seen: bool,
    pub tags: Vec<String>,
    pub snoozed: bool,
    pub snoozed_until: Option<OffsetDateTime>,
    pub count: i64,
    pub last_occurred_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub source: String,
    pub owner: String,
    pub priority: String,
    pub responders: Vec<Responder>,
    /// Ids of the teams the alert belongs to: its team responders and owner team.
    pub teams: Vec<String>,
    pub visible_to: Vec<Responder>,
    pub owner_team_id: Option<String>,
    pub integration: Option<AlertIntegration>,
    /// Milliseconds from creation to the first acknowledgement and to the close.
    pub ack_time: Option<i64>,
    pub close_time: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub closed_by: Option<String>,
    pub actions: Vec<String>,
    pub entity: String,
    pub description: String,
    pub details: serde_json::Map<String, serde_json::Value>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AlertRow {
    id: String,
    org_id: String,
    tiny_id: i64,
    alias: String,
    message: String,
    status: String,
    acknowledged: bool,
    is_seen: bool,
    tags: String,
    snoozed: bool,
    snoozed_until: Option<i64>,
    count: i64,
    last_occurred_at: i64,
    created_at: i64,
    updated_at: i64,
    source: String,
    owner: String,
    priority: String,
    responders: String,
    teams: String,
    visible_to: String,
    owner_team_id: Option<String>,
    integration_id: Option<String>,
    integration_name: Option<String>,
    integration_type: Option<String>,
    ack_time: Option<i64>,
    close_time: Option<i64>,
    acknowledged_by: Option<String>,
    closed_by: Option<String>,
    actions: String,
    entity: String,
    description: String,
    details: String,
}

impl From<AlertRow> for Alert {
    fn from(r: AlertRow) -> Self {
        Alert {
            id: r.id,
            org_id: OrgId::from_trusted(r.org_id),
            tiny_id: r.tiny_id,
            alias: r.alias,
            message: r.message,
            status: r.status,
            acknowledged: r.acknowledged,
            is_seen: r.is_seen,
            tags: from_json(&r.tags),
            // A snooze ends at its `snoozed_until` without anything being written: the alert
            // reads as snoozed only until then (the search reads it the same way).
            snoozed: r.snoozed && r.snoozed_until.is_some_and(|until| until > crate::now_ms()),
            snoozed_until: r.snoozed_until.map(from_ms),
            count: r.count,
            last_occurred_at: from_ms(r.last_occurred_at),
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
            source: r.source,
            owner: r.owner,
            priority: r.priority,
            responders: from_json(&r.responders),
            teams: from_json(&r.teams),
            visible_to: from_json(&r.visible_to),
            owner_team_id: r.owner_team_id,
            integration: match (r.integration_id, r.integration_name, r.integration_type) {
                (Some(id), Some(name), Some(kind)) => Some(AlertIntegration { id, name, kind }),
                _ => None,
            },
            ack_time: r.ack_time,
            close_time: r.close_time,
            acknowledged_by: r.acknowledged_by,
            closed_by: r.closed_by,
            actions: from_json(&r.actions),
            entity: r.entity,
            description: r.description,
            details: from_json(&r.details),
        }
    }
}

impl AlertRow {
    /// Reads a row of `SELECT {COLUMNS}` on the embedded write connection.
    pub(crate) fn from_rusqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
        Ok(AlertRow {
            id: r.get(0)?,
            org_id: r.get(1)?,
            tiny_id: r.get(2)?,
            alias: r.get(3)?,
            message: r.get(4)?,
            status: r.get(5)?,
            acknowledged: r.get(6)?,
            is_seen: r.get(7)?,
            tags: r.get(8)?,
            snoozed: r.get(9)?,
            snoozed_until: r.get(10)?,
            count: r.get(11)?,
            last_occurred_at: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            source: r.get(15)?,
            owner: r.get(16)?,
            priority: r.get(17)?,
            responders: r.get(18)?,
            teams: r.get(19)?,
            visible_to: r.get(20)?,
            owner_team_id: r.get(21)?,
            integration_id: r.get(22)?,
            integration_name: r.get(23)?,
            integration_type: r.get(24)?,
            ack_time: r.get(25)?,
            close_time: r.get(26)?,
            acknowledged_by: r.get(27)?,
            closed_by: r.get(28)?,
            actions: r.get(29)?,
            entity: r.get(30)?,
            description: r.get(31)?,
            details: r.get(32)?,
        })
    }
}

/// The row of an alert's update: the alert, then what an action may change. SQLite binds its
/// fields in this order as the parameters of `batch::update_alert()`; PostgreSQL reads them
/// by name from the row as a JSON object.
#[derive(Serialize)]
pub(crate) struct AlertUpdate<'a> {
    pub org_id: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    pub acknowledged: bool,
    pub tags: String,
    pub snoozed: bool,
    pub snoozed_until: Option<i64>,
    pub updated_at: i64,
    pub owner: &'a str,
    pub priority: &'a str,
    pub responders: String,
    pub teams: String,
    pub ack_time: Option<i64>,
    pub close_time: Option<i64>,
    pub acknowledged_by: Option<&'a str>,
    pub closed_by: Option<&'a str>,
    pub message: &'a str,
    pub description: &'a str,
    pub details: String,
}

impl<'a> AlertUpdate<'a> {
    pub(crate) const COLUMNS: &'static [&'static str] = &[
        "org_id",
        "id",
        "status",
        "acknowledged",
        "tags",
        "snoozed",
        "snoozed_until",
        "updated_at",
        "owner",
        "priority",
        "responders",
        "teams",
        "ack_time",
        "close_time",
        "acknowledged_by",
        "closed_by",
        "message",
        "description",
        "details",
    ];

    pub(crate) fn new(a: &'a Alert, now: i64) -> Self {
        AlertUpdate {
            org_id: a.org_id.as_str(),
            id: &a.id,
            status: &a.status,
            acknowledged: a.acknowledged,
            tags: to_json(&a.tags),
            snoozed: a.snoozed,
            snoozed_until: a.snoozed_until.map(ms),
            updated_at: now,
            owner: &a.owner,
            priority: &a.priority,
            responders: to_json(&a.responders),
            teams: to_json(&a.teams),
            ack_time: a.ack_time,
            close_time: a.close_time,
            acknowledged_by: a.acknowledged_by.as_deref(),
            closed_by: a.closed_by.as_deref(),
            message: &a.message,
            description: &a.description,
            details: to_json(&a.details),
        }
    }
}

/// The columns of an alert as read (`AlertRow`).
macro_rules! alert_columns {
    () => {
        "id, org_id, tiny_id, alias, message, status, acknowledged, is_seen, tags, snoozed,
    snoozed_until, count, last_occurred_at, created_at, updated_at, source, owner, priority, responders, teams,
    visible_to, owner_team_id, integration_id, integration_name, integration_type, ack_time, close_time,
    acknowledged_by, closed_by, actions, entity, description, details"
    };
}
pub(crate) const COLUMNS: &str = alert_columns!();
/// The columns of a new alert (`AlertInsert`): those read, and who created it, which only its
/// creation log line shows (`alert_entries`).
pub(crate) const INSERT_COLUMNS: &str = concat!(alert_columns!(), ", created_by");

/// How an `{identifier}` names an alert (`identifierType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifierType {
    Id,
    Tiny,
    Alias,
}

impl IdentifierType {
    /// Opsgenie's `identifierType`, in any case; absent or empty (`identifierType=`, as a
    /// client that fills in a template sends) is `id`, Opsgenie's default.
    pub fn parse(s: Option<&str>) -> Option<IdentifierType> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "id") => Some(IdentifierType::Id),
            Some("tiny") => Some(IdentifierType::Tiny),
            Some("alias") => Some(IdentifierType::Alias),
            _ => None,
        }
    }
}

/// A fully resolved new alert (teams and responders already looked up by the caller). It is
/// what the alert log stores (alert_log.rs): a field added here is read as absent from
/// records logged before it only if it has a `#[serde(default)]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertDraft {
    pub message: String,
    pub alias: Option<String>,
    pub description: String,
    pub responders: Vec<Responder>,
    pub teams: Vec<String>,
    pub visible_to: Vec<Responder>,
    pub owner_team_id: Option<String>,
    pub integration: Option<AlertIntegration>,
    pub actions: Vec<String>,
    pub tags: Vec<String>,
    pub details: serde_json::Map<String, serde_json::Value>,
    pub entity: String,
    pub source: String,
    pub priority: String,
    pub user: String,
    pub note: Option<String>,
    /// Appended to the request status ("message was truncated", ...).
    pub adjustments: Vec<String>,
    /// The teams the creator may write alerts in; `None` when it may write every alert (an
    /// account-wide grant). A create whose alias is taken by an open alert outside these teams
    /// is refused, not counted into that alert: a team's key never writes to, nor learns the
    /// id of, another team's alert.
    pub write_teams: Option<Vec<String>>,
    /// When the create was received (ms since the epoch): the new alert's createdAt, or the
    /// lastOccurredAt of the open alert it is counted into. Set when the create is queued
    /// (`AlertWriter`), so that an alert the tables take after a restart (alert_log.rs), or a
    /// batch's gathering later, keeps the time its request came. `None` (a draft read back
    /// from an alert log written before this field) takes the time of its batch.
    #[serde(default)]
    pub received_at: Option<i64>,
}

impl AlertDraft {
    /// Whether this draft's creator may count it into an alert with `teams` (read only for a
    /// creator limited to some teams: an account-wide one costs no parse).
    fn may_add_to(&self, teams: impl FnOnce() -> Vec<String>) -> bool {
        match &self.write_teams {
            None => true,
            Some(mine) => teams().iter().any(|t| mine.contains(t)),
        }
    }
}

/// An alert's teams as stored (a JSON array of ids).
fn stored_teams(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// The open alert a new row was counted into instead of inserted (another node opened it
/// after the batch looked for open aliases; the insert's upsert counted the row into it).
#[derive(Clone, Debug)]
pub(crate) struct Counted {
    pub(crate) id: String,
    /// Its teams as stored, when the backend returned them.
    pub(crate) teams: Option<String>,
}

/// The teams of the alert a new row landed in: the row's own, or those of the open alert the
/// insert counted it into.
fn landed_teams(counted: &Option<Counted>, row: &AlertInsert<'_>) -> Vec<String> {
    stored_teams(
        counted
            .as_ref()
            .and_then(|c| c.teams.as_deref())
            .unwrap_or(&row.teams),
    )
}

/// A change to an existing alert.
#[derive(Clone, Debug)]
pub enum Action {
    Acknowledge,
    Unacknowledge,
    Close,
    AddNote,
    Snooze { until: OffsetDateTime },
    AddTags(Vec<String>),
    RemoveTags(Vec<String>),
    AddDetails(serde_json::Map<String, serde_json::Value>),
    RemoveDetails(Vec<String>),
    SetPriority(String),
    SetMessage(String),
    SetDescription(String),
    Assign { owner: String },
    AddTeam { team_id: String },
    AddResponder(Responder),
    Escalate { escalation: String },
    Custom { name: String },
    Delete,
}

impl Action {
    /// The `action` a request status reports, in Opsgenie's words.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge => "Acknowledge",
            Action::Unacknowledge => "UnAcknowledge",
            Action::Close => "Close",
            Action::AddNote => "AddNote",
            Action::Snooze { .. } => "Snooze",
            Action::AddTags(_) => "AddTags",
            Action::RemoveTags(_) => "RemoveTags",
            Action::AddDetails(_) => "AddDetails",
            Action::RemoveDetails(_) => "RemoveDetails",
            Action::SetPriority(_) => "UpdatePriority",
            Action::SetMessage(_) => "UpdateMessage",
            Action::SetDescription(_) => "UpdateDescription",
            Action::Assign { .. } => "AssignOwnership",
            Action::AddTeam { .. } => "AddTeam",
            Action::AddResponder(_) => "AddResponder",
            Action::Escalate { .. } => "EscalateToNext",
            Action::Custom { .. } => "ExecuteCustomAction",
            Action::Delete => "Delete",
        }
    }
}

/// One write, with the request it answers.
#[derive(Clone, Debug)]
pub struct AlertOp {
    pub org_id: OrgId,
    pub request_id: String,
    pub integration_id: Option<String>,
    pub kind: OpKind,
}

impl AlertOp {
    pub(crate) fn is_create(&self) -> bool {
        matches!(self.kind, OpKind::Create(_))
    }
}

#[derive(Clone, Debug)]
pub enum OpKind {
    Create(Box<AlertDraft>),
    Act {
        alert_id: String,
        action: Action,
        user: String,
        note: Option<String>,
        /// What the request's own fields lost on the way in (a `user` or `note` cut to its
        /// limit), appended to the request status as a create's adjustments are.
        adjustments: Vec<String>,
    },
    /// An action whose alert could not be found: only its request status is recorded.
    Fail {
        action: &'static str,
        status: String,
        alias: String,
    },
}

/// What became of a request, as `GET /v2/alerts/requests/{id}` reports it.
#[derive(Clone, Debug)]
pub struct RequestStatus {
    pub id: String,
    pub action: String,
    pub success: bool,
    pub status: String,
    pub alert_id: String,
    pub alias: String,
    pub integration_id: Option<String>,
    pub processed_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct NoteOrLog {
    pub id: String,
    pub text: String,
    pub kind: String,
    pub owner: String,
    pub created_at: OffsetDateTime,
}

/// What a caller may see of the alerts: everything, or the alerts of some teams.
#[derive(Clone, Debug, Default)]
pub struct AlertScope {
    pub all: bool,
    pub teams: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    TinyId,
    Alias,
    Message,
    Status,
    Acknowledged,
    IsSeen,
    Snoozed,
    SnoozedUntil,
    Count,
    LastOccurredAt,
    Source,
    Owner,
    IntegrationName,
    IntegrationType,
    AckTime,
    CloseTime,
    AcknowledgedBy,
    ClosedBy,
}

impl SortField {
    /// Every `sort` value `GET /v2/alerts` takes (Opsgenie's names), with the field it sorts
    /// by; the OpenAPI document lists the same names.
    pub const NAMES: &[(&'static str, SortField)] = &[
        ("createdAt", SortField::CreatedAt),
        ("updatedAt", SortField::UpdatedAt),
        ("tinyId", SortField::TinyId),
        ("alias", SortField::Alias),
        ("message", SortField::Message),
        ("status", SortField::Status),
        ("acknowledged", SortField::Acknowledged),
        ("isSeen", SortField::IsSeen),
        ("snoozed", SortField::Snoozed),
        ("snoozedUntil", SortField::SnoozedUntil),
        ("count", SortField::Count),
        ("lastOccurredAt", SortField::LastOccurredAt),
        // The Go SDK spells it this way.
        ("lastOccuredAt", SortField::LastOccurredAt),
        ("source", SortField::Source),
        ("owner", SortField::Owner),
        ("integration.name", SortField::IntegrationName),
        ("integration.type", SortField::IntegrationType),
        ("report.ackTime", SortField::AckTime),
        ("report.closeTime", SortField::CloseTime),
        ("report.acknowledgedBy", SortField::AcknowledgedBy),
        ("report.closedBy", SortField::ClosedBy),
    ];

    pub fn parse(s: &str) -> Option<SortField> {
        SortField::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, field)| *field)
    }

    fn column(self) -> &'static str {
        use SortField::*;
        match self {
            CreatedAt => "created_at",
            UpdatedAt => "updated_at",
            TinyId => "tiny_id",
            Alias => "alias",
            Message => "message",
            Status => "status",
            Acknowledged => "acknowledged",
            IsSeen => "is_seen",
            Snoozed => "snoozed",
            SnoozedUntil => "snoozed_until",
            Count => "count",
            LastOccurredAt => "last_occurred_at",
            Source => "source",
            Owner => "owner",
            IntegrationName => "integration_name",
            IntegrationType => "integration_type",
            AckTime => "ack_time",
            CloseTime => "close_time",
            AcknowledgedBy => "acknowledged_by",
            ClosedBy => "closed_by",
        }
    }
}

/// Builds the WHERE clause of a search: organization, scope, then the query, from `$1`.
fn search_clause(org: &OrgId, scope: &AlertScope, query: &Query) -> (String, Vec<SqlValue>) {
    let mut params = vec![SqlValue::Text(org.to_string())];
    let mut clause = "org_id = $1".to_owned();
    if !scope.all {
        let mut any = Vec::new();
        for team in &scope.teams {
            params.push(SqlValue::Text(format!("%{}%", to_json(team))));
            any.push(format!("teams LIKE ${}", params.len()));
        }
        if any.is_empty() {
            any.push("1=0".into());
        }
        clause.push_str(&format!(" AND ({})", any.join(" OR ")));
    }
    let (expr, values) = to_sql(query, params.len() + 1);
    params.extend(values);
    clause.push_str(&format!(" AND ({expr})"));
    (clause, params)
}

macro_rules! bind_all {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                SqlValue::Text(s) => q.bind(s.clone()),
                SqlValue::Int(i) => q.bind(*i),
                SqlValue::Bool(b) => q.bind(*b),
            };
        }
        q
    }};
}

/// What an action does to an alert, worked out in memory.
struct Outcome {
    /// The alert as it is to be stored.
    changed: Alert,
    /// The log line, for an action that goes ahead.
    text: String,
    /// Why the action is refused (the alert is left as it was).
    refused: Option<String>,
    delete: bool,
    /// What the action could not do as asked (tags over the limit, say), for the status.
    notes: Vec<String>,
}

fn act_on(a: &Alert, action: &Action, user: &str, now: i64) -> Outcome {
    let mut a2 = a.clone();
    let mut text = String::new();
    let mut refused = None;
    let mut delete = false;
    let mut notes = Vec::new();
    match action {
        Action::Acknowledge => {
            if a.status == "closed" {
                refused = Some("Alert is closed; it cannot be acknowledged".into());
            } else {
                a2.acknowledged = true;
                if a2.ack_time.is_none() {
                    a2.ack_time = Some(now - ms(a.created_at));
                    a2.acknowledged_by = Some(user.to_owned());
                }
                text = format!("Alert acknowledged by {user}");
            }
        }
        Action::Unacknowledge => {
            a2.acknowledged = false;
            text = format!("Alert unacknowledged by {user}");
        }
        Action::Close => {
            if a.status != "closed" {
                a2.status = "closed".into();
                a2.close_time = Some(now - ms(a.created_at));
                a2.closed_by = Some(user.to_owned());
                a2.snoozed = false;
            }
            text = format!("Alert closed by {user}");
        }
        Action::AddNote => text = format!("Note added by {user}"),
        Action::Snooze { until } => {
            if a.status == "closed" {
                refused = Some("Alert is closed; it cannot be snoozed".into());
            } else {
                a2.snoozed = true;
                a2.snoozed_until = Some(*until);
                text = format!(
                    "Alert snoozed until {} by {user}",
                    tocsin_core::key::fmt_rfc3339(*until)
                );
            }
        }
        Action::AddTags(tags) => {
            use tocsin_core::alert::{TAG_MAX, TAGS_MAX, truncate};
            let mut added = Vec::new();
            let mut over = 0;
            for t in tags {
                let t = truncate("a tag", t, TAG_MAX, &mut notes);
                if a2.tags.contains(&t) {
                    continue;
                }
                if a2.tags.len() >= TAGS_MAX {
                    over += 1;
                    continue;
                }
                a2.tags.push(t.clone());
                added.push(t);
            }
            if over > 0 {
                notes.push(format!(
                    "{over} of the tags were not added: an alert holds at most {TAGS_MAX}"
                ));
            }
            text = if added.is_empty() {
                format!("No tags added (the alert already had them, or holds {TAGS_MAX} tags)")
            } else {
                format!("Tags added: {}", added.join(", "))
            };
        }
        Action::RemoveTags(tags) => {
            let (removed, absent) = split_present(tags, |t| a.tags.contains(t));
            a2.tags.retain(|t| !tags.contains(t));
            text = removed_text("Tags", &removed);
            if !absent.is_empty() {
                notes.push(format!("tags {} were not on the alert", absent.join(", ")));
            }
        }
        Action::AddDetails(details) => {
            use tocsin_core::alert::DETAILS_MAX;
            let size = |k: &str, v: &serde_json::Value| {
                k.chars().count() + v.as_str().map_or(0, |s| s.chars().count())
            };
            let mut total: usize = a2.details.iter().map(|(k, v)| size(k, v)).sum();
            let mut dropped = Vec::new();
            let mut added = 0;
            for (k, v) in details {
                let replaced = a2.details.get(k).map_or(0, |old| size(k, old));
                let after = total - replaced + size(k, v);
                if after > DETAILS_MAX {
                    dropped.push(k.as_str());
                    continue;
                }
                total = after;
                added += 1;
                a2.details.insert(k.clone(), v.clone());
            }
            if !dropped.is_empty() {
                notes.push(format!(
                    "details {} were not added: an alert's details hold at most {DETAILS_MAX} characters in total",
                    dropped.join(", ")
                ));
            }
            text = if added == 0 {
                "No details added".into()
            } else {
                "Details added".into()
            };
        }
        Action::RemoveDetails(keys) => {
            let (removed, absent) = split_present(keys, |k| a.details.contains_key(k));
            for k in keys {
                a2.details.remove(k);
            }
            text = removed_text("Details", &removed);
            if !absent.is_empty() {
                notes.push(format!(
                    "details {} were not on the alert",
                    absent.join(", ")
                ));
            }
        }
        Action::SetPriority(p) => {
            a2.priority = p.clone();
            text = format!("Priority changed to {p}");
        }
        Action::SetMessage(m) => {
            a2.message = tocsin_core::alert::truncate(
                "message",
                m,
                tocsin_core::alert::MESSAGE_MAX,
                &mut notes,
            );
            text = "Message updated".into();
        }
        Action::SetDescription(d) => {
            a2.description = tocsin_core::alert::truncate(
                "description",
                d,
                tocsin_core::alert::DESCRIPTION_MAX,
                &mut notes,
            );
            text = "Description updated".into();
        }
        Action::Assign { owner } => {
            a2.owner = owner.clone();
            text = format!("Alert assigned to {owner}");
        }
        Action::AddTeam { team_id } => {
            let r = Responder {
                kind: "team".into(),
                id: team_id.clone(),
            };
            if !a2.responders.contains(&r) {
                a2.responders.push(r);
            }
            if !a2.teams.contains(team_id) {
                a2.teams.push(team_id.clone());
            }
            text = format!("Team {team_id} added");
        }
        Action::AddResponder(r) => {
            if !a2.responders.contains(r) {
                a2.responders.push(r.clone());
            }
            if r.kind == "team" && !a2.teams.contains(&r.id) {
                a2.teams.push(r.id.clone());
            }
            text = format!("Responder {} {} added", r.kind, r.id);
        }
        Action::Escalate { escalation } => {
            text = format!("Escalated to the next level of {escalation}");
        }
        Action::Custom { name } => {
            if !a.actions.contains(name) {
                refused = Some(format!("Alert has no action named `{name}`"));
            } else {
                text = format!("Action {name} executed by {user}");
            }
        }
        Action::Delete => delete = true,
    }
    Outcome {
        changed: a2,
        text,
        refused,
        delete,
        notes,
    }
}

/// The names a remove action was given, split into those the alert has and those it has not
/// (each once, in the order given).
fn split_present(names: &[String], present: impl Fn(&String) -> bool) -> (Vec<&str>, Vec<&str>) {
    let (mut removed, mut absent): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for n in names {
        let list = if present(n) {
            &mut removed
        } else {
            &mut absent
        };
        if !list.contains(&n.as_str()) {
            list.push(n);
        }
    }
    (removed, absent)
}

/// The log line of a remove action: only what it removed, or that it removed nothing.
fn removed_text(what: &str, removed: &[&str]) -> String {
    if removed.is_empty() {
        format!(
            "No {} removed (the alert had none of them)",
            what.to_lowercase()
        )
    } else {
        format!("{what} removed: {}", removed.join(", "))
    }
}

/// Applies one action to an existing alert on an open transaction or savepoint. Its log
/// lines and note go to `out` (written for the whole batch at the end).
async fn act_op<C: BatchConn>(
    conn: &mut C,
    op: &AlertOp,
    now: i64,
    out: &mut Trail,
) -> Result<RequestStatus> {
    let org = op.org_id.as_str();
    let OpKind::Act {
        alert_id,
        action,
        user,
        note,
        adjustments,
    } = &op.kind
    else {
        return Ok(failed(op, "Request could not be processed: not an action"));
    };
    let done = |status: String, alert_id: &str, alias: &str, success: bool| RequestStatus {
        id: op.request_id.clone(),
        action: action.name().to_owned(),
        success,
        status,
        alert_id: alert_id.to_owned(),
        alias: alias.to_owned(),
        integration_id: op.integration_id.clone(),
        processed_at: from_ms(now),
    };
    let Some(a) = conn.alert(org, alert_id).await? else {
        return Ok(done("Alert does not exist".into(), "", "", false));
    };
    let outcome = act_on(&a, action, user, now);
    if let Some(status) = outcome.refused {
        return Ok(done(status, &a.id, &a.alias, false));
    }
    if outcome.delete {
        // Lines queued earlier in this batch would name a deleted alert.
        out.forget(&a.id);
        conn.delete_alert(org, &a.id).await?;
        return Ok(done("Deleted alert".into(), &a.id, &a.alias, true));
    }
    conn.update_alert(&AlertUpdate::new(&outcome.changed, now))
        .await?;
    out.log(org, &a.id, outcome.text, "system", user, now);
    if let Some(n) = note {
        out.note(org, &a.id, n, user, now);
    }
    let status = with_notes(
        "Request processed successfully",
        adjustments.iter().chain(&outcome.notes),
    );
    Ok(done(status, &a.id, &a.alias, true))
}

/// A successful request's status, followed by what it could not do as asked (text cut to its
/// limit, tags past an alert's 20...), one clause each: the same words for a create and for
/// every action.
fn with_notes<'a>(status: &str, notes: impl IntoIterator<Item = &'a String>) -> String {
    let mut status = status.to_owned();
    for n in notes {
        status.push_str("; ");
        status.push_str(n);
    }
    status
}

/// Where a create of a run lands.
enum Landing {
    /// An open alert with its alias, there before the run: counted.
    Existing(String),
    /// An open alert with its alias that belongs to teams its creator may not write in.
    Refused,
    /// The run's new row `k`.
    New(usize),
    /// Counted into the run's new row `k` (an earlier create of the run had the alias).
    Again(usize),
}

/// A run of creates, set-based: one look for open aliases per organization, one tinyId
/// reservation per organization, one insert for every new alert, one count update per alert
/// that was created again. Same rules as one create at a time: an open alert with the alias
/// is counted instead, and so is one that another node opened between the look and the insert
/// (the upsert counts it; its reserved tinyId stays unused).
async fn create_run<C: BatchConn>(
    conn: &mut C,
    ops: &[AlertOp],
    now: i64,
    out: &mut Trail,
) -> Result<Vec<RequestStatus>> {
    let mut wanted: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for op in ops {
        if let OpKind::Create(d) = &op.kind
            && let Some(alias) = &d.alias
        {
            wanted.entry(op.org_id.as_str()).or_default().push(alias);
        }
    }
    let mut open: std::collections::HashMap<(&str, String), (String, String)> = Default::default();
    for (org, aliases) in &wanted {
        for (alias, id, teams) in conn.open_aliases(org, aliases).await? {
            open.insert((*org, alias), (id, teams));
        }
    }
    let mut landings: Vec<Option<Landing>> = Vec::with_capacity(ops.len());
    let mut rows: Vec<AlertInsert> = Vec::new();
    let mut fresh: std::collections::HashMap<(&str, String), usize> = Default::default();
    let mut per_org: Vec<(&str, i64)> = Vec::new();
    for op in ops {
        let OpKind::Create(d) = &op.kind else {
            landings.push(None);
            continue;
        };
        let org = op.org_id.as_str();
        if let Some(alias) = &d.alias {
            let key = (org, alias.clone());
            if let Some((id, teams)) = open.get(&key) {
                landings.push(Some(match d.may_add_to(|| stored_teams(teams)) {
                    true => Landing::Existing(id.clone()),
                    false => Landing::Refused,
                }));
                continue;
            }
            if let Some(&k) = fresh.get(&key) {
                landings.push(Some(Landing::Again(k)));
                continue;
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let alias = d.alias.clone().unwrap_or_else(|| id.clone());
        fresh.insert((org, alias.clone()), rows.len());
        match per_org.iter_mut().find(|(o, _)| *o == org) {
            Some((_, n)) => *n += 1,
            None => per_org.push((org, 1)),
        }
        landings.push(Some(Landing::New(rows.len())));
        rows.push(AlertInsert::new(
            id,
            alias,
            org,
            d,
            d.received_at.unwrap_or(now),
        ));
    }
    // The counter rows are taken in the organizations' order, as the chains' heads are
    // (audit::segments_in), so that two nodes' batches wait for each other, not deadlock.
    per_org.sort_unstable();
    for (org, n) in &per_org {
        let mut next = conn.reserve_tiny_ids(org, *n).await?;
        for row in rows.iter_mut().filter(|r| r.org_id == *org) {
            row.tiny_id = next;
            next += 1;
        }
    }
    // Each new row's alert: its own (`None`), or the open alert the upsert counted it into
    // (another node's, opened since the look above), with that alert's teams.
    let landed: Vec<Option<Counted>> = match rows.is_empty() {
        true => Vec::new(),
        false => conn.insert_alerts(&rows).await?,
    };
    if landed.len() != rows.len() {
        return Err(StoreError::Config(
            "the alerts' insert answered for another number of rows".into(),
        ));
    }
    let id_of = |k: usize| landed[k].as_ref().map_or(&rows[k].id, |c| &c.id).clone();
    // (organization, alert, creates counted into it, the latest one's time)
    let mut counted: Vec<(&str, String, i64, i64)> = Vec::new();
    let mut count_into = |org, id: &String, at: i64| match counted.iter_mut().find(|c| c.1 == *id) {
        Some((_, _, n, last)) => (*n, *last) = (*n + 1, (*last).max(at)),
        None => counted.push((org, id.clone(), 1, at)),
    };
    let mut statuses = Vec::with_capacity(ops.len());
    for (op, landing) in ops.iter().zip(landings) {
        let (OpKind::Create(d), Some(landing)) = (&op.kind, landing) else {
            statuses.push(failed(op, "Request could not be processed: not a create"));
            continue;
        };
        let org = op.org_id.as_str();
        let at = d.received_at.unwrap_or(now);
        let refused = |alias: &str| {
            let mut s = failed(
                op,
                &format!(
                    "Request could not be processed: an open alert with the alias `{alias}` belongs to other teams (or to no team), where this credential may not write alerts. Use another alias, or a key of the alert's team."
                ),
            );
            s.alias = alias.to_owned();
            s.processed_at = from_ms(now);
            s
        };
        let (alert_id, alias, again) = match landing {
            Landing::Refused => {
                statuses.push(refused(d.alias.as_deref().unwrap_or_default()));
                continue;
            }
            // Counted into a row of this run, or (by the upsert) into an alert another node
            // opened since the look for open aliases. (The upsert has counted it already: a
            // race between nodes, which only the count shows.)
            Landing::Again(k) if !d.may_add_to(|| landed_teams(&landed[k], &rows[k])) => {
                statuses.push(refused(&rows[k].alias));
                continue;
            }
            Landing::New(k)
                if landed[k].is_some() && !d.may_add_to(|| landed_teams(&landed[k], &rows[k])) =>
            {
                statuses.push(refused(&rows[k].alias));
                continue;
            }
            Landing::Existing(id) => {
                count_into(org, &id, at);
                (id, d.alias.clone().unwrap_or_default(), true)
            }
            Landing::Again(k) => {
                let id = id_of(k);
                count_into(org, &id, at);
                (id, rows[k].alias.clone(), true)
            }
            Landing::New(k) => (id_of(k), rows[k].alias.clone(), landed[k].is_some()),
        };
        let status = if again {
            out.log(
                org,
                &alert_id,
                format!("Alert occurred again: {}", d.message),
                "system",
                &d.user,
                at,
            );
            // A repeat keeps only its message (in the log line), user and note: what was cut
            // of those is said; what was adjusted of the fields it ignores is not.
            with_notes(
                "Alert already exists and its count was increased",
                d.adjustments.iter().filter(|a| {
                    ["message ", "user ", "note "]
                        .iter()
                        .any(|field| a.starts_with(field))
                }),
            )
        } else {
            // The creation log line is not a row of its own: `alert_entries` reads it off the
            // alert (its id, creation time and `created_by`), one row fewer per new alert.
            with_notes("Created alert", &d.adjustments)
        };
        if let Some(n) = &d.note {
            out.note(org, &alert_id, n, &d.user, at);
        }
        statuses.push(RequestStatus {
            id: op.request_id.clone(),
            action: "Create".into(),
            success: true,
            status,
            alert_id,
            alias,
            integration_id: op.integration_id.clone(),
            processed_at: from_ms(now),
        });
    }
    // In the alerts' order, as another node's batch counts into them: two batches counting
    // into the same two alerts then wait for each other instead of deadlocking.
    counted.sort_unstable();
    for (org, id, n, at) in counted {
        conn.count_again(org, &id, n, at, now).await?;
    }
    Ok(statuses)
}

/// Applies a run of ops (`write_batch` cuts them: a run of creates, or one other op).
async fn apply_run<C: BatchConn>(
    conn: &mut C,
    run: &[AlertOp],
    now: i64,
    out: &mut Trail,
) -> Result<Vec<RequestStatus>> {
    match &run[0].kind {
        OpKind::Create(_) => create_run(conn, run, now, out).await,
        OpKind::Act { .. } => Ok(vec![act_op(conn, &run[0], now, out).await?]),
        OpKind::Fail {
            action,
            status,
            alias,
        } => {
            let mut s = failed(&run[0], status);
            s.action = (*action).to_owned();
            s.alias = alias.clone();
            s.processed_at = from_ms(now);
            Ok(vec![s])
        }
    }
}

/// A batch's writes on an open transaction: `ops` (on the careful path each inside its own
/// savepoint), their log lines, notes and request statuses, and the `audit` events. `None`
/// when an op failed on the fast path: the caller rolls the transaction back.
async fn write_batch<C: BatchConn>(
    conn: &mut C,
    ops: &[AlertOp],
    audit: &[crate::audit::EventView<'_>],
    careful: bool,
) -> Result<Option<Vec<RequestStatus>>> {
    let now = crate::now_ms();
    let mut out = Vec::with_capacity(ops.len());
    let mut trail = Trail::default();
    let mut i = 0;
    while i < ops.len() {
        // A run of creates goes in together; anything else, and every op on the careful
        // path, alone.
        let creates = ops[i..]
            .iter()
            .take_while(|op| matches!(op.kind, OpKind::Create(_)))
            .count();
        let end = if careful { i + 1 } else { i + creates.max(1) };
        let run = &ops[i..end];
        let mut run_trail = Trail::default();
        let result = if careful {
            conn.savepoint().await?;
            let result = apply_run(conn, run, now, &mut run_trail).await;
            match &result {
                Ok(_) => conn.release().await?,
                Err(_) => conn.rollback_to().await?,
            }
            result
        } else {
            apply_run(conn, run, now, &mut run_trail).await
        };
        match result {
            Ok(statuses) => {
                out.extend(statuses);
                trail.extend(run_trail);
            }
            // A deadlock or serialization failure ended the whole transaction: the batch is
            // run again (`apply_batch`), not failed op by op.
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) if careful => {
                tracing::error!(error = %e, request_id = %run[0].request_id, "alert write failed");
                out.push(failed(
                    &run[0],
                    "Request could not be processed: internal error",
                ));
            }
            Err(_) => return Ok(None),
        }
        i = end;
    }
    let requests: Vec<RequestInsert> = out
        .iter()
        .zip(ops)
        .map(|(s, op)| RequestInsert::new(op, s))
        .collect();
    let segments = crate::audit::segments_in(conn, audit).await?;
    conn.finish(&trail.logs, &trail.notes, &requests, &segments)
        .await?;
    Ok(Some(out))
}

impl Store {
    pub async fn find_alert(
        &self,
        org: &OrgId,
        identifier: &str,
        kind: IdentifierType,
    ) -> Result<Option<Alert>> {
        self.alerts_settled().await?;
        let (sql, value): (String, SqlValue) = match kind {
            IdentifierType::Id => {
                (format!("SELECT {COLUMNS} FROM alerts WHERE org_id = $1 AND id = $2"), SqlValue::Text(identifier.into()))
            }
            IdentifierType::Tiny => match identifier.parse::<i64>() {
                Ok(n) => (format!("SELECT {COLUMNS} FROM alerts WHERE org_id = $1 AND tiny_id = $2"), SqlValue::Int(n)),
                Err(_) => return Ok(None),
            },
            // The open alert with this alias, else the newest one.
            IdentifierType::Alias => (
                format!(
                    "SELECT {COLUMNS} FROM alerts WHERE org_id = $1 AND alias = $2
                     ORDER BY CASE WHEN status = 'open' THEN 0 ELSE 1 END, created_at DESC, tiny_id DESC LIMIT 1"
                ),
                SqlValue::Text(identifier.into()),
            ),
        };
        let params = [SqlValue::Text(org.to_string()), value];
        let row: Option<AlertRow> = on_db!(&self.db, |pool| {
            bind_all!(sqlx::query_as(safe(&sql)), params.iter())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Into::into))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn list_alerts(
        &self,
        org: &OrgId,
        scope: &AlertScope,
        query: &Query,
        sort: SortField,
        descending: bool,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Alert>> {
        self.alerts_settled().await?;
        let (clause, mut params) = search_clause(org, scope, query);
        let order = if descending { "DESC" } else { "ASC" };
        let sort_by = match sort {
            // Snoozed as the alert reads: only until its snooze ends (the time is bound).
            SortField::Snoozed => {
                params.push(SqlValue::Int(crate::now_ms()));
                crate::alert_search::snoozed_at(&format!("${}", params.len()))
            }
            other => other.column().to_owned(),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE {clause} ORDER BY {sort_by} {order}, tiny_id {order} LIMIT {limit} OFFSET {offset}"
        );
        let rows: Vec<AlertRow> = on_db!(&self.db, |pool| bind_all!(
            sqlx::query_as(safe(&sql)),
            params.iter()
        )
        .fetch_all(pool)
        .await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn count_alerts(
        &self,
        org: &OrgId,
        scope: &AlertScope,
        query: &Query,
    ) -> Result<i64> {
        self.alerts_settled().await?;
        let (clause, params) = search_clause(org, scope, query);
        let sql = format!("SELECT COUNT(*) FROM alerts WHERE {clause}");
        let (n,): (i64,) = on_db!(&self.db, |pool| bind_all!(
            sqlx::query_as(safe(&sql)),
            params.iter()
        )
        .fetch_one(pool)
        .await?);
        Ok(n)
    }

    pub async fn request_status(&self, org: &OrgId, id: &str) -> Result<Option<RequestStatus>> {
        self.alerts_settled().await?;
        #[derive(sqlx::FromRow)]
        struct Row {
            id: String,
            action: String,
            success: bool,
            status: String,
            alert_id: String,
            alias: String,
            integration_id: Option<String>,
            processed_at: i64,
        }
        let row: Option<Row> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, action, success, status, alert_id, alias, integration_id, processed_at
                 FROM alert_requests WHERE org_id = $1 AND id = $2",
            )
            .bind(org.as_str())
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|r| RequestStatus {
            id: r.id,
            action: r.action,
            success: r.success,
            status: r.status,
            alert_id: r.alert_id,
            alias: r.alias,
            integration_id: r.integration_id,
            processed_at: from_ms(r.processed_at),
        }))
    }

    /// Notes or logs of an alert, by `table` ("alert_notes" or "alert_logs"), in id order.
    pub async fn alert_entries(
        &self,
        org: &OrgId,
        alert_id: &str,
        logs: bool,
        after: Option<&str>,
        descending: bool,
        limit: i64,
    ) -> Result<Vec<NoteOrLog>> {
        self.alerts_settled().await?;
        let (table, text, kind) = if logs {
            ("alert_logs", "log", "type")
        } else {
            ("alert_notes", "note", "'note'")
        };
        let (cmp, order) = if descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        // The stored lines are paged in their own subquery, on the table's key (alert_id, id):
        // a page reads its own lines only, however many the alert has (one that occurred
        // again 100,000 times has as many). The cursor is in the SQL only when there is one,
        // as a range on that key (`$4 IS NULL OR id > $4` is not used as one).
        let past = if after.is_some() {
            format!("AND id {cmp} $4")
        } else {
            String::new()
        };
        // An alert's log opens with its creation line, read off the alert row (it has the
        // alert's id, which sorts before the ids of the log lines written after it). Alerts
        // created before migration 0009 have no `created_by`: that line is a row of
        // alert_logs.
        let created = if logs {
            format!(
                "UNION ALL SELECT id, 'Alert created', 'system', created_by, created_at FROM alerts
                 WHERE org_id = $1 AND id = $2 AND created_by IS NOT NULL {past}"
            )
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT id, text, kind, owner, created_at FROM (
               SELECT id, text, kind, owner, created_at FROM (
                 SELECT id, {text} AS text, {kind} AS kind, owner, created_at FROM {table}
                 WHERE org_id = $1 AND alert_id = $2 {past}
                 ORDER BY id {order} LIMIT $3
               ) AS stored {created}
             ) AS entries ORDER BY id {order} LIMIT $3"
        );
        let rows: Vec<(String, String, String, String, i64)> = on_db!(&self.db, |pool| {
            let query = sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(alert_id)
                .bind(limit);
            match after {
                Some(after) => query.bind(after),
                None => query,
            }
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, text, kind, owner, at)| NoteOrLog {
                id,
                text,
                kind,
                owner,
                created_at: from_ms(at),
            })
            .collect())
    }

    /// Applies a batch of writes in one transaction, each inside its own savepoint so one
    /// failing op cannot undo the others; returns each op's request status.
    pub async fn apply_alert_ops(&self, ops: &[AlertOp]) -> Result<Vec<RequestStatus>> {
        self.apply_batch(ops, &[]).await
    }

    /// One group commit: `ops` and `audit` events, in one transaction and so one disk flush.
    /// On SQLite it runs on the calling thread, through the store's own write connection
    /// (embedded.rs): the group-commit writer calls it from a thread of its own.
    pub async fn apply_batch(
        &self,
        ops: &[AlertOp],
        audit: &[crate::audit::AuditEntry],
    ) -> Result<Vec<RequestStatus>> {
        self.apply_logged_batch(ops, audit, None).await
    }

    /// `apply_batch`, recording in the same transaction that the tables hold the alert log
    /// up to record `logged` (SQLite).
    pub(crate) async fn apply_logged_batch(
        &self,
        ops: &[AlertOp],
        audit: &[crate::audit::AuditEntry],
        logged: Option<u64>,
    ) -> Result<Vec<RequestStatus>> {
        // On PostgreSQL, two nodes' batches that lock the same alerts in different orders (a
        // count into one alert, an upsert into another) deadlock, and the server ends one of
        // them: that batch is run again, so that no op of it fails for a reason of no op's
        // own. (SQLite writes one transaction at a time.)
        let mut tries = 0;
        loop {
            match self.apply_batch_once(ops, audit, logged).await {
                Err(e) if e.is_retryable() && tries < BATCH_TRIES => {
                    tries += 1;
                    tracing::warn!(error = %e, tries, "write batch ended by the database (two nodes' batches waited for each other); running it again");
                    // A few milliseconds, different on each node, so that the two batches do
                    // not meet again at once.
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
                    tokio::time::sleep(std::time::Duration::from_millis(tries * 2 + jitter)).await;
                }
                other => return other,
            }
        }
    }

    async fn apply_batch_once(
        &self,
        ops: &[AlertOp],
        audit: &[crate::audit::AuditEntry],
        logged: Option<u64>,
    ) -> Result<Vec<RequestStatus>> {
        let prepared = crate::audit::Prepared::all(audit);
        let views: Vec<_> = prepared.iter().map(crate::audit::Prepared::view).collect();
        let audit = views.as_slice();
        // Fast path: every op straight into the transaction. Should one fail, the whole
        // transaction is rolled back and the batch redone with a savepoint per op, so that
        // one bad op cannot take the others with it.
        for careful in [false, true] {
            let statuses = match (&self.db, &self.embedded) {
                (Db::Postgres(pool), _) => {
                    let mut tx = pool.begin().await?;
                    match write_batch(&mut *tx, ops, audit, careful).await? {
                        Some(statuses) => {
                            tx.commit().await?;
                            Some(statuses)
                        }
                        None => {
                            tx.rollback().await?;
                            None
                        }
                    }
                }
                (Db::Sqlite(_), Some(embedded)) => embedded.transaction(|conn| {
                    let statuses = crate::embedded::now(write_batch(conn, ops, audit, careful))?;
                    if let (Some(_), Some(seq)) = (&statuses, logged) {
                        conn.set_meta(crate::alert_log::APPLIED_KEY, &seq.to_string())?;
                    }
                    Ok(statuses)
                })?,
                (Db::Sqlite(_), None) => {
                    return Err(StoreError::Closed);
                }
            };
            if let Some(statuses) = statuses {
                return Ok(statuses);
            }
        }
        Ok(Vec::new())
    }
}

/// How many times a batch ended by a deadlock or serialization failure is run again.
const BATCH_TRIES: u64 = 8;

/// The log lines and notes of a batch's ops, written together once the ops have run.
#[derive(Default)]
struct Trail {
    logs: Vec<LogInsert>,
    notes: Vec<NoteInsert>,
    /// Alerts deleted meanwhile: what earlier runs queued for them is dropped on `extend`.
    deleted: Vec<String>,
}

#[derive(Serialize)]
struct LogInsert {
    id: String,
    org_id: String,
    alert_id: String,
    log: String,
    #[serde(rename = "type")]
    kind: &'static str,
    owner: String,
    created_at: i64,
}

#[derive(Serialize)]
struct NoteInsert {
    id: String,
    org_id: String,
    alert_id: String,
    note: String,
    owner: String,
    created_at: i64,
}

impl Trail {
    fn log(
        &mut self,
        org: &str,
        alert: &str,
        text: String,
        kind: &'static str,
        owner: &str,
        now: i64,
    ) {
        self.logs.push(LogInsert {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.to_owned(),
            alert_id: alert.to_owned(),
            log: text,
            kind,
            owner: owner.to_owned(),
            created_at: now,
        });
    }

    fn note(&mut self, org: &str, alert: &str, text: &str, owner: &str, now: i64) {
        self.notes.push(NoteInsert {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.to_owned(),
            alert_id: alert.to_owned(),
            note: text.to_owned(),
            owner: owner.to_owned(),
            created_at: now,
        });
    }

    /// Drops what is queued for an alert that is being deleted.
    fn forget(&mut self, alert: &str) {
        self.logs.retain(|l| l.alert_id != alert);
        self.notes.retain(|n| n.alert_id != alert);
        self.deleted.push(alert.to_owned());
    }

    fn extend(&mut self, other: Trail) {
        for alert in &other.deleted {
            self.forget(alert);
        }
        self.logs.extend(other.logs);
        self.notes.extend(other.notes);
    }
}

#[derive(Serialize)]
struct RequestInsert<'a> {
    id: &'a str,
    org_id: &'a str,
    action: &'a str,
    success: bool,
    status: &'a str,
    alert_id: &'a str,
    alias: &'a str,
    integration_id: Option<&'a str>,
    processed_at: i64,
}

impl<'a> RequestInsert<'a> {
    fn new(op: &'a AlertOp, s: &'a RequestStatus) -> Self {
        RequestInsert {
            id: &s.id,
            org_id: op.org_id.as_str(),
            action: &s.action,
            success: s.success,
            status: &s.status,
            alert_id: &s.alert_id,
            alias: &s.alias,
            integration_id: s.integration_id.as_deref(),
            processed_at: ms(s.processed_at),
        }
    }
}

/// A new alert as a row of the bulk insert; its tinyId is filled in once reserved.
#[derive(Serialize)]
pub(crate) struct AlertInsert<'a> {
    pub(crate) id: String,
    pub(crate) org_id: &'a str,
    tiny_id: i64,
    pub(crate) alias: String,
    message: &'a str,
    status: &'static str,
    acknowledged: bool,
    is_seen: bool,
    tags: String,
    snoozed: bool,
    snoozed_until: Option<i64>,
    count: i64,
    last_occurred_at: i64,
    created_at: i64,
    updated_at: i64,
    source: &'a str,
    owner: &'static str,
    priority: &'a str,
    responders: String,
    teams: String,
    visible_to: String,
    owner_team_id: Option<&'a str>,
    integration_id: Option<&'a str>,
    integration_name: Option<&'a str>,
    integration_type: Option<&'a str>,
    ack_time: Option<i64>,
    close_time: Option<i64>,
    acknowledged_by: Option<&'a str>,
    closed_by: Option<&'a str>,
    actions: String,
    entity: &'a str,
    description: &'a str,
    details: String,
    created_by: &'a str,
}

impl<'a> AlertInsert<'a> {
    fn new(id: String, alias: String, org: &'a str, d: &'a AlertDraft, now: i64) -> Self {
        AlertInsert {
            id,
            org_id: org,
            tiny_id: 0,
            alias,
            message: &d.message,
            status: "open",
            acknowledged: false,
            is_seen: false,
            tags: to_json(&d.tags),
            snoozed: false,
            snoozed_until: None,
            count: 1,
            last_occurred_at: now,
            created_at: now,
            updated_at: now,
            source: &d.source,
            owner: "",
            priority: &d.priority,
            responders: to_json(&d.responders),
            teams: to_json(&d.teams),
            visible_to: to_json(&d.visible_to),
            owner_team_id: d.owner_team_id.as_deref(),
            integration_id: d.integration.as_ref().map(|i| i.id.as_str()),
            integration_name: d.integration.as_ref().map(|i| i.name.as_str()),
            integration_type: d.integration.as_ref().map(|i| i.kind.as_str()),
            ack_time: None,
            close_time: None,
            acknowledged_by: None,
            closed_by: None,
            actions: to_json(&d.actions),
            entity: &d.entity,
            description: &d.description,
            details: to_json(&d.details),
            created_by: &d.user,
        }
    }
}

fn failed(op: &AlertOp, status: &str) -> RequestStatus {
    let action = match &op.kind {
        OpKind::Create(_) => "Create",
        OpKind::Act { action, .. } => action.name(),
        OpKind::Fail { action, .. } => action,
    };
    RequestStatus {
        id: op.request_id.clone(),
        action: action.to_owned(),
        success: false,
        status: status.to_owned(),
        alert_id: String::new(),
        alias: String::new(),
        integration_id: op.integration_id.clone(),
        processed_at: OffsetDateTime::now_utc(),
    }
}

/// The alert half of the group-commit writer (`writer::spawn_writers`): requests queue their
/// ops, and each is answered when the transaction that carries it commits.
#[derive(Clone)]
pub struct AlertWriter {
    pub(crate) tx: mpsc::Sender<AlertMsg>,
    pub(crate) depth: Arc<AtomicI64>,
}

/// An op on its way to the writer.
pub(crate) struct AlertRequest {
    pub(crate) op: AlertOp,
    /// `None` once answered (a create the alert log holds).
    pub(crate) reply: Option<Reply>,
    /// Whether the reply waits for the tables: false lets a create be answered once logged.
    pub(crate) applied: bool,
    /// Whether the alert log holds the op: it must reach the tables, even after a failed
    /// batch.
    pub(crate) logged: bool,
}

/// What the writer's queue carries: ops in order, and the alert log's record that holds the
/// creates among them. A record is never split between two transactions, so that the
/// tables hold each record whole or not at all.
pub(crate) struct AlertMsg {
    pub(crate) requests: Vec<AlertRequest>,
    pub(crate) record: Option<u64>,
}

impl AlertWriter {
    /// Queues an op and waits until it is committed (or its batch failed), for its request
    /// status.
    pub async fn submit(&self, op: AlertOp) -> Result<RequestStatus> {
        self.send(op, true).await?.ok_or_else(|| {
            StoreError::Config("the alert writer answered without a request status".into())
        })
    }

    /// Queues an op and waits until it is durable: a create on SQLite once the alert log
    /// holds it (`None`; it is in the tables before any read of alerts after it), anything
    /// else once committed, with its request status.
    pub async fn accept(&self, op: AlertOp) -> Result<Option<RequestStatus>> {
        self.send(op, false).await
    }

    async fn send(&self, mut op: AlertOp, applied: bool) -> Result<Option<RequestStatus>> {
        if let OpKind::Create(d) = &mut op.kind {
            d.received_at.get_or_insert_with(crate::now_ms);
        }
        let (reply, done) = Reply::new();
        self.depth.fetch_add(1, Ordering::Relaxed);
        let request = AlertRequest {
            op,
            reply: Some(reply),
            applied,
            logged: false,
        };
        let msg = AlertMsg {
            requests: vec![request],
            record: None,
        };
        if self.tx.send(msg).await.is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Config("the alert writer has stopped".into()));
        }
        done.await
            .unwrap_or_else(|_| Err(StoreError::Config("the alert writer has stopped".into())))
    }

    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }
}
