//! `GET /api/readings` and `GET /api/doors/events`: filtered by time range, paginated by
//! cursor, or streamed as NDJSON.

use super::error::{AppError, Query};
use super::nodes::{parse_node, unknown_node};
use super::paging::{parse_range, respond, rfc3339, Fetch, RangeParams};
use super::AppState;
use crate::storage::{DoorEvent, Reading, TimeQuery};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use roomsense_common::DeviceId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/readings", get(readings))
        .route("/api/doors/events", get(door_events))
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

#[derive(Debug, Serialize)]
pub struct ReadingView {
    pub id: i64,
    pub node: String,
    pub seq: i64,
    pub kind: String,
    pub device: String,
    pub rssi: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_power: Option<i64>,
    pub count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_at: Option<String>,
    pub at: String,
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

#[derive(Debug, Serialize)]
pub struct DoorEventView {
    pub id: i64,
    pub node: String,
    pub seq: i64,
    pub door: String,
    pub state: String,
    pub at: String,
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
