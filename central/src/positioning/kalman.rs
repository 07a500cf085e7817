//! Constant-velocity Kalman smoothing of a 2D track, with a walking-speed clamp.
//!
//! The x and y axes are independent (same model), so the filter runs two 2-state
//! filters (position, velocity) with a white-acceleration process noise.

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
    x: Axis,
    y: Axis,
    last_ms: Option<i64>,
    floor: Option<i32>,
}

impl KalmanTrack {
    pub fn new(config: KalmanConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
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
        let c = &self.config;
        let r_std = if error_radius.is_finite() && error_radius > 0.0 {
            f64::from(error_radius)
        } else {
            c.default_measurement_std
        };
        let r = r_std * r_std;
        let restart = match self.last_ms {
            None => true,
            Some(t) => self.floor != Some(floor) || at_ms - t > c.reset_after_ms,
        };
        if restart || !x.is_finite() || !y.is_finite() {
            if x.is_finite() && y.is_finite() {
                self.x = Axis::start(x, r, c.max_speed_mps);
                self.y = Axis::start(y, r, c.max_speed_mps);
                self.last_ms = Some(at_ms);
                self.floor = Some(floor);
            }
            return (self.x.pos, self.y.pos, self.x.p00.max(self.y.p00).sqrt());
        }
        let last = self.last_ms.unwrap_or(at_ms);
        let dt = ((at_ms - last).max(0) as f64) / 1000.0;
        let (px, py) = (self.x.pos, self.y.pos);
        let q = c.accel_std * c.accel_std;
        self.x.predict(dt, q);
        self.y.predict(dt, q);
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
        // Clamp velocity and the movement since the last output to walking speed.
        let vmax = c.max_speed_mps;
        let speed = self.x.vel.hypot(self.y.vel);
        if speed > vmax {
            self.x.vel *= vmax / speed;
            self.y.vel *= vmax / speed;
        }
        let (dx, dy) = (self.x.pos - px, self.y.pos - py);
        let step = dx.hypot(dy);
        let max_step = vmax * dt;
        if step > max_step {
            let s = if step > 0.0 { max_step / step } else { 0.0 };
            self.x.pos = px + dx * s;
            self.y.pos = py + dy * s;
        }
        self.last_ms = Some(at_ms.max(last));
        (self.x.pos, self.y.pos, self.x.p00.max(self.y.p00).sqrt())
    }

    /// The smoothed position `ahead_ms` after the last update, moved on at the track's
    /// velocity, and its standard deviation (grows with the velocity's uncertainty).
    pub fn ahead(&self, ahead_ms: i64) -> Option<(f64, f64, f64)> {
        self.last_ms?;
        let dt = ahead_ms.max(0) as f64 / 1000.0;
        let var = |a: &Axis| a.p00 + 2.0 * dt * a.p01 + dt * dt * a.p11;
        Some((
            self.x.pos + self.x.vel * dt,
            self.y.pos + self.y.vel * dt,
            var(&self.x).max(var(&self.y)).max(0.0).sqrt(),
        ))
    }

    /// The smoothed position at `at_ms` (moved on at the track's velocity from the last
    /// update, never back), and its standard deviation.
    pub fn at(&self, at_ms: i64) -> Option<(f64, f64, f64)> {
        self.ahead(at_ms - self.last_ms?)
    }

    /// Speed of the track (m/s), if any.
    pub fn speed(&self) -> Option<f64> {
        self.last_ms.map(|_| self.x.vel.hypot(self.y.vel))
    }

    /// Last smoothed position, if any.
    pub fn position(&self) -> Option<(f64, f64)> {
        self.last_ms.map(|_| (self.x.pos, self.y.pos))
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
}
