//! Stored position history (see `crate::live`): written in batches by the positioning
//! task, read by device, room and time range with keyset pagination.

use super::StoreError;
use async_trait::async_trait;
use serde::Serialize;

/// One stored position estimate of a device.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PositionRecord {
    /// 0 for a row not stored yet.
    pub id: i64,
    pub device: String,
    pub at_ms: i64,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: String,
    pub room: Option<String>,
    /// The room differs from the device's previous stored row (or this is its first row).
    pub room_changed: bool,
    pub confidence: f64,
    pub error_radius_m: f64,
    pub method: String,
    pub receivers: i32,
    pub stored_at_ms: i64,
}

/// Rows ordered by `(at_ms, id)`, strictly after `after`, `start <= at_ms < end`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionQuery {
    pub device: Option<String>,
    pub room: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

#[async_trait]
pub trait PositionStore: Send + Sync {
    /// Stores the rows in one transaction (`id` and `stored_at_ms` are assigned); returns
    /// their ids in order.
    async fn insert_positions(&self, rows: &[PositionRecord]) -> Result<Vec<i64>, StoreError>;
    async fn positions(&self, q: &PositionQuery) -> Result<Vec<PositionRecord>, StoreError>;
    /// The newest stored row of `device` (by `at_ms`, then `id`).
    async fn latest_position(&self, device: &str) -> Result<Option<PositionRecord>, StoreError>;
}

pub(super) const POSITION_COLUMNS: &str = "id, device, at_ms, x, y, floor, building, room, room_changed, confidence, error_radius_m, method, receivers, stored_at_ms";

macro_rules! impl_position_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::positions::PositionStore for $store {
            async fn insert_positions(
                &self,
                rows: &[$crate::storage::positions::PositionRecord],
            ) -> Result<Vec<i64>, $crate::storage::StoreError> {
                let stored = chrono::Utc::now().timestamp_millis();
                let mut ids = Vec::with_capacity(rows.len());
                if rows.is_empty() {
                    return Ok(ids);
                }
                let mut tx = self.begin_write().await?;
                for chunk in $crate::storage::sql::chunked(rows) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO positions (device, at_ms, x, y, floor, building, room, room_changed, confidence, error_radius_m, method, receivers, stored_at_ms) ",
                    );
                    qb.push_values(chunk, |mut r, p| {
                        r.push_bind(p.device.as_str())
                            .push_bind(p.at_ms)
                            .push_bind(p.x)
                            .push_bind(p.y)
                            .push_bind(p.floor)
                            .push_bind(p.building.as_str())
                            .push_bind(p.room.as_deref())
                            .push_bind(p.room_changed)
                            .push_bind(p.confidence)
                            .push_bind(p.error_radius_m)
                            .push_bind(p.method.as_str())
                            .push_bind(p.receivers)
                            .push_bind(stored);
                    });
                    qb.push(" RETURNING id");
                    let rows: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                    ids.extend(rows.into_iter().map(|r| r.0));
                }
                tx.commit().await?;
                Ok(ids)
            }

            async fn positions(
                &self,
                q: &$crate::storage::positions::PositionQuery,
            ) -> Result<Vec<$crate::storage::positions::PositionRecord>, $crate::storage::StoreError>
            {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::positions::POSITION_COLUMNS)
                    .push(" FROM positions WHERE 1 = 1");
                if let Some(v) = &q.device {
                    qb.push(" AND device = ").push_bind(v.as_str());
                }
                if let Some(v) = &q.room {
                    qb.push(" AND room = ").push_bind(v.as_str());
                }
                if let Some(v) = q.start_ms {
                    qb.push(" AND at_ms >= ").push_bind(v);
                }
                if let Some(v) = q.end_ms {
                    qb.push(" AND at_ms < ").push_bind(v);
                }
                if let Some((at, id)) = q.after {
                    qb.push(" AND (at_ms > ")
                        .push_bind(at)
                        .push(" OR (at_ms = ")
                        .push_bind(at)
                        .push(" AND id > ")
                        .push_bind(id)
                        .push("))");
                }
                qb.push(" ORDER BY at_ms, id LIMIT ").push_bind(q.limit);
                Ok(qb.build_query_as().fetch_all(&self.readers).await?)
            }

            async fn latest_position(
                &self,
                device: &str,
            ) -> Result<Option<$crate::storage::positions::PositionRecord>, $crate::storage::StoreError>
            {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::positions::POSITION_COLUMNS)
                    .push(" FROM positions WHERE device = ")
                    .push_bind(device)
                    .push(" ORDER BY at_ms DESC, id DESC LIMIT 1");
                Ok(qb.build_query_as().fetch_optional(&self.readers).await?)
            }
        }
    };
}

pub(super) use impl_position_store;
