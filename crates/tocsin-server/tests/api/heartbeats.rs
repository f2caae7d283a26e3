//! Heartbeats and the configuration API around them (`/v2/heartbeats`, `/v2/integrations`,
//! `/v1/integrations`): what enabling does to a heartbeat's interval and alert, who may delete
//! configuration, and what a 422 names. Expiry is driven by calling the sweep with a chosen
//! time, never by waiting.

use super::{TestApp, code, refused};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tocsin_server::routes::heartbeats::sweep;
use tocsin_store::heartbeats::Heartbeat;

impl TestApp {
    fn app(&self) -> &tocsin_server::state::App {
        &self.running.as_ref().unwrap().app
    }

    /// A heartbeat written straight to the store, made `age` ago (and pinged then, if
    /// `pinged`), so that a test can stand at a time long after it without waiting.
    async fn old_heartbeat(&self, name: &str, enabled: bool, age: Duration, pinged: bool) {
        let store = &self.app().store;
        let made = OffsetDateTime::now_utc() - age;
        let h = Heartbeat {
            org_id: store.list_orgs().await.unwrap()[0].id.clone(),
            name: name.into(),
            description: String::new(),
            interval: 1,
            interval_unit: "minutes".into(),
            enabled,
            owner_team_id: None,
            alert_message: format!("{name} is expired"),
            alert_tags: vec![],
            alert_priority: "P3".into(),
            last_ping_at: None,
            enabled_at: None,
            expired: false,
            created_at: made,
        };
        store.insert_heartbeat(&h).await.unwrap();
        if pinged {
            store.ping_heartbeat(&h, made).await.unwrap();
        }
    }

    async fn heartbeat(&self, name: &str) -> Value {
        let (s, b, _) = self
            .v2("GET", &format!("/v2/heartbeats/{name}"), &self.owner, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"].clone()
    }

    async fn alert_by_alias(&self, alias: &str) -> Value {
        let (s, b, _) = self
            .v2(
                "GET",
                &format!("/v2/alerts/{alias}?identifierType=alias"),
                &self.owner,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"].clone()
    }
}

/// The usual maintenance: a heartbeat missed its interval (its alert is open), it is disabled
/// during the work and enabled afterwards, or just enabled again, and the job pings again.
/// That ping closes the alert. Enabling one that is on changes nothing; switching one on that
/// was off watches it afresh (`expired` false), and its open alert still closes on the ping.
#[tokio::test]
async fn the_first_ping_after_enabling_closes_the_missed_heartbeats_alert() {
    let app = TestApp::spawn().await;
    for (name, toggles) in [
        ("hb-enabled-again", &[("enable", true)][..]),
        (
            "hb-maintenance",
            &[("disable", true), ("enable", false)][..],
        ),
    ] {
        let (s, b, _) = app
            .v2(
                "POST",
                "/v2/heartbeats",
                &app.owner,
                Some(
                    json!({"name": name, "interval": 1, "intervalUnit": "hours", "enabled": true}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        sweep(app.app(), OffsetDateTime::now_utc() + Duration::hours(2))
            .await
            .unwrap();
        assert_eq!(app.alert_by_alias(name).await["status"], "open");
        for (toggle, expired) in toggles {
            let (s, b, _) = app
                .v2(
                    "POST",
                    &format!("/v2/heartbeats/{name}/{toggle}"),
                    &app.owner,
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["data"]["expired"], *expired, "{toggle}: {b}");
        }
        let (s, _, _) = app
            .v2(
                "GET",
                &format!("/v2/heartbeats/{name}/ping"),
                &app.owner,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let alert = app.alert_by_alias(name).await;
        assert_eq!(
            (&alert["status"], &alert["count"]),
            (&json!("closed"), &json!(1)),
            "{name}: {alert}"
        );
        assert_eq!(app.heartbeat(name).await["expired"], false);
    }
}

/// A missed heartbeat whose alert was closed by hand, disabled for maintenance and enabled
/// again, is watched again: still silent an interval later, it raises a new alert.
#[tokio::test]
async fn a_heartbeat_switched_on_again_alerts_again_when_still_silent() {
    let app = TestApp::spawn().await;
    let name = "hb-rearmed";
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": name, "interval": 1, "intervalUnit": "hours", "enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    sweep(app.app(), OffsetDateTime::now_utc() + Duration::hours(2))
        .await
        .unwrap();
    let first = app.alert_by_alias(name).await;
    assert_eq!(first["status"], "open");
    let (s, b, _) = app
        .v2(
            "POST",
            &format!("/v2/alerts/{name}/close?identifierType=alias"),
            &app.owner,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    for toggle in ["disable", "enable"] {
        let (s, b, _) = app
            .v2(
                "POST",
                &format!("/v2/heartbeats/{name}/{toggle}"),
                &app.owner,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    sweep(app.app(), OffsetDateTime::now_utc() + Duration::hours(2))
        .await
        .unwrap();
    let second = app.alert_by_alias(name).await;
    assert_eq!(second["status"], "open", "{second}");
    assert_ne!(second["id"], first["id"]);
}

/// A heartbeat created disabled, or disabled for longer than its interval, starts its interval
/// when it is enabled (POST, PUT or PATCH .../enable, or PATCH `enabled: true`), rather than
/// alerting at once for the time nobody was watching. Enabling one that is already enabled
/// does not put its due time off.
#[tokio::test]
async fn enabling_a_heartbeat_starts_its_interval_afresh() {
    let app = TestApp::spawn().await;
    let long_ago = Duration::hours(2);
    app.old_heartbeat("hb-created-off", false, long_ago, false)
        .await;
    app.old_heartbeat("hb-paused", false, long_ago, true).await;
    app.old_heartbeat("hb-put", false, long_ago, true).await;
    app.old_heartbeat("hb-patch-verb", false, long_ago, false)
        .await;
    app.old_heartbeat("hb-late", true, long_ago, true).await;
    for (method, path, body) in [
        ("POST", "/v2/heartbeats/hb-created-off/enable", None),
        (
            "PATCH",
            "/v2/heartbeats/hb-paused",
            Some(json!({"enabled": true})),
        ),
        ("PUT", "/v2/heartbeats/hb-put/enable", None),
        ("PATCH", "/v2/heartbeats/hb-patch-verb/enable", None),
        ("POST", "/v2/heartbeats/hb-late/enable", None),
    ] {
        let (s, b, _) = app.v2(method, path, &app.owner, body).await;
        assert_eq!(s, StatusCode::OK, "{method} {path}: {b}");
    }
    let now = OffsetDateTime::now_utc();
    sweep(app.app(), now).await.unwrap();
    for name in ["hb-created-off", "hb-paused", "hb-put", "hb-patch-verb"] {
        assert_eq!(app.heartbeat(name).await["expired"], false, "{name}");
    }
    // Already enabled and overdue: enabling again is no reprieve.
    assert_eq!(app.heartbeat("hb-late").await["expired"], true);
    // A whole interval after being enabled without a ping, each is missed.
    sweep(app.app(), now + Duration::minutes(2)).await.unwrap();
    for name in ["hb-created-off", "hb-paused", "hb-put", "hb-patch-verb"] {
        assert_eq!(app.heartbeat(name).await["expired"], true, "{name}");
        assert_eq!(app.alert_by_alias(name).await["status"], "open", "{name}");
    }
    // The last ping is still the one it was: enabling is not a ping.
    assert!(app.heartbeat("hb-paused").await["lastPingTime"].is_string());
}

/// A heartbeat's alert message and tags are what its missed-interval alert will carry, so they
/// follow an alert's rules: a blank message is the default one (`<name> is expired`), tags
/// are strings, trimmed, not blank (refused by their place), cut to 50 characters and 20 tags.
#[tokio::test]
async fn a_heartbeats_alert_message_and_tags_follow_the_rules_of_alerts() {
    let app = TestApp::spawn().await;
    let long = "y".repeat(60);
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(
                json!({"name": "hb-tags", "interval": 1, "intervalUnit": "hours", "enabled": true,
                "alertMessage": "   ", "alertTags": [long, 5, "", " "]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let fields: Vec<&String> = b["errors"].as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["alertTags[1]", "alertTags[2]", "alertTags[3]"],
        "{b}"
    );
    let many: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
    for (tags, kept) in [
        (json!([" x ", long, "x"]), json!(["x", "y".repeat(50)])),
        (json!(many), json!(many[..20])),
    ] {
        let (s, b, _) = app
            .v2(
                "POST",
                "/v2/heartbeats",
                &app.owner,
                Some(json!({"name": "hb-tags", "interval": 1, "intervalUnit": "hours", "enabled": true,
                    "alertMessage": "   ", "alertTags": tags})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["data"]["alertMessage"], "hb-tags is expired", "{b}");
        assert_eq!(b["data"]["alertTags"], kept, "{b}");
        app.v2("DELETE", "/v2/heartbeats/hb-tags", &app.owner, None)
            .await;
    }
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(
                json!({"name": "hb-msg", "interval": 1, "intervalUnit": "hours", "enabled": true,
                "alertMessage": "  Backups stopped  ", "alertTags": [" db "]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["alertMessage"], "Backups stopped");
    sweep(app.app(), OffsetDateTime::now_utc() + Duration::hours(2))
        .await
        .unwrap();
    let alert = app.alert_by_alias("hb-msg").await;
    assert_eq!(
        (&alert["message"], &alert["tags"]),
        (&json!("Backups stopped"), &json!(["db"]))
    );
    // PATCH follows the same rules; a blank message goes back to the default.
    for (body, field, want) in [
        (
            json!({"alertMessage": ""}),
            "alertMessage",
            json!("hb-msg is expired"),
        ),
        (
            json!({"alertTags": [" a ", "b"]}),
            "alertTags",
            json!(["a", "b"]),
        ),
    ] {
        let (s, b, _) = app
            .v2("PATCH", "/v2/heartbeats/hb-msg", &app.owner, Some(body))
            .await;
        assert_eq!((s, &b["data"][field]), (StatusCode::OK, &want), "{b}");
    }
    let (s, b, _) = app
        .v2(
            "PATCH",
            "/v2/heartbeats/hb-msg",
            &app.owner,
            Some(json!({"alertTags": [true], "alertMessage": 7})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["errors"]["alertTags[0]"].is_string() && b["errors"]["alertMessage"].is_string(),
        "{b}"
    );
}

/// A heartbeat's 422 names every offending field, the name among them.
#[tokio::test]
async fn a_heartbeats_422_names_every_field() {
    let app = TestApp::spawn().await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"interval": 0, "intervalUnit": "weeks", "enabled": "yes", "alertPriority": "P9"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    for field in [
        "name",
        "interval",
        "intervalUnit",
        "enabled",
        "alertPriority",
    ] {
        assert!(b["errors"][field].is_string(), "{field}: {b}");
    }
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": 5, "interval": 1, "intervalUnit": "hours", "enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"]["name"], "must be a string", "{b}");
}

/// Opsgenie's "configuration (+ write/delete)": an integration key changes heartbeats and
/// integrations with configuration and write access, and deletes them only with delete access
/// too. The refusal says which access is missing and how to turn it on; explain agrees.
#[tokio::test]
async fn an_integration_key_deletes_configuration_only_with_delete_access() {
    let app = TestApp::spawn().await;
    let dev = app.team("dev").await;
    let (config_id, config) = app
        .integration(json!({"name": "config", "team_id": dev, "allow_configuration": true}))
        .await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &config,
            Some(json!({"name": "dev-cron", "interval": 10, "intervalUnit": "minutes", "enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/integrations",
            &config,
            Some(json!({"name": "child", "type": "API", "ownerTeam": {"id": dev}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let child = b["data"]["id"].as_str().unwrap().to_owned();
    let child_key = b["data"]["apiKey"].as_str().unwrap().to_owned();
    let deletes = [
        ("DELETE", "/v2/heartbeats/dev-cron".to_owned()),
        ("DELETE", format!("/v2/integrations/{child}")),
        ("DELETE", format!("/v1/integrations/{child}")),
    ];
    for (method, path) in &deletes {
        let (s, b, _) = app.v2(method, path, &config, None).await;
        refused(s, &b, StatusCode::FORBIDDEN, "permission_denied");
        if path.starts_with("/v2/") {
            assert_eq!(b["code"], 40301, "{path}: {b}");
        }
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("do not include allow_delete"),
            "{path}: {b}"
        );
        assert!(
            b["error"]["fixes"][0]
                .as_str()
                .unwrap()
                .contains("Turn on allow_delete"),
            "{path}: {b}"
        );
        let (s, e) = app
            .post(
                "/v1/auth/explain",
                &config,
                json!({"method": method, "path": path}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert_eq!(
            (&e["allowed"], &e["code"]),
            (&json!(false), &json!("permission_denied")),
            "{path}: {e}"
        );
        assert!(
            e["reasons"][0].as_str().unwrap().contains("allow_delete"),
            "{e}"
        );
    }
    // Nothing was deleted: the heartbeat is there, the child's key works.
    assert_eq!(app.heartbeat("dev-cron").await["name"], "dev-cron");
    let (s, _, _) = app.v2("GET", "/v2/account", &child_key, None).await;
    assert_eq!(s, StatusCode::OK);

    let (s, b) = app
        .patch(
            &format!("/v1/integrations/{config_id}"),
            &app.owner,
            json!({"allow_delete": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for (method, path) in &deletes[..2] {
        let (s, e) = app
            .post(
                "/v1/auth/explain",
                &config,
                json!({"method": method, "path": path}),
            )
            .await;
        assert_eq!((s, &e["allowed"]), (StatusCode::OK, &json!(true)), "{e}");
        let (s, b, _) = app.v2(method, path, &config, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    let (s, b, _) = app.v2("GET", "/v2/account", &child_key, None).await;
    assert_eq!(code(&b), "revoked_key", "{b}");
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// The create routes of configuration need `integrations:write` (somewhere: the body's team
/// decides where), and explain says so rather than "any valid credential".
#[tokio::test]
async fn explain_knows_what_creating_configuration_needs() {
    let app = TestApp::spawn().await;
    let sre = app.team("sre").await;
    let (_, alerts_only) = app
        .integration(json!({"name": "sreint", "team_id": sre}))
        .await;
    let (_, manager) = app
        .key(
            &app.owner,
            json!({"name": "sre config", "kind": "team", "team_id": sre, "team_role_names": ["team_admin"]}),
        )
        .await;
    let creates = [
        ("/v1/integrations", json!({"name": "made", "team_id": sre})),
        (
            "/v2/integrations",
            json!({"name": "made", "type": "API", "ownerTeam": {"id": sre}}),
        ),
        (
            "/v2/heartbeats",
            json!({"name": "made", "interval": 1, "intervalUnit": "hours", "enabled": true, "ownerTeam": {"id": sre}}),
        ),
    ];
    for (path, body) in &creates {
        let (s, e) = app
            .post(
                "/v1/auth/explain",
                &alerts_only,
                json!({"method": "POST", "path": path}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert_eq!(
            (&e["allowed"], &e["code"], &e["permission"]),
            (
                &json!(false),
                &json!("permission_denied"),
                &json!("integrations:write")
            ),
            "{path}: {e}"
        );
        let (s, b, _) = app.v2("POST", path, &alerts_only, Some(body.clone())).await;
        refused(s, &b, StatusCode::FORBIDDEN, "permission_denied");
        assert_eq!(code(&b), e["code"].as_str().unwrap());

        // A team grant creates in its team; explain says so.
        let (s, e) = app
            .post(
                "/v1/auth/explain",
                &manager,
                json!({"method": "POST", "path": path}),
            )
            .await;
        assert_eq!((s, &e["allowed"]), (StatusCode::OK, &json!(true)), "{e}");
        assert!(
            e["reasons"][1].as_str().unwrap().contains(sre.as_str()),
            "{path}: {e}"
        );
        let (s, b, _) = app.v2("POST", path, &manager, Some(body.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{path}: {b}");
        if path.starts_with("/v1/integrations") || path.starts_with("/v2/integrations") {
            let id = b["integration"]["id"]
                .as_str()
                .or(b["data"]["id"].as_str())
                .unwrap()
                .to_owned();
            app.v2("DELETE", &format!("/v2/integrations/{id}"), &manager, None)
                .await;
        }
    }
}

/// An integration key refused configuration is told the access flags that are off, and only
/// those: a key with write access already is not told to turn it on. Explain says the same.
#[tokio::test]
async fn a_configuration_refusal_names_only_the_flags_that_are_off() {
    let app = TestApp::spawn().await;
    let heartbeat =
        json!({"name": "hbz", "interval": 1, "intervalUnit": "minutes", "enabled": true});
    for (name, flags, missing) in [
        ("writer", json!({}), "allow_configuration"),
        (
            "reader",
            json!({"allow_write": false, "allow_configuration": true}),
            "allow_write",
        ),
        (
            "neither",
            json!({"allow_write": false}),
            "allow_configuration and allow_write",
        ),
    ] {
        let mut body = flags;
        body["name"] = json!(name);
        let (_, key) = app.integration(body).await;
        let (s, b, _) = app
            .v2("POST", "/v2/heartbeats", &key, Some(heartbeat.clone()))
            .await;
        refused(s, &b, StatusCode::FORBIDDEN, "permission_denied");
        assert_eq!(b["code"], 40301, "{b}");
        let message = b["message"].as_str().unwrap();
        assert!(
            message.ends_with(&format!(
                "its integration's access flags do not include {missing}."
            )),
            "{name}: {b}"
        );
        assert!(
            b["error"]["fixes"][0]
                .as_str()
                .unwrap()
                .starts_with(&format!("Turn on {missing} for the integration")),
            "{name}: {b}"
        );
        let (s, e) = app
            .post(
                "/v1/auth/explain",
                &key,
                json!({"method": "POST", "path": "/v2/heartbeats"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert_eq!(e["reasons"][0], message, "{name}: {e}");
    }
}

/// The `api_key.revoked` events, newest first.
async fn revoked_events(app: &TestApp) -> Vec<Value> {
    let (s, b) = app
        .get("/v1/audit_events?action=api_key.revoked", &app.owner)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"].as_array().unwrap().clone()
}

/// Deleting an integration revokes its keys, and each revocation is in the audit trail as the
/// revoke route records one: `api_key.revoked`, naming the key and the request that did it.
#[tokio::test]
async fn deleting_an_integration_records_each_key_it_revokes() {
    let app = TestApp::spawn().await;
    // The shape to match: a key revoked by the revoke route.
    let (alone, _) = app
        .key(
            &app.owner,
            json!({"name": "alone", "role_names": ["viewer"]}),
        )
        .await;
    let (s, b) = app
        .post(
            &format!("/v1/api_keys/{alone}/revoke"),
            &app.owner,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let by_route = revoked_events(&app).await[0].clone();
    let shape = |e: &Value| {
        let mut keys: Vec<String> = e.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };

    for (api, expected_status) in [("/v1", 204), ("/v2", 200)] {
        let (id, _) = app.integration(json!({"name": format!("tmp{api}")})).await;
        let (second, _) = app
            .key(
                &app.owner,
                json!({"name": "second", "kind": "integration", "integration_id": id}),
            )
            .await;
        let (s, keys) = app
            .get(&format!("/v1/api_keys?integration_id={id}"), &app.owner)
            .await;
        assert_eq!(s, StatusCode::OK, "{keys}");
        let mut key_ids: Vec<String> = keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(key_ids.contains(&second) && key_ids.len() == 2, "{keys}");
        let before = revoked_events(&app).await.len();
        let (s, b, _) = app
            .v2(
                "DELETE",
                &format!("{api}/integrations/{id}"),
                &app.owner,
                None,
            )
            .await;
        assert_eq!(s.as_u16(), expected_status, "{b}");
        let events = revoked_events(&app).await;
        assert_eq!(events.len(), before + 2, "{api}: {events:?}");
        let mut targets: Vec<String> = events[..2]
            .iter()
            .map(|e| e["target"]["id"].as_str().unwrap().to_owned())
            .collect();
        targets.sort();
        key_ids.sort();
        assert_eq!(targets, key_ids, "{api}");
        for e in &events[..2] {
            assert_eq!(shape(e), shape(&by_route), "{e}");
            assert_eq!(
                (&e["target"]["type"], &e["actor"], &e["outcome"]),
                (
                    &by_route["target"]["type"],
                    &by_route["actor"],
                    &json!("allowed")
                ),
                "{e}"
            );
            assert_eq!(
                (&e["method"], &e["route"], &e["status"]),
                (
                    &json!("DELETE"),
                    &json!(format!("{api}/integrations/{{id}}")),
                    &json!(expected_status)
                ),
                "{e}"
            );
        }
    }
}

/// An integration's 422, on either API, names every offending field at once.
#[tokio::test]
async fn an_integrations_422_names_every_field() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .post(
            "/v1/integrations",
            &app.owner,
            json!({"name": "x", "type": "Webhook", "team_id": "bogus", "allow_read": "yes", "enabled": 1, "colour": "red"}),
        )
        .await;
    refused(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    for field in ["type", "team_id", "allow_read", "enabled", "colour"] {
        assert!(b["error"]["fields"][field].is_string(), "{field}: {b}");
    }
    assert!(
        b["error"]["fields"]["colour"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{b}"
    );
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/integrations",
            &app.owner,
            Some(
                json!({"name": 7, "type": "Webhook", "ownerTeam": {"name": "nobody"},
                "allowWriteAccess": "yes", "allowDeleteAccess": 0}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    for field in [
        "name",
        "type",
        "ownerTeam",
        "allowWriteAccess",
        "allowDeleteAccess",
    ] {
        assert!(b["errors"][field].is_string(), "{field}: {b}");
    }
    assert_eq!(b["errors"]["name"], "must be a string", "{b}");
    // Nothing was made.
    let (_, b) = app.get("/v1/integrations", &app.owner).await;
    assert_eq!(b["data"], json!([]), "{b}");
}

/// An integration's first key is named `<integration name> key`, cut (by characters) to fit a
/// key name's 200 characters, so the very name can be given to another key.
#[tokio::test]
async fn a_long_integration_names_its_first_key_within_200_characters() {
    let app = TestApp::spawn().await;
    let long = "é".repeat(200);
    let (s, b) = app
        .post("/v1/integrations", &app.owner, json!({"name": long}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let key_name = b["api_key"]["name"].as_str().unwrap().to_owned();
    assert_eq!(key_name.chars().count(), 200, "{key_name}");
    assert_eq!(key_name, format!("{} key", "é".repeat(196)));
    let id = b["integration"]["id"].as_str().unwrap();
    // The same name is one a key may have (the first key is revoked to free it).
    let first = b["api_key"]["id"].as_str().unwrap();
    app.post(
        &format!("/v1/api_keys/{first}/revoke"),
        &app.owner,
        json!({}),
    )
    .await;
    app.key(
        &app.owner,
        json!({"kind": "integration", "integration_id": id, "name": key_name}),
    )
    .await;
    let (s, b) = app
        .post("/v1/integrations", &app.owner, json!({"name": "short"}))
        .await;
    assert_eq!(
        (s, &b["api_key"]["name"]),
        (StatusCode::CREATED, &json!("short key"))
    );
}

/// A team that owns heartbeats or integrations (even ones with no key left) is not deleted:
/// they would be left to a team that no longer exists, their alerts paging nobody. The
/// refusal names them, to a caller who may read them.
#[tokio::test]
async fn a_team_owning_heartbeats_or_integrations_is_not_deleted() {
    let app = TestApp::spawn().await;
    let tmp = app.team("tmpteam").await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": "hb-team", "interval": 1, "intervalUnit": "hours", "enabled": true, "ownerTeam": {"name": "tmpteam"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (integration, _) = app
        .integration(json!({"name": "orphan", "team_id": tmp}))
        .await;
    // Its key revoked: the integration alone still holds the team.
    let (_, keys) = app
        .get(
            &format!("/v1/api_keys?integration_id={integration}"),
            &app.owner,
        )
        .await;
    let key = keys["data"][0]["id"].as_str().unwrap();
    app.post(&format!("/v1/api_keys/{key}/revoke"), &app.owner, json!({}))
        .await;

    let (s, b) = app
        .call(
            "DELETE",
            &format!("/v1/teams/{tmp}"),
            Some(&app.owner),
            None,
        )
        .await;
    refused(s, &b, StatusCode::CONFLICT, "team_in_use");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("1 integration(s): {integration} (\"orphan\")"))
            && message.contains("1 heartbeat(s): hb-team")
            && !message.contains("API key"),
        "{b}"
    );
    let fix = b["error"]["fixes"][0].as_str().unwrap();
    assert!(
        fix.contains("DELETE /v1/integrations/{id}")
            && fix.contains("DELETE /v2/heartbeats/{name}"),
        "{b}"
    );
    // A caller who may change teams but not read integrations learns what, not which.
    app.post(
        "/v1/roles",
        &app.owner,
        json!({"name": "team_keeper", "scope": "account", "permissions": ["teams:read", "teams:write"]}),
    )
    .await;
    let (_, keeper) = app
        .key(
            &app.owner,
            json!({"name": "keeper", "kind": "organization", "role_names": ["team_keeper"]}),
        )
        .await;
    let (s, b) = app
        .call("DELETE", &format!("/v1/teams/{tmp}"), Some(&keeper), None)
        .await;
    refused(s, &b, StatusCode::CONFLICT, "team_in_use");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 heartbeat(s) (someone holding integrations:read")
            && !message.contains("hb-team")
            && !message.contains(&integration),
        "{b}"
    );

    // Only the integration left: still refused; then nothing left: deleted.
    let (s, b, _) = app
        .v2("DELETE", "/v2/heartbeats/hb-team", &app.owner, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .call(
            "DELETE",
            &format!("/v1/teams/{tmp}"),
            Some(&app.owner),
            None,
        )
        .await;
    refused(s, &b, StatusCode::CONFLICT, "team_in_use");
    let (s, b) = app
        .call(
            "DELETE",
            &format!("/v1/integrations/{integration}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = app
        .call(
            "DELETE",
            &format!("/v1/teams/{tmp}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
}

/// A node that marked a heartbeat missed and stopped before raising its alert (here: the
/// store's take, with no alert after it) leaves the alert owed: a later sweep, once the
/// claim is older than `CLAIM_RETRY_MS`, raises it. Before, the mark alone stayed and the
/// alert was never raised.
#[tokio::test]
async fn a_missed_heartbeat_s_alert_is_raised_by_a_later_sweep_when_the_first_stopped() {
    let app = TestApp::spawn().await;
    // Made now, and missed an hour on: the server's own sweep, on the clock, never finds it due.
    app.old_heartbeat("hb-orphaned", true, Duration::ZERO, false)
        .await;
    let now = OffsetDateTime::now_utc() + Duration::hours(1);
    let taken = app.app().store.take_expired_heartbeats(now).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(app.heartbeat("hb-orphaned").await["expired"], true);
    let alias = "/v2/alerts/hb-orphaned?identifierType=alias";
    // The claim is fresh: the first sweep may still be raising it.
    assert_eq!(
        sweep(app.app(), now + Duration::seconds(15)).await.unwrap(),
        0
    );
    let (s, b, _) = app.v2("GET", alias, &app.owner, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let retry = Duration::milliseconds(tocsin_store::heartbeats::CLAIM_RETRY_MS);
    assert_eq!(sweep(app.app(), now + retry).await.unwrap(), 1);
    assert_eq!(app.alert_by_alias("hb-orphaned").await["status"], "open");
    // Raised once: nothing more is owed.
    assert_eq!(sweep(app.app(), now + retry * 3).await.unwrap(), 0);
    assert_eq!(app.alert_by_alias("hb-orphaned").await["count"], 1);
}

/// A team's missed heartbeat whose alias is another alert's (an organization-wide one its
/// team may not write) is refused, not dropped: once that alert is closed, a sweep two
/// minutes on raises the heartbeat's own alert.
#[tokio::test]
async fn a_refused_heartbeat_alert_is_raised_once_its_alias_is_free() {
    let app = TestApp::spawn().await;
    let team = app.team("hb-refused-team").await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/alerts",
            &app.owner,
            Some(json!({"message": "org-wide", "alias": "hb-refused"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": "hb-refused", "interval": 1, "intervalUnit": "hours", "enabled": true, "ownerTeam": {"id": team}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let later = OffsetDateTime::now_utc() + Duration::hours(2);
    assert_eq!(sweep(app.app(), later).await.unwrap(), 0, "refused");
    let org_wide = app.alert_by_alias("hb-refused").await;
    assert_eq!(org_wide["message"], "org-wide");
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/alerts/hb-refused/close?identifierType=alias",
            &app.owner,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // Still owed, and the claim stands until it is two minutes old.
    assert_eq!(
        sweep(app.app(), later + Duration::seconds(15))
            .await
            .unwrap(),
        0
    );
    let retry = Duration::milliseconds(tocsin_store::heartbeats::CLAIM_RETRY_MS);
    assert_eq!(sweep(app.app(), later + retry).await.unwrap(), 1);
    let own = app.alert_by_alias("hb-refused").await;
    assert_eq!(
        (&own["status"], &own["source"], &own["count"]),
        (&json!("open"), &json!("Heartbeat"), &json!(1)),
        "{own}"
    );
    assert_ne!(own["id"], org_wide["id"]);
}
