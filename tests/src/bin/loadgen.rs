//! Load generator: N simulated nodes publish BLE batches over MQTT (QoS 1) at a set rate to
//! a running central; then it waits until everything is stored and reports the sustained
//! rate, publish→commit latency (p50/p99 from the `batches` table) and checks that exactly
//! what was sent is stored, once.

use anyhow::{bail, Context};
use chrono::Utc;
use clap::Parser;
use roomsense_common::protocol::{encode, Batch, BleSighting, SightingKind, SCHEMA_VERSION};
use roomsense_common::{DeviceId, NodeId, TopicKind, Topics};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "roomsense load generator: simulated nodes publishing BLE batches over MQTT")]
struct Args {
    /// Broker address host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Central's REST base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// Central's database (to read latencies and count rows).
    #[arg(long)]
    database_url: String,
    /// Simulated nodes.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Total sightings per second over all nodes.
    #[arg(long, default_value_t = 60_000)]
    rate: u64,
    /// Sightings per batch.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    #[arg(long, default_value = roomsense_common::DEFAULT_PREFIX)]
    prefix: String,
    /// Bearer token for central's REST API (read scope is enough).
    #[arg(long, env = "ROOMSENSE_TOKEN")]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (host, port) = args
        .mqtt
        .rsplit_once(':')
        .context("--mqtt must be host:port")?;
    let port: u16 = port.parse().context("--mqtt port")?;
    let topics = Topics::new(&args.prefix).map_err(anyhow::Error::msg)?;
    let run = format!("load{}", Utc::now().timestamp() % 1_000_000);
    let per_node_rate = args.rate as f64 / args.nodes as f64;
    let interval = Duration::from_secs_f64(args.batch as f64 / per_node_rate);
    let batches_per_node = (args.duration as f64 / interval.as_secs_f64()).round() as u64;
    let expected = batches_per_node * args.nodes as u64 * args.batch as u64;
    let http = reqwest::Client::new();
    let token = args.token.as_deref();
    let base_readings = stored_readings(&http, &args.http, token).await?;
    eprintln!(
        "run {run}: {} nodes × {batches_per_node} batches × {} sightings every {interval:?} = {expected} sightings",
        args.nodes, args.batch
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..args.nodes {
        let node = NodeId::parse(&format!("{run}-{n}"))?;
        let topic = topics.node(&node, TopicKind::Ble);
        let mut opts = MqttOptions::new(format!("{run}-{n}"), host, port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000)
            .set_max_packet_size(1 << 22, 1 << 22);
        let (client, mut events) = AsyncClient::new(opts, 1024);
        let devices: Vec<DeviceId> = (0..args.batch)
            .map(|i| DeviceId::parse(&format!("tag-{n}-{i}")))
            .collect::<Result<_, _>>()?;
        // Counts PUBACKs: a node disconnects only once the broker acknowledged all of its
        // batches (or the deadline passed), so an overloaded broker shows up as backlog and
        // latency, never as batches the generator dropped itself.
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let acks = acked.clone();
        let poller = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("node connection error (rumqttc reconnects): {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let ack_deadline = Instant::now() + Duration::from_secs(args.duration * 4 + 60);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            for seq in 1..=batches_per_node {
                tick.tick().await;
                let now = Utc::now();
                let batch = Batch {
                    v: SCHEMA_VERSION,
                    node: node.clone(),
                    seq,
                    sent_at: now,
                    items: devices
                        .iter()
                        .enumerate()
                        .map(|(i, d)| BleSighting {
                            id: d.clone(),
                            rssi: -40.0 - (i % 50) as f32,
                            tx_power: Some(-59),
                            count: 1,
                            first_at: now,
                            last_at: now,
                            kind: SightingKind::Generic,
                        })
                        .collect(),
                };
                if client
                    .publish(topic.clone(), QoS::AtLeastOnce, false, encode(&batch))
                    .await
                    .is_err()
                {
                    return Err(anyhow::anyhow!("publish queue closed"));
                }
            }
            // keep the connection until its PUBACKs are in
            while acked.load(std::sync::atomic::Ordering::Relaxed) < batches_per_node {
                if Instant::now() > ack_deadline {
                    let _ = client.disconnect().await;
                    poller.abort();
                    return Err(anyhow::anyhow!(
                        "node {node}: only {} of {batches_per_node} batches acknowledged by the broker",
                        acked.load(std::sync::atomic::Ordering::Relaxed)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = client.disconnect().await;
            poller.abort();
            Ok(())
        }));
    }
    let mut last_print = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(args.duration * 4 + 60);
    let mut stored;
    loop {
        stored = stored_readings(&http, &args.http, token).await? - base_readings;
        if last_print.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "{:>6.1}s stored {stored}/{expected} ({:.0}/s)",
                started.elapsed().as_secs_f64(),
                stored as f64 / started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if stored >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    if stored < expected {
        bail!("only {stored} of {expected} sightings stored before the deadline");
    }

    let (rows, lat) = latencies(&args.database_url, &run).await?;
    println!("sightings sent:     {expected}");
    println!(
        "sightings stored:   {rows} (exactly once: {})",
        rows == expected
    );
    println!("wall time:          {elapsed:.1} s");
    println!(
        "sustained rate:     {:.0} sightings/s",
        expected as f64 / elapsed
    );
    println!(
        "publish→commit:     p50 {} ms, p99 {} ms, max {} ms",
        lat.value_at_quantile(0.5),
        lat.value_at_quantile(0.99),
        lat.max()
    );
    if rows != expected {
        bail!("stored {rows} rows for {expected} sightings");
    }
    Ok(())
}

async fn stored_readings(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> anyhow::Result<u64> {
    let mut req = http.get(format!("{base}/api/ingest/stats"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    if !resp.status().is_success() {
        bail!(
            "GET /api/ingest/stats answered {} (pass --token or ROOMSENSE_TOKEN)",
            resp.status()
        );
    }
    let v: serde_json::Value = resp.json().await?;
    v["ingest"]["readings"]
        .as_u64()
        .context("stats without ingest.readings")
}

/// Rows stored for this run and the histogram of stored_at - sent_at per batch.
async fn latencies(url: &str, run: &str) -> anyhow::Result<(u64, hdrhistogram::Histogram<u64>)> {
    let pattern = format!("{run}-%");
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    let (rows, lats): (i64, Vec<i64>) = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let rows: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM readings WHERE node LIKE ?")
            .bind(&pattern)
            .fetch_one(&pool)
            .await?;
        let lats: Vec<(i64,)> =
            sqlx::query_as("SELECT stored_at_ms - sent_at_ms FROM batches WHERE node LIKE ?")
                .bind(&pattern)
                .fetch_all(&pool)
                .await?;
        (rows.0, lats.into_iter().map(|l| l.0).collect())
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let rows: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM readings WHERE node LIKE $1")
            .bind(&pattern)
            .fetch_one(&pool)
            .await?;
        let lats: Vec<(i64,)> =
            sqlx::query_as("SELECT stored_at_ms - sent_at_ms FROM batches WHERE node LIKE $1")
                .bind(&pattern)
                .fetch_all(&pool)
                .await?;
        (rows.0, lats.into_iter().map(|l| l.0).collect())
    };
    for l in lats {
        h.record(l.max(0) as u64)?;
    }
    Ok((rows as u64, h))
}
