//! Counters and health shared by the tasks; the node status and the systemd STATUS line.

use crate::outbox::Outbox;
use chrono::{DateTime, Utc};
use roomsense_common::{NodeId, NodeState, NodeStatus, SensorHealth, SensorState, SCHEMA_VERSION};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug)]
pub struct Shared {
    pub boot_at: DateTime<Utc>,
    boot: std::time::Instant,
    pub connected: AtomicBool,
    pub observations: AtomicU64,
    pub batches_stored: AtomicU64,
    pub published_batches: AtomicU64,
    pub resent_batches: AtomicU64,
    pub committed_batches: AtomicU64,
    pub pubacks: AtomicU64,
    pub inflight: AtomicU64,
    /// ms since boot of the last loop of each task (watchdog).
    aggregator_beat: AtomicI64,
    publisher_beat: AtomicI64,
    sensors: Mutex<Vec<SensorHealth>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    pub fn new() -> Self {
        Self {
            boot_at: Utc::now(),
            boot: std::time::Instant::now(),
            connected: AtomicBool::new(false),
            observations: AtomicU64::new(0),
            batches_stored: AtomicU64::new(0),
            published_batches: AtomicU64::new(0),
            resent_batches: AtomicU64::new(0),
            committed_batches: AtomicU64::new(0),
            pubacks: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            aggregator_beat: AtomicI64::new(0),
            publisher_beat: AtomicI64::new(0),
            sensors: Mutex::new(Vec::new()),
        }
    }

    fn since_boot_ms(&self) -> i64 {
        self.boot.elapsed().as_millis() as i64
    }

    pub fn beat_aggregator(&self) {
        self.aggregator_beat
            .store(self.since_boot_ms(), Ordering::Relaxed);
    }

    pub fn beat_publisher(&self) {
        self.publisher_beat
            .store(self.since_boot_ms(), Ordering::Relaxed);
    }

    /// Both the aggregator and the uplink loops ran within `within`.
    pub fn moving(&self, within: std::time::Duration) -> bool {
        let now = self.since_boot_ms();
        let w = within.as_millis() as i64;
        now - self.aggregator_beat.load(Ordering::Relaxed) <= w
            && now - self.publisher_beat.load(Ordering::Relaxed) <= w
    }

    pub fn set_sensor(&self, name: &str, kind: &str, state: SensorState, detail: Option<String>) {
        if let Ok(mut s) = self.sensors.lock() {
            let h = SensorHealth {
                name: name.to_string(),
                kind: kind.to_string(),
                state,
                detail,
            };
            match s.iter_mut().find(|x| x.name == name) {
                Some(x) => *x = h,
                None => s.push(h),
            }
        }
    }

    pub fn sensors(&self) -> Vec<SensorHealth> {
        self.sensors.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn status(&self, node: &NodeId, outbox: &Outbox, online: bool) -> NodeStatus {
        let now = Utc::now();
        NodeStatus {
            v: SCHEMA_VERSION,
            node: node.clone(),
            state: if online {
                NodeState::Online
            } else {
                NodeState::Offline
            },
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            boot_at: Some(self.boot_at),
            uptime_s: Some(self.boot.elapsed().as_secs()),
            sensors: self.sensors(),
            outbox_depth: Some(outbox.depth()),
            dropped: Some(outbox.dropped()),
            clock_offset_ms: None,
            sent_at: Some(now),
        }
    }

    /// One line for systemd's STATUS=.
    pub fn summary(&self, outbox: &Outbox) -> String {
        format!(
            "{}; {} observations in; outbox {} batches ({} items); {} dropped; {} in flight; {} committed",
            if self.connected.load(Ordering::Relaxed) { "connected" } else { "broker unreachable" },
            self.observations.load(Ordering::Relaxed),
            outbox.depth(),
            outbox.depth_items(),
            outbox.dropped(),
            self.inflight.load(Ordering::Relaxed),
            self.committed_batches.load(Ordering::Relaxed),
        )
    }
}
