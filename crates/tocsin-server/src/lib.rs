//! Tocsin's HTTP server: the router behind the request-id/envelope layer and the auth door,
//! background writers, and a graceful shutdown that drains requests and flushes batches.

pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod console_session;
pub mod envelope;
pub mod error;
pub mod limits;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod views;

use crate::config::Settings;
use crate::state::{App, AppState};
use quick_cache::sync::Cache;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tocsin_core::token::TokenHasher;
use tocsin_store::LastUsedTracker;
use tocsin_store::audit::{AuditRecord, AuditTarget};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

pub struct ServeOptions {
    /// Initialize an empty database (SPEC "Bootstrap"); `serve --no-init` turns it off.
    pub init: bool,
    pub owner_email: String,
    pub org_name: String,
    /// The owner's password hash when initializing (`TOCSIN_OWNER_PASSWORD`), so the owner can
    /// sign in to the web console; without one the owner signs in with keys only.
    pub owner_password_hash: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            init: true,
            owner_email: "owner@localhost".into(),
            org_name: "Default".into(),
            owner_password_hash: None,
        }
    }
}

/// A server that is listening. Dropping it does not stop it; call `shutdown`.
pub struct Running {
    pub addr: SocketAddr,
    pub app: AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }

    /// Resolves when the server has stopped (after a signal, or `shutdown`).
    pub async fn wait(self) {
        let _ = self.done.await;
    }

    pub fn stopper(&self) -> &tokio::sync::oneshot::Sender<()> {
        &self.stop
    }
}

pub fn app_router(state: AppState) -> axum::Router {
    let max_body = state.settings.max_body_bytes;
    // One stack, applied once: `Router::layer` wraps every route's service in a box of its
    // own for each call, and each box cost a request a clone and a boxed future.
    let stack = tower::ServiceBuilder::new()
        // The door's own steps do not panic; should one, this is the last resort.
        .layer(CatchPanicLayer::new())
        .layer(DoorLayer(state.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body))
        // A handler's panic is answered 500 inside the door, so that it is rendered and
        // audited as any other answer.
        .layer(CatchPanicLayer::custom(answer_panic));
    routes::router(state).layer(stack)
}

/// A handler's panic: answered 500, with its message beside the answer for the envelope,
/// which logs it with the request id the answer carries.
fn answer_panic(payload: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned());
    // A message may quote a value the handler read, and so a token.
    let message = tocsin_core::token::redact(&message).into_owned();
    let mut resp =
        axum::response::IntoResponse::into_response(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.extensions_mut().insert(envelope::Panicked(message));
    resp
}

/// The one middleware in front of every route, in three steps: the envelope (request id,
/// JSON errors; envelope.rs), the limits (body size, answer time; limits.rs) and the auth
/// door (auth.rs). One service rather than a middleware each: every `from_fn` layer cost
/// each request a clone of the routes' boxed service, a boxed future and a copy of the
/// futures it wraps, about 2 us for the three in a bare router.
#[derive(Clone)]
pub struct DoorLayer(AppState);

impl<S> tower::Layer<S> for DoorLayer {
    type Service = Door<S>;

    fn layer(&self, inner: S) -> Door<S> {
        Door {
            app: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Door<S> {
    app: AppState,
    inner: S,
}

impl<S, B> tower::Service<axum::extract::Request> for Door<S>
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        // The service polled ready goes with this request; a clone stays for the next.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let app = self.app.clone();
        let started = tokio::time::Instant::now();
        Box::pin(async move {
            let app = &*app;
            let handler = move |req| {
                limits::timed(&app.settings, started, async move {
                    match ready.call(req).await {
                        Ok(resp) => resp.map(axum::body::Body::new),
                        Err(never) => match never {},
                    }
                })
            };
            Ok(envelope::run(req, |req, route| {
                limits::run(&app.settings, req, move |req| {
                    auth::run(app, req, route, handler)
                })
            })
            .await)
        })
    }
}

/// How long shutdown waits for the audit writer: to write what is queued, then to stop.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store, initializes it if empty, binds, and serves until `shutdown` or SIGTERM/ctrl-c.
pub async fn start(settings: Settings, opts: ServeOptions) -> anyhow::Result<Running> {
    let (secret, store) =
        bootstrap::secret_and_store(&settings, bootstrap::open_store(&settings)).await?;
    bootstrap::check_secret(&store, &secret).await?;
    bootstrap::check_region(&store, &settings.region).await?;
    let hasher = TokenHasher::new(Some(&secret));
    // The owner-token file is made before the owner: one already there stops the start
    // while the database is still empty, instead of leaving a token with nowhere to go.
    let initialized = bootstrap::is_initialized(&store).await?;
    let token_file = if opts.init && !initialized {
        Some(bootstrap::OwnerTokenFile::create(&settings.data_dir)?)
    } else {
        None
    };
    if !opts.init && !initialized {
        tracing::warn!(
            "this database has no organization yet (--no-init): no credential can be accepted until `tocsin init` (or a node started without --no-init) creates one"
        );
    }
    if let Some(token_file) = token_file {
        let initialized = bootstrap::try_init(
            &store,
            &hasher,
            &settings.region,
            &opts.org_name,
            &opts.owner_email,
            opts.owner_password_hash.as_deref(),
        )
        .await;
        match initialized {
            Ok(Some(created)) => {
                let path = token_file.path().to_path_buf();
                token_file.write(&created.token)?;
                tracing::info!(path = %path.display(), organization_id = %created.organization_id,
                    "initialized a new deployment; the owner's first API key token was written to this file (mode 0600)");
                if opts.owner_password_hash.is_none() {
                    tracing::info!(email = %opts.owner_email,
                        "the owner has no password for the web console yet: start the first serve with TOCSIN_OWNER_PASSWORD, or set one with PATCH /v1/users/{{id}} {{\"password\": ...}} and the owner token");
                }
            }
            // Another node, started at the same moment, initialized it.
            Ok(None) => token_file.discard(),
            Err(e) => {
                token_file.discard();
                return Err(e);
            }
        }
    }
    let signals = ShutdownSignals::register();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "invalid setting `listen`: cannot bind {}: {e}",
                settings.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let loops = limits::EventLoops::start()
        .map_err(|e| anyhow::anyhow!("cannot start the connection threads: {e}"))?;
    let (audit, alerts, writer_task) = tocsin_store::spawn_writers(store.clone());
    let settings_failed_auth = settings.failed_auth_per_minute;
    let app: AppState = Arc::new(App {
        store: store.clone(),
        settings,
        hasher,
        cache: Cache::new(100_000),
        orgs: Cache::new(10_000),
        generation: AtomicU64::new(0),
        audit,
        alerts,
        last_used: LastUsedTracker::default(),
        failed_auth: governor::RateLimiter::keyed(governor::Quota::per_minute(
            std::num::NonZeroU32::new(settings_failed_auth).expect("checked at load"),
        )),
        key_limits: Default::default(),
        cache_hits: AtomicU64::new(0),
        cache_misses: AtomicU64::new(0),
    });
    routes::ops::prometheus();
    let router = app_router(app.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let background = tokio::spawn(background(app.clone()));
    let upkeep = tokio::spawn(metrics_upkeep());
    let watcher = tokio::spawn(watch_credentials(app.clone()));
    let app2 = app.clone();
    let done = tokio::spawn(async move {
        let signal = async {
            tokio::select! {
                _ = stopped => {}
                _ = signals.recv() => {}
            }
        };
        limits::serve(listener, router, &app2.settings, &loops, signal).await;
        background.abort();
        upkeep.abort();
        watcher.abort();
        if let Err(e) = app2.last_used.flush(&app2.store).await {
            tracing::error!(error = %e, "could not record last use at shutdown");
        }
        // Alerts answered once in the alert log (SQLite) go into the tables now, so that a
        // clean stop leaves nothing for the next start to write in.
        if let Err(e) = app2.store.alerts_settled().await {
            tracing::error!(error = %e, "accepted alerts are not all in the tables at shutdown; the alert log keeps them for the next start");
        }
        match tokio::time::timeout(SHUTDOWN_WAIT, app2.audit.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not write the audit events queued at shutdown")
            }
            Err(_) => tracing::error!(
                "the audit events queued at shutdown were not written within {} s",
                SHUTDOWN_WAIT.as_secs()
            ),
        }
        // Closing the pool checkpoints the WAL into the database file.
        app2.store.close().await;
        // Every alert write was answered only after its commit (a create on SQLite after its
        // flush to the alert log, and the wait above saw it committed), and the flush above
        // committed every audit event queued before it, unless the database refused some:
        // the writer holds those. Once it finds the store closed (this flush's batch, or its
        // next try of the held events) it logs them in full and ends; it is waited for, not
        // aborted.
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, app2.audit.flush()).await;
        let unwritten = app2.audit.unwritten();
        drop(app2);
        let mut writer_task = writer_task;
        let writer_stopped = tokio::time::timeout(SHUTDOWN_WAIT, &mut writer_task)
            .await
            .is_ok();
        if !writer_stopped {
            tracing::error!(
                "the writer did not stop within {} s",
                SHUTDOWN_WAIT.as_secs()
            );
            writer_task.abort();
        }
        loops.stop().await;
        // The last line is the one an operator or a supervisor reads after SIGTERM: it says
        // "flushed" only when nothing was given up.
        match (writer_stopped, unwritten.count()) {
            (true, 0) => tracing::info!("stopped; batched writes flushed"),
            (true, n) => tracing::error!(
                unwritten_audit_events = n,
                "stopped; {n} audit event(s) were not written (each is logged above in full)"
            ),
            (false, n) => tracing::error!(
                unwritten_audit_events = n,
                "stopped; the writer was stopped before it finished: audit events still queued were not written"
            ),
        }
    });
    tracing::info!(%addr, "listening");
    tracing::info!(url = %app.settings.public_url, "the web console is served at this URL");
    Ok(Running {
        addr,
        app,
        stop,
        done,
    })
}

/// SIGTERM and SIGINT (ctrl-c), listened for from before the listener is bound: until a
/// handler is registered a SIGTERM kills the process outright, and an orchestrator may send
/// one as soon as the port answers, before the serve loop is first polled. Then a connection
/// already accepted would be reset instead of drained.
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn register() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            ShutdownSignals {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Resolves at the first of the signals (never, if none could be registered).
    async fn recv(self) {
        #[cfg(unix)]
        {
            async fn one(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = one(self.term) => {}
                _ = one(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Keeps this node's credential cache in step with the others: a LISTEN on PostgreSQL for
/// changes as they commit, and a poll of the change log every 250 ms for anything a listener
/// missed (notifications sent while it reconnects are lost, so a reconnect drops the cache).
/// Both are written by triggers in the change's own transaction (migration 0012): a change
/// that commits is announced, whichever node, command or SQL session made it. Every
/// `CACHE_REFRESH` the cache is dropped whatever the log says.
async fn watch_credentials(app: AppState) {
    use tocsin_store::changes::CHANGE_WINDOW;
    // The log's state as the last poll saw it: its newest id, and its row count above `bound`.
    let mut bound = 0;
    let mut seen = None;
    let mut listener = None;
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    let mut refresh = tokio::time::interval(CACHE_REFRESH);
    refresh.tick().await;
    loop {
        if listener.is_none() && app.store.is_postgres() {
            match app.store.credential_listener().await {
                Ok(l) => {
                    listener = l;
                    app.drop_cached_credentials();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for credential changes; polling only")
                }
            }
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            got = notified => match got {
                Ok(Some(_)) => app.drop_cached_credentials(),
                // The connection was lost; whatever was sent meanwhile is gone.
                Ok(None) => app.drop_cached_credentials(),
                Err(e) => {
                    tracing::warn!(error = %e, "credential listener failed; reconnecting");
                    listener = None;
                    app.drop_cached_credentials();
                }
            },
            _ = refresh.tick() => app.drop_cached_credentials(),
            _ = poll.tick() => match app.store.credential_changes_above(bound).await {
                Ok(now) if seen != Some(now) => {
                    // The window follows the newest id. The new baseline is read before the
                    // cache is dropped: a change that commits between the two reads is in
                    // the cache's drop or in the next poll, never in neither. The first
                    // poll drops too: requests may have filled the cache before it (or
                    // while it failed), and a change may have landed meanwhile.
                    let next = (now.0 - CHANGE_WINDOW).max(0);
                    match app.store.credential_changes_above(next).await {
                        Ok(base) => (bound, seen) = (next, Some(base)),
                        Err(_) => seen = Some(now),
                    }
                    app.drop_cached_credentials();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot poll credential changes"),
            },
        }
    }
}

/// The longest a cached credential is trusted without a word from the change log: a last
/// line of defence, since every committed change writes the log in its own transaction. A
/// poll could still miss one in theory (a change committing late, more than `CHANGE_WINDOW`
/// log rows below the newest, with its NOTIFY lost too). Each refresh costs a lookup per key
/// in use, so it is rare.
const CACHE_REFRESH: Duration = Duration::from_secs(30 * 60);

/// Folds the histograms' recorded samples into their buckets every second. The Prometheus
/// recorder keeps every sample (8 bytes each, one per request for the key verification
/// time) until upkeep or a scrape drains them: a node that nobody scraped grew by about
/// 1 MB a second under 50,000 requests a second, without bound.
async fn metrics_upkeep() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        routes::ops::prometheus().run_upkeep();
    }
}

/// Periodic work: flush last-used times, record key expiries in the audit trail.
async fn background(app: AppState) {
    // Every 15 s: last-used accurate to well within a minute, heartbeats late by at most 15 s.
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        if let Err(e) = app.last_used.flush(&app.store).await {
            tracing::error!(error = %e, "could not record last use");
        }
        match app
            .store
            .take_newly_expired(time::OffsetDateTime::now_utc())
            .await
        {
            Ok(keys) => {
                for k in keys {
                    let mut r =
                        AuditRecord::new(Some(k.org_id.clone()), "api_key.expired", "allowed");
                    r.target = Some(AuditTarget {
                        kind: "api_key".into(),
                        id: k.id.to_string(),
                    });
                    app.audit.record(r).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "could not sweep expired keys"),
        }
        app.failed_auth.retain_recent();
        app.key_limits.retain_recent();
        if app.store.is_postgres()
            && let Err(e) = app.store.prune_rate_counters(tocsin_store::now_ms()).await
        {
            tracing::warn!(error = %e, "could not prune the rate counters");
        }
        if let Err(e) = app.store.prune_credential_changes().await {
            tracing::warn!(error = %e, "could not prune the credential change log");
        }
        if let Err(e) = routes::heartbeats::sweep(&app, time::OffsetDateTime::now_utc()).await {
            tracing::error!(error = ?e, "could not check heartbeats");
        }
    }
}

/// Installs the log subscriber (text or JSON). Query strings are never logged: spans carry the path only.
pub fn init_logging(format: config::LogFormat) {
    // PostgreSQL's notices ("relation _sqlx_migrations already exists, skipping" on every
    // start) are the server's small talk: warnings only, unless TOCSIN_LOG asks for more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOCSIN_LOG")
        .unwrap_or_else(|_| "info,sqlx::postgres::notice=warn".into());
    // Colours only on a terminal: in a file, a pipe or journald the escape codes would
    // split every `key=value` and defeat `grep request_id=...`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the server logged at `error` in this test process (also shown beside a failing
    /// test's output): the subscriber is global, so it is installed once for every test here.
    fn logged() -> &'static std::sync::Mutex<Vec<u8>> {
        static LOG: std::sync::OnceLock<std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
        struct Tee;
        impl std::io::Write for Tee {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                logged().lock().unwrap().extend_from_slice(buf);
                eprint!("{}", String::from_utf8_lossy(buf));
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = LOG.get_or_init(|| std::sync::Mutex::new(Vec::new()));
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let _ = tracing_subscriber::fmt()
                .with_writer(|| Tee)
                .with_ansi(false)
                .with_env_filter("error")
                .try_init();
        });
        log
    }

    /// A server on a fresh data directory, and its owner's token.
    async fn serve() -> (tempfile::TempDir, Running, String) {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_overrides(crate::config::Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let running = start(settings, ServeOptions::default()).await.unwrap();
        let owner = std::fs::read_to_string(dir.path().join("owner-token")).unwrap();
        (dir, running, owner.trim().to_owned())
    }

    /// Review ops #14: a shutdown that gave up on audit events (the database refused them)
    /// ends with a line that says how many, not "batched writes flushed".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shutdown_that_loses_audit_events_says_how_many() {
        logged();
        let (_dir, running, owner) = serve().await;
        tocsin_store::testing::refuse_inserts(&running.app.store, "audit_segments", None).await;
        let http = reqwest::Client::new();
        for _ in 0..3 {
            let resp = http
                .get(format!("http://{}/v1/auth/whoami", running.addr))
                .bearer_auth(&owner)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        // The flush answers once the batch holding the three events has failed.
        let _ = running.app.audit.flush().await;
        assert_eq!(running.app.audit.health().held_events, 3);
        running.shutdown().await;
        let log = String::from_utf8_lossy(&logged().lock().unwrap()).into_owned();
        assert!(
            log.contains("stopped; 3 audit event(s) were not written"),
            "{log}"
        );
    }

    /// A 500's cause is logged once, at error, with the request's id and path (the request's
    /// span is at debug level, so the line names them itself), and never sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_internal_error_is_logged_with_its_request_id_and_not_sent() {
        logged();
        let (_dir, running, owner) = serve().await;
        let resp = reqwest::Client::new()
            .get(format!("http://{}/v1/test/internal", running.addr))
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = resp.text().await.unwrap();
        assert!(!body.contains("a test's internal detail"), "{body}");
        let log = String::from_utf8_lossy(&logged().lock().unwrap()).into_owned();
        let line = log
            .lines()
            .find(|l| l.contains(&request_id))
            .unwrap_or_else(|| panic!("no log line names {request_id}: {log}"));
        assert!(line.contains("request failed"), "{line}");
        assert!(line.contains("a test's internal detail"), "{line}");
        assert!(line.contains("/v1/test/internal"), "{line}");
        running.shutdown().await;
    }

    /// A handler that panics is answered as any other failure: a 500 in the JSON envelope with
    /// its request id, an audit event with that status, and a server that goes on serving.
    /// (The panicking route exists only in this crate's own test build; routes/mod.rs.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_that_panics_is_answered_and_audited() {
        // The panic's log line shows beside a failing test's output.
        logged();
        let (_dir, running, owner) = serve().await;
        let owner = owner.as_str();
        let base = format!("http://{}", running.addr);
        let http = reqwest::Client::new();

        let resp = http
            .get(format!("{base}/v1/test/panic"))
            .bearer_auth(owner)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal_error", "{body}");
        assert_eq!(body["request_id"], request_id.as_str(), "{body}");

        let who = http
            .get(format!("{base}/v1/auth/whoami"))
            .bearer_auth(owner)
            .send()
            .await
            .unwrap();
        assert_eq!(who.status(), 200, "the server goes on serving");

        running.app.audit.flush().await.unwrap();
        let events: Value = http
            .get(format!("{base}/v1/audit_events?action=http.request"))
            .bearer_auth(owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let panicked: Vec<&Value> = events["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["route"] == "/v1/test/panic")
            .collect();
        assert_eq!(panicked.len(), 1, "{events}");
        assert_eq!(panicked[0]["status"], 500);
        assert_eq!(panicked[0]["request_id"], request_id.as_str());
        running.shutdown().await;
    }
}
