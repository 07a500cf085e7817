//! Rooms as polygons: point-in-polygon lookup, per-room probabilities of an estimate, and
//! a room filter over the passages between rooms so a device near a wall does not flap
//! between rooms while one that walks through a door switches at once.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

/// A door contact's transition (evidence that someone passed that door).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoorEvent {
    pub door: String,
    pub at_ms: i64,
}

/// The rooms and the passages between them: two rooms that list the same door (or
/// stairs) id are joined by it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomGraph {
    rooms: Vec<Room>,
    /// Per room: `(neighbour index, passage id)`.
    links: Vec<Vec<(usize, String)>>,
    /// Where each door is (plan metres), when known: a door event only counts for the
    /// devices near it.
    door_at: HashMap<String, (f64, f64)>,
}

impl RoomGraph {
    pub fn new(rooms: Vec<Room>) -> Self {
        let mut links = vec![Vec::new(); rooms.len()];
        for (i, a) in rooms.iter().enumerate() {
            for (j, b) in rooms.iter().enumerate() {
                if i == j {
                    continue;
                }
                for d in &a.doors {
                    if b.doors.contains(d) {
                        links[i].push((j, d.clone()));
                    }
                }
            }
        }
        Self {
            rooms,
            links,
            door_at: HashMap::new(),
        }
    }

    /// Adds the doors' positions: a door event is then evidence only for devices within
    /// `RoomFilterConfig::door_radius_m` of the door.
    pub fn with_door_positions(
        mut self,
        doors: impl IntoIterator<Item = (String, f64, f64)>,
    ) -> Self {
        self.door_at = doors.into_iter().map(|(id, x, y)| (id, (x, y))).collect();
        self
    }

    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    /// Where a door is and on which floor (that of the first room listing it); none for
    /// a passage without a known position (stairs).
    pub fn door_place(&self, door: &str) -> Option<(f64, f64, i32)> {
        let &(x, y) = self.door_at.get(door)?;
        let floor = self
            .rooms
            .iter()
            .find(|r| r.doors.iter().any(|d| d == door))?
            .floor;
        Some((x, y, floor))
    }

    /// Indices of the rooms a passage joins.
    fn rooms_of_door(&self, door: &str) -> Vec<usize> {
        (0..self.rooms.len())
            .filter(|&i| self.rooms[i].doors.iter().any(|d| d == door))
            .collect()
    }

    /// `(neighbour id, passage id)` of `room`.
    pub fn neighbours(&self, room: &str) -> Vec<(&str, &str)> {
        self.rooms
            .iter()
            .position(|r| r.id == room)
            .map(|i| {
                self.links[i]
                    .iter()
                    .map(|(j, d)| (self.rooms[*j].id.as_str(), d.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A door opening put down to a device: it walked through `door` with probability
/// `share`, out of room `from` when that is known (the room it was reported in when the
/// door opened).
#[derive(Clone, Debug, PartialEq)]
pub struct Passage {
    pub door: String,
    pub share: f64,
    pub from: Option<String>,
}

impl Passage {
    pub fn new(door: &str, share: f64, from: Option<&str>) -> Self {
        Self {
            door: door.to_string(),
            share,
            from: from.map(str::to_string),
        }
    }
}

/// Parameters of the [`RoomFilter`]. Rates are per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomFilterConfig {
    /// Rate of walking through one passage of the current room with no door signal
    /// (passages without a contact, stairs, or a door held open).
    pub pass_rate: f64,
    /// Rate of walking through a door whose contact reported a transition within
    /// `door_window_ms` (not for a device whose track says it stands still).
    pub door_pass_rate: f64,
    /// Rate of turning up in a room not joined to the current one (lets the filter recover
    /// from a missed passage or a wrong start).
    pub jump_rate: f64,
    pub door_window_ms: i64,
    /// A door event counts for a device estimated within this distance of the door (m).
    /// A walker's track lags a few metres behind it when it reaches the door, so this is
    /// wider than the door's surroundings (a share still falls off with `passage_sigma_m`).
    pub door_radius_m: f64,
    /// Smallest likelihood a room gets from one estimate: the estimate itself may be off.
    pub min_likelihood: f64,
    /// The reported room changes only when another room's belief is this many times the
    /// reported room's.
    pub switch_ratio: f64,
    /// `switch_ratio` while the device's track says it walks (see [`RoomFilter::set_moving`]):
    /// the hysteresis is for devices standing at a wall, a walking one should be followed.
    pub moving_switch_ratio: f64,
    /// Without a passage, another room must lead by `switch_ratio` this long (ms) before
    /// the reported room changes.
    pub switch_hold_ms: i64,
    /// A device with at least this share of a recent passage between two rooms switches
    /// between them without `switch_hold_ms`.
    pub hold_bypass_share: f64,
    /// Exponent on an estimate's room likelihoods on its own floor (1 = independent
    /// estimates).
    pub evidence_weight: f64,
    /// Probability that the device a door's opening is put down to walked through it.
    pub passage_prob: f64,
    /// A door's opening is put down to the devices near it, weighted by
    /// `exp(-d² / 2σ²) · (passage_speed_bias + speed)`: σ (m)…
    pub passage_sigma_m: f64,
    /// …the weight of a device standing still (m/s)…
    pub passage_speed_bias: f64,
    /// …and the weight of "someone without a tag".
    pub passage_nobody: f64,
    /// An opening is put down to devices again at every update slot until it is this old
    /// (ms; 0 = not): the tracks catch up with a device that set off just before it walked
    /// through.
    pub review_for_ms: i64,
}

impl Default for RoomFilterConfig {
    fn default() -> Self {
        // What calibration on the simulator chooses (`eval --method live`, BENCHMARKS.md).
        Self {
            pass_rate: 0.0005,
            door_pass_rate: 0.05,
            jump_rate: 0.001,
            door_window_ms: 10_000,
            door_radius_m: 6.0,
            min_likelihood: 0.03,
            switch_ratio: 3.0,
            moving_switch_ratio: 1.5,
            passage_prob: 0.97,
            switch_hold_ms: 0,
            hold_bypass_share: 0.15,
            evidence_weight: 0.5,
            passage_sigma_m: 1.5,
            passage_speed_bias: 0.03,
            passage_nobody: 0.02,
            review_for_ms: 2_000,
        }
    }
}

/// Which room a device is in: a discrete Bayes (hidden Markov) filter over the rooms.
///
/// Between two estimates a device stays in its room or walks through one of the room's
/// passages; a door contact that just reported a transition makes walking through that
/// door far more likely, a jump to a room that is not joined is rare. Each estimate's
/// room probabilities are the evidence. A device standing at a wall sees evidence for
/// both rooms, but without a passage event the prior keeps it where it is; a device that
/// walks through a door switches within one or two estimates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomFilter {
    pub config: RoomFilterConfig,
    belief: Vec<f64>,
    current: Option<usize>,
    last_ms: Option<i64>,
    /// Room leading by `switch_ratio` without a passage, and since when.
    challenger: Option<(usize, i64)>,
    /// Passages put down to this device in the last `door_window_ms`: door, share, time.
    recent: Vec<(String, f64, i64)>,
    /// Whether the device's track says it walks (none: its motion is not known).
    moving: Option<bool>,
}

impl RoomFilter {
    pub fn new(config: RoomFilterConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Whether `door` is close enough to `at` for its events to count (unknown door
    /// position or unknown device position: yes).
    fn door_near(&self, graph: &RoomGraph, door: &str, at: Option<(f64, f64)>) -> bool {
        match (graph.door_at.get(door), at) {
            (Some(&(dx, dy)), Some((x, y))) => (x - dx).hypot(y - dy) <= self.config.door_radius_m,
            _ => true,
        }
    }

    /// The device walked through a door: with `passage_prob` × its share, the belief of
    /// the room it walked out of (`from`, when it is one of the door's rooms) moves to the
    /// door's other side. Belief already on that side stays there: a passage put down late
    /// (a later look at the opening) comes after estimates that moved part of it. When
    /// that room is not known, the belief of each room the door joins moves to the other
    /// side, and that of rooms it does not join (the device was believed elsewhere,
    /// wrongly) moves to the door's rooms.
    fn pass(&mut self, graph: &RoomGraph, passage: &Passage) {
        let joined = graph.rooms_of_door(&passage.door);
        let q = (self.config.passage_prob * passage.share).clamp(0.0, 1.0);
        if joined.len() < 2 || self.belief.len() != graph.rooms.len() {
            return;
        }
        let from = passage
            .from
            .as_ref()
            .and_then(|r| graph.rooms.iter().position(|g| &g.id == r))
            .filter(|i| joined.contains(i));
        let mut next = self.belief.clone();
        let k = joined.len() as f64;
        for (i, b) in self.belief.iter().enumerate() {
            if from.is_some_and(|f| f != i) {
                continue;
            }
            let moved = b * q;
            next[i] -= moved;
            if joined.contains(&i) {
                for &j in joined.iter().filter(|&&j| j != i) {
                    next[j] += moved / (k - 1.0);
                }
            } else {
                for &j in &joined {
                    next[j] += moved / k;
                }
            }
        }
        self.belief = next;
    }

    /// Whether the device walks, as its track's motion models say (none: not known), for
    /// the next updates: a walking device switches rooms at `moving_switch_ratio`, one
    /// standing still (or of unknown motion) at `switch_ratio`; a door that just opened
    /// near it makes walking through that door likely unless it stands still.
    pub fn set_moving(&mut self, moving: Option<bool>) {
        self.moving = moving;
    }

    /// Belief of each room (same order as the graph's rooms), after the last update.
    pub fn belief(&self) -> &[f64] {
        &self.belief
    }

    /// Feeds one estimate's room probabilities at `now_ms`, with the estimated position
    /// (when known) and the building's recent door transitions (any door; those within
    /// `door_window_ms` of now and `door_radius_m` of the device count) and the doors this
    /// device was seen to open since the last update (`passed`); returns the reported room.
    pub fn update<'g>(
        &mut self,
        now_ms: i64,
        probs: &[(String, f32)],
        graph: &'g RoomGraph,
        at: Option<(f64, f64)>,
        doors: &[DoorEvent],
        passed: &[Passage],
    ) -> Option<&'g str> {
        let n = graph.rooms.len();
        if n == 0 {
            return None;
        }
        let config = self.config.clone();
        let c = &config;
        // A passage put down to this device is an event, not noise: no hysteresis then, and
        // this estimate (which lags behind, still showing the room left) is no evidence
        // between rooms of one floor. Not while its track says it stands still: the door
        // was then more likely opened by someone beside it (a still device right at a
        // door gets most of an opening whose walker's track lags behind), so the passage
        // only moves the belief and the device's own estimates still decide.
        let walked =
            self.moving != Some(false) && passed.iter().any(|p| p.share * c.passage_prob >= 0.5);
        // The estimate's floor: that of its rooms.
        let floor = probs
            .first()
            .and_then(|p| graph.rooms.iter().find(|r| r.id == p.0))
            .map(|r| r.floor);
        let lik: Vec<f64> = graph
            .rooms
            .iter()
            .map(|r| {
                let p = probs
                    .iter()
                    .find(|p| p.0 == r.id)
                    .map_or(0.0, |p| f64::from(p.1));
                let p = if p.is_finite() { p } else { 0.0 };
                if Some(r.floor) == floor && walked {
                    1.0
                } else if Some(r.floor) == floor {
                    // Successive estimates share most of their readings and are smoothed
                    // by the track: each is worth less than an independent one.
                    p.max(c.min_likelihood).powf(c.evidence_weight)
                } else {
                    // Another floor: a floor costs far more signal than a wall.
                    c.min_likelihood
                }
            })
            .collect();
        if probs.is_empty() {
            // No evidence: nothing to update (an index from another graph is no answer).
            return if self.belief.len() == n {
                self.current
                    .and_then(|i| graph.rooms.get(i))
                    .map(|r| r.id.as_str())
            } else {
                None
            };
        }
        if self.belief.len() != n || self.last_ms.is_none() {
            // First estimate: its own probabilities (the likelihood floor is for updates).
            self.belief = graph
                .rooms
                .iter()
                .map(|r| {
                    probs
                        .iter()
                        .find(|p| p.0 == r.id && p.1.is_finite())
                        .map_or(0.0, |p| f64::from(p.1))
                        .max(0.01)
                })
                .collect();
            self.current = None;
        } else {
            for p in passed {
                self.pass(graph, p);
            }
            let dt = ((now_ms - self.last_ms.unwrap_or(now_ms)).max(0) as f64 / 1000.0).min(600.0);
            let mut next = vec![0.0; n];
            let mut total = 0.0;
            // Mass that jumps to any room, spread evenly.
            let mut jump = 0.0;
            // Passages a door event makes likely for this device, found once.
            let active: Vec<&str> = doors
                .iter()
                .filter(|d| {
                    self.moving != Some(false)
                        && (now_ms - d.at_ms).abs() <= c.door_window_ms
                        && self.door_near(graph, &d.door, at)
                })
                .map(|d| d.door.as_str())
                .collect();
            for i in 0..n {
                let b = self.belief[i];
                let rate = |d: &str| {
                    if active.contains(&d) {
                        c.door_pass_rate
                    } else {
                        c.pass_rate
                    }
                };
                let out_rate: f64 =
                    graph.links[i].iter().map(|(_, d)| rate(d)).sum::<f64>() + c.jump_rate;
                let leave = 1.0 - (-out_rate * dt).exp();
                next[i] += b * (1.0 - leave);
                if out_rate > 0.0 {
                    for (j, d) in &graph.links[i] {
                        next[*j] += b * leave * rate(d) / out_rate;
                    }
                    jump += b * leave * c.jump_rate / out_rate / n as f64;
                }
            }
            for v in next.iter_mut() {
                *v += jump;
            }
            for (v, l) in next.iter_mut().zip(&lik) {
                *v *= l;
                total += *v;
            }
            if total > 0.0 && total.is_finite() {
                for v in next.iter_mut() {
                    *v /= total;
                }
                self.belief = next;
            } else {
                self.belief = lik.clone();
            }
        }
        let total: f64 = self.belief.iter().sum();
        for v in self.belief.iter_mut() {
            *v = (*v / total).max(1e-12);
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
        let best = (0..n).fold(0, |b, i| {
            if self.belief[i] > self.belief[b] {
                i
            } else {
                b
            }
        });
        self.recent
            .retain(|(_, _, at)| now_ms - at <= c.door_window_ms);
        self.recent
            .extend(passed.iter().map(|p| (p.door.clone(), p.share, now_ms)));
        let ratio = if walked {
            1.0
        } else if self.moving == Some(true) {
            c.moving_switch_ratio
        } else {
            c.switch_ratio
        };
        self.current = match self.current {
            Some(cur) if best == cur || self.belief[best] < ratio * self.belief[cur] => {
                self.challenger = None;
                Some(cur)
            }
            Some(cur)
                if !walked
                    && graph.rooms[cur].floor == graph.rooms[best].floor
                    && !graph.links[cur].iter().any(|(j, d)| {
                        *j == best
                            && (self
                                .recent
                                .iter()
                                .any(|(r, share, _)| r == d && *share >= c.hold_bypass_share)
                                || doors.iter().any(|e| {
                                    &e.door == d && (now_ms - e.at_ms).abs() <= c.door_window_ms
                                }))
                    }) =>
            {
                // Evidence alone, on one floor, no door between the rooms just used (by
                // this device, or by anyone: the opening of a door whose walker's track
                // lags behind may have gone to nobody): the other room must keep its lead
                // for `switch_hold_ms` (a burst of noisy estimates lasts a few seconds; a
                // floor costs far more signal than a wall, so floors need no hold).
                let since = match self.challenger {
                    Some((room, since)) if room == best => since,
                    _ => now_ms,
                };
                self.challenger = Some((best, since));
                if now_ms - since >= c.switch_hold_ms {
                    self.challenger = None;
                    Some(best)
                } else {
                    Some(cur)
                }
            }
            _ => {
                self.challenger = None;
                Some(best)
            }
        };
        self.current
            .and_then(|i| graph.rooms.get(i))
            .map(|r| r.id.as_str())
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
    fn graph_joins_rooms_by_shared_doors() {
        let mut r = rooms();
        r[0].doors.push("a-b".into());
        r[1].doors.push("a-b".into());
        let g = RoomGraph::new(r);
        assert_eq!(g.neighbours("a"), vec![("b", "a-b")]);
        assert_eq!(g.neighbours("b"), vec![("a", "a-b")]);
        assert!(g.neighbours("nowhere").is_empty());
    }

    fn joined() -> RoomGraph {
        let mut r = rooms();
        r[0].doors.push("a-b".into());
        r[1].doors.push("a-b".into());
        RoomGraph::new(r)
    }

    #[test]
    fn standing_still_at_a_wall_does_not_flap() {
        let g = joined();
        let mut t = RoomFilter::new(RoomFilterConfig::default());
        let mut changes = 0;
        let mut last = None;
        for i in 0..600i64 {
            // Jitter of +-0.8 m around the wall at x = 5.3, deterministic pseudo-noise.
            let noise = ((i * 7919 % 101) as f64 / 100.0 - 0.5) * 1.6;
            let p = room_probabilities(g.rooms(), 5.3 + noise, 2.0, 0, 3.0);
            let now = t
                .update(i * 500, &p, &g, None, &[], &[])
                .map(str::to_string);
            if last.is_some() && now != last {
                changes += 1;
            }
            last = now;
        }
        assert!(changes <= 1, "{changes} room changes");
    }

    /// Estimates (one a second, all in b after one in a) until the filter reports b, with
    /// `doors` reported and the device at `at`.
    fn estimates_to_switch(g: &RoomGraph, doors: &[DoorEvent], at: Option<(f64, f64)>) -> i64 {
        estimates_to_switch_in(RoomFilterConfig::default(), None, g, doors, at)
    }

    /// [`estimates_to_switch`] with `config`, the track saying the device walks (`moving`).
    fn estimates_to_switch_in(
        config: RoomFilterConfig,
        moving: Option<bool>,
        g: &RoomGraph,
        doors: &[DoorEvent],
        at: Option<(f64, f64)>,
    ) -> i64 {
        let in_a = room_probabilities(g.rooms(), 2.0, 2.0, 0, 1.0);
        let in_b = room_probabilities(g.rooms(), 8.0, 2.0, 0, 1.0);
        let mut t = RoomFilter::new(config);
        t.set_moving(moving);
        assert_eq!(t.update(0, &in_a, g, at, &[], &[]), Some("a"));
        for k in 1..60 {
            if t.update(k * 1_000, &in_b, g, at, doors, &[]) == Some("b") {
                return k;
            }
        }
        panic!("never switched");
    }

    #[test]
    fn real_move_switches_and_a_door_event_speeds_it_up() {
        let g = joined();
        // Without a door event: the evidence has to persist.
        let without = estimates_to_switch(&g, &[], None);
        assert!(without >= 2, "switched on one estimate without a door");
        // With the door between them just reported: sooner.
        let ab = [DoorEvent {
            door: "a-b".into(),
            at_ms: 500,
        }];
        assert!(estimates_to_switch(&g, &ab, None) < without);
        // A door of another room does not help.
        let other = [DoorEvent {
            door: "door-b".into(),
            at_ms: 500,
        }];
        assert_eq!(estimates_to_switch(&g, &other, None), without);
    }

    #[test]
    fn a_walking_device_is_followed_sooner_and_a_still_one_is_not_moved_by_a_door() {
        let g = joined().with_door_positions([("a-b".to_string(), 5.0, 2.0)]);
        let config = RoomFilterConfig {
            switch_ratio: 100.0,
            moving_switch_ratio: 1.0,
            ..RoomFilterConfig::default()
        };
        let n = |moving, doors: &[DoorEvent]| {
            estimates_to_switch_in(config.clone(), moving, &g, doors, Some((5.5, 2.0)))
        };
        // The hysteresis is for devices standing still (or of unknown motion).
        assert!(n(Some(true), &[]) < n(Some(false), &[]));
        assert_eq!(n(None, &[]), n(Some(false), &[]));
        // A door opening beside a device standing still is someone else walking through.
        let event = [DoorEvent {
            door: "a-b".into(),
            at_ms: 500,
        }];
        let d = |moving, doors: &[DoorEvent]| {
            let c = RoomFilterConfig::default();
            estimates_to_switch_in(c, moving, &g, doors, Some((5.5, 2.0)))
        };
        assert!(d(None, &event) < d(None, &[]));
        assert!(d(Some(true), &event) < d(Some(true), &[]));
        assert_eq!(d(Some(false), &event), d(Some(false), &[]));
    }

    #[test]
    fn a_door_event_counts_only_for_devices_near_that_door() {
        let g = joined().with_door_positions([("a-b".to_string(), 5.0, 2.0)]);
        let event = [DoorEvent {
            door: "a-b".into(),
            at_ms: 500,
        }];
        let without = estimates_to_switch(&g, &[], Some((5.5, 2.0)));
        // Near the door: the event makes the switch quicker.
        assert!(estimates_to_switch(&g, &event, Some((5.5, 2.0))) < without);
        // 10 m away (a wild estimate): the same event is no evidence for this device.
        assert_eq!(estimates_to_switch(&g, &event, Some((8.0, 12.0))), without);
    }

    #[test]
    fn a_passage_switches_at_once_and_sticks() {
        let g = joined();
        let in_a = room_probabilities(g.rooms(), 2.0, 2.0, 0, 1.0);
        // Just past the wall, the estimate still leaning to a (it lags behind).
        let leaning_a = room_probabilities(g.rooms(), 4.8, 2.0, 0, 1.5);
        let mut t = RoomFilter::new(RoomFilterConfig::default());
        assert_eq!(t.update(0, &in_a, &g, None, &[], &[]), Some("a"));
        let walked = [Passage::new("a-b", 1.0, None)];
        assert_eq!(
            t.update(1_000, &leaning_a, &g, None, &[], &walked),
            Some("b")
        );
        assert_eq!(t.update(2_000, &leaning_a, &g, None, &[], &[]), Some("b"));
        // A small share (someone else was nearer the door) does not move it.
        let mut t = RoomFilter::new(RoomFilterConfig::default());
        t.update(0, &in_a, &g, None, &[], &[]);
        let maybe = [Passage::new("a-b", 0.1, None)];
        assert_eq!(t.update(1_000, &in_a, &g, None, &[], &maybe), Some("a"));
        // A passage of a door the rooms do not share is ignored.
        let elsewhere = [Passage::new("door-a", 1.0, None)];
        assert_eq!(t.update(2_000, &in_a, &g, None, &[], &elsewhere), Some("a"));
        // Most of an opening switches a device at once, whatever its estimate says…
        let most = [Passage::new("a-b", 0.6, None)];
        let mut t = RoomFilter::new(RoomFilterConfig::default());
        t.update(0, &in_a, &g, None, &[], &[]);
        assert_eq!(t.update(1_000, &in_a, &g, None, &[], &most), Some("b"));
        // …but not one whose track stands still, its estimates firmly in a (the walker's
        // own track lagging behind, it got the share): the passage moves its belief and
        // its estimates decide.
        let mut t = RoomFilter::new(RoomFilterConfig::default());
        t.set_moving(Some(false));
        t.update(0, &in_a, &g, None, &[], &[]);
        assert_eq!(t.update(1_000, &in_a, &g, None, &[], &most), Some("a"));
        assert_eq!(t.update(2_000, &in_a, &g, None, &[], &[]), Some("a"));
    }

    /// A passage put down late (a later look at the opening), after estimates moved part
    /// of the belief through the door already: out of the room left, only what is still
    /// there moves; the far side keeps what it has.
    #[test]
    fn a_late_passage_moves_only_the_belief_left_behind() {
        let g = joined();
        let in_a = room_probabilities(g.rooms(), 2.0, 2.0, 0, 1.0);
        let at_wall = room_probabilities(g.rooms(), 5.2, 2.0, 0, 1.5);
        let mut t = RoomFilter::new(RoomFilterConfig::default());
        t.update(0, &in_a, &g, None, &[], &[]);
        let mut at = 0;
        while t.belief()[1] < 0.4 {
            at += 1_000;
            assert!(at < 60_000, "the belief never moved");
            assert_eq!(t.update(at, &at_wall, &g, None, &[], &[]), Some("a"));
        }
        let before = t.belief()[1];
        let (mut out_of_a, mut swap) = (t.clone(), t.clone());
        let late = [Passage::new("a-b", 0.6, Some("a"))];
        assert_eq!(
            out_of_a.update(at + 1_000, &at_wall, &g, None, &[], &late),
            Some("b")
        );
        assert!(
            out_of_a.belief()[1] > before.max(0.7),
            "{:?}",
            out_of_a.belief()
        );
        // Not knowing the room left, the sides swap: b gives back what it had gained.
        let unknown = [Passage::new("a-b", 0.6, None)];
        swap.update(at + 1_000, &at_wall, &g, None, &[], &unknown);
        assert!(
            swap.belief()[1] < out_of_a.belief()[1] - 0.15,
            "{:?}",
            swap.belief()
        );
        // A room the door does not join (here: not in the building): as if not known.
        let mut elsewhere = t.clone();
        let odd = [Passage::new("a-b", 0.6, Some("c"))];
        elsewhere.update(at + 1_000, &at_wall, &g, None, &[], &odd);
        assert_eq!(elsewhere.belief(), swap.belief());
    }

    #[test]
    fn a_burst_of_evidence_needs_to_last_before_the_room_changes() {
        let g = joined();
        let in_a = room_probabilities(g.rooms(), 2.0, 2.0, 0, 1.0);
        let in_b = room_probabilities(g.rooms(), 8.0, 2.0, 0, 1.0);
        let config = RoomFilterConfig {
            switch_hold_ms: 2_000,
            ..RoomFilterConfig::default()
        };
        let mut t = RoomFilter::new(config.clone());
        let mut at = 0;
        for _ in 0..10 {
            assert_eq!(t.update(at, &in_a, &g, None, &[], &[]), Some("a"));
            at += 1_000;
        }
        // Two estimates in b (a burst of noise), then a again: no change.
        for _ in 0..2 {
            assert_eq!(t.update(at, &in_b, &g, None, &[], &[]), Some("a"));
            at += 1_000;
        }
        for _ in 0..5 {
            assert_eq!(t.update(at, &in_a, &g, None, &[], &[]), Some("a"));
            at += 1_000;
        }
        // Evidence that lasts: the room changes.
        let mut switched = None;
        for _ in 0..30 {
            if t.update(at, &in_b, &g, None, &[], &[]) == Some("b") {
                switched = Some(at);
                break;
            }
            at += 1_000;
        }
        assert!(switched.is_some(), "never switched");
        // A passage of this device between the rooms needs no hold.
        let mut t = RoomFilter::new(config.clone());
        t.update(0, &in_a, &g, None, &[], &[]);
        let walked = [Passage::new("a-b", 1.0, None)];
        assert_eq!(t.update(1_000, &in_b, &g, None, &[], &walked), Some("b"));
        // Nor does evidence right after the door between them opened, whoever the opening
        // was put down to (a walker's track lagging behind gets none of it)…
        let opened = [DoorEvent {
            door: "a-b".into(),
            at_ms: 500,
        }];
        let mut t = RoomFilter::new(config.clone());
        t.set_moving(Some(true));
        t.update(0, &in_a, &g, None, &[], &[]);
        let mut at = 250;
        while t.update(at, &in_b, &g, None, &opened, &[]) != Some("b") {
            assert!(at < 2_000, "held after the door opened");
            at += 250;
        }
        // …while an opening of another door, or one long ago, is no reason.
        for door in [
            DoorEvent {
                door: "door-a".into(),
                at_ms: 500,
            },
            DoorEvent {
                door: "a-b".into(),
                at_ms: -60_000,
            },
        ] {
            let mut t = RoomFilter::new(config.clone());
            t.set_moving(Some(true));
            t.update(0, &in_a, &g, None, &[], &[]);
            let doors = [door];
            for at in (250..2_000).step_by(250) {
                assert_eq!(t.update(at, &in_b, &g, None, &doors, &[]), Some("a"));
            }
        }
    }

    #[test]
    fn no_evidence_and_no_rooms_are_handled() {
        let g = joined();
        let mut t = RoomFilter::new(RoomFilterConfig::default());
        assert_eq!(t.update(0, &[], &g, None, &[], &[]), None);
        let in_a = room_probabilities(g.rooms(), 2.0, 2.0, 0, 1.0);
        assert_eq!(t.update(1, &in_a, &g, None, &[], &[]), Some("a"));
        assert_eq!(t.update(2, &[], &g, None, &[], &[]), Some("a"));
        let empty = RoomGraph::new(Vec::new());
        assert_eq!(
            RoomFilter::default().update(0, &in_a, &empty, None, &[], &[]),
            None
        );
        let sum: f64 = t.belief().iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
}
