//! The web console over HTTP: its embedded files and their security headers, and its cookie
//! session (HttpOnly, SameSite=Strict, Secure behind HTTPS) with the CSRF rule.

use super::{TestApp, code, refused};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

/// A console user's cookie session: the `Cookie` header value and the CSRF token.
struct Console {
    cookie: String,
    csrf: String,
    set_cookie: String,
    body: Value,
}

impl TestApp {
    async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// A user with this account role and a password.
    async fn user_with_password(&self, email: &str, role: &str) {
        let (s, b) = self
            .post(
                "/v1/users",
                &self.owner,
                json!({"email": email, "name": email.split('@').next().unwrap(), "role_name": role, "password": "correct horse"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    async fn console_login(&self, email: &str, extra: &[(&str, &str)]) -> Console {
        let r = self
            .raw(
                "POST",
                "/v1/auth/console/login",
                extra,
                Some(json!({"email": email, "password": "correct horse"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        Console {
            cookie: pair,
            csrf: r.body["csrf_token"].as_str().unwrap().to_owned(),
            set_cookie,
            body: r.body,
        }
    }
}

#[tokio::test]
async fn console_files_are_embedded_and_served_with_strict_security_headers() {
    let app = TestApp::spawn().await;
    let page = app.raw("GET", "/", &[], None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["cache-control"], "no-cache");
    // Nothing from another origin, no inline script or style.
    assert!(!page.text.contains("http://") && !page.text.contains("https://"));
    assert!(!page.text.contains("<style") && !page.text.contains("style="));
    assert!(!page.text.contains("<script>"));

    // Every file the page refers to is served, with its type and the same headers.
    let expected = [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ];
    for (path, kind) in expected {
        assert!(page.text.contains(path), "index.html does not use {path}");
        let r = app.raw("GET", path, &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers["content-type"], kind, "{path}");
        assert_eq!(r.headers["content-security-policy"], csp, "{path}");
        assert_eq!(r.headers["x-frame-options"], "DENY", "{path}");
        assert!(!r.text.is_empty(), "{path}");
        // A browser's revalidation is answered 304 without the body.
        let etag = r.headers["etag"].to_str().unwrap().to_owned();
        let again = app
            .raw("GET", path, &[("If-None-Match", etag.as_str())], None)
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.text.is_empty());
    }
    let missing = app.raw("GET", "/console/nothing.js", &[], None).await;
    assert_eq!(
        (missing.status, code(&missing.body)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    // The console's routes are in the OpenAPI document, the cookie as a security scheme.
    let (_, doc) = app.call("GET", "/openapi.json", None, None).await;
    assert!(doc["paths"]["/"]["get"]["responses"]["2XX"]["content"]["text/html"].is_object());
    assert!(doc["paths"]["/v1/auth/console/login"]["post"].is_object());
    assert_eq!(
        doc["paths"]["/v1/auth/console/login"]["post"]["security"],
        json!([])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["consoleSession"]["in"],
        "cookie"
    );
}

#[tokio::test]
async fn console_sign_in_sets_an_httponly_strict_cookie_and_returns_only_the_csrf_token() {
    let app = TestApp::spawn().await;
    app.user_with_password("ann@example.com", "admin").await;
    let s = app.console_login("ann@example.com", &[]).await;
    let token = s.cookie.strip_prefix("tocsin_session=").unwrap();
    assert!(token.starts_with("tcs_s_us_"), "{}", s.set_cookie);
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(s.set_cookie.contains(flag), "{} lacks {flag}", s.set_cookie);
    }
    // Served over plain HTTP (the test's public URL): a Secure cookie would never come back.
    assert!(!s.set_cookie.contains("Secure"), "{}", s.set_cookie);
    // The body has the CSRF token and the user, never the session token.
    assert_eq!(s.csrf.len(), 64);
    assert_eq!(s.body["user"]["email"], "ann@example.com");
    assert!(!s.body.to_string().contains(token));
    assert_ne!(s.csrf, token);

    // Behind an HTTPS proxy the cookie is Secure.
    let secure = app
        .console_login("ann@example.com", &[("X-Forwarded-Proto", "https")])
        .await;
    assert!(
        secure.set_cookie.ends_with("; Secure"),
        "{}",
        secure.set_cookie
    );
    // Each sign-in is its own session, with its own CSRF token.
    assert_ne!(secure.csrf, s.csrf);

    // A wrong password sets no cookie.
    let r = app
        .raw(
            "POST",
            "/v1/auth/console/login",
            &[],
            Some(json!({"email": "ann@example.com", "password": "wrong one"})),
        )
        .await;
    assert_eq!(
        (r.status, code(&r.body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    assert!(!r.headers.contains_key("set-cookie"));
    // Missing fields are named.
    let r = app
        .raw("POST", "/v1/auth/console/login", &[], Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["error"]["fields"]["email"].is_string());
    assert!(r.body["error"]["fields"]["password"].is_string());
    // A cross-site form can only post simple content types: refused, and the reply says why.
    let r = app
        .http
        .post(format!("{}/v1/auth/console/login", app.base))
        .header("Content-Type", "text/plain")
        .body(r#"{"email": "ann@example.com", "password": "correct horse"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!r.headers().contains_key("set-cookie"));
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type: application/json"),
        "{b}"
    );
}

#[tokio::test]
async fn a_cookie_session_needs_its_csrf_token_for_anything_but_reading() {
    let app = TestApp::spawn().await;
    app.user_with_password("ann@example.com", "admin").await;
    let s = app.console_login("ann@example.com", &[]).await;
    let cookie = ("Cookie", s.cookie.as_str());

    // Reading needs only the cookie.
    let r = app.raw("GET", "/v1/auth/whoami", &[cookie], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["kind"], "session");
    assert_eq!(r.body["name"], "ann@example.com");
    // The session route hands the same CSRF token back (the console's reload path).
    let r = app
        .raw("GET", "/v1/auth/console/session", &[cookie], None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["csrf_token"], s.csrf.as_str());
    assert_eq!(r.body["user"]["email"], "ann@example.com");
    assert_eq!(r.headers["cache-control"], "no-store");

    // A change without the header: refused, saying what is missing and how to fix it.
    let r = app
        .raw(
            "POST",
            "/v1/teams",
            &[cookie],
            Some(json!({"name": "forged"})),
        )
        .await;
    assert_eq!(
        (r.status, code(&r.body)),
        (StatusCode::FORBIDDEN, "csrf_token_missing"),
        "{}",
        r.text
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("X-CSRF-Token"), "{message}");
    assert!(message.contains("Authorization: Bearer"), "{message}");
    assert!(r.body["request_id"].is_string());
    // Another session's token, or a damaged one, is not this session's.
    let other = app.console_login("ann@example.com", &[]).await;
    for wrong in [other.csrf.as_str(), "0000", ""] {
        let r = app
            .raw(
                "POST",
                "/v1/teams",
                &[cookie, ("X-CSRF-Token", wrong)],
                Some(json!({"name": "forged"})),
            )
            .await;
        assert_eq!(
            (r.status, code(&r.body)),
            (StatusCode::FORBIDDEN, "csrf_token_invalid"),
            "{wrong}: {}",
            r.text
        );
    }
    // DELETE, PUT and PATCH are changes too; so are Opsgenie's routes.
    let r = app
        .raw(
            "POST",
            "/v2/alerts",
            &[cookie],
            Some(json!({"message": "forged"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "csrf_token_missing");
    let (s2, teams) = app.get("/v1/teams", &app.owner).await;
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(teams["data"].as_array().unwrap().len(), 0, "{teams}");

    // With its token the same request works.
    let r = app
        .raw(
            "POST",
            "/v1/teams",
            &[cookie, ("X-CSRF-Token", s.csrf.as_str())],
            Some(json!({"name": "payments"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let team = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .raw(
            "PATCH",
            &format!("/v1/teams/{team}"),
            &[cookie],
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!(r.body["error"]["code"], "csrf_token_missing", "{}", r.text);

    // The refusals are in the audit trail, attributed to the user.
    let (s3, events) = app
        .get("/v1/audit_events?outcome=csrf_token_missing", &app.owner)
        .await;
    assert_eq!(s3, StatusCode::OK, "{events}");
    let events = events["data"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["actor"]["type"] == "user" && e["status"] == 403 && e["route"].is_string())
    );

    // An API key put into the cookie is not a credential.
    let cookie_key = format!("tocsin_session={}", app.owner);
    let r = app
        .raw("GET", "/v1/auth/whoami", &[("Cookie", &cookie_key)], None)
        .await;
    assert_eq!(
        (r.status, code(&r.body)),
        (StatusCode::UNAUTHORIZED, "missing_credentials")
    );
}

#[tokio::test]
async fn an_authorization_header_wins_over_the_cookie() {
    let app = TestApp::spawn().await;
    app.user_with_password("vic@example.com", "viewer").await;
    let s = app.console_login("vic@example.com", &[]).await;
    let owner = format!("Bearer {}", app.owner);
    // The header's credential is used (the owner's key), so no CSRF token is needed...
    let r = app
        .raw(
            "POST",
            "/v1/teams",
            &[("Cookie", &s.cookie), ("Authorization", &owner)],
            Some(json!({"name": "payments"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .raw(
            "GET",
            "/v1/auth/whoami",
            &[("Cookie", &s.cookie), ("Authorization", &owner)],
            None,
        )
        .await;
    assert_eq!(r.body["kind"], "personal", "{}", r.text);
    // ...and a bad header is refused on its own: the cookie is no fallback.
    let r = app
        .raw(
            "GET",
            "/v1/auth/whoami",
            &[
                ("Cookie", &s.cookie),
                ("Authorization", "Bearer tcs_p_us_oops"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (r.status, code(&r.body)),
        (StatusCode::UNAUTHORIZED, "malformed_token")
    );
    let r = app
        .raw(
            "GET",
            "/v1/auth/whoami",
            &[("Cookie", &s.cookie), ("Authorization", "Basic abc")],
            None,
        )
        .await;
    assert_eq!(
        (r.status, code(&r.body)),
        (StatusCode::UNAUTHORIZED, "missing_credentials")
    );
}

#[tokio::test]
async fn signing_out_ends_the_session_and_clears_the_cookie() {
    let app = TestApp::spawn().await;
    app.user_with_password("ann@example.com", "admin").await;
    let s = app.console_login("ann@example.com", &[]).await;
    let cookie = ("Cookie", s.cookie.as_str());
    let token = s.cookie.strip_prefix("tocsin_session=").unwrap().to_owned();

    // Signing out is a change: it needs the CSRF token too.
    let r = app
        .raw("POST", "/v1/auth/console/logout", &[cookie], None)
        .await;
    assert_eq!(r.body["error"]["code"], "csrf_token_missing", "{}", r.text);
    let r = app
        .raw(
            "POST",
            "/v1/auth/console/logout",
            &[cookie, ("X-CSRF-Token", s.csrf.as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cleared = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("tocsin_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(cleared.contains("HttpOnly") && cleared.contains("SameSite=Strict"));

    // The session is gone from the store: neither the cookie nor the token works any more.
    let r = app.raw("GET", "/v1/auth/whoami", &[cookie], None).await;
    assert_eq!(
        (r.status, code(&r.body)),
        (StatusCode::UNAUTHORIZED, "unknown_key"),
        "{}",
        r.text
    );
    assert_eq!(
        app.get("/v1/auth/whoami", &token).await.0,
        StatusCode::UNAUTHORIZED
    );

    // An API key has no console session to end; the answer says what to do instead.
    let (st, b) = app
        .post("/v1/auth/console/logout", &app.owner, json!({}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("/revoke"),
        "{b}"
    );
    let (st, b) = app.get("/v1/auth/console/session", &app.owner).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    // A login session sent as a bearer token may use the session route (no cookie needed).
    let (st, b) = app
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": "ann@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let bearer = b["session_token"].as_str().unwrap();
    let (st, b) = app.get("/v1/auth/console/session", bearer).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["csrf_token"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn an_administrator_sets_a_password_which_ends_the_users_sessions() {
    let app = TestApp::spawn().await;
    app.user_with_password("ann@example.com", "admin").await;
    let (_, users) = app.get("/v1/users", &app.owner).await;
    let id_of = |email: &str| {
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ann, owner) = (id_of("ann@example.com"), id_of("owner@localhost"));
    let before = app.console_login("ann@example.com", &[]).await;

    // Too short: the field is named.
    let (s, b) = app
        .patch(
            &format!("/v1/users/{ann}"),
            &app.owner,
            json!({"password": "short"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["password"].is_string(), "{b}");

    let (s, b) = app
        .patch(
            &format!("/v1/users/{ann}"),
            &app.owner,
            json!({"password": "a new passphrase"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.get("password").is_none() && !b.to_string().contains("passphrase"));
    // The old password and the old session are gone; the new password works.
    let r = app
        .raw(
            "GET",
            "/v1/auth/whoami",
            &[("Cookie", &before.cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let old = app
        .raw(
            "POST",
            "/v1/auth/console/login",
            &[],
            Some(json!({"email": "ann@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = app
        .raw(
            "POST",
            "/v1/auth/console/login",
            &[],
            Some(json!({"email": "ann@example.com", "password": "a new passphrase"})),
        )
        .await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);

    // An admin cannot take over the owner by setting the owner's password, nor demote or
    // switch off the owner.
    let (s, b) = app
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": "ann@example.com", "password": "a new passphrase"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ann_session = b["session_token"].as_str().unwrap().to_owned();
    // Each is refused as an escalation, saying what only an owner may do.
    for (change, only_an_owner_can) in [
        (
            json!({"password": "owned by ann"}),
            "set an owner's password",
        ),
        (
            json!({"role_name": "viewer"}),
            "demote or deactivate an owner",
        ),
        (json!({"active": false}), "demote or deactivate an owner"),
    ] {
        let (s, b) = app
            .patch(&format!("/v1/users/{owner}"), &ann_session, change)
            .await;
        refused(s, &b, StatusCode::FORBIDDEN, "escalation_denied");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("Only an owner can {only_an_owner_can}")),
            "{b}"
        );
    }
    // A key narrowed to user management cannot set the password of anyone who holds more,
    // its own user included: a password opens a session with all of the user's rights.
    let (s, b) = app
        .post(
            "/v1/roles",
            &app.owner,
            json!({"name": "user_admin", "description": "Users only", "scope": "account", "permissions": ["users:read", "users:write"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, narrow) = app
        .key(
            &app.owner,
            json!({"name": "user admin", "role_names": ["user_admin"]}),
        )
        .await;
    for target in [&ann, &owner] {
        let (s, b) = app
            .patch(
                &format!("/v1/users/{target}"),
                &narrow,
                json!({"password": "taken over"}),
            )
            .await;
        refused(s, &b, StatusCode::FORBIDDEN, "escalation_denied");
    }
}

#[tokio::test]
async fn a_user_may_explain_their_own_keys_but_not_others_without_api_keys_read() {
    let app = TestApp::spawn().await;
    app.user_with_password("rob@example.com", "responder").await;
    let (s, b) = app
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": "rob@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let session = b["session_token"].as_str().unwrap().to_owned();
    let (own, _) = app
        .key(
            &session,
            json!({"name": "rob cli", "role_names": ["viewer"]}),
        )
        .await;
    // The key's page in the console asks about the key itself.
    let (s, b) = app
        .post(
            "/v1/auth/explain",
            &session,
            json!({"key_id": own, "method": "POST", "path": "/v2/alerts"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["allowed"], false, "{b}");
    assert_eq!(b["code"], "permission_denied", "{b}");
    assert!(b["reasons"][0].as_str().unwrap().contains("rob cli"), "{b}");
    // Another user's key needs api_keys:read, which a responder lacks.
    let (_, who) = app.get("/v1/auth/whoami", &app.owner).await;
    let owner_key = who["id"].as_str().unwrap();
    let (s, b) = app
        .post(
            "/v1/auth/explain",
            &session,
            json!({"key_id": owner_key, "permission": "alerts:read"}),
        )
        .await;
    refused(s, &b, StatusCode::FORBIDDEN, "permission_denied");
    // An unknown key id is a 404 naming what was looked for.
    let (s, b) = app
        .post(
            "/v1/auth/explain",
            &session,
            json!({"key_id": "key_00000000000000000000000000000000", "permission": "alerts:read"}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
}
