//! The `sim` source: the deterministic simulator from `common`, keeping only this node's
//! events. Simulated time advances `speed` times as fast as real time from where this
//! node left off (the outbox cursor), so a restart neither repeats nor skips anything.

use super::{OpenEnv, SensorSource, SourceCtx};
use crate::config::SimSourceConfig;
use crate::obs::{Observation, SourceEvent};
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use roomsense_common::sim::{Building, SimEvent, Simulator};
use roomsense_common::{DeviceId, NodeId, SightingKind};
use std::time::Duration;

pub struct SimSource {
    sim: Simulator,
    node: NodeId,
    until_ms: Option<i64>,
    speed: f64,
    step: Duration,
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl SimSource {
    pub fn open(c: &SimSourceConfig, env: &OpenEnv) -> anyhow::Result<Self> {
        let building = match &c.building {
            Some(p) => {
                let s = std::fs::read_to_string(p)
                    .with_context(|| format!("sim building file {}", p.display()))?;
                Building::from_toml_str(&s).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
            None => Building::example(),
        };
        let mut opts = c.options.clone();
        opts.start = c.start.unwrap_or_else(|| ms_time(env.sim_start_ms));
        opts.only_node = Some(env.node.clone());
        let start_ms = opts.start.timestamp_millis();
        let mut sim = Simulator::new(building, c.seed, opts)
            .map_err(|e| anyhow::anyhow!("sim source: {e}"))?;
        let until_ms = c.until.map(|u| u.timestamp_millis());
        if let Some(cursor) = env.cursor_ms {
            // Everything before `cursor` is already in the outbox.
            let mut resume = cursor - 1;
            if let Some(u) = until_ms {
                resume = resume.min(u);
            }
            if resume > start_ms {
                tracing::info!(resume_at = %ms_time(resume), "sim: resuming where the outbox left off");
                sim.skip_to(ms_time(resume));
            }
        }
        Ok(Self {
            sim,
            node: env.node.clone(),
            until_ms,
            speed: c.speed,
            step: c.step,
        })
    }
}

/// A simulator event as an observation (`None`: another node's, or an id that does not parse).
pub fn to_observation(e: SimEvent, node: &NodeId) -> Option<Observation> {
    if e.node() != node {
        return None;
    }
    Some(match e {
        SimEvent::Ble {
            device,
            rssi,
            tx_power,
            at,
            ..
        } => Observation::Ble {
            device: DeviceId::parse(&device).ok()?,
            rssi,
            tx_power,
            kind: SightingKind::Generic,
            at,
        },
        SimEvent::Door {
            door, state, at, ..
        } => Observation::Door { door, state, at },
        SimEvent::Wifi {
            bssid,
            ssid,
            rssi,
            channel,
            at,
            ..
        } => Observation::Wifi {
            bssid,
            ssid,
            rssi,
            channel,
            at,
        },
    })
}

#[async_trait]
impl SensorSource for SimSource {
    fn name(&self) -> String {
        "sim".into()
    }

    fn kind(&self) -> &'static str {
        "sim"
    }

    fn event_time(&self) -> bool {
        true
    }

    async fn run(mut self: Box<Self>, ctx: SourceCtx) -> anyhow::Result<()> {
        let base_sim = self.sim.now().timestamp_millis();
        let base_wall = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(self.step);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let elapsed = base_wall.elapsed().as_secs_f64() * 1000.0 * self.speed;
            let mut target = base_sim.saturating_add(elapsed as i64);
            if let Some(u) = self.until_ms {
                target = target.min(u);
            }
            if target > self.sim.now().timestamp_millis() {
                for e in self.sim.step(ms_time(target)) {
                    if let Some(o) = to_observation(e, &self.node) {
                        if !ctx.obs(o).await {
                            return Ok(());
                        }
                    }
                }
                if !ctx.send(SourceEvent::Watermark(target)).await {
                    return Ok(());
                }
            }
            if self.until_ms.is_some_and(|u| target >= u) {
                tracing::info!("sim: reached `until`; no more observations");
                ctx.send(SourceEvent::Done).await;
                return Ok(());
            }
        }
    }
}
