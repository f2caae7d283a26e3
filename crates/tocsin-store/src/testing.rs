//! For the test suites of every crate: which backend `TOCSIN_TEST_BACKEND` asks for, and a
//! fresh PostgreSQL database on `TOCSIN_TEST_PG_URL`'s server (scripts/test drops the
//! `tocsin_t_*` databases afterwards).

/// True when the tests should run against PostgreSQL.
pub fn postgres_backend() -> bool {
    std::env::var("TOCSIN_TEST_BACKEND").ok().as_deref() == Some("postgres")
}

/// The server tests create their databases on (default: the local one, user postgres).
pub fn postgres_admin_url() -> String {
    std::env::var("TOCSIN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Creates an empty database and returns its URL; panics, naming the server, when it cannot.
pub async fn fresh_postgres_database() -> String {
    let admin = postgres_admin_url();
    let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL tests need a server at {admin} (set TOCSIN_TEST_PG_URL): {e}")
    });
    let name = format!("tocsin_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database on {admin}: {e}"));
    pool.close().await;
    let (server, _) = admin
        .rsplit_once('/')
        .expect("TOCSIN_TEST_PG_URL names a database");
    format!("{server}/{name}")
}

/// Makes the test database at `url` (one `fresh_postgres_database` made) unreachable, as a
/// database server that went away is: it takes no new connections and its open ones are
/// ended. `allow` true lets it take connections again.
pub async fn postgres_database_reachable(url: &str, allow: bool) {
    let (_, name) = url.rsplit_once('/').expect("a database URL");
    assert!(
        name.starts_with("tocsin_t_"),
        "only a test's own database is made unreachable, not {name}"
    );
    let pool = sqlx::PgPool::connect(&postgres_admin_url())
        .await
        .expect("the PostgreSQL test server");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"
    )))
    .execute(&pool)
    .await
    .expect("ALTER DATABASE");
    if !allow {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&pool)
        .await
        .expect("ending the database's connections");
    }
    pool.close().await;
}

/// Every audit event of `chain` as stored, in sequence order.
pub async fn audit_events(store: &crate::Store, chain: &str) -> Vec<crate::audit::AuditEvent> {
    let mut out = Vec::new();
    for (_, segment) in segments(store, chain).await {
        out.extend(segment.events());
    }
    out
}

async fn segments(store: &crate::Store, chain: &str) -> Vec<(i64, crate::audit_segment::Segment)> {
    let rows: Vec<(i64, String, Vec<u8>)> = crate::on_db!(store.db(), |pool| {
        sqlx::query_as(
            "SELECT first_seq, prev_hash, events FROM audit_segments WHERE chain = $1 ORDER BY first_seq",
        )
        .bind(chain)
        .fetch_all(pool)
        .await
        .expect("reading audit segments")
    });
    rows.into_iter()
        .map(|(first_seq, prev, bytes)| {
            let segment = crate::audit_segment::Segment::parse(chain, prev, &bytes)
                .expect("a readable segment");
            (first_seq, segment)
        })
        .collect()
}

/// Rewrites the stored audit event `id` of `chain` as someone with access to the database
/// could: `edit` changes its fields, or removes it by returning false. Hashes are left as
/// they were, so `verify_chain` should find the change. Panics when there is no such event.
pub async fn tamper_audit_event(
    store: &crate::Store,
    chain: &str,
    id: &str,
    edit: impl FnOnce(&mut crate::audit::AuditRecord) -> bool,
) {
    for (first_seq, segment) in segments(store, chain).await {
        let mut events = segment.events();
        let Some(i) = events.iter().position(|e| e.record.id.as_str() == id) else {
            continue;
        };
        if !edit(&mut events[i].record) {
            events.remove(i);
        }
        let bytes = crate::audit_segment::SegmentBuilder::of_events(&events).encode();
        crate::on_db!(store.db(), |pool| {
            sqlx::query(
                "UPDATE audit_segments SET events = $3 WHERE chain = $1 AND first_seq = $2",
            )
            .bind(chain)
            .bind(first_seq)
            .bind(bytes)
            .execute(pool)
            .await
            .expect("rewriting an audit segment");
        });
        return;
    }
    panic!("no audit event {id} in chain `{chain}`");
}

/// Runs the migrations up to and including `last` only, as a deployment of an older version
/// would have, so that a test can put rows of the older schema in place before `migrate`
/// runs the rest.
pub async fn migrate_until(store: &crate::Store, last: i64) {
    let mut migrator = store.migrator();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= last)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    crate::on_db!(store.db(), |pool| migrator.run(pool).await.unwrap());
}

/// Makes the database refuse inserts into `table` (those whose new row matches `when`, an SQL
/// condition on `NEW`, if given) with an error, as a full disk or a broken constraint would:
/// a trigger, on either backend. `allow_inserts` takes it away.
pub async fn refuse_inserts(store: &crate::Store, table: &str, when: Option<&str>) {
    let statements = match store.db() {
        crate::Db::Sqlite(_) => vec![format!(
            "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} {} BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END",
            when.map(|w| format!("WHEN {w}")).unwrap_or_default()
        )],
        crate::Db::Postgres(_) => vec![
            "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'refused by a test trigger'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW {} EXECUTE FUNCTION refuse_insert()",
                when.map(|w| format!("WHEN ({w})")).unwrap_or_default()
            ),
        ],
    };
    for sql in statements {
        crate::on_db!(store.db(), |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .unwrap();
        });
    }
}

/// Takes away what `refuse_inserts` put on `table`.
pub async fn allow_inserts(store: &crate::Store, table: &str) {
    let sql = match store.db() {
        crate::Db::Sqlite(_) => format!("DROP TRIGGER refuse_{table}"),
        crate::Db::Postgres(_) => format!("DROP TRIGGER refuse_{table} ON {table}"),
    };
    crate::on_db!(store.db(), |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    });
}

/// Runs one SQL statement as someone with access to the database could; the rows it touched.
pub async fn execute(store: &crate::Store, sql: &str) -> u64 {
    crate::on_db!(store.db(), |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    })
}

/// The column names of `table`, in order.
pub async fn columns(store: &crate::Store, table: &str) -> Vec<String> {
    let sql = match store.db() {
        crate::Db::Sqlite(_) => "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        crate::Db::Postgres(_) => {
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        }
    };
    crate::on_db!(store.db(), |pool| {
        sqlx::query_scalar(sql)
            .bind(table)
            .fetch_all(pool)
            .await
            .expect("table columns")
    })
}

/// A row held locked by a writer in flight: an open transaction that locked the row of
/// `table` with `org_id` and `id` for update (on SQLite, which locks whole files: the write
/// lock). `release` commits it.
pub enum HeldRow {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl HeldRow {
    pub async fn release(self) {
        match self {
            HeldRow::Sqlite(tx) => tx.commit().await.expect("commit"),
            HeldRow::Postgres(tx) => tx.commit().await.expect("commit"),
        }
    }
}

/// Locks a row as `HeldRow` says, and keeps it locked until the answer is released.
pub async fn hold_row(store: &crate::Store, table: &str, org: &str, id: &str) -> HeldRow {
    use crate::BeginWrite;
    let select = format!("SELECT 1 FROM {table} WHERE org_id = $1 AND id = $2");
    match store.db() {
        crate::Db::Sqlite(pool) => {
            let mut tx = pool.begin_write().await.expect("write lock");
            sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(org)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .expect("the row");
            HeldRow::Sqlite(tx)
        }
        crate::Db::Postgres(pool) => {
            let mut tx = pool.begin_write().await.expect("transaction");
            sqlx::query(sqlx::AssertSqlSafe(format!("{select} FOR UPDATE")))
                .bind(org)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .expect("the row");
            HeldRow::Postgres(tx)
        }
    }
}
