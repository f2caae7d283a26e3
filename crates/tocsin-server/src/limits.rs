//! Limits against hostile or broken clients, in one place: the connection loop (request
//! heads read up to twice `max_header_bytes`, and a bare 431 from hyper above that; headers
//! within `header_timeout`, which also closes idle kept-alive connections) and the
//! per-request middleware (heads at most `max_header_bytes`, answered 431 with the JSON
//! error naming the limit; bodies at most `max_body_bytes`, answered 413; an answer within
//! `request_timeout`, else 408, which the door audits like any answer).
//! The JSON depth limit is enforced where bodies are parsed (`error::JsonBody`).

use crate::config::Settings;
use crate::error::{ApiError, ErrorInfo};
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// The body limit of this server, for the body reader's 413 (a chunked body is only found
/// too large while it is read).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// Bounds each request's head and time, and gives the framework's 413 the JSON error naming
/// the limit. The limits step of the door (lib.rs); `next` runs the rest of the request.
pub(crate) async fn run<F: Future<Output = Response>>(
    settings: &Settings,
    mut req: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let size = head_size(&req);
    if size > settings.max_header_bytes {
        return ApiError::HeadersTooLarge {
            size,
            limit: settings.max_header_bytes,
        }
        .into_response();
    }
    let limit = settings.max_body_bytes;
    let timeout = settings.request_timeout;
    req.extensions_mut().insert(BodyLimit(limit));
    // The handler's own time is bounded inside the door (`timed`), so that its 408 is
    // audited and counted like any answer; this bound, a little later, covers the door's own
    // steps (a key lookup or a rate counter on a database that stopped answering).
    match tokio::time::timeout(timeout + DOOR_MARGIN, next(req)).await {
        Ok(resp)
            if resp.status() == StatusCode::PAYLOAD_TOO_LARGE
                && resp.extensions().get::<ErrorInfo>().is_none() =>
        {
            ApiError::PayloadTooLarge { limit }.into_response()
        }
        Ok(resp) => resp,
        Err(_) => timed_out(timeout),
    }
}

/// How much longer than `request_timeout` the whole request may take, the door's steps
/// included, before it is answered 408 without an audit event.
const DOOR_MARGIN: Duration = Duration::from_secs(1);

/// Runs a route's handler within `request_timeout` of `started` (when the request reached
/// the door), else answers 408 naming the limit. The handler is dropped then; a write it had
/// already handed to a writer may still commit, as with any request whose answer the client
/// never receives.
pub(crate) async fn timed(
    settings: &Settings,
    started: tokio::time::Instant,
    handler: impl Future<Output = Response>,
) -> Response {
    let timeout = settings.request_timeout;
    match tokio::time::timeout_at(started + timeout, handler).await {
        Ok(resp) => resp,
        Err(_) => timed_out(timeout),
    }
}

fn timed_out(timeout: Duration) -> Response {
    ApiError::Timeout {
        seconds: timeout.as_secs(),
    }
    .into_response()
}

/// The size of a request's head as hyper parsed it: the request line (the target as its path
/// and query), each header as `name: value` and its line end, and the blank line after them.
/// Close to the bytes on the wire for any ordinary client; whitespace around header values,
/// which the parser drops, is not counted, so a head padded with it is bounded only by
/// `head_cap`.
fn head_size(req: &Request) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

/// Reads `//v2/alerts` as `/v2/alerts`, and `/v2/alerts/` as `/v2/alerts`: a client whose
/// base URL ends in a slash and that appends `/v2/...` to it (Opsgenie's Python SDK builds
/// `host + "/v2/..."`) sends a path with two at its start, and a URL typed with a slash at its
/// end (`https://tocsin.example.com/v2/alerts/` in a webhook's settings) one at its end. Only
/// the slashes at the start are merged and one at the end dropped (never the root's); the rest
/// of the path is routed as sent. No route has an empty last segment, so nothing that routed
/// before routes elsewhere now.
fn normal_slashes<B>(req: &mut Request<B>) {
    let path = req.uri().path();
    let extra = if path.starts_with("//") {
        path.len() - path.trim_start_matches('/').len() - 1
    } else {
        0
    };
    let trailing = path.len() > extra + 1 && path.ends_with('/');
    if extra == 0 && !trailing {
        return;
    }
    let mut parts = req.uri().clone().into_parts();
    let Some(merged) = parts.path_and_query.as_ref().and_then(|pq| {
        let path = &pq.path()[extra..];
        let path = if trailing {
            &path[..path.len() - 1]
        } else {
            path
        };
        match pq.query() {
            Some(q) => format!("{path}?{q}").parse().ok(),
            None => path.parse().ok(),
        }
    }) else {
        return;
    };
    parts.path_and_query = Some(merged);
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// How large a head hyper reads before it answers a bare 431 and closes the connection:
/// twice the limit, so that a head over the limit by less than that is read whole and
/// answered with the JSON error naming the limit (`run`), and a connection's buffer stays
/// bounded. (hyper applies the same bound to a chunked body's trailers.)
fn head_cap(limit: usize) -> usize {
    limit.saturating_mul(2)
}

/// The threads that serve connections: one event loop (a single-threaded tokio runtime) per
/// core, each connection served by one loop for its whole life, as nginx's workers serve
/// theirs. On the work-stealing runtime every readiness event could wake a parked worker to
/// steal the task, and those futex wake-ups, inter-processor interrupts and context switches
/// cost about 3 us of a whoami's 15 us of CPU (issue #5; bench/README.md). The accept loop,
/// the background tasks and the batch writer stay where they were.
pub struct EventLoops {
    loops: Vec<tokio::runtime::Handle>,
    /// Dropping a sender ends its loop's thread, which drops its runtime and the tasks left.
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: std::sync::atomic::AtomicUsize,
}

impl EventLoops {
    /// One loop per core the process may use.
    pub fn start() -> std::io::Result<EventLoops> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut loops = EventLoops {
            loops: Vec::with_capacity(n),
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
            next: Default::default(),
        };
        for i in 0..n {
            // Each runtime is built, run and dropped on its own thread (a runtime dropped on
            // an async thread would panic), which sends its handle back once it is built.
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (ready, handle) = std::sync::mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name(format!("tocsin-loop-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        // Alert requests made on this loop are answered a batch at a time.
                        tocsin_store::answer_here();
                        let _ = stopped.await;
                    })
                })?;
            let handle = handle.recv().map_err(|_| {
                std::io::Error::other("an event loop's thread ended as it started")
            })??;
            loops.loops.push(handle);
            loops.stops.push(stop);
            loops.threads.push(thread);
        }
        Ok(loops)
    }

    /// The loop for the next connection, in turn.
    fn next(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.loops[i % self.loops.len()]
    }

    /// Ends the loops and waits for their threads. Called last, once the store is closed: a
    /// database connection a request opened belongs to its loop's runtime, so the loops
    /// outlive every use of the store.
    pub async fn stop(mut self) {
        self.stops.clear();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Serves HTTP/1.1 on `listener` until `signal` resolves, then stops accepting, lets every
/// connection finish its request in flight, and returns once all are closed. Connections are
/// served on `loops`, in turn. Each request carries `ConnectInfo<SocketAddr>`, as
/// `axum::serve` gives it; unlike `axum::serve`, the connections have a timer, so a client
/// that sends its headers slowly (or never) is disconnected instead of holding a connection
/// for ever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    settings: &Settings,
    loops: &EventLoops,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_header_size(head_cap(settings.max_header_bytes))
        .keep_alive(true)
        // One buffer per response instead of a vectored write of head and body: the bodies
        // are small JSON, copying one is cheaper than the kernel's handling of a second
        // segment (issue #5: 2-3% less CPU per whoami on the event loops, bench/README.md).
        .writev(false);
    // Connections are told to finish through `draining`; `open` counts them (each holds a
    // receiver), so `closed()` on the sender resolves once the last one has ended.
    let (draining_tx, draining_rx) = tokio::sync::watch::channel(false);
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let mut signal = std::pin::pin!(signal);
    let mut live = Some(listener);
    let mut stopping: Option<std::net::TcpListener> = None;
    let mut drained = 0;
    loop {
        let (stream, peer) = if let Some(waiting) = &stopping {
            // Connections the kernel completed before the stop are served, not reset: their
            // clients have sent, or are sending, requests they believe will be answered.
            // Take those already waiting (the listener is non-blocking: WouldBlock once none
            // is left), at most a backlog's worth so that clients still arriving cannot hold
            // the stop off, then close the listener.
            if drained >= SHUTDOWN_BACKLOG {
                break;
            }
            drained += 1;
            match waiting.accept() {
                // An accepted socket does not inherit the listener's non-blocking mode, which
                // the loop's runtime needs.
                Ok((stream, peer)) => match stream.set_nonblocking(true) {
                    Ok(()) => (stream, peer),
                    Err(_) => continue,
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // One connection aborted before it was taken, or no descriptor left for it:
                // the others waiting are still taken.
                Err(_) => continue,
            }
        } else {
            let Some(listener) = &live else { break };
            let accepted = tokio::select! {
                accepted = listener.accept() => Some(accepted),
                _ = &mut signal => None,
            };
            match accepted {
                // The socket moves to its loop's runtime: out of this one's reactor, into
                // that one's.
                Some(Ok((stream, peer))) => match stream.into_std() {
                    Ok(stream) => (stream, peer),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "could not hand a connection to its loop");
                        continue;
                    }
                },
                Some(Err(e)) => {
                    // Out of file descriptors, or a connection reset before accept: wait
                    // briefly rather than spin, and keep serving the others.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                None => match live.take().map(tokio::net::TcpListener::into_std) {
                    Some(Ok(waiting)) => {
                        stopping = Some(waiting);
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "could not take the connections waiting at shutdown");
                        break;
                    }
                    None => break,
                },
            }
        };
        let _ = stream.set_nodelay(true);
        // On a dual-stack listener (`[::]:port`) an IPv4 client arrives as `::ffff:a.b.c.d`.
        // Its address is the IPv4 one everywhere after this: `allowed_cidrs` written in IPv4
        // match it, and the audit trail, last use and failed-login limits record it as such.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let router = router.clone();
        // Set by the connection's first request: one that has had none when the shutdown
        // comes is given `FIRST_REQUEST_GRACE` for it to arrive.
        let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let service = hyper::service::service_fn({
            let started = started.clone();
            move |mut req: Request<hyper::body::Incoming>| {
                started.store(true, std::sync::atomic::Ordering::Relaxed);
                req.extensions_mut().insert(ConnectInfo(peer));
                normal_slashes(&mut req);
                crate::routes::alert_named_like_a_route(&mut req);
                tower::ServiceExt::oneshot(router.clone(), req.map(axum::body::Body::new))
            }
        });
        let builder = builder.clone();
        let mut draining = draining_rx.clone();
        let open = open_rx.clone();
        loops.next().spawn(async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "could not serve a connection on its loop");
                    return;
                }
            };
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_connection_end(result, peer),
                _ = async { draining.wait_for(|d| *d).await.is_ok() } => {
                    // Its first request may be on its way: serve it if it comes in time (the
                    // connection stays open, for the client's next request, until then).
                    if !started.load(std::sync::atomic::Ordering::Relaxed)
                        && let Ok(result) =
                            tokio::time::timeout(FIRST_REQUEST_GRACE, connection.as_mut()).await
                    {
                        log_connection_end(result, peer);
                        drop(open);
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    log_connection_end(connection.await, peer);
                }
            }
            drop(open);
        });
    }
    drop((live, stopping));
    let _ = draining_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
}

/// The most connections taken from the listen queue once a shutdown begins (the queue's own
/// default length).
const SHUTDOWN_BACKLOG: usize = 1024;

/// How long a connection accepted before a shutdown, that has sent no request yet, is given
/// for its first one: closing it unanswered would leave its client unable to tell whether a
/// write it sent was processed.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

fn log_connection_end(result: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(e) = result {
        // A header timeout, an oversized head or a client that went away: the client's
        // problem, worth a debug line and no more.
        tracing::debug!(%peer, error = %e, "connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_at_either_end_are_made_normal() {
        for (sent, served) in [
            ("/", "/"),
            ("//", "/"),
            ("/v2/alerts", "/v2/alerts"),
            ("/v2/alerts/", "/v2/alerts"),
            (
                "//v2/alerts/?query=status%3Aopen",
                "/v2/alerts?query=status%3Aopen",
            ),
            ("///v2/alerts/a%2F/close", "/v2/alerts/a%2F/close"),
            ("/v2/alerts//", "/v2/alerts/"),
        ] {
            let mut req = Request::builder().uri(sent).body(()).unwrap();
            normal_slashes(&mut req);
            assert_eq!(req.uri().to_string(), served, "{sent}");
        }
    }
}
