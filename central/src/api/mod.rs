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
        description = "Indoor presence, positioning and room access: nodes, readings, doors, positions, rooms, access.\n\nEvery `/api` and `/debug` endpoint needs `Authorization: Bearer <token>` (create one with `roomsense-central token create --scope read|admin --name NAME`); `read` tokens may only GET/HEAD. Errors are `{\"error\": {\"code\", \"message\"}}`.\n\nThis document is served at `/api/openapi.json`, rendered at `/api/docs/`; both are open, as are `/healthz` and `/readyz`."
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

/// Every route with its OpenAPI path: each module's `router()` is an `OpenApiRouter` built
/// with `routes!(handler, …)`, so a route cannot be served without being documented.
pub fn api_routes() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(nodes::router())
        .merge(history::router())
        .merge(ops::router())
        .merge(positions::router())
        .merge(events::router())
        .merge(model::router())
        .merge(training::router())
        .merge(locate::router())
        .merge(occupancy::router())
        .merge(tokens::router())
        .merge(live_stream::router())
}

/// Adds what the auth layer answers to every guarded operation — 401, and 403 where a
/// `read` token is refused — derived from `auth::guard_of`/`permits` so the document cannot
/// disagree with the layer; and gives each response without a description its status's
/// reason phrase (OpenAPI requires one).
pub fn document_auth_and_descriptions(doc: &mut utoipa::openapi::OpenApi) {
    use crate::auth::{guard_of, permits, Guard, Scope};
    use axum::http::{Method, StatusCode};
    use utoipa::openapi::{RefOr, Response};
    for (path, item) in doc.paths.paths.iter_mut() {
        let guard = guard_of(path);
        for (method, op) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
            (Method::HEAD, &mut item.head),
        ] {
            let Some(op) = op.as_mut() else { continue };
            let responses = &mut op.responses.responses;
            if guard != Guard::Open {
                responses.entry("401".into()).or_insert_with(|| {
                    RefOr::T(Response::new(
                        "No token, or an unknown or revoked one (`WWW-Authenticate: Bearer`)",
                    ))
                });
                if permits(guard, Scope::Read, &method).is_err() {
                    responses.entry("403".into()).or_insert_with(|| {
                        RefOr::T(Response::new("The token is read-only; this needs `admin`"))
                    });
                }
            }
            for (code, response) in responses.iter_mut() {
                if let RefOr::T(r) = response {
                    if r.description.is_empty() {
                        r.description = code
                            .parse::<u16>()
                            .ok()
                            .and_then(|c| StatusCode::from_u16(c).ok())
                            .and_then(|c| c.canonical_reason())
                            .unwrap_or("Response")
                            .to_string();
                    }
                }
            }
        }
    }
}

/// Where the OpenAPI document and the rendered reference (Swagger UI) are served, open.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
pub const DOCS_PATH: &str = "/api/docs";

/// The whole HTTP app: every route, the OpenAPI document and its Swagger UI (assets
/// embedded in the binary: works offline), the auth layer over `/api/*` and `/debug/*`
/// (see `crate::auth`), CORS for `cors_origins`, request tracing.
pub fn router(state: AppState, cors_origins: &[String]) -> anyhow::Result<Router> {
    let (routes, mut doc) = api_routes().split_for_parts();
    document_auth_and_descriptions(&mut doc);
    let docs = utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, doc);
    let routes = routes
        .merge(docs)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        let (_, mut doc) = api_routes().split_for_parts();
        document_auth_and_descriptions(&mut doc);
        serde_json::to_value(doc).unwrap()
    }

    /// Every operation the server has, as `METHOD path`.
    const KNOWN: &[&str] = &[
        "GET /api/access-events",
        "GET /api/access-rules",
        "POST /api/access-rules",
        "GET /api/access-rules/{id}",
        "PUT /api/access-rules/{id}",
        "PATCH /api/access-rules/{id}",
        "DELETE /api/access-rules/{id}",
        "GET /api/buildings",
        "POST /api/buildings",
        "GET /api/buildings/{id}",
        "PUT /api/buildings/{id}",
        "PATCH /api/buildings/{id}",
        "DELETE /api/buildings/{id}",
        "GET /api/buildings/{id}/floors",
        "POST /api/buildings/{id}/floors",
        "GET /api/buildings/{id}/floors/{level}",
        "PUT /api/buildings/{id}/floors/{level}",
        "PATCH /api/buildings/{id}/floors/{level}",
        "DELETE /api/buildings/{id}/floors/{level}",
        "GET /api/calibration",
        "POST /api/calibration",
        "GET /api/calibration/{id}",
        "GET /api/dead-letters",
        "GET /api/devices",
        "POST /api/devices",
        "GET /api/devices/{id}",
        "PUT /api/devices/{id}",
        "PATCH /api/devices/{id}",
        "DELETE /api/devices/{id}",
        "GET /api/devices/{id}/position",
        "GET /api/doors",
        "POST /api/doors",
        "GET /api/doors/events",
        "GET /api/doors/{id}",
        "PUT /api/doors/{id}",
        "PATCH /api/doors/{id}",
        "DELETE /api/doors/{id}",
        "GET /api/dwell",
        "GET /api/events/live",
        "GET /api/events/stream",
        "GET /api/ingest/stats",
        "GET /api/models",
        "GET /api/nodes",
        "GET /api/nodes/{id}",
        "GET /api/occupancy",
        "GET /api/occupancy/history",
        "GET /api/people",
        "POST /api/people",
        "GET /api/people/{id}",
        "PUT /api/people/{id}",
        "PATCH /api/people/{id}",
        "DELETE /api/people/{id}",
        "POST /api/position",
        "GET /api/positions",
        "GET /api/readings",
        "GET /api/receivers",
        "POST /api/receivers",
        "GET /api/receivers/{node}",
        "PUT /api/receivers/{node}",
        "PATCH /api/receivers/{node}",
        "DELETE /api/receivers/{node}",
        "GET /api/rooms",
        "POST /api/rooms",
        "GET /api/rooms/{id}",
        "PUT /api/rooms/{id}",
        "PATCH /api/rooms/{id}",
        "DELETE /api/rooms/{id}",
        "GET /api/rooms/{id}/occupancy",
        "GET /api/tokens",
        "POST /api/tokens",
        "DELETE /api/tokens/{id}",
        "GET /api/training",
        "POST /api/training",
        "GET /api/training/samples",
        "POST /api/training/samples",
        "DELETE /api/training/samples",
        "DELETE /api/training/samples/{id}",
        "GET /debug/log-level",
        "PUT /debug/log-level",
        "GET /healthz",
        "GET /readyz",
    ];

    #[test]
    fn the_document_has_exactly_the_known_operations() {
        let doc = doc();
        let mut documented: Vec<String> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        for op in &documented {
            assert!(KNOWN.contains(&op.as_str()), "{op} is new: add it to KNOWN");
        }
        for op in KNOWN {
            let (method, path) = op.split_once(' ').unwrap();
            let o = &doc["paths"][path][method.to_lowercase()];
            assert!(o.is_object(), "{op} missing in the OpenAPI document");
            assert!(
                o["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{op}: no tag"
            );
            let responses = o["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{op}: no success response"
            );
        }
    }

    #[test]
    fn every_route_goes_through_the_documented_router() {
        // Routes are only added with `routes!` (documented); a plain `.route(` would serve
        // an undocumented path.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let code = code.replace("OpenApiRouter::new()", "");
            for banned in [".route(", "axum::routing::", "Router::new()"] {
                assert!(
                    !code.contains(banned),
                    "{}: `{banned}` adds a route outside the OpenAPI router",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn bearer_scheme_is_declared_and_required_except_on_probes() {
        let doc = doc();
        let scheme = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
        for probe in ["/healthz", "/readyz"] {
            assert_eq!(
                doc["paths"][probe]["get"]["security"],
                serde_json::json!([{}]),
                "{probe} must be documented as open"
            );
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            if path.starts_with("/api/") || path.starts_with("/debug/") {
                for (method, op) in item.as_object().unwrap() {
                    assert_ne!(
                        op["security"],
                        serde_json::json!([{}]),
                        "{method} {path} is documented as open but needs a token"
                    );
                }
            }
        }
    }

    #[test]
    fn auth_answers_are_documented_and_every_response_is_described() {
        let doc = doc();
        let responses = |m: &str, p: &str| doc["paths"][p][m]["responses"].clone();
        for (m, p) in [
            ("get", "/api/rooms"),
            ("post", "/api/rooms"),
            ("get", "/debug/log-level"),
        ] {
            assert!(responses(m, p)["401"].is_object(), "{m} {p}");
        }
        assert!(responses("get", "/api/rooms")["403"].is_null());
        assert!(responses("post", "/api/rooms")["403"].is_object());
        assert!(responses("delete", "/api/rooms/{id}")["403"].is_object());
        assert!(responses("get", "/api/tokens")["403"].is_object());
        assert!(responses("get", "/healthz")["401"].is_null());
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (code, r) in op["responses"].as_object().unwrap() {
                    assert!(
                        r["description"].as_str().is_some_and(|d| !d.is_empty()),
                        "{method} {path} {code}: no description"
                    );
                }
            }
        }
    }

    #[test]
    fn streams_declare_their_media_types() {
        let doc = doc();
        let content = |p: &str| doc["paths"][p]["get"]["responses"]["200"]["content"].clone();
        assert!(content("/api/events/live")["text/event-stream"].is_object());
        assert!(content("/api/events/stream")["application/x-ndjson"].is_object());
        for p in ["/api/readings", "/api/doors/events", "/api/access-events"] {
            assert!(content(p)["application/json"].is_object(), "{p}");
            assert!(content(p)["application/x-ndjson"].is_object(), "{p}");
        }
    }
}
