//! The key model's no-escalation and lifecycle rules beyond creation: what a key manager may
//! change of a key stronger than itself, and what a rotation may hand out.

use super::{TestApp, code, in_days, refused};
use reqwest::StatusCode;
use serde_json::json;

/// A key manager holding less than a key may rename it, describe it, shorten it or tighten its
/// rate limit, but not extend it or loosen its limit: that would keep a stronger key (an
/// owner's short-lived break-glass key) alive or unthrottled, as a rotation would.
#[tokio::test]
async fn a_key_manager_cannot_extend_or_unthrottle_a_stronger_key() {
    let app = TestApp::spawn().await;
    let (_, manager) = app
        .key(
            &app.owner,
            json!({"name": "manager", "kind": "organization", "role_names": ["api_keys_manage"]}),
        )
        .await;
    let (admin, _) = app
        .key(
            &app.owner,
            json!({"name": "break-glass", "kind": "organization", "role_names": ["admin"], "rate_limit": 100}),
        )
        .await;
    let path = format!("/v1/api_keys/{admin}");
    let (_, before) = app.get(&path, &app.owner).await;
    for body in [
        json!({"expires_at": in_days(60)}),
        json!({"rate_limit": null}),
        json!({"rate_limit": 101}),
        json!({"name": "renamed", "expires_at": in_days(45)}),
    ] {
        let (s, b) = app.patch(&path, &manager, body.clone()).await;
        refused(s, &b, StatusCode::FORBIDDEN, "escalation_denied");
        let message = b["error"]["message"].as_str().unwrap();
        let field = if body.get("expires_at").is_some() {
            "expires_at"
        } else {
            "rate_limit"
        };
        assert!(message.contains(field), "{body}: {b}");
        assert!(message.contains("alerts:read"), "{body}: {b}");
        assert!(b["error"]["missing"][0]["permissions"].is_array(), "{b}");
        let fix = b["error"]["fixes"][0].as_str().unwrap();
        assert!(fix.contains("earlier"), "{b}");
    }
    // Nothing was changed by the refusals.
    let (_, after) = app.get(&path, &app.owner).await;
    for field in ["name", "expires_at", "rate_limit"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    // Explain warns of it before the body is sent.
    let (s, b) = app
        .post(
            "/v1/auth/explain",
            &manager,
            json!({"method": "PATCH", "path": path}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["allowed"], true, "{b}");
    assert!(
        b["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("a later expires_at")),
        "{b}"
    );
    // What only narrows the key stays open, each alone and together.
    for body in [
        json!({"name": "renamed"}),
        json!({"description": "for emergencies"}),
        json!({"expires_at": in_days(20)}),
        json!({"rate_limit": 50}),
        json!({"expires_at": in_days(10), "rate_limit": 50, "name": "renamed again"}),
    ] {
        let (s, b) = app.patch(&path, &manager, body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body}: {b}");
    }
    // Someone holding everything the key holds may extend it and lift its limit.
    let (s, b) = app
        .patch(
            &path,
            &app.owner,
            json!({"expires_at": in_days(60), "rate_limit": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["rate_limit"], serde_json::Value::Null, "{b}");

    // The same within a team: a team key manager cannot extend its team's admin key.
    let team = app.team("payments").await;
    let (_, team_manager) = app
        .key(&app.owner, json!({"name": "team manager", "kind": "team", "team_id": team, "team_role_names": ["api_keys_manage"]}))
        .await;
    let (team_admin, _) = app
        .key(&app.owner, json!({"name": "team admin", "kind": "team", "team_id": team, "team_role_names": ["team_admin"]}))
        .await;
    let path = format!("/v1/api_keys/{team_admin}");
    let (s, b) = app
        .patch(&path, &team_manager, json!({"expires_at": in_days(60)}))
        .await;
    refused(s, &b, StatusCode::FORBIDDEN, "escalation_denied");
    assert!(
        b["error"]["message"].as_str().unwrap().contains(&team),
        "{b}"
    );
    let (s, b) = app
        .patch(&path, &team_manager, json!({"expires_at": in_days(20)}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A key holding what the other holds extends it.
    let (sibling, _) = app
        .key(&app.owner, json!({"name": "sibling", "kind": "team", "team_id": team, "team_role_names": ["api_keys_manage"]}))
        .await;
    let (s, b) = app
        .patch(
            &format!("/v1/api_keys/{sibling}"),
            &team_manager,
            json!({"expires_at": in_days(60)}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::OK, ""), "{b}");
}

/// A rotation issues a token valid until the key's expiry: after the organization lowers
/// `max_key_days`, a key made under the old maximum is not rotated into a token that outlives
/// the new one. The refusal says how far the key may reach now and how to get there.
#[tokio::test]
async fn a_rotation_never_issues_a_token_beyond_the_organizations_maximum() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .post(
            "/v1/api_keys",
            &app.owner,
            json!({"name": "long", "kind": "organization", "role_names": ["viewer"], "expires_at": in_days(365 * 4)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["api_key"]["id"].as_str().unwrap().to_owned();
    let token = b["token"].as_str().unwrap().to_owned();
    let (s, b) = app
        .patch("/v1/organization", &app.owner, json!({"max_key_days": 30}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rotate = format!("/v1/api_keys/{id}/rotate");
    let (s, b) = app
        .post(&rotate, &app.owner, json!({"grace_period_seconds": 0}))
        .await;
    refused(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(b.get("token").is_none(), "{b}");
    let why = b["error"]["fields"]["expires_at"].as_str().unwrap();
    for part in [
        "max_key_days",
        "30 days",
        "the latest allowed now is",
        "PATCH",
    ] {
        assert!(why.contains(part), "{part}: {b}");
    }
    // Nothing happened: the old token still works, with no grace period.
    let (s, b) = app.get("/v1/auth/whoami", &token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["grace_period_ends_at"], serde_json::Value::Null, "{b}");
    // Explain warns of it.
    let (_, e) = app
        .post(
            "/v1/auth/explain",
            &app.owner,
            json!({"method": "POST", "path": rotate}),
        )
        .await;
    assert!(e.to_string().contains("max_key_days"), "{e}");
    // The fix the refusal gives works: bring the expiry within the maximum, then rotate.
    let (s, b) = app
        .patch(
            &format!("/v1/api_keys/{id}"),
            &app.owner,
            json!({"expires_at": in_days(29)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .post(&rotate, &app.owner, json!({"grace_period_seconds": 0}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["token"].is_string(), "{b}");
}

/// Refusals read as English and name things as they are addressed: "an organization key",
/// "an integration key"; a role, addressed by name, is missing by name.
#[tokio::test]
async fn refusals_use_the_right_article_and_address_roles_by_name() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "dup", "kind": "organization", "role_names": ["viewer"], "expires_at": in_days(3)});
    let (s, b) = app.post("/v1/api_keys", &app.owner, body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app.post("/v1/api_keys", &app.owner, body).await;
    refused(s, &b, StatusCode::CONFLICT, "name_taken");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("An organization key with this name"),
        "{b}"
    );
    let (s, b) = app
        .post("/v1/integrations", &app.owner, json!({"name": "Grafana"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let integration = b["integration"]["id"].as_str().unwrap().to_owned();
    let key_name = b["api_key"]["name"].as_str().unwrap().to_owned();
    let (s, b) = app
        .post(
            "/v1/api_keys",
            &app.owner,
            json!({"name": key_name, "kind": "integration", "integration_id": integration, "expires_at": in_days(3)}),
        )
        .await;
    refused(s, &b, StatusCode::CONFLICT, "name_taken");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("An integration key with this name"),
        "{b}"
    );
    let (s, b) = app
        .post(
            "/v1/api_keys",
            &app.owner,
            json!({"name": "other", "kind": "organization", "role_names": ["viewer"], "integration_id": integration, "expires_at": in_days(3)}),
        )
        .await;
    refused(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(
        b["error"]["fields"]["integration_id"]
            .as_str()
            .unwrap()
            .contains("this is an organization key"),
        "{b}"
    );
    // A personal key keeps its "A".
    let (s, b) = app
        .post(
            "/v1/api_keys",
            &app.owner,
            json!({"name": "owner key", "expires_at": in_days(3)}),
        )
        .await;
    refused(s, &b, StatusCode::CONFLICT, "name_taken");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("A personal key with this name"),
        "{b}"
    );

    let (s, b) = app
        .call("DELETE", "/v1/roles/no_such_role", Some(&app.owner), None)
        .await;
    refused(s, &b, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        b["error"]["message"], "No role with this name exists.",
        "{b}"
    );
    let (s, b) = app
        .patch(
            "/v1/roles/no_such_role",
            &app.owner,
            json!({"description": "x"}),
        )
        .await;
    refused(s, &b, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        b["error"]["message"], "No role with this name exists.",
        "{b}"
    );
}

/// A token a rotation replaced may not make or change credentials, and `explain` says so for
/// each such route, in the words of the real refusal, fix included.
#[tokio::test]
async fn explain_refuses_what_a_replaced_token_may_not_do_as_the_routes_do() {
    let app = TestApp::spawn().await;
    let (id, old) = app.key(&app.owner, json!({"name": "rotating"})).await;
    let (s, b) = app
        .post(
            &format!("/v1/api_keys/{id}/rotate"),
            &app.owner,
            json!({"grace_period_seconds": 3600}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let key_path = format!("/v1/api_keys/{id}");
    for (method, path, body) in [
        (
            "POST",
            "/v1/api_keys",
            json!({"name": "child", "kind": "personal", "expires_at": in_days(3)}),
        ),
        ("PATCH", key_path.as_str(), json!({"name": "renamed"})),
        ("POST", "/v1/integrations", json!({"name": "Grafana"})),
        (
            "POST",
            "/v2/integrations",
            json!({"name": "Grafana", "type": "API"}),
        ),
    ] {
        let (s, real) = app.call(method, path, Some(&old), Some(body)).await;
        assert_eq!(
            (s, code(&real)),
            (StatusCode::FORBIDDEN, "replaced_token"),
            "{path}: {real}"
        );
        let fixes = &real["error"]["fixes"];
        assert!(
            fixes[0].as_str().unwrap().contains("the rotation returned"),
            "{real}"
        );
        let (s, e) = app
            .post(
                "/v1/auth/explain",
                &old,
                json!({"method": method, "path": path}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert_eq!(
            (&e["allowed"], &e["code"]),
            (&json!(false), &json!("replaced_token")),
            "{method} {path}: {e}"
        );
        assert_eq!(e["reasons"][0], real["error"]["message"], "{path}: {e}");
        assert_eq!(&e["fixes"], fixes, "{path}: {e}");
    }
    // What it may still do, explain allows: reading, and revoking.
    for (method, path) in [
        ("GET", "/v1/api_keys"),
        ("POST", &format!("/v1/api_keys/{id}/revoke")[..]),
    ] {
        let (_, e) = app
            .post(
                "/v1/auth/explain",
                &old,
                json!({"method": method, "path": path}),
            )
            .await;
        assert_eq!(e["allowed"], true, "{path}: {e}");
    }
}
