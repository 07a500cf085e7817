//! `GET /api/readings` and `GET /api/doors/events`: filtered by time range, paginated by
//! cursor, or streamed as NDJSON.

use super::error::{AppError, Query};
use super::nodes::{parse_node, unknown_node};
use super::paging::{parse_range, respond, rfc3339, Fetch, Page, RangeParams};
use super::AppState;
use crate::storage::{DoorEvent, Reading, TimeQuery};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use roomsense_common::DeviceId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(readings))
        .routes(routes!(door_events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingParams {
    node: Option<String>,
    device: Option<String>,
    kind: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoorParams {
    node: Option<String>,
    door: Option<String>,
    state: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

/// One stored sighting (BLE advertisement or Wi-Fi probe) as a node reported it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadingView {
    pub id: i64,
    pub node: String,
    /// The node's batch sequence number.
    pub seq: i64,
    /// `ble` or `wifi`.
    pub kind: String,
    pub device: String,
    /// dBm (mean when `count` > 1).
    pub rssi: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_power: Option<i64>,
    /// Sightings merged into this row.
    pub count: i64,
    /// RFC 3339: the first merged sighting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_at: Option<String>,
    /// RFC 3339, node clock.
    pub at: String,
    /// RFC 3339, central clock.
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beacon: Option<String>,
}

fn reading_view(r: Reading) -> ReadingView {
    ReadingView {
        first_at: r.first_at_ms.map(rfc3339),
        at: rfc3339(r.at_ms),
        received_at: rfc3339(r.received_at_ms),
        id: r.id,
        node: r.node,
        seq: r.seq,
        kind: r.kind,
        device: r.device,
        rssi: r.rssi,
        tx_power: r.tx_power,
        count: r.count,
        channel: r.channel,
        ssid: r.ssid,
        beacon: r.beacon,
    }
}

/// One door transition as a node's GPIO input reported it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DoorEventView {
    pub id: i64,
    pub node: String,
    pub seq: i64,
    pub door: String,
    /// `open` or `closed`.
    pub state: String,
    /// RFC 3339, node clock.
    pub at: String,
    /// RFC 3339, central clock.
    pub received_at: String,
}

fn door_view(e: DoorEvent) -> DoorEventView {
    DoorEventView {
        at: rfc3339(e.at_ms),
        received_at: rfc3339(e.received_at_ms),
        id: e.id,
        node: e.node,
        seq: e.seq,
        door: e.door,
        state: e.state,
    }
}

/// Checks a node filter names a known node (404 otherwise).
async fn node_filter(s: &AppState, node: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(node) = node else { return Ok(None) };
    let id = parse_node(node)?;
    if s.store.node(id.as_str()).await?.is_none() {
        return Err(unknown_node(&id));
    }
    Ok(Some(id.to_string()))
}

fn one_of(name: &str, value: Option<String>, allowed: &[&str]) -> Result<Option<String>, AppError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(AppError::bad(
            "bad_filter",
            format!("{name}: {v:?} is not one of {allowed:?}"),
        )),
        v => Ok(v),
    }
}

/// Stored sightings by time range: one JSON page (`next_cursor`), or every row as NDJSON.
#[utoipa::path(get, path = "/api/readings", tag = "history",
    params(
        ("node" = Option<String>, Query, description = "Only this node"),
        ("device" = Option<String>, Query, description = "Only this device"),
        ("kind" = Option<String>, Query, description = "`ble` or `wifi`"),
        RangeParams,
    ),
    responses(
        (status = 200, description = "Sightings ordered by time", content(
            (Page<ReadingView> = "application/json"),
            (ReadingView = "application/x-ndjson"),
        )),
        (status = 400, description = "A bad parameter, named in the error message"),
        (status = 401),
        (status = 404, description = "`node` names a node that never reported"),
    ))]
async fn readings(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<ReadingParams>,
) -> Result<Response, AppError> {
    let (mut q, format) = parse_range(&p.range, &headers)?;
    q.node = node_filter(&s, p.node.as_deref()).await?;
    q.subject = p
        .device
        .map(|d| {
            DeviceId::parse(&d)
                .map(|d| d.to_string())
                .map_err(|e| AppError::bad("bad_device_id", e.to_string()))
        })
        .transpose()?;
    q.kind = one_of("kind", p.kind, &["ble", "wifi"])?;
    let store = s.store.clone();
    let fetch: Fetch<Reading> = Arc::new(move |q: TimeQuery| {
        let store = store.clone();
        Box::pin(async move { store.readings(&q).await })
    });
    respond(q, format, fetch, |r| (r.at_ms, r.id), reading_view).await
}

/// Stored door transitions by time range: one JSON page, or every row as NDJSON.
#[utoipa::path(get, path = "/api/doors/events", tag = "history",
    params(
        ("node" = Option<String>, Query, description = "Only this node"),
        ("door" = Option<String>, Query, description = "Only this door"),
        ("state" = Option<String>, Query, description = "`open` or `closed`"),
        RangeParams,
    ),
    responses(
        (status = 200, description = "Door transitions ordered by time", content(
            (Page<DoorEventView> = "application/json"),
            (DoorEventView = "application/x-ndjson"),
        )),
        (status = 400, description = "A bad parameter, named in the error message"),
        (status = 401),
        (status = 404, description = "`node` names a node that never reported"),
    ))]
async fn door_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<DoorParams>,
) -> Result<Response, AppError> {
    let (mut q, format) = parse_range(&p.range, &headers)?;
    q.node = node_filter(&s, p.node.as_deref()).await?;
    q.subject = p
        .door
        .map(|d| {
            roomsense_common::DoorId::parse(&d)
                .map(|d| d.to_string())
                .map_err(|e| AppError::bad("bad_door_id", e.to_string()))
        })
        .transpose()?;
    q.kind = one_of("state", p.state, &["open", "closed"])?;
    let store = s.store.clone();
    let fetch: Fetch<DoorEvent> = Arc::new(move |q: TimeQuery| {
        let store = store.clone();
        Box::pin(async move { store.door_events(&q).await })
    });
    respond(q, format, fetch, |e| (e.at_ms, e.id), door_view).await
}
