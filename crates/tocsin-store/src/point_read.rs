//! Point reads of the embedded SQLite file, on the calling thread.
//!
//! sqlx runs each SQLite statement on its connection's worker thread: a message to that
//! thread and a wake-up back. Verifying a key that is not in the cache is three such reads
//! (the key by its token's digest, then its user and memberships, or its integration), and
//! their hand-offs were most of its time and all of its tail: p50 about 250 us and a p99 of
//! 0.5 to 3 ms in bench/run, where the reads themselves take a few microseconds (issue #5).
//! The reads listed here are indexed lookups of one row or a few, so they run where they are
//! called, like a lock-protected cache would, on a rusqlite connection taken from a short
//! idle list; everything else still goes through sqlx.
//!
//! In WAL mode a reader never waits for the writer. It can still find the file locked for a
//! moment: while a connection recovers the WAL after a crash, or while the last connection to
//! close checkpoints and removes it. A point read waits at most `BUSY_WAIT` for that, since it
//! holds an event loop while it waits, and then answers `None` from [`point`], and the caller
//! reads the same rows through sqlx, whose wait is on its own thread. A file found locked
//! tends to stay locked for a while (a recovery reads the whole WAL), so for `BUSY_BACKOFF`
//! after that the point reads do not try, and every read goes to sqlx at once.

use crate::{Result, StoreError};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Implements `from_rusqlite` for a row struct: each field read from the column of its name,
/// or of the name given after it (`kind = "type"`).
macro_rules! rusqlite_row {
    ($row:ident { $($field:ident $(= $column:literal)?),* $(,)? }) => {
        impl $row {
            /// The row read from a rusqlite result, by column name (the point reads).
            pub(crate) fn from_rusqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok($row { $($field: r.get($crate::point_read::rusqlite_row!(@column $field $($column)?))?),* })
            }
        }
    };
    (@column $field:ident) => { stringify!($field) };
    (@column $field:ident $column:literal) => { $column };
}
pub(crate) use rusqlite_row;

/// How long a point read waits for a locked file before handing the read to sqlx.
const BUSY_WAIT: Duration = Duration::from_millis(5);
/// How long the point reads hand every read to sqlx without trying, after one found the file
/// locked: without it, each read would hold its event loop for `BUSY_WAIT` while the lock
/// lasts.
const BUSY_BACKOFF: Duration = Duration::from_millis(100);

/// Nanoseconds since the first call, never 0 (0 means "not backing off").
fn clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let nanos = START.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).saturating_add(1)
}

/// A point read's answer, or `None` when the file stayed locked past `BUSY_WAIT` or there are
/// no point reads (PostgreSQL): then the caller reads through sqlx.
pub(crate) fn point<T>(
    reads: Option<&PointReads>,
    read: impl FnOnce(&PointReads) -> Result<T>,
) -> Result<Option<T>> {
    let Some(reads) = reads else {
        return Ok(None);
    };
    if reads.backing_off() {
        return Ok(None);
    }
    match read(reads) {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Embedded(rusqlite::Error::SqliteFailure(f, _)))
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            let until = clock().saturating_add(reads.backoff.as_nanos() as u64);
            // Two reads that find the file locked at once keep the later time.
            reads.skip_until.fetch_max(until, Ordering::Relaxed);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug)]
pub(crate) struct PointReads {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// Idle connections kept for reuse: one per thread that reads at once, which is one per
    /// event loop (limits.rs) and a few for the main runtime; more are opened when needed and
    /// closed after.
    keep: usize,
    closed: AtomicBool,
    /// `clock()` until which reads go to sqlx without trying (0: none).
    skip_until: AtomicU64,
    /// `BUSY_BACKOFF` (tests shorten or lengthen it).
    backoff: Duration,
}

impl PointReads {
    /// Opens one read connection on a file that sqlx has already put in WAL mode.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let keep = cores + 2;
        let reads = PointReads {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep,
            closed: AtomicBool::new(false),
            skip_until: AtomicU64::new(0),
            backoff: BUSY_BACKOFF,
        };
        let first = reads.connect()?;
        reads.idle().push(first);
        Ok(reads)
    }

    /// True while a recent read found the file locked (`BUSY_BACKOFF`). Costs one relaxed
    /// load when none did.
    fn backing_off(&self) -> bool {
        let until = self.skip_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if clock() < until {
            return true;
        }
        // Over: the next reads skip the clock. (A read that found the file locked again
        // meanwhile set a later time, which this leaves alone.)
        let _ = self
            .skip_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<rusqlite::Connection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(&self.path)?;
        conn.busy_timeout(BUSY_WAIT)?;
        // These connections only read: a write through one is refused.
        conn.execute_batch("PRAGMA query_only = ON;")?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }

    /// Runs `f` on an idle connection (opening one when none is idle).
    fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let taken = self.idle().pop();
        let conn = match taken {
            Some(c) => c,
            None => self.connect()?,
        };
        let out = f(&conn);
        let mut idle = self.idle();
        if idle.len() < self.keep && !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
        out
    }

    /// The rows of `sql` (written with `$N` placeholders) for `params`.
    pub(crate) fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&numbered(sql))?;
            let rows = stmt.query_map(params, row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// The first row of `sql` for `params`, if any.
    pub(crate) fn optional<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&numbered(sql))?;
            let mut rows = stmt.query(params)?;
            match rows.next()? {
                Some(r) => Ok(Some(row(r)?)),
                None => Ok(None),
            }
        })
    }

    /// The first row of `sql` for `params`; `NotFound` when there is none.
    pub(crate) fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.optional(sql, params, row)?.ok_or(StoreError::NotFound)
    }

    /// Closes the idle connections; later reads answer `Closed`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle().clear();
    }
}

/// A statement written with PostgreSQL's `$N` placeholders, as SQLite's `?N`. SQLite reads
/// `$N` as a name, numbered in order of first appearance, which is `N` only when the
/// placeholders first appear in order; `?N` is always `N`.
pub(crate) fn numbered(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut text = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let is_number = rest[i + 1..].starts_with(|c: char| c.is_ascii_digit());
        text.push(if is_number { '?' } else { '$' });
        rest = &rest[i + 1..];
    }
    text.push_str(rest);
    Cow::Owned(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered() {
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '$x'"),
            "SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '$x'"
        );
    }

    /// The connections read what another connection committed, refuse writes, are reused,
    /// and answer `Closed` once closed.
    #[test]
    fn point_reads_see_commits_and_never_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER);",
            )
            .unwrap();
        let reads = PointReads::open(&path).unwrap();
        let get = |k: &str| reads.optional("SELECT v FROM t WHERE k = $1", [k], |r| r.get(0));
        assert_eq!(get("a").unwrap(), None::<i64>);
        assert!(matches!(
            reads.one("SELECT v FROM t WHERE k = $1", ["a"], |r| r
                .get::<_, i64>(0)),
            Err(StoreError::NotFound)
        ));
        writer
            .execute("INSERT INTO t VALUES ('a', 1), ('b', 2)", [])
            .unwrap();
        assert_eq!(get("a").unwrap(), Some(1));
        let all: Vec<i64> = reads
            .all("SELECT v FROM t WHERE k >= $1 ORDER BY k", ["a"], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(all, [1, 2]);
        assert_eq!(reads.idle().len(), 1, "one connection, reused");
        let write = reads.with(|c| Ok(c.execute("DELETE FROM t", [])?));
        assert!(write.is_err(), "a point read connection must not write");
        assert_eq!(get("b").unwrap(), Some(2));
        reads.close();
        assert!(matches!(get("a"), Err(StoreError::Closed)));
    }

    /// A file that another connection holds locked makes a point read answer `None` after
    /// `BUSY_WAIT` (so that the caller reads through sqlx), not an error and not a long wait.
    /// (With other connections open, a WAL file is locked only while one of them recovers the
    /// WAL; a connection in exclusive locking mode, taken before the reads open, stands in.)
    #[test]
    fn a_locked_file_hands_the_read_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER);
                 INSERT INTO t VALUES ('a', 1);
                 PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; DELETE FROM t WHERE 0;",
            )
            .unwrap();
        // One store backs off for longer than the test runs, the other for a millisecond.
        let mut lasting = PointReads::open(&path).unwrap();
        lasting.backoff = Duration::from_secs(3600);
        let mut reads = PointReads::open(&path).unwrap();
        reads.backoff = Duration::from_millis(1);
        let read = |reads: &PointReads| {
            reads.optional("SELECT v FROM t WHERE k = $1", ["a"], |r| {
                r.get::<_, i64>(0)
            })
        };
        assert_eq!(
            point(Some(&reads), read).unwrap(),
            None,
            "locked: sqlx reads"
        );
        assert_eq!(point(Some(&lasting), read).unwrap(), None);
        writer.execute_batch("COMMIT;").unwrap();
        drop(writer);
        // The file is free now, but a store that found it locked does not try again until
        // its back-off is over: sqlx reads (were the read tried, it would find the row).
        assert_eq!(
            point(Some(&lasting), read).unwrap(),
            None,
            "backing off: sqlx reads"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            point(Some(&reads), read).unwrap(),
            Some(Some(1)),
            "back-off over: point reads again"
        );
        assert_eq!(point(Some(&reads), read).unwrap(), Some(Some(1)));
        assert_eq!(
            point(None, read).unwrap(),
            None,
            "no point reads: sqlx reads"
        );
        let missing =
            |reads: &PointReads| reads.all("SELECT v FROM nope", [], |r| r.get::<_, i64>(0));
        assert!(
            point(Some(&reads), missing).is_err(),
            "other errors are errors"
        );
    }
}
