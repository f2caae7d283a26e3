//! The audit trail: events in one hash chain per organization. Each event's hash covers
//! its predecessor's hash and its own fields, so editing or deleting a row breaks the chain
//! at that event, which `verify_chain` names.

use crate::{BeginWrite, Page, Result, Store, from_ms, ms, on_db, paginate, safe};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tocsin_core::{AuditEventId, KeyId, OrgId};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// An event as recorded; the chain fields are added by the writer.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub id: AuditEventId,
    pub occurred_at: OffsetDateTime,
    /// `None` for refusals that could not be tied to an organization.
    pub org_id: Option<OrgId>,
    pub actor: Option<AuditActor>,
    pub api_key_id: Option<KeyId>,
    pub token_hint: Option<String>,
    pub action: String,
    pub method: Option<String>,
    pub route: Option<String>,
    pub target: Option<AuditTarget>,
    pub outcome: String,
    pub status: Option<u16>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl AuditRecord {
    pub fn new(
        org_id: Option<OrgId>,
        action: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        AuditRecord {
            id: AuditEventId::generate(),
            occurred_at: OffsetDateTime::now_utc(),
            org_id,
            actor: None,
            api_key_id: None,
            token_hint: None,
            action: action.into(),
            method: None,
            route: None,
            target: None,
            outcome: outcome.into(),
            status: None,
            ip: None,
            user_agent: None,
            request_id: None,
        }
    }

    pub fn chain(&self) -> &str {
        self.org_id.as_ref().map(|o| o.as_str()).unwrap_or("")
    }
}

#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub record: AuditRecord,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an event: SHA-256 over the previous hash, a newline, and the event's fields
/// in a fixed order as a compact JSON array. The array is written straight into the hash
/// state (a tuple serializes as a JSON array), without building it in memory first.
pub fn event_hash(prev_hash: &str, seq: i64, r: &AuditRecord) -> String {
    let fields = (
        seq,
        r.id.as_str(),
        ms(r.occurred_at),
        r.chain(),
        r.actor.as_ref().map(|a| [&a.kind, &a.id, &a.name]),
        r.api_key_id.as_ref().map(|k| k.as_str()),
        &r.token_hint,
        &r.action,
        &r.method,
        &r.route,
        r.target.as_ref().map(|t| [&t.kind, &t.id]),
        &r.outcome,
        r.status,
        &r.ip,
        &r.user_agent,
        &r.request_id,
    );
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    serde_json::to_writer(&mut h, &fields).expect("writing into a hash state cannot fail");
    hex::encode(h.finalize())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    chain: String,
    seq: i64,
    id: String,
    occurred_at: i64,
    actor_type: Option<String>,
    actor_id: Option<String>,
    actor_name: Option<String>,
    api_key_id: Option<String>,
    token_hint: Option<String>,
    action: String,
    method: Option<String>,
    route: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    outcome: String,
    status: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    prev_hash: String,
    hash: String,
}

impl From<EventRow> for AuditEvent {
    fn from(r: EventRow) -> Self {
        AuditEvent {
            seq: r.seq,
            prev_hash: r.prev_hash,
            hash: r.hash,
            record: AuditRecord {
                id: AuditEventId::from_trusted(r.id),
                occurred_at: from_ms(r.occurred_at),
                org_id: (!r.chain.is_empty()).then(|| OrgId::from_trusted(r.chain)),
                actor: match (r.actor_type, r.actor_id, r.actor_name) {
                    (Some(kind), Some(id), Some(name)) => Some(AuditActor { kind, id, name }),
                    _ => None,
                },
                api_key_id: r.api_key_id.map(KeyId::from_trusted),
                token_hint: r.token_hint,
                action: r.action,
                method: r.method,
                route: r.route,
                target: match (r.target_type, r.target_id) {
                    (Some(kind), Some(id)) => Some(AuditTarget { kind, id }),
                    _ => None,
                },
                outcome: r.outcome,
                status: r.status.and_then(|s| u16::try_from(s).ok()),
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
            },
        }
    }
}

const COLUMNS: &str = "chain, seq, id, occurred_at, actor_type, actor_id, actor_name, api_key_id, token_hint, action,
    method, route, target_type, target_id, outcome, status, ip, user_agent, request_id, prev_hash, hash";

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub api_key_id: Option<String>,
    /// Events about an object (a key's rotations and revocation, requests addressing it).
    pub target_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// The result of checking one chain.
#[derive(Clone, Debug, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub events: i64,
    /// The first event whose stored hash or link does not match, with why.
    pub broken_at: Option<BrokenLink>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokenLink {
    pub event_id: String,
    pub seq: i64,
    pub reason: String,
}

/// One audit event as a row of the bulk insert (`BulkSql`): its fields follow `COLUMNS`.
#[derive(Serialize)]
pub(crate) struct EventInsert<'a> {
    chain: &'a str,
    seq: i64,
    id: &'a str,
    occurred_at: i64,
    actor_type: Option<&'a str>,
    actor_id: Option<&'a str>,
    actor_name: Option<&'a str>,
    api_key_id: Option<&'a str>,
    token_hint: Option<&'a str>,
    action: &'a str,
    method: Option<&'a str>,
    route: Option<&'a str>,
    target_type: Option<&'a str>,
    target_id: Option<&'a str>,
    outcome: &'a str,
    status: Option<i64>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
    prev_hash: String,
    hash: String,
}

impl<'a> EventInsert<'a> {
    pub(crate) fn new(r: &'a AuditRecord, seq: i64, prev_hash: String, hash: String) -> Self {
        EventInsert {
            chain: r.chain(),
            seq,
            id: r.id.as_str(),
            occurred_at: ms(r.occurred_at),
            actor_type: r.actor.as_ref().map(|a| a.kind.as_str()),
            actor_id: r.actor.as_ref().map(|a| a.id.as_str()),
            actor_name: r.actor.as_ref().map(|a| a.name.as_str()),
            api_key_id: r.api_key_id.as_ref().map(|k| k.as_str()),
            token_hint: r.token_hint.as_deref(),
            action: &r.action,
            method: r.method.as_deref(),
            route: r.route.as_deref(),
            target_type: r.target.as_ref().map(|t| t.kind.as_str()),
            target_id: r.target.as_ref().map(|t| t.id.as_str()),
            outcome: &r.outcome,
            status: r.status.map(i64::from),
            ip: r.ip.as_deref(),
            user_agent: r.user_agent.as_deref(),
            request_id: r.request_id.as_deref(),
            prev_hash,
            hash,
        }
    }
}

/// The statements of an audit append, rendered for the store's backend.
pub(crate) struct AuditSql {
    /// Creates a chain's head row if it is missing and reads it; on PostgreSQL the upsert
    /// also locks the row for the rest of the transaction, so nodes append one at a time.
    pub head: &'static str,
    pub insert: crate::BulkSql,
}

/// Appends `records` to their chains inside the open transaction `$tx` (a macro, so the same
/// statements serve whichever typed connection the arm of `on_db!` holds): one statement per
/// chain to take its head, one for all the events, one per chain to move the head.
macro_rules! append_audit_in {
    ($tx:ident, $records:expr, $sql:expr) => {{
        let records: &[$crate::audit::AuditRecord] = $records;
        let sql: &$crate::audit::AuditSql = $sql;
        let tx = &mut $tx;
        let mut heads: std::collections::HashMap<&str, (i64, String)> = Default::default();
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            let chain = r.chain();
            if !heads.contains_key(chain) {
                let head: (i64, String) = sqlx::query_as(sql.head)
                    .bind(chain)
                    .bind($crate::audit::GENESIS)
                    .fetch_one(&mut **tx)
                    .await?;
                heads.insert(chain, head);
            }
            let (seq, prev) = heads.get_mut(chain).expect("inserted above");
            *seq += 1;
            let hash = $crate::audit::event_hash(prev, *seq, r);
            let prev_hash = std::mem::replace(prev, hash.clone());
            rows.push($crate::audit::EventInsert::new(r, *seq, prev_hash, hash));
        }
        if !rows.is_empty() {
            $crate::Bulk::bulk_execute(&mut **tx, &sql.insert, &rows).await?;
        }
        for (chain, (seq, hash)) in &heads {
            sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE chain = $1")
                .bind(*chain)
                .bind(*seq)
                .bind(hash)
                .execute(&mut **tx)
                .await?;
        }
    }};
}
pub(crate) use append_audit_in;

impl Store {
    /// The audit append's statements for this store's backend. Taking a head is an upsert
    /// that returns the row: on PostgreSQL the `DO UPDATE` locks it until the transaction
    /// ends (several nodes append to one chain); SQLite's write lock (BEGIN IMMEDIATE)
    /// already serialises writers. Rendered once per backend.
    pub(crate) fn audit_sql(&self) -> &'static AuditSql {
        static SQL: [std::sync::OnceLock<AuditSql>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let pg = self.is_postgres();
        SQL[usize::from(pg)].get_or_init(|| AuditSql {
            head: "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, $2)
                   ON CONFLICT (chain) DO UPDATE SET chain = excluded.chain RETURNING seq, hash",
            insert: crate::BulkSql::new("audit_events", COLUMNS, ""),
        })
    }

    /// Appends records to their chains in one transaction.
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let sql = self.audit_sql();
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            append_audit_in!(tx, records, sql);
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn list_audit(
        &self,
        org: &OrgId,
        filter: &AuditFilter,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<Page<AuditEvent>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE chain = $1
               AND ($2 IS NULL OR api_key_id = $2) AND ($3 IS NULL OR actor_id = $3) AND ($4 IS NULL OR action = $4)
               AND ($5 IS NULL OR outcome = $5) AND ($6 IS NULL OR occurred_at >= $6) AND ($7 IS NULL OR occurred_at < $7)
               AND ($8 IS NULL OR seq < $8) AND ($10 IS NULL OR target_id = $10)
             ORDER BY seq DESC LIMIT $9"
        );
        let rows: Vec<EventRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(filter.api_key_id.as_deref())
                .bind(filter.actor_id.as_deref())
                .bind(filter.action.as_deref())
                .bind(filter.outcome.as_deref())
                .bind(filter.since.map(ms))
                .bind(filter.until.map(ms))
                .bind(cursor)
                .bind(limit as i64 + 1)
                .bind(filter.target_id.as_deref())
                .fetch_all(pool)
                .await?
        });
        Ok(paginate(
            rows.into_iter().map(AuditEvent::from).collect(),
            limit,
            |e: &AuditEvent| e.seq.to_string(),
        ))
    }

    /// Every chain present: organization ids, and '' for unattributed refusals.
    pub async fn audit_chains(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                // A chain whose every event was deleted still has its head: it must be checked too.
                "SELECT chain FROM audit_events UNION SELECT chain FROM audit_heads ORDER BY chain",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }

    /// Recomputes a chain from its first event and reports the first break.
    pub async fn verify_chain(&self, chain: &str) -> Result<ChainReport> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT 1000"
        );
        let mut prev = GENESIS.to_owned();
        let mut expected_seq = 1i64;
        let mut count = 0i64;
        loop {
            let rows: Vec<EventRow> = on_db!(&self.db, |pool| {
                sqlx::query_as(safe(&sql))
                    .bind(chain)
                    .bind(expected_seq - 1)
                    .fetch_all(pool)
                    .await?
            });
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let e = AuditEvent::from(row);
                let broken = |reason: String| ChainReport {
                    chain: chain.to_owned(),
                    events: count,
                    broken_at: Some(BrokenLink {
                        event_id: e.record.id.to_string(),
                        seq: e.seq,
                        reason,
                    }),
                };
                if e.seq != expected_seq {
                    return Ok(broken(format!(
                        "sequence jumps from {} to {}: events were removed",
                        expected_seq - 1,
                        e.seq
                    )));
                }
                if e.prev_hash != prev {
                    return Ok(broken("its link to the previous event does not match: an earlier event was changed or removed".into()));
                }
                if event_hash(&prev, e.seq, &e.record) != e.hash {
                    return Ok(broken(
                        "its contents do not match its hash: this event was edited".into(),
                    ));
                }
                prev = e.hash;
                expected_seq += 1;
                count += 1;
            }
        }
        let head: Option<(i64, String)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE chain = $1")
                .bind(chain)
                .fetch_optional(pool)
                .await?
        });
        if let Some((seq, hash)) = head
            && (seq != count || hash != prev)
        {
            return Ok(ChainReport {
                chain: chain.to_owned(),
                events: count,
                broken_at: Some(BrokenLink {
                    event_id: String::new(),
                    seq,
                    reason: format!(
                        "the chain head records {seq} events but {count} were found: the newest events were removed"
                    ),
                }),
            });
        }
        Ok(ChainReport {
            chain: chain.to_owned(),
            events: count,
            broken_at: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash as the first chains were written: the fields built as a JSON value, then
    /// printed. `event_hash` must keep giving the same bytes, or existing chains would no
    /// longer verify.
    fn hash_via_value(prev_hash: &str, seq: i64, r: &AuditRecord) -> String {
        let fields = serde_json::json!([
            seq,
            r.id.as_str(),
            ms(r.occurred_at),
            r.chain(),
            r.actor.as_ref().map(|a| [&a.kind, &a.id, &a.name]),
            r.api_key_id.as_ref().map(|k| k.as_str()),
            r.token_hint,
            r.action,
            r.method,
            r.route,
            r.target.as_ref().map(|t| [&t.kind, &t.id]),
            r.outcome,
            r.status,
            r.ip,
            r.user_agent,
            r.request_id,
        ]);
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(fields.to_string().as_bytes());
        hex::encode(h.finalize())
    }

    #[test]
    fn streamed_hash_matches_the_original_encoding() {
        let bare = AuditRecord::new(None, "http.request", "unknown_key");
        let mut full = AuditRecord::new(Some(OrgId::generate()), "http.request", "allowed");
        full.actor = Some(AuditActor {
            kind: "integration".into(),
            id: "int_1".into(),
            name: "Name with \"quotes\", a tab\t and ünïcode ✓".into(),
        });
        full.api_key_id = Some(KeyId::generate());
        full.token_hint = Some("n23C".into());
        full.method = Some("POST".into());
        full.route = Some("/v1/api_keys/{id}/rotate".into());
        full.target = Some(AuditTarget {
            kind: "api_key".into(),
            id: "key_1".into(),
        });
        full.status = Some(202);
        full.ip = Some("2001:db8::1".into());
        full.user_agent = Some("curl/8 \u{0}\u{1f}".into());
        full.request_id = Some("4f97d1b0-6256-4fae-82e2-69c42aa5ee31".into());
        for (seq, r) in [(1, &bare), (42, &full), (i64::MAX, &full)] {
            assert_eq!(
                event_hash(GENESIS, seq, r),
                hash_via_value(GENESIS, seq, r),
                "seq {seq}"
            );
        }
    }
}
