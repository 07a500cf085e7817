//! Start-up in one straight line: storage → broker → writer → ingest client → HTTP.
//! `Application::build` binds everything (port 0 works) and returns the bound addresses.

use crate::api::{self, AppState};
use crate::broker;
use crate::config::{BrokerMode, Config};
use crate::ingest::{run_writer, IngestStats};
use crate::mqtt::{run_ingest_client, IngestClientConfig};
use crate::storage::{self, Store};
use crate::telemetry::LogControl;
use anyhow::Context;
use roomsense_common::Topics;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Application {
    http_addr: SocketAddr,
    /// The API is served over HTTPS (`http.tls_cert`).
    https: bool,
    mqtt_addr: SocketAddr,
    store: Arc<dyn Store>,
    stats: Arc<IngestStats>,
    bus: crate::bus::EventBus,
    mqtt_connected: Arc<AtomicBool>,
    /// Stops taking messages from the broker.
    intake: CancellationToken,
    /// Stops the writer even with an unwritten group (only after the drain timed out).
    writer_stop: CancellationToken,
    /// Stops HTTP and the background loops.
    background: CancellationToken,
    mqtt_task: JoinHandle<()>,
    writer_task: JoinHandle<()>,
    http_task: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    demo_token: Option<String>,
}

impl Application {
    pub async fn build(config: Config, log: Option<Arc<LogControl>>) -> anyhow::Result<Self> {
        config.validate()?;
        // Read the certificate first: a broken TLS setup stops the start before anything runs.
        let tls = match (&config.http.tls_cert, &config.http.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::load(cert, key)?),
            _ => None,
        };
        let topics = Topics::new(&config.mqtt.prefix).map_err(anyhow::Error::msg)?;
        let store = storage::connect(&config.database.url, config.database.max_connections)
            .await
            .with_context(|| format!("opening database {}", redact(&config.database.url)))?;
        tracing::info!(backend = store.backend(), "database ready");

        let (mqtt_addr, client_cfg) = match config.mqtt.mode {
            BrokerMode::Embedded => {
                let listen = match broker::reserve(config.mqtt.listen) {
                    Ok(a) => a,
                    Err(e) if config.demo.enabled => {
                        // The demo must run anywhere: take any free port rather than fail.
                        tracing::warn!(error = %e, "demo: MQTT port taken, using a free one");
                        broker::reserve(SocketAddr::new(config.mqtt.listen.ip(), 0))?
                    }
                    Err(e) => return Err(e.into()),
                };
                broker::start(&config.mqtt, listen)?;
                let c = broker::connect_addr(listen);
                (
                    c,
                    IngestClientConfig {
                        host: c.ip().to_string(),
                        port: c.port(),
                        client_id: config.mqtt.client_id.clone(),
                        username: None,
                        password: None,
                        persistent_session: false,
                        shared_group: None,
                        max_payload: config.mqtt.max_payload_size,
                        queue_capacity: config.ingest.queue_capacity,
                    },
                )
            }
            BrokerMode::External => {
                let (host, port) = crate::config::parse_mqtt_url(&config.mqtt.url)
                    .map_err(|e| anyhow::anyhow!("mqtt.url: {e}"))?;
                let addr = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .with_context(|| format!("mqtt.url: cannot resolve {host}"))?
                    .next()
                    .with_context(|| format!("mqtt.url: {host} has no address"))?;
                (
                    addr,
                    IngestClientConfig {
                        host,
                        port,
                        client_id: config.mqtt.client_id.clone(),
                        username: config.mqtt.username.clone(),
                        password: config.mqtt.password.clone(),
                        persistent_session: true,
                        shared_group: config.mqtt.shared_group.clone(),
                        max_payload: config.mqtt.max_payload_size,
                        queue_capacity: config.ingest.queue_capacity,
                    },
                )
            }
        };

        let stats = Arc::new(IngestStats::default());
        let bus = crate::bus::EventBus::default();
        let mqtt_connected = Arc::new(AtomicBool::new(false));
        let intake = CancellationToken::new();
        let writer_stop = CancellationToken::new();
        let background = CancellationToken::new();

        let building = if !config.positioning.building.is_empty() {
            Some(crate::demo::load_building(
                "positioning.building",
                &config.positioning.building,
            )?)
        } else if config.demo.enabled {
            Some(crate::demo::load_building(
                "demo.building",
                &config.demo.building,
            )?)
        } else {
            None
        };
        if let Some(b) = &building {
            import_building(store.as_ref(), b).await?;
        }
        let training = Arc::new(crate::training::Training::new(
            store.clone(),
            building.as_ref().map(crate::training::Site::from_building),
            config.training.clone(),
        ));
        training
            .load_latest()
            .await
            .context("loading the newest trained model")?;
        let access_model = building
            .as_ref()
            .map(|b| crate::access::AccessModel::from_building(b, &b.name))
            .unwrap_or_default();
        let live = building.as_ref().map(|b| {
            Arc::new(crate::live::LivePositions::new(
                b,
                crate::live::LiveConfig::from_config(&config.positioning),
            ))
        });
        let live_queue = Arc::new(crate::live::LiveQueue::new(
            config.positioning.queue_capacity,
        ));

        let (tx, rx) = tokio::sync::mpsc::channel(config.ingest.queue_capacity);
        let (client, eventloop) = crate::mqtt::client(&client_cfg);
        let access_client = client.clone();
        let acker = crate::mqtt::commit_acker(client.clone(), topics.clone());
        let live_feed = live.as_ref().map(|_| (live_queue.clone(), stats.clone()));
        let commit_bus = bus.clone();
        let on_commit: crate::ingest::CommitHook = Arc::new(move |items| {
            acker(items);
            for e in crate::bus::events_of_commit(items) {
                commit_bus.publish(e);
            }
            // Off the hot path: only queue the inputs for the positioning task.
            if let Some((queue, stats)) = &live_feed {
                crate::live::enqueue_commit(queue, stats, items);
            }
        });
        let writer_task = tokio::spawn(run_writer(
            store.clone(),
            rx,
            config.ingest.max_batch_messages,
            stats.clone(),
            Some(on_commit),
            writer_stop.clone(),
        ));
        let mqtt_task = tokio::spawn(run_ingest_client(
            client_cfg,
            client,
            eventloop,
            topics.clone(),
            tx,
            stats.clone(),
            mqtt_connected.clone(),
            intake.clone(),
        ));

        let mut tasks = vec![tokio::spawn(silence_watch(
            store.clone(),
            bus.clone(),
            config.nodes.silence_timeout,
            background.clone(),
        ))];

        if let Some(l) = &live {
            // Stopped after the writer drained (shutdown), so it takes the last commits too.
            tasks.push(tokio::spawn(crate::live::run(
                l.clone(),
                live_queue.clone(),
                store.clone(),
                bus.clone(),
                stats.clone(),
                background.clone(),
            )));
        }
        tasks.push(tokio::spawn(
            training
                .clone()
                .run_calibration_collector(background.clone()),
        ));
        // The stored site (the building file merged with rooms, doors and receivers edited
        // over REST), as `site::spawn` below loads it.
        let (site_tx, site_rx) = tokio::sync::watch::channel(building.clone());
        if let Some(l) = &live {
            tasks.push(tokio::spawn(crate::training::follow_models(
                training.models(),
                site_rx,
                l.clone(),
                background.clone(),
            )));
        }

        let occupancy = Arc::new(crate::access_pipeline::LiveOccupancy::new(
            config.access.min_confidence,
            config.occupancy.absent_after,
        ));
        let access_stats = Arc::new(crate::access_pipeline::PipelineStats::default());
        tasks.push(crate::access_pipeline::spawn(
            crate::access_pipeline::AccessPipeline::new(
                config.access.min_confidence,
                occupancy.clone(),
                store.clone(),
                bus.clone(),
                Some(crate::access_pipeline::MqttOut {
                    client: access_client,
                    topic: topics.access_events(),
                }),
                access_stats.clone(),
            ),
            Arc::new(crate::access_pipeline::StoredModel {
                store: store.clone(),
                fallback: access_model,
                changes: bus.watch_model(),
            }),
            config.access.model_reload,
            background.clone(),
        ));

        if let Some(file) = &building {
            // Rooms, doors and receivers edited over REST reach positioning and training.
            tasks.push(crate::site::spawn(
                store.clone(),
                file.clone(),
                live.clone(),
                Some(training.clone()),
                bus.watch_model(),
                site_tx,
                background.clone(),
            ));
        }

        if config.demo.enabled {
            tasks.push(crate::demo::spawn(
                &config.demo,
                mqtt_addr,
                &topics,
                background.clone(),
            )?);
        }

        let auth = Arc::new(crate::auth::Auth::new(store.clone()));
        let demo_token = first_run_tokens(store.as_ref(), config.demo.enabled).await?;
        let state = AppState {
            store: store.clone(),
            stats: stats.clone(),
            mqtt_connected: mqtt_connected.clone(),
            clock_skew_threshold: config.nodes.clock_skew_threshold,
            log,
            live,
            bus: bus.clone(),
            training,
            occupancy,
            access_stats,
            occupancy_config: config.occupancy.clone(),
            auth,
        };
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("http.listen {}: cannot listen", config.http.listen))?;
        let http_addr = listener.local_addr()?;
        let app = api::router(state, &config.http.cors_origins)?;
        let stop = background.clone();
        let https = tls.is_some();
        let http_task = match tls {
            Some(tls) => tokio::spawn(async move {
                axum::serve(crate::tls::TlsListener::new(listener, tls), app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }),
            None => tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }),
        };
        tracing::info!(%http_addr, https, %mqtt_addr, "roomsense-central ready");

        Ok(Self {
            http_addr,
            https,
            mqtt_addr,
            store,
            stats,
            bus,
            mqtt_connected,
            intake,
            writer_stop,
            background,
            mqtt_task,
            writer_task,
            http_task,
            tasks,
            demo_token,
        })
    }

    /// In demo mode: the admin token created at start (print it for the newcomer).
    pub fn demo_token(&self) -> Option<&str> {
        self.demo_token.as_deref()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `https` when `http.tls_cert` is set, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The base URL of the API, with the address as bound.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.http_addr)
    }

    /// Where MQTT clients reach the broker (the embedded one, or the external one).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The live event bus (positions, doors, node changes, access events).
    pub fn bus(&self) -> crate::bus::EventBus {
        self.bus.clone()
    }

    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    pub fn broker_connected(&self) -> bool {
        self.mqtt_connected
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops taking messages, writes what was received (up to `drain_timeout`), then stops
    /// HTTP and the background loops.
    pub async fn shutdown(self, drain_timeout: Duration) -> anyhow::Result<()> {
        self.intake.cancel();
        let mut mqtt = self.mqtt_task;
        if tokio::time::timeout(drain_timeout, &mut mqtt)
            .await
            .is_err()
        {
            // The writer is stuck (database down): stop taking; the broker keeps what is unacked.
            mqtt.abort();
        }
        let mut writer = self.writer_task;
        if tokio::time::timeout(drain_timeout, &mut writer)
            .await
            .is_err()
        {
            tracing::error!("ingest did not drain in time; unwritten messages will be redelivered by the broker");
            self.writer_stop.cancel();
            let _ = writer.await;
        }
        self.background.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.http_task.await??;
        tracing::info!("roomsense-central stopped");
        Ok(())
    }
}

/// Puts the building file's building, floors, rooms, doors, receivers, people, devices
/// (and, for a new building, its restricted-room rules) into the database where absent, so
/// admins see and edit them over REST. Idempotent; admin edits are kept.
async fn import_building(
    store: &dyn Store,
    b: &roomsense_common::sim::Building,
) -> anyhow::Result<()> {
    let id = crate::model::slug(&b.name);
    let plan = crate::model::ImportPlan::from_building(b, &id, "UTC");
    let out = store
        .import_model(&plan)
        .await
        .map_err(|e| anyhow::anyhow!("importing building {id:?} into the database: {e}"))?;
    if out.applied {
        tracing::info!(building = %id, ?out, "building file imported into the database");
    } else {
        tracing::debug!(building = %id, "building file unchanged since its last import");
    }
    Ok(())
}

/// Demo: creates an admin token and returns its secret. Otherwise: says how to create one
/// when no usable token exists yet.
async fn first_run_tokens(store: &dyn Store, demo: bool) -> anyhow::Result<Option<String>> {
    let now = chrono::Utc::now().timestamp_millis();
    if demo {
        let (t, secret) = crate::auth::create_token(store, "demo", crate::auth::Scope::Admin, now)
            .await
            .context("creating the demo token")?;
        tracing::info!(
            token = t.id,
            "demo: created admin token \"demo\" (printed on stdout)"
        );
        return Ok(Some(secret));
    }
    let tokens = store.tokens().await.context("reading API tokens")?;
    if tokens.iter().all(|t| t.revoked_at_ms.is_some()) {
        tracing::warn!(
            "no API token exists yet: every /api request will be refused (401). Create one with \
             `roomsense-central token create --scope admin --name NAME` (same --config/--database-url as serve)"
        );
    }
    Ok(None)
}

/// Marks nodes offline that sent nothing for `timeout`.
async fn silence_watch(
    store: Arc<dyn Store>,
    bus: crate::bus::EventBus,
    timeout: Duration,
    stop: CancellationToken,
) {
    let every = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let cutoff = chrono::Utc::now().timestamp_millis() - timeout.as_millis() as i64;
        match store.mark_silent(cutoff).await {
            Ok(ids) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                for id in ids {
                    tracing::warn!(node = %id, ?timeout, "node went silent; marked offline");
                    bus.publish(crate::bus::LiveEvent::Node(crate::bus::NodeChange {
                        node: id,
                        state: "offline".into(),
                        reason: Some("silent".into()),
                        at_ms: now_ms,
                    }));
                }
            }
            Err(e) => tracing::warn!(error = %e, "silence check failed"),
        }
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
