//! Occupancy over REST: live (fed through the event bus like the positioning path does)
//! and history (from stored position estimates), with validation errors.

use roomsense_central::bus::LiveEvent;
use roomsense_central::live::Position;
use roomsense_central::storage::positions::PositionRecord;
use roomsense_tests::*;

fn position(device: &str, room: &str, confidence: f32, at_ms: i64) -> LiveEvent {
    LiveEvent::Position(Position {
        device: device.into(),
        x: 1.0,
        y: 1.0,
        floor: 0,
        building: "bench".into(),
        room_probability: 0.9,
        room: Some(room.into()),
        confidence,
        error_radius_m: 1.0,
        method: "multilat".into(),
        receivers: 4,
        at_ms,
    })
}

fn row(device: &str, room: Option<&str>, at_ms: i64) -> PositionRecord {
    PositionRecord {
        id: 0,
        device: device.into(),
        at_ms,
        x: 0.0,
        y: 0.0,
        floor: 0,
        building: "b".into(),
        room: room.map(Into::into),
        room_changed: false,
        confidence: 0.9,
        error_radius_m: 1.0,
        method: "multilat".into(),
        receivers: 4,
        stored_at_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_occupancy_from_positions() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    let bus = c.app.bus();
    let now = chrono::Utc::now().timestamp_millis();
    bus.publish(position("tag-a", "kitchen", 0.9, now - 2000));
    bus.publish(position("tag-b", "kitchen", 0.8, now - 1000));
    bus.publish(position("tag-c", "office", 0.9, now - 1000));
    // too uncertain to count
    bus.publish(position("tag-d", "office", 0.1, now - 1000));
    let rooms = wait_for("three devices placed", DEADLINE, || async {
        let (st, v) = c.get("/api/occupancy").await.ok()?;
        (st == 200 && v["tracked_devices"] == 3).then_some(v)
    })
    .await
    .unwrap();
    let items = rooms["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{rooms}");
    assert_eq!(items[0]["room"], "kitchen");
    assert_eq!(items[0]["count"], 2);
    assert_eq!(items[0]["over_capacity"], false);
    let (st, k) = c.get("/api/rooms/kitchen/occupancy").await.unwrap();
    assert_eq!(st, 200, "{k}");
    let occ = k["occupants"].as_array().unwrap();
    assert_eq!(occ.len(), 2);
    assert_eq!(occ[0]["device"], "tag-a");
    assert!((occ[1]["confidence"].as_f64().unwrap() - 0.8).abs() < 1e-6);
    assert!(occ[0]["since"].as_str().unwrap().ends_with('Z'));
    let (st, e) = c.get("/api/rooms/attic/occupancy").await.unwrap();
    assert_eq!(st, 404);
    assert_eq!(e["error"]["code"], "unknown_room");
    let (st, e) = c.get("/api/occupancy?floor=1").await.unwrap();
    assert_eq!(st, 400, "{e}");
    // moving out empties the room
    bus.publish(position("tag-a", "office", 0.9, now));
    wait_for("tag-a in the office", DEADLINE, || async {
        let (_, v) = c.get("/api/rooms/office/occupancy").await.ok()?;
        (v["count"] == 2).then_some(())
    })
    .await
    .unwrap();
    let (_, v) = c.get("/api/ingest/stats").await.unwrap();
    assert!(v["access"]["positions"].as_u64().unwrap() >= 5, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_dwell_from_stored_positions() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    // 2026-01-01T08:00:00Z
    let t0 = 1_767_254_400_000i64;
    let mut rows = Vec::new();
    // tag-a: kitchen 08:00–08:10 (every 10 s), then office until 08:20
    for i in 0..120 {
        let room = if i < 60 { "kitchen" } else { "office" };
        rows.push(row("tag-a", Some(room), t0 + i * 10_000));
    }
    // tag-b: kitchen 08:05–08:15
    for i in 0..60 {
        rows.push(row("tag-b", Some("kitchen"), t0 + 300_000 + i * 10_000));
    }
    rows.push(row("tag-b", None, t0 + 900_000));
    rows.sort_by_key(|r| r.at_ms);
    c.app.store().insert_positions(&rows).await.unwrap();

    let (st, h) = c
        .get("/api/occupancy/history?start=2026-01-01T08:00:00Z&end=2026-01-01T08:30:00Z&interval=10m")
        .await
        .unwrap();
    assert_eq!(st, 200, "{h}");
    let got: Vec<(String, String, u64)> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["room"].as_str().unwrap().to_string(),
                b["start"].as_str().unwrap()[11..16].to_string(),
                b["devices"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, u64)> = [
        ("kitchen", "08:00", 2),
        ("kitchen", "08:10", 1),
        ("office", "08:10", 1),
    ]
    .iter()
    .map(|(r, t, n)| (r.to_string(), t.to_string(), *n))
    .collect();
    assert_eq!(got, want);
    assert_eq!(h["interval_s"], 600.0);

    let (_, one) = c
        .get("/api/occupancy/history?start=2026-01-01T08:00:00Z&end=2026-01-01T08:30:00Z&interval=10m&room=office")
        .await
        .unwrap();
    let buckets = one["items"].as_array().unwrap();
    assert_eq!(buckets.len(), 3, "zero-filled: {one}");
    assert_eq!(buckets[0]["devices"], 0);
    assert_eq!(buckets[1]["devices"], 1);

    let (st, d) = c
        .get("/api/dwell?start=2026-01-01T08:00:00Z&end=2026-01-01T09:00:00Z")
        .await
        .unwrap();
    assert_eq!(st, 200, "{d}");
    let items = d["items"].as_array().unwrap();
    let find = |dev: &str, room: &str| {
        items
            .iter()
            .find(|i| i["device"] == dev && i["room"] == room)
            .map(|i| i["dwell_s"].as_f64().unwrap())
    };
    assert_eq!(find("tag-a", "kitchen"), Some(600.0));
    assert_eq!(find("tag-a", "office"), Some(590.0));
    assert_eq!(find("tag-b", "kitchen"), Some(600.0));
    let (_, d) = c
        .get("/api/dwell?start=2026-01-01T08:00:00Z&end=2026-01-01T09:00:00Z&device=tag-a&room=office")
        .await
        .unwrap();
    assert_eq!(d["items"].as_array().unwrap().len(), 1, "{d}");

    for (url, code) in [
        ("/api/occupancy/history?start=2026-01-01T08:00:00Z&end=2026-01-01T09:00:00Z", "missing_parameter"),
        ("/api/occupancy/history?start=2026-01-01T08:00:00Z&end=2026-01-01T09:00:00Z&interval=fast", "bad_interval"),
        ("/api/occupancy/history?start=2026-01-01T09:00:00Z&end=2026-01-01T08:00:00Z&interval=1m", "bad_time_range"),
        ("/api/occupancy/history?start=2026-01-01T00:00:00Z&end=2026-01-31T00:00:00Z&interval=1s", "too_many_buckets"),
        ("/api/occupancy/history?start=now&end=2026-01-01T08:00:00Z&interval=1m", "bad_time"),
        ("/api/dwell?start=2026-01-01T08:00:00Z", "missing_parameter"),
        ("/api/dwell?start=2026-01-01T08:00:00Z&end=2026-01-01T09:00:00Z&device=%20", "bad_device_id"),
        ("/api/dwell?start=2026-01-01T08:00:00Z&end=2026-01-01T09:00:00Z&person=x", "bad_query"),
    ] {
        let (st, e) = c.get(url).await.unwrap();
        assert_eq!(st, 400, "{url}: {e}");
        assert_eq!(e["error"]["code"], code, "{url}: {e}");
    }
}
