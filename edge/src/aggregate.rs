//! Aggregation windows (pure; time is passed in as a watermark).
//!
//! Observations are put in fixed windows of event time, `[k·w, (k+1)·w)`. Per window, BLE
//! advertisements are reduced per device to one sighting: count, mean or median RSSI,
//! first/last seen, tx power and kind. Door transitions and WiFi readings pass through.
//! A window is emitted once the watermark (every observation at or before it has been
//! pushed) has reached its last millisecond; `flushed_until` is then the start of the
//! first window not emitted, so everything earlier is out of the aggregator.

use crate::config::Smoothing;
use crate::obs::Observation;
use chrono::{DateTime, Utc};
use roomsense_common::validate::{RSSI_MAX, RSSI_MIN};
use roomsense_common::{BleSighting, DeviceId, DoorTransition, SightingKind, WifiReading};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
struct Acc {
    count: u32,
    sum: f64,
    samples: Vec<f32>,
    first_ms: i64,
    last_ms: i64,
    tx_power: Option<i8>,
    kind: SightingKind,
}

#[derive(Debug, Default, Clone)]
struct Window {
    ble: HashMap<DeviceId, Acc>,
    doors: Vec<DoorTransition>,
    wifi: Vec<WifiReading>,
}

/// What leaves the aggregator.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub ble: Vec<BleSighting>,
    pub doors: Vec<DoorTransition>,
    pub wifi: Vec<WifiReading>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.ble.is_empty() && self.doors.is_empty() && self.wifi.is_empty()
    }

    /// Number of raw observations represented (a sighting counts its advertisements).
    pub fn observations(&self) -> u64 {
        self.ble.iter().map(|s| s.count as u64).sum::<u64>()
            + self.doors.len() as u64
            + self.wifi.len() as u64
    }
}

/// Per-device windows. See the module documentation.
#[derive(Debug, Clone)]
pub struct Aggregator {
    window_ms: i64,
    smoothing: Smoothing,
    windows: BTreeMap<i64, Window>,
    flushed_until: i64,
    pending: u64,
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Aggregator {
    pub fn new(window: std::time::Duration, smoothing: Smoothing) -> Self {
        Self {
            window_ms: (window.as_millis() as i64).max(1),
            smoothing,
            windows: BTreeMap::new(),
            flushed_until: i64::MIN,
            pending: 0,
        }
    }

    /// Observations pushed but not yet emitted.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Start of the first window not yet emitted (every observation before it has left).
    pub fn flushed_until(&self) -> i64 {
        self.flushed_until
    }

    fn window_of(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.window_ms)
    }

    pub fn push(&mut self, obs: Observation) {
        let k = self.window_of(obs.at_ms());
        let w = self.windows.entry(k).or_default();
        self.pending += 1;
        match obs {
            Observation::Ble {
                device,
                rssi,
                tx_power,
                kind,
                at,
            } => {
                let ms = at.timestamp_millis();
                let keep_samples = self.smoothing == Smoothing::Median;
                let acc = w.ble.entry(device).or_insert_with(|| Acc {
                    count: 0,
                    sum: 0.0,
                    samples: Vec::new(),
                    first_ms: ms,
                    last_ms: ms,
                    tx_power,
                    kind,
                });
                acc.count = acc.count.saturating_add(1);
                acc.sum += rssi as f64;
                if keep_samples {
                    acc.samples.push(rssi);
                }
                acc.first_ms = acc.first_ms.min(ms);
                if ms >= acc.last_ms {
                    acc.last_ms = ms;
                    if tx_power.is_some() {
                        acc.tx_power = tx_power;
                    }
                }
                if kind != SightingKind::Generic {
                    acc.kind = kind;
                }
            }
            Observation::Door { door, state, at } => {
                w.doors.push(DoorTransition { door, state, at });
            }
            Observation::Wifi {
                bssid,
                ssid,
                rssi,
                channel,
                at,
            } => w.wifi.push(WifiReading {
                bssid,
                ssid,
                rssi: clamp_rssi(rssi as f64),
                channel,
                at,
            }),
        }
    }

    /// Emits every window whose last millisecond is at or before `watermark_ms`.
    pub fn advance(&mut self, watermark_ms: i64) -> Output {
        let end = self.window_of(watermark_ms.saturating_add(1));
        // Windows with k < end are complete.
        let rest = self.windows.split_off(&end);
        let done = std::mem::replace(&mut self.windows, rest);
        let boundary = end.saturating_mul(self.window_ms);
        if boundary > self.flushed_until {
            self.flushed_until = boundary;
        }
        self.emit(done)
    }

    /// Emits everything (end of input).
    pub fn flush_all(&mut self) -> Output {
        let done = std::mem::take(&mut self.windows);
        if let Some((&k, _)) = done.iter().next_back() {
            let boundary = (k + 1).saturating_mul(self.window_ms);
            self.flushed_until = self.flushed_until.max(boundary);
        }
        self.emit(done)
    }

    fn emit(&mut self, done: BTreeMap<i64, Window>) -> Output {
        let mut out = Output::default();
        for (_, w) in done {
            let mut ble: Vec<(DeviceId, Acc)> = w.ble.into_iter().collect();
            ble.sort_by(|a, b| a.0.cmp(&b.0));
            for (id, mut acc) in ble {
                let rssi = match self.smoothing {
                    Smoothing::Mean => acc.sum / acc.count.max(1) as f64,
                    Smoothing::Median => median(&mut acc.samples),
                };
                out.ble.push(BleSighting {
                    id,
                    rssi: clamp_rssi(rssi),
                    tx_power: acc.tx_power,
                    count: acc.count,
                    first_at: ms_time(acc.first_ms),
                    last_at: ms_time(acc.last_ms),
                    kind: acc.kind,
                });
            }
            out.doors.extend(w.doors);
            out.wifi.extend(w.wifi);
        }
        self.pending = self.pending.saturating_sub(out.observations());
        out
    }
}

fn median(v: &mut [f32]) -> f64 {
    if v.is_empty() {
        return RSSI_MIN as f64;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    }
}

/// Rounds to 0.1 dB and clamps to what central accepts (non-finite → weakest).
pub fn clamp_rssi(v: f64) -> f32 {
    if !v.is_finite() {
        return RSSI_MIN;
    }
    let r = ((v * 10.0).round() / 10.0) as f32;
    r.clamp(RSSI_MIN, RSSI_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn ble(dev: &str, rssi: f32, ms: i64) -> Observation {
        Observation::Ble {
            device: DeviceId::parse(dev).unwrap(),
            rssi,
            tx_power: Some(-59),
            kind: SightingKind::Generic,
            at: ms_time(ms),
        }
    }

    #[test]
    fn one_window_per_device() {
        let mut a = Aggregator::new(Duration::from_secs(1), Smoothing::Mean);
        a.push(ble("a", -60.0, 1_000));
        a.push(ble("a", -70.0, 1_500));
        a.push(ble("b", -80.0, 1_200));
        a.push(ble("a", -50.0, 2_000));
        assert_eq!(a.pending(), 4);
        assert!(a.advance(1_998).is_empty());
        let out = a.advance(1_999);
        assert_eq!(out.ble.len(), 2);
        assert_eq!(out.ble[0].id.as_str(), "a");
        assert_eq!(out.ble[0].count, 2);
        assert_eq!(out.ble[0].rssi, -65.0);
        assert_eq!(out.ble[0].first_at, ms_time(1_000));
        assert_eq!(out.ble[0].last_at, ms_time(1_500));
        assert_eq!(out.ble[1].count, 1);
        assert_eq!(a.flushed_until(), 2_000);
        assert_eq!(a.pending(), 1);
        let out = a.flush_all();
        assert_eq!(out.ble[0].rssi, -50.0);
        assert_eq!(a.pending(), 0);
        assert_eq!(a.flushed_until(), 3_000);
    }

    #[test]
    fn median_resists_outliers() {
        let mut a = Aggregator::new(Duration::from_secs(1), Smoothing::Median);
        for (i, r) in [-60.0, -61.0, -120.0, -59.0].into_iter().enumerate() {
            a.push(ble("a", r, i as i64 * 10));
        }
        let out = a.flush_all();
        assert_eq!(out.ble[0].rssi, -60.5);
    }

    #[test]
    fn doors_and_wifi_pass_through_in_order() {
        let mut a = Aggregator::new(Duration::from_secs(1), Smoothing::Mean);
        for (i, s) in [
            roomsense_common::DoorState::Open,
            roomsense_common::DoorState::Closed,
        ]
        .into_iter()
        .enumerate()
        {
            a.push(Observation::Door {
                door: roomsense_common::DoorId::parse("front").unwrap(),
                state: s,
                at: ms_time(100 + i as i64),
            });
        }
        a.push(Observation::Wifi {
            bssid: DeviceId::parse("00:11:22:33:44:55").unwrap(),
            ssid: Some("x".into()),
            rssi: -300.0,
            channel: 6,
            at: ms_time(5),
        });
        let out = a.advance(10_000);
        assert_eq!(out.doors.len(), 2);
        assert_eq!(out.doors[0].state, roomsense_common::DoorState::Open);
        assert_eq!(out.wifi[0].rssi, RSSI_MIN);
        assert_eq!(out.observations(), 3);
    }

    proptest! {
        /// Nothing is lost or invented, whatever the watermarks; statistics stay in range.
        #[test]
        fn conserves_observations(
            obs in prop::collection::vec((0u8..5, -127i32..20, 0i64..10_000), 0..300),
            cuts in prop::collection::vec(0i64..12_000, 0..10),
            window_ms in 1u64..3000,
            median in any::<bool>(),
        ) {
            let smoothing = if median { Smoothing::Median } else { Smoothing::Mean };
            let mut a = Aggregator::new(Duration::from_millis(window_ms), smoothing);
            let mut sorted = obs.clone();
            sorted.sort_by_key(|o| o.2);
            let mut cuts = cuts;
            cuts.sort();
            let mut outs = Vec::new();
            let mut i = 0;
            for c in cuts {
                while i < sorted.len() && sorted[i].2 <= c {
                    let (d, r, t) = sorted[i];
                    a.push(ble(&format!("d{d}"), r as f32, t));
                    i += 1;
                }
                outs.push(a.advance(c));
                prop_assert!(a.flushed_until() <= c + 1);
            }
            for &(d, r, t) in &sorted[i..] {
                a.push(ble(&format!("d{d}"), r as f32, t));
            }
            outs.push(a.flush_all());
            prop_assert_eq!(a.pending(), 0);
            let total: u64 = outs.iter().map(|o| o.observations()).sum();
            prop_assert_eq!(total, obs.len() as u64);
            for o in &outs {
                for s in &o.ble {
                    prop_assert!(s.first_at <= s.last_at);
                    prop_assert!(s.count >= 1);
                    prop_assert!((-127.0..=20.0).contains(&s.rssi));
                    let (lo, hi) = sorted.iter()
                        .filter(|o| format!("d{}", o.0) == s.id.as_str() && ms_time(o.2) >= s.first_at && ms_time(o.2) <= s.last_at)
                        .fold((f32::MAX, f32::MIN), |(lo, hi), o| (lo.min(o.1 as f32), hi.max(o.1 as f32)));
                    prop_assert!(s.rssi >= lo - 0.05 && s.rssi <= hi + 0.05);
                    // One window: first and last seen fall in the same window.
                    prop_assert_eq!(
                        s.first_at.timestamp_millis().div_euclid(window_ms as i64),
                        s.last_at.timestamp_millis().div_euclid(window_ms as i64)
                    );
                }
            }
        }
    }
}
