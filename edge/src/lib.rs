//! roomsense edge daemon: sensor sources → aggregation windows → durable SQLite outbox →
//! MQTT uplink with central's commit acks. See `DESIGN.md` ("Edge daemon").

pub mod aggregate;
pub mod app;
pub mod batch;
pub mod check;
pub mod config;
pub mod obs;
pub mod outbox;
pub mod publisher;
pub mod sources;
pub mod stats;

pub use config::{Config, ConfigError, DEFAULT_CONFIG_TOML, EXIT_CONFIG};
