//! The SSE live stream over a real HTTP connection: events published on the bus arrive in
//! order, filtered by type and device.

use futures::StreamExt;
use roomsense_central::bus::{DoorTransition, LiveEvent, NodeChange};
use roomsense_central::live::Position;
use roomsense_tests::*;
use serde_json::Value;

/// Reads SSE frames from `resp` until `want` events (not comments) arrived.
async fn read_events(resp: reqwest::Response, want: usize) -> Vec<(String, Value)> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while out.len() < want {
            let chunk = body
                .next()
                .await
                .expect("stream ended")
                .expect("stream error");
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(e) = event {
                    out.push((e, serde_json::from_str(&data).unwrap()));
                }
            }
        }
    })
    .await
    .expect("events did not arrive in time");
    out
}

fn door(i: i64) -> LiveEvent {
    LiveEvent::Door(DoorTransition {
        node: "pi-1".into(),
        door: "front".into(),
        state: if i % 2 == 0 { "open" } else { "closed" }.into(),
        at_ms: i,
    })
}

fn position(device: &str, room: &str, i: i64) -> LiveEvent {
    LiveEvent::Position(Position {
        device: device.into(),
        x: 1.0,
        y: 2.0,
        floor: 0,
        building: "hq".into(),
        room: Some(room.into()),
        room_probability: 0.9,
        confidence: 0.8,
        error_radius_m: 1.5,
        method: "multilateration".into(),
        receivers: 3,
        at_ms: i,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_live_events_in_order_with_filters() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    let open = |q: &'static str| c.http.get(format!("{}/api/events/live{q}", c.base)).send();
    let all = open("").await.unwrap();
    assert_eq!(all.status(), 200);
    assert!(all.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let doors = open("?type=door").await.unwrap();
    let tag = open("?device=tag-7&room=lab").await.unwrap();
    // Headers received: each stream is subscribed.
    let bus = c.app.bus();
    for i in 0..200 {
        bus.publish(door(i));
        if i % 10 == 0 {
            bus.publish(LiveEvent::Node(NodeChange {
                node: "pi-1".into(),
                state: "online".into(),
                reason: None,
                at_ms: i,
            }));
            bus.publish(position("tag-7", "lab", i));
            bus.publish(position("tag-7", "hall", i));
            bus.publish(position("tag-8", "lab", i));
        }
    }

    let got = read_events(doors, 200).await;
    assert!(got.iter().all(|(e, v)| e == "door" && v["type"] == "door"));
    let ats: Vec<i64> = got
        .iter()
        .map(|(_, v)| v["at_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(ats, (0..200).collect::<Vec<_>>(), "in publish order");

    let got = read_events(tag, 20).await;
    for (i, (e, v)) in got.iter().enumerate() {
        assert_eq!(e, "position");
        assert_eq!(
            (v["device"].as_str(), v["room"].as_str()),
            (Some("tag-7"), Some("lab"))
        );
        assert_eq!(v["at_ms"].as_i64(), Some(i as i64 * 10));
    }

    let got = read_events(all, 200 + 20 * 4).await;
    assert_eq!(got.iter().filter(|(e, _)| e == "node").count(), 20);
    assert_eq!(got.iter().filter(|(e, _)| e == "position").count(), 60);

    // A bad filter names itself; no token → 401.
    let (code, err) = c.get("/api/events/live?type=window").await.unwrap();
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (400, Some("bad_type"))
    );
    let r = reqwest::Client::new()
        .get(format!("{}/api/events/live", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
