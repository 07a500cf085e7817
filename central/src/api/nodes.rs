//! `GET /api/nodes`, `GET /api/nodes/{id}`.

use super::error::AppError;
use super::paging::rfc3339;
use super::AppState;
use crate::storage::NodeRecord;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use roomsense_common::NodeId;
use serde::Serialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/nodes", get(list))
        .route("/api/nodes/{id}", get(one))
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    /// `online` or `offline`.
    pub state: String,
    /// Why it is offline: `last will` (its connection dropped) or `silent`.
    pub offline_reason: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub version: Option<String>,
    pub boot_at: Option<String>,
    pub uptime_s: Option<i64>,
    pub sensors: serde_json::Value,
    pub outbox_depth: Option<i64>,
    pub dropped: Option<i64>,
    pub clock_offset_ms: Option<i64>,
    /// The node's clock differs from central's by more than `nodes.clock_skew_threshold`.
    pub clock_suspect: bool,
    pub status_at: Option<String>,
}

fn view(n: NodeRecord, skew_ms: i64) -> NodeView {
    NodeView {
        clock_suspect: n.clock_offset_ms.is_some_and(|o| o.abs() > skew_ms),
        sensors: n
            .sensors
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Array(Vec::new())),
        first_seen: rfc3339(n.first_seen_ms),
        last_seen: rfc3339(n.last_seen_ms),
        boot_at: n.boot_at_ms.map(rfc3339),
        status_at: n.status_at_ms.map(rfc3339),
        id: n.id,
        state: n.state,
        offline_reason: n.offline_reason,
        version: n.version,
        uptime_s: n.uptime_s,
        outbox_depth: n.outbox_depth,
        dropped: n.dropped,
        clock_offset_ms: n.clock_offset_ms,
    }
}

#[derive(Serialize)]
struct NodeList {
    items: Vec<NodeView>,
}

async fn list(State(s): State<AppState>) -> Result<Json<NodeList>, AppError> {
    let skew = s.clock_skew_threshold.as_millis() as i64;
    let items = s
        .store
        .nodes()
        .await?
        .into_iter()
        .map(|n| view(n, skew))
        .collect();
    Ok(Json(NodeList { items }))
}

async fn one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, AppError> {
    let id = parse_node(&id)?;
    let skew = s.clock_skew_threshold.as_millis() as i64;
    match s.store.node(id.as_str()).await? {
        Some(n) => Ok(Json(view(n, skew))),
        None => Err(unknown_node(&id)),
    }
}

pub fn parse_node(id: &str) -> Result<NodeId, AppError> {
    NodeId::parse(id).map_err(|e| AppError::bad("bad_node_id", e.to_string()))
}

pub fn unknown_node(id: &NodeId) -> AppError {
    AppError::not_found("node_not_found", format!("no node {id:?} has reported"))
}
