//! Hostile input (issue 6): oversized bodies and heads, deep JSON, slow and silent clients.
//! Each limit is answered with a JSON error naming it, or the connection is closed, while
//! other clients are still served.

use super::{TestApp, code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guards against a test hanging for ever if the server never answers; not a timing claim.
const PATIENCE: Duration = Duration::from_secs(60);

/// Everything the server sends on `stream` until it closes the connection.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the server neither answered nor closed the connection")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One response read from `stream`: its head and as much body as its Content-Length says
/// (the connection may stay open after it).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the server did not answer")
        {
            Ok(0) | Err(_) => return text,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The JSON body of a raw HTTP/1.1 response (after the blank line; bodies here are not chunked).
fn json_body(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn oversized_bodies_get_413_naming_the_limit_in_both_envelopes() {
    let app = TestApp::spawn_with(|o| o.max_body_bytes = Some(4096)).await;
    let big = json!({"name": "x".repeat(5000)});
    let (s, b) = app.post("/v1/teams", &app.owner, big.clone()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(code(&b), "payload_too_large");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096 bytes"),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max-body-bytes"),
        "{b}"
    );
    assert_eq!(b["error"]["limit_bytes"], 4096);
    assert!(b["request_id"].is_string());

    let (s, b) = app
        .post(
            "/v2/alerts",
            &app.owner,
            json!({"message": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert!(b["message"].as_str().unwrap().contains("4096 bytes"), "{b}");
    assert!(b["requestId"].is_string());
    assert_eq!(b["error"]["code"], "payload_too_large");

    // Chunked, so no Content-Length announces the size: found while reading, same answer.
    let mut stream = connect(&app).await;
    let chunk = format!("{{\"name\": \"{}\"}}", "y".repeat(6000));
    let request = format!(
        "POST /v1/teams HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        app.owner,
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_until_closed(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let b = json_body(&response);
    assert_eq!(code(&b), "payload_too_large", "{b}");
    assert_eq!(b["error"]["limit_bytes"], 4096);

    // Under the limit, the same route works.
    let (s, b) = app
        .post("/v1/teams", &app.owner, json!({"name": "small"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

#[tokio::test]
async fn a_body_limit_above_two_mebibytes_is_the_setting_not_the_framework_default() {
    let app = TestApp::spawn_with(|o| o.max_body_bytes = Some(3 * 1024 * 1024)).await;
    let big = json!({"name": "x".repeat(2_500_000)});
    let (s, b) = app.post("/v1/teams", &app.owner, big).await;
    // Read whole and refused for its name, not for its size.
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["name"].is_string(), "{b}");
}

#[tokio::test]
async fn oversized_request_heads_get_431_and_the_server_goes_on() {
    let app = TestApp::spawn_with(|o| o.max_header_bytes = Some(2048)).await;
    let whoami = |padding: usize| {
        app.http
            .get(format!("{}/v1/auth/whoami", app.base))
            .header("Authorization", format!("Bearer {}", app.owner))
            .header("X-Padding", "p".repeat(padding))
            .send()
    };
    // Over the limit: the JSON error, naming the limit and the head's size.
    let resp = whoami(3000).await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(code(&b), "headers_too_large", "{b}");
    assert_eq!(b["error"]["limit_bytes"], 2048, "{b}");
    let size = b["error"]["size_bytes"].as_u64().unwrap();
    assert!((3043..3300).contains(&size), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max-header-bytes"),
        "{b}"
    );
    // Opsgenie's routes answer in their own envelope.
    let resp = app
        .http
        .get(format!("{}/v2/alerts", app.base))
        .header("Authorization", format!("GenieKey {}", app.owner))
        .header("X-Padding", "p".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let b: Value = resp.json().await.unwrap();
    assert!(
        b["message"].as_str().unwrap().contains("max-header-bytes"),
        "{b}"
    );
    assert_eq!(b["error"]["code"], "headers_too_large", "{b}");
    // Just under the limit: served.
    let resp = whoami(1500).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Over twice the limit: hyper refuses the head before it is read whole, with a bare 431.
    let resp = whoami(5000).await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let (s, b) = app.get("/v1/auth/whoami", &app.owner).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn json_nested_deeper_than_the_limit_is_refused_naming_it() {
    let app = TestApp::spawn().await;
    let limit = tocsin_core::json::MAX_DEPTH;
    let deep = |levels: usize| {
        format!(
            "{{\"name\": \"deep\", \"description\": {}{}}}",
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    };
    let send = |path: &'static str, body: String| {
        app.http
            .post(format!("{}{path}", app.base))
            .header("Authorization", format!("Bearer {}", app.owner))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let resp = send("/v1/teams", deep(limit + 1)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(code(&b), "validation_failed", "{b}");
    let reason = b["error"]["fields"]["body"].as_str().unwrap();
    assert!(reason.contains(&format!("{limit} levels")), "{b}");

    // Far deeper than serde's own recursion limit: the same clear refusal, on /v2 too.
    let resp = send("/v2/alerts", "[".repeat(100_000)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = resp.json().await.unwrap();
    assert!(
        b["errors"]["body"].as_str().unwrap().contains("levels"),
        "{b}"
    );

    // A body that is JSON but not an object is refused on every route, /v2 included.
    for path in ["/v1/teams", "/v2/alerts", "/v2/integrations"] {
        let resp = send(path, "[null, null]".into()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let b: Value = resp.json().await.unwrap();
        // Both envelopes carry the `/v1` error object.
        assert_eq!(b["error"]["fields"]["body"], "must be a JSON object", "{b}");
    }

    // A field of the wrong type, or one the route does not know, is named.
    for (body, field) in [
        (r#"{"name": 5}"#, "name"),
        (r#"{"name": "x", "bogus": 1}"#, "bogus"),
        (r#"{"name": "x", "description": {"a": 1}}"#, "description"),
    ] {
        let resp = send("/v1/teams", body.into()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let b: Value = resp.json().await.unwrap();
        assert!(b["error"]["fields"][field].is_string(), "{body}: {b}");
    }

    // At the limit the body is read; here it then fails the route's own field rule.
    let resp = send("/v1/teams", deep(limit)).await.unwrap();
    let b: Value = resp.json().await.unwrap();
    assert!(b["error"]["fields"]["body"].is_null(), "{b}");
    let reason = b["error"]["fields"]["description"].as_str().unwrap_or("");
    assert!(reason.contains("expected a string"), "{b}");
}

#[tokio::test]
async fn a_client_that_sends_half_its_headers_is_disconnected_while_others_are_served() {
    let app = TestApp::spawn_with(|o| o.header_timeout_seconds = Some(1)).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .await
        .unwrap();
    // While the slow client holds its connection, others are answered.
    let (s, b) = app.get("/v1/auth/whoami", &app.owner).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Then the server closes it without having answered a request it never completed.
    let response = read_until_closed(&mut slow).await;
    assert!(!response.contains("200 OK"), "{response}");

    // A kept-alive connection that goes quiet after its request is closed the same way.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let response = read_until_closed(&mut idle).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (s, _) = app.get("/v1/auth/whoami", &app.owner).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_gets_408_naming_the_limit() {
    let app = TestApp::spawn_with(|o| o.request_timeout_seconds = Some(1)).await;
    let mut stream = connect(&app).await;
    let request = format!(
        "POST /v1/teams HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": ",
        app.owner
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (s, b) = app.get("/v1/auth/whoami", &app.owner).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let b = json_body(&response);
    assert_eq!(code(&b), "request_timeout", "{b}");
    assert_eq!(b["error"]["limit_seconds"], 1);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request-timeout-seconds"),
        "{b}"
    );
    // Nothing was created.
    let (_, b) = app.get("/v1/teams", &app.owner).await;
    assert_eq!(b["data"], json!([]));
    // The audit trail has the request, answered 408.
    let (s, b) = app
        .get("/v1/audit_events?outcome=request_timeout", &app.owner)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events = b["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{b}");
    assert_eq!(events[0]["status"], 408, "{b}");
    assert_eq!(
        (events[0]["method"].as_str(), events[0]["route"].as_str()),
        (Some("POST"), Some("/v1/teams")),
        "{b}"
    );
}

#[test]
fn limit_settings_are_checked_at_start() {
    use tocsin_server::config::{Overrides, Settings};
    let e = Settings::from_overrides(Overrides {
        request_timeout_seconds: Some(0),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.setting, "request-timeout-seconds");
    let e = Settings::from_overrides(Overrides {
        max_header_bytes: Some(10),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("max-header-bytes"), "{e}");
    let s = Settings::from_overrides(Overrides::default()).unwrap();
    assert_eq!(s.max_body_bytes, 1024 * 1024);
    assert_eq!(s.header_timeout, Duration::from_secs(30));
}
