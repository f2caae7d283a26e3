//! The audit trail and the door's outcomes (review ops.md #3, #5-#9): what a request is
//! answered when the database is out of reach, and how every answer is recorded and counted.

use super::{TestApp, code};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// With the database out of reach, a request whose key must be looked up is told to retry,
/// as a refused write is (README, Operations): `503 store_unavailable` with `Retry-After: 1`,
/// in the envelope of its route family, never a 500. On PostgreSQL the test's database stops
/// taking connections and its open ones are ended, as when the server goes away; on SQLite
/// the store is closed under the server.
#[tokio::test]
async fn a_key_lookup_the_database_cannot_answer_is_503_store_unavailable() {
    let app = TestApp::spawn().await;
    // A key never used: not in the credential cache, so its lookup needs the database.
    let (_, token) = app.key(&app.owner, json!({"name": "uncached"})).await;
    let postgres = tocsin_store::testing::postgres_backend();
    if postgres {
        tocsin_store::testing::postgres_database_reachable(&app.database_url, false).await;
    } else {
        app.running.as_ref().unwrap().app.store.close().await;
    }
    for (method, path, v2) in [
        ("GET", "/v1/auth/whoami", false),
        ("POST", "/v2/alerts", true),
    ] {
        let resp = app
            .http
            .request(method.parse().unwrap(), format!("{}{path}", app.base))
            .header("Authorization", format!("GenieKey {token}"))
            .json(&json!({"message": "db down"}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let b: Value = resp.json().await.unwrap();
        assert_eq!(
            (status, code(&b), retry_after.as_deref()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                Some("1")
            ),
            "{method} {path}: {b}"
        );
        if v2 {
            // Opsgenie's envelope, with the /v1 error object alongside.
            assert!(
                b["message"].is_string() && b["requestId"].is_string(),
                "{b}"
            );
            assert!(b["took"].is_number(), "{b}");
        } else {
            assert!(b["request_id"].is_string(), "{b}");
        }
    }
    if postgres {
        // Once the database is back, the same key is served.
        tocsin_store::testing::postgres_database_reachable(&app.database_url, true).await;
        assert_eq!(app.get("/v1/auth/whoami", &token).await.0, StatusCode::OK);
    }
}

/// The `http.request` events of the owner's organization whose user agent is `agent`.
async fn events_by_agent(app: &TestApp, agent: &str) -> Vec<Value> {
    let (s, b) = app
        .get("/v1/audit_events?action=http.request&limit=500", &app.owner)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user_agent"] == agent)
        .cloned()
        .collect()
}

/// A request answered with an error the framework produced (405 for a method the route does
/// not take, 413 for a body over the limit, refused before any handler ran) is recorded with
/// that error's code as its outcome, as every other error is, never as `allowed`.
#[tokio::test]
async fn framework_errors_are_recorded_with_their_code() {
    let app = TestApp::spawn_with(|o| o.max_body_bytes = Some(4096)).await;
    let agent = "framework-errors/1";
    let send = |method: &str, path: &str, body: String| {
        app.http
            .request(method.parse().unwrap(), format!("{}{path}", app.base))
            .header("Authorization", format!("Bearer {}", app.owner))
            .header("User-Agent", agent)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let resp = send("DELETE", "/v1/api_keys", String::new()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(8192));
    let resp = send("POST", "/v1/teams", big).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut got: Vec<(String, String, u64)> = events_by_agent(&app, agent)
        .await
        .iter()
        .map(|e| {
            (
                e["route"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("/v1/api_keys".into(), "method_not_allowed".into(), 405),
            ("/v1/teams".into(), "payload_too_large".into(), 413),
        ]
    );
}

/// `tocsin_auth_outcomes_total` counts a refusal made past the door (a missing permission,
/// a grant beyond the creator's own) under its own code, as the audit trail records it.
/// The counters are the process's, shared by every test running beside this one, so only
/// their growth is compared; without their own series these refusals were counted as
/// `allowed` and `permission_denied` never appeared.
#[tokio::test]
async fn refusals_past_the_door_are_counted_under_their_code() {
    let app = TestApp::spawn().await;
    let (_, viewer) = app
        .key(
            &app.owner,
            json!({"name": "viewer", "kind": "organization", "role_names": ["viewer"]}),
        )
        .await;
    let denied = super::auth_outcomes(&app, "permission_denied").await;
    let escalations = super::auth_outcomes(&app, "escalation_denied").await;
    for _ in 0..3 {
        let (s, b) = app.post("/v1/teams", &viewer, json!({"name": "z"})).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::FORBIDDEN, "permission_denied"),
            "{b}"
        );
    }
    let team = app.team("ops").await;
    let (_, team_key) = app
        .key(
            &app.owner,
            json!({"name": "team admin", "kind": "team", "team_id": team, "team_role_names": ["team_admin"]}),
        )
        .await;
    let (s, b) = app
        .post(
            "/v1/api_keys",
            &team_key,
            json!({"name": "greedy", "kind": "team", "team_id": team, "team_role_names": ["responder"], "role_names": ["viewer"], "expires_at": super::in_days(1)}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "escalation_denied"),
        "{b}"
    );
    assert!(super::auth_outcomes(&app, "permission_denied").await >= denied + 3.0);
    assert!(super::auth_outcomes(&app, "escalation_denied").await >= escalations + 1.0);
}

/// A request made with a key to a path no route serves is a request made with a key: it is
/// recorded (outcome `not_found`, route `unmatched`, never the path the client sent), so a
/// key probing the API leaves a trace. Without a credential the answer is the same 404.
#[tokio::test]
async fn a_key_used_on_a_path_no_route_serves_is_audited() {
    let app = TestApp::spawn().await;
    let agent = "unmatched-probe/1";
    for path in ["/v1/nonexistent/again1", "/v2/alerts/x/y/z/w"] {
        let resp = app
            .http
            .get(format!("{}{path}", app.base))
            .header("Authorization", format!("Bearer {}", app.owner))
            .header("User-Agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let (s, b) = app.call("GET", path, None, None).await;
        assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
    }
    let events = events_by_agent(&app, agent).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(
            (&e["route"], &e["outcome"], &e["status"], &e["method"]),
            (
                &json!("unmatched"),
                &json!("not_found"),
                &json!(404),
                &json!("GET")
            ),
            "{e}"
        );
        assert!(e["api_key_id"].is_string(), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains("nonexistent") && !text.contains("x/y/z"),
            "{e}"
        );
    }
    let (s, b) = app
        .get("/v1/audit_events?outcome=not_found", &app.owner)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["route"] == "unmatched"),
        "{b}"
    );
}

/// `action` and `outcome` are closed vocabularies: a value outside them (a typo) is refused
/// with 422 naming the parameter and listing the values it takes, rather than answered with
/// an empty list that reads as "no such events happened". Every listed value is accepted.
#[tokio::test]
async fn audit_filters_refuse_an_action_or_outcome_the_trail_never_records() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .get("/v1/audit_events?outcome=permision_denied", &app.owner)
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{b}"
    );
    let reason = b["error"]["fields"]["outcome"].as_str().unwrap();
    let accepted: Vec<&str> = reason
        .split("one of: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{reason}"))
        .split(", ")
        .collect();
    for outcome in [
        "allowed",
        "unknown_key",
        "revoked_key",
        "permission_denied",
        "scope_denied",
        "escalation_denied",
        "validation_failed",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "store_unavailable",
    ] {
        assert!(accepted.contains(&outcome), "{outcome} not in {reason}");
    }
    for outcome in &accepted {
        let (s, b) = app
            .get(&format!("/v1/audit_events?outcome={outcome}"), &app.owner)
            .await;
        assert_eq!(s, StatusCode::OK, "{outcome}: {b}");
    }

    let (s, b) = app
        .get("/v1/audit_events?action=api_key.revokd", &app.owner)
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{b}"
    );
    let reason = b["error"]["fields"]["action"].as_str().unwrap();
    for action in [
        "api_key.created",
        "api_key.updated",
        "api_key.rotated",
        "api_key.revoked",
        "api_key.expired",
        "http.request",
    ] {
        assert!(reason.contains(action), "{reason}");
        let (s, b) = app
            .get(&format!("/v1/audit_events?action={action}"), &app.owner)
            .await;
        assert_eq!(s, StatusCode::OK, "{action}: {b}");
    }

    // Both at once, and a bad time beside them: every offending parameter is named.
    let (s, b) = app
        .get(
            "/v1/audit_events?action=x&outcome=y&since=yesterday",
            &app.owner,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let fields = b["error"]["fields"].as_object().unwrap();
    let mut named: Vec<&str> = fields.keys().map(String::as_str).collect();
    named.sort();
    assert_eq!(named, ["action", "outcome", "since"], "{b}");
}

/// The alert's id, looked up by alias.
async fn alert_by_alias(app: &TestApp, alias: &str) -> Value {
    let (s, b) = app
        .get(
            &format!("/v2/alerts/{alias}?identifierType=alias"),
            &app.owner,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"].clone()
}

/// A create's event names what it made (the path names nothing), and a change of the
/// organization names the organization: `?target_id=` finds them.
#[tokio::test]
async fn creates_and_the_organization_change_name_their_target() {
    let app = TestApp::spawn().await;
    let team = app.team("payments").await;
    let user = app
        .user(json!({"email": "ann@example.com", "role_name": "viewer"}))
        .await;
    let (s, b) = app
        .post(
            "/v1/roles",
            &app.owner,
            json!({"name": "reader", "scope": "account", "permissions": ["alerts:read"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .call(
            "PATCH",
            "/v1/organization",
            Some(&app.owner),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let org = b["id"].as_str().unwrap().to_owned();
    for (kind, id, method, route) in [
        ("team", team.as_str(), "POST", "/v1/teams"),
        ("user", user.as_str(), "POST", "/v1/users"),
        ("role", "reader", "POST", "/v1/roles"),
        ("organization", org.as_str(), "PATCH", "/v1/organization"),
    ] {
        let (s, b) = app
            .get(&format!("/v1/audit_events?target_id={id}"), &app.owner)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let found = b["data"].as_array().unwrap().iter().any(|e| {
            e["target"] == json!({"type": kind, "id": id})
                && e["method"] == method
                && e["route"] == route
        });
        assert!(found, "{kind} {id}: {b}");
    }
}

/// Alert events name the alert by its id, whatever the request addressed it by: an action by
/// alias or tiny id names the alert it resolved to, so `?target_id=<alert id>` finds what
/// was done to the alert. A create names none (its index row cost 6-8% of a create's CPU).
#[tokio::test]
async fn alert_events_name_the_alert_by_its_id() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .post(
            "/v2/alerts",
            &app.owner,
            json!({"message": "disk full", "alias": "disk1"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let alert = alert_by_alias(&app, "disk1").await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let tiny = alert["tinyId"].as_str().unwrap().to_owned();
    for path in [
        "/v2/alerts/disk1/acknowledge?identifierType=alias".to_owned(),
        format!("/v2/alerts/{tiny}/close?identifierType=tiny"),
    ] {
        let (s, b) = app.post(&path, &app.owner, json!({})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{path}: {b}");
    }
    // An alert whose alias is also a fixed route's name.
    let (s, b) = app
        .post(
            "/v2/alerts",
            &app.owner,
            json!({"message": "named like a route", "alias": "requests"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b) = app
        .post(
            "/v2/alerts/requests/close?identifierType=alias",
            &app.owner,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let other = alert_by_alias(&app, "requests").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (s, b) = app
        .get(&format!("/v1/audit_events?target_id={id}"), &app.owner)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events = b["data"].as_array().unwrap();
    let mut seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["target"], json!({"type": "alert", "id": id}), "{e}");
            (e["method"].as_str().unwrap(), e["route"].as_str().unwrap())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("GET", "/v2/alerts/{identifier}"),
            // Each action is named, so the trail tells who closed the alert.
            ("POST", "/v2/alerts/{identifier}/acknowledge"),
            ("POST", "/v2/alerts/{identifier}/close"),
        ],
        "{b}"
    );
    let (_, b) = app
        .get(&format!("/v1/audit_events?target_id={other}"), &app.owner)
        .await;
    let routes: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["route"].as_str().unwrap())
        .collect();
    assert!(
        routes.contains(&"/v2/alerts/{identifier}/close") && !routes.contains(&"/v2/alerts"),
        "{b}"
    );
    let (_, b) = app
        .get("/v1/audit_events?target_id=%2572equests", &app.owner)
        .await;
    assert_eq!(b["data"], json!([]), "{b}");
}
