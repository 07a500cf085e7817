//! Live positions: `GET /api/positions`, `GET /api/devices/{id}/position`.

use super::error::AppError;
use super::paging::rfc3339;
use super::AppState;
use crate::live::{LivePositions, Position};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use roomsense_common::DeviceId;
use serde::Serialize;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/positions", get(all))
        .route("/api/devices/{id}/position", get(one))
}

#[derive(Serialize)]
struct PositionView {
    device: String,
    x: f64,
    y: f64,
    floor: i32,
    room: Option<String>,
    confidence: f32,
    error_radius_m: f32,
    method: String,
    receivers: usize,
    at: String,
}

fn view(p: Position) -> PositionView {
    PositionView {
        at: rfc3339(p.at_ms),
        device: p.device,
        x: p.x,
        y: p.y,
        floor: p.floor,
        room: p.room,
        confidence: p.confidence,
        error_radius_m: p.error_radius_m,
        method: p.method,
        receivers: p.receivers,
    }
}

fn live(s: &AppState) -> Result<&Arc<LivePositions>, AppError> {
    s.live.as_ref().ok_or_else(|| AppError::Unavailable {
        code: "no_building",
        message: "live positions need a building: set positioning.building (or run with --demo)"
            .into(),
    })
}

async fn all(State(s): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let items: Vec<PositionView> = live(&s)?.positions().into_iter().map(view).collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PositionView>, AppError> {
    let id = DeviceId::parse(&id).map_err(|e| AppError::bad("bad_device_id", e.to_string()))?;
    live(&s)?
        .position(id.as_str())
        .map(|p| Json(view(p)))
        .ok_or_else(|| {
            AppError::not_found(
                "device_not_located",
                format!("device {id:?} has not been located (no recent sightings by receivers of the building)"),
            )
        })
}
