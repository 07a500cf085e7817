//! REST API (axum). One module per resource, each exposing `router()`, merged here.

pub mod error;
mod events;
mod history;
mod locate;
mod model;
mod nodes;
mod occupancy;
mod ops;
pub mod paging;
mod positions;
mod training;

use crate::ingest::IngestStats;
use crate::storage::Store;
use crate::telemetry::LogControl;
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;

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
    /// Live events (positions, doors, node changes, access events) for streams.
    pub bus: crate::bus::EventBus,
    /// Calibration, training jobs, the active model (`POST /api/position`).
    pub training: Arc<crate::training::Training>,
    /// Who is in which room now (kept by the access pipeline).
    pub occupancy: Arc<crate::access_pipeline::LiveOccupancy>,
    pub access_stats: Arc<crate::access_pipeline::PipelineStats>,
    pub occupancy_config: crate::config::OccupancyConfig,
}

/// The OpenAPI document's root. Handlers add their paths through
/// `utoipa_axum::routes!` in their module's `router()`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "roomsense central API",
    description = "Indoor presence, positioning and room access: nodes, readings, doors, positions, rooms, access."
))]
pub struct ApiDoc;

/// Every route, with the OpenAPI paths of the annotated ones. A module either returns an
/// `OpenApiRouter` built with `routes!(handler, …)` (documented) or a plain `Router`
/// (`.into()`; undocumented until annotated).
pub fn api_routes() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(nodes::router().into())
        .merge(history::router().into())
        .merge(ops::router().into())
        .merge(positions::router())
        .merge(events::router().into())
        .merge(model::router())
        .merge(training::router())
        .merge(locate::router())
        .merge(occupancy::router())
}

pub fn router(state: AppState) -> Router {
    let (routes, doc) = api_routes().split_for_parts();
    let doc = Arc::new(doc);
    routes
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async {
            error::AppError::not_found("no_route", "no such endpoint; see README for the API")
        })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
