//! Time ranges, keyset cursors and NDJSON streaming shared by the history endpoints.

use super::error::AppError;
use crate::storage::{StoreError, TimeQuery};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
/// Rows fetched per page when streaming NDJSON.
const STREAM_PAGE: i64 = 2000;

/// Query parameters common to history endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// RFC 3339, inclusive.
    pub start: Option<String>,
    /// RFC 3339, exclusive.
    pub end: Option<String>,
    /// Rows per page, 1 to 10000 (default 1000; NDJSON: all rows of the range).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `json` (default) or `ndjson` (also chosen by `Accept: application/x-ndjson`).
    pub format: Option<String>,
}

/// Parses an RFC 3339 time; the error names the parameter.
pub fn parse_time(name: &str, s: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            AppError::bad(
                "bad_time",
                format!("{name}: {s:?} is not an RFC 3339 time such as 2026-01-31T08:00:00Z ({e})"),
            )
        })
}

pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub fn encode_cursor(at_ms: i64, id: i64) -> String {
    format!("{at_ms}.{id}")
}

fn decode_cursor(s: &str) -> Result<(i64, i64), AppError> {
    let bad = || {
        AppError::bad(
            "bad_cursor",
            format!("cursor: {s:?} is not a cursor returned by this endpoint (next_cursor)"),
        )
    };
    let (a, b) = s.split_once('.').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// Output form of a history request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
}

/// Turns the common parameters into a `TimeQuery` (filters still unset) and a format.
pub fn parse_range(p: &RangeParams, headers: &HeaderMap) -> Result<(TimeQuery, Format), AppError> {
    let start = p
        .start
        .as_deref()
        .map(|s| parse_time("start", s))
        .transpose()?;
    let end = p.end.as_deref().map(|s| parse_time("end", s)).transpose()?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(AppError::bad(
                "bad_time_range",
                format!(
                    "start ({}) is after end ({})",
                    s.to_rfc3339(),
                    e.to_rfc3339()
                ),
            ));
        }
    }
    let format = match p.format.as_deref() {
        None => {
            let wants_ndjson = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/x-ndjson"));
            if wants_ndjson {
                Format::Ndjson
            } else {
                Format::Json
            }
        }
        Some("json") => Format::Json,
        Some("ndjson") => Format::Ndjson,
        Some(other) => {
            return Err(AppError::bad(
                "bad_format",
                format!("format: {other:?} is neither \"json\" nor \"ndjson\""),
            ))
        }
    };
    let limit = match p.limit.as_deref() {
        None if format == Format::Ndjson => i64::MAX,
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) || (format == Format::Ndjson && n >= 1) => n,
            _ => {
                return Err(AppError::bad(
                    "bad_limit",
                    format!("limit: {s:?} must be an integer from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    Ok((
        TimeQuery {
            start_ms: start.map(|t| t.timestamp_millis()),
            end_ms: end.map(|t| t.timestamp_millis()),
            after,
            limit,
            ..TimeQuery::default()
        },
        format,
    ))
}

/// A page of JSON results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub type Fetch<R> = std::sync::Arc<
    dyn Fn(TimeQuery) -> BoxFuture<'static, Result<Vec<R>, StoreError>> + Send + Sync,
>;

/// Answers a history request: one JSON page, or every row of the range as NDJSON, fetched
/// page by page (keyset) so memory stays flat however long the range.
pub async fn respond<R, V>(
    q: TimeQuery,
    format: Format,
    fetch: Fetch<R>,
    key: fn(&R) -> (i64, i64),
    view: fn(R) -> V,
) -> Result<Response, AppError>
where
    R: Send + 'static,
    V: Serialize + Send + 'static,
{
    match format {
        Format::Json => {
            let limit = q.limit;
            let rows = fetch(q).await?;
            let next_cursor = if rows.len() as i64 == limit {
                rows.last().map(|r| {
                    let (a, b) = key(r);
                    encode_cursor(a, b)
                })
            } else {
                None
            };
            Ok(axum::Json(Page {
                items: rows.into_iter().map(view).collect(),
                next_cursor,
            })
            .into_response())
        }
        Format::Ndjson => {
            let remaining = q.limit;
            let stream = futures::stream::try_unfold(
                (q, remaining, false),
                move |(mut q, remaining, done)| {
                    let fetch = fetch.clone();
                    async move {
                        if done || remaining <= 0 {
                            return Ok::<_, StoreError>(None);
                        }
                        q.limit = remaining.min(STREAM_PAGE);
                        let rows = fetch(q.clone()).await?;
                        let n = rows.len() as i64;
                        let last = rows.last().map(key);
                        let mut buf = Vec::with_capacity(rows.len() * 160);
                        for r in rows {
                            // Serializing these plain structs cannot fail.
                            let _ = serde_json::to_writer(&mut buf, &view(r));
                            buf.push(b'\n');
                        }
                        let done = n < q.limit;
                        q.after = last.or(q.after);
                        Ok(Some((buf, (q, remaining - n, done))))
                    }
                },
            );
            let stream = futures::TryStreamExt::map_err(stream, |e| {
                tracing::error!(error = %e, "NDJSON stream failed");
                std::io::Error::other("stream aborted: database error")
            });
            let mut resp = Body::from_stream(stream).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            Ok(resp)
        }
    }
}
