//! `serve --demo`: simulated edge nodes publishing over real MQTT (being written).

use crate::config::DemoConfig;
use roomsense_common::Topics;
use std::net::SocketAddr;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn spawn(
    _cfg: &DemoConfig,
    _broker: SocketAddr,
    _topics: &Topics,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    Ok(tokio::spawn(async move { stop.cancelled().await }))
}
