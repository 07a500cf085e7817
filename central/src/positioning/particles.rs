//! A particle filter over the floor plan: each tracked device is a cloud of hypotheses
//! (position, room, velocity, still or walking), moved by a walking model that cannot go
//! through walls — only through a door, and through a door with a contact only while it
//! is open — and weighed by how well the receivers' path-loss model explains each
//! advertisement's readings. Room probabilities are the cloud's mass per room, so a device
//! standing by a wall does not flap across it, and a device that walks through a door is
//! carried through it by its own readings.
//!
//! Pure and synchronous: time comes in as milliseconds, randomness from a generator seeded
//! per device (the same inputs give the same track).

use super::room::Room;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use roomsense_common::sim::log_distance_rssi;

/// Parameters of the particle filter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticleConfig {
    /// Hypotheses per device.
    pub particles: usize,
    /// Standard deviation of a walking device's acceleration, m/s² (per axis).
    pub accel_std: f64,
    /// Typical walking speed, m/s: a new cloud's walking hypotheses get 0.6–1.4 times
    /// this, one put through an opening door at least 0.8 times this.
    pub walk_speed_mps: f64,
    /// Fastest plausible walking speed, m/s.
    pub max_speed_mps: f64,
    /// Mean time a walking hypothesis keeps walking before it stops.
    pub mean_walk_s: f64,
    /// Share of the hypotheses per second that set off or turn: each jumps to a random
    /// point it could have walked to since the last update (through a wall only by a
    /// passable door). How readily the cloud follows a device that sets off, against how
    /// readily it follows noise.
    pub set_off_per_s: f64,
    /// How far a still hypothesis moves at random per update, m (lets the cloud settle).
    pub still_jitter_m: f64,
    /// Shadowing of one reading, dB, for receivers that do not state their own.
    pub sigma_db: f64,
    /// Attenuation per floor between device and receiver, dB.
    pub floor_penalty_db: f64,
    /// A hypothesis changes rooms only within this distance of a passable door, m.
    pub door_reach_m: f64,
    /// A door opening is someone walking through it: a walking hypothesis this near the
    /// door (σ of a Gaussian, m) is put through it…
    pub door_sigma_m: f64,
    /// …against this weight for "someone else opened it".
    pub door_other: f64,
    /// When places drawn near the cloud or anywhere in the building explain the readings
    /// better than the whole cloud by this much (log-likelihood), they join the cloud (a
    /// device the cloud could not follow, e.g. through a door whose contact did not
    /// report).
    pub recover_margin: f64,
    /// Longest step of the walking model, ms.
    pub step_ms: i64,
    /// Another room must hold at least this share of the cloud before the reported room
    /// changes.
    pub switch_probability: f64,
    /// A gap without readings longer than this restarts the track.
    pub reset_after_ms: i64,
    /// Multiplies the cloud's 2 σ radius so that it holds the true position as often as
    /// it claims (86.5 %; calibrated, BENCHMARKS.md).
    pub radius_scale: f64,
}

impl Default for ParticleConfig {
    fn default() -> Self {
        Self {
            particles: 500,
            accel_std: 1.0,
            walk_speed_mps: 1.2,
            max_speed_mps: 2.0,
            mean_walk_s: 15.0,
            set_off_per_s: 1.0 / 30.0,
            still_jitter_m: 0.03,
            sigma_db: 4.0,
            floor_penalty_db: 15.0,
            door_reach_m: 0.8,
            door_sigma_m: 0.7,
            door_other: 0.03,
            recover_margin: 10.0,
            step_ms: 250,
            switch_probability: 0.5,
            reset_after_ms: 30_000,
            radius_scale: 1.1,
        }
    }
}

/// A receiver of the plan with its path-loss model.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanReceiver {
    pub id: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub rssi_at_1m: f64,
    pub exponent: f64,
    /// Shadowing of one reading, dB (None: the config's).
    pub sigma_db: Option<f64>,
}

/// A passage between two rooms of the plan: a door (same floor) or stairs.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanPassage {
    pub id: String,
    pub rooms: (usize, usize),
    pub x: f64,
    pub y: f64,
}

/// Rooms, passages and receivers: what the walking model and the readings' likelihood
/// need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloorPlan {
    pub rooms: Vec<Room>,
    areas: Vec<f64>,
    bboxes: Vec<(f64, f64, f64, f64)>,
    pub doors: Vec<PlanPassage>,
    pub stairs: Vec<PlanPassage>,
    pub receivers: Vec<PlanReceiver>,
}

fn area(p: &[(f64, f64)]) -> f64 {
    let mut a = 0.0;
    for i in 0..p.len() {
        let (x1, y1) = p[i];
        let (x2, y2) = p[(i + 1) % p.len()];
        a += x1 * y2 - x2 * y1;
    }
    (a / 2.0).abs()
}

impl FloorPlan {
    /// `doors` and `stairs`: `(id, room id, room id, x, y)`; passages naming a room the
    /// plan does not have (e.g. "outside") are left out.
    pub fn new(
        rooms: Vec<Room>,
        doors: impl IntoIterator<Item = (String, String, String, f64, f64)>,
        stairs: impl IntoIterator<Item = (String, String, String, f64, f64)>,
        receivers: Vec<PlanReceiver>,
    ) -> Self {
        let index = |id: &str| rooms.iter().position(|r| r.id == id);
        let passages = |it: &mut dyn Iterator<Item = (String, String, String, f64, f64)>| {
            it.filter_map(|(id, a, b, x, y)| {
                Some(PlanPassage {
                    id,
                    rooms: (index(&a)?, index(&b)?),
                    x,
                    y,
                })
            })
            .collect::<Vec<_>>()
        };
        let doors = passages(&mut doors.into_iter());
        let stairs = passages(&mut stairs.into_iter());
        let areas = rooms.iter().map(|r| area(&r.polygon)).collect();
        let bboxes = rooms
            .iter()
            .map(|r| {
                r.polygon.iter().fold(
                    (
                        f64::INFINITY,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        f64::NEG_INFINITY,
                    ),
                    |(a, b, c, d), &(x, y)| (a.min(x), b.min(y), c.max(x), d.max(y)),
                )
            })
            .collect();
        Self {
            rooms,
            areas,
            bboxes,
            doors,
            stairs,
            receivers,
        }
    }

    /// The room on `floor` holding `(x, y)`.
    pub fn room_at(&self, floor: i32, x: f64, y: f64) -> Option<usize> {
        self.rooms.iter().enumerate().position(|(i, r)| {
            let (x0, y0, x1, y1) = self.bboxes[i];
            r.floor == floor && x >= x0 && x <= x1 && y >= y0 && y <= y1 && r.contains(x, y)
        })
    }

    /// Whether a passable door joins rooms `a` and `b` and `near` holds for it.
    fn door_between(
        &self,
        a: usize,
        b: usize,
        passable: &dyn Fn(usize) -> bool,
        near: impl Fn(&PlanPassage) -> bool,
    ) -> bool {
        self.doors
            .iter()
            .enumerate()
            .any(|(i, d)| (d.rooms == (a, b) || d.rooms == (b, a)) && near(d) && passable(i))
    }

    fn receiver(&self, id: &str) -> Option<usize> {
        self.receivers.iter().position(|r| r.id == id)
    }

    /// A point drawn evenly over the rooms (by area).
    fn random_point(&self, rng: &mut ChaCha8Rng) -> Option<(usize, f64, f64)> {
        let total: f64 = self.areas.iter().sum();
        if total.is_nan() || total <= 0.0 {
            return None;
        }
        let mut pick = rng.gen::<f64>() * total;
        let mut room = self.rooms.len() - 1;
        for (i, a) in self.areas.iter().enumerate() {
            if pick < *a {
                room = i;
                break;
            }
            pick -= a;
        }
        let (x0, y0, x1, y1) = self.bboxes[room];
        for _ in 0..64 {
            let x = x0 + rng.gen::<f64>() * (x1 - x0);
            let y = y0 + rng.gen::<f64>() * (y1 - y0);
            if self.rooms[room].contains(x, y) {
                return Some((room, x, y));
            }
        }
        None
    }
}

/// One reading of an update: receiver, mean RSSI, how many readings the mean is of.
pub type Reading<'a> = (&'a str, f64, usize);

#[derive(Clone, Copy, Debug, PartialEq)]
struct Particle {
    room: usize,
    x: f64,
    y: f64,
    vx: f64,
    vy: f64,
    moving: bool,
}

/// What the cloud says after an update.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticleEstimate {
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    /// Reported room (with hysteresis) and each room's share of the cloud.
    pub room: Option<String>,
    pub room_probabilities: Vec<(String, f64)>,
    /// Radius around (x, y) holding about 86 % of the cloud (2 σ), m.
    pub error_radius_m: f64,
    /// Share of the cloud that walks.
    pub moving: f64,
}

/// One device's cloud.
#[derive(Clone, Debug)]
pub struct ParticleTrack {
    particles: Vec<Particle>,
    rng: ChaCha8Rng,
    last_ms: Option<i64>,
    room: Option<usize>,
}

impl ParticleTrack {
    /// `seed`: per device, so replays are deterministic.
    pub fn new(seed: u64) -> Self {
        Self {
            particles: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            last_ms: None,
            room: None,
        }
    }

    /// Time of the last update.
    pub fn last_ms(&self) -> Option<i64> {
        self.last_ms
    }

    /// Moves the cloud on to `now_ms` and weighs it with `readings` (the mean RSSI per
    /// receiver since the last update). `passable(door index)` says whether a door of the
    /// plan could be walked through in that time. `opened`: `(door index, when, others)`,
    /// door openings — `others` the weight of other tracked devices that may have opened
    /// it (added to `door_other`). None without particles or readings that the plan knows.
    pub fn update(
        &mut self,
        plan: &FloorPlan,
        config: &ParticleConfig,
        now_ms: i64,
        readings: &[Reading<'_>],
        passable: &dyn Fn(usize) -> bool,
        opened: &[(usize, i64, f64)],
    ) -> Option<ParticleEstimate> {
        let mut obs: Vec<(usize, f64, f64)> = readings
            .iter()
            .filter_map(|&(id, rssi, n)| {
                let r = plan.receiver(id)?;
                let sigma = plan.receivers[r]
                    .sigma_db
                    .unwrap_or(config.sigma_db)
                    .max(0.5);
                (rssi.is_finite() && n > 0).then(|| (r, rssi, sigma / (n as f64).sqrt()))
            })
            .collect();
        // In the plan's order: the readings' order changes nothing, to the last bit.
        obs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        if obs.is_empty() || plan.rooms.is_empty() {
            return None;
        }
        let restart = match self.last_ms {
            None => true,
            Some(last) => {
                now_ms - last > config.reset_after_ms
                    || self.particles.is_empty()
                    // The plan changed under the cloud.
                    || self.particles.iter().any(|p| p.room >= plan.rooms.len())
            }
        };
        if restart {
            self.start(plan, config, &obs);
        } else if let Some(last) = self.last_ms {
            let mut t = last;
            // Openings of doors some hypothesis can reach by then (only those split the
            // motion: a far door's contact, arriving early or late, changes nothing).
            let reach = config.max_speed_mps * (now_ms - last) as f64 / 1000.0
                + 3.0 * config.door_sigma_m
                + config.door_reach_m;
            let mut events: Vec<(i64, usize, f64)> = opened
                .iter()
                .filter(|&&(d, at, _)| {
                    at > last
                        && at <= now_ms
                        && plan.doors.get(d).is_some_and(|d| {
                            let floor = plan.rooms[d.rooms.0].floor;
                            self.particles.iter().any(|p| {
                                plan.rooms[p.room].floor == floor
                                    && (p.x - d.x).hypot(p.y - d.y) <= reach
                            })
                        })
                })
                .map(|&(d, at, others)| (at, d, others))
                .collect();
            events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            events.push((now_ms, usize::MAX, 0.0));
            for (until, door, others) in events {
                let from = t;
                while t < until {
                    let dt_ms = (until - t).min(config.step_ms.max(1));
                    self.predict(plan, config, dt_ms as f64 / 1000.0, passable);
                    t += dt_ms;
                }
                self.jump(plan, config, (until - from) as f64 / 1000.0, passable);
                if let Some(d) = plan.doors.get(door) {
                    self.door_opened(plan, config, d, others);
                }
            }
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
        let mut logw: Vec<f64> = self
            .particles
            .iter()
            .map(|p| log_likelihood(plan, config, p, &obs))
            .collect();
        // The device may be where the cloud could not follow (through a door whose contact
        // did not report, or one the plan lacks, or a door it went through just beside a
        // wall the cloud stayed behind): when a place drawn near the cloud (within 3 m, any
        // room) or anywhere in the building explains the readings far better than the
        // whole cloud, such places join the cloud.
        if !restart {
            let best = logw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let k = (config.particles / 3).max(1);
            let mut cands = Vec::with_capacity(k);
            let mut cand_w = Vec::with_capacity(k);
            for i in 0..k {
                // Every other one near the cloud, in any room (a device that went through
                // a wall the cloud could not: it is seldom far), the rest anywhere.
                let drawn = if i % 2 == 0 && !self.particles.is_empty() {
                    let a = self.particles[self.rng.gen_range(0..self.particles.len())];
                    let r = 3.0 * self.rng.gen::<f64>().sqrt();
                    let t = self.rng.gen::<f64>() * std::f64::consts::TAU;
                    let (x, y) = (a.x + r * t.cos(), a.y + r * t.sin());
                    plan.room_at(plan.rooms[a.room].floor, x, y)
                        .map(|room| (room, x, y))
                } else {
                    plan.random_point(&mut self.rng)
                };
                if let Some((room, x, y)) = drawn {
                    let p = Particle {
                        room,
                        x,
                        y,
                        vx: 0.0,
                        vy: 0.0,
                        moving: true,
                    };
                    cand_w.push(log_likelihood(plan, config, &p, &obs));
                    cands.push(p);
                }
            }
            let cand_best = cand_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if cand_best - best > config.recover_margin {
                self.particles.extend(cands);
                logw.extend(cand_w);
            }
        }
        let w = normalised(&logw)?;
        let est = self.summarise(plan, config, &w);
        self.resample(plan, config, &w);
        Some(est)
    }

    fn start(&mut self, plan: &FloorPlan, config: &ParticleConfig, obs: &[(usize, f64, f64)]) {
        let n = config.particles.max(1);
        let mut cands = Vec::with_capacity(8 * n);
        for _ in 0..8 * n {
            if let Some((room, x, y)) = plan.random_point(&mut self.rng) {
                cands.push(Particle {
                    room,
                    x,
                    y,
                    vx: 0.0,
                    vy: 0.0,
                    moving: false,
                });
            }
        }
        if cands.is_empty() {
            self.particles.clear();
            return;
        }
        let logw: Vec<f64> = cands
            .iter()
            .map(|p| log_likelihood(plan, config, p, obs))
            .collect();
        self.particles = cands;
        // Walking hypotheses stop at 1/mean_walk_s and still ones set off at set_off_per_s.
        let still_share = 1.0 / (1.0 + config.set_off_per_s.max(0.0) * config.mean_walk_s);
        match normalised(&logw) {
            Some(w) => self.draw(&w, n),
            None => self.particles.clear(),
        }
        for p in &mut self.particles {
            if self.rng.gen::<f64>() >= still_share {
                let (vx, vy) = set_off(&mut self.rng, config);
                p.moving = true;
                p.vx = vx;
                p.vy = vy;
            }
        }
        self.room = None;
    }

    fn predict(
        &mut self,
        plan: &FloorPlan,
        config: &ParticleConfig,
        dt: f64,
        passable: &dyn Fn(usize) -> bool,
    ) {
        let p_stop = (dt / config.mean_walk_s.max(0.1)).min(1.0);
        let rng = &mut self.rng;
        for p in &mut self.particles {
            if !p.moving {
                continue;
            }
            if rng.gen::<f64>() < p_stop {
                p.moving = false;
                p.vx = 0.0;
                p.vy = 0.0;
                continue;
            }
            let a = config.accel_std * dt.sqrt();
            p.vx += a * rng.sample::<f64, _>(StandardNormal);
            p.vy += a * rng.sample::<f64, _>(StandardNormal);
            let speed = p.vx.hypot(p.vy);
            if speed > config.max_speed_mps {
                let k = config.max_speed_mps / speed;
                p.vx *= k;
                p.vy *= k;
            }
            let (nx, ny) = (p.x + p.vx * dt, p.y + p.vy * dt);
            let room = &plan.rooms[p.room];
            if room.contains(nx, ny) {
                p.x = nx;
                p.y = ny;
            } else {
                let to = plan.room_at(room.floor, nx, ny);
                let through = to.filter(|&to| {
                    plan.door_between(p.room, to, passable, |d| {
                        (d.x - nx).hypot(d.y - ny) <= config.door_reach_m
                    })
                });
                match through {
                    Some(to) => {
                        p.room = to;
                        p.x = nx;
                        p.y = ny;
                    }
                    None => {
                        // A wall: turn back.
                        p.vx = -p.vx;
                        p.vy = -p.vy;
                    }
                }
            }
            // Stairs: a walking hypothesis at the stairs may take them.
            for s in &plan.stairs {
                let other = if s.rooms.0 == p.room {
                    s.rooms.1
                } else if s.rooms.1 == p.room {
                    s.rooms.0
                } else {
                    continue;
                };
                if (s.x - p.x).hypot(s.y - p.y) <= 2.0 * config.door_reach_m
                    && rng.gen::<f64>() < dt
                {
                    p.room = other;
                    p.x = s.x;
                    p.y = s.y;
                    break;
                }
            }
        }
    }

    /// Set-offs and turns: a share of the hypotheses (by the still model's switching rate
    /// over `dt` s) jumps to a random point it could have walked to, through walls only by
    /// a passable door, and walks on from there.
    fn jump(
        &mut self,
        plan: &FloorPlan,
        config: &ParticleConfig,
        dt: f64,
        passable: &dyn Fn(usize) -> bool,
    ) {
        if dt <= 0.0 {
            return;
        }
        let p_jump = 1.0 - (-dt * config.set_off_per_s.max(0.0)).exp();
        let reach = config.max_speed_mps * dt;
        let rng = &mut self.rng;
        for p in &mut self.particles {
            if rng.gen::<f64>() >= p_jump {
                continue;
            }
            for _ in 0..4 {
                let r = reach * rng.gen::<f64>().sqrt();
                let a = rng.gen::<f64>() * std::f64::consts::TAU;
                let (nx, ny) = (p.x + r * a.cos(), p.y + r * a.sin());
                let floor = plan.rooms[p.room].floor;
                let Some(to) = plan.room_at(floor, nx, ny) else {
                    continue;
                };
                let ok = to == p.room
                    || plan.door_between(p.room, to, passable, |d| {
                        segment_distance((p.x, p.y), (nx, ny), (d.x, d.y)) <= config.door_reach_m
                    });
                if ok {
                    p.vx = (nx - p.x) / dt;
                    p.vy = (ny - p.y) / dt;
                    p.room = to;
                    p.x = nx;
                    p.y = ny;
                    p.moving = true;
                    break;
                }
            }
        }
    }

    /// A door opened: someone walks through it now. A walking hypothesis near the door
    /// becomes likelier (against the chance that someone else opened it) and is put
    /// through the door; a still one cannot have opened it.
    fn door_opened(
        &mut self,
        plan: &FloorPlan,
        config: &ParticleConfig,
        d: &PlanPassage,
        others: f64,
    ) {
        let floor = plan.rooms[d.rooms.0].floor;
        let s2 = 2.0 * config.door_sigma_m.max(0.05).powi(2);
        let other = config.door_other.max(1e-6) + others.max(0.0);
        let near = |p: &Particle| {
            if p.moving
                && plan.rooms[p.room].floor == floor
                && (p.room == d.rooms.0 || p.room == d.rooms.1)
            {
                (-((p.x - d.x).powi(2) + (p.y - d.y).powi(2)) / s2).exp()
            } else {
                0.0
            }
        };
        let w: Vec<f64> = self.particles.iter().map(|p| other + near(p)).collect();
        // Nothing near the door: nothing to weigh (and no draw taken from the generator,
        // so a far door's contact reaching us early or late does not change the track).
        if w.iter().all(|&x| x <= other) {
            return;
        }
        let sum: f64 = w.iter().sum();
        let w: Vec<f64> = w.iter().map(|x| x / sum).collect();
        self.draw(&w, self.particles.len());
        for p in &mut self.particles {
            let k = near(p);
            if k <= 0.0 || self.rng.gen::<f64>() >= k / (other + k) {
                continue;
            }
            let to = if p.room == d.rooms.0 {
                d.rooms.1
            } else {
                d.rooms.0
            };
            // Through the door, on the line from where it was.
            let (mut ux, mut uy) = (d.x - p.x, d.y - p.y);
            let mut n = ux.hypot(uy);
            if n < 1e-6 {
                ux = p.vx;
                uy = p.vy;
                n = ux.hypot(uy);
            }
            if n < 1e-6 {
                continue;
            }
            ux /= n;
            uy /= n;
            let (nx, ny) = (d.x + 0.15 * ux, d.y + 0.15 * uy);
            if plan.room_at(floor, nx, ny) != Some(to) {
                continue;
            }
            let speed = p.vx.hypot(p.vy).max(0.8 * config.walk_speed_mps);
            p.room = to;
            p.x = nx;
            p.y = ny;
            p.vx = speed * ux;
            p.vy = speed * uy;
        }
    }

    fn summarise(
        &mut self,
        plan: &FloorPlan,
        config: &ParticleConfig,
        w: &[f64],
    ) -> ParticleEstimate {
        let mut mass = vec![0.0; plan.rooms.len()];
        let mut moving = 0.0;
        for (p, &wi) in self.particles.iter().zip(w) {
            mass[p.room] += wi;
            if p.moving {
                moving += wi;
            }
        }
        let top = (0..mass.len())
            .max_by(|&a, &b| mass[a].total_cmp(&mass[b]))
            .unwrap_or(0);
        let room = match self.room {
            Some(r) if r < mass.len() && top != r && mass[top] < config.switch_probability => r,
            _ => top,
        };
        self.room = Some(room);
        // Position: the cloud's mean within the reported room.
        let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
        for (p, &wi) in self.particles.iter().zip(w) {
            if p.room == room {
                sw += wi;
                sx += wi * p.x;
                sy += wi * p.y;
            }
        }
        let (x, y) = if sw > 0.0 {
            (sx / sw, sy / sw)
        } else {
            (0.0, 0.0)
        };
        let mut var = 0.0;
        for (p, &wi) in self.particles.iter().zip(w) {
            if p.room == room {
                var += wi * ((p.x - x).powi(2) + (p.y - y).powi(2));
            }
        }
        let var = if sw > 0.0 { var / sw } else { 0.0 };
        // 2 σ of the per-axis spread: sqrt(var/2) per axis.
        let radius = (2.0 * (var / 2.0).sqrt()).max(0.1);
        let room_probabilities = mass
            .iter()
            .enumerate()
            .filter(|(_, m)| **m > 0.0)
            .map(|(i, m)| (plan.rooms[i].id.clone(), *m))
            .collect();
        ParticleEstimate {
            x,
            y,
            floor: plan.rooms[room].floor,
            room: Some(plan.rooms[room].id.clone()),
            room_probabilities,
            error_radius_m: radius,
            moving,
        }
    }

    fn resample(&mut self, plan: &FloorPlan, config: &ParticleConfig, w: &[f64]) {
        self.draw(w, config.particles.max(1));
        let j = config.still_jitter_m;
        if j > 0.0 {
            for p in &mut self.particles {
                if p.moving {
                    continue;
                }
                let nx = p.x + j * self.rng.sample::<f64, _>(StandardNormal);
                let ny = p.y + j * self.rng.sample::<f64, _>(StandardNormal);
                if plan.rooms[p.room].contains(nx, ny) {
                    p.x = nx;
                    p.y = ny;
                }
            }
        }
    }
}

impl ParticleTrack {
    /// Replaces the cloud by `n` hypotheses drawn from it by weight `w` (systematic).
    fn draw(&mut self, w: &[f64], n: usize) {
        let picked = systematic(w, n, self.rng.gen::<f64>());
        let old = std::mem::take(&mut self.particles);
        self.particles = picked.iter().map(|&i| old[i]).collect();
    }
}

/// Weights from log-weights, summing to 1; None when none is usable.
fn normalised(logw: &[f64]) -> Option<Vec<f64>> {
    let best = logw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut w: Vec<f64> = logw.iter().map(|l| (l - best).exp()).collect();
    let sum: f64 = w.iter().sum();
    if sum.is_nan() || sum <= 0.0 {
        return None;
    }
    w.iter_mut().for_each(|x| *x /= sum);
    Some(w)
}

fn set_off(rng: &mut ChaCha8Rng, config: &ParticleConfig) -> (f64, f64) {
    let heading = rng.gen::<f64>() * std::f64::consts::TAU;
    let speed = config.walk_speed_mps * (0.6 + 0.8 * rng.gen::<f64>());
    (speed * heading.cos(), speed * heading.sin())
}

/// Log-likelihood of the readings at a hypothesis (Gaussian shadowing in dB, each
/// reading's term capped at 5 σ so one wild reading cannot veto a place).
fn log_likelihood(
    plan: &FloorPlan,
    config: &ParticleConfig,
    p: &Particle,
    obs: &[(usize, f64, f64)],
) -> f64 {
    let floor = plan.rooms[p.room].floor;
    let mut ll = 0.0;
    for &(r, rssi, sigma) in obs {
        let rx = &plan.receivers[r];
        let d = (rx.x - p.x).hypot(rx.y - p.y);
        let model = log_distance_rssi(rx.rssi_at_1m, rx.exponent, d)
            - config.floor_penalty_db * f64::from((rx.floor - floor).abs());
        let z = (rssi - model) / sigma;
        ll -= 0.5 * (z * z).min(25.0);
    }
    ll
}

/// Distance from `c` to the segment `a`–`b`.
fn segment_distance(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((c.0 - a.0) * dx + (c.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (a.0 + t * dx - c.0).hypot(a.1 + t * dy - c.1)
}

/// Systematic resampling: `n` indices drawn by weight with one random offset.
fn systematic(w: &[f64], n: usize, u: f64) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    let mut cum = 0.0;
    let mut i = 0;
    for k in 0..n {
        let target = (k as f64 + u) / n as f64;
        while i + 1 < w.len() && cum + w[i] < target {
            cum += w[i];
            i += 1;
        }
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 5 m x 5 m rooms side by side, joined by a door at (5, 2.5); four receivers in
    /// each.
    fn plan() -> FloorPlan {
        let room = |id: &str, x0: f64| Room {
            id: id.into(),
            floor: 0,
            polygon: vec![(x0, 0.0), (x0 + 5.0, 0.0), (x0 + 5.0, 5.0), (x0, 5.0)],
            doors: vec!["d".into()],
        };
        let mut receivers = Vec::new();
        for (i, (x, y)) in [(0.5, 0.5), (4.5, 0.5), (0.5, 4.5), (4.5, 4.5)]
            .into_iter()
            .enumerate()
        {
            for (k, dx) in [0.0, 5.0].into_iter().enumerate() {
                receivers.push(PlanReceiver {
                    id: format!("rx{k}{i}"),
                    x: x + dx,
                    y,
                    floor: 0,
                    rssi_at_1m: -59.0,
                    exponent: 2.0,
                    sigma_db: None,
                });
            }
        }
        FloorPlan::new(
            vec![room("a", 0.0), room("b", 5.0)],
            [("d".to_string(), "a".to_string(), "b".to_string(), 5.0, 2.5)],
            [],
            receivers,
        )
    }

    /// One advertisement of a device at (x, y) as every receiver hears it, with Gaussian
    /// shadowing of `sigma` dB.
    fn heard(
        plan: &FloorPlan,
        x: f64,
        y: f64,
        sigma: f64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(String, f64, usize)> {
        plan.receivers
            .iter()
            .map(|r| {
                let d = (r.x - x).hypot(r.y - y).max(0.1);
                let noise: f64 = rng.sample(StandardNormal);
                (
                    r.id.clone(),
                    r.rssi_at_1m - 10.0 * r.exponent * d.log10() + sigma * noise,
                    1,
                )
            })
            .collect()
    }

    fn run(
        track: &mut ParticleTrack,
        plan: &FloorPlan,
        path: impl Fn(i64) -> (f64, f64),
        seconds: i64,
        door_open_from: Option<i64>,
        noise_seed: u64,
    ) -> Vec<(i64, ParticleEstimate)> {
        let config = ParticleConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(noise_seed);
        let mut out = Vec::new();
        for k in 0..seconds {
            let at = k * 1000;
            let (x, y) = path(at);
            let scan = heard(plan, x, y, 4.0, &mut rng);
            let readings: Vec<Reading<'_>> = scan
                .iter()
                .map(|(id, r, n)| (id.as_str(), *r, *n))
                .collect();
            let open = door_open_from.is_some_and(|t| at >= t);
            let opened: Vec<(usize, i64, f64)> =
                door_open_from.map(|t| (0, t, 0.0)).into_iter().collect();
            if let Some(e) = track.update(plan, &config, at, &readings, &|_| open, &opened) {
                out.push((at, e));
            }
        }
        out
    }

    #[test]
    fn a_still_device_by_a_closed_door_never_leaves_its_room() {
        let plan = plan();
        for seed in 0..4 {
            let mut track = ParticleTrack::new(seed);
            // 0.4 m from the wall, 1.5 m from the door.
            let est = run(&mut track, &plan, |_| (4.6, 1.0), 120, None, 100 + seed);
            let settled: Vec<_> = est.iter().filter(|(at, _)| *at >= 5_000).collect();
            assert!(
                settled.iter().all(|(_, e)| e.room.as_deref() == Some("a")),
                "seed {seed}"
            );
            let mut errs: Vec<f64> = settled
                .iter()
                .map(|(_, e)| (e.x - 4.6).hypot(e.y - 1.0))
                .collect();
            errs.sort_by(f64::total_cmp);
            assert!(
                errs[errs.len() / 2] < 0.5,
                "median error {}",
                errs[errs.len() / 2]
            );
        }
    }

    #[test]
    fn a_device_walking_through_an_opening_door_is_followed() {
        let plan = plan();
        for seed in 0..4 {
            let mut track = ParticleTrack::new(seed);
            // Still at (2, 2.5) for 20 s, then east at 1.2 m/s through the door (reached
            // at 22.5 s, when its contact opens) to (8, 2.5).
            let path = |at: i64| {
                let t = (at as f64 / 1000.0 - 20.0).max(0.0);
                ((2.0 + 1.2 * t).min(8.0), 2.5)
            };
            let est = run(&mut track, &plan, path, 40, Some(22_500), 200 + seed);
            for (at, e) in &est {
                let (x, _) = path(*at);
                // Within about a metre of the door either room is fair.
                let want = if x < 4.5 {
                    "a"
                } else if x >= 6.2 {
                    "b"
                } else {
                    continue;
                };
                if *at >= 5_000 {
                    assert_eq!(
                        e.room.as_deref(),
                        Some(want),
                        "seed {seed} at {at} ms (x {x:.1})"
                    );
                }
            }
        }
    }

    /// A door opening draws a device's walking hypotheses through the door less when
    /// another device near the door may have opened it.
    #[test]
    fn an_opening_someone_else_explains_draws_less() {
        let plan = plan();
        let config = ParticleConfig::default();
        let walking_after = |others: f64| {
            let mut track = ParticleTrack::new(11);
            let mut rng = ChaCha8Rng::seed_from_u64(12);
            let mut last = None;
            for k in 0..=20 {
                // Standing 0.5 m from the door; it opens at 19.5 s.
                let scan = heard(&plan, 4.5, 2.5, 4.0, &mut rng);
                let readings: Vec<Reading<'_>> = scan
                    .iter()
                    .map(|(id, r, n)| (id.as_str(), *r, *n))
                    .collect();
                let opened = [(0, 19_500, others)];
                last = track.update(&plan, &config, k * 1000, &readings, &|_| k >= 20, &opened);
            }
            last.expect("estimate").moving
        };
        let (alone, explained) = (walking_after(0.0), walking_after(10.0));
        assert!(explained < alone, "{explained} vs {alone}");
    }

    #[test]
    fn the_cloud_finds_a_device_it_could_not_follow() {
        let plan = plan();
        let mut track = ParticleTrack::new(7);
        // In room a, then in room b without the door ever reporting open: the plan does
        // not explain how it got there, the readings do.
        let path = |at: i64| if at < 20_000 { (2.0, 2.0) } else { (8.0, 2.0) };
        let est = run(&mut track, &plan, path, 40, None, 300);
        let last = &est.last().expect("estimates").1;
        assert_eq!(last.room.as_deref(), Some("b"));
        assert!((last.x - 8.0).hypot(last.y - 2.0) < 1.0);
    }

    #[test]
    fn the_order_of_the_readings_changes_nothing() {
        let plan = plan();
        let config = ParticleConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut a, mut b) = (ParticleTrack::new(9), ParticleTrack::new(9));
        for k in 0..20 {
            let scan = heard(&plan, 3.0, 1.5, 4.0, &mut rng);
            let mut readings: Vec<Reading<'_>> = scan
                .iter()
                .map(|(id, r, n)| (id.as_str(), *r, *n))
                .collect();
            let ea = a.update(&plan, &config, k * 1000, &readings, &|_| true, &[]);
            readings.reverse();
            readings.rotate_left(k as usize % 5);
            let eb = b.update(&plan, &config, k * 1000, &readings, &|_| true, &[]);
            assert_eq!(ea, eb, "update {k}");
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_track() {
        let plan = plan();
        let a = run(
            &mut ParticleTrack::new(3),
            &plan,
            |_| (3.0, 3.0),
            10,
            None,
            1,
        );
        let b = run(
            &mut ParticleTrack::new(3),
            &plan,
            |_| (3.0, 3.0),
            10,
            None,
            1,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn empty_unknown_and_single_readings_do_not_panic() {
        let plan = plan();
        let config = ParticleConfig::default();
        let mut t = ParticleTrack::new(1);
        assert!(t.update(&plan, &config, 0, &[], &|_| true, &[]).is_none());
        assert!(t
            .update(&plan, &config, 0, &[("nobody", -60.0, 1)], &|_| true, &[])
            .is_none());
        assert!(t
            .update(&plan, &config, 0, &[("rx00", f64::NAN, 1)], &|_| true, &[])
            .is_none());
        let one = t.update(&plan, &config, 1000, &[("rx00", -60.0, 1)], &|_| true, &[]);
        assert!(one.is_some_and(|e| e.x.is_finite() && e.y.is_finite()));
        let empty = FloorPlan::default();
        assert!(ParticleTrack::new(1)
            .update(&empty, &config, 0, &[("rx00", -60.0, 1)], &|_| true, &[])
            .is_none());
    }
}
