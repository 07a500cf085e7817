//! REST API (axum). One module per resource, each exposing `router()`, merged here.

pub mod error;
mod events;
mod history;
mod live_stream;
mod locate;
mod model;
mod nodes;
mod occupancy;
mod ops;
pub mod paging;
mod positions;
mod tokens;
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
    /// Bearer-token checks (with their lookup cache) for the auth layer and `/api/tokens`.
    pub auth: Arc<crate::auth::Auth>,
}

/// The OpenAPI document's root. Handlers add their paths through
/// `utoipa_axum::routes!` in their module's `router()`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "roomsense central API",
        description = "Indoor presence, positioning and room access: nodes, readings, doors, positions, rooms, access.\n\nEvery `/api` and `/debug` endpoint needs `Authorization: Bearer <token>` (create one with `roomsense-central token create --scope read|admin --name NAME`); `read` tokens may only GET/HEAD. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the operations refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "API token (`rs_…`): `read` scope for GET/HEAD, `admin` for everything",
                    ))
                    .build(),
            ),
        );
    }
}

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
        .merge(tokens::router())
        .merge(live_stream::router())
}

/// The whole HTTP app: every route, the auth layer over `/api/*` and `/debug/*` (see
/// `crate::auth`), CORS for `cors_origins`, request tracing.
pub fn router(state: AppState, cors_origins: &[String]) -> anyhow::Result<Router> {
    let (routes, doc) = api_routes().split_for_parts();
    let doc = Arc::new(doc);
    let routes = routes
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
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            crate::auth::require_token,
        ))
        .layer(cors_layer(cors_origins)?)
        .layer(tower_http::trace::TraceLayer::new_for_http());
    Ok(routes.with_state(state))
}

/// CORS for the configured origins (none by default: browsers on other origins are refused).
fn cors_layer(origins: &[String]) -> anyhow::Result<tower_http::cors::CorsLayer> {
    use axum::http::HeaderValue;
    use tower_http::cors::AllowOrigin;
    if origins.iter().any(|o| o == "*") {
        return Ok(base_cors().allow_origin(AllowOrigin::any()));
    }
    let origins = origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o.trim_end_matches('/'))
                .map_err(|_| anyhow::anyhow!("http.cors_origins: {o:?} is not a valid origin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(base_cors().allow_origin(AllowOrigin::list(origins)))
}

fn base_cors() -> tower_http::cors::CorsLayer {
    use axum::http::{header, Method};
    tower_http::cors::CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(3600))
}
