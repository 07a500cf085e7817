//! `serve --demo`: a simulated building whose edge nodes publish over real MQTT to this
//! server, so a newcomer sees nodes, readings and door events at once. One MQTT connection
//! per simulated node (with its retained status and Last Will), one batch per node per second.

use crate::config::DemoConfig;
use anyhow::Context;
use chrono::{DateTime, Utc};
use roomsense_common::protocol::{
    encode, Batch, BleSighting, DoorTransition, NodeState, NodeStatus, SensorHealth, SensorState,
    SightingKind, WifiReading, SCHEMA_VERSION,
};
use roomsense_common::sim::{Building, SimEvent, SimOptions, Simulator};
use roomsense_common::{DeviceId, NodeId, TopicKind, Topics};
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Sum of RSSI, count, first and last seen, tx power of one device over one second.
type Window = (f32, u32, DateTime<Utc>, DateTime<Utc>, Option<i8>);

/// One simulated node's readings of one second.
#[derive(Default)]
struct NodeBatch {
    ble: BTreeMap<String, Window>,
    doors: Vec<DoorTransition>,
    wifi: Vec<WifiReading>,
}

/// Groups simulator events by node; BLE advertisements become one sighting per device
/// (mean RSSI, count, first/last seen). Pure.
fn group(events: Vec<SimEvent>) -> BTreeMap<NodeId, NodeBatch> {
    let mut out: BTreeMap<NodeId, NodeBatch> = BTreeMap::new();
    for e in events {
        let b = out.entry(e.node().clone()).or_default();
        match e {
            SimEvent::Ble {
                device,
                rssi,
                tx_power,
                at,
                ..
            } => {
                let s = b.ble.entry(device).or_insert((0.0, 0, at, at, tx_power));
                s.0 += rssi;
                s.1 += 1;
                s.2 = s.2.min(at);
                s.3 = s.3.max(at);
            }
            SimEvent::Door {
                door, state, at, ..
            } => b.doors.push(DoorTransition { door, state, at }),
            SimEvent::Wifi {
                bssid,
                ssid,
                rssi,
                channel,
                at,
                ..
            } => b.wifi.push(WifiReading {
                bssid,
                ssid,
                rssi,
                channel,
                at,
            }),
        }
    }
    out
}

struct DemoNode {
    id: NodeId,
    client: AsyncClient,
    seq: u64,
}

impl DemoNode {
    fn publish<T: serde::Serialize>(
        &mut self,
        topics: &Topics,
        kind: TopicKind,
        now: DateTime<Utc>,
        items: Vec<T>,
    ) {
        if items.is_empty() {
            return;
        }
        self.seq += 1;
        let batch = Batch {
            v: SCHEMA_VERSION,
            node: self.id.clone(),
            seq: self.seq,
            sent_at: now,
            items,
        };
        let topic = topics.node(&self.id, kind);
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, encode(&batch))
        {
            tracing::debug!(node = %self.id, error = %e, "demo publish dropped");
        }
    }
}

/// Reads a building file; an empty path is the built-in example. `key` names the setting.
pub fn load_building(key: &str, path: &str) -> anyhow::Result<Building> {
    if path.is_empty() {
        return Ok(Building::example());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{key}: cannot read {path}"))?;
    Building::from_toml_str(&text).map_err(|e| anyhow::anyhow!("{key} {path}: {e}"))
}

/// Starts the simulated nodes; they stop with `stop`.
pub fn spawn(
    cfg: &DemoConfig,
    broker: SocketAddr,
    topics: &Topics,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let building = load_building("demo.building", &cfg.building)?;
    let start = Utc::now();
    let options = SimOptions {
        start,
        devices: cfg.devices,
        wifi_interval_ms: Some(5000),
        ..SimOptions::default()
    };
    let mut sim =
        Simulator::new(building, cfg.seed, options).map_err(|e| anyhow::anyhow!("demo: {e}"))?;
    let mut node_ids: Vec<NodeId> = sim
        .building()
        .receivers
        .iter()
        .map(|r| r.node.clone())
        .chain(sim.building().doors.iter().map(|d| d.node.clone()))
        .collect();
    node_ids.sort();
    node_ids.dedup();
    // Sequence numbers must keep increasing across restarts of the demo: start from the clock.
    let seq0 = start.timestamp_millis().max(0) as u64 * 1000;
    let boot = start;
    let mut nodes: BTreeMap<NodeId, DemoNode> = BTreeMap::new();
    for id in node_ids {
        let status_topic = topics.node(&id, TopicKind::Status);
        let mut opts =
            MqttOptions::new(format!("demo-{id}"), broker.ip().to_string(), broker.port());
        opts.set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(1 << 22, 1 << 22)
            .set_last_will(LastWill::new(
                status_topic,
                encode(&NodeStatus::last_will(id.clone())),
                QoS::AtLeastOnce,
                true,
            ));
        let (client, mut events) = AsyncClient::new(opts, 256);
        let stop_poll = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_poll.cancelled() => return,
                    ev = events.poll() => if ev.is_err() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    },
                }
            }
        });
        nodes.insert(
            id.clone(),
            DemoNode {
                id,
                client,
                seq: seq0,
            },
        );
    }
    let topics = topics.clone();
    tracing::info!(
        nodes = nodes.len(),
        devices = cfg.devices,
        "demo building running"
    );
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = Utc::now();
            if n % 30 == 0 {
                for node in nodes.values() {
                    let status = NodeStatus {
                        v: SCHEMA_VERSION,
                        node: node.id.clone(),
                        state: NodeState::Online,
                        version: Some(env!("CARGO_PKG_VERSION").to_string()),
                        boot_at: Some(boot),
                        uptime_s: Some((now - boot).num_seconds().max(0) as u64),
                        sensors: vec![SensorHealth {
                            name: "sim".into(),
                            kind: "sim".into(),
                            state: SensorState::Ok,
                            detail: None,
                        }],
                        outbox_depth: Some(0),
                        dropped: Some(0),
                        clock_offset_ms: None,
                        sent_at: Some(now),
                    };
                    let _ = node.client.try_publish(
                        topics.node(&node.id, TopicKind::Status),
                        QoS::AtLeastOnce,
                        true,
                        encode(&status),
                    );
                }
            }
            n += 1;
            for (id, b) in group(sim.step(now)) {
                let Some(node) = nodes.get_mut(&id) else {
                    continue;
                };
                let ble: Vec<BleSighting> = b
                    .ble
                    .into_iter()
                    .filter_map(|(dev, (sum, count, first, last, tx))| {
                        Some(BleSighting {
                            id: DeviceId::parse(&dev).ok()?,
                            rssi: sum / count as f32,
                            tx_power: tx,
                            count,
                            first_at: first,
                            last_at: last,
                            kind: SightingKind::Generic,
                        })
                    })
                    .collect();
                node.publish(&topics, TopicKind::Ble, now, ble);
                node.publish(&topics, TopicKind::Door, now, b.doors);
                node.publish(&topics, TopicKind::Wifi, now, b.wifi);
            }
        }
        for node in nodes.values() {
            let _ = node.client.try_disconnect();
        }
    }))
}
