//! roomsense central server: MQTT ingest (embedded rumqttd or an external broker), node
//! registry, storage (SQLite or Postgres), REST API.

pub mod access;
pub mod access_pipeline;
pub mod api;
pub mod app;
pub mod auth;
pub mod broker;
pub mod bus;
pub mod config;
pub mod demo;
pub mod ingest;
pub mod live;
pub mod live_eval;
pub mod model;
pub mod mqtt;
pub mod occupancy;
pub mod positioning;
pub mod site;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod training;

pub use app::Application;
pub use config::Config;
