//! Occupancy:
//! - `GET /api/occupancy` — every room now: count, capacity, over capacity;
//! - `GET /api/rooms/{id}/occupancy` — who is in a room now, with confidence and since when;
//! - `GET /api/occupancy/history?start=&end=&interval=&room=` — distinct devices per room
//!   per interval, from stored position estimates;
//! - `GET /api/dwell?start=&end=&device=&room=` — time each device spent in each room.
//!
//! History is folded page by page over the stored positions (`crate::occupancy`), so a
//! long range costs time, not memory; the range and the number of buckets are bounded.

use super::error::{AppError, Query};
use super::paging::{parse_time, rfc3339};
use super::AppState;
use crate::access_pipeline::RoomCount;
use crate::occupancy::{Dwell, IntervalCounts, Sample};
use crate::storage::positions::{PositionQuery, PositionRecord};
use crate::storage::Store;
use axum::extract::{Path, State};
use axum::Json;
use roomsense_common::DeviceId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(all_rooms))
        .routes(routes!(one_room))
        .routes(routes!(history))
        .routes(routes!(dwell))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OccupancyParams {
    /// Only the rooms of this building.
    building: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomOccupancy {
    pub room: String,
    /// Absent for a room the building model does not know (a position names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    /// Tracked devices in the room now.
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    pub over_capacity: bool,
    pub restricted: bool,
}

fn room_view(r: RoomCount) -> RoomOccupancy {
    RoomOccupancy {
        over_capacity: r.over_capacity(),
        room: r.room,
        building: r.building,
        count: r.count,
        capacity: r.capacity,
        restricted: r.restricted,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OccupancyList {
    pub items: Vec<RoomOccupancy>,
    /// Devices placed in some room now.
    pub tracked_devices: usize,
}

/// Every room now: how many tracked devices are in it, its capacity, whether it is over.
#[utoipa::path(
    get,
    path = "/api/occupancy",
    tag = "occupancy",
    params(OccupancyParams),
    responses(
        (status = 200, description = "Every room, by room id", body = OccupancyList),
        (status = 400, description = "Unknown query parameter"),
    )
)]
async fn all_rooms(
    State(s): State<AppState>,
    Query(p): Query<OccupancyParams>,
) -> Result<Json<OccupancyList>, AppError> {
    let items = s
        .occupancy
        .rooms()
        .into_iter()
        .filter(|r| {
            p.building
                .as_deref()
                .is_none_or(|b| r.building.as_deref() == Some(b))
        })
        .map(room_view)
        .collect();
    Ok(Json(OccupancyList {
        items,
        tracked_devices: s.occupancy.tracked(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OccupantView {
    pub device: String,
    /// The device's owner, when the building model knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// Confidence (0–1) of the latest estimate placing the device in this room.
    pub confidence: f32,
    /// When the device entered the room (RFC 3339).
    pub since: String,
    /// Time of the device's latest position estimate.
    pub last_seen: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomOccupants {
    #[serde(flatten)]
    pub room: RoomOccupancy,
    /// By device id.
    pub occupants: Vec<OccupantView>,
}

/// Who is in a room now, each with the confidence of the estimate and since when.
#[utoipa::path(
    get,
    path = "/api/rooms/{id}/occupancy",
    tag = "occupancy",
    params(("id" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "The room's occupants", body = RoomOccupants),
        (status = 404, description = "No such room"),
    )
)]
async fn one_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RoomOccupants>, AppError> {
    let (count, occupants) = s.occupancy.room(&id).ok_or_else(|| {
        AppError::not_found(
            "unknown_room",
            format!("room {id:?} is not in the building model and nobody is placed in it"),
        )
    })?;
    Ok(Json(RoomOccupants {
        room: room_view(count),
        occupants: occupants
            .into_iter()
            .map(|(o, person)| OccupantView {
                device: o.device,
                person,
                confidence: o.confidence,
                since: rfc3339(o.since_ms),
                last_seen: rfc3339(o.last_seen_ms),
            })
            .collect(),
    }))
}

/// A validated history range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Longest range a history request may cover.
pub const MAX_RANGE_MS: i64 = 31 * 24 * 3600 * 1000;
/// Shortest interval of occupancy history.
pub const MIN_INTERVAL_MS: i64 = 1000;

/// `start` and `end` are required, `start < end`, at most `MAX_RANGE_MS` apart.
pub fn parse_history_range(start: Option<&str>, end: Option<&str>) -> Result<Range, AppError> {
    let need = |name: &str| {
        AppError::bad(
            "missing_parameter",
            format!("{name}: required (an RFC 3339 time such as 2026-01-31T08:00:00Z)"),
        )
    };
    let start = parse_time("start", start.ok_or_else(|| need("start"))?)?;
    let end = parse_time("end", end.ok_or_else(|| need("end"))?)?;
    let (s, e) = (start.timestamp_millis(), end.timestamp_millis());
    if s >= e {
        return Err(AppError::bad(
            "bad_time_range",
            format!("start ({}) must be before end ({})", rfc3339(s), rfc3339(e)),
        ));
    }
    if e - s > MAX_RANGE_MS {
        return Err(AppError::bad(
            "range_too_long",
            format!(
                "end - start is {} days; at most 31 days per request",
                (e - s) / 86_400_000
            ),
        ));
    }
    Ok(Range {
        start_ms: s,
        end_ms: e,
    })
}

/// `interval` as a human duration (`15m`, `1h`), at least 1 s and at most the range;
/// `rooms × intervals` at most `max_buckets`. Returns the interval in ms.
pub fn parse_interval(
    interval: Option<&str>,
    range: Range,
    rooms: usize,
    max_buckets: usize,
) -> Result<i64, AppError> {
    let raw = interval.ok_or_else(|| {
        AppError::bad(
            "missing_parameter",
            "interval: required (a duration such as 15m or 1h)",
        )
    })?;
    let d = humantime::parse_duration(raw).map_err(|e| {
        AppError::bad(
            "bad_interval",
            format!("interval: {raw:?} is not a duration such as 15m or 1h ({e})"),
        )
    })?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let span = range.end_ms - range.start_ms;
    if ms < MIN_INTERVAL_MS || ms > span {
        return Err(AppError::bad(
            "bad_interval",
            format!("interval: {raw:?} must be at least 1s and at most end - start ({span} ms)"),
        ));
    }
    let buckets = ((span + ms - 1) / ms) as usize;
    let total = buckets.saturating_mul(rooms.max(1));
    if total > max_buckets {
        return Err(AppError::bad(
            "too_many_buckets",
            format!(
                "{buckets} intervals × {} rooms = {total} buckets; at most {max_buckets}: use a longer interval, a shorter range or a room filter",
                rooms.max(1)
            ),
        ));
    }
    Ok(ms)
}

/// Stored estimates read per database page while folding.
const PAGE: i64 = 5000;

/// Feeds every stored estimate of `q`'s range (in `(at_ms, id)` order) to `f`, page by
/// page; fails once more than `max_rows` were read.
async fn fold_positions(
    store: &dyn Store,
    mut q: PositionQuery,
    max_rows: u64,
    mut f: impl FnMut(&PositionRecord),
) -> Result<(), AppError> {
    q.limit = PAGE;
    let mut read = 0u64;
    loop {
        let rows = store.positions(&q).await?;
        read += rows.len() as u64;
        if read > max_rows {
            return Err(AppError::bad(
                "range_too_large",
                format!("the range holds more than {max_rows} stored position estimates (occupancy.max_scan_rows): use a shorter range or a device/room filter"),
            ));
        }
        rows.iter().for_each(&mut f);
        match rows.last() {
            Some(last) if rows.len() as i64 == q.limit => q.after = Some((last.at_ms, last.id)),
            _ => return Ok(()),
        }
    }
}

fn sample(r: &PositionRecord) -> Sample<'_> {
    Sample {
        device: &r.device,
        room: r.room.as_deref(),
        at_ms: r.at_ms,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Start of the range (RFC 3339), inclusive.
    start: Option<String>,
    /// End of the range (RFC 3339), exclusive; at most 31 days after `start`.
    end: Option<String>,
    /// Bucket width, e.g. `15m`, `1h` (at least `1s`).
    interval: Option<String>,
    /// Only this room.
    room: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryBucket {
    pub room: String,
    /// Start of the interval (RFC 3339); it ends where the next one starts.
    pub start: String,
    /// Distinct devices placed in the room during the interval.
    pub devices: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    pub start: String,
    pub end: String,
    pub interval_s: f64,
    /// By room, then time; every interval of every room of the building model (or of
    /// `room`) is present, zero when nobody was there.
    pub items: Vec<HistoryBucket>,
}

/// Occupancy per room per interval: the distinct devices placed in each room during each
/// interval, from the stored position estimates.
#[utoipa::path(
    get,
    path = "/api/occupancy/history",
    tag = "occupancy",
    params(HistoryParams),
    responses(
        (status = 200, description = "Buckets by room, then time", body = HistoryResponse),
        (status = 400, description = "Missing or bad start/end/interval, or too many buckets"),
    )
)]
async fn history(
    State(s): State<AppState>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<HistoryResponse>, AppError> {
    let range = parse_history_range(p.start.as_deref(), p.end.as_deref())?;
    let rooms: Vec<String> = match &p.room {
        Some(r) => vec![r.clone()],
        None => s.occupancy.rooms().into_iter().map(|r| r.room).collect(),
    };
    let interval = parse_interval(
        p.interval.as_deref(),
        range,
        rooms.len(),
        s.occupancy_config.max_buckets,
    )?;
    let mut counts = IntervalCounts::new(range.start_ms, interval);
    let q = PositionQuery {
        room: p.room.clone(),
        start_ms: Some(range.start_ms),
        end_ms: Some(range.end_ms),
        ..PositionQuery::default()
    };
    fold_positions(s.store.as_ref(), q, s.occupancy_config.max_scan_rows, |r| {
        counts.add(&sample(r))
    })
    .await?;
    let buckets = (range.end_ms - range.start_ms + interval - 1) / interval;
    let mut seen: std::collections::BTreeMap<(String, i64), usize> = counts
        .finish()
        .into_iter()
        .map(|(room, at, n)| ((room, at), n))
        .collect();
    for room in &rooms {
        for b in 0..buckets {
            seen.entry((room.clone(), range.start_ms + b * interval))
                .or_insert(0);
        }
    }
    Ok(Json(HistoryResponse {
        start: rfc3339(range.start_ms),
        end: rfc3339(range.end_ms),
        interval_s: interval as f64 / 1000.0,
        items: seen
            .into_iter()
            .map(|((room, at), devices)| HistoryBucket {
                room,
                start: rfc3339(at),
                devices,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DwellParams {
    /// Start of the range (RFC 3339), inclusive.
    start: Option<String>,
    /// End of the range (RFC 3339), exclusive; at most 31 days after `start`.
    end: Option<String>,
    /// Only this device.
    device: Option<String>,
    /// Only this room.
    room: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DwellItem {
    pub device: String,
    pub room: String,
    /// Time in the room, seconds: between consecutive estimates of the device, the time
    /// counts for the room of the first (each gap capped at `occupancy.dwell_max_gap`).
    pub dwell_s: f64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DwellResponse {
    pub start: String,
    pub end: String,
    /// By device, then room.
    pub items: Vec<DwellItem>,
}

/// Dwell time per device per room over a range, from the stored position estimates.
#[utoipa::path(
    get,
    path = "/api/dwell",
    tag = "occupancy",
    params(DwellParams),
    responses(
        (status = 200, description = "Dwell by device, then room", body = DwellResponse),
        (status = 400, description = "Missing or bad start/end, bad device id"),
    )
)]
async fn dwell(
    State(s): State<AppState>,
    Query(p): Query<DwellParams>,
) -> Result<Json<DwellResponse>, AppError> {
    let range = parse_history_range(p.start.as_deref(), p.end.as_deref())?;
    let device = p
        .device
        .map(|d| {
            DeviceId::parse(&d)
                .map(|d| d.to_string())
                .map_err(|e| AppError::bad("bad_device_id", format!("device: {e}")))
        })
        .transpose()?;
    let max_gap = s.occupancy_config.dwell_max_gap.as_millis() as i64;
    let mut fold = Dwell::new(max_gap);
    // Not filtered by room in SQL: leaving a room shows only in the next estimate.
    let q = PositionQuery {
        device,
        start_ms: Some(range.start_ms),
        end_ms: Some(range.end_ms),
        ..PositionQuery::default()
    };
    fold_positions(s.store.as_ref(), q, s.occupancy_config.max_scan_rows, |r| {
        fold.add(&sample(r))
    })
    .await?;
    let items = fold
        .finish()
        .into_iter()
        .filter(|(_, room, ..)| p.room.as_deref().is_none_or(|r| r == room))
        .map(|(device, room, ms, first, last)| DwellItem {
            device,
            room,
            dwell_s: ms as f64 / 1000.0,
            first_seen: rfc3339(first),
            last_seen: rfc3339(last),
        })
        .collect();
    Ok(Json(DwellResponse {
        start: rfc3339(range.start_ms),
        end: rfc3339(range.end_ms),
        items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Range {
        parse_history_range(Some("2026-01-01T00:00:00Z"), Some("2026-01-02T00:00:00Z")).unwrap()
    }

    fn code(e: AppError) -> &'static str {
        match e {
            AppError::BadRequest { code, .. } => code,
            _ => "other",
        }
    }

    #[test]
    fn history_ranges_are_validated() {
        assert_eq!(range().end_ms - range().start_ms, 86_400_000);
        let e = parse_history_range(None, Some("2026-01-01T00:00:00Z")).unwrap_err();
        assert_eq!(code(e), "missing_parameter");
        let e = parse_history_range(Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z"))
            .unwrap_err();
        assert_eq!(code(e), "bad_time_range");
        let e = parse_history_range(Some("2026-01-01T00:00:00Z"), Some("2026-03-01T00:00:00Z"))
            .unwrap_err();
        assert_eq!(code(e), "range_too_long");
        let e = parse_history_range(Some("yesterday"), Some("2026-03-01T00:00:00Z")).unwrap_err();
        assert_eq!(code(e), "bad_time");
    }

    #[test]
    fn intervals_are_bounded() {
        assert_eq!(
            parse_interval(Some("15m"), range(), 10, 10_000).unwrap(),
            900_000
        );
        assert_eq!(
            code(parse_interval(Some("soon"), range(), 1, 10_000).unwrap_err()),
            "bad_interval"
        );
        assert_eq!(
            code(parse_interval(Some("500ms"), range(), 1, 10_000).unwrap_err()),
            "bad_interval"
        );
        assert_eq!(
            code(parse_interval(Some("2d"), range(), 1, 10_000).unwrap_err()),
            "bad_interval"
        );
        assert_eq!(
            code(parse_interval(None, range(), 1, 10_000).unwrap_err()),
            "missing_parameter"
        );
        // 1440 one-minute buckets × 10 rooms
        assert_eq!(
            code(parse_interval(Some("1m"), range(), 10, 10_000).unwrap_err()),
            "too_many_buckets"
        );
    }
}
