//! The `replay` source: observations recorded by `roomsense-edge record` (NDJSON, one
//! [`Observation`] a line), replayed with their original spacing scaled by `speed`.

use super::{OpenEnv, SensorSource, SourceCtx};
use crate::config::ReplaySourceConfig;
use crate::obs::{Observation, SourceEvent};
use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use std::time::Duration;

pub struct ReplaySource {
    observations: Vec<Observation>,
    speed: f64,
    shift_to_now: bool,
    cursor_ms: Option<i64>,
}

/// Parses NDJSON observations; a bad line is an error naming its number.
pub fn parse_ndjson(text: &str) -> anyhow::Result<Vec<Observation>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}", i + 1)))
        .collect()
}

impl ReplaySource {
    pub fn open(c: &ReplaySourceConfig, env: &OpenEnv) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(&c.path)
            .with_context(|| format!("replay file {}", c.path.display()))?;
        let mut observations =
            parse_ndjson(&text).with_context(|| format!("replay file {}", c.path.display()))?;
        observations.sort_by_key(Observation::at_ms);
        Ok(Self {
            observations,
            speed: c.speed,
            shift_to_now: c.shift_to_now,
            cursor_ms: env.cursor_ms,
        })
    }
}

fn shift(o: &mut Observation, by: chrono::Duration) {
    match o {
        Observation::Ble { at, .. }
        | Observation::Door { at, .. }
        | Observation::Wifi { at, .. } => *at += by,
    }
}

#[async_trait]
impl SensorSource for ReplaySource {
    fn name(&self) -> String {
        "replay".into()
    }

    fn kind(&self) -> &'static str {
        "replay"
    }

    fn event_time(&self) -> bool {
        true
    }

    async fn run(self: Box<Self>, ctx: SourceCtx) -> anyhow::Result<()> {
        let Some(first) = self.observations.first().map(Observation::at) else {
            ctx.send(SourceEvent::Done).await;
            return Ok(());
        };
        let offset = if self.shift_to_now {
            Utc::now() - first
        } else {
            chrono::Duration::zero()
        };
        let t0 = tokio::time::Instant::now();
        for mut o in self.observations {
            if self.speed > 0.0 {
                let due = (o.at() - first).num_milliseconds().max(0) as f64 / self.speed;
                let when = t0 + Duration::from_millis(due as u64);
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(when) => {}
                }
            }
            shift(&mut o, offset);
            if !self.shift_to_now && self.cursor_ms.is_some_and(|c| o.at_ms() < c) {
                continue;
            }
            let wm = o.at_ms() - 1;
            if !ctx.obs(o).await || !ctx.send(SourceEvent::Watermark(wm)).await {
                return Ok(());
            }
        }
        ctx.send(SourceEvent::Done).await;
        Ok(())
    }
}
