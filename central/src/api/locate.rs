//! `POST /api/position`: a client (a phone app) posts its own WiFi/BLE scan and gets its
//! estimate back, from the newest trained model (fingerprint) or, without one, by
//! multilateration against the receivers.

use super::error::{AppError, JsonBody};
use super::paging::{parse_time, rfc3339};
use super::AppState;
use crate::training::pipeline::{ble_key, wifi_key};
use crate::training::LocateError;
use axum::extract::State;
use axum::Json;
use roomsense_common::DeviceId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(locate))
}

/// Most readings per list of one scan (a busy office hears a few hundred access points).
pub const MAX_READINGS: usize = 1000;
/// Plausible RSSI range, dBm.
pub const RSSI_RANGE: (f64, f64) = (-120.0, 0.0);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WifiIn {
    bssid: String,
    rssi: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BleIn {
    /// Beacon or receiver id as advertised (receivers: their node id).
    id: String,
    rssi: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    #[serde(default)]
    wifi: Vec<WifiIn>,
    #[serde(default)]
    ble: Vec<BleIn>,
    /// When the scan was taken (RFC 3339); default: now.
    at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomProbability {
    room: String,
    probability: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionEstimate {
    x: f64,
    y: f64,
    floor: i32,
    building: String,
    /// Most probable room (when the building's rooms are known).
    room: Option<String>,
    room_probabilities: Vec<RoomProbability>,
    /// 0..1.
    confidence: f32,
    /// Radius (units of x/y) within which the position probably lies.
    error_radius_m: f32,
    /// `fingerprint-knn` or `multilateration`.
    method: String,
    /// Model whose radio map (or receiver calibration) was used; null: uncalibrated receivers.
    model_version: Option<i64>,
    /// Readings of the scan the estimator knew.
    emitters_used: usize,
    at: String,
}

/// Validates a scan into `(emitter key, dBm)` pairs; errors name the offending field.
pub fn validate(req: &ScanRequest) -> Result<Vec<(String, f32)>, AppError> {
    if req.wifi.is_empty() && req.ble.is_empty() {
        return Err(AppError::bad(
            "empty_scan",
            "the scan has no readings: send wifi [{bssid, rssi}] and/or ble [{id, rssi}]",
        ));
    }
    for (name, n) in [("wifi", req.wifi.len()), ("ble", req.ble.len())] {
        if n > MAX_READINGS {
            return Err(AppError::bad(
                "scan_too_large",
                format!("{name}: {n} readings; at most {MAX_READINGS}"),
            ));
        }
    }
    let rssi = |field: String, v: f64| {
        if v.is_finite() && (RSSI_RANGE.0..=RSSI_RANGE.1).contains(&v) {
            Ok(v as f32)
        } else {
            Err(AppError::bad(
                "bad_rssi",
                format!(
                    "{field}: {v} dBm is outside {}..={} dBm",
                    RSSI_RANGE.0, RSSI_RANGE.1
                ),
            ))
        }
    };
    let id = |field: String, v: &str| {
        DeviceId::parse(v).map_err(|e| AppError::bad("bad_emitter_id", format!("{field}: {e}")))
    };
    let mut scan = Vec::with_capacity(req.wifi.len() + req.ble.len());
    for (i, w) in req.wifi.iter().enumerate() {
        let bssid = id(format!("wifi[{i}].bssid"), &w.bssid)?;
        scan.push((
            wifi_key(bssid.as_str()),
            rssi(format!("wifi[{i}].rssi"), w.rssi)?,
        ));
    }
    for (i, b) in req.ble.iter().enumerate() {
        let bid = id(format!("ble[{i}].id"), &b.id)?;
        scan.push((
            ble_key(bid.as_str()),
            rssi(format!("ble[{i}].rssi"), b.rssi)?,
        ));
    }
    Ok(scan)
}

/// Locate a client's own scan.
#[utoipa::path(post, path = "/api/position", tag = "positions",
    request_body = ScanRequest,
    responses(
        (status = 200, body = PositionEstimate),
        (status = 400, description = "bad scan (field named)"),
        (status = 409, description = "no reading of the scan is known to the model or the receivers"),
        (status = 503, description = "no trained model and no receivers"),
    ))]
async fn locate(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<ScanRequest>,
) -> Result<Json<PositionEstimate>, AppError> {
    let at = match req.at.as_deref() {
        Some(t) => parse_time("at", t)?.timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis(),
    };
    let scan = validate(&req)?;
    let located = s.training.locate(&scan).map_err(|e| match e {
        LocateError::NoModel => AppError::unavailable("no_model", e.to_string()),
        LocateError::NotLocatable { .. } => AppError::conflict("scan_not_locatable", e.to_string()),
    })?;
    let est = located.estimate;
    Ok(Json(PositionEstimate {
        x: est.x,
        y: est.y,
        floor: est.floor,
        building: located.building,
        room: est.room,
        room_probabilities: est
            .room_probabilities
            .into_iter()
            .map(|(room, probability)| RoomProbability { room, probability })
            .collect(),
        confidence: est.confidence,
        error_radius_m: est.error_radius_m,
        method: est.method,
        model_version: located.model_version,
        emitters_used: located.emitters_used,
        at: rfc3339(at),
    }))
}
