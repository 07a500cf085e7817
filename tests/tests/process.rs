//! `roomsense-central` as a real process: bad config exits 78 naming the key; SIGTERM
//! drains what was received and exits 0.

use chrono::Utc;
use roomsense_common::TopicKind;
use roomsense_tests::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[test]
fn bad_config_exits_78_and_names_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("central.toml");
    std::fs::write(&file, "[nodes]\nsilence_timeout = \"soon\"\n")?;
    let out = Command::new(bin_path("roomsense-central")?)
        .args(["serve", "--config"])
        .arg(&file)
        .output()?;
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nodes.silence_timeout"), "{err}");

    let out = Command::new(bin_path("roomsense-central")?)
        .args(["serve"])
        .env("ROOMSENSE__DATABASE__URL", "mysql://nope")
        .output()?;
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));
    Ok(())
}

#[test]
fn configfile_prints_a_config_that_loads() -> anyhow::Result<()> {
    let out = Command::new(bin_path("roomsense-central")?)
        .arg("configfile")
        .output()?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    let parsed: roomsense_central::Config = toml::from_str(&text)?;
    assert_eq!(parsed, roomsense_central::Config::default());
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("c.db");
    let http = free_port()?;
    let mqtt = free_port()?;
    let token = cli_token(&format!("sqlite://{}", db.display()), "admin", "ops")?;
    let mut child = tokio::process::Command::new(bin_path("roomsense-central")?)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{http}"),
            "--mqtt-listen",
            &format!("127.0.0.1:{mqtt}"),
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let client = authed_client(&token)?;
    let base = format!("http://127.0.0.1:{http}");
    wait_for("central ready", DEADLINE, || async {
        let r = client.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await?;
    // the log filter can be changed at run time; a bad filter is refused and names the field
    let r = client
        .put(format!("{base}/debug/log-level"))
        .json(&serde_json::json!({ "level": "debug,rumqttd=warn" }))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = client
        .get(format!("{base}/debug/log-level"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(v["level"], "debug,rumqttd=warn");
    let r = client
        .put(format!("{base}/debug/log-level"))
        .json(&serde_json::json!({ "level": "[[[" }))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await?;
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("level"));

    let addr = format!("127.0.0.1:{mqtt}").parse()?;
    let mut p = Publisher::connect(addr, &unique("term")).await?;
    let topics = roomsense_common::Topics::default();
    let t = topic(&topics, "pi-term", TopicKind::Ble);
    for seq in 1..=50 {
        p.publish(
            &t,
            payload(&ble_batch("pi-term", seq, Utc::now(), 100)),
            false,
        )
        .await?;
    }
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    // SIGTERM right after the broker acknowledged the last batch.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(exit.code(), Some(0));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM readings")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 5000);
    Ok(())
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

#[test]
fn eval_reports_accuracy_on_a_uji_slice() -> anyhow::Result<()> {
    let out = Command::new(bin_path("roomsense-central")?)
        .args(["eval", "--json", "--train"])
        .arg(fixture("uji-train-small.csv"))
        .arg("--test")
        .arg(fixture("uji-test-small.csv"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(r["n"], 50);
    assert!(r["building_hit_rate"].as_f64().unwrap_or(0.0) > 0.95, "{r}");
    assert!(r["floor_hit_rate"].as_f64().unwrap_or(0.0) > 0.7, "{r}");
    assert!(r["mean_error"].as_f64().unwrap_or(1e9) < 20.0, "{r}");
    Ok(())
}

#[test]
fn eval_names_line_and_column_of_a_bad_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(fixture("uji-test-small.csv"))?;
    let mut lines: Vec<String> = text.lines().take(5).map(str::to_string).collect();
    lines[3] = lines[3].replacen("100", "loud", 1);
    std::fs::write(&bad, lines.join("\n"))?;
    let out = Command::new(bin_path("roomsense-central")?)
        .args(["eval", "--train"])
        .arg(fixture("uji-train-small.csv"))
        .arg("--test")
        .arg(&bad)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("WAP"), "{err}");
    Ok(())
}
