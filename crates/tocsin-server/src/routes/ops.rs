//! Operations endpoints: health, readiness, Prometheus metrics, and the OpenAPI document,
//! which is generated from the route table so it covers every route by construction.

use crate::routes::{Needs, ROUTES};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and writes go through. Audit events held after a failed
/// write (retried on their own while other writes go on) are counted without making the node
/// unready.
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let writer = app.audit.health();
    let (status, text) = if !app.store.ping().await {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    } else if writer.failing {
        (StatusCode::SERVICE_UNAVAILABLE, "writes failing")
    } else {
        (StatusCode::OK, "ready")
    };
    let mut body = json!({ "status": text });
    // The reasons (the database's own messages) are in the log only: /readyz answers anyone.
    if writer.held_events > 0 {
        body["audit_events_waiting"] = json!(writer.held_events);
    }
    (status, Extension(crate::envelope::Answered), Json(body))
}

/// The process-wide Prometheus recorder (one per process, shared by every server in it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests): then this one only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let hits = app.cache_hits.load(Ordering::Relaxed) as f64;
    let misses = app.cache_misses.load(Ordering::Relaxed) as f64;
    let ratio = if hits + misses > 0.0 {
        hits / (hits + misses)
    } else {
        0.0
    };
    metrics::gauge!("tocsin_key_cache_hit_ratio").set(ratio);
    metrics::gauge!("tocsin_audit_queue_depth").set(app.audit.depth() as f64);
    metrics::counter!("tocsin_audit_queue_full_waits_total").absolute(app.audit.full_waits());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}

pub fn openapi_document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let (security, needs) = match r.needs {
            Needs::Public => (json!([]), "none".to_owned()),
            Needs::Authenticated => (
                json!([{"bearer": []}, {"genieKey": []}, {"consoleSession": []}]),
                "any valid credential".to_owned(),
            ),
            Needs::TeamMembers => (
                json!([{"bearer": []}, {"genieKey": []}, {"consoleSession": []}]),
                "teams:write account-wide, or the team_admin role in the team".to_owned(),
            ),
            Needs::Org(p)
            | Needs::AnyTeam(p)
            | Needs::Team(p)
            | Needs::Key(p)
            | Needs::Integration(p)
            | Needs::Alert(p) => (
                json!([{"bearer": []}, {"genieKey": []}, {"consoleSession": []}]),
                p.name().to_owned(),
            ),
        };
        let mut responses = json!({
            "2XX": {"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}},
            "4XX": {"description": "Refused or invalid", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        });
        if r.path == "/metrics" {
            responses["2XX"] = json!({"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}});
        }
        if r.path == "/" {
            responses["2XX"] = json!({"description": "The console's page", "content": {"text/html": {"schema": {"type": "string"}}}});
        }
        if r.path.starts_with("/console/") {
            responses["2XX"] = json!({"description": "A console file (script, style sheet or image)", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}});
        }
        let mut op = json!({
            "summary": r.summary,
            "description": format!("Requires: {needs}."),
            "operationId": format!("{} {}", r.method.to_lowercase(), r.path),
            "parameters": params,
            "security": security,
            "responses": responses,
        });
        if matches!(r.method, "POST" | "PUT" | "PATCH") {
            op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        super::openapi::refine(r, &mut op);
        entry[r.method.to_lowercase()] = op;
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Tocsin", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Incident alerting with first-class API keys."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "genieKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                             "description": "`GenieKey <token>`, as Opsgenie clients send it"},
                "consoleSession": {"type": "apiKey", "in": "cookie", "name": "tocsin_session",
                                   "description": "The web console's session cookie (POST /v1/auth/console/login); only when no Authorization header is sent, and every method but GET, HEAD and OPTIONS must also send the session's X-CSRF-Token"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error", "request_id"], "properties": {
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"},
                        "fixes": {"type": "array", "items": {"type": "string"}},
                        "fields": {"type": "object", "additionalProperties": {"type": "string"}}}},
                    "request_id": {"type": "string"}}},
            },
        },
    });
    super::openapi::add_components(&mut doc);
    doc
}

pub async fn openapi() -> Json<Value> {
    Json(openapi_document())
}
