//! Deterministic building simulator.
//!
//! Pure: no I/O, no clock, no global randomness. Time is passed in; the world is a
//! function of `(building, seed, options, time)` only:
//!
//! * every device walks on its own random stream, keyed by the seed and the device id,
//!   so adding devices does not change the others;
//! * advertisement times and radio noise are counter-based hashes of
//!   `(seed, device, advertisement number, receiver)`, so they do not depend on how time
//!   is cut into steps, nor on which receivers are simulated;
//! * events of one step are sorted by a total order (time, kind, ids).
//!
//! Hence stepping to `t1, t2, ..., tn` yields, concatenated, exactly the events of one
//! step to `tn`, and every edge node that simulates the whole building with the same
//! building file, seed and options sees the same world (on the same CPU architecture;
//! `log10`/`ln`/`cos` come from the platform's libm).
//!
//! Movement: each device dwells at a random point inside a room, then picks a
//! destination room, walks in straight segments to each door on the shortest path (BFS
//! over the room graph through doors and stairs), then to a random point in the
//! destination, and dwells again. Restricted rooms are only entered by devices with
//! `restricted_access` (or, with `trespass_probability`, by intruders). A door emits
//! `Open` when a device reaches it and `Closed` `door_hold_ms` after the last device
//! passed. The ground-truth room changes at the door.
//!
//! Radio: `rssi = rssi_at_1m − 10·n·log10(max(d, 0.1 m)) − floor_penalty_db·|Δfloor| +
//! N(0, σ·noise_scale)`, with `d` the horizontal distance (the noise is a cheap
//! near-Gaussian: a sum of 8 uniforms, tails cut at ±4.9 σ); readings weaker than
//! `sensitivity_dbm` are not heard. `Simulator::model_rssi` gives the noise-free value.
//!
//! Cost: [`Simulator::step_compact`] does not allocate; 500 devices × 10 receivers at
//! 1 Hz took ≈ 0.23 ms per simulated second (release, shared 2-core machine).
//! [`Simulator::step`] adds two string clones per event (≈ 0.7 ms).

mod building;
mod geometry;
#[cfg(test)]
mod tests;

pub use building::{
    AccessPoint, Building, Device, Door, Floor, Receiver, Room, Stairs, DOOR_TOLERANCE_M,
    EXAMPLE_TOML, OUTSIDE,
};

use crate::ids::{DeviceId, DoorId, NodeId};
use crate::protocol::DoorState;
use chrono::{DateTime, TimeZone, Utc};
use geometry::Pt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

/// Why a building or the simulator options are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The TOML does not parse or has a field of the wrong type (the message names it).
    #[error("building file: {0}")]
    Parse(String),
    /// A value is out of range or refers to something that does not exist.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl SimError {
    /// The path of the bad field (`rooms[3].polygon`), when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            SimError::Invalid { field, .. } => Some(field),
            SimError::Parse(_) => None,
        }
    }
}

/// Closest distance used by the path loss model, metres.
pub const MIN_DISTANCE_M: f64 = 0.1;

/// Log-distance path loss without noise: `rssi_at_1m − 10·n·log10(max(d, 0.1))`.
pub fn log_distance_rssi(rssi_at_1m: f64, path_loss_exponent: f64, distance_m: f64) -> f64 {
    rssi_at_1m - 10.0 * path_loss_exponent * distance_m.max(MIN_DISTANCE_M).log10()
}

fn default_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// How the simulation runs. Every field has a default (`#[serde(default)]`), so it can be
/// embedded in a config file section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimOptions {
    /// Simulated time starts here; all processes that must agree need the same start.
    pub start: DateTime<Utc>,
    /// Number of generated devices (`sim-001`, ...) besides the building's `[[devices]]`.
    pub devices: usize,
    /// Mean walking speed, m/s (each device walks at 0.8-1.2 times this).
    pub speed_mps: f64,
    /// Dwell time range in a room, seconds `[min, max]`.
    pub dwell_secs: [f64; 2],
    /// Share of generated devices that never move.
    pub stationary_fraction: f64,
    /// Share of generated devices allowed into restricted rooms.
    pub restricted_access_fraction: f64,
    /// Chance per trip that a device without access heads for a restricted room.
    pub trespass_probability: f64,
    /// Chance per trip that a device leaves the building through an outer door.
    pub outside_probability: f64,
    /// BLE advertisement interval, ms (each advertisement is delayed by 0-10 ms more).
    pub ble_interval_ms: u64,
    /// Chance that a receiver misses an advertisement.
    pub loss_probability: f64,
    /// A door closes this long after the last device passed it, ms.
    pub door_hold_ms: u64,
    /// Attenuation per floor between device and receiver, dB.
    pub floor_penalty_db: f64,
    /// Weakest RSSI a receiver hears, dBm.
    pub sensitivity_dbm: f64,
    /// Multiplies every receiver's `noise_sigma_db`; 0 gives exact model values.
    pub noise_scale: f64,
    /// Interval of WiFi scans by each receiver's node, ms; none = no WiFi events.
    pub wifi_interval_ms: Option<u64>,
    /// Compute only the BLE/WiFi readings of this node's receiver and the events of its
    /// doors (the world itself is unchanged, so every node sees its share of one world).
    pub only_node: Option<NodeId>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            start: default_start(),
            devices: 20,
            speed_mps: 1.2,
            dwell_secs: [20.0, 300.0],
            stationary_fraction: 0.1,
            restricted_access_fraction: 0.1,
            trespass_probability: 0.0,
            outside_probability: 0.0,
            ble_interval_ms: 1000,
            loss_probability: 0.0,
            door_hold_ms: 3000,
            floor_penalty_db: 15.0,
            sensitivity_dbm: -100.0,
            noise_scale: 1.0,
            wifi_interval_ms: None,
            only_node: None,
        }
    }
}

impl SimOptions {
    fn validate(&self) -> Result<(), SimError> {
        let bad = |field: &str, message: &str| SimError::Invalid {
            field: format!("sim.{field}"),
            message: message.to_string(),
        };
        let prob = |field: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(bad(field, "must be between 0 and 1"))
            }
        };
        if !(self.speed_mps.is_finite() && self.speed_mps > 0.0) {
            return Err(bad("speed_mps", "must be a positive number"));
        }
        let [lo, hi] = self.dwell_secs;
        if !(lo.is_finite() && hi.is_finite() && lo >= 0.0 && lo <= hi) {
            return Err(bad("dwell_secs", "must be [min, max] with 0 <= min <= max"));
        }
        prob("stationary_fraction", self.stationary_fraction)?;
        prob(
            "restricted_access_fraction",
            self.restricted_access_fraction,
        )?;
        prob("trespass_probability", self.trespass_probability)?;
        prob("outside_probability", self.outside_probability)?;
        prob("loss_probability", self.loss_probability)?;
        if !(20..=3_600_000).contains(&self.ble_interval_ms) {
            return Err(bad("ble_interval_ms", "must be between 20 and 3600000"));
        }
        if self.door_hold_ms > 3_600_000 {
            return Err(bad("door_hold_ms", "must be at most 3600000"));
        }
        if !(self.floor_penalty_db.is_finite() && self.floor_penalty_db >= 0.0) {
            return Err(bad("floor_penalty_db", "must be zero or a positive number"));
        }
        if !self.sensitivity_dbm.is_finite() {
            return Err(bad("sensitivity_dbm", "must be a finite number"));
        }
        if !(self.noise_scale.is_finite() && self.noise_scale >= 0.0) {
            return Err(bad("noise_scale", "must be zero or a positive number"));
        }
        if let Some(w) = self.wifi_interval_ms {
            if !(100..=86_400_000).contains(&w) {
                return Err(bad("wifi_interval_ms", "must be between 100 and 86400000"));
            }
        }
        if self.devices > 1_000_000 {
            return Err(bad("devices", "must be at most 1000000"));
        }
        Ok(())
    }
}

/// Something a sensor reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SimEvent {
    /// One advertisement heard by one receiver.
    Ble {
        receiver: NodeId,
        device: String,
        rssi: f32,
        tx_power: Option<i8>,
        at: DateTime<Utc>,
    },
    /// A door contact changed state.
    Door {
        node: NodeId,
        door: DoorId,
        state: DoorState,
        at: DateTime<Utc>,
    },
    /// An access point heard by a node's WiFi scan.
    Wifi {
        node: NodeId,
        bssid: DeviceId,
        ssid: Option<String>,
        rssi: f32,
        channel: u16,
        at: DateTime<Utc>,
    },
}

impl SimEvent {
    /// The node that reports this event.
    pub fn node(&self) -> &NodeId {
        match self {
            SimEvent::Ble { receiver, .. } => receiver,
            SimEvent::Door { node, .. } | SimEvent::Wifi { node, .. } => node,
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            SimEvent::Ble { at, .. } | SimEvent::Door { at, .. } | SimEvent::Wifi { at, .. } => *at,
        }
    }
}

/// An event without strings (indices into `Simulator::device_ids`, `Building::receivers`,
/// `Building::doors`, `Building::access_points`); `Simulator::expand` turns it into a
/// [`SimEvent`]. Used by [`Simulator::step_compact`], which does not allocate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompactEvent {
    Door {
        at_ms: i64,
        door: u32,
        state: DoorState,
    },
    Ble {
        at_ms: i64,
        device: u32,
        receiver: u32,
        rssi: f32,
    },
    Wifi {
        at_ms: i64,
        receiver: u32,
        ap: u32,
        rssi: f32,
    },
}

impl CompactEvent {
    pub fn at_ms(&self) -> i64 {
        match *self {
            CompactEvent::Door { at_ms, .. }
            | CompactEvent::Ble { at_ms, .. }
            | CompactEvent::Wifi { at_ms, .. } => at_ms,
        }
    }

    fn key(&self) -> (i64, u8, u32, u32) {
        match *self {
            CompactEvent::Door { at_ms, door, .. } => (at_ms, 0, door, 0),
            CompactEvent::Ble {
                at_ms,
                device,
                receiver,
                ..
            } => (at_ms, 1, device, receiver),
            CompactEvent::Wifi {
                at_ms,
                receiver,
                ap,
                ..
            } => (at_ms, 2, receiver, ap),
        }
    }
}

/// Where a device really is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTruth {
    pub device: String,
    pub x: f64,
    pub y: f64,
    /// `Floor::index`.
    pub floor: i32,
    /// Room id; none when outside the building.
    pub room: Option<String>,
    /// Walking (true) or dwelling (false).
    pub moving: bool,
    pub at: DateTime<Utc>,
}

/// The events reported by `node` (its receiver's readings and its doors' transitions).
pub fn events_for_node(events: &[SimEvent], node: &NodeId) -> Vec<SimEvent> {
    events
        .iter()
        .filter(|e| e.node() == node)
        .cloned()
        .collect()
}

// ------------------------------------------------------------------ hashing / noise

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash4(a: u64, b: u64, c: u64, d: u64) -> u64 {
    mix(mix(mix(mix(a) ^ b) ^ c) ^ d)
}

fn str_key(s: &str) -> u64 {
    // FNV-1a, then mixed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// Uniform in (0, 1].
fn unit(h: u64) -> f64 {
    ((h >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Standard normal (approximately: the sum of 8 uniforms, which has the mean, variance
/// and shape of a normal distribution to within a few per cent, tails cut at ±4.9 σ),
/// from one hash. About ten times cheaper than Box-Muller.
fn gauss(h: u64) -> f64 {
    let h2 = mix(h);
    let mut sum = 0u64;
    for i in 0..4 {
        sum += (h >> (16 * i)) & 0xffff;
        sum += (h2 >> (16 * i)) & 0xffff;
    }
    // Each term is uniform on 0..65536 with mean 32767.5 and variance (65536² − 1) / 12.
    const MEAN: f64 = 8.0 * 32767.5;
    const SD: f64 = 53_509.92; // sqrt(8 · (65536² − 1) / 12)
    (sum as f64 - MEAN) / SD
}

const TAG_NOISE: u64 = 0x006e_6f69_7365;
const TAG_LOSS: u64 = 0x6c6f_7373;
const TAG_JITTER: u64 = 0x6a69_7474_6572;
const TAG_WIFI: u64 = 0x7769_6669;
const TAG_DEVICE: u64 = 0x6465_7669_6365;

// ------------------------------------------------------------------ the prepared world

#[derive(Debug, Clone, Copy)]
enum Link {
    Door(u32),
    Stairs(u32),
}

#[derive(Debug, Clone)]
struct RoomGeo {
    floor: u32,
    poly: Vec<Pt>,
    lo: Pt,
    hi: Pt,
    anchor: Pt,
    restricted: bool,
}

#[derive(Debug, Clone)]
struct DoorGeo {
    pos: Pt,
    emit: bool,
}

#[derive(Debug, Clone)]
struct RxGeo {
    floor: u32,
    x: f64,
    y: f64,
    rssi_at_1m: f64,
    exponent: f64,
    sigma: f64,
    key: u64,
    active: bool,
}

#[derive(Debug, Clone)]
struct ApGeo {
    floor: u32,
    x: f64,
    y: f64,
    rssi_at_1m: f64,
    exponent: f64,
}

/// Static data derived from the building and options.
#[derive(Debug, Clone)]
struct World {
    seed: u64,
    opt: SimOptions,
    floor_index: Vec<i32>,
    floor_z: Vec<f64>,
    rooms: Vec<RoomGeo>,
    doors: Vec<DoorGeo>,
    stairs: Vec<Pt>,
    /// Graph nodes: rooms `0..rooms.len()`, then one "outside" node per outer door.
    adj: Vec<Vec<(u32, Link)>>,
    /// For outside nodes (index − rooms.len()): where a device waits outside.
    outside_pts: Vec<(u32, Pt)>,
    rx: Vec<RxGeo>,
    aps: Vec<ApGeo>,
}

impl World {
    fn is_room(&self, n: u32) -> bool {
        (n as usize) < self.rooms.len()
    }

    fn node_floor(&self, n: u32) -> u32 {
        if self.is_room(n) {
            self.rooms[n as usize].floor
        } else {
            self.outside_pts[n as usize - self.rooms.len()].0
        }
    }

    fn random_point(&self, rng: &mut ChaCha8Rng, room: u32) -> Pt {
        let r = &self.rooms[room as usize];
        for _ in 0..32 {
            let p = Pt::new(
                r.lo.x + rng.gen::<f64>() * (r.hi.x - r.lo.x),
                r.lo.y + rng.gen::<f64>() * (r.hi.y - r.lo.y),
            );
            if geometry::point_in_polygon(p, &r.poly)
                && geometry::distance_to_edges(p, &r.poly) >= 0.3
            {
                return p;
            }
        }
        r.anchor
    }

    fn ms(&self, secs: f64) -> i64 {
        (secs * 1000.0).round() as i64
    }
}

#[derive(Debug, Clone, Copy)]
struct Leg {
    t0: i64,
    t1: i64,
    floor: u32,
    from: Pt,
    to: Pt,
    node: u32,
}

impl Leg {
    fn at(&self, t: i64) -> Pt {
        if t >= self.t1 || self.t1 <= self.t0 || self.from == self.to {
            return self.to;
        }
        if t <= self.t0 {
            return self.from;
        }
        let f = (t - self.t0) as f64 / (self.t1 - self.t0) as f64;
        self.from.lerp(self.to, f)
    }
}

#[derive(Debug, Clone)]
struct Dev {
    id: String,
    key: u64,
    tx_power: Option<i8>,
    rng: ChaCha8Rng,
    legs: VecDeque<Leg>,
    phase_ms: i64,
    next_ad: i64,
    speed: f64,
    access: bool,
}

/// Buffers reused between trips.
#[derive(Debug, Clone, Default)]
struct Scratch {
    parent: Vec<(u32, Option<Link>)>,
    queue: Vec<u32>,
    candidates: Vec<u32>,
    path: Vec<(Link, u32)>,
}

const UNSEEN: u32 = u32::MAX;

/// `(id, tx_power, restricted_access, stationary, start room)`; `None` = drawn at random.
type DevSpec = (String, Option<i8>, Option<bool>, Option<bool>, Option<u32>);

impl Dev {
    fn ad_time(&self, start: i64, interval: i64, k: i64) -> i64 {
        let jitter_max = (interval / 2).min(10) as u64;
        let j = if jitter_max == 0 {
            0
        } else {
            (hash4(TAG_JITTER, self.key, k as u64, 0) % (jitter_max + 1)) as i64
        };
        start
            .saturating_add(self.phase_ms)
            .saturating_add(k.saturating_mul(interval))
            .saturating_add(j)
    }

    /// Plans legs until one covers `t`, then drops the legs that ended.
    fn advance(&mut self, w: &World, t: i64, s: &mut Scratch, passages: &mut Vec<(i64, u32)>) {
        while self.legs.back().is_some_and(|l| l.t1 <= t) {
            self.plan_trip(w, s, passages);
        }
        while self.legs.len() > 1 && self.legs[0].t1 <= t {
            self.legs.pop_front();
        }
    }

    fn leg_now(&self) -> &Leg {
        // `legs` is never empty: created with one leg, legs are only popped while > 1.
        &self.legs[0]
    }

    fn dwell_ms(&mut self, w: &World) -> i64 {
        let [lo, hi] = w.opt.dwell_secs;
        let secs = if hi > lo {
            self.rng.gen_range(lo..=hi)
        } else {
            lo
        };
        w.ms(secs).max(1)
    }

    /// Appends one trip (walk to a destination, then dwell) after the last leg.
    fn plan_trip(&mut self, w: &World, s: &mut Scratch, passages: &mut Vec<(i64, u32)>) {
        let last = *self.legs.back().expect("legs never empty");
        let (mut t, src, mut p, mut floor) = (last.t1, last.node, last.to, last.floor);
        let trespass = !self.access
            && w.opt.trespass_probability > 0.0
            && self.rng.gen::<f64>() < w.opt.trespass_probability;
        let go_out =
            w.opt.outside_probability > 0.0 && self.rng.gen::<f64>() < w.opt.outside_probability;
        let access = self.access || trespass;

        // BFS over the room graph; outside nodes are destinations, never passed through.
        let n = w.adj.len();
        s.parent.clear();
        s.parent.resize(n, (UNSEEN, None));
        s.queue.clear();
        s.parent[src as usize] = (src, None);
        s.queue.push(src);
        let mut head = 0;
        while head < s.queue.len() {
            let u = s.queue[head];
            head += 1;
            if u != src && !w.is_room(u) {
                continue;
            }
            for &(v, link) in &w.adj[u as usize] {
                if s.parent[v as usize].0 != UNSEEN {
                    continue;
                }
                if w.is_room(v) && w.rooms[v as usize].restricted && !access {
                    continue;
                }
                s.parent[v as usize] = (u, Some(link));
                s.queue.push(v);
            }
        }
        let pick = |s: &mut Scratch, f: &dyn Fn(u32) -> bool| {
            s.candidates.clear();
            for v in 0..n as u32 {
                if v != src && s.parent[v as usize].0 != UNSEEN && f(v) {
                    s.candidates.push(v);
                }
            }
        };
        let normal = |v: u32| w.is_room(v) && (!w.rooms[v as usize].restricted || self.access);
        if go_out {
            pick(s, &|v| !w.is_room(v));
        } else if trespass {
            pick(s, &|v| w.is_room(v) && w.rooms[v as usize].restricted);
        } else {
            s.candidates.clear();
        }
        if s.candidates.is_empty() {
            pick(s, &normal);
        }
        let dest = if s.candidates.is_empty() {
            None
        } else {
            Some(s.candidates[self.rng.gen_range(0..s.candidates.len())])
        };

        if let Some(dest) = dest {
            s.path.clear();
            let mut v = dest;
            while v != src {
                let (u, link) = s.parent[v as usize];
                if let Some(link) = link {
                    s.path.push((link, v));
                }
                v = u;
            }
            let speed = self.speed;
            let mut cur = src;
            let walk = |legs: &mut VecDeque<Leg>,
                        t: &mut i64,
                        p: &mut Pt,
                        floor: u32,
                        node: u32,
                        to: Pt| {
                let dur = w.ms(p.dist(to) / speed);
                if dur > 0 {
                    legs.push_back(Leg {
                        t0: *t,
                        t1: *t + dur,
                        floor,
                        from: *p,
                        to,
                        node,
                    });
                    *t += dur;
                }
                *p = to;
            };
            for &(link, next) in s.path.iter().rev() {
                match link {
                    Link::Door(d) => {
                        walk(
                            &mut self.legs,
                            &mut t,
                            &mut p,
                            floor,
                            cur,
                            w.doors[d as usize].pos,
                        );
                        passages.push((t, d));
                    }
                    Link::Stairs(st) => {
                        let pos = w.stairs[st as usize];
                        walk(&mut self.legs, &mut t, &mut p, floor, cur, pos);
                        let next_floor = w.node_floor(next);
                        let climb = (w.floor_z[next_floor as usize] - w.floor_z[floor as usize])
                            .abs()
                            * 2.0;
                        let dur = w.ms(climb / speed).max(1);
                        self.legs.push_back(Leg {
                            t0: t,
                            t1: t + dur,
                            floor: next_floor,
                            from: pos,
                            to: pos,
                            node: next,
                        });
                        t += dur;
                        floor = next_floor;
                    }
                }
                cur = next;
            }
            let target = if w.is_room(dest) {
                w.random_point(&mut self.rng, dest)
            } else {
                w.outside_pts[dest as usize - w.rooms.len()].1
            };
            walk(&mut self.legs, &mut t, &mut p, floor, dest, target);
        }
        let node = dest.unwrap_or(src);
        let dwell = self.dwell_ms(w);
        self.legs.push_back(Leg {
            t0: t,
            t1: t.saturating_add(dwell),
            floor,
            from: p,
            to: p,
            node,
        });
    }
}

/// The simulator. See the module documentation.
#[derive(Debug, Clone)]
pub struct Simulator {
    building: Building,
    w: World,
    devices: Vec<Dev>,
    start_ms: i64,
    now_ms: i64,
    /// Door passages `(time, door)` not yet turned into events.
    passages: Vec<(i64, u32)>,
    /// Per door: open until this time.
    open_until: Vec<Option<i64>>,
    scratch: Scratch,
    compact: Vec<CompactEvent>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
    other: Vec<CompactEvent>,
    merged: Vec<CompactEvent>,
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Simulator {
    /// Validates the building and options and places every device in its start room.
    pub fn new(building: Building, seed: u64, options: SimOptions) -> Result<Simulator, SimError> {
        building.validate()?;
        options.validate()?;
        if let Some(node) = &options.only_node {
            let known = building.receivers.iter().any(|r| &r.node == node)
                || building.doors.iter().any(|d| &d.node == node);
            if !known {
                return Err(SimError::Invalid {
                    field: "sim.only_node".into(),
                    message: format!(
                        "node {:?} has no receiver and no door in the building",
                        node.as_str()
                    ),
                });
            }
        }
        let mut floors: Vec<&Floor> = building.floors.iter().collect();
        floors.sort_by_key(|f| f.index);
        let floor_index: Vec<i32> = floors.iter().map(|f| f.index).collect();
        let mut floor_z = Vec::with_capacity(floors.len());
        let mut z = 0.0;
        for f in &floors {
            floor_z.push(z);
            z += f.height;
        }
        let dense: BTreeMap<i32, u32> = floor_index
            .iter()
            .enumerate()
            .map(|(i, &f)| (f, i as u32))
            .collect();
        let fl = |f: i32| dense.get(&f).copied().unwrap_or(0);
        let room_idx: BTreeMap<&str, u32> = building
            .rooms
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i as u32))
            .collect();
        let rooms: Vec<RoomGeo> = building
            .rooms
            .iter()
            .map(|r| {
                let poly = r.polygon_pts();
                let (lo, hi) = geometry::bbox(&poly);
                RoomGeo {
                    floor: fl(r.floor),
                    anchor: geometry::interior_point(&poly),
                    poly,
                    lo,
                    hi,
                    restricted: r.restricted,
                }
            })
            .collect();
        let mut adj: Vec<Vec<(u32, Link)>> = vec![Vec::new(); rooms.len()];
        let mut outside_pts = Vec::new();
        let only = options.only_node.as_ref();
        let mut doors = Vec::new();
        for (di, d) in building.doors.iter().enumerate() {
            let pos = Pt::new(d.position[0], d.position[1]);
            doors.push(DoorGeo {
                pos,
                emit: only.is_none_or(|n| n == &d.node),
            });
            let ids: Vec<Option<u32>> = d
                .rooms
                .iter()
                .map(|id| room_idx.get(id.as_str()).copied())
                .collect();
            let link = Link::Door(di as u32);
            match (ids[0], ids[1]) {
                (Some(a), Some(b)) => {
                    adj[a as usize].push((b, link));
                    adj[b as usize].push((a, link));
                }
                (Some(a), None) | (None, Some(a)) => {
                    let room = &rooms[a as usize];
                    let (dx, dy) = (pos.x - room.anchor.x, pos.y - room.anchor.y);
                    let len = (dx * dx + dy * dy).sqrt();
                    let out = if len > 1e-9 {
                        Pt::new(pos.x + 3.0 * dx / len, pos.y + 3.0 * dy / len)
                    } else {
                        pos
                    };
                    let o = (rooms.len() + outside_pts.len()) as u32;
                    outside_pts.push((room.floor, out));
                    adj.push(vec![(a, link)]);
                    adj[a as usize].push((o, link));
                }
                (None, None) => {}
            }
        }
        let mut stairs = Vec::new();
        for (si, s) in building.stairs.iter().enumerate() {
            stairs.push(Pt::new(s.position[0], s.position[1]));
            if let (Some(&a), Some(&b)) = (
                room_idx.get(s.rooms[0].as_str()),
                room_idx.get(s.rooms[1].as_str()),
            ) {
                let link = Link::Stairs(si as u32);
                adj[a as usize].push((b, link));
                adj[b as usize].push((a, link));
            }
        }
        let rx = building
            .receivers
            .iter()
            .map(|r| RxGeo {
                floor: fl(r.floor),
                x: r.x,
                y: r.y,
                rssi_at_1m: r.rssi_at_1m,
                exponent: r.path_loss_exponent,
                sigma: r.noise_sigma_db * options.noise_scale,
                key: str_key(r.node.as_str()),
                active: only.is_none_or(|n| n == &r.node),
            })
            .collect();
        let aps = building
            .access_points
            .iter()
            .map(|a| ApGeo {
                floor: fl(a.floor),
                x: a.x,
                y: a.y,
                rssi_at_1m: a.rssi_at_1m,
                exponent: a.path_loss_exponent,
            })
            .collect();
        let start_ms = options.start.timestamp_millis();
        let w = World {
            seed,
            opt: options,
            floor_index,
            floor_z,
            rooms,
            doors,
            stairs,
            adj,
            outside_pts,
            rx,
            aps,
        };

        // Devices: the building's, then generated ones with ids that are not taken.
        let taken: BTreeSet<&str> = building.devices.iter().map(|d| d.id.as_str()).collect();
        let mut specs: Vec<DevSpec> = building
            .devices
            .iter()
            .map(|d| {
                (
                    d.id.as_str().to_string(),
                    d.tx_power,
                    Some(d.restricted_access),
                    Some(d.stationary),
                    d.room
                        .as_ref()
                        .and_then(|r| room_idx.get(r.as_str()).copied()),
                )
            })
            .collect();
        let mut n = 0usize;
        let mut i = 1usize;
        while n < w.opt.devices {
            let id = format!("sim-{i:03}");
            i += 1;
            if taken.contains(id.as_str()) {
                continue;
            }
            specs.push((id, Some(-59), None, None, None));
            n += 1;
        }
        let interval = w.opt.ble_interval_ms as i64;
        let devices = specs
            .into_iter()
            .map(|(id, tx_power, access, stationary, room)| {
                let key = str_key(&id);
                let mut rng = ChaCha8Rng::seed_from_u64(hash4(TAG_DEVICE, seed, key, 0));
                let phase_ms = rng.gen_range(1..=interval);
                let speed = w.opt.speed_mps * rng.gen_range(0.8..=1.2);
                let stationary =
                    stationary.unwrap_or_else(|| rng.gen::<f64>() < w.opt.stationary_fraction);
                let access =
                    access.unwrap_or_else(|| rng.gen::<f64>() < w.opt.restricted_access_fraction);
                let room = room.unwrap_or_else(|| {
                    let allowed: Vec<u32> = (0..w.rooms.len() as u32)
                        .filter(|&r| access || !w.rooms[r as usize].restricted)
                        .collect();
                    if allowed.is_empty() {
                        rng.gen_range(0..w.rooms.len() as u32)
                    } else {
                        allowed[rng.gen_range(0..allowed.len())]
                    }
                });
                let p = w.random_point(&mut rng, room);
                let first = if stationary {
                    i64::MAX
                } else {
                    let hi = w.opt.dwell_secs[1];
                    start_ms + w.ms(rng.gen_range(0.0..=hi)).max(1)
                };
                let mut legs = VecDeque::with_capacity(8);
                legs.push_back(Leg {
                    t0: start_ms,
                    t1: first,
                    floor: w.rooms[room as usize].floor,
                    from: p,
                    to: p,
                    node: room,
                });
                let mut d = Dev {
                    id,
                    key,
                    tx_power,
                    rng,
                    legs,
                    phase_ms,
                    next_ad: 0,
                    speed,
                    access,
                };
                d.next_ad = d.first_ad_after(start_ms, interval, start_ms);
                d
            })
            .collect();
        let n_doors = w.doors.len();
        Ok(Simulator {
            building,
            w,
            devices,
            start_ms,
            now_ms: start_ms,
            passages: Vec::new(),
            open_until: vec![None; n_doors],
            scratch: Scratch::default(),
            compact: Vec::new(),
            heap: BinaryHeap::new(),
            other: Vec::new(),
            merged: Vec::new(),
        })
    }

    pub fn building(&self) -> &Building {
        &self.building
    }

    pub fn options(&self) -> &SimOptions {
        &self.w.opt
    }

    pub fn seed(&self) -> u64 {
        self.w.seed
    }

    /// The time of the last step (the start before the first).
    pub fn now(&self) -> DateTime<Utc> {
        ms_to_time(self.now_ms)
    }

    /// Ids of all simulated devices; `CompactEvent::Ble::device` indexes this order.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.devices.iter().map(|d| d.id.as_str())
    }

    /// The room on `floor` that contains `(x, y)`.
    pub fn room_at(&self, floor: i32, x: f64, y: f64) -> Option<&Room> {
        self.building.room_at(floor, x, y)
    }

    /// The noise-free RSSI that `receiver` would measure from a device at `(floor, x, y)`.
    pub fn model_rssi(&self, receiver: &NodeId, floor: i32, x: f64, y: f64) -> Option<f64> {
        let r = self
            .building
            .receivers
            .iter()
            .position(|r| &r.node == receiver)?;
        let fl = self.w.floor_index.iter().position(|&f| f == floor)? as u32;
        Some(self.rx_model(&self.w.rx[r], fl, x, y))
    }

    fn rx_model(&self, rx: &RxGeo, floor: u32, x: f64, y: f64) -> f64 {
        model(
            &self.w,
            rx.rssi_at_1m,
            rx.exponent,
            rx.floor,
            rx.x,
            rx.y,
            floor,
            x,
            y,
        )
    }

    /// Advances to `now` and returns the events since the previous step, sorted by time.
    /// A `now` at or before the previous step returns nothing.
    pub fn step(&mut self, now: DateTime<Utc>) -> Vec<SimEvent> {
        let mut buf = std::mem::take(&mut self.compact);
        self.step_compact(now, &mut buf);
        let out = buf.iter().map(|e| self.expand(e)).collect();
        self.compact = buf;
        out
    }

    /// Like [`Simulator::step`], into `out` (cleared first) without allocating strings.
    pub fn step_compact(&mut self, now: DateTime<Utc>, out: &mut Vec<CompactEvent>) {
        out.clear();
        self.run(now.timestamp_millis(), Some(out));
    }

    /// Moves the world to `now` without reporting anything (e.g. to catch up after a gap
    /// or to join a simulation that started earlier).
    pub fn skip_to(&mut self, now: DateTime<Utc>) {
        self.run(now.timestamp_millis(), None);
    }

    /// Turns a compact event into a full one.
    pub fn expand(&self, e: &CompactEvent) -> SimEvent {
        match *e {
            CompactEvent::Door { at_ms, door, state } => {
                let d = &self.building.doors[door as usize];
                SimEvent::Door {
                    node: d.node.clone(),
                    door: d.id.clone(),
                    state,
                    at: ms_to_time(at_ms),
                }
            }
            CompactEvent::Ble {
                at_ms,
                device,
                receiver,
                rssi,
            } => {
                let d = &self.devices[device as usize];
                SimEvent::Ble {
                    receiver: self.building.receivers[receiver as usize].node.clone(),
                    device: d.id.clone(),
                    rssi,
                    tx_power: d.tx_power,
                    at: ms_to_time(at_ms),
                }
            }
            CompactEvent::Wifi {
                at_ms,
                receiver,
                ap,
                rssi,
            } => {
                let a = &self.building.access_points[ap as usize];
                SimEvent::Wifi {
                    node: self.building.receivers[receiver as usize].node.clone(),
                    bssid: a.bssid.clone(),
                    ssid: a.ssid.clone(),
                    rssi,
                    channel: a.channel,
                    at: ms_to_time(at_ms),
                }
            }
        }
    }

    /// Ground truth for every device at [`Simulator::now`].
    pub fn truth(&self) -> Vec<DeviceTruth> {
        let at = self.now();
        self.devices
            .iter()
            .map(|d| {
                let leg = d.leg_now();
                let p = leg.at(self.now_ms);
                let room = self
                    .w
                    .is_room(leg.node)
                    .then(|| self.building.rooms[leg.node as usize].id.clone());
                DeviceTruth {
                    device: d.id.clone(),
                    x: p.x,
                    y: p.y,
                    floor: self.w.floor_index[leg.floor as usize],
                    room,
                    moving: leg.from != leg.to && self.now_ms < leg.t1,
                    at,
                }
            })
            .collect()
    }

    fn run(&mut self, now: i64, mut out: Option<&mut Vec<CompactEvent>>) {
        if now <= self.now_ms {
            return;
        }
        let from = self.now_ms;
        let w = &self.w;
        let interval = w.opt.ble_interval_ms as i64;
        let start = self.start_ms;
        let emitting = out.is_some();
        let mut other = std::mem::take(&mut self.other);
        other.clear();
        match out.as_deref_mut() {
            Some(out) => {
                // Advertisements in global (time, device) order: a heap of next ad times.
                let heap = &mut self.heap;
                heap.clear();
                for (di, dev) in self.devices.iter().enumerate() {
                    let t = dev.ad_time(start, interval, dev.next_ad);
                    if t <= now {
                        heap.push(Reverse((t, di as u32)));
                    }
                }
                while let Some(Reverse((t, di))) = heap.pop() {
                    let dev = &mut self.devices[di as usize];
                    dev.advance(w, t, &mut self.scratch, &mut self.passages);
                    let leg = *dev.leg_now();
                    let p = leg.at(t);
                    let k = dev.next_ad as u64;
                    // Hash prefixes shared by every receiver of this advertisement.
                    let noise_key = mix(mix(mix(w.seed ^ TAG_NOISE) ^ dev.key) ^ k);
                    let loss_key = mix(mix(mix(w.seed ^ TAG_LOSS) ^ dev.key) ^ k);
                    for (ri, rx) in w.rx.iter().enumerate() {
                        if !rx.active {
                            continue;
                        }
                        let mut rssi = model(
                            w,
                            rx.rssi_at_1m,
                            rx.exponent,
                            rx.floor,
                            rx.x,
                            rx.y,
                            leg.floor,
                            p.x,
                            p.y,
                        );
                        if rx.sigma > 0.0 {
                            rssi += rx.sigma * gauss(mix(noise_key ^ rx.key));
                        }
                        if rssi < w.opt.sensitivity_dbm {
                            continue;
                        }
                        if w.opt.loss_probability > 0.0
                            && unit(mix(loss_key ^ rx.key)) <= w.opt.loss_probability
                        {
                            continue;
                        }
                        out.push(CompactEvent::Ble {
                            at_ms: t,
                            device: di,
                            receiver: ri as u32,
                            rssi: rssi.clamp(-127.0, 20.0) as f32,
                        });
                    }
                    dev.next_ad += 1;
                    let next = dev.ad_time(start, interval, dev.next_ad);
                    if next <= now {
                        heap.push(Reverse((next, di)));
                    }
                }
            }
            None => {
                for dev in &mut self.devices {
                    dev.next_ad = dev.first_ad_after(start, interval, now);
                }
            }
        }
        for dev in &mut self.devices {
            dev.advance(w, now, &mut self.scratch, &mut self.passages);
        }

        // Doors: passages in time order; a door stays open until `hold` after the last.
        let hold = w.opt.door_hold_ms as i64;
        self.passages.sort_unstable();
        let n = self.passages.partition_point(|p| p.0 <= now);
        let emit = |other: &mut Vec<CompactEvent>, t: i64, d: u32, open: bool| {
            if emitting && w.doors[d as usize].emit {
                other.push(CompactEvent::Door {
                    at_ms: t,
                    door: d,
                    state: if open {
                        DoorState::Open
                    } else {
                        DoorState::Closed
                    },
                });
            }
        };
        for &(t, d) in &self.passages[..n] {
            let slot = &mut self.open_until[d as usize];
            match *slot {
                Some(u) if u >= t => *slot = Some(u.max(t.saturating_add(hold))),
                Some(u) => {
                    emit(&mut other, u, d, false);
                    emit(&mut other, t, d, true);
                    *slot = Some(t.saturating_add(hold));
                }
                None => {
                    emit(&mut other, t, d, true);
                    *slot = Some(t.saturating_add(hold));
                }
            }
        }
        self.passages.drain(..n);
        for (d, slot) in self.open_until.iter_mut().enumerate() {
            if let Some(u) = *slot {
                if u <= now {
                    emit(&mut other, u, d as u32, false);
                    *slot = None;
                }
            }
        }

        // WiFi scans at start + j·interval.
        if let (Some(wi), true) = (w.opt.wifi_interval_ms, emitting) {
            let wi = wi as i64;
            let first = (from - start).div_euclid(wi) + 1;
            let last = (now - start).div_euclid(wi);
            for j in first.max(1)..=last {
                let t = start + j * wi;
                for (ri, rx) in w.rx.iter().enumerate() {
                    if !rx.active {
                        continue;
                    }
                    for (ai, ap) in w.aps.iter().enumerate() {
                        let mut rssi = model(
                            w,
                            ap.rssi_at_1m,
                            ap.exponent,
                            ap.floor,
                            ap.x,
                            ap.y,
                            rx.floor,
                            rx.x,
                            rx.y,
                        );
                        if rx.sigma > 0.0 {
                            rssi += rx.sigma
                                * gauss(hash4(w.seed ^ TAG_WIFI, rx.key, j as u64, ai as u64));
                        }
                        if rssi >= w.opt.sensitivity_dbm {
                            other.push(CompactEvent::Wifi {
                                at_ms: t,
                                receiver: ri as u32,
                                ap: ai as u32,
                                rssi: rssi.clamp(-127.0, 20.0) as f32,
                            });
                        }
                    }
                }
            }
        }
        if let Some(out) = out {
            if !other.is_empty() {
                // `out` holds the advertisements in order; merge the few others in.
                other.sort_unstable_by_key(|e| e.key());
                let merged = &mut self.merged;
                merged.clear();
                merged.reserve(out.len() + other.len());
                let mut o = other.iter().peekable();
                for e in out.iter() {
                    while let Some(x) = o.next_if(|x| x.key() < e.key()) {
                        merged.push(*x);
                    }
                    merged.push(*e);
                }
                merged.extend(o.copied());
                std::mem::swap(out, merged);
            }
        }
        self.other = other;
        self.now_ms = now;
    }
}

impl Dev {
    /// The number of the first advertisement after `t`.
    fn first_ad_after(&self, start: i64, interval: i64, t: i64) -> i64 {
        let mut k = ((t - start - self.phase_ms).div_euclid(interval) - 1).max(0);
        while self.ad_time(start, interval, k) <= t {
            k += 1;
        }
        k
    }
}

/// Noise-free RSSI between an emitter and a receiver (floors as dense indices).
#[allow(clippy::too_many_arguments)]
fn model(
    w: &World,
    rssi_at_1m: f64,
    exponent: f64,
    floor_a: u32,
    xa: f64,
    ya: f64,
    floor_b: u32,
    xb: f64,
    yb: f64,
) -> f64 {
    let d = ((xa - xb).powi(2) + (ya - yb).powi(2)).sqrt();
    log_distance_rssi(rssi_at_1m, exponent, d)
        - w.opt.floor_penalty_db * floor_a.abs_diff(floor_b) as f64
}
