//! `roomsense-edge`: parses the command line and runs the daemon.

use clap::{Parser, Subcommand};
use roomsense_edge::{Config, DEFAULT_CONFIG_TOML, EXIT_CONFIG};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "roomsense-edge",
    version,
    about = "roomsense edge daemon: sensors → outbox → MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run(Common),
    /// Validate the config and report the GPIO chip, BLE adapters and WiFi interfaces found.
    Check(Common),
    /// Print the commented default configuration.
    Configfile,
    /// Run the sources and write their observations as NDJSON (for the `replay` source).
    Record {
        #[command(flatten)]
        common: Common,
        /// Output file (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Stop after this long (e.g. 10m).
        #[arg(long)]
        duration: Option<humantime::Duration>,
    },
}

#[derive(clap::Args)]
struct Common {
    /// TOML config file (default: /etc/roomsense/edge.toml if it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Node id (node.id).
    #[arg(long)]
    node: Option<String>,
    /// Broker URL, mqtt://host:port (mqtt.url).
    #[arg(long)]
    mqtt_url: Option<String>,
    /// Outbox file (outbox.path).
    #[arg(long)]
    outbox: Option<PathBuf>,
}

fn load(c: &Common) -> Result<Config, ExitCode> {
    let file = c.config.clone().or_else(|| {
        let p = PathBuf::from("/etc/roomsense/edge.toml");
        p.exists().then_some(p)
    });
    let mut o: Vec<(&str, toml::Value)> = Vec::new();
    if let Some(v) = &c.node {
        o.push(("node.id", toml::Value::String(v.clone())));
    }
    if let Some(v) = &c.mqtt_url {
        o.push(("mqtt.url", toml::Value::String(v.clone())));
    }
    if let Some(v) = &c.outbox {
        o.push(("outbox.path", toml::Value::String(v.display().to_string())));
    }
    Config::load(file.as_deref(), std::env::vars(), &o).map_err(|e| {
        eprintln!("roomsense-edge: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn init_log(c: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&c.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if c.log.json {
        b.json().init();
    } else {
        b.init();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("roomsense-edge: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn shutdown_on_signal(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        cancel.cancel();
    });
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Configfile => {
            print!("{DEFAULT_CONFIG_TOML}");
            ExitCode::SUCCESS
        }
        Command::Run(c) => {
            let config = match load(&c) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_log(&config);
            let rt = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            rt.block_on(async {
                let cancel = CancellationToken::new();
                shutdown_on_signal(cancel.clone());
                match roomsense_edge::app::run(config, cancel).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "roomsense-edge failed");
                        eprintln!("roomsense-edge: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Check(c) => {
            let config = match load(&c) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            rt.block_on(async {
                let mut out = std::io::stdout();
                match roomsense_edge::check::check(&config, &mut out).await {
                    Ok(p) if p.is_empty() => ExitCode::SUCCESS,
                    Ok(p) => {
                        eprintln!("roomsense-edge check: {} problem(s)", p.len());
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("roomsense-edge check: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Record {
            common,
            out,
            duration,
        } => {
            let config = match load(&common) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_log(&config);
            let rt = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            rt.block_on(async {
                let cancel = CancellationToken::new();
                shutdown_on_signal(cancel.clone());
                let res = match &out {
                    Some(p) => match std::fs::File::create(p) {
                        Ok(f) => {
                            let mut w = std::io::BufWriter::new(f);
                            roomsense_edge::check::record(
                                &config,
                                &mut w,
                                duration.map(Into::into),
                                cancel,
                            )
                            .await
                        }
                        Err(e) => Err(anyhow::anyhow!("{}: {e}", p.display())),
                    },
                    None => {
                        let mut w = std::io::BufWriter::new(std::io::stdout());
                        roomsense_edge::check::record(
                            &config,
                            &mut w,
                            duration.map(Into::into),
                            cancel,
                        )
                        .await
                    }
                };
                match res {
                    Ok(n) => {
                        eprintln!("roomsense-edge: recorded {n} observations");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("roomsense-edge record: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}
