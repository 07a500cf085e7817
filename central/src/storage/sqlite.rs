//! SQLite: WAL, one writer connection taking `BEGIN IMMEDIATE` (no SQLITE_BUSY on
//! read→write upgrades), readers in a pool. `synchronous = FULL`: a commit survives power loss.

use super::sql::{impl_sql_store, push_time_filter};
use super::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_readers: u32) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // The default 2 MB page cache thrashes on the reading indexes under ingest load
            // (measured: most CPU in pread/pwrite page copies); 64 MB + mmap avoid that.
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "268435456")
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(max_readers.max(1))
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self { writer, readers })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

impl_sql_store!(SqliteStore, Sqlite, "sqlite");
