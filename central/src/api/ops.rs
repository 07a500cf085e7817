//! Operations: `/healthz`, `/readyz`, `/api/ingest/stats`, `/api/dead-letters`,
//! `/debug/log-level`.

use super::error::{AppError, JsonBody, Query};
use super::paging::rfc3339;
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::Ordering;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/api/ingest/stats", get(stats))
        .route("/api/dead-letters", get(dead_letters))
        .route("/debug/log-level", get(get_level).put(put_level))
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let db = match s.store.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database not reachable");
            "unreachable".to_string()
        }
    };
    let broker = if s.mqtt_connected.load(Ordering::Acquire) {
        "ok"
    } else {
        "unreachable"
    };
    let ready = db == "ok" && broker == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({ "ready": ready, "database": db, "broker": broker, "backend": s.store.backend() }),
        ),
    )
}

async fn stats(State(s): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let counts = s.store.counts().await?;
    Ok(Json(json!({
        "ingest": s.stats.snapshot(),
        "access": s.access_stats.snapshot(),
        "stored": counts,
        "broker_connected": s.mqtt_connected.load(Ordering::Acquire),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterParams {
    limit: Option<i64>,
}

#[derive(Serialize)]
struct DeadLetterView {
    id: i64,
    topic: String,
    reason: String,
    received_at: String,
    payload_bytes: usize,
    /// The payload as text (invalid UTF-8 replaced), cut at 2,000 characters.
    payload_text: String,
}

async fn dead_letters(
    State(s): State<AppState>,
    Query(p): Query<DeadLetterParams>,
) -> Result<Json<serde_json::Value>, AppError> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad(
            "bad_limit",
            format!("limit: {limit} must be from 1 to 1000"),
        ));
    }
    let items: Vec<DeadLetterView> = s
        .store
        .dead_letters(limit)
        .await?
        .into_iter()
        .map(|d| DeadLetterView {
            id: d.id,
            topic: d.topic,
            reason: d.reason,
            received_at: rfc3339(d.received_at_ms),
            payload_bytes: d.payload.len(),
            payload_text: String::from_utf8_lossy(&d.payload)
                .chars()
                .take(2000)
                .collect(),
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelBody {
    /// A tracing filter such as `debug` or `info,roomsense_central=trace`.
    level: String,
}

async fn get_level(State(s): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let log = s.log.as_ref().ok_or_else(no_log_control)?;
    Ok(Json(json!({ "level": log.current() })))
}

async fn put_level(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<LevelBody>,
) -> Result<Json<serde_json::Value>, AppError> {
    let log = s.log.as_ref().ok_or_else(no_log_control)?;
    log.set(&body.level)
        .map_err(|e| AppError::bad("bad_level", format!("level: {e}")))?;
    tracing::info!(level = %body.level, "log level changed");
    Ok(Json(json!({ "level": log.current() })))
}

fn no_log_control() -> AppError {
    AppError::Unavailable {
        code: "no_log_control",
        message: "this server was started without run-time log control".into(),
    }
}
