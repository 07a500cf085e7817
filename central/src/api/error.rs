//! One error type for every handler, rendered as `{ "error": { "code", "message" } }`.
//! Details of 5xx errors go to the log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub enum AppError {
    BadRequest {
        code: &'static str,
        message: String,
    },
    NotFound {
        code: &'static str,
        message: String,
    },
    /// 409: duplicate id, still referred to, concurrent change.
    Conflict {
        code: &'static str,
        message: String,
    },
    /// 422: the request is well formed but names something that does not exist.
    Unprocessable {
        code: &'static str,
        message: String,
    },
    Unavailable {
        code: &'static str,
        message: String,
    },
    /// 413: the body is larger than allowed.
    PayloadTooLarge {
        code: &'static str,
        message: String,
    },
    Internal(anyhow::Error),
    /// 401 with `WWW-Authenticate: Bearer`: no token, or an unknown or revoked one.
    Unauthorized {
        code: &'static str,
        message: String,
    },
    /// 403: a valid token whose scope does not allow this.
    Forbidden {
        code: &'static str,
        message: String,
    },
}

impl AppError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        AppError::NotFound {
            code,
            message: message.into(),
        }
    }
}

impl AppError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Unavailable {
            code,
            message: message.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError::Internal(e.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let challenge = match &self {
            AppError::Unauthorized { code, .. } => Some(if *code == "missing_token" {
                "Bearer realm=\"roomsense\"".to_string()
            } else {
                "Bearer realm=\"roomsense\", error=\"invalid_token\"".to_string()
            }),
            _ => None,
        };
        let (status, code, message) = match self {
            AppError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message),
            AppError::NotFound { code, message } => (StatusCode::NOT_FOUND, code, message),
            AppError::Conflict { code, message } => (StatusCode::CONFLICT, code, message),
            AppError::Unprocessable { code, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            AppError::Unavailable { code, message } => {
                (StatusCode::SERVICE_UNAVAILABLE, code, message)
            }
            AppError::PayloadTooLarge { code, message } => {
                (StatusCode::PAYLOAD_TOO_LARGE, code, message)
            }
            AppError::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, code, message),
            AppError::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message),
            AppError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log".to_string(),
                )
            }
        };
        let mut response = (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response();
        if let Some(c) = challenge.and_then(|c| axum::http::HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, c);
        }
        response
    }
}

/// `Query<T>` whose rejection is an `AppError`.
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| AppError::bad("bad_query", e.body_text()))
    }
}

/// `Json<T>` whose rejection is an `AppError`.
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| JsonBody(j.0))
            .map_err(|e| AppError::bad("bad_body", e.body_text()))
    }
}
