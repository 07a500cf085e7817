//! Wire payloads (JSON). Every payload carries a schema version `v`; every batch carries
//! `{node, seq, sent_at}` where `seq` is per node, strictly increasing and durable.

use crate::ids::{DeviceId, DoorId, NodeId};
use crate::topics::TopicKind;
use crate::validate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Schema version written by this build; decoders accept exactly this version.
pub const SCHEMA_VERSION: u32 = 1;

/// A batch of observations from one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch<T> {
    /// Schema version.
    pub v: u32,
    pub node: NodeId,
    /// Per-node sequence number, strictly increasing across all of a node's batches.
    pub seq: u64,
    /// When the edge sent (or first tried to send) this batch, by the edge's clock.
    pub sent_at: DateTime<Utc>,
    pub items: Vec<T>,
}

pub type DoorBatch = Batch<DoorTransition>;
pub type BleBatch = Batch<BleSighting>;
pub type WifiBatch = Batch<WifiReading>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DoorState {
    Open,
    Closed,
}

impl DoorState {
    pub fn as_str(self) -> &'static str {
        match self {
            DoorState::Open => "open",
            DoorState::Closed => "closed",
        }
    }
}

/// A door contact changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorTransition {
    pub door: DoorId,
    pub state: DoorState,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SightingKind {
    Ibeacon,
    Eddystone,
    #[default]
    Generic,
}

impl SightingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SightingKind::Ibeacon => "ibeacon",
            SightingKind::Eddystone => "eddystone",
            SightingKind::Generic => "generic",
        }
    }
}

/// One BLE emitter seen by a node over an aggregation window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BleSighting {
    pub id: DeviceId,
    /// Smoothed RSSI over the window, dBm.
    pub rssi: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_power: Option<i8>,
    /// Advertisements aggregated into this sighting (≥ 1).
    pub count: u32,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    #[serde(default)]
    pub kind: SightingKind,
}

/// One access point seen in a WiFi scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiReading {
    pub bssid: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
    pub rssi: f32,
    pub channel: u16,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Online,
    Offline,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SensorState {
    #[default]
    Ok,
    Degraded,
    Failed,
}

/// Health of one sensor source on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorHealth {
    pub name: String,
    /// Backend: gpio, ble, wifi, sim, replay.
    pub kind: String,
    pub state: SensorState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Retained node status; also the Last Will (then `state = offline`, the rest default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub v: u32,
    pub node: NodeId,
    pub state: NodeState,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub boot_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub uptime_s: Option<u64>,
    #[serde(default)]
    pub sensors: Vec<SensorHealth>,
    #[serde(default)]
    pub outbox_depth: Option<u64>,
    #[serde(default)]
    pub dropped: Option<u64>,
    /// The edge's own estimate of its clock offset, if it has one (NTP), in ms.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
}

impl NodeStatus {
    /// The Last Will payload of a node.
    pub fn last_will(node: NodeId) -> Self {
        Self {
            v: SCHEMA_VERSION,
            node,
            state: NodeState::Offline,
            version: None,
            boot_at: None,
            uptime_s: None,
            sensors: Vec::new(),
            outbox_depth: None,
            dropped: None,
            clock_offset_ms: None,
            sent_at: None,
        }
    }
}

/// central→edge on `{prefix}/nodes/{node}/ack` (QoS 1): these batches are committed to
/// central's storage (or were already stored). The edge may delete them from its outbox;
/// a batch PUBACKed by the broker but never acked here is sent again (a duplicate is a no-op).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitAck {
    pub v: u32,
    pub node: NodeId,
    pub seqs: Vec<u64>,
}

/// A decoded and validated message from a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Status(NodeStatus),
    Door(DoorBatch),
    Ble(BleBatch),
    Wifi(WifiBatch),
}

impl Message {
    pub fn node(&self) -> &NodeId {
        match self {
            Message::Status(s) => &s.node,
            Message::Door(b) => &b.node,
            Message::Ble(b) => &b.node,
            Message::Wifi(b) => &b.node,
        }
    }

    /// Number of observations carried (0 for a status).
    pub fn len(&self) -> usize {
        match self {
            Message::Status(_) => 0,
            Message::Door(b) => b.items.len(),
            Message::Ble(b) => b.items.len(),
            Message::Wifi(b) => b.items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a payload was rejected. The message names the field and item that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {0} bytes; at most {max} are accepted", max = validate::MAX_PAYLOAD_BYTES)]
    TooLarge(usize),
    #[error("payload is not valid JSON for a {kind} message: {detail}")]
    Json { kind: &'static str, detail: String },
    #[error("unsupported schema version {found}; this build reads version {SCHEMA_VERSION}")]
    Version { found: u32 },
    #[error("payload says node {payload:?} but was published on the topic of node {topic:?}")]
    NodeMismatch { topic: String, payload: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("nodes do not publish on the {0} topic")]
    WrongTopic(&'static str),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Decodes and validates a payload received on a node topic. `now` is the receiver's clock.
pub fn decode(
    topic_node: &NodeId,
    kind: TopicKind,
    payload: &[u8],
    now: DateTime<Utc>,
) -> Result<Message, DecodeError> {
    if payload.len() > validate::MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    let msg = match kind {
        TopicKind::Status => {
            let s: NodeStatus = parse_json("status", payload)?;
            check_version(s.v)?;
            if let Some(at) = s.sent_at {
                validate::timestamp(at, now).map_err(|r| invalid("sent_at", r))?;
            }
            Message::Status(s)
        }
        TopicKind::Door => {
            let b: DoorBatch = parse_json("door", payload)?;
            check_batch(&b, now, |i, t| {
                validate::timestamp(t.at, now).map_err(|r| invalid(format!("items[{i}].at"), r))?;
                check_after_sent(i, "at", t.at, b.sent_at)
            })?;
            Message::Door(b)
        }
        TopicKind::Ble => {
            let b: BleBatch = parse_json("ble", payload)?;
            check_batch(&b, now, |i, s| {
                validate::rssi(s.rssi).map_err(|r| invalid(format!("items[{i}].rssi"), r))?;
                if s.count == 0 {
                    return Err(invalid(format!("items[{i}].count"), "must be at least 1"));
                }
                validate::timestamp(s.first_at, now)
                    .map_err(|r| invalid(format!("items[{i}].first_at"), r))?;
                validate::timestamp(s.last_at, now)
                    .map_err(|r| invalid(format!("items[{i}].last_at"), r))?;
                if s.last_at < s.first_at {
                    return Err(invalid(format!("items[{i}].last_at"), "is before first_at"));
                }
                check_after_sent(i, "last_at", s.last_at, b.sent_at)
            })?;
            Message::Ble(b)
        }
        TopicKind::Wifi => {
            let b: WifiBatch = parse_json("wifi", payload)?;
            check_batch(&b, now, |i, w| {
                validate::rssi(w.rssi).map_err(|r| invalid(format!("items[{i}].rssi"), r))?;
                if w.ssid.as_ref().is_some_and(|s| s.len() > 32) {
                    return Err(invalid(
                        format!("items[{i}].ssid"),
                        "is longer than 32 bytes",
                    ));
                }
                validate::timestamp(w.at, now).map_err(|r| invalid(format!("items[{i}].at"), r))?;
                check_after_sent(i, "at", w.at, b.sent_at)
            })?;
            Message::Wifi(b)
        }
        TopicKind::Config => return Err(DecodeError::WrongTopic("config")),
        TopicKind::Ack => return Err(DecodeError::WrongTopic("ack")),
    };
    if msg.node() != topic_node {
        return Err(DecodeError::NodeMismatch {
            topic: topic_node.to_string(),
            payload: msg.node().to_string(),
        });
    }
    Ok(msg)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    payload: &[u8],
) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|e| DecodeError::Json {
        kind,
        detail: e.to_string(),
    })
}

fn check_version(v: u32) -> Result<(), DecodeError> {
    if v != SCHEMA_VERSION {
        return Err(DecodeError::Version { found: v });
    }
    Ok(())
}

fn check_after_sent(
    i: usize,
    field: &str,
    at: DateTime<Utc>,
    sent_at: DateTime<Utc>,
) -> Result<(), DecodeError> {
    if at > sent_at + validate::MAX_ITEM_AFTER_SENT {
        return Err(invalid(
            format!("items[{i}].{field}"),
            format!(
                "{} is more than 5 minutes after the batch's sent_at {}",
                at.to_rfc3339(),
                sent_at.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

fn check_batch<T>(
    b: &Batch<T>,
    now: DateTime<Utc>,
    item: impl Fn(usize, &T) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    check_version(b.v)?;
    if b.seq > i64::MAX as u64 {
        return Err(invalid(
            "seq",
            format!("{} is larger than {}", b.seq, i64::MAX),
        ));
    }
    validate::timestamp(b.sent_at, now).map_err(|r| invalid("sent_at", r))?;
    validate::batch_len(b.items.len()).map_err(|r| invalid("items", r))?;
    b.items.iter().enumerate().try_for_each(|(i, t)| item(i, t))
}

/// Encodes any payload as JSON. Infallible for these types.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn node() -> NodeId {
        NodeId::parse("pi-1").unwrap()
    }

    fn ble_batch(rssi: f32) -> BleBatch {
        Batch {
            v: SCHEMA_VERSION,
            node: node(),
            seq: 7,
            sent_at: now(),
            items: vec![BleSighting {
                id: DeviceId::parse("aa:bb:cc:dd:ee:ff").unwrap(),
                rssi,
                tx_power: Some(-59),
                count: 3,
                first_at: now() - chrono::Duration::seconds(1),
                last_at: now(),
                kind: SightingKind::Ibeacon,
            }],
        }
    }

    #[test]
    fn decodes_a_ble_batch() {
        let b = ble_batch(-70.5);
        let m = decode(&node(), TopicKind::Ble, &encode(&b), now()).unwrap();
        assert_eq!(m, Message::Ble(b));
    }

    #[test]
    fn names_the_bad_field() {
        let b = ble_batch(-300.0);
        let e = decode(&node(), TopicKind::Ble, &encode(&b), now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "items[0].rssi: -300 dBm is outside [-127, 20] dBm"
        );
    }

    #[test]
    fn rejects_node_mismatch_and_version() {
        let b = ble_batch(-70.0);
        let other = NodeId::parse("pi-2").unwrap();
        assert!(matches!(
            decode(&other, TopicKind::Ble, &encode(&b), now()),
            Err(DecodeError::NodeMismatch { .. })
        ));
        let mut b2 = b;
        b2.v = 9;
        assert_eq!(
            decode(&node(), TopicKind::Ble, &encode(&b2), now()),
            Err(DecodeError::Version { found: 9 })
        );
    }

    #[test]
    fn rejects_empty_batches_and_unknown_fields() {
        let mut b = ble_batch(-70.0);
        b.items.clear();
        assert!(decode(&node(), TopicKind::Ble, &encode(&b), now()).is_err());
        let raw = br#"{"v":1,"node":"pi-1","seq":1,"sent_at":"2026-06-01T12:00:00Z","items":[],"extra":1}"#;
        assert!(matches!(
            decode(&node(), TopicKind::Door, raw, now()),
            Err(DecodeError::Json { .. })
        ));
    }

    #[test]
    fn last_will_decodes() {
        let lw = NodeStatus::last_will(node());
        let m = decode(&node(), TopicKind::Status, &encode(&lw), now()).unwrap();
        assert_eq!(m, Message::Status(lw));
    }

    fn arb_ts() -> impl Strategy<Value = DateTime<Utc>> {
        (1_600_000_000i64..1_780_000_000, 0u32..1000)
            .prop_map(|(s, ms)| Utc.timestamp_opt(s, ms * 1_000_000).unwrap())
    }

    fn arb_ble() -> impl Strategy<Value = BleBatch> {
        (
            "[a-z0-9-]{1,16}",
            0u64..i64::MAX as u64,
            arb_ts(),
            prop::collection::vec(
                (
                    "[a-f0-9:]{1,40}",
                    -127i32..20,
                    any::<Option<i8>>(),
                    1u32..1000,
                    0i64..5000,
                    0u8..3,
                ),
                1..20,
            ),
        )
            .prop_map(|(node, seq, sent_at, items)| Batch {
                v: SCHEMA_VERSION,
                node: NodeId::parse(&node).unwrap(),
                seq,
                sent_at,
                items: items
                    .into_iter()
                    .map(|(id, rssi, tx, count, span, k)| BleSighting {
                        id: DeviceId::parse(&id).unwrap(),
                        rssi: rssi as f32 + if rssi % 2 == 0 { 0.5 } else { 0.0 },
                        tx_power: tx,
                        count,
                        first_at: sent_at - chrono::Duration::milliseconds(span),
                        last_at: sent_at,
                        kind: [
                            SightingKind::Ibeacon,
                            SightingKind::Eddystone,
                            SightingKind::Generic,
                        ][k as usize],
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn ble_round_trip(b in arb_ble()) {
            let bytes = encode(&b);
            let m = decode(&b.node, TopicKind::Ble, &bytes, b.sent_at).unwrap();
            prop_assert_eq!(m, Message::Ble(b));
        }

        #[test]
        fn door_round_trip(node in "[a-z0-9]{1,10}", seq in any::<u32>(), at in arb_ts(), open in any::<bool>(), door in "[a-z_]{1,10}") {
            let b = Batch { v: SCHEMA_VERSION, node: NodeId::parse(&node).unwrap(), seq: seq as u64, sent_at: at, items: vec![DoorTransition { door: DoorId::parse(&door).unwrap(), state: if open { DoorState::Open } else { DoorState::Closed }, at }] };
            let m = decode(&b.node, TopicKind::Door, &encode(&b), at).unwrap();
            prop_assert_eq!(m, Message::Door(b));
        }

        #[test]
        fn wifi_round_trip(node in "[a-z0-9]{1,10}", rssi in -127i32..=20, ch in 1u16..200, at in arb_ts(), ssid in proptest::option::of("[ -~]{0,32}")) {
            let b = Batch { v: SCHEMA_VERSION, node: NodeId::parse(&node).unwrap(), seq: 1, sent_at: at, items: vec![WifiReading { bssid: DeviceId::parse("00:11:22:33:44:55").unwrap(), ssid, rssi: rssi as f32, channel: ch, at }] };
            let m = decode(&b.node, TopicKind::Wifi, &encode(&b), at).unwrap();
            prop_assert_eq!(m, Message::Wifi(b));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), k in 0usize..6) {
            let _ = decode(&node(), TopicKind::ALL[k], &bytes, now());
        }

        #[test]
        fn mutated_valid_payloads_never_panic(b in arb_ble(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = encode(&b);
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let _ = decode(&b.node, TopicKind::Ble, &bytes, b.sent_at);
        }
    }
}
