//! One error type for every handler. `ApiError` decides the status, code and message once;
//! the envelope middleware (`envelope.rs`) then renders it as the `/v1` body or Opsgenie's
//! `/v2` body, and adds the request id, so no handler formats an error itself.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tocsin_core::policy::{Describe, MissingGrant, Refusal, describe_refusal};
use tocsin_core::validation::Problems;
use tocsin_store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// Boxed: refusals carry a description of the key, and most results are `Ok`.
    Refused(Box<(Refusal, Option<Describe>)>),
    Escalation(Vec<MissingGrant>),
    /// 403 `escalation_denied` for a change that grants nothing itself but acts on someone or
    /// something holding more than the caller (a key's later expiry or looser rate limit, a
    /// stronger member's membership): `change` says what was refused, `fix` what to do.
    EscalationIn {
        missing: Vec<MissingGrant>,
        change: String,
        fix: String,
    },
    Validation(Problems),
    NotFound(&'static str),
    /// 404 for an object looked up by something other than its id: `(what, by)`, e.g.
    /// `("alert", "alias")`, `("heartbeat", "name")`.
    NotFoundBy(&'static str, &'static str),
    /// 404: no route has this method and path (or an `{action}` the route does not know).
    NoRoute,
    /// 405: the path is a route's, by other methods (given, for the message and `Allow`).
    MethodNotAllowed(Vec<&'static str>),
    Conflict {
        code: &'static str,
        message: String,
    },
    /// 409 that also says what to do instead (`fixes` in the body).
    ConflictWithFix {
        code: &'static str,
        message: String,
        fix: String,
    },
    Forbidden {
        code: &'static str,
        message: String,
    },
    /// 403 that also says what to do instead (`fixes` in the body).
    ForbiddenWithFix {
        code: &'static str,
        message: String,
        fix: String,
    },
    Unauthorized {
        code: &'static str,
        message: String,
    },
    NotImplemented(String),
    BadRequest(String),
    /// 409: a login's email and password matched users of several organizations (their ids
    /// and names, all of which the caller just proved it may enter); it must name one.
    ChooseOrganization(Vec<(tocsin_core::OrgId, String)>),
    /// 429 with `Retry-After` (seconds).
    RateLimited {
        message: String,
        retry_after: u64,
        /// A key's own limit (requests per minute), when that is what was passed.
        limit: Option<u32>,
    },
    /// 413: the body is over the server's limit (`max-body-bytes`).
    PayloadTooLarge {
        limit: usize,
    },
    /// 431: the request line and headers are over the server's limit (`max-header-bytes`).
    HeadersTooLarge {
        size: usize,
        limit: usize,
    },
    /// 408: the request was not answered within `request-timeout-seconds`.
    Timeout {
        seconds: u64,
    },
    /// 503 with `Retry-After`: the store could not take a write just now (the reason is
    /// logged, not sent).
    Unavailable {
        message: String,
        detail: String,
    },
    Internal(String),
}

/// Every `outcome` an audit event records: `allowed`, or the code of the error a request
/// was answered with (SPEC section 4's refusal codes, and every other code of `ApiError`, the
/// handlers and the envelope). `GET /v1/audit_events` refuses any other value of its
/// `outcome` filter. A test below finds the codes in the sources and checks each is here.
pub const OUTCOMES: &[&str] = &[
    "allowed",
    // Refusals at the door (SPEC section 4).
    "missing_credentials",
    "malformed_token",
    "wrong_region",
    "unknown_key",
    "revoked_key",
    "key_disabled",
    "expired_key",
    "ip_not_allowed",
    "permission_denied",
    "scope_denied",
    "escalation_denied",
    "rate_limited",
    "csrf_token_missing",
    "csrf_token_invalid",
    // Everything else a request can be answered with.
    "validation_failed",
    "bad_request",
    "not_found",
    "method_not_allowed",
    "conflict",
    "name_taken",
    "email_taken",
    "role_in_use",
    "team_in_use",
    "last_owner",
    "key_expired",
    "key_revoked",
    "replaced_token",
    "integration_key_required",
    "not_an_integration_key",
    "invalid_credentials",
    "organization_required",
    "unsupported_media_type",
    "payload_too_large",
    "headers_too_large",
    "request_timeout",
    "not_implemented",
    "store_unavailable",
    "internal_error",
];

/// The rendered error, carried to the envelope middleware as a response extension.
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields of the `/v1` error object (`fixes`, `fields`, `missing`...).
    pub details: Map<String, Value>,
}

/// Names what an `escalation_denied` caller lacks, by scope, and adds it to the error's
/// details as `missing`.
fn missing_grants(missing: &[MissingGrant], details: &mut Map<String, Value>) -> String {
    details.insert(
        "missing".into(),
        json!(missing
            .iter()
            .map(|m| json!({"team_id": m.team.as_ref().map(|t| t.as_str()), "permissions": m.permissions.names()}))
            .collect::<Vec<_>>()),
    );
    describe_missing(missing)
}

/// "alerts:delete (account-wide); teams:write (in team team_...)".
pub fn describe_missing(missing: &[MissingGrant]) -> String {
    missing
        .iter()
        .map(|m| match &m.team {
            None => format!("{} (account-wide)", m.permissions.names().join(", ")),
            Some(t) => format!("{} (in team {t})", m.permissions.names().join(", ")),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn info(&self) -> ErrorInfo {
        let mut details = Map::new();
        let (status, code, message) = match self {
            ApiError::Refused(boxed) => {
                let (refusal, who) = &**boxed;
                let (message, fixes) = describe_refusal(refusal, who.as_ref());
                details.insert("fixes".into(), json!(fixes));
                if let Refusal::WrongRegion { region, url } = refusal {
                    details.insert("region".into(), json!(region));
                    details.insert("region_url".into(), json!(url));
                }
                if let Refusal::Denied(tocsin_core::policy::Decision::PermissionDenied { required }) = refusal {
                    details.insert("required_permission".into(), json!(required.name()));
                    details.insert("roles_granting".into(), json!(tocsin_core::policy::roles_granting(*required)));
                }
                let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::FORBIDDEN);
                (status, refusal.code(), message)
            }
            ApiError::Escalation(missing) => {
                let lacking = missing_grants(missing, &mut details);
                details.insert(
                    "fixes".into(),
                    json!(["Grant fewer roles or permissions, or have someone who holds these permissions make the change."]),
                );
                (
                    StatusCode::FORBIDDEN,
                    "escalation_denied",
                    format!("Nobody can grant permissions they do not hold (to a key, a user, a role or a team membership); you lack: {lacking}."),
                )
            }
            ApiError::EscalationIn { missing, change, fix } => {
                let lacking = missing_grants(missing, &mut details);
                details.insert("fixes".into(), json!([fix]));
                (StatusCode::FORBIDDEN, "escalation_denied", format!("{change}; you lack: {lacking}."))
            }
            ApiError::Validation(problems) => {
                let mut fields = Map::new();
                for p in &problems.0 {
                    fields.insert(p.field.clone(), json!(p.reason));
                }
                details.insert("fields".into(), Value::Object(fields));
                // A reason may end a sentence already (Opsgenie's "Message can not be empty.").
                let summary = problems.summary();
                let stop = if summary.ends_with('.') { "" } else { "." };
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", format!("The request is invalid: {summary}{stop}"))
            }
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", format!("No {what} with this id exists.")),
            ApiError::NotFoundBy(what, by) => (StatusCode::NOT_FOUND, "not_found", format!("No {what} with this {by} exists.")),
            ApiError::NoRoute => (
                StatusCode::NOT_FOUND,
                "not_found",
                "No route matches this method and path; GET /openapi.json lists every route.".into(),
            ),
            ApiError::MethodNotAllowed(allowed) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("This path takes {}, not this method; GET /openapi.json lists the methods of each route.", allowed.join(" or ")),
            ),
            ApiError::Conflict { code, message } => (StatusCode::CONFLICT, *code, message.clone()),
            ApiError::ConflictWithFix { code, message, fix } => {
                details.insert("fixes".into(), json!([fix]));
                (StatusCode::CONFLICT, *code, message.clone())
            }
            ApiError::Forbidden { code, message } => (StatusCode::FORBIDDEN, *code, message.clone()),
            ApiError::ForbiddenWithFix { code, message, fix } => {
                details.insert("fixes".into(), json!([fix]));
                (StatusCode::FORBIDDEN, *code, message.clone())
            }
            ApiError::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, *code, message.clone()),
            ApiError::NotImplemented(what) => {
                (StatusCode::NOT_IMPLEMENTED, "not_implemented", format!("{what} is not implemented yet."))
            }
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message.clone()),
            ApiError::ChooseOrganization(choices) => {
                details.insert(
                    "organizations".into(),
                    json!(choices.iter().map(|(id, name)| json!({"id": id.as_str(), "name": name})).collect::<Vec<_>>()),
                );
                let named: Vec<String> = choices.iter().map(|(id, name)| format!("{id} ({name})")).collect();
                (
                    StatusCode::CONFLICT,
                    "organization_required",
                    format!(
                        "This email and password sign in to {} organizations; send the login again with `organization_id`, one of: {}.",
                        choices.len(),
                        named.join(", ")
                    ),
                )
            }
            ApiError::RateLimited {
                message,
                retry_after,
                limit,
            } => {
                details.insert("retry_after_seconds".into(), json!(retry_after));
                if let Some(limit) = limit {
                    details.insert("rate_limit".into(), json!(limit));
                    details.insert("period_seconds".into(), json!(60));
                }
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", message.clone())
            }
            ApiError::PayloadTooLarge { limit } => {
                details.insert("limit_bytes".into(), json!(limit));
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("The request body is larger than this server's limit of {limit} bytes (setting `max-body-bytes`)."),
                )
            }
            ApiError::HeadersTooLarge { size, limit } => {
                details.insert("limit_bytes".into(), json!(limit));
                details.insert("size_bytes".into(), json!(size));
                (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    format!("The request line and headers are {size} bytes, more than this server's limit of {limit} bytes (setting `max-header-bytes`); send fewer or shorter headers."),
                )
            }
            ApiError::Timeout { seconds } => {
                details.insert("limit_seconds".into(), json!(seconds));
                (
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("The request was not received and answered within this server's limit of {seconds} seconds (setting `request-timeout-seconds`); a write it asked for may or may not have been made."),
                )
            }
            ApiError::Unavailable { message, .. } => {
                details.insert("retry_after_seconds".into(), json!(UNAVAILABLE_RETRY_AFTER));
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message.clone())
            }
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side; the request id identifies it in the server's log.".into(),
            ),
        };
        ErrorInfo {
            status,
            code,
            message,
            details,
        }
    }

    pub fn refused(refusal: Refusal, who: Option<Describe>) -> ApiError {
        ApiError::Refused(Box::new((refusal, who)))
    }

    pub fn validation(field: &str, reason: impl Into<String>) -> ApiError {
        ApiError::Validation(Problems::single(field, reason))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let info = self.info();
        let mut resp = info.status.into_response();
        if let ApiError::Internal(detail) | ApiError::Unavailable { detail, .. } = &self {
            // Never sent: the envelope logs it with the request's id (envelope.rs).
            resp.extensions_mut().insert(Detail(detail.clone()));
        }
        if let ApiError::RateLimited { retry_after, .. } = &self
            && let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string())
        {
            // Opsgenie sends the window that tripped (60 or 1) and clients sleep that long
            // before trying again (Airbyte's does); Retry-After is to say the same. Tocsin's
            // limits count per minute, but the wait for the next request to fit is known
            // exactly and is seldom a whole minute: a second for 60 a minute on SQLite's
            // limiter, and up to two minutes on PostgreSQL's sliding window, where a client
            // told 60 would come back too early and be counted again. Both headers say that
            // wait, as the message does.
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v.clone());
            resp.headers_mut().insert("x-ratelimit-period-in-sec", v);
        }
        if let ApiError::MethodNotAllowed(allowed) = &self
            && let Ok(v) = axum::http::HeaderValue::from_str(&allowed.join(", "))
        {
            resp.headers_mut().insert(axum::http::header::ALLOW, v);
        }
        if let ApiError::Unavailable { .. } = &self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(UNAVAILABLE_RETRY_AFTER),
            );
        }
        resp.extensions_mut().insert(info);
        resp
    }
}

/// What went wrong behind a 500 or 503, for the log only: the envelope writes it beside the
/// request's id, method and path.
#[derive(Clone)]
pub(crate) struct Detail(pub(crate) String);

/// Seconds a client is told to wait after a 503 `store_unavailable`.
const UNAVAILABLE_RETRY_AFTER: u64 = 1;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("object"),
            StoreError::Conflict(c) => ApiError::Conflict {
                code: "conflict",
                message: format!("A conflicting object exists ({c})."),
            },
            StoreError::Vanished(what) => ApiError::Conflict {
                code: "conflict",
                message: format!(
                    "The {what} this request names was deleted, or its scope changed, while the request was handled; nothing was written. Name one that exists (for a role, in the scope it is given in) and try again."
                ),
            },
            StoreError::Changed(what) => ApiError::Conflict {
                code: "conflict",
                message: format!(
                    "The {what} changed while this request was handled; nothing was written. Read it again and retry if the change still stands."
                ),
            },
            StoreError::WriteFailed(why) => ApiError::Unavailable {
                message: "The database did not take the write; nothing of this request was written unless it says otherwise. Try again shortly; /readyz tells when writes go through again.".into(),
                detail: why,
            },
            // A lost connection, a database that refuses connections or is shutting down,
            // a closed store: the request may well go through once it is back (README,
            // Operations: "never a 500").
            other if other.is_unavailable() => ApiError::Unavailable {
                message: "The database cannot be reached just now; try again shortly (/readyz tells when it is back).".into(),
                detail: other.to_string(),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Maps `NotFound` to a 404 naming `what`; any other store failure stays a 500.
pub fn not_found(what: &'static str) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(what),
        other => other.into(),
    }
}

/// As `not_found`, for an object addressed by something other than its id (a role by name).
pub fn not_found_by(what: &'static str, by: &'static str) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFoundBy(what, by),
        other => other.into(),
    }
}

/// Whether a lookup found its object: `NotFound` is false, any other store failure stays an
/// error (a database outage must not read as "no such team").
pub fn found<T>(r: Result<T, StoreError>) -> ApiResult<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Maps a uniqueness conflict from the store to a 409 with this code and message; any other
/// store error maps as usual. For `.map_err(conflict("name_taken", "..."))`.
pub fn conflict(code: &'static str, message: String) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::Conflict(_) => ApiError::Conflict { code, message },
        other => other.into(),
    }
}

/// A JSON body whose problems become `validation_failed` (naming the field where serde can),
/// never a framework text page. JSON that does not parse is `validation_failed` on `body` for
/// Tocsin's own routes (SPEC section 4: a bad body is a 422) and `400 bad_request` on the
/// Opsgenie routes, as Opsgenie answers a syntax error.
/// An empty body is read as `{}`, as Opsgenie clients send empty-bodied POSTs. A body over
/// the size limit is a 413, one nested deeper than `tocsin_core::json::MAX_DEPTH` a 422:
/// both are refused before serde builds anything.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<crate::limits::BodyLimit>().copied();
        let opsgenie = req.uri().path().starts_with("/v2/");
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match limit {
                Some(crate::limits::BodyLimit(limit))
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::PayloadTooLarge { limit }
                }
                _ => ApiError::BadRequest(format!("The request body could not be read: {e}.")),
            })?;
        let scanned = tocsin_core::json::scan(&bytes, tocsin_core::json::MAX_DEPTH)
            .map_err(|depth| ApiError::validation("body", depth.to_string()))?;
        if scanned.nul_escape
            && let Ok(value) = serde_json::from_slice::<Value>(&bytes)
            && let Some(field) = tocsin_core::json::nul_path(&value)
        {
            return Err(ApiError::validation(&field, NUL_REASON));
        }
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            axum::body::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        // Every Tocsin and Opsgenie body is an object; an array, string or number at the top
        // would otherwise reach handlers that read fields from a `Value` as "all absent".
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok()
        {
            return Err(ApiError::validation("body", "must be a JSON object"));
        }
        let not_json = |e: serde_json::Error| match opsgenie {
            true => ApiError::BadRequest(format!("The request body is not valid JSON: {e}.")),
            false => ApiError::validation("body", format!("is not valid JSON: {e}")),
        };
        // Parsed untracked first: tracking the path costs on every value, and is needed only
        // to name the field of an error, when the body is parsed again below (issue #5).
        if let Ok(v) = serde_json::from_slice::<T>(&bytes) {
            return Ok(JsonBody(v));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let first = match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(v) => {
                de.end().map_err(not_json)?;
                return Ok(JsonBody(v));
            }
            Err(e) => {
                let path = e.path().to_string();
                let e = e.into_inner();
                if e.is_syntax() || e.is_eof() {
                    return Err(not_json(e));
                }
                field_problem(&path, &e)
            }
        };
        Err(ApiError::Validation(every_field_problem::<T>(
            &bytes, first,
        )))
    }
}

/// Where a serde error is (`description`, `responders[0].type`, or `body` for the body
/// itself) and why, in words for `fields`.
fn field_problem(path: &str, e: &serde_json::Error) -> (String, String) {
    let msg = e.to_string();
    let named = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.starts_with("missing field") || msg.starts_with("unknown field"));
    let field = match (named, path) {
        (Some(name), ".") => name.to_owned(),
        (Some(name), parent) if !parent.ends_with(name) => format!("{parent}.{name}"),
        (_, ".") => "body".to_owned(),
        (_, path) => path.to_owned(),
    };
    let reason = msg.split(" at line").next().unwrap_or(&msg).to_owned();
    (field, reason)
}

/// Every field serde refuses, not only the first (SPEC section 4: "every offending field"):
/// the body is read again without each top-level field already reported, until it reads or
/// the next problem is not one a missing field would hide (a required field absent). At most
/// `FIELD_PROBLEMS_MAX` are listed: each costs a reading of the body, and a body of a
/// hundred thousand unknown members must not hold its event loop for minutes.
fn every_field_problem<T: DeserializeOwned>(bytes: &[u8], first: (String, String)) -> Problems {
    /// The top-level member a field's path starts with.
    fn member(field: &str) -> &str {
        field.split(['.', '[']).next().unwrap_or(field)
    }
    const FIELD_PROBLEMS_MAX: usize = 20;
    let mut problems = Problems::new();
    let mut body = match serde_json::from_slice::<Value>(bytes) {
        Ok(body @ Value::Object(_)) => body,
        _ => {
            problems.add(first.0, first.1);
            return problems;
        }
    };
    let mut next = Some(first);
    while let Some((field, reason)) = next.take() {
        if problems.0.len() == FIELD_PROBLEMS_MAX {
            problems.add(
                "body",
                format!("has more problems than the {FIELD_PROBLEMS_MAX} listed; mend these and send it again"),
            );
            break;
        }
        let removed = body
            .as_object_mut()
            .is_some_and(|o| o.remove(member(&field)).is_some());
        problems.add(field, reason);
        if !removed {
            break;
        }
        // Read from the value itself: no copy of the body per problem.
        next = serde_path_to_error::deserialize::<_, T>(&body)
            .err()
            .map(|e| {
                let path = e.path().to_string();
                field_problem(&path, &e.into_inner())
            });
    }
    problems
}

/// Why a value holding a NUL character is refused, wherever it came (body, query, path).
const NUL_REASON: &str = "contains the NUL character (U+0000, `\\u0000` or `%00`), which no text Tocsin keeps may hold; remove it";

/// A query string read into `T`, whose problems become `validation_failed` naming the
/// parameter (SPEC section 4: a bad query is a 422 naming every offending field), never the
/// framework's bare 400. Every query struct holds `Option<String>`s and checks its values
/// itself, so what is left here is a parameter given twice (`?limit=1&limit=2`).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // A NUL comes only percent-encoded: the parameter that holds it is named.
        if let Some(query) = parts.uri.query()
            && query.contains("%00")
            && let Some(pair) = query.split('&').find(|pair| pair.contains("%00"))
        {
            let name = pair.split('=').next().unwrap_or(pair);
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            let name = match name.contains('\0') || name.is_empty() {
                true => "query".to_owned(),
                false => name.replace('+', " "),
            };
            return Err(ApiError::validation(&name, NUL_REASON));
        }
        // The framework would read the bytes that are not UTF-8 as U+FFFD and go on: refused
        // instead, naming the parameter, as a path parameter that is not UTF-8 is.
        if let Some(query) = parts.uri.query()
            && let Some(name) = not_utf8_parameter(query)
        {
            return Err(ApiError::BadRequest(match name {
                Some(name) => format!(
                    "The query parameter `{name}` is not valid UTF-8 once percent-decoded (for example `%FF`); send its value as percent-encoded UTF-8 text."
                ),
                None => "A query parameter's name is not valid UTF-8 once percent-decoded (for example `%FF`); send it as percent-encoded UTF-8 text.".into(),
            }));
        }
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => {
                let text = rejection.body_text();
                let msg = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                // serde names the parameter in backticks: "duplicate field `limit`".
                let named = msg.split('`').nth(1).filter(|n| !n.is_empty());
                Err(match named {
                    Some(name) if msg.contains("duplicate field") => ApiError::validation(
                        name,
                        format!("is given more than once in the query string; send `{name}` once"),
                    ),
                    Some(name) => ApiError::validation(name, msg.to_owned()),
                    None => ApiError::validation("query", msg.to_owned()),
                })
            }
        }
    }
}

/// The first parameter of `query` whose name or value is not UTF-8 once percent-decoded:
/// `Some(Some(name))` for a value, `Some(None)` for a name that is not UTF-8 itself.
fn not_utf8_parameter(query: &str) -> Option<Option<String>> {
    // Only a percent-encoded byte can be outside UTF-8: the query is a `str`.
    if !query.contains('%') {
        return None;
    }
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Ok(name) = percent_encoding::percent_decode_str(name).decode_utf8() else {
            return Some(None);
        };
        percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .is_err()
            .then(|| Some(name.replace('+', " ")))
    })
}

/// Path parameters read into `T`. A parameter that is not UTF-8 once percent-decoded
/// (`/v1/roles/%FF`) is a 400 naming the parameter and why, never the framework's bare 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        if parts.uri.path().contains("%00") {
            return Err(ApiError::BadRequest(
                "The path holds a NUL character (`%00`), which no id or name holds; remove it."
                    .into(),
            ));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => Err(ApiError::BadRequest(format!(
                    "The path parameter `{key}` is not valid UTF-8 once percent-decoded (for example `%FF`); send the {key} as percent-encoded UTF-8 text."
                ))),
                // Every path parameter is text; any other failure is this server's own.
                _ => Err(ApiError::Internal(e.body_text())),
            },
            Err(other) => Err(ApiError::Internal(other.body_text())),
        }
    }
}

/// For handlers that keep axum's `Json` extractor.
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

pub fn created<T: serde::Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `resp`, whose audit event names the object the handler acted on (`kind` and `id`): the
/// door takes the target from the response when the path names no object (a create, the
/// organization) or names it otherwise (an alert by alias).
pub fn with_target(mut resp: Response, kind: &str, id: &str) -> Response {
    resp.extensions_mut()
        .insert(tocsin_store::audit::AuditTarget {
            kind: kind.to_owned(),
            id: id.to_owned(),
        });
    resp
}

/// A `201 Created` whose audit event names what was made.
pub fn created_target<T: serde::Serialize>(body: T, kind: &str, id: &str) -> Response {
    with_target(created(body), kind, id)
}

#[cfg(test)]
mod tests {
    use super::OUTCOMES;

    /// The string literals that follow `marker` in `text` and look like a code
    /// (lowercase words joined by underscores).
    fn codes_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
        text.match_indices(marker)
            .filter_map(|(i, _)| {
                let rest = &text[i + marker.len()..];
                let rest = rest.trim_start().strip_prefix('"')?;
                let code = &rest[..rest.find('"')?];
                (!code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                    .then_some(code)
            })
            .collect()
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// Every code the server can answer with is in `OUTCOMES`, so the audit trail's
    /// `outcome` filter accepts it: the codes handlers give (`code: "..."`,
    /// `conflict("...")`), `ApiError`'s own (`StatusCode::X, "..."`), the envelope's for
    /// framework answers and the core's refusal codes (`Refusal::X => "..."`).
    #[test]
    fn every_error_code_is_an_outcome_the_audit_filter_accepts() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        files.push((
            "tocsin-core/src/policy.rs".into(),
            std::fs::read_to_string(root.join("../tocsin-core/src/policy.rs")).unwrap(),
        ));
        let mut found = Vec::new();
        for (path, text) in &files {
            for marker in ["code: ", "conflict(", "StatusCode::NOT_FOUND,"] {
                found.extend(codes_after(text, marker).into_iter().map(|c| (path, c)));
            }
            for line in text.lines() {
                // A success's text (`(StatusCode::OK, "ready")`) is no error code.
                if (line.contains("StatusCode::") && !line.contains("StatusCode::OK"))
                    || line.contains("Refusal::")
                {
                    found.extend(codes_after(line, ", ").into_iter().map(|c| (path, c)));
                    found.extend(codes_after(line, "=> ").into_iter().map(|c| (path, c)));
                }
            }
        }
        for status in 400..600u16 {
            let status = axum::http::StatusCode::from_u16(status).unwrap();
            found.push((&files[0].0, crate::envelope::framework_code(status)));
        }
        assert!(found.len() > 30, "the scan found too few codes: {found:?}");
        let missing: Vec<_> = found
            .iter()
            .filter(|(_, code)| !OUTCOMES.contains(code))
            .collect();
        assert!(
            missing.is_empty(),
            "codes missing from OUTCOMES: {missing:?}"
        );
        // And the refusal codes of SPEC section 4, by name.
        for code in [
            "missing_credentials",
            "malformed_token",
            "wrong_region",
            "unknown_key",
            "revoked_key",
            "expired_key",
            "ip_not_allowed",
            "permission_denied",
            "scope_denied",
            "escalation_denied",
            "rate_limited",
            "validation_failed",
            "not_found",
            "name_taken",
        ] {
            assert!(OUTCOMES.contains(&code), "{code}");
        }
    }
}
