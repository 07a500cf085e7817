//! The daemon: sources → bounded channel → aggregation windows → outbox → MQTT uplink,
//! with systemd notify (READY, WATCHDOG only while the pipeline moves, STATUS).

use crate::aggregate::Aggregator;
use crate::batch::split;
use crate::config::Config;
use crate::obs::{SourceEvent, SourceMsg};
use crate::outbox::Outbox;
use crate::publisher::Uplink;
use crate::sources::{self, OpenEnv, SourceCtx};
use crate::stats::Shared;
use anyhow::Context;
use rand::RngCore;
use roomsense_common::SensorState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Wall-clock sources stamp observations on arrival; their windows close this much later.
const WALL_CLOCK_GRACE_MS: i64 = 250;

/// Outbox meta keys.
pub const META_CURSOR: &str = "cursor_ms";
pub const META_SIM_START: &str = "sim_start_ms";
pub const META_SALT: &str = "salt";

/// Opens the outbox, creating its directory.
pub async fn open_outbox(config: &Config) -> anyhow::Result<Arc<Outbox>> {
    if let Some(dir) = config.outbox.path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("outbox directory {}", dir.display()))?;
        }
    }
    let ob = Outbox::open(
        &config.outbox.path,
        config.node_id()?,
        config.outbox.max_batches,
    )
    .await?;
    Ok(Arc::new(ob))
}

/// What sources need from the outbox: the cursor, the first-run sim start and the salt.
pub async fn open_env(config: &Config, outbox: &Outbox) -> anyhow::Result<OpenEnv> {
    let now = chrono::Utc::now().timestamp_millis();
    let sim_start_ms = match outbox.meta_i64(META_SIM_START).await? {
        Some(v) => v,
        None => {
            outbox.set_meta(META_SIM_START, &now.to_string()).await?;
            now
        }
    };
    let salt = if !config.privacy.salt.is_empty() {
        config.privacy.salt.clone()
    } else if let Some(s) = outbox.meta(META_SALT).await? {
        s
    } else {
        let mut b = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut b);
        let s = hex::encode(b);
        outbox.set_meta(META_SALT, &s).await?;
        s
    };
    Ok(OpenEnv {
        node: config.node_id()?,
        cursor_ms: outbox.meta_i64(META_CURSOR).await?,
        sim_start_ms,
        salt,
    })
}

fn notify(states: &[sd_notify::NotifyState]) {
    let _ = sd_notify::notify(states);
}

/// Runs the daemon until `cancel`.
pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let node = config.node_id()?;
    let topics = config.topics()?;
    let shared = Arc::new(Shared::new());
    let outbox = open_outbox(&config).await?;
    let env = open_env(&config, &outbox).await?;

    let mut opened = Vec::new();
    for (i, sc) in config.sources.iter().enumerate() {
        let s = sources::open(sc, &env)
            .await
            .with_context(|| format!("sources[{i}] ({})", sc.kind()))?;
        shared.set_sensor(&s.name(), s.kind(), SensorState::Ok, None);
        opened.push(s);
    }
    let event_time: Vec<bool> = opened.iter().map(|s| s.event_time()).collect();

    let (tx, rx) = mpsc::channel::<SourceMsg>(config.pipeline.channel_capacity);
    let src_cancel = cancel.child_token();
    let mut tasks = Vec::new();
    for (i, s) in opened.into_iter().enumerate() {
        let ctx = SourceCtx {
            index: i,
            tx: tx.clone(),
            cancel: src_cancel.clone(),
            shared: shared.clone(),
        };
        let sh = shared.clone();
        tasks.push(tokio::spawn(async move {
            let (name, kind) = (s.name(), s.kind());
            let done_tx = ctx.tx.clone();
            if let Err(e) = s.run(ctx).await {
                tracing::error!(source = %name, error = format!("{e:#}"), "source failed");
                sh.set_sensor(&name, kind, SensorState::Failed, Some(format!("{e:#}")));
                let _ = done_tx
                    .send(SourceMsg {
                        source: i,
                        event: SourceEvent::Done,
                    })
                    .await;
            }
        }));
    }
    drop(tx);

    let wake = Arc::new(Notify::new());
    let uplink = Uplink {
        config: config.clone(),
        node: node.clone(),
        topics,
        outbox: outbox.clone(),
        shared: shared.clone(),
        wake: wake.clone(),
    };
    let up_cancel = CancellationToken::new();
    let up = tokio::spawn(uplink.run(up_cancel.clone()));

    shared.beat_aggregator();
    shared.beat_publisher();
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&shared.summary(&outbox)),
    ]);
    tracing::info!(node = %node, sources = event_time.len(), outbox = %config.outbox.path.display(), "roomsense-edge running");
    let wd = tokio::spawn(watchdog(shared.clone(), outbox.clone(), cancel.clone()));

    let result = aggregate_loop(&config, rx, event_time, &outbox, &shared, &wake, &cancel).await;
    src_cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    up_cancel.cancel();
    match tokio::time::timeout(Duration::from_secs(5), up).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = format!("{e:#}"), "uplink stopped with an error"),
        Ok(_) => {}
        Err(_) => tracing::warn!("uplink did not stop in time"),
    }
    wd.abort();
    outbox.close().await;
    result
}

async fn watchdog(shared: Arc<Shared>, outbox: Arc<Outbox>, cancel: CancellationToken) {
    let wd = sd_notify::watchdog_enabled();
    let every = wd.map_or(Duration::from_secs(5), |d| {
        (d / 3).max(Duration::from_millis(100))
    });
    let window = wd.unwrap_or(Duration::from_secs(30)) / 2;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let summary = shared.summary(&outbox);
        if wd.is_some() && shared.moving(window) {
            notify(&[
                sd_notify::NotifyState::Watchdog,
                sd_notify::NotifyState::Status(&summary),
            ]);
        } else {
            notify(&[sd_notify::NotifyState::Status(&summary)]);
        }
    }
}

async fn aggregate_loop(
    config: &Config,
    mut rx: mpsc::Receiver<SourceMsg>,
    event_time: Vec<bool>,
    outbox: &Outbox,
    shared: &Shared,
    wake: &Notify,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let n = event_time.len();
    let mut agg = Aggregator::new(config.pipeline.window, config.pipeline.rssi);
    let mut wm: Vec<Option<i64>> = vec![None; n];
    let mut done = vec![false; n];
    let mut buf = Vec::with_capacity(1024);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_cursor = agg.flushed_until();
    let mut finished = false;
    loop {
        shared.beat_aggregator();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            k = rx.recv_many(&mut buf, 1024), if !finished => {
                if k == 0 {
                    finished = true;
                }
            }
        }
        for m in buf.drain(..) {
            match m.event {
                SourceEvent::Obs(o) => {
                    shared
                        .observations
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    agg.push(o);
                }
                SourceEvent::Watermark(t) => {
                    if let Some(w) = wm.get_mut(m.source) {
                        *w = Some(w.map_or(t, |x| x.max(t)));
                    }
                }
                SourceEvent::Done => {
                    if let Some(d) = done.get_mut(m.source) {
                        *d = true;
                    }
                }
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut global: Option<i64> = Some(i64::MAX);
        for i in 0..n {
            if done[i] {
                continue;
            }
            let w = if event_time[i] {
                wm[i]
            } else {
                Some(now - WALL_CLOCK_GRACE_MS)
            };
            global = match (global, w) {
                (Some(g), Some(w)) => Some(g.min(w)),
                _ => None,
            };
        }
        let out = match global {
            Some(i64::MAX) => agg.flush_all(),
            Some(w) => agg.advance(w),
            None => continue,
        };
        let cursor = agg.flushed_until();
        if out.is_empty() && cursor == last_cursor {
            continue;
        }
        let batches = split(out, config.pipeline.max_batch_items);
        let stored = outbox
            .insert(
                &batches,
                &[(META_CURSOR, cursor.to_string())],
                chrono::Utc::now(),
            )
            .await?;
        last_cursor = cursor;
        if !stored.is_empty() {
            shared
                .batches_stored
                .fetch_add(stored.len() as u64, std::sync::atomic::Ordering::Relaxed);
            wake.notify_one();
        }
    }
    Ok(())
}
