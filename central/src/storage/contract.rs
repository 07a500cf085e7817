//! The storage contract: one suite, run unchanged against SQLite (always) and Postgres
//! (when `ROOMSENSE_TEST_POSTGRES_URL` is set; CI sets it).

use super::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use roomsense_common::protocol::*;
use roomsense_common::{DeviceId, DoorId, NodeId};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
}

fn ble(node: &str, seq: u64, at: DateTime<Utc>, devices: &[(&str, f32)]) -> WriteItem {
    WriteItem::Message(Received {
        msg: Message::Ble(Batch {
            v: SCHEMA_VERSION,
            node: NodeId::parse(node).unwrap(),
            seq,
            sent_at: at,
            items: devices
                .iter()
                .map(|(d, rssi)| BleSighting {
                    id: DeviceId::parse(d).unwrap(),
                    rssi: *rssi,
                    tx_power: Some(-59),
                    count: 2,
                    first_at: at - Duration::milliseconds(500),
                    last_at: at,
                    kind: SightingKind::Ibeacon,
                })
                .collect(),
        }),
        received_ms: (at + Duration::milliseconds(40)).timestamp_millis(),
    })
}

fn door(node: &str, seq: u64, at: DateTime<Utc>, name: &str, state: DoorState) -> WriteItem {
    WriteItem::Message(Received {
        msg: Message::Door(Batch {
            v: SCHEMA_VERSION,
            node: NodeId::parse(node).unwrap(),
            seq,
            sent_at: at,
            items: vec![DoorTransition {
                door: DoorId::parse(name).unwrap(),
                state,
                at,
            }],
        }),
        received_ms: at.timestamp_millis(),
    })
}

fn wifi(node: &str, seq: u64, at: DateTime<Utc>) -> WriteItem {
    WriteItem::Message(Received {
        msg: Message::Wifi(Batch {
            v: SCHEMA_VERSION,
            node: NodeId::parse(node).unwrap(),
            seq,
            sent_at: at,
            items: vec![WifiReading {
                bssid: DeviceId::parse("00:11:22:33:44:55").unwrap(),
                ssid: Some("office".into()),
                rssi: -48.0,
                channel: 6,
                at,
            }],
        }),
        received_ms: at.timestamp_millis(),
    })
}

fn status(node: &str, state: NodeState, at: DateTime<Utc>) -> WriteItem {
    let mut s = NodeStatus::last_will(NodeId::parse(node).unwrap());
    s.state = state;
    if state == NodeState::Online {
        s.version = Some("0.1.0".into());
        s.uptime_s = Some(42);
        s.outbox_depth = Some(3);
        s.dropped = Some(0);
        s.sensors = vec![SensorHealth {
            name: "ble0".into(),
            kind: "ble".into(),
            state: SensorState::Ok,
            detail: None,
        }];
    }
    WriteItem::Message(Received {
        msg: Message::Status(s),
        received_ms: at.timestamp_millis(),
    })
}

fn q(limit: i64) -> TimeQuery {
    TimeQuery {
        limit,
        ..TimeQuery::default()
    }
}

pub async fn stores_and_queries_readings(store: &dyn Store) {
    let items: Vec<_> = (0..10)
        .map(|i| {
            ble(
                "pi-a",
                i + 1,
                t0() + Duration::seconds(i as i64),
                &[("tag-1", -60.0), ("tag-2", -70.5)],
            )
        })
        .chain([wifi("pi-b", 1, t0())])
        .collect();
    let out = store.write(&items).await.unwrap();
    assert_eq!(out.batches, 11);
    assert_eq!(out.readings, 21);
    assert_eq!(out.duplicate_batches, 0);

    let all = store.readings(&q(1000)).await.unwrap();
    assert_eq!(all.len(), 21);
    assert!(all
        .windows(2)
        .all(|w| (w[0].at_ms, w[0].id) < (w[1].at_ms, w[1].id)));

    let tag2 = store
        .readings(&TimeQuery {
            subject: Some("tag-2".into()),
            ..q(1000)
        })
        .await
        .unwrap();
    assert_eq!(tag2.len(), 10);
    assert_eq!(tag2[0].rssi, -70.5);
    assert_eq!(tag2[0].beacon.as_deref(), Some("ibeacon"));
    assert_eq!(tag2[0].tx_power, Some(-59));

    let wifi_only = store
        .readings(&TimeQuery {
            kind: Some("wifi".into()),
            ..q(1000)
        })
        .await
        .unwrap();
    assert_eq!(wifi_only.len(), 1);
    assert_eq!(wifi_only[0].ssid.as_deref(), Some("office"));
    assert_eq!(wifi_only[0].channel, Some(6));

    // start inclusive, end exclusive
    let range = store
        .readings(&TimeQuery {
            node: Some("pi-a".into()),
            start_ms: Some((t0() + Duration::seconds(2)).timestamp_millis()),
            end_ms: Some((t0() + Duration::seconds(5)).timestamp_millis()),
            ..q(1000)
        })
        .await
        .unwrap();
    assert_eq!(range.len(), 6);

    // keyset pages cover everything once
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.readings(&TimeQuery { after, ..q(4) }).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| (r.at_ms, r.id));
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let mut ids: Vec<_> = all.iter().map(|r| r.id).collect();
    assert_eq!(seen, ids);
    ids.dedup();
    assert_eq!(ids.len(), 21);
}

pub async fn redelivery_is_a_no_op(store: &dyn Store) {
    let b = ble("pi-r", 7, t0(), &[("tag-1", -60.0)]);
    let first = store.write(std::slice::from_ref(&b)).await.unwrap();
    assert_eq!((first.batches, first.readings), (1, 1));
    let again = store.write(&[b.clone(), b.clone()]).await.unwrap();
    assert_eq!(
        (again.batches, again.duplicate_batches, again.readings),
        (0, 2, 0)
    );
    // twice within one fresh write: stored once
    let c = ble("pi-r", 8, t0(), &[("tag-1", -61.0)]);
    let both = store.write(&[c.clone(), c]).await.unwrap();
    assert_eq!(
        (both.batches, both.duplicate_batches, both.readings),
        (1, 1, 1)
    );
    let n = store
        .readings(&TimeQuery {
            node: Some("pi-r".into()),
            ..q(100)
        })
        .await
        .unwrap();
    assert_eq!(n.len(), 2);
    assert_eq!(store.counts().await.unwrap().batches, 2);
}

pub async fn dead_letters_keep_topic_payload_reason(store: &dyn Store) {
    let d = DeadLetter {
        topic: "roomsense/v1/nodes/pi-x/ble".into(),
        payload: vec![0xff, 0x00, b'{'],
        reason: "payload is not valid JSON".into(),
        received_ms: t0().timestamp_millis(),
    };
    let out = store
        .write(&[
            WriteItem::DeadLetter(d.clone()),
            ble("pi-x", 1, t0(), &[("tag-9", -50.0)]),
        ])
        .await
        .unwrap();
    assert_eq!((out.dead_letters, out.batches), (1, 1));
    let dl = store.dead_letters(10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].topic, d.topic);
    assert_eq!(dl[0].payload, d.payload);
    assert_eq!(dl[0].reason, d.reason);
}

pub async fn node_registry(store: &dyn Store) {
    store
        .write(&[status("pi-n", NodeState::Online, t0())])
        .await
        .unwrap();
    let n = store.node("pi-n").await.unwrap().unwrap();
    assert_eq!(n.state, "online");
    assert_eq!(n.version.as_deref(), Some("0.1.0"));
    assert_eq!(n.uptime_s, Some(42));
    assert!(n.sensors.as_deref().unwrap().contains("ble0"));

    let later = t0() + Duration::seconds(30);
    store
        .write(&[ble("pi-n", 1, later, &[("tag-1", -60.0)])])
        .await
        .unwrap();
    let n = store.node("pi-n").await.unwrap().unwrap();
    assert_eq!(
        n.last_seen_ms,
        (later + Duration::milliseconds(40)).timestamp_millis()
    );
    assert_eq!(n.clock_offset_ms, Some(40));
    assert_eq!(n.first_seen_ms, t0().timestamp_millis());

    // Last Will: offline, keeps what it knew, last_seen unchanged
    store
        .write(&[status(
            "pi-n",
            NodeState::Offline,
            later + Duration::seconds(5),
        )])
        .await
        .unwrap();
    let n = store.node("pi-n").await.unwrap().unwrap();
    assert_eq!(n.state, "offline");
    assert_eq!(n.offline_reason.as_deref(), Some("last will"));
    assert_eq!(n.version.as_deref(), Some("0.1.0"));
    assert_eq!(
        n.last_seen_ms,
        (later + Duration::milliseconds(40)).timestamp_millis()
    );

    // a node that goes quiet
    store
        .write(&[ble("pi-q", 1, t0(), &[("tag-1", -60.0)])])
        .await
        .unwrap();
    let silent = store
        .mark_silent((t0() + Duration::seconds(60)).timestamp_millis())
        .await
        .unwrap();
    assert_eq!(silent, vec!["pi-q".to_string()]);
    let n = store.node("pi-q").await.unwrap().unwrap();
    assert_eq!(
        (n.state.as_str(), n.offline_reason.as_deref()),
        ("offline", Some("silent"))
    );
    assert!(store.mark_silent(i64::MAX).await.unwrap().is_empty());
    let all = store.nodes().await.unwrap();
    assert_eq!(
        all.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["pi-n", "pi-q"]
    );
    assert!(store.node("nope").await.unwrap().is_none());
}

pub async fn door_events(store: &dyn Store) {
    store
        .write(&[
            door("pi-d", 1, t0(), "front", DoorState::Open),
            door(
                "pi-d",
                2,
                t0() + Duration::seconds(3),
                "front",
                DoorState::Closed,
            ),
            door(
                "pi-d",
                3,
                t0() + Duration::seconds(4),
                "back",
                DoorState::Open,
            ),
        ])
        .await
        .unwrap();
    let front = store
        .door_events(&TimeQuery {
            subject: Some("front".into()),
            ..q(10)
        })
        .await
        .unwrap();
    assert_eq!(
        front.iter().map(|e| e.state.as_str()).collect::<Vec<_>>(),
        ["open", "closed"]
    );
    let open = store
        .door_events(&TimeQuery {
            kind: Some("open".into()),
            ..q(10)
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(store.counts().await.unwrap().door_events, 3);
}

pub async fn large_write_spans_chunks(store: &dyn Store) {
    let devices: Vec<String> = (0..2500).map(|i| format!("tag-{i}")).collect();
    let refs: Vec<(&str, f32)> = devices.iter().map(|d| (d.as_str(), -70.0)).collect();
    let items: Vec<_> = (0..1200)
        .map(|i| ble("pi-l", i + 1, t0(), &refs[..1]))
        .chain([ble("pi-l", 5000, t0(), &refs)])
        .collect();
    let out = store.write(&items).await.unwrap();
    assert_eq!((out.batches, out.readings), (1201, 3700));
    assert_eq!(store.counts().await.unwrap().readings, 3700);
}

/// A Postgres schema name unique per test module, test and process (≤ 63 bytes).
pub fn schema_name(module: &str, test: &str) -> String {
    let h = module.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut name = format!("t{:08x}_{}_{test}", h as u32, std::process::id());
    name.truncate(63);
    name
}

/// Runs each named `async fn(&dyn Store)` of the calling module against SQLite and Postgres.
macro_rules! contract_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("t.db").display());
                    let store = $crate::storage::connect(&url, 2).await.unwrap();
                    super::$name(store.as_ref()).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Ok(url) = std::env::var("ROOMSENSE_TEST_POSTGRES_URL") else {
                        assert!(std::env::var("CI").is_err(), "CI must set ROOMSENSE_TEST_POSTGRES_URL");
                        eprintln!("ROOMSENSE_TEST_POSTGRES_URL not set: Postgres contract test skipped");
                        return;
                    };
                    let schema = $crate::storage::contract::schema_name(module_path!(), stringify!($name));
                    let store = $crate::storage::PgStore::connect_isolated(&url, &schema).await.unwrap();
                    super::$name(&store).await;
                }
            )*
        }
    };
}

pub(super) use contract_suite;

contract_suite!(
    stores_and_queries_readings,
    redelivery_is_a_no_op,
    dead_letters_keep_topic_payload_reason,
    node_registry,
    door_events,
    large_write_spans_chunks,
);
