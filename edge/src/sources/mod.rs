//! Sensor sources behind one trait: each runs until cancelled (or out of input) and sends
//! observations to the pipeline's bounded channel.

pub mod hw;
pub mod replay;
pub mod sim;

use crate::config::SourceConfig;
use crate::obs::{Observation, SourceEvent, SourceMsg};
use crate::stats::Shared;
use async_trait::async_trait;
use roomsense_common::NodeId;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How a running source talks to the pipeline.
#[derive(Clone)]
pub struct SourceCtx {
    pub index: usize,
    pub tx: mpsc::Sender<SourceMsg>,
    pub cancel: CancellationToken,
    pub shared: Arc<Shared>,
}

impl SourceCtx {
    /// Sends one event; `false` once the pipeline is gone or cancelled.
    pub async fn send(&self, event: SourceEvent) -> bool {
        let msg = SourceMsg {
            source: self.index,
            event,
        };
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            r = self.tx.send(msg) => r.is_ok(),
        }
    }

    pub async fn obs(&self, o: Observation) -> bool {
        self.send(SourceEvent::Obs(o)).await
    }
}

/// What opening a source may need.
#[derive(Debug, Clone)]
pub struct OpenEnv {
    pub node: NodeId,
    /// Everything observed before this time (ms) is already in the outbox.
    pub cursor_ms: Option<i64>,
    /// Simulated start when the config leaves it open (first run of this node).
    pub sim_start_ms: i64,
    pub salt: String,
}

/// A sensor source.
#[async_trait]
pub trait SensorSource: Send {
    /// Name in the node status (`sim`, `gpio`, ... plus an index when repeated).
    fn name(&self) -> String;
    fn kind(&self) -> &'static str;
    /// Event-time sources send their own watermarks (sim, replay); for the others the
    /// pipeline uses the wall clock.
    fn event_time(&self) -> bool;
    /// Runs until cancelled or out of input.
    async fn run(self: Box<Self>, ctx: SourceCtx) -> anyhow::Result<()>;
}

/// Opens a source: hardware is looked for here, so a missing GPIO chip, BLE adapter or
/// WiFi interface fails at start with a message that says so.
pub async fn open(cfg: &SourceConfig, env: &OpenEnv) -> anyhow::Result<Box<dyn SensorSource>> {
    match cfg {
        SourceConfig::Sim(c) => Ok(Box::new(sim::SimSource::open(c, env)?)),
        SourceConfig::Replay(c) => Ok(Box::new(replay::ReplaySource::open(c, env)?)),
        SourceConfig::Gpio(c) => hw::open_gpio(c, env).await,
        SourceConfig::Ble(c) => hw::open_ble(c, env).await,
        SourceConfig::Wifi(c) => hw::open_wifi(c, env).await,
    }
}
