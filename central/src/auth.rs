//! API bearer tokens: creation (secret shown once, stored only as its SHA-256), scopes, and
//! the HTTP layer that guards every `/api/*` and `/debug/*` route.
//!
//! - `read` tokens may use GET and HEAD; `admin` tokens may do everything.
//! - `/debug/*` and `/api/tokens*` need an `admin` token whatever the method.
//! - Open: `/healthz`, `/readyz`, `/api/openapi.json` and `/api/docs` (the API's
//!   description is not secret; its data is) and everything outside `/api` and `/debug`.
//! - Lookups are cached for [`CACHE_TTL_MS`]: a token revoked over REST is refused at once by
//!   this process; one revoked by the CLI or another replica within that bound.
//! - `last_used_at` is written at most once per [`TOUCH_EVERY_MS`] per token, off the
//!   request path.

use crate::api::error::AppError;
use crate::storage::tokens::{NewToken, TokenRecord};
use crate::storage::{Store, StoreError};
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every secret starts with this, so it is recognizable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "rs_";
/// How long a token lookup (found, unknown or revoked) is cached.
pub const CACHE_TTL_MS: i64 = 5_000;
/// `last_used_at` granularity.
pub const TOUCH_EVERY_MS: i64 = 60_000;
/// Most cached lookups; beyond, expired ones are dropped, then all.
const CACHE_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET and HEAD only.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("scope {other:?} is neither \"read\" nor \"admin\"")),
        }
    }
}

/// Who made a request; put into the request's extensions by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub name: String,
    pub scope: Scope,
}

/// A new random secret: the prefix and 256 random bits in hex.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Lowercase hex SHA-256 of a secret: what the database keeps. A plain hash suffices for a
/// 256-bit random secret (no dictionary to try); a slow KDF would only slow every lookup.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A token name: 1 to 100 characters, no control characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 100 {
        return Err(format!("name: must be 1 to 100 characters, got {n}"));
    }
    if name.chars().any(char::is_control) {
        return Err("name: must not contain control characters".into());
    }
    Ok(())
}

/// Creates a token; returns its record and the secret (shown once, never stored).
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    scope: Scope,
    now_ms: i64,
) -> Result<(TokenRecord, String), StoreError> {
    let secret = generate_secret();
    let record = store
        .insert_token(&NewToken {
            name: name.to_string(),
            scope: scope.as_str().to_string(),
            secret_sha256: hash_secret(&secret),
            created_at_ms: now_ms,
        })
        .await?;
    Ok((record, secret))
}

/// What a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Open,
    /// Any valid token; `read` ones only for GET/HEAD.
    Token,
    /// An `admin` token whatever the method.
    Admin,
}

/// Pure: which guard applies to `path`.
pub fn guard_of(path: &str) -> Guard {
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    if path == "/api/openapi.json" || under("/api/docs") {
        Guard::Open
    } else if under("/debug") || under("/api/tokens") {
        Guard::Admin
    } else if under("/api") {
        Guard::Token
    } else {
        Guard::Open
    }
}

/// Pure: may `scope` use `method` on a path guarded by `guard`?
pub fn permits(guard: Guard, scope: Scope, method: &Method) -> Result<(), AppError> {
    match (guard, scope) {
        (Guard::Open, _) | (_, Scope::Admin) => Ok(()),
        (Guard::Admin, Scope::Read) => Err(AppError::Forbidden {
            code: "admin_required",
            message: "this endpoint needs an admin token; this one is read-only".into(),
        }),
        (Guard::Token, Scope::Read) => {
            if method == Method::GET || method == Method::HEAD {
                Ok(())
            } else {
                Err(AppError::Forbidden {
                    code: "read_only_token",
                    message: format!(
                        "{method} needs an admin token; this one is read-only (GET and HEAD only)"
                    ),
                })
            }
        }
    }
}

/// Pure: the secret of an `Authorization: Bearer …` header value.
pub fn bearer(value: Option<&str>) -> Result<&str, AppError> {
    let Some(v) = value else {
        return Err(unauthorized(
            "missing_token",
            "this endpoint needs `Authorization: Bearer <token>`; create a token with `roomsense-central token create --scope read|admin --name NAME`",
        ));
    };
    let v = v.trim();
    match v.split_once(' ') {
        Some((scheme, secret))
            if scheme.eq_ignore_ascii_case("bearer") && !secret.trim().is_empty() =>
        {
            Ok(secret.trim())
        }
        _ => Err(unauthorized(
            "bad_authorization",
            "Authorization header: expected `Bearer <token>`",
        )),
    }
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::Unauthorized {
        code,
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
struct Cached {
    /// `None`: unknown; a record may be revoked.
    token: Option<TokenRecord>,
    fetched_ms: i64,
}

/// Token lookups by secret hash, cached for [`CACHE_TTL_MS`]. Pure: time is passed in.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<String, Cached>,
    /// When each token's use was last written, by id.
    touched: HashMap<i64, i64>,
}

impl TokenCache {
    /// `Some(lookup)` on a fresh hit, `None` on a miss.
    pub fn get(&self, hash: &str, now_ms: i64) -> Option<Option<TokenRecord>> {
        self.entries
            .get(hash)
            .filter(|c| now_ms - c.fetched_ms < CACHE_TTL_MS && now_ms >= c.fetched_ms)
            .map(|c| c.token.clone())
    }

    pub fn put(&mut self, hash: &str, token: Option<TokenRecord>, now_ms: i64) {
        if self.entries.len() >= CACHE_MAX {
            self.entries
                .retain(|_, c| now_ms - c.fetched_ms < CACHE_TTL_MS);
            if self.entries.len() >= CACHE_MAX {
                self.entries.clear();
            }
        }
        if let Some(t) = &token {
            self.touched
                .entry(t.id)
                .or_insert(t.last_used_at_ms.unwrap_or(i64::MIN));
        }
        self.entries.insert(
            hash.to_string(),
            Cached {
                token,
                fetched_ms: now_ms,
            },
        );
    }

    /// Forgets every lookup of token `id` (after a revoke).
    pub fn forget(&mut self, id: i64) {
        self.entries
            .retain(|_, c| c.token.as_ref().map(|t| t.id) != Some(id));
    }

    /// Whether a use of `id` at `now_ms` should be written (then it counts as written).
    pub fn should_touch(&mut self, id: i64, now_ms: i64) -> bool {
        let last = self.touched.entry(id).or_insert(i64::MIN);
        if *last == i64::MIN || now_ms - *last >= TOUCH_EVERY_MS {
            *last = now_ms;
            if self.touched.len() > CACHE_MAX {
                self.touched.retain(|k, _| *k == id);
            }
            true
        } else {
            false
        }
    }
}

/// The auth layer's state: the store and the lookup cache.
pub struct Auth {
    store: Arc<dyn Store>,
    cache: Mutex<TokenCache>,
}

impl Auth {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Mutex::new(TokenCache::default()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        // A panic while holding the lock cannot leave the cache inconsistent: recover it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The principal of a secret, or why not.
    pub async fn authenticate(&self, secret: &str, now_ms: i64) -> Result<Principal, AppError> {
        let hash = hash_secret(secret);
        let hit = self.cache().get(&hash, now_ms);
        let token = match hit {
            Some(t) => t,
            None => {
                let t = self.store.token_by_hash(&hash).await?;
                self.cache().put(&hash, t.clone(), now_ms);
                t
            }
        };
        let Some(token) = token else {
            return Err(unauthorized("invalid_token", "unknown token"));
        };
        if token.revoked_at_ms.is_some() {
            return Err(unauthorized(
                "revoked_token",
                format!("token {} ({:?}) has been revoked", token.id, token.name),
            ));
        }
        let scope = Scope::parse(&token.scope).map_err(|e| anyhow::anyhow!("stored token: {e}"))?;
        if self.cache().should_touch(token.id, now_ms) {
            let store = self.store.clone();
            let id = token.id;
            tokio::spawn(async move {
                if let Err(e) = store.touch_token(id, now_ms).await {
                    tracing::warn!(error = %e, token = id, "could not record token use");
                }
            });
        }
        Ok(Principal {
            token_id: token.id,
            name: token.name,
            scope,
        })
    }

    /// Revokes token `id` and forgets its cached lookups.
    pub async fn revoke(&self, id: i64, now_ms: i64) -> Result<Option<TokenRecord>, StoreError> {
        let r = self.store.revoke_token(id, now_ms).await?;
        self.cache().forget(id);
        Ok(r)
    }
}

/// The layer: checks the bearer token of every guarded request.
pub async fn require_token(
    State(auth): State<Arc<Auth>>,
    mut req: Request,
    next: Next,
) -> Response {
    let guard = guard_of(req.uri().path());
    if guard == Guard::Open || req.method() == Method::OPTIONS && is_preflight(&req) {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let principal = match bearer(header) {
        Ok(secret) => {
            auth.authenticate(secret, chrono::Utc::now().timestamp_millis())
                .await
        }
        Err(e) => Err(e),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = permits(guard, principal.scope, req.method()) {
        return e.into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// A CORS preflight carries no credentials; the CORS layer answers it.
fn is_preflight(req: &Request) -> bool {
    req.headers()
        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, revoked: Option<i64>) -> TokenRecord {
        TokenRecord {
            id,
            name: "t".into(),
            scope: "read".into(),
            created_at_ms: 0,
            last_used_at_ms: None,
            revoked_at_ms: revoked,
        }
    }

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with("rs_") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn guards_by_path() {
        assert_eq!(guard_of("/healthz"), Guard::Open);
        assert_eq!(guard_of("/readyz"), Guard::Open);
        assert_eq!(guard_of("/api/openapi.json"), Guard::Open);
        assert_eq!(guard_of("/api/docs"), Guard::Open);
        assert_eq!(guard_of("/api/docs/index.css"), Guard::Open);
        assert_eq!(guard_of("/api/nodes"), Guard::Token);
        assert_eq!(guard_of("/api"), Guard::Token);
        assert_eq!(guard_of("/api/anything/new"), Guard::Token);
        assert_eq!(guard_of("/api/tokens"), Guard::Admin);
        assert_eq!(guard_of("/api/tokens/3"), Guard::Admin);
        assert_eq!(guard_of("/debug/log-level"), Guard::Admin);
        assert_eq!(guard_of("/apis"), Guard::Open);
        assert_eq!(guard_of("/api/docsx"), Guard::Token);
    }

    #[test]
    fn scopes_and_methods() {
        assert!(permits(Guard::Token, Scope::Read, &Method::GET).is_ok());
        assert!(permits(Guard::Token, Scope::Read, &Method::HEAD).is_ok());
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(matches!(
                permits(Guard::Token, Scope::Read, &m),
                Err(AppError::Forbidden {
                    code: "read_only_token",
                    ..
                })
            ));
            assert!(permits(Guard::Token, Scope::Admin, &m).is_ok());
        }
        assert!(permits(Guard::Admin, Scope::Read, &Method::GET).is_err());
        assert!(permits(Guard::Admin, Scope::Admin, &Method::DELETE).is_ok());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer rs_x")).unwrap(), "rs_x");
        assert_eq!(bearer(Some("bearer  rs_x ")).unwrap(), "rs_x");
        assert!(matches!(
            bearer(None),
            Err(AppError::Unauthorized {
                code: "missing_token",
                ..
            })
        ));
        for bad in ["Basic abc", "Bearer", "Bearer   ", "rs_x", ""] {
            assert!(
                matches!(
                    bearer(Some(bad)),
                    Err(AppError::Unauthorized {
                        code: "bad_authorization",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cache_expires_and_forgets() {
        let mut c = TokenCache::default();
        assert_eq!(c.get("h", 0), None);
        c.put("h", Some(rec(1, None)), 1_000);
        c.put("u", None, 1_000);
        assert_eq!(
            c.get("h", 1_000 + CACHE_TTL_MS - 1),
            Some(Some(rec(1, None)))
        );
        assert_eq!(c.get("u", 1_500), Some(None));
        assert_eq!(c.get("h", 1_000 + CACHE_TTL_MS), None);
        // A clock that went backwards does not extend the entry.
        assert_eq!(c.get("h", 500), None);
        c.forget(1);
        assert_eq!(c.get("h", 1_001), None);
        assert_eq!(c.get("u", 1_001), Some(None));
    }

    #[test]
    fn cache_is_bounded() {
        let mut c = TokenCache::default();
        for i in 0..(CACHE_MAX + 10) {
            c.put(&format!("h{i}"), None, 0);
        }
        assert!(c.entries.len() <= CACHE_MAX);
    }

    #[test]
    fn uses_are_written_once_a_minute() {
        let mut c = TokenCache::default();
        assert!(c.should_touch(1, 0));
        assert!(!c.should_touch(1, TOUCH_EVERY_MS - 1));
        assert!(c.should_touch(1, TOUCH_EVERY_MS));
        assert!(c.should_touch(2, 10));
    }

    #[test]
    fn names() {
        assert!(validate_name("ops laptop").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
        assert!(validate_name("a\nb").is_err());
    }
}
