//! `roomsense-central`: parses the command line and runs the server.

use clap::{Parser, Subcommand};
use roomsense_central::config::{Config, DEFAULT_CONFIG_TOML, EXIT_CONFIG};
use roomsense_central::Application;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "roomsense-central",
    version,
    about = "roomsense central server: MQTT ingest, storage, positioning, REST"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print the commented default configuration.
    Configfile,
    /// Evaluate positioning on labelled scans (UJIIndoorLoc CSV layout).
    Eval(EvalArgs),
    /// Create, list and revoke API bearer tokens (same config and database as `serve`).
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// TOML config file (default: /etc/roomsense/central.toml if it exists).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// sqlite://FILE or postgres://… (database.url).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints its secret once on stdout (only its hash is stored).
    Create {
        /// read: GET/HEAD only; admin: everything.
        #[arg(long, value_parser = ["read", "admin"])]
        scope: String,
        /// What it is for (who or which system uses it).
        #[arg(long)]
        name: String,
    },
    /// List tokens: id, name, scope, created, last used, revoked.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id (refused within seconds by running servers).
    Revoke { id: i64 },
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Training file (UJIIndoorLoc layout: signal columns + LONGITUDE, LATITUDE, FLOOR, BUILDINGID…).
    #[arg(long, required_unless_present = "building")]
    train: Option<PathBuf>,
    /// Test file, same layout.
    #[arg(long, required_unless_present = "building")]
    test: Option<PathBuf>,
    /// fingerprint (kNN, hyper-parameters by cross-validation), multilateration, or live
    /// (the server's live pipeline on the simulated `--building`, scored against its truth).
    #[arg(long, default_value = "fingerprint", value_parser = ["fingerprint", "multilateration", "live"])]
    method: String,
    /// Building file simulated for `--method live`.
    #[arg(long)]
    building: Option<PathBuf>,
    /// `--method live`: simulator seed of the test run, devices, simulated seconds.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 20)]
    devices: usize,
    #[arg(long, default_value_t = 1800)]
    duration: u64,
    /// `--method live`: simulated seconds of each calibration run (longer runs choose the
    /// settings on more walks and stops).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(60..))]
    calibration_duration: u64,
    /// `--method live`: use the building file's path loss and the server's default
    /// settings instead of fitting them on calibration runs.
    #[arg(long)]
    no_calibration: bool,
    /// `--method live`: how devices are tracked, as `[positioning] tracker`: particles
    /// (a particle filter over the floor plan) or kalman (multilateration, Kalman track,
    /// room filter).
    #[arg(long, default_value = "particles", value_parser = ["particles", "kalman"])]
    tracker: String,
    /// Emitter positions for multilateration: CSV `id,x,y,floor[,tx_power]`.
    #[arg(long)]
    anchors: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (default: /etc/roomsense/central.toml if it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// REST listen address (http.listen).
    #[arg(long)]
    listen: Option<String>,
    /// sqlite://FILE or postgres://… (database.url).
    #[arg(long)]
    database_url: Option<String>,
    /// Embedded broker listen address (mqtt.listen).
    #[arg(long)]
    mqtt_listen: Option<String>,
    /// Use the external broker at this URL instead of the embedded one (mqtt.url).
    #[arg(long)]
    mqtt_url: Option<String>,
    /// Run a simulated building whose edge nodes publish over MQTT (demo.enabled).
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Configfile => {
            print!("{DEFAULT_CONFIG_TOML}");
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(args),
        Command::Token(args) => match token(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("roomsense-central token: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Eval(args) => match eval(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("roomsense-central eval: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn eval_live(args: &EvalArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use roomsense_central::live_eval::{evaluate_live, SimEvalOptions};
    let path = args
        .building
        .as_ref()
        .context("--method live needs --building FILE")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let building = roomsense_common::sim::Building::from_toml_str(&text)
        .with_context(|| format!("{}", path.display()))?;
    let opts = SimEvalOptions {
        seed: args.seed,
        devices: args.devices,
        duration_s: args.duration,
        calibration_s: args.calibration_duration,
        calibrate: !args.no_calibration,
        ..SimEvalOptions::default()
    };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("calibrating and simulating");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut base = roomsense_central::live::LiveConfig::default();
    if args.tracker == "kalman" {
        base.particles = None;
    }
    let r = evaluate_live(&building, base, &opts)?;
    spinner.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{}: seed {}, {} devices, {} s simulated, window {} ms ({} % of it while walking; calibrated: {})",
        r.building,
        r.seed,
        r.devices,
        r.duration_s,
        r.window_ms,
        (r.walking_window_share * 100.0).round(),
        opts.calibrate
    );
    if let Some(p) = &r.particles {
        println!(
            "particle tracker: {} hypotheses per device, set off {:.3}/s, door openings draw walkers within {} m (against {} for someone else), jump to a better place at {} log-likelihood",
            p.particles, p.set_off_per_s, p.door_sigma_m, p.door_other, p.recover_margin
        );
    } else {
        println!(
        "room filter: pass rate {}/s, door pass rate {}/s, switch ratio {} (walking {}), switch hold {} ms, likelihood floor {}, evidence weight {}, door openings looked at again for {} ms; Kalman acceleration σ {:?} m/s², still model (mean walk s, noise scale, outlier share) {:?}, track prior weight {}; error radius × {:.2}",
        r.room_filter.pass_rate,
        r.room_filter.door_pass_rate,
        r.room_filter.switch_ratio,
        r.room_filter.moving_switch_ratio,
        r.room_filter.switch_hold_ms,
        r.room_filter.min_likelihood,
        r.room_filter.evidence_weight,
        r.room_filter.review_for_ms,
        r.kalman_accel_std,
        r.kalman_still_model,
        r.track_prior_weight,
        r.radius_scale
    );
    }
    for (name, s) in [
        ("walking", &r.walking),
        ("standing", &r.standing),
        ("all", &r.all),
    ] {
        println!(
            "{name:>9}: {:>6} estimates, room hit {:.2} %, floor hit {:.2} %, error mean {:.2} m / median {:.2} m / p95 {:.2} m, within radius {:.1} %",
            s.estimates,
            s.room_hit_rate * 100.0,
            s.floor_hit_rate * 100.0,
            s.mean_error_m,
            s.median_error_m,
            s.p95_error_m,
            s.within_radius * 100.0
        );
    }
    println!(
        "room changes while standing still (after {} s): {} in {:.0} device-minutes, {} of them away from the true room",
        r.settle_s, r.standing_room_changes, r.standing_device_minutes, r.standing_wrong_room_changes
    );
    println!("elapsed: {} ms", r.elapsed_ms);
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    if args.method == "live" {
        return eval_live(&args);
    }
    let (Some(train), Some(test)) = (&args.train, &args.test) else {
        anyhow::bail!(
            "--method {} needs --train FILE and --test FILE",
            args.method
        );
    };
    use roomsense_central::positioning::{eval as pe, MultilatConfig, TrainOptions};
    use std::io::BufReader;
    let open = |p: &PathBuf| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .with_context(|| format!("cannot open {}", p.display()))
    };
    let method = match args.method.as_str() {
        "multilateration" => {
            let path = args
                .anchors
                .as_ref()
                .context("--method multilateration needs --anchors FILE")?;
            pe::Method::Multilateration {
                anchors: pe::read_anchors(open(path)?)?,
                config: MultilatConfig::default(),
            }
        }
        _ => pe::Method::Fingerprint(TrainOptions::default()),
    };
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = pe::run_eval(open(train)?, open(test)?, method, &mut |phase, f| {
        bar.set_message(phase.to_string());
        bar.set_position((f.clamp(0.0, 1.0) * 1000.0) as u64);
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "test scans:        {} ({} not located)",
            report.n, report.unlocated
        );
        println!(
            "building hit rate: {:.2} %",
            report.building_hit_rate * 100.0
        );
        println!("floor hit rate:    {:.2} %", report.floor_hit_rate * 100.0);
        println!(
            "2D error:          mean {:.2}, median {:.2}, p75 {:.2}, p95 {:.2}",
            report.mean_error, report.median_error, report.p75_error, report.p95_error
        );
        println!(
            "query latency:     p50 {:.0} µs, p99 {:.0} µs",
            report.latency_p50_us, report.latency_p99_us
        );
        if let Some(ms) = report.training_ms {
            println!("training:          {:.1} s", ms as f64 / 1000.0);
        }
        if let Some(p) = &report.params {
            println!("parameters (CV):   {p:?}");
        }
    }
    Ok(())
}

/// The config file named, or the system one if it exists.
fn config_file(arg: &Option<PathBuf>) -> Option<PathBuf> {
    arg.clone().or_else(|| {
        let p = PathBuf::from("/etc/roomsense/central.toml");
        p.exists().then_some(p)
    })
}

fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    use roomsense_central::auth;
    let mut overrides: Vec<(&str, toml::Value)> = Vec::new();
    if let Some(v) = &args.database_url {
        overrides.push(("database.url", toml::Value::String(v.clone())));
    }
    let config = match Config::load(
        config_file(&args.config).as_deref(),
        std::env::vars(),
        &overrides,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("roomsense-central: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG as u8));
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = roomsense_central::storage::connect(&config.database.url, 1).await?;
        let now = chrono::Utc::now().timestamp_millis();
        match args.command {
            TokenCommand::Create { scope, name } => {
                if let Err(e) = auth::validate_name(&name) {
                    anyhow::bail!("--{e}");
                }
                let scope = auth::Scope::parse(&scope).map_err(anyhow::Error::msg)?;
                let (t, secret) = auth::create_token(store.as_ref(), &name, scope, now).await?;
                println!("{secret}");
                eprintln!(
                    "created token {} {:?} ({}). The secret above is shown only once: store it now.\n\
                     Use it as: curl -H \"Authorization: Bearer $TOKEN\" http://HOST:8080/api/nodes",
                    t.id,
                    t.name,
                    t.scope
                );
            }
            TokenCommand::List { json } => {
                let tokens = store.tokens().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&tokens)?);
                } else {
                    let time = |ms: Option<i64>| {
                        ms.and_then(chrono::DateTime::from_timestamp_millis)
                            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                            .unwrap_or_else(|| "-".into())
                    };
                    println!(
                        "{:>5}  {:<24} {:<6} {:<21} {:<21} REVOKED",
                        "ID", "NAME", "SCOPE", "CREATED", "LAST USED"
                    );
                    for t in tokens {
                        println!(
                            "{:>5}  {:<24} {:<6} {:<21} {:<21} {}",
                            t.id,
                            t.name,
                            t.scope,
                            time(Some(t.created_at_ms)),
                            time(t.last_used_at_ms),
                            time(t.revoked_at_ms)
                        );
                    }
                }
            }
            TokenCommand::Revoke { id } => match store.revoke_token(id, now).await? {
                Some(t) => eprintln!(
                    "token {} {:?} revoked; running servers refuse it within {} s",
                    t.id,
                    t.name,
                    auth::CACHE_TTL_MS / 1000
                ),
                None => anyhow::bail!("no token with id {id}"),
            },
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn serve(args: ServeArgs) -> ExitCode {
    let file = config_file(&args.config);
    let mut overrides: Vec<(&str, toml::Value)> = Vec::new();
    let s = |v: &String| toml::Value::String(v.clone());
    if let Some(v) = &args.listen {
        overrides.push(("http.listen", s(v)));
    }
    if let Some(v) = &args.database_url {
        overrides.push(("database.url", s(v)));
    }
    if let Some(v) = &args.mqtt_listen {
        overrides.push(("mqtt.listen", s(v)));
    }
    if let Some(v) = &args.mqtt_url {
        overrides.push(("mqtt.url", s(v)));
        overrides.push(("mqtt.mode", toml::Value::String("external".into())));
    }
    if args.demo {
        overrides.push(("demo.enabled", toml::Value::Boolean(true)));
    }
    let config = match Config::load(file.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("roomsense-central: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let log = match roomsense_central::telemetry::init(&config.log) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("roomsense-central: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roomsense-central: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "roomsense-central failed");
            eprintln!("roomsense-central: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: Config,
    log: Arc<roomsense_central::telemetry::LogControl>,
) -> anyhow::Result<()> {
    let demo = config.demo.enabled;
    let app = Application::build(config, Some(log)).await?;
    if let (true, Some(token)) = (demo, app.demo_token()) {
        let base = format!("{}://127.0.0.1:{}", app.scheme(), app.http_addr().port());
        println!(
            "roomsense demo running (MQTT broker on {}).\n\
             Admin token for this demo (shown once): {token}\n\
             Try:\n  export TOKEN={token}\n  \
             curl -H \"Authorization: Bearer $TOKEN\" {base}/api/positions\n\
             API reference: {base}/api/docs/",
            app.mqtt_addr()
        );
    }
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        let stats = app.stats();
        tokio::spawn(async move {
            // Pet the watchdog while the runtime schedules this task and the writer is not
            // stuck in a failing write.
            let mut last_errors = 0;
            loop {
                tokio::time::sleep(every / 2).await;
                let s = stats.snapshot();
                let stuck = s.write_errors > last_errors + 10;
                last_errors = s.write_errors;
                if !stuck {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        });
    }
    shutdown_signal().await;
    tracing::info!("stopping: draining in-flight batches");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    app.shutdown(Duration::from_secs(20)).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
