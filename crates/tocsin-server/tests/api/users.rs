//! Users across tenants: an email is unique within an organization only, so adding a user
//! says nothing about other tenants, and a login whose email and password open users of
//! several organizations asks which one.

use super::{TestApp, code, refused};
use reqwest::StatusCode;
use serde_json::{Value, json};

impl TestApp {
    /// `POST /v1/auth/login` with `body`, unauthenticated.
    async fn try_login(&self, body: Value) -> (StatusCode, Value) {
        self.call("POST", "/v1/auth/login", None, Some(body)).await
    }

    /// A login that must be refused as a wrong password is.
    async fn login_refused(&self, body: Value) {
        let (s, b) = self.try_login(body).await;
        refused(s, &b, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }

    /// A second organization (its owner's token and the organization's id).
    async fn second_tenant(&self, name: &str, owner_email: &str) -> (String, String) {
        let running = self.running.as_ref().unwrap();
        let other = tocsin_server::bootstrap::create_org(
            &running.app.store,
            &running.app.hasher,
            "us",
            name,
            owner_email,
            None,
        )
        .await
        .unwrap();
        (other.token, other.organization_id.to_string())
    }
}

#[tokio::test]
async fn an_email_taken_in_another_tenant_is_not_revealed_and_either_user_can_log_in() {
    let app = TestApp::spawn().await;
    let a_user = app
        .user(json!({"email": "ann@example.com", "name": "Ann", "role_name": "viewer", "password": "ann's password in A"}))
        .await;
    let (_, a_org) = app.get("/v1/organization", &app.owner).await;
    let a_org = a_org["id"].as_str().unwrap().to_owned();
    // Tenant B's owner gets tenant A's user's email: the organization is made with it.
    let (b_owner, b_org) = app.second_tenant("B", "Ann@Example.com").await;
    let (s, b) = app
        .post(
            "/v1/users",
            &b_owner,
            json!({"email": "ann@example.com.b", "name": "Ann B", "role_name": "viewer"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let b_second = b["id"].as_str().unwrap().to_owned();
    // Tenant A adds an email that only tenant B has: created, exactly as for an email no one
    // has (before, this was a 409 that told A the email was in use elsewhere).
    let (s, b) = app
        .post(
            "/v1/users",
            &app.owner,
            json!({"email": "ann@example.com.b", "name": "Not B's", "role_name": "viewer", "password": "ann's password in B"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let a_second = b["id"].as_str().unwrap().to_owned();
    // Within one organization the email is still unique, whatever its case, and the refusal
    // says so.
    let (s, b) = app
        .post(
            "/v1/users",
            &b_owner,
            json!({"email": "ANN@example.com", "name": "Ann B", "role_name": "viewer"}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "email_taken"), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in this organization"),
        "{b}"
    );
    // The same in the other tenant, for its own user.
    let (s, b) = app
        .post(
            "/v1/users",
            &app.owner,
            json!({"email": "Ann@Example.COM", "name": "Ann", "role_name": "viewer"}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "email_taken"), "{b}");

    // One password opens one user: that user's session, in its own organization.
    let (s, b) = app
        .try_login(json!({"email": "ann@example.com", "password": "ann's password in A"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["id"], json!(a_user));
    assert_eq!(b["user"]["organization_id"], json!(a_org));
    let session = b["session_token"].as_str().unwrap().to_owned();
    let (s, me) = app.get("/v1/auth/whoami", &session).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["organization"]["id"], json!(a_org), "{me}");
    // A password that opens neither user is refused (B's owner, with the same email, has no
    // password at all).
    app.login_refused(json!({"email": "ann@example.com", "password": "ann's password in B"}))
        .await;

    // The second email is held in both tenants, with one password: the login asks which
    // organization, and names both, since the caller proved it may enter both.
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/v1/users/{b_second}"),
            Some(&b_owner),
            Some(json!({"password": "ann's password in B"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .try_login(json!({"email": "ann@example.com.b", "password": "ann's password in B"}))
        .await;
    refused(s, &b, StatusCode::CONFLICT, "organization_required");
    let mut named: Vec<&str> = b["error"]["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    named.sort_unstable();
    let mut both = vec![a_org.as_str(), b_org.as_str()];
    both.sort_unstable();
    assert_eq!(named, both, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains(&b_org),
        "{b}"
    );
    for (org, user) in [(&a_org, &a_second), (&b_org, &b_second)] {
        let (s, b) = app
            .try_login(json!({"email": "ann@example.com.b", "password": "ann's password in B", "organization_id": org}))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["user"]["id"], json!(user), "{b}");
    }
    // Naming an organization where the email's user has no password, or where the email has
    // no user, refuses as a wrong password does.
    app.login_refused(json!({"email": "ann@example.com", "password": "ann's password in A", "organization_id": b_org}))
        .await;
    app.login_refused(
        json!({"email": "ann@example.com", "password": "ann's password in A",
        "organization_id": format!("org_{}", uuid::Uuid::new_v4().simple())}),
    )
    .await;
    let (s, b) = app
        .try_login(json!({"email": "ann@example.com", "password": "ann's password in A", "organization_id": "B"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["organization_id"].is_string(), "{b}");
    // A deactivated user no longer counts: the other organization's user logs in alone.
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/v1/users/{a_second}"),
            Some(&app.owner),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .try_login(json!({"email": "ann@example.com.b", "password": "ann's password in B"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["id"], json!(b_second), "{b}");
}

/// A personal key without roles of its own acts with its user's role, and a refusal says
/// which: not "no roles".
#[tokio::test]
async fn a_refused_personal_key_names_its_users_role() {
    let app = TestApp::spawn().await;
    app.user(json!({"email": "vi@example.com", "role_name": "viewer", "password": "long enough"}))
        .await;
    let (s, b) = app
        .try_login(json!({"email": "vi@example.com", "password": "long enough"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let session = b["session_token"].as_str().unwrap().to_owned();
    let (_, key) = app.key(&session, json!({"name": "vi laptop"})).await;
    let (s, b) = app.post("/v1/teams", &key, json!({"name": "nope"})).await;
    refused(s, &b, StatusCode::FORBIDDEN, "permission_denied");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("roles: viewer (its user's role)"),
        "{message}"
    );
    assert!(!message.contains("no roles"), "{message}");
    // whoami names the user's role beside the key's own (none): the source of its permissions.
    let (s, me) = app.get("/v1/auth/whoami", &key).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(
        (&me["user_role_name"], &me["role_names"]),
        (&json!("viewer"), &json!([])),
        "{me}"
    );
    // Other kinds have no user to name.
    let (_, org_key) = app
        .key(
            &app.owner,
            json!({"name": "org", "kind": "organization", "role_names": ["viewer"]}),
        )
        .await;
    let (_, me) = app.get("/v1/auth/whoami", &org_key).await;
    assert!(me.get("user_role_name").is_none(), "{me}");
}

/// The organization's last active owner cannot be deactivated or demoted: nobody could then
/// manage the organization, or make a new owner. An inactive owner does not count.
#[tokio::test]
async fn the_last_active_owner_cannot_be_deactivated_or_demoted() {
    let app = TestApp::spawn().await;
    let (_, me) = app.get("/v1/auth/whoami", &app.owner).await;
    let owner = me["user_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/users/{owner}");
    for change in [
        json!({"active": false}),
        json!({"role_name": "viewer"}),
        json!({"role_name": "admin", "active": true}),
    ] {
        let (s, b) = app.patch(&path, &app.owner, change.clone()).await;
        refused(s, &b, StatusCode::CONFLICT, "last_owner");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(message.contains("at least one active owner"), "{b}");
        assert!(
            b["error"]["fixes"][0]
                .as_str()
                .unwrap()
                .contains("Make another user owner first"),
            "{b}"
        );
    }
    // Nothing was changed: the owner's key still works, and the owner is still an owner.
    let (s, b) = app.get(&path, &app.owner).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["role_name"].as_str(), b["active"].as_bool()),
        (Some("owner"), Some(true))
    );
    // Changes that keep them an active owner are fine.
    let (s, b) = app
        .patch(
            &path,
            &app.owner,
            json!({"name": "Still Owner", "role_name": "owner", "active": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // A second owner who is deactivated does not count.
    let second = app
        .user(json!({"email": "second@example.com", "role_name": "owner"}))
        .await;
    let second_path = format!("/v1/users/{second}");
    let (s, b) = app
        .patch(&second_path, &app.owner, json!({"active": false}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .patch(&path, &app.owner, json!({"role_name": "admin"}))
        .await;
    refused(s, &b, StatusCode::CONFLICT, "last_owner");
    // Once they are active again, the first owner may step down to admin.
    let (s, b) = app
        .patch(&second_path, &app.owner, json!({"active": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .patch(&path, &app.owner, json!({"role_name": "admin"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["role_name"], "admin");
}

/// SPEC lists `name` and `role_name` as required when creating a user: leaving one out is
/// refused by name, never a silent default (rights nobody chose, or the email as a name).
#[tokio::test]
async fn a_user_is_created_only_with_a_name_and_an_account_role() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .post(
            "/v1/users",
            &app.owner,
            json!({"email": "t@example.com", "name": "T"}),
        )
        .await;
    refused(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let why = b["error"]["fields"]["role_name"].as_str().unwrap();
    assert!(
        why.contains("required") && why.contains("GET /v1/roles"),
        "{b}"
    );
    // Every other problem of the body is named beside it.
    let (s, b) = app
        .post("/v1/users", &app.owner, json!({"email": "not an email"}))
        .await;
    refused(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(b["error"]["fields"]["role_name"].is_string(), "{b}");
    assert!(b["error"]["fields"]["email"].is_string(), "{b}");
    let why = b["error"]["fields"]["name"].as_str().unwrap();
    assert!(why.contains("required"), "{b}");
    let (s, b) = app
        .post(
            "/v1/users",
            &app.owner,
            json!({"email": "t@example.com", "role_name": "viewer"}),
        )
        .await;
    refused(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(b["error"]["fields"].as_object().unwrap().len(), 1, "{b}");
    assert!(b["error"]["fields"]["name"].is_string(), "{b}");
    // Nobody was created.
    let (_, b) = app.get("/v1/users", &app.owner).await;
    assert!(!b.to_string().contains("t@example.com"), "{b}");
    let (s, b) = app
        .post(
            "/v1/users",
            &app.owner,
            json!({"email": "t@example.com", "name": "T", "role_name": "viewer"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["role_name"], "viewer", "{b}");
}
