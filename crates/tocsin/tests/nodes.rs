//! Several `tocsin serve` nodes on one PostgreSQL database (issue #4): a key made on one works
//! on all, a revocation on one is refused on the others within a second, de-duplication holds
//! across nodes, and a node with another server secret refuses to start. Built only with the
//! `postgres-tests` feature; scripts/test runs it against the local PostgreSQL.

mod common;

use common::{BIN, Server, free_port, stderr};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn fresh_database() -> String {
    tocsin_store::testing::fresh_postgres_database().await
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method.parse().unwrap(), url)
        .header("Authorization", format!("Bearer {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A fresh database and a secret file that several nodes share: the database's URL, the
/// directory holding the secret (kept by the caller for as long as the nodes run), and the
/// `serve` arguments naming both, followed by `extra`.
async fn shared_deployment(extra: &[&str]) -> (String, tempfile::TempDir, Vec<String>) {
    let db = fresh_database().await;
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("secret");
    std::fs::write(&secret, "a".repeat(64)).unwrap();
    let mut args = vec![
        "--database-url".to_owned(),
        db.clone(),
        "--secret-file".to_owned(),
        secret.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    (db, secrets, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_keys_within_a_second() {
    // Every trial ends in refused requests from this address, which the nodes' shared
    // failed-authentication throttle would start answering with 429 after 60 a minute.
    let (db, secrets, args) = shared_deployment(&["--failed-auth-per-minute", "100000"]).await;
    let a = Server::start_with("warn", &args);
    let b = Server::start_with("warn", &args);
    let c = Server::start_with("warn", &args);
    let owner = a.owner();
    let http = reqwest::Client::new();

    // 50 trials: a key made on A works on B and C; revoked on A, it is refused on B and C.
    let mut delays = Vec::new();
    for i in 0..50 {
        let (s, k) = call(
            &http,
            "POST",
            format!("{}/v1/api_keys", a.url),
            &owner,
            Some(json!({"name": format!("trial {i}"), "expires_at": "2030-01-01T00:00:00Z"})),
        )
        .await;
        assert_eq!(s, 201, "{k}");
        let token = k["token"].as_str().unwrap().to_owned();
        let id = k["api_key"]["id"].as_str().unwrap().to_owned();
        for node in [&b, &c] {
            assert_eq!(
                call(
                    &http,
                    "GET",
                    format!("{}/v1/auth/whoami", node.url),
                    &token,
                    None
                )
                .await
                .0,
                200
            );
        }
        let revoked_at = Instant::now();
        assert_eq!(
            call(
                &http,
                "POST",
                format!("{}/v1/api_keys/{id}/revoke", a.url),
                &owner,
                None
            )
            .await
            .0,
            200
        );
        for node in [&b, &c] {
            loop {
                let (s, body) = call(
                    &http,
                    "GET",
                    format!("{}/v1/auth/whoami", node.url),
                    &token,
                    None,
                )
                .await;
                if s == 401 {
                    assert_eq!(body["error"]["code"], "revoked_key");
                    break;
                }
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(5),
                    "node {} still accepts a revoked key: {s} {body}",
                    node.url
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        delays.push(revoked_at.elapsed());
    }
    delays.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "revocation seen on both other nodes after: min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (50 trials)",
        ms(&delays[0]),
        ms(&delays[25]),
        ms(&delays[45]),
        ms(&delays[49])
    );
    assert!(
        delays[49] < Duration::from_secs(1),
        "a revocation took {:?} to reach the other nodes",
        delays[49]
    );

    // Concurrent creates with one alias on different nodes make one alert.
    let (s, i) = call(
        &http,
        "POST",
        format!("{}/v1/integrations", a.url),
        &owner,
        Some(json!({"name": "nodes"})),
    )
    .await;
    assert_eq!(s, 201, "{i}");
    let key = i["token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for n in 0..60 {
        let url = format!("{}/v2/alerts", [&a, &b, &c][n % 3].url);
        let (http, key) = (http.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            call(
                &http,
                "POST",
                url,
                &key,
                Some(json!({"message": "split brain?", "alias": "shared"})),
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    let (_, got) = call(
        &http,
        "GET",
        format!("{}/v2/alerts/shared?identifierType=alias", c.url),
        &key,
        None,
    )
    .await;
    assert_eq!(got["data"]["count"], 60, "{got}");
    let (_, n) = call(
        &http,
        "GET",
        format!("{}/v2/alerts/count", b.url),
        &key,
        None,
    )
    .await;
    assert_eq!(n["data"]["count"], 1);

    // A node with another secret refuses to start, and says why.
    std::fs::write(secrets.path().join("other"), "b".repeat(64)).unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db,
            "--secret-file",
        ])
        .arg(secrets.path().join("other"))
        .arg("--data-dir")
        .arg(secrets.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another server secret"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_data_moves_an_embedded_deployment_with_nothing_lost() {
    // An embedded deployment with a key, an integration, an alert and an audit trail. Its
    // SQLite file is named outright, so that it is one whatever TOCSIN_TEST_BACKEND says.
    let source = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", source.path().join("tocsin.db").display());
    let mut embedded = Server::start_with("warn", &["--database-url".to_owned(), from.clone()]);
    let owner = embedded.owner();
    let http = reqwest::Client::new();
    let (s, k) = call(&http, "POST", format!("{}/v1/api_keys", embedded.url), &owner,
        Some(json!({"name": "survivor", "role_names": ["viewer"], "expires_at": "2030-01-01T00:00:00Z"}))).await;
    assert_eq!(s, 201, "{k}");
    let key = k["token"].as_str().unwrap().to_owned();
    let (_, i) = call(
        &http,
        "POST",
        format!("{}/v1/integrations", embedded.url),
        &owner,
        Some(json!({"name": "am"})),
    )
    .await;
    let ikey = i["token"].as_str().unwrap().to_owned();
    let (s, _) = call(
        &http,
        "POST",
        format!("{}/v2/alerts", embedded.url),
        &ikey,
        Some(json!({"message": "moved", "alias": "mv"})),
    )
    .await;
    assert_eq!(s, 202);
    embedded.stop();

    let db = fresh_database().await;
    let out = std::process::Command::new(BIN)
        .args(["migrate-data", "--from", &from, "--to", &db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nsource directory: {:?}\nserver log: {}",
        stderr(&out),
        std::fs::read_dir(source.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
        common::read(&embedded.log)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit chains verify"));

    // A PostgreSQL node with the embedded deployment's secret: every key keeps working.
    let secret = embedded.data.join("secret").display().to_string();
    let node = Server::start_with(
        "warn",
        &[
            "--database-url".into(),
            db.clone(),
            "--secret-file".into(),
            secret,
        ],
    );
    let (s, me) = call(
        &http,
        "GET",
        format!("{}/v1/auth/whoami", node.url),
        &owner,
        None,
    )
    .await;
    assert_eq!(s, 200, "{me}");
    let (s, me) = call(
        &http,
        "GET",
        format!("{}/v1/auth/whoami", node.url),
        &key,
        None,
    )
    .await;
    assert_eq!((s, me["name"].clone()), (200, json!("survivor")));
    let (s, a) = call(
        &http,
        "GET",
        format!("{}/v2/alerts/mv?identifierType=alias", node.url),
        &ikey,
        None,
    )
    .await;
    assert_eq!((s, a["data"]["message"].clone()), (200, json!("moved")));
    // New writes continue the same chains and tinyIds.
    call(
        &http,
        "POST",
        format!("{}/v2/alerts", node.url),
        &ikey,
        Some(json!({"message": "after"})),
    )
    .await;
    let (_, list) = call(
        &http,
        "GET",
        format!("{}/v2/alerts?sort=tinyId&order=asc", node.url),
        &ikey,
        None,
    )
    .await;
    let tiny: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tinyId"].as_str().unwrap())
        .collect();
    assert_eq!(tiny, vec!["1", "2"]);
    let verify = std::process::Command::new(BIN)
        .args(["audit", "verify", "--database-url", &db, "--data-dir"])
        .arg(node.data.clone())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        stderr(&verify)
    );
    // A second copy into the now-used database is refused.
    let again = std::process::Command::new(BIN)
        .args(["migrate-data", "--from", &from, "--to", &db])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("empty database"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_on_an_empty_database_initialize_it_once() {
    let db = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "c".repeat(64)).unwrap();
    let mut nodes = Vec::new();
    for n in 0..3 {
        let port = free_port();
        let data = dir.path().join(format!("node{n}"));
        let child = std::process::Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                &db,
                "--secret-file",
            ])
            .arg(dir.path().join("secret"))
            .arg("--data-dir")
            .arg(&data)
            .env("TOCSIN_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        nodes.push((child, port, data));
    }
    for (child, port, _) in nodes.iter_mut() {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "a node exited while starting beside the others"
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "a node did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let tokens: Vec<String> = nodes
        .iter()
        .filter_map(|(_, _, data)| std::fs::read_to_string(data.join("owner-token")).ok())
        .collect();
    assert_eq!(tokens.len(), 1, "exactly one node initializes the database");
    let http = reqwest::Client::new();
    for (_, port, _) in &nodes {
        let (s, _) = call(
            &http,
            "GET",
            format!("http://127.0.0.1:{port}/v1/auth/whoami"),
            tokens[0].trim(),
            None,
        )
        .await;
        assert_eq!(s, 200);
    }
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let (orgs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orgs, 1);
    pool.close().await;
    for (mut child, _, _) in nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Limits hold across nodes: a key's `rate_limit` and the failed-authentication throttle count
/// in the shared database, so alternating nodes does not buy a client more requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_nodes() {
    let (_db, _secrets, args) = shared_deployment(&["--failed-auth-per-minute", "4"]).await;
    let a = Server::start_with("warn", &args);
    let b = Server::start_with("warn", &args);
    let owner = a.owner();
    let http = reqwest::Client::new();
    let (s, k) = call(
        &http,
        "POST",
        format!("{}/v1/api_keys", a.url),
        &owner,
        Some(json!({"name": "limited", "rate_limit": 4, "expires_at": "2030-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let token = k["token"].as_str().unwrap().to_owned();
    let nodes = [&a, &b, &a, &b];
    for node in nodes {
        let (s, body) = call(
            &http,
            "GET",
            format!("{}/v1/auth/whoami", node.url),
            &token,
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    for node in [&a, &b] {
        let (s, body) = call(
            &http,
            "GET",
            format!("{}/v1/auth/whoami", node.url),
            &token,
            None,
        )
        .await;
        assert_eq!(
            s, 429,
            "the fifth request in a minute is over on every node: {body}"
        );
        assert_eq!(body["error"]["rate_limit"], 4, "{body}");
    }

    // Guessing tokens: four failures spread over both nodes use up the address's budget.
    let guess = tocsin_core::token::Token::generate(tocsin_core::token::TokenKind::Personal, "us");
    for node in nodes {
        let (s, body) = call(
            &http,
            "GET",
            format!("{}/v1/auth/whoami", node.url),
            guess.expose(),
            None,
        )
        .await;
        assert_eq!(s, 401, "{body}");
    }
    for node in [&a, &b] {
        let (s, body) = call(
            &http,
            "GET",
            format!("{}/v1/auth/whoami", node.url),
            guess.expose(),
            None,
        )
        .await;
        assert_eq!(s, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    }
    // The owner's valid key is not slowed by either.
    let (s, _) = call(
        &http,
        "GET",
        format!("{}/v1/auth/whoami", b.url),
        &owner,
        None,
    )
    .await;
    assert_eq!(s, 200);
}

/// A change to a credential is announced by its own transaction (the store's triggers write
/// the change log and the NOTIFY), not by the node that made it: a key revoked with SQL
/// alone, as an operator or a node that dies right after its commit would leave it, is
/// refused at once by every node that had it cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_outside_every_node_reaches_them_all() {
    use sqlx::Connection;
    let (db, _secrets, args) = shared_deployment(&[]).await;
    let a = Server::start_with("error", &args);
    let b = Server::start_with("warn", &args);
    let owner = a.owner();
    let http = reqwest::Client::new();
    let (s, k) = call(
        &http,
        "POST",
        format!("{}/v1/api_keys", a.url),
        &owner,
        Some(json!({"name": "revoked by hand", "expires_at": "2030-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let token = k["token"].as_str().unwrap().to_owned();
    let id = k["api_key"]["id"].as_str().unwrap().to_owned();
    let whoami_on = |url: String| {
        let (http, token) = (http.clone(), token.clone());
        async move { call(&http, "GET", format!("{url}/v1/auth/whoami"), &token, None).await }
    };
    // Both nodes have verified the key, and hold it in their caches.
    assert_eq!(whoami_on(a.url.clone()).await.0, 200);
    assert_eq!(whoami_on(b.url.clone()).await.0, 200);

    let mut sql = sqlx::PgConnection::connect(&db).await.unwrap();
    let revoked = sqlx::query(
        "UPDATE api_keys SET revoked_at = (extract(epoch FROM now()) * 1000)::BIGINT,
         revoked_by_type = 'user', revoked_by_id = 'usr_operator', revoked_by_name = 'operator'
         WHERE id = $1",
    )
    .bind(&id)
    .execute(&mut sql)
    .await
    .unwrap();
    assert_eq!(revoked.rows_affected(), 1);

    // Both nodes hear of it: no node announced it.
    for node in [&a, &b] {
        let revoked_at = Instant::now();
        loop {
            let (s, body) = whoami_on(node.url.clone()).await;
            if s == 401 {
                assert_eq!(body["error"]["code"], "revoked_key", "{body}");
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(10),
                "{} still accepts the revoked key: {s} {body}",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
