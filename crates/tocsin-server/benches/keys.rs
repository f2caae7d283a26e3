//! Key verification against a store of 1,000,000 keys (issue #5), on the embedded SQLite store.
//!
//! Seeds a data directory (`BENCH_KEYS_DIR`, default `target/bench-keys`) once: the owner that
//! `tocsin serve` creates, then `BENCH_KEYS` keys (default 1,000,000) cloned from the owner's key
//! in SQL, of which the first `BENCH_REAL_KEYS` (default 10,000) get real tokens; those tokens go
//! to `tokens.txt` there for `bench/run`'s memory scenario. Then it measures:
//!
//! - verification of a key not in the cache (parse, keyed digest, cache miss, store lookup,
//!   principal): every real token once, each timed, p50 and p99, against a baseline measured in
//!   the same run: the bare indexed lookup of the same digests (`SELECT key_id FROM
//!   api_key_tokens WHERE digest = ?`) on a rusqlite connection of its own, on the calling
//!   thread, as the store's point reads run (and, for scale, the same lookup through sqlx's
//!   pool);
//! - verification of a cached key, with criterion.
//!
//! `cargo bench -p tocsin-server --bench keys` (bench/run runs it).

use criterion::Criterion;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tocsin_core::token::Token;
use tocsin_server::config::{Overrides, Settings};
use tocsin_store::Db;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let total = env_usize("BENCH_KEYS", 1_000_000);
    let real = env_usize("BENCH_REAL_KEYS", 10_000).min(total);
    let dir = std::env::var_os("BENCH_KEYS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-keys")
        });
    let marker = dir.join(format!("seeded-{total}-{real}"));
    if !marker.exists() && dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove the old bench data directory");
    }
    std::fs::create_dir_all(&dir).expect("create the bench data directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let settings = Settings::from_overrides(Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.clone()),
        ..Default::default()
    })
    .expect("settings");
    let running = rt
        .block_on(tocsin_server::start(settings, Default::default()))
        .expect("start the server on the bench data directory");
    let app = running.app.clone();
    let Db::Sqlite(pool) = app.store.db() else {
        panic!("the keys benchmark runs on the embedded SQLite store");
    };
    let tokens_file = dir.join("tokens.txt");
    if !marker.exists() {
        let started = Instant::now();
        let owner = std::fs::read_to_string(dir.join("owner-token")).expect("owner-token");
        let owner = Token::parse(owner.trim()).expect("the owner token parses");
        let tokens = rt.block_on(seed(pool, &app, &owner, total, real));
        std::fs::write(&tokens_file, tokens.join("\n") + "\n").expect("write tokens.txt");
        std::fs::write(&marker, "").expect("write the seed marker");
        println!(
            "seeded {total} keys ({real} with tokens) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let tokens: Vec<String> = std::fs::read_to_string(&tokens_file)
        .expect("tokens.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    let stored: i64 = rt
        .block_on(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(pool))
        .expect("count keys");
    println!("store: {stored} keys");

    // Uncached: every token once (so never in the cache), each verification timed, each
    // followed by the bare indexed lookup of the same digest.
    app.cache.clear();
    let mut verify = Vec::with_capacity(tokens.len());
    let mut bare = Vec::with_capacity(tokens.len());
    let mut pooled = Vec::with_capacity(tokens.len());
    let plain = rusqlite::Connection::open(dir.join("tocsin.db")).expect("open the bench store");
    let mut by_digest = plain
        .prepare("SELECT key_id FROM api_key_tokens WHERE digest = ?1")
        .expect("prepare the bare lookup");
    rt.block_on(async {
        for raw in &tokens {
            let t0 = Instant::now();
            let token = Token::parse(raw).expect("a seeded token parses");
            let found = tocsin_server::auth::lookup(&app, &token)
                .await
                .unwrap_or_else(|_| panic!("lookup failed"));
            verify.push(t0.elapsed());
            assert!(found.is_some(), "a seeded token must verify");
            let digest = app.hasher.digest(&token);
            let t1 = Instant::now();
            let key: String = by_digest
                .query_row([&digest[..]], |r| r.get(0))
                .expect("bare lookup");
            bare.push(t1.elapsed());
            assert!(key.starts_with("key_"));
            let t2 = Instant::now();
            let key: Option<String> =
                sqlx::query_scalar("SELECT key_id FROM api_key_tokens WHERE digest = $1")
                    .bind(&digest[..])
                    .fetch_optional(pool)
                    .await
                    .expect("bare lookup through sqlx");
            pooled.push(t2.elapsed());
            assert!(key.is_some());
        }
    });
    drop(by_digest);
    drop(plain);
    verify.sort();
    bare.sort();
    pooled.sort();
    let (v50, v99) = (percentile(&verify, 0.50), percentile(&verify, 0.99));
    let (b50, b99) = (percentile(&bare, 0.50), percentile(&bare, 0.99));
    let (s50, s99) = (percentile(&pooled, 0.50), percentile(&pooled, 0.99));
    println!(
        "uncached verification, {stored} keys, {} lookups: p50 {:.0} us, p99 {:.0} us (target <= 1000 us: {}); \
         bare indexed lookup p50 {:.0} us, p99 {:.0} us; ratio p99 {:.2}x the bare lookup \
         (the same lookup through sqlx's pool: p50 {:.0} us, p99 {:.0} us)",
        verify.len(),
        micros(v50),
        micros(v99),
        if v99 <= Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        },
        micros(b50),
        micros(b99),
        micros(v99) / micros(b99).max(0.001),
        micros(s50),
        micros(s99),
    );

    // Cached: one token, already in the cache.
    let token = Token::parse(&tokens[0]).expect("parses");
    rt.block_on(tocsin_server::auth::lookup(&app, &token))
        .unwrap_or_else(|_| panic!("lookup failed"));
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    c.bench_function("verify a cached key (parse, digest, cache hit)", |b| {
        b.iter(|| {
            let token = Token::parse(std::hint::black_box(&tokens[0])).expect("parses");
            let hit = rt
                .block_on(tocsin_server::auth::lookup(&app, &token))
                .unwrap_or_else(|_| panic!("lookup failed"));
            std::hint::black_box(hit)
        })
    });
    // The same loop without the verification, for scale: parsing alone.
    c.bench_function("baseline: parse the token only", |b| {
        b.iter(|| Token::parse(std::hint::black_box(&tokens[0])).expect("parses"))
    });
    c.final_summary();
    rt.block_on(running.shutdown());
}

/// Clones the owner's key `total` times in SQL (random digests), then gives the first `real`
/// clones real tokens; returns those tokens.
async fn seed(
    pool: &sqlx::SqlitePool,
    app: &tocsin_server::state::App,
    owner: &Token,
    total: usize,
    real: usize,
) -> Vec<String> {
    let owner_key: String =
        sqlx::query_scalar("SELECT key_id FROM api_key_tokens WHERE digest = $1")
            .bind(&app.hasher.digest(owner)[..])
            .fetch_one(pool)
            .await
            .expect("the owner's key");
    let clone = |table: &str, columns: Vec<String>, source: &str| {
        let select: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "id" if table == "api_keys" => "printf('key_bench%08d', i)".to_owned(),
                "key_id" => "printf('key_bench%08d', i)".to_owned(),
                "name" | "name_folded" => "'bench ' || i".to_owned(),
                "digest" => "randomblob(32)".to_owned(),
                other => other.to_owned(),
            })
            .collect();
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
             INSERT INTO {table} ({}) SELECT {} FROM n, {table} WHERE {source} = $2",
            columns.join(", "),
            select.join(", ")
        )
    };
    let columns = |table: &'static str| async move {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}')"
        )))
        .fetch_all(pool)
        .await
        .expect("table columns")
    };
    let keys_sql = clone("api_keys", columns("api_keys").await, "id");
    let tokens_sql = clone("api_key_tokens", columns("api_key_tokens").await, "key_id");
    let mut tx = pool.begin().await.expect("begin");
    for sql in [keys_sql, tokens_sql] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(total as i64)
            .bind(&owner_key)
            .execute(&mut *tx)
            .await
            .expect("clone the owner's key");
    }
    let mut tokens = Vec::with_capacity(real);
    for i in 1..=real {
        let token = Token::generate(owner.kind(), owner.region());
        sqlx::query("UPDATE api_key_tokens SET digest = $1, hint = $2 WHERE key_id = $3")
            .bind(&app.hasher.digest(&token)[..])
            .bind(token.hint())
            .bind(format!("key_bench{i:08}"))
            .execute(&mut *tx)
            .await
            .expect("give a key a real token");
        tokens.push(token.expose().to_owned());
    }
    tx.commit().await.expect("commit the seed");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await
        .expect("checkpoint");
    tokens
}
