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
