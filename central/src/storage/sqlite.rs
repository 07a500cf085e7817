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
    /// Dropped with the store; the checkpointer task stops when it can no longer upgrade it.
    _alive: std::sync::Arc<()>,
}

/// WAL pages after which the writer checkpoints by itself at commit. Normally the
/// background checkpointer keeps the WAL far below this; it is only the backstop.
const WRITER_AUTOCHECKPOINT_PAGES: &str = "16384";
/// How often the background connection copies committed WAL pages into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

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
            .pragma("mmap_size", "268435456")
            .pragma("temp_store", "memory");
        // Checkpoints (copying WAL pages back into the database file, with their fsyncs)
        // run on their own connection, on the other core, instead of inside the writer's
        // commits; the writer only checkpoints itself if the WAL grows past the backstop.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                opts.clone()
                    .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
                    // The default 2 MB page cache thrashes on the reading indexes under
                    // ingest load (measured: most CPU in pread/pwrite page copies); the
                    // writer gets 64 MB. Readers read through mmap with the default cache,
                    // so memory stays bounded however many readers stream.
                    .pragma("cache_size", "-65536"),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(max_readers.max(1))
            .connect_with(opts.clone().read_only(true))
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        let alive = std::sync::Arc::new(());
        tokio::spawn(checkpoint_loop(
            checkpointer,
            std::sync::Arc::downgrade(&alive),
        ));
        Ok(Self {
            writer,
            readers,
            _alive: alive,
        })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Passive checkpoints never block the writer or readers; a failed one is retried next time.
async fn checkpoint_loop(pool: SqlitePool, alive: std::sync::Weak<()>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.upgrade().is_none() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "background WAL checkpoint failed; retrying");
        }
    }
    pool.close().await;
}

impl_sql_store!(SqliteStore, Sqlite, "sqlite");
super::access::impl_access_store!(SqliteStore, Sqlite);
super::model::impl_model_store!(SqliteStore, Sqlite, "instr");
super::positions::impl_position_store!(SqliteStore, Sqlite);
super::training::impl_training_store!(SqliteStore, Sqlite);
super::tokens::impl_token_store!(SqliteStore, Sqlite);
