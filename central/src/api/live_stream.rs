//! `GET /api/events/live?building=&room=&device=&type=`: the live event bus as
//! Server-Sent Events, in publish order, with keep-alives. Each SSE event is named by its
//! type (`position`, `door`, `node`, `access`) and carries the event as JSON; a client that
//! falls more than the bus capacity behind gets a `lagged` event `{"missed": n}` and goes
//! on with the newest events.
//!
//! Filters apply to the fields an event carries: `device` matches positions and access
//! events by device; `room` matches positions by their current room and access events by
//! their room; `building` matches positions by building. An event without the filtered
//! field (door transitions and node changes for `room`/`device`/`building`; access events
//! for `building`) is not sent while that filter is set.

use super::error::{AppError, Query};
use super::AppState;
use crate::bus::LiveEvent;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How often an idle stream sends a keep-alive comment (proxies drop silent connections).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live))
}

const TYPES: [&str; 4] = ["position", "door", "node", "access"];

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveParams {
    /// Only positions in this building.
    building: Option<String>,
    /// Only positions currently in this room and access events of this room.
    room: Option<String>,
    /// Only positions and access events of this device.
    device: Option<String>,
    /// Comma-separated event types: `position`, `door`, `node`, `access` (default all).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    types: Option<String>,
}

/// Which live events a client wants. Pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFilter {
    pub building: Option<String>,
    pub room: Option<String>,
    pub device: Option<String>,
    /// `None`: every type.
    pub types: Option<Vec<&'static str>>,
}

impl LiveFilter {
    pub fn parse(p: LiveParams) -> Result<Self, AppError> {
        let non_empty = |name: &'static str, v: Option<String>| match v {
            Some(s) if s.trim().is_empty() => Err(AppError::bad(
                "bad_filter",
                format!("{name}: must not be empty"),
            )),
            v => Ok(v),
        };
        let types = match p.types {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|t| {
                        TYPES
                            .iter()
                            .copied()
                            .find(|k| *k == t.trim())
                            .ok_or_else(|| {
                                AppError::bad(
                                    "bad_type",
                                    format!(
                                        "type: {t:?} is not one of position, door, node, access"
                                    ),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Self {
            building: non_empty("building", p.building)?,
            room: non_empty("room", p.room)?,
            device: non_empty("device", p.device)?,
            types,
        })
    }

    pub fn matches(&self, e: &LiveEvent) -> bool {
        if let Some(types) = &self.types {
            if !types.contains(&type_of(e)) {
                return false;
            }
        }
        let (building, room, device) = match e {
            LiveEvent::Position(p) => (
                Some(p.building.as_str()),
                p.room.as_deref(),
                Some(p.device.as_str()),
            ),
            LiveEvent::Access(a) => (None, Some(a.room.as_str()), a.device.as_deref()),
            LiveEvent::Door(_) | LiveEvent::Node(_) => (None, None, None),
        };
        let ok = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        ok(&self.building, building) && ok(&self.room, room) && ok(&self.device, device)
    }
}

pub fn type_of(e: &LiveEvent) -> &'static str {
    match e {
        LiveEvent::Position(_) => "position",
        LiveEvent::Door(_) => "door",
        LiveEvent::Node(_) => "node",
        LiveEvent::Access(_) => "access",
    }
}

/// What the stream sends. Pure (the HTTP framing is added by the handler). Each item is
/// moved once, from the bus to the wire, so the size difference of the variants costs
/// nothing worth a box.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum LiveItem {
    Event(LiveEvent),
    /// The subscriber fell behind; this many events were skipped.
    Lagged(u64),
}

/// The matching events of `rx` in order, with a `Lagged` item where events were missed;
/// ends when the bus is dropped.
pub fn live_items(
    rx: broadcast::Receiver<LiveEvent>,
    filter: LiveFilter,
) -> impl Stream<Item = LiveItem> + Send {
    let filter = Arc::new(filter);
    futures::stream::unfold(rx, move |mut rx| {
        let filter = filter.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(e) if filter.matches(&e) => return Some((LiveItem::Event(e), rx)),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => return Some((LiveItem::Lagged(n), rx)),
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}

fn sse_event(item: LiveItem) -> Event {
    match item {
        LiveItem::Event(e) => {
            let data = serde_json::to_string(&e).unwrap_or_else(|err| {
                tracing::error!(error = %err, "live event did not serialize");
                "{}".into()
            });
            Event::default().event(type_of(&e)).data(data)
        }
        LiveItem::Lagged(n) => Event::default()
            .event("lagged")
            .data(serde_json::json!({ "missed": n }).to_string()),
    }
}

/// Live events as Server-Sent Events (`text/event-stream`).
///
/// Events are named `position`, `door`, `node`, `access` (data: the event as JSON with its
/// `type`), or `lagged` (data: `{"missed": n}`) when this client fell behind. The stream
/// starts with a `: live` comment and sends a keep-alive comment every 15 s when idle.
#[utoipa::path(get, path = "/api/events/live", tag = "events", params(LiveParams),
    responses(
        (status = 200, description = "an endless SSE stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "a bad filter; the message names it"),
        (status = 401), (status = 403)
    ),
    security(("bearer" = [])))]
async fn live(
    State(s): State<AppState>,
    Query(p): Query<LiveParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let filter = LiveFilter::parse(p)?;
    // Subscribed before the response starts: nothing published after the headers is missed.
    let rx = s.bus.subscribe();
    let stream = futures::stream::once(async { Event::default().comment("live") })
        .chain(live_items(rx, filter).map(sse_event))
        .map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{DoorTransition, EventBus, NodeChange};

    fn door(at_ms: i64) -> LiveEvent {
        LiveEvent::Door(DoorTransition {
            node: "n1".into(),
            door: "d1".into(),
            state: "open".into(),
            at_ms,
        })
    }

    fn node(at_ms: i64) -> LiveEvent {
        LiveEvent::Node(NodeChange {
            node: "n1".into(),
            state: "offline".into(),
            reason: None,
            at_ms,
        })
    }

    fn params(q: &str) -> Result<LiveFilter, AppError> {
        let p: LiveParams = serde_urlencoded_like(q);
        LiveFilter::parse(p)
    }

    /// `a=b&c=d` → params (test helper; values without escapes).
    fn serde_urlencoded_like(q: &str) -> LiveParams {
        let mut v = serde_json::Map::new();
        for kv in q.split('&').filter(|s| !s.is_empty()) {
            let (k, val) = kv.split_once('=').unwrap();
            v.insert(k.into(), val.into());
        }
        serde_json::from_value(serde_json::Value::Object(v)).unwrap()
    }

    #[test]
    fn filters_by_type() {
        let f = params("type=door").unwrap();
        assert!(f.matches(&door(1)));
        assert!(!f.matches(&node(1)));
        let f = params("type=door,node").unwrap();
        assert!(f.matches(&node(1)));
        assert!(matches!(
            params("type=door,window"),
            Err(AppError::BadRequest {
                code: "bad_type",
                ..
            })
        ));
        assert!(matches!(
            params("room="),
            Err(AppError::BadRequest {
                code: "bad_filter",
                ..
            })
        ));
        let all = params("").unwrap();
        assert!(all.matches(&door(1)) && all.matches(&node(1)));
        // Door and node events carry no device or room.
        let f = params("device=tag-1").unwrap();
        assert!(!f.matches(&door(1)));
    }

    #[tokio::test]
    async fn in_order_and_lagged_is_explicit() {
        let bus = EventBus::new(4);
        let rx = bus.subscribe();
        for i in 0..10 {
            bus.publish(door(i));
        }
        let mut s = Box::pin(live_items(rx, LiveFilter::default()));
        assert_eq!(s.next().await, Some(LiveItem::Lagged(6)));
        for i in 6..10 {
            assert_eq!(s.next().await, Some(LiveItem::Event(door(i))));
        }
        bus.publish(node(11));
        assert_eq!(s.next().await, Some(LiveItem::Event(node(11))));
        drop(bus);
        assert_eq!(s.next().await, None);
    }
}
