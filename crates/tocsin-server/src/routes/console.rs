//! The web console: its static files (embedded in the binary, served at `/` and
//! `/console/...` under a strict Content-Security-Policy), and its cookie session:
//! sign in, the current session with its CSRF token, sign out.

use crate::auth::{Principal, credential};
use crate::console_session::{self, csrf_for, over_https, set_cookie};
use crate::error::Path;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::routes::users::{Login, SESSION_HOURS, password_login};
use crate::state::AppState;
use crate::views;
use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tocsin_core::token::Token;

#[derive(RustEmbed)]
#[folder = "src/console/"]
struct Assets;

/// No inline script or style, nothing from another origin, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One embedded file with the console's security headers. `Cache-Control: no-cache` with an
/// ETag: browsers keep a copy but ask each time, so an upgraded server is never half-loaded.
fn asset(file: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let found = Assets::get(file).ok_or(ApiError::NotFoundBy("console file", "name"))?;
    let etag = format!("\"{}\"", hex::encode(&found.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(file))],
            found.data.into_owned(),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}

pub async fn index(headers: HeaderMap) -> ApiResult<Response> {
    asset("index.html", &headers)
}

pub async fn file(Path(file): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    asset(&file, &headers)
}

/// `POST /v1/auth/console/login`: like `/v1/auth/login`, but the session token goes into an
/// HttpOnly cookie instead of the body, and the body carries the CSRF token.
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Login>,
) -> ApiResult<Response> {
    // A cross-site form can post only simple content types; demanding JSON keeps another
    // site from signing a visitor into an account of its choosing.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json {
        return Err(ApiError::BadRequest(
            "Send the sign-in as JSON with the header Content-Type: application/json.".into(),
        ));
    }
    let (token, session, user) = password_login(&app, peer.ip(), req).await?;
    let csrf = csrf_for(&app, token.expose())
        .ok_or_else(|| ApiError::Internal("a new session token is not a session token".into()))?;
    let cookie = set_cookie(
        Some(token.expose()),
        SESSION_HOURS * 3600,
        over_https(&app, &headers),
    );
    let body = json!({
        "user": views::user(&user), "expires_at": views::t(session.expires_at), "csrf_token": csrf,
    });
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The session token the request was authenticated with (header first, then the cookie,
/// as the auth layer chose), if it was a session rather than an API key.
fn session_token<'a>(p: &Principal, headers: &'a HeaderMap) -> ApiResult<&'a str> {
    let raw = credential(headers).or_else(|| console_session::cookie_credential(headers, false));
    match raw {
        Some(raw) if p.key.is_none() => Ok(raw),
        _ => Err(ApiError::BadRequest(format!(
            "This route is about a console session, and this request was authenticated by the {} `{}`. Sign in to the console (POST /v1/auth/console/login), or revoke a key with POST /v1/api_keys/{{id}}/revoke.",
            p.describe.kind, p.describe.name
        ))),
    }
}

/// `GET /v1/auth/console/session`: who is signed in, and the CSRF token the console keeps in
/// memory only (a reload fetches it again).
pub async fn session(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let raw = session_token(&p, &headers)?;
    let csrf = csrf_for(&app, raw)
        .ok_or_else(|| ApiError::Internal("an authenticated session token did not parse".into()))?;
    let user = p
        .user
        .as_ref()
        .ok_or_else(|| ApiError::Internal("session without user".into()))?;
    let (permissions, team_permissions) = views::permission_fields(&p.grants);
    let body = json!({
        "user": views::user(user), "organization": {"id": p.org.id, "name": p.org.name},
        "expires_at": views::t(p.state.expires_at), "csrf_token": csrf,
        "permissions": permissions, "team_permissions": team_permissions,
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /v1/auth/console/logout`: ends the session in the store (its token stops working on
/// every node) and clears the cookie.
pub async fn logout(
    State(app): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let raw = session_token(&p, &headers)?;
    let token = Token::parse(raw)
        .map_err(|_| ApiError::Internal("an authenticated session token did not parse".into()))?;
    app.store.delete_session(&app.hasher.digest(&token)).await?;
    app.drop_cached_credentials();
    let mut resp = Json(json!({"signed_out": true})).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(None, 0, over_https(&app, &headers)),
    );
    Ok(resp)
}
