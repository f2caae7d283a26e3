//! Persistence for Tocsin. One `Store` over an `enum Db` of typed sqlx pools; every query
//! is written once, with `$N` placeholders that SQLite and PostgreSQL both accept, and the
//! `on_db!` macro runs the same body on whichever pool is configured. Every query that reads
//! tenant data takes the organization id as its first argument.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

mod alert_log;
pub mod alert_search;
pub mod alerts;
mod answer;
pub use answer::answer_here;
pub mod audit;
mod audit_segment;
mod batch;
mod bulk;
pub mod changes;
pub mod copy;
mod embedded;
pub mod heartbeats;
pub mod integrations;
pub mod keys;
pub mod orgs;
mod point_read;
pub mod rate_limits;
mod references;
pub mod roles;
pub mod teams;
pub mod testing;
pub mod users;
pub mod writer;

pub use writer::{AuditWriter, LastUsedTracker, WriterHealth, spawn_writers};

/// The configured database: one typed pool per backend, the same query code for both.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to the configured typed pool.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint refused the write; the string names the constraint's columns.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// An error of the embedded SQLite file's write connection (embedded.rs).
    #[error("database error: {0}")]
    Embedded(rusqlite::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Config(String),
    /// The store was closed (`Store::close`); nothing more can be written through it.
    #[error("the store is closed")]
    Closed,
    /// A write refused because something it names (a role, a team, an integration) was
    /// deleted after the caller checked it and before the write, or a role's scope changed so
    /// that it can no longer be held where the write gives it: the string names it, as
    /// "account role `name`".
    #[error("{0} no longer exists")]
    Vanished(String),
    /// A write refused because what it changes is no longer what the caller judged it to be
    /// (a compare and set: another write changed it in between); the string names it.
    #[error("{0} changed meanwhile")]
    Changed(String),
    /// A write batch failed: nothing of it was written (its audit events are held and
    /// retried by the writer). The string is why.
    #[error("the write failed: {0}")]
    WriteFailed(String),
}

impl StoreError {
    /// True when the database could not be reached at all (the connection, not the write):
    /// trying other writes at once would only wait out the same timeout.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Db(
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::WorkerCrashed
            )
        )
    }

    /// True when PostgreSQL ended the transaction to break a deadlock (`40P01`) or for a
    /// serialization failure (`40001`): nothing of it was written, and the same transaction
    /// run again succeeds (two nodes' batches that count into the same alerts in different
    /// orders wait for each other; the server picks one to end).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(db)) => db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some_and(|pg| matches!(pg.code(), "40P01" | "40001")),
            _ => false,
        }
    }

    /// True when the database could not serve the request for a reason of its own, not of
    /// the request: unreachable (above), closed, shutting down, refusing connections, out of
    /// connections or locked. The same request may well succeed once it is back, so callers
    /// answer `503 store_unavailable` with `Retry-After` rather than a 500.
    pub fn is_unavailable(&self) -> bool {
        if self.is_unreachable() || matches!(self, StoreError::Closed) {
            return true;
        }
        match self {
            StoreError::Db(sqlx::Error::PoolClosed) => true,
            StoreError::Db(sqlx::Error::Database(db)) => {
                let code = db.code().unwrap_or_default();
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    // SQLSTATE: 08 connection exception, 53 insufficient resources (too
                    // many connections, disk full), 57P0x the server or an administrator
                    // ended the connection, 55000 "database is not currently accepting
                    // connections".
                    code.starts_with("08")
                        || code.starts_with("53")
                        || code.starts_with("57P")
                        || code == "55000"
                } else {
                    // SQLite's (extended) result code; its low byte is the primary code:
                    // 5 busy, 6 locked, 10 I/O error, 13 full, 14 cannot open.
                    matches!(
                        code.parse::<u32>().map(|c| c & 0xff),
                        Ok(5 | 6 | 10 | 13 | 14)
                    )
                }
            }
            StoreError::Embedded(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::CannotOpen
            ),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolClosed => StoreError::Closed,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// SQLite: the background WAL checkpointer, stopped by `close` or with the last clone.
    checkpointer: Option<std::sync::Arc<Checkpointer>>,
    /// SQLite: the write connection of the group-commit batches (embedded.rs).
    embedded: Option<std::sync::Arc<embedded::EmbeddedWriter>>,
    /// SQLite: the connections of key verification's point reads (point_read.rs).
    reads: Option<std::sync::Arc<point_read::PointReads>>,
    /// SQLite: the alert log, where new alerts are durable before the tables take them
    /// (alert_log.rs).
    alert_log: Option<std::sync::Arc<alert_log::Shared>>,
}

/// Copies committed pages from the WAL into the database file from a connection of its own
/// (a `PASSIVE` checkpoint: it never blocks the writer or readers): while the WAL grows,
/// each time about 250 frames have been written (at most every 10 ms, at least every 250 ms;
/// 10 ms after a refused checkpoint or a quiet spell), backing off to once a second while it
/// does not. Without it the single writer
/// did that copy itself, inline, each time the WAL passed 1,000 pages, and every request of
/// the batch behind it waited: about 3 ms of the alert p99 (issue #5). The writer's own
/// automatic checkpoint still runs, but finds almost nothing left to copy; it is what lets
/// the WAL start over from its beginning, since a background checkpoint that runs beside
/// continuous writes never finds the WAL fully copied at the moment a write begins (a
/// background checkpoint alone let the WAL grow to 658 MB).
#[derive(Debug)]
struct Checkpointer {
    stop: std::sync::Arc<tokio::sync::Notify>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// When the background checkpointer looks next, from what each checkpoint answered.
#[derive(Debug)]
struct Cadence {
    wait: Duration,
    /// (frames in the WAL, frames copied) at the last look that was not refused.
    last: (i64, i64),
    last_at: tokio::time::Instant,
    idle: bool,
}

impl Cadence {
    const BUSY: Duration = Duration::from_millis(10);
    const IDLE: Duration = Duration::from_secs(1);
    /// The frames a checkpoint aims to find: a quarter of the writer's automatic checkpoint
    /// (1,000 pages), so that it still finds almost nothing left to copy.
    const FRAMES: i64 = 250;
    /// The longest wait while the WAL grows.
    const GROWING: Duration = Duration::from_millis(250);

    fn new(now: tokio::time::Instant) -> Cadence {
        Cadence {
            wait: Self::BUSY,
            last: (0, 0),
            last_at: now,
            idle: false,
        }
    }

    /// The wait before the next checkpoint, when `new` frames were written in `elapsed`: as
    /// long as it takes to write about `FRAMES` at that rate. Every checkpoint that copies
    /// something syncs the database file, and a page rewritten by many commits (the last page
    /// of a table, its index pages) is copied once per checkpoint: under a light write load
    /// (request audit events alone) checkpoints every 10 ms cost a fifth of what the events'
    /// own writing did.
    fn growing(new: i64, elapsed: Duration) -> Duration {
        let per_frame = elapsed.as_secs_f64() / new.max(1) as f64;
        Duration::from_secs_f64(per_frame * Self::FRAMES as f64).clamp(Self::BUSY, Self::GROWING)
    }

    /// The wait after a checkpoint answered `(busy, frames, copied)` at `now`.
    fn next(
        &mut self,
        (busy, frames, copied): (i64, i64, i64),
        now: tokio::time::Instant,
    ) -> Duration {
        if busy != 0 || frames < 0 {
            // Refused: another checkpoint (the writer's own, under load) holds the lock.
            // Nothing is learned of the WAL's growth; look again soon.
            self.wait = Self::BUSY;
            return self.wait;
        }
        if (frames, copied) == self.last {
            self.wait = (self.wait * 2).min(Self::IDLE);
            self.idle = true;
        } else {
            // The frames written since the last look. A WAL that was fully copied then, or
            // that is shorter now, has started over: all of its frames are new (at worst an
            // overcount, which only shortens the wait).
            let restarted = frames < self.last.0 || self.last.0 == self.last.1;
            let new = if restarted {
                frames
            } else {
                frames - self.last.0
            };
            // Growth after a quiet spell is measured over that spell: start again at BUSY.
            self.wait = if self.idle {
                Self::BUSY
            } else {
                Self::growing(new, now - self.last_at)
            };
            self.idle = false;
        }
        self.last = (frames, copied);
        self.last_at = now;
        self.wait
    }

    /// After a checkpoint failed: the writer's own checkpoints go on meanwhile.
    fn failed(&mut self) {
        self.wait = Self::IDLE;
    }
}

impl Checkpointer {
    async fn start(opts: SqliteConnectOptions) -> Result<Checkpointer> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut cadence = Cadence::new(tokio::time::Instant::now());
            loop {
                tokio::select! {
                    () = stopped.notified() => break,
                    () = tokio::time::sleep(cadence.wait) => {}
                }
                // (busy, frames in the WAL, frames copied into the database file)
                match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(answer) => {
                        cadence.next(answer, tokio::time::Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "background WAL checkpoint failed; the writer's own checkpoints continue");
                        cadence.failed();
                    }
                }
            }
            let _ = conn.close().await;
        });
        Ok(Checkpointer {
            stop,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Stops the task and closes its connection.
    async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            self.stop.notify_one();
            let _ = task.await;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

pub fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(v as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn now_ms() -> i64 {
    ms(OffsetDateTime::now_utc())
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

/// `%"value"%` for finding a string in a JSON list with LIKE, with LIKE's wildcards escaped
/// (use with `ESCAPE '\'`): role names and ids contain `_`.
pub(crate) fn like_json_member(value: &str) -> String {
    let json = to_json(&value);
    let escaped = json
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

impl Store {
    /// Opens (creating if needed) the store a `--database-url` names.
    pub async fn connect(url: &str) -> Result<Store> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Store::open_sqlite(Path::new(path)).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Store::open_postgres(url).await;
        }
        Err(StoreError::Config(format!(
            "`{}` is neither sqlite://PATH nor postgres://...",
            url.split('@').next_back().unwrap_or("")
        )))
    }

    /// The embedded default: a SQLite file in WAL mode with `synchronous=FULL`, so a
    /// committed write survives both a killed process and a lost machine.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::Db)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        // sqlx's write transactions (keys, users, settings; the group-commit batches have a
        // connection of their own, embedded.rs) get a pool of their own with one connection:
        // writers then queue in the pool instead of sleeping in SQLite's busy handler (steps
        // of up to 100 ms) while another writer holds the lock, and readers keep the other
        // connections. Its statement journals stay in memory instead of spilling to a
        // temporary file past 64 KiB.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts.clone().pragma("temp_store", "memory"))
            .await?;
        let turns = std::sync::Arc::new(embedded::WriteTurns::default());
        let embedded = embedded::EmbeddedWriter::open(path, turns.clone())?;
        sqlite_writers()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_path_buf(), (writer, turns));
        let reads = point_read::PointReads::open(path)?;
        let checkpointer = Checkpointer::start(opts).await?;
        Ok(Store {
            db: Db::Sqlite(pool),
            checkpointer: Some(std::sync::Arc::new(checkpointer)),
            embedded: Some(std::sync::Arc::new(embedded)),
            reads: Some(std::sync::Arc::new(reads)),
            alert_log: Some(std::sync::Arc::new(alert_log::Shared::new())),
        })
    }

    /// PostgreSQL: commits are durable by the server's own settings (fsync, synchronous_commit).
    pub async fn open_postgres(url: &str) -> Result<Store> {
        // One connection first, for its own error: the pool retries a refused connection
        // until its acquire timeout and then says only "pool timed out". This one is retried
        // as long (a database starting beside the node), then says why it failed.
        {
            use sqlx::Connection;
            const WINDOW: Duration = Duration::from_secs(10);
            let deadline = tokio::time::Instant::now() + WINDOW;
            loop {
                let why = match tokio::time::timeout_at(
                    deadline,
                    sqlx::postgres::PgConnection::connect(url),
                )
                .await
                {
                    Ok(Ok(first)) => {
                        let _ = first.close().await;
                        break;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {} s", WINDOW.as_secs()),
                };
                let wait = Duration::from_millis(250);
                if tokio::time::Instant::now() + wait >= deadline {
                    return Err(StoreError::Config(format!(
                        "cannot connect to PostgreSQL (tried for {} s): {why}",
                        WINDOW.as_secs()
                    )));
                }
                tokio::time::sleep(wait).await;
            }
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| StoreError::Config(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(Store {
            db: Db::Postgres(pool),
            checkpointer: None,
            embedded: None,
            alert_log: None,
            reads: None,
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// This backend's migrations, embedded in the binary once.
    pub(crate) fn migrator(&self) -> sqlx::migrate::Migrator {
        match &self.db {
            Db::Sqlite(_) => sqlx::migrate!("migrations/sqlite"),
            Db::Postgres(_) => sqlx::migrate!("migrations/postgres"),
        }
    }

    /// Creates or updates the schema. On PostgreSQL sqlx holds an advisory lock meanwhile, so
    /// nodes started together migrate one at a time.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = self.migrator();
        on_db!(&self.db, |pool| migrator.run(pool).await?);
        let moved = self.convert_legacy_audit().await?;
        if moved > 0 {
            tracing::info!(
                events = moved,
                "moved audit events into segments (migration 0008)"
            );
        }
        self.open_alert_log().await
    }

    /// SQLite: opens the alert log and writes into the tables what it holds beyond them
    /// (alerts answered before a crash or a stop), so that whoever opens the store finds
    /// every alert that was answered. Left alone while another process (a running server)
    /// holds the log.
    async fn open_alert_log(&self) -> Result<()> {
        let (Some(shared), Db::Sqlite(pool)) = (&self.alert_log, &self.db) else {
            return Ok(());
        };
        // Once per store: a second migrate must not find its own writer's lock and take it
        // for another process's.
        if shared
            .opened
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Ok(());
        }
        let db = pool.connect_options().get_filename().to_path_buf();
        let applied = self
            .meta_get(alert_log::APPLIED_KEY)
            .await?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let opened = alert_log::AlertLog::open(&db, applied).map_err(|e| {
            StoreError::Config(format!(
                "cannot open the alert log {}: {e}",
                alert_log::path_for(&db).display()
            ))
        })?;
        let Some((log, pending)) = opened else {
            shared
                .held_elsewhere
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                log = %alert_log::path_for(&db).display(),
                "another process (a running server) holds this database's alert log: the alerts it accepted last may not be in the tables yet"
            );
            return Ok(());
        };
        let records = pending.len();
        let mut alerts = 0;
        for (seq, ops) in pending {
            alerts += ops.len();
            self.apply_logged_batch(&ops, &[], Some(seq)).await?;
        }
        if records > 0 {
            tracing::info!(
                alerts,
                records,
                "wrote the alerts accepted before the last stop from the alert log into the tables"
            );
        }
        let last = log.last_seq();
        shared
            .appended
            .store(last, std::sync::atomic::Ordering::Release);
        shared.applied(last);
        *shared.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(log);
        Ok(())
    }

    /// Waits until the tables hold every alert accepted before the call (SQLite's alert log;
    /// at once elsewhere). Every read of alerts and request statuses starts with it, and so
    /// does a stop.
    pub async fn alerts_settled(&self) -> Result<()> {
        match &self.alert_log {
            Some(log) => log.settled().await,
            None => Ok(()),
        }
    }

    /// SQLite: whether another process (a running server) held the alert log when this
    /// store was migrated: the newest alerts it accepted may not be in the tables yet.
    pub fn alert_log_in_use(&self) -> bool {
        self.alert_log
            .as_ref()
            .is_some_and(|s| s.held_elsewhere.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The alert log, for the writer: taken once.
    pub(crate) fn take_alert_log(
        &self,
    ) -> Option<(alert_log::AlertLog, std::sync::Arc<alert_log::Shared>)> {
        let shared = self.alert_log.as_ref()?;
        let log = shared
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some((log, shared.clone()))
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        on_db!(&self.db, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .is_ok())
    }

    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop().await;
        }
        if let Some(embedded) = &self.embedded {
            embedded.close();
        }
        if let Some(reads) = &self.reads {
            reads.close();
        }
        if let Db::Sqlite(pool) = &self.db {
            let path = pool.connect_options().get_filename().to_path_buf();
            let writer = sqlite_writers()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&path);
            if let Some((w, _)) = writer {
                w.close().await;
            }
        }
        on_db!(&self.db, |pool| pool.close().await)
    }

    /// The region of a key the database holds (any one: a deployment serves one region),
    /// `None` while it holds none.
    pub async fn some_key_region(&self) -> Result<Option<String>> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_scalar("SELECT region FROM api_keys LIMIT 1")
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let v: Option<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        Ok(v.map(|(v,)| v))
    }

    /// Sets `key` only if it is absent; true when this call set it.
    pub async fn meta_claim(&self, key: &str, value: &str) -> Result<bool> {
        let n = on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn meta_delete(&self, key: &str) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query("DELETE FROM meta WHERE key = $1")
                .bind(key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

/// A page of a list: newest first, with an opaque cursor for the next page.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cuts `rows` (fetched with `limit + 1`) to `limit` and derives the next cursor.
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

/// Marks a statement assembled with `format!` as safe: such strings only ever splice in
/// column lists and placeholder numbers from this crate, never a value.
pub(crate) fn safe(sql: &str) -> sqlx::AssertSqlSafe<&str> {
    sqlx::AssertSqlSafe(sql)
}

/// Opens a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
/// a deferred transaction that reads first and writes later fails with "database is locked"
/// (SQLITE_BUSY_SNAPSHOT) when another writer committed in between, and no busy timeout
/// retries that. PostgreSQL, when it arrives, keeps a plain `BEGIN`.
pub(crate) trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = std::result::Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>,
    >;
}

impl BeginWrite for sqlx::PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// The sqlx write pool of each open SQLite file (see `open_sqlite`), found by the file's
/// path, with the count of its writers waiting for the lock (the embedded batch writer lets
/// them go first).
type SqliteWriters = std::collections::HashMap<
    std::path::PathBuf,
    (sqlx::SqlitePool, std::sync::Arc<embedded::WriteTurns>),
>;

fn sqlite_writers() -> &'static std::sync::Mutex<SqliteWriters> {
    static WRITERS: std::sync::OnceLock<std::sync::Mutex<SqliteWriters>> =
        std::sync::OnceLock::new();
    WRITERS.get_or_init(Default::default)
}

impl BeginWrite for sqlx::SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        let path = self.connect_options().get_filename().to_path_buf();
        let writer = sqlite_writers()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&path)
            .cloned();
        match writer {
            Some((w, turns)) if !w.is_closed() => {
                // Writers queue for the pool's one connection first; the one holding it is
                // the one waiting for SQLite's lock, and the batch writer yields to it.
                let conn = w.acquire().await?;
                let _waiting = turns.wait();
                sqlx::Transaction::begin(
                    conn,
                    Some(sqlx::SqlSafeStr::into_sql_str("BEGIN IMMEDIATE")),
                )
                .await
            }
            _ => self.begin_with("BEGIN IMMEDIATE").await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cadence;
    use std::time::Duration;

    /// The checkpoint cadence follows the WAL's growth: every 10 ms under alert load, less
    /// often under a light load, never more than 250 ms apart while the WAL grows.
    #[test]
    fn checkpoints_come_about_every_250_frames() {
        let ms = |m| Duration::from_millis(m);
        assert_eq!(Cadence::growing(2_500, ms(100)), ms(10));
        assert_eq!(Cadence::growing(250, ms(10)), ms(10));
        let light = Cadence::growing(30, ms(10));
        assert!(light > ms(80) && light < ms(85), "{light:?}");
        assert_eq!(Cadence::growing(1, ms(1_000)), ms(250));
        assert_eq!(Cadence::growing(0, ms(10)), ms(250));
    }

    /// A refused checkpoint, a WAL that started over, and growth after a quiet spell all
    /// bring the next look back to 10 ms.
    #[test]
    fn the_cadence_reacts_to_refusals_restarts_and_bursts() {
        let ms = |m| Duration::from_millis(m);
        let t0 = tokio::time::Instant::now();
        let mut c = Cadence::new(t0);
        // Light growth: 30 frames in 10 ms, about 83 ms to the next look.
        let light = c.next((0, 30, 30), t0 + ms(10));
        assert!(light > ms(80) && light < ms(85), "{light:?}");
        // Refused while the writer checkpoints: look again soon, and learn nothing.
        assert_eq!(c.next((1, -1, -1), t0 + ms(95)), ms(10));
        assert_eq!(c.last, (30, 30));
        // The WAL was fully copied, so the writer started it over: 250 new frames, not 220.
        assert_eq!(c.next((0, 250, 250), t0 + ms(200)), ms(190));
        // Nothing new: back off, doubling up to a second.
        assert_eq!(c.next((0, 250, 250), t0 + ms(400)), ms(380));
        assert_eq!(c.next((0, 250, 250), t0 + ms(800)), ms(760));
        assert_eq!(c.next((0, 250, 250), t0 + ms(1600)), ms(1000));
        // Growth after the quiet spell: 10 ms, whatever the average over the spell says.
        assert_eq!(c.next((0, 40, 20), t0 + ms(2600)), ms(10));
        // A WAL not fully copied goes on: 30 new frames in 10 ms.
        let steady = c.next((0, 70, 60), t0 + ms(2610));
        assert!(steady > ms(80) && steady < ms(85), "{steady:?}");
    }
}
