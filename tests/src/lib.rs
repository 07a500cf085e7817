//! Test harness: central in-process on free ports with a fresh database, an MQTT publisher
//! that waits for PUBACKs, and polling with a deadline (no fixed sleeps).

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use roomsense_central::config::{BrokerMode, Config};
use roomsense_central::Application;
use roomsense_common::protocol::{encode, Batch, BleSighting, SightingKind, SCHEMA_VERSION};
use roomsense_common::{DeviceId, NodeId, TopicKind, Topics};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default deadline for conditions in tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Logs to the test output when `TEST_LOG=1`.
pub fn init_test_log() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,roomsense_central=debug")
            .with_test_writer()
            .try_init();
    }
}

/// A unique-enough suffix for ids, schemas and topic prefixes.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros() % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` until it returns `Some`, or fails after `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A central server for one test.
pub struct TestCentral {
    pub app: Application,
    pub base: String,
    pub topics: Topics,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// What a test may change about central.
#[derive(Debug, Clone)]
pub struct CentralOptions {
    /// `None`: a fresh SQLite file.
    pub database_url: Option<String>,
    /// `None`: embedded broker on a free port; `Some(url)`: that external broker.
    pub external_mqtt: Option<String>,
    pub silence_timeout: Duration,
    pub prefix: String,
}

impl Default for CentralOptions {
    fn default() -> Self {
        Self {
            database_url: None,
            external_mqtt: None,
            silence_timeout: Duration::from_secs(120),
            prefix: roomsense_common::DEFAULT_PREFIX.into(),
        }
    }
}

impl TestCentral {
    pub async fn start(opts: CentralOptions) -> anyhow::Result<Self> {
        init_test_log();
        let dir = tempfile::tempdir()?;
        let mut config = Config::default();
        config.http.listen = "127.0.0.1:0".parse()?;
        config.mqtt.listen = "127.0.0.1:0".parse()?;
        config.mqtt.prefix = opts.prefix.clone();
        config.mqtt.client_id = unique("central");
        config.mqtt.segment_size = 1024 * 1024;
        config.mqtt.segment_count = 4;
        config.database.url = opts
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("central.db").display()));
        config.nodes.silence_timeout = opts.silence_timeout;
        if let Some(url) = &opts.external_mqtt {
            config.mqtt.mode = BrokerMode::External;
            config.mqtt.url = url.clone();
        }
        let app = Application::build(config, None).await?;
        let base = format!("http://{}", app.http_addr());
        let t = Self {
            app,
            base,
            topics: Topics::new(&opts.prefix).map_err(anyhow::Error::msg)?,
            http: reqwest::Client::new(),
            _dir: dir,
        };
        let app = &t.app;
        wait_for("ingest client subscribed", DEADLINE, || async {
            app.broker_connected().then_some(())
        })
        .await?;
        Ok(t)
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.app.mqtt_addr()
    }

    /// GET `path` and parse JSON, with the status code.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await?;
        let status = r.status().as_u16();
        let body = r.json().await.context("response is not JSON")?;
        Ok((status, body))
    }

    /// Waits until `GET path` answers 200 with `items` of at least `n` entries.
    pub async fn wait_items(&self, path: &str, n: usize) -> anyhow::Result<Vec<serde_json::Value>> {
        wait_for(&format!("{n} items at {path}"), DEADLINE, || async {
            match self.get(path).await {
                Ok((200, v)) => {
                    let items = v["items"].as_array()?.clone();
                    (items.len() >= n).then_some(items)
                }
                _ => None,
            }
        })
        .await
    }
}

/// An MQTT client for tests that publishes QoS 1 and waits for each PUBACK.
pub struct Publisher {
    pub client: AsyncClient,
    events: EventLoop,
}

impl Publisher {
    pub async fn connect(addr: SocketAddr, id: &str) -> anyhow::Result<Self> {
        Self::connect_with(addr, id, |_| {}).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        id: &str,
        tweak: impl FnOnce(&mut MqttOptions),
    ) -> anyhow::Result<Self> {
        let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(8 * 1024 * 1024, 8 * 1024 * 1024);
        tweak(&mut opts);
        let (client, mut events) = AsyncClient::new(opts, 1024);
        tokio::time::timeout(DEADLINE, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => bail!("publisher could not connect to {addr}: {e}"),
                }
            }
        })
        .await
        .context("publisher connect timed out")??;
        Ok(Self { client, events })
    }

    /// Publishes and waits for the broker's PUBACK.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await?;
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Event::Incoming(Packet::PubAck(_)) = self.events.poll().await? {
                    return Ok::<_, anyhow::Error>(());
                }
            }
        })
        .await
        .context("no PUBACK")??;
        Ok(())
    }

    /// Keeps the connection serviced for a moment (pings, pending acks).
    pub async fn poll_once(&mut self) -> anyhow::Result<()> {
        let _ = tokio::time::timeout(Duration::from_millis(50), self.events.poll()).await;
        Ok(())
    }
}

/// A BLE batch of `n` sightings from `node`.
pub fn ble_batch(node: &str, seq: u64, at: DateTime<Utc>, n: usize) -> Batch<BleSighting> {
    Batch {
        v: SCHEMA_VERSION,
        node: NodeId::parse(node).expect("test node id"),
        seq,
        sent_at: at,
        items: (0..n)
            .map(|i| BleSighting {
                id: DeviceId::parse(&format!("tag-{i:04}")).expect("test device id"),
                rssi: -50.0 - (i % 40) as f32,
                tx_power: Some(-59),
                count: 3,
                first_at: at - chrono::Duration::milliseconds(900),
                last_at: at,
                kind: SightingKind::Generic,
            })
            .collect(),
    }
}

pub fn topic(topics: &Topics, node: &str, kind: TopicKind) -> String {
    topics.node(&NodeId::parse(node).expect("test node id"), kind)
}

pub fn payload<T: serde::Serialize>(v: &T) -> Vec<u8> {
    encode(v)
}

/// Path of a workspace binary built next to the test executable.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .context("no target dir")?;
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} not built; run `cargo build --workspace` (cargo test --workspace builds it)",
            p.display()
        );
    }
    Ok(p)
}
