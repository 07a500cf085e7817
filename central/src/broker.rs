//! The embedded MQTT broker (rumqttd). `Broker::start()` blocks and starts its own OS
//! threads and has no ready signal and no shutdown: it runs on a `std::thread`, readiness is
//! a TCP connect, and it ends with the process.

use crate::config::MqttConfig;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mqtt.listen {addr}: cannot listen there ({source}); is another MQTT broker running? Set mqtt.listen to a free address or use mqtt.mode = \"external\"")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker did not accept connections on {0} within 10 s")]
    NotReady(SocketAddr),
    #[error("embedded broker support is not compiled in (cargo feature `embedded-broker`)")]
    NotCompiled,
}

/// Reserves `addr` (port 0 = any free port) and returns the concrete address.
pub fn reserve(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let l = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    l.local_addr()
        .map_err(|source| BrokerError::Bind { addr, source })
}

/// Address a local client uses to reach a listener bound to `addr`.
pub fn connect_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = if addr.is_ipv4() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// Starts the broker on `listen` (which must be a concrete, free address) and waits until it
/// accepts connections.
#[cfg(feature = "embedded-broker")]
pub fn start(cfg: &MqttConfig, listen: SocketAddr) -> Result<(), BrokerError> {
    use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};
    use std::collections::HashMap;

    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: cfg.max_payload_size,
        max_inflight_count: 1000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: cfg.max_connections,
            max_outgoing_packet_count: 1000,
            max_segment_size: cfg.segment_size.max(1024),
            max_segment_count: cfg.segment_count.max(1),
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
    let target = connect_addr(listen);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotReady(listen))
}

#[cfg(not(feature = "embedded-broker"))]
pub fn start(_cfg: &MqttConfig, _listen: SocketAddr) -> Result<(), BrokerError> {
    Err(BrokerError::NotCompiled)
}
