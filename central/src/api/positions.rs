//! Positions: `GET /api/positions` (latest of every device, or the stored history) and
//! `GET /api/devices/{id}/position` (latest of one device).
//!
//! The rule: `/api/positions` with none of `device`, `room`, `start`, `end`, `cursor`
//! answers the live latest estimate of every tracked device; with any of them it answers
//! the stored history (`positions` table), paginated by cursor or streamed as NDJSON.

use super::error::{AppError, Query};
use super::paging::{parse_range, respond, rfc3339, Fetch, Format, RangeParams};
use super::AppState;
use crate::live::{LivePositions, Position};
use crate::storage::positions::{PositionQuery, PositionRecord};
use crate::storage::TimeQuery;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use roomsense_common::DeviceId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(positions))
        .routes(routes!(device_position))
}

/// Query of `GET /api/positions`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PositionParams {
    /// Only this device (history).
    pub device: Option<String>,
    /// Only rows in this room (history).
    pub room: Option<String>,
    /// RFC 3339, inclusive (history).
    pub start: Option<String>,
    /// RFC 3339, exclusive (history).
    pub end: Option<String>,
    /// Rows per page, 1 to 10000 (default 1000; NDJSON: all).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `json` (default) or `ndjson`.
    pub format: Option<String>,
}

/// A position estimate of a device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PositionView {
    /// Row id (history only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub device: String,
    /// Metres, in the building file's plan coordinates.
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: String,
    /// Current room (after the room filter), if any.
    pub room: Option<String>,
    /// The room differs from the previous stored row (history only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_changed: Option<bool>,
    /// 0..1.
    pub confidence: f64,
    /// Radius (m) within which the device probably is.
    pub error_radius_m: f64,
    pub method: String,
    /// Receivers heard in the window.
    pub receivers: i64,
    /// Time of the estimate (of the newest sighting it used), RFC 3339.
    pub at: String,
}

/// One page of positions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PositionPage {
    pub items: Vec<PositionView>,
    /// Pass as `cursor` for the next page (history only; absent on the last page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn live_view(p: Position) -> PositionView {
    PositionView {
        id: None,
        at: rfc3339(p.at_ms),
        device: p.device,
        x: p.x,
        y: p.y,
        floor: p.floor,
        building: p.building,
        room: p.room,
        room_changed: None,
        confidence: f64::from(p.confidence),
        error_radius_m: f64::from(p.error_radius_m),
        method: p.method,
        receivers: p.receivers as i64,
    }
}

fn stored_view(p: PositionRecord) -> PositionView {
    PositionView {
        id: Some(p.id),
        at: rfc3339(p.at_ms),
        device: p.device,
        x: p.x,
        y: p.y,
        floor: p.floor,
        building: p.building,
        room: p.room,
        room_changed: Some(p.room_changed),
        confidence: p.confidence,
        error_radius_m: p.error_radius_m,
        method: p.method,
        receivers: i64::from(p.receivers),
    }
}

fn live(s: &AppState) -> Result<&Arc<LivePositions>, AppError> {
    s.live.as_ref().ok_or_else(|| AppError::Unavailable {
        code: "no_building",
        message: "live positions need a building: set positioning.building (or run with --demo)"
            .into(),
    })
}

fn parse_device(d: &str) -> Result<String, AppError> {
    DeviceId::parse(d)
        .map(|d| d.to_string())
        .map_err(|e| AppError::bad("bad_device_id", format!("device: {e}")))
}

fn parse_room(r: &str) -> Result<String, AppError> {
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(r.to_string())
    } else {
        Err(AppError::bad(
            "bad_room_id",
            format!("room: {r:?} is not a room id (1-64 ASCII letters, digits, '-' or '_')"),
        ))
    }
}

/// Latest position of every tracked device, or the stored position history.
///
/// Without `device`, `room`, `start`, `end` and `cursor`: the live latest estimate of
/// every device tracked in the last hour. With any of them: stored rows ordered by time,
/// one page (`next_cursor`) or every row as NDJSON (`format=ndjson`).
#[utoipa::path(
    get,
    path = "/api/positions",
    tag = "positions",
    params(PositionParams),
    responses(
        (status = 200, description = "Positions (JSON page, or NDJSON lines of PositionView)", body = PositionPage),
        (status = 400, description = "A bad parameter, named in the error message"),
        (status = 503, description = "Latest positions asked for but no building is configured"),
    )
)]
async fn positions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<PositionParams>,
) -> Result<Response, AppError> {
    let history = p.device.is_some()
        || p.room.is_some()
        || p.start.is_some()
        || p.end.is_some()
        || p.cursor.is_some();
    let range = RangeParams {
        start: p.start,
        end: p.end,
        limit: p.limit,
        cursor: p.cursor,
        format: p.format,
    };
    let (q, format) = parse_range(&range, &headers)?;
    if !history {
        let items: Vec<PositionView> = live(&s)?.positions().into_iter().map(live_view).collect();
        return Ok(match format {
            Format::Json => Json(PositionPage {
                items,
                next_cursor: None,
            })
            .into_response(),
            Format::Ndjson => {
                let mut buf = Vec::with_capacity(items.len() * 200);
                for v in &items {
                    let _ = serde_json::to_writer(&mut buf, v);
                    buf.push(b'\n');
                }
                let mut resp = buf.into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                );
                resp
            }
        });
    }
    let device = p.device.as_deref().map(parse_device).transpose()?;
    let room = p.room.as_deref().map(parse_room).transpose()?;
    let store = s.store.clone();
    let fetch: Fetch<PositionRecord> = Arc::new(move |q: TimeQuery| {
        let store = store.clone();
        let pq = PositionQuery {
            device: device.clone(),
            room: room.clone(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            after: q.after,
            limit: q.limit,
        };
        Box::pin(async move { store.positions(&pq).await })
    });
    respond(q, format, fetch, |r| (r.at_ms, r.id), stored_view).await
}

/// Latest position of one device: the live estimate, or else its newest stored row.
#[utoipa::path(
    get,
    path = "/api/devices/{id}/position",
    tag = "positions",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, description = "Latest position", body = PositionView),
        (status = 400, description = "Bad device id"),
        (status = 404, description = "Device never located"),
    )
)]
async fn device_position(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PositionView>, AppError> {
    let id = parse_device(&id)?;
    if let Some(p) = s.live.as_ref().and_then(|l| l.position(&id)) {
        return Ok(Json(live_view(p)));
    }
    match s.store.latest_position(&id).await? {
        Some(p) => Ok(Json(stored_view(p))),
        None => Err(AppError::not_found(
            "device_not_located",
            format!("device {id:?} has not been located (no recent sightings by receivers of the building)"),
        )),
    }
}
