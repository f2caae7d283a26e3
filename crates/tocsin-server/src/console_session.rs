//! The web console's session cookie. A browser signs in once and then carries its session
//! token in an HttpOnly cookie that page scripts cannot read, so no token ever sits in
//! browser storage. Cookies ride along on cross-site requests too, which is what the two
//! rules here are for: the cookie counts only when the request sends no other credential,
//! and a request that can change something must also carry the session's CSRF token in
//! `X-CSRF-Token` (SameSite=Strict is the first line; this is the second).
//! The CSRF token is `HMAC(server secret, "csrf", session digest)`: never stored, the same
//! for the whole session, and recomputed on every node.

use crate::auth::{AuthFailure, Principal};
use crate::error::ApiError;
use crate::state::App;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use std::sync::Arc;
use tocsin_core::token::{Token, TokenDigest, TokenKind, ct_eq};

pub const COOKIE: &str = "tocsin_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session token in the console's cookie, when the request sends no `Authorization`
/// header and no other credential: an explicit credential always wins over a cookie.
/// Only session tokens count; an API key placed in the cookie is ignored.
pub fn cookie_credential(headers: &HeaderMap, other_credential: bool) -> Option<&str> {
    if other_credential || headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    cookie_value(headers)
}

/// The raw `tocsin_session` cookie value if it looks like a session token.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| v.starts_with("tcs_s_"))
}

/// The CSRF token of the session whose token digest is `digest` (64 hex characters).
pub fn csrf_token(app: &App, digest: &TokenDigest) -> String {
    hex::encode(app.hasher.derive("csrf", digest))
}

/// The CSRF token for a session token as presented, or `None` if it is not a session token.
pub fn csrf_for(app: &App, raw: &str) -> Option<String> {
    let token = Token::parse(raw).ok()?;
    (token.kind() == TokenKind::Session).then(|| csrf_token(app, &app.hasher.digest(&token)))
}

/// Methods that change nothing, which a cookie may authenticate without a CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Applied to a request the cookie authenticated: any method that can change something
/// must carry the session's CSRF token, compared in constant time.
pub fn check_csrf(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    cookie: &str,
    principal: Arc<Principal>,
) -> Result<Arc<Principal>, AuthFailure> {
    if is_safe(method) {
        return Ok(principal);
    }
    let expected = csrf_for(app, cookie).unwrap_or_default();
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let error = match presented {
        Some(p) if !expected.is_empty() && ct_eq(p.trim().as_bytes(), expected.as_bytes()) => {
            return Ok(principal);
        }
        None => ApiError::Forbidden {
            code: "csrf_token_missing",
            message: format!(
                "This {method} was authenticated by the console's session cookie, so it must also carry the header X-CSRF-Token (this protects you from other sites making requests in your name). The console sends it itself: reload the page. A script should send Authorization: Bearer <token> instead of the cookie."
            ),
        },
        Some(_) => ApiError::Forbidden {
            code: "csrf_token_invalid",
            message: format!(
                "This {method} was authenticated by the console's session cookie, and its X-CSRF-Token header does not belong to this session. Reload the console (it fetches the token from GET /v1/auth/console/session), or send Authorization: Bearer <token> instead of the cookie."
            ),
        },
    };
    Err(AuthFailure::Forbidden(error, principal))
}

/// Whether the browser reached us over HTTPS: the public URL says so, or a proxy in front
/// says so with `X-Forwarded-Proto: https`. Trusting that header is safe here because it
/// can only add `Secure`, which makes a cookie stricter, never weaker.
pub fn over_https(app: &App, headers: &HeaderMap) -> bool {
    app.settings
        .public_url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session (`max_age` seconds), or to clear it (`None`).
pub fn set_cookie(token: Option<&str>, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match token {
        Some(t) => {
            format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
        }
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    };
    // Tokens are base62 and the rest is fixed text: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}
