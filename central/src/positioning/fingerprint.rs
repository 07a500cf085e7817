//! Weighted kNN fingerprinting over a sparse radio map.
//!
//! Samples are stored sparsely (only detected emitters) and queried through an inverted
//! index emitter → reference points, so a query only touches reference points that share
//! at least one emitter with it. Distances over the full (dense, missing = 0) vectors are
//! recovered from per-reference norms plus sums over the shared emitters.
//!
//! Data representations follow Torres-Sospedra et al. 2015 ("Comprehensive analysis of
//! distance and similarity measures for Wi-Fi fingerprinting indoor positioning systems"):
//! positive, exponential (alpha = 24) and powed (beta = e), all 0 for "not detected".
//!
//! The estimate is hierarchical: building by weighted vote of the k_b nearest references,
//! floor by weighted vote of the k_f nearest references of that building, position by the
//! weighted mean of the k nearest references of that building and floor. Every
//! hyper-parameter is chosen in [`train`] by cross-validation on the training data with
//! folds grouped by reference position (so a held-out point is never in the map).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::Estimate;

// ---------------------------------------------------------------------------------------
// Data set

/// One labelled scan; `readings` are (emitter index into [`Dataset::emitters`], dBm).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub readings: Vec<(u32, f32)>,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: i32,
}

/// Labelled scans with interned emitter names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Dataset {
    pub emitters: Vec<String>,
    pub samples: Vec<Sample>,
    #[serde(skip)]
    by_name: HashMap<String, u32>,
}

impl Dataset {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Index of an emitter name, adding it if new.
    pub fn emitter_id(&mut self, name: &str) -> u32 {
        // The name map is not serialized: rebuild it after deserialization.
        if self.by_name.len() != self.emitters.len() {
            self.by_name = self
                .emitters
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect();
        }
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.emitters.len() as u32;
        self.emitters.push(name.to_string());
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// Add a scan given by emitter names.
    pub fn push(&mut self, readings: &[(&str, f32)], x: f64, y: f64, floor: i32, building: i32) {
        let readings = readings
            .iter()
            .map(|&(name, rssi)| (self.emitter_id(name), rssi))
            .collect();
        self.push_sample(Sample {
            readings,
            x,
            y,
            floor,
            building,
        });
    }

    /// Add a scan whose emitter indices are already valid for this data set.
    /// Readings are sorted by emitter; duplicates keep the strongest; non-finite ones and
    /// indices out of range are dropped.
    pub fn push_sample(&mut self, mut s: Sample) {
        let n = self.emitters.len() as u32;
        s.readings.retain(|&(id, r)| id < n && r.is_finite());
        s.readings
            .sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        s.readings.dedup_by_key(|r| r.0);
        self.samples.push(s);
    }

    /// Readings of a sample as (name, rssi) pairs.
    pub fn named_readings(&self, s: &Sample) -> Vec<(&str, f32)> {
        s.readings
            .iter()
            .map(|&(id, r)| (self.emitters[id as usize].as_str(), r))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Hyper-parameters

/// How an RSSI value becomes a feature value (0 = not detected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Representation {
    /// rssi - min
    Positive,
    /// exp((rssi - min) / 24) / exp(-min / 24)
    Exponential,
    /// ((rssi - min) / -min) ^ e
    Powed,
}

impl Representation {
    pub const ALL: [Representation; 3] = [Self::Positive, Self::Exponential, Self::Powed];

    /// `min` is below the weakest RSSI of the training data, so detected values are > 0.
    #[inline]
    pub fn apply(self, rssi: f32, min: f32) -> f32 {
        let pos = rssi.min(0.0) - min;
        if pos <= 0.0 {
            return 0.0;
        }
        match self {
            Self::Positive => pos,
            Self::Exponential => (pos / 24.0).exp() / (-min / 24.0).exp(),
            Self::Powed => (pos / -min).powf(std::f32::consts::E),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Distance {
    Manhattan,
    Euclidean,
    /// 1 - cosine similarity
    Cosine,
    /// Sørensen / Bray-Curtis: sum|a-b| / sum(a+b)
    Sorensen,
}

impl Distance {
    pub const ALL: [Distance; 4] = [
        Self::Manhattan,
        Self::Euclidean,
        Self::Cosine,
        Self::Sorensen,
    ];

    /// Dense distance from the norms of both vectors and the sums over shared emitters.
    #[inline]
    fn finish(self, q: &Norms, r: &Norms, sum_min: f32, dot: f32) -> f32 {
        match self {
            Self::Manhattan => (q.l1 + r.l1 - 2.0 * sum_min).max(0.0),
            Self::Euclidean => (q.l2sq + r.l2sq - 2.0 * dot).max(0.0).sqrt(),
            Self::Cosine => {
                let den = (q.l2sq * r.l2sq).sqrt();
                if den > 0.0 {
                    (1.0 - dot / den).max(0.0)
                } else {
                    1.0
                }
            }
            Self::Sorensen => {
                let den = q.l1 + r.l1;
                if den > 0.0 {
                    ((den - 2.0 * sum_min) / den).max(0.0)
                } else {
                    1.0
                }
            }
        }
    }
}

/// Neighbour weights for votes and position averaging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Weighting {
    Uniform,
    InverseDistance,
    InverseSquare,
}

impl Weighting {
    pub const ALL: [Weighting; 3] = [Self::Uniform, Self::InverseDistance, Self::InverseSquare];

    #[inline]
    fn weight(self, d: f32) -> f64 {
        // The epsilon keeps an exact match from producing an infinite weight.
        let d = f64::from(d) + 1e-6;
        match self {
            Self::Uniform => 1.0,
            Self::InverseDistance => 1.0 / d,
            Self::InverseSquare => 1.0 / (d * d),
        }
    }
}

/// How samples taken at the same reference point (same x, y, floor, building) are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Merge {
    /// Every sample is its own reference.
    None,
    /// One reference per point: mean feature value with "not detected" counted as 0, so
    /// an emitter seen in half the scans weighs half (keeps the detection rate).
    Mean,
    /// One reference per point: feature of the mean RSSI over the scans that detected
    /// the emitter, kept if at least half of the scans detected it.
    MeanDetected,
}

/// Chosen hyper-parameters of a fingerprint model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub representation: Representation,
    pub distance: Distance,
    pub merge: Merge,
    /// Neighbours voting for the building.
    pub k_building: usize,
    pub w_building: Weighting,
    /// Neighbours (within the chosen building) voting for the floor.
    pub k_floor: usize,
    pub w_floor: Weighting,
    /// Neighbours (within building and floor) averaged for the position.
    pub k: usize,
    pub w_position: Weighting,
    /// Adaptive k: only neighbours with distance <= d_1 * (1 + tau) are averaged.
    pub tau: Option<f32>,
    /// Feature origin: just below the weakest RSSI seen in training.
    pub min_rssi: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            representation: Representation::Powed,
            distance: Distance::Manhattan,
            merge: Merge::None,
            k_building: 3,
            w_building: Weighting::Uniform,
            k_floor: 3,
            w_floor: Weighting::Uniform,
            k: 3,
            w_position: Weighting::InverseDistance,
            tau: None,
            min_rssi: -105.0,
        }
    }
}

/// What to search in [`train`]. The defaults search the whole grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainOptions {
    pub representations: Vec<Representation>,
    pub distances: Vec<Distance>,
    pub merges: Vec<Merge>,
    pub weightings: Vec<Weighting>,
    /// Largest k tried at every stage.
    pub max_k: usize,
    /// Adaptive-k thresholds tried besides "off".
    pub taus: Vec<f32>,
    /// Cross-validation folds (grouped by reference position).
    pub folds: usize,
    /// Cap on held-out queries per configuration (spread evenly over the data).
    pub max_cv_queries: usize,
    /// Floor penalty (units of x/y) per wrong floor when comparing configurations
    /// (EvAAL/IPIN competition metric: 4 m per floor, 50 m per building).
    pub floor_penalty: f64,
    pub building_penalty: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            representations: Representation::ALL.to_vec(),
            distances: Distance::ALL.to_vec(),
            merges: vec![Merge::None, Merge::Mean, Merge::MeanDetected],
            weightings: Weighting::ALL.to_vec(),
            max_k: 15,
            taus: vec![0.05, 0.1, 0.2, 0.4],
            folds: 5,
            max_cv_queries: 4000,
            floor_penalty: 4.0,
            building_penalty: 50.0,
        }
    }
}

/// Cross-validated accuracy of the chosen configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    pub folds: usize,
    pub queries: usize,
    pub building_hit_rate: f64,
    pub floor_hit_rate: f64,
    pub mean_error: f64,
    pub median_error: f64,
    pub p75_error: f64,
    pub p95_error: f64,
    /// mean error + floor and building penalties: what the configurations were ranked by.
    pub score: f64,
    pub configurations_tried: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training sample has any reading")]
    NoData,
    #[error("invalid training options: {0}")]
    Options(String),
}

// ---------------------------------------------------------------------------------------
// Radio map and index

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Norms {
    l1: f32,
    l2sq: f32,
}

impl Norms {
    fn of(values: &[(u32, f32)]) -> Self {
        let mut n = Norms::default();
        for &(_, v) in values {
            n.l1 += v;
            n.l2sq += v * v;
        }
        n
    }
}

/// One reference point of the radio map (features, not RSSI).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RefPoint {
    x: f64,
    y: f64,
    floor: i32,
    building: i32,
    features: Vec<(u32, f32)>,
    samples: u32,
}

#[derive(Debug, Default)]
struct Index {
    postings: Vec<Vec<(u32, f32)>>,
    norms: Vec<Norms>,
    /// (building, floor) per reference, compact for the filtering passes.
    labels: Vec<(i32, i32)>,
}

impl Index {
    fn build(n_emitters: usize, refs: &[RefPoint]) -> Self {
        let mut postings = vec![Vec::new(); n_emitters];
        let mut norms = Vec::with_capacity(refs.len());
        for (i, r) in refs.iter().enumerate() {
            for &(e, v) in &r.features {
                if let Some(p) = postings.get_mut(e as usize) {
                    p.push((i as u32, v));
                }
            }
            norms.push(Norms::of(&r.features));
        }
        let labels = refs.iter().map(|r| (r.building, r.floor)).collect();
        Self {
            postings,
            norms,
            labels,
        }
    }

    /// Distances to every reference sharing an emitter with `q`, unsorted.
    fn distances(
        &self,
        q: &[(u32, f32)],
        dist: Distance,
        scratch: &mut Scratch,
        out: &mut Vec<(f32, u32)>,
    ) {
        out.clear();
        let n = self.norms.len();
        if scratch.sum_min.len() != n {
            scratch.sum_min = vec![0.0; n];
            scratch.dot = vec![0.0; n];
            scratch.seen = vec![false; n];
        }
        scratch.touched.clear();
        // Only the sum a distance needs is accumulated (min for L1-type, dot for L2-type).
        let use_min = matches!(dist, Distance::Manhattan | Distance::Sorensen);
        for &(e, qv) in q {
            let Some(p) = self.postings.get(e as usize) else {
                continue;
            };
            let (acc, seen, touched) = if use_min {
                (
                    &mut scratch.sum_min,
                    &mut scratch.seen,
                    &mut scratch.touched,
                )
            } else {
                (&mut scratch.dot, &mut scratch.seen, &mut scratch.touched)
            };
            for &(r, rv) in p {
                let r = r as usize;
                if !seen[r] {
                    seen[r] = true;
                    touched.push(r as u32);
                }
                acc[r] += if use_min { qv.min(rv) } else { qv * rv };
            }
        }
        let qn = Norms::of(q);
        for &r in &scratch.touched {
            let ri = r as usize;
            let d = dist.finish(&qn, &self.norms[ri], scratch.sum_min[ri], scratch.dot[ri]);
            out.push((d, r));
            scratch.sum_min[ri] = 0.0;
            scratch.dot[ri] = 0.0;
            scratch.seen[ri] = false;
        }
    }

    /// Distances to every reference sharing an emitter with `q`, sorted ascending
    /// (ties by reference index, so the answer does not depend on input order).
    #[cfg(test)]
    fn search(
        &self,
        q: &[(u32, f32)],
        dist: Distance,
        scratch: &mut Scratch,
        out: &mut Vec<(f32, u32)>,
    ) {
        self.distances(q, dist, scratch, out);
        out.sort_unstable_by(cmp_cand);
    }
}

fn cmp_cand(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// Keep the `m` nearest candidates, sorted (exact: ties broken by reference index).
fn nearest(c: &mut Vec<(f32, u32)>, m: usize) {
    if m == 0 {
        c.clear();
        return;
    }
    if c.len() > m {
        c.select_nth_unstable_by(m - 1, cmp_cand);
        c.truncate(m);
    }
    c.sort_unstable_by(cmp_cand);
}

type Buffers = (Scratch, Vec<(f32, u32)>, Vec<(f32, u32)>);

thread_local! {
    // Per-thread query buffers: a query allocates nothing once the thread is warm.
    static SCRATCH: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Default::default());
}

#[derive(Default)]
struct Scratch {
    sum_min: Vec<f32>,
    dot: Vec<f32>,
    seen: Vec<bool>,
    touched: Vec<u32>,
}

fn features(readings: &[(u32, f32)], rep: Representation, min: f32) -> Vec<(u32, f32)> {
    readings
        .iter()
        .map(|&(e, r)| (e, rep.apply(r, min)))
        .filter(|&(_, v)| v > 0.0)
        .collect()
}

type PosKey = (u64, u64, i32, i32);

fn pos_key(s: &Sample) -> PosKey {
    (s.x.to_bits(), s.y.to_bits(), s.floor, s.building)
}

/// Build reference points from samples (indices into `data.samples`).
fn build_refs(
    data: &Dataset,
    idx: &[usize],
    rep: Representation,
    merge: Merge,
    min: f32,
) -> Vec<RefPoint> {
    let usable = idx
        .iter()
        .copied()
        .filter(|&i| !data.samples[i].readings.is_empty());
    if merge == Merge::None {
        return usable
            .map(|i| {
                let s = &data.samples[i];
                RefPoint {
                    x: s.x,
                    y: s.y,
                    floor: s.floor,
                    building: s.building,
                    features: features(&s.readings, rep, min),
                    samples: 1,
                }
            })
            .filter(|r| !r.features.is_empty())
            .collect();
    }
    let mut groups: HashMap<PosKey, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for i in usable {
        let g = *groups.entry(pos_key(&data.samples[i])).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[g].push(i);
    }
    let mut acc: HashMap<u32, (f64, u32)> = HashMap::new();
    let mut refs = Vec::with_capacity(members.len());
    for m in members {
        acc.clear();
        let n = m.len() as f64;
        for &i in &m {
            for &(e, r) in &data.samples[i].readings {
                let v = match merge {
                    Merge::MeanDetected => f64::from(r),
                    _ => f64::from(rep.apply(r, min)),
                };
                let a = acc.entry(e).or_insert((0.0, 0));
                a.0 += v;
                a.1 += 1;
            }
        }
        let mut feats: Vec<(u32, f32)> = acc
            .iter()
            .filter_map(|(&e, &(sum, cnt))| match merge {
                Merge::MeanDetected => (f64::from(cnt) * 2.0 >= n)
                    .then(|| (e, rep.apply((sum / f64::from(cnt)) as f32, min))),
                _ => Some((e, (sum / n) as f32)),
            })
            .filter(|&(_, v)| v > 0.0)
            .collect();
        feats.sort_by_key(|f| f.0);
        if feats.is_empty() {
            continue;
        }
        let s = &data.samples[m[0]];
        refs.push(RefPoint {
            x: s.x,
            y: s.y,
            floor: s.floor,
            building: s.building,
            features: feats,
            samples: m.len() as u32,
        });
    }
    // Deterministic order whatever the hash map did.
    refs.sort_by(|a, b| {
        (a.building, a.floor)
            .cmp(&(b.building, b.floor))
            .then(a.x.total_cmp(&b.x))
            .then(a.y.total_cmp(&b.y))
    });
    refs
}

// ---------------------------------------------------------------------------------------
// Hierarchical prediction

/// A neighbour as the prediction stages see it.
#[derive(Clone, Copy, Debug)]
struct Nb {
    d: f32,
    x: f64,
    y: f64,
    floor: i32,
    building: i32,
}

fn vote<I: Iterator<Item = (i32, f32)>>(items: I, w: Weighting) -> Option<(i32, f64)> {
    let mut tally: Vec<(i32, f64)> = Vec::new();
    let mut total = 0.0;
    for (label, d) in items {
        let wt = w.weight(d);
        total += wt;
        match tally.iter_mut().find(|t| t.0 == label) {
            Some(t) => t.1 += wt,
            None => tally.push((label, wt)),
        }
    }
    // Ties go to the label seen first, i.e. the nearest one.
    let mut best: Option<(i32, f64)> = None;
    for &(l, wt) in &tally {
        if best.is_none_or(|b| wt > b.1) {
            best = Some((l, wt));
        }
    }
    best.map(|(l, wt)| (l, if total > 0.0 { wt / total } else { 0.0 }))
}

fn predict_building(nbs: &[Nb], k: usize, w: Weighting) -> Option<(i32, f64)> {
    vote(nbs.iter().take(k).map(|n| (n.building, n.d)), w)
}

fn predict_floor(nbs: &[Nb], b: i32, k: usize, w: Weighting) -> Option<(i32, f64)> {
    vote(
        nbs.iter()
            .filter(|n| n.building == b)
            .take(k)
            .map(|n| (n.floor, n.d)),
        w,
    )
}

/// Weighted mean position and weighted RMS spread of the chosen neighbours.
fn predict_position(
    nbs: &[Nb],
    b: i32,
    f: i32,
    k: usize,
    w: Weighting,
    tau: Option<f32>,
) -> Option<(f64, f64, f64, usize)> {
    let mut it = nbs
        .iter()
        .filter(|n| n.building == b && n.floor == f)
        .take(k)
        .peekable();
    let d1 = it.peek()?.d;
    let limit = tau.map_or(f32::INFINITY, |t| d1 * (1.0 + t));
    let (mut sx, mut sy, mut sw, mut used) = (0.0, 0.0, 0.0, 0usize);
    let mut chosen = [(0.0f64, 0.0f64, 0.0f64); 64];
    for n in it {
        if used > 0 && n.d > limit {
            break;
        }
        let wt = w.weight(n.d);
        sx += wt * n.x;
        sy += wt * n.y;
        sw += wt;
        if used < chosen.len() {
            chosen[used] = (n.x, n.y, wt);
        }
        used += 1;
    }
    if sw <= 0.0 {
        return None;
    }
    let (mx, my) = (sx / sw, sy / sw);
    let var: f64 = chosen[..used.min(64)]
        .iter()
        .map(|&(x, y, wt)| wt * ((x - mx).powi(2) + (y - my).powi(2)))
        .sum::<f64>()
        / sw;
    Some((mx, my, var.sqrt(), used))
}

// ---------------------------------------------------------------------------------------
// Model

/// A trained fingerprint model (serde: store it as JSON, versioned, in the database).
#[derive(Debug, Serialize, Deserialize)]
pub struct FingerprintModel {
    pub params: Params,
    pub cv: CvReport,
    pub emitters: Vec<String>,
    refs: Vec<RefPoint>,
    /// Derived from `refs`/`emitters`; rebuilt on first use after deserialization.
    #[serde(skip)]
    index: OnceLock<(Index, HashMap<String, u32>)>,
}

impl Clone for FingerprintModel {
    fn clone(&self) -> Self {
        Self {
            params: self.params.clone(),
            cv: self.cv.clone(),
            emitters: self.emitters.clone(),
            refs: self.refs.clone(),
            index: OnceLock::new(),
        }
    }
}

impl FingerprintModel {
    /// Build a model with fixed hyper-parameters (no cross-validation).
    pub fn build(data: &Dataset, params: Params) -> Result<Self, TrainError> {
        let all: Vec<usize> = (0..data.samples.len()).collect();
        let refs = build_refs(
            data,
            &all,
            params.representation,
            params.merge,
            params.min_rssi,
        );
        if refs.is_empty() {
            return Err(TrainError::NoData);
        }
        Ok(Self {
            params,
            cv: CvReport::default(),
            emitters: data.emitters.clone(),
            refs,
            index: OnceLock::new(),
        })
    }

    /// Number of reference points in the radio map.
    pub fn reference_points(&self) -> usize {
        self.refs.len()
    }

    fn index(&self) -> &(Index, HashMap<String, u32>) {
        self.index.get_or_init(|| {
            let names = self
                .emitters
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect();
            (Index::build(self.emitters.len(), &self.refs), names)
        })
    }

    /// Locate one scan given as (emitter id, dBm). Unknown emitters are ignored;
    /// `None` when no known emitter was heard.
    pub fn locate(&self, scan: &[(&str, f32)]) -> Option<Estimate> {
        let (_, names) = self.index();
        let q: Vec<(u32, f32)> = scan
            .iter()
            .filter_map(|&(name, rssi)| names.get(name).map(|&id| (id, rssi)))
            .collect();
        self.locate_ids(&q)
    }

    /// Locate a scan whose emitter ids are indices into `self.emitters`.
    pub fn locate_ids(&self, scan: &[(u32, f32)]) -> Option<Estimate> {
        let (index, _) = self.index();
        let p = &self.params;
        let mut q: Vec<(u32, f32)> = scan.iter().copied().filter(|r| r.1.is_finite()).collect();
        // Sort + dedup (strongest kept) so the answer does not depend on input order.
        q.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        q.dedup_by_key(|r| r.0);
        let q = features(&q, p.representation, p.min_rssi);
        if q.is_empty() {
            return None;
        }
        SCRATCH
            .with(|cell| {
                let mut guard = cell.borrow_mut();
                let (scratch, cands, stage) = &mut *guard;
                index.distances(&q, p.distance, scratch, cands);
                let nb = |&(d, r): &(f32, u32)| {
                    let r = &self.refs[r as usize];
                    Nb {
                        d,
                        x: r.x,
                        y: r.y,
                        floor: r.floor,
                        building: r.building,
                    }
                };
                // One partial selection of the M nearest serves all three stages; a stage
                // that finds fewer than its k inside that prefix falls back to an exact
                // filtered selection over every candidate, so the result is always exact.
                let m = (p.k_building.max(p.k_floor).max(p.k) * 4).max(32);
                stage.clear();
                stage.extend_from_slice(cands);
                nearest(stage, m);
                let prefix_complete = stage.len() == cands.len();
                let top: Vec<Nb> = stage.iter().map(nb).collect();
                let (b, b_share) = predict_building(&top, p.k_building, p.w_building)?;
                let in_b = top.iter().filter(|n| n.building == b).count();
                let floor_nbs: Vec<Nb> = if in_b >= p.k_floor || prefix_complete {
                    top.iter()
                        .filter(|n| n.building == b)
                        .take(p.k_floor)
                        .copied()
                        .collect()
                } else {
                    stage.clear();
                    stage.extend(cands.iter().filter(|c| index.labels[c.1 as usize].0 == b));
                    nearest(stage, p.k_floor);
                    stage.iter().map(nb).collect()
                };
                let (f, f_share) = predict_floor(&floor_nbs, b, p.k_floor, p.w_floor)?;
                let in_bf = top
                    .iter()
                    .filter(|n| n.building == b && n.floor == f)
                    .count();
                let pos_nbs: Vec<Nb> = if in_bf >= p.k || prefix_complete {
                    top.iter()
                        .filter(|n| n.building == b && n.floor == f)
                        .take(p.k)
                        .copied()
                        .collect()
                } else {
                    stage.clear();
                    stage.extend(
                        cands
                            .iter()
                            .filter(|c| index.labels[c.1 as usize] == (b, f)),
                    );
                    nearest(stage, p.k);
                    stage.iter().map(nb).collect()
                };
                let (x, y, spread, _) = predict_position(&pos_nbs, b, f, p.k, p.w_position, p.tau)?;
                Some((x, y, b, f, b_share, f_share, spread))
            })
            .map(|(x, y, b, f, b_share, f_share, spread)| {
                // Radius: the neighbours' spread, but never below the cross-validated median error.
                let radius = spread.max(self.cv.median_error);
                Estimate {
                    x,
                    y,
                    floor: f,
                    building: b,
                    confidence: (b_share * f_share).clamp(0.0, 1.0) as f32,
                    error_radius_m: radius as f32,
                    room: None,
                    room_probabilities: Vec::new(),
                    method: "fingerprint-knn".to_string(),
                }
            })
    }
}

// ---------------------------------------------------------------------------------------
// Training by cross-validation

/// Deterministic fold of a reference position (splitmix64 of its key).
fn fold_of(key: &PosKey, folds: usize) -> usize {
    let mut z = key
        .0
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(key.1.rotate_left(17))
        .wrapping_add((key.2 as u64) << 32)
        .wrapping_add(key.3 as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % folds as u64) as usize
}

/// How deep (in multiples of max_k) cross-validation looks for building/floor neighbours.
const CV_DEPTH: usize = 10;

/// A held-out query: its truth and the neighbours any stage could use.
struct CvQuery {
    x: f64,
    y: f64,
    floor: i32,
    building: i32,
    nbs: Vec<Nb>,
}

/// Keep only neighbours some stage can reach with k <= kmax: the kmax nearest overall,
/// the kmax nearest of every building among those, and the kmax nearest of every
/// (building, floor) among the latter.
fn prune(all: &[Nb], kmax: usize) -> Vec<Nb> {
    let mut buildings: Vec<(i32, usize)> = Vec::new();
    for n in all.iter().take(kmax) {
        if !buildings.iter().any(|b| b.0 == n.building) {
            buildings.push((n.building, 0));
        }
    }
    let mut floors: Vec<((i32, i32), usize, bool)> = Vec::new();
    let mut out = Vec::new();
    for (i, n) in all.iter().enumerate() {
        let mut keep = i < kmax;
        if let Some(b) = buildings.iter_mut().find(|b| b.0 == n.building) {
            let key = (n.building, n.floor);
            let in_b = b.1 < kmax;
            b.1 += 1;
            let fi = match floors.iter().position(|f| f.0 == key) {
                Some(fi) => fi,
                None => {
                    // A floor is reachable only if it appears among its building's kmax.
                    floors.push((key, 0, in_b));
                    floors.len() - 1
                }
            };
            let f = &mut floors[fi];
            keep |= in_b || (f.2 && f.1 < kmax);
            f.1 += 1;
        }
        if keep {
            out.push(*n);
        }
    }
    out
}

struct StageResult {
    building: (usize, Weighting),
    floor: (usize, Weighting),
    position: (usize, Weighting, Option<f32>),
    building_hit: f64,
    floor_hit: f64,
    errors: Vec<f64>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Percentile (0..1) of an ascending-sorted slice, nearest rank.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Choose k and weighting per stage, greedily: building, then floor, then position.
fn tune_stages(qs: &[CvQuery], opts: &TrainOptions) -> Option<StageResult> {
    if qs.is_empty() {
        return None;
    }
    let n = qs.len() as f64;
    let ks = 1..=opts.max_k;
    // Stage 1: building.
    let mut best_b: Option<(f64, usize, Weighting)> = None;
    for &w in &opts.weightings {
        for k in ks.clone() {
            let hits = qs
                .iter()
                .filter(|q| predict_building(&q.nbs, k, w).is_some_and(|(b, _)| b == q.building))
                .count() as f64;
            if best_b.is_none_or(|b| hits > b.0) {
                best_b = Some((hits, k, w));
            }
        }
    }
    let (b_hits, kb, wb) = best_b?;
    let pred_b: Vec<Option<i32>> = qs
        .iter()
        .map(|q| predict_building(&q.nbs, kb, wb).map(|p| p.0))
        .collect();
    // Stage 2: floor (a hit needs the building right too).
    let mut best_f: Option<(f64, usize, Weighting)> = None;
    for &w in &opts.weightings {
        for k in ks.clone() {
            let hits = qs
                .iter()
                .zip(&pred_b)
                .filter(|(q, b)| {
                    b.is_some_and(|b| {
                        b == q.building
                            && predict_floor(&q.nbs, b, k, w).is_some_and(|f| f.0 == q.floor)
                    })
                })
                .count() as f64;
            if best_f.is_none_or(|f| hits > f.0) {
                best_f = Some((hits, k, w));
            }
        }
    }
    let (f_hits, kf, wf) = best_f?;
    let pred_bf: Vec<Option<(i32, i32)>> = qs
        .iter()
        .zip(&pred_b)
        .map(|(q, b)| {
            let b = (*b)?;
            predict_floor(&q.nbs, b, kf, wf).map(|f| (b, f.0))
        })
        .collect();
    // Stage 3: position.
    let mut taus: Vec<Option<f32>> = vec![None];
    taus.extend(opts.taus.iter().map(|&t| Some(t)));
    let mut best_p: Option<(f64, usize, Weighting, Option<f32>)> = None;
    for &w in &opts.weightings {
        for &tau in &taus {
            for k in ks.clone() {
                if tau.is_some() && k == 1 {
                    continue;
                }
                let err: f64 = qs
                    .iter()
                    .zip(&pred_bf)
                    .map(|(q, bf)| position_error(q, *bf, k, w, tau))
                    .sum::<f64>()
                    / n;
                if best_p.is_none_or(|p| err < p.0) {
                    best_p = Some((err, k, w, tau));
                }
            }
        }
    }
    let (_, k, wp, tau) = best_p?;
    let errors = qs
        .iter()
        .zip(&pred_bf)
        .map(|(q, bf)| position_error(q, *bf, k, wp, tau))
        .collect();
    Some(StageResult {
        building: (kb, wb),
        floor: (kf, wf),
        position: (k, wp, tau),
        building_hit: b_hits / n,
        floor_hit: f_hits / n,
        errors,
    })
}

/// 2D error of one held-out query; a query that cannot be placed counts as placed at the
/// nearest neighbour overall (there always is one), so failures are not hidden.
fn position_error(
    q: &CvQuery,
    bf: Option<(i32, i32)>,
    k: usize,
    w: Weighting,
    tau: Option<f32>,
) -> f64 {
    let p = bf.and_then(|(b, f)| predict_position(&q.nbs, b, f, k, w, tau));
    let (x, y) = match (p, q.nbs.first()) {
        (Some((x, y, _, _)), _) => (x, y),
        (None, Some(n)) => (n.x, n.y),
        (None, None) => return f64::NAN,
    };
    ((x - q.x).powi(2) + (q.y - y).powi(2)).sqrt()
}

/// Train a fingerprint model: cross-validate every configuration of `opts`, keep the best
/// (lowest mean error + floor/building penalties) and build it on all the data.
///
/// `progress` receives values from 0 to 1.
pub fn train(
    data: &Dataset,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(f32),
) -> Result<FingerprintModel, TrainError> {
    if opts.representations.is_empty()
        || opts.distances.is_empty()
        || opts.merges.is_empty()
        || opts.weightings.is_empty()
        || opts.max_k == 0
    {
        return Err(TrainError::Options(
            "every list must be non-empty and max_k >= 1".into(),
        ));
    }
    let usable: Vec<usize> = (0..data.samples.len())
        .filter(|&i| !data.samples[i].readings.is_empty())
        .collect();
    if usable.is_empty() {
        return Err(TrainError::NoData);
    }
    let weakest = usable
        .iter()
        .flat_map(|&i| data.samples[i].readings.iter().map(|r| r.1))
        .fold(0.0f32, f32::min);
    // Feature origin just below the weakest reading so every detection is > 0.
    let min_rssi = weakest.min(-1.0) - 1.0;

    // Folds grouped by reference position.
    let mut positions: Vec<PosKey> = usable.iter().map(|&i| pos_key(&data.samples[i])).collect();
    positions.sort_unstable();
    positions.dedup();
    let folds = opts.folds.clamp(2, positions.len().max(2));
    let fold: Vec<usize> = usable
        .iter()
        .map(|&i| fold_of(&pos_key(&data.samples[i]), folds))
        .collect();
    // Evenly spread subset of held-out queries.
    let stride = usable.len().div_ceil(opts.max_cv_queries.max(1)).max(1);
    let query_set: Vec<usize> = (0..usable.len()).step_by(stride).collect();

    let combos: Vec<(Merge, Representation, Distance)> = opts
        .merges
        .iter()
        .flat_map(|&m| {
            opts.representations
                .iter()
                .flat_map(move |&r| opts.distances.iter().map(move |&d| (m, r, d)))
        })
        .collect();
    let steps = (combos.len() * folds) as f32 + 1.0;
    let mut step = 0.0f32;
    progress(0.0);

    let mut best: Option<(f64, Params, CvReport)> = None;
    let mut scratch = Scratch::default();
    let mut cands = Vec::new();
    for &(merge, rep, dist) in &combos {
        let mut qs: Vec<CvQuery> = Vec::with_capacity(query_set.len());
        for f in 0..folds {
            let train_idx: Vec<usize> = usable
                .iter()
                .zip(&fold)
                .filter(|&(_, &fo)| fo != f)
                .map(|(&i, _)| i)
                .collect();
            let refs = build_refs(data, &train_idx, rep, merge, min_rssi);
            let index = Index::build(data.emitters.len(), &refs);
            for &qi in query_set.iter().filter(|&&qi| fold[qi] == f) {
                let s = &data.samples[usable[qi]];
                let q = features(&s.readings, rep, min_rssi);
                if q.is_empty() {
                    continue;
                }
                index.distances(&q, dist, &mut scratch, &mut cands);
                // The stages rarely reach past the 10*k nearest overall; pruning that
                // prefix keeps cross-validation fast on large maps.
                nearest(&mut cands, CV_DEPTH * opts.max_k);
                let all: Vec<Nb> = cands
                    .iter()
                    .map(|&(d, r)| {
                        let r = &refs[r as usize];
                        Nb {
                            d,
                            x: r.x,
                            y: r.y,
                            floor: r.floor,
                            building: r.building,
                        }
                    })
                    .collect();
                qs.push(CvQuery {
                    x: s.x,
                    y: s.y,
                    floor: s.floor,
                    building: s.building,
                    nbs: prune(&all, opts.max_k),
                });
            }
            step += 1.0;
            progress(step / steps);
        }
        let Some(st) = tune_stages(&qs, opts) else {
            continue;
        };
        let mut errors: Vec<f64> = st
            .errors
            .iter()
            .copied()
            .filter(|e| e.is_finite())
            .collect();
        errors.sort_by(f64::total_cmp);
        let mean_error = mean(&errors);
        let score = mean_error
            + opts.floor_penalty * (1.0 - st.floor_hit)
            + opts.building_penalty * (1.0 - st.building_hit);
        if best.as_ref().is_none_or(|b| score < b.0) {
            let params = Params {
                representation: rep,
                distance: dist,
                merge,
                k_building: st.building.0,
                w_building: st.building.1,
                k_floor: st.floor.0,
                w_floor: st.floor.1,
                k: st.position.0,
                w_position: st.position.1,
                tau: st.position.2,
                min_rssi,
            };
            let report = CvReport {
                folds,
                queries: qs.len(),
                building_hit_rate: st.building_hit,
                floor_hit_rate: st.floor_hit,
                mean_error,
                median_error: percentile(&errors, 0.5),
                p75_error: percentile(&errors, 0.75),
                p95_error: percentile(&errors, 0.95),
                score,
                configurations_tried: 0,
            };
            best = Some((score, params, report));
        }
    }
    let (_, params, mut cv) = best.ok_or(TrainError::NoData)?;
    cv.configurations_tried = combos.len();
    let mut model = FingerprintModel::build(data, params)?;
    model.cv = cv;
    progress(1.0);
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four rooms on two floors of one building and one room in another building, each
    /// with its own strong emitter and a shared weak one.
    fn tiny() -> Dataset {
        let mut d = Dataset::new();
        let spots = [
            ("a", 0.0, 0.0, 0, 0),
            ("b", 10.0, 0.0, 0, 0),
            ("c", 0.0, 0.0, 1, 0),
            ("d", 10.0, 0.0, 1, 0),
            ("e", 100.0, 100.0, 0, 1),
        ];
        for (rep, (ap, x, y, f, b)) in spots
            .iter()
            .enumerate()
            .flat_map(|s| (0..4).map(move |r| (r, s.1)))
        {
            let jitter = rep as f32;
            d.push(
                &[(ap, -45.0 - jitter), ("shared", -85.0 + jitter)],
                *x + rep as f64 * 0.1,
                *y,
                *f,
                *b,
            );
        }
        d
    }

    #[test]
    fn tiny_map_classifies() {
        let d = tiny();
        let opts = TrainOptions {
            folds: 2,
            max_k: 3,
            ..TrainOptions::default()
        };
        let mut calls = 0;
        let m = train(&d, &opts, &mut |p| {
            assert!((0.0..=1.0).contains(&p));
            calls += 1;
        })
        .unwrap();
        assert!(calls > 2);
        for (ap, x, f, b) in [
            ("a", 0.0, 0, 0),
            ("b", 10.0, 0, 0),
            ("c", 0.0, 1, 0),
            ("d", 10.0, 1, 0),
            ("e", 100.0, 0, 1),
        ] {
            let e = m
                .locate(&[(ap, -50.0), ("shared", -80.0), ("unknown", -40.0)])
                .unwrap();
            assert_eq!((e.floor, e.building), (f, b), "{ap}");
            assert!((e.x - x).abs() < 1.0, "{ap}: {}", e.x);
            assert!((0.0..=1.0).contains(&e.confidence));
        }
        assert!(m.locate(&[]).is_none());
        assert!(m.locate(&[("unknown", -40.0)]).is_none());
    }

    #[test]
    fn model_round_trips_through_json() {
        let d = tiny();
        let m = FingerprintModel::build(&d, Params::default()).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back: FingerprintModel = serde_json::from_str(&json).unwrap();
        let scan = [("a", -47.0), ("shared", -83.0)];
        assert_eq!(m.locate(&scan), back.locate(&scan));
    }

    #[test]
    fn sparse_distance_matches_dense() {
        let q = vec![(0u32, 3.0f32), (2, 1.0), (5, 2.0)];
        let r = vec![(0u32, 1.0f32), (3, 4.0), (5, 2.0)];
        let dense = |a: &[(u32, f32)]| {
            let mut v = [0.0f32; 6];
            for &(i, x) in a {
                v[i as usize] = x;
            }
            v
        };
        let (qd, rd) = (dense(&q), dense(&r));
        let refs = vec![RefPoint {
            x: 0.0,
            y: 0.0,
            floor: 0,
            building: 0,
            features: r.clone(),
            samples: 1,
        }];
        let idx = Index::build(6, &refs);
        let mut out = Vec::new();
        let man: f32 = qd.iter().zip(&rd).map(|(a, b)| (a - b).abs()).sum();
        let euc: f32 = qd
            .iter()
            .zip(&rd)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        let sor = man / (qd.iter().sum::<f32>() + rd.iter().sum::<f32>());
        let dot: f32 = qd.iter().zip(&rd).map(|(a, b)| a * b).sum();
        let cos = 1.0
            - dot
                / (qd.iter().map(|a| a * a).sum::<f32>().sqrt()
                    * rd.iter().map(|a| a * a).sum::<f32>().sqrt());
        for (dist, want) in [
            (Distance::Manhattan, man),
            (Distance::Euclidean, euc),
            (Distance::Sorensen, sor),
            (Distance::Cosine, cos),
        ] {
            idx.search(&q, dist, &mut Scratch::default(), &mut out);
            assert!(
                (out[0].0 - want).abs() < 1e-5,
                "{dist:?} {} {want}",
                out[0].0
            );
        }
    }

    #[test]
    fn merge_averages_duplicate_positions() {
        let mut d = Dataset::new();
        d.push(&[("a", -50.0)], 1.0, 2.0, 0, 0);
        d.push(&[("a", -60.0), ("b", -70.0)], 1.0, 2.0, 0, 0);
        d.push(&[("b", -70.0)], 5.0, 2.0, 0, 0);
        let refs = build_refs(
            &d,
            &[0, 1, 2],
            Representation::Positive,
            Merge::Mean,
            -101.0,
        );
        assert_eq!(refs.len(), 2);
        let r = refs.iter().find(|r| r.x == 1.0).unwrap();
        assert_eq!(r.samples, 2);
        // a: mean(51, 41) = 46; b: (0 + 31) / 2 = 15.5
        assert_eq!(r.features, vec![(0, 46.0), (1, 15.5)]);
        let refs = build_refs(
            &d,
            &[0, 1, 2],
            Representation::Positive,
            Merge::MeanDetected,
            -101.0,
        );
        let r = refs.iter().find(|r| r.x == 1.0).unwrap();
        assert_eq!(r.features, vec![(0, 46.0), (1, 31.0)]);
    }

    proptest::proptest! {
        #[test]
        fn scan_order_does_not_matter(seed in 0u64..1000, rot in 0usize..8) {
            let d = tiny();
            let m = FingerprintModel::build(&d, Params::default()).unwrap();
            let aps = ["a", "b", "c", "d", "e", "shared", "x", "a"];
            let scan: Vec<(&str, f32)> = aps.iter().enumerate().map(|(i, &a)| (a, -40.0 - ((seed as usize * 7 + i * 13) % 60) as f32)).collect();
            let mut rotated = scan.clone();
            rotated.rotate_left(rot);
            rotated.reverse();
            proptest::prop_assert_eq!(m.locate(&scan), m.locate(&rotated));
        }
    }
}
