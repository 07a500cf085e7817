//! The embedded MQTT broker (rumqttd). `Broker::start()` blocks and starts its own OS
//! threads and has no ready signal and no shutdown: it runs on a `std::thread`, readiness is
//! a TCP connect, and it ends with the process.

use crate::config::MqttConfig;
use std::net::{SocketAddr, TcpListener};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mqtt.listen {addr}: cannot listen there ({err}); is another MQTT broker running? Set mqtt.listen to a free address or use mqtt.mode = \"external\"")]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("embedded broker support is not compiled in (cargo feature `embedded-broker`)")]
    NotCompiled,
}

/// Reserves `addr` (port 0 = any free port) and returns the concrete address.
pub fn reserve(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let l = TcpListener::bind(addr).map_err(|err| BrokerError::Bind { addr, err })?;
    l.local_addr()
        .map_err(|err| BrokerError::Bind { addr, err })
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

/// Starts the broker on `listen` (which must be a concrete, free address).
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
        .map_err(|err| BrokerError::Bind { addr: listen, err })?;
    // No TCP probe here: a bare connect makes rumqttd log an error. The ingest client
    // retries until the broker accepts it, and /readyz reports the connection.
    tracing::info!(%listen, "embedded MQTT broker started");
    Ok(())
}

#[cfg(not(feature = "embedded-broker"))]
pub fn start(_cfg: &MqttConfig, _listen: SocketAddr) -> Result<(), BrokerError> {
    Err(BrokerError::NotCompiled)
}
