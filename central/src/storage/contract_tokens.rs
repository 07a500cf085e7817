//! Contract tests of `TokenStore`, on SQLite and Postgres.

use super::contract::contract_suite;
use super::tokens::NewToken;
use super::Store;

fn new(name: &str, scope: &str, hash: &str) -> NewToken {
    NewToken {
        name: name.into(),
        scope: scope.into(),
        secret_sha256: hash.into(),
        created_at_ms: 1_000,
    }
}

pub async fn creates_finds_touches_and_revokes_tokens(store: &dyn Store) {
    assert!(store.tokens().await.unwrap().is_empty());
    let a = store
        .insert_token(&new("ops", "admin", "aa"))
        .await
        .unwrap();
    let r = store
        .insert_token(&new("wall", "read", "bb"))
        .await
        .unwrap();
    assert_eq!((a.name.as_str(), a.scope.as_str()), ("ops", "admin"));
    assert_eq!(
        (a.created_at_ms, a.last_used_at_ms, a.revoked_at_ms),
        (1_000, None, None)
    );
    assert!(r.id > a.id);
    // The hash is unique.
    assert!(store.insert_token(&new("dup", "read", "aa")).await.is_err());
    // A bad scope is refused by the database too.
    assert!(store.insert_token(&new("x", "root", "cc")).await.is_err());

    assert_eq!(store.token_by_hash("bb").await.unwrap(), Some(r.clone()));
    assert_eq!(store.token_by_hash("zz").await.unwrap(), None);

    store.touch_token(r.id, 5_000).await.unwrap();
    store.touch_token(r.id, 4_000).await.unwrap();
    let got = store.token_by_hash("bb").await.unwrap().unwrap();
    assert_eq!(got.last_used_at_ms, Some(5_000));

    let revoked = store.revoke_token(a.id, 7_000).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(7_000));
    let again = store.revoke_token(a.id, 9_000).await.unwrap().unwrap();
    assert_eq!(again.revoked_at_ms, Some(7_000));
    assert_eq!(store.revoke_token(999_999, 9_000).await.unwrap(), None);

    let all = store.tokens().await.unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), [a.id, r.id]);
    assert_eq!(all[0].revoked_at_ms, Some(7_000));
    assert_eq!(all[1].revoked_at_ms, None);
}

contract_suite!(creates_finds_touches_and_revokes_tokens);
