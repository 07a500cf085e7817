//! What sources produce: observations and watermarks. Observations are also the NDJSON
//! lines written by `roomsense-edge record` and read by the `replay` source.

use chrono::{DateTime, Utc};
use roomsense_common::{DeviceId, DoorId, DoorState, SightingKind};
use serde::{Deserialize, Serialize};

/// One raw observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Observation {
    /// One BLE advertisement.
    Ble {
        device: DeviceId,
        rssi: f32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tx_power: Option<i8>,
        #[serde(default)]
        kind: SightingKind,
        at: DateTime<Utc>,
    },
    /// A door contact changed state.
    Door {
        door: DoorId,
        state: DoorState,
        at: DateTime<Utc>,
    },
    /// One access point in a WiFi scan.
    Wifi {
        bssid: DeviceId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssid: Option<String>,
        rssi: f32,
        channel: u16,
        at: DateTime<Utc>,
    },
}

impl Observation {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Observation::Ble { at, .. }
            | Observation::Door { at, .. }
            | Observation::Wifi { at, .. } => *at,
        }
    }

    pub fn at_ms(&self) -> i64 {
        self.at().timestamp_millis()
    }
}

/// What a source sends down the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    Obs(Observation),
    /// Every observation at or before this time (ms since the epoch) has been sent.
    Watermark(i64),
    /// The source has nothing more to send.
    Done,
}

/// A [`SourceEvent`] tagged with the index of its source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMsg {
    pub source: usize,
    pub event: SourceEvent,
}
