//! The store against a real SQLite file: the audit chain's tamper evidence, the expiry
//! sweep, and rotation keeping at most two tokens.

use time::{Duration, OffsetDateTime};
use tocsin_core::key::KeyKind;
use tocsin_core::{KeyId, OrgId, UserId};
use tocsin_store::Store;
use tocsin_store::audit::AuditRecord;
use tocsin_store::keys::{Actor, ApiKey};
use tocsin_store::orgs::Organization;
use tocsin_store::users::User;

/// A fresh store: a SQLite file, or with TOCSIN_TEST_BACKEND=postgres a new PostgreSQL
/// database on TOCSIN_TEST_PG_URL's server (scripts/test drops them afterwards).
async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = if tocsin_store::testing::postgres_backend() {
        Store::connect(&tocsin_store::testing::fresh_postgres_database().await)
            .await
            .unwrap()
    } else {
        Store::open_sqlite(&dir.path().join("t.db")).await.unwrap()
    };
    store.migrate().await.unwrap();
    (dir, store)
}

async fn org(store: &Store) -> OrgId {
    let org = Organization {
        id: OrgId::generate(),
        name: "o".into(),
        max_key_days: None,
        alerts_require_integration_key: false,
        created_at: OffsetDateTime::now_utc(),
    };
    store.insert_org(&org).await.unwrap();
    org.id
}

fn personal_key(org: &OrgId, user: &UserId, expires_at: OffsetDateTime) -> ApiKey {
    let now = OffsetDateTime::now_utc();
    ApiKey {
        id: KeyId::generate(),
        org_id: org.clone(),
        kind: KeyKind::Personal,
        name: "k".into(),
        description: String::new(),
        user_id: Some(user.clone()),
        team_id: None,
        integration_id: None,
        service_account_id: None,
        role_names: vec![],
        team_ids: vec![],
        team_role_names: vec![],
        allowed_cidrs: vec![],
        region: "us".into(),
        token_hint: "abcd".into(),
        created_at: now,
        updated_at: now,
        created_by: Actor {
            kind: "user".into(),
            id: user.to_string(),
            name: "u".into(),
        },
        expires_at,
        token_last_issued_at: now,
        grace_period_ends_at: None,
        last_used_at: None,
        last_used_ip: None,
        revoked_at: None,
        revoked_by: None,
    }
}

async fn user(store: &Store, org: &OrgId) -> UserId {
    let now = OffsetDateTime::now_utc();
    let u = User {
        id: UserId::generate(),
        org_id: org.clone(),
        email: format!("{}@example.com", UserId::generate()),
        name: "u".into(),
        role_name: "owner".into(),
        active: true,
        created_at: now,
        updated_at: now,
    };
    store.insert_user(&u, None).await.unwrap();
    u.id
}

#[tokio::test]
async fn editing_or_removing_an_audit_row_is_named_by_verify() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let records: Vec<AuditRecord> = (0..5)
        .map(|i| {
            AuditRecord::new(
                Some(org.clone()),
                "http.request",
                if i == 2 { "revoked_key" } else { "allowed" },
            )
        })
        .collect();
    store.append_audit(&records[..3]).await.unwrap();
    store.append_audit(&records[3..]).await.unwrap();
    let report = store.verify_chain(org.as_str()).await.unwrap();
    assert_eq!(report.events, 5);
    assert!(report.broken_at.is_none());

    // Someone rewrites the refusal as allowed.
    let exec = |sql: &'static str, id: String| {
        let store = store.clone();
        async move {
            tocsin_store::on_db!(store.db(), |pool| {
                sqlx::query(sql).bind(id).execute(pool).await.unwrap();
            })
        }
    };
    exec(
        "UPDATE audit_events SET outcome = 'allowed' WHERE id = $1",
        records[2].id.to_string(),
    )
    .await;
    let broken = store
        .verify_chain(org.as_str())
        .await
        .unwrap()
        .broken_at
        .unwrap();
    assert_eq!(broken.event_id, records[2].id.as_str());
    assert!(broken.reason.contains("edited"));

    // Restore it, then delete an event instead.
    exec(
        "UPDATE audit_events SET outcome = 'revoked_key' WHERE id = $1",
        records[2].id.to_string(),
    )
    .await;
    assert!(
        store
            .verify_chain(org.as_str())
            .await
            .unwrap()
            .broken_at
            .is_none()
    );
    exec(
        "DELETE FROM audit_events WHERE id = $1",
        records[1].id.to_string(),
    )
    .await;
    let broken = store
        .verify_chain(org.as_str())
        .await
        .unwrap()
        .broken_at
        .unwrap();
    assert_eq!(broken.event_id, records[2].id.as_str());
    assert!(broken.reason.contains("removed"));
}

#[tokio::test]
async fn expired_keys_are_reported_once() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let now = OffsetDateTime::now_utc();
    let old = personal_key(&org, &user, now - Duration::minutes(1));
    let live = personal_key(&org, &user, now + Duration::days(1));
    let mut live = live;
    live.name = "live".into();
    store.insert_key(&old, &[1; 32], None).await.unwrap();
    store.insert_key(&live, &[2; 32], None).await.unwrap();
    let first = store.take_newly_expired(now).await.unwrap();
    assert_eq!(
        first.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        vec![old.id.clone()]
    );
    assert!(store.take_newly_expired(now).await.unwrap().is_empty());
}

#[tokio::test]
async fn rotation_keeps_at_most_two_tokens() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let key = personal_key(&org, &user, OffsetDateTime::now_utc() + Duration::days(1));
    store.insert_key(&key, &[1; 32], None).await.unwrap();
    let grace = Some(OffsetDateTime::now_utc() + Duration::hours(1));
    store
        .rotate_key(&org, &key.id, &[2; 32], "bbbb", grace)
        .await
        .unwrap();
    store
        .rotate_key(&org, &key.id, &[3; 32], "cccc", grace)
        .await
        .unwrap();
    assert!(store.find_key_by_digest(&[1; 32]).await.unwrap().is_none());
    let (_, previous) = store.find_key_by_digest(&[2; 32]).await.unwrap().unwrap();
    assert!(!previous.is_current && previous.grace_ends_at.is_some());
    let (k, current) = store.find_key_by_digest(&[3; 32]).await.unwrap().unwrap();
    assert!(current.is_current);
    assert_eq!(k.token_hint, "cccc");
    store
        .rotate_key(&org, &key.id, &[4; 32], "dddd", None)
        .await
        .unwrap();
    assert!(store.find_key_by_digest(&[2; 32]).await.unwrap().is_none());
    assert!(store.find_key_by_digest(&[3; 32]).await.unwrap().is_none());
    // Another organization cannot rotate it.
    let other = OrgId::generate();
    assert!(
        store
            .rotate_key(&other, &key.id, &[5; 32], "eeee", None)
            .await
            .is_err()
    );
    assert!(store.find_key_by_digest(&[5; 32]).await.unwrap().is_none());
}
