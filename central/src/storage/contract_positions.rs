//! Contract tests of `PositionStore`, on SQLite and Postgres.

use super::contract::contract_suite;
use super::positions::{PositionQuery, PositionRecord};
use super::Store;

fn pos(device: &str, at_ms: i64, room: Option<&str>, changed: bool) -> PositionRecord {
    PositionRecord {
        id: 0,
        device: device.into(),
        at_ms,
        x: 1.25,
        y: -3.5,
        floor: -1,
        building: "hq".into(),
        room: room.map(Into::into),
        room_changed: changed,
        confidence: 0.75,
        error_radius_m: 1.5,
        method: "multilateration+kalman".into(),
        receivers: 4,
        stored_at_ms: 0,
    }
}

pub async fn stores_and_pages_positions(store: &dyn Store) {
    assert!(store.insert_positions(&[]).await.unwrap().is_empty());
    assert!(store.latest_position("tag-1").await.unwrap().is_none());
    let ids = store
        .insert_positions(&[
            pos("tag-1", 1_000, Some("lab"), true),
            pos("tag-2", 2_000, None, true),
            pos("tag-1", 2_000, Some("hall"), true),
            pos("tag-1", 3_000, Some("hall"), false),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    let all = store
        .positions(&PositionQuery {
            limit: 10,
            ..PositionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|p| (p.device.as_str(), p.at_ms))
            .collect::<Vec<_>>(),
        [
            ("tag-1", 1_000),
            ("tag-2", 2_000),
            ("tag-1", 2_000),
            ("tag-1", 3_000)
        ]
    );
    // Every column round-trips.
    let first = &all[0];
    assert_eq!(first.id, ids[0]);
    assert!(first.stored_at_ms > 0);
    assert_eq!(
        PositionRecord {
            id: 0,
            stored_at_ms: 0,
            ..first.clone()
        },
        pos("tag-1", 1_000, Some("lab"), true)
    );
    assert_eq!(all[1].room, None);
    assert!(!all[3].room_changed);

    // Keyset pages: after (at, id), ties on at_ms broken by id.
    let page = store
        .positions(&PositionQuery {
            after: Some((all[1].at_ms, all[1].id)),
            limit: 1,
            ..PositionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page, all[2..3].to_vec());

    let tag1 = store
        .positions(&PositionQuery {
            device: Some("tag-1".into()),
            start_ms: Some(1_500),
            end_ms: Some(3_000),
            limit: 10,
            ..PositionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(tag1, all[2..3].to_vec());
    let hall = store
        .positions(&PositionQuery {
            room: Some("hall".into()),
            limit: 10,
            ..PositionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(hall, all[2..4].to_vec());

    let latest = store.latest_position("tag-1").await.unwrap().unwrap();
    assert_eq!(latest, all[3]);
}

pub async fn large_position_batches_span_chunks(store: &dyn Store) {
    let rows: Vec<PositionRecord> = (0..1_234)
        .map(|i| pos(&format!("dev-{}", i % 7), i, Some("lab"), i < 7))
        .collect();
    let ids = store.insert_positions(&rows).await.unwrap();
    assert_eq!(ids.len(), rows.len());
    let mut seen = 0;
    let mut after = None;
    loop {
        let page = store
            .positions(&PositionQuery {
                after,
                limit: 500,
                ..PositionQuery::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        for (k, p) in page.iter().enumerate() {
            assert_eq!(p.at_ms, (seen + k) as i64);
        }
        seen += page.len();
        after = page.last().map(|p| (p.at_ms, p.id));
    }
    assert_eq!(seen, rows.len());
}

contract_suite!(
    stores_and_pages_positions,
    large_position_batches_span_chunks
);
