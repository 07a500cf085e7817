//! Postgres: one pool for readers and writers.

use super::sql::{impl_sql_store, push_time_filter};
use super::StoreError;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

pub struct PgStore {
    writer: PgPool,
    readers: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            readers: pool,
        })
    }

    /// A store in a fresh schema of its own, so tests sharing one database do not collide.
    pub async fn connect_isolated(url: &str, schema: &str) -> Result<Self, StoreError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Url {
                url: url.to_string(),
                reason: format!("schema name {schema:?} must be ASCII letters, digits or '_'"),
            });
        }
        let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&admin)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let search_path = schema.to_string();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let sp = search_path.clone();
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path TO \"{sp}\"")))
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            readers: pool,
        })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.writer.begin().await
    }
}

impl_sql_store!(PgStore, Postgres, "postgres");
super::access::impl_access_store!(PgStore, Postgres);
super::model::impl_model_store!(PgStore, Postgres, "strpos");
super::positions::impl_position_store!(PgStore, Postgres);
super::training::impl_training_store!(PgStore, Postgres);
super::tokens::impl_token_store!(PgStore, Postgres);
