//! The calling organization and its settings (the key expiry maximum).

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::AppState;
use crate::views;
use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin_core::key::KeyName;
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::validation::Problems;
use tocsin_store::orgs::Organization;

fn view(o: &Organization) -> Value {
    json!({
        "id": o.id, "name": o.name, "max_key_days": o.max_key_days,
        "alerts_require_integration_key": o.alerts_require_integration_key, "created_at": views::t(o.created_at),
    })
}

pub async fn show(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&app.store.get_org(&p.org_id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    name: Option<String>,
    /// `null` removes the organization's own maximum (five years then applies).
    #[serde(default, with = "serde_with_null")]
    max_key_days: Option<Option<i64>>,
    /// Opsgenie's rule: only integration keys may create and act on alerts.
    alerts_require_integration_key: Option<bool>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod serde_with_null {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Ok(Some(Option::<i64>::deserialize(d)?))
    }
}

pub async fn update(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    JsonBody(req): JsonBody<UpdateOrg>,
) -> ApiResult<Response> {
    p.require(Permission::SettingsWrite, &Resource::Org)?;
    let mut problems = Problems::new();
    let name = req
        .name
        .as_deref()
        .and_then(|n| problems.take("name", KeyName::parse(n)));
    if let Some(Some(days)) = req.max_key_days
        && !(1..=365 * 5).contains(&days)
    {
        problems.add(
            "max_key_days",
            format!(
                "{days} must be from 1 to 1825 days (five years), or null for no maximum of its own"
            ),
        );
    }
    problems.into_result().map_err(ApiError::Validation)?;
    let org = app
        .store
        .update_org(
            &p.org_id,
            name.as_ref().map(|n| n.as_str()),
            req.max_key_days,
            req.alerts_require_integration_key,
        )
        .await?;
    // Cached credentials carry the organization (its settings decide some refusals).
    app.drop_cached_credentials();
    // The event names the organization changed (its path names none).
    Ok(crate::error::with_target(
        Json(view(&org)).into_response(),
        "organization",
        org.id.as_str(),
    ))
}
