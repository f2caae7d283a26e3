//! Team memberships: who may add, change and remove members (SPEC: `teams:write` account-wide,
//! or the `team_admin` role in the team), and that nobody changes a member stronger than
//! themselves. `explain` gives the route's own verdict.

use super::{TestApp, code};
use reqwest::StatusCode;
use serde_json::{Value, json};

impl TestApp {
    /// `PUT` (with `roles`) or `DELETE` (`roles` is `None`) of a membership, by `token`.
    async fn membership(
        &self,
        token: &str,
        team: &str,
        user: &str,
        roles: Option<&[&str]>,
    ) -> (StatusCode, Value) {
        let path = format!("/v1/teams/{team}/members/{user}");
        match roles {
            Some(r) => {
                self.call(
                    "PUT",
                    &path,
                    Some(token),
                    Some(json!({"team_role_names": r})),
                )
                .await
            }
            None => self.call("DELETE", &path, Some(token), None).await,
        }
    }

    /// What `explain` says of that membership change, by `token`: (allowed, code).
    async fn explain_membership(&self, token: &str, method: &str, team: &str, user: &str) -> Value {
        let (s, b) = self
            .post(
                "/v1/auth/explain",
                token,
                json!({"method": method, "path": format!("/v1/teams/{team}/members/{user}")}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    /// The team roles of `user` in `team`, from the member list.
    async fn team_roles_of(&self, team: &str, user: &str) -> Option<Value> {
        let (_, b) = self
            .get(&format!("/v1/teams/{team}/members"), &self.owner)
            .await;
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_id"] == user)
            .map(|m| m["team_role_names"].clone())
    }
}

#[tokio::test]
async fn only_team_admins_and_account_team_writers_manage_members_and_never_stronger_ones() {
    let app = TestApp::spawn().await;
    let payments = app.team("payments").await;
    let (s, b) = app
        .post(
            "/v1/roles",
            &app.owner,
            json!({"name": "team_writer", "scope": "team", "permissions": ["teams:read", "teams:write", "alerts:read", "users:read", "integrations:read", "roles:read"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let alice = app
        .user(json!({"email": "alice@example.com", "name": "Alice", "role_name": "responder", "password": "alice's password"}))
        .await;
    let bob = app
        .user(json!({"email": "bob@example.com", "name": "Bob", "role_name": "viewer", "password": "bob's password"}))
        .await;
    let cy = app
        .user(json!({"email": "cy@example.com", "name": "Cy", "role_name": "viewer"}))
        .await;
    app.add_member(&payments, &alice, &["team_admin"]).await;
    app.add_member(&payments, &bob, &["team_writer"]).await;
    app.add_member(&payments, &cy, &["viewer"]).await;
    let bob_session = app.login("bob@example.com", "bob's password").await;
    let alice_session = app.login("alice@example.com", "alice's password").await;
    let (_, writer_key) = app
        .key(&app.owner, json!({"name": "writer", "kind": "team", "team_id": payments, "team_role_names": ["team_writer"]}))
        .await;

    // teams:write within the team, without team_admin: no membership changes, not even of a
    // viewer, by a session or a team key; explain says the same.
    for token in [&bob_session, &writer_key] {
        for (user, roles) in [
            (&alice, Some(&["viewer"][..])),
            (&alice, None),
            (&cy, Some(&["responder"][..])),
            (&cy, None),
        ] {
            let (s, b) = app.membership(token, &payments, user, roles).await;
            assert_eq!(
                (s, code(&b)),
                (StatusCode::FORBIDDEN, "permission_denied"),
                "{b}"
            );
            let message = b["error"]["message"].as_str().unwrap();
            assert!(message.contains("team_admin"), "{b}");
            assert!(message.contains("alerts:write"), "{b}");
            assert!(!b["error"]["fixes"][0].as_str().unwrap().is_empty(), "{b}");
            let method = if roles.is_some() { "PUT" } else { "DELETE" };
            let e = app.explain_membership(token, method, &payments, user).await;
            assert_eq!(
                (&e["allowed"], &e["code"]),
                (&json!(false), &json!("permission_denied")),
                "{e}"
            );
            assert_eq!(e["reasons"][0], b["error"]["message"], "{e}");
        }
    }
    // teams:write within the team still changes the team itself.
    let (s, b) = app
        .patch(
            &format!("/v1/teams/{payments}"),
            &bob_session,
            json!({"description": "card payments"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        app.team_roles_of(&payments, &alice).await,
        Some(json!(["team_admin"]))
    );
    assert_eq!(
        app.team_roles_of(&payments, &cy).await,
        Some(json!(["viewer"]))
    );

    // The team's admin manages its members, and explain agrees.
    let e = app
        .explain_membership(&alice_session, "DELETE", &payments, &cy)
        .await;
    assert_eq!(e["allowed"], true, "{e}");
    let (s, b) = app
        .membership(&alice_session, &payments, &cy, Some(&["responder"]))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // teams:write account-wide passes the first rule, but not the second: a member whose
    // team roles grant more than the caller holds there is neither changed nor removed.
    let (s, b) = app
        .post(
            "/v1/roles",
            &app.owner,
            json!({"name": "team_manager", "scope": "account", "permissions": ["teams:read", "teams:write", "alerts:read", "alerts:write", "users:read", "integrations:read", "roles:read"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, manager) = app
        .key(
            &app.owner,
            json!({"name": "manager", "kind": "organization", "role_names": ["team_manager"]}),
        )
        .await;
    for roles in [Some(&["viewer"][..]), None] {
        let (s, b) = app.membership(&manager, &payments, &alice, roles).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::FORBIDDEN, "escalation_denied"),
            "{b}"
        );
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&alice) && message.contains("team_admin"),
            "{b}"
        );
        assert!(message.contains("alerts:delete"), "{b}");
        assert_eq!(
            b["error"]["missing"][0]["team_id"],
            payments.as_str(),
            "{b}"
        );
        assert!(
            b["error"]["fixes"][0]
                .as_str()
                .unwrap()
                .contains("team admin"),
            "{b}"
        );
        let method = if roles.is_some() { "PUT" } else { "DELETE" };
        let e = app
            .explain_membership(&manager, method, &payments, &alice)
            .await;
        assert_eq!(
            (&e["allowed"], &e["code"]),
            (&json!(false), &json!("escalation_denied")),
            "{e}"
        );
    }
    assert_eq!(
        app.team_roles_of(&payments, &alice).await,
        Some(json!(["team_admin"]))
    );
    // A member within the caller's rights is changed and removed; so is a new one added.
    let e = app
        .explain_membership(&manager, "DELETE", &payments, &cy)
        .await;
    assert_eq!(e["allowed"], true, "{e}");
    let (s, b) = app
        .membership(&manager, &payments, &cy, Some(&["viewer"]))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.membership(&manager, &payments, &cy, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = app
        .membership(&manager, &payments, &cy, Some(&["responder"]))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // An owner, who holds everything, changes the team admin.
    let (s, b) = app
        .membership(&app.owner, &payments, &alice, Some(&["responder"]))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
