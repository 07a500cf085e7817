//! Contract tests of `AccessStore`, on SQLite and Postgres.

use super::access::{AccessQuery, NewAccessEvent};
use super::contract::contract_suite;
use super::Store;

fn ev(kind: &str, at_ms: i64, room: &str, device: Option<&str>) -> NewAccessEvent {
    NewAccessEvent {
        kind: kind.into(),
        at_ms,
        room: room.into(),
        device: device.map(Into::into),
        person: None,
        evidence: r#"{"confidence":0.9}"#.into(),
    }
}

pub async fn stores_and_pages_access_events(store: &dyn Store) {
    let ids = store
        .insert_access_events(&[
            ev("unauthorized_entry", 1_000, "lab", Some("tag-1")),
            ev("over_capacity", 2_000, "hall", None),
            ev("unauthorized_entry", 2_000, "lab", Some("tag-2")),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let all = store
        .access_events(&AccessQuery {
            limit: 10,
            ..AccessQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [1_000, 2_000, 2_000]
    );
    assert_eq!(all[0].evidence, r#"{"confidence":0.9}"#);
    let page = store
        .access_events(&AccessQuery {
            after: Some((all[1].at_ms, all[1].id)),
            limit: 10,
            ..AccessQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page, all[2..].to_vec());
    let lab = store
        .access_events(&AccessQuery {
            room: Some("lab".into()),
            kind: Some("unauthorized_entry".into()),
            start_ms: Some(1_500),
            end_ms: Some(3_000),
            limit: 10,
            ..AccessQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(lab.len(), 1);
    assert_eq!(lab[0].device.as_deref(), Some("tag-2"));
    let none = store.insert_access_events(&[]).await.unwrap();
    assert!(none.is_empty());
}

contract_suite!(stores_and_pages_access_events);
