//! Occupancy, pure (time passed in):
//! - `Presence`: who is in which room now, since when and with what confidence, fed the
//!   live position estimates;
//! - `IntervalCounts`, `Dwell`: history from stored position estimates, folds over rows in
//!   time order, so they run page by page over any range.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One device in a room now.
#[derive(Debug, Clone, PartialEq)]
pub struct Occupant {
    pub device: String,
    pub room: String,
    /// When the device entered the room (time of the first estimate placing it there).
    pub since_ms: i64,
    /// Confidence of the latest estimate that placed it in this room.
    pub confidence: f32,
    /// Time of the device's latest estimate (in this room or too uncertain to move it).
    pub last_seen_ms: i64,
}

/// Who is where now. An estimate below `min_confidence` does not move a device (it still
/// counts as heard); a device not estimated for `absent_after_ms` has left.
#[derive(Debug, Clone)]
pub struct Presence {
    min_confidence: f32,
    absent_after_ms: i64,
    by_device: HashMap<String, Occupant>,
    by_room: BTreeMap<String, BTreeSet<String>>,
}

/// What an estimate did to a device's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Nothing changed room-wise.
    Stayed,
    /// Left `from` (if any) for `to` (`None`: in no room).
    Moved {
        from: Option<String>,
        to: Option<String>,
    },
}

impl Presence {
    pub fn new(min_confidence: f32, absent_after_ms: i64) -> Self {
        Self {
            min_confidence,
            absent_after_ms: absent_after_ms.max(1),
            by_device: HashMap::new(),
            by_room: BTreeMap::new(),
        }
    }

    /// Feeds one estimate: `device` is in `room` (or none) at `at_ms` with `confidence`.
    /// Estimates older than the device's latest are ignored.
    pub fn place(&mut self, device: &str, room: Option<&str>, confidence: f32, at_ms: i64) -> Move {
        let current = self.by_device.get_mut(device);
        if let Some(o) = &current {
            if at_ms < o.last_seen_ms {
                return Move::Stayed;
            }
        }
        if confidence < self.min_confidence {
            if let Some(o) = current {
                o.last_seen_ms = at_ms;
            }
            return Move::Stayed;
        }
        match (current, room) {
            (Some(o), Some(r)) if o.room == r => {
                o.confidence = confidence;
                o.last_seen_ms = at_ms;
                Move::Stayed
            }
            (None, None) => Move::Stayed,
            (_, to) => {
                let from = self.remove(device).map(|o| o.room);
                if let Some(r) = to {
                    self.by_device.insert(
                        device.to_string(),
                        Occupant {
                            device: device.to_string(),
                            room: r.to_string(),
                            since_ms: at_ms,
                            confidence,
                            last_seen_ms: at_ms,
                        },
                    );
                    self.by_room
                        .entry(r.to_string())
                        .or_default()
                        .insert(device.to_string());
                }
                Move::Moved {
                    from,
                    to: to.map(str::to_string),
                }
            }
        }
    }

    fn remove(&mut self, device: &str) -> Option<Occupant> {
        let o = self.by_device.remove(device)?;
        if let Some(set) = self.by_room.get_mut(&o.room) {
            set.remove(device);
            if set.is_empty() {
                self.by_room.remove(&o.room);
            }
        }
        Some(o)
    }

    /// Removes devices not estimated since `now_ms - absent_after`; returns them.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Occupant> {
        let cutoff = now_ms.saturating_sub(self.absent_after_ms);
        let gone: Vec<String> = self
            .by_device
            .values()
            .filter(|o| o.last_seen_ms < cutoff)
            .map(|o| o.device.clone())
            .collect();
        gone.iter().filter_map(|d| self.remove(d)).collect()
    }

    /// Devices in `room`, by device id.
    pub fn occupants(&self, room: &str) -> Vec<Occupant> {
        self.by_room
            .get(room)
            .map(|set| {
                set.iter()
                    .filter_map(|d| self.by_device.get(d).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn count(&self, room: &str) -> usize {
        self.by_room.get(room).map_or(0, BTreeSet::len)
    }

    /// Rooms with someone in them, by id.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.by_room.keys().map(String::as_str)
    }

    /// Devices placed in some room.
    pub fn tracked(&self) -> usize {
        self.by_device.len()
    }
}

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
    fn presence_tracks_rooms_since_and_confidence() {
        let mut p = Presence::new(0.5, 60_000);
        assert_eq!(
            p.place("a", Some("r1"), 0.9, 1_000),
            Move::Moved {
                from: None,
                to: Some("r1".into())
            }
        );
        assert_eq!(p.place("a", Some("r1"), 0.7, 2_000), Move::Stayed);
        let o = &p.occupants("r1")[0];
        assert_eq!(
            (o.since_ms, o.confidence, o.last_seen_ms),
            (1_000, 0.7, 2_000)
        );
        // too uncertain to move, but heard
        assert_eq!(p.place("a", Some("r2"), 0.2, 3_000), Move::Stayed);
        assert_eq!(p.occupants("r1")[0].last_seen_ms, 3_000);
        // an older estimate arriving late changes nothing
        assert_eq!(p.place("a", Some("r2"), 0.9, 2_500), Move::Stayed);
        assert_eq!(
            p.place("a", Some("r2"), 0.8, 4_000),
            Move::Moved {
                from: Some("r1".into()),
                to: Some("r2".into())
            }
        );
        assert_eq!(p.count("r1"), 0);
        assert_eq!(p.occupants("r2")[0].since_ms, 4_000);
        p.place("b", Some("r2"), 0.9, 50_000);
        assert_eq!(p.count("r2"), 2);
        let gone = p.expire(64_001);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].device, "a");
        assert_eq!(p.count("r2"), 1);
        assert_eq!(
            p.place("b", None, 0.9, 51_000),
            Move::Moved {
                from: Some("r2".into()),
                to: None
            }
        );
        assert_eq!(p.tracked(), 0);
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
