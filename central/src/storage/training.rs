//! Training data: calibration sessions, labelled fingerprint samples and versioned models.
//! One body of SQL for both backends (`impl_training_store!`), checked by the contract suite
//! (`contract_training.rs`).

use super::StoreError;
use async_trait::async_trait;
use serde::Serialize;

/// Where a sample came from.
pub const SOURCE_BLE: &str = "ble";
pub const SOURCE_WIFI: &str = "wifi";
pub const SOURCE_IMPORT: &str = "import";

/// A labelled fingerprint to store: readings `(emitter, dBm)` taken at a known place.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSample {
    pub session_id: Option<i64>,
    /// `ble` or `wifi` (calibration) or `import`.
    pub source: String,
    pub device: Option<String>,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: String,
    pub at_ms: Option<i64>,
    /// Emitters are `wifi:<bssid>` or `ble:<id>`.
    pub readings: Vec<(String, f32)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRecord {
    pub id: i64,
    pub session_id: Option<i64>,
    pub source: String,
    pub device: Option<String>,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: String,
    pub at_ms: Option<i64>,
    pub readings: Vec<(String, f32)>,
    pub created_ms: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct SampleRow {
    id: i64,
    session_id: Option<i64>,
    source: String,
    device: Option<String>,
    x: f64,
    y: f64,
    floor: i64,
    building: String,
    at_ms: Option<i64>,
    readings: String,
    created_ms: i64,
}

impl SampleRow {
    pub(super) fn into_record(self) -> Result<SampleRecord, StoreError> {
        let readings = serde_json::from_str(&self.readings)
            .map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))))?;
        Ok(SampleRecord {
            id: self.id,
            session_id: self.session_id,
            source: self.source,
            device: self.device,
            x: self.x,
            y: self.y,
            floor: clamp_i32(self.floor),
            building: self.building,
            at_ms: self.at_ms,
            readings,
            created_ms: self.created_ms,
        })
    }
}

pub(super) fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

pub(super) fn readings_json(r: &[(String, f32)]) -> String {
    // A Vec of (String, f32) always serializes.
    serde_json::to_string(r).unwrap_or_else(|_| "[]".into())
}

/// Samples ordered by id, strictly after `after_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleQuery {
    pub source: Option<String>,
    pub session_id: Option<i64>,
    pub after_id: Option<i64>,
    pub limit: i64,
}

/// "Device D is at (x, y, floor) from start to end": readings in that window become samples.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCalibration {
    pub device: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

pub const CALIBRATION_COLLECTING: &str = "collecting";
pub const CALIBRATION_DONE: &str = "done";
pub const CALIBRATION_FAILED: &str = "failed";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationRecord {
    pub id: i64,
    pub device: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `collecting`, `done` or `failed`.
    pub state: String,
    pub samples: i64,
    pub error: Option<String>,
    pub created_ms: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct CalibrationRow {
    id: i64,
    device: String,
    x: f64,
    y: f64,
    floor: i64,
    building: String,
    start_ms: i64,
    end_ms: i64,
    state: String,
    samples: i64,
    error: Option<String>,
    created_ms: i64,
}

impl From<CalibrationRow> for CalibrationRecord {
    fn from(r: CalibrationRow) -> Self {
        Self {
            id: r.id,
            device: r.device,
            x: r.x,
            y: r.y,
            floor: clamp_i32(r.floor),
            building: r.building,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            state: r.state,
            samples: r.samples,
            error: r.error,
            created_ms: r.created_ms,
        }
    }
}

/// A trained model to store; every field but the counts is JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    pub samples: i64,
    pub duration_ms: i64,
    pub params: String,
    pub report: String,
    pub path_loss: String,
    pub model: String,
}

/// A stored model without its (large) serialized body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ModelSummary {
    pub version: i64,
    pub created_ms: i64,
    pub samples: i64,
    pub duration_ms: i64,
    pub params: String,
    pub report: String,
    pub path_loss: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelRecord {
    pub version: i64,
    pub created_ms: i64,
    pub samples: i64,
    pub duration_ms: i64,
    pub params: String,
    pub report: String,
    pub path_loss: String,
    pub model: String,
}

#[async_trait]
pub trait TrainingStore: Send + Sync {
    /// Stores the samples in one transaction; returns their ids in order.
    async fn insert_samples(&self, samples: &[NewSample]) -> Result<Vec<i64>, StoreError>;
    async fn samples(&self, q: &SampleQuery) -> Result<Vec<SampleRecord>, StoreError>;
    async fn count_samples(&self, source: Option<&str>) -> Result<i64, StoreError>;
    /// `true` when the sample existed.
    async fn delete_sample(&self, id: i64) -> Result<bool, StoreError>;
    /// Deletes every sample (of `source` when given); returns how many.
    async fn delete_samples(&self, source: Option<&str>) -> Result<u64, StoreError>;

    async fn create_calibration(&self, c: &NewCalibration)
        -> Result<CalibrationRecord, StoreError>;
    async fn calibration(&self, id: i64) -> Result<Option<CalibrationRecord>, StoreError>;
    /// Newest first, ids below `before_id` when given.
    async fn calibrations(
        &self,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CalibrationRecord>, StoreError>;
    /// Sessions still collecting, soonest end first.
    async fn collecting_calibrations(&self) -> Result<Vec<CalibrationRecord>, StoreError>;
    /// Stores the session's samples and marks it `done` (or `failed` with `error`) in one
    /// transaction; a session no longer collecting is left alone (returns `false`).
    async fn finish_calibration(
        &self,
        id: i64,
        samples: &[NewSample],
        error: Option<&str>,
    ) -> Result<bool, StoreError>;

    async fn insert_model(&self, m: &NewModel) -> Result<ModelSummary, StoreError>;
    /// Newest first.
    async fn models(&self, limit: i64) -> Result<Vec<ModelSummary>, StoreError>;
    async fn model(&self, version: i64) -> Result<Option<ModelRecord>, StoreError>;
    async fn latest_model(&self) -> Result<Option<ModelRecord>, StoreError>;
}

pub(super) const SAMPLE_COLUMNS: &str =
    "id, session_id, source, device, x, y, floor, building, at_ms, readings, created_ms";
pub(super) const CALIBRATION_COLUMNS: &str =
    "id, device, x, y, floor, building, start_ms, end_ms, state, samples, error, created_ms";

/// Multi-row INSERT of samples inside a transaction.
macro_rules! insert_sample_rows {
    ($db:ty, $tx:expr, $samples:expr, $created:expr, $ids:expr) => {
        for chunk in $crate::storage::sql::chunked($samples) {
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO calibration_samples (session_id, source, device, x, y, floor, building, at_ms, readings, created_ms) ",
            );
            qb.push_values(chunk, |mut r, s| {
                r.push_bind(s.session_id)
                    .push_bind(s.source.as_str())
                    .push_bind(s.device.as_deref())
                    .push_bind(s.x)
                    .push_bind(s.y)
                    .push_bind(i64::from(s.floor))
                    .push_bind(s.building.as_str())
                    .push_bind(s.at_ms)
                    .push_bind($crate::storage::training::readings_json(&s.readings))
                    .push_bind($created);
            });
            qb.push(" RETURNING id");
            let rows: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut *$tx).await?;
            $ids.extend(rows.into_iter().map(|r| r.0));
        }
    };
}
pub(super) use insert_sample_rows;

macro_rules! impl_training_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::training::TrainingStore for $store {
            async fn insert_samples(
                &self,
                samples: &[$crate::storage::training::NewSample],
            ) -> Result<Vec<i64>, $crate::storage::StoreError> {
                let created = chrono::Utc::now().timestamp_millis();
                let mut ids = Vec::with_capacity(samples.len());
                let mut tx = self.begin_write().await?;
                $crate::storage::training::insert_sample_rows!($db, tx, samples, created, ids);
                tx.commit().await?;
                Ok(ids)
            }

            async fn samples(
                &self,
                q: &$crate::storage::training::SampleQuery,
            ) -> Result<Vec<$crate::storage::training::SampleRecord>, $crate::storage::StoreError>
            {
                use $crate::storage::training::*;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push(SAMPLE_COLUMNS)
                    .push(" FROM calibration_samples WHERE 1 = 1");
                if let Some(v) = &q.source {
                    qb.push(" AND source = ").push_bind(v.as_str());
                }
                if let Some(v) = q.session_id {
                    qb.push(" AND session_id = ").push_bind(v);
                }
                if let Some(v) = q.after_id {
                    qb.push(" AND id > ").push_bind(v);
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit);
                let rows: Vec<SampleRow> = qb.build_query_as().fetch_all(&self.readers).await?;
                rows.into_iter().map(SampleRow::into_record).collect()
            }

            async fn count_samples(
                &self,
                source: Option<&str>,
            ) -> Result<i64, $crate::storage::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) FROM calibration_samples WHERE 1 = 1",
                );
                if let Some(v) = source {
                    qb.push(" AND source = ").push_bind(v);
                }
                let (n,): (i64,) = qb.build_query_as().fetch_one(&self.readers).await?;
                Ok(n)
            }

            async fn delete_sample(&self, id: i64) -> Result<bool, $crate::storage::StoreError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM calibration_samples WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(done > 0)
            }

            async fn delete_samples(
                &self,
                source: Option<&str>,
            ) -> Result<u64, $crate::storage::StoreError> {
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("DELETE FROM calibration_samples WHERE 1 = 1");
                if let Some(v) = source {
                    qb.push(" AND source = ").push_bind(v);
                }
                let mut tx = self.begin_write().await?;
                let n = qb.build().execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok(n)
            }

            async fn create_calibration(
                &self,
                c: &$crate::storage::training::NewCalibration,
            ) -> Result<$crate::storage::training::CalibrationRecord, $crate::storage::StoreError>
            {
                use $crate::storage::training::*;
                let created = chrono::Utc::now().timestamp_millis();
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO calibration_sessions (device, x, y, floor, building, start_ms, end_ms, state, samples, created_ms) VALUES (",
                );
                {
                    let mut sep = qb.separated(", ");
                    sep.push_bind(c.device.as_str())
                        .push_bind(c.x)
                        .push_bind(c.y)
                        .push_bind(i64::from(c.floor))
                        .push_bind(c.building.as_str())
                        .push_bind(c.start_ms)
                        .push_bind(c.end_ms)
                        .push_bind(CALIBRATION_COLLECTING)
                        .push_bind(0i64)
                        .push_bind(created);
                }
                qb.push(") RETURNING ").push(CALIBRATION_COLUMNS);
                let mut tx = self.begin_write().await?;
                let row: CalibrationRow = qb.build_query_as().fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok(row.into())
            }

            async fn calibration(
                &self,
                id: i64,
            ) -> Result<Option<$crate::storage::training::CalibrationRecord>, $crate::storage::StoreError>
            {
                use $crate::storage::training::*;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push(CALIBRATION_COLUMNS)
                    .push(" FROM calibration_sessions WHERE id = ")
                    .push_bind(id);
                let row: Option<CalibrationRow> =
                    qb.build_query_as().fetch_optional(&self.readers).await?;
                Ok(row.map(Into::into))
            }

            async fn calibrations(
                &self,
                before_id: Option<i64>,
                limit: i64,
            ) -> Result<Vec<$crate::storage::training::CalibrationRecord>, $crate::storage::StoreError>
            {
                use $crate::storage::training::*;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push(CALIBRATION_COLUMNS)
                    .push(" FROM calibration_sessions WHERE 1 = 1");
                if let Some(v) = before_id {
                    qb.push(" AND id < ").push_bind(v);
                }
                qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
                let rows: Vec<CalibrationRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn collecting_calibrations(
                &self,
            ) -> Result<Vec<$crate::storage::training::CalibrationRecord>, $crate::storage::StoreError>
            {
                use $crate::storage::training::*;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push(CALIBRATION_COLUMNS)
                    .push(" FROM calibration_sessions WHERE state = ")
                    .push_bind(CALIBRATION_COLLECTING)
                    .push(" ORDER BY end_ms, id");
                let rows: Vec<CalibrationRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn finish_calibration(
                &self,
                id: i64,
                samples: &[$crate::storage::training::NewSample],
                error: Option<&str>,
            ) -> Result<bool, $crate::storage::StoreError> {
                use $crate::storage::training::*;
                let created = chrono::Utc::now().timestamp_millis();
                let state = if error.is_some() {
                    CALIBRATION_FAILED
                } else {
                    CALIBRATION_DONE
                };
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE calibration_sessions SET state = $1, samples = $2, error = $3 WHERE id = $4 AND state = $5",
                )
                .bind(state)
                .bind(samples.len() as i64)
                .bind(error)
                .bind(id)
                .bind(CALIBRATION_COLLECTING)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let mut ids: Vec<i64> = Vec::with_capacity(samples.len());
                insert_sample_rows!($db, tx, samples, created, ids);
                tx.commit().await?;
                Ok(true)
            }

            async fn insert_model(
                &self,
                m: &$crate::storage::training::NewModel,
            ) -> Result<$crate::storage::training::ModelSummary, $crate::storage::StoreError>
            {
                let created = chrono::Utc::now().timestamp_millis();
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as(
                    "INSERT INTO models (created_ms, samples, duration_ms, params, report, path_loss, model) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING version, created_ms, samples, duration_ms, params, report, path_loss",
                )
                .bind(created)
                .bind(m.samples)
                .bind(m.duration_ms)
                .bind(m.params.as_str())
                .bind(m.report.as_str())
                .bind(m.path_loss.as_str())
                .bind(m.model.as_str())
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn models(
                &self,
                limit: i64,
            ) -> Result<Vec<$crate::storage::training::ModelSummary>, $crate::storage::StoreError>
            {
                Ok(sqlx::query_as(
                    "SELECT version, created_ms, samples, duration_ms, params, report, path_loss FROM models ORDER BY version DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.readers)
                .await?)
            }

            async fn model(
                &self,
                version: i64,
            ) -> Result<Option<$crate::storage::training::ModelRecord>, $crate::storage::StoreError>
            {
                Ok(sqlx::query_as(
                    "SELECT version, created_ms, samples, duration_ms, params, report, path_loss, model FROM models WHERE version = $1",
                )
                .bind(version)
                .fetch_optional(&self.readers)
                .await?)
            }

            async fn latest_model(
                &self,
            ) -> Result<Option<$crate::storage::training::ModelRecord>, $crate::storage::StoreError>
            {
                Ok(sqlx::query_as(
                    "SELECT version, created_ms, samples, duration_ms, params, report, path_loss, model FROM models ORDER BY version DESC LIMIT 1",
                )
                .fetch_optional(&self.readers)
                .await?)
            }
        }
    };
}

pub(super) use impl_training_store;
