//! Training over REST:
//! - `POST /api/calibration`, `GET /api/calibration`, `GET /api/calibration/{id}` —
//!   "device D is at (x, y, floor) now": its readings of the next N seconds become
//!   labelled samples;
//! - `POST|GET|DELETE /api/training/samples`, `DELETE /api/training/samples/{id}` —
//!   import (UJIIndoorLoc CSV), list and delete labelled samples;
//! - `POST /api/training`, `GET /api/training` — start a training job, watch it;
//! - `GET /api/models` — the stored model versions.

use super::error::{AppError, JsonBody, Query};
use super::paging::rfc3339;
use super::AppState;
use crate::positioning::read_uji;
use crate::storage::training::{
    CalibrationRecord, ModelSummary, NewCalibration, NewSample, SampleQuery, SampleRecord,
    SOURCE_BLE, SOURCE_IMPORT, SOURCE_WIFI,
};
use crate::training::job::{Job, JobState};
use crate::training::pipeline::{ble_key, wifi_key, Accuracy};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use roomsense_common::DeviceId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_calibration, list_calibrations))
        .routes(routes!(get_calibration))
        .routes(routes!(import_samples, list_samples, delete_samples))
        .routes(routes!(delete_sample))
        .routes(routes!(start_training, training_status))
        .routes(routes!(list_models))
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 10_000;
/// A label must be a plausible indoor coordinate (metres or the import's units).
const MAX_COORDINATE: f64 = 1e8;

fn parse_limit(limit: Option<i64>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(AppError::bad(
            "bad_limit",
            format!("limit: {n} must be from 1 to {MAX_LIMIT}"),
        )),
    }
}

fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, AppError> {
    cursor
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                AppError::bad(
                    "bad_cursor",
                    format!(
                        "cursor: {c:?} is not a cursor returned by this endpoint (next_cursor)"
                    ),
                )
            })
        })
        .transpose()
}

// ---------------------------------------------------------------------------------------
// Calibration

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalibrationRequest {
    /// The device at the known place: a BLE tag/phone id heard by receivers, or the node id
    /// of a device that reports WiFi scans.
    device: String,
    x: f64,
    y: f64,
    floor: i32,
    /// Building name; default: the configured building's name (or "0").
    building: Option<String>,
    /// How long the device stays there (1 s .. training.max_calibration).
    duration_s: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CalibrationView {
    id: i64,
    device: String,
    x: f64,
    y: f64,
    floor: i32,
    building: String,
    start: String,
    end: String,
    /// `collecting` (until end + training.calibration_grace), `done` or `failed`.
    state: String,
    /// Labelled samples the session produced.
    samples: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn calibration_view(c: CalibrationRecord) -> CalibrationView {
    CalibrationView {
        start: rfc3339(c.start_ms),
        end: rfc3339(c.end_ms),
        id: c.id,
        device: c.device,
        x: c.x,
        y: c.y,
        floor: c.floor,
        building: c.building,
        state: c.state,
        samples: c.samples,
        error: c.error,
    }
}

fn check_label(x: f64, y: f64) -> Result<(), AppError> {
    for (name, v) in [("x", x), ("y", y)] {
        if !v.is_finite() || v.abs() > MAX_COORDINATE {
            return Err(AppError::bad(
                "bad_label",
                format!("{name}: {v} is not a finite coordinate within ±{MAX_COORDINATE}"),
            ));
        }
    }
    Ok(())
}

fn check_building(b: &str) -> Result<(), AppError> {
    if b.is_empty() || b.len() > 128 || b.chars().any(char::is_control) {
        return Err(AppError::bad(
            "bad_label",
            format!("building: {b:?} must be 1 to 128 characters without control characters"),
        ));
    }
    Ok(())
}

/// Start a calibration: the device's readings of the next `duration_s` seconds become
/// labelled samples once the window (plus `training.calibration_grace`) has closed.
#[utoipa::path(post, path = "/api/calibration", tag = "training",
    request_body = CalibrationRequest,
    responses(
        (status = 202, description = "collecting", body = CalibrationView),
        (status = 400, description = "bad device, label or duration"),
    ))]
async fn start_calibration(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CalibrationRequest>,
) -> Result<Response, AppError> {
    let device = DeviceId::parse(&req.device)
        .map_err(|e| AppError::bad("bad_device_id", format!("device: {e}")))?;
    check_label(req.x, req.y)?;
    let max = s.training.config().max_calibration.as_secs_f64();
    if !(req.duration_s.is_finite() && req.duration_s >= 1.0 && req.duration_s <= max) {
        return Err(AppError::bad(
            "bad_duration",
            format!(
                "duration_s: {} must be from 1 to {max} seconds (training.max_calibration)",
                req.duration_s
            ),
        ));
    }
    let building = req.building.unwrap_or_else(|| default_building(&s));
    check_building(&building)?;
    let start_ms = chrono::Utc::now().timestamp_millis();
    let rec = s
        .store
        .create_calibration(&NewCalibration {
            device: device.to_string(),
            x: req.x,
            y: req.y,
            floor: req.floor,
            building,
            start_ms,
            end_ms: start_ms + (req.duration_s * 1000.0).round() as i64,
        })
        .await?;
    s.training.calibration_started();
    let location = format!("/api/calibration/{}", rec.id);
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(calibration_view(rec)),
    )
        .into_response())
}

fn default_building(s: &AppState) -> String {
    let name = &s.training.site().name;
    if name.is_empty() {
        "0".into()
    } else {
        name.clone()
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CalibrationParams {
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CalibrationPage {
    items: Vec<CalibrationView>,
    next_cursor: Option<String>,
}

/// Calibration sessions, newest first.
#[utoipa::path(get, path = "/api/calibration", tag = "training", params(CalibrationParams),
    responses((status = 200, body = CalibrationPage)))]
async fn list_calibrations(
    State(s): State<AppState>,
    Query(p): Query<CalibrationParams>,
) -> Result<Json<CalibrationPage>, AppError> {
    let limit = parse_limit(p.limit)?;
    let before = parse_cursor(p.cursor.as_deref())?;
    let rows = s.store.calibrations(before, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(CalibrationPage {
        items: rows.into_iter().map(calibration_view).collect(),
        next_cursor,
    }))
}

/// One calibration session.
#[utoipa::path(get, path = "/api/calibration/{id}", tag = "training",
    params(("id" = i64, Path, description = "session id")),
    responses((status = 200, body = CalibrationView), (status = 404, description = "no such session")))]
async fn get_calibration(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CalibrationView>, AppError> {
    let id: i64 = id.parse().map_err(|_| {
        AppError::bad(
            "bad_id",
            format!("id: {id:?} is not a calibration session id"),
        )
    })?;
    let rec = s.store.calibration(id).await?.ok_or_else(|| {
        AppError::not_found(
            "calibration_not_found",
            format!("no calibration session {id}"),
        )
    })?;
    Ok(Json(calibration_view(rec)))
}

// ---------------------------------------------------------------------------------------
// Samples

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ImportParams {
    /// What the file's signal columns are: `wifi` access points (default) or `ble` beacons.
    kind: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ImportResult {
    /// Labelled samples stored (rows with at least one detected emitter).
    imported: usize,
    /// Rows skipped because no emitter was detected in them.
    skipped_empty: usize,
    emitters: usize,
    buildings: Vec<String>,
    floors: Vec<i32>,
}

/// Import labelled samples from a UJIIndoorLoc-layout CSV (body): every column but the
/// label columns is an emitter, 100 = not detected. Errors name the line and column.
#[utoipa::path(post, path = "/api/training/samples", tag = "training", params(ImportParams),
    request_body(content = String, content_type = "text/csv", description = "UJIIndoorLoc CSV"),
    responses(
        (status = 201, body = ImportResult),
        (status = 400, description = "malformed file (line and column named)"),
        (status = 413, description = "larger than training.max_import_bytes"),
    ))]
async fn import_samples(
    State(s): State<AppState>,
    Query(p): Query<ImportParams>,
    body: Body,
) -> Result<Response, AppError> {
    // The body first (bounded): answering before it is read would leave the client's
    // keep-alive connection unusable for its next request.
    let max = s.training.config().max_import_bytes;
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| AppError::PayloadTooLarge {
            code: "file_too_large",
            message: format!("the file is larger than {max} bytes (training.max_import_bytes)"),
        })?;
    let key: fn(&str) -> String = match p.kind.as_deref() {
        None | Some("wifi") => wifi_key,
        Some("ble") => ble_key,
        Some(other) => {
            return Err(AppError::bad(
                "bad_kind",
                format!("kind: {other:?} is neither \"wifi\" nor \"ble\""),
            ))
        }
    };
    let parsed = tokio::task::spawn_blocking(move || {
        let data = read_uji(&bytes[..])?;
        let mut skipped = 0;
        let mut samples = Vec::with_capacity(data.samples.len());
        for smp in &data.samples {
            if smp.readings.is_empty() {
                skipped += 1;
                continue;
            }
            samples.push(NewSample {
                session_id: None,
                source: SOURCE_IMPORT.into(),
                device: None,
                x: smp.x,
                y: smp.y,
                floor: smp.floor,
                building: smp.building.to_string(),
                at_ms: None,
                readings: data
                    .named_readings(smp)
                    .into_iter()
                    .map(|(e, r)| (key(e), r))
                    .collect(),
            });
        }
        Ok::<_, crate::positioning::UjiError>((samples, skipped, data.emitters.len()))
    })
    .await?;
    let (samples, skipped_empty, emitters) =
        parsed.map_err(|e| AppError::bad("bad_csv", e.to_string()))?;
    if let Some((i, smp)) = samples
        .iter()
        .enumerate()
        .find(|(_, x)| !x.x.is_finite() || !x.y.is_finite())
    {
        return Err(AppError::bad(
            "bad_label",
            format!(
                "sample {}: LONGITUDE/LATITUDE ({}, {}) must be finite",
                i + 1,
                smp.x,
                smp.y
            ),
        ));
    }
    let mut buildings: Vec<String> = samples.iter().map(|x| x.building.clone()).collect();
    buildings.sort();
    buildings.dedup();
    let mut floors: Vec<i32> = samples.iter().map(|x| x.floor).collect();
    floors.sort_unstable();
    floors.dedup();
    s.store.insert_samples(&samples).await?;
    Ok((
        StatusCode::CREATED,
        Json(ImportResult {
            imported: samples.len(),
            skipped_empty,
            emitters,
            buildings,
            floors,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SampleParams {
    /// `ble`, `wifi` (calibration) or `import`.
    source: Option<String>,
    /// Calibration session id.
    session: Option<i64>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReadingView {
    emitter: String,
    rssi: f32,
}

#[derive(Debug, Serialize, ToSchema)]
struct SampleView {
    id: i64,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    x: f64,
    y: f64,
    floor: i32,
    building: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    readings: Vec<ReadingView>,
    created_at: String,
}

fn sample_view(r: SampleRecord) -> SampleView {
    SampleView {
        id: r.id,
        source: r.source,
        session: r.session_id,
        device: r.device,
        x: r.x,
        y: r.y,
        floor: r.floor,
        building: r.building,
        at: r.at_ms.map(rfc3339),
        readings: r
            .readings
            .into_iter()
            .map(|(emitter, rssi)| ReadingView { emitter, rssi })
            .collect(),
        created_at: rfc3339(r.created_ms),
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct SamplePage {
    items: Vec<SampleView>,
    next_cursor: Option<String>,
    /// Samples matching `source` (all sessions).
    total: i64,
}

fn parse_source(source: Option<&str>) -> Result<Option<String>, AppError> {
    match source {
        None => Ok(None),
        Some(v) if [SOURCE_BLE, SOURCE_WIFI, SOURCE_IMPORT].contains(&v) => Ok(Some(v.into())),
        Some(v) => Err(AppError::bad(
            "bad_source",
            format!("source: {v:?} is none of \"ble\", \"wifi\", \"import\""),
        )),
    }
}

/// Labelled samples in id order.
#[utoipa::path(get, path = "/api/training/samples", tag = "training", params(SampleParams),
    responses((status = 200, body = SamplePage)))]
async fn list_samples(
    State(s): State<AppState>,
    Query(p): Query<SampleParams>,
) -> Result<Json<SamplePage>, AppError> {
    let source = parse_source(p.source.as_deref())?;
    let limit = parse_limit(p.limit)?;
    let rows = s
        .store
        .samples(&SampleQuery {
            source: source.clone(),
            session_id: p.session,
            after_id: parse_cursor(p.cursor.as_deref())?,
            limit,
        })
        .await?;
    let total = s.store.count_samples(source.as_deref()).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(SamplePage {
        items: rows.into_iter().map(sample_view).collect(),
        next_cursor,
        total,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeleteParams {
    /// Only samples of this source (`ble`, `wifi`, `import`); absent = every sample.
    source: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Deleted {
    deleted: u64,
}

/// Delete labelled samples (of one source, or all). Models already trained are kept.
#[utoipa::path(delete, path = "/api/training/samples", tag = "training", params(DeleteParams),
    responses((status = 200, body = Deleted)))]
async fn delete_samples(
    State(s): State<AppState>,
    Query(p): Query<DeleteParams>,
) -> Result<Json<Deleted>, AppError> {
    let source = parse_source(p.source.as_deref())?;
    let deleted = s.store.delete_samples(source.as_deref()).await?;
    Ok(Json(Deleted { deleted }))
}

/// Delete one labelled sample.
#[utoipa::path(delete, path = "/api/training/samples/{id}", tag = "training",
    params(("id" = i64, Path, description = "sample id")),
    responses((status = 204), (status = 404, description = "no such sample")))]
async fn delete_sample(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::bad("bad_id", format!("id: {id:?} is not a sample id")))?;
    if s.store.delete_sample(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(
            "sample_not_found",
            format!("no sample {id}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Training jobs and models

#[derive(Debug, Serialize, ToSchema)]
struct ActiveModelView {
    version: i64,
    created_at: String,
    accuracy: Accuracy,
}

#[derive(Debug, Serialize, ToSchema)]
struct JobView {
    /// idle → running → succeeded | failed.
    state: JobState,
    /// 0..1.
    progress: f32,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    error: Option<String>,
    /// Samples the job trained on.
    samples: Option<usize>,
    /// Version stored by the job.
    model_version: Option<i64>,
    /// Cross-validated accuracy of the job's model.
    accuracy: Option<Accuracy>,
    /// The model in use (the newest good one), whatever this job did.
    active_model: Option<ActiveModelView>,
}

fn job_view(j: Job, s: &AppState) -> JobView {
    let now = chrono::Utc::now().timestamp_millis();
    JobView {
        state: j.state,
        progress: j.progress,
        started_at: j.started_ms.map(rfc3339),
        finished_at: j.finished_ms.map(rfc3339),
        duration_ms: j.duration_ms(now),
        error: j.error,
        samples: j.samples,
        model_version: j.model_version,
        accuracy: j.accuracy,
        active_model: s.training.active().map(|m| ActiveModelView {
            version: m.version,
            created_at: rfc3339(m.created_ms),
            accuracy: m.accuracy.clone(),
        }),
    }
}

/// Start a training job on the stored samples (cross-validated fingerprint model and
/// receiver path-loss fits). Poll `GET /api/training`.
#[utoipa::path(post, path = "/api/training", tag = "training",
    responses(
        (status = 202, description = "started", body = JobView),
        (status = 409, description = "a job is already running"),
    ))]
async fn start_training(State(s): State<AppState>) -> Result<Response, AppError> {
    let job = s.training.start_job().map_err(|e| {
        AppError::conflict("training_running", format!("{e}; poll GET /api/training"))
    })?;
    Ok((StatusCode::ACCEPTED, Json(job_view(job, &s))).into_response())
}

/// The current (or last) training job and the model in use.
#[utoipa::path(get, path = "/api/training", tag = "training",
    responses((status = 200, body = JobView)))]
async fn training_status(State(s): State<AppState>) -> Json<JobView> {
    Json(job_view(s.training.job(), &s))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ModelParams {
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ModelView {
    version: i64,
    created_at: String,
    /// The model `POST /api/position` and the live path use.
    active: bool,
    /// Samples in the radio map.
    samples: i64,
    training_ms: i64,
    /// Hyper-parameters chosen by cross-validation.
    #[schema(value_type = Object)]
    params: serde_json::Value,
    #[schema(value_type = Object)]
    accuracy: serde_json::Value,
    /// Receivers' fitted path-loss parameters (and why others were not fitted).
    #[schema(value_type = Object)]
    path_loss: serde_json::Value,
}

fn model_view(m: ModelSummary, active: Option<i64>) -> ModelView {
    let json = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
    ModelView {
        active: active == Some(m.version),
        created_at: rfc3339(m.created_ms),
        params: json(&m.params),
        accuracy: json(&m.report),
        path_loss: json(&m.path_loss),
        version: m.version,
        samples: m.samples,
        training_ms: m.duration_ms,
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct ModelList {
    items: Vec<ModelView>,
}

/// Stored model versions, newest first.
#[utoipa::path(get, path = "/api/models", tag = "training", params(ModelParams),
    responses((status = 200, body = ModelList)))]
async fn list_models(
    State(s): State<AppState>,
    Query(p): Query<ModelParams>,
) -> Result<Json<ModelList>, AppError> {
    let limit = parse_limit(p.limit)?;
    let active = s.training.active().map(|m| m.version);
    let items = s
        .store
        .models(limit)
        .await?
        .into_iter()
        .map(|m| model_view(m, active))
        .collect();
    Ok(Json(ModelList { items }))
}
