//! End to end, driven by the simulator: a simulated person without access walks from the
//! kitchen into the restricted server room. Their tag's sightings go over MQTT to central,
//! the live positioning path places them, and the access pipeline raises exactly one
//! `unauthorized_entry`: stored, listed over REST, and published on MQTT `events/access`.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use roomsense_central::bus::LiveEvent;
use roomsense_common::protocol::{
    Batch, BleSighting, DoorTransition, SightingKind, SCHEMA_VERSION,
};
use roomsense_common::sim::{Building, Device, SimEvent, SimOptions, Simulator};
use roomsense_common::{DeviceId, NodeId, TopicKind};
use roomsense_tests::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::time::Duration;

const INTRUDER: &str = "tag-intruder";
const RESTRICTED: &str = "server-room";

fn building() -> Building {
    let mut b = Building::example();
    b.devices = vec![Device {
        id: DeviceId::parse(INTRUDER).unwrap(),
        name: "Visitor badge".into(),
        kind: "badge".into(),
        person: Some("visitor-1".into()),
        restricted_access: false,
        stationary: false,
        room: Some("kitchen".into()),
        tx_power: Some(-59),
    }];
    b
}

/// RSSI sum, advertisements, first and last heard.
type Window = (f32, u32, DateTime<Utc>, DateTime<Utc>);

/// One second of simulated sightings and door transitions, as edge batches per node.
fn batches(
    events: Vec<SimEvent>,
    seqs: &mut BTreeMap<NodeId, u64>,
    sent_at: DateTime<Utc>,
) -> Vec<(NodeId, TopicKind, Vec<u8>)> {
    let mut ble: BTreeMap<NodeId, BTreeMap<String, Window>> = BTreeMap::new();
    let mut doors: BTreeMap<NodeId, Vec<DoorTransition>> = BTreeMap::new();
    for e in events {
        match e {
            SimEvent::Ble {
                receiver,
                device,
                rssi,
                at,
                ..
            } => {
                let w = ble
                    .entry(receiver)
                    .or_default()
                    .entry(device)
                    .or_insert((0.0, 0, at, at));
                w.0 += rssi;
                w.1 += 1;
                w.2 = w.2.min(at);
                w.3 = w.3.max(at);
            }
            SimEvent::Door {
                node,
                door,
                state,
                at,
            } => doors
                .entry(node)
                .or_default()
                .push(DoorTransition { door, state, at }),
            SimEvent::Wifi { .. } => {}
        }
    }
    let mut out = Vec::new();
    let mut next = |node: &NodeId| {
        let s = seqs.entry(node.clone()).or_insert(0);
        *s += 1;
        *s
    };
    for (node, items) in doors {
        let seq = next(&node);
        out.push((
            node.clone(),
            TopicKind::Door,
            payload(&Batch {
                v: SCHEMA_VERSION,
                node,
                seq,
                sent_at,
                items,
            }),
        ));
    }
    for (node, devices) in ble {
        let seq = next(&node);
        let items = devices
            .into_iter()
            .map(|(id, (sum, n, first, last))| BleSighting {
                id: DeviceId::parse(&id).unwrap(),
                rssi: sum / n as f32,
                tx_power: Some(-59),
                count: n,
                first_at: first,
                last_at: last,
                kind: SightingKind::Ibeacon,
            })
            .collect();
        out.push((
            node.clone(),
            TopicKind::Ble,
            payload(&Batch {
                v: SCHEMA_VERSION,
                node,
                seq,
                sent_at,
                items,
            }),
        ));
    }
    out
}

/// A subscriber to `{prefix}/events/access`; returns after its SUBACK.
async fn subscribe_access(
    c: &TestCentral,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>> {
    let addr = c.mqtt_addr();
    let mut opts = MqttOptions::new(unique("watch"), addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 64);
    client
        .subscribe(c.topics.access_events(), QoS::AtLeastOnce)
        .await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut ready_tx = Some(ready_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(DEADLINE, ready).await??;
    Ok(rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_into_a_restricted_room_raises_exactly_one_access_event() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("building.toml");
    std::fs::write(&file, toml::to_string(&building()).unwrap()).unwrap();
    let c = TestCentral::start(CentralOptions {
        building: Some(file),
        ..CentralOptions::default()
    })
    .await
    .unwrap();
    let mut positions = c.app.bus().subscribe();
    let mut mqtt_events = subscribe_access(&c).await.unwrap();
    let mut publisher = Publisher::connect(c.mqtt_addr(), &unique("sim-edges"))
        .await
        .unwrap();

    // Simulated time a few minutes ago, stepped a second at a time; every restricted trip
    // is a trespass for a device without access.
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 600, 0).unwrap();
    let opts = SimOptions {
        start,
        devices: 0,
        dwell_secs: [40.0, 40.0],
        trespass_probability: 1.0,
        loss_probability: 0.0,
        ..SimOptions::default()
    };
    let mut sim = Simulator::new(building(), 11, opts).unwrap();
    let mut seqs = BTreeMap::new();
    let mut inside_for = 0;
    let mut last_sighting_ms = 0i64;
    let mut published = 0u64;
    // The visitor's true room and x/y each second, shown when a check fails.
    let mut rooms = Vec::new();
    for s in 1..=240 {
        let now = start + ChronoDuration::seconds(s);
        let events = sim.step(now);
        for e in &events {
            if let SimEvent::Ble { device, at, .. } = e {
                if device == INTRUDER {
                    last_sighting_ms = last_sighting_ms.max(at.timestamp_millis());
                }
            }
        }
        for (node, kind, body) in batches(events, &mut seqs, now) {
            publisher
                .publish(&topic(&c.topics, node.as_str(), kind), body, false)
                .await
                .unwrap();
            published += 1;
        }
        let truth = sim.truth();
        let me = truth.iter().find(|t| t.device == INTRUDER);
        if let Some(t) = me {
            rooms.push(format!("{s} {:?} ({:.1}, {:.1})", t.room, t.x, t.y));
        }
        let room = me.and_then(|t| t.room.clone());
        if room.as_deref() == Some(RESTRICTED) {
            inside_for += 1;
            // Stay long enough to be placed there (the room filter wants a few estimates
            // inside after the door), and leave before the next trip.
            if inside_for >= 35 {
                break;
            }
        } else {
            assert_eq!(inside_for, 0, "left the restricted room before 35 s");
        }
    }
    assert!(
        inside_for >= 10,
        "the simulated visitor never got into {RESTRICTED}"
    );

    // Wait until every batch is stored, and every estimate of the visitor up to its last
    // sighting has gone through the access pipeline.
    wait_for("all batches stored", DEADLINE, || async {
        let (_, v) = c.get("/api/ingest/stats").await.ok()?;
        (v["ingest"]["batches"].as_u64()? >= published).then_some(())
    })
    .await
    .unwrap();
    let mut seen_positions = 0u64;
    let mut latest = 0i64;
    // The visitor's estimates (simulated seconds, room, x/y), shown when a check fails.
    let mut track = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while latest < last_sighting_ms {
        let ev = tokio::time::timeout_at(deadline, positions.recv())
            .await
            .expect("no estimate of the visitor's last sighting")
            .unwrap();
        if let LiveEvent::Position(p) = ev {
            seen_positions += 1;
            if p.device == INTRUDER {
                latest = latest.max(p.at_ms);
                track.push(format!(
                    "{} {:?} ({:.1}, {:.1}) p={:.2} {}",
                    (p.at_ms - start.timestamp_millis()) as f64 / 1000.0,
                    p.room,
                    p.x,
                    p.y,
                    p.room_probability,
                    p.method
                ));
            }
        }
    }
    wait_for("the pipeline caught up", DEADLINE, || async {
        let (_, v) = c.get("/api/ingest/stats").await.ok()?;
        let a = &v["access"];
        (a["positions"].as_u64()? >= seen_positions
            && a["events"].as_u64()? == a["events_stored"].as_u64()?)
        .then_some(())
    })
    .await
    .unwrap();

    let (_, occ) = c
        .get(&format!("/api/rooms/{RESTRICTED}/occupancy"))
        .await
        .unwrap();
    assert_eq!(
        occ["occupants"][0]["device"],
        INTRUDER,
        "{occ}\nthe visitor's estimates:\n{}\nthe visitor's true rooms:\n{}",
        track.join("\n"),
        rooms.join("\n")
    );
    assert_eq!(occ["occupants"][0]["person"], "visitor-1", "{occ}");

    let (_, stored) = c.get("/api/access-events").await.unwrap();
    let items = stored["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "exactly one access event: {stored}");
    let e = &items[0];
    assert_eq!(e["kind"], "unauthorized_entry");
    assert_eq!(e["room"], RESTRICTED);
    assert_eq!(e["device"], INTRUDER);
    assert_eq!(e["person"], "visitor-1");
    assert!(e["evidence"]["confidence"].as_f64().unwrap() >= 0.5, "{e}");

    let m = tokio::time::timeout(DEADLINE, mqtt_events.recv())
        .await
        .expect("no access event on MQTT")
        .unwrap();
    assert_eq!(m["kind"], "unauthorized_entry");
    assert_eq!(m["id"], e["id"]);
    assert_eq!(m["device"], INTRUDER);
    assert_eq!(m["at"], e["at"]);
    let (_, v) = c.get("/api/ingest/stats").await.unwrap();
    assert_eq!(v["access"]["mqtt_published"], 1, "{v}");
    assert!(
        mqtt_events.try_recv().is_err(),
        "a second MQTT access event"
    );
}
