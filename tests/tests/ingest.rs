//! End to end through a real MQTT broker (embedded rumqttd on a free port, or Mosquitto
//! when `ROOMSENSE_TEST_MQTT_URL` is set) into storage and back out through REST.

use chrono::{Duration as CDuration, Utc};
use roomsense_common::protocol::*;
use roomsense_common::{DoorId, NodeId, TopicKind};
use roomsense_tests::*;
use std::time::Duration;

async fn publish_mixed(c: &TestCentral, p: &mut Publisher, node: &str) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut status = NodeStatus::last_will(NodeId::parse(node)?);
    status.state = NodeState::Online;
    status.version = Some("9.9.9".into());
    status.uptime_s = Some(12);
    status.sensors = vec![SensorHealth {
        name: "sim".into(),
        kind: "sim".into(),
        state: SensorState::Ok,
        detail: None,
    }];
    p.publish(
        &topic(&c.topics, node, TopicKind::Status),
        payload(&status),
        false,
    )
    .await?;
    for seq in 1..=3u64 {
        let b = ble_batch(node, seq, now - CDuration::seconds(10 - seq as i64), 5);
        p.publish(&topic(&c.topics, node, TopicKind::Ble), payload(&b), false)
            .await?;
    }
    let door = Batch {
        v: SCHEMA_VERSION,
        node: NodeId::parse(node)?,
        seq: 4,
        sent_at: now,
        items: vec![
            DoorTransition {
                door: DoorId::parse("front")?,
                state: DoorState::Open,
                at: now - CDuration::seconds(2),
            },
            DoorTransition {
                door: DoorId::parse("front")?,
                state: DoorState::Closed,
                at: now - CDuration::seconds(1),
            },
        ],
    };
    p.publish(
        &topic(&c.topics, node, TopicKind::Door),
        payload(&door),
        false,
    )
    .await?;
    let wifi = Batch {
        v: SCHEMA_VERSION,
        node: NodeId::parse(node)?,
        seq: 5,
        sent_at: now,
        items: vec![WifiReading {
            bssid: roomsense_common::DeviceId::parse("00:11:22:33:44:55")?,
            ssid: Some("corp".into()),
            rssi: -61.0,
            channel: 11,
            at: now,
        }],
    };
    p.publish(
        &topic(&c.topics, node, TopicKind::Wifi),
        payload(&wifi),
        false,
    )
    .await?;
    Ok(())
}

async fn check_mixed(c: &TestCentral, node: &str) -> anyhow::Result<()> {
    let ble = c
        .wait_items(&format!("/api/readings?node={node}&kind=ble"), 15)
        .await?;
    assert_eq!(ble.len(), 15);
    assert_eq!(ble[0]["node"], node);
    let wifi = c
        .wait_items(&format!("/api/readings?node={node}&kind=wifi"), 1)
        .await?;
    assert_eq!(wifi[0]["ssid"], "corp");
    let doors = c
        .wait_items(&format!("/api/doors/events?node={node}&door=front"), 2)
        .await?;
    assert_eq!(doors[0]["state"], "open");
    assert_eq!(doors[1]["state"], "closed");
    let (code, n) = c.get(&format!("/api/nodes/{node}")).await?;
    assert_eq!(code, 200);
    assert_eq!(n["state"], "online");
    assert_eq!(n["version"], "9.9.9");
    assert_eq!(n["sensors"][0]["name"], "sim");
    Ok(())
}

#[tokio::test]
async fn batches_published_to_the_embedded_broker_come_back_over_rest() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions::default()).await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("pub")).await?;
    publish_mixed(&c, &mut p, "pi-e2e").await?;
    check_mixed(&c, "pi-e2e").await?;
    let (code, ready) = c.get("/readyz").await?;
    assert_eq!((code, ready["ready"].as_bool()), (200, Some(true)));
    Ok(())
}

#[tokio::test]
async fn same_node_and_seq_twice_is_stored_once() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions::default()).await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("pub")).await?;
    let b = ble_batch("pi-dup", 42, Utc::now(), 4);
    let t = topic(&c.topics, "pi-dup", TopicKind::Ble);
    p.publish(&t, payload(&b), false).await?;
    p.publish(&t, payload(&b), false).await?;
    // a later batch proves both copies were processed before we count
    p.publish(&t, payload(&ble_batch("pi-dup", 43, Utc::now(), 1)), false)
        .await?;
    wait_for("three batches processed", DEADLINE, || async {
        let (_, s) = c.get("/api/ingest/stats").await.ok()?;
        (s["ingest"]["batches"].as_u64()? + s["ingest"]["duplicate_batches"].as_u64()? >= 3)
            .then_some(())
    })
    .await?;
    let (_, s) = c.get("/api/ingest/stats").await?;
    assert_eq!(s["ingest"]["duplicate_batches"], 1);
    assert_eq!(s["stored"]["readings"], 5);
    let items = c.wait_items("/api/readings?node=pi-dup", 5).await?;
    assert_eq!(items.len(), 5);
    Ok(())
}

#[tokio::test]
async fn malformed_payloads_are_dead_lettered_and_ingest_carries_on() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions::default()).await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("pub")).await?;
    let t = topic(&c.topics, "pi-bad", TopicKind::Ble);
    p.publish(&t, b"{not json".to_vec(), false).await?;
    let mut bad_rssi = ble_batch("pi-bad", 1, Utc::now(), 2);
    bad_rssi.items[1].rssi = -500.0;
    p.publish(&t, payload(&bad_rssi), false).await?;
    // payload names another node than its topic
    p.publish(&t, payload(&ble_batch("pi-other", 1, Utc::now(), 1)), false)
        .await?;
    p.publish(&t, payload(&ble_batch("pi-bad", 2, Utc::now(), 3)), false)
        .await?;
    let good = c.wait_items("/api/readings?node=pi-bad", 3).await?;
    assert_eq!(good.len(), 3);
    let dead = c.wait_items("/api/dead-letters", 3).await?;
    let reasons: Vec<&str> = dead.iter().filter_map(|d| d["reason"].as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("items[1].rssi")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("pi-other")),
        "{reasons:?}"
    );
    assert_eq!(dead.last().unwrap()["payload_text"], "{not json");
    let (_, s) = c.get("/api/ingest/stats").await?;
    assert_eq!(s["ingest"]["dead_letters"], 3);
    Ok(())
}

#[tokio::test]
async fn ndjson_streams_the_whole_range_and_pages_join_up() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions::default()).await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("pub")).await?;
    let t0 = Utc::now() - CDuration::minutes(5);
    let t = topic(&c.topics, "pi-nd", TopicKind::Ble);
    for seq in 0..10u64 {
        let b = ble_batch("pi-nd", seq + 1, t0 + CDuration::seconds(seq as i64), 500);
        p.publish(&t, payload(&b), false).await?;
    }
    wait_for("5000 readings", DEADLINE, || async {
        let (_, s) = c.get("/api/ingest/stats").await.ok()?;
        (s["stored"]["readings"].as_u64()? >= 5000).then_some(())
    })
    .await?;
    let body = c
        .http
        .get(format!("{}/api/readings?node=pi-nd&format=ndjson", c.base))
        .send()
        .await?;
    assert_eq!(
        body.headers()["content-type"].to_str()?,
        "application/x-ndjson"
    );
    let text = body.text().await?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 5000);

    // time range, start inclusive / end exclusive
    let start = (t0 + CDuration::seconds(2)).to_rfc3339();
    let end = (t0 + CDuration::seconds(4)).to_rfc3339();
    let url = format!(
        "{}/api/readings?node=pi-nd&format=ndjson&start={}&end={}",
        c.base,
        urlencode(&start),
        urlencode(&end)
    );
    let n = c.http.get(url).send().await?.text().await?.lines().count();
    assert_eq!(n, 1000);

    // JSON pages with cursors cover the same rows
    let mut cursor: Option<String> = None;
    let mut total = 0;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/api/readings?node=pi-nd&limit=1500&cursor={cur}"),
            None => "/api/readings?node=pi-nd&limit=1500".to_string(),
        };
        let (code, page) = c.get(&path).await?;
        assert_eq!(code, 200);
        total += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(total, 5000);
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn rest_rejects_bad_input_with_json_errors() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions::default()).await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("pub")).await?;
    let t = topic(&c.topics, "pi-known", TopicKind::Ble);
    p.publish(&t, payload(&ble_batch("pi-known", 1, Utc::now(), 1)), false)
        .await?;
    c.wait_items("/api/readings?node=pi-known", 1).await?;

    let cases: &[(&str, u16, &str, &str)] = &[
        ("/api/readings?start=yesterday", 400, "bad_time", "start"),
        (
            "/api/readings?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
            400,
            "bad_time_range",
            "after end",
        ),
        ("/api/readings?limit=0", 400, "bad_limit", "limit"),
        ("/api/readings?limit=abc", 400, "bad_limit", "limit"),
        ("/api/readings?limit=100000", 400, "bad_limit", "limit"),
        ("/api/readings?cursor=xyz", 400, "bad_cursor", "cursor"),
        ("/api/readings?kind=zigbee", 400, "bad_filter", "kind"),
        ("/api/readings?format=xml", 400, "bad_format", "format"),
        (
            "/api/readings?strat=2026-01-01T00:00:00Z",
            400,
            "bad_query",
            "strat",
        ),
        (
            "/api/readings?node=pi-unknown",
            404,
            "node_not_found",
            "pi-unknown",
        ),
        ("/api/readings?node=a%2Fb", 400, "bad_node_id", "character"),
        ("/api/doors/events?state=ajar", 400, "bad_filter", "state"),
        ("/api/nodes/pi-unknown", 404, "node_not_found", "pi-unknown"),
        ("/api/nodes/bad%20id", 400, "bad_node_id", "character"),
        ("/api/nope", 404, "no_route", "endpoint"),
        ("/api/dead-letters?limit=5000", 400, "bad_limit", "limit"),
    ];
    for (path, status, code, needle) in cases {
        let (got, body) = c.get(path).await?;
        assert_eq!(got, *status, "{path}: {body}");
        assert_eq!(body["error"]["code"], *code, "{path}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{path}: {msg:?} lacks {needle:?}");
    }
    let (code, _) = c.get("/api/readings?node=pi-known&limit=10").await?;
    assert_eq!(code, 200);
    let (code, h) = c.get("/healthz").await?;
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")));
    Ok(())
}

#[tokio::test]
async fn nodes_go_offline_by_last_will_and_by_silence() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions {
        silence_timeout: Duration::from_secs(1),
        ..CentralOptions::default()
    })
    .await?;
    let lw_topic = topic(&c.topics, "pi-lw", TopicKind::Status);
    let will = rumqttc::LastWill::new(
        lw_topic.clone(),
        payload(&NodeStatus::last_will(NodeId::parse("pi-lw")?)),
        rumqttc::QoS::AtLeastOnce,
        true,
    );
    let mut p = Publisher::connect_with(c.mqtt_addr(), &unique("lw"), |o| {
        o.set_last_will(will);
    })
    .await?;
    let mut online = NodeStatus::last_will(NodeId::parse("pi-lw")?);
    online.state = NodeState::Online;
    p.publish(&lw_topic, payload(&online), true).await?;
    wait_for("pi-lw online", DEADLINE, || async {
        let (code, n) = c.get("/api/nodes/pi-lw").await.ok()?;
        (code == 200 && n["state"] == "online").then_some(())
    })
    .await?;
    // an abrupt end of the connection (no DISCONNECT) makes the broker publish the will
    drop(p);
    wait_for("pi-lw offline by last will", DEADLINE, || async {
        let (_, n) = c.get("/api/nodes/pi-lw").await.ok()?;
        (n["state"] == "offline" && n["offline_reason"] == "last will").then_some(())
    })
    .await?;

    let mut q = Publisher::connect(c.mqtt_addr(), &unique("quiet")).await?;
    let t = topic(&c.topics, "pi-quiet", TopicKind::Ble);
    q.publish(&t, payload(&ble_batch("pi-quiet", 1, Utc::now(), 1)), false)
        .await?;
    wait_for("pi-quiet offline by silence", DEADLINE, || async {
        let (_, n) = c.get("/api/nodes/pi-quiet").await.ok()?;
        (n["state"] == "offline" && n["offline_reason"] == "silent").then_some(())
    })
    .await?;
    Ok(())
}

/// The same flow through an external broker (Mosquitto in CI).
#[tokio::test]
async fn external_broker_end_to_end() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("ROOMSENSE_TEST_MQTT_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set ROOMSENSE_TEST_MQTT_URL"
        );
        eprintln!("ROOMSENSE_TEST_MQTT_URL not set: external broker test skipped");
        return Ok(());
    };
    let prefix = format!("roomsense-test/{}", unique("ext"));
    let c = TestCentral::start(CentralOptions {
        external_mqtt: Some(url),
        prefix,
        ..CentralOptions::default()
    })
    .await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("pub")).await?;
    publish_mixed(&c, &mut p, "pi-ext").await?;
    check_mixed(&c, "pi-ext").await?;
    Ok(())
}

/// Central on Postgres, end to end (the contract suite covers the store itself).
#[tokio::test]
async fn postgres_end_to_end() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("ROOMSENSE_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set ROOMSENSE_TEST_POSTGRES_URL"
        );
        eprintln!("ROOMSENSE_TEST_POSTGRES_URL not set: Postgres end-to-end test skipped");
        return Ok(());
    };
    let db = fresh_pg_database(&url).await?;
    let c = TestCentral::start(CentralOptions {
        database_url: Some(db),
        ..CentralOptions::default()
    })
    .await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("pub")).await?;
    publish_mixed(&c, &mut p, "pi-pg").await?;
    check_mixed(&c, "pi-pg").await?;
    Ok(())
}

/// Creates an empty database next to the one `url` names and returns its URL.
async fn fresh_pg_database(url: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let name = unique("rs_e2e").to_lowercase();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

#[tokio::test]
async fn committed_batches_are_acknowledged_to_their_node() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions::default()).await?;
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("acked")).await?;
    let ack_topic = topic(&c.topics, "pi-ack", TopicKind::Ack);
    p.client
        .subscribe(ack_topic.clone(), rumqttc::QoS::AtLeastOnce)
        .await?;
    let t = topic(&c.topics, "pi-ack", TopicKind::Ble);
    p.publish(&t, payload(&ble_batch("pi-ack", 11, Utc::now(), 2)), false)
        .await?;
    p.publish(&t, payload(&ble_batch("pi-ack", 11, Utc::now(), 2)), false)
        .await?;
    let mut acked = std::collections::BTreeSet::new();
    wait_for_ack(&mut p, &mut acked, 11).await?;
    assert!(acked.contains(&11));
    Ok(())
}

async fn wait_for_ack(
    p: &mut Publisher,
    acked: &mut std::collections::BTreeSet<u64>,
    seq: u64,
) -> anyhow::Result<()> {
    tokio::time::timeout(DEADLINE, async {
        while !acked.contains(&seq) {
            if let Some(msg) = p.next_publish().await? {
                let a: CommitAck = serde_json::from_slice(&msg)?;
                acked.extend(a.seqs);
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?
}

/// `serve --demo`: simulated nodes publish over MQTT and devices get live positions.
#[tokio::test]
async fn demo_building_produces_live_positions_in_rooms() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions {
        demo: true,
        ..CentralOptions::default()
    })
    .await?;
    let nodes = c.wait_items("/api/nodes", 5).await?;
    assert!(nodes.iter().all(|n| n["state"] == "online"));
    let positions = c.wait_items("/api/positions", 5).await?;
    let p = &positions[0];
    assert!(p["room"].is_string(), "{p}");
    assert!(p["receivers"].as_u64().unwrap_or(0) >= 1, "{p}");
    let device = p["device"].as_str().unwrap_or_default().to_string();
    let (code, one) = c.get(&format!("/api/devices/{device}/position")).await?;
    assert_eq!(code, 200);
    assert_eq!(one["device"], device.as_str());
    let (code, err) = c.get("/api/devices/nobody/position").await?;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (404, Some("device_not_located"))
    );
    // Every estimate goes on the bus.
    let mut rx = c.app.bus().subscribe();
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(roomsense_central::bus::LiveEvent::Position(p)) = rx.recv().await {
                break p;
            }
        }
    })
    .await?;
    // The stored history of that device: time-ordered rows, paged by cursor.
    let rows = c
        .wait_items(&format!("/api/positions?device={device}&limit=2"), 2)
        .await?;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["device"] == device.as_str()));
    assert!(rows[0]["at"].as_str() <= rows[1]["at"].as_str());
    assert_eq!(rows[0]["room_changed"], true);
    let (_, page) = c
        .get(&format!("/api/positions?device={device}&limit=1"))
        .await?;
    let cursor = page["next_cursor"].as_str().unwrap_or_default().to_string();
    let (_, next) = c
        .get(&format!(
            "/api/positions?device={device}&limit=1&cursor={cursor}"
        ))
        .await?;
    assert_eq!(next["items"][0]["id"], rows[1]["id"]);
    let (code, err) = c.get("/api/positions?room=no%20such").await?;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (400, Some("bad_room_id"))
    );
    let (code, err) = c.get("/api/positions?device=x&limit=0").await?;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (400, Some("bad_limit"))
    );
    Ok(())
}

#[tokio::test]
async fn positions_without_a_building_say_what_is_missing() -> anyhow::Result<()> {
    let c = TestCentral::start(CentralOptions::default()).await?;
    let (code, err) = c.get("/api/positions").await?;
    assert_eq!(code, 503);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("positioning.building"));
    Ok(())
}
