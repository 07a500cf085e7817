//! Live positions: every committed BLE sighting feeds its device's RSSI window (per
//! receiver node); the device is then located by multilateration against the building's
//! receivers and mapped to a room. The core (`LiveState`) is pure: time comes from the
//! readings; `LivePositions` only adds a lock.

use crate::positioning::{multilaterate, Anchor, MultilatConfig, RssiWindow, WindowConfig};
use crate::storage::{Received, WriteItem};
use roomsense_common::protocol::Message;
use roomsense_common::sim::Building;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Latest estimate of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    pub device: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub room: Option<String>,
    pub confidence: f32,
    pub error_radius_m: f32,
    pub method: String,
    /// Receivers heard in the window.
    pub receivers: usize,
    pub at_ms: i64,
}

/// Pure state: windows and latest estimates of every tracked device.
pub struct LiveState {
    anchors: Vec<Anchor>,
    building: Building,
    window: WindowConfig,
    multilat: MultilatConfig,
    windows: HashMap<String, RssiWindow>,
    latest: HashMap<String, Position>,
    /// Newest reading time seen, and when state was last pruned (reading time).
    newest_ms: i64,
    pruned_ms: i64,
}

/// A device not heard for this long is forgotten (its window and latest position), so
/// memory stays bounded however many devices pass by in a year.
pub const FORGET_AFTER_MS: i64 = 60 * 60 * 1000;
const PRUNE_EVERY_MS: i64 = 60 * 1000;

impl LiveState {
    /// Anchors are the building's receivers with their path-loss parameters.
    pub fn new(building: Building) -> Self {
        let anchors = building
            .receivers
            .iter()
            .map(|r| {
                let mut a = Anchor::new(r.node.as_str(), r.x, r.y, r.floor);
                a.rssi_at_1m = r.rssi_at_1m as f32;
                a.exponent = r.path_loss_exponent as f32;
                a
            })
            .collect();
        Self {
            anchors,
            building,
            window: WindowConfig::default(),
            multilat: MultilatConfig::default(),
            windows: HashMap::new(),
            latest: HashMap::new(),
            newest_ms: i64::MIN,
            pruned_ms: i64::MIN,
        }
    }

    /// Feeds one receiver's sighting of a device.
    pub fn observe(&mut self, receiver: &str, device: &str, rssi: f32, at_ms: i64) {
        let cfg = self.window.clone();
        self.windows
            .entry(device.to_string())
            .or_insert_with(|| RssiWindow::new(cfg))
            .insert(receiver, at_ms, rssi);
    }

    /// Re-estimates `device` as of `now_ms`.
    pub fn locate(&mut self, device: &str, now_ms: i64) -> Option<&Position> {
        let w = self.windows.get_mut(device)?;
        w.expire(now_ms);
        let snap = w.snapshot(now_ms);
        let scan: Vec<(&str, f32)> = snap.iter().map(|(id, r, _)| (id.as_str(), *r)).collect();
        let est = multilaterate(&self.anchors, &scan, &self.multilat)?;
        let room = self
            .building
            .room_at(est.floor, est.x, est.y)
            .or_else(|| nearest_room(&self.building, est.floor, est.x, est.y))
            .map(|r| r.id.clone());
        self.latest.insert(
            device.to_string(),
            Position {
                device: device.to_string(),
                x: est.x,
                y: est.y,
                floor: est.floor,
                room,
                confidence: est.confidence,
                error_radius_m: est.error_radius_m,
                method: est.method,
                receivers: scan.len(),
                at_ms: now_ms,
            },
        );
        self.latest.get(device)
    }

    pub fn position(&self, device: &str) -> Option<&Position> {
        self.latest.get(device)
    }

    /// Every tracked device's latest estimate, by device id.
    pub fn positions(&self) -> Vec<Position> {
        let mut v: Vec<Position> = self.latest.values().cloned().collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    /// Feeds every BLE sighting of a committed group and re-estimates the devices seen.
    pub fn ingest(&mut self, items: &[WriteItem]) {
        let mut seen: HashMap<String, i64> = HashMap::new();
        for item in items {
            if let WriteItem::Message(Received {
                msg: Message::Ble(b),
                ..
            }) = item
            {
                for s in &b.items {
                    let at = s.last_at.timestamp_millis();
                    self.observe(b.node.as_str(), s.id.as_str(), s.rssi, at);
                    let t = seen.entry(s.id.to_string()).or_insert(at);
                    *t = (*t).max(at);
                }
            }
        }
        let devices: BTreeSet<(String, i64)> = seen.into_iter().collect();
        for (device, at) in devices {
            self.newest_ms = self.newest_ms.max(at);
            self.locate(&device, at);
        }
        if self.newest_ms.saturating_sub(self.pruned_ms) >= PRUNE_EVERY_MS {
            self.prune(self.newest_ms);
        }
    }

    /// Drops expired readings, and devices not heard for `FORGET_AFTER_MS`.
    pub fn prune(&mut self, now_ms: i64) {
        self.pruned_ms = now_ms;
        self.windows.retain(|_, w| {
            w.expire(now_ms);
            !w.is_empty()
        });
        let cutoff = now_ms.saturating_sub(FORGET_AFTER_MS);
        self.latest.retain(|_, p| p.at_ms >= cutoff);
    }

    /// Devices with state (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.windows.len().max(self.latest.len())
    }
}

/// The room of `floor` whose outline is closest to (x, y): an estimate a little outside
/// every polygon (a wall, a gap between rooms) still belongs to the nearest room.
fn nearest_room(b: &Building, floor: i32, x: f64, y: f64) -> Option<&roomsense_common::sim::Room> {
    let seg_dist = |a: [f64; 2], c: [f64; 2]| {
        let (dx, dy) = (c[0] - a[0], c[1] - a[1]);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((x - a[0]) * dx + (y - a[1]) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        ((a[0] + t * dx - x).powi(2) + (a[1] + t * dy - y).powi(2)).sqrt()
    };
    b.rooms
        .iter()
        .filter(|r| r.floor == floor && !r.polygon.is_empty())
        .map(|r| {
            let n = r.polygon.len();
            let d = (0..n)
                .map(|i| seg_dist(r.polygon[i], r.polygon[(i + 1) % n]))
                .fold(f64::INFINITY, f64::min);
            (d, r)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, r)| r)
}

/// `LiveState` behind a lock, shared by the writer and the API.
pub struct LivePositions(Mutex<LiveState>);

impl LivePositions {
    pub fn new(building: Building) -> Self {
        Self(Mutex::new(LiveState::new(building)))
    }

    pub fn ingest(&self, items: &[WriteItem]) {
        if let Ok(mut s) = self.0.lock() {
            s.ingest(items);
        }
    }

    pub fn positions(&self) -> Vec<Position> {
        self.0.lock().map(|s| s.positions()).unwrap_or_default()
    }

    pub fn position(&self, device: &str) -> Option<Position> {
        self.0.lock().ok()?.position(device).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomsense_common::sim::{SimEvent, SimOptions, Simulator};

    /// Noise-free simulated devices are located near their true position, in the right room.
    #[test]
    fn locates_simulated_devices_near_the_truth() {
        let b = Building::example();
        let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let opts = SimOptions {
            start,
            devices: 6,
            noise_scale: 0.0,
            stationary_fraction: 1.0,
            ..SimOptions::default()
        };
        let mut sim = Simulator::new(b.clone(), 7, opts).unwrap();
        let mut live = LiveState::new(b);
        let now = start + chrono::Duration::seconds(5);
        for e in sim.step(now) {
            if let SimEvent::Ble {
                receiver,
                device,
                rssi,
                at,
                ..
            } = e
            {
                live.observe(receiver.as_str(), &device, rssi, at.timestamp_millis());
            }
        }
        let mut located = 0;
        let truth = sim.truth();
        for t in &truth {
            let Some(p) = live.locate(&t.device, now.timestamp_millis()).cloned() else {
                continue;
            };
            located += 1;
            let err = ((p.x - t.x).powi(2) + (p.y - t.y).powi(2)).sqrt();
            // The simulator adds a per-floor penalty the multilateration model does not know.
            assert!(err < 2.5, "{}: error {err:.2} m", t.device);
            assert_eq!(p.floor, t.floor);
            assert_eq!(p.room, t.room, "{}", t.device);
        }
        assert!(truth.len() >= 6);
        assert_eq!(located, truth.len());

        // devices not heard for an hour are forgotten
        live.prune(now.timestamp_millis() + FORGET_AFTER_MS + 1);
        assert_eq!(live.tracked(), 0);
    }
}
