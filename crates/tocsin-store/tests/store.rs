//! The store against a real SQLite file: the audit chain's tamper evidence, the expiry
//! sweep, rotation keeping at most two tokens, and alert batches.

use time::{Duration, OffsetDateTime};
use tocsin_core::key::KeyKind;
use tocsin_core::{KeyId, OrgId, UserId};
use tocsin_store::Store;
use tocsin_store::alerts::{Action, AlertDraft, AlertOp, IdentifierType, OpKind};
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
        rate_limit: None,
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

fn create(org: &OrgId, alias: Option<&str>, note: Option<&str>) -> AlertOp {
    AlertOp {
        org_id: org.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
        integration_id: None,
        kind: OpKind::Create(Box::new(AlertDraft {
            message: format!("disk full on {}", alias.unwrap_or("-")),
            alias: alias.map(str::to_owned),
            description: String::new(),
            responders: vec![],
            teams: vec![],
            visible_to: vec![],
            owner_team_id: None,
            integration: None,
            actions: vec![],
            tags: vec!["db".into()],
            details: Default::default(),
            entity: String::new(),
            source: "test".into(),
            priority: "P3".into(),
            user: "bot".into(),
            note: note.map(str::to_owned),
            adjustments: vec![],
        })),
    }
}

fn act(org: &OrgId, alert_id: &str, action: Action) -> AlertOp {
    AlertOp {
        org_id: org.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
        integration_id: None,
        kind: OpKind::Act {
            alert_id: alert_id.into(),
            action,
            user: "bot".into(),
            note: None,
        },
    }
}

/// One batch mixing creates and actions gives what one op at a time would: creates with an
/// open alias are counted (whether the alias was opened before the batch or earlier in it), a
/// close in the middle of the batch lets the next create open a new alert, tinyIds follow
/// request order without gaps, and every op's log lines and notes are kept.
#[tokio::test]
async fn a_batch_applies_its_ops_in_order() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let first = store
        .apply_alert_ops(&[create(&org, Some("a"), None)])
        .await
        .unwrap();
    let a = first[0].alert_id.clone();
    let batch = [
        create(&org, Some("a"), None),
        create(&org, None, None),
        act(&org, &a, Action::Close),
        create(&org, Some("a"), Some("again after close")),
        create(&org, Some("a"), None),
        create(&org, Some("b"), Some("first b")),
    ];
    let s = store.apply_alert_ops(&batch).await.unwrap();
    assert_eq!(s.len(), batch.len());
    assert!(s.iter().all(|s| s.success), "{s:?}");
    assert_eq!(s[0].alert_id, a);
    assert_eq!(
        s[0].status,
        "Alert already exists and its count was increased"
    );
    assert_eq!(s[2].alert_id, a);
    assert_ne!(s[3].alert_id, a, "the close let a new alert open");
    assert_eq!(s[3].status, "Created alert");
    assert_eq!(s[4].alert_id, s[3].alert_id);
    assert_eq!(
        s[4].status,
        "Alert already exists and its count was increased"
    );

    let alert_a = store
        .find_alert(&org, &a, IdentifierType::Id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (alert_a.status.as_str(), alert_a.count, alert_a.tiny_id),
        ("closed", 2, 1)
    );
    let no_alias = store
        .find_alert(&org, &s[1].alert_id, IdentifierType::Id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (no_alias.alias.as_str(), no_alias.tiny_id),
        (s[1].alert_id.as_str(), 2)
    );
    let second_a = store
        .find_alert(&org, &s[3].alert_id, IdentifierType::Id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second_a.status.as_str(), second_a.count, second_a.tiny_id),
        ("open", 2, 3)
    );
    let b = store
        .find_alert(&org, &s[5].alert_id, IdentifierType::Id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.alias.as_str(), b.count, b.tiny_id), ("b", 1, 4));

    let logs = |id: String| {
        let store = &store;
        let org = &org;
        async move {
            store
                .alert_entries(org, &id, true, None, false, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.text)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        logs(a.clone()).await,
        [
            "Alert created",
            "Alert occurred again: disk full on a",
            "Alert closed by bot"
        ]
    );
    assert_eq!(
        logs(second_a.id.clone()).await,
        ["Alert created", "Alert occurred again: disk full on a"]
    );
    let notes = store
        .alert_entries(&org, &b.id, false, None, false, 100)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].text, "first b");
    let status = store
        .request_status(&org, &batch[3].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.alert_id, second_a.id);

    // Deleting an alert in the batch that logged on it drops those lines with it.
    let s = store
        .apply_alert_ops(&[
            create(&org, Some("b"), Some("noted")),
            act(&org, &b.id, Action::Delete),
            create(&org, Some("b"), None),
        ])
        .await
        .unwrap();
    assert!(s.iter().all(|s| s.success), "{s:?}");
    assert!(
        store
            .find_alert(&org, &b.id, IdentifierType::Id)
            .await
            .unwrap()
            .is_none()
    );
    assert_ne!(s[2].alert_id, b.id);
    assert_eq!(logs(s[2].alert_id.clone()).await, ["Alert created"]);
}

/// `close` stops the background checkpointer before the pools, so the last connection to
/// close still checkpoints the WAL into the database file and removes it: nothing is left
/// open or running after a clean stop, and the file alone holds every event.
#[tokio::test]
async fn closing_a_sqlite_store_leaves_no_wal_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    store.migrate().await.unwrap();
    let org = org(&store).await;
    let records: Vec<AuditRecord> = (0..200)
        .map(|_| AuditRecord::new(Some(org.clone()), "http.request", "allowed"))
        .collect();
    store.append_audit(&records).await.unwrap();
    let wal = dir.path().join("t.db-wal");
    assert!(wal.exists(), "writes go through the WAL");
    let clone = store.clone();
    store.close().await;
    assert!(
        !wal.exists(),
        "the WAL was checkpointed and removed at close"
    );
    drop(clone);
    let reopened = Store::open_sqlite(&path).await.unwrap();
    let report = reopened.verify_chain(org.as_str()).await.unwrap();
    assert_eq!((report.events, report.broken_at.is_none()), (200, true));
    reopened.close().await;
}
