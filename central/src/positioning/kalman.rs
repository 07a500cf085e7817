//! Kalman smoothing of a 2D track, with a walking-speed clamp.
//!
//! Two motion models run side by side in an interacting-multiple-model (IMM) filter:
//! *walking*, constant velocity with a white-acceleration process noise, and *still*, a
//! position that does not move. Each estimate weighs the two by how well they predicted
//! it; a device that stops is soon averaged over everything since it stopped (so a device
//! standing near a wall settles on its side instead of following the noise across it),
//! one that starts walking is soon followed at walking speed again. The x and y axes are
//! independent (same model), so each model runs two 2-state filters (position, velocity).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KalmanConfig {
    /// Standard deviation of the acceleration (m/s^2) the model allows.
    pub accel_std: f64,
    /// Fastest plausible walking speed (m/s): velocity and per-update movement are clamped.
    pub max_speed_mps: f64,
    /// A gap longer than this restarts the track at the next measurement.
    pub reset_after_ms: i64,
    /// Measurement standard deviation used when an estimate has no usable radius (m).
    pub default_measurement_std: f64,
    /// Normalised innovation (χ², 2 degrees of freedom) above which the covariance is
    /// inflated (a manoeuvre); 0 = never. 9.2 is the 99 % point.
    pub manoeuvre_gate: f64,
    /// Mean time (s) a walking device keeps walking before it stops, and a still one
    /// stays still before it walks on: the switching rates of the two motion models.
    /// 0 for either = the walking model alone.
    pub mean_walk_s: f64,
    pub mean_still_s: f64,
    /// How far (m per √s) a still device's position may drift (a phone in a hand).
    pub still_drift: f64,
    /// The track reports the still model once it is this likely, else the walking model
    /// (a blend of the two lags behind a walking device).
    pub still_threshold: f64,
    /// Scale of an estimate's variance (its error radius squared) when the two models are
    /// weighed against each other: estimators' radii hold about two standard deviations.
    pub mode_noise_scale: f64,
    /// Share of estimates that are outliers (a burst of noise, another fit of the same
    /// readings): such an estimate says nothing about whether the device walks, so one of
    /// them does not switch the motion model, and it hardly moves a still device's position.
    /// 0 = every estimate is taken at its word (the default; calibration on the simulator
    /// chose 0 on the dense example building, 0.05 on the sparse one — BENCHMARKS.md).
    pub outlier_share: f64,
}

impl Default for KalmanConfig {
    fn default() -> Self {
        // accel_std: what calibration on the simulator chooses (BENCHMARKS.md).
        Self {
            accel_std: 0.8,
            max_speed_mps: 2.0,
            reset_after_ms: 30_000,
            default_measurement_std: 3.0,
            manoeuvre_gate: 4.0,
            mean_walk_s: 20.0,
            mean_still_s: 60.0,
            still_drift: 0.05,
            still_threshold: 0.9,
            mode_noise_scale: 0.25,
            outlier_share: 0.0,
        }
    }
}

/// One axis: position, velocity and their covariance [[p00, p01], [p01, p11]].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Axis {
    pos: f64,
    vel: f64,
    p00: f64,
    p01: f64,
    p11: f64,
}

impl Axis {
    fn start(pos: f64, var: f64, max_speed: f64) -> Self {
        Self {
            pos,
            vel: 0.0,
            p00: var,
            p01: 0.0,
            p11: max_speed * max_speed,
        }
    }

    fn predict(&mut self, dt: f64, q: f64) {
        self.pos += self.vel * dt;
        let (p00, p01, p11) = (self.p00, self.p01, self.p11);
        self.p00 = p00 + 2.0 * dt * p01 + dt * dt * p11 + q * dt.powi(4) / 4.0;
        self.p01 = p01 + dt * p11 + q * dt.powi(3) / 2.0;
        self.p11 = p11 + q * dt * dt;
    }

    /// Mixture of two Gaussians (weights `a` and `1 - a`) as one.
    fn mix(p: &Axis, q: &Axis, a: f64) -> Axis {
        let b = 1.0 - a;
        let pos = a * p.pos + b * q.pos;
        let vel = a * p.vel + b * q.vel;
        let (dp, dq) = ((p.pos - pos, p.vel - vel), (q.pos - pos, q.vel - vel));
        Axis {
            pos,
            vel,
            p00: a * (p.p00 + dp.0 * dp.0) + b * (q.p00 + dq.0 * dq.0),
            p01: a * (p.p01 + dp.0 * dp.1) + b * (q.p01 + dq.0 * dq.1),
            p11: a * (p.p11 + dp.1 * dp.1) + b * (q.p11 + dq.1 * dq.1),
        }
    }

    /// The still model's view of a state: its position, no velocity.
    fn stopped(mut self) -> Axis {
        self.vel = 0.0;
        self.p01 = 0.0;
        self.p11 = 0.0;
        self
    }

    fn update(&mut self, z: f64, r: f64) {
        let s = self.p00 + r;
        if s <= 0.0 {
            return;
        }
        let (k0, k1) = (self.p00 / s, self.p01 / s);
        let y = z - self.pos;
        self.pos += k0 * y;
        self.vel += k1 * y;
        let (p00, p01, p11) = (self.p00, self.p01, self.p11);
        self.p00 = (1.0 - k0) * p00;
        self.p01 = (1.0 - k0) * p01;
        self.p11 = p11 - k1 * p01;
    }
}

/// A smoothed 2D track of one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KalmanTrack {
    pub config: KalmanConfig,
    /// Walking model.
    x: Axis,
    y: Axis,
    /// Still model (no velocity).
    sx: Axis,
    sy: Axis,
    /// Probability that the device stands still (0 with the walking model alone).
    still: f64,
    last_ms: Option<i64>,
    floor: Option<i32>,
}

/// Log-likelihood (up to a constant) of a 2D innovation against the predicted axes.
fn log_likelihood(x: &Axis, y: &Axis, zx: f64, zy: f64, r: f64) -> f64 {
    let (sx, sy) = ((x.p00 + r).max(1e-9), (y.p00 + r).max(1e-9));
    -0.5 * ((zx - x.pos).powi(2) / sx + (zy - y.pos).powi(2) / sy + (sx * sy).ln())
}

/// How much wider than an estimate's own variance an outlier may fall (variance factor).
const OUTLIER_SPREAD: f64 = 16.0;

/// [`log_likelihood`] with a share `eps` of outliers: the estimate is either what the model
/// predicts or anywhere within `OUTLIER_SPREAD` times its variance `r` (the same for every
/// model, so an outlier favours none). Also returns the probability that it is an inlier.
fn robust_log_likelihood(x: &Axis, y: &Axis, zx: f64, zy: f64, r: f64, eps: f64) -> (f64, f64) {
    let inlier = log_likelihood(x, y, zx, zy, r);
    if eps <= 0.0 {
        return (inlier, 1.0);
    }
    let spread = (OUTLIER_SPREAD * r).max(1e-9);
    let outlier = -spread.ln();
    let (a, b) = ((1.0 - eps).ln() + inlier, eps.ln() + outlier);
    let m = a.max(b);
    let ll = m + ((a - m).exp() + (b - m).exp()).ln();
    (ll, (a - ll).exp())
}

impl KalmanTrack {
    pub fn new(config: KalmanConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Whether the still model runs beside the walking one.
    fn two_models(&self) -> bool {
        self.config.mean_walk_s > 0.0 && self.config.mean_still_s > 0.0
    }

    /// The track as one Gaussian per axis: the still model once it is likely enough, else
    /// the walking one.
    fn combined(&self) -> (Axis, Axis) {
        if self.two_models() && self.still >= self.config.still_threshold {
            (self.sx, self.sy)
        } else {
            (self.x, self.y)
        }
    }

    fn output(&self) -> (f64, f64, f64) {
        let (x, y) = self.combined();
        (x.pos, y.pos, x.p00.max(y.p00).max(0.0).sqrt())
    }

    /// Feed a measurement (position, its error radius, floor) taken at `at_ms`; returns the
    /// smoothed position and its standard deviation. A floor change or a long gap restarts
    /// the track; a measurement older than the last one is used without moving time back.
    pub fn update(
        &mut self,
        at_ms: i64,
        x: f64,
        y: f64,
        error_radius: f32,
        floor: i32,
    ) -> (f64, f64, f64) {
        let c = self.config.clone();
        let two = self.two_models();
        let r = if error_radius.is_finite() && error_radius > 0.0 {
            f64::from(error_radius).powi(2)
        } else {
            c.default_measurement_std.powi(2)
        };
        let restart = match self.last_ms {
            None => true,
            Some(t) => self.floor != Some(floor) || at_ms - t > c.reset_after_ms,
        };
        if restart || !x.is_finite() || !y.is_finite() {
            if x.is_finite() && y.is_finite() {
                self.x = Axis::start(x, r, c.max_speed_mps);
                self.y = Axis::start(y, r, c.max_speed_mps);
                self.sx = self.x.stopped();
                self.sy = self.y.stopped();
                self.still = if two { 0.5 } else { 0.0 };
                self.last_ms = Some(at_ms);
                self.floor = Some(floor);
            }
            return self.output();
        }
        let last = self.last_ms.unwrap_or(at_ms);
        let dt = ((at_ms - last).max(0) as f64) / 1000.0;
        let before = [(self.x.pos, self.y.pos), (self.sx.pos, self.sy.pos)];
        let q = c.accel_std * c.accel_std;
        // Mode switches since the last estimate (walking -> still, still -> walking), and
        // each model's starting point: the mixture of both, weighted by how likely the
        // device was in each before and switched (or not) since.
        let (p_stop, p_go) = if two {
            (
                1.0 - (-dt / c.mean_walk_s).exp(),
                1.0 - (-dt / c.mean_still_s).exp(),
            )
        } else {
            (0.0, 0.0)
        };
        let (mw, ms) = (1.0 - self.still, self.still);
        let c_still = mw * p_stop + ms * (1.0 - p_go);
        let c_walk = mw * (1.0 - p_stop) + ms * p_go;
        if two {
            let walk_keeps = if c_walk > 0.0 {
                mw * (1.0 - p_stop) / c_walk
            } else {
                1.0
            };
            let still_keeps = if c_still > 0.0 {
                ms * (1.0 - p_go) / c_still
            } else {
                1.0
            };
            // A device that starts walking may head anywhere at up to half the top speed.
            let v2 = (c.max_speed_mps / 2.0).powi(2);
            let starting = |a: &Axis| Axis { p11: v2, ..*a };
            let (wx, wy) = (
                Axis::mix(&self.x, &starting(&self.sx), walk_keeps),
                Axis::mix(&self.y, &starting(&self.sy), walk_keeps),
            );
            self.sx = Axis::mix(&self.sx, &self.x, still_keeps).stopped();
            self.sy = Axis::mix(&self.sy, &self.y, still_keeps).stopped();
            self.x = wx;
            self.y = wy;
            let drift = c.still_drift * c.still_drift * dt;
            self.sx.p00 += drift;
            self.sy.p00 += drift;
        }
        self.x.predict(dt, q);
        self.y.predict(dt, q);
        let eps = c.outlier_share.clamp(0.0, 0.5);
        let rm = r * c.mode_noise_scale;
        let (walk_ll, _) = robust_log_likelihood(&self.x, &self.y, x, y, rm, eps);
        let (still_ll, still_inlier) = robust_log_likelihood(&self.sx, &self.sy, x, y, rm, eps);
        // Manoeuvre: an innovation far outside what the filter expects (a device that
        // starts walking after standing still) inflates the covariance, so the track
        // catches up instead of lagging behind at the old velocity.
        let nis = (x - self.x.pos).powi(2) / (self.x.p00 + r)
            + (y - self.y.pos).powi(2) / (self.y.p00 + r);
        if c.manoeuvre_gate > 0.0 && nis > c.manoeuvre_gate {
            let f = nis / c.manoeuvre_gate;
            for a in [&mut self.x, &mut self.y] {
                a.p00 *= f;
                a.p01 *= f;
                a.p11 *= f;
            }
        }
        self.x.update(x, r);
        self.y.update(y, r);
        if two {
            // An outlier hardly moves a still device: its weight is the chance it is not one.
            let rs = r / still_inlier.max(1e-3);
            self.sx.update(x, rs);
            self.sy.update(y, rs);
            // Posterior probability of standing still, in log space (the likelihoods of a
            // far-off estimate underflow).
            let lw = c_walk.max(1e-300).ln() + walk_ll;
            let ls = c_still.max(1e-300).ln() + still_ll;
            self.still = (1.0 / (1.0 + (lw - ls).exp())).clamp(1e-6, 1.0 - 1e-6);
        }
        // Clamp velocity and the movement since the last output to walking speed.
        let vmax = c.max_speed_mps;
        let speed = self.x.vel.hypot(self.y.vel);
        if speed > vmax {
            self.x.vel *= vmax / speed;
            self.y.vel *= vmax / speed;
        }
        let max_step = vmax * dt;
        for ((ax, ay), (px, py)) in [(&mut self.x, &mut self.y), (&mut self.sx, &mut self.sy)]
            .into_iter()
            .zip(before)
        {
            let (dx, dy) = (ax.pos - px, ay.pos - py);
            let step = dx.hypot(dy);
            if step > max_step {
                let s = if step > 0.0 { max_step / step } else { 0.0 };
                ax.pos = px + dx * s;
                ay.pos = py + dy * s;
            }
        }
        self.last_ms = Some(at_ms.max(last));
        self.output()
    }

    /// The smoothed position `ahead_ms` after the last update, moved on at the track's
    /// velocity, and its standard deviation (grows with the velocity's uncertainty).
    pub fn ahead(&self, ahead_ms: i64) -> Option<(f64, f64, f64)> {
        self.last_ms?;
        let dt = ahead_ms.max(0) as f64 / 1000.0;
        let (x, y) = self.combined();
        let var = |a: &Axis| a.p00 + 2.0 * dt * a.p01 + dt * dt * a.p11;
        Some((
            x.pos + x.vel * dt,
            y.pos + y.vel * dt,
            var(&x).max(var(&y)).max(0.0).sqrt(),
        ))
    }

    /// The smoothed position at `at_ms` (moved on at the track's velocity from the last
    /// update, never back), and its standard deviation.
    pub fn at(&self, at_ms: i64) -> Option<(f64, f64, f64)> {
        self.ahead(at_ms - self.last_ms?)
    }

    /// Where the track expects the device at `at_ms` (see [`Self::at`]), as a prior for the
    /// next estimate: the walking model's spread, which also holds a device setting off.
    pub fn prior_at(&self, at_ms: i64) -> Option<super::Prior> {
        let (x, y, _) = self.at(at_ms)?;
        let dt = (at_ms - self.last_ms?).max(0) as f64 / 1000.0;
        let q = self.config.accel_std * self.config.accel_std;
        // The walking model predicted over dt, process noise included.
        let (mut wx, mut wy) = (self.x, self.y);
        wx.predict(dt, q);
        wy.predict(dt, q);
        let std = wx.p00.max(wy.p00).max(0.0).sqrt();
        Some(super::Prior {
            x,
            y,
            floor: self.floor?,
            std,
        })
    }

    /// Where the device may be at `at_ms` (moved on from the last update, never back): per
    /// motion model its probability, position and speed (m/s).
    pub fn modes_at(&self, at_ms: i64) -> Vec<(f64, f64, f64, f64)> {
        let Some(last) = self.last_ms else {
            return Vec::new();
        };
        let dt = (at_ms - last).max(0) as f64 / 1000.0;
        let walk = (
            1.0 - self.still,
            self.x.pos + self.x.vel * dt,
            self.y.pos + self.y.vel * dt,
            self.x.vel.hypot(self.y.vel),
        );
        if self.two_models() {
            vec![walk, (self.still, self.sx.pos, self.sy.pos, 0.0)]
        } else {
            vec![(1.0, walk.1, walk.2, walk.3)]
        }
    }

    /// Speed of the track (m/s), if any: that of the model it reports.
    pub fn speed(&self) -> Option<f64> {
        self.last_ms.map(|_| {
            let (x, y) = self.combined();
            x.vel.hypot(y.vel)
        })
    }

    /// Probability that the device stands still (0 with the walking model alone).
    pub fn still_probability(&self) -> Option<f64> {
        self.last_ms.map(|_| self.still)
    }

    /// Whether the track reports the still model (see `still_threshold`).
    pub fn is_still(&self) -> bool {
        self.last_ms.is_some() && self.two_models() && self.still >= self.config.still_threshold
    }

    /// Whether the device more likely walks than stands still, by the track's two motion
    /// models (none with the walking model alone, or before the first update).
    pub fn is_walking(&self) -> Option<bool> {
        (self.last_ms.is_some() && self.two_models()).then_some(self.still < 0.5)
    }

    /// Last smoothed position, if any.
    pub fn position(&self) -> Option<(f64, f64)> {
        self.last_ms.map(|_| {
            let (x, y) = self.combined();
            (x.pos, y.pos)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooths_noise_of_a_still_device() {
        let mut k = KalmanTrack::new(KalmanConfig::default());
        let mut last = (0.0, 0.0, 0.0);
        for i in 0..200 {
            // Deterministic +-2 m zig-zag around (10, 5).
            let n = if i % 2 == 0 { 2.0 } else { -2.0 };
            last = k.update(i * 1000, 10.0 + n, 5.0 - n, 2.0, 0);
        }
        assert!(
            (last.0 - 10.0).abs() < 0.8 && (last.1 - 5.0).abs() < 0.8,
            "{last:?}"
        );
    }

    #[test]
    fn clamps_jumps_to_walking_speed() {
        let mut k = KalmanTrack::new(KalmanConfig::default());
        k.update(0, 0.0, 0.0, 1.0, 0);
        let (x, y, _) = k.update(1000, 50.0, 0.0, 0.5, 0);
        assert!(x <= 2.0 + 1e-9 && y.abs() < 1e-9, "{x}");
        // Same timestamp: no time, no movement.
        let (x2, _, _) = k.update(1000, 50.0, 0.0, 0.5, 0);
        assert!((x2 - x).abs() < 1e-9);
        // Floor change restarts at the measurement.
        let (x3, _, _) = k.update(2000, 50.0, 0.0, 0.5, 1);
        assert_eq!(x3, 50.0);
        assert_eq!(k.position(), Some((50.0, 0.0)));
    }

    #[test]
    fn follows_a_walk() {
        let mut k = KalmanTrack::new(KalmanConfig::default());
        let mut out = (0.0, 0.0, 0.0);
        for i in 0..60 {
            let t = i as f64;
            out = k.update(i * 1000, 1.2 * t, 0.0, 1.0, 0);
        }
        assert!((out.0 - 1.2 * 59.0).abs() < 1.5, "{out:?}");
    }

    /// Deterministic noise in [-1, 1] (xorshift).
    fn noise(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % 2001) as f64 / 1000.0 - 1.0
    }

    /// Spread (RMS distance from the truth) of the last `tail` outputs of a device standing
    /// at (10, 5) with noisy estimates.
    fn still_spread(config: KalmanConfig, tail: usize) -> (f64, KalmanTrack) {
        let mut k = KalmanTrack::new(config);
        let mut rng = 0x5eed_u64;
        let mut sq = Vec::new();
        for i in 0..180 {
            let (x, y, _) = k.update(
                i * 1000,
                10.0 + 1.5 * noise(&mut rng),
                5.0 + 1.5 * noise(&mut rng),
                1.5,
                0,
            );
            sq.push((x - 10.0).powi(2) + (y - 5.0).powi(2));
        }
        let tail = &sq[sq.len() - tail..];
        ((tail.iter().sum::<f64>() / tail.len() as f64).sqrt(), k)
    }

    #[test]
    fn a_still_device_settles_closer_with_the_still_model() {
        let (two, k) = still_spread(KalmanConfig::default(), 60);
        let (one, single) = still_spread(
            KalmanConfig {
                mean_walk_s: 0.0,
                ..KalmanConfig::default()
            },
            60,
        );
        assert!(k.is_still() && !single.is_still());
        assert!(
            two < 0.6 * one,
            "two models {two:.3} m, walking model {one:.3} m"
        );
        assert!(k.speed().is_some_and(|v| v < 0.05), "{:?}", k.speed());
    }

    #[test]
    fn a_device_that_walks_off_is_followed() {
        let mut k = KalmanTrack::new(KalmanConfig::default());
        let mut rng = 7_u64;
        for i in 0..60 {
            k.update(i * 1000, 10.0 + 0.5 * noise(&mut rng), 5.0, 1.0, 0);
        }
        assert!(k.is_still());
        // Walks off along x at 1.2 m/s.
        let mut out = (0.0, 0.0, 0.0);
        for i in 1..=10 {
            let x = 10.0 + 1.2 * f64::from(i) + 0.5 * noise(&mut rng);
            out = k.update(59_000 + i64::from(i) * 1000, x, 5.0, 1.0, 0);
        }
        assert!(!k.is_still());
        assert!((out.0 - 22.0).abs() < 1.5, "{out:?}");
        assert!(k.speed().is_some_and(|v| v > 0.6), "{:?}", k.speed());
    }

    /// One estimate 3 m off (a burst of noise): with a share of outliers the still track
    /// neither switches to walking nor moves; taken at its word, it does both.
    #[test]
    fn one_outlier_does_not_set_a_still_device_walking() {
        let run = |outlier_share: f64| {
            let mut k = KalmanTrack::new(KalmanConfig {
                outlier_share,
                ..KalmanConfig::default()
            });
            let mut rng = 11_u64;
            for i in 0..60 {
                k.update(i * 1000, 10.0 + 0.5 * noise(&mut rng), 5.0, 1.0, 0);
            }
            assert!(k.is_still());
            let (x, _, _) = k.update(60_000, 13.0, 5.0, 1.0, 0);
            (k.is_still(), x)
        };
        let (still, x) = run(0.05);
        assert!(still && (x - 10.0).abs() < 0.2, "{still} {x}");
        let (still, x) = run(0.0);
        assert!(!still && x > 10.5, "{still} {x}");
    }
}
