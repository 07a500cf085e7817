//! REST benchmark tool.
//!
//! - `fill-readings`: bulk-fills a central database (SQLite or Postgres, the schema central
//!   created) with N synthetic readings spread over a time span, in one SQL statement per
//!   chunk, so a 10-million-row table takes minutes, not hours.
//! - `range`: random time-range queries (`GET /api/readings?start=&end=`, optionally by
//!   device) against a running central, reporting throughput and p50/p99/max latency.
//! - `get`: hammers one URL with C concurrent clients for D seconds (e.g. `/api/occupancy`).
//! - `occupancy`: starts central in this process with a generated building of R rooms,
//!   places D tracked devices through the live event bus (as the positioning path does),
//!   keeps moving them at a given rate, and hammers `GET /api/occupancy`.

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "roomsense REST benchmarks")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Bulk-fill `readings` of a central database.
    FillReadings {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 10_000_000)]
        rows: i64,
        /// Distinct devices.
        #[arg(long, default_value_t = 5_000)]
        devices: i64,
        /// Span of the readings' times, ending now (e.g. 24h).
        #[arg(long, default_value = "24h")]
        span: humantime::Duration,
    },
    /// Random time-range queries.
    Range {
        /// Central's REST base URL.
        #[arg(long)]
        http: String,
        #[arg(long)]
        token: Option<String>,
        /// The span the readings cover, ending now (as given to fill-readings).
        #[arg(long, default_value = "24h")]
        span: humantime::Duration,
        /// Width of each queried range.
        #[arg(long, default_value = "5m")]
        window: humantime::Duration,
        /// Also filter by a random device out of this many (`tag-0` …).
        #[arg(long)]
        devices: Option<i64>,
        /// Page size (`limit`).
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[arg(long, default_value_t = 2000)]
        queries: u64,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// `GET /api/occupancy` under load, with a generated building and tracked devices.
    Occupancy {
        #[arg(long, default_value_t = 200)]
        rooms: usize,
        #[arg(long, default_value_t = 5_000)]
        devices: usize,
        /// Position estimates per second fed while the load runs (devices moving).
        #[arg(long, default_value_t = 5_000)]
        updates_per_sec: u64,
        /// Also measure `GET /api/rooms/{id}/occupancy` (random room) instead.
        #[arg(long)]
        per_room: bool,
        #[arg(long, default_value = "20s")]
        duration: humantime::Duration,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// GET one URL repeatedly.
    Get {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: Option<String>,
        #[arg(long, default_value = "20s")]
        duration: humantime::Duration,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::FillReadings {
            database_url,
            rows,
            devices,
            span,
        } => fill(&database_url, rows, devices, span.into()).await,
        Cmd::Range {
            http,
            token,
            span,
            window,
            devices,
            limit,
            queries,
            concurrency,
        } => {
            let span: Duration = span.into();
            let window: Duration = window.into();
            let end_ms = Utc::now().timestamp_millis();
            let start_ms = end_ms - span.as_millis() as i64;
            let w = window.as_millis() as i64;
            if w >= end_ms - start_ms {
                bail!("--window must be shorter than --span");
            }
            let make = move |rng: &mut rand::rngs::ThreadRng| {
                let s = rng.gen_range(start_ms..end_ms - w);
                let mut url = format!(
                    "{http}/api/readings?start={}&end={}&limit={limit}",
                    rfc(s),
                    rfc(s + w)
                );
                if let Some(d) = devices {
                    url.push_str(&format!("&device=tag-{}", rng.gen_range(0..d)));
                }
                url
            };
            run_load(Arc::new(make), token, Some(queries), None, concurrency).await
        }
        Cmd::Occupancy {
            rooms,
            devices,
            updates_per_sec,
            per_room,
            duration,
            concurrency,
        } => {
            occupancy(
                rooms,
                devices,
                updates_per_sec,
                per_room,
                duration.into(),
                concurrency,
            )
            .await
        }
        Cmd::Get {
            url,
            token,
            duration,
            concurrency,
        } => {
            run_load(
                Arc::new(move |_: &mut rand::rngs::ThreadRng| url.clone()),
                token,
                None,
                Some(duration.into()),
                concurrency,
            )
            .await
        }
    }
}

/// A one-floor building of `rooms` 5 m × 5 m rooms in a grid, capacity 30 each, every
/// tenth restricted (no doors or receivers: positions come through the bus).
fn grid_building(rooms: usize) -> String {
    let mut s =
        String::from("name = \"bench\"\n[[floors]]\nindex = 0\nname = \"ground\"\nheight = 3.0\n");
    for i in 0..rooms {
        let (x, y) = ((i % 20) as f64 * 5.0, (i / 20) as f64 * 5.0);
        s.push_str(&format!(
            "[[rooms]]\nid = \"r{i}\"\nname = \"Room {i}\"\nfloor = 0\npolygon = [[{x}, {y}], [{}, {y}], [{}, {}], [{x}, {}]]\ncapacity = 30\nrestricted = {}\n",
            x + 5.0,
            x + 5.0,
            y + 5.0,
            y + 5.0,
            i % 10 == 9
        ));
    }
    s
}

fn placement(device: usize, room: usize, at_ms: i64) -> roomsense_central::bus::LiveEvent {
    roomsense_central::bus::LiveEvent::Position(roomsense_central::live::Position {
        device: format!("tag-{device}"),
        x: 1.0,
        y: 1.0,
        floor: 0,
        building: "bench".into(),
        room_probability: 0.9,
        room: Some(format!("r{room}")),
        confidence: 0.9,
        error_radius_m: 1.0,
        method: "bench".into(),
        receivers: 4,
        at_ms,
    })
}

async fn occupancy(
    rooms: usize,
    devices: usize,
    updates_per_sec: u64,
    per_room: bool,
    duration: Duration,
    concurrency: usize,
) -> anyhow::Result<()> {
    if rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let building = dir.path().join("building.toml");
    std::fs::write(&building, grid_building(rooms))?;
    let mut config = roomsense_central::Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.mqtt.segment_size = 1024 * 1024;
    config.mqtt.segment_count = 4;
    config.database.url = format!("sqlite://{}", dir.path().join("central.db").display());
    config.positioning.building = building.display().to_string();
    let app = roomsense_central::Application::build(config, None).await?;
    let base = format!("http://{}", app.http_addr());
    let bus = app.bus();
    // Every /api route needs a token: a read token for the placement check and the load.
    let token =
        roomsense_tests::create_token(&app, "apibench", roomsense_tests::Scope::Read).await?;
    let client = roomsense_tests::authed_client(&token)?;
    // Place every device, a chunk at a time so the bus (4,096 events) never overflows.
    let placed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = Utc::now().timestamp_millis();
        for chunk in (0..devices).collect::<Vec<_>>().chunks(500) {
            for &d in chunk {
                bus.publish(placement(d, d % rooms, now));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let r = client.get(format!("{base}/api/occupancy")).send().await?;
        let status = r.status();
        if !status.is_success() {
            bail!("GET /api/occupancy answered {status}: {}", r.text().await?);
        }
        let v: serde_json::Value = r.json().await?;
        if v["tracked_devices"].as_u64() == Some(devices as u64)
            && v["items"].as_array().map(Vec::len) == Some(rooms)
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "devices not all placed after 60 s: {}",
                v["tracked_devices"]
            );
        }
    }
    eprintln!(
        "{rooms} rooms, {devices} devices placed in {:.1} s",
        placed.elapsed().as_secs_f64()
    );
    // Keep devices moving while the load runs: each tick moves the next slice of devices
    // one room on.
    let stop = tokio_util::sync::CancellationToken::new();
    let mover = {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move {
            let tick = Duration::from_millis(20);
            let per_tick = (updates_per_sec as f64 * tick.as_secs_f64()).ceil() as usize;
            let mut next = 0usize;
            let mut step = 1usize;
            let mut sent = 0u64;
            while !stop.is_cancelled() && per_tick > 0 {
                let now = Utc::now().timestamp_millis();
                for _ in 0..per_tick {
                    bus.publish(placement(next, (next + step) % rooms, now));
                    sent += 1;
                    next += 1;
                    if next == devices {
                        next = 0;
                        step += 1;
                    }
                }
                tokio::time::sleep(tick).await;
            }
            sent
        })
    };
    let make: MakeUrl = if per_room {
        Arc::new(move |rng: &mut rand::rngs::ThreadRng| {
            format!("{base}/api/rooms/r{}/occupancy", rng.gen_range(0..rooms))
        })
    } else {
        let url = format!("{base}/api/occupancy");
        Arc::new(move |_: &mut rand::rngs::ThreadRng| url.clone())
    };
    let started = Instant::now();
    let result = run_load(make, Some(token), None, Some(duration), concurrency).await;
    stop.cancel();
    let sent = mover.await?;
    eprintln!(
        "position updates fed during the load: {sent} ({:.0}/s)",
        sent as f64 / started.elapsed().as_secs_f64()
    );
    let stats: serde_json::Value = client
        .get(format!(
            "{}/api/ingest/stats",
            format_args!("http://{}", app.http_addr())
        ))
        .send()
        .await?
        .json()
        .await?;
    eprintln!("access pipeline: {}", stats["access"]);
    app.shutdown(Duration::from_secs(5)).await?;
    result
}

fn rfc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

type MakeUrl = Arc<dyn Fn(&mut rand::rngs::ThreadRng) -> String + Send + Sync>;

async fn run_load(
    make: MakeUrl,
    token: Option<String>,
    queries: Option<u64>,
    duration: Option<Duration>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().context("--token")?,
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, make, issued) = (client.clone(), make.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            let mut bytes = 0u64;
            let mut rows = 0u64;
            loop {
                if let Some(q) = queries {
                    if issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= q {
                        break;
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let url = make(&mut rand::thread_rng());
                let t = Instant::now();
                let resp = client.get(&url).send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                let us = t.elapsed().as_micros() as u64;
                if !status.is_success() {
                    bail!("{url}: {status}: {}", String::from_utf8_lossy(&body));
                }
                bytes += body.len() as u64;
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    rows += v["items"].as_array().map(|a| a.len() as u64).unwrap_or(0);
                }
                hist.record(us.max(1))?;
            }
            Ok::<_, anyhow::Error>((hist, bytes, rows))
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let (mut bytes, mut rows) = (0u64, 0u64);
    for t in tasks {
        let (h, b, r) = t.await??;
        hist.add(h)?;
        bytes += b;
        rows += r;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} requests in {secs:.1} s = {:.0} req/s, concurrency {concurrency}; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} items and {:.0} bytes per response",
        hist.len(),
        hist.len() as f64 / secs,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
        rows as f64 / hist.len().max(1) as f64,
        bytes as f64 / hist.len().max(1) as f64,
    );
    Ok(())
}

async fn fill(url: &str, rows: i64, devices: i64, span: Duration) -> anyhow::Result<()> {
    const CHUNK: i64 = 200_000;
    let end_ms = Utc::now().timestamp_millis();
    let span_ms = span.as_millis() as i64;
    let step = (span_ms as f64 / rows as f64).max(0.001);
    let pg = url.starts_with("postgres");
    let db = Db::connect(url).await?;
    // The readings need their batch row (node, seq) for nothing but consistency.
    let series = |n: i64| {
        if pg {
            format!("SELECT generate_series(0, {}) AS x", n - 1)
        } else {
            format!(
                "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {}) SELECT x FROM c",
                n - 1
            )
        }
    };
    let started = Instant::now();
    let mut done = 0i64;
    let node = format!("fill{}", end_ms % 1_000_000);
    while done < rows {
        let n = CHUNK.min(rows - done);
        let sql = format!(
            "INSERT INTO readings (node, seq, kind, device, rssi, tx_power, count, first_at_ms, at_ms, received_at_ms, channel, ssid, beacon) \
             SELECT '{node}', {seq}, 'ble', 'tag-' || ((x + {done}) % {devices}), -60.0 - ((x + {done}) % 30), -59, 1, NULL, \
                    {start} + CAST((x + {done}) * {step} AS BIGINT), {start} + CAST((x + {done}) * {step} AS BIGINT) + 50, NULL, NULL, 'generic' \
             FROM ({series}) s",
            seq = done / CHUNK,
            start = end_ms - span_ms,
            series = series(n),
        );
        db.exec(sql).await?;
        done += n;
        eprint!(
            "\rfilled {done}/{rows} readings ({:.0}/s)",
            done as f64 / started.elapsed().as_secs_f64()
        );
    }
    db.exec("ANALYZE readings".into()).await?;
    eprintln!("\ndone in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

enum Db {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

impl Db {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("postgres") {
            Db::Pg(sqlx::PgPool::connect(url).await?)
        } else {
            Db::Lite(sqlx::SqlitePool::connect(url).await?)
        })
    }

    async fn exec(&self, sql: String) -> anyhow::Result<()> {
        match self {
            Db::Pg(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(drop)?,
            Db::Lite(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(drop)?,
        }
        Ok(())
    }
}
