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
