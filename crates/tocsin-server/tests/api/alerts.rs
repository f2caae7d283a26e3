//! Opsgenie's Alert API v2 over HTTP: create and de-duplicate, read, search, act, and the
//! request statuses behind every 202.

use super::{TestApp, code};
use reqwest::StatusCode;
use serde_json::{Value, json};

impl TestApp {
    /// Calls a `/v2` route with `Authorization: GenieKey`, as Opsgenie clients do.
    pub(crate) async fn v2(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("Authorization", format!("GenieKey {key}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let header = resp
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            header,
        )
    }

    pub(crate) async fn integration(&self, body: Value) -> (String, String) {
        let (s, b) = self.post("/v1/integrations", &self.owner, body).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        (
            b["integration"]["id"].as_str().unwrap().to_owned(),
            b["token"].as_str().unwrap().to_owned(),
        )
    }

    /// The request status of a 202.
    pub(crate) async fn status_of(&self, key: &str, request_id: &str) -> Value {
        let (s, b, _) = self
            .v2(
                "GET",
                &format!("/v2/alerts/requests/{request_id}"),
                key,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"].clone()
    }
}

#[tokio::test]
async fn create_deduplicate_act_and_read_like_opsgenie() {
    let app = TestApp::spawn().await;
    let team = app.team("sre").await;
    let (_, key) = app
        .integration(json!({"name": "Alertmanager", "team_id": team}))
        .await;

    let (s, b, header) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": "Disk full", "alias": "disk-db1", "tags": ["prod"], "priority": "P2", "note": "first"})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["result"], "Request will be processed");
    assert!(b["took"].is_number());
    assert_eq!(
        b["requestId"].as_str().unwrap(),
        header,
        "X-Request-ID equals the body's requestId"
    );
    let status = app.status_of(&key, &header).await;
    assert_eq!(status["isSuccess"], true, "{status}");
    assert_eq!(status["action"], "Create");
    let alert_id = status["alertId"].as_str().unwrap().to_owned();

    // Same alias while open: counted, not duplicated, message kept.
    for _ in 0..2 {
        let (s, _, _) = app
            .v2(
                "POST",
                "/v2/alerts",
                &key,
                Some(json!({"message": "Disk full again", "alias": "disk-db1"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let (s, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/disk-db1?identifierType=alias",
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let a = &b["data"];
    assert_eq!(a["id"], alert_id.as_str());
    assert_eq!(a["count"], 3);
    assert_eq!(a["message"], "Disk full");
    assert_eq!(a["tinyId"], "1");
    assert_eq!(a["priority"], "P2");
    assert_eq!(a["integration"]["name"], "Alertmanager");
    assert_eq!(a["ownerTeamId"], team.as_str());
    assert_eq!(a["responders"], json!([{"type": "team", "id": team}]));
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/1?identifierType=tiny", &key, None)
        .await;
    assert_eq!(b["data"]["id"], alert_id.as_str());

    // Acknowledge with an empty body (the Python SDK sends none), add a note, list notes.
    let resp = app
        .http
        .post(format!("{}/v2/alerts/{alert_id}/acknowledge", app.base))
        .header("Authorization", format!("GenieKey {key}"))
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (s, _, _) = app
        .v2(
            "POST",
            &format!("/v2/alerts/{alert_id}/notes"),
            &key,
            Some(json!({"note": "looking", "user": "ann"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, b, _) = app
        .v2("GET", &format!("/v2/alerts/{alert_id}/notes"), &key, None)
        .await;
    let notes: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["note"].as_str().unwrap())
        .collect();
    assert_eq!(notes, vec!["looking", "first"]);
    let (_, b, _) = app
        .v2("GET", &format!("/v2/alerts/{alert_id}/logs"), &key, None)
        .await;
    let logs: Vec<(&str, &str)> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["log"].as_str().unwrap(), l["owner"].as_str().unwrap()))
        .collect();
    // Newest first; the creation line is the alert's own (its offset is the alert's id).
    assert_eq!(
        logs,
        vec![
            ("Note added by ann", "ann"),
            ("Alert acknowledged by Alertmanager", "Alertmanager"),
            ("Alert occurred again: Disk full again", "Alertmanager"),
            ("Alert occurred again: Disk full again", "Alertmanager"),
            ("Alert created", "Alertmanager"),
        ],
        "{b}"
    );
    assert_eq!(b["data"][4]["offset"], alert_id.as_str());
    // Paging by a line's offset, either way, in Opsgenie's words in any case.
    let second = b["data"][1]["offset"].as_str().unwrap().to_owned();
    let page = |query: String| {
        let app = &app;
        let key = &key;
        let alert_id = &alert_id;
        async move {
            app.v2(
                "GET",
                &format!("/v2/alerts/{alert_id}/logs?{query}"),
                key,
                None,
            )
            .await
        }
    };
    let (_, b, _) = page(format!("offset={second}&limit=2")).await;
    let texts = |b: &Value| -> Vec<String> {
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["log"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(texts(&b), ["Alert occurred again: Disk full again"; 2]);
    let (_, b, _) = page(format!("offset={second}&direction=PREV&order=DESC")).await;
    assert_eq!(texts(&b), ["Note added by ann"]);
    let (_, b, _) = page("order=ASC&limit=1".into()).await;
    assert_eq!(texts(&b), ["Alert created"]);
    for (query, field) in [
        ("order=sideways", "order"),
        ("direction=up", "direction"),
        ("offset=zzz", "offset"),
    ] {
        let (s, b, _) = page(query.into()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {b}");
        assert!(b["errors"][field].is_string(), "{query}: {b}");
    }

    // Recipients: an empty list (Tocsin notifies no one yet), with `paging` as notes and
    // logs have it.
    let (s, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/disk-db1/recipients?identifierType=alias",
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"], json!([]));
    let first = b["paging"]["first"].as_str().expect("paging.first");
    let path = format!("/v2/alerts/{alert_id}/recipients?identifierType=id");
    assert!(first.ends_with(&path), "{b}");
    assert!(b["paging"].get("next").is_none(), "{b}");
    let (s, b, _) = app.v2("GET", &path, &key, None).await;
    assert_eq!((s, &b["data"]), (StatusCode::OK, &json!([])), "{b}");

    // Tags, priority, message.
    app.v2(
        "POST",
        &format!("/v2/alerts/{alert_id}/tags"),
        &key,
        Some(json!({"tags": ["db"]})),
    )
    .await;
    app.v2(
        "DELETE",
        &format!("/v2/alerts/{alert_id}/tags?tags=prod"),
        &key,
        None,
    )
    .await;
    app.v2(
        "PUT",
        &format!("/v2/alerts/{alert_id}/priority"),
        &key,
        Some(json!({"priority": "P1"})),
    )
    .await;
    let (_, b, _) = app
        .v2("GET", &format!("/v2/alerts/{alert_id}"), &key, None)
        .await;
    assert_eq!(b["data"]["tags"], json!(["db"]));
    assert_eq!(b["data"]["priority"], "P1");
    assert_eq!(b["data"]["acknowledged"], true);
    assert!(b["data"]["report"]["ackTime"].is_number());

    // Close by alias; a new create with the alias then opens a fresh alert.
    let (s, _, rid) = app
        .v2(
            "POST",
            "/v2/alerts/disk-db1/close?identifierType=alias",
            &key,
            Some(json!({"source": "am"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(app.status_of(&key, &rid).await["isSuccess"], true);
    app.v2(
        "POST",
        "/v2/alerts",
        &key,
        Some(json!({"message": "Disk full", "alias": "disk-db1"})),
    )
    .await;
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/count?query=alias%3Adisk-db1", &key, None)
        .await;
    assert_eq!(b["data"]["count"], 2);
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/disk-db1?identifierType=alias",
            &key,
            None,
        )
        .await;
    assert_eq!(b["data"]["status"], "open");
    assert_eq!(b["data"]["count"], 1);

    // Closing an alias that has no alert: 202, and the request status says why.
    let (s, _, rid) = app
        .v2(
            "POST",
            "/v2/alerts/nothing-here/close?identifierType=alias",
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let st = app.status_of(&key, &rid).await;
    assert_eq!(
        (st["isSuccess"].clone(), st["status"].clone()),
        (json!(false), json!("Alert does not exist"))
    );
}

#[tokio::test]
async fn list_search_sort_and_page() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "Global"})).await;
    for (i, (m, tag, p)) in [
        ("api slow", "prod", "P1"),
        ("db down", "prod", "P2"),
        ("cache cold", "dev", "P3"),
    ]
    .iter()
    .enumerate()
    {
        let (s, _, _) = app
            .v2(
                "POST",
                "/v2/alerts",
                &key,
                Some(json!({"message": m, "alias": format!("a{i}"), "tags": [tag], "priority": p})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let (s, b, _) = app
        .v2(
            "GET",
            "/v2/alerts?query=tag%3Aprod%20AND%20priority%3AP1",
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let msgs: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, vec!["api slow"]);
    assert!(
        b["data"][0].get("description").is_none(),
        "list items leave out long fields"
    );
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts?query=status%3Dopen&sort=tinyId&order=asc&limit=2",
            &key,
            None,
        )
        .await;
    let tiny: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tinyId"].as_str().unwrap())
        .collect();
    assert_eq!(tiny, vec!["1", "2"]);
    assert!(b["paging"]["next"].as_str().unwrap().contains("offset=2"));
    assert!(b["paging"]["first"].as_str().unwrap().starts_with("http"));
    // An offset past every page has no next page (near i64::MAX it once wrapped negative).
    let (s, b, _) = app
        .v2(
            "GET",
            "/v2/alerts?offset=9223372036854775807&limit=100",
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["data"].as_array().unwrap().is_empty() && b["paging"]["next"].is_null(),
        "{b}"
    );
    let (_, b, _) = app
        .v2("GET", "/v2/alerts?query=NOT%20tag%3Aprod", &key, None)
        .await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);

    // A bad query is a 422 that says where it breaks, in Opsgenie's envelope.
    let (s, b, _) = app
        .v2("GET", "/v2/alerts?query=stauts%3Aopen", &key, None)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["errors"]["query"]
            .as_str()
            .unwrap()
            .contains("at character 0"),
        "{b}"
    );
    assert!(b["requestId"].is_string() && b["took"].is_number() && b["message"].is_string());
    // `*` wildcards are refused where they are, on the list and the count, rather than read
    // as a literal `*` that matches nothing; quoted, a `*` is itself.
    for path in [
        "/v2/alerts?query=alias%3Aa%2A",
        "/v2/alerts/count?query=alias:a*",
    ] {
        let (s, b, _) = app.v2("GET", path, &key, None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
        let why = b["errors"]["query"].as_str().unwrap();
        assert!(
            why.starts_with("at character 7: `*` wildcards are not supported"),
            "{path}: {b}"
        );
    }
    app.v2(
        "POST",
        "/v2/alerts",
        &key,
        Some(json!({"message": "m", "alias": "a*"})),
    )
    .await;
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/count?query=alias:%22a*%22", &key, None)
        .await;
    assert_eq!(b["data"]["count"], 1, "{b}");
    let (s, b, _) = app.v2("GET", "/v2/alerts?limit=500", &key, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["limit"].is_string());
}

#[tokio::test]
async fn team_keys_see_and_touch_only_their_teams_alerts() {
    let app = TestApp::spawn().await;
    let sre = app.team("sre").await;
    let dba = app.team("dba").await;
    let (_, sre_key) = app
        .integration(json!({"name": "sre", "team_id": sre}))
        .await;
    let (_, dba_key) = app
        .integration(json!({"name": "dba", "team_id": dba}))
        .await;
    let (_, _, rid) = app
        .v2(
            "POST",
            "/v2/alerts",
            &sre_key,
            Some(json!({"message": "sre thing", "responders": [{"type": "team", "id": dba}]})),
        )
        .await;
    let sre_alert = app.status_of(&sre_key, &rid).await["alertId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.v2(
        "POST",
        "/v2/alerts",
        &dba_key,
        Some(json!({"message": "dba thing"})),
    )
    .await;

    let (_, b, _) = app.v2("GET", "/v2/alerts", &sre_key, None).await;
    let msgs: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        vec!["sre thing"],
        "a team integration's responders are its team"
    );
    let (s, b, _) = app
        .v2("GET", &format!("/v2/alerts/{sre_alert}"), &dba_key, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(b["code"], 40301);
    assert_eq!(b["error"]["code"], "scope_denied");
    let (s, _, _) = app
        .v2(
            "POST",
            &format!("/v2/alerts/{sre_alert}/close"),
            &dba_key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Nor does another team's key read the status of a request on that alert (it names the
    // alert's id and alias): no such request, for it. Its own requests' statuses it reads,
    // and so does the owner.
    let (s, b, _) = app
        .v2("GET", &format!("/v2/alerts/requests/{rid}"), &dba_key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(
        app.status_of(&app.owner, &rid).await["alertId"],
        sre_alert.as_str()
    );
    let (_, _, own) = app
        .v2(
            "POST",
            "/v2/alerts/nothing-here/close?identifierType=alias",
            &dba_key,
            None,
        )
        .await;
    assert_eq!(app.status_of(&dba_key, &own).await["isSuccess"], false);
    // The owner's personal key sees everything.
    let (_, b, _) = app.v2("GET", "/v2/alerts", &app.owner, None).await;
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    // An alias held by another team's open alert: the create is refused in its request
    // status, and neither counted into that alert nor told its id.
    let (_, _, rid) = app
        .v2(
            "POST",
            "/v2/alerts",
            &sre_key,
            Some(json!({"message": "db failover", "alias": "db-failover"})),
        )
        .await;
    let failover = app.status_of(&sre_key, &rid).await;
    assert_eq!(failover["isSuccess"], true, "{failover}");
    let (s, b, rid) = app
        .v2(
            "POST",
            "/v2/alerts",
            &dba_key,
            Some(json!({"message": "probe", "alias": "db-failover", "note": "dba was here"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let probe = app.status_of(&dba_key, &rid).await;
    assert_eq!(probe["isSuccess"], false, "{probe}");
    assert!(
        probe["status"]
            .as_str()
            .unwrap()
            .contains("belongs to other teams"),
        "{probe}"
    );
    assert_ne!(probe["alertId"], failover["alertId"], "{probe}");
    let path = format!("/v2/alerts/{}", failover["alertId"].as_str().unwrap());
    let (_, b, _) = app.v2("GET", &path, &sre_key, None).await;
    assert_eq!(b["data"]["count"], 1, "{b}");
    let (_, b, _) = app
        .v2("GET", &format!("{path}/notes"), &sre_key, None)
        .await;
    assert_eq!(b["data"].as_array().unwrap().len(), 0, "{b}");
    // The alert's own team, and account-wide keys, still count into it.
    for key in [&sre_key, &app.owner] {
        let (_, _, rid) = app
            .v2(
                "POST",
                "/v2/alerts",
                key,
                Some(json!({"message": "again", "alias": "db-failover"})),
            )
            .await;
        let again = app.status_of(key, &rid).await;
        assert_eq!(
            (&again["isSuccess"], &again["alertId"]),
            (&json!(true), &failover["alertId"]),
            "{again}"
        );
    }
    let (_, b, _) = app.v2("GET", &path, &sre_key, None).await;
    assert_eq!(b["data"]["count"], 3, "{b}");
    // Read-only integrations cannot write, and refusals use Opsgenie's envelope.
    let (_, ro) = app
        .integration(json!({"name": "ro", "allow_write": false}))
        .await;
    let (s, b, _) = app
        .v2("POST", "/v2/alerts", &ro, Some(json!({"message": "x"})))
        .await;
    assert_eq!(
        (s, b["code"].clone()),
        (StatusCode::FORBIDDEN, json!(40301))
    );
    assert!(b["message"].as_str().unwrap().contains("alerts:write"));
    let (s, b, _) = app.v2("GET", "/v2/alerts", "tcs_i_us_nope", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&b), "malformed_token");
    assert!(b["requestId"].is_string() && b["took"].is_number());
    // A team's (non-integration) key deleting its team's alert reads the status of its
    // delete, although the alert is gone.
    let (_, sre_team_key) = app
        .key(&app.owner, json!({"name": "sre admin", "kind": "team", "team_id": sre, "team_role_names": ["team_admin"]}))
        .await;
    let (s, b, deleted) = app
        .v2(
            "DELETE",
            &format!("/v2/alerts/{sre_alert}"),
            &sre_team_key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let st = app.status_of(&sre_team_key, &deleted).await;
    assert_eq!(
        (st["action"].clone(), st["isSuccess"].clone()),
        (json!("Delete"), json!(true)),
        "{st}"
    );
}

#[tokio::test]
async fn concurrent_creates_with_one_alias_make_one_alert() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "burst"})).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let http = app.http.clone();
        let url = format!("{}/v2/alerts", app.base);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("Authorization", format!("GenieKey {key}"))
                .json(&json!({"message": "storm", "alias": "storm"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::ACCEPTED);
    }
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/storm?identifierType=alias", &key, None)
        .await;
    assert_eq!(b["data"]["count"], 100);
    let (_, b, _) = app.v2("GET", "/v2/alerts/count", &key, None).await;
    assert_eq!(b["data"]["count"], 1);
}

#[tokio::test]
async fn opsgenie_validation_and_the_integration_key_setting() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "v"})).await;
    let (s, b, _) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": ""})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["message"].is_string(), "{b}");
    // Opsgenie's own reason ends with a full stop; the summary does not add a second one.
    assert_eq!(
        b["message"], "The request is invalid: message: Message can not be empty.",
        "{b}"
    );
    // A text field of the wrong type is refused for its type, in `errors`, in `error.fields`
    // and in the message alike: not as empty.
    for (field, value) in [
        ("message", json!(["Disk full"])),
        ("message", json!({"text": "Disk full"})),
        ("alias", json!(["a"])),
        ("description", json!({})),
        ("entity", json!([])),
        ("source", json!({})),
        ("priority", json!(["P1"])),
        ("user", json!([])),
        ("note", json!({})),
    ] {
        let mut body = json!({"message": "m"});
        body[field] = value;
        let (s, b, _) = app.v2("POST", "/v2/alerts", &key, Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {b}");
        assert_eq!(b["errors"], json!({field: "must be a string"}), "{field}");
        assert_eq!(
            b["error"]["fields"],
            json!({field: "must be a string"}),
            "{field}"
        );
        assert_eq!(
            b["message"],
            format!("The request is invalid: {field}: must be a string."),
            "{field}"
        );
    }
    let (s, _, rid) = app.v2("POST", "/v2/alerts", &key, Some(json!({"message": "é".repeat(140), "tags": (0..30).map(|i| format!("t{i}")).collect::<Vec<_>>()}))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let st = app.status_of(&key, &rid).await;
    assert!(st["status"].as_str().unwrap().contains("truncated"), "{st}");
    let (_, b, _) = app
        .v2(
            "GET",
            &format!("/v2/alerts/{}", st["alertId"].as_str().unwrap()),
            &key,
            None,
        )
        .await;
    assert_eq!(b["data"]["message"].as_str().unwrap().chars().count(), 130);
    assert_eq!(b["data"]["tags"].as_array().unwrap().len(), 20);

    // Any key with alerts:write may create, unless the organization asks for Opsgenie's rule.
    let (s, _, _) = app
        .v2(
            "POST",
            "/v2/alerts",
            &app.owner,
            Some(json!({"message": "by a person"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = app
        .patch(
            "/v1/organization",
            &app.owner,
            json!({"alerts_require_integration_key": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/alerts",
            &app.owner,
            Some(json!({"message": "by a person"})),
        )
        .await;
    assert_eq!(
        (s, b["code"].clone()),
        (StatusCode::FORBIDDEN, json!(40301)),
        "{b}"
    );
    assert!(b["message"].as_str().unwrap().contains("API integration"));
    assert_eq!(
        app.v2("POST", "/v2/alerts", &key, Some(json!({"message": "ok"})))
            .await
            .0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn opsgenie_integration_and_account_api() {
    let app = TestApp::spawn().await;
    let team = app.team("Platform").await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/integrations",
            &app.owner,
            Some(json!({"name": "Terraform made", "type": "API", "ownerTeam": {"name": "platform"}, "allowWriteAccess": true, "allowConfigurationAccess": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["data"]["id"].as_str().unwrap().to_owned();
    let key = b["data"]["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(b["data"]["teamId"], team.as_str());
    assert!(b["requestId"].is_string());

    // Its key can read its own configuration (configuration access) and write alerts.
    let (s, b, _) = app
        .v2("GET", &format!("/v2/integrations/{id}"), &key, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["ownerTeam"]["name"], "Platform");
    assert_eq!(b["data"]["allowConfigurationAccess"], true);
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/integrations/authenticate",
            &key,
            Some(json!({"type": "API"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/integrations?teamName=Platform",
            &app.owner,
            None,
        )
        .await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);
    let (_, b, _) = app
        .v2(
            "GET",
            &format!("/v2/integrations?teamId={team}"),
            &app.owner,
            None,
        )
        .await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);
    // A team that does not exist is refused by its id as by its name.
    for (query, field) in [("teamId=garbage", "teamId"), ("teamName=ghost", "teamName")] {
        let (s, b, _) = app
            .v2(
                "GET",
                &format!("/v2/integrations?{query}"),
                &app.owner,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {b}");
        assert!(b["errors"][field].is_string(), "{query}: {b}");
    }

    // A PUT may repeat its owner team or leave it out; moving it is refused, not ignored.
    app.team("Other").await;
    let put = |team: Value| {
        let app = &app;
        let id = &id;
        async move {
            let mut body = json!({"name": "Terraform made", "type": "API", "allowWriteAccess": true, "allowConfigurationAccess": true});
            if !team.is_null() {
                body["ownerTeam"] = team;
            }
            app.v2(
                "PUT",
                &format!("/v2/integrations/{id}"),
                &app.owner,
                Some(body),
            )
            .await
        }
    };
    assert_eq!(put(json!({"name": "Platform"})).await.0, StatusCode::OK);
    assert_eq!(put(Value::Null).await.0, StatusCode::OK);
    let (s, b, _) = put(json!({"name": "Other"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["errors"]["ownerTeam"]
            .as_str()
            .unwrap()
            .contains("cannot be changed"),
        "{b}"
    );
    let (_, b, _) = app
        .v2("GET", &format!("/v2/integrations/{id}"), &key, None)
        .await;
    assert_eq!(b["data"]["ownerTeam"]["name"], "Platform");
    // A flag the PUT leaves out keeps its value (Terraform never sends allowDeleteAccess).
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/v1/integrations/{id}"),
            Some(&app.owner),
            Some(json!({"allow_delete": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(put(Value::Null).await.0, StatusCode::OK);
    let (_, b, _) = app
        .v2("GET", &format!("/v2/integrations/{id}"), &key, None)
        .await;
    assert_eq!(b["data"]["allowDeleteAccess"], true, "{b}");
    // Every wrongly typed flag is named at once.
    let (s, b, _) = app
        .v2(
            "PUT",
            &format!("/v2/integrations/{id}"),
            &app.owner,
            Some(json!({"name": "Terraform made", "type": "API", "allowReadAccess": "yes", "enabled": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["errors"]["allowReadAccess"].is_string(), "{b}");
    assert!(b["errors"]["enabled"].is_string(), "{b}");

    // Disabled: 401, as Opsgenie answers; enabled again: works.
    let (s, b, _) = app
        .v2(
            "POST",
            &format!("/v2/integrations/{id}/disable"),
            &app.owner,
            None,
        )
        .await;
    assert_eq!(
        (s, b["data"]["enabled"].clone()),
        (StatusCode::CREATED, json!(false))
    );
    let (s, b, _) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": "m"})))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["message"].as_str().unwrap().contains("disabled"));
    app.v2(
        "POST",
        &format!("/v2/integrations/{id}/enable"),
        &app.owner,
        None,
    )
    .await;
    assert_eq!(
        app.v2("POST", "/v2/alerts", &key, Some(json!({"message": "m"})))
            .await
            .0,
        StatusCode::ACCEPTED
    );

    let (s, b, _) = app.v2("GET", "/v2/account", &key, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"]["name"], "Default");
    assert_eq!(b["data"]["userCount"], 1);
    let (s, b, _) = app
        .v2(
            "DELETE",
            &format!("/v2/integrations/{id}"),
            &app.owner,
            None,
        )
        .await;
    assert_eq!((s, b["result"].clone()), (StatusCode::OK, json!("Deleted")));
    assert_eq!(
        app.v2("GET", "/v2/account", &key, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_missed_heartbeat_opens_an_alert_and_the_next_ping_closes_it() {
    let app = TestApp::spawn().await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": "nightly-backup", "interval": 1, "intervalUnit": "hours", "enabled": true, "alertTags": ["backup"], "alertPriority": "P2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["expired"], false);
    assert_eq!(b["data"]["alertMessage"], "nightly-backup is expired");
    // The default message of a long name is cut to an alert message's 130 characters.
    let (s, b, _) = app
        .v2("POST", "/v2/heartbeats", &app.owner, Some(json!({"name": "n".repeat(150), "interval": 1, "intervalUnit": "hours", "enabled": false})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        b["data"]["alertMessage"].as_str().unwrap().chars().count(),
        130
    );
    let (s, b, _) = app
        .v2(
            "GET",
            "/v2/heartbeats/nightly-backup/ping",
            &app.owner,
            None,
        )
        .await;
    assert_eq!(
        (s, b["result"].clone()),
        (StatusCode::ACCEPTED, json!("PONG - Heartbeat received"))
    );
    // Opsgenie answers PONG even for a heartbeat that does not exist.
    assert_eq!(
        app.v2("POST", "/v2/heartbeats/nobody/ping", &app.owner, None)
            .await
            .0,
        StatusCode::ACCEPTED
    );
    // A ping silences a heartbeat and closes its alert: it needs alerts:write where the
    // heartbeat belongs (this one has no owner team: account-wide), so neither a read-only
    // key nor a key of some team can keep it quiet.
    let (_, viewer) = app
        .key(
            &app.owner,
            json!({"name": "hb viewer", "role_names": ["viewer"]}),
        )
        .await;
    let team = app.team("hb-other").await;
    let (_, other) = app
        .key(&app.owner, json!({"name": "hb other", "kind": "team", "team_id": team, "team_role_names": ["team_admin"]}))
        .await;
    for (key, code) in [(&viewer, "permission_denied"), (&other, "scope_denied")] {
        let (s, b, _) = app
            .v2("GET", "/v2/heartbeats/nightly-backup/ping", key, None)
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some(code)),
            "{b}"
        );
        assert!(
            b["message"].as_str().unwrap().contains("alerts:write"),
            "{b}"
        );
    }

    let running = app.running.as_ref().unwrap();
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(2);
    assert_eq!(
        tocsin_server::routes::heartbeats::sweep(&running.app, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        tocsin_server::routes::heartbeats::sweep(&running.app, later)
            .await
            .unwrap(),
        0,
        "expires once"
    );
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/nightly-backup?identifierType=alias",
            &app.owner,
            None,
        )
        .await;
    assert_eq!(b["data"]["status"], "open", "{b}");
    assert_eq!(b["data"]["priority"], "P2");
    assert_eq!(b["data"]["tags"], json!(["backup"]));
    let (_, b, _) = app.v2("GET", "/v2/heartbeats", &app.owner, None).await;
    assert_eq!(b["data"]["heartbeats"][0]["expired"], true);

    app.v2(
        "GET",
        "/v2/heartbeats/nightly-backup/ping",
        &app.owner,
        None,
    )
    .await;
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/nightly-backup?identifierType=alias",
            &app.owner,
            None,
        )
        .await;
    assert_eq!(b["data"]["status"], "closed");
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats/nightly-backup/disable",
            &app.owner,
            None,
        )
        .await;
    assert_eq!(
        (s, b["data"]["enabled"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": "x", "interval": 0, "intervalUnit": "weeks"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["errors"]["interval"].is_string()
            && b["errors"]["intervalUnit"].is_string()
            && b["errors"]["enabled"].is_string()
    );
    let (s, _, _) = app
        .v2("DELETE", "/v2/heartbeats/nightly-backup", &app.owner, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // A heartbeat of a team (named in any case) takes that team's key's pings.
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": "team-cron", "interval": 1, "intervalUnit": "hours", "enabled": true, "ownerTeam": {"name": "HB-Other"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["ownerTeam"]["id"], team.as_str(), "{b}");
    let (s, b, _) = app
        .v2("GET", "/v2/heartbeats/team-cron/ping", &other, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // A team's heartbeat named like an organization-wide alert's alias neither counts into
    // that alert when it expires nor closes it when pinged.
    app.v2(
        "POST",
        "/v2/alerts",
        &app.owner,
        Some(json!({"message": "org-wide", "alias": "hb-collide"})),
    )
    .await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/heartbeats",
            &app.owner,
            Some(json!({"name": "hb-collide", "interval": 1, "intervalUnit": "hours", "enabled": true, "ownerTeam": {"id": team}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let much_later = time::OffsetDateTime::now_utc() + time::Duration::hours(3);
    tocsin_server::routes::heartbeats::sweep(&running.app, much_later)
        .await
        .unwrap();
    app.v2("GET", "/v2/heartbeats/hb-collide/ping", &other, None)
        .await;
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/hb-collide?identifierType=alias",
            &app.owner,
            None,
        )
        .await;
    assert_eq!(
        (&b["data"]["status"], &b["data"]["count"]),
        (&json!("open"), &json!(1)),
        "{b}"
    );
}

#[tokio::test]
async fn the_legacy_api_key_query_parameter_is_off_unless_allowed() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "legacy"})).await;
    let resp = app
        .http
        .get(format!("{}/v2/alerts?apiKey={key}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(code(&b), "missing_credentials");
    // The refusal says the key was seen where it is not read, not that nothing was sent.
    let said = b.to_string();
    assert!(
        said.contains("`apiKey` query parameter") && said.contains("--allow-query-api-key"),
        "{b}"
    );

    let app = TestApp::spawn_with(|o| o.allow_query_api_key = Some(true)).await;
    let (_, key) = app.integration(json!({"name": "legacy"})).await;
    let resp = app
        .http
        .get(format!("{}/v2/alerts?apiKey={key}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Only on the Opsgenie routes.
    let resp = app
        .http
        .get(format!("{}/v1/auth/whoami?apiKey={key}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let b: Value = resp.json().await.unwrap();
    assert!(b.to_string().contains("only on /v2 routes"), "{b}");
}

#[tokio::test]
async fn every_action_route_changes_the_alert_and_reports_its_action() {
    let app = TestApp::spawn().await;
    let ops = app.team("ops").await;
    let (_, key) = app
        .integration(json!({"name": "actions", "allow_delete": true}))
        .await;
    let (_, _, rid) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": "m", "alias": "act", "actions": ["Restart"], "details": {"a": "1"}})))
        .await;
    let id = app.status_of(&key, &rid).await["alertId"]
        .as_str()
        .unwrap()
        .to_owned();
    let later = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let steps: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "POST",
            format!("/v2/alerts/{id}/acknowledge"),
            None,
            "Acknowledge",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/unacknowledge"),
            None,
            "UnAcknowledge",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/snooze"),
            Some(json!({"endTime": later})),
            "Snooze",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/escalate"),
            Some(json!({"escalation": {"name": "night"}})),
            "EscalateToNext",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/assign"),
            Some(json!({"owner": {"username": "ann@example.com"}})),
            "AssignOwnership",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/teams"),
            Some(json!({"team": {"name": "ops"}})),
            "AddTeam",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/responders"),
            Some(json!({"responder": {"type": "USER", "username": "bo@example.com"}})),
            "AddResponder",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/details"),
            Some(json!({"details": {"b": "2"}})),
            "AddDetails",
        ),
        (
            "DELETE",
            format!("/v2/alerts/{id}/details?keys=a"),
            None,
            "RemoveDetails",
        ),
        (
            "POST",
            format!("/v2/alerts/{id}/actions/Restart"),
            Some(json!({"note": "restarting"})),
            "ExecuteCustomAction",
        ),
        (
            "PUT",
            format!("/v2/alerts/{id}/message"),
            Some(json!({"message": "new message"})),
            "UpdateMessage",
        ),
        (
            "PUT",
            format!("/v2/alerts/{id}/description"),
            Some(json!({"description": "new description"})),
            "UpdateDescription",
        ),
    ];
    for (method, path, body, action) in steps {
        let (s, b, rid) = app.v2(method, &path, &key, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{method} {path}: {b}");
        let st = app.status_of(&key, &rid).await;
        assert_eq!(
            (
                st["action"].as_str().unwrap(),
                st["isSuccess"].as_bool().unwrap()
            ),
            (action, true),
            "{path}: {st}"
        );
    }
    let (_, b, _) = app.v2("GET", &format!("/v2/alerts/{id}"), &key, None).await;
    let a = &b["data"];
    assert_eq!(a["acknowledged"], false);
    assert_eq!(a["snoozed"], true);
    assert!(a["snoozedUntil"].is_string());
    assert_eq!(a["owner"], "ann@example.com");
    assert!(a["teams"].as_array().unwrap().contains(&json!({"id": ops})));
    assert!(
        a["responders"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "user", "id": "bo@example.com"}))
    );
    assert_eq!(a["details"], json!({"b": "2"}));
    assert_eq!(
        (a["message"].clone(), a["description"].clone()),
        (json!("new message"), json!("new description"))
    );
    let (_, b, _) = app
        .v2("GET", &format!("/v2/alerts/{id}/notes"), &key, None)
        .await;
    assert_eq!(b["data"][0]["note"], "restarting");

    // A custom action the alert does not have fails in the request status; bad bodies are 422.
    let (_, _, rid) = app
        .v2(
            "POST",
            &format!("/v2/alerts/{id}/actions/Reboot"),
            &key,
            None,
        )
        .await;
    assert_eq!(app.status_of(&key, &rid).await["isSuccess"], false);
    let (s, b, _) = app
        .v2(
            "POST",
            &format!("/v2/alerts/{id}/snooze"),
            &key,
            Some(json!({"endTime": "yesterday"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["endTime"].is_string());
    let (s, _, _) = app
        .v2("POST", &format!("/v2/alerts/{id}/fly"), &key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A verb the route has, by a method it does not take it by: 405, naming the methods.
    let (s, b, _) = app
        .v2("PUT", &format!("/v2/alerts/{id}/acknowledge"), &key, None)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{b}");
    assert!(b["message"].as_str().unwrap().contains("POST"), "{b}");
    let (s, _, _) = app
        .v2("GET", &format!("/v2/alerts/{id}/tags"), &key, None)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // Delete needs alerts:delete, which this integration's flags grant.
    let (s, _, rid) = app
        .v2("DELETE", &format!("/v2/alerts/{id}"), &key, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(app.status_of(&key, &rid).await["action"], "Delete");
    assert_eq!(
        app.v2("GET", &format!("/v2/alerts/{id}"), &key, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

/// `identifierType` is `id` when absent or empty, as in Opsgenie; an unknown one is a 422.
#[tokio::test]
async fn identifier_type_defaults_to_id() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "ids"})).await;
    let (_, _, rid) = app
        .v2(
            "POST",
            "/v2/alerts",
            &key,
            Some(json!({"message": "m", "alias": "a1"})),
        )
        .await;
    let id = app.status_of(&key, &rid).await["alertId"]
        .as_str()
        .unwrap()
        .to_owned();
    for query in ["", "?identifierType=", "?identifierType=ID"] {
        let (s, b, _) = app
            .v2("GET", &format!("/v2/alerts/{id}{query}"), &key, None)
            .await;
        assert_eq!(
            (s, b["data"]["alias"].clone()),
            (StatusCode::OK, json!("a1")),
            "{query}"
        );
    }
    let (s, b, _) = app
        .v2(
            "GET",
            &format!("/v2/alerts/{id}?identifierType=name"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["identifierType"].is_string(), "{b}");
}

/// Aliases that are also fixed routes' names (`requests`, `saved-searches`, `count`) still
/// reach their alerts by the methods those routes do not answer, while the routes keep theirs.
#[tokio::test]
async fn aliases_named_like_fixed_routes_reach_their_alerts() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "named"})).await;
    for alias in ["requests", "saved-searches", "count"] {
        let (s, _, rid) = app
            .v2(
                "POST",
                "/v2/alerts",
                &key,
                Some(json!({"message": alias, "alias": alias})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert_eq!(app.status_of(&key, &rid).await["isSuccess"], true);
    }
    for alias in ["requests", "saved-searches"] {
        let (s, b, rid) = app
            .v2(
                "PUT",
                &format!("/v2/alerts/{alias}/priority?identifierType=alias"),
                &key,
                Some(json!({"priority": "P1"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{alias}: {b}");
        assert_eq!(
            app.status_of(&key, &rid).await["isSuccess"],
            true,
            "{alias}"
        );
        let (s, b, rid) = app
            .v2(
                "POST",
                &format!("/v2/alerts/{alias}/close?identifierType=alias"),
                &key,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{alias}: {b}");
        let st = app.status_of(&key, &rid).await;
        assert_eq!(
            (st["action"].clone(), st["isSuccess"].clone()),
            (json!("Close"), json!(true)),
            "{alias}"
        );
    }
    let (_, b, rid) = app
        .v2(
            "DELETE",
            "/v2/alerts/requests/tags?identifierType=alias&tags=x",
            &key,
            None,
        )
        .await;
    assert_eq!(
        app.status_of(&key, &rid).await["action"],
        "RemoveTags",
        "{b}"
    );
    let (s, b, _) = app
        .v2("GET", "/v2/alerts/count?identifierType=alias", &key, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"]["alias"], "count", "{b}");
    // The fixed routes answer as before.
    let (s, b, _) = app.v2("GET", "/v2/alerts/count", &key, None).await;
    assert_eq!((s, b["data"]["count"].clone()), (StatusCode::OK, json!(3)));
    let (s, _, _) = app
        .v2("GET", &format!("/v2/alerts/requests/{rid}"), &key, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = app
        .v2("DELETE", "/v2/alerts/saved-searches/tags", &key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
}

/// An action that cannot do all it was asked says so in its request status, and its log line
/// names only what it did: tags past the alert's 20, details past 8000 characters, a message
/// cut to 130. Items that are not tags are refused by their place, as create reads numbers.
#[tokio::test]
async fn actions_report_what_they_could_not_do() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "tagger"})).await;
    let tags: Vec<String> = (0..19).map(|i| format!("t{i}")).collect();
    app.v2(
        "POST",
        "/v2/alerts",
        &key,
        Some(json!({"message": "m", "alias": "tg", "tags": tags})),
    )
    .await;
    let post = |path: &'static str, body: Value| {
        let app = &app;
        let key = &key;
        async move {
            let (s, b, rid) = app
                .v2(
                    "POST",
                    &format!("/v2/alerts/tg/{path}?identifierType=alias"),
                    key,
                    Some(body),
                )
                .await;
            (s, b, rid)
        }
    };
    // Numbers are tags, as on create; one more fits; the next two do not.
    let (s, _, rid) = post("tags", json!({"tags": [7, " t0 ", "x", "y"]})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let st = app.status_of(&key, &rid).await;
    assert_eq!(st["isSuccess"], true);
    assert_eq!(
        st["status"],
        "Request processed successfully; 2 of the tags were not added: an alert holds at most 20"
    );
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/tg?identifierType=alias", &key, None)
        .await;
    let stored = b["data"]["tags"].as_array().unwrap();
    assert_eq!(stored.len(), 20);
    assert!(stored.contains(&json!("7")) && !stored.contains(&json!("x")));
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/tg/logs?identifierType=alias", &key, None)
        .await;
    let logs: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["log"].as_str().unwrap())
        .collect();
    assert!(logs.contains(&"Tags added: 7"), "{logs:?}");

    // What is not a tag is refused, by its place; so is a list with none left.
    let (s, b, _) = post("tags", json!({"tags": ["ok", {"a": 1}]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["errors"]["tags[1]"], "must be a string");
    let (s, b, _) = post("tags", json!({"tags": ["", "  "]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["errors"]["tags"].as_str().unwrap().contains("not blank"),
        "{b}"
    );

    // Details: 8000 characters in all, as on create.
    let (_, _, rid) = post(
        "details",
        json!({"details": {"big": "y".repeat(7_990), "huge": "z".repeat(20)}}),
    )
    .await;
    let st = app.status_of(&key, &rid).await;
    assert_eq!(
        st["status"],
        "Request processed successfully; details huge were not added: an alert's details hold at most 8000 characters in total"
    );
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/tg?identifierType=alias", &key, None)
        .await;
    assert!(b["data"]["details"]["big"].is_string() && b["data"]["details"]["huge"].is_null());

    // A message is cut to 130 characters, and the status says so; a number is its text.
    let (_, _, rid) = app
        .v2(
            "PUT",
            "/v2/alerts/tg/message?identifierType=alias",
            &key,
            Some(json!({"message": "m".repeat(140)})),
        )
        .await;
    assert_eq!(
        app.status_of(&key, &rid).await["status"],
        "Request processed successfully; message was longer than 130 characters and was truncated"
    );
    let (s, _, _) = app
        .v2(
            "PUT",
            "/v2/alerts/tg/message?identifierType=alias",
            &key,
            Some(json!({"message": 5})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, b, _) = app
        .v2(
            "PUT",
            "/v2/alerts/tg/description?identifierType=alias",
            &key,
            Some(json!({"description": [1]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["errors"]["description"], "description must be a string");
    let (s, b, _) = post(
        "responders",
        json!({"responder": {"type": "robot", "id": "x"}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["responder.type"].is_string(), "{b}");
    // A note may be a number, as on create.
    let (s, b, rid) = post("notes", json!({"note": 5})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(app.status_of(&key, &rid).await["isSuccess"], true);
    let (s, b, _) = post("responders", json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["responder"].is_string(), "{b}");
}

/// A team integration's create goes to its team alone: the responders of the payload, of
/// every type, are overwritten with the owner team, as Opsgenie does, and the request status
/// names what was dropped. A global integration keeps them.
#[tokio::test]
async fn a_team_integrations_responders_are_its_team_alone() {
    let app = TestApp::spawn().await;
    let sre = app.team("sre").await;
    let other = app.team("other-team").await;
    let (_, team_key) = app
        .integration(json!({"name": "sre alerts", "team_id": sre}))
        .await;
    let (_, global_key) = app.integration(json!({"name": "global"})).await;
    let responders = json!([
        {"type": "team", "name": "other-team"},
        {"type": "user", "username": "x@example.com"},
        {"type": "escalation", "name": "esc"},
        {"type": "schedule", "name": "sch"},
        {"type": "team", "name": "sre"},
    ]);
    let (s, _, rid) = app
        .v2(
            "POST",
            "/v2/alerts",
            &team_key,
            Some(json!({"message": "m", "alias": "team-resp", "responders": responders})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let st = app.status_of(&team_key, &rid).await;
    assert_eq!(
        st["status"],
        format!(
            "Created alert; responders team {other}, user x@example.com, escalation esc, schedule sch were replaced by the integration's team: a team integration's alerts go to its team alone"
        ),
        "{st}"
    );
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/team-resp?identifierType=alias",
            &team_key,
            None,
        )
        .await;
    assert_eq!(
        b["data"]["responders"],
        json!([{"type": "team", "id": sre}])
    );
    assert_eq!(b["data"]["teams"], json!([{"id": sre}]));
    assert_eq!(b["data"]["ownerTeamId"], sre.as_str());

    // Naming the owner team alone, or nobody, drops nothing and says nothing.
    for (alias, responders) in [
        ("own-team", json!([{"type": "team", "id": sre}])),
        ("no-one", json!([])),
    ] {
        let (_, _, rid) = app
            .v2(
                "POST",
                "/v2/alerts",
                &team_key,
                Some(json!({"message": "m", "alias": alias, "responders": responders})),
            )
            .await;
        assert_eq!(
            app.status_of(&team_key, &rid).await["status"],
            "Created alert"
        );
        let (_, b, _) = app
            .v2(
                "GET",
                &format!("/v2/alerts/{alias}?identifierType=alias"),
                &team_key,
                None,
            )
            .await;
        assert_eq!(
            b["data"]["responders"],
            json!([{"type": "team", "id": sre}])
        );
    }

    // A global integration's responders are its payload's.
    let (_, _, rid) = app
        .v2(
            "POST",
            "/v2/alerts",
            &global_key,
            Some(json!({"message": "m", "alias": "global-resp", "responders": responders})),
        )
        .await;
    assert_eq!(
        app.status_of(&global_key, &rid).await["status"],
        "Created alert"
    );
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/global-resp?identifierType=alias",
            &global_key,
            None,
        )
        .await;
    assert_eq!(b["data"]["responders"].as_array().unwrap().len(), 5, "{b}");
    assert_eq!(b["data"]["teams"], json!([{"id": other}, {"id": sre}]));
}

/// Removing tags or details logs only the ones the alert had, and the request status names
/// the rest; removing none of them says so.
#[tokio::test]
async fn removing_tags_and_details_names_only_what_was_there() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "remover"})).await;
    app.v2("POST", "/v2/alerts", &key, Some(json!({"message": "m", "alias": "tag-log", "tags": ["a", "b"], "details": {"k": "v", "j": "w"}})))
        .await;
    let delete = |query: &'static str| {
        let (app, key) = (&app, &key);
        async move {
            let (s, b, rid) = app
                .v2(
                    "DELETE",
                    &format!("/v2/alerts/tag-log/{query}&identifierType=alias"),
                    key,
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{query}: {b}");
            let st = app.status_of(key, &rid).await;
            assert_eq!(st["isSuccess"], true, "{st}");
            st["status"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(
        delete("tags?tags=a,never-there,a").await,
        "Request processed successfully; tags never-there were not on the alert"
    );
    assert_eq!(
        delete("details?keys=k,never-there,gone").await,
        "Request processed successfully; details never-there, gone were not on the alert"
    );
    assert_eq!(
        delete("tags?tags=a").await,
        "Request processed successfully; tags a were not on the alert"
    );
    assert_eq!(
        delete("details?keys=j").await,
        "Request processed successfully"
    );
    let (_, b, _) = app
        .v2("GET", "/v2/alerts/tag-log?identifierType=alias", &key, None)
        .await;
    assert_eq!(
        (&b["data"]["tags"], &b["data"]["details"]),
        (&json!(["b"]), &json!({}))
    );
    let (_, b, _) = app
        .v2(
            "GET",
            "/v2/alerts/tag-log/logs?identifierType=alias&order=asc",
            &key,
            None,
        )
        .await;
    let logs: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["log"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs,
        [
            "Alert created",
            "Tags removed: a",
            "Details removed: k",
            "No tags removed (the alert had none of them)",
            "Details removed: j",
        ]
    );
}

/// An over-long `user` or `note` on any action is cut as create cuts it, and the request
/// status says so in create's words; the DELETE routes read them from the query string.
#[tokio::test]
async fn every_action_reports_a_user_or_note_it_cut() {
    let app = TestApp::spawn().await;
    app.team("ops").await;
    let (_, key) = app.integration(json!({"name": "cutter"})).await;
    let (_, _, rid) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": "m", "alias": "cut", "actions": ["Restart"], "tags": ["a"], "details": {"k": "v"}})))
        .await;
    let id = app.status_of(&key, &rid).await["alertId"]
        .as_str()
        .unwrap()
        .to_owned();
    let later = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (long_user, long_note) = ("u".repeat(101), "é".repeat(25_001));
    // A create counted into the open alert keeps its user and note (not its description):
    // it reports the cut of those alone.
    let (_, _, rid) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": "m", "alias": "cut", "user": long_user, "note": long_note, "description": "d".repeat(15_001)})))
        .await;
    assert_eq!(
        app.status_of(&key, &rid).await["status"],
        "Alert already exists and its count was increased; user was longer than 100 characters and was truncated; note was longer than 25000 characters and was truncated"
    );
    let both = "Request processed successfully; user was longer than 100 characters and was truncated; note was longer than 25000 characters and was truncated";
    let steps: Vec<(&str, &str, Value)> = vec![
        ("POST", "acknowledge", json!({})),
        ("POST", "unacknowledge", json!({})),
        ("POST", "snooze", json!({"endTime": later})),
        ("POST", "escalate", json!({"escalation": {"name": "night"}})),
        (
            "POST",
            "assign",
            json!({"owner": {"username": "ann@example.com"}}),
        ),
        ("POST", "teams", json!({"team": {"name": "ops"}})),
        (
            "POST",
            "responders",
            json!({"responder": {"type": "user", "username": "bo@example.com"}}),
        ),
        ("POST", "notes", json!({})),
        ("POST", "tags", json!({"tags": ["b"]})),
        ("POST", "details", json!({"details": {"j": "w"}})),
        ("POST", "actions/Restart", json!({})),
        ("PUT", "message", json!({"message": "new message"})),
        ("PUT", "description", json!({"description": "new"})),
        ("PUT", "priority", json!({"priority": "P1"})),
        ("POST", "close", json!({})),
    ];
    for (method, verb, mut body) in steps {
        body["user"] = json!(long_user);
        body["note"] = json!(long_note);
        let (s, b, rid) = app
            .v2(method, &format!("/v2/alerts/{id}/{verb}"), &key, Some(body))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{verb}: {b}");
        let st = app.status_of(&key, &rid).await;
        assert_eq!(st["isSuccess"], true, "{verb}: {st}");
        assert_eq!(st["status"], both, "{verb}");
    }
    // What was kept is what the status says: the first 25000 characters and 100 characters.
    let (_, b, _) = app
        .v2("GET", &format!("/v2/alerts/{id}/notes?limit=1"), &key, None)
        .await;
    let note = &b["data"][0];
    assert_eq!(note["note"].as_str().unwrap().chars().count(), 25_000);
    assert_eq!(note["owner"], "u".repeat(100));

    // The DELETE routes take `user` and `note` in the query string: cut and reported alike.
    for (path, action) in [
        ("tags?tags=b", "RemoveTags"),
        ("details?keys=j", "RemoveDetails"),
    ] {
        let (s, b, rid) = app
            .v2(
                "DELETE",
                &format!("/v2/alerts/{id}/{path}&user={long_user}&note=short"),
                &key,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{path}: {b}");
        let st = app.status_of(&key, &rid).await;
        assert_eq!(
            (&st["action"], &st["status"]),
            (
                &json!(action),
                &json!(
                    "Request processed successfully; user was longer than 100 characters and was truncated"
                )
            ),
            "{path}"
        );
    }
    // A name that says whom to assign or escalate to is refused when longer than any name
    // Tocsin takes (an email's 254 characters), never cut.
    let too_long = "n".repeat(255);
    for (verb, body, field) in [
        (
            "assign",
            json!({"owner": {"username": too_long}}),
            "owner.username",
        ),
        (
            "escalate",
            json!({"escalation": {"name": too_long}}),
            "escalation.name",
        ),
    ] {
        let (s, b, _) = app
            .v2("POST", &format!("/v2/alerts/{id}/{verb}"), &key, Some(body))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{verb}: {b}");
        assert_eq!(
            b["errors"][field], "is 255 characters long; at most 254 are allowed",
            "{verb}: {b}"
        );
    }
    // Text that fits is no news.
    let (_, _, rid) = app
        .v2(
            "POST",
            &format!("/v2/alerts/{id}/notes"),
            &key,
            Some(json!({"note": "n".repeat(25_000), "user": "u".repeat(100)})),
        )
        .await;
    assert_eq!(
        app.status_of(&key, &rid).await["status"],
        "Request processed successfully"
    );
}

/// A snooze ends at its `endTime` by itself: the alert reads `snoozed: false` again and the
/// `snoozed` search agrees. A closed alert cannot be snoozed, as it cannot be acknowledged.
#[tokio::test]
async fn a_snooze_ends_at_its_end_time_and_a_closed_alert_is_not_snoozed() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "snoozer"})).await;
    for alias in ["short", "long", "shut"] {
        app.v2(
            "POST",
            "/v2/alerts",
            &key,
            Some(json!({"message": alias, "alias": alias})),
        )
        .await;
    }
    let at = |secs: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let snooze = |alias: &'static str, until: String| {
        let app = &app;
        let key = &key;
        async move {
            let (s, _, rid) = app
                .v2(
                    "POST",
                    &format!("/v2/alerts/{alias}/snooze?identifierType=alias"),
                    key,
                    Some(json!({"endTime": until})),
                )
                .await;
            assert_eq!(s, StatusCode::ACCEPTED);
            app.status_of(key, &rid).await
        }
    };
    assert_eq!(snooze("short", at(1)).await["isSuccess"], true);
    assert_eq!(snooze("long", at(3600)).await["isSuccess"], true);
    let snoozed = |alias: &'static str| {
        let app = &app;
        let key = &key;
        async move {
            let (_, b, _) = app
                .v2(
                    "GET",
                    &format!("/v2/alerts/{alias}?identifierType=alias"),
                    key,
                    None,
                )
                .await;
            b["data"]["snoozed"].as_bool().unwrap()
        }
    };
    let found = |query: &'static str| {
        let app = &app;
        let key = &key;
        async move {
            let (_, b, _) = app
                .v2("GET", &format!("/v2/alerts?query={query}"), key, None)
                .await;
            let mut aliases: Vec<String> = b["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["alias"].as_str().unwrap().to_owned())
                .collect();
            aliases.sort();
            aliases
        }
    };
    assert!(snoozed("short").await);
    assert_eq!(found("snoozed:true").await, ["long", "short"]);
    // Past the short snooze's end (a second and a half later).
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert!(!snoozed("short").await);
    assert!(snoozed("long").await);
    assert_eq!(found("snoozed:true").await, ["long"]);
    assert_eq!(found("snoozed:false").await, ["short", "shut"]);
    assert_eq!(found("NOT%20snoozed:true").await, ["short", "shut"]);
    // Sorting by snoozed agrees (then by tinyId): the ended snooze sorts with the rest.
    let (_, b, _) = app
        .v2("GET", "/v2/alerts?sort=snoozed&order=desc", &key, None)
        .await;
    let order: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alias"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["long", "shut", "short"], "{b}");

    // A closed alert: the snooze is refused in the request status, and it stays unsnoozed.
    let (s, _, _) = app
        .v2(
            "POST",
            "/v2/alerts/shut/close?identifierType=alias",
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let st = snooze("shut", at(3600)).await;
    assert_eq!(
        (st["isSuccess"].clone(), st["status"].clone()),
        (json!(false), json!("Alert is closed; it cannot be snoozed"))
    );
    assert!(!snoozed("shut").await);
}

/// A write the database refuses (here a trigger; a full disk in life): an alert action
/// answers 503 with Retry-After, which Opsgenie's clients retry, instead of a 500 or a hang;
/// /readyz says writes are failing; both recover once the database takes writes again. A
/// new alert on SQLite is accepted all the same (the alert log holds it, and it reaches the
/// tables once they take writes again); on PostgreSQL it is refused like the action. A key
/// created meanwhile is refused with what happened to it.
#[tokio::test]
async fn a_refused_write_answers_503_until_the_database_takes_writes_again() {
    let app = TestApp::spawn().await;
    let embedded = !app.database_url.starts_with("postgres");
    let (_, key) = app.integration(json!({"name": "Alertmanager"})).await;
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/alerts",
            &key,
            Some(json!({"message": "Before", "alias": "before"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let db = tocsin_store::Store::connect(&app.database_url)
        .await
        .unwrap();
    tocsin_store::testing::refuse_inserts(&db, "alert_requests", None).await;

    let post = |path: &str, body: Value| {
        app.http
            .post(format!("{}{path}", app.base))
            .header("Authorization", format!("GenieKey {key}"))
            .json(&body)
            .send()
    };
    let create = post("/v2/alerts", json!({"message": "Disk full"}))
        .await
        .unwrap();
    let accepted_meanwhile = if embedded {
        assert_eq!(create.status(), StatusCode::ACCEPTED);
        let b: Value = create.json().await.unwrap();
        Some(b["requestId"].as_str().unwrap().to_owned())
    } else {
        assert_eq!(create.status(), StatusCode::SERVICE_UNAVAILABLE);
        None
    };
    let resp = post(
        "/v2/alerts/before/acknowledge?identifierType=alias",
        json!({"user": "ops"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let b: Value = resp.json().await.unwrap();
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("The database did not take the write"),
        "{b}"
    );
    assert!(b["requestId"].is_string(), "{b}");
    let (s, b) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("writes failing")),
        "{b}"
    );

    // A key's lifecycle event shares the fate of the batch it rides in.
    tocsin_store::testing::refuse_inserts(&db, "audit_segments", None).await;
    let (s, b) = app
        .post(
            "/v1/api_keys",
            &app.owner,
            json!({"name": "meanwhile", "expires_at": super::in_days(30)}),
        )
        .await;
    assert_eq!(
        (s, super::code(&b)),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        "{b}"
    );
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("was created, but its token is not shown") && message.contains("/readyz"),
        "{b}"
    );
    assert!(b.to_string().find("tcs_").is_none(), "no token in {b}");
    let refused_key = message
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_owned();

    tocsin_store::testing::allow_inserts(&db, "alert_requests").await;
    tocsin_store::testing::allow_inserts(&db, "audit_segments").await;
    let (s, b, request) = app
        .v2(
            "POST",
            "/v2/alerts",
            &key,
            Some(json!({"message": "Disk full"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(app.status_of(&key, &request).await["isSuccess"], true);
    // The alert accepted while the tables refused writes is there, in its turn.
    if let Some(request) = accepted_meanwhile {
        let status = app.status_of(&key, &request).await;
        assert_eq!(status["isSuccess"], true, "{status}");
        let (s, b, _) = app
            .v2("GET", "/v2/alerts/before?identifierType=alias", &key, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    // The refused key's event was held: it is written on a later try (the tries wait 100 ms,
    // then twice as long each time), and /readyz counts it until then.
    let mut tries = 0;
    loop {
        let (s, b) = app.call("GET", "/readyz", None, None).await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("ready")),
            "{b}"
        );
        if b.get("audit_events_waiting").is_none() {
            break;
        }
        assert!(tries < 100, "the held event was not written: {b}");
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, b) = app
        .get(
            &format!("/v1/audit_events?target_id={refused_key}"),
            &app.owner,
        )
        .await;
    assert_eq!(b["data"][0]["action"], "api_key.created", "{b}");
}

/// What Opsgenie's clients read besides the body, and the paths they build: `//v2/...` from a
/// base URL with a trailing slash, the rate-limit and response-time headers (and the 429's
/// window), the routes Tocsin has not built (501, never a 404 or 405), heartbeats enabled by
/// PUT and PATCH, and 404s that name what was looked up.
#[tokio::test]
async fn opsgenie_clients_paths_headers_and_unbuilt_routes() {
    let app = TestApp::spawn().await;
    let (_, key) = app.integration(json!({"name": "Alertmanager"})).await;
    let send = |method: &str, path: &str, key: &str, body: Option<Value>| {
        let mut req = app
            .http
            .request(method.parse().unwrap(), format!("{}{path}", app.base))
            .header("Authorization", format!("GenieKey {key}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, headers, body)
        }
    };

    // The Python SDK with host "https://…/" sends "//v2/alerts": served as /v2/alerts.
    let (s, h, b) = send(
        "POST",
        "//v2/alerts",
        &key,
        Some(json!({"message": "m", "alias": "a-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(h["x-ratelimit-state"], "OK");
    let took: f64 = h["x-response-time"].to_str().unwrap().parse().unwrap();
    assert!(took >= 0.0);
    let (s, _, b) = send("GET", "///v2/alerts/a-1?identifierType=alias", &key, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["alias"], "a-1");
    // A URL typed with a slash at its end is served as without it.
    let (s, _, b) = send(
        "POST",
        "/v2/alerts/",
        &key,
        Some(json!({"message": "m", "alias": "a-2"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, _, b) = send("GET", "//v2/alerts/a-1/?identifierType=alias", &key, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["alias"], "a-1");

    // 404s say what was looked up, in Opsgenie's envelope.
    let (s, h, b) = send("GET", "/v2/alerts/nope?identifierType=alias", &key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["message"], "No alert with this alias exists.", "{b}");
    assert!(b["requestId"].is_string() && b["took"].is_number(), "{b}");
    assert_eq!(h["x-ratelimit-state"], "OK");
    let (s, _, b) = send("GET", "/v2/heartbeats/nope", &key, None).await;
    assert_eq!(
        (s, b["message"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("No heartbeat with this name exists.")
        )
    );
    for (method, path) in [
        ("GET", "/v2/nothing/here"),
        ("POST", "/v2/alerts/a-1/dance?identifierType=alias"),
    ] {
        let (s, _, b) = send(method, path, &key, Some(json!({}))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .starts_with("No route matches"),
            "{method} {path}: {b}"
        );
    }

    // Routes Opsgenie has and Tocsin has not built yet answer 501, naming the feature.
    for (method, path, feature) in [
        ("GET", "/v2/alerts/saved-searches", "Saved searches"),
        ("POST", "/v2/alerts/saved-searches", "Saved searches"),
        ("DELETE", "/v2/alerts/saved-searches/mine", "Saved searches"),
        ("GET", "/v2/alerts/a-1/attachments", "Alert attachments"),
        ("GET", "/v2/alerts/a-1/attachments/1", "Alert attachments"),
        ("GET", "/v2/integrations/x/actions", "Integration actions"),
        ("PUT", "/v2/integrations/x/actions", "Integration actions"),
        (
            "GET",
            "/v2/alerts?searchIdentifier=mine",
            "Saved searches (searchIdentifier)",
        ),
    ] {
        let (s, _, b) = send(method, path, &app.owner, Some(json!({}))).await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{method} {path}: {b}");
        assert_eq!(
            b["message"],
            format!("{feature} is not implemented yet."),
            "{method} {path}"
        );
    }

    // Heartbeats: enable and disable by PUT and PATCH as well as POST.
    let (s, _, b) = send(
        "POST",
        "/v2/heartbeats",
        &app.owner,
        Some(json!({"name": "hb", "interval": 1, "intervalUnit": "hours", "enabled": true})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    for (method, action, enabled) in [
        ("PUT", "disable", false),
        ("PATCH", "enable", true),
        ("POST", "disable", false),
    ] {
        let (s, _, b) = send(
            method,
            &format!("/v2/heartbeats/hb/{action}"),
            &app.owner,
            None,
        )
        .await;
        assert_eq!(
            (s, &b["data"]["enabled"]),
            (StatusCode::OK, &json!(enabled)),
            "{method} {action}: {b}"
        );
    }

    // A key over its own limit: THROTTLED, and how long to wait, in both of the headers
    // clients sleep by.
    let (_, slow) = app
        .key(&app.owner, json!({"name": "slow", "rate_limit": 1}))
        .await;
    let mut throttled = None;
    for _ in 0..3 {
        let (s, h, _) = send("GET", "/v2/alerts/count", &slow, None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(h);
            break;
        }
    }
    let h = throttled.expect("a key limited to one request a minute was never throttled");
    assert_eq!(h["x-ratelimit-state"], "THROTTLED");
    assert_eq!(h["x-ratelimit-period-in-sec"], h["retry-after"]);
    // One a minute: the next fits a minute on (on PostgreSQL's sliding window, up to two).
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=120).contains(&wait), "{wait}");
}

/// Search by team name, as Opsgenie's queries are written (`teams:sre`), and by a user's
/// email in `responders:`; a name that matches no team finds nothing. A create naming a team
/// that does not exist keeps it by name; the `teams` action refuses it, naming its field.
#[tokio::test]
async fn searching_by_team_name_and_responder_email() {
    let app = TestApp::spawn().await;
    let sre = app.team("SRE").await;
    app.user(json!({"email": "ann@example.com", "role_name": "viewer"}))
        .await;
    let (_, key) = app.integration(json!({"name": "Alertmanager"})).await;
    for (message, responders) in [
        ("for sre", json!([{"type": "team", "name": "sre"}])),
        (
            "for ann",
            json!([{"type": "user", "username": "ann@example.com"}]),
        ),
        ("for no one", json!([])),
    ] {
        let (s, b, _) = app
            .v2(
                "POST",
                "/v2/alerts",
                &key,
                Some(json!({"message": message, "responders": responders})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    let found = |query: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            let (s, b, _) = app
                .v2(
                    "GET",
                    &format!("/v2/alerts?query={}", query.replace(' ', "%20")),
                    &key,
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{query}: {b}");
            let mut messages: Vec<String> = b["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["message"].as_str().unwrap().to_owned())
                .collect();
            messages.sort();
            messages
        }
    };
    assert_eq!(found("teams:sre").await, ["for sre"]);
    assert_eq!(found("teams:SRE").await, ["for sre"]);
    assert_eq!(
        found(Box::leak(format!("teams:{sre}").into_boxed_str())).await,
        ["for sre"]
    );
    assert_eq!(found("responders:sre").await, ["for sre"]);
    assert_eq!(found("responders:ann@example.com").await, ["for ann"]);
    assert_eq!(found("NOT teams:sre").await, ["for ann", "for no one"]);
    assert!(found("teams:nobody").await.is_empty());
    let (s, b, _) = app
        .v2("GET", "/v2/alerts/count?query=teams:sre", &key, None)
        .await;
    assert_eq!((s, &b["data"]["count"]), (StatusCode::OK, &json!(1)), "{b}");

    // A team that does not exist (yet) does not cost the alert: it is kept by its name, as
    // an unknown user is, and owns nothing. Giving an alert to such a team is refused, naming
    // the field.
    let (s, b, _) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": "for a team to come", "alias": "later",
            "responders": [{"type": "team", "name": "platform"}], "visibleTo": [{"type": "team", "name": "nosuch"}]})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b, _) = app
        .v2("GET", "/v2/alerts/later?identifierType=alias", &key, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["data"]["responders"],
        json!([{"type": "team", "id": "platform"}]),
        "{b}"
    );
    assert_eq!(b["data"]["teams"], json!([]), "{b}");
    let (s, b, _) = app
        .v2(
            "POST",
            "/v2/alerts/later/teams?identifierType=alias",
            &key,
            Some(json!({"team": {"name": "nosuch"}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["errors"]["team"].is_string(), "{b}");
}

/// An integration key refused for a missing access flag is told which flag, not which role.
#[tokio::test]
async fn an_integration_key_without_write_access_is_told_the_flag() {
    let app = TestApp::spawn().await;
    let (_, key) = app
        .integration(json!({"name": "read only", "allow_write": false}))
        .await;
    let (s, b, _) = app
        .v2("POST", "/v2/alerts", &key, Some(json!({"message": "m"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let text = b.to_string();
    assert!(text.contains("allow_write"), "{b}");
    assert!(!text.contains("Use a key holding a role"), "{b}");
}
