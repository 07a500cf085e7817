//! Training service: calibration sessions turned into labelled samples, training jobs on a
//! blocking thread, versioned models (the newest one active), and locating a client's scan
//! with the active model or, without one, by multilateration against known receivers.
//!
//! The pure parts live in [`job`] (state machine) and [`pipeline`] (samples → model).
//! The active model is published on a `watch` channel ([`Training::models`]) so the live
//! path can swap in each new model without asking.

pub mod job;
pub mod pipeline;

use crate::config::TrainingConfig;
use crate::positioning::{multilaterate, Anchor, Estimate, MultilatConfig, Room, TrainOptions};
use crate::storage::training::{
    ModelRecord, NewModel, SampleQuery, SampleRecord, SOURCE_BLE, SOURCE_WIFI,
};
use crate::storage::{Store, StoreError, TimeQuery};
use job::{AlreadyRunning, Job};
use pipeline::{
    ble_key, wifi_key, Accuracy, CalibrationReading, PathLossReport, ReceiverPlace, TrainedModel,
};
use roomsense_common::sim::Building;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// A receiver of the site with its configured path-loss parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteReceiver {
    pub node: String,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub rssi_at_1m: f32,
    pub exponent: f32,
}

/// What training and locating know of the building: receivers and rooms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Site {
    pub name: String,
    pub receivers: Vec<SiteReceiver>,
    pub rooms: Vec<Room>,
}

impl Site {
    pub fn from_building(b: &Building) -> Self {
        let doors_of = |room: &str| {
            b.doors
                .iter()
                .filter(|d| d.rooms.iter().any(|r| r == room))
                .map(|d| d.id.to_string())
                .collect()
        };
        Self {
            name: b.name.clone(),
            receivers: b
                .receivers
                .iter()
                .map(|r| SiteReceiver {
                    node: r.node.to_string(),
                    x: r.x,
                    y: r.y,
                    floor: r.floor,
                    rssi_at_1m: r.rssi_at_1m as f32,
                    exponent: r.path_loss_exponent as f32,
                })
                .collect(),
            rooms: b
                .rooms
                .iter()
                .map(|r| Room {
                    id: r.id.clone(),
                    floor: r.floor,
                    polygon: r.polygon.iter().map(|p| (p[0], p[1])).collect(),
                    doors: doors_of(&r.id),
                })
                .collect(),
        }
    }
}

/// The model in use: a stored version, deserialized and indexed.
#[derive(Debug)]
pub struct ActiveModel {
    pub version: i64,
    pub created_ms: i64,
    pub model: TrainedModel,
    pub accuracy: Accuracy,
    pub path_loss: PathLossReport,
    emitters: HashSet<String>,
}

impl ActiveModel {
    /// Deserializes a stored model and builds its search index (CPU: call off the runtime).
    pub fn from_record(r: &ModelRecord) -> Result<Self, serde_json::Error> {
        let model: TrainedModel = serde_json::from_str(&r.model)?;
        let accuracy = serde_json::from_str(&r.report)?;
        let path_loss = serde_json::from_str(&r.path_loss)?;
        let emitters = model.fingerprint.emitters.iter().cloned().collect();
        // Builds the lazily created index now rather than on the first query.
        let _ = model.fingerprint.locate(&[]);
        Ok(Self {
            version: r.version,
            created_ms: r.created_ms,
            model,
            accuracy,
            path_loss,
            emitters,
        })
    }

    /// Emitters of `scan` that are in the radio map.
    pub fn known(&self, scan: &[(String, f32)]) -> usize {
        scan.iter()
            .filter(|(e, _)| self.emitters.contains(e))
            .count()
    }

    /// Fingerprint estimate of a scan keyed `wifi:…`/`ble:…`; the building index is
    /// mapped back to its name.
    pub fn locate(&self, scan: &[(String, f32)]) -> Option<(Estimate, String)> {
        let q: Vec<(&str, f32)> = scan.iter().map(|(e, r)| (e.as_str(), *r)).collect();
        let est = self.model.fingerprint.locate(&q)?;
        let building = usize::try_from(est.building)
            .ok()
            .and_then(|i| self.model.buildings.get(i))
            .cloned()
            .unwrap_or_default();
        Some((est, building))
    }
}

/// A located scan.
#[derive(Debug, Clone)]
pub struct Located {
    pub estimate: Estimate,
    pub building: String,
    /// Model whose radio map (fingerprint) or receiver calibration (multilateration) was used.
    pub model_version: Option<i64>,
    /// Readings of the scan the estimator knew.
    pub emitters_used: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocateError {
    #[error("no trained model and no receivers with known positions: record calibration samples or import a file, then POST /api/training (or configure positioning.building)")]
    NoModel,
    #[error("none of the scan's {readings} readings is known: {detail}")]
    NotLocatable { readings: usize, detail: String },
}

pub struct Training {
    store: Arc<dyn Store>,
    /// Replaced when the stored site changes (`crate::site`).
    site: std::sync::RwLock<Arc<Site>>,
    config: TrainingConfig,
    multilat: MultilatConfig,
    job: Arc<Mutex<Job>>,
    active: watch::Sender<Option<Arc<ActiveModel>>>,
    /// Wakes the calibration collector when a session starts.
    wake: Notify,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Rows per page when reading samples or a calibration window's readings.
const PAGE: i64 = 5000;
/// Most readings one calibration session collects (memory bound).
const MAX_CALIBRATION_READINGS: usize = 500_000;

impl Training {
    pub fn new(store: Arc<dyn Store>, site: Option<Site>, config: TrainingConfig) -> Self {
        let multilat = MultilatConfig {
            floor_height_m: config.floor_height_m,
            ..MultilatConfig::default()
        };
        Self {
            store,
            site: std::sync::RwLock::new(Arc::new(site.unwrap_or_default())),
            config,
            multilat,
            job: Arc::new(Mutex::new(Job::default())),
            active: watch::Sender::new(None),
            wake: Notify::new(),
        }
    }

    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    /// The receivers and rooms training and locating use now.
    pub fn site(&self) -> Arc<Site> {
        match self.site.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Takes a changed site (rooms and receivers edited over REST).
    pub fn set_site(&self, site: Site) {
        match self.site.write() {
            Ok(mut s) => *s = Arc::new(site),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(site),
        }
    }

    /// The active model, and every later one: the live path's seam.
    pub fn models(&self) -> watch::Receiver<Option<Arc<ActiveModel>>> {
        self.active.subscribe()
    }

    pub fn active(&self) -> Option<Arc<ActiveModel>> {
        self.active.borrow().clone()
    }

    /// The current (or last) job.
    pub fn job(&self) -> Job {
        self.job.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// Loads the newest stored model (at start). A model that no longer deserializes is
    /// logged and skipped; training again replaces it.
    pub async fn load_latest(&self) -> Result<(), StoreError> {
        let Some(rec) = self.store.latest_model().await? else {
            tracing::info!("no trained model yet");
            return Ok(());
        };
        let version = rec.version;
        match tokio::task::spawn_blocking(move || ActiveModel::from_record(&rec)).await {
            Ok(Ok(m)) => {
                tracing::info!(
                    version,
                    reference_points = m.model.fingerprint.reference_points(),
                    "model loaded"
                );
                self.active.send_replace(Some(Arc::new(m)));
            }
            Ok(Err(e)) => {
                tracing::error!(version, error = %e, "stored model does not load; train again")
            }
            Err(e) => tracing::error!(version, error = %e, "loading the model crashed"),
        }
        Ok(())
    }

    /// Anchors for multilateration: the site's receivers, with path loss fitted by the
    /// active model where it has a fit.
    pub fn anchors(&self, model: Option<&ActiveModel>) -> Vec<Anchor> {
        self.site()
            .receivers
            .iter()
            .map(|r| {
                let mut a = Anchor::new(ble_key(&r.node), r.x, r.y, r.floor);
                a.rssi_at_1m = r.rssi_at_1m;
                a.exponent = r.exponent;
                if let Some(f) = model.and_then(|m| m.path_loss.get(&r.node)) {
                    a.rssi_at_1m = f.rssi_at_1m;
                    a.exponent = f.exponent;
                }
                a
            })
            .collect()
    }

    /// Locates a scan (keys from [`wifi_key`]/[`ble_key`]): the active model's fingerprint
    /// estimate, else multilateration against the receivers.
    pub fn locate(&self, scan: &[(String, f32)]) -> Result<Located, LocateError> {
        let model = self.active();
        let site = self.site();
        if let Some(m) = &model {
            if let Some((estimate, building)) = m.locate(scan) {
                return Ok(Located {
                    estimate: estimate.with_rooms(&site.rooms),
                    building,
                    model_version: Some(m.version),
                    emitters_used: m.known(scan),
                });
            }
        }
        let anchors = self.anchors(model.as_deref());
        if model.is_none() && anchors.is_empty() {
            return Err(LocateError::NoModel);
        }
        let q: Vec<(&str, f32)> = scan.iter().map(|(e, r)| (e.as_str(), *r)).collect();
        if let Some(est) = multilaterate(&anchors, &q, &self.multilat) {
            let ids: HashSet<&str> = anchors.iter().map(|a| a.id.as_str()).collect();
            let used = scan
                .iter()
                .filter(|(e, _)| ids.contains(e.as_str()))
                .count();
            let calibrated = model
                .as_ref()
                .filter(|m| !m.path_loss.fitted.is_empty())
                .map(|m| m.version);
            return Ok(Located {
                estimate: est.with_rooms(&site.rooms),
                building: site.name.clone(),
                model_version: calibrated,
                emitters_used: used,
            });
        }
        let detail = match &model {
            Some(m) => format!(
                "model {} knows {} emitters and there are {} receivers; send the access points (wifi) or beacons/receivers (ble) the model was trained on",
                m.version,
                m.emitters.len(),
                anchors.len()
            ),
            None => format!(
                "there is no trained model and the ble readings name none of the {} receivers",
                anchors.len()
            ),
        };
        Err(LocateError::NotLocatable {
            readings: scan.len(),
            detail,
        })
    }

    /// Starts a training job on a blocking thread; `AlreadyRunning` if one runs.
    pub fn start_job(self: &Arc<Self>) -> Result<Job, AlreadyRunning> {
        let snapshot = {
            let mut j = self.job.lock().unwrap_or_else(|p| p.into_inner());
            j.start(now_ms())?;
            j.clone()
        };
        let me = self.clone();
        tokio::spawn(async move {
            let result = me.run_job().await;
            let mut j = me.job.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok((version, accuracy)) => {
                    tracing::info!(
                        version,
                        mean_error = accuracy.mean_error,
                        "training succeeded"
                    );
                    j.succeed(now_ms(), version, accuracy);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "training failed");
                    j.fail(now_ms(), e);
                }
            }
        });
        Ok(snapshot)
    }

    /// Every stored sample, in id order.
    pub async fn all_samples(&self) -> Result<Vec<SampleRecord>, StoreError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .samples(&SampleQuery {
                    after_id: after,
                    limit: PAGE,
                    ..SampleQuery::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let n = page.len();
            out.extend(page);
            if (n as i64) < PAGE {
                break;
            }
        }
        Ok(out)
    }

    async fn run_job(&self) -> Result<(i64, Accuracy), String> {
        let samples = self.all_samples().await.map_err(|e| {
            tracing::error!(error = %e, "training: reading samples failed");
            "reading the samples from the database failed; see the server log".to_string()
        })?;
        if let Ok(mut j) = self.job.lock() {
            j.set_samples(samples.len());
        }
        if samples.is_empty() {
            return Err("no labelled samples: record some with POST /api/calibration or import a file with POST /api/training/samples".into());
        }
        let opts = TrainOptions {
            folds: self.config.folds,
            max_k: self.config.max_k,
            max_cv_queries: self.config.max_cv_queries,
            ..TrainOptions::default()
        };
        let site = self.site();
        let receivers: Vec<ReceiverPlace> = site
            .receivers
            .iter()
            .map(|r| ReceiverPlace {
                node: r.node.clone(),
                x: r.x,
                y: r.y,
                floor: r.floor,
            })
            .collect();
        let rooms = site.rooms.clone();
        let floor_height = self.config.floor_height_m;
        let job = self.job.clone();
        let started = std::time::Instant::now();
        let trained = tokio::task::spawn_blocking(move || {
            let out = pipeline::train_model(
                &samples,
                &receivers,
                &rooms,
                floor_height,
                &opts,
                &mut |p| {
                    if let Ok(mut j) = job.lock() {
                        j.set_progress(p);
                    }
                },
            )
            .map_err(|e| e.to_string())?;
            let new = NewModel {
                samples: out.samples_used as i64,
                duration_ms: started.elapsed().as_millis() as i64,
                params: to_json(&out.params)?,
                report: to_json(&out.accuracy)?,
                path_loss: to_json(&out.path_loss)?,
                model: to_json(&out.model)?,
            };
            Ok::<_, String>(new)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "training thread crashed");
            "training crashed; see the server log".to_string()
        })??;
        let summary = self.store.insert_model(&trained).await.map_err(|e| {
            tracing::error!(error = %e, "storing the model failed");
            "storing the model failed; see the server log".to_string()
        })?;
        let record = ModelRecord {
            version: summary.version,
            created_ms: summary.created_ms,
            samples: summary.samples,
            duration_ms: summary.duration_ms,
            params: trained.params,
            report: trained.report,
            path_loss: trained.path_loss,
            model: trained.model,
        };
        let active = tokio::task::spawn_blocking(move || ActiveModel::from_record(&record))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the stored model does not load back: {e}"))?;
        let accuracy = active.accuracy.clone();
        self.active.send_replace(Some(Arc::new(active)));
        Ok((summary.version, accuracy))
    }

    /// Wakes the calibration collector (a session was created).
    pub fn calibration_started(&self) {
        self.wake.notify_one();
    }

    /// Collects every calibration session whose window (plus grace) has closed, then
    /// sleeps until the next one closes or a session starts. Runs until `stop`.
    pub async fn run_calibration_collector(self: Arc<Self>, stop: CancellationToken) {
        let grace = self.config.calibration_grace.as_millis() as i64;
        loop {
            let mut wait = Duration::from_secs(60);
            match self.store.collecting_calibrations().await {
                Ok(sessions) => {
                    let now = now_ms();
                    for s in sessions {
                        let due = s.end_ms.saturating_add(grace);
                        if due <= now {
                            if let Err(e) = self.collect(&s).await {
                                tracing::warn!(session = s.id, error = %e, "calibration collection failed; retrying");
                                wait = wait.min(Duration::from_secs(5));
                            }
                        } else {
                            wait = wait.min(Duration::from_millis((due - now) as u64));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading calibration sessions failed; retrying");
                    wait = Duration::from_secs(5);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Turns one closed session's readings into samples and marks it done (or failed when
    /// nothing was heard). Idempotent: a session already finished is left alone.
    pub async fn collect(
        &self,
        s: &crate::storage::training::CalibrationRecord,
    ) -> Result<usize, StoreError> {
        let mut readings = Vec::new();
        for (source, q) in [
            (
                SOURCE_BLE,
                TimeQuery {
                    subject: Some(s.device.clone()),
                    kind: Some("ble".into()),
                    ..TimeQuery::default()
                },
            ),
            (
                SOURCE_WIFI,
                TimeQuery {
                    node: Some(s.device.clone()),
                    kind: Some("wifi".into()),
                    ..TimeQuery::default()
                },
            ),
        ] {
            let mut q = TimeQuery {
                start_ms: Some(s.start_ms),
                end_ms: Some(s.end_ms),
                limit: PAGE,
                ..q
            };
            loop {
                let page = self.store.readings(&q).await?;
                let Some(last) = page.last() else { break };
                q.after = Some((last.at_ms, last.id));
                let n = page.len();
                readings.extend(page.into_iter().map(|r| CalibrationReading {
                    source,
                    emitter: if source == SOURCE_BLE {
                        ble_key(&r.node)
                    } else {
                        wifi_key(&r.device)
                    },
                    rssi: r.rssi as f32,
                    at_ms: r.at_ms,
                }));
                if (n as i64) < PAGE || readings.len() >= MAX_CALIBRATION_READINGS {
                    break;
                }
            }
        }
        let slice = self.config.calibration_slice.as_millis() as i64;
        let samples = pipeline::calibration_samples(s, &readings, slice);
        let error = samples.is_empty().then(|| {
            format!(
                "no reading of {} in the window: no receiver heard it (BLE) and it reported no WiFi scan",
                s.device
            )
        });
        self.store
            .finish_calibration(s.id, &samples, error.as_deref())
            .await?;
        tracing::info!(
            session = s.id,
            device = %s.device,
            samples = samples.len(),
            "calibration collected"
        );
        Ok(samples.len())
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("serializing the model failed: {e}"))
}

/// The live path's estimator once a model exists: the model's fingerprint when the scan
/// has receivers of its radio map (BLE calibration samples are keyed by receiver), else
/// multilateration with the receivers' path loss as fitted by that model.
pub struct TrainedEstimator {
    model: Arc<ActiveModel>,
    fallback: crate::live::MultilatEstimator,
}

impl TrainedEstimator {
    pub fn new(model: Arc<ActiveModel>, building: &Building) -> Self {
        let mut fallback = crate::live::MultilatEstimator::for_building(building);
        for a in &mut fallback.anchors {
            if let Some(f) = model.path_loss.get(&a.id) {
                a.rssi_at_1m = f.rssi_at_1m;
                a.exponent = f.exponent;
            }
        }
        Self { model, fallback }
    }
}

impl crate::live::LiveEstimator for TrainedEstimator {
    fn estimate(&self, scan: &[(&str, f32)]) -> Option<Estimate> {
        self.estimate_near(scan, None)
    }

    /// The fingerprint answers alone; the multilateration fallback takes the track's
    /// prior.
    fn estimate_near(
        &self,
        scan: &[(&str, f32)],
        prior: Option<crate::positioning::Prior>,
    ) -> Option<Estimate> {
        let keyed: Vec<(String, f32)> = scan.iter().map(|(id, r)| (ble_key(id), *r)).collect();
        if self.model.known(&keyed) > 0 {
            if let Some((est, _)) = self.model.locate(&keyed) {
                return Some(est);
            }
        }
        crate::live::LiveEstimator::estimate_near(&self.fallback, scan, prior)
    }

    fn anchors(&self) -> Option<&[crate::positioning::Anchor]> {
        Some(&self.fallback.anchors)
    }
}

/// Swaps each new active model into the live path (the current one first), and rebuilds
/// it on every change of the site (`site`: its receivers are the model's multilateration
/// fallback). Runs until `stop` or until the training service is gone.
pub async fn follow_models(
    mut models: watch::Receiver<Option<Arc<ActiveModel>>>,
    mut site: watch::Receiver<Option<Building>>,
    live: Arc<crate::live::LivePositions>,
    stop: CancellationToken,
) {
    let mut used: Option<i64> = None;
    loop {
        let current = models.borrow_and_update().clone();
        let building = site.borrow_and_update().clone();
        if let (Some(m), Some(b)) = (current, building) {
            if used != Some(m.version) {
                tracing::info!(version = m.version, "live positioning uses model");
                used = Some(m.version);
            }
            live.set_estimator(Arc::new(TrainedEstimator::new(m, &b)));
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = models.changed() => if r.is_err() { return },
            r = site.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LiveEstimator;
    use crate::storage::training::SOURCE_BLE;

    /// Noise-free BLE calibration samples of the example building's ground floor.
    fn samples(b: &Building) -> Vec<SampleRecord> {
        let rx: Vec<_> = b.receivers.iter().filter(|r| r.floor == 0).collect();
        let mut out = Vec::new();
        for i in 0..10 {
            for j in 0..5 {
                let (x, y) = (2.0 + 2.0 * f64::from(i), 1.0 + 2.0 * f64::from(j));
                let readings = rx
                    .iter()
                    .map(|r| {
                        let d = ((x - r.x).powi(2) + (y - r.y).powi(2)).sqrt().max(0.2);
                        (ble_key(r.node.as_str()), (-59.0 - 25.0 * d.log10()) as f32)
                    })
                    .collect();
                out.push(SampleRecord {
                    id: 0,
                    session_id: None,
                    source: SOURCE_BLE.into(),
                    device: None,
                    x,
                    y,
                    floor: 0,
                    building: b.name.clone(),
                    at_ms: None,
                    readings,
                    created_ms: 0,
                });
            }
        }
        out
    }

    /// A model trained on `samples(b)`.
    fn trained(b: &Building) -> Arc<ActiveModel> {
        let data = samples(b);
        let opts = TrainOptions {
            max_k: 4,
            ..TrainOptions::default()
        };
        let out = pipeline::train_model(&data, &[], &[], 3.5, &opts, &mut |_| {}).unwrap();
        let record = ModelRecord {
            version: 3,
            created_ms: 0,
            samples: data.len() as i64,
            duration_ms: 0,
            params: serde_json::to_string(&out.params).unwrap(),
            report: serde_json::to_string(&out.accuracy).unwrap(),
            path_loss: serde_json::to_string(&out.path_loss).unwrap(),
            model: serde_json::to_string(&out.model).unwrap(),
        };
        Arc::new(ActiveModel::from_record(&record).unwrap())
    }

    #[tokio::test]
    async fn the_trained_models_fallback_follows_the_site() {
        use crate::live::{LiveConfig, LiveInput, LivePositions};
        let b = Building::example();
        let live = Arc::new(LivePositions::new(
            &b,
            LiveConfig {
                kalman: None,
                particles: None,
                ..LiveConfig::default()
            },
        ));
        let (_models_tx, models) = watch::channel(Some(trained(&b)));
        let (site_tx, site) = watch::channel(Some(b.clone()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow_models(models, site, live.clone(), stop.clone()));
        // Only upstairs receivers heard (not in the radio map): the fallback locates it.
        let mut t = 0;
        let mut upstairs_x = || {
            t += 1000;
            let inputs: Vec<LiveInput> = b
                .receivers
                .iter()
                .filter(|r| r.floor == 1)
                .map(|r| LiveInput::Sighting {
                    receiver: r.node.as_str().to_string(),
                    device: "tag".into(),
                    rssi: -65.0,
                    at_ms: t,
                })
                .collect();
            live.apply(&inputs);
            live.position("tag").map(|p| (p.x, p.method))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (before, _) = upstairs_x().unwrap();
        // An administrator moves every upstairs receiver 6 m east.
        let mut moved = b.clone();
        for r in moved.receivers.iter_mut().filter(|r| r.floor == 1) {
            r.x += 6.0;
        }
        site_tx.send_replace(Some(moved));
        loop {
            let (x, method) = upstairs_x().unwrap();
            if (x - before - 6.0).abs() < 1.0 {
                assert_eq!(method, "multilateration");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fallback still at x {x} (was {before})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn the_live_path_uses_the_trained_radio_map_and_falls_back_to_multilateration() {
        let b = Building::example();
        let data = samples(&b);
        let est = TrainedEstimator::new(trained(&b), &b);
        // the live scan names receivers by node id, as the live path does
        let s = &data[17];
        let names: Vec<String> = s
            .readings
            .iter()
            .map(|(k, _)| k.trim_start_matches("ble:").to_string())
            .collect();
        let scan: Vec<(&str, f32)> = names
            .iter()
            .zip(&s.readings)
            .map(|(n, (_, r))| (n.as_str(), *r))
            .collect();
        let e = est.estimate(&scan).unwrap();
        assert_eq!(e.method, "fingerprint-knn");
        assert!(
            ((e.x - s.x).powi(2) + (e.y - s.y).powi(2)).sqrt() <= 2.0,
            "{e:?}"
        );
        // receivers the radio map does not have: multilateration
        let upstairs: Vec<(&str, f32)> = b
            .receivers
            .iter()
            .filter(|r| r.floor == 1)
            .map(|r| (r.node.as_str(), -65.0))
            .collect();
        let e = est.estimate(&upstairs).unwrap();
        assert_eq!(e.method, "multilateration");
        assert_eq!(e.floor, 1);
        assert!(est.estimate(&[]).is_none());
    }
}
