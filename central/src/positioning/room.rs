//! Rooms as polygons: point-in-polygon lookup, per-room probabilities of an estimate, and
//! a hysteresis tracker so a device near a wall does not flap between rooms.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Room {
    pub id: String,
    pub floor: i32,
    /// Outline in metres (any orientation; closing edge implied).
    pub polygon: Vec<(f64, f64)>,
    /// Ids of the doors of this room (door events on them lower the switching barrier).
    #[serde(default)]
    pub doors: Vec<String>,
}

impl Room {
    /// Even-odd ray casting; points exactly on an edge may go either way.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let p = &self.polygon;
        if p.len() < 3 {
            return false;
        }
        let mut inside = false;
        let mut j = p.len() - 1;
        for i in 0..p.len() {
            let (xi, yi) = p[i];
            let (xj, yj) = p[j];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }

    /// Distance from a point to the outline (0 inside).
    pub fn distance(&self, x: f64, y: f64) -> f64 {
        if self.contains(x, y) {
            return 0.0;
        }
        let p = &self.polygon;
        let mut best = f64::INFINITY;
        for i in 0..p.len() {
            let (ax, ay) = p[i];
            let (bx, by) = p[(i + 1) % p.len()];
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let t = if len2 > 0.0 {
                (((x - ax) * dx + (y - ay) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            best = best.min((x - ax - t * dx).hypot(y - ay - t * dy));
        }
        best
    }
}

/// Room containing a point on a floor (first match).
pub fn room_at(rooms: &[Room], x: f64, y: f64, floor: i32) -> Option<&Room> {
    rooms.iter().find(|r| r.floor == floor && r.contains(x, y))
}

/// Probabilities of the rooms on `floor` for an estimate at (x, y) with `error_radius`
/// (taken as 2 sigma of an isotropic Gaussian): the Gaussian mass inside each room by
/// a 21x21 quadrature over +-3 sigma, normalised over the rooms. When no mass falls in
/// any room, rooms are weighted by exp(-d^2 / 2 sigma^2) relative to the nearest one.
/// Highest first, ties by id; rooms with probability < 0.001 are left out.
pub fn room_probabilities(
    rooms: &[Room],
    x: f64,
    y: f64,
    floor: i32,
    error_radius: f32,
) -> Vec<(String, f32)> {
    let on_floor: Vec<&Room> = rooms
        .iter()
        .filter(|r| r.floor == floor && r.polygon.len() >= 3)
        .collect();
    if on_floor.is_empty() || !x.is_finite() || !y.is_finite() {
        return Vec::new();
    }
    let radius = if error_radius.is_finite() {
        f64::from(error_radius)
    } else {
        10.0
    };
    let sigma = (radius / 2.0).max(0.25);
    const N: i32 = 10;
    let step = 3.0 * sigma / f64::from(N);
    let mut mass = vec![0.0f64; on_floor.len()];
    for i in -N..=N {
        for j in -N..=N {
            let (u, v) = (f64::from(i) * step, f64::from(j) * step);
            let w = (-(u * u + v * v) / (2.0 * sigma * sigma)).exp();
            if let Some(k) = on_floor.iter().position(|r| r.contains(x + u, y + v)) {
                mass[k] += w;
            }
        }
    }
    let total: f64 = mass.iter().sum();
    if total <= 0.0 {
        let d: Vec<f64> = on_floor.iter().map(|r| r.distance(x, y)).collect();
        let dmin = d.iter().copied().fold(f64::INFINITY, f64::min);
        for (m, di) in mass.iter_mut().zip(&d) {
            *m = (-(di * di - dmin * dmin) / (2.0 * sigma * sigma)).exp();
        }
    }
    let total: f64 = mass.iter().sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<(String, f32)> = on_floor
        .iter()
        .zip(&mass)
        .map(|(r, m)| (r.id.clone(), (m / total) as f32))
        .filter(|(_, p)| *p >= 0.001)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// A door opened or closed at `at_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoorEvent {
    pub door: String,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HysteresisConfig {
    /// Another room must beat the current one by this much probability...
    pub margin: f32,
    /// ...continuously for this long before the tracker switches.
    pub dwell_ms: i64,
    /// Barrier after a door event on one of the current room's doors.
    pub door_margin: f32,
    pub door_dwell_ms: i64,
    /// How long a door event lowers the barrier (before and after it, for clock skew).
    pub door_window_ms: i64,
}

impl Default for HysteresisConfig {
    fn default() -> Self {
        Self {
            margin: 0.25,
            dwell_ms: 8_000,
            door_margin: 0.05,
            door_dwell_ms: 1_000,
            door_window_ms: 15_000,
        }
    }
}

/// Current room of one device with hysteresis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomTracker {
    pub config: HysteresisConfig,
    current: Option<String>,
    /// Room that currently beats `current`, and since when.
    challenger: Option<(String, i64)>,
    doors: Vec<DoorEvent>,
}

impl RoomTracker {
    pub fn new(config: HysteresisConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Record a door transition (any door; only the current room's doors matter).
    pub fn door_event(&mut self, event: DoorEvent) {
        self.doors.push(event);
        // Keep the list short: only recent events can matter.
        if self.doors.len() > 32 {
            self.doors.remove(0);
        }
    }

    fn door_recent(&self, rooms: &[Room], now_ms: i64) -> bool {
        let Some(cur) = &self.current else {
            return false;
        };
        let Some(room) = rooms.iter().find(|r| &r.id == cur) else {
            return false;
        };
        let w = self.config.door_window_ms;
        self.doors
            .iter()
            .any(|d| room.doors.contains(&d.door) && (now_ms - d.at_ms).abs() <= w)
    }

    /// Feed the room probabilities of a new estimate; returns the (possibly unchanged)
    /// current room. The first estimate sets the room at once.
    pub fn update(&mut self, now_ms: i64, probs: &[(String, f32)], rooms: &[Room]) -> Option<&str> {
        let best = probs
            .iter()
            .filter(|p| p.1.is_finite())
            .fold(None::<&(String, f32)>, |b, p| match b {
                Some(b) if b.1 > p.1 || (b.1 == p.1 && b.0 <= p.0) => Some(b),
                _ => Some(p),
            });
        let Some(cur) = self.current.clone() else {
            self.current = best.filter(|b| b.1 > 0.0).map(|b| b.0.clone());
            return self.current.as_deref();
        };
        let p_cur = probs.iter().find(|p| p.0 == cur).map_or(0.0, |p| p.1);
        let challenger = probs.iter().filter(|p| p.0 != cur && p.1.is_finite()).fold(
            None::<&(String, f32)>,
            |b, p| match b {
                Some(b) if b.1 > p.1 || (b.1 == p.1 && b.0 <= p.0) => Some(b),
                _ => Some(p),
            },
        );
        let (margin, dwell) = if self.door_recent(rooms, now_ms) {
            (self.config.door_margin, self.config.door_dwell_ms)
        } else {
            (self.config.margin, self.config.dwell_ms)
        };
        match challenger {
            Some((id, p)) if p - p_cur > margin => {
                let since = match &self.challenger {
                    Some((c, since)) if c == id => *since,
                    _ => now_ms,
                };
                if now_ms - since >= dwell {
                    self.current = Some(id.clone());
                    self.challenger = None;
                } else {
                    self.challenger = Some((id.clone(), since));
                }
            }
            _ => self.challenger = None,
        }
        self.current.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Vec<Room> {
        let sq = |id: &str, x0: f64, door: &str| Room {
            id: id.into(),
            floor: 0,
            polygon: vec![(x0, 0.0), (x0 + 5.0, 0.0), (x0 + 5.0, 4.0), (x0, 4.0)],
            doors: vec![door.into()],
        };
        vec![sq("a", 0.0, "door-a"), sq("b", 5.0, "door-b")]
    }

    #[test]
    fn point_in_polygon() {
        let r = rooms();
        assert_eq!(room_at(&r, 1.0, 1.0, 0).map(|r| r.id.as_str()), Some("a"));
        assert_eq!(room_at(&r, 7.0, 3.0, 0).map(|r| r.id.as_str()), Some("b"));
        assert!(room_at(&r, 7.0, 5.0, 0).is_none());
        assert!(room_at(&r, 1.0, 1.0, 1).is_none());
        // Concave L shape.
        let l = Room {
            id: "l".into(),
            floor: 0,
            polygon: vec![
                (0.0, 0.0),
                (4.0, 0.0),
                (4.0, 1.0),
                (1.0, 1.0),
                (1.0, 4.0),
                (0.0, 4.0),
            ],
            doors: vec![],
        };
        assert!(l.contains(0.5, 3.0) && l.contains(3.0, 0.5) && !l.contains(3.0, 3.0));
        assert!((l.distance(3.0, 3.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn probabilities() {
        let r = rooms();
        let p = room_probabilities(&r, 1.0, 2.0, 0, 1.0);
        assert_eq!(p[0].0, "a");
        assert!(p[0].1 > 0.99);
        let p = room_probabilities(&r, 5.0, 2.0, 0, 2.0);
        assert!((p[0].1 - 0.5).abs() < 0.1, "{p:?}");
        let sum: f32 = p.iter().map(|x| x.1).sum();
        assert!((sum - 1.0).abs() < 1e-4);
        // Outside all rooms: nearest room wins.
        let p = room_probabilities(&r, 12.0, 2.0, 0, 0.5);
        assert_eq!(p[0].0, "b");
        assert!(room_probabilities(&r, 1.0, 1.0, 3, 1.0).is_empty());
        assert!(room_probabilities(&[], 1.0, 1.0, 0, 1.0).is_empty());
    }

    #[test]
    fn standing_still_at_a_wall_does_not_flap() {
        let r = rooms();
        let mut t = RoomTracker::new(HysteresisConfig::default());
        let mut changes = 0;
        let mut last = None;
        for i in 0..600i64 {
            // Jitter of +-0.8 m around the wall at x = 5, deterministic pseudo-noise.
            let noise = ((i * 7919 % 101) as f64 / 100.0 - 0.5) * 1.6;
            let p = room_probabilities(&r, 5.0 + noise, 2.0, 0, 3.0);
            let now = t.update(i * 500, &p, &r).map(str::to_string);
            if last.is_some() && now != last {
                changes += 1;
            }
            last = now;
        }
        assert_eq!(changes, 0);
    }

    #[test]
    fn real_move_switches_and_door_speeds_it_up() {
        let r = rooms();
        let in_a = room_probabilities(&r, 2.0, 2.0, 0, 1.0);
        let in_b = room_probabilities(&r, 8.0, 2.0, 0, 1.0);
        let mut t = RoomTracker::new(HysteresisConfig::default());
        assert_eq!(t.update(0, &in_a, &r), Some("a"));
        assert_eq!(t.update(1_000, &in_b, &r), Some("a"));
        assert_eq!(t.update(5_000, &in_b, &r), Some("a"));
        assert_eq!(t.update(9_000, &in_b, &r), Some("b"));
        // Back to a through one of b's doors: the barrier is lower.
        t.door_event(DoorEvent {
            door: "door-b".into(),
            at_ms: 9_500,
        });
        assert_eq!(t.update(10_000, &in_a, &r), Some("b"));
        assert_eq!(t.update(11_000, &in_a, &r), Some("a"));
        // A door of another room does not lower the barrier.
        t.door_event(DoorEvent {
            door: "door-b".into(),
            at_ms: 11_500,
        });
        assert_eq!(t.update(12_000, &in_b, &r), Some("a"));
        assert_eq!(t.update(13_500, &in_b, &r), Some("a"));
    }
}
