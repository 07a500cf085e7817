//! Configuration: defaults, then a TOML file, then `ROOMSENSE__SECTION__KEY` environment
//! variables, then CLI flags. Every section is `#[serde(default)]`; a bad value names its key.

use chrono::{DateTime, Utc};
pub use roomsense_common::config::parse_mqtt_url;
use roomsense_common::sim::SimOptions;
use roomsense_common::{DoorId, NodeId, Topics};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status for a bad configuration (systemd: `RestartPreventExitStatus=78`, EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// The commented default configuration printed by `roomsense-edge configfile`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub mqtt: MqttConfig,
    pub outbox: OutboxConfig,
    pub pipeline: PipelineConfig,
    pub privacy: PrivacyConfig,
    pub log: LogConfig,
    pub sources: Vec<SourceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            mqtt: MqttConfig::default(),
            outbox: OutboxConfig::default(),
            pipeline: PipelineConfig::default(),
            privacy: PrivacyConfig::default(),
            log: LogConfig::default(),
            sources: vec![SourceConfig::Sim(SimSourceConfig::default())],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (letters, digits, '-', '_'); it names the MQTT topics.
    pub id: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: "edge-1".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker, `mqtt://host:port`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub prefix: String,
    /// Client id; empty = `roomsense-edge-{node}`.
    pub client_id: String,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Batches published but not yet committed by central, at most.
    pub max_inflight: usize,
    /// A batch not commit-acked this long after its publish is sent again.
    #[serde(with = "humantime_serde")]
    pub resend_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How often the retained status is refreshed.
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            prefix: roomsense_common::DEFAULT_PREFIX.into(),
            client_id: String::new(),
            keep_alive: Duration::from_secs(30),
            max_inflight: 128,
            resend_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            status_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// SQLite file holding batches until central has committed them.
    pub path: PathBuf,
    /// Most batches kept; when full the oldest are dropped (and counted).
    pub max_batches: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/roomsense-edge/outbox.db"),
            max_batches: 200_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Smoothing {
    #[default]
    Mean,
    Median,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Aggregation window per device.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How RSSI is smoothed over a window.
    pub rssi: Smoothing,
    /// Capacity of the channel between sources and the aggregator.
    pub channel_capacity: usize,
    /// Most items in one batch (≤ 10000).
    pub max_batch_items: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(1),
            rssi: Smoothing::Mean,
            channel_capacity: 8192,
            max_batch_items: 2000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Salt for hashing addresses of devices not on an allow-list; empty = a random salt
    /// generated once and kept in the outbox database.
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `info,roomsense_edge=debug`.
    pub level: String,
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            json: false,
        }
    }
}

/// One sensor source (`[[sources]]` with `kind = ...`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Sim(SimSourceConfig),
    Replay(ReplaySourceConfig),
    Gpio(GpioSourceConfig),
    Ble(BleSourceConfig),
    Wifi(WifiSourceConfig),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Sim(_) => "sim",
            SourceConfig::Replay(_) => "replay",
            SourceConfig::Gpio(_) => "gpio",
            SourceConfig::Ble(_) => "ble",
            SourceConfig::Wifi(_) => "wifi",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimSourceConfig {
    /// Building TOML; none = the built-in example building.
    pub building: Option<PathBuf>,
    pub seed: u64,
    /// Simulated time starts here (same on every node that must see the same world);
    /// none = the time of this node's first run (kept in the outbox).
    pub start: Option<DateTime<Utc>>,
    /// Stop producing at this simulated time (tests, benchmarks).
    pub until: Option<DateTime<Utc>>,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Real time between simulation steps.
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    /// Simulator options (`start` and `only_node` are set by the edge).
    pub options: SimOptions,
}

impl Default for SimSourceConfig {
    fn default() -> Self {
        Self {
            building: None,
            seed: 1,
            start: None,
            until: None,
            speed: 1.0,
            step: Duration::from_millis(100),
            options: SimOptions::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaySourceConfig {
    /// NDJSON file written by `roomsense-edge record`.
    pub path: PathBuf,
    /// Replay speed relative to the recording; 0 = as fast as possible.
    pub speed: f64,
    /// Shift timestamps so the first observation is at the time the replay starts.
    pub shift_to_now: bool,
}

impl Default for ReplaySourceConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("recording.ndjson"),
            speed: 1.0,
            shift_to_now: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    #[default]
    Up,
    Down,
    None,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ActiveLevel {
    /// The contact reads low when the door is open (pull-up, switch to ground).
    #[default]
    Low,
    High,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpioPin {
    /// BCM pin number.
    pub pin: u8,
    pub door: DoorId,
    #[serde(default)]
    pub pull: Pull,
    /// Level that means "open".
    #[serde(default)]
    pub active: ActiveLevel,
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
}

fn default_debounce() -> Duration {
    Duration::from_millis(50)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GpioSourceConfig {
    pub pins: Vec<GpioPin>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BleSourceConfig {
    /// Adapter name (e.g. `hci0`); none = the first one.
    pub adapter: Option<String>,
    /// Advertisements weaker than this are ignored, dBm.
    pub min_rssi: i16,
    /// Enrolled devices: address (AA:BB:..) or iBeacon `uuid:major:minor` or Eddystone
    /// `namespace:instance` → reported name. Anything else is reported as a salted hash.
    pub allow: std::collections::BTreeMap<String, String>,
    /// Addresses or beacon ids never reported.
    pub deny: Vec<String>,
    /// Report only devices on the allow-list.
    pub only_allowed: bool,
}

impl Default for BleSourceConfig {
    fn default() -> Self {
        Self {
            adapter: None,
            min_rssi: -100,
            allow: Default::default(),
            deny: Vec::new(),
            only_allowed: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WifiSourceConfig {
    /// Interface (e.g. `wlan0`); none = every wireless interface.
    pub interface: Option<String>,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for WifiSourceConfig {
    fn default() -> Self {
        Self {
            interface: None,
            interval: Duration::from_secs(10),
        }
    }
}

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn bad(key: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {msg}"))
}

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

    pub fn node_id(&self) -> Result<NodeId, ConfigError> {
        NodeId::parse(&self.node.id).map_err(|e| bad("node.id", e))
    }

    pub fn topics(&self) -> Result<Topics, ConfigError> {
        Topics::new(&self.mqtt.prefix).map_err(|e| bad("mqtt.prefix", e))
    }

    pub fn client_id(&self) -> String {
        if self.mqtt.client_id.is_empty() {
            format!("roomsense-edge-{}", self.node.id)
        } else {
            self.mqtt.client_id.clone()
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.node_id()?;
        self.topics()?;
        parse_mqtt_url(&self.mqtt.url).map_err(|e| bad("mqtt.url", e))?;
        if self.mqtt.max_inflight == 0 || self.mqtt.max_inflight > 1000 {
            return Err(bad("mqtt.max_inflight", "must be between 1 and 1000"));
        }
        if self.mqtt.resend_timeout.is_zero() {
            return Err(bad("mqtt.resend_timeout", "must be more than 0"));
        }
        if self.mqtt.keep_alive < Duration::from_secs(1) {
            return Err(bad("mqtt.keep_alive", "must be at least 1s"));
        }
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_max < self.mqtt.reconnect_min {
            return Err(bad(
                "mqtt.reconnect_min",
                "must be more than 0 and at most mqtt.reconnect_max",
            ));
        }
        if self.mqtt.status_interval < Duration::from_secs(1) {
            return Err(bad("mqtt.status_interval", "must be at least 1s"));
        }
        if self.outbox.path.as_os_str().is_empty() {
            return Err(bad("outbox.path", "must not be empty"));
        }
        if self.outbox.max_batches == 0 {
            return Err(bad("outbox.max_batches", "must be at least 1"));
        }
        if self.pipeline.window < Duration::from_millis(10)
            || self.pipeline.window > Duration::from_secs(3600)
        {
            return Err(bad("pipeline.window", "must be between 10ms and 1h"));
        }
        if self.pipeline.channel_capacity == 0 {
            return Err(bad("pipeline.channel_capacity", "must be at least 1"));
        }
        if !(1..=roomsense_common::validate::MAX_BATCH_ITEMS)
            .contains(&self.pipeline.max_batch_items)
        {
            return Err(bad(
                "pipeline.max_batch_items",
                "must be between 1 and 10000",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| bad("log.level", e))?;
        if self.sources.is_empty() {
            return Err(bad("sources", "at least one [[sources]] entry is needed"));
        }
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("sources[{i}].{k}");
            match s {
                SourceConfig::Sim(c) => {
                    if !(c.speed.is_finite() && c.speed > 0.0 && c.speed <= 100_000.0) {
                        return Err(bad(&key("speed"), "must be a number in (0, 100000]"));
                    }
                    if c.step < Duration::from_millis(1) {
                        return Err(bad(&key("step"), "must be at least 1ms"));
                    }
                    if let (Some(a), Some(b)) = (c.start, c.until) {
                        if b <= a {
                            return Err(bad(&key("until"), "must be after start"));
                        }
                    }
                }
                SourceConfig::Replay(c) => {
                    if !(c.speed.is_finite() && c.speed >= 0.0) {
                        return Err(bad(
                            &key("speed"),
                            "must be 0 (as fast as possible) or more",
                        ));
                    }
                }
                SourceConfig::Gpio(c) => {
                    if c.pins.is_empty() {
                        return Err(bad(&key("pins"), "at least one pin is needed"));
                    }
                    let mut seen = std::collections::BTreeSet::new();
                    for (j, p) in c.pins.iter().enumerate() {
                        if p.pin > 53 {
                            return Err(bad(&key(&format!("pins[{j}].pin")), "must be 0-53"));
                        }
                        if !seen.insert(p.pin) {
                            return Err(bad(
                                &key(&format!("pins[{j}].pin")),
                                format!("pin {} is used twice", p.pin),
                            ));
                        }
                    }
                }
                SourceConfig::Ble(c) => {
                    if !(-127..=20).contains(&c.min_rssi) {
                        return Err(bad(&key("min_rssi"), "must be between -127 and 20"));
                    }
                }
                SourceConfig::Wifi(c) => {
                    if c.interval < Duration::from_secs(1) {
                        return Err(bad(&key("interval"), "must be at least 1s"));
                    }
                }
            }
        }
        if self.sources.iter().filter(|s| s.kind() == "sim").count() > 1 {
            return Err(bad("sources", "at most one sim source"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_file_equals_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, DEFAULT_CONFIG_TOML).unwrap();
        let c = Config::load(Some(&p), Vec::new(), &[]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn env_and_overrides_win_and_bad_keys_are_named() {
        let env = vec![
            ("ROOMSENSE__NODE__ID".to_string(), "pi-7".to_string()),
            (
                "ROOMSENSE__MQTT__MAX_INFLIGHT".to_string(),
                "64".to_string(),
            ),
        ];
        let c = Config::load(
            None,
            env,
            &[("mqtt.url", toml::Value::String("mqtt://h:1999".into()))],
        )
        .unwrap();
        assert_eq!(c.node.id, "pi-7");
        assert_eq!(c.mqtt.max_inflight, 64);
        assert_eq!(c.mqtt.url, "mqtt://h:1999");

        let e = Config::load(
            None,
            vec![("ROOMSENSE__NODE__ID".into(), "a b".into())],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("node.id"), "{e}");
        let e = Config::load(
            None,
            vec![("ROOMSENSE__PIPELINE__WINDOW".into(), "soon".into())],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("pipeline.window"), "{e}");
        let e = Config::load(
            None,
            vec![("ROOMSENSE__MQTT__NOPE".into(), "1".into())],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("mqtt.nope"), "{e}");
    }

    #[test]
    fn sources_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.toml");
        std::fs::write(
            &p,
            r#"
[[sources]]
kind = "gpio"
pins = [{ pin = 17, door = "front", pull = "up", active = "low", debounce = "30ms" }]

[[sources]]
kind = "sim"
seed = 9
speed = 10.0
start = "2026-01-01T00:00:00Z"
[sources.options]
devices = 5
"#,
        )
        .unwrap();
        let c = Config::load(Some(&p), Vec::new(), &[]).unwrap();
        assert_eq!(c.sources.len(), 2);
        match &c.sources[0] {
            SourceConfig::Gpio(g) => assert_eq!(g.pins[0].debounce, Duration::from_millis(30)),
            o => panic!("{o:?}"),
        }
        match &c.sources[1] {
            SourceConfig::Sim(s) => {
                assert_eq!(s.options.devices, 5);
                assert_eq!(s.seed, 9);
            }
            o => panic!("{o:?}"),
        }
        std::fs::write(&p, "[[sources]]\nkind = \"gpio\"\npins = []\n").unwrap();
        let e = Config::load(Some(&p), Vec::new(), &[]).unwrap_err();
        assert!(e.to_string().contains("sources[0].pins"), "{e}");
    }
}
