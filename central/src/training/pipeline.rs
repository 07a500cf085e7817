//! The pure part of training: labelled samples → a fingerprint model with its
//! cross-validated accuracy, plus each receiver's fitted path-loss parameters. Also the
//! pure conversion of one calibration session's readings into labelled samples.

use crate::positioning::{
    fit_path_loss, train, CvReport, Dataset, FingerprintModel, Params, Room, TrainError,
    TrainOptions,
};
use crate::storage::training::{CalibrationRecord, NewSample, SampleRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Fingerprint emitter key of a WiFi access point (`wifi:<bssid>`, lower case).
pub fn wifi_key(bssid: &str) -> String {
    format!("wifi:{}", bssid.trim().to_ascii_lowercase())
}

/// Fingerprint emitter key of a BLE receiver or beacon (`ble:<id>`, lower case).
pub fn ble_key(id: &str) -> String {
    format!("ble:{}", id.trim().to_ascii_lowercase())
}

/// A receiver at a known place (the anchor whose path loss training fits).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverPlace {
    pub node: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
}

/// What a training run produces, stored as one model version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainedModel {
    pub fingerprint: FingerprintModel,
    /// Building names; the fingerprint model's building `i` is `buildings[i]`.
    pub buildings: Vec<String>,
}

/// Cross-validated accuracy of a model, as `GET /api/training` and `GET /api/models` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accuracy {
    /// Folds (grouped by reference position) and held-out queries.
    pub folds: usize,
    pub queries: usize,
    /// 2D error in the coordinate units of the samples (metres for calibration samples).
    pub mean_error: f64,
    pub median_error: f64,
    pub p75_error: f64,
    pub p95_error: f64,
    pub building_hit_rate: f64,
    pub floor_hit_rate: f64,
    /// Share of held-out samples inside a known room whose estimate is in that room; null
    /// when no sample lies in a known room.
    pub room_hit_rate: Option<f64>,
    pub room_queries: usize,
    pub configurations_tried: usize,
}

impl Accuracy {
    fn from_cv(cv: &CvReport) -> Self {
        Self {
            folds: cv.folds,
            queries: cv.queries,
            mean_error: cv.mean_error,
            median_error: cv.median_error,
            p75_error: cv.p75_error,
            p95_error: cv.p95_error,
            building_hit_rate: cv.building_hit_rate,
            floor_hit_rate: cv.floor_hit_rate,
            room_hit_rate: None,
            room_queries: 0,
            configurations_tried: cv.configurations_tried,
        }
    }
}

/// A receiver's path-loss parameters fitted from BLE calibration samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PathLossFit {
    pub receiver: String,
    pub rssi_at_1m: f32,
    pub exponent: f32,
    /// Readings the fit used, and the range of their distances (m).
    pub samples: usize,
    pub min_distance_m: f64,
    pub max_distance_m: f64,
}

/// Why a receiver kept its configured parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PathLossSkip {
    pub receiver: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PathLossReport {
    pub fitted: Vec<PathLossFit>,
    pub skipped: Vec<PathLossSkip>,
}

impl PathLossReport {
    pub fn get(&self, node: &str) -> Option<&PathLossFit> {
        self.fitted.iter().find(|f| f.receiver == node)
    }
}

pub struct TrainOutcome {
    pub model: TrainedModel,
    pub params: Params,
    pub accuracy: Accuracy,
    pub path_loss: PathLossReport,
    /// Samples with at least one reading (the radio map).
    pub samples_used: usize,
}

/// Fewest readings (at two distinct distances) a receiver's path-loss fit needs.
pub const MIN_PATH_LOSS_READINGS: usize = 5;
/// Fits outside these bounds are physically implausible: the receiver keeps its values.
const EXPONENT_RANGE: (f32, f32) = (1.2, 6.0);
const RSSI_AT_1M_RANGE: (f32, f32) = (-100.0, -10.0);

/// Trains on the samples: cross-validated fingerprint model (hyper-parameters chosen by
/// [`train`]), its room hit rate when rooms are known, and path-loss fits for receivers.
pub fn train_model(
    samples: &[SampleRecord],
    receivers: &[ReceiverPlace],
    rooms: &[Room],
    floor_height_m: f64,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(f32),
) -> Result<TrainOutcome, TrainError> {
    let (data, buildings) = dataset(samples);
    let samples_used = data
        .samples
        .iter()
        .filter(|s| !s.readings.is_empty())
        .count();
    // CV of the grid is most of the work; the room pass and path loss the rest.
    let fingerprint = train(&data, opts, &mut |p| progress(p * 0.9))?;
    let params = fingerprint.params.clone();
    let mut accuracy = Accuracy::from_cv(&fingerprint.cv);
    if !rooms.is_empty() {
        let (hit, n) = room_hit_rate(&data, &params, rooms, opts.folds, opts.max_cv_queries);
        accuracy.room_hit_rate = hit;
        accuracy.room_queries = n;
    }
    progress(0.95);
    let path_loss = fit_receivers(samples, receivers, floor_height_m);
    progress(1.0);
    Ok(TrainOutcome {
        model: TrainedModel {
            fingerprint,
            buildings,
        },
        params,
        accuracy,
        path_loss,
        samples_used,
    })
}

/// The samples as a fingerprint data set; buildings by name become indices.
pub fn dataset(samples: &[SampleRecord]) -> (Dataset, Vec<String>) {
    let mut buildings: Vec<String> = samples.iter().map(|s| s.building.clone()).collect();
    buildings.sort();
    buildings.dedup();
    let index: HashMap<&str, i32> = buildings
        .iter()
        .enumerate()
        .map(|(i, b)| (b.as_str(), i as i32))
        .collect();
    let mut data = Dataset::new();
    for s in samples {
        let readings: Vec<(&str, f32)> = s.readings.iter().map(|(e, r)| (e.as_str(), *r)).collect();
        let b = index.get(s.building.as_str()).copied().unwrap_or(0);
        data.push(&readings, s.x, s.y, s.floor, b);
    }
    (data, buildings)
}

/// Deterministic fold of a reference position, so a position's samples are held out together.
fn fold_of(x: f64, y: f64, floor: i32, building: i32, folds: usize) -> usize {
    let mut z = x
        .to_bits()
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(y.to_bits().rotate_left(17))
        .wrapping_add((floor as u64) << 32)
        .wrapping_add(building as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % folds.max(1) as u64) as usize
}

/// Grouped cross-validation of fixed `params`: the share of held-out samples lying in a
/// room whose estimate names that room. `(None, 0)` when no sample lies in a room.
pub fn room_hit_rate(
    data: &Dataset,
    params: &Params,
    rooms: &[Room],
    folds: usize,
    max_queries: usize,
) -> (Option<f64>, usize) {
    let folds = folds.max(2);
    let truth: Vec<Option<&str>> = data
        .samples
        .iter()
        .map(|s| crate::positioning::room_at(rooms, s.x, s.y, s.floor).map(|r| r.id.as_str()))
        .collect();
    let in_room: Vec<usize> = (0..data.samples.len())
        .filter(|&i| truth[i].is_some() && !data.samples[i].readings.is_empty())
        .collect();
    if in_room.is_empty() {
        return (None, 0);
    }
    let stride = in_room.len().div_ceil(max_queries.max(1)).max(1);
    let fold: Vec<usize> = data
        .samples
        .iter()
        .map(|s| fold_of(s.x, s.y, s.floor, s.building, folds))
        .collect();
    let (mut hits, mut n) = (0usize, 0usize);
    for f in 0..folds {
        let queries: Vec<usize> = in_room
            .iter()
            .step_by(stride)
            .copied()
            .filter(|&i| fold[i] == f)
            .collect();
        if queries.is_empty() {
            continue;
        }
        let mut train_set = Dataset::new();
        for e in &data.emitters {
            train_set.emitter_id(e);
        }
        for (i, s) in data.samples.iter().enumerate() {
            if fold[i] != f {
                train_set.push_sample(s.clone());
            }
        }
        let Ok(model) = FingerprintModel::build(&train_set, params.clone()) else {
            continue;
        };
        for i in queries {
            n += 1;
            let Some(est) = model.locate_ids(&data.samples[i].readings) else {
                continue;
            };
            let est = est.with_rooms(rooms);
            if est.room.as_deref() == truth[i] {
                hits += 1;
            }
        }
    }
    if n == 0 {
        return (None, 0);
    }
    (Some(hits as f64 / n as f64), n)
}

/// Fits each receiver's `(rssi_at_1m, exponent)` from BLE calibration samples: every
/// reading of a receiver is one `(distance from the labelled position, rssi)` point.
pub fn fit_receivers(
    samples: &[SampleRecord],
    receivers: &[ReceiverPlace],
    floor_height_m: f64,
) -> PathLossReport {
    let by_key: HashMap<String, &ReceiverPlace> =
        receivers.iter().map(|r| (ble_key(&r.node), r)).collect();
    let mut points: BTreeMap<&str, Vec<(f64, f32)>> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.source == crate::storage::training::SOURCE_BLE)
    {
        for (emitter, rssi) in &s.readings {
            if let Some(r) = by_key.get(emitter) {
                let dz = f64::from(s.floor - r.floor) * floor_height_m;
                let d = ((s.x - r.x).powi(2) + (s.y - r.y).powi(2) + dz * dz).sqrt();
                points.entry(r.node.as_str()).or_default().push((d, *rssi));
            }
        }
    }
    let mut report = PathLossReport::default();
    for r in receivers {
        let pts = points.remove(r.node.as_str()).unwrap_or_default();
        let skip = |reason: String| PathLossSkip {
            receiver: r.node.clone(),
            reason,
        };
        // Readings closer than 10 cm say nothing about the slope and explode log10.
        let pts: Vec<(f64, f32)> = pts.into_iter().filter(|p| p.0 >= 0.1).collect();
        let min = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let max = pts.iter().map(|p| p.0).fold(0.0, f64::max);
        if pts.len() < MIN_PATH_LOSS_READINGS {
            report.skipped.push(skip(format!(
                "{} calibration readings; at least {MIN_PATH_LOSS_READINGS} needed",
                pts.len()
            )));
            continue;
        }
        // log10 spread under ~0.1 (distances within 25 % of each other) cannot fix a slope.
        if max / min < 1.25 {
            report.skipped.push(skip(format!(
                "calibration distances {min:.1}..{max:.1} m are too alike to fit an exponent; calibrate at more places"
            )));
            continue;
        }
        let (a, n) = fit_path_loss(&pts);
        if !(EXPONENT_RANGE.0..=EXPONENT_RANGE.1).contains(&n)
            || !(RSSI_AT_1M_RANGE.0..=RSSI_AT_1M_RANGE.1).contains(&a)
        {
            report.skipped.push(skip(format!(
                "implausible fit (rssi_at_1m {a:.1} dBm, exponent {n:.2}); kept the configured values"
            )));
            continue;
        }
        report.fitted.push(PathLossFit {
            receiver: r.node.clone(),
            rssi_at_1m: a,
            exponent: n,
            samples: pts.len(),
            min_distance_m: min,
            max_distance_m: max,
        });
    }
    report
}

/// One reading of the calibrated device in the session's window.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReading {
    /// `ble` (a receiver heard the device) or `wifi` (the device heard an access point).
    pub source: &'static str,
    /// Emitter key (`ble:<receiver>` / `wifi:<bssid>`).
    pub emitter: String,
    pub rssi: f32,
    pub at_ms: i64,
}

/// Turns a session's readings into labelled samples: the window is cut into slices of
/// `slice_ms`; each slice and source with readings gives one sample holding the mean dBm
/// per emitter. Readings outside `[start, end)` are ignored.
pub fn calibration_samples(
    session: &CalibrationRecord,
    readings: &[CalibrationReading],
    slice_ms: i64,
) -> Vec<NewSample> {
    let slice_ms = slice_ms.max(1);
    // (slice, source) → emitter → (sum, count)
    type Sums<'a> = BTreeMap<&'a str, (f64, u32)>;
    let mut groups: BTreeMap<(i64, &'static str), Sums> = BTreeMap::new();
    for r in readings {
        if r.at_ms < session.start_ms || r.at_ms >= session.end_ms || !r.rssi.is_finite() {
            continue;
        }
        let slice = (r.at_ms - session.start_ms) / slice_ms;
        let e = groups
            .entry((slice, r.source))
            .or_default()
            .entry(r.emitter.as_str())
            .or_insert((0.0, 0));
        e.0 += f64::from(r.rssi);
        e.1 += 1;
    }
    groups
        .into_iter()
        .map(|((slice, source), emitters)| NewSample {
            session_id: Some(session.id),
            source: source.to_string(),
            device: Some(session.device.clone()),
            x: session.x,
            y: session.y,
            floor: session.floor,
            building: session.building.clone(),
            at_ms: Some(session.start_ms + slice * slice_ms),
            readings: emitters
                .into_iter()
                .map(|(e, (sum, n))| (e.to_string(), (sum / f64::from(n)) as f32))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positioning::rssi_to_distance;
    use crate::storage::training::{SOURCE_BLE, SOURCE_IMPORT};

    fn rec(source: &str, x: f64, y: f64, readings: Vec<(String, f32)>) -> SampleRecord {
        SampleRecord {
            id: 0,
            session_id: None,
            source: source.into(),
            device: None,
            x,
            y,
            floor: 0,
            building: "hq".into(),
            at_ms: None,
            readings,
            created_ms: 0,
        }
    }

    fn receivers() -> Vec<ReceiverPlace> {
        [
            ("rx-a", 0.0, 0.0),
            ("rx-b", 20.0, 0.0),
            ("rx-c", 0.0, 20.0),
            ("rx-d", 20.0, 20.0),
        ]
        .iter()
        .map(|&(n, x, y)| ReceiverPlace {
            node: n.into(),
            x,
            y,
            floor: 0,
        })
        .collect()
    }

    /// Noise-free BLE samples of a grid of places, from receivers with known path loss.
    fn grid(a: f32, n: f32) -> Vec<SampleRecord> {
        let rx = receivers();
        let mut out = Vec::new();
        for i in 0..8 {
            for j in 0..8 {
                let (x, y) = (1.0 + 2.5 * f64::from(i), 1.0 + 2.5 * f64::from(j));
                let readings = rx
                    .iter()
                    .map(|r| {
                        let d = ((x - r.x).powi(2) + (y - r.y).powi(2)).sqrt();
                        (ble_key(&r.node), a - 10.0 * n * d.log10() as f32)
                    })
                    .collect();
                out.push(rec(SOURCE_BLE, x, y, readings));
            }
        }
        out
    }

    #[test]
    fn fits_path_loss_of_every_receiver_with_enough_readings() {
        let samples = grid(-52.0, 2.7);
        let mut rx = receivers();
        rx.push(ReceiverPlace {
            node: "rx-silent".into(),
            x: 5.0,
            y: 5.0,
            floor: 0,
        });
        let report = fit_receivers(&samples, &rx, 3.5);
        assert_eq!(report.fitted.len(), 4);
        for f in &report.fitted {
            assert!((f.rssi_at_1m + 52.0).abs() < 0.01, "{f:?}");
            assert!((f.exponent - 2.7).abs() < 0.01, "{f:?}");
            assert_eq!(f.samples, 64);
        }
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].receiver, "rx-silent");
        assert!(report.skipped[0].reason.contains("0 calibration readings"));
        // the fitted model inverts back to the true distance
        let f = report.get("rx-a").unwrap();
        let d = rssi_to_distance(-52.0 - 27.0, f.rssi_at_1m, f.exponent);
        assert!((d - 10.0).abs() < 0.05);
    }

    #[test]
    fn implausible_or_degenerate_fits_keep_the_configured_values() {
        // one place only: every distance equal
        let one: Vec<SampleRecord> = (0..10)
            .map(|_| rec(SOURCE_BLE, 3.0, 4.0, vec![(ble_key("rx-a"), -60.0)]))
            .collect();
        let r = fit_receivers(&one, &receivers()[..1], 3.5);
        assert!(r.fitted.is_empty());
        assert!(r.skipped[0].reason.contains("too alike"), "{r:?}");
        // RSSI growing with distance: negative exponent
        let wrong: Vec<SampleRecord> = (1..10)
            .map(|i| {
                rec(
                    SOURCE_BLE,
                    f64::from(i),
                    0.0,
                    vec![(ble_key("rx-a"), -90.0 + 3.0 * i as f32)],
                )
            })
            .collect();
        let r = fit_receivers(&wrong, &receivers()[..1], 3.5);
        assert!(r.fitted.is_empty());
        assert!(r.skipped[0].reason.contains("implausible"), "{r:?}");
        // imported (WiFi) samples never feed receiver fits
        let imported: Vec<SampleRecord> = grid(-52.0, 2.7)
            .into_iter()
            .map(|mut s| {
                s.source = SOURCE_IMPORT.into();
                s
            })
            .collect();
        assert!(fit_receivers(&imported, &receivers(), 3.5)
            .fitted
            .is_empty());
    }

    #[test]
    fn trains_a_model_with_room_hit_rate_and_progress() {
        let samples = grid(-52.0, 2.7);
        let rooms = vec![
            Room {
                id: "west".into(),
                floor: 0,
                polygon: vec![(0.0, 0.0), (10.0, 0.0), (10.0, 20.0), (0.0, 20.0)],
                doors: vec![],
            },
            Room {
                id: "east".into(),
                floor: 0,
                polygon: vec![(10.0, 0.0), (20.0, 0.0), (20.0, 20.0), (10.0, 20.0)],
                doors: vec![],
            },
        ];
        let opts = TrainOptions {
            max_k: 5,
            ..TrainOptions::default()
        };
        let mut seen = Vec::new();
        let out = train_model(&samples, &receivers(), &rooms, 3.5, &opts, &mut |p| {
            seen.push(p)
        })
        .unwrap();
        assert_eq!(out.samples_used, 64);
        assert_eq!(out.model.buildings, vec!["hq".to_string()]);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress goes up");
        assert_eq!(seen.last().copied(), Some(1.0));
        let acc = &out.accuracy;
        assert!(acc.queries > 0 && acc.folds >= 2);
        assert!(acc.mean_error < 2.5, "{acc:?}");
        assert_eq!(acc.floor_hit_rate, 1.0);
        assert!(acc.room_hit_rate.unwrap() > 0.8, "{acc:?}");
        assert_eq!(acc.room_queries, 64);
        assert_eq!(out.path_loss.fitted.len(), 4);
        // the trained model locates a known place from its scan
        let est = out
            .model
            .fingerprint
            .locate(&[
                ("ble:rx-a", samples[9].readings[0].1),
                ("ble:rx-b", samples[9].readings[1].1),
                ("ble:rx-c", samples[9].readings[2].1),
                ("ble:rx-d", samples[9].readings[3].1),
            ])
            .unwrap();
        let err = ((est.x - samples[9].x).powi(2) + (est.y - samples[9].y).powi(2)).sqrt();
        // k > 1 neighbours are averaged: within one grid step (2.5 m)
        assert!(err <= 2.5, "error {err}");
    }

    #[test]
    fn no_usable_sample_is_an_error() {
        let empty = vec![rec(SOURCE_IMPORT, 0.0, 0.0, vec![])];
        let r = train_model(&empty, &[], &[], 3.5, &TrainOptions::default(), &mut |_| {});
        assert!(matches!(r, Err(TrainError::NoData)));
        assert!(matches!(
            train_model(&[], &[], &[], 3.5, &TrainOptions::default(), &mut |_| {}),
            Err(TrainError::NoData)
        ));
    }

    #[test]
    fn buildings_by_name_become_indices() {
        let mut a = rec(SOURCE_IMPORT, 0.0, 0.0, vec![("wifi:x".into(), -50.0)]);
        a.building = "b".into();
        let mut b = a.clone();
        b.building = "a".into();
        let (data, names) = dataset(&[a, b]);
        assert_eq!(names, ["a", "b"]);
        assert_eq!(data.samples[0].building, 1);
        assert_eq!(data.samples[1].building, 0);
    }

    #[test]
    fn calibration_windows_become_sliced_mean_samples() {
        let session = CalibrationRecord {
            id: 7,
            device: "tag-1".into(),
            x: 3.0,
            y: 4.0,
            floor: 1,
            building: "hq".into(),
            start_ms: 10_000,
            end_ms: 14_000,
            state: "collecting".into(),
            samples: 0,
            error: None,
            created_ms: 0,
        };
        let r = |source, e: &str, rssi, at_ms| CalibrationReading {
            source,
            emitter: e.into(),
            rssi,
            at_ms,
        };
        let readings = vec![
            r("ble", "ble:rx-a", -60.0, 10_100),
            r("ble", "ble:rx-a", -64.0, 11_900),
            r("ble", "ble:rx-b", -70.0, 11_000),
            r("wifi", "wifi:aa", -50.0, 11_500),
            r("ble", "ble:rx-a", -61.0, 12_000),
            r("ble", "ble:rx-a", -10.0, 9_999), // before the window
            r("ble", "ble:rx-a", -10.0, 14_000), // after it
            r("ble", "ble:rx-a", f32::NAN, 12_500),
        ];
        let s = calibration_samples(&session, &readings, 2_000);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].source, "ble");
        assert_eq!(s[0].at_ms, Some(10_000));
        assert_eq!(
            s[0].readings,
            vec![("ble:rx-a".into(), -62.0), ("ble:rx-b".into(), -70.0)]
        );
        assert_eq!(s[1].source, "wifi");
        assert_eq!(s[1].readings, vec![("wifi:aa".into(), -50.0)]);
        assert_eq!(s[2].at_ms, Some(12_000));
        assert_eq!(s[2].readings, vec![("ble:rx-a".into(), -61.0)]);
        assert!(s.iter().all(|x| x.session_id == Some(7)
            && (x.x, x.y, x.floor) == (3.0, 4.0, 1)
            && x.device.as_deref() == Some("tag-1")));
        assert!(calibration_samples(&session, &[], 2_000).is_empty());
    }

    #[test]
    fn emitter_keys_are_prefixed_and_lower_case() {
        assert_eq!(wifi_key(" AA:BB:cc:00:11:22 "), "wifi:aa:bb:cc:00:11:22");
        assert_eq!(ble_key("Node-1"), "ble:node-1");
    }
}
