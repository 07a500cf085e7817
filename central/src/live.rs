//! Live positions, off the ingest writer's hot path.
//!
//! The writer's commit hook only turns a committed group into [`LiveInput`]s (BLE sightings
//! by receiver, door transitions) and pushes them into a bounded [`LiveQueue`]; it never
//! blocks. The positioning task ([`run`]) drains the queue, runs the pure [`LiveState`]
//! (per device: RSSI window → estimator (multilateration by default) → optional Kalman
//! smoothing → room probabilities → room filter over the building's doors),
//! publishes every new estimate on the bus and stores a throttled history in batches.
//! If the task falls behind, the queue drops its oldest sightings and counts them
//! (positions are derived data; the readings themselves are stored).
//!
//! Time always comes from the readings, so the same core runs the simulator evaluation
//! (`roomsense-central eval --method live`) and live ingest.

use crate::bus::{EventBus, LiveEvent};
use crate::ingest::IngestStats;
use crate::positioning::{
    multilaterate_near, Anchor, DoorEvent, Estimate, FloorPlan, KalmanConfig, KalmanTrack,
    MultilatConfig, ParticleConfig, ParticleTrack, Passage, PlanReceiver, Prior, Room, RoomFilter,
    RoomFilterConfig, RoomGraph, RssiWindow, WindowConfig,
};
use crate::storage::positions::PositionRecord;
use crate::storage::{Received, Store, WriteItem};
use roomsense_common::protocol::Message;
use roomsense_common::sim::Building;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Latest estimate of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    pub device: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    /// Building name (from the building file).
    pub building: String,
    /// Current room (room filter); none before the first estimate placed the device.
    pub room: Option<String>,
    /// Probability of `room` for this estimate alone (before the room filter).
    pub room_probability: f32,
    /// 0..1: the estimator's trust in its position.
    pub confidence: f32,
    /// Radius (m) within which the true position probably lies.
    pub error_radius_m: f32,
    /// Estimator, `+kalman` when smoothed: `multilateration+kalman`, `nearest-receiver`, …
    pub method: String,
    /// Receivers heard in the window.
    pub receivers: usize,
    pub at_ms: i64,
}

/// What the positioning task consumes, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveInput {
    /// `receiver` heard `device` at `rssi` dBm.
    Sighting {
        receiver: String,
        device: String,
        rssi: f32,
        at_ms: i64,
    },
    /// A door contact changed state (`open`: it opened, i.e. someone is passing).
    Door {
        door: String,
        open: bool,
        at_ms: i64,
    },
}

impl LiveInput {
    pub fn at_ms(&self) -> i64 {
        match self {
            LiveInput::Sighting { at_ms, .. } | LiveInput::Door { at_ms, .. } => *at_ms,
        }
    }
}

/// The inputs of a committed ingest group (pure; called on the writer's path, so cheap).
pub fn inputs_of_commit(items: &[WriteItem]) -> Vec<LiveInput> {
    let mut out = Vec::new();
    for item in items {
        let WriteItem::Message(Received { msg, .. }) = item else {
            continue;
        };
        match msg {
            Message::Ble(b) => out.extend(b.items.iter().map(|s| LiveInput::Sighting {
                receiver: b.node.as_str().to_string(),
                device: s.id.as_str().to_string(),
                rssi: s.rssi,
                at_ms: s.last_at.timestamp_millis(),
            })),
            Message::Door(b) => out.extend(b.items.iter().map(|t| LiveInput::Door {
                door: t.door.as_str().to_string(),
                open: t.state == roomsense_common::protocol::DoorState::Open,
                at_ms: t.at.timestamp_millis(),
            })),
            Message::Status(_) | Message::Wifi(_) => {}
        }
    }
    out
}

/// Locates one device from its smoothed scan. The seam where a trained model (e.g. a
/// fingerprint radio map of the building) replaces multilateration.
pub trait LiveEstimator: Send + Sync {
    /// `scan`: `(receiver id, smoothed dBm)`, strongest first.
    fn estimate(&self, scan: &[(&str, f32)]) -> Option<Estimate>;

    /// [`Self::estimate`] for a device whose track expects it near `prior`: an estimator
    /// whose readings fit several places about as well takes the one near the track.
    fn estimate_near(&self, scan: &[(&str, f32)], prior: Option<Prior>) -> Option<Estimate> {
        let _ = prior;
        self.estimate(scan)
    }

    /// The receivers with the path loss this estimator knows them by (fitted by training,
    /// say), which the particle tracker weighs readings with; None = the building file's.
    fn anchors(&self) -> Option<&[Anchor]> {
        None
    }
}

/// Multilateration against the building's receivers with their path-loss parameters.
pub struct MultilatEstimator {
    pub anchors: Vec<Anchor>,
    pub config: MultilatConfig,
}

impl MultilatEstimator {
    pub fn for_building(b: &Building) -> Self {
        let anchors = b
            .receivers
            .iter()
            .map(|r| {
                let mut a = Anchor::new(r.node.as_str(), r.x, r.y, r.floor);
                a.rssi_at_1m = r.rssi_at_1m as f32;
                a.exponent = r.path_loss_exponent as f32;
                a
            })
            .collect();
        let mut config = MultilatConfig::default();
        if let Some(f) = b.floors.first() {
            config.floor_height_m = f.height;
        }
        Self { anchors, config }
    }
}

impl LiveEstimator for MultilatEstimator {
    /// Floor first (vote of the strongest receivers), then the position from the receivers
    /// of that floor when there are 3 or more: slabs attenuate far more than the extra
    /// distance accounts for, so other floors' receivers would pull the fit away.
    fn estimate(&self, scan: &[(&str, f32)]) -> Option<Estimate> {
        self.estimate_near(scan, None)
    }

    fn estimate_near(&self, scan: &[(&str, f32)], prior: Option<Prior>) -> Option<Estimate> {
        let est = multilaterate_near(&self.anchors, scan, &self.config, prior)?;
        let on_floor: Vec<(&str, f32)> = scan
            .iter()
            .filter(|(id, _)| {
                self.anchors
                    .iter()
                    .any(|a| a.id == *id && a.floor == est.floor)
            })
            .copied()
            .collect();
        if on_floor.len() >= 3 && on_floor.len() < scan.len() {
            multilaterate_near(&self.anchors, &on_floor, &self.config, prior).or(Some(est))
        } else {
            Some(est)
        }
    }

    fn anchors(&self) -> Option<&[Anchor]> {
        Some(&self.anchors)
    }
}

/// Parameters of the live pipeline (`[positioning]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub window: WindowConfig,
    pub room: RoomFilterConfig,
    /// Kalman smoothing of each track; none = raw estimates.
    pub kalman: Option<KalmanConfig>,
    /// At most one stored row per device per this long (plus one at every room change).
    pub store_interval_ms: i64,
    /// A device is estimated once per slot of this length (ms) while its sightings stream
    /// in; sightings that arrive late for a slot already estimated revise its estimate.
    pub update_interval_ms: i64,
    /// Multiplies every estimate's error radius (calibrated so that the radius holds the
    /// true position as often as it claims; it also sets how sure the room probabilities
    /// are).
    pub radius_scale: f32,
    /// How much a track's expected position counts when the readings fit two places
    /// about as well (multilateration's local minima): its spread is divided by the square
    /// root of this; 0 = the readings' best fit alone.
    pub track_prior_weight: f64,
    /// Track each device with a particle filter over the floor plan (walls, doors and
    /// their contacts) instead of multilateration, Kalman smoothing and the room filter.
    pub particles: Option<ParticleConfig>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            window: WindowConfig::default(),
            room: RoomFilterConfig::default(),
            kalman: Some(KalmanConfig::default()),
            store_interval_ms: 1_000,
            // The simulator evaluation's step: the room filter's evidence per estimate is
            // calibrated at this rate (one estimate per slot, BENCHMARKS.md).
            update_interval_ms: 250,
            // What calibration on the simulator chooses (BENCHMARKS.md).
            radius_scale: 1.5,
            track_prior_weight: 1.0,
            // The particle filter: on the simulator it beats the Kalman chain on walking
            // and standing room hits and on flaps, on both example buildings
            // (BENCHMARKS.md).
            particles: Some(ParticleConfig::default()),
        }
    }
}

impl LiveConfig {
    pub fn from_config(c: &crate::config::PositioningConfig) -> Self {
        let mut l = Self::default();
        l.window.window_ms = c.window.as_millis() as i64;
        l.kalman = c.kalman.then(|| KalmanConfig {
            max_speed_mps: c.max_speed_mps,
            ..KalmanConfig::default()
        });
        l.store_interval_ms = c.store_interval.as_millis() as i64;
        l.particles = match c.tracker {
            crate::config::Tracker::Particles => Some(ParticleConfig {
                max_speed_mps: c.max_speed_mps,
                ..ParticleConfig::default()
            }),
            crate::config::Tracker::Kalman => None,
        };
        l
    }
}

/// What one device carries between estimates.
struct Track {
    window: RssiWindow,
    room: RoomFilter,
    kalman: Option<KalmanTrack>,
    /// Newest sighting not yet turned into an estimate.
    pending_ms: Option<i64>,
    /// Time of the last estimate, and of the track's first sighting.
    located_ms: Option<i64>,
    started_ms: i64,
    /// Last stored row: time and room.
    stored: Option<(i64, Option<String>)>,
    /// Doors whose opening was put down to this device since its last estimate.
    passed: Vec<Passage>,
    /// The update slot of the last estimate, and the track as it was before that slot's
    /// first estimate (see [`LiveState::locate`]).
    slot: Option<Slot>,
    /// The particle filter's cloud (when `LiveConfig::particles` is set).
    pf: Option<ParticleTrack>,
    /// The particle tracker's latest estimate per update slot: slot, x, y, floor and the
    /// cloud's walking share (other devices' door openings are weighed with it).
    recent: VecDeque<(i64, f64, f64, i32, f64)>,
}

/// The state an estimate in an update slot starts from: sightings of a slot that arrive
/// after its first estimate (another edge node's batch of the same second) revise that
/// estimate instead of adding another one, so that the room filter and the Kalman track
/// weigh one estimate per slot however the batches happen to arrive.
struct Slot {
    index: i64,
    room: RoomFilter,
    kalman: Option<KalmanTrack>,
    passed: Vec<Passage>,
    pf: Option<ParticleTrack>,
}

/// What a batch of inputs produced.
#[derive(Debug, Default)]
pub struct LiveOutput {
    /// Every new estimate, in time order per device.
    pub positions: Vec<Position>,
    /// The rows to store (throttled to `store_interval_ms`, plus room changes).
    pub rows: Vec<PositionRecord>,
}

/// Pure state of the live pipeline: windows, trackers and latest estimates of every device.
pub struct LiveState {
    config: LiveConfig,
    building: String,
    rooms: RoomGraph,
    estimator: Arc<dyn LiveEstimator>,
    /// The estimator came from a trained model (a site change does not replace it).
    trained: bool,
    tracks: HashMap<String, Track>,
    latest: HashMap<String, Position>,
    /// Recent door transitions (every device's room filter reads them).
    doors: VecDeque<DoorEvent>,
    /// Newest input time seen, and when state was last pruned (input time).
    newest_ms: i64,
    pruned_ms: i64,
    /// Door openings to look at again once the tracks have caught up.
    reviews: VecDeque<Review>,
    /// Devices whose estimate of the current slot takes a door passage that came after it.
    revise: Vec<String>,
    /// The floor plan the particle filter walks on, and each door's latest contact
    /// reports `(at_ms, open)`.
    plan: Arc<FloorPlan>,
    door_log: HashMap<String, VecDeque<(i64, bool)>>,
}

/// A door opening put down to devices, kept for more looks: per device on its floor
/// within reach of the door, the room it was reported in then and the share it got so
/// far; and when it is looked at next.
struct Review {
    door: String,
    at_ms: i64,
    next_ms: i64,
    devices: Vec<(String, Option<String>, f64)>,
}

/// Adds `p`'s row to `out` when one is due: the first of a device, one at every room
/// change, else at most one per `store_every` ms.
fn store_row(
    stored: &mut Option<(i64, Option<String>)>,
    p: &Position,
    store_every: i64,
    out: &mut LiveOutput,
) {
    let due = match stored {
        None => Some(true),
        Some((_, room)) if room != &p.room => Some(true),
        Some((at, _)) if p.at_ms - *at >= store_every => Some(false),
        _ => None,
    };
    if let Some(changed) = due {
        *stored = Some((p.at_ms, p.room.clone()));
        out.rows.push(PositionRecord {
            id: 0,
            device: p.device.clone(),
            at_ms: p.at_ms,
            x: p.x,
            y: p.y,
            floor: p.floor,
            building: p.building.clone(),
            room: p.room.clone(),
            room_changed: changed,
            confidence: f64::from(p.confidence),
            error_radius_m: f64::from(p.error_radius_m),
            method: p.method.clone(),
            receivers: p.receivers as i32,
            stored_at_ms: 0,
        });
    }
}

/// A door opening is put down only to devices estimated this recently.
const ATTRIBUTE_WITHIN_MS: i64 = 5_000;

/// A device not heard for this long is forgotten (its window and latest position), so
/// memory stays bounded however many devices pass by in a year.
pub const FORGET_AFTER_MS: i64 = 60 * 60 * 1000;
const PRUNE_EVERY_MS: i64 = 60 * 1000;

/// The building's rooms with the ids of their passages (doors, and `stairs-N` for the
/// building's stairs), for the room filter.
pub fn rooms_of(b: &Building) -> Vec<Room> {
    b.rooms
        .iter()
        .map(|r| {
            let mut doors: Vec<String> = b
                .doors
                .iter()
                .filter(|d| d.rooms.iter().any(|x| x == &r.id))
                .map(|d| d.id.as_str().to_string())
                .collect();
            doors.extend(
                b.stairs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.rooms.iter().any(|x| x == &r.id))
                    .map(|(i, _)| format!("stairs-{i}")),
            );
            Room {
                id: r.id.clone(),
                floor: r.floor,
                polygon: r.polygon.iter().map(|p| (p[0], p[1])).collect(),
                doors,
            }
        })
        .collect()
}

/// The particle filter's floor plan of a building.
pub fn floor_plan(b: &Building) -> FloorPlan {
    let receivers = b
        .receivers
        .iter()
        .map(|r| PlanReceiver {
            id: r.node.as_str().to_string(),
            x: r.x,
            y: r.y,
            floor: r.floor,
            rssi_at_1m: r.rssi_at_1m,
            exponent: r.path_loss_exponent,
            // The building file's shadowing (4 dB unless it says otherwise), at least 1 dB
            // (a noise-free simulation would make the cloud collapse on one hypothesis).
            sigma_db: Some(r.noise_sigma_db.max(1.0)),
        })
        .collect();
    let pair = |rooms: &[String]| {
        (
            rooms.first().cloned().unwrap_or_default(),
            rooms.get(1).cloned().unwrap_or_default(),
        )
    };
    FloorPlan::new(
        rooms_of(b),
        b.doors.iter().map(|d| {
            let (a, c) = pair(&d.rooms);
            (
                d.id.as_str().to_string(),
                a,
                c,
                d.position[0],
                d.position[1],
            )
        }),
        b.stairs.iter().enumerate().map(|(i, s)| {
            let (a, c) = pair(&s.rooms);
            (format!("stairs-{i}"), a, c, s.position[0], s.position[1])
        }),
        receivers,
    )
}

/// `plan` with its receivers' path loss as `estimator` knows them.
fn plan_with(mut plan: FloorPlan, estimator: &dyn LiveEstimator) -> FloorPlan {
    if let Some(anchors) = estimator.anchors() {
        for r in &mut plan.receivers {
            if let Some(a) = anchors.iter().find(|a| a.id == r.id) {
                r.rssi_at_1m = f64::from(a.rssi_at_1m);
                r.exponent = f64::from(a.exponent);
            }
        }
    }
    plan
}

/// Estimates per device kept for weighing other devices' door openings (10 s of slots).
const RECENT_SLOTS: usize = 40;

/// Most contact reports kept per door.
const DOOR_LOG: usize = 32;

/// A door's contact may be a second off the readings' clocks.
const DOOR_SLACK_MS: i64 = 1_000;

/// Whether a door could be walked through in `[from, to]`: never reported (no contact, or
/// not heard from yet), open at `from`, or opened since.
fn door_open_within(log: Option<&VecDeque<(i64, bool)>>, from: i64, to: i64) -> bool {
    let Some(log) = log.filter(|l| !l.is_empty()) else {
        return true;
    };
    let before = log.iter().rev().find(|(at, _)| *at <= from);
    match before {
        Some((_, true)) => true,
        Some((_, false)) | None => {
            log.iter().any(|&(at, open)| at > from && at <= to && open)
                || (before.is_none() && log.front().is_some_and(|(_, open)| !open))
        }
    }
}

/// A per-device seed for the particle filter (FNV-1a of the id).
fn seed_of(device: &str) -> u64 {
    device.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The room filter's graph of a building: rooms, their passages, the doors' positions.
fn room_graph(building: &Building) -> RoomGraph {
    RoomGraph::new(rooms_of(building)).with_door_positions(
        building
            .doors
            .iter()
            .map(|d| (d.id.as_str().to_string(), d.position[0], d.position[1])),
    )
}

impl LiveState {
    /// Multilateration against the building's receivers.
    pub fn new(building: &Building, config: LiveConfig) -> Self {
        Self::with_estimator(
            building,
            config,
            Arc::new(MultilatEstimator::for_building(building)),
        )
    }

    pub fn with_estimator(
        building: &Building,
        config: LiveConfig,
        estimator: Arc<dyn LiveEstimator>,
    ) -> Self {
        Self {
            config,
            building: building.name.clone(),
            rooms: room_graph(building),
            estimator: estimator.clone(),
            trained: false,
            tracks: HashMap::new(),
            latest: HashMap::new(),
            doors: VecDeque::new(),
            newest_ms: i64::MIN,
            pruned_ms: i64::MIN,
            reviews: VecDeque::new(),
            revise: Vec::new(),
            plan: Arc::new(plan_with(floor_plan(building), estimator.as_ref())),
            door_log: HashMap::new(),
        }
    }

    /// Takes a changed site (rooms, doors, receivers edited by an administrator): the room
    /// graph, and the multilateration anchors unless a trained model is in use (it has
    /// its own). Tracks are kept; their room filters start over only when the list of
    /// rooms changed (their beliefs are per room).
    pub fn set_building(&mut self, building: &Building) {
        let graph = room_graph(building);
        let same_rooms = graph.rooms().iter().map(|r| &r.id).eq(self
            .rooms
            .rooms()
            .iter()
            .map(|r| &r.id));
        self.rooms = graph;
        if !self.trained {
            self.estimator = Arc::new(MultilatEstimator::for_building(building));
        }
        self.plan = Arc::new(plan_with(floor_plan(building), self.estimator.as_ref()));
        if !same_rooms {
            for t in self.tracks.values_mut() {
                t.room = RoomFilter::new(self.config.room.clone());
                t.passed.clear();
                // The particle tracker's hypotheses are in rooms that are gone.
                t.pf = None;
                if let Some(s) = &mut t.slot {
                    s.pf = None;
                }
            }
        }
    }

    /// Replaces the estimator by a trained model's; tracks are kept.
    pub fn set_estimator(&mut self, estimator: Arc<dyn LiveEstimator>) {
        self.plan = Arc::new(plan_with((*self.plan).clone(), estimator.as_ref()));
        self.estimator = estimator;
        self.trained = true;
    }

    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    fn track(&mut self, device: &str, at_ms: i64) -> &mut Track {
        if !self.tracks.contains_key(device) {
            let c = &self.config;
            let t = Track {
                window: RssiWindow::new(c.window.clone()),
                room: RoomFilter::new(c.room.clone()),
                kalman: c.kalman.clone().map(KalmanTrack::new),
                pending_ms: None,
                located_ms: None,
                started_ms: at_ms,
                stored: None,
                passed: Vec::new(),
                slot: None,
                pf: None,
                recent: VecDeque::new(),
            };
            self.tracks.insert(device.to_string(), t);
        }
        // Just inserted if it was missing.
        self.tracks
            .get_mut(device)
            .unwrap_or_else(|| unreachable!("track inserted above"))
    }

    /// The update slot of a time: slot `k` holds the times in
    /// `((k - 1) · update_interval_ms, k · update_interval_ms]`.
    fn slot_of(&self, at_ms: i64) -> i64 {
        let every = self.config.update_interval_ms.max(1);
        at_ms.div_euclid(every) + i64::from(at_ms.rem_euclid(every) != 0)
    }

    /// Feeds a batch of inputs (any order; processed in time order) and returns the new
    /// estimates and the rows to store. A device is estimated at its newest sighting of the
    /// batch, and in between whenever its sightings move on to the next update slot
    /// (`update_interval_ms`). Sightings of a slot already estimated revise that estimate.
    pub fn apply(&mut self, inputs: &[LiveInput]) -> LiveOutput {
        let mut order: Vec<&LiveInput> = inputs.iter().collect();
        order.sort_by_key(|i| i.at_ms());
        let mut out = LiveOutput::default();
        let mut dirty: Vec<String> = Vec::new();
        for input in order {
            self.newest_ms = self.newest_ms.max(input.at_ms());
            match input {
                LiveInput::Door { door, open, at_ms } => {
                    let log = self.door_log.entry(door.clone()).or_default();
                    let pos = log.partition_point(|(t, _)| t <= at_ms);
                    log.insert(pos, (*at_ms, *open));
                    while log.len() > DOOR_LOG {
                        log.pop_front();
                    }
                    // Putting openings down to devices is the Kalman chain's (the particle
                    // tracker weighs them in each cloud, from `door_log`).
                    if *open && self.config.particles.is_none() {
                        self.attribute_opening(door, *at_ms);
                    }
                    self.revise_near(door, *at_ms);
                    self.doors.push_back(DoorEvent {
                        door: door.clone(),
                        at_ms: *at_ms,
                    });
                    let keep = self.newest_ms - 4 * self.config.room.door_window_ms;
                    while self.doors.front().is_some_and(|d| d.at_ms < keep) {
                        self.doors.pop_front();
                    }
                }
                LiveInput::Sighting {
                    receiver,
                    device,
                    rssi,
                    at_ms,
                } => {
                    let slot = self.slot_of(*at_ms);
                    let due = self
                        .tracks
                        .get(device.as_str())
                        .and_then(|t| t.pending_ms.filter(|&p| slot > self.slot_of(p)));
                    if let Some(p) = due {
                        // Sightings moved on to the next update slot: estimate where the
                        // device was before taking the new one.
                        self.locate(device, p, &mut out);
                    }
                    let t = self.track(device, *at_ms);
                    t.window.insert(receiver, *at_ms, *rssi);
                    if t.pending_ms.is_none() {
                        dirty.push(device.clone());
                    }
                    t.pending_ms = Some(t.pending_ms.map_or(*at_ms, |p| p.max(*at_ms)));
                }
            }
        }
        if self.config.particles.is_none() {
            self.review_openings();
        }
        dirty.append(&mut self.revise);
        for device in dirty {
            if let Some(at) = self.tracks.get(&device).and_then(|t| t.pending_ms) {
                self.locate(&device, at, &mut out);
            }
        }
        if self.newest_ms.saturating_sub(self.pruned_ms) >= PRUNE_EVERY_MS {
            self.prune(self.newest_ms);
        }
        out
    }

    /// A door opened at `at_ms`: someone is walking through it. Every device estimated in
    /// the last few seconds within `door_radius_m` of the door (on its floor) may be the
    /// one: each gets a share of the passage, by how near its track was to the door then
    /// and how fast it moved, against a share for "someone without a tag". Their room
    /// filters take it as evidence at their next estimate. The opening is looked at again
    /// at every update slot for `review_for_ms` (see [`Self::review_openings`]).
    fn attribute_opening(&mut self, door: &str, at_ms: i64) {
        let Some((dx, dy, floor)) = self.rooms.door_place(door) else {
            return;
        };
        let shares = self.opening_shares(door, at_ms);
        for (id, share) in &shares {
            if let Some(t) = self.tracks.get_mut(id) {
                t.passed.push(Passage::new(door, *share, None));
            }
        }
        let c = &self.config;
        if c.room.review_for_ms > 0 {
            let recent = at_ms - ATTRIBUTE_WITHIN_MS;
            // Only devices that can be within `door_radius_m` of the door by the last
            // look: a track moves at walking speed (twice that, for the switch between its
            // motion models and the look ahead), a raw estimate anywhere.
            let reach = c.kalman.as_ref().map_or(f64::INFINITY, |k| {
                let ahead_s = (c.room.review_for_ms + c.window.window_ms) as f64 / 1000.0;
                c.room.door_radius_m + 2.0 * k.max_speed_mps * ahead_s
            });
            let devices = self
                .latest
                .iter()
                .filter(|(_, p)| {
                    p.floor == floor && p.at_ms >= recent && (p.x - dx).hypot(p.y - dy) <= reach
                })
                .map(|(id, p)| {
                    let given = shares.iter().find(|s| &s.0 == id).map_or(0.0, |s| s.1);
                    (id.clone(), p.room.clone(), given)
                })
                .collect();
            self.reviews.push_back(Review {
                door: door.to_string(),
                at_ms,
                next_ms: at_ms + self.look_every_ms(),
                devices,
            });
        }
    }

    /// A door event that comes after the sightings of its update slot: the devices near
    /// the door already estimated in that slot are estimated again with it, as if it had
    /// come first (the door's events and shares are evidence for their room filters).
    fn revise_near(&mut self, door: &str, at_ms: i64) {
        let Some((dx, dy, floor)) = self.rooms.door_place(door) else {
            return;
        };
        let slot = self.slot_of(at_ms);
        // Near enough for the room filter once the estimate is revised.
        let reach = self.config.room.door_radius_m + 2.0;
        for (id, t) in self.tracks.iter_mut() {
            let near = self
                .latest
                .get(id)
                .is_some_and(|p| p.floor == floor && (p.x - dx).hypot(p.y - dy) <= reach);
            if near && t.pending_ms.is_none() && t.slot.as_ref().is_some_and(|s| s.index >= slot) {
                t.pending_ms = t.located_ms;
                self.revise.push(id.clone());
            }
        }
    }

    /// Shares of an opening of `door`, by the tracks as of `at_ms`: each device estimated
    /// in the `ATTRIBUTE_WITHIN_MS` before within `door_radius_m` of the door (on its
    /// floor), weighted per motion model of its track (walking, standing still) by how
    /// likely the device is in it, how near it is to the door and how fast it moves (a
    /// device that just set off from standing still may already be at the door).
    fn opening_shares(&self, door: &str, at_ms: i64) -> Vec<(String, f64)> {
        let Some((dx, dy, floor)) = self.rooms.door_place(door) else {
            return Vec::new();
        };
        let c = &self.config.room;
        let recent = at_ms - ATTRIBUTE_WITHIN_MS;
        let slot = self.slot_of(at_ms);
        let sigma2 = 2.0 * c.passage_sigma_m * c.passage_sigma_m;
        let mut weights: Vec<(String, f64)> = Vec::new();
        for (id, t) in &self.tracks {
            let Some(p) = self.latest.get(id) else {
                continue;
            };
            if p.floor != floor || t.located_ms.is_none_or(|l| l < recent) {
                continue;
            }
            // The track as it was before the opening's update slot: the same whether the
            // opening arrives before or after the slot's sightings.
            let kalman = match &t.slot {
                Some(s) if s.index >= slot => s.kalman.as_ref(),
                _ => t.kalman.as_ref(),
            };
            let modes = kalman
                .map(|k| k.modes_at(at_ms))
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| vec![(1.0, p.x, p.y, 0.0)]);
            let mut w = 0.0;
            let mut near = false;
            for (prob, x, y, speed) in modes {
                let d = (x - dx).hypot(y - dy);
                if d <= c.door_radius_m {
                    near = true;
                    w += prob * (-d * d / sigma2).exp() * (c.passage_speed_bias + speed.min(2.0));
                }
            }
            if near {
                weights.push((id.clone(), w));
            }
        }
        let total: f64 = weights.iter().map(|w| w.1).sum::<f64>() + c.passage_nobody;
        if total <= 0.0 {
            return Vec::new();
        }
        weights.into_iter().map(|(id, w)| (id, w / total)).collect()
    }

    /// How often an opening is looked at again: once per update slot.
    fn look_every_ms(&self) -> i64 {
        self.config.update_interval_ms.max(1)
    }

    /// More looks at door openings, once per update slot until they are `review_for_ms`
    /// old, as the tracks catch up: a device that stood still a few seconds before it
    /// walked through is shown at its standing spot when the door opens (its estimates lag
    /// the RSSI window), too far from the door for a share. Now it walks, near the door.
    /// Each device whose share is now larger than it got so far, and that is still
    /// reported in the room it was in then, gets the difference as a passage out of that
    /// room through the door — unless its belief has mostly left that room already.
    fn review_openings(&mut self) {
        let every = self.look_every_ms();
        let until = self.config.room.review_for_ms;
        let mut reviews = std::mem::take(&mut self.reviews);
        for review in reviews.iter_mut() {
            if self.newest_ms >= review.next_ms && review.next_ms - review.at_ms <= until {
                self.look_again(review);
                // The next look in the grid of update slots from the opening.
                let behind = (self.newest_ms - review.next_ms).div_euclid(every) + 1;
                review.next_ms += behind * every;
            }
        }
        reviews.retain(|r| r.next_ms - r.at_ms <= until);
        self.reviews = reviews;
    }

    /// One look at `review` as the tracks are now (see [`Self::review_openings`]).
    fn look_again(&mut self, review: &mut Review) {
        let shares = self.opening_shares(&review.door, self.newest_ms);
        for (id, share) in shares {
            let Some((_, then, given)) = review.devices.iter_mut().find(|d| d.0 == id) else {
                continue;
            };
            let Some(then) = then.as_ref() else {
                continue;
            };
            let still_there = self
                .latest
                .get(&id)
                .is_some_and(|p| p.room.as_ref() == Some(then));
            let room = self.rooms.rooms().iter().position(|r| &r.id == then);
            let Some(t) = self.tracks.get_mut(&id) else {
                continue;
            };
            let belief = room.and_then(|i| t.room.belief().get(i).copied());
            let walking = t.kalman.as_ref().and_then(KalmanTrack::is_walking) != Some(false);
            if share > *given && still_there && walking && belief.is_some_and(|b| b >= 0.5) {
                t.passed
                    .push(Passage::new(&review.door, share - *given, Some(then)));
                *given = share;
            }
        }
    }

    /// Estimates `device` as of `now_ms` from its window; adds the estimate (and a row when
    /// due) to `out`.
    fn locate(&mut self, device: &str, mut now_ms: i64, out: &mut LiveOutput) {
        let estimator = self.estimator.clone();
        let rooms = std::mem::take(&mut self.rooms);
        let mut doors = std::mem::take(&mut self.doors);
        doors.make_contiguous();
        let store_every = self.config.store_interval_ms;
        let building = self.building.clone();
        let window_ms = self.config.window.window_ms;
        let walking_share = self.config.window.walking_share;
        let radius_scale = self.config.radius_scale;
        let prior_weight = self.config.track_prior_weight;
        let slot = self.slot_of(now_ms);
        let pf_config = self.config.particles.clone();
        let plan = self.plan.clone();
        // Doors the cloud may have walked through since it was last moved on (the state of
        // its update slot's start, which a revision starts from again).
        let pf_last = self
            .tracks
            .get(device)
            .and_then(|t| {
                t.slot
                    .as_ref()
                    .and_then(|s| s.pf.as_ref())
                    .or(t.pf.as_ref())
            })
            .and_then(ParticleTrack::last_ms)
            .unwrap_or(now_ms);
        let since = pf_last.min(now_ms - window_ms.max(2_000)) - DOOR_SLACK_MS;
        // (Nothing of this for the Kalman chain.)
        let pf_doors = if pf_config.is_some() {
            plan.doors.as_slice()
        } else {
            &[]
        };
        let passable: Vec<bool> = pf_doors
            .iter()
            .map(|d| door_open_within(self.door_log.get(&d.id), since, now_ms))
            .collect();
        // Openings since the cloud was last moved on (the tracker takes those after it).
        let opened: Vec<(usize, i64)> = pf_doors
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                self.door_log
                    .get(&d.id)
                    .into_iter()
                    .flatten()
                    .filter(|(at, open)| *open && *at > since && *at <= now_ms)
                    .map(move |(at, _)| (i, *at))
            })
            .collect();
        // Each opening also weighs the other devices that may have opened it: their walking
        // share near the door, as of their estimates of the slots before it (final by
        // then, whatever order the edge nodes' batches arrive in).
        let opened: Vec<(usize, i64, f64)> = opened
            .into_iter()
            .map(|(i, at)| {
                let others = match (&pf_config, plan.doors.get(i)) {
                    (Some(pc), Some(d)) => {
                        let floor = plan.rooms[d.rooms.0].floor;
                        let s2 = 2.0 * pc.door_sigma_m.max(0.05).powi(2);
                        let before = self.slot_of(at);
                        self.tracks
                            .iter()
                            .filter(|(id, _)| id.as_str() != device)
                            .filter_map(|(_, o)| o.recent.iter().rev().find(|r| r.0 < before))
                            .filter(|r| r.3 == floor)
                            .map(|r| {
                                r.4 * (-((r.1 - d.x).powi(2) + (r.2 - d.y).powi(2)) / s2).exp()
                            })
                            .sum()
                    }
                    _ => 0.0,
                };
                (i, at, others)
            })
            .collect();
        let t = self.track(device, now_ms);
        let started_ms = t.started_ms;
        t.pending_ms = None;
        match &mut t.slot {
            Some(s) if s.index >= slot => {
                // Late sightings of a slot already estimated (or of an older one, which
                // join the newest): estimate it again from the state before, with what
                // the earlier estimate had been given, as of the slot's newest sighting.
                now_ms = now_ms.max(t.located_ms.unwrap_or(now_ms));
                s.passed.append(&mut t.passed);
                t.room = s.room.clone();
                t.kalman = s.kalman.clone();
                t.passed = s.passed.clone();
                t.pf = s.pf.clone();
            }
            _ => {
                t.slot = Some(Slot {
                    index: slot,
                    room: t.room.clone(),
                    kalman: t.kalman.clone(),
                    passed: t.passed.clone(),
                    pf: t.pf.clone(),
                });
            }
        }
        t.window.expire(now_ms);
        if let Some(pc) = &pf_config {
            let pf =
                t.pf.get_or_insert_with(|| ParticleTrack::new(seed_of(device)));
            let fresh = t
                .window
                .readings_between(pf.last_ms().unwrap_or(i64::MIN), now_ms);
            let readings: Vec<(&str, f64, usize)> = fresh
                .iter()
                .map(|(id, r, n)| (id.as_str(), *r, *n))
                .collect();
            let est = pf.update(
                &plan,
                pc,
                now_ms,
                &readings,
                &|i| passable.get(i).copied().unwrap_or(true),
                &opened,
            );
            t.passed.clear();
            if let Some(est) = est {
                t.located_ms = Some(now_ms);
                let room_probability = est
                    .room
                    .as_ref()
                    .and_then(|r| est.room_probabilities.iter().find(|p| &p.0 == r))
                    .map_or(0.0, |p| p.1);
                let p = Position {
                    device: device.to_string(),
                    x: est.x,
                    y: est.y,
                    floor: est.floor,
                    building,
                    room: est.room.clone(),
                    room_probability: room_probability as f32,
                    confidence: room_probability as f32,
                    error_radius_m: (est.error_radius_m * pc.radius_scale) as f32,
                    method: "particles".to_string(),
                    receivers: readings.len(),
                    at_ms: now_ms,
                };
                store_row(&mut t.stored, &p, store_every, out);
                if t.recent.back().is_some_and(|r| r.0 == slot) {
                    t.recent.pop_back();
                }
                t.recent
                    .push_back((slot, est.x, est.y, est.floor, est.moving));
                while t.recent.len() > RECENT_SLOTS {
                    t.recent.pop_front();
                }
                self.latest.insert(device.to_string(), p.clone());
                out.positions.push(p);
            }
            self.rooms = rooms;
            self.doors = doors;
            return;
        }
        // A device whose track says it walks is estimated from the newest part of its
        // window (its older readings describe where it was); all of it when that part is
        // empty.
        let walking = t.kalman.as_ref().and_then(KalmanTrack::is_walking) == Some(true);
        let walking_span = (window_ms as f64 * walking_share.clamp(0.0, 1.0)).round() as i64;
        let (span, snap) = match walking
            .then(|| t.window.snapshot_over(now_ms, walking_span))
            .filter(|s| !s.is_empty())
        {
            Some(snap) => (walking_span, snap),
            None => (window_ms, t.window.snapshot(now_ms)),
        };
        let scan: Vec<(&str, f32)> = snap.iter().map(|(id, r, _)| (id.as_str(), *r)).collect();
        // The mean RSSI describes where the device was about half the span ago: the track
        // is filtered at that time, then moved on at its velocity.
        let lag = (span / 2).min((now_ms - started_ms) / 2).max(0);
        let at = now_ms - lag;
        let prior = t
            .kalman
            .as_ref()
            .and_then(|k| k.prior_at(at))
            .filter(|_| prior_weight > 0.0)
            .map(|p| Prior {
                std: p.std / prior_weight.sqrt(),
                ..p
            });
        let est = estimator.estimate_near(&scan, prior);
        let position = est.map(|est| {
            t.located_ms = Some(now_ms);
            let (x, y, radius, method) = match &mut t.kalman {
                Some(k) => {
                    k.update(at, est.x, est.y, est.error_radius_m, est.floor);
                    let (x, y, std) = k.ahead(lag).unwrap_or((est.x, est.y, 0.0));
                    // The filter's 1-sigma per axis → a radius holding most of the mass,
                    // never wider than the raw estimate's.
                    let r = ((2.0 * std) as f32).min(est.error_radius_m).max(0.1);
                    (x, y, r, format!("{}+kalman", est.method))
                }
                None => (est.x, est.y, est.error_radius_m, est.method.clone()),
            };
            let radius = radius * radius_scale;
            let probs =
                crate::positioning::room_probabilities(rooms.rooms(), x, y, est.floor, radius);
            let passed = std::mem::take(&mut t.passed);
            t.room
                .set_moving(t.kalman.as_ref().and_then(KalmanTrack::is_walking));
            let room = t
                .room
                .update(
                    now_ms,
                    &probs,
                    &rooms,
                    Some((x, y)),
                    doors.as_slices().0,
                    &passed,
                )
                .map(str::to_string);
            // The room filter weighs the whole track, a single estimate's floor vote can
            // flip: report the floor of the room the device is in.
            let floor = room
                .as_ref()
                .and_then(|id| rooms.rooms().iter().find(|r| &r.id == id))
                .map_or(est.floor, |r| r.floor);
            let room_probability = room
                .as_ref()
                .and_then(|r| probs.iter().find(|p| &p.0 == r))
                .map_or(0.0, |p| p.1);
            let p = Position {
                device: device.to_string(),
                x,
                y,
                floor,
                building,
                room,
                room_probability,
                confidence: est.confidence,
                error_radius_m: radius,
                method,
                receivers: scan.len(),
                at_ms: now_ms,
            };
            store_row(&mut t.stored, &p, store_every, out);
            p
        });
        self.rooms = rooms;
        self.doors = doors;
        if let Some(p) = position {
            self.latest.insert(device.to_string(), p.clone());
            out.positions.push(p);
        }
    }

    pub fn position(&self, device: &str) -> Option<&Position> {
        self.latest.get(device)
    }

    /// Every tracked device's latest estimate, by device id.
    pub fn positions(&self) -> Vec<Position> {
        let mut v: Vec<Position> = self.latest.values().cloned().collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    /// Drops expired readings, and devices not heard for `FORGET_AFTER_MS`.
    pub fn prune(&mut self, now_ms: i64) {
        self.pruned_ms = now_ms;
        let cutoff = now_ms.saturating_sub(FORGET_AFTER_MS);
        self.tracks.retain(|_, t| {
            // Only readings older than the cutoff: a device's own time may lag the newest
            // input (another node's batch of a slot still to come), and its estimate then
            // still wants the readings `now_ms` would expire.
            t.window
                .expire(cutoff.saturating_add(t.window.config.window_ms));
            !t.window.is_empty() || t.located_ms.is_some_and(|l| l >= cutoff)
        });
        self.latest.retain(|_, p| p.at_ms >= cutoff);
        // Doors not reported for as long: their state is unknown again (passable).
        self.door_log
            .retain(|_, l| l.back().is_some_and(|(at, _)| *at >= cutoff));
    }

    /// Devices with state (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.tracks.len().max(self.latest.len())
    }
}

/// `LiveState` behind a lock, shared by the positioning task and the API.
pub struct LivePositions(Mutex<LiveState>);

impl LivePositions {
    pub fn new(building: &Building, config: LiveConfig) -> Self {
        Self(Mutex::new(LiveState::new(building, config)))
    }

    pub fn apply(&self, inputs: &[LiveInput]) -> LiveOutput {
        match self.0.lock() {
            Ok(mut s) => s.apply(inputs),
            Err(_) => LiveOutput::default(),
        }
    }

    /// Replaces the estimator (the seam for trained models).
    pub fn set_estimator(&self, estimator: Arc<dyn LiveEstimator>) {
        if let Ok(mut s) = self.0.lock() {
            s.set_estimator(estimator);
        }
    }

    /// The rooms positioning works with now.
    pub fn rooms(&self) -> Vec<Room> {
        self.0
            .lock()
            .map(|s| s.rooms.rooms().to_vec())
            .unwrap_or_default()
    }

    /// Takes a changed site (see [`LiveState::set_building`]).
    pub fn set_building(&self, building: &Building) {
        if let Ok(mut s) = self.0.lock() {
            s.set_building(building);
        }
    }

    pub fn positions(&self) -> Vec<Position> {
        self.0.lock().map(|s| s.positions()).unwrap_or_default()
    }

    pub fn position(&self, device: &str) -> Option<Position> {
        self.0.lock().ok()?.position(device).cloned()
    }
}

/// Bounded hand-off from the ingest writer to the positioning task. Pushing never blocks:
/// when full, the oldest inputs are dropped and counted.
pub struct LiveQueue {
    inner: Mutex<VecDeque<LiveInput>>,
    capacity: usize,
    notify: tokio::sync::Notify,
}

impl LiveQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Appends `inputs`; returns how many old inputs were dropped to make room.
    pub fn push(&self, inputs: Vec<LiveInput>) -> u64 {
        if inputs.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        if let Ok(mut q) = self.inner.lock() {
            q.extend(inputs);
            while q.len() > self.capacity {
                q.pop_front();
                dropped += 1;
            }
        }
        self.notify.notify_one();
        dropped
    }

    /// Takes everything queued.
    pub fn drain(&self) -> Vec<LiveInput> {
        self.inner
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|q| q.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn wait(&self) {
        self.notify.notified().await
    }
}

/// The commit hook's part: queue the group's inputs, count drops.
pub fn enqueue_commit(queue: &LiveQueue, stats: &IngestStats, items: &[WriteItem]) {
    let dropped = queue.push(inputs_of_commit(items));
    if dropped > 0 {
        stats
            .positioning_dropped
            .fetch_add(dropped, Ordering::Relaxed);
    }
}

/// Position rows kept for a retry while the database refuses them; beyond, oldest dropped.
const MAX_PENDING_ROWS: usize = 100_000;

/// The positioning task: drain the queue, estimate (on a blocking thread: CPU work), publish
/// every estimate, store the rows in one batch. Stops after a last drain when `stop` fires.
pub async fn run(
    live: Arc<LivePositions>,
    queue: Arc<LiveQueue>,
    store: Arc<dyn Store>,
    bus: EventBus,
    stats: Arc<IngestStats>,
    stop: CancellationToken,
) {
    let mut pending: Vec<PositionRecord> = Vec::new();
    let mut log_limit = crate::ingest::RateLimit::new(std::time::Duration::from_secs(10));
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = queue.wait() => false,
        };
        let inputs = queue.drain();
        if !inputs.is_empty() {
            let l = live.clone();
            let out = match tokio::task::spawn_blocking(move || l.apply(&inputs)).await {
                Ok(out) => out,
                Err(e) => {
                    tracing::error!(error = %e, "positioning batch failed");
                    LiveOutput::default()
                }
            };
            for p in out.positions {
                bus.publish(LiveEvent::Position(p));
            }
            pending.extend(out.rows);
        }
        if !pending.is_empty() {
            match store.insert_positions(&pending).await {
                Ok(ids) => {
                    stats
                        .positions_stored
                        .fetch_add(ids.len() as u64, Ordering::Relaxed);
                    pending.clear();
                }
                Err(e) => {
                    stats.position_write_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(held) = log_limit.allow(std::time::Instant::now()) {
                        tracing::warn!(error = %e, rows = pending.len(), held_back = held, "storing positions failed; retrying with the next batch");
                    }
                    if pending.len() > MAX_PENDING_ROWS {
                        let excess = pending.len() - MAX_PENDING_ROWS;
                        pending.drain(..excess);
                    }
                    if !stopping {
                        // Do not spin on a database that is down.
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                        }
                        queue.notify.notify_one();
                    }
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomsense_common::sim::{SimEvent, SimOptions, Simulator};
    use std::collections::BTreeMap;

    fn start() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    fn to_inputs(events: Vec<SimEvent>) -> Vec<LiveInput> {
        crate::live_eval::inputs(events)
    }

    /// Noise-free simulated devices are located near their true position, in the right room.
    #[test]
    fn locates_simulated_devices_near_the_truth() {
        let b = Building::example();
        let opts = SimOptions {
            start: start(),
            devices: 6,
            noise_scale: 0.0,
            stationary_fraction: 1.0,
            ..SimOptions::default()
        };
        let mut sim = Simulator::new(b.clone(), 7, opts).unwrap();
        let mut live = LiveState::new(&b, LiveConfig::default());
        let now = start() + chrono::Duration::seconds(5);
        let out = live.apply(&to_inputs(sim.step(now)));
        let truth = sim.truth();
        assert!(truth.len() >= 6);
        for t in &truth {
            let p = live.position(&t.device).unwrap();
            let err = ((p.x - t.x).powi(2) + (p.y - t.y).powi(2)).sqrt();
            // The floor penalty of other floors' receivers is not in the model: decimetres.
            assert!(err < 2.5, "{}: error {err:.2} m", t.device);
            assert_eq!(p.floor, t.floor);
            assert_eq!(p.room, t.room, "{}", t.device);
            assert_eq!(p.method, "particles");
        }
        // One estimate per device per second of data; first rows are room changes.
        assert!(out.positions.len() >= truth.len());
        let first: Vec<_> = out.rows.iter().filter(|r| r.room_changed).collect();
        assert_eq!(first.len(), truth.len());

        // devices not heard for an hour are forgotten
        live.prune(now.timestamp_millis() + FORGET_AFTER_MS + 1);
        assert_eq!(live.tracked(), 0);
    }

    #[test]
    fn stores_at_most_once_per_interval_and_on_room_change() {
        let b = Building::example();
        let mut live = LiveState::new(&b, LiveConfig::default());
        // A device heard by four ground-floor receivers every 250 ms for 10 s.
        let mut inputs = Vec::new();
        for k in 0..40 {
            for (r, rssi) in [
                ("pi-lobby", -70.0),
                ("pi-corridor-0", -75.0),
                ("pi-meeting", -72.0),
                ("pi-server", -78.0),
            ] {
                inputs.push(LiveInput::Sighting {
                    receiver: r.into(),
                    device: "tag-1".into(),
                    rssi,
                    at_ms: k * 250,
                });
            }
        }
        let out = live.apply(&inputs);
        assert!(out.positions.len() >= 9, "{}", out.positions.len());
        // Rows at most once a second, but at every room change (the first row is one).
        let rows: Vec<(i64, bool)> = out.rows.iter().map(|r| (r.at_ms, r.room_changed)).collect();
        assert!(rows[0].1, "{rows:?}");
        assert!(
            rows.windows(2).all(|w| w[1].1 || w[1].0 - w[0].0 >= 1_000),
            "{rows:?}"
        );
        assert!(out.rows.len() >= 9);
        // A device that does not move is not moved from room to room.
        assert!(rows.iter().filter(|r| r.1).count() <= 2, "{rows:?}");
    }

    #[test]
    fn empty_and_unknown_inputs_do_not_panic() {
        let b = Building::example();
        let mut live = LiveState::new(&b, LiveConfig::default());
        assert!(live.apply(&[]).positions.is_empty());
        let out = live.apply(&[
            LiveInput::Sighting {
                receiver: "nobody".into(),
                device: "d".into(),
                rssi: -60.0,
                at_ms: 0,
            },
            LiveInput::Door {
                door: "entrance".into(),
                open: true,
                at_ms: 0,
            },
        ]);
        assert!(out.positions.is_empty() && out.rows.is_empty());
        // One receiver: placed near it, honestly vague.
        let out = live.apply(&[LiveInput::Sighting {
            receiver: "pi-kitchen".into(),
            device: "d".into(),
            rssi: -70.0,
            at_ms: 10,
        }]);
        assert_eq!(out.positions.len(), 1);
        assert!(out.positions[0].error_radius_m > 2.0);
    }

    /// Each edge node's batch of a second arriving on its own (in any order) gives the
    /// same tracks as the whole second at once: late sightings of a slot revise its
    /// estimate instead of adding evidence to the room filter and the Kalman track (or to
    /// the particle tracker's cloud).
    #[test]
    fn batches_of_one_second_arriving_apart_give_the_same_tracks() {
        batches_apart_give_the_same_tracks(LiveConfig::default());
        batches_apart_give_the_same_tracks(chain());
    }

    fn batches_apart_give_the_same_tracks(config: LiveConfig) {
        let b = Building::example();
        let opts = SimOptions {
            start: start(),
            devices: 8,
            ..SimOptions::default()
        };
        let mut sim = Simulator::new(b.clone(), 3, opts).unwrap();
        // One update slot per simulated step: every batch of a step is of the same slot.
        let config = LiveConfig {
            update_interval_ms: 1_000,
            ..config
        };
        let mut whole = LiveState::new(&b, config.clone());
        let mut apart = LiveState::new(&b, config);
        let mut estimates = 0;
        for s in 1..=180 {
            let inputs = to_inputs(sim.step(start() + chrono::Duration::seconds(s)));
            whole.apply(&inputs);
            // One batch per receiver, the order turning each second; the door contacts'
            // batch first or last.
            let (doors, sightings): (Vec<LiveInput>, Vec<LiveInput>) = inputs
                .into_iter()
                .partition(|i| matches!(i, LiveInput::Door { .. }));
            let doors_first = s % 3 != 0;
            if doors_first {
                apart.apply(&doors);
            }
            let mut by_node: BTreeMap<String, Vec<LiveInput>> = BTreeMap::new();
            for i in sightings {
                if let LiveInput::Sighting { receiver, .. } = &i {
                    by_node.entry(receiver.clone()).or_default().push(i);
                }
            }
            let mut batches: Vec<Vec<LiveInput>> = by_node.into_values().collect();
            let turn = s as usize % batches.len().max(1);
            batches.rotate_left(turn);
            if s % 2 == 0 {
                batches.reverse();
            }
            for batch in batches {
                estimates += apart.apply(&batch).positions.len();
            }
            if !doors_first {
                estimates += apart.apply(&doors).positions.len();
            }
            for p in whole.positions() {
                let q = apart.position(&p.device).unwrap();
                assert_eq!(
                    (p.room.as_ref(), p.floor),
                    (q.room.as_ref(), q.floor),
                    "{s} s"
                );
                assert!(
                    (p.x - q.x).abs() < 1e-6 && (p.y - q.y).abs() < 1e-6,
                    "{s} s"
                );
                assert_eq!(p.at_ms, q.at_ms);
            }
        }
        // The batches did arrive apart: several estimates per device and second.
        assert!(estimates > 8 * 180 * 2, "{estimates}");
    }

    /// Noise-free sightings of `device` at `(x, y)` by the ground floor's receivers.
    fn heard_at(b: &Building, device: &str, x: f64, y: f64, at_ms: i64) -> Vec<LiveInput> {
        b.receivers
            .iter()
            .filter(|r| r.floor == 0)
            .map(|r| LiveInput::Sighting {
                receiver: r.node.as_str().into(),
                device: device.into(),
                rssi: roomsense_common::sim::log_distance_rssi(
                    r.rssi_at_1m,
                    r.path_loss_exponent,
                    (r.x - x).hypot(r.y - y),
                ) as f32,
                at_ms,
            })
            .collect()
    }

    /// Room of `device` after every second of a walk from the lobby through the
    /// lobby-corridor door (x = 8, reached at 5 s) while another device stands in the
    /// corridor 1.4 m from that door; with or without the door's contact reporting.
    fn walk_past(
        door_contact: bool,
        config: LiveConfig,
    ) -> Vec<(i64, Option<String>, Option<String>)> {
        let b = Building::example();
        let mut live = LiveState::new(&b, config);
        let mut out = Vec::new();
        for s in -30..=10i64 {
            let at = s * 1000;
            let x = 2.0 + 1.2 * s.max(0) as f64;
            let mut inputs = heard_at(&b, "walker", x, 4.5, at);
            inputs.extend(heard_at(&b, "stander", 9.2, 5.2, at + 1));
            if door_contact && s == 5 {
                inputs.push(LiveInput::Door {
                    door: "lobby-corridor".into(),
                    open: true,
                    at_ms: at - 100,
                });
            }
            live.apply(&inputs);
            let room = |d: &str| live.position(d).and_then(|p| p.room.clone());
            out.push((s, room("walker"), room("stander")));
        }
        out
    }

    /// The Kalman chain (multilateration, Kalman track, room filter) instead of the
    /// particle tracker.
    fn chain() -> LiveConfig {
        LiveConfig {
            particles: None,
            ..LiveConfig::default()
        }
    }

    /// The later looks at a door opening keep only the devices that can reach the door by
    /// then, however many stand elsewhere on the floor.
    #[test]
    fn later_looks_keep_only_devices_within_reach() {
        let b = Building::example();
        let mut config = chain();
        config.room.review_for_ms = 250;
        config.room.door_radius_m = 3.0;
        config.window.window_ms = 1_000;
        // 3 m + 2 × 2 m/s × 1.25 s = 8 m.
        let mut live = LiveState::new(&b, config);
        for s in 0..5 {
            let mut inputs = heard_at(&b, "near", 9.5, 4.5, s * 1000);
            inputs.extend(heard_at(&b, "far", 21.0, 10.0, s * 1000 + 1));
            live.apply(&inputs);
        }
        live.apply(&[LiveInput::Door {
            door: "lobby-corridor".into(),
            open: true,
            at_ms: 4_100,
        }]);
        let review = live.reviews.back().unwrap();
        let kept: Vec<&str> = review.devices.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(kept, ["near"]);
    }

    #[test]
    fn a_door_opening_is_put_down_to_the_device_walking_through() {
        let first_in_corridor = |rooms: &[(i64, Option<String>, Option<String>)]| {
            rooms
                .iter()
                .find(|(_, w, _)| w.as_deref() == Some("corridor-0"))
                .map(|r| r.0)
        };
        // With the walking model alone the walker's track is at the door when it opens.
        let walking_only = LiveConfig {
            kalman: Some(KalmanConfig {
                mean_walk_s: 0.0,
                ..KalmanConfig::default()
            }),
            ..chain()
        };
        let with = walk_past(true, walking_only.clone());
        let without = walk_past(false, walking_only);
        assert!(with[..35]
            .iter()
            .all(|(_, w, _)| w.as_deref() == Some("lobby")));
        let switched = first_in_corridor(&with).unwrap();
        // At the first estimate after the door opened: 5 s.
        assert_eq!(switched, 5, "{with:?}");
        assert!(
            first_in_corridor(&without).is_none_or(|s| s > switched),
            "{without:?}"
        );
        // With the standing-still model too (the default), a walker that set off from
        // standing 5 s ago with this building's wide error radii (one receiver per room) is
        // still mostly believed standing: the contact helps less, never hurts.
        let with_still = walk_past(true, chain());
        let without_still = walk_past(false, chain());
        let (a, b) = (
            first_in_corridor(&with_still).unwrap(),
            first_in_corridor(&without_still).unwrap_or(i64::MAX),
        );
        assert!((5..=8).contains(&a) && a <= b, "{a} {b}");
        // The device standing near the door stays where it is.
        for (_, _, s) in with
            .iter()
            .chain(&without)
            .chain(&with_still)
            .chain(&without_still)
        {
            assert_eq!(s.as_deref(), Some("corridor-0"));
        }
        // Without the later looks at the opening (as the track catches up with the
        // walker), the switch comes later — seen with the whole window for walking devices
        // too (the shorter one makes the track catch up as soon as the later looks).
        let whole_window = LiveConfig {
            window: WindowConfig {
                walking_share: 1.0,
                ..WindowConfig::default()
            },
            ..chain()
        };
        let no_review = LiveConfig {
            room: RoomFilterConfig {
                review_for_ms: 0,
                ..RoomFilterConfig::default()
            },
            ..whole_window.clone()
        };
        let reviewed = first_in_corridor(&walk_past(true, whole_window)).unwrap_or(i64::MAX);
        let unreviewed = walk_past(true, no_review);
        let c = first_in_corridor(&unreviewed).unwrap_or(i64::MAX);
        assert!(reviewed < c && a <= c, "{a} {reviewed} {c}");
        assert!(unreviewed
            .iter()
            .all(|(_, _, s)| s.as_deref() == Some("corridor-0")));
    }

    #[test]
    fn a_changed_site_keeps_the_tracks() {
        let b = Building::example();
        let mut live = LiveState::new(&b, LiveConfig::default());
        for s in 0..5 {
            live.apply(&heard_at(&b, "tag", 14.5, 9.0, s * 1000));
        }
        let room = |l: &LiveState| l.position("tag").and_then(|p| p.room.clone());
        assert_eq!(room(&live).as_deref(), Some("meeting"));
        // A receiver moved (same rooms): the room filter keeps its state.
        let mut moved = b.clone();
        moved.receivers[0].x += 0.5;
        live.set_building(&moved);
        assert_eq!(live.tracked(), 1);
        assert_eq!(room(&live).as_deref(), Some("meeting"));
        // The meeting room split in two: the room filter starts over on the new rooms.
        let mut split = b.clone();
        let i = split.rooms.iter().position(|r| r.id == "meeting").unwrap();
        split.rooms[i].polygon = vec![[8.0, 6.0], [12.5, 6.0], [12.5, 12.0], [8.0, 12.0]];
        let mut east = split.rooms[i].clone();
        east.id = "meeting-east".into();
        east.polygon = vec![[12.5, 6.0], [16.0, 6.0], [16.0, 12.0], [12.5, 12.0]];
        split.rooms.push(east);
        live.set_building(&split);
        live.apply(&heard_at(&b, "tag", 14.5, 9.0, 5_000));
        live.apply(&heard_at(&b, "tag", 14.5, 9.0, 6_000));
        assert_eq!(room(&live).as_deref(), Some("meeting-east"));
    }

    /// Which doors the particle tracker may walk through: a door never reported, open
    /// at the start of the span, or opened within it.
    #[test]
    fn a_door_is_passable_while_its_contact_says_open() {
        assert!(door_open_within(None, 0, 1_000));
        let log: VecDeque<(i64, bool)> = [(1_000, true), (3_000, false), (12_000, true)].into();
        let open = |from, to| door_open_within(Some(&log), from, to);
        assert!(open(1_500, 2_500), "open all along");
        assert!(open(2_500, 3_500), "open at the start");
        assert!(!open(4_000, 11_000), "shut all along");
        assert!(open(11_000, 12_500), "opened within");
        assert!(
            !open(0, 500),
            "before its first report a door that opened first was shut…"
        );
        let closed_first: VecDeque<(i64, bool)> = [(5_000, false)].into();
        assert!(
            door_open_within(Some(&closed_first), 0, 1_000),
            "…and one whose first report is a close was open"
        );
    }

    #[test]
    fn queue_drops_oldest_when_full() {
        let q = LiveQueue::new(3);
        let door = |at_ms| LiveInput::Door {
            door: "d".into(),
            open: false,
            at_ms,
        };
        assert_eq!(q.push(vec![door(1), door(2)]), 0);
        assert_eq!(q.push(vec![door(3), door(4)]), 1);
        assert_eq!(
            q.drain().iter().map(LiveInput::at_ms).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert!(q.is_empty());
    }
}
