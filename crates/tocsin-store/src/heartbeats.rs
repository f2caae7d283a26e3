//! Heartbeats: named intervals a monitored system must ping within.

use crate::references::check_references;
use crate::{
    BeginWrite, Result, Store, StoreError, from_json, from_ms, ms, now_ms, on_db, to_json,
};
use time::OffsetDateTime;
use tocsin_core::OrgId;

#[derive(Clone, Debug)]
pub struct Heartbeat {
    pub org_id: OrgId,
    pub name: String,
    pub description: String,
    pub interval: i64,
    /// `minutes`, `hours` or `days`.
    pub interval_unit: String,
    pub enabled: bool,
    pub owner_team_id: Option<String>,
    pub alert_message: String,
    pub alert_tags: Vec<String>,
    pub alert_priority: String,
    pub last_ping_at: Option<OffsetDateTime>,
    /// When monitoring last started: set when a disabled heartbeat is enabled (`None`: at its
    /// creation).
    pub enabled_at: Option<OffsetDateTime>,
    pub expired: bool,
    pub created_at: OffsetDateTime,
}

impl Heartbeat {
    pub fn interval_ms(&self) -> i64 {
        let unit = match self.interval_unit.as_str() {
            "hours" => 3_600_000,
            "days" => 86_400_000,
            _ => 60_000,
        };
        self.interval.saturating_mul(unit)
    }

    /// When it expires unless pinged: an interval after the last ping or the start of its
    /// monitoring (its creation, or its last enabling), whichever is later.
    pub fn due_at(&self) -> i64 {
        let started = self.enabled_at.unwrap_or(self.created_at);
        let from = match self.last_ping_at {
            Some(ping) => ping.max(started),
            None => started,
        };
        ms(from).saturating_add(self.interval_ms())
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    org_id: String,
    name: String,
    description: String,
    interval_value: i64,
    interval_unit: String,
    enabled: bool,
    owner_team_id: Option<String>,
    alert_message: String,
    alert_tags: String,
    alert_priority: String,
    last_ping_at: Option<i64>,
    enabled_at: Option<i64>,
    expired: bool,
    created_at: i64,
}

impl From<Row> for Heartbeat {
    fn from(r: Row) -> Self {
        Heartbeat {
            org_id: OrgId::from_trusted(r.org_id),
            name: r.name,
            description: r.description,
            interval: r.interval_value,
            interval_unit: r.interval_unit,
            enabled: r.enabled,
            owner_team_id: r.owner_team_id,
            alert_message: r.alert_message,
            alert_tags: from_json(&r.alert_tags),
            alert_priority: r.alert_priority,
            last_ping_at: r.last_ping_at.map(from_ms),
            enabled_at: r.enabled_at.map(from_ms),
            expired: r.expired,
            created_at: from_ms(r.created_at),
        }
    }
}

/// How long a sweep's claim on a missed heartbeat's alert stands before another sweep takes it
/// again: far longer than writing an alert takes, and short enough that an alert owed by a node
/// that stopped is raised within minutes (by another node, or this one once restarted).
pub const CLAIM_RETRY_MS: i64 = 2 * 60 * 1000;

const COLUMNS: &str = "org_id, name, description, interval_value, interval_unit, enabled, owner_team_id, alert_message,
    alert_tags, alert_priority, last_ping_at, enabled_at, expired, created_at";

impl Store {
    /// Creates a heartbeat. Its owner team is checked inside the insert's transaction
    /// (`check_references!`): a team deleted at the same moment either sees the heartbeat
    /// (and is not deleted) or is gone, and then nothing is written (`StoreError::Vanished`).
    pub async fn insert_heartbeat(&self, h: &Heartbeat) -> Result<()> {
        let references = self.references().teams(h.owner_team_id.as_deref());
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            check_references!(tx, h.org_id.as_str(), references);
            sqlx::query(
                "INSERT INTO heartbeats (org_id, name, description, interval_value, interval_unit, enabled, owner_team_id,
                   alert_message, alert_tags, alert_priority, last_ping_at, expired, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, $12)",
            )
            .bind(h.org_id.as_str())
            .bind(&h.name)
            .bind(&h.description)
            .bind(h.interval)
            .bind(&h.interval_unit)
            .bind(h.enabled)
            .bind(h.owner_team_id.as_deref())
            .bind(&h.alert_message)
            .bind(to_json(&h.alert_tags))
            .bind(&h.alert_priority)
            .bind(false)
            .bind(ms(h.created_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn get_heartbeat(&self, org: &OrgId, name: &str) -> Result<Option<Heartbeat>> {
        let sql = format!("SELECT {COLUMNS} FROM heartbeats WHERE org_id = $1 AND name = $2");
        let row: Option<Row> = on_db!(&self.db, |pool| {
            sqlx::query_as(crate::safe(&sql))
                .bind(org.as_str())
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Into::into))
    }

    pub async fn list_heartbeats(&self, org: &OrgId) -> Result<Vec<Heartbeat>> {
        let sql = format!("SELECT {COLUMNS} FROM heartbeats WHERE org_id = $1 ORDER BY name");
        let rows: Vec<Row> = on_db!(&self.db, |pool| sqlx::query_as(crate::safe(&sql))
            .bind(org.as_str())
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Writes back every editable field (not the name). Not `expired` as read, which the
    /// sweep (missed) and a ping (heard from) change: written back from a copy read before a
    /// sweep, it would clear the mark of an alert that sweep had just opened. One change of
    /// its own: switching a disabled heartbeat on clears it, decided on the row as it is, so
    /// that the heartbeat is watched again from then (a disabled one is never swept, so no
    /// sweep's mark is lost; an alert a sweep still owed it is owed no more, as a ping would
    /// clear it); an alert it left open is still closed by the next ping. The
    /// owner team written is checked in the same transaction, as `insert_heartbeat` checks
    /// it: also the one of a copy read before the heartbeat moved to another team and that
    /// team was deleted.
    pub async fn update_heartbeat(&self, h: &Heartbeat) -> Result<()> {
        let references = self.references().teams(h.owner_team_id.as_deref());
        let n = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            check_references!(tx, h.org_id.as_str(), references);
            let n = sqlx::query(
                "UPDATE heartbeats SET description = $3, interval_value = $4, interval_unit = $5, enabled = $6,
                   owner_team_id = $7, alert_message = $8, alert_tags = $9, alert_priority = $10, enabled_at = $11, updated_at = $12,
                   expired = CASE WHEN $6 AND NOT enabled THEN FALSE ELSE expired END,
                   alert_pending_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE alert_pending_since END
                 WHERE org_id = $1 AND name = $2",
            )
            .bind(h.org_id.as_str())
            .bind(&h.name)
            .bind(&h.description)
            .bind(h.interval)
            .bind(&h.interval_unit)
            .bind(h.enabled)
            .bind(h.owner_team_id.as_deref())
            .bind(&h.alert_message)
            .bind(to_json(&h.alert_tags))
            .bind(&h.alert_priority)
            .bind(h.enabled_at.map(ms))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n
        });
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    pub async fn delete_heartbeat(&self, org: &OrgId, name: &str) -> Result<()> {
        let n = on_db!(&self.db, |pool| {
            sqlx::query("DELETE FROM heartbeats WHERE org_id = $1 AND name = $2")
                .bind(org.as_str())
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    /// Records a ping of `h` (read by the caller, which checks who may ping it).
    pub async fn ping_heartbeat(&self, h: &Heartbeat, at: OffsetDateTime) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE heartbeats SET last_ping_at = $3, expired = $4, alert_pending_since = NULL
                 WHERE org_id = $1 AND name = $2",
            )
            .bind(h.org_id.as_str())
            .bind(h.name.as_str())
            .bind(ms(at))
            .bind(false)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The heartbeats owed an alert at `now`, taken for this caller to raise: enabled ones past
    /// due and not yet expired, which are marked expired, and ones whose alert an earlier
    /// sweep took and did not raise (released by `heartbeat_alert_failed`, or taken more than
    /// `CLAIM_RETRY_MS` ago by a sweep that stopped or was refused). Each carries the claim
    /// `now` until `heartbeat_alert_raised` clears it, so an alert is raised at least once.
    /// A plain read finds those owed; each is then read again and marked in one transaction,
    /// in (organization, name) order (its row locked on PostgreSQL; SQLite writes one at a
    /// time): two sweeps at the same moment, on one node or two, never take the same
    /// heartbeat, and one pinged since is not taken.
    pub async fn take_expired_heartbeats(&self, now: OffsetDateTime) -> Result<Vec<Heartbeat>> {
        const OWED: &str = "enabled = $1 AND (expired = $2 OR alert_pending_since <= $3)";
        let all = format!("SELECT {COLUMNS} FROM heartbeats WHERE {OWED}");
        let lock = if self.is_postgres() {
            " FOR NO KEY UPDATE"
        } else {
            ""
        };
        let one = format!(
            "SELECT {COLUMNS} FROM heartbeats WHERE {OWED} AND org_id = $4 AND name = $5{lock}"
        );
        let at = ms(now);
        let stale = at.saturating_sub(CLAIM_RETRY_MS);
        let owed = |h: &Heartbeat| h.expired || h.due_at() <= at;
        // Without the write lock first: most sweeps find nothing owed, and take no write
        // transaction (on SQLite it would wait for, and hold up, every other writer).
        let mut candidates: Vec<Heartbeat> = on_db!(&self.db, |pool| {
            let rows: Vec<Row> = sqlx::query_as(crate::safe(&all))
                .bind(true)
                .bind(false)
                .bind(stale)
                .fetch_all(pool)
                .await?;
            rows.into_iter().map(Heartbeat::from).filter(owed).collect()
        });
        if candidates.is_empty() {
            return Ok(candidates);
        }
        // One order for every sweep: two locking the same rows never wait on each other
        // crosswise (a deadlock on PostgreSQL).
        candidates.sort_by(|a, b| (a.org_id.as_str(), &a.name).cmp(&(b.org_id.as_str(), &b.name)));
        let taken = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut taken = Vec::with_capacity(candidates.len());
            for c in &candidates {
                let row: Option<Row> = sqlx::query_as(crate::safe(&one))
                    .bind(true)
                    .bind(false)
                    .bind(stale)
                    .bind(c.org_id.as_str())
                    .bind(&c.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(h) = row.map(Heartbeat::from).filter(owed) else {
                    continue;
                };
                sqlx::query(
                    "UPDATE heartbeats SET expired = $3, alert_pending_since = $4 WHERE org_id = $1 AND name = $2",
                )
                .bind(h.org_id.as_str())
                .bind(&h.name)
                .bind(true)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                taken.push(Heartbeat { expired: true, ..h });
            }
            tx.commit().await?;
            taken
        });
        Ok(taken)
    }

    /// The alert of `h`, taken by the sweep at `taken_at`, is written: nothing more is owed.
    /// Clears only that sweep's claim (another node may have taken the heartbeat again since;
    /// a ping has cleared it already).
    pub async fn heartbeat_alert_raised(
        &self,
        h: &Heartbeat,
        taken_at: OffsetDateTime,
    ) -> Result<()> {
        self.end_claim(h, taken_at, None).await
    }

    /// The alert of `h`, taken by the sweep at `taken_at`, could not be written: the next
    /// sweep takes it again.
    pub async fn heartbeat_alert_failed(
        &self,
        h: &Heartbeat,
        taken_at: OffsetDateTime,
    ) -> Result<()> {
        self.end_claim(h, taken_at, Some(0)).await
    }

    async fn end_claim(
        &self,
        h: &Heartbeat,
        taken_at: OffsetDateTime,
        to: Option<i64>,
    ) -> Result<()> {
        on_db!(&self.db, |pool| {
            // A write transaction: on SQLite it waits its turn with the other writers rather
            // than in the busy handler.
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE heartbeats SET alert_pending_since = $4
                 WHERE org_id = $1 AND name = $2 AND alert_pending_since = $3",
            )
            .bind(h.org_id.as_str())
            .bind(h.name.as_str())
            .bind(ms(taken_at))
            .bind(to)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
