//! Stored events by time range:
//! - `GET /api/access-events` — access events (filtered by room, device, kind), paginated
//!   or NDJSON;
//! - `GET /api/events/stream?start=&end=&kind=` — every stored event of the range (door
//!   transitions and access events), merged in time order, streamed as NDJSON page by page
//!   so memory stays flat however many events the range holds.

use super::error::{AppError, Query};
use super::paging::{parse_range, respond, rfc3339, Fetch, Page, RangeParams};
use super::AppState;
use crate::access::AccessKind;
use crate::storage::access::{AccessEventRecord, AccessQuery};
use crate::storage::{DoorEvent, Store, StoreError, TimeQuery};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(access_events))
        .routes(routes!(stream))
}

const ACCESS_KINDS: [&str; 3] = [
    AccessKind::UnauthorizedEntry.as_str(),
    AccessKind::DoorOutsideHours.as_str(),
    AccessKind::OverCapacity.as_str(),
];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AccessParams {
    /// Only this room.
    room: Option<String>,
    /// Only this device.
    device: Option<String>,
    /// `unauthorized_entry`, `door_outside_hours` or `over_capacity`.
    kind: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    range: RangeParams,
}

/// A stored access event: who or what broke which rule, with its evidence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessEventView {
    pub id: i64,
    /// Always `access`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// `unauthorized_entry`, `door_outside_hours` or `over_capacity`.
    pub kind: String,
    /// RFC 3339.
    pub at: String,
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// What triggered it: position and confidence, door event, occupancy count.
    pub evidence: serde_json::Value,
}

pub fn access_view(e: AccessEventRecord) -> AccessEventView {
    AccessEventView {
        id: e.id,
        event_type: "access",
        at: rfc3339(e.at_ms),
        evidence: serde_json::from_str(&e.evidence).unwrap_or(serde_json::Value::Null),
        kind: e.kind,
        room: e.room,
        device: e.device,
        person: e.person,
    }
}

/// A door transition in the event stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DoorEventView {
    id: i64,
    /// Always `door`.
    #[serde(rename = "type")]
    event_type: &'static str,
    /// Always `door`.
    kind: &'static str,
    /// RFC 3339.
    at: String,
    door: String,
    state: String,
    node: String,
    seq: i64,
}

fn door_view(e: DoorEvent) -> DoorEventView {
    DoorEventView {
        id: e.id,
        event_type: "door",
        kind: "door",
        at: rfc3339(e.at_ms),
        door: e.door,
        state: e.state,
        node: e.node,
        seq: e.seq,
    }
}

/// One line of `/api/events/stream` (documentation only: the stream writes the views).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
enum StreamLine {
    Door(DoorEventView),
    Access(AccessEventView),
}

fn bad_kind(v: &str, allowed: &[&str]) -> AppError {
    AppError::bad(
        "bad_filter",
        format!("kind: {v:?} is not one of {allowed:?}"),
    )
}

/// Stored access events by time range: one JSON page (`next_cursor`), or every row as NDJSON.
#[utoipa::path(get, path = "/api/access-events", tag = "events",
    params(AccessParams, RangeParams),
    responses(
        (status = 200, description = "Access events ordered by time", content(
            (Page<AccessEventView> = "application/json"),
            (AccessEventView = "application/x-ndjson"),
        )),
        (status = 400, description = "A bad parameter, named in the error message"),
        (status = 401),
    ))]
async fn access_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<AccessParams>,
) -> Result<Response, AppError> {
    let (q, format) = parse_range(&p.range, &headers)?;
    if let Some(k) = &p.kind {
        if !ACCESS_KINDS.contains(&k.as_str()) {
            return Err(bad_kind(k, &ACCESS_KINDS));
        }
    }
    let fetch = access_fetch(s.store.clone(), p.room, p.device, p.kind);
    respond(q, format, fetch, |e| (e.at_ms, e.id), access_view).await
}

fn access_fetch(
    store: Arc<dyn Store>,
    room: Option<String>,
    device: Option<String>,
    kind: Option<String>,
) -> Fetch<AccessEventRecord> {
    Arc::new(move |q: TimeQuery| {
        let store = store.clone();
        let aq = AccessQuery {
            room: room.clone(),
            device: device.clone(),
            kind: kind.clone(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            after: q.after,
            limit: q.limit,
        };
        Box::pin(async move { store.access_events(&aq).await })
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StreamParams {
    /// RFC 3339, inclusive (default: the beginning).
    start: Option<String>,
    /// RFC 3339, exclusive (default: now and on).
    end: Option<String>,
    /// Comma-separated: `door`, `access`, or access kinds. Default: all.
    kind: Option<String>,
}

/// Rows per database page of each source while streaming.
const PAGE: i64 = 2000;
/// Lines per chunk written to the response.
const LINES_PER_CHUNK: usize = 1000;

/// `(at_ms, id, NDJSON line)`.
type Line = (i64, i64, Vec<u8>);
type FetchLines = Box<
    dyn Fn(TimeQuery) -> futures::future::BoxFuture<'static, Result<Vec<Line>, StoreError>>
        + Send
        + Sync,
>;

/// One keyset-paged source of NDJSON lines ordered by `(at_ms, id)`.
struct Source {
    fetch: FetchLines,
    q: TimeQuery,
    buf: VecDeque<Line>,
    done: bool,
}

impl Source {
    fn new<R, V>(
        q: &TimeQuery,
        fetch: Fetch<R>,
        key: fn(&R) -> (i64, i64),
        view: fn(R) -> V,
    ) -> Self
    where
        R: Send + 'static,
        V: Serialize + 'static,
    {
        let fetch = Box::new(move |q: TimeQuery| {
            let fetch = fetch.clone();
            let fut: futures::future::BoxFuture<'static, _> = Box::pin(async move {
                let rows = fetch(q).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let (at, id) = key(&r);
                        // Serializing these plain structs cannot fail.
                        let mut line = serde_json::to_vec(&view(r)).unwrap_or_default();
                        line.push(b'\n');
                        (at, id, line)
                    })
                    .collect())
            });
            fut
        });
        Self {
            fetch,
            q: TimeQuery {
                limit: PAGE,
                ..q.clone()
            },
            buf: VecDeque::new(),
            done: false,
        }
    }

    async fn fill(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() && !self.done {
            let rows = (self.fetch)(self.q.clone()).await?;
            self.done = (rows.len() as i64) < self.q.limit;
            if let Some((at, id, _)) = rows.last() {
                self.q.after = Some((*at, *id));
            }
            self.buf.extend(rows);
        }
        Ok(())
    }
}

/// Every stored event of a time range (door transitions and access events) merged in time
/// order, streamed as NDJSON page by page: memory stays flat however long the range.
#[utoipa::path(get, path = "/api/events/stream", tag = "events",
    params(StreamParams),
    responses(
        (status = 200, description = "One JSON event per line, oldest first; `type` is `door` or `access`",
            content_type = "application/x-ndjson", body = StreamLine),
        (status = 400, description = "A bad parameter, named in the error message"),
        (status = 401),
    ))]
async fn stream(
    State(s): State<AppState>,
    Query(p): Query<StreamParams>,
) -> Result<Response, AppError> {
    let range = RangeParams {
        start: p.start,
        end: p.end,
        ..RangeParams::default()
    };
    let (q, _) = parse_range(&range, &HeaderMap::new())?;
    let mut allowed = vec!["door", "access"];
    allowed.extend(ACCESS_KINDS);
    let kinds: Vec<String> = match p.kind.as_deref() {
        None | Some("") => vec!["door".into(), "access".into()],
        Some(list) => list.split(',').map(|k| k.trim().to_string()).collect(),
    };
    for k in &kinds {
        if !allowed.contains(&k.as_str()) {
            return Err(bad_kind(k, &allowed));
        }
    }
    let mut sources = Vec::new();
    if kinds.iter().any(|k| k == "door") {
        let store = s.store.clone();
        let fetch: Fetch<DoorEvent> = Arc::new(move |q: TimeQuery| {
            let store = store.clone();
            Box::pin(async move { store.door_events(&q).await })
        });
        sources.push(Source::new(&q, fetch, |e| (e.at_ms, e.id), door_view));
    }
    if kinds.iter().any(|k| k == "access") {
        let fetch = access_fetch(s.store.clone(), None, None, None);
        sources.push(Source::new(&q, fetch, |e| (e.at_ms, e.id), access_view));
    } else {
        for k in kinds.iter().filter(|k| ACCESS_KINDS.contains(&k.as_str())) {
            let fetch = access_fetch(s.store.clone(), None, None, Some(k.clone()));
            sources.push(Source::new(&q, fetch, |e| (e.at_ms, e.id), access_view));
        }
    }
    let body = futures::stream::try_unfold(sources, |mut sources| async move {
        let mut chunk = Vec::new();
        let mut lines = 0;
        while lines < LINES_PER_CHUNK {
            for src in sources.iter_mut() {
                src.fill().await?;
            }
            // The oldest head among the sources (ties: source order, then id).
            let next = sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.buf.front().map(|(at, id, _)| (*at, *id, i)))
                .min();
            let Some((_, _, i)) = next else { break };
            if let Some((_, _, line)) = sources[i].buf.pop_front() {
                chunk.extend_from_slice(&line);
                lines += 1;
            }
        }
        if lines == 0 {
            Ok::<_, StoreError>(None)
        } else {
            Ok(Some((chunk, sources)))
        }
    });
    let body = futures::TryStreamExt::map_err(body, |e| {
        tracing::error!(error = %e, "event stream failed");
        std::io::Error::other("stream aborted: database error")
    });
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}
