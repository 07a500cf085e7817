//! `GET /api/nodes`, `GET /api/nodes/{id}`.

use super::error::AppError;
use super::paging::rfc3339;
use super::AppState;
use crate::storage::NodeRecord;
use axum::extract::{Path, State};
use axum::Json;
use roomsense_common::NodeId;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
}

/// An edge node as central last heard it (status, counters, clock).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    /// `online` or `offline`.
    pub state: String,
    /// Why it is offline: `last will` (its connection dropped) or `silent`.
    pub offline_reason: Option<String>,
    /// RFC 3339.
    pub first_seen: String,
    /// RFC 3339: the newest message of any kind.
    pub last_seen: String,
    pub version: Option<String>,
    pub boot_at: Option<String>,
    pub uptime_s: Option<i64>,
    /// The sensors the node reported in its status (array; empty before the first status).
    pub sensors: serde_json::Value,
    /// Messages waiting in the node's outbox (from its status).
    pub outbox_depth: Option<i64>,
    /// Messages the node dropped (outbox full), from its status.
    pub dropped: Option<i64>,
    /// Node clock minus central's clock, from its status.
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

/// Every node that has reported.
#[derive(Serialize, utoipa::ToSchema)]
struct NodeList {
    items: Vec<NodeView>,
}

/// Every edge node that has reported, with its state and last status.
#[utoipa::path(get, path = "/api/nodes", tag = "nodes",
    responses((status = 200, body = NodeList), (status = 401)))]
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

/// One edge node.
#[utoipa::path(get, path = "/api/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "Node id")),
    responses(
        (status = 200, body = NodeView),
        (status = 400, description = "Bad node id"),
        (status = 401),
        (status = 404, description = "No node of this id has reported"),
    ))]
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
