//! REST API (axum). One module per resource, each exposing `router()`, merged here.

pub mod error;
mod events;
mod history;
mod nodes;
mod ops;
pub mod paging;
mod positions;

use crate::ingest::IngestStats;
use crate::storage::Store;
use crate::telemetry::LogControl;
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub stats: Arc<IngestStats>,
    pub mqtt_connected: Arc<AtomicBool>,
    pub clock_skew_threshold: Duration,
    pub log: Option<Arc<LogControl>>,
    /// Live positions, when a building is configured.
    pub live: Option<Arc<crate::live::LivePositions>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(nodes::router())
        .merge(history::router())
        .merge(ops::router())
        .merge(positions::router())
        .merge(events::router())
        .fallback(|| async {
            error::AppError::not_found("no_route", "no such endpoint; see README for the API")
        })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
