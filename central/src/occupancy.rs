//! Occupancy history from stored position estimates: pure folds over rows in time order
//! (time passed in with the rows), so they run page by page over any range.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One stored estimate: the device was in `room` (or in no room) at `at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub device: &'a str,
    pub room: Option<&'a str>,
    pub at_ms: i64,
}

/// Distinct devices seen per room per interval: bucket `i` covers
/// `[start + i·interval, start + (i+1)·interval)`.
#[derive(Debug, Default)]
pub struct IntervalCounts {
    start_ms: i64,
    interval_ms: i64,
    seen: BTreeMap<(String, i64), HashSet<String>>,
}

impl IntervalCounts {
    pub fn new(start_ms: i64, interval_ms: i64) -> Self {
        Self {
            start_ms,
            interval_ms: interval_ms.max(1),
            seen: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, s: &Sample<'_>) {
        let (Some(room), true) = (s.room, s.at_ms >= self.start_ms) else {
            return;
        };
        let bucket = (s.at_ms - self.start_ms) / self.interval_ms;
        self.seen
            .entry((room.to_string(), bucket))
            .or_default()
            .insert(s.device.to_string());
    }

    /// `(room, bucket start ms, distinct devices)`, by room then time; empty buckets absent.
    pub fn finish(self) -> Vec<(String, i64, usize)> {
        self.seen
            .into_iter()
            .map(|((room, b), set)| (room, self.start_ms + b * self.interval_ms, set.len()))
            .collect()
    }
}

/// Time each device spent in each room. Between two consecutive samples of a device the
/// time counts for the room of the first sample, up to `max_gap_ms` (a device not heard for
/// longer is not assumed to have stayed); the last sample of a device counts for nothing.
#[derive(Debug)]
pub struct Dwell {
    max_gap_ms: i64,
    last: HashMap<String, (Option<String>, i64)>,
    total: BTreeMap<(String, String), (i64, i64, i64)>,
}

impl Dwell {
    pub fn new(max_gap_ms: i64) -> Self {
        Self {
            max_gap_ms,
            last: HashMap::new(),
            total: BTreeMap::new(),
        }
    }

    /// Samples must come in time order per device (interleaving devices is fine).
    pub fn add(&mut self, s: &Sample<'_>) {
        if let Some((Some(room), at)) = self.last.get(s.device) {
            let dt = (s.at_ms - at).clamp(0, self.max_gap_ms);
            let e = self
                .total
                .entry((s.device.to_string(), room.clone()))
                .or_insert((0, *at, *at));
            e.0 += dt;
            e.2 = *at + dt;
        }
        if let Some(room) = s.room {
            self.total
                .entry((s.device.to_string(), room.to_string()))
                .or_insert((0, s.at_ms, s.at_ms));
        }
        self.last
            .insert(s.device.to_string(), (s.room.map(str::to_string), s.at_ms));
    }

    /// `(device, room, dwell ms, first seen ms, last seen ms)` by device then room.
    pub fn finish(self) -> Vec<(String, String, i64, i64, i64)> {
        self.total
            .into_iter()
            .map(|((d, r), (ms, first, last))| (d, r, ms, first, last))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s<'a>(device: &'a str, room: Option<&'a str>, at_ms: i64) -> Sample<'a> {
        Sample {
            device,
            room,
            at_ms,
        }
    }

    #[test]
    fn counts_distinct_devices_per_interval() {
        let mut c = IntervalCounts::new(1000, 100);
        for x in [
            s("a", Some("r1"), 1000),
            s("a", Some("r1"), 1050),
            s("b", Some("r1"), 1099),
            s("a", Some("r2"), 1100),
            s("c", None, 1100),
            s("z", Some("r1"), 999),
        ] {
            c.add(&x);
        }
        assert_eq!(
            c.finish(),
            vec![("r1".into(), 1000, 2), ("r2".into(), 1100, 1)]
        );
    }

    #[test]
    fn dwell_sums_time_per_room_with_gap_cap() {
        let mut d = Dwell::new(10_000);
        for x in [
            s("a", Some("r1"), 0),
            s("b", Some("r2"), 0),
            s("a", Some("r1"), 5_000),
            s("a", Some("r2"), 8_000),
            s("b", Some("r2"), 60_000), // 60 s gap capped at 10 s
            s("a", None, 9_000),
            s("a", Some("r1"), 20_000),
        ] {
            d.add(&x);
        }
        let out = d.finish();
        assert_eq!(
            out,
            vec![
                ("a".into(), "r1".into(), 8_000, 0, 8_000),
                ("a".into(), "r2".into(), 1_000, 8_000, 9_000),
                ("b".into(), "r2".into(), 10_000, 0, 10_000),
            ]
        );
    }
}
