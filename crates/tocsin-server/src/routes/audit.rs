//! `GET /v1/audit_events`: the organization's audit trail, newest first.

use crate::auth::Principal;
use crate::error::OUTCOMES;
use crate::error::Query;
use crate::error::{ApiError, ApiResult};
use crate::routes::ListParams;
use crate::state::AppState;
use crate::views;
use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tocsin_core::permission::Permission;
use tocsin_core::policy::Resource;
use tocsin_core::validation::Problems;
use tocsin_store::audit::{ACTIONS, AuditFilter};

#[derive(Deserialize)]
pub struct AuditQuery {
    api_key_id: Option<String>,
    target_id: Option<String>,
    actor_id: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(flatten)]
    page: ListParams,
}

fn time_param(field: &str, v: Option<&str>) -> ApiResult<Option<OffsetDateTime>> {
    v.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            ApiError::validation(
                field,
                format!("`{s}` is not an RFC 3339 time such as 2026-11-23T00:00:00Z"),
            )
        })
    })
    .transpose()
}

/// A filter whose values are a closed vocabulary: a value outside it is refused, naming the
/// parameter and the values it takes (a typo would otherwise answer an empty list, which
/// reads as "no such events happened").
fn closed_param(
    problems: &mut Problems,
    field: &str,
    value: Option<String>,
    vocabulary: &[&str],
    what: &str,
) -> Option<String> {
    match value {
        Some(v) if !vocabulary.contains(&v.as_str()) => {
            problems.add(
                field,
                format!(
                    "`{v}` is not {what} the audit trail records; use one of: {}",
                    vocabulary.join(", ")
                ),
            );
            None
        }
        other => other,
    }
}

pub async fn list(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<views::List>> {
    p.require(Permission::AuditRead, &Resource::Org)?;
    let limit = q.page.limit()?;
    let cursor = match q.page.cursor()? {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::validation("cursor", "is not a cursor this API returned"))?,
        ),
    };
    let mut problems = Problems::new();
    let action = closed_param(&mut problems, "action", q.action, ACTIONS, "an action");
    let outcome = closed_param(&mut problems, "outcome", q.outcome, OUTCOMES, "an outcome");
    let since = time_param("since", q.since.as_deref());
    let until = time_param("until", q.until.as_deref());
    for e in [&since, &until]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        if let ApiError::Validation(p) = e {
            problems.0.extend(p.0.iter().cloned());
        }
    }
    problems.into_result().map_err(ApiError::Validation)?;
    let filter = AuditFilter {
        api_key_id: q.api_key_id,
        target_id: q.target_id,
        actor_id: q.actor_id,
        action,
        outcome,
        since: since?,
        until: until?,
    };
    // Events queued before this request are visible to it (those the database refused are
    // held by the writer and come later). The wait is bounded: while many refused events
    // are held, the writer takes no new ones.
    tokio::time::timeout(std::time::Duration::from_secs(5), app.audit.flush())
        .await
        .map_err(|_| ApiError::Unavailable {
            message: "The audit events queued before this request are still waiting to be written; try again shortly (/readyz counts them).".into(),
            detail: "the audit listing's flush did not finish within 5 s".into(),
        })??;
    let page = app
        .store
        .list_audit(&p.org_id, &filter, limit, cursor)
        .await?;
    Ok(Json(views::List {
        data: page.items.iter().map(views::audit_event).collect(),
        next_cursor: page.next_cursor,
    }))
}
