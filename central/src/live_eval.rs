//! Accuracy of the live pipeline on the simulator (known ground truth).
//!
//! Pure: a calibration run of the simulator (its own seed, like an installer walking the
//! building with a tag) fits each receiver's path-loss model and chooses the RSSI window
//! length; then a test run with another seed goes through the very same [`LiveState`] the
//! server runs, and every estimate is compared with the simulator's truth.

use crate::live::{LiveConfig, LiveEstimator, LiveInput, LiveState, MultilatEstimator};
use crate::positioning::{fit_path_loss, KalmanConfig, ParticleConfig, RoomFilterConfig};
use chrono::{DateTime, Duration, Utc};
use roomsense_common::sim::{Building, DeviceTruth, SimError, SimEvent, SimOptions, Simulator};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct SimEvalOptions {
    pub seed: u64,
    pub devices: usize,
    /// Simulated time of the test run (and of each calibration run).
    pub duration_s: u64,
    pub calibration_s: u64,
    /// Estimates during the first seconds (windows filling) are not scored.
    pub warmup_s: u64,
    /// Batch of simulated time handed to the pipeline at once (like an ingest commit).
    pub step_ms: i64,
    /// Fit path loss and window length on a calibration run (else: the building file's
    /// parameters and the configured window).
    pub calibrate: bool,
    /// Window lengths tried on the calibration run.
    pub windows_ms: Vec<i64>,
}

impl Default for SimEvalOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            devices: 20,
            duration_s: 1800,
            calibration_s: 600,
            warmup_s: 20,
            step_ms: 250,
            calibrate: true,
            windows_ms: vec![1_000, 2_000, 3_000, 5_000, 8_000],
        }
    }
}

/// Errors of one class of estimates.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ErrorStats {
    pub estimates: usize,
    pub mean_error_m: f64,
    pub median_error_m: f64,
    pub p95_error_m: f64,
    pub room_hit_rate: f64,
    pub floor_hit_rate: f64,
    /// Share of estimates whose true position is within `error_radius_m`.
    pub within_radius: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimEvalReport {
    pub building: String,
    pub seed: u64,
    pub devices: usize,
    pub duration_s: u64,
    pub walking: ErrorStats,
    pub standing: ErrorStats,
    pub all: ErrorStats,
    /// Room changes of the estimate while the device stood still for at least
    /// `settle_s` (after arriving), and the standing time those were counted over.
    pub standing_room_changes: usize,
    /// Of those, changes away from the true room (flaps; the rest are late corrections).
    pub standing_wrong_room_changes: usize,
    pub standing_device_minutes: f64,
    /// Longest still period (s) and its room changes.
    pub settle_s: u64,
    /// What calibration chose.
    pub window_ms: i64,
    /// Share of the window a walking device is estimated from.
    pub walking_window_share: f64,
    pub room_filter: RoomFilterConfig,
    pub kalman_accel_std: Option<f64>,
    /// The track's two-model settings: mean walk (s; 0 = walking model alone), the
    /// measurement-noise scale the models are weighed with, and the share of outliers.
    pub kalman_still_model: Option<(f64, f64, f64)>,
    /// How much the track's expected position chooses between multilateration's fits.
    pub track_prior_weight: f64,
    pub radius_scale: f32,
    /// Per receiver: fitted (rssi_at_1m, exponent).
    pub fitted_receivers: Vec<(String, f32, f32)>,
    /// `particles` or `kalman` (`[positioning] tracker`).
    pub tracker: String,
    /// The particle tracker's settings (what calibration chose), when it tracked.
    pub particles: Option<ParticleSettings>,
    pub elapsed_ms: u64,
}

/// The particle tracker's calibrated settings, as reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParticleSettings {
    pub particles: usize,
    pub set_off_per_s: f64,
    pub door_sigma_m: f64,
    pub door_other: f64,
    pub recover_margin: f64,
    pub radius_scale: f64,
}

/// How long a device must have been still before a room change counts as a flap.
const SETTLE_MS: i64 = 15_000;

pub(crate) fn inputs(events: Vec<SimEvent>) -> Vec<LiveInput> {
    events
        .into_iter()
        .filter_map(|e| match e {
            SimEvent::Ble {
                receiver,
                device,
                rssi,
                at,
                ..
            } => Some(LiveInput::Sighting {
                receiver: receiver.as_str().to_string(),
                device,
                rssi,
                at_ms: at.timestamp_millis(),
            }),
            SimEvent::Door {
                door, state, at, ..
            } => Some(LiveInput::Door {
                door: door.as_str().to_string(),
                open: state == roomsense_common::protocol::DoorState::Open,
                at_ms: at.timestamp_millis(),
            }),
            SimEvent::Wifi { .. } => None,
        })
        .collect()
}

fn start() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000)
}

fn sim(b: &Building, seed: u64, devices: usize) -> Result<Simulator, SimError> {
    Simulator::new(
        b.clone(),
        seed,
        SimOptions {
            start: start(),
            devices,
            ..SimOptions::default()
        },
    )
}

/// Fits every receiver's path loss on a calibration run: each sighting is paired with the
/// true distance of its device (same floor only), then least squares per receiver.
pub fn calibrate_receivers(b: &Building, rec: &Recording) -> Building {
    let mut samples: HashMap<&str, Vec<(f64, f32)>> = HashMap::new();
    for (_, inputs, truth) in &rec.steps {
        for input in inputs {
            let LiveInput::Sighting {
                receiver,
                device,
                rssi,
                ..
            } = input
            else {
                continue;
            };
            let (Some(t), Some(r)) = (
                truth.get(device),
                b.receivers.iter().find(|r| r.node.as_str() == receiver),
            ) else {
                continue;
            };
            if t.floor == r.floor {
                let d = (t.x - r.x).hypot(t.y - r.y).max(0.3);
                samples.entry(receiver).or_default().push((d, *rssi));
            }
        }
    }
    let mut out = b.clone();
    for r in &mut out.receivers {
        if let Some(v) = samples.get(r.node.as_str()).filter(|v| v.len() >= 20) {
            let (a, n) = fit_path_loss(v);
            r.rssi_at_1m = f64::from(a);
            r.path_loss_exponent = f64::from(n);
            // The shadowing: the readings' spread around the fitted model (the particle
            // tracker weighs readings with it).
            let ss: f64 = v
                .iter()
                .map(|&(d, rssi)| {
                    let model = f64::from(a) - 10.0 * f64::from(n) * d.log10();
                    (f64::from(rssi) - model).powi(2)
                })
                .sum();
            r.noise_sigma_db = (ss / (v.len() as f64 - 2.0)).sqrt();
        }
    }
    out
}

/// One simulator run, recorded: per step its time, the pipeline's inputs and the truth.
/// Recorded once, replayed through as many pipeline configurations as calibration tries.
pub struct Recording {
    /// Per step: its time (ms from the start), the pipeline's inputs, the truth by device.
    pub steps: Vec<(i64, Vec<LiveInput>, HashMap<String, DeviceTruth>)>,
}

impl Recording {
    pub fn run(
        b: &Building,
        seed: u64,
        devices: usize,
        duration_s: u64,
        step_ms: i64,
    ) -> Result<Self, SimError> {
        let mut s = sim(b, seed, devices)?;
        let n = (duration_s as i64 * 1000) / step_ms;
        let mut steps = Vec::with_capacity(n.max(0) as usize);
        for k in 1..=n {
            let now_ms = k * step_ms;
            let events = s.step(start() + Duration::milliseconds(now_ms));
            let truth = s
                .truth()
                .into_iter()
                .map(|t| (t.device.clone(), t))
                .collect();
            steps.push((now_ms, inputs(events), truth));
        }
        Ok(Self { steps })
    }
}

/// Scores of one replay.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    pub walking: ErrorStats,
    pub standing: ErrorStats,
    pub all: ErrorStats,
    /// Room changes of devices standing still (after `SETTLE_MS`)…
    pub standing_changes: usize,
    /// …of which away from the true room (flaps; the others are late corrections).
    pub standing_wrong_changes: usize,
    pub standing_minutes: f64,
    /// The factor the error radii would need to hold the true position as often as a
    /// 2-sigma circle does (86.5 % of estimates).
    pub radius_scale_needed: f32,
}

/// Share of a 2D Gaussian within its 2-sigma circle: what the error radius claims.
const RADIUS_COVERAGE: f64 = 0.865;

/// Runs `b`'s simulator with `seed` through a fresh live pipeline and scores it.
pub fn score(
    b: &Building,
    config: LiveConfig,
    estimator: Arc<dyn LiveEstimator>,
    seed: u64,
    devices: usize,
    duration_s: u64,
    opts: &SimEvalOptions,
) -> Result<Scores, SimError> {
    let rec = Recording::run(b, seed, devices, duration_s, opts.step_ms)?;
    Ok(replay(b, &rec, config, estimator, opts))
}

/// Replays a recording through a fresh live pipeline and scores every estimate.
pub fn replay(
    b: &Building,
    rec: &Recording,
    config: LiveConfig,
    estimator: Arc<dyn LiveEstimator>,
    opts: &SimEvalOptions,
) -> Scores {
    let mut live = LiveState::with_estimator(b, config, estimator);
    let mut walking = Vec::new();
    let mut standing = Vec::new();
    // Per device: since when it is still, and its last estimated room.
    let mut still_since: HashMap<String, i64> = HashMap::new();
    let mut last_room: HashMap<String, Option<String>> = HashMap::new();
    let mut flaps = 0;
    let mut wrong = 0;
    let mut ratios: Vec<f64> = Vec::new();
    let mut standing_ms = 0i64;
    let warmup = opts.warmup_s as i64 * 1000;
    for (now_ms, inputs, truth) in &rec.steps {
        let now_ms = *now_ms;
        let out = live.apply(inputs);
        for t in truth.values() {
            if t.moving {
                still_since.remove(&t.device);
            } else {
                let since = *still_since.entry(t.device.clone()).or_insert(now_ms);
                if now_ms - since >= SETTLE_MS && now_ms > warmup {
                    standing_ms += opts.step_ms;
                }
            }
        }
        if now_ms <= warmup {
            for p in out.positions {
                last_room.insert(p.device.clone(), p.room.clone());
            }
            continue;
        }
        for p in out.positions {
            let Some(t) = truth.get(&p.device) else {
                continue;
            };
            let err = (p.x - t.x).hypot(p.y - t.y);
            ratios.push(err / f64::from(p.error_radius_m).max(0.01));
            let row = (
                err,
                p.room == t.room,
                p.floor == t.floor,
                err <= f64::from(p.error_radius_m),
            );
            let settled = still_since
                .get(&p.device)
                .is_some_and(|&since| now_ms - since >= SETTLE_MS);
            if settled && last_room.get(&p.device).is_some_and(|r| r != &p.room) {
                flaps += 1;
                if p.room != t.room {
                    wrong += 1;
                }
            }
            last_room.insert(p.device.clone(), p.room.clone());
            if t.moving {
                walking.push(row);
            } else {
                standing.push(row);
            }
        }
    }
    let mut all = walking.clone();
    all.extend(standing.iter().copied());
    ratios.sort_by(f64::total_cmp);
    let radius_scale_needed = ratios
        .get(
            ((ratios.len() as f64 - 1.0) * RADIUS_COVERAGE)
                .round()
                .max(0.0) as usize,
        )
        .map_or(1.0, |&r| r as f32);
    Scores {
        walking: stats(walking),
        standing: stats(standing),
        all: stats(all),
        standing_changes: flaps,
        standing_wrong_changes: wrong,
        standing_minutes: standing_ms as f64 / 60_000.0,
        radius_scale_needed,
    }
}

fn stats(mut rows: Vec<(f64, bool, bool, bool)>) -> ErrorStats {
    if rows.is_empty() {
        return ErrorStats::default();
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = rows.len();
    let q = |f: f64| rows[((n as f64 - 1.0) * f).round() as usize].0;
    let share = |f: fn(&(f64, bool, bool, bool)) -> bool| {
        rows.iter().filter(|r| f(r)).count() as f64 / n as f64
    };
    ErrorStats {
        estimates: n,
        mean_error_m: rows.iter().map(|r| r.0).sum::<f64>() / n as f64,
        median_error_m: q(0.5),
        p95_error_m: q(0.95),
        room_hit_rate: share(|r| r.1),
        floor_hit_rate: share(|r| r.2),
        within_radius: share(|r| r.3),
    }
}

/// Room filter settings calibration tries around `base`.
fn room_filter_grid(base: &RoomFilterConfig) -> Vec<RoomFilterConfig> {
    let mut out = Vec::new();
    for pass_rate in [0.0005, 0.002] {
        for door_pass_rate in [0.05, 0.5] {
            for min_likelihood in [0.03, 0.1] {
                for evidence_weight in [1.0, 0.5, 0.3] {
                    for switch_hold_ms in [0, 2_000, 4_000] {
                        out.push(RoomFilterConfig {
                            pass_rate,
                            door_pass_rate,
                            min_likelihood,
                            evidence_weight,
                            switch_hold_ms,
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    out
}

/// Attribution settings of door openings calibration tries around `base`.
fn passage_grid(base: &RoomFilterConfig) -> Vec<RoomFilterConfig> {
    let mut out = Vec::new();
    for door_radius_m in [3.0, 6.0] {
        for passage_sigma_m in [1.0, 1.5] {
            for passage_speed_bias in [0.03, 0.1] {
                for passage_nobody in [0.02, 0.05] {
                    out.push(RoomFilterConfig {
                        door_radius_m,
                        passage_sigma_m,
                        passage_speed_bias,
                        passage_nobody,
                        ..base.clone()
                    });
                }
            }
        }
    }
    out
}

/// How readily a walking device changes rooms and how long door openings get more looks,
/// the settings calibration tries around `base`.
fn walking_grid(base: &RoomFilterConfig) -> Vec<RoomFilterConfig> {
    let mut out = Vec::new();
    for moving_switch_ratio in [1.0, 1.5, 3.0] {
        for review_for_ms in [0, 1_000, 2_000] {
            out.push(RoomFilterConfig {
                moving_switch_ratio,
                review_for_ms,
                ..base.clone()
            });
        }
    }
    out
}

/// What calibration minimises: the share of walking and of standing estimates in the
/// wrong room, one room change per minute of a device standing still costing as much as
/// 20 % wrong estimates (a flapping room shows in occupancy and raises access alerts).
fn room_cost(r: &Scores) -> f64 {
    (1.0 - r.walking.room_hit_rate)
        + (1.0 - r.standing.room_hit_rate)
        + 0.2 * r.standing_changes as f64 / r.standing_minutes.max(1.0)
}

/// Calibrate (optional), then score the test run.
pub fn evaluate_live(
    building: &Building,
    base: LiveConfig,
    opts: &SimEvalOptions,
) -> Result<SimEvalReport, SimError> {
    let started = std::time::Instant::now();
    let mut config = base;
    let mut b = building.clone();
    if opts.calibrate {
        // Calibration runs use other seeds than the test run.
        let cal_seed = opts.seed.wrapping_add(1_000_003);
        let fit_run = Recording::run(
            building,
            cal_seed,
            opts.devices,
            opts.calibration_s,
            opts.step_ms,
        )?;
        b = calibrate_receivers(building, &fit_run);
        let rec = Recording::run(
            &b,
            cal_seed.wrapping_add(1),
            opts.devices,
            opts.calibration_s,
            opts.step_ms,
        )?;
        let estimator: Arc<dyn LiveEstimator> = Arc::new(MultilatEstimator::for_building(&b));
        if let Some(pc) = config.particles.clone() {
            config = calibrate_particles(&b, &rec, config, pc, estimator, opts);
            return finish(building, &b, config, opts, started);
        }
        // The candidate the calibration run scores best on: rooms first (`room_cost`), then
        // (with `error`) the position error.
        let best = |candidates: Vec<LiveConfig>, error: bool| -> Option<LiveConfig> {
            let mut best: Option<(f64, LiveConfig)> = None;
            for c in candidates {
                let r = replay(&b, &rec, c.clone(), estimator.clone(), opts);
                let mut cost = room_cost(&r);
                if error {
                    cost += 0.01 * (r.walking.median_error_m + r.standing.median_error_m);
                }
                if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                    best = Some((cost, c));
                }
            }
            best.map(|(_, c)| c)
        };
        // Window length and track smoothing.
        let mut candidates = Vec::new();
        for &w in &opts.windows_ms {
            for accel in [0.3, 0.8, 2.0] {
                let mut c = config.clone();
                c.window.window_ms = w;
                if let Some(k) = &mut c.kalman {
                    k.accel_std = accel;
                } else if accel != 0.8 {
                    continue;
                }
                candidates.push(c);
            }
        }
        config = best(candidates, true).unwrap_or(config);
        // Whether the track also weighs a "standing still" model, and how readily it
        // believes a device stopped or walks on.
        if let Some(k) = config.kalman.clone() {
            let mut candidates = Vec::new();
            for (mean_walk_s, mode_noise_scale) in
                [(0.0, 1.0), (20.0, 0.1), (20.0, 0.25), (20.0, 0.5)]
            {
                for outlier_share in [0.0, 0.05] {
                    if mean_walk_s == 0.0 && outlier_share > 0.0 {
                        continue;
                    }
                    candidates.push(LiveConfig {
                        kalman: Some(KalmanConfig {
                            mean_walk_s,
                            mode_noise_scale,
                            outlier_share,
                            ..k.clone()
                        }),
                        ..config.clone()
                    });
                }
            }
            config = best(candidates, true).unwrap_or(config);
        }
        // Both need a track: how much the track's expected position chooses between fits
        // that the readings support about equally (a device near a wall, heard through a
        // door), then how much of the window a walking device is estimated from (its
        // older readings describe where it was).
        if config.kalman.is_some() {
            let candidates = [0.0, 1.0, 3.0, 10.0]
                .into_iter()
                .map(|track_prior_weight| LiveConfig {
                    track_prior_weight,
                    ..config.clone()
                })
                .collect();
            config = best(candidates, true).unwrap_or(config);
            let candidates = [1.0, 0.75, 0.5]
                .into_iter()
                .map(|walking_share| {
                    let mut c = config.clone();
                    c.window.walking_share = walking_share;
                    c
                })
                .collect();
            config = best(candidates, true).unwrap_or(config);
        }
        // Error radius: as wide as it needs to be to hold the truth as often as it claims
        // (the room probabilities are computed with it, so this also sets their certainty).
        let r = replay(&b, &rec, config.clone(), estimator.clone(), opts);
        config.radius_scale = (config.radius_scale * r.radius_scale_needed).clamp(0.25, 8.0);
        // Room filter, then how door openings are put down to the devices near them, then
        // how readily a walking device (by its track) changes rooms and how long door
        // openings are looked at again.
        let with_room = |rooms: Vec<RoomFilterConfig>, config: &LiveConfig| -> Vec<LiveConfig> {
            rooms
                .into_iter()
                .map(|room| LiveConfig {
                    room,
                    ..config.clone()
                })
                .collect()
        };
        config = best(with_room(room_filter_grid(&config.room), &config), false).unwrap_or(config);
        config = best(with_room(passage_grid(&config.room), &config), false).unwrap_or(config);
        config = best(with_room(walking_grid(&config.room), &config), false).unwrap_or(config);
    }
    finish(building, &b, config, opts, started)
}

/// The particle tracker's settings the calibration run scores best on (`room_cost`, then
/// the position error): how readily a hypothesis sets off against how strongly a door
/// opening draws walking hypotheses through it, then how near the door that is and how
/// much better a place elsewhere must explain the readings before the cloud jumps there.
fn calibrate_particles(
    b: &Building,
    rec: &Recording,
    config: LiveConfig,
    base: ParticleConfig,
    estimator: Arc<dyn LiveEstimator>,
    opts: &SimEvalOptions,
) -> LiveConfig {
    let score = |pc: &ParticleConfig| {
        let c = LiveConfig {
            particles: Some(pc.clone()),
            ..config.clone()
        };
        let r = replay(b, rec, c, estimator.clone(), opts);
        room_cost(&r) + 0.01 * (r.walking.median_error_m + r.standing.median_error_m)
    };
    let pick = |candidates: Vec<ParticleConfig>| -> Option<ParticleConfig> {
        candidates
            .into_iter()
            .map(|c| (score(&c), c))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c)
    };
    let mut pc = base;
    let mut candidates = Vec::new();
    for set_off_per_s in [1.0 / 60.0, 1.0 / 30.0, 1.0 / 15.0] {
        for door_other in [0.01, 0.03, 0.1] {
            candidates.push(ParticleConfig {
                set_off_per_s,
                door_other,
                ..pc.clone()
            });
        }
    }
    pc = pick(candidates).unwrap_or(pc);
    let mut candidates = Vec::new();
    for door_sigma_m in [0.5, 0.7, 1.0] {
        for recover_margin in [5.0, 10.0, 20.0] {
            candidates.push(ParticleConfig {
                door_sigma_m,
                recover_margin,
                ..pc.clone()
            });
        }
    }
    pc = pick(candidates).unwrap_or(pc);
    let mut config = LiveConfig {
        particles: Some(pc),
        ..config
    };
    // Error radius: as wide as it needs to be to hold the truth as often as it claims.
    let r = replay(b, rec, config.clone(), estimator, opts);
    if let Some(pc) = &mut config.particles {
        pc.radius_scale = (pc.radius_scale * f64::from(r.radius_scale_needed)).clamp(0.25, 8.0);
    }
    config
}

/// Scores the test run with `config` on `b` (the fitted building) and reports.
fn finish(
    building: &Building,
    b: &Building,
    config: LiveConfig,
    opts: &SimEvalOptions,
    started: std::time::Instant,
) -> Result<SimEvalReport, SimError> {
    let window_ms = config.window.window_ms;
    let walking_window_share = config.window.walking_share;
    let room_filter = config.room.clone();
    let kalman_accel_std = config.kalman.as_ref().map(|k| k.accel_std);
    let kalman_still_model = config
        .kalman
        .as_ref()
        .map(|k| (k.mean_walk_s, k.mode_noise_scale, k.outlier_share));
    let radius_scale = config.radius_scale;
    let track_prior_weight = config.track_prior_weight;
    let tracker = if config.particles.is_some() {
        "particles"
    } else {
        "kalman"
    };
    let particles = config.particles.as_ref().map(|p| ParticleSettings {
        particles: p.particles,
        set_off_per_s: p.set_off_per_s,
        door_sigma_m: p.door_sigma_m,
        door_other: p.door_other,
        recover_margin: p.recover_margin,
        radius_scale: p.radius_scale,
    });
    let r = score(
        b,
        config,
        Arc::new(MultilatEstimator::for_building(b)),
        opts.seed,
        opts.devices,
        opts.duration_s,
        opts,
    )?;
    Ok(SimEvalReport {
        building: building.name.clone(),
        seed: opts.seed,
        devices: opts.devices,
        duration_s: opts.duration_s,
        walking: r.walking,
        standing: r.standing,
        all: r.all,
        standing_room_changes: r.standing_changes,
        standing_wrong_room_changes: r.standing_wrong_changes,
        standing_device_minutes: r.standing_minutes,
        settle_s: (SETTLE_MS / 1000) as u64,
        window_ms,
        walking_window_share,
        room_filter,
        kalman_accel_std,
        kalman_still_model,
        track_prior_weight,
        radius_scale,
        fitted_receivers: b
            .receivers
            .iter()
            .map(|r| {
                (
                    r.node.as_str().to_string(),
                    r.rssi_at_1m as f32,
                    r.path_loss_exponent as f32,
                )
            })
            .collect(),
        tracker: tracker.to_string(),
        particles,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run: the pipeline locates walking and standing devices and the report is
    /// consistent (the full figures are benchmarks, see BENCHMARKS.md).
    #[test]
    fn short_simulated_run_is_scored() {
        let b = Building::example();
        let opts = SimEvalOptions {
            devices: 6,
            duration_s: 120,
            calibration_s: 60,
            windows_ms: vec![5_000],
            ..SimEvalOptions::default()
        };
        let kalman = LiveConfig {
            particles: None,
            ..LiveConfig::default()
        };
        for config in [LiveConfig::default(), kalman] {
            let tracker = if config.particles.is_some() {
                "particles"
            } else {
                "kalman"
            };
            let r = evaluate_live(&b, config, &opts).unwrap();
            assert!(r.all.estimates > 300, "{r:?}");
            assert!(r.all.median_error_m < 3.0, "{r:?}");
            assert!(r.all.floor_hit_rate > 0.9, "{r:?}");
            assert_eq!(r.tracker, tracker);
            assert_eq!(r.particles.is_some(), tracker == "particles");
            if tracker == "kalman" {
                // The window is the Kalman chain's (the particle tracker takes every
                // advertisement as it comes).
                assert_eq!(r.window_ms, 5_000);
            }
            // Calibration recovers the building file's path loss roughly.
            for (id, a, n) in &r.fitted_receivers {
                assert!(
                    (-75.0..-45.0).contains(a) && (1.5..4.0).contains(n),
                    "{id} {a} {n}"
                );
            }
        }
    }
}
