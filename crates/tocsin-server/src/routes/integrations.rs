//! API integrations (`/v1/integrations`): inbound alert sources whose access flags decide what
//! their keys may do, at once. Creating one issues its first key, shown once.

use crate::auth::{Principal, RequestFacts};
use crate::error::{ApiError, ApiResult, JsonBody, conflict, created_target, found, not_found};
use crate::error::{Path, Query};
use crate::routes::api_keys::issue;
use crate::routes::{ListParams, path_id};
use crate::state::{App, AppState};
use crate::views;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use tocsin_core::integration::AccessFlags;
use tocsin_core::key::{self, KeyKind, KeyName};
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::token::Token;
use tocsin_core::validation::Problems;
use tocsin_core::{IntegrationId, TeamId};
use tocsin_store::StoreError;
use tocsin_store::integrations::{Integration, IntegrationVisibility};
use tocsin_store::keys::{ApiKey, KeyFilter, KeyVisibility};

pub fn view(i: &Integration) -> Value {
    json!({
        "id": i.id, "organization_id": i.org_id, "name": i.name, "type": i.kind, "team_id": i.team_id,
        "allow_read": i.flags.read, "allow_write": i.flags.write, "allow_delete": i.flags.delete,
        "allow_configuration": i.flags.configuration, "enabled": i.enabled,
        "created_at": views::t(i.created_at), "updated_at": views::t(i.updated_at),
    })
}

fn resource(i: &Integration) -> Resource {
    Resource::Teams(i.team_id.iter().cloned().collect())
}

fn name_taken(name: &str) -> impl FnOnce(StoreError) -> ApiError {
    conflict(
        "name_taken",
        format!("An integration named `{name}` already exists (names ignore case)."),
    )
}

/// The fields of `POST /v1/integrations`, read by hand so that one 422 names every offending
/// field: a wrongly typed flag, an unknown team and an unknown field together.
const CREATE_FIELDS: [&str; 9] = [
    "name",
    "type",
    "team_id",
    "allow_read",
    "allow_write",
    "allow_delete",
    "allow_configuration",
    "enabled",
    "key_expires_at",
];

/// A string field; absent or null is `None`.
pub(crate) fn text_field(
    b: &Map<String, Value>,
    field: &str,
    problems: &mut Problems,
) -> Option<String> {
    match b.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.add(field, "must be a string");
            None
        }
    }
}

/// A boolean field; absent or null is `default`.
pub(crate) fn flag_field(
    b: &Map<String, Value>,
    field: &str,
    default: bool,
    problems: &mut Problems,
) -> bool {
    match b.get(field) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(v)) => *v,
        Some(_) => {
            problems.add(field, "must be true or false");
            default
        }
    }
}

/// The fields both API families send when creating an integration, and the problems already
/// found in reading them (reported with the rest).
pub struct NewIntegration {
    pub problems: Problems,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub team_id: Option<TeamId>,
    pub team_field: &'static str,
    pub flags: AccessFlags,
    pub enabled: bool,
    pub key_expires_at: Option<String>,
}

/// Creates an integration and its first key; shared by `/v1` and Opsgenie's `/v2`.
/// `request` is the request that creates it, for the key's `api_key.created` event.
pub async fn create_with_key(
    app: &App,
    p: &Principal,
    new: NewIntegration,
    request: &RequestFacts,
) -> ApiResult<(Integration, Value)> {
    // Before anything is written: `issue` would refuse the key after the integration was made.
    crate::routes::api_keys::check_not_replaced(p, "create integrations")?;
    let now = OffsetDateTime::now_utc();
    let org = app.store.get_org(&p.org_id).await?;
    let mut problems = new.problems;
    // A name of the wrong type was reported as such already.
    let name = match problems.0.iter().any(|e| e.field == "name") {
        true => None,
        false => problems.take("name", KeyName::parse(new.name.as_deref().unwrap_or(""))),
    };
    let kind = new.kind.unwrap_or_else(|| "API".into());
    if !kind.eq_ignore_ascii_case("API") {
        problems.add(
            "type",
            format!("`{kind}` is not supported; Tocsin has API integrations (type \"API\")"),
        );
    }
    if let Some(team) = &new.team_id
        && !found(app.store.get_team(&p.org_id, team).await)?
    {
        problems.add(
            new.team_field,
            format!("no team `{team}` exists in this organization"),
        );
    }
    let expires_at = match &new.key_expires_at {
        Some(raw) => problems.take(
            "key_expires_at",
            key::parse_expires_at(Some(raw), now, org.max_key_days),
        ),
        None => Some(key::to_millis(
            key::max_expiry(now, org.max_key_days).min(now + Duration::days(365)),
        )),
    };
    problems.into_result().map_err(ApiError::Validation)?;
    let (name, expires_at) = (name.expect("checked"), expires_at.expect("checked"));
    let integration = Integration {
        id: IntegrationId::generate(),
        org_id: p.org_id.clone(),
        name: name.as_str().to_owned(),
        kind: "API".into(),
        team_id: new.team_id,
        flags: new.flags,
        enabled: new.enabled,
        created_at: now,
        updated_at: now,
    };
    p.require(Permission::IntegrationsWrite, &resource(&integration))?;
    crate::routes::api_keys::check_networks(p, &[])?;
    // Check the key's rights before anything is written.
    tocsin_core::policy::check_no_escalation(
        &p.grants,
        &integration.flags.grants(integration.team_id.as_ref()),
    )
    .map_err(ApiError::Escalation)?;
    app.store
        .insert_integration(&integration)
        .await
        .map_err(name_taken(&integration.name))?;
    let token = Token::generate(KeyKind::Integration.token_kind(), &app.settings.region);
    let mut key = ApiKey::new(
        p.org_id.clone(),
        KeyKind::Integration,
        first_key_name(&integration.name),
        p.creator.clone(),
        expires_at,
        app.settings.region.clone(),
        token.hint(),
    );
    key.integration_id = Some(integration.id.to_string());
    key.team_id = integration.team_id.clone();
    // Made with a rate-limited key, the new key shares its limit.
    key.rate_limit = p.key.as_ref().and_then(|k| k.rate_limit);
    let issued = issue(app, p, key, &token, None, request).await?;
    Ok((integration, issued))
}

/// The name of an integration's first key, `<integration name> key`, within a key name's
/// 200 characters: a long integration name is cut (by characters) to make room for " key".
fn first_key_name(integration: &str) -> String {
    const SUFFIX: &str = " key";
    let room = key::MAX_NAME_CHARS - SUFFIX.chars().count();
    let cut: String = integration.chars().take(room).collect();
    format!("{}{SUFFIX}", cut.trim_end())
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    request: RequestFacts,
    JsonBody(b): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let mut problems = Problems::new();
    for field in b.keys() {
        if !CREATE_FIELDS.contains(&field.as_str()) {
            problems.add(
                field.as_str(),
                format!(
                    "unknown field `{field}`, expected one of {}",
                    CREATE_FIELDS.map(|f| format!("`{f}`")).join(", ")
                ),
            );
        }
    }
    let team_id = text_field(&b, "team_id", &mut problems).and_then(|raw| {
        let parsed = TeamId::parse(&raw);
        if parsed.is_none() {
            problems.add(
                "team_id",
                format!("no team `{raw}` exists in this organization"),
            );
        }
        parsed
    });
    let defaults = AccessFlags::default();
    let flags = AccessFlags {
        read: flag_field(&b, "allow_read", defaults.read, &mut problems),
        write: flag_field(&b, "allow_write", defaults.write, &mut problems),
        delete: flag_field(&b, "allow_delete", defaults.delete, &mut problems),
        configuration: flag_field(
            &b,
            "allow_configuration",
            defaults.configuration,
            &mut problems,
        ),
    };
    let new = NewIntegration {
        name: text_field(&b, "name", &mut problems),
        kind: text_field(&b, "type", &mut problems),
        team_id,
        team_field: "team_id",
        flags,
        enabled: flag_field(&b, "enabled", true, &mut problems),
        key_expires_at: text_field(&b, "key_expires_at", &mut problems),
        problems,
    };
    let (integration, issued) = create_with_key(&app, &p, new, &request).await?;
    let body = json!({
        "integration": view(&integration), "api_key": issued["api_key"], "token": issued["token"],
    });
    Ok(created_target(body, "integration", integration.id.as_str()))
}

#[derive(Deserialize)]
pub struct ListIntegrations {
    team_id: Option<String>,
    #[serde(flatten)]
    page: ListParams,
}

/// What the caller may list: everything with an account grant, else its teams' integrations.
pub fn visibility(p: &Principal) -> ApiResult<IntegrationVisibility> {
    p.require(Permission::IntegrationsRead, &Resource::AnyTeam)?;
    Ok(IntegrationVisibility {
        all: p.grants.account.contains(Permission::IntegrationsRead),
        teams: p.grants.teams_with(Permission::IntegrationsRead),
    })
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Query(q): Query<ListIntegrations>,
) -> ApiResult<Json<views::List>> {
    let visible = visibility(&p)?;
    let team = q
        .team_id
        .as_deref()
        .map(|t| TeamId::from_trusted(t.to_owned()));
    let page = app
        .store
        .list_integrations(
            &p.org_id,
            &visible,
            team.as_ref(),
            q.page.limit()?,
            q.page.id_cursor(IntegrationId::parse)?,
        )
        .await?;
    Ok(Json(views::List {
        data: page.items.iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Loads an integration of the caller's organization that the caller holds `permission` on.
pub async fn load(
    app: &App,
    p: &Principal,
    raw: &str,
    permission: Permission,
) -> ApiResult<Integration> {
    let id = path_id(raw, IntegrationId::parse, "integration")?;
    let i = app
        .store
        .get_integration(&p.org_id, &id)
        .await
        .map_err(not_found("integration"))?;
    p.require(permission, &resource(&i))?;
    Ok(i)
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(
        &load(&app, &p, &id, Permission::IntegrationsRead).await?,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    name: Option<String>,
    allow_read: Option<bool>,
    allow_write: Option<bool>,
    allow_delete: Option<bool>,
    allow_configuration: Option<bool>,
    enabled: Option<bool>,
}

/// Applies a change; the integration's keys follow it at once.
pub async fn apply(
    app: &App,
    p: &Principal,
    mut i: Integration,
    name: Option<&str>,
    flags: AccessFlags,
    enabled: bool,
) -> ApiResult<Integration> {
    if let Some(n) = name {
        i.name = KeyName::parse(n)
            .map_err(|r| ApiError::validation("name", r))?
            .as_str()
            .to_owned();
    }
    if flags != i.flags {
        tocsin_core::policy::check_no_escalation(&p.grants, &flags.grants(i.team_id.as_ref()))
            .map_err(ApiError::Escalation)?;
    }
    i.flags = flags;
    i.enabled = enabled;
    let name = i.name.clone();
    let updated = app
        .store
        .update_integration(&i)
        .await
        .map_err(name_taken(&name))?;
    app.drop_cached_credentials();
    Ok(updated)
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateIntegration>,
) -> ApiResult<Json<Value>> {
    let i = load(&app, &p, &id, Permission::IntegrationsWrite).await?;
    let flags = AccessFlags {
        read: req.allow_read.unwrap_or(i.flags.read),
        write: req.allow_write.unwrap_or(i.flags.write),
        delete: req.allow_delete.unwrap_or(i.flags.delete),
        configuration: req.allow_configuration.unwrap_or(i.flags.configuration),
    };
    let enabled = req.enabled.unwrap_or(i.enabled);
    Ok(Json(view(
        &apply(&app, &p, i, req.name.as_deref(), flags, enabled).await?,
    )))
}

/// Deletes an integration after revoking every key it has, each with its `api_key.revoked`
/// event for `request` (which answers `status`); an integration key needs its integration's
/// delete access for it.
pub async fn remove(
    app: &App,
    p: &Principal,
    i: &Integration,
    request: &RequestFacts,
    status: u16,
) -> ApiResult<()> {
    p.require_configuration_delete(&resource(i))?;
    let filter = KeyFilter {
        integration_id: Some(i.id.to_string()),
        ..Default::default()
    };
    let all = KeyVisibility {
        all: true,
        ..Default::default()
    };
    loop {
        let page = app
            .store
            .list_keys(&p.org_id, &filter, &all, 500, None)
            .await?;
        for k in &page.items {
            crate::routes::api_keys::revoke_recorded(app, p, &k.id, request, status).await?;
        }
        if page.next_cursor.is_none() {
            break;
        }
    }
    app.store.delete_integration(&p.org_id, &i.id).await?;
    app.drop_cached_credentials();
    Ok(())
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    request: RequestFacts,
) -> ApiResult<StatusCode> {
    let i = load(&app, &p, &id, Permission::IntegrationsWrite).await?;
    remove(&app, &p, &i, &request, StatusCode::NO_CONTENT.as_u16()).await?;
    Ok(StatusCode::NO_CONTENT)
}
