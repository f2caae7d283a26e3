//! The store against a real SQLite file: the audit chain's tamper evidence, the expiry
//! sweep, rotation keeping at most two tokens, and alert batches.

use time::{Duration, OffsetDateTime};
use tocsin_core::key::KeyKind;
use tocsin_core::{KeyId, OrgId, UserId};
use tocsin_store::Store;
use tocsin_store::alerts::{Action, AlertDraft, AlertOp, IdentifierType, OpKind};
use tocsin_store::audit::{AuditActor, AuditFilter, AuditRecord, AuditTarget, GENESIS, event_hash};
use tocsin_store::keys::{Actor, ApiKey};
use tocsin_store::orgs::Organization;
use tocsin_store::teams::MembershipWas::{self, Absent, Any, Roles};
use tocsin_store::testing::{audit_events, tamper_audit_event};
use tocsin_store::users::User;

/// A fresh store: a SQLite file, or with TOCSIN_TEST_BACKEND=postgres a new PostgreSQL
/// database on TOCSIN_TEST_PG_URL's server (scripts/test drops them afterwards).
async fn store() -> (tempfile::TempDir, Store) {
    let (dir, store) = unmigrated_store().await;
    store.migrate().await.unwrap();
    (dir, store)
}

/// The same, before any migration has run.
async fn unmigrated_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = if tocsin_store::testing::postgres_backend() {
        Store::connect(&tocsin_store::testing::fresh_postgres_database().await)
            .await
            .unwrap()
    } else {
        Store::open_sqlite(&dir.path().join("t.db")).await.unwrap()
    };
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
async fn editing_or_removing_an_audit_event_is_named_by_verify() {
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
    let chain = org.as_str();
    let set_outcome = |outcome: &'static str| {
        move |r: &mut AuditRecord| {
            r.outcome = outcome.into();
            true
        }
    };
    tamper_audit_event(
        &store,
        chain,
        records[2].id.as_str(),
        set_outcome("allowed"),
    )
    .await;
    let broken = store
        .verify_chain(org.as_str())
        .await
        .unwrap()
        .broken_at
        .unwrap();
    assert_eq!(broken.event_id.as_deref(), Some(records[2].id.as_str()));
    assert!(broken.reason.contains("edited"));

    // Restore it, then delete an event instead.
    tamper_audit_event(
        &store,
        chain,
        records[2].id.as_str(),
        set_outcome("revoked_key"),
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
    tamper_audit_event(&store, chain, records[1].id.as_str(), |_| false).await;
    let broken = store
        .verify_chain(org.as_str())
        .await
        .unwrap()
        .broken_at
        .unwrap();
    assert_eq!(broken.event_id.as_deref(), Some(records[2].id.as_str()));
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

/// A last-use flush whose write fails keeps its uses: the next flush writes them.
#[tokio::test]
async fn a_failed_last_use_flush_is_written_by_the_next() {
    use tocsin_store::testing::execute;
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let key = personal_key(&org, &user, OffsetDateTime::now_utc() + Duration::days(1));
    store.insert_key(&key, &[1; 32], None).await.unwrap();
    let tracker = tocsin_store::LastUsedTracker::default();
    let at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    tracker.record(&key.id, at, "10.0.0.1");
    execute(&store, "ALTER TABLE api_keys RENAME TO api_keys_away").await;
    assert!(tracker.flush(&store).await.is_err());
    execute(&store, "ALTER TABLE api_keys_away RENAME TO api_keys").await;
    assert_eq!(tracker.flush(&store).await.unwrap(), 1);
    let stored = store.get_key(&org, &key.id).await.unwrap();
    assert_eq!(stored.last_used_ip.as_deref(), Some("10.0.0.1"));
    assert!(stored.last_used_at.is_some());
    assert_eq!(tracker.flush(&store).await.unwrap(), 0);
}

/// At most two tokens are valid after a rotation: the new one and the one it replaced, until
/// its grace ends. Replaced tokens are kept, their grace ended (so that they are refused as
/// expired, with when), and pruned at a later rotation once ended long enough.
#[tokio::test]
async fn rotation_keeps_at_most_two_valid_tokens() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let key = personal_key(&org, &user, OffsetDateTime::now_utc() + Duration::days(1));
    store.insert_key(&key, &[1; 32], None).await.unwrap();
    let grace = Some(OffsetDateTime::now_utc() + Duration::hours(1));
    let ended = |m: &tocsin_store::keys::TokenMatch| {
        !m.is_current
            && m.grace_ends_at
                .is_some_and(|g| g <= OffsetDateTime::now_utc())
    };
    store
        .rotate_key(&org, &key.id, &[2; 32], "bbbb", grace)
        .await
        .unwrap();
    store
        .rotate_key(&org, &key.id, &[3; 32], "cccc", grace)
        .await
        .unwrap();
    let (_, first) = store.find_key_by_digest(&[1; 32]).await.unwrap().unwrap();
    assert!(
        ended(&first),
        "the first token's grace ended at the second rotation"
    );
    let (_, previous) = store.find_key_by_digest(&[2; 32]).await.unwrap().unwrap();
    assert!(!previous.is_current);
    assert!(previous.grace_ends_at.unwrap() > OffsetDateTime::now_utc());
    let (k, current) = store.find_key_by_digest(&[3; 32]).await.unwrap().unwrap();
    assert!(current.is_current);
    assert_eq!(k.token_hint, "cccc");
    store
        .rotate_key(&org, &key.id, &[4; 32], "dddd", None)
        .await
        .unwrap();
    for old in [[2; 32], [3; 32]] {
        let (_, m) = store.find_key_by_digest(&old).await.unwrap().unwrap();
        assert!(ended(&m));
    }
    // A replaced token whose grace ended more than RETIRED_TOKENS_KEPT_DAYS ago is pruned at
    // the next rotation.
    let long_ago =
        tocsin_store::now_ms() - (tocsin_store::keys::RETIRED_TOKENS_KEPT_DAYS + 1) * 86_400_000;
    tocsin_store::on_db!(store.db(), |pool| sqlx::query(
        "UPDATE api_key_tokens SET grace_ends_at = $1 WHERE digest = $2"
    )
    .bind(long_ago)
    .bind(&[1u8; 32][..])
    .execute(pool)
    .await
    .unwrap()
    .rows_affected());
    store
        .rotate_key(&org, &key.id, &[6; 32], "ffff", None)
        .await
        .unwrap();
    assert!(store.find_key_by_digest(&[1; 32]).await.unwrap().is_none());
    assert!(store.find_key_by_digest(&[2; 32]).await.unwrap().is_some());
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
            write_teams: None,
            received_at: None,
        })),
    }
}

/// Two nodes' batches opening the same alerts at the same moment, and counting into them, in
/// different orders, all land: PostgreSQL ends one of two deadlocked batches, and that batch
/// runs again instead of failing its ops ("internal error" after a 202). On SQLite one store
/// serves all four writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_two_nodes_opening_and_counting_the_same_alerts_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = if tocsin_store::testing::postgres_backend() {
        let url = tocsin_store::testing::fresh_postgres_database().await;
        let one = Store::connect(&url).await.unwrap();
        one.migrate().await.unwrap();
        (one, Store::connect(&url).await.unwrap())
    } else {
        let one = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        one.migrate().await.unwrap();
        (one.clone(), one)
    };
    let org = org(&one).await;
    const ROUNDS: usize = 20;
    let mut writers = Vec::new();
    for (n, store) in [&one, &two, &one, &two].into_iter().enumerate() {
        let (store, org) = (store.clone(), org.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Four aliases a round, each writer in its own order (two of them reversed).
                let ops: Vec<AlertOp> = (0..4)
                    .map(|i| {
                        let k = if n % 2 == 0 {
                            (i + n) % 4
                        } else {
                            3 - (i + n) % 4
                        };
                        create(&org, Some(&format!("r{round}-{k}")), None)
                    })
                    .collect();
                for s in store.apply_alert_ops(&ops).await.unwrap() {
                    assert!(s.success, "writer {n}, round {round}: {s:?}");
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for round in 0..ROUNDS {
        for k in 0..4 {
            let alias = format!("r{round}-{k}");
            let alert = one
                .find_alert(&org, &alias, IdentifierType::Alias)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{alias} is missing"));
            assert_eq!(alert.count, 4, "{alias}");
        }
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
            adjustments: vec![],
        },
    }
}

/// Alert batches (the writer's own connection on SQLite) and the other writes share the
/// database: with the group-commit writer kept busy by many requests, key writes still go
/// through, and every alert is kept with its request status and audit events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writes_get_their_turn_beside_a_busy_alert_writer() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let (audit, alerts, task) = tocsin_store::spawn_writers(store.clone());
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (alerts, audit, org) = (alerts.clone(), audit.clone(), org.clone());
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..40 {
                let op = create(&org, None, None);
                let request = op.request_id.clone();
                let s = alerts.submit(op).await.unwrap();
                assert!(s.success, "{s:?}");
                audit
                    .record(AuditRecord::new(
                        Some(org.clone()),
                        "alert.create",
                        "success",
                    ))
                    .await;
                ids.push(request);
            }
            ids
        }));
    }
    let now = OffsetDateTime::now_utc();
    for i in 0..20u8 {
        let mut key = personal_key(&org, &user, now + Duration::days(1));
        key.name = format!("k{i}");
        store.insert_key(&key, &[i; 32], None).await.unwrap();
    }
    let mut requests = Vec::new();
    for s in senders {
        requests.extend(s.await.unwrap());
    }
    audit.flush().await.unwrap();
    drop((audit, alerts));
    task.await.unwrap();
    let all = tocsin_store::alerts::AlertScope {
        all: true,
        teams: vec![],
    };
    let query = tocsin_core::search::Query::All;
    assert_eq!(store.count_alerts(&org, &all, &query).await.unwrap(), 640);
    for id in requests.iter().step_by(37) {
        let status = store.request_status(&org, id).await.unwrap();
        assert!(status.is_some_and(|s| s.success), "request {id}");
    }
    // Called straight from a worker of this multi-threaded runtime (SQLite: the store
    // hands the blocking commit to the runtime first).
    store
        .append_audit(&[AuditRecord::new(Some(org.clone()), "key.create", "success")])
        .await
        .unwrap();
    assert_eq!(audit_events(&store, org.as_str()).await.len(), 641);
    for i in 0..20u8 {
        assert!(store.find_key_by_digest(&[i; 32]).await.unwrap().is_some());
    }
}

/// An audit event the database refuses does not hold back the writes behind it: its batch
/// fails (whoever waits on it learns at once), the event is held and retried on its own while
/// later batches commit, and it is written once the database takes it; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_audit_event_is_held_and_written_later_without_blocking_others() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let (audit, alerts, task) = tocsin_store::spawn_writers(store.clone());
    // First the database refuses every audit segment (an outage)...
    tocsin_store::testing::refuse_inserts(&store, "audit_segments", None).await;
    let mut poison = AuditRecord::new(Some(org.clone()), "api_key.created", "allowed");
    poison.target = Some(AuditTarget {
        kind: "api_key".into(),
        id: "poison".into(),
    });
    let poison_id = poison.id.clone();
    let mut neighbours = Vec::new();
    for _ in 0..4 {
        let event = AuditRecord::new(Some(org.clone()), "http.request", "allowed");
        neighbours.push(event.id.clone());
        audit.record(event).await;
    }
    let refused = audit.record_durable(poison).await;
    assert!(
        matches!(refused, Err(tocsin_store::StoreError::WriteFailed(_))),
        "{refused:?}"
    );
    let health = audit.health();
    assert!(health.failing, "{health:?}");
    assert_eq!(health.held_events, 5);
    // ...then only one event of the five, on its own.
    tocsin_store::testing::refuse_inserts(
        &store,
        "audit_segment_terms",
        Some("NEW.term = 't:poison'"),
    )
    .await;
    tocsin_store::testing::allow_inserts(&store, "audit_segments").await;

    // Later writes go through meanwhile.
    let created = alerts.submit(create(&org, Some("x"), None)).await.unwrap();
    assert!(created.success, "{created:?}");
    let fine = AuditRecord::new(Some(org.clone()), "api_key.updated", "allowed");
    let fine_id = fine.id.clone();
    audit.record_durable(fine).await.unwrap();
    assert!(!audit.health().failing);
    // The held events are tried again, refused together, then in halves: the four fine ones
    // are written, and only the refused one stays held.
    let mut waited = 0;
    while audit.health().held_events > 1 {
        assert!(waited < 200, "{:?}", audit.health());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    let health = audit.health();
    assert_eq!(health.held_events, 1, "{health:?}");
    let ids = |events: Vec<tocsin_store::audit::AuditEvent>| {
        events.into_iter().map(|e| e.record.id).collect::<Vec<_>>()
    };
    let written = ids(audit_events(&store, org.as_str()).await);
    assert!(written.contains(&fine_id) && !written.contains(&poison_id));
    assert!(neighbours.iter().all(|n| written.contains(n)));

    // Once the database takes it, the held event is written (it is retried with a growing
    // wait, at first 100 ms).
    tocsin_store::testing::allow_inserts(&store, "audit_segment_terms").await;
    let mut waited = 0;
    while audit.health().held_events > 0 {
        assert!(
            waited < 200,
            "the held event was not written: {:?}",
            audit.health()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    let written = ids(audit_events(&store, org.as_str()).await);
    assert!(written.contains(&poison_id), "{written:?}");
    let report = store.verify_chain(org.as_str()).await.unwrap();
    assert!(report.broken_at.is_none(), "{report:?}");
    drop((audit, alerts));
    task.await.unwrap();
}

/// On SQLite a create is answered once the alert log holds it, before the tables do. When the
/// tables refuse writes the writer holds such creates, other alert ops are refused, and a read
/// of alerts waits for them; after a stop (here the store closed under the writer), the next
/// opening of the database writes them in, and the alert is there with its request status.
/// (SQLite whatever the test backend: PostgreSQL has no alert log.)
#[tokio::test]
async fn an_accepted_alert_survives_refused_writes_and_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    store.migrate().await.unwrap();
    let org = org(&store).await;
    let (_audit, alerts, task) = tocsin_store::spawn_writers(store.clone());
    // Migrating again does not take the store's own writer for another process.
    store.migrate().await.unwrap();
    assert!(!store.alert_log_in_use());
    let before = create(&org, Some("before"), None);
    assert!(alerts.submit(before).await.unwrap().success);

    tocsin_store::testing::refuse_inserts(&store, "alert_requests", None).await;
    let accepted = create(&org, Some("accepted"), None);
    let request = accepted.request_id.clone();
    // (In milliseconds, as stored.)
    let received_from = OffsetDateTime::from_unix_timestamp_nanos(
        OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000 * 1_000_000,
    )
    .unwrap();
    // Answered without a status: the log holds it.
    assert!(alerts.accept(accepted).await.unwrap().is_none());
    let received_by = OffsetDateTime::now_utc();
    // An action behind it is refused with the database's reason.
    let ack = AlertOp {
        org_id: org.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
        integration_id: None,
        kind: OpKind::Act {
            alert_id: "before".into(),
            action: Action::Acknowledge,
            user: "bot".into(),
            note: None,
            adjustments: vec![],
        },
    };
    let refused = tokio::time::timeout(std::time::Duration::from_secs(20), alerts.submit(ack))
        .await
        .expect("the action is answered");
    assert!(refused.is_err(), "{refused:?}");

    // Stopped before the tables took it.
    store.close().await;
    drop((_audit, alerts));
    task.await.unwrap();
    assert!(
        std::fs::metadata(dir.path().join("t.db-alerts"))
            .unwrap()
            .len()
            > 0,
        "the alert log is beside the database"
    );

    // The log's appender lets go of the file once its last sender is gone (its thread ends
    // on its own, after the writer's task).
    let log = std::fs::File::open(dir.path().join("t.db-alerts")).unwrap();
    let mut waited = 0;
    while log.try_lock().is_err() {
        assert!(waited < 500, "the alert log is still locked");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    drop(log);
    let again = Store::open_sqlite(&path).await.unwrap();
    tocsin_store::testing::allow_inserts(&again, "alert_requests").await;
    again.migrate().await.unwrap();
    let alert = again
        .find_alert(&org, "accepted", IdentifierType::Alias)
        .await
        .unwrap()
        .expect("the accepted alert is written at the next opening");
    assert_eq!(alert.count, 1);
    // Its time is when it was accepted, not when the tables took it (seconds later).
    assert!(
        (received_from..=received_by).contains(&alert.created_at),
        "created {} outside {received_from}..={received_by}",
        alert.created_at
    );
    assert_eq!(alert.last_occurred_at, alert.created_at);
    let status = again.request_status(&org, &request).await.unwrap().unwrap();
    assert!(status.success, "{status:?}");
    assert_eq!(status.alert_id, alert.id);
    // Written once: another opening finds nothing more to write.
    again.close().await;
    let third = Store::open_sqlite(&path).await.unwrap();
    third.migrate().await.unwrap();
    assert_eq!(
        third
            .find_alert(&org, "accepted", IdentifierType::Alias)
            .await
            .unwrap()
            .unwrap()
            .count,
        1
    );
}

/// A repeat's time is when it was received: counted after a later one (queued out of order
/// across nodes or within a millisecond), it does not move the alert's lastOccurredAt back.
#[tokio::test]
async fn a_repeat_received_earlier_does_not_move_last_occurred_back() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let (_audit, alerts, _task) = tocsin_store::spawn_writers(store.clone());
    assert!(
        alerts
            .submit(create(&org, Some("x"), None))
            .await
            .unwrap()
            .success
    );
    let first = store
        .find_alert(&org, "x", IdentifierType::Alias)
        .await
        .unwrap()
        .unwrap();
    let mut repeat = create(&org, Some("x"), None);
    if let OpKind::Create(d) = &mut repeat.kind {
        d.received_at = Some((first.created_at - Duration::minutes(5)).unix_timestamp() * 1000);
    }
    assert!(alerts.submit(repeat).await.unwrap().success);
    let counted = store
        .find_alert(&org, "x", IdentifierType::Alias)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.count, 2);
    assert_eq!(counted.last_occurred_at, first.last_occurred_at);
    assert_eq!(counted.created_at, first.created_at);
    assert!(counted.updated_at >= first.updated_at);
}

/// While the tables refuse writes, the alert log goes on accepting new alerts until 16,384 of
/// them wait for the tables; past that, a create waits up to 5 s and is refused (the server
/// answers it 503). Nothing accepted is lost: once the tables take writes again, they hold
/// every accepted alert, and the log accepts again. (SQLite: PostgreSQL has no alert log.)
#[tokio::test]
async fn past_its_limit_the_alert_log_refuses_new_alerts_until_the_tables_catch_up() {
    const UNAPPLIED_MAX: usize = 16_384;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
    store.migrate().await.unwrap();
    let org = org(&store).await;
    let (_audit, alerts, _task) = tocsin_store::spawn_writers(store.clone());
    tocsin_store::testing::refuse_inserts(&store, "alert_requests", None).await;
    // One more than the limit, all at once: each record is appended while fewer than the
    // limit wait before it, so all are accepted.
    let mut waves = tokio::task::JoinSet::new();
    for _ in 0..=UNAPPLIED_MAX {
        let alerts = alerts.clone();
        let op = create(&org, None, None);
        waves.spawn(async move { alerts.accept(op).await });
    }
    while let Some(accepted) = waves.join_next().await {
        assert!(
            accepted.unwrap().unwrap().is_none(),
            "accepted into the log"
        );
    }
    let refused = alerts.accept(create(&org, Some("refused"), None)).await;
    match refused {
        Err(tocsin_store::StoreError::WriteFailed(why)) => assert!(
            why.contains("has not taken the alerts accepted before these for 5 s"),
            "{why}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }

    tocsin_store::testing::allow_inserts(&store, "alert_requests").await;
    let all = tocsin_store::alerts::AlertScope {
        all: true,
        teams: vec![],
    };
    let query = tocsin_core::search::Query::All;
    // The read waits for the tables to take every accepted alert (up to 10 s), ringing the
    // writer, which tries the held creates again at once (then no sooner than ten times what
    // the last try took): on a slow machine one read may still give up first.
    let mut tries = 0;
    let count = loop {
        match store.count_alerts(&org, &all, &query).await {
            Ok(n) => break n,
            Err(e) if tries < 3 => {
                tries += 1;
                eprintln!("read before the tables caught up: {e}");
            }
            Err(e) => panic!("the tables never took the accepted alerts: {e}"),
        }
    };
    assert_eq!(count, UNAPPLIED_MAX as i64 + 1);
    assert!(
        store
            .find_alert(&org, "refused", IdentifierType::Alias)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        alerts
            .accept(create(&org, Some("after"), None))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_alert(&org, "after", IdentifierType::Alias)
            .await
            .unwrap()
            .is_some()
    );
}

/// Once the store is closed the writer stops: whatever still waits on it is answered at once
/// instead of waiting on retries that cannot succeed, and its task ends.
#[tokio::test]
async fn the_writer_stops_when_the_store_is_closed() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let (audit, alerts, task) = tocsin_store::spawn_writers(store.clone());
    assert!(
        alerts
            .submit(create(&org, None, None))
            .await
            .unwrap()
            .success
    );
    audit.flush().await.unwrap();
    store.close().await;
    assert!(
        audit
            .record_durable(AuditRecord::new(
                Some(org.clone()),
                "http.request",
                "allowed",
            ))
            .await
            .is_err()
    );
    assert!(audit.flush().await.is_err());
    assert!(alerts.submit(create(&org, None, None)).await.is_err());
    task.await.expect("the writer ends without a panic");
}

/// A create whose creator may write alerts only in some teams is never counted into an open
/// alert of other teams, whether that alert was there before the batch or opened earlier in
/// it: its request fails, and the alert keeps its count and notes.
#[tokio::test]
async fn a_team_scoped_create_is_not_counted_into_another_teams_alert() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let scoped = |alias: &str, teams: &[&str], writes_in: Option<&[&str]>| {
        let mut op = create(&org, Some(alias), Some("from a team"));
        if let OpKind::Create(d) = &mut op.kind {
            d.teams = teams.iter().map(|t| t.to_string()).collect();
            d.write_teams = writes_in.map(|w| w.iter().map(|t| t.to_string()).collect());
        }
        op
    };
    let before = store
        .apply_alert_ops(&[scoped("early", &["team_y"], Some(&["team_y"]))])
        .await
        .unwrap();
    let batch = [
        scoped("early", &["team_x"], Some(&["team_x"])),
        scoped("fresh", &["team_y"], Some(&["team_y"])),
        scoped("fresh", &["team_x"], Some(&["team_x"])),
        scoped("fresh", &["team_x"], Some(&["team_x", "team_y"])),
        scoped("fresh", &[], None),
    ];
    let s = store.apply_alert_ops(&batch).await.unwrap();
    for refused in [&s[0], &s[2]] {
        assert!(!refused.success, "{refused:?}");
        assert!(
            refused.status.contains("belongs to other teams"),
            "{refused:?}"
        );
        assert!(refused.alert_id.is_empty(), "{refused:?}");
    }
    assert_eq!(s[3].alert_id, s[1].alert_id, "{s:?}");
    assert_eq!(s[4].alert_id, s[1].alert_id, "{s:?}");
    let count = |id: String| {
        let store = &store;
        let org = &org;
        async move {
            store
                .find_alert(org, &id, IdentifierType::Id)
                .await
                .unwrap()
                .unwrap()
                .count
        }
    };
    assert_eq!(count(before[0].alert_id.clone()).await, 1);
    assert_eq!(count(s[1].alert_id.clone()).await, 3);
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

/// One batch holding alert ops and the audit events of two organizations appends to both
/// chains, each event after the one before it in its own chain, with the search terms that
/// find them by key, and numbers each organization's new alerts; a later batch goes on from
/// both heads.
#[tokio::test]
async fn a_batch_appends_to_every_chain_it_holds_events_of() {
    let (_dir, store) = store().await;
    let (a, b) = (org(&store).await, org(&store).await);
    let event = |org: &OrgId, key: &KeyId| {
        let mut r = AuditRecord::new(Some(org.clone()), "http.request", "allowed");
        r.api_key_id = Some(key.clone());
        r
    };
    let (key_a, key_b) = (KeyId::generate(), KeyId::generate());
    let first = [event(&a, &key_a), event(&b, &key_b), event(&a, &key_a)];
    let s = store
        .apply_batch(
            &[
                create(&a, Some("x"), Some("on a")),
                create(&b, None, None),
                create(&a, None, None),
            ],
            &first.iter().cloned().map(Into::into).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert!(s.iter().all(|s| s.success), "{s:?}");
    let second = [event(&b, &key_b), event(&a, &key_a)];
    store
        .apply_batch(
            &[],
            &second.iter().cloned().map(Into::into).collect::<Vec<_>>(),
        )
        .await
        .unwrap();

    for (org, key, ids) in [
        (
            &a,
            &key_a,
            [&first[0], &first[2], &second[1]]
                .map(|r| r.id.clone())
                .to_vec(),
        ),
        (
            &b,
            &key_b,
            [&first[1], &second[0]].map(|r| r.id.clone()).to_vec(),
        ),
    ] {
        let report = store.verify_chain(org.as_str()).await.unwrap();
        assert!(report.broken_at.is_none(), "{report:?}");
        assert_eq!(report.events, ids.len() as i64);
        let stored: Vec<_> = audit_events(&store, org.as_str())
            .await
            .into_iter()
            .map(|e| e.record.id)
            .collect();
        assert_eq!(stored, ids);
        let by_key = AuditFilter {
            api_key_id: Some(key.to_string()),
            ..Default::default()
        };
        let page = store.list_audit(org, &by_key, 10, None).await.unwrap();
        assert_eq!(page.items.len(), ids.len());
    }
    let notes = store
        .alert_entries(&a, &s[0].alert_id, false, None, false, 100)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].text, "on a");
    let status = store.request_status(&b, &s[1].id).await.unwrap();
    assert_eq!(status.unwrap().alert_id, s[1].alert_id);
    // Each organization numbers its alerts from 1, in the batch's order.
    let mut tiny_ids = Vec::new();
    for (org, status) in [(&a, &s[0]), (&b, &s[1]), (&a, &s[2])] {
        let alert = store.find_alert(org, &status.alert_id, IdentifierType::Id);
        tiny_ids.push(alert.await.unwrap().unwrap().tiny_id);
    }
    assert_eq!(tiny_ids, [1, 1, 2]);
}

/// Migration 0009: a new alert's creation line is read off the alert itself, and the log
/// lines and notes are re-keyed by alert. An alert created before it keeps its stored lines
/// and note, each listed once and in order, and takes new lines after them.
#[tokio::test]
async fn alert_logs_written_before_0009_are_kept() {
    let (_dir, store) = unmigrated_store().await;
    tocsin_store::testing::migrate_until(&store, 8).await;
    let org = org(&store).await;
    let old = uuid::Uuid::now_v7().to_string();
    let (first, second) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    tocsin_store::on_db!(store.db(), |pool| {
        sqlx::query(
            "INSERT INTO alerts (id, org_id, tiny_id, alias, message, status, acknowledged,
               is_seen, tags, snoozed, count, last_occurred_at, created_at, updated_at, source,
               owner, priority, responders, teams, visible_to, actions, entity, description,
               details)
             VALUES ($1, $2, 1, 'old', 'disk full', 'open', false, false, '[]', false, 1, 1000,
               1000, 1000, 'test', '', 'P3', '[]', '[]', '[]', '[]', '', '', '{}')",
        )
        .bind(&old)
        .bind(org.as_str())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO alert_counters (org_id, next_tiny_id) VALUES ($1, 2)")
            .bind(org.as_str())
            .execute(pool)
            .await
            .unwrap();
        for (id, log) in [(&first, "Alert created"), (&second, "Alert acknowledged")] {
            sqlx::query(
                "INSERT INTO alert_logs (id, org_id, alert_id, log, type, owner, created_at)
                 VALUES ($1, $2, $3, $4, 'system', 'bot', 1000)",
            )
            .bind(id)
            .bind(org.as_str())
            .bind(&old)
            .bind(log)
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO alert_notes (id, org_id, alert_id, note, owner, created_at)
             VALUES ($1, $2, $3, 'looked at it', 'bot', 1000)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(org.as_str())
        .bind(&old)
        .execute(pool)
        .await
        .unwrap();
    });
    store.migrate().await.unwrap();

    let entries = |id: String, logs: bool| {
        let (store, org) = (&store, &org);
        async move {
            store
                .alert_entries(org, &id, logs, None, false, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.id, e.text, e.owner))
                .collect::<Vec<_>>()
        }
    };
    let bot = || "bot".to_owned();
    assert_eq!(
        entries(old.clone(), true).await,
        [
            (first.clone(), "Alert created".to_owned(), bot()),
            (second.clone(), "Alert acknowledged".to_owned(), bot()),
        ]
    );
    assert_eq!(entries(old.clone(), false).await.len(), 1);

    // New lines follow the stored ones; a new alert's creation line comes off the alert.
    let s = store
        .apply_alert_ops(&[
            act(&org, &old, Action::Close),
            create(&org, Some("new"), None),
        ])
        .await
        .unwrap();
    assert!(s.iter().all(|s| s.success), "{s:?}");
    let texts = |v: Vec<(String, String, String)>| v.into_iter().map(|e| e.1).collect::<Vec<_>>();
    assert_eq!(
        texts(entries(old.clone(), true).await),
        ["Alert created", "Alert acknowledged", "Alert closed by bot"]
    );
    let new = entries(s[1].alert_id.clone(), true).await;
    assert_eq!(
        new,
        [(s[1].alert_id.clone(), "Alert created".to_owned(), bot())]
    );
    // Paging walks past the creation line, both ways.
    let after = store
        .alert_entries(&org, &old, true, Some(&second), false, 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    let before = store
        .alert_entries(&org, &s[1].alert_id, true, Some(&s[1].alert_id), true, 100)
        .await
        .unwrap();
    assert!(before.is_empty(), "{before:?}");
}

/// An alert's log pages by offset in both directions, its creation line (read off the alert)
/// first, each line once.
#[tokio::test]
async fn alert_logs_page_both_ways() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let mut ops = vec![create(&org, Some("a"), None)];
    for _ in 0..5 {
        ops.push(create(&org, Some("a"), None));
    }
    let s = store.apply_alert_ops(&ops).await.unwrap();
    let alert = s[0].alert_id.clone();
    let walk = |descending: bool| {
        let (store, org, alert) = (&store, &org, &alert);
        async move {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .alert_entries(org, alert, true, after.as_deref(), descending, 2)
                    .await
                    .unwrap();
                if page.is_empty() {
                    return seen;
                }
                assert!(page.len() <= 2);
                after = page.last().map(|e| e.id.clone());
                seen.extend(page.into_iter().map(|e| (e.id, e.text)));
            }
        }
    };
    let forward = walk(false).await;
    assert_eq!(forward.len(), 6, "{forward:?}");
    assert_eq!(forward[0], (alert.clone(), "Alert created".to_owned()));
    assert!(
        forward[1..]
            .iter()
            .all(|(_, t)| t.starts_with("Alert occurred again"))
    );
    let mut backward = walk(true).await;
    backward.reverse();
    assert_eq!(backward, forward);
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

/// Events of several keys, actions and outcomes, appended over several commits (so several
/// segments), are found by every filter and paged newest first exactly as a plain scan of
/// all of them would page them.
#[tokio::test]
async fn audit_filters_and_pages_match_a_plain_scan() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let other = self::org(&store).await;
    let keys = [KeyId::generate(), KeyId::generate(), KeyId::generate()];
    let start = OffsetDateTime::now_utc() - Duration::hours(1);
    let mut all = Vec::new();
    for batch in 0..7 {
        let mut records = Vec::new();
        for i in 0..(batch * 3 + 1) {
            let n = all.len() + records.len();
            let mut r = AuditRecord::new(
                Some(org.clone()),
                if n % 5 == 0 {
                    "api_key.rotated"
                } else {
                    "http.request"
                },
                if n % 4 == 0 { "revoked_key" } else { "allowed" },
            );
            let key = &keys[(batch + i) % 3];
            r.api_key_id = Some(key.clone());
            r.actor = Some(AuditActor {
                kind: "service_account".into(),
                id: format!("sa_{}", key.as_str()),
                name: "bot".into(),
            });
            r.target = (n % 3 == 0).then(|| AuditTarget {
                kind: "api_key".into(),
                id: keys[n % 2].to_string(),
            });
            r.occurred_at = start + Duration::seconds(n as i64);
            r.user_agent = Some(format!("agent/{}", n % 2));
            records.push(r);
        }
        // Another organization's events share the commits but never its pages.
        records.push(AuditRecord::new(
            Some(other.clone()),
            "http.request",
            "allowed",
        ));
        store.append_audit(&records).await.unwrap();
        all.extend(
            records
                .into_iter()
                .filter(|r| r.org_id.as_ref() == Some(&org)),
        );
    }
    let at = |n: i64| Some(start + Duration::seconds(n));
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            api_key_id: Some(keys[1].to_string()),
            ..Default::default()
        },
        AuditFilter {
            actor_id: Some(format!("sa_{}", keys[2].as_str())),
            ..Default::default()
        },
        AuditFilter {
            target_id: Some(keys[0].to_string()),
            ..Default::default()
        },
        AuditFilter {
            action: Some("api_key.rotated".into()),
            ..Default::default()
        },
        AuditFilter {
            outcome: Some("revoked_key".into()),
            since: at(10),
            ..Default::default()
        },
        AuditFilter {
            since: at(5),
            until: at(40),
            api_key_id: Some(keys[0].to_string()),
            ..Default::default()
        },
        AuditFilter {
            api_key_id: Some(KeyId::generate().to_string()),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let want: Vec<String> = all
            .iter()
            .rev()
            .filter(|r| {
                let is =
                    |w: &Option<String>, h: Option<&str>| w.as_deref().is_none_or(|w| Some(w) == h);
                is(
                    &filter.api_key_id,
                    r.api_key_id.as_ref().map(|k| k.as_str()),
                ) && is(&filter.actor_id, r.actor.as_ref().map(|a| a.id.as_str()))
                    && is(&filter.target_id, r.target.as_ref().map(|t| t.id.as_str()))
                    && is(&filter.action, Some(&r.action))
                    && is(&filter.outcome, Some(&r.outcome))
                    && filter.since.is_none_or(|s| r.occurred_at >= s)
                    && filter.until.is_none_or(|u| r.occurred_at < u)
            })
            .map(|r| r.id.to_string())
            .collect();
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list_audit(&org, filter, 4, cursor).await.unwrap();
            assert!(page.items.len() <= 4);
            for e in &page.items {
                assert_eq!(e.record.org_id.as_ref(), Some(&org));
                assert_eq!(e.hash.len(), 64);
            }
            got.extend(page.items.iter().map(|e| e.record.id.to_string()));
            match page.next_cursor {
                Some(c) => cursor = Some(c.parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(got, want, "{filter:?}");
    }
    // What a page shows is what was appended, field by field.
    let newest = store
        .list_audit(&org, &AuditFilter::default(), 1, None)
        .await
        .unwrap();
    let (event, record) = (&newest.items[0], all.last().unwrap());
    assert_eq!(event.record.actor, record.actor);
    assert_eq!(event.record.user_agent, record.user_agent);
    assert_eq!(event.record.target, record.target);
    assert_eq!(event.seq, all.len() as i64);
}

/// Writes `n` events of `org`'s chain as rows of the table events were kept in before
/// migration 0008 (renamed `audit_events_legacy` by it), with the chain's head.
async fn legacy_rows(store: &Store, org: &OrgId, n: usize) -> Vec<AuditRecord> {
    let chain = org.as_str();
    let mut prev = GENESIS.to_owned();
    let records: Vec<AuditRecord> = (0..n)
        .map(|i| {
            let mut r = AuditRecord::new(Some(org.clone()), "http.request", "allowed");
            r.api_key_id = Some(KeyId::generate());
            r.status = Some(200 + (i as u16 % 3));
            r
        })
        .collect();
    for (i, r) in records.iter().enumerate() {
        let seq = i as i64 + 1;
        let hash = event_hash(&prev, seq, r);
        let insert = "INSERT INTO audit_events_legacy (chain, seq, id, occurred_at, api_key_id, action, outcome, status, prev_hash, hash)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let at = (r.occurred_at.unix_timestamp_nanos() / 1_000_000) as i64;
        tocsin_store::on_db!(store.db(), |pool| {
            sqlx::query(insert)
                .bind(chain)
                .bind(seq)
                .bind(r.id.as_str())
                .bind(at)
                .bind(r.api_key_id.as_ref().map(|k| k.as_str()))
                .bind(&r.action)
                .bind(&r.outcome)
                .bind(r.status.map(i64::from))
                .bind(&prev)
                .bind(&hash)
                .execute(pool)
                .await
                .unwrap();
        });
        prev = hash;
    }
    let head = "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, $2, $3)";
    tocsin_store::on_db!(store.db(), |pool| {
        sqlx::query(head)
            .bind(chain)
            .bind(n as i64)
            .bind(&prev)
            .execute(pool)
            .await
            .unwrap();
    });
    records
}

/// Legacy rows edited before the conversion are still named by verify after it: a hash that
/// is not one does not stop the node from starting, and a changed link keeps its own segment.
#[tokio::test]
async fn edited_legacy_rows_are_still_named_after_the_conversion() {
    let (_dir, store) = store().await;
    let (bad_hash, bad_link) = (org(&store).await, org(&store).await);
    let first = legacy_rows(&store, &bad_hash, 6).await;
    let second = legacy_rows(&store, &bad_link, 6).await;
    let edits = [
        (
            "UPDATE audit_events_legacy SET hash = 'not a hash' WHERE chain = $1 AND seq = 3",
            &bad_hash,
        ),
        (
            "UPDATE audit_events_legacy SET prev_hash = $2 WHERE chain = $1 AND seq = 5",
            &bad_link,
        ),
    ];
    for (sql, org) in edits {
        tocsin_store::on_db!(store.db(), |pool| {
            sqlx::query(sql)
                .bind(org.as_str())
                .bind(GENESIS)
                .execute(pool)
                .await
                .unwrap();
        });
    }
    store.migrate().await.unwrap();
    let broken = store
        .verify_chain(bad_hash.as_str())
        .await
        .unwrap()
        .broken_at
        .unwrap();
    assert_eq!(broken.event_id.as_deref(), Some(first[2].id.as_str()));
    assert!(broken.reason.contains("edited"), "{}", broken.reason);
    let broken = store
        .verify_chain(bad_link.as_str())
        .await
        .unwrap()
        .broken_at
        .unwrap();
    assert_eq!(broken.event_id.as_deref(), Some(second[4].id.as_str()));
    assert!(broken.reason.contains("link"), "{}", broken.reason);
}

/// Rows written before segments (kept as `audit_events_legacy` by migration 0008) move into
/// segments when the store is next migrated: they list and verify as before, events
/// appended afterwards continue their chain, and a gap among them is still reported.
#[tokio::test]
async fn legacy_audit_rows_move_into_segments() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let chain = org.as_str();
    let records = legacy_rows(&store, &org, 1500).await;

    store.migrate().await.unwrap();
    let report = store.verify_chain(chain).await.unwrap();
    assert_eq!(
        (report.events, report.broken_at.is_none()),
        (1500, true),
        "{report:?}"
    );
    let left: i64 = tocsin_store::on_db!(store.db(), |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events_legacy")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(left, 0);
    let by_key = AuditFilter {
        api_key_id: Some(records[700].api_key_id.as_ref().unwrap().to_string()),
        ..Default::default()
    };
    let page = store.list_audit(&org, &by_key, 10, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].record.id, records[700].id);
    assert_eq!(page.items[0].record.status, Some(200 + (700 % 3)));

    // New events continue the converted chain.
    store
        .append_audit(&[AuditRecord::new(
            Some(org.clone()),
            "http.request",
            "allowed",
        )])
        .await
        .unwrap();
    let report = store.verify_chain(chain).await.unwrap();
    assert_eq!(
        (report.events, report.broken_at.is_none()),
        (1501, true),
        "{report:?}"
    );

    // A removed event stays visible as a gap.
    tamper_audit_event(&store, chain, records[1200].id.as_str(), |_| false).await;
    let broken = store.verify_chain(chain).await.unwrap().broken_at.unwrap();
    assert_eq!(broken.event_id.as_deref(), Some(records[1201].id.as_str()));
    assert!(
        broken.reason.contains("jumps from 1200 to 1202"),
        "{}",
        broken.reason
    );
    assert_eq!(audit_events(&store, chain).await.len(), 1500);
}

/// Three events in two segments (seq 1, then 2 and 3) that verify; returns them.
async fn two_segments(store: &Store, org: &OrgId) -> Vec<tocsin_store::audit::AuditEvent> {
    let records: Vec<AuditRecord> = (0..3)
        .map(|_| AuditRecord::new(Some(org.clone()), "http.request", "allowed"))
        .collect();
    store.append_audit(&records[..1]).await.unwrap();
    store.append_audit(&records[1..]).await.unwrap();
    let report = store.verify_chain(org.as_str()).await.unwrap();
    assert!(report.broken_at.is_none(), "{report:?}");
    audit_events(store, org.as_str()).await
}

/// The chain's first break: the events verified before it, its seq, and why.
async fn first_break(store: &Store, chain: &str) -> (i64, i64, String) {
    let report = store.verify_chain(chain).await.unwrap();
    let broken = report.broken_at.expect("the chain is broken");
    (report.events, broken.seq, broken.reason)
}

/// Events stored after the chain's head (the head moved back, or a segment added by hand)
/// are named: the writer always moves the head with the events it commits.
#[tokio::test]
async fn events_stored_after_the_chain_head_break_the_chain() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let events = two_segments(&store, &org).await;
    let back = "UPDATE audit_heads SET seq = 1, hash = $2 WHERE chain = $1";
    tocsin_store::on_db!(store.db(), |pool| {
        sqlx::query(back)
            .bind(org.as_str())
            .bind(&events[0].hash)
            .execute(pool)
            .await
            .unwrap();
    });
    let (verified, seq, reason) = first_break(&store, org.as_str()).await;
    assert_eq!((verified, seq), (1, 2));
    assert!(reason.contains("stored after the chain head"), "{reason}");
    // Named by the first event past the head (review ops #16: never an empty id).
    let broken = store.verify_chain(org.as_str()).await.unwrap().broken_at;
    assert_eq!(
        broken.unwrap().event_id.as_deref(),
        Some(events[1].record.id.as_str())
    );
}

/// Review ops #16: the newest segment removed with the head left as it was is named by the
/// first missing seq and the last event found, never an empty id (text or JSON).
#[tokio::test]
async fn removed_newest_events_name_the_last_event_found() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let events = two_segments(&store, &org).await;
    let drop_newest = "DELETE FROM audit_segments WHERE chain = $1 AND first_seq = 2";
    tocsin_store::on_db!(store.db(), |pool| {
        sqlx::query(drop_newest)
            .bind(org.as_str())
            .execute(pool)
            .await
            .unwrap();
    });
    let report = store.verify_chain(org.as_str()).await.unwrap();
    assert_eq!(report.events, 1);
    let broken = report.broken_at.unwrap();
    assert_eq!(
        broken.event_id.as_deref(),
        Some(events[0].record.id.as_str())
    );
    assert_eq!(broken.seq, 1);
    assert!(broken.reason.contains("from seq 2 on"), "{}", broken.reason);
    let json = serde_json::to_value(&broken).unwrap();
    assert_eq!(json["event_id"], events[0].record.id.as_str());

    // Every segment removed: no event can be named, and the id is null, not "".
    let drop_all = "DELETE FROM audit_segments WHERE chain = $1";
    tocsin_store::on_db!(store.db(), |pool| {
        sqlx::query(drop_all)
            .bind(org.as_str())
            .execute(pool)
            .await
            .unwrap();
    });
    let broken = store
        .verify_chain(org.as_str())
        .await
        .unwrap()
        .broken_at
        .unwrap();
    assert_eq!((broken.event_id.as_deref(), broken.seq), (None, 1));
    assert!(serde_json::to_value(&broken).unwrap()["event_id"].is_null());
}

/// Review ops #11: an organization with no audit chain at all (segments, terms and head
/// deleted) is reported broken: each has at least its owner key's creation event.
#[tokio::test]
async fn an_organization_without_any_audit_chain_is_broken() {
    let (_dir, store) = store().await;
    let settled = |name: &str| Organization {
        id: OrgId::generate(),
        name: name.into(),
        max_key_days: None,
        alerts_require_integration_key: false,
        created_at: OffsetDateTime::now_utc() - Duration::minutes(5),
    };
    let (kept, emptied) = (settled("kept"), settled("emptied"));
    for o in [&kept, &emptied] {
        store.insert_org(o).await.unwrap();
        let created = AuditRecord::new(Some(o.id.clone()), "api_key.created", "allowed");
        store.append_audit(&[created]).await.unwrap();
    }
    // One being created right now, its first event not yet written, is not reported.
    let just_made = org(&store).await;
    let reports = store.verify_all_chains().await.unwrap();
    assert!(reports.iter().all(|r| r.broken_at.is_none()), "{reports:?}");

    for sql in [
        "DELETE FROM audit_segments WHERE chain = $1",
        "DELETE FROM audit_segment_terms WHERE chain = $1",
        "DELETE FROM audit_heads WHERE chain = $1",
    ] {
        tocsin_store::on_db!(store.db(), |pool| {
            sqlx::query(sql)
                .bind(emptied.id.as_str())
                .execute(pool)
                .await
                .unwrap();
        });
    }
    let reports = store.verify_all_chains().await.unwrap();
    let broken: Vec<_> = reports.iter().filter(|r| r.broken_at.is_some()).collect();
    assert_eq!(broken.len(), 1, "{reports:?}");
    assert_eq!(broken[0].chain, emptied.id.as_str());
    let why = &broken[0].broken_at.as_ref().unwrap().reason;
    assert!(why.contains("no audit events at all"), "{why}");
    assert!(reports.iter().any(|r| r.chain == kept.id.as_str()));
    assert!(reports.iter().all(|r| r.chain != just_made.as_str()));
}

/// A segment whose bytes were overwritten is named by verify, not skipped.
#[tokio::test]
async fn an_unreadable_audit_segment_breaks_the_chain() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let events = two_segments(&store, &org).await;
    let garbage = "UPDATE audit_segments SET events = $2 WHERE chain = $1 AND first_seq = 2";
    tocsin_store::on_db!(store.db(), |pool| {
        sqlx::query(garbage)
            .bind(org.as_str())
            .bind(vec![1u8, 200, 7])
            .execute(pool)
            .await
            .unwrap();
    });
    let (verified, seq, reason) = first_break(&store, org.as_str()).await;
    assert_eq!((verified, seq), (1, 2));
    assert!(reason.contains("cannot be read"), "{reason}");
    // Listings leave the damaged segment out and still show the rest.
    let page = store
        .list_audit(&org, &AuditFilter::default(), 10, None)
        .await
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|e| e.record.id.clone()).collect();
    assert_eq!(ids, vec![events[0].record.id.clone()]);
}

/// Listings choose segments by their rows' bounds and search terms, so editing those could
/// hide events from a listing while every event still verifies: verify names such edits.
#[tokio::test]
async fn editing_a_segment_index_to_hide_events_breaks_the_chain() {
    let edits = [
        "DELETE FROM audit_segment_terms WHERE chain = $1 AND first_seq = 3 AND term LIKE 'k:%'",
        "INSERT INTO audit_segment_terms (chain, term, first_seq) VALUES ($1, 'k:key_other', 3)",
        "UPDATE audit_segments SET last_at = first_at - 1000 WHERE chain = $1 AND first_seq = 3",
        "UPDATE audit_segments SET first_at = last_at + 1000 WHERE chain = $1 AND first_seq = 3",
        "UPDATE audit_segments SET last_seq = 3 WHERE chain = $1 AND first_seq = 3",
        "UPDATE audit_segments SET first_seq = 4 WHERE chain = $1 AND first_seq = 3",
    ];
    for edit in edits {
        let (_dir, store) = store().await;
        let org = org(&store).await;
        let key = KeyId::generate();
        let records: Vec<AuditRecord> = (0..6)
            .map(|_| {
                let mut r = AuditRecord::new(Some(org.clone()), "http.request", "allowed");
                r.api_key_id = Some(key.clone());
                r
            })
            .collect();
        for pair in records.chunks(2) {
            store.append_audit(pair).await.unwrap();
        }
        let chain = org.as_str();
        assert!(store.verify_chain(chain).await.unwrap().broken_at.is_none());
        tocsin_store::on_db!(store.db(), |pool| {
            sqlx::query(edit).bind(chain).execute(pool).await.unwrap();
        });
        let report = store.verify_chain(chain).await.unwrap();
        let broken = report
            .broken_at
            .unwrap_or_else(|| panic!("verify passed after: {edit}"));
        // Named by the segment's first event (review ops #16), whose seq is 3 even when
        // the row's first_seq is what was edited.
        assert_eq!(broken.seq, 3, "{edit}");
        assert_eq!(
            broken.event_id.as_deref(),
            Some(records[2].id.as_str()),
            "{edit}"
        );
        assert_eq!(report.events, 4, "{edit}");
        assert!(
            broken.reason.contains("hidden from listings"),
            "{edit}: {}",
            broken.reason
        );
    }
}

/// Migration 0010: a user's email is unique within its organization only. The users table is
/// rebuilt on SQLite while sessions and team memberships point at its rows: every user, its
/// password hash, its session and its membership come through, no reference is left
/// dangling, and afterwards another organization may hold the same email while the first
/// still may not hold it twice.
#[tokio::test]
async fn users_come_through_0010_with_their_sessions_and_memberships() {
    let (_dir, store) = unmigrated_store().await;
    tocsin_store::testing::migrate_until(&store, 9).await;
    let (a, b) = (org(&store).await, org(&store).await);
    let now = OffsetDateTime::now_utc();
    let ann = User {
        id: UserId::generate(),
        org_id: a.clone(),
        email: "Ann@Example.com".into(),
        name: "Ann".into(),
        role_name: "admin".into(),
        active: true,
        created_at: now,
        updated_at: now,
    };
    store.insert_user(&ann, Some("argon2 hash")).await.unwrap();
    let others = [user(&store, &a).await, user(&store, &b).await];
    let session = tocsin_store::users::Session {
        id: tocsin_core::SessionId::generate(),
        org_id: a.clone(),
        user_id: ann.id.clone(),
        expires_at: now + Duration::hours(1),
    };
    store.insert_session(&session, &[7; 32]).await.unwrap();
    let team = tocsin_store::teams::Team {
        id: tocsin_core::TeamId::generate(),
        org_id: a.clone(),
        name: "payments".into(),
        description: String::new(),
        created_at: now,
        updated_at: now,
    };
    store.insert_team(&team).await.unwrap();
    store
        .put_member(&a, &team.id, &ann.id, &["responder".to_owned()], Any)
        .await
        .unwrap();
    // Before 0010, the email is taken everywhere.
    let mut in_b = User {
        id: UserId::generate(),
        org_id: b.clone(),
        email: "ann@example.com".into(),
        created_at: now + Duration::seconds(1),
        ..ann.clone()
    };
    assert!(store.insert_user(&in_b, None).await.is_err());

    store.migrate().await.unwrap();

    let found = store
        .find_login_candidates("ANN@example.com", 16)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].user.id, ann.id);
    assert_eq!(found[0].user.email, "Ann@Example.com");
    assert_eq!(found[0].password_hash.as_deref(), Some("argon2 hash"));
    for (org, id) in [(&a, &others[0]), (&b, &others[1])] {
        assert_eq!(store.get_user(org, id).await.unwrap().id, *id);
    }
    assert_eq!(store.count_users(&a).await.unwrap(), 2);
    let kept = store.find_session(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(kept.user_id, ann.id);
    let memberships = store.memberships_of(&a, &ann.id).await.unwrap();
    assert_eq!(memberships.len(), 1);
    if let tocsin_store::Db::Sqlite(pool) = store.db() {
        let dangling: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(dangling.is_empty(), "{dangling:?}");
        // The rebuilt table's indexes are there, and the copy is gone.
        let (indexes,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'users' AND name IN ('users_org', 'users_email')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(indexes, 2);
        let (copies,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM sqlite_master WHERE name = 'users_before_0010'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(copies, 0);
    }

    // Another organization may now hold the same email; the same one still may not.
    store
        .insert_user(&in_b, Some("argon2 hash b"))
        .await
        .unwrap();
    let both = store
        .find_login_candidates("ann@example.com", 16)
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(
        store
            .find_org_user_by_email(&b, "ANN@EXAMPLE.COM")
            .await
            .unwrap()
            .unwrap()
            .user
            .id,
        in_b.id
    );
    in_b.id = UserId::generate();
    in_b.email = "ANN@example.com".into();
    assert!(store.insert_user(&in_b, None).await.is_err());
    // The login's bound: at most `limit` users, oldest first.
    assert_eq!(
        store
            .find_login_candidates("ann@example.com", 1)
            .await
            .unwrap()[0]
            .user
            .id,
        ann.id
    );
}

fn custom_role(name: &str) -> tocsin_core::role::Role {
    tocsin_core::role::Role {
        name: name.into(),
        description: String::new(),
        scope: tocsin_core::role::RoleScope::Account,
        permissions: [tocsin_core::permission::Permission::AlertsRead]
            .into_iter()
            .collect(),
        builtin: false,
    }
}

/// A key is written only while the roles, teams and integration it names exist: a delete
/// that won a race with the create (which checked them first) leaves nothing dangling.
#[tokio::test]
async fn a_key_naming_what_was_deleted_is_not_written() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let expires = OffsetDateTime::now_utc() + Duration::days(1);
    let mut ghost_role = personal_key(&org, &user, expires);
    ghost_role.role_names = vec!["viewer".into(), "gone".into()];
    let mut ghost_team = personal_key(&org, &user, expires);
    ghost_team.team_ids = vec![tocsin_core::TeamId::generate()];
    let mut ghost_integration = personal_key(&org, &user, expires);
    ghost_integration.integration_id = Some("int_gone".into());
    for (key, what) in [
        (&ghost_role, "account role `gone`"),
        (&ghost_team, "team"),
        (&ghost_integration, "integration `int_gone`"),
    ] {
        match store.insert_key(key, &[7; 32], None).await {
            Err(tocsin_store::StoreError::Vanished(named)) => {
                assert!(named.starts_with(what), "{named}")
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(store.get_key(&org, &key.id).await.is_err());
    }
    // With the role there, the same key is written, and the role cannot be deleted under it.
    store.insert_role(&org, &custom_role("gone")).await.unwrap();
    store.insert_key(&ghost_role, &[7; 32], None).await.unwrap();
    let usage = store.delete_role_unless_held(&org, "gone").await.unwrap();
    assert_eq!(usage.keys, 1);
    assert_eq!(store.list_custom_roles(&org).await.unwrap().len(), 1);
    store
        .revoke_key(
            &org,
            &ghost_role.id,
            &Actor {
                kind: "user".into(),
                id: user.to_string(),
                name: "u".into(),
            },
        )
        .await
        .unwrap();
    let usage = store.delete_role_unless_held(&org, "gone").await.unwrap();
    assert_eq!(usage.total(), 0);
    assert!(store.list_custom_roles(&org).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_role_unless_held(&org, "gone").await,
        Err(tocsin_store::StoreError::NotFound)
    ));
}

/// A role deleted while keys that hold it are created: whichever order the two land in, no
/// live key is left holding a role that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_role_never_strands_a_key_created_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let expires = OffsetDateTime::now_utc() + Duration::days(1);
    for round in 0..20 {
        let name = format!("racing{round}");
        store.insert_role(&org, &custom_role(&name)).await.unwrap();
        let mut key = personal_key(&org, &user, expires);
        key.name = name.clone();
        key.role_names = vec![name.clone()];
        let (created, deleted) = tokio::join!(
            {
                let store = store.clone();
                let key = key.clone();
                async move { store.insert_key(&key, &[round as u8; 32], None).await }
            },
            {
                let (store, org, name) = (store.clone(), org.clone(), name.clone());
                async move { store.delete_role_unless_held(&org, &name).await }
            }
        );
        let role_left = store
            .list_custom_roles(&org)
            .await
            .unwrap()
            .iter()
            .any(|r| r.name == name);
        match created {
            Ok(()) => assert!(role_left, "round {round}: the key holds a deleted role"),
            Err(tocsin_store::StoreError::Vanished(_)) => {
                assert!(!role_left && deleted.unwrap().total() == 0, "round {round}")
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

/// A team deleted while a key granted on it is created: either the key blocks the delete,
/// or the team is gone and the key is not written. Never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_team_never_strands_a_key_created_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let now = OffsetDateTime::now_utc();
    for round in 0..20u8 {
        let team = tocsin_store::teams::Team {
            id: tocsin_core::TeamId::generate(),
            org_id: org.clone(),
            name: format!("team {round}"),
            description: String::new(),
            created_at: now,
            updated_at: now,
        };
        store.insert_team(&team).await.unwrap();
        let mut key = personal_key(&org, &user, now + Duration::days(1));
        key.name = format!("key {round}");
        key.team_ids = vec![team.id.clone()];
        let (created, deleted) = tokio::join!(
            {
                let (store, key) = (store.clone(), key.clone());
                async move { store.insert_key(&key, &[round; 32], None).await }
            },
            {
                let (store, org, id) = (store.clone(), org.clone(), team.id.clone());
                async move { store.delete_team_unless_used(&org, &id, 10).await }
            }
        );
        match (created, deleted) {
            (Ok(()), Ok(used)) if used.keys == 1 => {}
            (Err(tocsin_store::StoreError::Vanished(_)), Ok(used)) if used.is_empty() => {}
            other => panic!("round {round}: {other:?}"),
        }
    }
}

/// A new team named `name`.
async fn team(store: &Store, org: &OrgId, name: &str) -> tocsin_core::TeamId {
    let now = OffsetDateTime::now_utc();
    let team = tocsin_store::teams::Team {
        id: tocsin_core::TeamId::generate(),
        org_id: org.clone(),
        name: name.into(),
        description: String::new(),
        created_at: now,
        updated_at: now,
    };
    store.insert_team(&team).await.unwrap();
    team.id
}

/// Runs `write`, which gives custom role `name` to someone, and the role's delete at the same
/// moment: either the write is counted and the role stays, or the role is gone and the write
/// refused (`Vanished`). Never a holder of a deleted role.
async fn race_role_delete<T: std::fmt::Debug>(
    store: &Store,
    org: &OrgId,
    name: &str,
    round: u32,
    write: impl std::future::Future<Output = tocsin_store::Result<T>>,
) {
    let (written, deleted) = tokio::join!(write, store.delete_role_unless_held(org, name));
    let deleted = deleted.unwrap();
    let role_left = store
        .list_custom_roles(org)
        .await
        .unwrap()
        .iter()
        .any(|r| r.name == name);
    match written {
        Ok(_) => assert!(
            role_left && deleted.total() > 0,
            "round {round}: a holder of a deleted role ({deleted:?})"
        ),
        Err(tocsin_store::StoreError::Vanished(_)) => assert!(
            !role_left && deleted.total() == 0,
            "round {round}: refused, yet the role was not deleted ({deleted:?})"
        ),
        Err(e) => panic!("round {round}: {e}"),
    }
}

/// Runs `write`, which places something in `team`, and the team's delete at the same moment:
/// either the new dependent blocks the delete (it is counted), or the team is gone and the
/// write refused (`Vanished`). Never both.
async fn race_team_delete<T: std::fmt::Debug>(
    store: &Store,
    org: &OrgId,
    team: &tocsin_core::TeamId,
    round: u32,
    write: impl std::future::Future<Output = tocsin_store::Result<T>>,
) {
    match tokio::join!(write, store.delete_team_unless_used(org, team, 10)) {
        (Ok(_), Ok(used)) if !used.is_empty() => {}
        (Err(tocsin_store::StoreError::Vanished(_)), Ok(used)) if used.is_empty() => {}
        other => panic!("round {round}: {other:?}"),
    }
}

/// A PATCH that gives a key a role (`role_names` or `team_role_names`) while the role is
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_role_never_strands_a_key_given_it_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let expires = OffsetDateTime::now_utc() + Duration::days(1);
    for round in 0..20u32 {
        let name = format!("patched{round}");
        store.insert_role(&org, &custom_role(&name)).await.unwrap();
        let mut key = personal_key(&org, &user, expires);
        key.name = name.clone();
        store
            .insert_key(&key, &[round as u8; 32], None)
            .await
            .unwrap();
        let roles = Some(vec![name.clone()]);
        let patch = if round % 2 == 0 {
            tocsin_store::keys::KeyPatch {
                role_names: roles,
                ..Default::default()
            }
        } else {
            tocsin_store::keys::KeyPatch {
                team_role_names: roles,
                ..Default::default()
            }
        };
        let write = store.update_key(&org, &key.id, &patch);
        race_role_delete(&store, &org, &name, round, write).await;
    }
}

/// A user created with, or changed to, a custom account role while the role is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_role_never_strands_a_user_given_it_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let now = OffsetDateTime::now_utc();
    for round in 0..20u32 {
        let name = format!("userrole{round}");
        store.insert_role(&org, &custom_role(&name)).await.unwrap();
        let mut u = User {
            id: UserId::generate(),
            org_id: org.clone(),
            email: format!("racing{round}@example.com"),
            name: "u".into(),
            role_name: name.clone(),
            active: true,
            created_at: now,
            updated_at: now,
        };
        if round % 2 == 0 {
            let write = store.insert_user(&u, None);
            race_role_delete(&store, &org, &name, round, write).await;
        } else {
            u.role_name = "responder".into();
            store.insert_user(&u, None).await.unwrap();
            let patch = tocsin_store::users::UserPatch {
                role_name: Some(name.clone()),
                ..Default::default()
            };
            let write = store.update_user(&org, &u.id, &patch);
            race_role_delete(&store, &org, &name, round, write).await;
        }
    }
}

/// A membership given a custom team role while the role is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_role_never_strands_a_membership_given_it_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let team = team(&store, &org, "t").await;
    for round in 0..20u32 {
        let name = format!("teamrole{round}");
        store.insert_role(&org, &custom_role(&name)).await.unwrap();
        let roles = vec!["responder".to_owned(), name.clone()];
        let write = store.put_member(&org, &team, &user, &roles, Any);
        race_role_delete(&store, &org, &name, round, write).await;
    }
}

/// A membership put while its team is deleted: either the membership went with the team,
/// or the team was gone and the put refused. No membership of a deleted team is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_team_leaves_no_membership_put_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    for round in 0..20u32 {
        let team = team(&store, &org, &format!("team {round}")).await;
        let roles = vec!["responder".to_owned()];
        let (put, deleted) = tokio::join!(
            store.put_member(&org, &team, &user, &roles, Any),
            store.delete_team_unless_used(&org, &team, 10)
        );
        assert!(deleted.unwrap().is_empty(), "round {round}");
        match put {
            Ok(()) | Err(tocsin_store::StoreError::Vanished(_)) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
        let left = store.memberships_of(&org, &user).await.unwrap();
        assert!(
            left.iter().all(|m| m.team_id != team),
            "round {round}: a membership of a deleted team"
        );
    }
}

/// An integration created for a team while the team is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_team_never_strands_an_integration_created_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let now = OffsetDateTime::now_utc();
    for round in 0..20u32 {
        let team = team(&store, &org, &format!("team {round}")).await;
        let integration = tocsin_store::integrations::Integration {
            id: tocsin_core::IntegrationId::generate(),
            org_id: org.clone(),
            name: format!("integration {round}"),
            kind: "API".into(),
            team_id: Some(team.clone()),
            flags: Default::default(),
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        let write = store.insert_integration(&integration);
        race_team_delete(&store, &org, &team, round, write).await;
    }
}

/// A heartbeat created for, or moved to, an owner team while the team is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_team_never_strands_a_heartbeat_given_it_at_the_same_moment() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    for round in 0..20u32 {
        let team = team(&store, &org, &format!("team {round}")).await;
        let mut h = tocsin_store::heartbeats::Heartbeat {
            org_id: org.clone(),
            name: format!("heartbeat {round}"),
            description: String::new(),
            interval: 10,
            interval_unit: "minutes".into(),
            enabled: true,
            owner_team_id: None,
            alert_message: "expired".into(),
            alert_tags: vec![],
            alert_priority: "P3".into(),
            last_ping_at: None,
            enabled_at: None,
            expired: false,
            created_at: OffsetDateTime::now_utc(),
        };
        if round % 2 == 0 {
            h.owner_team_id = Some(team.to_string());
            let write = store.insert_heartbeat(&h);
            race_team_delete(&store, &org, &team, round, write).await;
        } else {
            store.insert_heartbeat(&h).await.unwrap();
            h.owner_team_id = Some(team.to_string());
            let write = store.update_heartbeat(&h);
            race_team_delete(&store, &org, &team, round, write).await;
        }
    }
}

fn heartbeat(
    org: &OrgId,
    name: &str,
    created_at: OffsetDateTime,
) -> tocsin_store::heartbeats::Heartbeat {
    tocsin_store::heartbeats::Heartbeat {
        org_id: org.clone(),
        name: name.into(),
        description: String::new(),
        interval: 10,
        interval_unit: "minutes".into(),
        enabled: true,
        owner_team_id: None,
        alert_message: "missed".into(),
        alert_tags: vec![],
        alert_priority: "P3".into(),
        last_ping_at: None,
        enabled_at: None,
        expired: false,
        created_at,
    }
}

/// A missed heartbeat's alert is owed until it is raised: a sweep that took it and then
/// stopped (or failed to write the alert) leaves it to a later sweep, and only the alert
/// being raised, a ping or switching it on again clears what is owed.
#[tokio::test]
async fn a_missed_heartbeat_is_taken_again_until_its_alert_is_raised() {
    use tocsin_store::heartbeats::CLAIM_RETRY_MS;
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let t0 = OffsetDateTime::now_utc() - Duration::days(1);
    let h = heartbeat(&org, "nightly", t0);
    store.insert_heartbeat(&h).await.unwrap();
    let names = |taken: Vec<tocsin_store::heartbeats::Heartbeat>| {
        taken
            .into_iter()
            .map(|h| (h.name, h.expired))
            .collect::<Vec<_>>()
    };
    let take = |at: OffsetDateTime| store.take_expired_heartbeats(at);

    assert!(
        take(t0 + Duration::minutes(9)).await.unwrap().is_empty(),
        "not due yet"
    );
    let first = t0 + Duration::minutes(11);
    assert_eq!(
        names(take(first).await.unwrap()),
        [("nightly".to_owned(), true)]
    );
    assert!(
        store
            .get_heartbeat(&org, "nightly")
            .await
            .unwrap()
            .unwrap()
            .expired
    );
    // Taken: a sweep at the same moment or soon after leaves it to the first.
    assert!(take(first).await.unwrap().is_empty());
    let retry = Duration::milliseconds(CLAIM_RETRY_MS);
    assert!(
        take(first + retry - Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    // The first sweep stopped before raising the alert: a later one takes it again.
    let second = first + retry;
    assert_eq!(
        names(take(second).await.unwrap()),
        [("nightly".to_owned(), true)]
    );
    // The first sweep's word comes late: it clears nothing of the second's claim.
    store.heartbeat_alert_raised(&h, first).await.unwrap();
    store.heartbeat_alert_failed(&h, first).await.unwrap();
    assert!(
        take(second + Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    // The second could not write the alert: the next sweep, 15 s on, takes it again.
    store.heartbeat_alert_failed(&h, second).await.unwrap();
    let third = second + Duration::seconds(15);
    assert_eq!(take(third).await.unwrap().len(), 1);
    // Raised: nothing more is owed, however long it stays expired.
    store.heartbeat_alert_raised(&h, third).await.unwrap();
    assert!(take(third + Duration::days(1)).await.unwrap().is_empty());

    // A ping clears what is owed: taken, then pinged before its alert was raised.
    let ping_at = third + Duration::minutes(1);
    store.ping_heartbeat(&h, ping_at).await.unwrap();
    assert_eq!(
        take(ping_at + Duration::minutes(11)).await.unwrap().len(),
        1
    );
    store
        .ping_heartbeat(&h, ping_at + Duration::minutes(12))
        .await
        .unwrap();
    assert!(
        take(ping_at + Duration::minutes(12) + retry)
            .await
            .unwrap()
            .is_empty()
    );

    // So does switching it off and on again (watched afresh from then), and a disabled
    // heartbeat is owed nothing while it is off.
    let pinged = store.get_heartbeat(&org, "nightly").await.unwrap().unwrap();
    let due = ping_at + Duration::minutes(23);
    assert_eq!(take(due).await.unwrap().len(), 1);
    let mut off = pinged.clone();
    off.enabled = false;
    store.update_heartbeat(&off).await.unwrap();
    assert!(take(due + retry).await.unwrap().is_empty(), "disabled");
    let mut on = pinged;
    on.enabled = true;
    on.enabled_at = Some(due + retry);
    store.update_heartbeat(&on).await.unwrap();
    let after = store.get_heartbeat(&org, "nightly").await.unwrap().unwrap();
    assert!(!after.expired);
    assert!(
        take(due + retry + Duration::minutes(9))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        take(due + retry + Duration::minutes(11))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Two sweeps at the same moment (two nodes on PostgreSQL, or two tasks on one SQLite file)
/// share the missed heartbeats between them: each is taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweeps_at_once_take_each_missed_heartbeat_once() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let t0 = OffsetDateTime::now_utc() - Duration::days(1);
    for i in 0..20 {
        store
            .insert_heartbeat(&heartbeat(&org, &format!("hb {i}"), t0))
            .await
            .unwrap();
    }
    let at = t0 + Duration::hours(1);
    let (a, b) = tokio::join!(
        store.take_expired_heartbeats(at),
        store.take_expired_heartbeats(at)
    );
    let mut names: Vec<String> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|h| h.name)
        .collect();
    assert_eq!(names.len(), 20, "taken twice or not at all: {names:?}");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "a heartbeat taken twice");
}

/// The change log that tells every node to drop its cached credentials is written by the
/// change itself (migration 0012's triggers), in its own transaction: by every store write
/// that can alter a credential, and by raw SQL too. The background sweeps' writes to
/// api_keys (last use, the expiry's audit mark) are not changes, and leave it alone.
#[tokio::test]
async fn a_credential_change_writes_the_change_log_itself() {
    use tocsin_store::testing::{columns, execute};
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let now = OffsetDateTime::now_utc();
    let key = personal_key(&org, &user, now - Duration::minutes(1));
    store.insert_key(&key, &[7; 32], None).await.unwrap();
    let team = team(&store, &org, "ops").await;
    let log = || store.credential_changes_above(0);
    let (_, mut seen) = log().await.unwrap();

    // Not changes: the sweeps' own columns.
    store
        .touch_keys(&[(key.id.clone(), now, "192.0.2.1".into())])
        .await
        .unwrap();
    assert_eq!(store.take_newly_expired(now).await.unwrap().len(), 1);
    assert_eq!(
        log().await.unwrap().1,
        seen,
        "the sweeps announced a change"
    );

    // Every other column of api_keys is part of a credential: setting any of them (even to
    // what it was) is one change. A column added later without its trigger fails here.
    let unwatched = ["last_used_at", "last_used_ip", "expiry_recorded"];
    for column in columns(&store, "api_keys").await {
        let sql = format!(
            "UPDATE api_keys SET {column} = {column} WHERE id = '{}'",
            key.id
        );
        assert_eq!(execute(&store, &sql).await, 1);
        let (_, count) = log().await.unwrap();
        if unwatched.contains(&column.as_str()) {
            assert_eq!(count, seen, "setting api_keys.{column} announced a change");
        } else {
            assert_eq!(
                count,
                seen + 1,
                "setting api_keys.{column} was not announced"
            );
        }
        seen = count;
    }

    // The store's own writes, each one change per row it alters.
    let mut pager = custom_role("pager");
    pager.scope = tocsin_core::role::RoleScope::Team;
    store.insert_role(&org, &pager).await.unwrap();
    seen += 1;
    assert_eq!(log().await.unwrap().1, seen, "a new role");
    store
        .put_member(&org, &team, &user, &["pager".into()], Any)
        .await
        .unwrap();
    seen += 1;
    assert_eq!(log().await.unwrap().1, seen, "a new membership");
    let by = Actor {
        kind: "user".into(),
        id: user.to_string(),
        name: "u".into(),
    };
    store.revoke_key(&org, &key.id, &by).await.unwrap();
    assert!(log().await.unwrap().1 > seen, "a revocation");
    let (_, count) = log().await.unwrap();
    seen = count;
    // Raw SQL on any credential table, as an operator might run it.
    for table in [
        "organizations",
        "users",
        "teams",
        "team_members",
        "roles",
        "api_key_tokens",
    ] {
        let first = columns(&store, table).await.remove(0);
        let touched = execute(&store, &format!("UPDATE {table} SET {first} = {first}")).await;
        assert!(touched > 0, "no {table} row to update");
        let (_, count) = log().await.unwrap();
        assert_eq!(count, seen + touched as i64, "an update of {table}");
        seen = count;
    }
    // The newest id follows the count.
    let (newest, _) = log().await.unwrap();
    assert_eq!(
        store.credential_changes_above(newest).await.unwrap(),
        (0, 0)
    );
    assert_eq!(
        store.credential_changes_above(newest - 1).await.unwrap(),
        (newest, 1)
    );
}

/// A role's scope change racing a write that gives the role in the scope being dropped: either
/// the change counts the new holder and is refused, or it wins and the write finds no role of
/// that scope (`Vanished`). Never a key holding a team role as an account role, nor a
/// membership holding an account role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_scope_change_never_strands_a_holder_given_it_at_the_same_moment() {
    use tocsin_core::role::RoleScope;
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let team = team(&store, &org, "ops").await;
    let expires = OffsetDateTime::now_utc() + Duration::days(1);
    for round in 0..20u32 {
        // An account role becomes a team role while a key is given it in `role_names`.
        let name = format!("acct{round}");
        store.insert_role(&org, &custom_role(&name)).await.unwrap();
        let mut key = personal_key(&org, &user, expires);
        key.name = name.clone();
        key.role_names = vec![name.clone()];
        let mut to_team = custom_role(&name);
        to_team.scope = RoleScope::Team;
        let digest = [round as u8; 32];
        let (written, changed) = tokio::join!(
            store.insert_key(&key, &digest, None),
            store.update_role_unless_held(&org, &to_team)
        );
        let scope = |roles: Vec<tocsin_core::role::Role>, name: &str| {
            roles.into_iter().find(|r| r.name == name).map(|r| r.scope)
        };
        let now = scope(store.list_custom_roles(&org).await.unwrap(), &name);
        match (written, changed.unwrap()) {
            (Ok(()), Some((RoleScope::Account, usage))) => {
                assert_eq!(usage.keys_account, 1, "round {round}");
                assert_eq!(now, Some(RoleScope::Account), "round {round}");
            }
            (Err(tocsin_store::StoreError::Vanished(what)), None) => {
                assert_eq!(what, format!("account role `{name}`"), "round {round}");
                assert_eq!(now, Some(RoleScope::Team), "round {round}");
            }
            other => panic!("round {round}: {other:?}, the role is now {now:?}"),
        }

        // A team role becomes an account role while a membership is given it.
        let name = format!("team{round}");
        let mut team_role = custom_role(&name);
        team_role.scope = RoleScope::Team;
        store.insert_role(&org, &team_role).await.unwrap();
        let to_account = custom_role(&name);
        let (written, changed) = tokio::join!(
            store.put_member(&org, &team, &user, std::slice::from_ref(&name), Any),
            store.update_role_unless_held(&org, &to_account)
        );
        let now = scope(store.list_custom_roles(&org).await.unwrap(), &name);
        match (written, changed.unwrap()) {
            (Ok(()), Some((RoleScope::Team, usage))) => {
                assert_eq!(usage.memberships, 1, "round {round}");
                assert_eq!(now, Some(RoleScope::Team), "round {round}");
            }
            (Err(tocsin_store::StoreError::Vanished(what)), None) => {
                assert_eq!(what, format!("team role `{name}`"), "round {round}");
                assert_eq!(now, Some(RoleScope::Account), "round {round}");
            }
            other => panic!("round {round}: {other:?}, the role is now {now:?}"),
        }
        // The next round's membership starts from none.
        store
            .delete_member(&org, &team, &user, Any)
            .await
            .unwrap_or_default();
    }
}

/// A membership is written or removed only while it is what the caller judged (`was`): a
/// change landing between the route's check and its write refuses the write (`Changed`)
/// rather than being overwritten.
#[tokio::test]
async fn a_membership_changes_only_from_what_was_judged() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let team = team(&store, &org, "ops").await;
    let roles = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let (viewer, admin) = (roles(&["viewer"]), roles(&["team_admin"]));
    let changed = |r: tocsin_store::Result<()>| {
        assert!(
            matches!(&r, Err(tocsin_store::StoreError::Changed(what)) if what.contains(user.as_str())),
            "{r:?}"
        )
    };
    let held = || async {
        store.memberships_of(&org, &user).await.unwrap()[0]
            .team_role_names
            .clone()
    };
    store
        .put_member(&org, &team, &user, &viewer, Absent)
        .await
        .unwrap();
    // Judged absent, but made meanwhile: not replaced.
    changed(store.put_member(&org, &team, &user, &admin, Absent).await);
    // Promoted meanwhile (the caller judged a viewer): neither changed nor removed.
    store
        .put_member(&org, &team, &user, &admin, Roles(&viewer))
        .await
        .unwrap();
    changed(
        store
            .put_member(&org, &team, &user, &viewer, Roles(&viewer))
            .await,
    );
    changed(
        store
            .delete_member(&org, &team, &user, Roles(&viewer))
            .await,
    );
    assert_eq!(held().await, admin);
    // As judged: written.
    store
        .put_member(&org, &team, &user, &viewer, Roles(&admin))
        .await
        .unwrap();
    assert_eq!(held().await, viewer);
    // Judged absent (nothing of the member was checked), made meanwhile: not removed.
    changed(store.delete_member(&org, &team, &user, Absent).await);
    store
        .delete_member(&org, &team, &user, Roles(&viewer))
        .await
        .unwrap();
    assert!(store.memberships_of(&org, &user).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_member(&org, &team, &user, Absent).await,
        Err(tocsin_store::StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .delete_member(&org, &team, &user, MembershipWas::Any)
            .await,
        Err(tocsin_store::StoreError::NotFound)
    ));
}

/// Pruning the change log never moves what a poll counts: rows older than an hour go only
/// when they lie more than two poll windows below the newest.
#[tokio::test]
async fn pruning_the_change_log_keeps_the_rows_a_poll_counts() {
    use tocsin_store::changes::CHANGE_WINDOW;
    use tocsin_store::testing::execute;
    let (_dir, store) = store().await;
    let (start, _) = store.credential_changes_above(0).await.unwrap();
    execute(
        &store,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
         INSERT INTO credential_changes (at) SELECT 0 FROM n",
    )
    .await;
    let (newest, _) = store.credential_changes_above(0).await.unwrap();
    assert_eq!(newest, start + 2500);
    let window = store
        .credential_changes_above(newest - CHANGE_WINDOW)
        .await
        .unwrap();
    store.prune_credential_changes().await.unwrap();
    assert_eq!(
        store
            .credential_changes_above(newest - CHANGE_WINDOW)
            .await
            .unwrap(),
        window
    );
    // Everything from two windows below the newest is kept; the older rows are gone.
    assert_eq!(
        store.credential_changes_above(0).await.unwrap(),
        (newest, 2 * CHANGE_WINDOW + 1)
    );
}

/// A membership change waits for a change of its user in flight. `update_user` locks the
/// user's row, then reads their memberships to compare them with what the caller judged: a
/// promotion written between that read and the change's commit would slip past the compare.
/// On PostgreSQL a membership share-locks its user's row (a new one's foreign key already
/// did, a change of an existing one's roles did not); on SQLite every writer waits for the
/// one in flight, so only the PostgreSQL run tests the lock.
#[tokio::test]
async fn a_membership_change_waits_for_a_change_of_its_user_in_flight() {
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let (ops, db) = (
        team(&store, &org, "ops").await,
        team(&store, &org, "db").await,
    );
    let viewer = ["viewer".to_owned()];
    let admin = ["team_admin".to_owned()];
    store
        .put_member(&org, &ops, &user, &viewer, Absent)
        .await
        .unwrap();
    for (team, was) in [(&ops, Roles(&viewer)), (&db, Absent)] {
        let held =
            tocsin_store::testing::hold_row(&store, "users", org.as_str(), user.as_str()).await;
        let put = store.put_member(&org, team, &user, &admin, was);
        tokio::pin!(put);
        // Not written while the change holds the user (without the lock it takes
        // milliseconds).
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(500), &mut put)
                .await
                .is_err(),
            "team {team}: the membership was written under a change of its user in flight"
        );
        held.release().await;
        put.await.unwrap();
    }
    let memberships = store.memberships_of(&org, &user).await.unwrap();
    assert_eq!(memberships.len(), 2);
    assert!(memberships.iter().all(|m| m.team_role_names == admin));
}

/// A user is changed only while they hold what the caller's no-escalation check judged
/// (`UserPatch::was`): a promotion, or a new membership, landing in between refuses the
/// change (`Changed`), password included, instead of being undone by a weaker caller.
#[tokio::test]
async fn a_user_changes_only_from_what_was_judged() {
    use tocsin_store::users::{UserPatch, UserStanding, UserUpdate};
    let (_dir, store) = store().await;
    let org = org(&store).await;
    let user = user(&store, &org).await;
    let team = team(&store, &org, "ops").await;
    let demote = |was: UserStanding| UserPatch {
        role_name: Some("viewer".into()),
        password_hash: Some("new hash".into()),
        was: Some(was),
        ..Default::default()
    };
    let owner = UserStanding::of("owner", &[]);
    // Judged an owner with no team; a membership was added meanwhile.
    store
        .put_member(&org, &team, &user, &["team_admin".into()], Absent)
        .await
        .unwrap();
    let refused = store.update_user(&org, &user, &demote(owner)).await;
    assert!(
        matches!(&refused, Err(tocsin_store::StoreError::Changed(what)) if what.contains(user.as_str())),
        "{refused:?}"
    );
    assert_eq!(
        store.get_user(&org, &user).await.unwrap().role_name,
        "owner"
    );
    // Judged as they are: written. (Another owner keeps the organization managed.)
    let other = self::user(&store, &org).await;
    let memberships = store.memberships_of(&org, &user).await.unwrap();
    let was = UserStanding::of("owner", &memberships);
    match store.update_user(&org, &user, &demote(was)).await.unwrap() {
        UserUpdate::Updated(u) => assert_eq!(u.role_name, "viewer"),
        UserUpdate::LastOwner => panic!("{other} is an owner too"),
    }
}
