//! End-to-end through the real binary: `tocsin serve` as its own process with logs at trace
//! level, driven by the `tocsin` client commands; then the logs and every file of the data
//! directory (the SQLite WAL included) are searched for the tokens the scenario handled.

mod common;

use common::{BIN, Server, read, stderr, stdout};
use serde_json::Value;
use std::process::Command;

#[test]
fn walkthrough_with_the_cli_leaves_no_token_behind() {
    let mut server = Server::start();
    let owner = server.owner();
    let me = server.json(&owner, &["whoami", "--json"]);
    assert_eq!(me["kind"], "personal");

    let created = server.json(
        &owner,
        &[
            "keys",
            "create",
            "--name",
            "ci deploy",
            "--expires-in",
            "30d",
            "--role",
            "viewer",
            "--json",
        ],
    );
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    let shown = server.json(&owner, &["keys", "show", &id, "--json"]);
    assert!(shown.get("token").is_none());
    let listed = server.json(&owner, &["keys", "list", "--json"]);
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str())
    );

    let ok = server.cli(&owner, &["doctor", &token]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let damaged = server.cli(&owner, &["doctor", "--offline", &token[..token.len() - 3]]);
    assert!(!damaged.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&damaged.stdout),
        stderr(&damaged)
    );
    assert!(said.contains("truncated"), "{said}");

    let refused = server.cli(
        &token,
        &["explain", "--permission", "teams:write", "--json"],
    );
    assert!(refused.status.success(), "{}", stderr(&refused));
    let e: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(e["allowed"], false);

    let updated = server.json(
        &owner,
        &[
            "keys",
            "update",
            &id,
            "--name",
            "ci deploy v2",
            "--description",
            "the deploy job",
            "--allow-cidr",
            "127.0.0.0/8",
            "--rate-limit",
            "600",
            "--json",
        ],
    );
    assert_eq!(updated["name"], "ci deploy v2");
    assert_eq!(updated["description"], "the deploy job");
    assert_eq!(updated["allowed_cidrs"], serde_json::json!(["127.0.0.0/8"]));
    assert_eq!(updated["rate_limit"], 600);
    let table = server.cli(&owner, &["keys", "update", &id, "--no-rate-limit"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let said = String::from_utf8_lossy(&table.stdout);
    assert!(
        said.contains(&format!("Updated key {id} (ci deploy v2)")),
        "{said}"
    );
    let shown = server.json(&owner, &["keys", "show", &id, "--json"]);
    assert!(shown["rate_limit"].is_null(), "{shown}");
    // The server's refusal names the field and the reason.
    let refused = server.cli(&owner, &["keys", "update", &id, "--role", "no-such-role"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("role_names"),
        "{}",
        stderr(&refused)
    );
    // The token still works after the changes.
    assert!(server.cli(&token, &["whoami"]).status.success());

    let rotated = server.json(&owner, &["keys", "rotate", &id, "--grace", "1h", "--json"]);
    let second = rotated["token"].as_str().unwrap().to_owned();
    assert!(server.cli(&token, &["whoami"]).status.success());
    assert!(server.cli(&second, &["whoami"]).status.success());

    assert!(
        server
            .cli(&owner, &["keys", "revoke", &id])
            .status
            .success()
    );
    let after = server.cli(&second, &["whoami"]);
    assert!(!after.status.success());
    assert!(stderr(&after).contains("revoked_key"), "{}", stderr(&after));

    let events = server.cli(&owner, &["audit", "export"]);
    assert!(events.status.success(), "{}", stderr(&events));
    let lines: Vec<Value> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|e| e["action"] == "api_key.rotated"));
    assert!(lines.iter().any(|e| e["outcome"] == "revoked_key"));

    let again = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(&server.data)
        .args(&server.extra)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already initialized"));

    // A damaged token is refused before any key is known: its event belongs to no
    // organization, and only the operator's offline `audit refusals` lists it.
    let damaged = server.cli(&token[..token.len() - 3], &["whoami"]);
    assert!(
        stderr(&damaged).contains("malformed_token"),
        "{}",
        stderr(&damaged)
    );

    server.stop();
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&server.data)
        .args(&server.extra)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        stderr(&verify)
    );
    let refusals = |filters: &[&str]| -> Vec<Value> {
        let out = Command::new(BIN)
            .args(["audit", "refusals"])
            .args(filters)
            .arg("--data-dir")
            .arg(&server.data)
            .args(&server.extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = refusals(&["--since", "1h"]);
    assert!(
        all.iter().any(|e| e["outcome"] == "malformed_token"
            && e["route"] == "/v1/auth/whoami"
            && e["api_key_id"].is_null()),
        "{all:?}"
    );
    let malformed = refusals(&["--outcome", "malformed_token"]);
    assert!(!malformed.is_empty());
    assert!(malformed.iter().all(|e| e["outcome"] == "malformed_token"));
    // A code the trail never records is refused by name, not answered with nothing.
    let typo = Command::new(BIN)
        .args([
            "audit",
            "refusals",
            "--outcome",
            "unknwon_key",
            "--data-dir",
        ])
        .arg(&server.data)
        .args(&server.extra)
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(2));
    assert!(stderr(&typo).contains("--outcome"), "{}", stderr(&typo));

    let log = read(&server.log);
    assert!(
        log.contains("owner-token"),
        "the log should say where the owner token is"
    );
    let mut haystacks = vec![("server log".to_owned(), log.into_bytes())];
    for entry in std::fs::read_dir(&server.data).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "owner-token" {
            haystacks.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    for t in [&owner, &token, &second] {
        let secret = &t.as_bytes()[9..];
        for (name, bytes) in &haystacks {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "a token appears in {name}"
            );
        }
    }
}

/// Runs `tocsin serve` on `data` that is expected to refuse to start; its output.
fn serve_refused(data: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!(
                "serve started: {}",
                stderr(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Review ops #1: the owner token never goes into a file that was already there (which would
/// keep its mode) nor through a symlink; the start stops, naming the file, and the database
/// stays empty, so that the corrected start initializes it.
#[cfg(unix)]
#[test]
fn the_owner_token_is_written_only_to_a_new_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let token_file = data.join("owner-token");
    std::fs::write(&token_file, "OLD\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve_refused(&data);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&token_file.display().to_string()), "{err}");
    assert!(err.contains("move it away"), "{err}");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), "OLD\n");

    // A link to a world-writable file elsewhere, and a dangling one.
    let leak = dir.path().join("leak.txt");
    std::fs::write(&leak, "").unwrap();
    std::fs::set_permissions(&leak, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::remove_file(&token_file).unwrap();
    std::os::unix::fs::symlink(&leak, &token_file).unwrap();
    let out = serve_refused(&data);
    assert!(stderr(&out).contains("move it away"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&leak).unwrap(), "");
    std::fs::remove_file(&token_file).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &token_file).unwrap();
    let out = serve_refused(&data);
    assert!(stderr(&out).contains("move it away"), "{}", stderr(&out));
    assert!(!dir.path().join("nowhere").exists());

    // Moved away, the next start initializes the still empty database.
    std::fs::remove_file(&token_file).unwrap();
    let out = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&data.join("secret")), 0o600);

    // An empty file there is a first start's own, stopped before the owner existed: the
    // next start replaces it and writes the token.
    let interrupted = dir.path().join("interrupted");
    std::fs::create_dir(&interrupted).unwrap();
    std::fs::write(interrupted.join("owner-token"), "").unwrap();
    let mut serve = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&interrupted)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let token = loop {
        let text = std::fs::read_to_string(interrupted.join("owner-token")).unwrap_or_default();
        if text.starts_with("tcs_p_") {
            break text;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20)
                && serve.try_wait().unwrap().is_none(),
            "the start did not replace the empty owner-token file"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(token.trim().len() > 40);
    assert_eq!(mode(&interrupted.join("owner-token")), 0o600);

    // The server secret is never generated through a link either.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::os::unix::fs::symlink(dir.path().join("planted"), fresh.join("secret")).unwrap();
    let out = serve_refused(&fresh);
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("secret"), "{err}");
    assert!(!dir.path().join("planted").exists());

    // Nor is an empty or short one used (a process that read it while another was still
    // writing it would have hashed tokens with it).
    let short = dir.path().join("short");
    std::fs::create_dir(&short).unwrap();
    std::fs::write(short.join("secret"), "").unwrap();
    let out = serve_refused(&short);
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("fewer than 32 characters"), "{err}");
}

/// Review ops #10: `audit verify` and `migrate` on a path where there is no database fail
/// with one line naming it, and create nothing; `orgs create` on an uninitialized data
/// directory refuses before it makes anything.
#[test]
fn offline_commands_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo-dir");
    let typo_db = dir.path().join("typo2.db");
    let url = format!("sqlite://{}", typo_db.display());
    let runs: [&[&str]; 4] = [
        &["audit", "verify", "--data-dir"],
        &["audit", "verify", "--json", "--data-dir"],
        &["migrate", "--data-dir"],
        &[
            "orgs",
            "create",
            "--org",
            "X",
            "--email",
            "x@y.z",
            "--data-dir",
        ],
    ];
    for args in runs {
        let out = Command::new(BIN).args(args).arg(&typo).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("typo-dir"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    for args in [&["audit", "verify"][..], &["migrate"]] {
        let out = Command::new(BIN)
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("database-url") && err.contains("typo2.db"),
            "{err}"
        );
        assert!(!typo_db.exists(), "{args:?} created {}", typo_db.display());
    }
    // A data directory that exists but was never initialized keeps only what it had.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(BIN)
        .args([
            "orgs",
            "create",
            "--org",
            "X",
            "--email",
            "x@y.z",
            "--data-dir",
        ])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(stderr(&out).contains("tocsin init"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// Review ops #17: a data directory Tocsin creates is its owner's alone (0700), and the
/// SQLite files are 0600; a directory the operator made keeps the mode it was given.
#[cfg(unix)]
#[test]
fn the_data_directory_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start_logging("info");
    let data = server.data.clone();
    assert_eq!(mode(&data), 0o700);
    let mut private = vec!["secret", "owner-token"];
    if server.database_url().starts_with("sqlite:") {
        private.extend(["tocsin.db", "tocsin.db-wal", "tocsin.db-shm"]);
    }
    for name in private {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    server.stop();

    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made");
    std::fs::create_dir(&made).unwrap();
    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(&made)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&made), 0o750);
    for entry in std::fs::read_dir(&made).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// Runs a command that must exit on its own (a `serve` expected to refuse its start): one
/// that is still running after a minute is stopped, and the test fails instead of hanging.
fn exits(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} was still running after a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The client commands reach a deployment over https, as behind the README's nginx: here a
/// TLS proxy (Python's `ssl`, with a certificate made by `openssl`) in front of a real
/// server. The certificate is trusted through `SSL_CERT_FILE`; without it the refusal says
/// the certificate is the problem.
#[test]
fn client_commands_reach_a_server_over_https() {
    let server = Server::start();
    let owner = server.owner();
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let (ca, cert, key) = (at("ca.pem"), at("cert.pem"), at("key.pem"));
    std::fs::write(
        at("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A certificate authority, and the proxy's certificate signed by it.
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tocsin test CA",
            "-keyout",
            &at("ca.key"),
            "-out",
            &ca,
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &at("leaf.csr"),
        ],
        &[
            "x509",
            "-req",
            "-in",
            &at("leaf.csr"),
            "-CA",
            &ca,
            "-CAkey",
            &at("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &at("leaf.ext"),
            "-out",
            &cert,
        ],
    ];
    for step in steps {
        let made = Command::new("openssl")
            .args(step)
            .output()
            .expect("this test needs the openssl command (Debian's openssl package)");
        assert!(made.status.success(), "{}", stderr(&made));
    }
    let port = common::free_port();
    let backend = server.url.trim_start_matches("http://").to_owned();
    // Accepts TLS on `port` and relays each connection to the server in plain HTTP.
    let proxy = r#"
import asyncio, ssl, sys
port, cert, key, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
host, bport = backend.rsplit(":", 1)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def serve(cr, cw):
    br, bw = await asyncio.open_connection(host, int(bport))
    await asyncio.gather(pipe(cr, bw), pipe(br, cw), return_exceptions=True)
async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", port, ssl=ctx)
    print("ready", flush=True)
    await s.serve_forever()
asyncio.run(main())
"#;
    /// Stops the relay however the test ends.
    struct Relay(std::process::Child);
    impl Drop for Relay {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut relay = Command::new("python3")
        .arg("-c")
        .arg(proxy)
        .arg(port.to_string())
        .arg(&cert)
        .arg(&key)
        .arg(&backend)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("this test needs python3");
    let stdout_pipe = relay.stdout.take().unwrap();
    let _relay = Relay(relay);
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout_pipe), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let url = format!("https://localhost:{port}");
    let whoami = |trust: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["whoami", "--json"])
            .env("TOCSIN_URL", &url)
            .env("TOCSIN_TOKEN", &owner);
        if trust {
            cmd.env("SSL_CERT_FILE", &ca);
        }
        cmd.output().unwrap()
    };
    let trusted = whoami(true);
    let refused = whoami(false);
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let me: Value = serde_json::from_slice(&trusted.stdout).unwrap();
    assert_eq!(me["kind"], "personal", "{me}");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).to_lowercase().contains("certificate"),
        "{}",
        stderr(&refused)
    );
}

/// A data directory keeps the region it was set up with (every token carries it) and its
/// secret (a missing one is not replaced), and a secret file that is too short stops the
/// start before anything is made.
#[test]
fn a_deployment_keeps_its_region_and_a_bad_secret_file_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let out = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let runs: [&[&str]; 2] = [
        &["serve", "--listen", "127.0.0.1:0", "--region", "eu"],
        &[
            "orgs",
            "create",
            "--org",
            "X",
            "--email",
            "x@example.com",
            "--region",
            "eu",
        ],
    ];
    for args in runs {
        let out = exits(Command::new(BIN).args(args).arg("--data-dir").arg(&data));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("invalid setting `region`") && err.contains("serves region `us`"),
            "{args:?}: {err}"
        );
    }
    // The data directory's secret removed: the start refuses and makes no new one.
    let secret = data.join("secret");
    let kept = std::fs::read(&secret).unwrap();
    std::fs::remove_file(&secret).unwrap();
    let out = exits(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is missing"), "{}", stderr(&out));
    assert!(!secret.exists());
    std::fs::write(&secret, kept).unwrap();
    let short = dir.path().join("short-secret");
    std::fs::write(&short, "not 32 characters").unwrap();
    let fresh = dir.path().join("fresh");
    for command in [&["serve", "--listen", "127.0.0.1:0"][..], &["init"]] {
        let out = exits(
            Command::new(BIN)
                .args(command)
                .arg("--secret-file")
                .arg(&short)
                .arg("--data-dir")
                .arg(&fresh),
        );
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        assert!(stderr(&out).contains("secret-file"), "{}", stderr(&out));
        assert!(!fresh.exists(), "{command:?} made {}", fresh.display());
    }
}

/// `migrate-data` copies from an embedded deployment that exists into PostgreSQL: a
/// mistyped source is refused by name, and never created as an empty file whose copy would
/// "succeed".
#[test]
fn migrate_data_refuses_a_source_or_target_it_cannot_copy() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothere.db");
    let existing = dir.path().join("there.db");
    std::fs::write(&existing, b"").unwrap();
    let unreachable = "postgres://postgres@127.0.0.1:1/nothing";
    let cases = [
        (
            format!("sqlite://{}", missing.display()),
            unreachable.to_owned(),
            ["invalid `--from`", "there is no database at"],
        ),
        (
            missing.display().to_string(),
            unreachable.to_owned(),
            ["invalid `--from`", "is not sqlite://PATH"],
        ),
        (
            format!("sqlite://{}", existing.display()),
            format!("sqlite://{}", missing.display()),
            ["invalid `--to`", "is not postgres://"],
        ),
    ];
    for (from, to, said) in cases {
        let out = Command::new(BIN)
            .args(["migrate-data", "--from", &from, "--to", &to])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{from} {to}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for s in said {
            assert!(err.contains(s), "{from} {to}: {err}");
        }
    }
    assert!(!missing.exists());
}

/// A server answers a new alert once its alert log holds it, a moment before its tables do:
/// `migrate-data` refuses a database a running server uses, rather than copy it without
/// them. (SQLite whatever the test backend: that is what migrate-data copies from.)
#[test]
fn migrate_data_refuses_a_database_a_server_is_using() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("in-use.db");
    let mut server = Server::start_with(
        "warn",
        &[
            "--database-url".to_owned(),
            format!("sqlite://{}", db.display()),
        ],
    );
    let out = Command::new(BIN)
        .args(["migrate-data", "--from"])
        .arg(format!("sqlite://{}", db.display()))
        .args(["--to", "postgres://postgres@127.0.0.1:1/nothing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("a running server uses") && err.contains("stop it first"),
        "{err}"
    );
    server.stop();
}

/// `serve --no-init` on an empty database runs, and says that nothing can authenticate until
/// an organization is made.
#[test]
fn serving_an_uninitialized_database_says_so() {
    let mut server = Server::start_with("info", &["--no-init".to_owned()]);
    server.stop();
    let log = read(&server.log);
    assert!(log.contains("has no organization yet"), "{log}");
    assert!(!server.data.join("owner-token").exists());
}

/// Review ops #15: a log written to a file carries no terminal colour codes, so that
/// `grep path=` or `grep request_id=...` finds its lines.
#[test]
fn text_logs_in_a_file_have_no_colour_codes() {
    let mut server = Server::start_logging("info");
    server.stop();
    let log = read(&server.log);
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains("path="), "{log}");
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--region", "EU!", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("region"), "{err}");
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("TOCSIN_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("`listen` (from TOCSIN_LISTEN)"));

    // Review ops #12: numbers and booleans from the environment name the variable, a
    // database that cannot be opened names the setting that chose it, and `regions` lists
    // other regions only; each in one line.
    let missing = dir.path().join("no").join("such").join("x.db");
    let missing_url = format!("sqlite://{}", missing.display());
    /// Flags, environment variables, and what the one line must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 11] = [
        // A PostgreSQL that refuses the connection says so at once (the pool alone waited
        // 10 s and said "pool timed out").
        (
            &["--database-url", "postgres://postgres@127.0.0.1:1/nothing"],
            &[],
            &[
                "invalid setting `database-url`",
                "cannot connect to PostgreSQL",
                "refused",
            ],
        ),
        // Text settings from the environment name the variable too; a flag given beside
        // the variable wins, and then the variable is not named.
        (
            &[],
            &[("TOCSIN_LOG_FORMAT", "xml")],
            &["`log-format` (from TOCSIN_LOG_FORMAT)"],
        ),
        (
            &[],
            &[("TOCSIN_DATABASE_URL", "mysql://db/x")],
            &[
                "`database-url` (from TOCSIN_DATABASE_URL)",
                "must be sqlite://PATH",
            ],
        ),
        (
            &["--region", "EU!"],
            &[("TOCSIN_REGION", "eu")],
            &["invalid setting `region`: `EU!`"],
        ),
        (
            &[],
            &[("TOCSIN_TRACK_REQUESTS", "yes")],
            &[
                "TOCSIN_TRACK_REQUESTS=`yes`",
                "track-requests",
                "true or false",
            ],
        ),
        (
            &[],
            &[("TOCSIN_MAX_BODY_BYTES", "abc")],
            &["TOCSIN_MAX_BODY_BYTES=`abc`", "max-body-bytes"],
        ),
        (
            &[],
            &[("TOCSIN_ALLOW_QUERY_API_KEY", "1x")],
            &["TOCSIN_ALLOW_QUERY_API_KEY", "allow-query-api-key"],
        ),
        (
            &["--failed-auth-per-minute", "abc"],
            &[],
            &["failed-auth-per-minute", "`abc` is not a whole number"],
        ),
        (
            &["--database-url", &missing_url],
            &[],
            &["database-url", "x.db"],
        ),
        (
            &["--regions", "us=https://us.example.com"],
            &[],
            &["regions", "own region"],
        ),
        (
            &["--regions", "eu=https://"],
            &[],
            &["regions", "`https://` is not a URL"],
        ),
    ];
    for (args, env, said) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("d"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?} {env:?}: {err}");
        for s in said {
            assert!(err.contains(s), "{args:?} {env:?}: {err}");
        }
    }
}

#[test]
fn init_prints_the_token_once_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["init", "--json", "--org", "Acme", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["organization_id", "user_id", "api_key_id", "token"] {
        assert!(v[field].is_string(), "{field} missing: {v}");
    }
    let out = Command::new(BIN)
        .args([
            "orgs",
            "create",
            "--org",
            "Other",
            "--email",
            "boss@other.example",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Another organization is named on purpose: without --org or --email nothing is made
    // (`init`'s defaults would add a second "Default" owned by owner@localhost).
    for (args, missing) in [(&[][..], "--org"), (&["--org", "Third"][..], "--email")] {
        let out = Command::new(BIN)
            .args(["orgs", "create"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(missing), "{}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .starts_with("tcs_p_us_")
    );
}

#[test]
fn alerts_from_the_command_line() {
    let server = Server::start_logging("info");
    let owner = server.owner();
    let fails = |token: &str, args: &[&str], said: &[&str]| {
        let out = server.cli(token, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        for s in said {
            assert!(err.contains(s), "{args:?}: `{s}` not in: {err}");
        }
        out
    };

    let created = server.json(
        &owner,
        &[
            "alerts",
            "create",
            "--message",
            "Disk full",
            "--alias",
            "disk-db1",
            "--priority",
            "p2",
            "--tag",
            "prod",
            "--note",
            "first",
            "--json",
        ],
    );
    assert_eq!(created["isSuccess"], true, "{created}");
    assert_eq!(created["action"], "Create");
    assert_eq!(created["alias"], "disk-db1");
    let id = created["alertId"].as_str().unwrap().to_owned();

    let again = server.cli(
        &owner,
        &[
            "alerts",
            "create",
            "--message",
            "Disk full",
            "--alias",
            "disk-db1",
        ],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).starts_with(&format!(
            "Deduplicated into open alert {id} (alias disk-db1)"
        )),
        "{}",
        stdout(&again)
    );
    let other = server.cli(&owner, &["alerts", "create", "--message", "CPU hot"]);
    assert!(
        stdout(&other).starts_with("Created alert "),
        "{}",
        stdout(&other)
    );
    let odd = server.json(
        &owner,
        &[
            "alerts",
            "create",
            "--message",
            "odd",
            "--alias",
            "a/b c?#",
            "--json",
        ],
    );
    assert_eq!(odd["alias"], "a/b c?#");

    // list: JSON, a table, a query, a page with more after it.
    let list = server.json(&owner, &["alerts", "list", "--json"]);
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");
    let table = server.cli(&owner, &["alerts", "list", "--query", "tag:prod"]);
    let shown = stdout(&table);
    assert!(
        shown.contains("Disk full") && shown.contains("P2") && !shown.contains("CPU hot"),
        "{shown}"
    );
    let page = server.cli(
        &owner,
        &[
            "alerts", "list", "--limit", "1", "--sort", "tinyId", "--order", "asc",
        ],
    );
    assert!(stdout(&page).contains("Disk full"), "{}", stdout(&page));
    assert!(
        stderr(&page).contains("more alerts: add --offset 1"),
        "{}",
        stderr(&page)
    );

    // show by alias (encoded as one path segment), by tiny id, by id.
    let shown = server.json(
        &owner,
        &["alerts", "show", "disk-db1", "--by", "alias", "--json"],
    );
    assert_eq!(shown["data"]["id"], id.as_str());
    assert_eq!(shown["data"]["count"], 2);
    let shown = server.json(
        &owner,
        &["alerts", "show", "a/b c?#", "--by", "alias", "--json"],
    );
    assert_eq!(shown["data"]["message"], "odd");
    let table = stdout(&server.cli(&owner, &["alerts", "show", "1", "--by", "tiny"]));
    assert!(
        table.contains("disk-db1") && table.contains("prod") && table.contains(&id),
        "{table}"
    );

    // ack and close, and what the server says when they fail.
    let ack = server.cli(
        &owner,
        &[
            "alerts", "ack", "disk-db1", "--by", "alias", "--note", "on it",
        ],
    );
    assert!(ack.status.success(), "{}", stderr(&ack));
    assert!(
        stdout(&ack).starts_with(&format!("Acknowledged alert {id}")),
        "{}",
        stdout(&ack)
    );
    let shown = server.json(&owner, &["alerts", "show", &id, "--json"]);
    assert_eq!(shown["data"]["acknowledged"], true);
    let closed = server.cli(&owner, &["alerts", "close", &id]);
    assert!(closed.status.success(), "{}", stderr(&closed));
    assert!(
        stdout(&closed).starts_with("Closed alert"),
        "{}",
        stdout(&closed)
    );
    fails(
        &owner,
        &["alerts", "ack", &id],
        &["error: Acknowledge failed: Alert is closed", "request id: "],
    );
    let out = fails(
        &owner,
        &["alerts", "close", "nothing-here", "--by", "alias", "--json"],
        &["error: Close failed: Alert does not exist"],
    );
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["isSuccess"], false);

    // /v2 errors print the server's explanation.
    fails(
        &owner,
        &["alerts", "list", "--query", "stauts:open"],
        &["validation_failed (422)", "field `query`", "request id: "],
    );
    fails(&owner, &["alerts", "show", "nope"], &["not_found (404)"]);
    // A team Tocsin does not have is kept by name: the alert is not lost for it.
    let kept = server.json(
        &owner,
        &[
            "alerts",
            "create",
            "--message",
            "m",
            "--responder-team",
            "nosuch",
            "--json",
        ],
    );
    assert_eq!(kept["isSuccess"], true, "{kept}");
    let viewer = server.json(
        &owner,
        &[
            "keys",
            "create",
            "--name",
            "reader",
            "--role",
            "viewer",
            "--expires-in",
            "1d",
            "--json",
        ],
    );
    let viewer = viewer["token"].as_str().unwrap();
    assert!(server.cli(viewer, &["alerts", "list"]).status.success());
    fails(
        viewer,
        &["alerts", "create", "--message", "m"],
        &["permission_denied (403)", "alerts:write", "fix: "],
    );
    let blank = server.cli(&owner, &["alerts", "create", "--message", " "]);
    assert_eq!(blank.status.code(), Some(2), "{}", stderr(&blank));
}

/// The refusal paths, where a token is most likely to be echoed: damaged, unknown, revoked
/// and rotated-out tokens, a token in a query string or a path, bodies that do not parse,
/// logins with a wrong password, and a session. The trace-level log and the data directory
/// then hold none of the tokens (nor the password).
#[test]
fn error_paths_leave_no_token_in_trace_logs() {
    let mut server = Server::start();
    let owner = server.owner();
    let created = server.json(
        &owner,
        &[
            "keys",
            "create",
            "--name",
            "doomed",
            "--expires-in",
            "1d",
            "--json",
        ],
    );
    let revoked = created["token"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    assert!(
        server
            .cli(&owner, &["keys", "revoke", &id])
            .status
            .success()
    );
    let created = server.json(
        &owner,
        &[
            "keys",
            "create",
            "--name",
            "rotated",
            "--expires-in",
            "1d",
            "--json",
        ],
    );
    let rotated_out = created["token"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    let rotated = server.json(&owner, &["keys", "rotate", &id, "--grace", "0s", "--json"]);
    let current = rotated["token"].as_str().unwrap().to_owned();
    let unknown = tocsin_core::token::Token::generate(tocsin_core::token::TokenKind::Team, "us")
        .expose()
        .to_owned();
    let foreign =
        tocsin_core::token::Token::generate(tocsin_core::token::TokenKind::Personal, "eu")
            .expose()
            .to_owned();
    let mut damaged = owner.clone();
    let last = damaged.pop().unwrap();
    damaged.push(if last == 'A' { 'B' } else { 'A' });
    let password = "correct horse battery staple 42";

    let url = server.url.clone();
    let session = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let call = |method: reqwest::Method, path: &str, auth: Option<&str>, body: Option<&str>| {
            let mut req = http.request(method, format!("{url}{path}"));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            if let Some(b) = body {
                req = req.header("Content-Type", "application/json").body(b.to_owned());
            }
            req.send()
        };
        use reqwest::Method;
        for t in [&damaged, &unknown, &foreign, &revoked, &rotated_out] {
            for auth in [format!("Bearer {t}"), format!("GenieKey {t}"), format!("Bearer \"{t}\"")] {
                let resp = call(Method::GET, "/v1/auth/whoami", Some(&auth), None).await.unwrap();
                assert_eq!(resp.status(), 401, "{auth}");
                let body = resp.text().await.unwrap();
                assert!(!body.contains(&t[9..]), "an error body echoes a token: {body}");
            }
        }
        let owner_auth = format!("Bearer {owner}");
        // Tokens where they do not belong: the query string, the path, a body that does not
        // parse, a field that is refused.
        for path in [
            format!("/v2/alerts?apiKey={current}"),
            format!("/v1/api_keys/{current}"),
            format!("/v2/heartbeats/{current}/ping"),
        ] {
            let resp = call(Method::GET, &path, Some(&owner_auth), None).await.unwrap();
            assert!(resp.status().is_client_error() || resp.status().is_success(), "{path}");
        }
        let bad_bodies = [
            format!("{{\"name\": \"{current}"),
            format!("{{\"name\": \"x\", \"{current}\": 1}}"),
            format!("[\"{current}\"]"),
        ];
        for body in &bad_bodies {
            let resp = call(Method::POST, "/v1/teams", Some(&owner_auth), Some(body))
                .await
                .unwrap();
            assert!(resp.status().is_client_error(), "{body}");
        }
        let user = format!(
            "{{\"email\": \"ops@example.com\", \"name\": \"Ops\", \"role_name\": \"viewer\", \"password\": \"{password}\"}}"
        );
        let resp = call(Method::POST, "/v1/users", Some(&owner_auth), Some(&user)).await.unwrap();
        assert_eq!(resp.status(), 201);
        let wrong = "{\"email\": \"ops@example.com\", \"password\": \"not the password at all\"}";
        let resp = call(Method::POST, "/v1/auth/login", None, Some(wrong)).await.unwrap();
        assert_eq!(resp.status(), 401);
        let login = format!("{{\"email\": \"ops@example.com\", \"password\": \"{password}\"}}");
        let resp = call(Method::POST, "/v1/auth/login", None, Some(&login)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let session = resp.json::<Value>().await.unwrap()["session_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = call(Method::GET, "/v1/auth/whoami", Some(&format!("Bearer {session}")), None)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        session
    });
    server.stop();

    let log = read(&server.log);
    // (Nothing in the server logs at TRACE itself; its dependencies' debug lines show the
    // filter let everything through.)
    assert!(log.contains("DEBUG"), "the log is not verbose: {log}");
    let mut haystacks = vec![("server log".to_owned(), log.into_bytes())];
    for entry in std::fs::read_dir(&server.data).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "owner-token" {
            haystacks.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    let secrets = [
        &owner,
        &revoked,
        &rotated_out,
        &current,
        &unknown,
        &foreign,
        &damaged,
        &session,
    ];
    for (i, t) in secrets.iter().enumerate() {
        let secret = &t.as_bytes()[9..];
        for (name, bytes) in &haystacks {
            if let Some(at) = bytes.windows(secret.len()).position(|w| w == secret) {
                let around = String::from_utf8_lossy(&bytes[at.saturating_sub(200)..at]);
                panic!("token #{i} appears in {name}, after: {around}");
            }
        }
    }
    for (name, bytes) in &haystacks {
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the password appears in {name}"
        );
    }
}

/// Runs a client command whose standard output (or standard error) is closed before it
/// writes anything (a reader that has gone, as in `tocsin keys list | true`).
fn with_closed(
    server: &Server,
    token: &str,
    args: &[&str],
    stream: Stream,
) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("TOCSIN_URL", &server.url)
        .env("TOCSIN_TOKEN", token)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    match stream {
        Stream::Stdout => drop(child.stdout.take()),
        Stream::Stderr => drop(child.stderr.take()),
    }
    child.wait_with_output().unwrap()
}

enum Stream {
    Stdout,
    Stderr,
}

fn with_stdout_closed(server: &Server, token: &str, args: &[&str]) -> std::process::Output {
    with_closed(server, token, args, Stream::Stdout)
}

#[test]
fn a_closed_stdout_ends_output_quietly_and_a_lost_token_is_reported() {
    let server = Server::start_logging("warn");
    let owner = server.owner();
    // A listing whose reader has gone: no panic (exit 101), no complaint, exit 0.
    for args in [
        &["keys", "list", "--json"][..],
        &["keys", "list"][..],
        &["whoami"][..],
    ] {
        let out = with_stdout_closed(&server, &owner, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    // A new token that cannot be written is lost: standard error says so, names the key and
    // what to do, and the command fails.
    for (name, json) in [("lost one", true), ("lost two", false)] {
        let mut args = vec!["keys", "create", "--name", name, "--expires-in", "30d"];
        if json {
            args.push("--json");
        }
        let out = with_stdout_closed(&server, &owner, &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains("could not be written"), "{err}");
        assert!(err.contains("tocsin keys revoke key_"), "{err}");
    }
    // The token comes first, so a reader that stops early still has it.
    let out = server.cli(
        &owner,
        &[
            "keys",
            "create",
            "--name",
            "first",
            "--expires-in",
            "30d",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let head: String = text.chars().take(80).collect();
    assert!(head.contains("\"token\": \"tcs_p_"), "{text}");
    let out = server.cli(
        &owner,
        &["keys", "create", "--name", "second", "--expires-in", "30d"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The token is the first line of standard output, alone, as `init` prints the owner's.
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert!(lines[0].starts_with("tcs_p_"), "{lines:?}");
    assert!(!lines[0].contains(' '), "{lines:?}");
    assert!(
        stderr(&out).contains("shown only this once"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_stderr_costs_the_message_not_the_exit_code() {
    let server = Server::start_logging("warn");
    let owner = server.owner();
    // A refusal (exit 1) and a usage error (exit 2) whose explanation cannot be written: the
    // command still ends with its own exit code, not a panic's 101.
    let out = with_closed(
        &server,
        &owner,
        &["keys", "show", "key_00000000000000000000000000"],
        Stream::Stderr,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let out = with_closed(
        &server,
        &owner,
        &["keys", "create", "--name", "x", "--expires-in", "soon"],
        Stream::Stderr,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    // A listing's "more" hint goes to standard error; the listing itself is still written.
    for i in 0..3 {
        let out = server.cli(
            &owner,
            &[
                "keys",
                "create",
                "--name",
                &format!("k{i}"),
                "--expires-in",
                "30d",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = with_closed(
        &server,
        &owner,
        &["keys", "list", "--limit", "2"],
        Stream::Stderr,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("k2"), "{}", stdout(&out));
}

/// `serve`'s own settings (address, limits, timeouts, tracking) are listed in its help only:
/// the other commands that take the server's settings accept them (one config file or
/// environment serves every command) without listing them.
#[test]
fn serve_only_settings_are_listed_by_serve_alone_and_accepted_by_the_others() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let serve = help(&["serve"]);
    for flag in [
        "--listen",
        "--max-body-bytes",
        "--track-requests",
        "--region",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
    for cmd in [
        &["init"][..],
        &["orgs", "create"],
        &["migrate"],
        &["audit", "verify"],
        &["audit", "refusals"],
    ] {
        let text = help(cmd);
        assert!(text.contains("--data-dir"), "{cmd:?}: {text}");
        for flag in [
            "--listen",
            "--public-url",
            "--max-body-bytes",
            "--track-requests",
        ] {
            assert!(!text.contains(flag), "{cmd:?} --help lists {flag}");
        }
    }
    assert!(help(&["init"]).contains("--region"));
    assert!(!help(&["migrate"]).contains("--region"));
    // Still accepted: migrate fails on the missing database, not on the flag.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["migrate", "--listen", "127.0.0.1:1", "--data-dir"])
        .arg(dir.path())
        .env_remove("TOCSIN_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("there is no database"),
        "{}",
        stderr(&out)
    );
}
