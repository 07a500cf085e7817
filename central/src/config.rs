//! Configuration: defaults, then a TOML file, then `ROOMSENSE__SECTION__KEY` environment
//! variables, then CLI flags. Every section is `#[serde(default)]`.

pub use roomsense_common::config::parse_mqtt_url;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Exit status for a bad configuration (systemd: `RestartPreventExitStatus=78`, EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub database: DatabaseConfig,
    pub ingest: IngestConfig,
    pub nodes: NodesConfig,
    pub log: LogConfig,
    pub demo: DemoConfig,
    pub positioning: PositioningConfig,
    pub training: TrainingConfig,
    pub access: AccessConfig,
    pub occupancy: OccupancyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Cross-validation folds (grouped by reference position) of a training job.
    pub folds: usize,
    /// Largest k tried for building, floor and position.
    pub max_k: usize,
    /// Held-out queries per configuration in cross-validation (spread over the samples).
    pub max_cv_queries: usize,
    /// A calibration window is cut into slices this long; each slice is one sample.
    #[serde(with = "humantime_serde")]
    pub calibration_slice: Duration,
    /// Readings arriving this long after a calibration window closed still count.
    #[serde(with = "humantime_serde")]
    pub calibration_grace: Duration,
    /// Longest calibration window accepted.
    #[serde(with = "humantime_serde")]
    pub max_calibration: Duration,
    /// Height of a floor (m), for receiver path-loss fits across floors.
    pub floor_height_m: f64,
    /// Largest sample file accepted by POST /api/training/samples, bytes.
    pub max_import_bytes: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            max_k: 15,
            max_cv_queries: 4000,
            calibration_slice: Duration::from_secs(2),
            calibration_grace: Duration::from_secs(5),
            max_calibration: Duration::from_secs(600),
            floor_height_m: 3.5,
            max_import_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Position estimates below this confidence do not move a device between rooms (for
    /// access events and occupancy).
    pub min_confidence: f32,
    /// The access model (rooms, devices, rules) is reloaded at least this often.
    #[serde(with = "humantime_serde")]
    pub model_reload: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            min_confidence: crate::access::DEFAULT_MIN_CONFIDENCE,
            model_reload: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OccupancyConfig {
    /// A device without a position estimate for this long has left its room.
    #[serde(with = "humantime_serde")]
    pub absent_after: Duration,
    /// Most buckets one occupancy history request may ask for (rooms × intervals).
    pub max_buckets: usize,
    /// Dwell: a device not estimated for longer than this is not assumed to have stayed.
    #[serde(with = "humantime_serde")]
    pub dwell_max_gap: Duration,
    /// Most stored position estimates one history or dwell request may read.
    pub max_scan_rows: u64,
}

impl Default for OccupancyConfig {
    fn default() -> Self {
        Self {
            absent_after: Duration::from_secs(300),
            max_buckets: 100_000,
            dwell_max_gap: Duration::from_secs(300),
            max_scan_rows: 5_000_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PositioningConfig {
    /// Building file (rooms, receivers at x/y/floor with rssi_at_1m and exponent) used to
    /// locate devices live; empty = none (with `--demo`: the demo building).
    pub building: String,
    /// How each device is tracked: `particles` (default) walks a cloud of hypotheses over
    /// the floor plan — through walls only by doors, through a door with a contact only
    /// while it is open — weighed by the receivers' path-loss model; `kalman` is the
    /// earlier chain of multilateration (or a trained radio map), Kalman smoothing and a
    /// room filter.
    pub tracker: Tracker,
    /// With `tracker = "kalman"`: Kalman smoothing of every track. Either tracker takes
    /// `max_speed_mps` as the fastest walking speed.
    pub kalman: bool,
    pub max_speed_mps: f64,
    /// RSSI window per device and receiver.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// At most one stored position per device per this long (plus one per room change).
    #[serde(with = "humantime_serde")]
    pub store_interval: Duration,
    /// Sightings buffered between ingest and the positioning task; beyond, oldest dropped.
    pub queue_capacity: usize,
}

/// How the live pipeline tracks each device (`[positioning] tracker`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tracker {
    Particles,
    Kalman,
}

impl Default for PositioningConfig {
    fn default() -> Self {
        Self {
            building: String::new(),
            tracker: Tracker::Particles,
            kalman: true,
            max_speed_mps: 2.0,
            window: Duration::from_secs(2),
            store_interval: Duration::from_secs(1),
            queue_capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the REST API and web page.
    pub listen: SocketAddr,
    /// Browser origins allowed to call the API (CORS), e.g. `https://ops.example.com`;
    /// `*` allows any; empty (default) allows none.
    pub cors_origins: Vec<String>,
    /// PEM certificate chain; with `tls_key`, the API is served over HTTPS (rustls).
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            cors_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BrokerMode {
    /// Run rumqttd inside this process.
    Embedded,
    /// Connect to an external broker (Mosquitto, EMQX) at `mqtt.url`.
    External,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub mode: BrokerMode,
    /// Listen address of the embedded broker.
    pub listen: SocketAddr,
    /// External broker, `mqtt://host:port` (used when `mode = "external"`).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Topic prefix.
    pub prefix: String,
    /// MQTT client id of the ingest client; keep it stable so the broker keeps the session.
    pub client_id: String,
    /// Shared-subscription group so several central replicas split ingest (external broker).
    pub shared_group: Option<String>,
    /// Embedded broker: most client connections.
    pub max_connections: usize,
    /// Embedded broker: largest payload accepted, bytes.
    pub max_payload_size: usize,
    /// Embedded broker: in-memory log per topic filter is segments × segment size.
    pub segment_size: usize,
    pub segment_count: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            mode: BrokerMode::Embedded,
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            prefix: roomsense_common::DEFAULT_PREFIX.into(),
            client_id: "roomsense-central".into(),
            shared_group: None,
            max_connections: 10_000,
            max_payload_size: roomsense_common::validate::MAX_PAYLOAD_BYTES,
            segment_size: 16 * 1024 * 1024,
            segment_count: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Reader connections (SQLite) or pool size (Postgres).
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://roomsense.db".into(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Most MQTT messages written in one transaction. The writer takes whatever is queued
    /// up to this (group commit): no waiting under light load, large transactions under load.
    pub max_batch_messages: usize,
    /// Messages buffered between MQTT and the writer (back-pressure beyond).
    pub queue_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_messages: 256,
            queue_capacity: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodesConfig {
    /// A node that sent nothing for this long is marked offline.
    #[serde(with = "humantime_serde")]
    pub silence_timeout: Duration,
    /// A node whose clock differs from ours by more than this is flagged.
    #[serde(with = "humantime_serde")]
    pub clock_skew_threshold: Duration,
}

impl Default for NodesConfig {
    fn default() -> Self {
        Self {
            silence_timeout: Duration::from_secs(120),
            clock_skew_threshold: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `info,roomsense_central=debug`; `RUST_LOG` wins if set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info,rumqttd=warn".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Run simulated edge nodes that publish over real MQTT to this server.
    pub enabled: bool,
    /// Building file; empty = the built-in example building.
    pub building: String,
    pub devices: usize,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            building: String::new(),
            devices: 12,
            seed: 1,
        }
    }
}

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads defaults, then `file` (if given; it must exist), then the environment, then
    /// `overrides` (dotted key → value, from CLI flags).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, toml::Value)],
    ) -> Result<Config, ConfigError> {
        let config: Config =
            roomsense_common::config::load_layered(file, env, overrides).map_err(ConfigError)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "database.url: {url:?} is neither sqlite://… nor postgres://…"
            )));
        }
        for o in &self.http.cors_origins {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.split_once("://").is_some_and(|(_, h)| {
                        h.trim_end_matches('/').contains('/') || h.is_empty()
                    })
                    && !o.contains(char::is_whitespace));
            if !ok {
                return Err(ConfigError(format!(
                    "http.cors_origins: {o:?} is not an origin (scheme://host[:port], or \"*\")"
                )));
            }
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return Err(ConfigError(
                "http.tls_cert, http.tls_key: set both for HTTPS, or neither".into(),
            ));
        }
        roomsense_common::Topics::new(&self.mqtt.prefix)
            .map_err(|e| ConfigError(format!("mqtt.prefix: {e}")))?;
        if self.mqtt.mode == BrokerMode::External {
            parse_mqtt_url(&self.mqtt.url).map_err(|e| ConfigError(format!("mqtt.url: {e}")))?;
        }
        if self.mqtt.segment_size < 1024 {
            return Err(ConfigError(
                "mqtt.segment_size: must be at least 1024".into(),
            ));
        }
        if self.mqtt.client_id.is_empty() {
            return Err(ConfigError("mqtt.client_id: must not be empty".into()));
        }
        if self.ingest.max_batch_messages == 0 {
            return Err(ConfigError(
                "ingest.max_batch_messages: must be at least 1".into(),
            ));
        }
        if self.ingest.queue_capacity == 0 {
            return Err(ConfigError(
                "ingest.queue_capacity: must be at least 1".into(),
            ));
        }
        if self.nodes.silence_timeout.is_zero() {
            return Err(ConfigError(
                "nodes.silence_timeout: must be more than 0".into(),
            ));
        }
        let p = &self.positioning;
        if !(p.max_speed_mps.is_finite() && p.max_speed_mps > 0.0) {
            return Err(ConfigError(
                "positioning.max_speed_mps: must be a positive number".into(),
            ));
        }
        if p.window < Duration::from_millis(100) {
            return Err(ConfigError(
                "positioning.window: must be at least 100ms".into(),
            ));
        }
        if p.queue_capacity == 0 {
            return Err(ConfigError(
                "positioning.queue_capacity: must be at least 1".into(),
            ));
        }
        let t = &self.training;
        if t.folds < 2 {
            return Err(ConfigError("training.folds: must be at least 2".into()));
        }
        if t.max_k == 0 || t.max_cv_queries == 0 {
            return Err(ConfigError(
                "training.max_k and training.max_cv_queries: must be at least 1".into(),
            ));
        }
        if t.calibration_slice.as_millis() == 0 || t.max_calibration.as_secs() == 0 {
            return Err(ConfigError(
                "training.calibration_slice and training.max_calibration: must be more than 0"
                    .into(),
            ));
        }
        if !t.floor_height_m.is_finite() || t.floor_height_m <= 0.0 {
            return Err(ConfigError(
                "training.floor_height_m: must be more than 0".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.access.min_confidence) {
            return Err(ConfigError(
                "access.min_confidence: must be between 0 and 1".into(),
            ));
        }
        if self.access.model_reload.is_zero() {
            return Err(ConfigError(
                "access.model_reload: must be more than 0".into(),
            ));
        }
        if self.occupancy.absent_after.is_zero() {
            return Err(ConfigError(
                "occupancy.absent_after: must be more than 0".into(),
            ));
        }
        if self.occupancy.max_buckets == 0 {
            return Err(ConfigError(
                "occupancy.max_buckets: must be at least 1".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError(format!("log.level: {e}")))?;
        Ok(())
    }
}

/// The commented default configuration printed by `roomsense-central configfile`.
pub const DEFAULT_CONFIG_TOML: &str = r#"# roomsense-central configuration (/etc/roomsense/central.toml).
# Every key is optional; shown here with its default. Any key can also be set in the
# environment as ROOMSENSE__SECTION__KEY (e.g. ROOMSENSE__DATABASE__URL), and CLI flags
# override both. A bad value stops the server with exit status 78 and names the key.

[http]
# Address of the REST API.
listen = "0.0.0.0:8080"
# Browser origins allowed to call the API (CORS); "*" allows any; empty allows none.
cors_origins = []
# Serve HTTPS directly (rustls): PEM certificate chain and private key. Both or neither;
# or leave them unset and terminate TLS in a reverse proxy (see README, Security).
# tls_cert = "/etc/roomsense/tls/cert.pem"
# tls_key = "/etc/roomsense/tls/key.pem"

[mqtt]
# "embedded": run the MQTT broker (rumqttd) inside this process.
# "external": connect to the broker at `url` (Mosquitto, EMQX) instead.
mode = "embedded"
# Listen address of the embedded broker.
listen = "0.0.0.0:1883"
# External broker URL (mode = "external").
url = "mqtt://127.0.0.1:1883"
# username = "roomsense"
# password = "secret"
# Topic prefix shared with every edge node.
prefix = "roomsense/v1"
# Client id of the ingest client; keep it stable so the broker keeps its session.
client_id = "roomsense-central"
# With an external broker, replicas in the same group split ingest (MQTT shared subscription).
# shared_group = "roomsense-central"
# Embedded broker limits.
max_connections = 10000
max_payload_size = 4194304
segment_size = 16777216
segment_count = 8

[database]
# sqlite://FILE (created if missing) or postgres://user@host/db.
url = "sqlite://roomsense.db"
# Reader connections (SQLite) or pool size (Postgres).
max_connections = 8

[ingest]
# Most MQTT messages written in one transaction (the writer takes what is queued).
max_batch_messages = 256
# Messages buffered between the broker and the database writer.
queue_capacity = 4096

[nodes]
# A node that sent nothing for this long is marked offline.
silence_timeout = "2m"
# A node whose clock is off by more than this is flagged (clock_suspect).
clock_skew_threshold = "30s"

[log]
# tracing filter; RUST_LOG wins if set; change it at run time with PUT /debug/log-level.
level = "info,rumqttd=warn"
# "text" or "json".
format = "text"

[demo]
# Simulated edge nodes publishing over real MQTT (roomsense-central serve --demo).
enabled = false
# Building file; empty = the built-in example (deploy/examples/building.toml).
building = ""
devices = 12
seed = 1

[positioning]
# Building file (format: deploy/examples/building.toml) whose receivers and rooms are used
# to locate tracked devices live. Empty: no live positions (with --demo: the demo building).
building = ""
# How each device is tracked: "particles" (a cloud of hypotheses walking the floor plan:
# through walls only by doors, through a door with a contact only while it is open,
# weighed by the receivers' path-loss model) or "kalman" (multilateration or a trained
# radio map, Kalman smoothing, a room filter). particles scores better on the simulator
# (BENCHMARKS.md).
tracker = "particles"
# With tracker = "kalman": smooth each track with a Kalman filter. Both trackers clamp
# tracks to this walking speed (m/s).
kalman = true
max_speed_mps = 2.0
# RSSI window per device and receiver (outliers rejected, the rest averaged); 2 s is what
# calibration on the simulated example building chooses (eval --method live).
window = "2s"
# Stored position history: at most one row per device per interval, plus every room change.
store_interval = "1s"
# Sightings buffered for the positioning task; when it falls behind, the oldest are
# dropped and counted (positioning_dropped in /api/ingest/stats).
queue_capacity = 100000

[training]
# Training jobs (POST /api/training): grouped cross-validation folds, largest k tried,
# held-out queries per configuration.
folds = 5
max_k = 15
max_cv_queries = 4000
# Calibration (POST /api/calibration): the window is cut into slices of this length, one
# labelled sample per slice; readings arriving up to `calibration_grace` after the window
# still count; longest window accepted.
calibration_slice = "2s"
calibration_grace = "5s"
max_calibration = "10m"
# Floor height (m) for receiver path-loss fits across floors.
floor_height_m = 3.5
# Largest sample file accepted by POST /api/training/samples (bytes).
max_import_bytes = 268435456

[access]
# Position estimates below this confidence do not move a device between rooms.
min_confidence = 0.5
# The access model (rooms, doors, devices, people, rules) is reloaded at least this often.
model_reload = "30s"

[occupancy]
# A device without a position estimate for this long has left its room.
absent_after = "5m"
# Most (room, interval) buckets one GET /api/occupancy/history may cover.
max_buckets = 100000
# Dwell time: a gap between two estimates longer than this is not counted as staying.
dwell_max_gap = "5m"
# Most stored position estimates one history or dwell request may read.
max_scan_rows = 5000000
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn commented_default_is_the_default() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn layers_file_env_flags() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[http]\nlisten = \"127.0.0.1:9000\"\n[ingest]\nmax_batch_messages = 5"
        )
        .unwrap();
        let env = vec![
            (
                "ROOMSENSE__INGEST__MAX_BATCH_MESSAGES".to_string(),
                "7".to_string(),
            ),
            (
                "ROOMSENSE__DATABASE__URL".to_string(),
                "sqlite://x.db".to_string(),
            ),
            ("OTHER".to_string(), "1".to_string()),
        ];
        let c = Config::load(
            Some(f.path()),
            env,
            &[("database.url", toml::Value::String("sqlite://y.db".into()))],
        )
        .unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.ingest.max_batch_messages, 7);
        assert_eq!(c.database.url, "sqlite://y.db");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[http]\nlisten = 12").unwrap();
        let e = Config::load(Some(f.path()), no_env(), &[]).unwrap_err();
        assert!(e.to_string().contains("http.listen"), "{e}");

        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[http]\nlisten_addr = \"x\"").unwrap();
        let e = Config::load(Some(f.path()), no_env(), &[]).unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");

        let env = vec![(
            "ROOMSENSE__NODES__SILENCE_TIMEOUT".to_string(),
            "soon".to_string(),
        )];
        let e = Config::load(None, env, &[]).unwrap_err();
        assert!(e.to_string().contains("nodes.silence_timeout"), "{e}");

        let env = vec![(
            "ROOMSENSE__DATABASE__URL".to_string(),
            "mysql://x".to_string(),
        )];
        let e = Config::load(None, env, &[]).unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
    }
}
