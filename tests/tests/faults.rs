//! Fault tests with real processes, each counting what reached central against what the
//! simulator produced: broker down and back; `kill -9` of the edge during an outage;
//! central killed and restarted mid-stream. All on 127.0.0.1 and free ports.
//!
//! Needs the binaries: `cargo build -p roomsense-central -p roomsense-edge` first, and
//! `mosquitto` on the PATH for the broker test.

use roomsense_tests::{
    free_port, outbox_depth, spawn_edge, wait_complete, wait_for, wait_port, CentralProc, Proc,
    SimPlan,
};
use std::path::Path;
use std::time::Duration;

const NODE: &str = "pi-lobby";

fn mosquitto(port: u16) -> anyhow::Result<Proc> {
    let mut cmd = std::process::Command::new("mosquitto");
    cmd.arg("-p").arg(port.to_string());
    Proc::spawn("mosquitto", cmd)
}

async fn wait_some_readings(central: &CentralProc) -> anyhow::Result<()> {
    wait_for(
        "first readings at central",
        Duration::from_secs(20),
        || async {
            let t = central.totals(NODE).await.ok()?;
            (t.advertisements > 0).then_some(())
        },
    )
    .await
}

async fn wait_backlog(outbox: &Path, n: i64) -> anyhow::Result<()> {
    wait_for(
        &format!("{n} batches waiting in the outbox"),
        Duration::from_secs(20),
        || async { (outbox_depth(outbox).await.ok()? >= n).then_some(()) },
    )
    .await
}

/// Central on an external Mosquitto; returns (central, mosquitto, its port).
async fn with_mosquitto(dir: &Path) -> anyhow::Result<(CentralProc, Proc, u16)> {
    let port = free_port()?;
    let m = mosquitto(port)?;
    wait_port(port).await?;
    let central = CentralProc::start(
        dir.join("central.db"),
        free_port()?,
        free_port()?,
        Some(format!("mqtt://127.0.0.1:{port}")),
    )
    .await?;
    Ok((central, m, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_back_loses_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (central, mut broker, port) = with_mosquitto(dir.path()).await?;
    let plan = SimPlan::new(150, 25.0);
    let outbox = dir.path().join("edge.db");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, plan.edge_toml(NODE, port, &outbox))?;
    let _edge = spawn_edge(&cfg)?;
    wait_some_readings(&central).await?;

    broker.kill9();
    wait_backlog(&outbox, 8).await?;
    let _broker = mosquitto(port)?;
    wait_port(port).await?;

    let t = wait_complete(&central, &plan, NODE, Duration::from_secs(40)).await?;
    let (ble, door) = plan.expected(NODE)?;
    assert_eq!(
        (t.advertisements, t.door_events, t.duplicates),
        (ble, door, 0),
        "{t:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_killed_during_outage_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (central, mut broker, port) = with_mosquitto(dir.path()).await?;
    let plan = SimPlan::new(150, 25.0);
    let outbox = dir.path().join("edge.db");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, plan.edge_toml(NODE, port, &outbox))?;
    let mut edge = spawn_edge(&cfg)?;
    wait_some_readings(&central).await?;

    broker.kill9();
    wait_backlog(&outbox, 6).await?;
    edge.kill9();
    let _edge = spawn_edge(&cfg)?;
    let before = outbox_depth(&outbox).await?;
    wait_backlog(&outbox, before + 3).await?;
    let _broker = mosquitto(port)?;
    wait_port(port).await?;

    let t = wait_complete(&central, &plan, NODE, Duration::from_secs(40)).await?;
    let (ble, door) = plan.expected(NODE)?;
    assert_eq!(
        (t.advertisements, t.door_events, t.duplicates),
        (ble, door, 0),
        "{t:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_killed_mid_stream_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (http, mqtt) = (free_port()?, free_port()?);
    let mut central = CentralProc::start(dir.path().join("central.db"), http, mqtt, None).await?;
    let plan = SimPlan::new(150, 25.0);
    let outbox = dir.path().join("edge.db");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, plan.edge_toml(NODE, mqtt, &outbox))?;
    let _edge = spawn_edge(&cfg)?;
    wait_some_readings(&central).await?;

    central.restart().await?;

    let t = wait_complete(&central, &plan, NODE, Duration::from_secs(40)).await?;
    let (ble, door) = plan.expected(NODE)?;
    assert_eq!(
        (t.advertisements, t.door_events, t.duplicates),
        (ble, door, 0),
        "{t:?}"
    );
    Ok(())
}
