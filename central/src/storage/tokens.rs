//! API bearer tokens (see `crate::auth`): only the SHA-256 of each secret is stored.

use super::StoreError;
use async_trait::async_trait;
use serde::Serialize;

/// A token to store. `secret_sha256` is the lowercase hex SHA-256 of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    /// `read` or `admin`.
    pub scope: String,
    pub secret_sha256: String,
    pub created_at_ms: i64,
}

/// A stored token, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError>;
    /// Every token, revoked ones included, by id.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// The token whose secret hashes to `secret_sha256`, revoked or not.
    async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks the token revoked at `at_ms` (a second revoke keeps the first time);
    /// `None` when there is no such token.
    async fn revoke_token(&self, id: i64, at_ms: i64) -> Result<Option<TokenRecord>, StoreError>;
    /// Records a use at `at_ms` (never moves `last_used_at_ms` backwards).
    async fn touch_token(&self, id: i64, at_ms: i64) -> Result<(), StoreError>;
}

macro_rules! impl_token_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::tokens::TokenStore for $store {
            async fn insert_token(
                &self,
                t: &$crate::storage::tokens::NewToken,
            ) -> Result<$crate::storage::tokens::TokenRecord, $crate::storage::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO api_tokens (name, scope, secret_sha256, created_at_ms) VALUES (",
                );
                qb.push_bind(t.name.as_str())
                    .push(", ")
                    .push_bind(t.scope.as_str())
                    .push(", ")
                    .push_bind(t.secret_sha256.as_str())
                    .push(", ")
                    .push_bind(t.created_at_ms)
                    .push(") RETURNING id, name, scope, created_at_ms, last_used_at_ms, revoked_at_ms");
                Ok(qb.build_query_as().fetch_one(&self.writer).await?)
            }

            async fn tokens(
                &self,
            ) -> Result<Vec<$crate::storage::tokens::TokenRecord>, $crate::storage::StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, name, scope, created_at_ms, last_used_at_ms, revoked_at_ms FROM api_tokens ORDER BY id",
                )
                .fetch_all(&self.readers)
                .await?)
            }

            async fn token_by_hash(
                &self,
                secret_sha256: &str,
            ) -> Result<Option<$crate::storage::tokens::TokenRecord>, $crate::storage::StoreError>
            {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, name, scope, created_at_ms, last_used_at_ms, revoked_at_ms FROM api_tokens WHERE secret_sha256 = ",
                );
                qb.push_bind(secret_sha256);
                Ok(qb.build_query_as().fetch_optional(&self.readers).await?)
            }

            async fn revoke_token(
                &self,
                id: i64,
                at_ms: i64,
            ) -> Result<Option<$crate::storage::tokens::TokenRecord>, $crate::storage::StoreError>
            {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, ",
                );
                qb.push_bind(at_ms)
                    .push(") WHERE id = ")
                    .push_bind(id)
                    .push(" RETURNING id, name, scope, created_at_ms, last_used_at_ms, revoked_at_ms");
                Ok(qb.build_query_as().fetch_optional(&self.writer).await?)
            }

            async fn touch_token(
                &self,
                id: i64,
                at_ms: i64,
            ) -> Result<(), $crate::storage::StoreError> {
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new("UPDATE api_tokens SET last_used_at_ms = ");
                qb.push_bind(at_ms)
                    .push(" WHERE id = ")
                    .push_bind(id)
                    .push(" AND (last_used_at_ms IS NULL OR last_used_at_ms < ")
                    .push_bind(at_ms)
                    .push(")");
                qb.build().execute(&self.writer).await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_token_store;
