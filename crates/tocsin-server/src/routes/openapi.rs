//! What the OpenAPI document says about each operation beyond the route table: the error
//! statuses it can answer and in which envelope (`/v1` or Opsgenie's `/v2`), the headers
//! every answer carries, the query parameters its handler reads, and the request body
//! schemas. `tests/schemathesis/run.sh` holds
//! the server to all of it: a status, content type, header or body the document does not
//! allow is a failure there.

use super::{Needs, RouteInfo};
use serde_json::{Map, Value, json};

/// Fills in `op` (as `ops::openapi_document` built it from the route table) for route `r`.
pub fn refine(r: &RouteInfo, op: &mut Value) {
    let opsgenie = r.path.starts_with("/v2/");
    let error = if opsgenie {
        json!({"$ref": "#/components/schemas/OpsgenieError"})
    } else {
        json!({"$ref": "#/components/schemas/Error"})
    };
    // Every answer carries its request id; Opsgenie's routes also say whether the caller is
    // throttled and how long the request took.
    let headers = if opsgenie {
        json!({"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
               "X-RateLimit-State": {"$ref": "#/components/headers/X-RateLimit-State"},
               "X-Response-Time": {"$ref": "#/components/headers/X-Response-Time"}})
    } else {
        json!({"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}})
    };
    let mut responses = Map::new();
    if let Some(Value::Object(existing)) = op.get("responses") {
        // The success answer (and its content type) as the route table gave it.
        if let Some(success) = existing.get("2XX") {
            let mut success = success.clone();
            success["headers"] = headers.clone();
            responses.insert("2XX".into(), success);
        }
    }
    if let Some((status, links)) = links(r)
        && let Some(success) = responses.get("2XX").cloned()
    {
        let mut created = success;
        created["links"] = links;
        responses.insert(status.into(), created);
    }
    if let Some(status) = no_content(r) {
        responses.insert(
            status.into(),
            json!({"description": "Done; no body",
                   "headers": headers.clone()}),
        );
    }
    for status in error_statuses(r) {
        let mut response = json!({
            "description": describe(status),
            "content": {"application/json": {"schema": error.clone()}},
            "headers": headers.clone(),
        });
        if status == 429 {
            response["headers"]["Retry-After"] = json!({
                "description": "Seconds to wait before trying again",
                "required": true,
                "schema": {"type": "string"}});
            response["headers"]["X-RateLimit-Period-In-Sec"] = json!({
                "description": "Seconds to wait before trying again, as Retry-After (Opsgenie's clients sleep this long; Tocsin's limits count per minute and it sends the exact wait)",
                "required": true,
                "schema": {"type": "string"}});
        }
        responses.insert(status.to_string(), response);
    }
    op["responses"] = Value::Object(responses);
    let query = query_parameters(r.method, r.path);
    if !query.is_empty()
        && let Some(Value::Array(params)) = op.get_mut("parameters")
    {
        params.extend(query);
    }
    match (request_schema(r.method, r.path), op.as_object_mut()) {
        (Some(schema), _) => {
            op["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": schema}},
            });
            if let Some(example) = example(r.method, r.path) {
                op["requestBody"]["content"]["application/json"]["example"] = example;
            }
        }
        (None, Some(o)) => {
            o.remove("requestBody");
        }
        (None, None) => {}
    }
}

/// How the object a create answers is addressed by the operations on it: OpenAPI links, so
/// a client (and schemathesis's stateful phase) can go from creating to reading, changing
/// and deleting it.
fn links(r: &RouteInfo) -> Option<(&'static str, Value)> {
    let link = |targets: &[(&str, &str)], param: &str, pointer: &str| {
        let mut links = Map::new();
        for (name, operation) in targets {
            links.insert(
                (*name).into(),
                json!({"operationId": operation,
                       "parameters": {param: format!("$response.body#{pointer}")}}),
            );
        }
        Value::Object(links)
    };
    Some(match (r.method, r.path) {
        ("POST", "/v1/users") => (
            "201",
            link(
                &[
                    ("GetUser", "get /v1/users/{id}"),
                    ("UpdateUser", "patch /v1/users/{id}"),
                ],
                "id",
                "/id",
            ),
        ),
        ("POST", "/v1/teams") => (
            "201",
            link(
                &[
                    ("GetTeam", "get /v1/teams/{id}"),
                    ("UpdateTeam", "patch /v1/teams/{id}"),
                    ("TeamMembers", "get /v1/teams/{id}/members"),
                    ("DeleteTeam", "delete /v1/teams/{id}"),
                ],
                "id",
                "/id",
            ),
        ),
        ("POST", "/v1/roles") => (
            "201",
            link(
                &[
                    ("UpdateRole", "patch /v1/roles/{name}"),
                    ("DeleteRole", "delete /v1/roles/{name}"),
                ],
                "name",
                "/name",
            ),
        ),
        ("POST", "/v1/api_keys") => (
            "201",
            link(
                &[
                    ("GetKey", "get /v1/api_keys/{id}"),
                    ("UpdateKey", "patch /v1/api_keys/{id}"),
                    ("RotateKey", "post /v1/api_keys/{id}/rotate"),
                    ("RevokeKey", "post /v1/api_keys/{id}/revoke"),
                ],
                "id",
                "/api_key/id",
            ),
        ),
        ("POST", "/v1/integrations") => (
            "201",
            link(
                &[
                    ("GetIntegration", "get /v1/integrations/{id}"),
                    ("UpdateIntegration", "patch /v1/integrations/{id}"),
                    ("GetOpsgenieIntegration", "get /v2/integrations/{id}"),
                    ("ReplaceOpsgenieIntegration", "put /v2/integrations/{id}"),
                    ("DisableIntegration", "post /v2/integrations/{id}/{action}"),
                    ("DeleteOpsgenieIntegration", "delete /v2/integrations/{id}"),
                    ("DeleteIntegration", "delete /v1/integrations/{id}"),
                ],
                "id",
                "/integration/id",
            )
            .with("DisableIntegration", "action", "disable"),
        ),
        ("POST", "/v2/heartbeats") => (
            "201",
            link(
                &[
                    ("GetHeartbeat", "get /v2/heartbeats/{name}"),
                    ("UpdateHeartbeat", "patch /v2/heartbeats/{name}"),
                    ("PingHeartbeat", "get /v2/heartbeats/{name}/ping"),
                    ("DisableHeartbeat", "post /v2/heartbeats/{name}/{action}"),
                    ("DeleteHeartbeat", "delete /v2/heartbeats/{name}"),
                ],
                "name",
                "/data/name",
            )
            .with("DisableHeartbeat", "action", "disable"),
        ),
        ("POST", "/v2/alerts") => (
            "202",
            link(
                &[("RequestStatus", "get /v2/alerts/requests/{id}")],
                "id",
                "/requestId",
            ),
        ),
        // A create's request status names the alert it made.
        ("GET", "/v2/alerts/requests/{id}") => (
            "200",
            link(
                &[
                    ("GetAlert", "get /v2/alerts/{identifier}"),
                    ("AcknowledgeAlert", "post /v2/alerts/{identifier}/{action}"),
                    ("AlertNotes", "get /v2/alerts/{identifier}/{action}"),
                    ("UpdateAlertMessage", "put /v2/alerts/{identifier}/{action}"),
                    ("RemoveAlertTags", "delete /v2/alerts/{identifier}/{action}"),
                ],
                "identifier",
                "/data/alertId",
            )
            .with("AcknowledgeAlert", "action", "acknowledge")
            .with("AlertNotes", "action", "notes")
            .with("UpdateAlertMessage", "action", "message")
            .with("RemoveAlertTags", "action", "tags"),
        ),
        _ => return None,
    })
}

/// A constant parameter of one of the links: an `{action}` the response does not carry.
trait WithConstant {
    fn with(self, link: &str, param: &str, value: &str) -> Self;
}

impl WithConstant for Value {
    fn with(mut self, link: &str, param: &str, value: &str) -> Self {
        self[link]["parameters"][param] = json!(value);
        self
    }
}

fn no_content(r: &RouteInfo) -> Option<&'static str> {
    match (r.method, r.path) {
        ("DELETE", "/v1/teams/{id}")
        | ("DELETE", "/v1/teams/{id}/members/{user_id}")
        | ("DELETE", "/v1/roles/{name}")
        | ("DELETE", "/v1/integrations/{id}") => Some("204"),
        _ => None,
    }
}

/// The error statuses route `r` can answer, from what it needs and takes.
fn error_statuses(r: &RouteInfo) -> Vec<u16> {
    let mut statuses = vec![408, 431, 500];
    let with_body = matches!(r.method, "POST" | "PUT" | "PATCH");
    let api = r.path.starts_with("/v1/") || r.path.starts_with("/v2/");
    if api {
        // A malformed query string or header is a 400 on any API route.
        statuses.push(400);
    }
    if !matches!(r.needs, Needs::Public) {
        // Refused credentials, then permissions, network lists and rate limits.
        statuses.extend([401, 403, 429]);
    }
    if r.path == "/v1/auth/login" || r.path == "/v1/auth/console/login" {
        // A wrong password; failed logins are throttled.
        statuses.extend([401, 429]);
    }
    if with_body {
        statuses.extend([400, 413, 422]);
    }
    if r.path.contains('{') || r.path == "/v1/auth/explain" {
        // (`explain` names a key by `key_id`.)
        statuses.push(404);
    }
    if api && (r.method == "GET" || r.path.starts_with("/v2/alerts/{")) {
        // `limit`, `cursor`, filters and `identifierType` are checked, and a query parameter
        // given twice is refused naming it.
        statuses.push(422);
    }
    let named = ["/v1/", "/v2/heartbeats", "/v2/integrations"];
    if r.method != "GET" && named.iter().any(|p| r.path.starts_with(p)) {
        // A name that is taken, or an object still in use (a team that owns keys).
        statuses.push(409);
    }
    if r.path == "/v2/alerts/{identifier}/{action}" {
        // An action's verb by a method it does not take (`PUT .../acknowledge`).
        statuses.push(405);
    }
    if r.path.starts_with("/v2/alerts") || r.path.ends_with("/actions") {
        // Saved searches (also `searchIdentifier`), attachments and integration actions are
        // not implemented.
        statuses.push(501);
    }
    if r.path == "/readyz" || (api && r.method != "GET") || r.path == "/v1/audit_events" {
        // Not ready; a write the database did not take (the audit listing first waits for
        // the events queued before it).
        statuses.push(503);
    }
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn describe(status: u16) -> &'static str {
    match status {
        400 => {
            "The request is malformed (a bad header, or a path parameter that is not UTF-8, which the message names; on the Opsgenie routes, JSON that does not parse)"
        }
        401 => {
            "No credential, or one that is damaged, unknown, revoked, disabled or expired; the message says which"
        }
        403 => {
            "The credential may not do this (permission, team scope, network list or escalation); the message says what would be allowed"
        }
        404 => "No such object in the caller's organization",
        405 => "The path's verb is taken by other methods (named in the message and `Allow`)",
        408 => "The request was not received and answered within the server's request timeout",
        409 => {
            "A conflict: the name is taken, the object is still in use, or its state forbids the change (the organization's last active owner, an expired key); `error.fixes` says what to do instead; on login, the email and password sign in to several organizations (`error.organizations`), so name one"
        }
        413 => "The body is larger than the server's limit, which the message names",
        422 => {
            "A field or query parameter is invalid (or given twice); `error.fields` names each with its reason"
        }
        429 => "Too many failed attempts or requests; retry after `Retry-After` seconds",
        431 => {
            "The request line and headers are larger than the server's limit, which the message names"
        }
        500 => "An internal error; the request id identifies it in the server's log",
        501 => "Not implemented yet",
        503 => {
            "The database does not answer, or did not take the write; retry after `Retry-After` seconds (`/readyz` tells when writes go through)"
        }
        _ => "Error",
    }
}

fn string() -> Value {
    json!({"type": "string"})
}

/// A query parameter. None is required: a handler reads each one's absence as its default
/// (in the schema) or as no filter.
fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema,
           "description": description})
}

/// A pattern matching any of `words` in any case (or also the empty string), for the Opsgenie
/// parameters the handlers read case-insensitively: an `enum` would tell a client (and
/// schemathesis) that `ASC` is refused, which it is not.
fn any_case(words: &[&str], or_empty: bool) -> Value {
    let alternatives: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()))
                .collect()
        })
        .collect();
    let optional = if or_empty { "?" } else { "" };
    json!({"type": "string", "pattern": format!("^({}){optional}$", alternatives.join("|"))})
}

/// `limit` and `cursor` of a `/v1` list (`ListParams`).
fn v1_page(cursor: &str) -> Vec<Value> {
    vec![
        query(
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": super::LIST_LIMIT_MAX,
                   "default": super::LIST_LIMIT_DEFAULT}),
            "How many items a page holds",
        ),
        query("cursor", string(), cursor),
    ]
}

/// `limit` of the alert list and of an alert's notes and logs.
fn v2_limit(what: &str) -> Value {
    query(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": super::alerts::PAGE_LIMIT_MAX,
               "default": super::alerts::PAGE_LIMIT_DEFAULT}),
        &format!("How many {what} a page holds"),
    )
}

/// `identifierType` of the routes that name an alert by `{identifier}`.
fn identifier_type() -> Value {
    let mut schema = any_case(&["id", "tiny", "alias"], true);
    schema["default"] = json!("id");
    query(
        "identifierType",
        schema,
        "What `{identifier}` is: `id`, `tiny` (the tiny id) or `alias`, in any case; empty or absent is `id`",
    )
}

/// The query parameters route `method path` reads: what its handler's query struct holds
/// (`ListParams`, `AuditQuery`, `api_keys::ListQuery`, `alerts::IdentifierQuery`...), less
/// what it leaves unread on this route. `tests/api.rs` holds the handlers to each one.
fn query_parameters(method: &str, path: &str) -> Vec<Value> {
    let time = |what: &str| {
        query(
            what,
            json!({"type": "string", "format": "date-time"}),
            &format!(
                "Only events {} this time (RFC 3339, such as 2026-11-23T00:00:00Z)",
                if what == "since" {
                    "at or after"
                } else {
                    "before"
                }
            ),
        )
    };
    let id_cursor = "The `next_cursor` of the page before; absent for the first page";
    // The action routes also read who did it and a note from the query string when the body
    // does not give them (Opsgenie's DELETE carries them there).
    let actor = || {
        vec![
            query(
                "user",
                string(),
                "Who did it, for the alert's log, when the body gives no `user`; the caller's name by default",
            ),
            query(
                "note",
                string(),
                "A note for the alert's log, when the body gives no `note`",
            ),
        ]
    };
    match (method, path) {
        ("GET", "/v1/users" | "/v1/teams" | "/v1/roles" | "/v1/teams/{id}/members") => {
            v1_page(id_cursor)
        }
        ("GET", "/v1/integrations") => {
            let mut p = vec![query(
                "team_id",
                string(),
                "Only the integrations of this team",
            )];
            p.extend(v1_page(id_cursor));
            p
        }
        ("GET", "/v1/api_keys") => {
            let kinds: Vec<&str> = tocsin_core::key::KeyKind::ALL
                .iter()
                .map(|k| k.name())
                .collect();
            let mut p = vec![
                query(
                    "kind",
                    json!({"type": "string", "enum": kinds}),
                    "Only keys of this kind",
                ),
                query("team_id", string(), "Only the keys of this team"),
                query(
                    "integration_id",
                    string(),
                    "Only the keys of this integration",
                ),
                query(
                    "include_revoked",
                    json!({"type": "boolean", "default": false}),
                    "Also list revoked keys",
                ),
            ];
            p.extend(v1_page(id_cursor));
            p
        }
        ("GET", "/v1/audit_events") => {
            let mut p = vec![
                query(
                    "api_key_id",
                    string(),
                    "Only events of requests made with this key",
                ),
                query(
                    "actor_id",
                    string(),
                    "Only events of this actor (a user's or key's id)",
                ),
                query(
                    "action",
                    json!({"type": "string", "enum": tocsin_store::audit::ACTIONS}),
                    "Only events of this action",
                ),
                query(
                    "outcome",
                    json!({"type": "string", "enum": crate::error::OUTCOMES}),
                    "Only events of this outcome: `allowed`, or the code of the error the request was answered with",
                ),
                time("since"),
                time("until"),
                query(
                    "target_id",
                    string(),
                    "Only events about this object (its id)",
                ),
            ];
            p.extend(v1_page(
                "The `next_cursor` of the page before (a number); absent for the first page",
            ));
            p
        }
        ("GET", "/v2/alerts" | "/v2/alerts/count") => {
            let mut p = vec![
                query(
                    "query",
                    string(),
                    "Opsgenie's search syntax (`status:open AND priority:P1`); absent or empty matches every alert",
                ),
                query(
                    "searchIdentifier",
                    string(),
                    "A saved search to run instead of `query`: saved searches are not implemented yet (501)",
                ),
            ];
            if path == "/v2/alerts" {
                let sorts: Vec<&str> = tocsin_store::alerts::SortField::NAMES
                    .iter()
                    .map(|(name, _)| *name)
                    .collect();
                let mut order = any_case(&["asc", "desc"], false);
                order["default"] = json!("desc");
                p.extend([
                    query(
                        "sort",
                        json!({"type": "string", "enum": sorts, "default": "createdAt"}),
                        "The field to sort by",
                    ),
                    query("order", order, "`asc` or `desc`, in any case"),
                    query(
                        "offset",
                        json!({"type": "integer", "minimum": 0, "maximum": i64::MAX, "default": 0}),
                        "How many alerts to skip",
                    ),
                    v2_limit("alerts"),
                ]);
            }
            p
        }
        ("GET", "/v2/alerts/{identifier}") => vec![identifier_type()],
        ("GET", "/v2/alerts/{identifier}/{action}") => {
            let mut order = any_case(&["asc", "desc"], false);
            order["default"] = json!("desc");
            let mut direction = any_case(&["next", "prev"], false);
            direction["default"] = json!("next");
            vec![
                identifier_type(),
                query(
                    "offset",
                    json!({"type": "string", "format": "uuid"}),
                    "Start after this note or log line (the `offset` of one a page returned); absent for the first page",
                ),
                query(
                    "direction",
                    direction,
                    "`next` walks on from `offset` in `order`, `prev` back towards the start; in any case",
                ),
                v2_limit("notes or log lines"),
                query(
                    "order",
                    order,
                    "`asc` (oldest first) or `desc`, in any case",
                ),
            ]
        }
        ("DELETE", "/v2/alerts/{identifier}/{action}") => {
            let mut p = vec![identifier_type()];
            p.extend(actor());
            p.extend([
                query(
                    "tags",
                    string(),
                    "The tags to remove, comma-separated; required by `.../tags`",
                ),
                query(
                    "keys",
                    string(),
                    "The detail keys to remove, comma-separated; required by `.../details`",
                ),
            ]);
            p
        }
        ("DELETE", "/v2/alerts/{identifier}")
        | ("POST" | "PUT", "/v2/alerts/{identifier}/{action}")
        | ("POST", "/v2/alerts/{identifier}/actions/{name}") => {
            let mut p = vec![identifier_type()];
            p.extend(actor());
            p
        }
        ("GET", "/v2/integrations") => vec![
            query(
                "type",
                string(),
                "Only integrations of this type (such as `API`), in any case",
            ),
            query(
                "teamId",
                string(),
                "Only the integrations of this team; a team that does not exist is refused",
            ),
            query(
                "teamName",
                string(),
                "Only the integrations of the team of this name, when `teamId` is not given; a team that does not exist is refused",
            ),
        ],
        _ => vec![],
    }
}

fn optional(schema: Value) -> Value {
    // The server reads an explicit `null` as an absent optional field.
    let mut types = vec![schema["type"].clone()];
    types.push(json!("null"));
    let mut s = schema;
    s["type"] = json!(types);
    s
}

/// A key's requests per minute (optional fields also take null: no limit of its own).
fn rate_limit() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": tocsin_core::key::RATE_LIMIT_MAX})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

/// A `/v1` body: the server refuses unknown fields, and reads `null` as absent.
fn object(required: &[(&str, Value)], optionals: &[(&str, Value)]) -> Value {
    let mut properties = Map::new();
    for (name, schema) in required {
        properties.insert((*name).into(), schema.clone());
    }
    for (name, schema) in optionals {
        properties.insert((*name).into(), optional(schema.clone()));
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "additionalProperties": false,
    })
}

/// A body the create routes accept, for readers of the document (and schemathesis's
/// examples phase, which then reaches past validation). Expiry times are a month from now.
fn example(method: &str, path: &str) -> Option<Value> {
    let in_a_month =
        tocsin_core::key::fmt_rfc3339(time::OffsetDateTime::now_utc() + time::Duration::days(30));
    Some(match (method, path) {
        ("POST", "/v1/users") => json!({"email": "oncall@example.com", "name": "On-call",
            "role_name": "responder", "password": "correct horse battery staple"}),
        ("POST", "/v1/teams") => json!({"name": "payments", "description": "Payments on-call"}),
        ("POST", "/v1/roles") => {
            json!({"name": "pager", "description": "Reads and acknowledges alerts",
            "scope": "team", "permissions": ["alerts:read", "alerts:write"]})
        }
        ("POST", "/v1/api_keys") => json!({"name": "ci deploy", "kind": "personal",
            "role_names": ["viewer"], "expires_at": in_a_month}),
        ("POST", "/v1/integrations") => json!({"name": "Alertmanager", "type": "API",
            "key_expires_at": in_a_month}),
        ("POST", "/v1/auth/explain") => json!({"method": "DELETE", "path": "/v2/alerts/abc"}),
        ("POST", "/v2/alerts") => json!({"message": "CPU above 90% on db-1", "alias": "db-1-cpu",
            "priority": "P2", "tags": ["db"], "details": {"host": "db-1"}}),
        ("POST", "/v2/heartbeats") => json!({"name": "nightly-backup", "interval": 10,
            "intervalUnit": "minutes", "enabled": true}),
        _ => return None,
    })
}

/// The body route `method path` reads, or `None` for a route that reads none (revoke,
/// enable/disable, ping, logout, and every GET and DELETE).
fn request_schema(method: &str, path: &str) -> Option<Value> {
    if path.ends_with("/ping")
        || path.ends_with("/revoke")
        || path == "/v1/auth/console/logout"
        || path == "/v2/integrations/{id}/{action}"
        || path == "/v2/heartbeats/{name}/{action}"
    {
        return None;
    }
    let boolean = || json!({"type": "boolean"});
    let time = || json!({"type": "string", "format": "date-time"});
    Some(match (method, path) {
        ("POST", "/v1/auth/login") | ("POST", "/v1/auth/console/login") => {
            json!({"type": "object", "required": ["email", "password"], "properties": {
                "email": string(), "password": string(),
                "organization_id": {"type": "string", "description":
                    "Needed only when the email and password sign in to several organizations (a 409 `organization_required` lists them)"}}})
        }
        ("POST", "/v1/auth/explain") => object(
            &[],
            &[
                ("method", string()),
                ("path", string()),
                ("permission", string()),
                ("team_id", string()),
                ("key_id", string()),
            ],
        ),
        ("PATCH", "/v1/organization") => object(
            &[],
            &[
                ("name", string()),
                ("max_key_days", json!({"type": "integer"})),
                ("alerts_require_integration_key", boolean()),
            ],
        ),
        ("POST", "/v1/users") => object(
            &[
                ("email", string()),
                ("name", string()),
                ("role_name", string()),
            ],
            &[("password", string())],
        ),
        ("PATCH", "/v1/users/{id}") => object(
            &[],
            &[
                ("name", string()),
                ("role_name", string()),
                ("active", boolean()),
                ("password", string()),
            ],
        ),
        ("POST", "/v1/teams") => object(&[("name", string())], &[("description", string())]),
        ("PATCH", "/v1/teams/{id}") => {
            object(&[], &[("name", string()), ("description", string())])
        }
        ("PUT", "/v1/teams/{id}/members/{user_id}") => {
            object(&[("team_role_names", strings())], &[])
        }
        ("POST", "/v1/roles") => object(
            &[
                ("name", string()),
                (
                    "scope",
                    json!({"type": "string", "enum": ["account", "team"]}),
                ),
                ("permissions", strings()),
            ],
            &[("description", string())],
        ),
        ("PATCH", "/v1/roles/{name}") => object(
            &[],
            &[
                ("name", string()),
                ("description", string()),
                ("scope", string()),
                ("permissions", strings()),
            ],
        ),
        ("POST", "/v1/api_keys") => object(
            &[("name", string()), ("expires_at", time())],
            &[
                (
                    "kind",
                    json!({"type": "string", "enum": ["personal", "team", "organization", "integration"]}),
                ),
                ("description", string()),
                ("role_names", strings()),
                ("team_id", string()),
                ("team_ids", strings()),
                ("team_role_names", strings()),
                ("integration_id", string()),
                ("allowed_cidrs", strings()),
                ("rate_limit", rate_limit()),
            ],
        ),
        ("PATCH", "/v1/api_keys/{id}") => object(
            &[],
            &[
                ("name", string()),
                ("description", string()),
                ("role_names", strings()),
                ("team_role_names", strings()),
                ("allowed_cidrs", strings()),
                ("expires_at", time()),
                ("rate_limit", rate_limit()),
            ],
        ),
        ("POST", "/v1/api_keys/{id}/rotate") => object(
            &[],
            &[(
                "grace_period_seconds",
                json!({"type": "integer", "minimum": 0, "maximum": 604800}),
            )],
        ),
        ("POST", "/v1/integrations") => object(
            &[("name", string())],
            &[
                ("type", string()),
                ("team_id", string()),
                ("allow_read", boolean()),
                ("allow_write", boolean()),
                ("allow_delete", boolean()),
                ("allow_configuration", boolean()),
                ("enabled", boolean()),
                ("key_expires_at", time()),
            ],
        ),
        ("PATCH", "/v1/integrations/{id}") => object(
            &[],
            &[
                ("name", string()),
                ("allow_read", boolean()),
                ("allow_write", boolean()),
                ("allow_delete", boolean()),
                ("allow_configuration", boolean()),
                ("enabled", boolean()),
            ],
        ),
        // Opsgenie's create body, read as leniently as Opsgenie reads it: unknown fields are
        // ignored, numbers and booleans are taken as text, a single tag as a list of one.
        ("POST", "/v2/alerts") => {
            let text = || json!({"type": ["string", "number", "boolean", "null"]});
            let list = || json!({"type": ["array", "string", "null"]});
            let refs = || json!({"type": ["array", "null"], "items": {"type": "object"}});
            json!({"type": "object", "required": ["message"], "properties": {
                "message": {"type": ["string", "number", "boolean"]},
                "alias": text(), "description": text(), "entity": text(), "source": text(),
                "user": text(), "note": text(), "priority": text(),
                "tags": list(), "actions": list(),
                "details": {"type": ["object", "null"]},
                "responders": refs(), "visibleTo": refs()}})
        }
        ("POST" | "PUT" | "PATCH", p) if p.starts_with("/v2/") => json!({"type": "object"}),
        _ => return None,
    })
}

/// Adds the schemas and headers the refined operations refer to.
pub fn add_components(doc: &mut Value) {
    let headers = components(&mut doc["components"]["schemas"]);
    doc["components"]["headers"] = headers;
}

fn components(schemas: &mut Value) -> Value {
    let schemas = match schemas {
        Value::Object(m) => m,
        other => {
            *other = json!({});
            other.as_object_mut().expect("just made an object")
        }
    };
    let error_object = json!({"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "fixes": {"type": "array", "items": {"type": "string"}},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}}}});
    schemas.insert("ErrorObject".into(), error_object);
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error", "request_id"], "properties": {
            "error": {"$ref": "#/components/schemas/ErrorObject"},
            "request_id": {"type": "string"}}}),
    );
    schemas.insert(
        "OpsgenieError".into(),
        json!({"type": "object", "required": ["message", "took", "requestId", "error"], "properties": {
            "message": {"type": "string"},
            "code": {"type": "integer"},
            "took": {"type": "number"},
            "requestId": {"type": "string"},
            "errors": {"type": "object", "additionalProperties": {"type": "string"}},
            "error": {"$ref": "#/components/schemas/ErrorObject"}}}),
    );
    json!({"X-Request-Id": {
        "description": "The request's id; error bodies carry it too, and the server's log names it",
        "required": true,
        "schema": {"type": "string"}},
        "X-RateLimit-State": {
        "description": "THROTTLED on a 429, OK otherwise (Opsgenie's header; its Go SDK warns when a 2xx lacks it)",
        "required": true,
        "schema": {"type": "string", "enum": ["OK", "THROTTLED"]}},
        "X-Response-Time": {
        "description": "Seconds the server took, as Opsgenie sends it",
        "required": true,
        "schema": {"type": "string"}}})
}
