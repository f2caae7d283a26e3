//! The outermost layer: gives every request an id (the `X-Request-Id` header), and renders
//! every error, including the framework's own 404/405/413, as JSON in the envelope of its
//! route family: `/v1` gets `{"error": {...}, "request_id"}`, `/v2` Opsgenie's
//! `{"message", "code"?, "took", "requestId"}` with the `/v1` error object alongside.

use crate::error::ErrorInfo;
use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::time::Instant;
use tracing::Instrument;

/// The request's id, a UUIDv7 (time-ordered), written out where it is shown, and when the
/// request arrived, for Opsgenie's `took`: one request extension for both (each insert is an
/// allocation, and a fourth grows the request's extension map: issue #5).
#[derive(Clone, Copy, Debug)]
pub struct RequestId {
    pub id: uuid::Uuid,
    pub started: Instant,
}

/// A path with any token in it redacted, written out only if a log line is: most requests
/// log nothing, and the path's copy was an allocation per request.
struct LoggedPath(axum::http::Uri);

impl std::fmt::Display for LoggedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&tocsin_core::token::redact(self.0.path()))
    }
}

/// The envelope step of the door (lib.rs); `next` runs the rest of the request.
/// `next` also gets the route template, `None` when no route matched.
pub(crate) async fn run<F: Future<Output = Response>>(
    mut req: Request,
    next: impl FnOnce(Request, Option<&'static str>) -> F,
) -> Response {
    let started = Instant::now();
    let uuid = uuid::Uuid::now_v7();
    let mut id_buf = uuid::Uuid::encode_buffer();
    let id: &str = uuid.hyphenated().encode_lower(&mut id_buf);
    req.extensions_mut().insert(RequestId { id: uuid, started });
    let opsgenie = req.uri().path().starts_with("/v2/");
    // A token pasted into a path (`/v1/api_keys/tcs_...`) must not reach the log. (A `Uri`'s
    // clone shares its bytes.)
    let path = LoggedPath(req.uri().clone());
    // Route templates only (bounded label values), never raw paths.
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| crate::auth::route_text(m.as_str()));
    let route = matched.unwrap_or(crate::auth::UNMATCHED);
    // At debug level only: an info span (its fields formatted as it opens, entered and left
    // on every poll) cost 1.2-3.9 us of a whoami's 13-14 us at the default log level. The
    // lines that matter at info (a failed request, with what went wrong) name the request id
    // themselves.
    let span =
        tracing::debug_span!("request", request_id = %id, method = %req.method(), path = %path);
    let mut resp = next(req, matched).instrument(span).await;
    let status = resp.status();
    let (panicked, detail) = if status.is_server_error() {
        (
            resp.extensions_mut().remove::<Panicked>(),
            resp.extensions_mut().remove::<crate::error::Detail>(),
        )
    } else {
        (None, None)
    };
    count_request(route, status.as_u16());
    let mut resp = if let Some(info) = resp.extensions().get::<ErrorInfo>().cloned() {
        let mut rendered = render(&info, id, opsgenie, started);
        // Headers the error set (Retry-After on 429s) survive the re-rendering.
        for (name, value) in resp.headers() {
            if name != axum::http::header::CONTENT_TYPE
                && name != axum::http::header::CONTENT_LENGTH
            {
                rendered.headers_mut().insert(name.clone(), value.clone());
            }
        }
        rendered
    } else if resp.extensions().get::<Answered>().is_some() {
        resp
    } else if status.is_client_error() || status.is_server_error() {
        // A framework answer with no ErrorInfo (unmatched method, oversized body...).
        render(&framework_error(status), id, opsgenie, started)
    } else {
        resp
    };
    // The access log: the path only, never the query string (legacy clients put keys there).
    tracing::debug!(request_id = %id, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, path = %path, "request");
    if status == StatusCode::NOT_IMPLEMENTED {
        // A feature not built yet: the client's request is fine, and so is the server.
        tracing::info!(request_id = %id, path = %path, "not implemented");
    } else if status.is_server_error() && resp.extensions().get::<Answered>().is_none() {
        let panic = panicked.as_ref().map(|p| p.0.as_str());
        let error = detail.as_ref().map(|d| d.0.as_str());
        tracing::error!(request_id = %id, status = status.as_u16(), path = %path, error, panic, "request failed");
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if opsgenie {
        // Opsgenie's answers say whether the caller is being throttled (its Go SDK warns when
        // a 2xx lacks this), and how long the request took, in seconds.
        let state = if status == StatusCode::TOO_MANY_REQUESTS {
            "THROTTLED"
        } else {
            "OK"
        };
        headers.insert(X_RATELIMIT_STATE, HeaderValue::from_static(state));
        let mut text = [0u8; SECONDS_TEXT];
        if let Ok(v) = HeaderValue::from_bytes(seconds_text(started.elapsed(), &mut text)) {
            headers.insert(X_RESPONSE_TIME, v);
        }
    }
    resp
}

/// Room for `seconds_text`: a u64 of milliseconds is at most 20 digits, and the point.
const SECONDS_TEXT: usize = 24;

/// `took` in seconds with three decimals, rounded to the millisecond (`0.004`, `12.250`), as
/// Opsgenie writes `X-Response-Time`. Written from whole milliseconds: formatting the f64
/// with a precision (the exact algorithm) and the String it went into were about 1% of an
/// alert request's instructions on the event loop (issue #5).
fn seconds_text(took: std::time::Duration, buf: &mut [u8; SECONDS_TEXT]) -> &[u8] {
    let micros = took
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(took.subsec_micros()));
    let ms = micros.saturating_add(500) / 1000;
    let mut at = buf.len();
    let mut put = |digit: u64| {
        at -= 1;
        buf[at] = b'0' + digit as u8;
    };
    let (mut whole, frac) = (ms / 1000, ms % 1000);
    put(frac % 10);
    put(frac / 10 % 10);
    put(frac / 100);
    at -= 1;
    buf[at] = b'.';
    loop {
        at -= 1;
        buf[at] = b'0' + (whole % 10) as u8;
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    &buf[at..]
}

const X_RATELIMIT_STATE: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-ratelimit-state");
const X_RESPONSE_TIME: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-response-time");

/// Built once: a header name given as text is parsed and checked on every insert.
const X_REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Marks an error status that is a route's own answer, body and all, rather than a failure
/// (`/readyz`'s 503 when the node is not ready): sent as it is and not logged as an error.
#[derive(Clone, Copy)]
pub(crate) struct Answered;

/// The message of a handler's panic, on the 500 that answers it (lib.rs): logged here with
/// the request id.
#[derive(Clone)]
pub(crate) struct Panicked(pub(crate) String);

/// Counts a request in `tocsin_http_requests_total`. The registry's lookup of a labelled
/// counter (hashing its name and labels into a shared map) cost more than a whoami handler,
/// so each thread keeps the counters it has used; routes and statuses are few. Its keys are
/// the router's templates and the server's statuses, never a client's text, so they are
/// hashed with a fast fixed hash rather than SipHash (issue #5).
fn count_request(route: &'static str, status: u16) {
    type Counters = std::collections::HashMap<
        (&'static str, u16),
        metrics::Counter,
        foldhash::fast::FixedState,
    >;
    thread_local! {
        static COUNTERS: std::cell::RefCell<Counters> = Default::default();
    }
    COUNTERS.with_borrow_mut(|counters| {
        counters
            .entry((route, status))
            .or_insert_with(|| {
                // The recorder is installed before a handle is taken, or it would count nothing.
                crate::routes::ops::prometheus();
                metrics::counter!("tocsin_http_requests_total", "route" => route, "status" => status.to_string())
            })
            .increment(1)
    });
}

/// The code of a framework answer with this status, as `framework_error` renders it (the
/// audit trail records it as the request's outcome; auth.rs).
pub(crate) fn framework_code(status: StatusCode) -> &'static str {
    framework_text(status).0
}

fn framework_error(status: StatusCode) -> ErrorInfo {
    let (code, message) = framework_text(status);
    ErrorInfo {
        status,
        code,
        message: message.into(),
        details: Map::new(),
    }
}

fn framework_text(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            "No route matches this path; GET /openapi.json lists every route.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This route does not accept this HTTP method; GET /openapi.json lists the methods of each route.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is larger than this server accepts.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Send JSON with Content-Type: application/json.",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "The request took too long to arrive or to answer.",
        ),
        s if s.is_server_error() => (
            "internal_error",
            "Something went wrong on our side; the request id identifies it in the server's log.",
        ),
        _ => ("bad_request", "The request could not be processed."),
    }
}

fn render(info: &ErrorInfo, request_id: &str, opsgenie: bool, started: Instant) -> Response {
    let mut error = Map::new();
    error.insert("code".into(), json!(info.code));
    error.insert("message".into(), json!(info.message));
    for (k, v) in &info.details {
        error.insert(k.clone(), v.clone());
    }
    let body = if opsgenie {
        let mut body = Map::new();
        body.insert("message".into(), json!(info.message));
        if info.status == StatusCode::FORBIDDEN {
            body.insert("code".into(), json!(40301));
        }
        if let Some(Value::Object(fields)) = info.details.get("fields") {
            body.insert("errors".into(), Value::Object(fields.clone()));
        }
        body.insert("took".into(), json!(started.elapsed().as_secs_f64()));
        body.insert("requestId".into(), json!(request_id));
        body.insert("error".into(), Value::Object(error));
        Value::Object(body)
    } else {
        json!({"error": error, "request_id": request_id})
    };
    let mut resp = (info.status, Json(body)).into_response();
    resp.extensions_mut().insert(info.clone());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The text is what `format!("{:.3}")` of the seconds gave, for durations from a
    /// microsecond to days (a half millisecond exactly rounds up here, where the float's
    /// binary value decided before: both are within half a millisecond).
    #[test]
    fn response_time_reads_as_seconds_with_three_decimals() {
        let mut buf = [0u8; SECONDS_TEXT];
        for micros in [
            0u64,
            1,
            499,
            501,
            999,
            1_000,
            4_321,
            12_249_999,
            12_250_001,
            999_499,
            999_501,
            59_999_999,
            86_400_000_123,
            987_654_321_987,
        ] {
            let took = Duration::from_micros(micros);
            let text = std::str::from_utf8(seconds_text(took, &mut buf))
                .unwrap()
                .to_owned();
            assert_eq!(text, format!("{:.3}", took.as_secs_f64()), "{micros} us");
        }
        assert_eq!(
            seconds_text(Duration::from_micros(1_500), &mut buf),
            b"0.002"
        );
        // No overflow, whatever the duration.
        assert_eq!(
            seconds_text(Duration::MAX, &mut buf),
            format!("{}.{:03}", u64::MAX / 1000 / 1000, u64::MAX / 1000 % 1000).as_bytes()
        );
    }
}
