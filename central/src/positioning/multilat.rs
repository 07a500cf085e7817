//! Multilateration against anchors (receivers or beacons) at known positions.
//!
//! Log-distance path loss: `rssi = rssi_at_1m - 10 * n * log10(d)`. Each reading becomes a
//! distance; shadowing of `sigma_db` dB is a Gaussian error on ln(d), so the position is the
//! least-squares fit of `ln(range / d)` over that spread (the maximum-likelihood fit), solved
//! by Levenberg-Marquardt from several starting points. The floor is a weighted vote of the
//! strongest anchors. Fewer anchors give an honestly larger error radius.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Estimate;

/// A receiver or beacon at a known place, with its calibrated path-loss model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub id: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    /// Expected RSSI (dBm) at 1 m.
    pub rssi_at_1m: f32,
    /// Path-loss exponent n (2 in free space, 2-4 indoors).
    pub exponent: f32,
}

impl Anchor {
    /// Anchor with typical indoor defaults (-59 dBm at 1 m, n = 2.5) until calibrated.
    pub fn new(id: impl Into<String>, x: f64, y: f64, floor: i32) -> Self {
        Self {
            id: id.into(),
            x,
            y,
            floor,
            rssi_at_1m: -59.0,
            exponent: 2.5,
        }
    }

    /// Distance (m) the log-distance model gives for an RSSI.
    pub fn distance(&self, rssi: f32) -> f64 {
        rssi_to_distance(rssi, self.rssi_at_1m, self.exponent)
    }
}

/// Inverse of the log-distance model.
pub fn rssi_to_distance(rssi: f32, rssi_at_1m: f32, exponent: f32) -> f64 {
    let n = f64::from(exponent).max(0.5);
    10f64.powf((f64::from(rssi_at_1m) - f64::from(rssi)) / (10.0 * n))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MultilatConfig {
    /// Height of one floor (m): anchors on other floors are that much further away.
    pub floor_height_m: f64,
    /// Standard deviation of RSSI around the model (shadowing), dB.
    pub sigma_db: f64,
    /// Distances are clamped to this range (m).
    pub min_distance_m: f64,
    pub max_distance_m: f64,
    /// How many of the strongest anchors vote for the floor.
    pub floor_voters: usize,
    pub max_iterations: usize,
}

impl Default for MultilatConfig {
    fn default() -> Self {
        Self {
            floor_height_m: 3.5,
            sigma_db: 4.0,
            min_distance_m: 0.1,
            max_distance_m: 200.0,
            floor_voters: 3,
            max_iterations: 60,
        }
    }
}

/// One usable reading: anchor and measured RSSI.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    pub anchor: &'a Anchor,
    pub rssi: f32,
}

/// Where a track expects the device (on `floor`, at `x`/`y` give or take `std` metres):
/// when the fit has several local minima (readings that fit two places about as well),
/// the one near the track is taken. The estimate stays the readings' own fit; the prior
/// only chooses between fits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prior {
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub std: f64,
}

/// Locate a scan `(anchor id, dBm)` against `anchors`. Unknown ids are ignored;
/// `None` if no reading matches an anchor.
pub fn multilaterate(
    anchors: &[Anchor],
    scan: &[(&str, f32)],
    cfg: &MultilatConfig,
) -> Option<Estimate> {
    multilaterate_near(anchors, scan, cfg, None)
}

/// [`multilaterate`], choosing between local minima by `prior` (see [`Prior`]).
pub fn multilaterate_near(
    anchors: &[Anchor],
    scan: &[(&str, f32)],
    cfg: &MultilatConfig,
    prior: Option<Prior>,
) -> Option<Estimate> {
    let by_id: HashMap<&str, &Anchor> = anchors.iter().map(|a| (a.id.as_str(), a)).collect();
    // Several readings of one anchor: keep the strongest, whatever the input order.
    let mut best: HashMap<&str, f32> = HashMap::new();
    for &(id, rssi) in scan {
        if !rssi.is_finite() || !by_id.contains_key(id) {
            continue;
        }
        let e = best.entry(id).or_insert(rssi);
        if rssi > *e {
            *e = rssi;
        }
    }
    let mut obs: Vec<Observation> = best
        .into_iter()
        .filter_map(|(id, rssi)| by_id.get(id).map(|&anchor| Observation { anchor, rssi }))
        .collect();
    // Canonical order: the result must not depend on the input order.
    obs.sort_by(|a, b| {
        b.rssi
            .total_cmp(&a.rssi)
            .then_with(|| a.anchor.id.cmp(&b.anchor.id))
    });
    solve_near(&obs, cfg, prior)
}

/// Multilateration over resolved observations.
pub fn solve(obs: &[Observation], cfg: &MultilatConfig) -> Option<Estimate> {
    solve_near(obs, cfg, None)
}

/// [`solve`], choosing between local minima by `prior` (see [`Prior`]).
pub fn solve_near(
    obs: &[Observation],
    cfg: &MultilatConfig,
    prior: Option<Prior>,
) -> Option<Estimate> {
    if obs.is_empty() {
        return None;
    }
    let floor = vote_floor(obs, cfg.floor_voters.max(1));
    let meas: Vec<Meas> = obs.iter().map(|o| Meas::new(o, floor, cfg)).collect();

    if meas.len() == 1 {
        // One anchor: we only know we are within roughly d of it.
        let m = &meas[0];
        let horiz = (m.d * m.d - m.dz * m.dz).max(0.0).sqrt();
        return Some(estimate(
            m.x,
            m.y,
            floor,
            (horiz + 2.0 * m.sigma) as f32,
            0.1,
            "nearest-receiver",
        ));
    }

    // Starting points: the weighted centroid, every anchor, and midpoints pushed outward.
    let mut starts = Vec::new();
    let (mut wx, mut wy, mut ws) = (0.0, 0.0, 0.0);
    for m in &meas {
        let w = 1.0 / (m.d * m.d);
        wx += w * m.x;
        wy += w * m.y;
        ws += w;
    }
    starts.push((wx / ws, wy / ws));
    for m in meas.iter().take(6) {
        starts.push((m.x + 0.1, m.y + 0.1));
    }
    let cx = meas.iter().map(|m| m.x).sum::<f64>() / meas.len() as f64;
    let cy = meas.iter().map(|m| m.y).sum::<f64>() / meas.len() as f64;
    for m in meas.iter().take(4) {
        starts.push((2.0 * m.x - cx + 0.05, 2.0 * m.y - cy + 0.05));
    }

    // A prior on this floor: start there too, and weigh each fit by its distance from it
    // (the fit's chi-square plus the prior's).
    let prior = prior
        .filter(|p| p.floor == floor && p.x.is_finite() && p.y.is_finite() && p.std.is_finite());
    if let Some(p) = prior {
        starts.push((p.x, p.y));
    }
    let penalty = |x: f64, y: f64| {
        prior.map_or(0.0, |p| {
            ((x - p.x).powi(2) + (y - p.y).powi(2)) / p.std.max(0.05).powi(2)
        })
    };
    let mut best: Option<(f64, f64, f64, f64)> = None;
    for (sx, sy) in starts {
        let (x, y, cost) = levenberg_marquardt(&meas, sx, sy, cfg.max_iterations);
        let score = cost + penalty(x, y);
        if score.is_finite() && best.is_none_or(|b| score < b.3) {
            best = Some((x, y, cost, score));
        }
    }
    let (x, y, cost, _) = best?;

    // Covariance of the fit, scaled by the residuals when they are worse than modelled.
    let (jtj, _) = normal_equations(&meas, x, y);
    let det = jtj[0] * jtj[2] - jtj[1] * jtj[1];
    let n = meas.len();
    let dof = n.saturating_sub(2).max(1) as f64;
    let scale = (cost / dof).max(1.0);
    let mut radius = if det > 1e-12 {
        ((jtj[0] + jtj[2]) / det * scale).sqrt()
    } else {
        f64::INFINITY
    };
    if n == 2 {
        // Two circles meet in two mirrored points: the fit cannot tell which.
        radius = radius.max(meas.iter().map(|m| m.d).fold(f64::INFINITY, f64::min));
    }
    let span = meas.iter().map(|m| m.d).fold(0.0, f64::max);
    let radius = radius.min(span + 2.0 * meas[0].sigma).max(0.1);
    // Confidence falls with the radius and with few anchors.
    let coverage = (n as f64 / 4.0).min(1.0);
    let confidence = coverage / (1.0 + radius / 5.0);
    Some(estimate(
        x,
        y,
        floor,
        radius as f32,
        confidence as f32,
        "multilateration",
    ))
}

fn estimate(x: f64, y: f64, floor: i32, radius: f32, confidence: f32, method: &str) -> Estimate {
    Estimate {
        x,
        y,
        floor,
        building: 0,
        confidence: confidence.clamp(0.0, 1.0),
        error_radius_m: radius,
        room: None,
        room_probabilities: Vec::new(),
        method: method.to_string(),
    }
}

/// Floor by vote of the strongest anchors, weighted by received power (mW).
fn vote_floor(obs: &[Observation], voters: usize) -> i32 {
    let mut strongest: Vec<&Observation> = obs.iter().collect();
    strongest.sort_by(|a, b| {
        b.rssi
            .total_cmp(&a.rssi)
            .then_with(|| a.anchor.id.cmp(&b.anchor.id))
    });
    let mut tally: Vec<(i32, f64)> = Vec::new();
    for o in strongest.iter().take(voters) {
        let w = 10f64.powf(f64::from(o.rssi) / 10.0);
        match tally.iter_mut().find(|t| t.0 == o.anchor.floor) {
            Some(t) => t.1 += w,
            None => tally.push((o.anchor.floor, w)),
        }
    }
    tally
        .iter()
        .fold(None::<(i32, f64)>, |best, &t| match best {
            Some(b) if b.1 >= t.1 => Some(b),
            _ => Some(t),
        })
        .map_or(0, |t| t.0)
}

struct Meas {
    x: f64,
    y: f64,
    dz: f64,
    d: f64,
    sigma: f64,
    /// Standard deviation of ln(distance) that the shadowing gives.
    rel: f64,
}

impl Meas {
    /// A reading as a distance, for a device on `floor`.
    fn new(o: &Observation, floor: i32, cfg: &MultilatConfig) -> Self {
        let a = o.anchor;
        let d = a.distance(o.rssi).clamp(
            cfg.min_distance_m,
            cfg.max_distance_m.max(cfg.min_distance_m),
        );
        // Shadowing of sigma dB is an error of sigma*ln10/(10n) on ln(distance).
        let rel = cfg.sigma_db * std::f64::consts::LN_10 / (10.0 * f64::from(a.exponent).max(0.5));
        Meas {
            x: a.x,
            y: a.y,
            dz: f64::from(a.floor - floor) * cfg.floor_height_m,
            d,
            sigma: (d * rel).max(0.05),
            rel: rel.max(1e-6),
        }
    }

    /// Normalised residual at range `rho`, in the log domain where shadowing is Gaussian
    /// (a distance residual over `sigma` would weigh readings that came out strong by
    /// chance more, and pull the fit towards their receivers).
    fn residual(&self, rho: f64) -> f64 {
        (rho.max(1e-9) / self.d).ln() / self.rel
    }
}

/// J^T J (as [a, b, c] of [[a, b], [b, c]]) and J^T r, plus nothing else: cost separately.
fn normal_equations(meas: &[Meas], x: f64, y: f64) -> ([f64; 3], [f64; 2]) {
    let mut jtj = [0.0; 3];
    let mut jtr = [0.0; 2];
    for m in meas {
        let (dx, dy) = (x - m.x, y - m.y);
        let rho = (dx * dx + dy * dy + m.dz * m.dz).sqrt().max(1e-9);
        let r = m.residual(rho);
        let jx = dx / (rho * rho * m.rel);
        let jy = dy / (rho * rho * m.rel);
        jtj[0] += jx * jx;
        jtj[1] += jx * jy;
        jtj[2] += jy * jy;
        jtr[0] += jx * r;
        jtr[1] += jy * r;
    }
    (jtj, jtr)
}

fn cost(meas: &[Meas], x: f64, y: f64) -> f64 {
    meas.iter()
        .map(|m| {
            let rho = ((x - m.x).powi(2) + (y - m.y).powi(2) + m.dz * m.dz).sqrt();
            m.residual(rho).powi(2)
        })
        .sum()
}

fn levenberg_marquardt(meas: &[Meas], mut x: f64, mut y: f64, iters: usize) -> (f64, f64, f64) {
    let mut c = cost(meas, x, y);
    let mut lambda = 1e-3;
    for _ in 0..iters {
        let (jtj, jtr) = normal_equations(meas, x, y);
        let mut improved = false;
        for _ in 0..10 {
            let a = jtj[0] * (1.0 + lambda) + 1e-12;
            let b = jtj[1];
            let d = jtj[2] * (1.0 + lambda) + 1e-12;
            let det = a * d - b * b;
            if det.abs() < 1e-18 {
                lambda *= 10.0;
                continue;
            }
            let sx = -(d * jtr[0] - b * jtr[1]) / det;
            let sy = -(a * jtr[1] - b * jtr[0]) / det;
            let nc = cost(meas, x + sx, y + sy);
            if nc < c {
                x += sx;
                y += sy;
                let step = (sx * sx + sy * sy).sqrt();
                c = nc;
                lambda = (lambda * 0.3).max(1e-9);
                improved = step > 1e-9;
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (x, y, c)
}

/// Least-squares fit of the log-distance model to `(distance_m, rssi)` samples:
/// returns `(rssi_at_1m, exponent)`. Samples at distance <= 0 or non-finite are skipped.
/// With fewer than two distinct distances the exponent cannot be fitted: it stays 2.0 and
/// only rssi_at_1m is fitted (-59 dBm with no usable sample at all).
pub fn fit_path_loss(samples: &[(f64, f32)]) -> (f32, f32) {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(d, r)| *d > 0.0 && d.is_finite() && r.is_finite())
        .map(|&(d, r)| (-10.0 * d.log10(), f64::from(r)))
        .collect();
    if pts.is_empty() {
        return (-59.0, 2.0);
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx < 1e-9 {
        // rssi = A + n * x with x fixed: fit A for n = 2.
        return ((my - 2.0 * mx) as f32, 2.0);
    }
    // rssi = A + n * (-10 log10 d): slope is the exponent.
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    (intercept as f32, slope as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn anchors() -> Vec<Anchor> {
        vec![
            Anchor {
                rssi_at_1m: -45.0,
                exponent: 2.2,
                ..Anchor::new("a", 0.0, 0.0, 0)
            },
            Anchor {
                rssi_at_1m: -50.0,
                exponent: 2.8,
                ..Anchor::new("b", 20.0, 0.0, 0)
            },
            Anchor {
                rssi_at_1m: -55.0,
                exponent: 2.0,
                ..Anchor::new("c", 0.0, 15.0, 0)
            },
            Anchor {
                rssi_at_1m: -48.0,
                exponent: 3.1,
                ..Anchor::new("d", 18.0, 17.0, 0)
            },
        ]
    }

    fn ideal_rssi(a: &Anchor, x: f64, y: f64) -> f32 {
        let d = ((x - a.x).powi(2) + (y - a.y).powi(2)).sqrt().max(0.1);
        (f64::from(a.rssi_at_1m) - 10.0 * f64::from(a.exponent) * d.log10()) as f32
    }

    #[test]
    fn noise_free_device_located_within_centimetres() {
        let an = anchors();
        for &(x, y) in &[
            (5.0, 5.0),
            (12.3, 3.4),
            (1.0, 14.0),
            (17.0, 16.0),
            (9.0, 8.5),
        ] {
            let scan: Vec<(&str, f32)> = an
                .iter()
                .map(|a| (a.id.as_str(), ideal_rssi(a, x, y)))
                .collect();
            let e = multilaterate(&an, &scan, &MultilatConfig::default()).unwrap();
            let err = ((e.x - x).powi(2) + (e.y - y).powi(2)).sqrt();
            assert!(err < 0.02, "({x},{y}) -> ({}, {}) err {err}", e.x, e.y);
            // Three anchors are enough too.
            let e3 = multilaterate(&an, &scan[..3], &MultilatConfig::default()).unwrap();
            let err3 = ((e3.x - x).powi(2) + (e3.y - y).powi(2)).sqrt();
            assert!(err3 < 0.02, "3 anchors ({x},{y}) err {err3}");
        }
    }

    /// Shadowing is Gaussian in dB: a reading 6 dB too strong and one 6 dB too weak are
    /// equally unlikely, and the fit's residuals say so (a residual in metres over a spread
    /// taken from the noisy reading itself made the strong one count about four times as
    /// much: its distance, and so its spread, came out half as large).
    #[test]
    fn residuals_are_symmetric_in_decibels() {
        let a = &anchors()[0];
        let cfg = MultilatConfig::default();
        let rho = 6.0;
        let at = |db: f32| {
            let o = Observation {
                anchor: a,
                rssi: ideal_rssi(a, rho, 0.0) + db,
            };
            Meas::new(&o, a.floor, &cfg).residual(rho)
        };
        let (strong, weak) = (at(6.0), at(-6.0));
        assert!(strong > 0.5, "{strong}");
        assert!((strong + weak).abs() < 1e-5, "{strong} {weak}");
        // 6 dB is 6 / sigma_db standard deviations.
        assert!((strong - 6.0 / cfg.sigma_db).abs() < 1e-5, "{strong}");
    }

    #[test]
    fn a_prior_chooses_between_fits_the_readings_support_equally() {
        // Two receivers: a device at (10, 4) fits (10, -4) just as well.
        let a = anchors();
        let two: Vec<(&str, f32)> = a[..2]
            .iter()
            .map(|x| (x.id.as_str(), ideal_rssi(x, 10.0, 4.0)))
            .collect();
        let cfg = MultilatConfig::default();
        for y in [4.0, -4.0] {
            let prior = Prior {
                x: 9.0,
                y,
                floor: 0,
                std: 2.0,
            };
            let e = multilaterate_near(&a, &two, &cfg, Some(prior)).unwrap();
            assert!((e.x - 10.0).abs() < 0.1 && (e.y - y).abs() < 0.1, "{e:?}");
        }
        // The prior only chooses: with enough receivers the readings' own fit stands.
        let all: Vec<(&str, f32)> = a
            .iter()
            .map(|x| (x.id.as_str(), ideal_rssi(x, 10.0, 4.0)))
            .collect();
        let far = Prior {
            x: 2.0,
            y: 12.0,
            floor: 0,
            std: 2.0,
        };
        let e = multilaterate_near(&a, &all, &cfg, Some(far)).unwrap();
        assert!(
            (e.x - 10.0).abs() < 0.05 && (e.y - 4.0).abs() < 0.05,
            "{e:?}"
        );
        // A prior on another floor is ignored.
        let other = Prior { floor: 1, ..far };
        assert_eq!(
            multilaterate_near(&a, &all, &cfg, Some(other)),
            multilaterate(&a, &all, &cfg)
        );
    }

    #[test]
    fn degrades_with_fewer_receivers() {
        let an = anchors();
        let cfg = MultilatConfig::default();
        assert!(multilaterate(&an, &[], &cfg).is_none());
        assert!(multilaterate(&an, &[("zz", -40.0)], &cfg).is_none());
        let one = multilaterate(&an, &[("b", -60.0)], &cfg).unwrap();
        assert_eq!((one.x, one.y), (20.0, 0.0));
        assert!(one.error_radius_m > 2.0);
        let scan: Vec<(&str, f32)> = an
            .iter()
            .map(|a| (a.id.as_str(), ideal_rssi(a, 6.0, 4.0) - 3.0))
            .collect();
        let r: Vec<f32> = (1..=4)
            .map(|n| multilaterate(&an, &scan[..n], &cfg).unwrap().error_radius_m)
            .collect();
        let c: Vec<f32> = (1..=4)
            .map(|n| multilaterate(&an, &scan[..n], &cfg).unwrap().confidence)
            .collect();
        assert!(r[0] >= r[2] && r[1] >= r[3], "{r:?}");
        assert!(c[0] <= c[2] && c[1] <= c[3], "{c:?}");
    }

    #[test]
    fn floor_from_strongest_receivers() {
        let mut an = anchors();
        an.push(Anchor::new("up", 5.0, 5.0, 1));
        let cfg = MultilatConfig::default();
        let e = multilaterate(&an, &[("up", -40.0), ("a", -70.0), ("b", -75.0)], &cfg).unwrap();
        assert_eq!(e.floor, 1);
        let e = multilaterate(
            &an,
            &[("up", -80.0), ("a", -50.0), ("b", -55.0), ("c", -60.0)],
            &cfg,
        )
        .unwrap();
        assert_eq!(e.floor, 0);
    }

    #[test]
    fn fit_recovers_model() {
        let s: Vec<(f64, f32)> = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0]
            .iter()
            .map(|&d: &f64| (d, (-47.0 - 27.0 * d.log10()) as f32))
            .collect();
        let (a, n) = fit_path_loss(&s);
        assert!((a + 47.0).abs() < 1e-3 && (n - 2.7).abs() < 1e-3, "{a} {n}");
        assert_eq!(fit_path_loss(&[]), (-59.0, 2.0));
        let (a, n) = fit_path_loss(&[(1.0, -50.0), (1.0, -52.0)]);
        assert_eq!((a, n), (-51.0, 2.0));
    }

    proptest! {
        #[test]
        fn permutation_does_not_change_answer(x in 0.0f64..20.0, y in 0.0f64..17.0, noise in proptest::collection::vec(-6.0f32..6.0, 4), rot in 0usize..4) {
            let an = anchors();
            let scan: Vec<(&str, f32)> = an.iter().zip(&noise).map(|(a, n)| (a.id.as_str(), ideal_rssi(a, x, y) + n)).collect();
            let mut perm = scan.clone();
            perm.rotate_left(rot);
            perm.reverse();
            let cfg = MultilatConfig::default();
            prop_assert_eq!(multilaterate(&an, &scan, &cfg), multilaterate(&an, &perm, &cfg));
            let mut an2 = an.clone();
            an2.reverse();
            prop_assert_eq!(multilaterate(&an, &scan, &cfg), multilaterate(&an2, &scan, &cfg));
        }

        #[test]
        fn never_panics(readings in proptest::collection::vec((0usize..6, -120.0f32..10.0), 0..8)) {
            let an = anchors();
            let ids = ["a", "b", "c", "d", "zz", "a"];
            let scan: Vec<(&str, f32)> = readings.iter().map(|&(i, r)| (ids[i], r)).collect();
            let _ = multilaterate(&an, &scan, &MultilatConfig::default());
            let one = [an[0].clone()];
            let _ = multilaterate(&one, &scan, &MultilatConfig::default());
        }
    }
}
