//! Storage behind one `Store` trait, with SQLite and Postgres implementations chosen by the
//! database URL. All runtime SQL lives in this module; both backends share one SQL body
//! (`sql.rs`) and one contract test suite (`tests/`).

pub mod access;
pub mod model;
pub mod positions;
mod postgres;
mod sql;
mod sqlite;
pub mod tokens;
pub mod training;

#[cfg(test)]
mod contract;
#[cfg(test)]
mod contract_access;
#[cfg(test)]
mod contract_model;
#[cfg(test)]
mod contract_positions;
#[cfg(test)]
mod contract_tokens;
#[cfg(test)]
mod contract_training;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use roomsense_common::protocol::Message;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("bad database URL {url:?}: {reason}")]
    Url { url: String, reason: String },
}

/// A decoded message and when central received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub msg: Message,
    pub received_ms: i64,
}

/// A payload that did not decode or validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub received_ms: i64,
}

/// One item of a write: written together with the others of its call, in one transaction.
#[derive(Debug, Clone)]
pub enum WriteItem {
    Message(Received),
    DeadLetter(DeadLetter),
}

/// What one write stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteOutcome {
    pub batches: u64,
    pub duplicate_batches: u64,
    pub readings: u64,
    pub door_events: u64,
    pub statuses: u64,
    pub dead_letters: u64,
}

impl WriteOutcome {
    pub fn add(&mut self, o: &WriteOutcome) {
        self.batches += o.batches;
        self.duplicate_batches += o.duplicate_batches;
        self.readings += o.readings;
        self.door_events += o.door_events;
        self.statuses += o.statuses;
        self.dead_letters += o.dead_letters;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct NodeRecord {
    pub id: String,
    pub state: String,
    pub offline_reason: Option<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub version: Option<String>,
    pub boot_at_ms: Option<i64>,
    pub uptime_s: Option<i64>,
    /// JSON array of `SensorHealth`.
    pub sensors: Option<String>,
    pub outbox_depth: Option<i64>,
    pub dropped: Option<i64>,
    /// Central's receive time minus the edge's `sent_at` of its latest batch.
    pub clock_offset_ms: Option<i64>,
    pub status_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Reading {
    pub id: i64,
    pub node: String,
    pub seq: i64,
    /// `ble` or `wifi`.
    pub kind: String,
    pub device: String,
    pub rssi: f64,
    pub tx_power: Option<i64>,
    pub count: i64,
    pub first_at_ms: Option<i64>,
    pub at_ms: i64,
    pub received_at_ms: i64,
    pub channel: Option<i64>,
    pub ssid: Option<String>,
    /// BLE advertisement kind: ibeacon, eddystone, generic.
    pub beacon: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DoorEvent {
    pub id: i64,
    pub node: String,
    pub seq: i64,
    pub door: String,
    pub state: String,
    pub at_ms: i64,
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DeadLetterRecord {
    pub id: i64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub received_at_ms: i64,
}

/// Row counts, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub nodes: i64,
    pub batches: i64,
    pub readings: i64,
    pub door_events: i64,
    pub dead_letters: i64,
}

/// A time-range query with keyset pagination: rows ordered by `(at_ms, id)`, strictly after
/// `after`, `start <= at_ms < end`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeQuery {
    pub node: Option<String>,
    /// Device (readings) or door (door events).
    pub subject: Option<String>,
    /// Reading kind (`ble`/`wifi`) or door state (`open`/`closed`).
    pub kind: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

#[async_trait]
pub trait Store:
    access::AccessStore
    + model::ModelStore
    + positions::PositionStore
    + training::TrainingStore
    + tokens::TokenStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Writes all items in one transaction. A batch whose `(node, seq)` is already stored
    /// is skipped (counted as duplicate); nodes are registered or updated.
    async fn write(&self, items: &[WriteItem]) -> Result<WriteOutcome, StoreError>;
    /// Marks online nodes last seen before `cutoff_ms` offline; returns their ids.
    async fn mark_silent(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError>;
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    async fn node(&self, id: &str) -> Result<Option<NodeRecord>, StoreError>;
    async fn readings(&self, q: &TimeQuery) -> Result<Vec<Reading>, StoreError>;
    async fn door_events(&self, q: &TimeQuery) -> Result<Vec<DoorEvent>, StoreError>;
    /// Newest first.
    async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetterRecord>, StoreError>;
    async fn counts(&self) -> Result<Counts, StoreError>;
}

/// Opens the store named by `url` (`sqlite:…` or `postgres://…`) and applies its migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else {
        Err(StoreError::Url {
            url: url.to_string(),
            reason: "expected sqlite:… or postgres://…".into(),
        })
    }
}
