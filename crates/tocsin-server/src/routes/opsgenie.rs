//! Opsgenie's Integration API (`/v2/integrations`) and Account API (`/v2/account`), in
//! Opsgenie's shapes, over the same integrations as `/v1/integrations`.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, JsonBody, found};
use crate::error::{Path, Query};
use crate::routes::alerts::V2;
use crate::routes::integrations::{
    NewIntegration, apply, create_with_key, flag_field, load, remove, text_field, visibility,
};
use crate::state::{App, AppState};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tocsin_core::integration::AccessFlags;
use tocsin_core::permission::Permission;
use tocsin_core::validation::Problems;
use tocsin_core::{OrgId, TeamId};
use tocsin_store::integrations::Integration;

async fn team_name(app: &App, p: &Principal, team: Option<&TeamId>) -> Option<String> {
    match team {
        Some(t) => app.store.get_team(&p.org_id, t).await.ok().map(|t| t.name),
        None => None,
    }
}

/// `IntegrationMeta`: what lists, enable and disable answer.
fn meta(i: &Integration) -> Value {
    let mut v = json!({"id": i.id, "name": i.name, "enabled": i.enabled, "type": i.kind});
    if let Some(t) = &i.team_id {
        v["teamId"] = json!(t);
    }
    v
}

async fn full(app: &App, p: &Principal, i: &Integration) -> Value {
    let mut v = meta(i);
    let o = v.as_object_mut().expect("an object");
    o.insert("allowReadAccess".into(), json!(i.flags.read));
    o.insert("allowWriteAccess".into(), json!(i.flags.write));
    o.insert("allowDeleteAccess".into(), json!(i.flags.delete));
    o.insert(
        "allowConfigurationAccess".into(),
        json!(i.flags.configuration),
    );
    o.insert("isGlobal".into(), json!(i.team_id.is_none()));
    o.insert("_readOnly".into(), json!(["type"]));
    if let Some(t) = &i.team_id {
        o.insert(
            "ownerTeam".into(),
            json!({"id": t, "name": team_name(app, p, Some(t)).await}),
        );
    }
    v
}

/// `ownerTeam: {id} | {name}` to a team of the organization (integrations and heartbeats).
/// `Ok(Err(reason))` when it names no team: the caller reports the reason on `ownerTeam`.
pub(crate) async fn owner_team(
    app: &App,
    org: &OrgId,
    v: Option<&Value>,
) -> ApiResult<Result<Option<TeamId>, String>> {
    let Some(team) = v.filter(|t| !t.is_null()) else {
        return Ok(Ok(None));
    };
    let text = |field: &str| {
        team.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(raw) = text("id") {
        let id = TeamId::parse(raw);
        let exists = match &id {
            Some(id) => found(app.store.get_team(org, id).await)?,
            None => false,
        };
        return Ok(match (id, exists) {
            (Some(id), true) => Ok(Some(id)),
            _ => Err(format!("no team `{raw}` exists")),
        });
    }
    if let Some(name) = text("name") {
        return Ok(match app.store.find_team_by_name(org, name).await? {
            Some(t) => Ok(Some(t.id)),
            None => Err(format!("no team named `{name}` exists")),
        });
    }
    Ok(Err("must have an id or a name".into()))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "teamId")]
    team_id: Option<String>,
    #[serde(rename = "teamName")]
    team_name: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Query(q): Query<ListQuery>,
    v2: V2,
) -> ApiResult<Response> {
    let visible = visibility(&p)?;
    let team = match (&q.team_id, &q.team_name) {
        // An unknown team is refused by either name for it, not read as an empty list.
        (Some(raw), _) => match TeamId::parse(raw) {
            Some(id) if found(app.store.get_team(&p.org_id, &id).await)? => Some(id),
            _ => {
                return Err(ApiError::validation(
                    "teamId",
                    format!("no team `{raw}` exists"),
                ));
            }
        },
        (None, Some(name)) => match app.store.find_team_by_name(&p.org_id, name).await? {
            Some(t) => Some(t.id),
            None => {
                return Err(ApiError::validation(
                    "teamName",
                    format!("no team named `{name}` exists"),
                ));
            }
        },
        _ => None,
    };
    let mut data = Vec::new();
    let mut cursor = None;
    loop {
        let page = app
            .store
            .list_integrations(&p.org_id, &visible, team.as_ref(), 500, cursor.as_deref())
            .await?;
        data.extend(
            page.items
                .iter()
                .filter(|i| {
                    q.kind
                        .as_deref()
                        .is_none_or(|k| k.eq_ignore_ascii_case(&i.kind))
                })
                .map(meta),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(v2.data(Value::Array(data)))
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    v2: V2,
) -> ApiResult<Response> {
    let i = load(&app, &p, &id, Permission::IntegrationsRead).await?;
    Ok(v2.data(full(&app, &p, &i).await))
}

pub async fn create(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    v2: V2,
    request: crate::auth::RequestFacts,
    JsonBody(b): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    // Every offending field in one 422: these problems are reported with the name's and type's.
    let mut problems = Problems::new();
    let team_id = match owner_team(&app, &p.org_id, b.get("ownerTeam")).await? {
        Ok(team) => team,
        Err(why) => {
            problems.add("ownerTeam", why);
            None
        }
    };
    let defaults = AccessFlags::default();
    let flags = AccessFlags {
        read: flag_field(&b, "allowReadAccess", defaults.read, &mut problems),
        write: flag_field(&b, "allowWriteAccess", defaults.write, &mut problems),
        delete: flag_field(&b, "allowDeleteAccess", defaults.delete, &mut problems),
        configuration: flag_field(
            &b,
            "allowConfigurationAccess",
            defaults.configuration,
            &mut problems,
        ),
    };
    let new = NewIntegration {
        name: text_field(&b, "name", &mut problems),
        kind: text_field(&b, "type", &mut problems),
        team_id,
        team_field: "ownerTeam",
        flags,
        enabled: flag_field(&b, "enabled", true, &mut problems),
        key_expires_at: None,
        problems,
    };
    let (integration, issued) = create_with_key(&app, &p, new, &request).await?;
    let mut data = meta(&integration);
    data["apiKey"] = issued["token"].clone();
    let body = json!({"data": data, "took": v2.took(), "requestId": v2.request_id()});
    Ok(crate::error::created_target(
        body,
        "integration",
        integration.id.as_str(),
    ))
}

/// `PUT`: Opsgenie replaces the integration. A flag the body leaves out keeps its value:
/// Tocsin's defaults (delete and configuration off) are not Opsgenie's, and the Go SDK and
/// Terraform never send `allowDeleteAccess`, so falling back to a default would switch off,
/// on every apply, a delete access an administrator had granted.
pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    v2: V2,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Response> {
    let i = load(&app, &p, &id, Permission::IntegrationsWrite).await?;
    // The owner team is where the integration's key acts, so it is fixed when the integration
    // is made: a PUT may repeat it (or leave it out), not move the integration. Refused
    // rather than ignored, so that a client (Terraform) does not believe it moved.
    let team = owner_team(&app, &p.org_id, b.get("ownerTeam"))
        .await?
        .map_err(|why| ApiError::validation("ownerTeam", why))?;
    if let Some(team) = team
        && i.team_id.as_ref() != Some(&team)
    {
        return Err(ApiError::validation(
            "ownerTeam",
            format!(
                "an integration's owner team cannot be changed (this one's is {}); create a new integration owned by team {team}, and delete this one",
                i.team_id
                    .as_ref()
                    .map_or("none: it is global".to_owned(), |t| format!("{t}")),
            ),
        ));
    }
    let kept = i.flags;
    let no_fields = Map::new();
    let fields = b.as_object().unwrap_or(&no_fields);
    let mut problems = Problems::new();
    let mut flag = |field, kept| flag_field(fields, field, kept, &mut problems);
    let flags = AccessFlags {
        read: flag("allowReadAccess", kept.read),
        write: flag("allowWriteAccess", kept.write),
        delete: flag("allowDeleteAccess", kept.delete),
        configuration: flag("allowConfigurationAccess", kept.configuration),
    };
    let enabled = flag("enabled", i.enabled);
    problems.into_result().map_err(ApiError::Validation)?;
    let name = b.get("name").and_then(Value::as_str).map(str::to_owned);
    let updated = apply(&app, &p, i, name.as_deref(), flags, enabled).await?;
    Ok(v2.data(meta(&updated)))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    v2: V2,
    request: crate::auth::RequestFacts,
) -> ApiResult<Response> {
    let i = load(&app, &p, &id, Permission::IntegrationsWrite).await?;
    remove(&app, &p, &i, &request, StatusCode::OK.as_u16()).await?;
    Ok(
        Json(json!({"result": "Deleted", "took": v2.took(), "requestId": v2.request_id()}))
            .into_response(),
    )
}

pub async fn toggle(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((id, verb)): Path<(String, String)>,
    v2: V2,
) -> ApiResult<Response> {
    let enabled = match verb.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(ApiError::NoRoute),
    };
    let i = load(&app, &p, &id, Permission::IntegrationsWrite).await?;
    let flags = i.flags;
    let updated = apply(&app, &p, i, None, flags, enabled).await?;
    // 201, as Opsgenie's API description gives it for enable and disable.
    let mut resp = v2.data(meta(&updated));
    *resp.status_mut() = axum::http::StatusCode::CREATED;
    Ok(resp)
}

/// `POST /v2/integrations/authenticate`: does the calling key belong to an integration of this type?
pub async fn authenticate(
    Extension(p): Extension<Arc<Principal>>,
    v2: V2,
    JsonBody(b): JsonBody<Value>,
) -> ApiResult<Response> {
    let wanted = b.get("type").and_then(Value::as_str).unwrap_or("API");
    match &p.integration {
        Some(i) if i.kind.eq_ignore_ascii_case(wanted) => Ok(Json(
            json!({"result": "Authenticated", "took": v2.took(), "requestId": v2.request_id()}),
        )
        .into_response()),
        _ => Err(ApiError::Unauthorized {
            code: "not_an_integration_key",
            message: format!(
                "This key is not the key of an {wanted} integration; create one with POST /v1/integrations or POST /v2/integrations."
            ),
        }),
    }
}

pub async fn account(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    v2: V2,
) -> ApiResult<Response> {
    let org = app.store.get_org(&p.org_id).await?;
    let users = app.store.count_users(&p.org_id).await?;
    Ok(v2.data(json!({
        "name": org.name, "userCount": users,
        "plan": {"maxUserCount": 0, "name": "Tocsin (self-hosted)", "isYearly": false},
    })))
}
