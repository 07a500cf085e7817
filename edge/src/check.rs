//! `roomsense-edge check` and `record`.

use crate::config::Config;
use crate::obs::{SourceEvent, SourceMsg};
use crate::sources::{self, SourceCtx};
use crate::stats::Shared;
use std::io::Write;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Reports the hardware found and whether every configured source can open.
/// Returns the problems (empty = all good).
pub async fn check(config: &Config, out: &mut impl Write) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    writeln!(
        out,
        "config: ok (node {}, broker {})",
        config.node.id, config.mqtt.url
    )?;
    let chips: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("gpiochip"))
                .collect()
        })
        .unwrap_or_default();
    writeln!(
        out,
        "gpio chips: {}",
        if chips.is_empty() {
            "none".into()
        } else {
            chips.join(", ")
        }
    )?;
    #[cfg(feature = "ble")]
    match sources::hw::ble::adapters().await {
        Ok(a) if a.is_empty() => writeln!(out, "ble adapters: none")?,
        Ok(a) => writeln!(out, "ble adapters: {}", a.join(", "))?,
        Err(e) => writeln!(out, "ble adapters: none ({e})")?,
    }
    #[cfg(not(feature = "ble"))]
    writeln!(out, "ble adapters: not supported in this build")?;
    #[cfg(feature = "wifi")]
    match sources::hw::wifi::interfaces() {
        Ok(i) if i.is_empty() => writeln!(out, "wifi interfaces: none")?,
        Ok(i) => writeln!(
            out,
            "wifi interfaces: {}",
            i.into_iter().map(|x| x.1).collect::<Vec<_>>().join(", ")
        )?,
        Err(e) => writeln!(out, "wifi interfaces: none ({e})")?,
    }
    #[cfg(not(feature = "wifi"))]
    writeln!(out, "wifi interfaces: not supported in this build")?;

    // The outbox (its directory must be writable) and each source.
    match crate::app::open_outbox(config).await {
        Ok(ob) => {
            writeln!(
                out,
                "outbox: {} ({} batches waiting, {} dropped)",
                config.outbox.path.display(),
                ob.depth(),
                ob.dropped()
            )?;
            let env = crate::app::open_env(config, &ob).await?;
            for (i, s) in config.sources.iter().enumerate() {
                match sources::open(s, &env).await {
                    Ok(_) => writeln!(out, "sources[{i}] ({}): ok", s.kind())?,
                    Err(e) => {
                        writeln!(out, "sources[{i}] ({}): FAILED: {e:#}", s.kind())?;
                        problems.push(format!("sources[{i}] ({}): {e:#}", s.kind()));
                    }
                }
            }
            ob.close().await;
        }
        Err(e) => {
            writeln!(out, "outbox: FAILED: {e:#}")?;
            problems.push(format!("outbox: {e:#}"));
        }
    }
    Ok(problems)
}

/// Runs the configured sources and writes their observations as NDJSON until cancelled,
/// `limit` elapses or every source is done. Returns the number written.
pub async fn record(
    config: &Config,
    out: &mut (impl Write + Send),
    limit: Option<std::time::Duration>,
    cancel: CancellationToken,
) -> anyhow::Result<u64> {
    let env = sources::OpenEnv {
        node: config.node_id()?,
        cursor_ms: None,
        sim_start_ms: chrono::Utc::now().timestamp_millis(),
        salt: if config.privacy.salt.is_empty() {
            "record".into()
        } else {
            config.privacy.salt.clone()
        },
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SourceMsg>(config.pipeline.channel_capacity);
    let shared = Arc::new(Shared::new());
    let n_sources = config.sources.len();
    for (i, sc) in config.sources.iter().enumerate() {
        let s = sources::open(sc, &env).await?;
        let ctx = SourceCtx {
            index: i,
            tx: tx.clone(),
            cancel: cancel.clone(),
            shared: shared.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = s.run(ctx).await {
                tracing::error!(error = format!("{e:#}"), "source failed");
            }
        });
    }
    drop(tx);
    let deadline = limit.map(|d| tokio::time::Instant::now() + d);
    let mut done = 0usize;
    let mut n = 0u64;
    loop {
        let m = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            m = rx.recv() => m,
        };
        match m.map(|m| m.event) {
            None => break,
            Some(SourceEvent::Obs(o)) => {
                serde_json::to_writer(&mut *out, &o)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            Some(SourceEvent::Watermark(_)) => {}
            Some(SourceEvent::Done) => {
                done += 1;
                if done >= n_sources {
                    break;
                }
            }
        }
    }
    cancel.cancel();
    out.flush()?;
    Ok(n)
}
