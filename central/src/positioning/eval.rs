//! Accuracy and latency evaluation of the estimators on labelled test scans.

use std::io::BufRead;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::fingerprint::{
    percentile, train, CvReport, Dataset, FingerprintModel, Params, TrainError, TrainOptions,
};
use super::multilat::{fit_path_loss, multilaterate, Anchor, MultilatConfig};
use super::uji::{read_uji, UjiError};
use super::Estimate;

/// Accuracy of an estimator on a test set. Rates are over all `n` scans: a scan that
/// could not be located counts as a building and floor miss and is left out of errors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub n: usize,
    pub unlocated: usize,
    pub building_hit_rate: f64,
    pub floor_hit_rate: f64,
    pub mean_error: f64,
    pub median_error: f64,
    pub p75_error: f64,
    pub p95_error: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    /// Set by [`run_eval`].
    pub training_ms: Option<u64>,
    pub params: Option<Params>,
    pub cv: Option<CvReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("training file: {0}")]
    TrainFile(#[source] UjiError),
    #[error("test file: {0}")]
    TestFile(#[source] UjiError),
    #[error("training failed: {0}")]
    Train(#[from] TrainError),
    #[error("anchors file: line {line}, column {column}: {message}")]
    Anchors {
        line: usize,
        column: String,
        message: String,
    },
}

/// What [`run_eval`] trains and tests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Method {
    /// Fingerprint kNN with hyper-parameters chosen by cross-validation.
    Fingerprint(TrainOptions),
    /// Fingerprint kNN with fixed hyper-parameters (no cross-validation).
    FingerprintFixed(Params),
    /// Multilateration against anchors at known positions; the training file calibrates
    /// each anchor's path-loss model (see [`calibrate_anchors`]).
    Multilateration {
        anchors: Vec<Anchor>,
        config: MultilatConfig,
    },
}

struct Tally {
    n: usize,
    unlocated: usize,
    b_hits: usize,
    f_hits: usize,
    errors: Vec<f64>,
    lat_us: Vec<f64>,
}

impl Tally {
    fn new(n: usize) -> Self {
        Self {
            n,
            unlocated: 0,
            b_hits: 0,
            f_hits: 0,
            errors: Vec::with_capacity(n),
            lat_us: Vec::with_capacity(n),
        }
    }

    fn add(
        &mut self,
        truth: &super::fingerprint::Sample,
        est: Option<Estimate>,
        micros: f64,
        check_building: bool,
    ) {
        self.lat_us.push(micros);
        let Some(e) = est else {
            self.unlocated += 1;
            return;
        };
        let b_ok = !check_building || e.building == truth.building;
        if b_ok {
            self.b_hits += 1;
            if e.floor == truth.floor {
                self.f_hits += 1;
            }
        }
        self.errors
            .push(((e.x - truth.x).powi(2) + (e.y - truth.y).powi(2)).sqrt());
    }

    fn report(mut self) -> EvalReport {
        self.errors.sort_by(f64::total_cmp);
        self.lat_us.sort_by(f64::total_cmp);
        let n = self.n.max(1) as f64;
        EvalReport {
            n: self.n,
            unlocated: self.unlocated,
            building_hit_rate: self.b_hits as f64 / n,
            floor_hit_rate: self.f_hits as f64 / n,
            mean_error: if self.errors.is_empty() {
                0.0
            } else {
                self.errors.iter().sum::<f64>() / self.errors.len() as f64
            },
            median_error: percentile(&self.errors, 0.5),
            p75_error: percentile(&self.errors, 0.75),
            p95_error: percentile(&self.errors, 0.95),
            latency_p50_us: percentile(&self.lat_us, 0.5),
            latency_p99_us: percentile(&self.lat_us, 0.99),
            training_ms: None,
            params: None,
            cv: None,
        }
    }
}

/// Locate every test scan with `model` (one at a time, on this thread) and compare with
/// the labels. Floor hit requires the building to be right as well.
pub fn evaluate(
    model: &FingerprintModel,
    test: &Dataset,
    progress: &mut dyn FnMut(f32),
) -> EvalReport {
    let mut t = Tally::new(test.samples.len());
    let every = (test.samples.len() / 100).max(1);
    for (i, s) in test.samples.iter().enumerate() {
        let scan = test.named_readings(s);
        let start = Instant::now();
        let est = model.locate(&scan);
        let micros = start.elapsed().as_secs_f64() * 1e6;
        t.add(s, est, micros, true);
        if i % every == 0 {
            progress(i as f32 / test.samples.len() as f32);
        }
    }
    progress(1.0);
    let mut r = t.report();
    r.params = Some(model.params.clone());
    r.cv = Some(model.cv.clone());
    r
}

/// Multilaterate every test scan whose emitters are `anchors` (building is not checked:
/// anchors carry none).
pub fn evaluate_multilat(
    anchors: &[Anchor],
    config: &MultilatConfig,
    test: &Dataset,
    progress: &mut dyn FnMut(f32),
) -> EvalReport {
    let mut t = Tally::new(test.samples.len());
    let every = (test.samples.len() / 100).max(1);
    for (i, s) in test.samples.iter().enumerate() {
        let scan = test.named_readings(s);
        let start = Instant::now();
        let est = multilaterate(anchors, &scan, config);
        let micros = start.elapsed().as_secs_f64() * 1e6;
        t.add(s, est, micros, false);
        if i % every == 0 {
            progress(i as f32 / test.samples.len() as f32);
        }
    }
    progress(1.0);
    t.report()
}

/// Fit each anchor's path-loss model to labelled scans (distance from the labelled
/// position, including floor height). Anchors with fewer than `min_samples` readings keep
/// their current model. Returns how many anchors were calibrated.
pub fn calibrate_anchors(
    anchors: &mut [Anchor],
    data: &Dataset,
    floor_height_m: f64,
    min_samples: usize,
) -> usize {
    let mut per: Vec<Vec<(f64, f32)>> = vec![Vec::new(); anchors.len()];
    let ids: std::collections::HashMap<&str, usize> = data
        .emitters
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let slot: Vec<Option<usize>> = {
        let mut v = vec![None; data.emitters.len()];
        for (ai, a) in anchors.iter().enumerate() {
            if let Some(&e) = ids.get(a.id.as_str()) {
                v[e] = Some(ai);
            }
        }
        v
    };
    for s in &data.samples {
        for &(e, rssi) in &s.readings {
            if let Some(ai) = slot[e as usize] {
                let a = &anchors[ai];
                let dz = f64::from(s.floor - a.floor) * floor_height_m;
                let d = ((s.x - a.x).powi(2) + (s.y - a.y).powi(2) + dz * dz)
                    .sqrt()
                    .max(0.1);
                per[ai].push((d, rssi));
            }
        }
    }
    let mut n = 0;
    for (a, samples) in anchors.iter_mut().zip(&per) {
        if samples.len() >= min_samples.max(2) {
            let (p0, exp) = fit_path_loss(samples);
            // An exponent outside the physical range means the fit saw noise, not a model.
            if (1.0..=6.0).contains(&exp) {
                a.rssi_at_1m = p0;
                a.exponent = exp;
                n += 1;
            }
        }
    }
    n
}

/// Read anchors from CSV `id,x,y,floor[,tx_power]` (tx_power = RSSI at 1 m, dBm).
/// A first line starting with `id` is a header. Errors name line and column.
pub fn read_anchors(reader: impl BufRead) -> Result<Vec<Anchor>, EvalError> {
    const COLS: [&str; 5] = ["id", "x", "y", "floor", "tx_power"];
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| EvalError::Anchors {
            line: line_no,
            column: "-".into(),
            message: e.to_string(),
        })?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        if line_no == 1 && fields[0].eq_ignore_ascii_case("id") {
            continue;
        }
        let err = |col: usize, message: String| EvalError::Anchors {
            line: line_no,
            column: COLS.get(col).copied().unwrap_or("(extra)").to_string(),
            message,
        };
        if fields.len() < 4 {
            return Err(err(fields.len(), "missing value".into()));
        }
        if fields.len() > 5 {
            return Err(err(
                5,
                format!("{} fields, at most 5 expected", fields.len()),
            ));
        }
        if fields[0].is_empty() {
            return Err(err(0, "empty id".into()));
        }
        let num = |col: usize| -> Result<f64, EvalError> {
            fields[col]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(col, format!("cannot parse {:?} as a number", fields[col])))
        };
        let mut a = Anchor::new(fields[0], num(1)?, num(2)?, 0);
        a.floor = fields[3].parse::<i32>().map_err(|_| {
            err(
                3,
                format!("cannot parse {:?} as an integer floor", fields[3]),
            )
        })?;
        if fields.len() == 5 && !fields[4].is_empty() {
            a.rssi_at_1m = num(4)? as f32;
        }
        out.push(a);
    }
    Ok(out)
}

/// The whole evaluation flow: read the training file (UJIIndoorLoc layout), train with
/// progress, read the test file, evaluate. `progress` gets a phase name and 0..1.
pub fn run_eval(
    train_file: impl BufRead,
    test_file: impl BufRead,
    method: Method,
    progress: &mut dyn FnMut(&str, f32),
) -> Result<EvalReport, EvalError> {
    progress("read-train", 0.0);
    let train_data = read_uji(train_file).map_err(EvalError::TrainFile)?;
    progress("read-train", 1.0);
    progress("read-test", 0.0);
    let test_data = read_uji(test_file).map_err(EvalError::TestFile)?;
    progress("read-test", 1.0);
    let started = Instant::now();
    match method {
        Method::Fingerprint(opts) => {
            let model = train(&train_data, &opts, &mut |p| progress("train", p))?;
            let training_ms = started.elapsed().as_millis() as u64;
            let mut r = evaluate(&model, &test_data, &mut |p| progress("evaluate", p));
            r.training_ms = Some(training_ms);
            Ok(r)
        }
        Method::FingerprintFixed(params) => {
            progress("train", 0.0);
            let model = FingerprintModel::build(&train_data, params)?;
            progress("train", 1.0);
            let training_ms = started.elapsed().as_millis() as u64;
            let mut r = evaluate(&model, &test_data, &mut |p| progress("evaluate", p));
            r.training_ms = Some(training_ms);
            Ok(r)
        }
        Method::Multilateration {
            mut anchors,
            config,
        } => {
            progress("train", 0.0);
            calibrate_anchors(&mut anchors, &train_data, config.floor_height_m, 5);
            progress("train", 1.0);
            let training_ms = started.elapsed().as_millis() as u64;
            let mut r = evaluate_multilat(&anchors, &config, &test_data, &mut |p| {
                progress("evaluate", p)
            });
            r.training_ms = Some(training_ms);
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/fixtures` of the workspace, or `ROOMSENSE_FIXTURES_DIR` when set.
    fn fixture(name: &str) -> Option<std::io::BufReader<std::fs::File>> {
        let dir = std::env::var_os("ROOMSENSE_FIXTURES_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
            });
        std::fs::File::open(dir.join(name))
            .ok()
            .map(std::io::BufReader::new)
    }

    #[test]
    fn end_to_end_on_uji_fixture() {
        let (Some(train), Some(test)) = (
            fixture("uji-train-small.csv"),
            fixture("uji-test-small.csv"),
        ) else {
            panic!("fixtures tests/fixtures/uji-{{train,test}}-small.csv missing");
        };
        let mut phases = Vec::new();
        let opts = TrainOptions {
            max_cv_queries: 400,
            ..TrainOptions::default()
        };
        let r = run_eval(train, test, Method::Fingerprint(opts), &mut |ph, p| {
            assert!((0.0..=1.0).contains(&p));
            if phases.last() != Some(&ph.to_string()) {
                phases.push(ph.to_string());
            }
        })
        .unwrap();
        assert_eq!(phases, ["read-train", "read-test", "train", "evaluate"]);
        assert!(r.n >= 40);
        assert!(r.building_hit_rate > 0.95, "{r:?}");
        assert!(r.floor_hit_rate > 0.7, "{r:?}");
        assert!(r.mean_error < 20.0, "{r:?}");
        assert!(r.cv.as_ref().is_some_and(|cv| cv.queries > 0));
    }

    #[test]
    fn anchors_csv_errors_name_line_and_column() {
        let ok = "id,x,y,floor,tx_power\nap1,1.5,2,0,-45\nap2,3,4,1\n";
        let a = read_anchors(ok.as_bytes()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].rssi_at_1m, -45.0);
        assert_eq!(a[1].floor, 1);
        let e = read_anchors("ap1,1,2,0\nap2,1,zz,0\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("column y"), "{e}");
        let e = read_anchors("ap1,1,2\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("column floor"), "{e}");
        let e = read_anchors("ap1,1,2,1.5\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("column floor"), "{e}");
    }

    #[test]
    fn multilat_eval_on_simulated_anchor_data() {
        // Emitters with known positions; scans simulated from a path-loss model that the
        // calibration has to discover (anchors start with wrong defaults).
        let truth: Vec<Anchor> = (0..6)
            .map(|i| Anchor {
                rssi_at_1m: -42.0 - i as f32,
                exponent: 2.3 + 0.1 * i as f32,
                ..Anchor::new(
                    format!("ap{i}"),
                    (i % 3) as f64 * 15.0,
                    (i / 3) as f64 * 12.0,
                    0,
                )
            })
            .collect();
        let scan_at = |x: f64, y: f64| -> Vec<(String, f32)> {
            truth
                .iter()
                .map(|a| {
                    let d = ((x - a.x).powi(2) + (y - a.y).powi(2)).sqrt().max(0.1);
                    (
                        a.id.clone(),
                        (f64::from(a.rssi_at_1m) - 10.0 * f64::from(a.exponent) * d.log10()) as f32,
                    )
                })
                .collect()
        };
        let mut train = Dataset::new();
        let mut test = Dataset::new();
        for i in 0..40 {
            let (x, y) = ((i % 8) as f64 * 4.0 + 0.5, (i / 8) as f64 * 3.0 + 0.7);
            let s = scan_at(x, y);
            let s: Vec<(&str, f32)> = s.iter().map(|(a, r)| (a.as_str(), *r)).collect();
            train.push(&s, x, y, 0, 0);
            test.push(&s, x + 0.3, y + 0.2, 0, 0);
        }
        let csv = "id,x,y,floor\nap0,0,0,0\nap1,15,0,0\nap2,30,0,0\nap3,0,12,0\nap4,15,12,0\nap5,30,12,0\n";
        let mut anchors = read_anchors(csv.as_bytes()).unwrap();
        assert_eq!(calibrate_anchors(&mut anchors, &train, 3.5, 5), 6);
        let r = evaluate_multilat(&anchors, &MultilatConfig::default(), &test, &mut |_| {});
        assert_eq!(r.unlocated, 0);
        assert!(r.floor_hit_rate > 0.99);
        // Test scans are taken 0.36 m from where they are labelled.
        assert!(r.mean_error < 0.5, "{r:?}");
    }
}
