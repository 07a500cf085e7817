//! The ingest MQTT client: subscribes to every node topic (through the embedded broker or
//! an external one), hands each publish to the writer and acknowledges it after commit.

use crate::ingest::{classify, Envelope, IngestStats};
use roomsense_common::Topics;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where and how the ingest client connects.
#[derive(Debug, Clone)]
pub struct IngestClientConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Keep the session on the broker so messages queued while we were away are delivered.
    pub persistent_session: bool,
    pub shared_group: Option<String>,
    pub max_payload: usize,
    pub queue_capacity: usize,
}

/// Subscription filters: statuses are retained and so never shared (retained messages are
/// not sent to shared subscriptions); batches are shared between replicas when a group is set.
pub fn filters(topics: &Topics, shared_group: Option<&str>) -> Vec<String> {
    let p = topics.prefix();
    let mut f = vec![format!("{p}/nodes/+/status")];
    for kind in ["door", "ble", "wifi"] {
        let filter = format!("{p}/nodes/+/{kind}");
        f.push(match shared_group {
            Some(g) => format!("$share/{g}/{filter}"),
            None => filter,
        });
    }
    f
}

/// Runs until `cancel`: polls the event loop (which reconnects by itself), resubscribes on
/// every ConnAck, classifies publishes and queues them (back-pressure when the queue is full).
pub async fn run_ingest_client(
    cfg: IngestClientConfig,
    topics: Topics,
    tx: mpsc::Sender<Envelope>,
    stats: Arc<IngestStats>,
    connected: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(!cfg.persistent_session)
        .set_manual_acks(true)
        .set_max_packet_size(cfg.max_payload + 1024, cfg.max_payload + 1024)
        .set_request_channel_capacity(cfg.queue_capacity * 2 + 64);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, cfg.queue_capacity * 2 + 64);
    let subs = filters(&topics, cfg.shared_group.as_deref());
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                tracing::info!(host = %cfg.host, port = cfg.port, "ingest connected to broker");
                let many = subs
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(many) {
                    tracing::error!(error = %e, "could not queue subscription");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                connected.store(true, Ordering::Release);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                let item = classify(&topics, &p.topic, &p.payload, chrono::Utc::now());
                let ack_client = client.clone();
                let ack: crate::ingest::Ack = Box::new(move || {
                    if let Err(e) = ack_client.try_ack(&p) {
                        tracing::warn!(error = %e, "could not queue PUBACK; the broker will redeliver");
                    }
                });
                let env = Envelope {
                    item,
                    ack: Some(ack),
                };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = tx.send(env) => if r.is_err() { break },
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected.store(false, Ordering::Release);
                tracing::warn!(error = %e, retry_in = ?backoff, "broker connection lost");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    connected.store(false, Ordering::Release);
    // Let the PUBACKs of what the writer commits while draining go out before disconnecting.
    let _ = client.try_disconnect();
    let flush = async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_never_shared() {
        let t = Topics::default();
        let f = filters(&t, Some("g"));
        assert_eq!(f[0], "roomsense/v1/nodes/+/status");
        assert_eq!(f[2], "$share/g/roomsense/v1/nodes/+/ble");
        assert_eq!(filters(&t, None)[1], "roomsense/v1/nodes/+/door");
    }
}
