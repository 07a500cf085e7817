//! End to end with real processes: `roomsense-central serve` and two `roomsense-edge run`
//! on the `sim` source; every advertisement and door transition the simulator produced for
//! each node reaches central's REST exactly once.
//!
//! Needs the binaries: `cargo build -p roomsense-central -p roomsense-edge` first.

use roomsense_tests::{free_port, wait_complete, CentralProc, SimPlan};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sim_edges_reach_central() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (http, mqtt) = (free_port()?, free_port()?);
    let central = CentralProc::start(dir.path().join("central.db"), http, mqtt, None).await?;
    let plan = SimPlan::new(120, 30.0);
    let mut edges = plan.spawn_edges(dir.path(), &["pi-lobby", "pi-meeting"], mqtt)?;
    let mut doors = 0;
    for node in ["pi-lobby", "pi-meeting"] {
        let (ble, door) = plan.expected(node)?;
        assert!(ble > 100, "the plan should produce readings for {node}");
        let t = wait_complete(&central, &plan, node, Duration::from_secs(40)).await?;
        assert_eq!(t.duplicates, 0, "{node}: {t:?}");
        assert_eq!(t.advertisements, ble, "{node}: {t:?}");
        assert_eq!(t.door_events, door, "{node}: {t:?}");
        doors += t.door_events;
    }
    assert!(doors > 0, "door events should have reached central");
    // Both nodes are known to central with their retained status.
    let r: serde_json::Value = central
        .http
        .get(format!("{}/api/nodes/pi-lobby", central.base()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        r["id"].as_str().or(r["node"].as_str()),
        Some("pi-lobby"),
        "{r}"
    );
    for e in &mut edges {
        assert!(e.exited().is_none(), "edge exited early");
    }
    Ok(())
}
