//! The statements of a write batch behind one interface, so that the batch itself (the alert
//! ops in alerts.rs, the audit append in audit.rs) is written once for both backends:
//!
//! - PostgreSQL runs them through sqlx on the batch's pooled connection (the impls below);
//! - the embedded SQLite file runs them through rusqlite on the writer's own thread
//!   (embedded.rs), with no hand-off to another thread per statement.
//!
//! The methods are `async` for sqlx's sake; the embedded ones do their work when called and
//! never wait (`embedded::now` runs them).

use crate::Result;
use crate::alerts::{Alert, AlertInsert, AlertRow, AlertUpdate, Counted};
use crate::audit_segment::SegmentBuilder;
use crate::bulk::BulkSql;
use serde::Serialize;

/// What an audit append needs: a chain's head, a segment with its search terms, the head moved.
pub(crate) trait SegmentConn {
    /// The chain's last seq and hash, its head row made if missing (on PostgreSQL the row
    /// stays locked until the transaction ends, so nodes append one at a time).
    async fn audit_head(&mut self, chain: &str) -> Result<(i64, String)>;
    async fn insert_segment(&mut self, chain: &str, segment: &SegmentBuilder<'_>) -> Result<()>;
    async fn move_head(&mut self, chain: &str, seq: i64, hash: &str) -> Result<()>;

    /// Writes each chain's segment and moves its head.
    async fn write_segments(&mut self, segments: &[(&str, SegmentBuilder<'_>)]) -> Result<()> {
        for (chain, segment) in segments {
            self.insert_segment(chain, segment).await?;
            self.move_head(chain, segment.last_seq, &segment.head)
                .await?;
        }
        Ok(())
    }
}

/// The tables a batch appends rows to besides `alerts`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows {
    Logs,
    Notes,
    Requests,
}

impl Rows {
    pub(crate) fn sql(self) -> &'static BulkSql {
        static SQL: std::sync::LazyLock<[BulkSql; 3]> = std::sync::LazyLock::new(|| {
            [
                BulkSql::new(
                    "alert_logs",
                    "id, org_id, alert_id, log, type, owner, created_at",
                    "",
                ),
                BulkSql::new(
                    "alert_notes",
                    "id, org_id, alert_id, note, owner, created_at",
                    "",
                ),
                BulkSql::new(
                    "alert_requests",
                    "id, org_id, action, success, status, alert_id, alias, integration_id, processed_at",
                    "",
                ),
            ]
        });
        &SQL[self as usize]
    }
}

/// What the alert ops of a batch need, on an open transaction.
pub(crate) trait BatchConn: SegmentConn {
    /// `(alias, id, teams)` of the organization's open alerts with one of `aliases` (`teams`
    /// as stored: a JSON array).
    async fn open_aliases(
        &mut self,
        org: &str,
        aliases: &[&str],
    ) -> Result<Vec<(String, String, String)>>;
    /// Takes `n` tinyIds of an organization at once; returns the first.
    async fn reserve_tiny_ids(&mut self, org: &str, n: i64) -> Result<i64>;
    /// Inserts new alerts, each counted into the open alert with its alias instead should one
    /// have appeared meanwhile (another node's, on PostgreSQL; on SQLite, the only writer,
    /// such a clash fails the insert); returns, for each row in order, `None` for a new
    /// alert of its own, or the alert it was counted into.
    async fn insert_alerts(&mut self, rows: &[AlertInsert<'_>]) -> Result<Vec<Option<Counted>>>;
    async fn insert_rows<R: Serialize>(&mut self, table: Rows, rows: &[R]) -> Result<()>;
    /// Counts `n` repeats into an alert, the latest received at `at` (its lastOccurredAt,
    /// never moved back), in a batch written at `now` (its updatedAt).
    async fn count_again(&mut self, org: &str, id: &str, n: i64, at: i64, now: i64) -> Result<()>;
    async fn alert(&mut self, org: &str, id: &str) -> Result<Option<Alert>>;
    async fn update_alert(&mut self, row: &AlertUpdate<'_>) -> Result<()>;
    /// Deletes an alert with its notes and log.
    async fn delete_alert(&mut self, org: &str, id: &str) -> Result<()>;
    /// Opens a savepoint; `release` keeps what was done since, `rollback_to` undoes it.
    async fn savepoint(&mut self) -> Result<()>;
    async fn release(&mut self) -> Result<()>;
    async fn rollback_to(&mut self) -> Result<()>;

    /// What a batch writes once its ops have run: their log lines, notes and request
    /// statuses, and its audit segments (each chain's head moved). Empty slices write no rows.
    async fn finish<L: Serialize, N: Serialize, Q: Serialize>(
        &mut self,
        logs: &[L],
        notes: &[N],
        requests: &[Q],
        segments: &[(&str, SegmentBuilder<'_>)],
    ) -> Result<()> {
        if !logs.is_empty() {
            self.insert_rows(Rows::Logs, logs).await?;
        }
        if !notes.is_empty() {
            self.insert_rows(Rows::Notes, notes).await?;
        }
        if !requests.is_empty() {
            self.insert_rows(Rows::Requests, requests).await?;
        }
        self.write_segments(segments).await
    }
}

/// `BatchConn::finish` on PostgreSQL as one statement, so one round trip: each table's rows
/// are written by a data-modifying `WITH` clause (the trail's rows as JSON arrays, as the bulk
/// inserts take them; the segments, their terms and the new heads as parallel arrays), and
/// the heads are moved by the statement itself. The chains' head rows were taken, and locked,
/// by `audit_head` before the segments were built.
fn finish_pg() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let trail = [
            (Rows::Logs, "logs"),
            (Rows::Notes, "notes"),
            (Rows::Requests, "requests"),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (rows, name))| format!("{name} AS ({})", rows.sql().postgres_at(i + 1)))
        .collect::<Vec<_>>()
        .join(",\n");
        format!(
            "WITH {trail},
            segments AS (
                INSERT INTO audit_segments (chain, first_seq, last_seq, first_at, last_at, prev_hash, events)
                SELECT * FROM unnest($4::text[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::text[], $10::bytea[])),
            terms AS (
                INSERT INTO audit_segment_terms (chain, term, first_seq)
                SELECT * FROM unnest($11::text[], $12::text[], $13::int8[]))
            UPDATE audit_heads AS h SET seq = v.seq, hash = v.hash
            FROM unnest($4::text[], $6::int8[], $14::text[]) AS v (chain, seq, hash)
            WHERE h.chain = v.chain"
        )
    });
    &SQL
}

/// (The no-op update is there for `RETURNING` on an existing row; it sets `seq`, not the
/// indexed `chain`, which SQLite would otherwise write into its index again on every commit.)
pub(crate) const HEAD: &str = "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, $2)
    ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq RETURNING seq, hash";
pub(crate) const SEGMENT: &str =
    "INSERT INTO audit_segments (chain, first_seq, last_seq, first_at, last_at, prev_hash, events)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const TERM: &str =
    "INSERT INTO audit_segment_terms (chain, term, first_seq) VALUES ($1, $2, $3)";
/// A segment's terms in one statement, from a JSON array of them in `$2` (on sqlx each
/// statement is a round trip, and a segment of alert events has a term per alert).
const TERMS_PG: &str = "INSERT INTO audit_segment_terms (chain, term, first_seq)
    SELECT $1, t, $3 FROM json_array_elements_text($2::json) AS t";
const TERMS_SQLITE: &str = "INSERT INTO audit_segment_terms (chain, term, first_seq)
    SELECT $1, value, $3 FROM json_each($2)";
pub(crate) const MOVE_HEAD: &str = "UPDATE audit_heads SET seq = $2, hash = $3 WHERE chain = $1";

pub(crate) const RESERVE_TINY_IDS: &str =
    "INSERT INTO alert_counters (org_id, next_tiny_id) VALUES ($1, $2 + 1)
     ON CONFLICT (org_id) DO UPDATE SET next_tiny_id = alert_counters.next_tiny_id + $2
     RETURNING next_tiny_id - $2";
pub(crate) const COUNT_AGAIN: &str = "UPDATE alerts SET count = count + $3,
       last_occurred_at = CASE WHEN last_occurred_at > $4 THEN last_occurred_at ELSE $4 END,
       updated_at = $5
     WHERE org_id = $1 AND id = $2";
/// The update of an alert after an action, written from `AlertUpdate::COLUMNS`: `$1` and
/// `$2` name the alert, the rest are the columns set, so an `AlertUpdate`'s fields bind in
/// their order.
pub(crate) fn update_alert() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let set: Vec<String> = AlertUpdate::COLUMNS
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, column)| format!("{column} = ${}", i + 1))
            .collect();
        format!(
            "UPDATE alerts SET {} WHERE org_id = $1 AND id = $2",
            set.join(", ")
        )
    });
    &SQL
}
/// The same update on PostgreSQL, from an `AlertUpdate` as a JSON object in `$1`.
fn update_alert_pg() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let set: Vec<&str> = AlertUpdate::COLUMNS.iter().skip(2).copied().collect();
        let from: Vec<String> = set.iter().map(|c| format!("r.{c}")).collect();
        format!(
            "UPDATE alerts AS a SET ({}) = ({}) FROM json_populate_record(NULL::alerts, $1::json) AS r
             WHERE a.org_id = r.org_id AND a.id = r.id",
            set.join(", "),
            from.join(", ")
        )
    });
    &SQL
}

pub(crate) const DELETE_ALERT: [&str; 3] = [
    "DELETE FROM alert_notes WHERE org_id = $1 AND alert_id = $2",
    "DELETE FROM alert_logs WHERE org_id = $1 AND alert_id = $2",
    "DELETE FROM alerts WHERE org_id = $1 AND id = $2",
];

/// `SELECT` of one alert by organization and id.
pub(crate) fn select_alert() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {} FROM alerts WHERE org_id = $1 AND id = $2",
            crate::alerts::COLUMNS
        )
    });
    &SQL
}

/// The new alerts' insert, an upsert that counts a row into the open alert with its alias.
pub(crate) fn alerts_sql() -> &'static BulkSql {
    static SQL: std::sync::LazyLock<BulkSql> = std::sync::LazyLock::new(|| {
        // In alias order: a new alert whose alias another node's uncommitted batch has just
        // inserted waits for that batch, and two batches with the same two aliases then wait
        // in one order instead of deadlocking.
        BulkSql::ordered(
            "alerts",
            crate::alerts::INSERT_COLUMNS,
            "org_id, alias",
            "ON CONFLICT (org_id, alias) WHERE status = 'open'
             DO UPDATE SET count = alerts.count + 1,
               last_occurred_at = CASE WHEN alerts.last_occurred_at > excluded.last_occurred_at
                 THEN alerts.last_occurred_at ELSE excluded.last_occurred_at END,
               updated_at = CASE WHEN alerts.updated_at > excluded.updated_at
                 THEN alerts.updated_at ELSE excluded.updated_at END
             RETURNING org_id, alias, id, count, CASE WHEN count > 1 THEN teams END",
        )
    });
    &SQL
}

/// The audit statements on a sqlx connection of either backend (PostgreSQL's batches, and
/// the conversion of pre-0008 audit rows, which runs on sqlx on both).
macro_rules! sqlx_segment_conn {
    ($conn:ty, $terms:expr) => {
        impl SegmentConn for $conn {
            async fn audit_head(&mut self, chain: &str) -> Result<(i64, String)> {
                Ok(sqlx::query_as(HEAD)
                    .bind(chain)
                    .bind(crate::audit::GENESIS)
                    .fetch_one(self)
                    .await?)
            }

            async fn insert_segment(
                &mut self,
                chain: &str,
                segment: &SegmentBuilder<'_>,
            ) -> Result<()> {
                sqlx::query(SEGMENT)
                    .bind(chain)
                    .bind(segment.first_seq)
                    .bind(segment.last_seq)
                    .bind(segment.first_at)
                    .bind(segment.last_at)
                    .bind(&segment.prev_hash)
                    .bind(segment.encode())
                    .execute(&mut *self)
                    .await?;
                let terms: Vec<String> = segment.terms().collect();
                if !terms.is_empty() {
                    sqlx::query($terms)
                        .bind(chain)
                        .bind(crate::to_json(&terms))
                        .bind(segment.first_seq)
                        .execute(&mut *self)
                        .await?;
                }
                Ok(())
            }

            async fn move_head(&mut self, chain: &str, seq: i64, hash: &str) -> Result<()> {
                sqlx::query(MOVE_HEAD)
                    .bind(chain)
                    .bind(seq)
                    .bind(hash)
                    .execute(self)
                    .await?;
                Ok(())
            }
        }
    };
}

sqlx_segment_conn!(sqlx::PgConnection, TERMS_PG);
sqlx_segment_conn!(sqlx::SqliteConnection, TERMS_SQLITE);

impl BatchConn for sqlx::PgConnection {
    async fn open_aliases(
        &mut self,
        org: &str,
        aliases: &[&str],
    ) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT alias, id, teams FROM alerts WHERE org_id = $1 AND status = 'open'
               AND alias IN (SELECT json_array_elements_text($2::json))",
        )
        .bind(org)
        .bind(crate::to_json(&aliases))
        .fetch_all(self)
        .await?)
    }

    async fn reserve_tiny_ids(&mut self, org: &str, n: i64) -> Result<i64> {
        let (first,): (i64,) = sqlx::query_as(RESERVE_TINY_IDS)
            .bind(org)
            .bind(n)
            .fetch_one(self)
            .await?;
        Ok(first)
    }

    async fn insert_alerts(&mut self, rows: &[AlertInsert<'_>]) -> Result<Vec<Option<Counted>>> {
        // In the aliases' order, as every node's batch inserts them: two batches opening (or
        // counting into, through the upsert) the same aliases wait for each other instead of
        // deadlocking.
        let mut sorted: Vec<&AlertInsert<'_>> = rows.iter().collect();
        sorted.sort_unstable_by(|a, b| (a.org_id, &a.alias).cmp(&(b.org_id, &b.alias)));
        // `(org, alias, id, count, teams)` of each row's alert, in no promised order (`teams`
        // only of an alert that was there already): matched to the rows by org and alias.
        let returned: Vec<(String, String, String, i64, Option<String>)> =
            crate::bulk::pg_fetch(self, alerts_sql(), &sorted).await?;
        let by_alias: std::collections::HashMap<(&str, &str), _> = returned
            .iter()
            .map(|(org, alias, id, count, teams)| {
                ((org.as_str(), alias.as_str()), (id, *count, teams))
            })
            .collect();
        rows.iter()
            .map(
                |row| match by_alias.get(&(row.org_id, row.alias.as_str())) {
                    Some(&(id, count, teams)) => {
                        Ok((count > 1 || *id != row.id).then(|| Counted {
                            id: id.clone(),
                            teams: teams.clone(),
                        }))
                    }
                    None => Err(crate::StoreError::Config(
                        "an inserted alert was not returned".into(),
                    )),
                },
            )
            .collect()
    }

    async fn insert_rows<R: Serialize>(&mut self, table: Rows, rows: &[R]) -> Result<()> {
        Ok(crate::bulk::pg_execute(self, table.sql(), rows).await?)
    }

    async fn count_again(&mut self, org: &str, id: &str, n: i64, at: i64, now: i64) -> Result<()> {
        sqlx::query(COUNT_AGAIN)
            .bind(org)
            .bind(id)
            .bind(n)
            .bind(at)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn alert(&mut self, org: &str, id: &str) -> Result<Option<Alert>> {
        let row: Option<AlertRow> = sqlx::query_as(crate::safe(select_alert()))
            .bind(org)
            .bind(id)
            .fetch_optional(self)
            .await?;
        Ok(row.map(Alert::from))
    }

    async fn update_alert(&mut self, u: &AlertUpdate<'_>) -> Result<()> {
        // The row travels as one JSON object, read by column name (as the bulk inserts'
        // rows do): no parameter is bound by hand, so none can be bound out of order.
        sqlx::query(crate::safe(update_alert_pg()))
            .bind(crate::to_json(u))
            .execute(self)
            .await?;
        Ok(())
    }

    async fn delete_alert(&mut self, org: &str, id: &str) -> Result<()> {
        for sql in DELETE_ALERT {
            sqlx::query(sql)
                .bind(org)
                .bind(id)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        sqlx::query("SAVEPOINT op").execute(self).await?;
        Ok(())
    }

    async fn release(&mut self) -> Result<()> {
        sqlx::query("RELEASE SAVEPOINT op").execute(self).await?;
        Ok(())
    }

    async fn rollback_to(&mut self) -> Result<()> {
        sqlx::query("ROLLBACK TO SAVEPOINT op")
            .execute(&mut *self)
            .await?;
        self.release().await
    }

    async fn finish<L: Serialize, N: Serialize, Q: Serialize>(
        &mut self,
        logs: &[L],
        notes: &[N],
        requests: &[Q],
        segments: &[(&str, SegmentBuilder<'_>)],
    ) -> Result<()> {
        // A batch of flushes alone writes nothing: no round trip.
        if logs.is_empty() && notes.is_empty() && requests.is_empty() && segments.is_empty() {
            return Ok(());
        }
        let mut terms: (Vec<&str>, Vec<String>, Vec<i64>) = Default::default();
        for (chain, segment) in segments {
            for term in segment.terms() {
                terms.0.push(chain);
                terms.1.push(term);
                terms.2.push(segment.first_seq);
            }
        }
        let column = |f: fn(&SegmentBuilder<'_>) -> i64| -> Vec<i64> {
            segments.iter().map(|(_, s)| f(s)).collect()
        };
        sqlx::query(crate::safe(finish_pg()))
            .bind(crate::to_json(&logs))
            .bind(crate::to_json(&notes))
            .bind(crate::to_json(&requests))
            .bind(segments.iter().map(|(c, _)| *c).collect::<Vec<&str>>())
            .bind(column(|s| s.first_seq))
            .bind(column(|s| s.last_seq))
            .bind(column(|s| s.first_at))
            .bind(column(|s| s.last_at))
            .bind(
                segments
                    .iter()
                    .map(|(_, s)| s.prev_hash.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                segments
                    .iter()
                    .map(|(_, s)| s.encode())
                    .collect::<Vec<Vec<u8>>>(),
            )
            .bind(terms.0)
            .bind(terms.1)
            .bind(terms.2)
            .bind(
                segments
                    .iter()
                    .map(|(_, s)| s.head.as_str())
                    .collect::<Vec<&str>>(),
            )
            .execute(self)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The statement binds `AlertUpdate`'s fields in their order: the alert, then the rest.
    #[test]
    fn the_update_follows_the_update_row() {
        assert_eq!(
            super::update_alert(),
            "UPDATE alerts SET status = $3, acknowledged = $4, tags = $5, snoozed = $6, \
             snoozed_until = $7, updated_at = $8, owner = $9, priority = $10, responders = $11, \
             teams = $12, ack_time = $13, close_time = $14, acknowledged_by = $15, closed_by = $16, \
             message = $17, description = $18, details = $19 WHERE org_id = $1 AND id = $2"
        );
    }

    /// PostgreSQL's sets the same columns, each from the row's field of that name.
    #[test]
    fn the_postgres_update_reads_the_row_by_name() {
        let sql = super::update_alert_pg();
        assert!(
            sql.starts_with("UPDATE alerts AS a SET (status, acknowledged, tags,"),
            "{sql}"
        );
        assert!(
            sql.contains("= (r.status, r.acknowledged, r.tags,"),
            "{sql}"
        );
        assert!(
            sql.contains("r.description, r.details) FROM json_populate_record"),
            "{sql}"
        );
        assert!(
            sql.ends_with("WHERE a.org_id = r.org_id AND a.id = r.id"),
            "{sql}"
        );
    }
}
