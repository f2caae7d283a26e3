//! The `tocsin serve` process the binary-level tests drive: started on a free port in a fresh
//! data directory, stopped gracefully (SIGTERM) or killed (SIGKILL), and restarted on the
//! same data directory. Shared by `cli.rs` and `crash.rs`; each uses part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
    pub log: PathBuf,
    log_level: String,
    /// Extra `serve` arguments (database URL, secret file), kept for `restart` and for
    /// commands that must reach the same database (`init`, `audit verify`).
    pub extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server logging at trace level (every line of it in `log`).
    pub fn start() -> Server {
        Server::start_logging("trace")
    }

    /// A server logging at this `TOCSIN_LOG` level.
    pub fn start_logging(level: &str) -> Server {
        Server::start_with(level, &[])
    }

    /// A server with extra `serve` arguments, e.g. `--database-url` and `--secret-file`.
    pub fn start_with(level: &str, extra: &[String]) -> Server {
        let mut extra = extra.to_vec();
        extra.extend(backend_args(&extra));
        let extra = extra.as_slice();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let (child, url) = spawn(&data, &log, level, extra);
        Server {
            child,
            url,
            data,
            log,
            log_level: level.to_owned(),
            extra: extra.to_vec(),
            _dir: dir,
        }
    }

    /// Starts the server again on the same data directory (on a new port: `url` changes).
    /// The previous process must have exited (see `stop` and `kill`).
    pub fn restart(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "restart: the server is still running"
        );
        let (child, url) = spawn(&self.data, &self.log, &self.log_level, &self.extra);
        self.child = child;
        self.url = url;
    }

    /// The URL of the database this server uses (its SQLite file, or its PostgreSQL database).
    pub fn database_url(&self) -> String {
        self.extra
            .iter()
            .position(|a| a == "--database-url")
            .map(|i| self.extra[i + 1].clone())
            .unwrap_or_else(|| format!("sqlite://{}", self.data.join("tocsin.db").display()))
    }

    pub fn owner(&self) -> String {
        std::fs::read_to_string(self.data.join("owner-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Runs a client command against this server with this token.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("TOCSIN_URL", &self.url)
            .env("TOCSIN_TOKEN", token)
            .output()
            .unwrap()
    }

    /// Runs a client command that must succeed and print JSON.
    pub fn json(&self, token: &str, args: &[&str]) -> Value {
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
    pub fn stop(&mut self) {
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

    /// SIGKILL (no chance to flush anything), then reap the process.
    pub fn kill(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL failed");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `tocsin serve` on a free port and waits until it accepts connections.
/// With TOCSIN_TEST_BACKEND=postgres, a new database for a server that names none
/// (created with psql, as scripts/test does its clean-up with it).
fn backend_args(extra: &[String]) -> Vec<String> {
    if !tocsin_store::testing::postgres_backend() || extra.iter().any(|a| a == "--database-url") {
        return vec![];
    }
    let admin = tocsin_store::testing::postgres_admin_url();
    let name = format!("tocsin_t_{}", uuid::Uuid::new_v4().simple());
    let status = Command::new("psql")
        .args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql is needed for TOCSIN_TEST_BACKEND=postgres");
    assert!(
        status.success(),
        "could not create a test database on {admin}"
    );
    vec![
        "--database-url".into(),
        format!("{}/{name}", admin.rsplit_once('/').unwrap().0),
    ]
}

/// A port no server of this test process has been given yet. A probe socket finds a free
/// one, but the port is free again once the probe closes, and a test starting a server at
/// the same moment could be handed it too: the first server then answered the second
/// test's connection check before the second server had started (it fails to bind), and
/// that test read a data directory its own server never initialized.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
}

fn spawn(data: &Path, log: &Path, level: &str, extra: &[String]) -> (Child, String) {
    let port = free_port();
    let stderr: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .env("TOCSIN_LOG", level)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited with {status}: {}", read(log));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start: {}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, url)
}

pub fn read(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
