//! The access pipeline: a task that follows the live event bus, feeds position estimates
//! and door transitions to the `AccessEngine` and to the live `Presence` (who is where
//! now), stores every access event, then publishes it on the bus (`LiveEvent::Access`) and
//! on MQTT `{prefix}/events/access` (QoS 1).
//!
//! Guarantees: an access event is published only once it is stored (the database is the
//! record; MQTT and the bus are notifications). A database failure keeps the events
//! pending and retries them every tick (bounded: beyond `MAX_PENDING` the oldest are
//! dropped, counted and logged). A bus receiver that falls behind loses events: that is
//! counted (`bus_lagged`) and logged; positions heal by themselves with the next estimate,
//! a lost door transition can miss a `door_outside_hours` event.

use crate::access::{AccessEngine, AccessEvent, AccessModel, Placement, RoomInfo};
use crate::bus::{EventBus, LiveEvent};
use crate::occupancy::{Occupant, Presence};
use crate::storage::access::NewAccessEvent;
use crate::storage::Store;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Events kept for retry while the database fails; beyond, the oldest are dropped.
pub const MAX_PENDING: usize = 10_000;
/// Bus events handled before the produced access events are stored in one transaction.
const MAX_BURST: usize = 1024;
/// Expiry of absent devices, retries and the model version check run this often.
const TICK: Duration = Duration::from_millis(500);

/// Where the access model comes from (the stored building model, or a building file).
#[async_trait::async_trait]
pub trait ModelSource: Send + Sync {
    async fn load(&self) -> anyhow::Result<AccessModel>;
    /// A counter that changes whenever the model may have changed; a change reloads it
    /// at the next tick. Sources without one are reloaded every `model_reload`.
    fn version(&self) -> u64 {
        0
    }
}

/// A model that never changes (from a building file).
pub struct StaticModel(pub AccessModel);

#[async_trait::async_trait]
impl ModelSource for StaticModel {
    async fn load(&self) -> anyhow::Result<AccessModel> {
        Ok(self.0.clone())
    }
}

/// The stored building model (rooms, doors, devices, people, access rules edited over
/// REST); while nothing is stored yet, the model of the configured building file.
pub struct StoredModel {
    pub store: Arc<dyn Store>,
    pub fallback: AccessModel,
    /// Bumped by every model write over REST (`EventBus::watch_model`).
    pub changes: tokio::sync::watch::Receiver<u64>,
}

#[async_trait::async_trait]
impl ModelSource for StoredModel {
    async fn load(&self) -> anyhow::Result<AccessModel> {
        let m = crate::storage::model::load_access_model(self.store.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("loading the stored building model: {e}"))?;
        Ok(if m.rooms.is_empty() {
            self.fallback.clone()
        } else {
            m
        })
    }

    fn version(&self) -> u64 {
        *self.changes.borrow()
    }
}

/// Counters of the pipeline (`GET /api/ingest/stats`, `access`).
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub positions: AtomicU64,
    pub door_transitions: AtomicU64,
    pub events: AtomicU64,
    pub events_stored: AtomicU64,
    pub store_failures: AtomicU64,
    pub events_dropped: AtomicU64,
    pub mqtt_published: AtomicU64,
    pub mqtt_failures: AtomicU64,
    pub bus_lagged: AtomicU64,
    pub model_reloads: AtomicU64,
    pub model_failures: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PipelineStatsSnapshot {
    /// Position estimates consumed.
    pub positions: u64,
    pub door_transitions: u64,
    /// Access events detected.
    pub events: u64,
    pub events_stored: u64,
    /// Failed attempts to store access events (retried).
    pub store_failures: u64,
    /// Access events given up after `MAX_PENDING` piled up during a database outage.
    pub events_dropped: u64,
    pub mqtt_published: u64,
    pub mqtt_failures: u64,
    /// Live events this pipeline missed because it fell behind the bus.
    pub bus_lagged: u64,
    pub model_reloads: u64,
    pub model_failures: u64,
}

impl PipelineStats {
    pub fn snapshot(&self) -> PipelineStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PipelineStatsSnapshot {
            positions: g(&self.positions),
            door_transitions: g(&self.door_transitions),
            events: g(&self.events),
            events_stored: g(&self.events_stored),
            store_failures: g(&self.store_failures),
            events_dropped: g(&self.events_dropped),
            mqtt_published: g(&self.mqtt_published),
            mqtt_failures: g(&self.mqtt_failures),
            bus_lagged: g(&self.bus_lagged),
            model_reloads: g(&self.model_reloads),
            model_failures: g(&self.model_failures),
        }
    }
}

/// One room's occupancy now.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomCount {
    pub room: String,
    pub building: Option<String>,
    pub count: usize,
    pub capacity: Option<u32>,
    pub restricted: bool,
}

impl RoomCount {
    pub fn over_capacity(&self) -> bool {
        self.capacity.is_some_and(|c| self.count > c as usize)
    }
}

struct Shared {
    presence: Presence,
    model: Arc<AccessModel>,
}

/// An occupant and the person holding the device (when the model knows it).
pub type Placed = (Occupant, Option<String>);

/// Live occupancy shared with the REST API: the pipeline writes, handlers read.
pub struct LiveOccupancy(RwLock<Shared>);

impl LiveOccupancy {
    pub fn new(min_confidence: f32, absent_after: Duration) -> Self {
        Self(RwLock::new(Shared {
            presence: Presence::new(min_confidence, absent_after.as_millis() as i64),
            model: Arc::new(AccessModel::default()),
        }))
    }

    /// Every room of the model, plus rooms someone is placed in that the model does not
    /// know (no capacity), by room id.
    pub fn rooms(&self) -> Vec<RoomCount> {
        let Ok(s) = self.0.read() else {
            return Vec::new();
        };
        let mut ids: Vec<&String> = s.model.rooms.keys().collect();
        ids.sort();
        let mut out: Vec<RoomCount> = ids
            .into_iter()
            .map(|id| room_count(&s, id, s.model.rooms.get(id)))
            .collect();
        for room in s.presence.rooms() {
            if !s.model.rooms.contains_key(room) {
                out.push(room_count(&s, room, None));
            }
        }
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }

    /// The room's count and who is in it; `None` if the room is neither in the model nor
    /// occupied.
    pub fn room(&self, id: &str) -> Option<(RoomCount, Vec<Placed>)> {
        let s = self.0.read().ok()?;
        let info = s.model.rooms.get(id);
        if info.is_none() && s.presence.count(id) == 0 {
            return None;
        }
        let people = s
            .presence
            .occupants(id)
            .into_iter()
            .map(|o| {
                let person = s
                    .model
                    .devices
                    .get(&o.device)
                    .and_then(|h| h.person.clone());
                (o, person)
            })
            .collect();
        Some((room_count(&s, id, info), people))
    }

    /// Devices placed in a room now.
    pub fn tracked(&self) -> usize {
        self.0.read().map(|s| s.presence.tracked()).unwrap_or(0)
    }
}

fn room_count(s: &Shared, id: &str, info: Option<&RoomInfo>) -> RoomCount {
    RoomCount {
        room: id.to_string(),
        building: info.map(|i| i.building.clone()),
        count: s.presence.count(id),
        capacity: info.and_then(|i| i.capacity),
        restricted: info.is_some_and(|i| i.restricted),
    }
}

/// The JSON published on `{prefix}/events/access`.
#[derive(Debug, Serialize)]
pub struct AccessMessage<'a> {
    pub v: u32,
    pub id: i64,
    pub kind: &'static str,
    pub at: String,
    pub room: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<&'a str>,
    pub evidence: &'a crate::access::Evidence,
}

/// Where access events go besides the database and the bus.
#[derive(Clone)]
pub struct MqttOut {
    pub client: rumqttc::AsyncClient,
    pub topic: String,
}

/// The pipeline's state; `handle` is synchronous and touches no I/O, `flush` stores and
/// publishes.
pub struct AccessPipeline {
    engine: AccessEngine,
    occupancy: Arc<LiveOccupancy>,
    store: Arc<dyn Store>,
    bus: EventBus,
    mqtt: Option<MqttOut>,
    stats: Arc<PipelineStats>,
    pending: VecDeque<AccessEvent>,
    /// Newest estimate time seen and the wall clock when it was seen: "now" in data time.
    newest: Option<(i64, Instant)>,
}

impl AccessPipeline {
    pub fn new(
        min_confidence: f32,
        occupancy: Arc<LiveOccupancy>,
        store: Arc<dyn Store>,
        bus: EventBus,
        mqtt: Option<MqttOut>,
        stats: Arc<PipelineStats>,
    ) -> Self {
        Self {
            engine: AccessEngine::new(AccessModel::default(), min_confidence),
            occupancy,
            store,
            bus,
            mqtt,
            stats,
            pending: VecDeque::new(),
            newest: None,
        }
    }

    pub fn set_model(&mut self, model: AccessModel) {
        let model = Arc::new(model);
        self.engine.set_model(model.as_ref().clone());
        if let Ok(mut s) = self.occupancy.0.write() {
            s.model = model;
        }
    }

    /// Feeds one live event; the access events it causes wait in `pending`.
    pub fn handle(&mut self, ev: &LiveEvent) {
        let produced = match ev {
            LiveEvent::Position(p) => {
                self.stats.positions.fetch_add(1, Ordering::Relaxed);
                if self.newest.is_none_or(|(t, _)| p.at_ms > t) {
                    self.newest = Some((p.at_ms, Instant::now()));
                }
                if let Ok(mut s) = self.occupancy.0.write() {
                    s.presence
                        .place(&p.device, p.room.as_deref(), p.confidence, p.at_ms);
                }
                self.engine.place(&Placement {
                    device: p.device.clone(),
                    room: p.room.clone(),
                    x: p.x,
                    y: p.y,
                    floor: p.floor,
                    confidence: p.confidence,
                    at_ms: p.at_ms,
                })
            }
            LiveEvent::Door(d) => {
                self.stats.door_transitions.fetch_add(1, Ordering::Relaxed);
                self.engine.door(&d.door, &d.state, &d.node, d.at_ms)
            }
            LiveEvent::Node(_) | LiveEvent::Access(_) => Vec::new(),
        };
        self.stats
            .events
            .fetch_add(produced.len() as u64, Ordering::Relaxed);
        self.pending.extend(produced);
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                max = MAX_PENDING,
                "access events pile up (database failing): dropped the oldest"
            );
        }
    }

    /// Devices not estimated for `absent_after` (in data time, advanced by the wall clock
    /// since the newest estimate arrived) leave their rooms.
    pub fn expire(&mut self, wall_now: Instant) {
        let Some((newest_ms, seen)) = self.newest else {
            return;
        };
        let now_ms = newest_ms + wall_now.saturating_duration_since(seen).as_millis() as i64;
        let gone = match self.occupancy.0.write() {
            Ok(mut s) => s.presence.expire(now_ms),
            Err(_) => return,
        };
        for o in gone {
            self.engine.forget(&o.device);
        }
    }

    /// Stores the pending events in one transaction, then publishes them. On a database
    /// error they stay pending for the next call.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let rows: Vec<NewAccessEvent> = self
            .pending
            .iter()
            .map(|e| NewAccessEvent {
                kind: e.kind.as_str().to_string(),
                at_ms: e.at_ms,
                room: e.room.clone(),
                device: e.device.clone(),
                person: e.person.clone(),
                evidence: serde_json::to_string(&e.evidence).unwrap_or_else(|_| "{}".into()),
            })
            .collect();
        let ids = match self.store.insert_access_events(&rows).await {
            Ok(ids) => ids,
            Err(e) => {
                self.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, pending = rows.len(), "storing access events failed; will retry");
                return;
            }
        };
        self.stats
            .events_stored
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        for (id, e) in ids.into_iter().zip(self.pending.drain(..)) {
            tracing::info!(id, kind = e.kind.as_str(), room = %e.room, device = ?e.device, "access event");
            if let Some(m) = &self.mqtt {
                let msg = AccessMessage {
                    v: roomsense_common::protocol::SCHEMA_VERSION,
                    id,
                    kind: e.kind.as_str(),
                    at: crate::api::paging::rfc3339(e.at_ms),
                    room: &e.room,
                    device: e.device.as_deref(),
                    person: e.person.as_deref(),
                    evidence: &e.evidence,
                };
                let payload = serde_json::to_vec(&msg).unwrap_or_default();
                match m.client.try_publish(
                    m.topic.clone(),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload,
                ) {
                    Ok(()) => {
                        self.stats.mqtt_published.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        self.stats.mqtt_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(id, error = %err, "could not queue the MQTT access event (it is stored)");
                    }
                }
            }
            self.bus.publish(LiveEvent::Access(e));
        }
    }
}

/// How the pipeline task runs.
pub struct PipelineConfig {
    pub min_confidence: f32,
    pub model_reload: Duration,
}

/// Runs the pipeline until `stop`: subscribes to the bus first (so nothing published
/// after this call is missed), then loads the model and follows the bus.
pub fn spawn(
    mut pipeline: AccessPipeline,
    source: Arc<dyn ModelSource>,
    model_reload: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut rx = pipeline.bus.subscribe();
    tokio::spawn(async move {
        let stats = pipeline.stats.clone();
        let mut version = source.version();
        let mut loaded = reload(&mut pipeline, source.as_ref(), &stats).await;
        let mut last_load = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    let v = source.version();
                    if !loaded || v != version || last_load.elapsed() >= model_reload {
                        version = v;
                        loaded = reload(&mut pipeline, source.as_ref(), &stats).await;
                        last_load = Instant::now();
                    }
                    pipeline.expire(Instant::now());
                }
                r = rx.recv() => {
                    match r {
                        Ok(ev) => pipeline.handle(&ev),
                        Err(RecvError::Lagged(n)) => lagged(&stats, n),
                        Err(RecvError::Closed) => break,
                    }
                    // Take what else is queued, then store it all in one transaction.
                    for _ in 0..MAX_BURST {
                        match rx.try_recv() {
                            Ok(ev) => pipeline.handle(&ev),
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => lagged(&stats, n),
                            Err(_) => break,
                        }
                    }
                }
            }
            pipeline.flush().await;
        }
        pipeline.flush().await;
    })
}

fn lagged(stats: &PipelineStats, n: u64) {
    stats.bus_lagged.fetch_add(n, Ordering::Relaxed);
    tracing::warn!(
        missed = n,
        "access pipeline fell behind the live event bus and missed events"
    );
}

async fn reload(
    pipeline: &mut AccessPipeline,
    source: &dyn ModelSource,
    stats: &PipelineStats,
) -> bool {
    match source.load().await {
        Ok(m) => {
            pipeline.set_model(m);
            stats.model_reloads.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            stats.model_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error = format!("{e:#}"),
                "loading the access model failed; keeping the previous one"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccessKind, Holder};
    use crate::bus::DoorTransition;
    use crate::live::Position;

    fn model() -> AccessModel {
        let b = roomsense_common::sim::Building::example();
        let mut m = AccessModel::from_building(&b, "example");
        m.devices.insert(
            "tag-eve".into(),
            Holder {
                person: Some("eve".into()),
                groups: vec![],
            },
        );
        m
    }

    fn pos(device: &str, room: &str, at_ms: i64) -> LiveEvent {
        LiveEvent::Position(Position {
            device: device.into(),
            x: 1.0,
            y: 2.0,
            floor: 0,
            building: "bench".into(),
            room_probability: 0.9,
            room: Some(room.into()),
            confidence: 0.9,
            error_radius_m: 1.0,
            method: "multilat".into(),
            receivers: 4,
            at_ms,
        })
    }

    async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        (crate::storage::connect(&url, 2).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn entry_into_a_restricted_room_is_stored_and_published_once() {
        let (store, _dir) = store().await;
        let bus = EventBus::new(64);
        let mut out = bus.subscribe();
        let occ = Arc::new(LiveOccupancy::new(0.5, Duration::from_secs(300)));
        let stats = Arc::new(PipelineStats::default());
        let mut p = AccessPipeline::new(0.5, occ.clone(), store.clone(), bus, None, stats.clone());
        let m = model();
        let restricted = m
            .rooms
            .values()
            .find(|r| r.restricted)
            .map(|r| r.id.clone())
            .unwrap();
        let open = m
            .rooms
            .values()
            .find(|r| !r.restricted)
            .map(|r| r.id.clone())
            .unwrap();
        p.set_model(m);
        p.handle(&pos("tag-eve", &open, 1_000));
        p.handle(&pos("tag-eve", &restricted, 2_000));
        p.handle(&pos("tag-eve", &restricted, 3_000));
        p.flush().await;
        let stored = store
            .access_events(&crate::storage::access::AccessQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].kind, "unauthorized_entry");
        assert_eq!(stored[0].person.as_deref(), Some("eve"));
        assert!(stored[0].evidence.contains("confidence"));
        match out.try_recv().unwrap() {
            LiveEvent::Access(a) => {
                assert_eq!(a.kind, AccessKind::UnauthorizedEntry);
                assert_eq!(a.room, restricted);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(out.try_recv().is_err(), "exactly one");
        let (count, people) = occ.room(&restricted).unwrap();
        assert_eq!(count.count, 1);
        assert_eq!(people[0].0.since_ms, 2_000);
        assert_eq!(people[0].1.as_deref(), Some("eve"));
        assert!(occ.rooms().iter().any(|r| r.room == open && r.count == 0));
        assert_eq!(stats.snapshot().events_stored, 1);
    }

    #[tokio::test]
    async fn absent_devices_leave_in_data_time() {
        let (store, _dir) = store().await;
        let occ = Arc::new(LiveOccupancy::new(0.5, Duration::from_secs(60)));
        let mut p = AccessPipeline::new(
            0.5,
            occ.clone(),
            store,
            EventBus::new(8),
            None,
            Arc::new(PipelineStats::default()),
        );
        p.set_model(model());
        // Data an hour old (a replay, a lagging clock) is not expired by the wall clock.
        let old = chrono::Utc::now().timestamp_millis() - 3_600_000;
        p.handle(&pos("a", "r1", old));
        p.handle(&pos("b", "r1", old + 30_000));
        p.expire(Instant::now());
        assert_eq!(occ.tracked(), 2);
        p.handle(&pos("b", "r1", old + 70_000));
        p.expire(Instant::now());
        assert_eq!(occ.tracked(), 1, "a not estimated for 70 s of data time");
        p.expire(Instant::now() + Duration::from_secs(61));
        assert_eq!(occ.tracked(), 0, "nothing heard for 61 s of wall time");
    }

    struct Counting(std::sync::atomic::AtomicU64);

    #[async_trait::async_trait]
    impl ModelSource for Counting {
        async fn load(&self) -> anyhow::Result<AccessModel> {
            Ok(model())
        }
        fn version(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[tokio::test]
    async fn a_model_change_reloads_the_model() {
        let (store, _dir) = store().await;
        let bus = EventBus::new(8);
        let stats = Arc::new(PipelineStats::default());
        let occ = Arc::new(LiveOccupancy::new(0.5, Duration::from_secs(300)));
        let p = AccessPipeline::new(0.5, occ.clone(), store, bus, None, stats.clone());
        let source = Arc::new(Counting(AtomicU64::new(0)));
        let stop = CancellationToken::new();
        let task = spawn(p, source.clone(), Duration::from_secs(3600), stop.clone());
        let wait = |n: u64| {
            let stats = stats.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while stats.snapshot().model_reloads < n {
                    assert!(Instant::now() < deadline, "no reload {n}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait(1).await;
        assert!(!occ.rooms().is_empty(), "rooms of the model listed");
        source.0.store(1, Ordering::Relaxed);
        wait(2).await;
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_task_follows_the_bus_and_counts_lag() {
        let (store, _dir) = store().await;
        let bus = EventBus::new(4);
        let occ = Arc::new(LiveOccupancy::new(0.5, Duration::from_secs(300)));
        let stats = Arc::new(PipelineStats::default());
        let p = AccessPipeline::new(0.5, occ, store.clone(), bus.clone(), None, stats.clone());
        let mut m = model();
        let door = m.doors.keys().next().cloned().unwrap();
        let room = m.doors[&door][0].clone();
        if let Some(r) = m.rooms.get_mut(&room) {
            r.restricted = true;
        }
        m.rules.clear();
        let stop = CancellationToken::new();
        // Publish more than the bus holds before the task runs: it must count the loss.
        let task = spawn(
            p,
            Arc::new(StaticModel(m)),
            Duration::from_secs(60),
            stop.clone(),
        );
        for i in 0..10 {
            bus.publish(pos("x", "r1", i));
        }
        bus.publish(LiveEvent::Door(DoorTransition {
            node: "n1".into(),
            door: door.clone(),
            state: "open".into(),
            at_ms: 100,
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = store
                .access_events(&crate::storage::access::AccessQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            if !n.is_empty() {
                assert_eq!(n[0].kind, "door_outside_hours");
                break;
            }
            assert!(Instant::now() < deadline, "no door event stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stats.snapshot().bus_lagged > 0);
        stop.cancel();
        task.await.unwrap();
    }
}
