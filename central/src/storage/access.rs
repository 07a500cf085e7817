//! Stored access events (see `crate::access`): written by the access engine, read by time
//! range with keyset pagination.

use super::StoreError;
use async_trait::async_trait;
use serde::Serialize;

/// An access event to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAccessEvent {
    pub kind: String,
    pub at_ms: i64,
    pub room: String,
    pub device: Option<String>,
    pub person: Option<String>,
    /// JSON object.
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AccessEventRecord {
    pub id: i64,
    pub kind: String,
    pub at_ms: i64,
    pub room: String,
    pub device: Option<String>,
    pub person: Option<String>,
    pub evidence: String,
    pub stored_at_ms: i64,
}

/// Rows ordered by `(at_ms, id)`, strictly after `after`, `start <= at_ms < end`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessQuery {
    pub room: Option<String>,
    pub device: Option<String>,
    pub kind: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores the events in one transaction; returns their ids in order.
    async fn insert_access_events(&self, events: &[NewAccessEvent])
        -> Result<Vec<i64>, StoreError>;
    async fn access_events(&self, q: &AccessQuery) -> Result<Vec<AccessEventRecord>, StoreError>;
}

macro_rules! impl_access_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::access::AccessStore for $store {
            async fn insert_access_events(
                &self,
                events: &[$crate::storage::access::NewAccessEvent],
            ) -> Result<Vec<i64>, $crate::storage::StoreError> {
                let stored = chrono::Utc::now().timestamp_millis();
                let mut ids = Vec::with_capacity(events.len());
                let mut tx = self.begin_write().await?;
                for chunk in $crate::storage::sql::chunked(events) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO access_events (kind, at_ms, room, device, person, evidence, stored_at_ms) ",
                    );
                    qb.push_values(chunk, |mut r, e| {
                        r.push_bind(e.kind.as_str())
                            .push_bind(e.at_ms)
                            .push_bind(e.room.as_str())
                            .push_bind(e.device.as_deref())
                            .push_bind(e.person.as_deref())
                            .push_bind(e.evidence.as_str())
                            .push_bind(stored);
                    });
                    qb.push(" RETURNING id");
                    let rows: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                    ids.extend(rows.into_iter().map(|r| r.0));
                }
                tx.commit().await?;
                Ok(ids)
            }

            async fn access_events(
                &self,
                q: &$crate::storage::access::AccessQuery,
            ) -> Result<Vec<$crate::storage::access::AccessEventRecord>, $crate::storage::StoreError>
            {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, kind, at_ms, room, device, person, evidence, stored_at_ms FROM access_events WHERE 1 = 1",
                );
                if let Some(v) = &q.room {
                    qb.push(" AND room = ").push_bind(v.as_str());
                }
                if let Some(v) = &q.device {
                    qb.push(" AND device = ").push_bind(v.as_str());
                }
                if let Some(v) = &q.kind {
                    qb.push(" AND kind = ").push_bind(v.as_str());
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
        }
    };
}

pub(super) use impl_access_store;
