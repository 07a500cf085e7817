//! Operations: `/healthz`, `/readyz`, `/api/ingest/stats`, `/api/dead-letters`,
//! `/debug/log-level`.

use super::error::{AppError, JsonBody, Query};
use super::paging::rfc3339;
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::Ordering;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(stats))
        .routes(routes!(dead_letters))
        .routes(routes!(get_level, put_level))
}

/// Liveness: the process answers. Open (no token).
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = serde_json::Value)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database and the MQTT broker answer. Open (no token).
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    responses(
        (status = 200, description = "Ready: `{ready, database, broker, backend}`", body = serde_json::Value),
        (status = 503, description = "Not ready; `database` or `broker` is `unreachable`", body = serde_json::Value),
    ))]
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

/// Counters: ingest (received, written, duplicates, dead letters, queue), the access
/// pipeline, stored rows per table, and whether the ingest client is connected.
#[utoipa::path(get, path = "/api/ingest/stats", tag = "ops",
    responses((status = 200, body = serde_json::Value), (status = 401)))]
async fn stats(State(s): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let counts = s.store.counts().await?;
    Ok(Json(json!({
        "ingest": s.stats.snapshot(),
        "access": s.access_stats.snapshot(),
        "stored": counts,
        "broker_connected": s.mqtt_connected.load(Ordering::Acquire),
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeadLetterParams {
    /// Newest first, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// A message that could not be stored (bad topic, bad payload), kept for inspection.
#[derive(Serialize, utoipa::ToSchema)]
struct DeadLetterView {
    id: i64,
    topic: String,
    reason: String,
    received_at: String,
    payload_bytes: usize,
    /// The payload as text (invalid UTF-8 replaced), cut at 2,000 characters.
    payload_text: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeadLetterList {
    items: Vec<DeadLetterView>,
}

/// The newest dead letters.
#[utoipa::path(get, path = "/api/dead-letters", tag = "ops", params(DeadLetterParams),
    responses(
        (status = 200, body = DeadLetterList),
        (status = 400, description = "Bad limit"),
        (status = 401),
    ))]
async fn dead_letters(
    State(s): State<AppState>,
    Query(p): Query<DeadLetterParams>,
) -> Result<Json<DeadLetterList>, AppError> {
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
    Ok(Json(DeadLetterList { items }))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LevelBody {
    /// A tracing filter such as `debug` or `info,roomsense_central=trace`.
    level: String,
}

/// The log filter in force. Admin token.
#[utoipa::path(get, path = "/debug/log-level", tag = "ops",
    responses(
        (status = 200, body = LevelBody),
        (status = 401), (status = 403),
        (status = 503, description = "Started without run-time log control"),
    ))]
async fn get_level(State(s): State<AppState>) -> Result<Json<LevelBody>, AppError> {
    let log = s.log.as_ref().ok_or_else(no_log_control)?;
    Ok(Json(LevelBody {
        level: log.current(),
    }))
}

/// Changes the log filter at run time (until restart). Admin token.
#[utoipa::path(put, path = "/debug/log-level", tag = "ops", request_body = LevelBody,
    responses(
        (status = 200, description = "The filter now in force", body = LevelBody),
        (status = 400, description = "Not a valid filter"),
        (status = 401), (status = 403),
        (status = 503, description = "Started without run-time log control"),
    ))]
async fn put_level(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<LevelBody>,
) -> Result<Json<LevelBody>, AppError> {
    let log = s.log.as_ref().ok_or_else(no_log_control)?;
    log.set(&body.level)
        .map_err(|e| AppError::bad("bad_level", format!("level: {e}")))?;
    tracing::info!(level = %body.level, "log level changed");
    Ok(Json(LevelBody {
        level: log.current(),
    }))
}

fn no_log_control() -> AppError {
    AppError::Unavailable {
        code: "no_log_control",
        message: "this server was started without run-time log control".into(),
    }
}
