//! Sliding RSSI window per tracked device: one time series per receiver/emitter id,
//! expiry after a window length, median/MAD outlier rejection, mean of the inliers.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowConfig {
    /// Readings older than this (relative to `now_ms`) are ignored and dropped.
    pub window_ms: i64,
    /// At most this many readings are kept per id (oldest dropped first).
    pub max_per_id: usize,
    /// Readings further than `mad_k` robust standard deviations from the median are outliers.
    pub mad_k: f32,
    /// Lower bound of the robust standard deviation (dB): quantised RSSI often has MAD 0.
    pub min_sigma_db: f32,
    /// Share of the window (0..1] a device is estimated from while its track says it
    /// walks: its older readings describe where it was (see `LiveState`).
    pub walking_share: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            window_ms: 2_000,
            max_per_id: 64,
            mad_k: 3.0,
            min_sigma_db: 1.0,
            // What calibration on the simulator chooses (`eval --method live`).
            walking_share: 0.75,
        }
    }
}

/// RSSI readings of one device, keyed by receiver or emitter id.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RssiWindow {
    pub config: WindowConfig,
    series: BTreeMap<String, VecDeque<(i64, f32)>>,
}

impl RssiWindow {
    pub fn new(config: WindowConfig) -> Self {
        Self {
            config,
            series: BTreeMap::new(),
        }
    }

    /// Add a reading. Non-finite values are ignored; late readings are put in time order.
    pub fn insert(&mut self, id: &str, at_ms: i64, rssi: f32) {
        if !rssi.is_finite() {
            return;
        }
        let cap = self.config.max_per_id.max(1);
        let window = self.config.window_ms;
        let s = match self.series.get_mut(id) {
            Some(s) => s,
            None => self.series.entry(id.to_string()).or_default(),
        };
        let pos = s.partition_point(|&(t, _)| t <= at_ms);
        s.insert(pos, (at_ms, rssi));
        // Drop what the newest reading already puts outside the window, then cap.
        if let Some(&(newest, _)) = s.back() {
            while s
                .front()
                .is_some_and(|&(t, _)| t < newest.saturating_sub(window))
            {
                s.pop_front();
            }
        }
        while s.len() > cap {
            s.pop_front();
        }
    }

    /// Forget readings older than the window and ids with no reading left.
    pub fn expire(&mut self, now_ms: i64) {
        let from = now_ms.saturating_sub(self.config.window_ms);
        self.series.retain(|_, s| {
            while s.front().is_some_and(|&(t, _)| t < from) {
                s.pop_front();
            }
            !s.is_empty()
        });
    }

    /// True when no id has a reading.
    pub fn is_empty(&self) -> bool {
        self.series.values().all(VecDeque::is_empty)
    }

    /// `(id, smoothed rssi, inliers used)` for every id with a reading in
    /// `[now - window, now]`, strongest first (ties by id).
    pub fn snapshot(&self, now_ms: i64) -> Vec<(String, f32, usize)> {
        self.snapshot_over(now_ms, self.config.window_ms)
    }

    /// `(id, mean rssi, readings)` of the readings in `(after_ms, upto_ms]`, by id.
    pub fn readings_between(&self, after_ms: i64, upto_ms: i64) -> Vec<(String, f64, usize)> {
        self.series
            .iter()
            .filter_map(|(id, s)| {
                let (sum, n) = s
                    .iter()
                    .filter(|&&(t, _)| t > after_ms && t <= upto_ms)
                    .fold((0.0, 0usize), |(a, n), &(_, r)| (a + f64::from(r), n + 1));
                (n > 0).then(|| (id.clone(), sum / n as f64, n))
            })
            .collect()
    }

    /// [`Self::snapshot`] over the last `span_ms` only (at most the window).
    pub fn snapshot_over(&self, now_ms: i64, span_ms: i64) -> Vec<(String, f32, usize)> {
        let from = now_ms.saturating_sub(span_ms.clamp(0, self.config.window_ms));
        let mut out = Vec::new();
        let mut vals: Vec<f32> = Vec::new();
        for (id, s) in &self.series {
            vals.clear();
            vals.extend(
                s.iter()
                    .filter(|&&(t, _)| t >= from && t <= now_ms)
                    .map(|&(_, r)| r),
            );
            if let Some((mean, n)) =
                robust_mean(&mut vals, self.config.mad_k, self.config.min_sigma_db)
            {
                out.push((id.clone(), mean, n));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

fn median(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Mean of the values within `k` robust sigmas (1.4826 * MAD) of the median.
fn robust_mean(vals: &mut [f32], k: f32, min_sigma: f32) -> Option<(f32, usize)> {
    if vals.is_empty() {
        return None;
    }
    vals.sort_by(f32::total_cmp);
    let med = median(vals);
    let mut dev: Vec<f32> = vals.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(f32::total_cmp);
    let sigma = (1.4826 * median(&dev)).max(min_sigma);
    let (sum, n) = vals
        .iter()
        .filter(|v| (*v - med).abs() <= k * sigma)
        .fold((0.0f64, 0usize), |(s, n), &v| (s + f64::from(v), n + 1));
    // The median itself is always an inlier, so n >= 1.
    Some(((sum / n.max(1) as f64) as f32, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_outliers_and_expires() {
        let mut w = RssiWindow::new(WindowConfig {
            window_ms: 10_000,
            ..WindowConfig::default()
        });
        for (i, r) in [-60.0, -61.0, -59.0, -60.0, -20.0, -60.0]
            .into_iter()
            .enumerate()
        {
            w.insert("rx1", i as i64 * 1000, r);
        }
        w.insert("rx2", 0, -80.0);
        let s = w.snapshot(5_000);
        assert_eq!(s[0].0, "rx1");
        assert!((s[0].1 + 60.0).abs() < 0.01, "{s:?}");
        assert_eq!(s[0].2, 5);
        assert_eq!(s[1], ("rx2".to_string(), -80.0, 1));
        // The newest 1.5 s only: rx1's readings at 4 s and 5 s, not rx2's at 0 s; a span
        // longer than the window is the window.
        let s = w.snapshot_over(5_000, 1_500);
        assert_eq!((s.len(), s[0].0.as_str(), s[0].2), (1, "rx1", 2));
        assert_eq!(w.snapshot_over(5_000, 60_000), w.snapshot(5_000));
        // rx2's only reading leaves the window.
        let s = w.snapshot(10_500);
        assert_eq!(s.len(), 1);
        w.expire(10_500);
        w.expire(100_000);
        assert!(w.is_empty());
        assert!(w.snapshot(100_000).is_empty());
    }

    #[test]
    fn caps_and_orders_late_readings() {
        let mut w = RssiWindow::new(WindowConfig {
            max_per_id: 3,
            ..WindowConfig::default()
        });
        w.insert("a", 3000, -50.0);
        w.insert("a", 1000, -90.0);
        w.insert("a", 2000, -52.0);
        w.insert("a", 4000, -54.0);
        w.insert("a", 5000, f32::NAN);
        // The oldest (-90 at t=1000) was dropped by the cap.
        let s = w.snapshot(4000);
        assert_eq!(s[0].2, 3);
        assert!((s[0].1 + 52.0).abs() < 0.01);
        // Readings after `now` are not used.
        assert_eq!(w.snapshot(2500)[0].2, 1);
    }

    proptest! {
        #[test]
        fn smoothed_within_range(vals in proptest::collection::vec(-110.0f32..0.0, 1..40)) {
            let mut w = RssiWindow::new(WindowConfig::default());
            for (i, v) in vals.iter().enumerate() {
                w.insert("x", i as i64 * 10, *v);
            }
            let s = w.snapshot(vals.len() as i64 * 10);
            let lo = vals.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = vals.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            prop_assert_eq!(s.len(), 1);
            prop_assert!(s[0].1 >= lo - 1e-3 && s[0].1 <= hi + 1e-3);
            prop_assert!(s[0].2 >= 1 && s[0].2 <= vals.len());
        }
    }
}
