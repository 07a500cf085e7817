//! The durable outbox (SQLite through sqlx): batches wait here until central has committed
//! them. `seq` comes from here and keeps increasing across restarts; the table has a size
//! bound and drops the oldest batches (counting their observations) when full. It also keeps
//! small facts that must survive restarts: the source cursor (everything observed before it
//! is in a batch) and the privacy salt.

use crate::batch::Pending;
use chrono::{DateTime, Utc};
use roomsense_common::{NodeId, TopicKind};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// One stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBatch {
    pub seq: u64,
    pub kind: TopicKind,
    pub items: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("outbox: {0}")]
    Db(#[from] sqlx::Error),
}

/// The outbox. Cheap to share behind an `Arc`; one SQLite connection serialises access.
#[derive(Debug)]
pub struct Outbox {
    pool: SqlitePool,
    node: NodeId,
    max_batches: u64,
    next_seq: tokio::sync::Mutex<u64>,
    depth: AtomicU64,
    depth_items: AtomicU64,
    dropped: AtomicU64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    items INTEGER NOT NULL,
    observations INTEGER NOT NULL,
    payload BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);";

impl Outbox {
    /// Opens (or creates) the outbox file; the directory must exist.
    pub async fn open(path: &Path, node: NodeId, max_batches: u64) -> Result<Outbox, OutboxError> {
        let open_err = |source| OutboxError::Open {
            path: path.display().to_string(),
            source,
        };
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A process crash (kill -9) loses nothing with WAL + NORMAL; a power loss may
            // lose the last transactions, which were then not yet sent either.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(open_err)?;
        let row = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS max_seq, COUNT(*) AS n, COALESCE(SUM(items), 0) AS items FROM batches",
        )
        .fetch_one(&pool)
        .await?;
        let max_seq: i64 = row.try_get("max_seq")?;
        let n: i64 = row.try_get("n")?;
        let items: i64 = row.try_get("items")?;
        let ob = Outbox {
            pool,
            node,
            max_batches,
            next_seq: tokio::sync::Mutex::new(1),
            depth: AtomicU64::new(n as u64),
            depth_items: AtomicU64::new(items as u64),
            dropped: AtomicU64::new(0),
        };
        let stored_next = ob.meta_i64("next_seq").await?.unwrap_or(1);
        *ob.next_seq.lock().await = (stored_next.max(max_seq + 1)).max(1) as u64;
        let dropped = ob.meta_i64("dropped").await?.unwrap_or(0);
        ob.dropped.store(dropped.max(0) as u64, Ordering::Relaxed);
        Ok(ob)
    }

    /// Batches waiting.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Items (sightings, transitions, readings) waiting.
    pub fn depth_items(&self) -> u64 {
        self.depth_items.load(Ordering::Relaxed)
    }

    /// Observations dropped because the outbox was full, since it was created.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The seq the next batch will get.
    pub async fn next_seq(&self) -> u64 {
        *self.next_seq.lock().await
    }

    pub async fn meta_i64(&self, key: &str) -> Result<Option<i64>, OutboxError> {
        Ok(self.meta(key).await?.and_then(|v| v.parse().ok()))
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, OutboxError> {
        let v: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v)
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), OutboxError> {
        sqlx::query("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores batches (giving them their seqs) and, in the same transaction, the meta
    /// values (e.g. the source cursor). Drops the oldest batches beyond the bound.
    /// Returns the seqs given.
    pub async fn insert(
        &self,
        batches: &[Pending],
        meta: &[(&str, String)],
        now: DateTime<Utc>,
    ) -> Result<Vec<u64>, OutboxError> {
        let mut next = self.next_seq.lock().await;
        let mut seq = *next;
        let mut seqs = Vec::with_capacity(batches.len());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut added_items = 0u64;
        for b in batches.iter().filter(|b| !b.is_empty()) {
            let payload = b.encode(&self.node, seq, now);
            sqlx::query("INSERT INTO batches(seq, kind, items, observations, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(seq as i64)
                .bind(b.kind().as_str())
                .bind(b.len() as i64)
                .bind(b.observations() as i64)
                .bind(payload)
                .bind(now.timestamp_millis())
                .execute(&mut *tx)
                .await?;
            added_items += b.len() as u64;
            seqs.push(seq);
            seq += 1;
        }
        sqlx::query("INSERT INTO meta(key, value) VALUES ('next_seq', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(seq.to_string())
            .execute(&mut *tx)
            .await?;
        for (k, v) in meta {
            sqlx::query("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                .bind(*k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        let depth = self.depth() + seqs.len() as u64;
        let mut dropped_batches = 0u64;
        let mut dropped_items = 0u64;
        let mut dropped_obs = 0u64;
        if depth > self.max_batches {
            let excess = (depth - self.max_batches) as i64;
            let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(items), 0) AS items, COALESCE(SUM(observations), 0) AS obs FROM (SELECT items, observations FROM batches ORDER BY seq LIMIT ?)")
                .bind(excess)
                .fetch_one(&mut *tx)
                .await?;
            dropped_batches = row.try_get::<i64, _>("n")? as u64;
            dropped_items = row.try_get::<i64, _>("items")? as u64;
            dropped_obs = row.try_get::<i64, _>("obs")? as u64;
            sqlx::query(
                "DELETE FROM batches WHERE seq IN (SELECT seq FROM batches ORDER BY seq LIMIT ?)",
            )
            .bind(excess)
            .execute(&mut *tx)
            .await?;
            let total = self.dropped() + dropped_obs;
            sqlx::query("INSERT INTO meta(key, value) VALUES ('dropped', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                .bind(total.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        *next = seq;
        self.depth.store(depth - dropped_batches, Ordering::Relaxed);
        self.depth_items.store(
            (self.depth_items() + added_items).saturating_sub(dropped_items),
            Ordering::Relaxed,
        );
        if dropped_obs > 0 {
            self.dropped.fetch_add(dropped_obs, Ordering::Relaxed);
            tracing::warn!(
                batches = dropped_batches,
                observations = dropped_obs,
                "outbox full: dropped the oldest batches"
            );
        }
        Ok(seqs)
    }

    /// Up to `limit` batches with a seq above `after`, oldest first.
    pub async fn fetch_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredBatch>, OutboxError> {
        let rows = sqlx::query(
            "SELECT seq, kind, items, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// One batch, if it is still waiting.
    pub async fn get(&self, seq: u64) -> Result<Option<StoredBatch>, OutboxError> {
        let row = sqlx::query("SELECT seq, kind, items, payload FROM batches WHERE seq = ?")
            .bind(seq as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored).transpose()
    }

    /// Removes committed batches; returns how many were still there.
    pub async fn delete(&self, seqs: &[u64]) -> Result<u64, OutboxError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let list = serde_json::to_string(seqs).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let items: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(items), 0) FROM batches WHERE seq IN (SELECT value FROM json_each(?))")
            .bind(&list)
            .fetch_one(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM batches WHERE seq IN (SELECT value FROM json_each(?))")
            .bind(&list)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(n))
            });
        let _ = self
            .depth_items
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(items.max(0) as u64))
            });
        Ok(n)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn stored(row: &sqlx::sqlite::SqliteRow) -> Result<StoredBatch, OutboxError> {
    let kind: String = row.try_get("kind")?;
    Ok(StoredBatch {
        seq: row.try_get::<i64, _>("seq")? as u64,
        kind: TopicKind::parse(&kind).unwrap_or(TopicKind::Ble),
        items: row.try_get::<i64, _>("items")? as u64,
        payload: row.try_get("payload")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use roomsense_common::{DoorId, DoorState, DoorTransition};

    fn door(n: usize) -> Pending {
        Pending::Door(
            (0..n)
                .map(|i| DoorTransition {
                    door: DoorId::parse("front").unwrap(),
                    state: if i % 2 == 0 {
                        DoorState::Open
                    } else {
                        DoorState::Closed
                    },
                    at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
                })
                .collect(),
        )
    }

    #[tokio::test]
    async fn seq_survives_reopen_and_bound_drops_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.db");
        let node = NodeId::parse("pi-1").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
        let ob = Outbox::open(&p, node.clone(), 3).await.unwrap();
        let s = ob
            .insert(&[door(1), door(2)], &[("cursor_ms", "42".into())], now)
            .await
            .unwrap();
        assert_eq!(s, vec![1, 2]);
        assert_eq!(ob.delete(&[1, 2, 99]).await.unwrap(), 2);
        assert_eq!(ob.depth(), 0);
        ob.close().await;
        drop(ob);

        let ob = Outbox::open(&p, node, 3).await.unwrap();
        assert_eq!(ob.meta_i64("cursor_ms").await.unwrap(), Some(42));
        let s = ob
            .insert(&[door(1), door(1), door(1), door(2), door(3)], &[], now)
            .await
            .unwrap();
        assert_eq!(s, vec![3, 4, 5, 6, 7]);
        assert_eq!(ob.depth(), 3);
        assert_eq!(ob.dropped(), 2);
        let rows = ob.fetch_after(0, 10).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert_eq!(ob.depth_items(), 6);
        assert!(ob.get(3).await.unwrap().is_none());
        let b = ob.get(7).await.unwrap().unwrap();
        let m = roomsense_common::protocol::decode(
            &NodeId::parse("pi-1").unwrap(),
            b.kind,
            &b.payload,
            now,
        )
        .unwrap();
        assert_eq!(m.len(), 3);
    }
}
