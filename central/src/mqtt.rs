//! The ingest MQTT client: subscribes to every node topic (through the embedded broker or
//! an external one), hands each publish to the writer and acknowledges it after commit.

use crate::ingest::{classify, committed_seqs, CommitHook, Envelope, IngestStats};
use roomsense_common::protocol::{encode, CommitAck, SCHEMA_VERSION};
use roomsense_common::{TopicKind, Topics};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// On shutdown: stop once no message arrived for this long…
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// …or after this long at most.
const DRAIN_MAX: Duration = Duration::from_secs(5);

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

/// Creates the ingest client; nothing is sent until its event loop is polled.
pub fn client(cfg: &IngestClientConfig) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(!cfg.persistent_session)
        .set_manual_acks(true)
        .set_max_packet_size(cfg.max_payload + 1024, cfg.max_payload + 1024)
        .set_request_channel_capacity(cfg.queue_capacity * 2 + 64);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    AsyncClient::new(opts, cfg.queue_capacity * 2 + 64)
}

/// Tells each node which of its batches are committed (`{prefix}/nodes/{node}/ack`), so
/// its outbox can let them go even if this process dies right after the broker's PUBACK.
pub fn commit_acker(client: AsyncClient, topics: Topics) -> CommitHook {
    Arc::new(move |items| {
        for (node, seqs) in committed_seqs(items) {
            let ack = CommitAck {
                v: SCHEMA_VERSION,
                node: node.clone(),
                seqs,
            };
            let topic = topics.node(&node, TopicKind::Ack);
            if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, encode(&ack)) {
                tracing::warn!(%node, error = %e, "could not queue commit ack; the edge will resend");
            }
        }
    })
}

#[allow(clippy::too_many_arguments)] // one call site, each argument a distinct piece of wiring
/// Runs until `cancel`: polls the event loop (which reconnects by itself), resubscribes on
/// every ConnAck, classifies publishes and queues them (back-pressure when the queue is full).
pub async fn run_ingest_client(
    cfg: IngestClientConfig,
    client: AsyncClient,
    mut eventloop: EventLoop,
    topics: Topics,
    tx: mpsc::Sender<Envelope>,
    stats: Arc<IngestStats>,
    connected: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let subs = filters(&topics, cfg.shared_group.as_deref());
    let mut backoff = Duration::from_millis(100);
    // After `cancel`, keep taking what the broker already holds for us until it has been
    // quiet for a moment (bounded), so a SIGTERM does not strand acknowledged messages.
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let event = match drain_until {
            None => tokio::select! {
                _ = cancel.cancelled() => {
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_MAX);
                    continue;
                }
                ev = eventloop.poll() => ev,
            },
            Some(until) => {
                let quiet =
                    DRAIN_QUIET.min(until.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(quiet, eventloop.poll()).await {
                    Ok(ev @ Ok(_)) => ev,
                    Ok(Err(_)) | Err(_) => break,
                }
            }
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
                if tx.send(env).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected.store(false, Ordering::Release);
                tracing::warn!(error = %e, retry_in = ?backoff, "broker connection lost");
                if drain_until.is_some() {
                    break;
                }
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
