//! Cutting aggregator output into wire batches (pure).

use crate::aggregate::Output;
use chrono::{DateTime, Utc};
use roomsense_common::protocol::encode;
use roomsense_common::{
    Batch, BleSighting, DoorTransition, NodeId, TopicKind, WifiReading, SCHEMA_VERSION,
};

/// Items of one future batch (its `seq` and `sent_at` are given when it enters the outbox).
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Ble(Vec<BleSighting>),
    Door(Vec<DoorTransition>),
    Wifi(Vec<WifiReading>),
}

impl Pending {
    pub fn kind(&self) -> TopicKind {
        match self {
            Pending::Ble(_) => TopicKind::Ble,
            Pending::Door(_) => TopicKind::Door,
            Pending::Wifi(_) => TopicKind::Wifi,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Pending::Ble(v) => v.len(),
            Pending::Door(v) => v.len(),
            Pending::Wifi(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Observations carried (a sighting counts its advertisements).
    pub fn observations(&self) -> u64 {
        match self {
            Pending::Ble(v) => v.iter().map(|s| s.count as u64).sum(),
            Pending::Door(v) => v.len() as u64,
            Pending::Wifi(v) => v.len() as u64,
        }
    }

    /// The newest item time.
    pub fn latest(&self) -> Option<DateTime<Utc>> {
        match self {
            Pending::Ble(v) => v.iter().map(|s| s.last_at).max(),
            Pending::Door(v) => v.iter().map(|s| s.at).max(),
            Pending::Wifi(v) => v.iter().map(|s| s.at).max(),
        }
    }

    /// The JSON payload of this batch as `seq`. `sent_at` is `now`, or the newest item
    /// time when that is later (a simulated clock ahead of the wall clock), so the batch
    /// always satisfies "items at most 5 minutes after sent_at".
    pub fn encode(&self, node: &NodeId, seq: u64, now: DateTime<Utc>) -> Vec<u8> {
        let sent_at = self.latest().map_or(now, |l| l.max(now));
        fn enc<T: serde::Serialize + Clone>(
            node: &NodeId,
            seq: u64,
            sent_at: DateTime<Utc>,
            items: &[T],
        ) -> Vec<u8> {
            encode(&Batch {
                v: SCHEMA_VERSION,
                node: node.clone(),
                seq,
                sent_at,
                items: items.to_vec(),
            })
        }
        match self {
            Pending::Ble(v) => enc(node, seq, sent_at, v),
            Pending::Door(v) => enc(node, seq, sent_at, v),
            Pending::Wifi(v) => enc(node, seq, sent_at, v),
        }
    }
}

/// Splits output into batches of at most `max_items` each (doors first, then BLE, WiFi).
pub fn split(out: Output, max_items: usize) -> Vec<Pending> {
    let max = max_items.max(1);
    let mut v = Vec::new();
    for c in out.doors.chunks(max) {
        v.push(Pending::Door(c.to_vec()));
    }
    for c in out.ble.chunks(max) {
        v.push(Pending::Ble(c.to_vec()));
    }
    for c in out.wifi.chunks(max) {
        v.push(Pending::Wifi(c.to_vec()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use roomsense_common::protocol::{decode, Message};
    use roomsense_common::{DeviceId, DoorId, DoorState, SightingKind};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(s)
    }

    fn output(n: usize) -> Output {
        Output {
            ble: (0..n)
                .map(|i| BleSighting {
                    id: DeviceId::parse(&format!("sim-{i:03}")).unwrap(),
                    rssi: -70.3,
                    tx_power: Some(-59),
                    count: 2,
                    first_at: t(0),
                    last_at: t(1),
                    kind: SightingKind::Generic,
                })
                .collect(),
            doors: vec![DoorTransition {
                door: DoorId::parse("front").unwrap(),
                state: DoorState::Open,
                at: t(0),
            }],
            wifi: vec![WifiReading {
                bssid: DeviceId::parse("00:11:22:33:44:55").unwrap(),
                ssid: Some("corp".into()),
                rssi: -40.0,
                channel: 36,
                at: t(0),
            }],
        }
    }

    #[test]
    fn batches_decode_with_central_rules() {
        let node = NodeId::parse("pi-1").unwrap();
        let parts = split(output(5), 2);
        assert_eq!(parts.len(), 1 + 3 + 1);
        let total: u64 = parts.iter().map(Pending::observations).sum();
        assert_eq!(total, 1 + 10 + 1);
        for (i, p) in parts.iter().enumerate() {
            // The wall clock is behind the items (fast simulation): still valid.
            let payload = p.encode(&node, i as u64 + 1, t(-3600));
            let m = decode(&node, p.kind(), &payload, t(0)).unwrap();
            assert_eq!(m.len(), p.len());
            match (m, p) {
                (Message::Ble(b), Pending::Ble(items)) => {
                    assert_eq!(&b.items, items);
                    assert_eq!(b.seq, i as u64 + 1);
                    assert_eq!(b.sent_at, t(1));
                }
                (Message::Door(b), Pending::Door(items)) => assert_eq!(&b.items, items),
                (Message::Wifi(b), Pending::Wifi(items)) => assert_eq!(&b.items, items),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn largest_batch_decodes() {
        let node = NodeId::parse("pi-1").unwrap();
        let parts = split(output(10_000), 10_000);
        let ble = parts.iter().find(|p| p.kind() == TopicKind::Ble).unwrap();
        assert!(decode(&node, TopicKind::Ble, &ble.encode(&node, 1, t(1)), t(1)).is_ok());
    }
}
