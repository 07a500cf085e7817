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

pub use roomsense_central::auth::Scope;

/// Creates an API token in `app`'s store; returns its secret.
pub async fn create_token(app: &Application, name: &str, scope: Scope) -> anyhow::Result<String> {
    let store = app.store();
    let (_, secret) = roomsense_central::auth::create_token(
        store.as_ref(),
        name,
        scope,
        Utc::now().timestamp_millis(),
    )
    .await?;
    Ok(secret)
}

/// A client that sends `Authorization: Bearer {token}` with every request.
pub fn authed_client(token: &str) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .default_headers(bearer_headers(token)?)
        .build()?)
}

fn bearer_headers(token: &str) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(headers)
}

/// Like [`authed_client`], over HTTPS trusting only the PEM certificate `ca_pem`.
pub fn authed_client_trusting(token: &str, ca_pem: &[u8]) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .default_headers(bearer_headers(token)?)
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?)
        .build()?)
}

/// `roomsense-central token create` on the real binary against `database_url`; returns the
/// secret it printed.
pub fn cli_token(database_url: &str, scope: &str, name: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin_path("roomsense-central")?)
        .args([
            "token",
            "create",
            "--scope",
            scope,
            "--name",
            name,
            "--database-url",
        ])
        .arg(database_url)
        .output()?;
    if !out.status.success() {
        bail!(
            "token create failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let secret = String::from_utf8(out.stdout)?.trim().to_string();
    if !secret.starts_with("rs_") {
        bail!("token create printed {secret:?}, not a token");
    }
    Ok(secret)
}

/// A central server for one test.
pub struct TestCentral {
    pub app: Application,
    pub base: String,
    pub topics: Topics,
    /// Sends `Authorization: Bearer {token}` (an admin token) with every request.
    pub http: reqwest::Client,
    /// The admin token the harness created at start.
    pub token: String,
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
    /// Run the simulated demo building (live positions included).
    pub demo: bool,
    /// Last word on the configuration (e.g. short calibration windows).
    pub configure: Option<fn(&mut Config)>,
    /// Building file for live positioning and the access model (`positioning.building`).
    pub building: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate and key; the harness's client trusts the
    /// certificate (and only it).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for CentralOptions {
    fn default() -> Self {
        Self {
            database_url: None,
            external_mqtt: None,
            silence_timeout: Duration::from_secs(120),
            prefix: roomsense_common::DEFAULT_PREFIX.into(),
            demo: false,
            configure: None,
            building: None,
            tls: None,
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
        config.demo.enabled = opts.demo;
        if let Some(b) = &opts.building {
            config.positioning.building = b.display().to_string();
        }
        if let Some(url) = &opts.external_mqtt {
            config.mqtt.mode = BrokerMode::External;
            config.mqtt.url = url.clone();
        }
        if let Some((cert, key)) = &opts.tls {
            config.http.tls_cert = Some(cert.clone());
            config.http.tls_key = Some(key.clone());
        }
        if let Some(f) = opts.configure {
            f(&mut config);
        }
        let app = Application::build(config, None).await?;
        let base = app.base_url();
        let token = create_token(&app, "test-harness", Scope::Admin).await?;
        let http = match &opts.tls {
            Some((cert, _)) => authed_client_trusting(&token, &std::fs::read(cert)?)?,
            None => authed_client(&token)?,
        };
        let t = Self {
            app,
            base,
            topics: Topics::new(&opts.prefix).map_err(anyhow::Error::msg)?,
            http,
            token,
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

    /// A new token of `scope` and a client that sends it.
    pub async fn client_with_scope(
        &self,
        scope: Scope,
    ) -> anyhow::Result<(String, reqwest::Client)> {
        let token = create_token(&self.app, &unique("test"), scope).await?;
        let client = authed_client(&token)?;
        Ok((token, client))
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

    /// Waits for the next incoming publish and returns its payload.
    pub async fn next_publish(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        match self.events.poll().await? {
            Event::Incoming(Packet::Publish(p)) => Ok(Some(p.payload.to_vec())),
            _ => Ok(None),
        }
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
            "{} not built; run `cargo build --workspace --bins` before the tests",
            p.display()
        );
    }
    Ok(p)
}

// ---------------------------------------------------------------- real processes (edge)

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub async fn wait_port(port: u16) -> anyhow::Result<()> {
    wait_for(
        &format!("127.0.0.1:{port} accepting"),
        DEADLINE,
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: std::process::Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: std::process::Command) -> anyhow::Result<Self> {
        if std::env::var("TEST_LOG").is_err() {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        Ok(Self {
            child,
            name: name.into(),
        })
    }

    /// `kill -9`, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Exit status if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `roomsense-central serve` as a process on fixed (free) ports with a SQLite file, so it
/// can be killed and started again on the same ports and database.
pub struct CentralProc {
    pub proc: Proc,
    pub http_port: u16,
    pub mqtt_port: u16,
    pub db: PathBuf,
    pub external_mqtt: Option<String>,
    /// Sends the admin token `token` with every request.
    pub http: reqwest::Client,
    /// Admin token created with the CLI before the first start (kept across restarts).
    pub token: String,
    /// Extra environment (config overrides such as `ROOMSENSE__POSITIONING__BUILDING`),
    /// kept across restarts.
    pub env: Vec<(String, String)>,
}

impl CentralProc {
    /// Starts central (embedded broker on `mqtt_port`, or the external `mqtt_url`) and
    /// waits until `/readyz` answers 200.
    pub async fn start(
        db: PathBuf,
        http_port: u16,
        mqtt_port: u16,
        external_mqtt: Option<String>,
    ) -> anyhow::Result<Self> {
        Self::start_fresh(db, http_port, mqtt_port, external_mqtt, Vec::new()).await
    }

    /// Like [`CentralProc::start`] with extra environment variables (config overrides).
    pub async fn start_with_env(
        db: PathBuf,
        http_port: u16,
        mqtt_port: u16,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Self::start_fresh(db, http_port, mqtt_port, None, env).await
    }

    async fn start_fresh(
        db: PathBuf,
        http_port: u16,
        mqtt_port: u16,
        external_mqtt: Option<String>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let token = cli_token(
            &format!("sqlite://{}", db.display()),
            "admin",
            "test-harness",
        )?;
        Self::start_with_token(db, http_port, mqtt_port, external_mqtt, token, env).await
    }

    async fn start_with_token(
        db: PathBuf,
        http_port: u16,
        mqtt_port: u16,
        external_mqtt: Option<String>,
        token: String,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let mut cmd = std::process::Command::new(bin_path("roomsense-central")?);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--mqtt-listen")
            .arg(format!("127.0.0.1:{mqtt_port}"))
            .arg("--database-url")
            .arg(format!("sqlite://{}", db.display()))
            .env("ROOMSENSE__LOG__LEVEL", "warn")
            .env("ROOMSENSE__MQTT__CLIENT_ID", unique("central"));
        if let Some(url) = &external_mqtt {
            cmd.arg("--mqtt-url").arg(url);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut c = Self {
            proc: Proc::spawn("roomsense-central", cmd)?,
            http_port,
            mqtt_port,
            db,
            external_mqtt,
            http: authed_client(&token)?,
            token,
            env,
        };
        c.wait_ready().await?;
        Ok(c)
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.base());
        let http = self.http.clone();
        let proc = &mut self.proc;
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(st) = proc.exited() {
                bail!("roomsense-central exited early: {st}");
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= end {
                bail!("roomsense-central not ready after {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` and start again on the same ports and database.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.kill9();
        let fresh = Self::start_with_token(
            self.db.clone(),
            self.http_port,
            self.mqtt_port,
            self.external_mqtt.clone(),
            self.token.clone(),
            self.env.clone(),
        )
        .await?;
        *self = fresh;
        Ok(())
    }

    /// Every row of an NDJSON history endpoint.
    pub async fn ndjson(&self, path_and_query: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let r = self
            .http
            .get(format!(
                "{}{}{}format=ndjson",
                self.base(),
                path_and_query,
                sep
            ))
            .send()
            .await?;
        if r.status().as_u16() == 404 {
            return Ok(Vec::new());
        }
        let text = r.error_for_status()?.text().await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("NDJSON line"))
            .collect()
    }

    /// What central stored for `node`: (sum of BLE sighting counts, BLE rows, door events,
    /// duplicated BLE keys).
    pub async fn totals(&self, node: &str) -> anyhow::Result<NodeTotals> {
        let ble = self
            .ndjson(&format!("/api/readings?node={node}&kind=ble"))
            .await?;
        let doors = self
            .ndjson(&format!("/api/doors/events?node={node}"))
            .await?;
        let mut keys = std::collections::HashSet::new();
        let mut dup = 0;
        for r in &ble {
            let k = format!("{}|{}|{}", r["device"], r["first_at"], r["at"]);
            if !keys.insert(k) {
                dup += 1;
            }
        }
        let mut dkeys = std::collections::HashSet::new();
        for d in &doors {
            if !dkeys.insert(format!("{}|{}|{}", d["door"], d["state"], d["at"])) {
                dup += 1;
            }
        }
        Ok(NodeTotals {
            advertisements: ble.iter().map(|r| r["count"].as_u64().unwrap_or(0)).sum(),
            ble_rows: ble.len() as u64,
            door_events: doors.len() as u64,
            duplicates: dup,
        })
    }
}

/// What central holds for one node (see [`CentralProc::totals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeTotals {
    pub advertisements: u64,
    pub ble_rows: u64,
    pub door_events: u64,
    pub duplicates: u64,
}

/// The simulation every edge in a test runs (same world for all).
#[derive(Debug, Clone)]
pub struct SimPlan {
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub speed: f64,
    pub devices: usize,
}

impl SimPlan {
    /// A world that started 30 minutes ago (so simulated time stays behind the wall
    /// clock), lasting `sim_secs` simulated seconds, run `speed` times faster than real time.
    pub fn new(sim_secs: i64, speed: f64) -> Self {
        let start = Utc::now() - chrono::Duration::minutes(30);
        let start = DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start);
        Self {
            seed: 7,
            start,
            until: start + chrono::Duration::seconds(sim_secs),
            speed,
            devices: 30,
        }
    }

    pub fn options(&self) -> roomsense_common::sim::SimOptions {
        roomsense_common::sim::SimOptions {
            start: self.start,
            devices: self.devices,
            dwell_secs: [2.0, 15.0],
            stationary_fraction: 0.0,
            ..Default::default()
        }
    }

    /// What the simulator produces for `node` over `(start, until]`: (BLE advertisements,
    /// door transitions).
    pub fn expected(&self, node: &str) -> anyhow::Result<(u64, u64)> {
        let mut opts = self.options();
        opts.only_node = Some(NodeId::parse(node)?);
        let node_id = NodeId::parse(node)?;
        let mut sim = roomsense_common::sim::Simulator::new(
            roomsense_common::sim::Building::example(),
            self.seed,
            opts,
        )?;
        let (mut ble, mut door) = (0, 0);
        for e in sim.step(self.until) {
            if e.node() != &node_id {
                continue;
            }
            match e {
                roomsense_common::sim::SimEvent::Ble { .. } => ble += 1,
                roomsense_common::sim::SimEvent::Door { .. } => door += 1,
                roomsense_common::sim::SimEvent::Wifi { .. } => {}
            }
        }
        Ok((ble, door))
    }

    /// An edge config (TOML) for `node` talking to `mqtt_port`, its outbox at `outbox`.
    pub fn edge_toml(&self, node: &str, mqtt_port: u16, outbox: &std::path::Path) -> String {
        let o = self.options();
        format!(
            r#"[node]
id = "{node}"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
client_id = "{client}"
resend_timeout = "2s"
reconnect_min = "50ms"
reconnect_max = "500ms"
status_interval = "1s"
keep_alive = "5s"
[outbox]
path = "{outbox}"
[log]
level = "info"
[[sources]]
kind = "sim"
seed = {seed}
start = "{start}"
until = "{until}"
speed = {speed:?}
step = "50ms"
[sources.options]
devices = {devices}
dwell_secs = [{d0:?}, {d1:?}]
stationary_fraction = 0.0
"#,
            client = unique(&format!("edge-{node}")),
            outbox = outbox.display(),
            seed = self.seed,
            start = self.start.to_rfc3339(),
            until = self.until.to_rfc3339(),
            speed = self.speed,
            devices = o.devices,
            d0 = o.dwell_secs[0],
            d1 = o.dwell_secs[1],
        )
    }
}

impl SimPlan {
    /// Starts one `roomsense-edge run` per node on this plan, configs and outboxes in `dir`.
    pub fn spawn_edges(
        &self,
        dir: &std::path::Path,
        nodes: &[&str],
        mqtt_port: u16,
    ) -> anyhow::Result<Vec<Proc>> {
        let mut edges = Vec::new();
        for node in nodes {
            let cfg = dir.join(format!("{node}.toml"));
            std::fs::write(
                &cfg,
                self.edge_toml(node, mqtt_port, &dir.join(format!("{node}.db"))),
            )?;
            edges.push(spawn_edge(&cfg)?);
        }
        Ok(edges)
    }
}

/// Starts `roomsense-edge run` with the config file `config`.
pub fn spawn_edge(config: &std::path::Path) -> anyhow::Result<Proc> {
    let mut cmd = std::process::Command::new(bin_path("roomsense-edge")?);
    cmd.arg("run").arg("--config").arg(config);
    Proc::spawn("roomsense-edge", cmd)
}

/// Batches waiting in an edge's outbox file (0 if it does not exist yet).
pub async fn outbox_depth(path: &std::path::Path) -> anyhow::Result<i64> {
    use sqlx::ConnectOptions;
    if !path.exists() {
        return Ok(0);
    }
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batches")
        .fetch_one(&mut conn)
        .await?;
    Ok(n)
}

/// Waits until central holds exactly what the simulator produced for `node` (failing
/// early on duplicates), and returns the totals.
pub async fn wait_complete(
    central: &CentralProc,
    plan: &SimPlan,
    node: &str,
    deadline: Duration,
) -> anyhow::Result<NodeTotals> {
    let (ble, door) = plan.expected(node)?;
    let last = std::sync::Mutex::new(NodeTotals::default());
    let res = wait_for(
        &format!("{node}: {ble} advertisements and {door} door events at central"),
        deadline,
        || {
            let last = &last;
            async move {
                let t = central.totals(node).await.ok()?;
                if let Ok(mut l) = last.lock() {
                    *l = t;
                }
                (t.duplicates > 0
                    || t.advertisements > ble
                    || t.door_events > door
                    || (t.advertisements == ble && t.door_events == door))
                    .then_some(t)
            }
        },
    )
    .await;
    let last = last.lock().map(|l| *l).unwrap_or_default();
    match res {
        Ok(t) => Ok(t),
        Err(e) => {
            bail!("{e}; last seen {last:?}, expected {ble} advertisements, {door} door events")
        }
    }
}
