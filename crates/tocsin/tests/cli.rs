//! End-to-end through the real binary: `tocsin serve` as its own process with logs at trace
//! level, driven by the `tocsin` client commands; then the logs and every file of the data
//! directory (the SQLite WAL included) are searched for the tokens the scenario handled.

use serde_json::Value;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

struct Server {
    child: Child,
    url: String,
    data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data)
            .env("TOCSIN_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start: {}",
                read(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            url,
            data,
            log,
            _dir: dir,
        }
    }

    fn owner(&self) -> String {
        std::fs::read_to_string(self.data.join("owner-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("TOCSIN_URL", &self.url)
            .env("TOCSIN_TOKEN", token)
            .output()
            .unwrap()
    }

    fn json(&self, token: &str, args: &[&str]) -> Value {
        let out = self.cli(token, args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// SIGTERM, then wait: the graceful path that flushes batched writes.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn read(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already initialized"));

    server.stop();
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        stderr(&verify)
    );

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
    assert!(stderr(&out).contains("listen"));
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
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .starts_with("tcs_p_us_")
    );
}
