//! The embedded SQLite file's write batches, on a rusqlite connection of their own.
//!
//! sqlx runs each SQLite statement on its connection's worker thread: every statement is a
//! message to that thread and a wake-up back, and every value is copied into sqlx's argument
//! buffer first. A write batch is a dozen statements and more, so its hand-offs cost about as
//! much as SQLite's own work (issue #5's profiles). Here the batch runs where it is called, on
//! the group-commit writer's own thread (`writer::spawn_writers`), through prepared statements
//! kept in the connection's cache; everything else still goes through sqlx.
//!
//! Two connections may now write to the file: this one and sqlx's write pool (keys, users,
//! settings...). Both begin with `BEGIN IMMEDIATE`; when sqlx has a writer waiting for the
//! lock, the batch lets it go first (`WriteTurns`) instead of taking the lock again the moment
//! it commits, which under a steady stream of alerts would leave the other writer retrying
//! in SQLite's busy handler.

use crate::alerts::{Alert, AlertInsert, AlertRow, AlertUpdate};
use crate::audit_segment::SegmentBuilder;
use crate::batch::{self, BatchConn, Rows, SegmentConn};
use crate::bulk::{BulkSql, bind_row};
use crate::{Result, StoreError};
use rusqlite::OptionalExtension;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The write connection, and the count of sqlx writers waiting for the file's lock.
#[derive(Debug)]
pub(crate) struct EmbeddedWriter {
    conn: std::sync::Mutex<Option<rusqlite::Connection>>,
    turns: Arc<WriteTurns>,
}

/// sqlx writers waiting for the write lock (`BeginWrite` counts them).
#[derive(Debug, Default)]
pub(crate) struct WriteTurns {
    waiting: AtomicUsize,
}

impl WriteTurns {
    /// Counts a waiting writer until the returned guard drops.
    pub(crate) fn wait(self: &Arc<Self>) -> TurnGuard {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        TurnGuard(self.clone())
    }

    /// Waits (up to `limit`) while another writer waits for the lock.
    fn yield_to_others(&self, limit: Duration) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let start = Instant::now();
        while self.waiting.load(Ordering::SeqCst) > 0 && start.elapsed() < limit {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

pub(crate) struct TurnGuard(Arc<WriteTurns>);

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The most a batch waits for a sqlx writer to take its turn. SQLite's busy handler retries
/// after 1, 2, 5, 10... ms, up to 100 ms apart once it has waited a while, so a writer
/// that is waiting gets the lock at its next retry.
const YIELD: Duration = Duration::from_millis(250);

impl EmbeddedWriter {
    /// Opens the write connection on a file that sqlx has already put in WAL mode.
    pub(crate) fn open(path: &std::path::Path, turns: Arc<WriteTurns>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // The same durability as sqlx's connections: WAL, synced at every commit.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(EmbeddedWriter {
            conn: std::sync::Mutex::new(Some(conn)),
            turns,
        })
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed when `f` returns `Some` and
    /// rolled back when it returns `None` or fails. It blocks the calling thread (the
    /// commit's fsync, a wait for the lock): the group-commit writer calls it on a thread of
    /// its own; called from a worker of a multi-threaded runtime (a startup event, a test), it
    /// tells the runtime first, so that the worker's other tasks move elsewhere meanwhile.
    pub(crate) fn transaction<T>(
        &self,
        f: impl FnOnce(&mut Embedded<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_worker {
            tokio::task::block_in_place(|| self.transaction_here(f))
        } else {
            self.transaction_here(f)
        }
    }

    fn transaction_here<T>(
        &self,
        f: impl FnOnce(&mut Embedded<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_ref().ok_or(StoreError::Closed)?;
        self.turns.yield_to_others(YIELD);
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&mut Embedded { conn: &tx })?;
        match out {
            Some(v) => {
                tx.commit()?;
                Ok(Some(v))
            }
            None => {
                tx.rollback()?;
                Ok(None)
            }
        }
    }

    /// Closes the connection; later batches fail with `StoreError::Closed`.
    pub(crate) fn close(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(conn) = conn
            && let Err((_, e)) = conn.close()
        {
            tracing::warn!(error = %e, "closing the SQLite write connection failed");
        }
    }
}

/// Runs a future that never waits (the embedded connection's methods do their work when
/// called) to its end.
pub(crate) fn now<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StoreError::Config(
            "an embedded SQLite write waited, which it never does".into(),
        )),
    }
}

/// The write connection inside a transaction.
pub(crate) struct Embedded<'c> {
    conn: &'c rusqlite::Connection,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
            }
            _ => StoreError::Embedded(e),
        }
    }
}

impl From<crate::bulk::BindError> for StoreError {
    fn from(e: crate::bulk::BindError) -> Self {
        StoreError::Config(format!("binding a row: {e}"))
    }
}

impl Embedded<'_> {
    /// Sets a `meta` value inside the transaction.
    pub(crate) fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }

    /// The statement from the connection's cache. The batch's statements are written with
    /// PostgreSQL's `$N` placeholders (`point_read::numbered`).
    fn prepare(&self, sql: &str) -> Result<rusqlite::CachedStatement<'_>> {
        Ok(self
            .conn
            .prepare_cached(&crate::point_read::numbered(sql))?)
    }

    /// Runs a statement whose parameters are a row struct's fields.
    fn execute_row<R: Serialize + ?Sized>(
        &self,
        sql: &str,
        columns: &[&'static str],
        row: &R,
    ) -> Result<()> {
        let mut stmt = self.prepare(sql)?;
        bind_row(&mut stmt, columns, row)?;
        stmt.raw_execute()?;
        Ok(())
    }

    fn insert_each<R: Serialize>(&self, sql: &BulkSql, rows: &[R]) -> Result<()> {
        let mut stmt = self.prepare(&sql.sqlite)?;
        for row in rows {
            bind_row(&mut stmt, &sql.columns, row)?;
            stmt.raw_execute()?;
        }
        Ok(())
    }
}

impl SegmentConn for Embedded<'_> {
    async fn audit_head(&mut self, chain: &str) -> Result<(i64, String)> {
        Ok(self
            .prepare(batch::HEAD)?
            .query_row((chain, crate::audit::GENESIS), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?)
    }

    async fn insert_segment(&mut self, chain: &str, segment: &SegmentBuilder<'_>) -> Result<()> {
        self.prepare(batch::SEGMENT)?.execute((
            chain,
            segment.first_seq,
            segment.last_seq,
            segment.first_at,
            segment.last_at,
            &segment.prev_hash,
            segment.encode(),
        ))?;
        let mut stmt = self.prepare(batch::TERM)?;
        for term in segment.terms() {
            stmt.execute((chain, term, segment.first_seq))?;
        }
        Ok(())
    }

    async fn move_head(&mut self, chain: &str, seq: i64, hash: &str) -> Result<()> {
        self.prepare(batch::MOVE_HEAD)?
            .execute((chain, seq, hash))?;
        Ok(())
    }
}

impl BatchConn for Embedded<'_> {
    async fn open_aliases(
        &mut self,
        org: &str,
        aliases: &[&str],
    ) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.prepare(
            "SELECT alias, id, teams FROM alerts WHERE org_id = $1 AND status = 'open'
               AND alias IN (SELECT value FROM json_each($2))",
        )?;
        let rows = stmt.query_map((org, crate::to_json(&aliases)), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    async fn reserve_tiny_ids(&mut self, org: &str, n: i64) -> Result<i64> {
        Ok(self
            .prepare(batch::RESERVE_TINY_IDS)?
            .query_row((org, n), |r| r.get(0))?)
    }

    /// A plain insert, where PostgreSQL's is an upsert: the batch holds SQLite's only write
    /// lock from its look for open aliases to its commit, so no other writer can open an
    /// alert with one of its aliases in between (an upsert here cost its `RETURNING` rows and a
    /// statement journal, a fifth of the writer's time).
    async fn insert_alerts(
        &mut self,
        rows: &[AlertInsert<'_>],
    ) -> Result<Vec<Option<crate::alerts::Counted>>> {
        static SQL: std::sync::LazyLock<BulkSql> =
            std::sync::LazyLock::new(|| BulkSql::new("alerts", crate::alerts::INSERT_COLUMNS, ""));
        self.insert_each(&SQL, rows)?;
        // The only writer: no other node opened an alert since the look for open aliases,
        // so every row is a new alert of its own (a clash would have failed the insert).
        Ok(vec![None; rows.len()])
    }

    async fn insert_rows<R: Serialize>(&mut self, table: Rows, rows: &[R]) -> Result<()> {
        self.insert_each(table.sql(), rows)
    }

    async fn count_again(&mut self, org: &str, id: &str, n: i64, at: i64, now: i64) -> Result<()> {
        self.prepare(batch::COUNT_AGAIN)?
            .execute((org, id, n, at, now))?;
        Ok(())
    }

    async fn alert(&mut self, org: &str, id: &str) -> Result<Option<Alert>> {
        let row = self
            .prepare(batch::select_alert())?
            .query_row((org, id), AlertRow::from_rusqlite)
            .optional()?;
        Ok(row.map(Alert::from))
    }

    async fn update_alert(&mut self, row: &AlertUpdate<'_>) -> Result<()> {
        self.execute_row(batch::update_alert(), AlertUpdate::COLUMNS, row)
    }

    async fn delete_alert(&mut self, org: &str, id: &str) -> Result<()> {
        for sql in batch::DELETE_ALERT {
            self.prepare(sql)?.execute((org, id))?;
        }
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        Ok(self.conn.execute_batch("SAVEPOINT op")?)
    }

    async fn release(&mut self) -> Result<()> {
        Ok(self.conn.execute_batch("RELEASE op")?)
    }

    async fn rollback_to(&mut self) -> Result<()> {
        Ok(self.conn.execute_batch("ROLLBACK TO op; RELEASE op")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write connection keeps the durability the rest of the store has: WAL, a sync at
    /// every commit, foreign keys enforced.
    #[test]
    fn the_write_connection_is_as_durable_as_sqlx_s() {
        let dir = tempfile::tempdir().unwrap();
        let writer = EmbeddedWriter::open(&dir.path().join("t.db"), Arc::default()).expect("opens");
        let settings = writer
            .transaction(|e| {
                let read = |pragma: &str| -> Result<String> {
                    Ok(e.conn.query_row(&format!("PRAGMA {pragma}"), [], |r| {
                        r.get::<_, rusqlite::types::Value>(0)
                            .map(|v| format!("{v:?}"))
                    })?)
                };
                Ok(Some([
                    read("journal_mode")?,
                    read("synchronous")?,
                    read("foreign_keys")?,
                ]))
            })
            .unwrap()
            .unwrap();
        assert_eq!(settings, ["Text(\"wal\")", "Integer(2)", "Integer(1)"]);
        writer.close();
        let closed = writer.transaction(|_| Ok(Some(())));
        assert!(matches!(closed, Err(StoreError::Closed)));
    }

    /// A batch waits while a sqlx writer waits for the lock, until it has the lock or the
    /// limit passes.
    #[test]
    fn a_batch_lets_a_waiting_writer_go_first() {
        let turns = Arc::new(WriteTurns::default());
        // Nobody waits: no wait (with an hour's limit, a wait would hang the test).
        turns.yield_to_others(Duration::from_secs(3600));
        // A writer waits: the batch waits out the limit...
        let waiting = turns.wait();
        let start = Instant::now();
        turns.yield_to_others(Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(20));
        // ...or until the writer has its turn.
        let done = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            drop(waiting);
        });
        turns.yield_to_others(Duration::from_secs(3600));
        done.join().unwrap();
        assert_eq!(turns.waiting.load(Ordering::SeqCst), 0);
    }
}
