//! API tokens over REST (admin scope; the auth layer enforces it):
//! `GET /api/tokens`, `POST /api/tokens` (returns the secret once), `DELETE /api/tokens/{id}`.

use super::error::{AppError, JsonBody};
use super::paging::rfc3339;
use super::AppState;
use crate::auth::{self, Principal, Scope};
use crate::storage::tokens::TokenRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

/// A token as listed: never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    /// `read` (GET/HEAD only) or `admin`.
    pub scope: String,
    pub created_at: String,
    /// Written at most once a minute.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked: bool,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scope: t.scope,
            created_at: rfc3339(t.created_at_ms),
            last_used_at: t.last_used_at_ms.map(rfc3339),
            revoked: t.revoked_at_ms.is_some(),
            revoked_at: t.revoked_at_ms.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenView>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// What the token is for; 1 to 100 characters.
    pub name: String,
    /// `read` or `admin`.
    pub scope: String,
}

/// A created token with its secret: shown only in this response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: TokenView,
    /// Send as `Authorization: Bearer <secret>`. Not retrievable later.
    pub secret: String,
}

/// Every token, revoked ones included.
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401), (status = 403)),
    security(("bearer" = [])))]
async fn list(State(s): State<AppState>) -> Result<Json<TokenList>, AppError> {
    let items = s
        .store
        .tokens()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(TokenList { items }))
}

/// Creates a token; the response holds its secret, the only time it is shown.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = NewTokenBody,
    responses((status = 201, body = CreatedToken), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
async fn create(
    State(s): State<AppState>,
    Extension(by): Extension<Principal>,
    JsonBody(body): JsonBody<NewTokenBody>,
) -> Result<(StatusCode, Json<CreatedToken>), AppError> {
    auth::validate_name(&body.name).map_err(|e| AppError::bad("bad_name", e))?;
    let scope =
        Scope::parse(&body.scope).map_err(|e| AppError::bad("bad_scope", format!("scope: {e}")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let (t, secret) = auth::create_token(s.store.as_ref(), &body.name, scope, now).await?;
    tracing::info!(token = t.id, name = %t.name, scope = %t.scope, by = by.token_id, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: t.into(),
            secret,
        }),
    ))
}

/// Revokes a token: refused by this server at once, by other replicas within 5 s.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")),
    responses((status = 200, body = TokenView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
async fn revoke(
    State(s): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::bad("bad_token_id", format!("id: {id:?} is not an integer")))?;
    let now = chrono::Utc::now().timestamp_millis();
    match s.auth.revoke(id, now).await? {
        Some(t) => {
            tracing::info!(token = t.id, name = %t.name, by = by.token_id, "API token revoked");
            Ok(Json(t.into()))
        }
        None => Err(AppError::not_found(
            "token_not_found",
            format!("no token with id {id}"),
        )),
    }
}
