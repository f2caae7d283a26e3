//! Request limits: a key's own `rate_limit` (requests per minute) and the per-address throttle
//! of failed authentications. A single SQLite node counts in memory with governor (GCRA); on
//! PostgreSQL every node counts in the shared `rate_counters` table (a sliding window over the
//! current and previous minute), so a client has one budget whichever node answers it. If the
//! database cannot be asked, the request is let through and the failure logged: a page that
//! must go out matters more than a limit.

use crate::state::App;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use tocsin_core::KeyId;
use tocsin_store::rate_limits::WINDOW_MS;

/// The parts of the API a key's `rate_limit` is counted in, each with a budget of its own, as
/// Opsgenie counts its limits per domain: a client's heavy searches do not use up what its
/// alert ingestion needs, nor its configuration scripts what its pages need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Alert creation, actions, reads of one alert and request statuses (`/v2/alerts/...`).
    Alert,
    /// Alert lists and counts (`GET /v2/alerts`, `GET /v2/alerts/count`).
    Search,
    /// Heartbeats and their pings (`/v2/heartbeats/...`).
    Heartbeat,
    /// Everything else: keys, users, teams, roles, integrations, audit, account.
    Configuration,
}

impl Domain {
    /// The domain of a request by its method and (routed) path.
    pub fn of(method: &axum::http::Method, path: &str) -> Domain {
        let path = path.trim_end_matches('/');
        if path == "/v2/alerts" || path == "/v2/alerts/count" {
            return if method == axum::http::Method::GET {
                Domain::Search
            } else {
                Domain::Alert
            };
        }
        if path.starts_with("/v2/alerts/") {
            Domain::Alert
        } else if path == "/v2/heartbeats" || path.starts_with("/v2/heartbeats/") {
            Domain::Heartbeat
        } else {
            Domain::Configuration
        }
    }

    /// How a refusal names it.
    pub fn describe(self) -> &'static str {
        match self {
            Domain::Alert => "alert requests",
            Domain::Search => "alert searches (lists and counts)",
            Domain::Heartbeat => "heartbeat requests",
            Domain::Configuration => "configuration requests",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Domain::Alert => "alert",
            Domain::Search => "search",
            Domain::Heartbeat => "heartbeat",
            Domain::Configuration => "configuration",
        }
    }
}

/// Per-key limits of a single node: one governor keyed limiter per distinct limit, each
/// holding the keys (with their domains) that use that limit (a key whose limit changes
/// starts afresh under the new one). governor forgets idle keys itself (`retain_recent`).
#[derive(Default)]
pub struct LocalKeyLimits {
    by_limit: Mutex<HashMap<u32, Arc<KeyLimiter>>>,
}

/// The limiter of the keys that share one limit, by key and domain.
type KeyLimiter = DefaultKeyedRateLimiter<(KeyId, Domain)>;

impl LocalKeyLimits {
    fn check(&self, key: &KeyId, domain: Domain, limit: u32) -> Option<u64> {
        let limiter = {
            let mut map = self.by_limit.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(limit)
                .or_insert_with(|| {
                    let per_minute = NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN);
                    Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute)))
                })
                .clone()
        };
        limiter
            .check_key(&(key.clone(), domain))
            .err()
            .map(wait_secs)
    }

    /// Forgets keys whose budget is full again, and limiters no key uses any more.
    pub fn retain_recent(&self) {
        let mut map = self.by_limit.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, limiter| {
            limiter.retain_recent();
            !limiter.is_empty()
        });
    }
}

/// Seconds until governor lets the next request through (at least 1, for `Retry-After`).
fn wait_secs(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    not_until
        .wait_time_from(DefaultClock::default().now())
        .as_secs()
        .max(1)
}

/// The sliding-window estimate over two fixed windows: the previous window's count weighted by
/// how much of it the last minute still covers, plus the current one's (this request
/// included; refused requests count too). Over `limit`, returns the seconds until one more
/// request would fit again.
pub fn sliding_window(limit: u32, current: i64, previous: i64, elapsed_ms: i64) -> Option<u64> {
    let (limit, current, previous) = (f64::from(limit), current as f64, previous as f64);
    let window = WINDOW_MS as f64;
    let covered = 1.0 - elapsed_ms as f64 / window;
    if previous * covered + current <= limit {
        return None;
    }
    // The next request adds one to the current window's count.
    let wait_ms = if current + 1.0 > limit || previous <= 0.0 {
        // Only the next window helps; then this window's count is the one that fades:
        // current * (1 - f) + 1 <= limit.
        let f = (1.0 - (limit - 1.0) / current.max(1.0)).max(0.0);
        (window - elapsed_ms as f64) + window * f
    } else {
        // The previous window's share fades: previous * covered' + current + 1 <= limit.
        let covered_then = (limit - current - 1.0) / previous;
        (covered - covered_then) * window
    };
    Some(((wait_ms / 1000.0).ceil() as u64).max(1))
}

impl App {
    /// Counts a request against a key's own limit in its domain; `Some(seconds)` to wait when
    /// it is over.
    pub async fn key_over_limit(&self, key: &KeyId, domain: Domain, limit: u32) -> Option<u64> {
        if self.store.is_postgres() {
            let bucket = format!("key:{key}:{}", domain.name());
            Box::pin(self.shared_over_limit(&bucket, limit)).await
        } else {
            self.key_limits.check(key, domain, limit)
        }
    }

    /// Counts a failed authentication (or login) from `ip`; `Some(seconds)` to wait when the
    /// address is over `failed_auth_per_minute`. Valid keys never pass here.
    pub async fn failed_auth_throttle(&self, ip: Option<IpAddr>) -> Option<u64> {
        let ip = ip?;
        if self.store.is_postgres() {
            return Box::pin(
                self.shared_over_limit(&format!("ip:{ip}"), self.settings.failed_auth_per_minute),
            )
            .await;
        }
        self.failed_auth.check_key(&ip).err().map(wait_secs)
    }

    /// Called boxed: the store's round trip is a future of several KB, which every request's
    /// future would otherwise carry for the PostgreSQL case alone (issue #5).
    async fn shared_over_limit(&self, bucket: &str, limit: u32) -> Option<u64> {
        let now = tocsin_store::now_ms();
        let window_start = now - now.rem_euclid(WINDOW_MS);
        match self.store.count_request(bucket, window_start).await {
            Ok((current, previous)) => sliding_window(limit, current, previous, now - window_start),
            Err(e) => {
                tracing::warn!(error = %e, "rate counter unavailable; request let through");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_allows_up_to_the_limit_and_says_how_long_to_wait() {
        // Fresh minute, nothing before: the limit is the limit.
        assert_eq!(sliding_window(3, 3, 0, 0), None);
        // Four in the first instant of a minute: the rest of it, then until 4 * (1 - f) + 1
        // <= 3, i.e. half of the next minute.
        assert_eq!(sliding_window(3, 4, 0, 0), Some(90));
        // Halfway through a minute after a full one, half of it still counts.
        assert_eq!(sliding_window(10, 5, 10, 30_000), None);
        // 10 * covered + 6 + 1 <= 10 once covered <= 0.3, i.e. 12 s from now.
        assert_eq!(sliding_window(10, 6, 10, 30_000), Some(12));
        // The last second of a minute: almost only the current count matters.
        assert_eq!(sliding_window(10, 9, 100, 59_999), None);
    }

    #[test]
    fn local_limits_follow_each_keys_own_limit() {
        let limits = LocalKeyLimits::default();
        let (a, b) = (KeyId::generate(), KeyId::generate());
        let alert = Domain::Alert;
        for _ in 0..3 {
            assert_eq!(limits.check(&a, alert, 3), None);
        }
        let wait = limits
            .check(&a, alert, 3)
            .expect("the fourth request in a minute is over");
        assert!((1..=60).contains(&wait));
        assert_eq!(
            limits.check(&b, alert, 3),
            None,
            "keys do not share a budget"
        );
        assert_eq!(
            limits.check(&a, Domain::Search, 3),
            None,
            "nor do a key's domains"
        );
        // A raised limit takes effect at once.
        assert_eq!(limits.check(&a, alert, 10), None);
    }

    #[test]
    fn requests_fall_in_opsgenies_domains() {
        use axum::http::Method;
        let of = |m: Method, p: &str| Domain::of(&m, p);
        assert_eq!(of(Method::POST, "/v2/alerts"), Domain::Alert);
        assert_eq!(of(Method::GET, "/v2/alerts"), Domain::Search);
        assert_eq!(of(Method::GET, "/v2/alerts/count"), Domain::Search);
        assert_eq!(of(Method::GET, "/v2/alerts/abc"), Domain::Alert);
        assert_eq!(of(Method::POST, "/v2/alerts/abc/close"), Domain::Alert);
        assert_eq!(of(Method::GET, "/v2/alerts/requests/r1"), Domain::Alert);
        assert_eq!(of(Method::GET, "/v2/heartbeats/h/ping"), Domain::Heartbeat);
        assert_eq!(of(Method::GET, "/v2/heartbeats"), Domain::Heartbeat);
        assert_eq!(of(Method::GET, "/v2/alertsx"), Domain::Configuration);
        assert_eq!(of(Method::POST, "/v1/api_keys"), Domain::Configuration);
        assert_eq!(of(Method::GET, "/v2/integrations"), Domain::Configuration);
    }
}
