//! Request counters shared by every node on PostgreSQL: per-key limits and the failed-
//! authentication throttle count here so that a client gets one budget, not one per node. A
//! bucket ("key:<id>", "ip:<address>") has one row per minute; callers read the current and
//! previous minute as a sliding window. (A single SQLite node counts in memory instead.)

use crate::{Db, Result, Store};

/// The counting window, in milliseconds.
pub const WINDOW_MS: i64 = 60_000;

impl Store {
    /// Counts one request in `bucket`'s minute starting at `window_start` (a multiple of
    /// `WINDOW_MS`); returns this minute's count, this one included, and the previous minute's.
    pub async fn count_request(&self, bucket: &str, window_start: i64) -> Result<(i64, i64)> {
        let counts = match &self.db {
            // One round trip: the upsert and the look at the previous minute together.
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "WITH up AS (
                       INSERT INTO rate_counters (bucket, window_start, count) VALUES ($1, $2, 1)
                       ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_counters.count + 1
                       RETURNING count)
                     SELECT up.count, COALESCE((SELECT p.count FROM rate_counters p
                       WHERE p.bucket = $1 AND p.window_start = $3), 0) FROM up",
                )
                .bind(bucket)
                .bind(window_start)
                .bind(window_start - WINDOW_MS)
                .fetch_one(pool)
                .await?
            }
            Db::Sqlite(pool) => {
                let mut tx = crate::BeginWrite::begin_write(pool).await?;
                let (current,): (i64,) = sqlx::query_as(
                    "INSERT INTO rate_counters (bucket, window_start, count) VALUES ($1, $2, 1)
                     ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_counters.count + 1
                     RETURNING count",
                )
                .bind(bucket)
                .bind(window_start)
                .fetch_one(&mut *tx)
                .await?;
                let previous: Option<i64> = sqlx::query_scalar(
                    "SELECT count FROM rate_counters WHERE bucket = $1 AND window_start = $2",
                )
                .bind(bucket)
                .bind(window_start - WINDOW_MS)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                (current, previous.unwrap_or(0))
            }
        };
        Ok(counts)
    }

    /// Drops counters of minutes that ended before `before` (milliseconds).
    pub async fn prune_rate_counters(&self, before: i64) -> Result<u64> {
        Ok(crate::on_db!(&self.db, |pool| {
            sqlx::query("DELETE FROM rate_counters WHERE window_start < $1")
                .bind(before - WINDOW_MS)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
