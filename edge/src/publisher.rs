//! MQTT uplink: publishes outbox batches (QoS 1), deletes them on central's commit ack,
//! resends what is not committed in time and everything unconfirmed after a reconnect.
//! Keeps the retained node status (and its Last Will) up to date.

use crate::config::{parse_mqtt_url, Config};
use crate::outbox::Outbox;
use crate::stats::Shared;
use roomsense_common::protocol::{encode, CommitAck};
use roomsense_common::{NodeId, NodeStatus, TopicKind, Topics};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Batches published and not yet commit-acked (pure: time is passed in, in ms).
#[derive(Debug, Clone)]
pub struct Inflight {
    max: usize,
    resend_after_ms: i64,
    sent: BTreeMap<u64, i64>,
    /// Highest seq published in this session (the next ones come from above it).
    cursor: u64,
}

impl Inflight {
    pub fn new(max: usize, resend_after: Duration) -> Self {
        Self {
            max: max.max(1),
            resend_after_ms: resend_after.as_millis() as i64,
            sent: BTreeMap::new(),
            cursor: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// How many more batches may be published now.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.sent.len())
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    pub fn published(&mut self, seq: u64, now_ms: i64) {
        self.sent.insert(seq, now_ms);
        self.cursor = self.cursor.max(seq);
    }

    /// Committed (or gone from the outbox): forget them.
    pub fn acked(&mut self, seqs: &[u64]) {
        for s in seqs {
            self.sent.remove(s);
        }
    }

    /// Batches not acked within the resend timeout, oldest first; they count as sent now.
    pub fn due(&mut self, now_ms: i64) -> Vec<u64> {
        let due: Vec<u64> = self
            .sent
            .iter()
            .filter(|(_, &t)| now_ms - t >= self.resend_after_ms)
            .map(|(&s, _)| s)
            .collect();
        for s in &due {
            self.sent.insert(*s, now_ms);
        }
        due
    }

    /// A new session: everything still in the outbox is published again, oldest first.
    pub fn reset(&mut self) {
        self.sent.clear();
        self.cursor = 0;
    }
}

/// Everything the uplink needs.
pub struct Uplink {
    pub config: Arc<Config>,
    pub node: NodeId,
    pub topics: Topics,
    pub outbox: Arc<Outbox>,
    pub shared: Arc<Shared>,
    /// Signalled when new batches are in the outbox.
    pub wake: Arc<Notify>,
}

enum Net {
    Connected,
    Subscribed,
    Ack(CommitAck),
    Config(Vec<u8>),
    Lost(String),
}

fn mqtt_options(cfg: &Config, node: &NodeId, topics: &Topics) -> Result<MqttOptions, String> {
    let (host, port) = parse_mqtt_url(&cfg.mqtt.url)?;
    let mut o = MqttOptions::new(cfg.client_id(), host, port);
    let will = encode(&NodeStatus::last_will(node.clone()));
    o.set_keep_alive(cfg.mqtt.keep_alive)
        .set_clean_session(true)
        .set_inflight((cfg.mqtt.max_inflight + 16).min(u16::MAX as usize) as u16)
        .set_request_channel_capacity(cfg.mqtt.max_inflight * 2 + 64)
        .set_max_packet_size(5 * 1024 * 1024, 5 * 1024 * 1024)
        .set_last_will(LastWill::new(
            topics.node(node, TopicKind::Status),
            will,
            QoS::AtLeastOnce,
            true,
        ));
    if let (Some(u), Some(p)) = (&cfg.mqtt.username, &cfg.mqtt.password) {
        o.set_credentials(u.clone(), p.clone());
    }
    Ok(o)
}

impl Uplink {
    /// Runs until `cancel`. On cancel, publishes an `offline` status and disconnects.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let opts =
            mqtt_options(&self.config, &self.node, &self.topics).map_err(anyhow::Error::msg)?;
        let cap = self.config.mqtt.max_inflight * 2 + 64;
        let (client, mut eventloop) = AsyncClient::new(opts, cap);
        let ack_topic = self.topics.node(&self.node, TopicKind::Ack);
        let config_topic = self.topics.node(&self.node, TopicKind::Config);
        let status_topic = self.topics.node(&self.node, TopicKind::Status);
        let (net_tx, mut net_rx) = mpsc::channel::<Net>(1024);
        let min = self.config.mqtt.reconnect_min;
        let max = self.config.mqtt.reconnect_max;
        let net_cancel = CancellationToken::new();
        let stop_net = net_cancel.clone();
        let (ack_t, cfg_t) = (ack_topic.clone(), config_topic.clone());
        let shared = self.shared.clone();
        let net = tokio::spawn(async move {
            let mut backoff = min;
            loop {
                let ev = tokio::select! {
                    _ = net_cancel.cancelled() => break,
                    ev = eventloop.poll() => ev,
                };
                let msg = match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = min;
                        Some(Net::Connected)
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => Some(Net::Subscribed),
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        shared.pubacks.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic == ack_t {
                            match serde_json::from_slice::<CommitAck>(&p.payload) {
                                Ok(a) => Some(Net::Ack(a)),
                                Err(e) => {
                                    tracing::warn!(error = %e, "ignoring a commit ack that does not parse");
                                    None
                                }
                            }
                        } else if p.topic == cfg_t {
                            Some(Net::Config(p.payload.to_vec()))
                        } else {
                            None
                        }
                    }
                    Ok(_) => None,
                    Err(e) => {
                        let _ = net_tx.send(Net::Lost(e.to_string())).await;
                        tokio::select! {
                            _ = net_cancel.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(max);
                        None
                    }
                };
                if let Some(m) = msg {
                    if net_tx.send(m).await.is_err() {
                        break;
                    }
                }
            }
            eventloop
        });

        let mut inflight = Inflight::new(
            self.config.mqtt.max_inflight,
            self.config.mqtt.resend_timeout,
        );
        let mut ready = false;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_tick = tokio::time::interval(self.config.mqtt.status_interval);
        let mut last_lost_log = None::<std::time::Instant>;
        loop {
            self.shared.beat_publisher();
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
                _ = status_tick.tick() => {
                    if ready {
                        self.publish_status(&client, &status_topic, true);
                    }
                }
                m = net_rx.recv() => match m {
                    None => break,
                    Some(Net::Connected) => {
                        tracing::info!(url = %self.config.mqtt.url, "connected to broker");
                        ready = false;
                        inflight.reset();
                        let subs = [ack_topic.clone(), config_topic.clone()]
                            .into_iter()
                            .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
                        if let Err(e) = client.try_subscribe_many(subs) {
                            tracing::warn!(error = %e, "could not queue the subscription");
                        }
                    }
                    Some(Net::Subscribed) => {
                        ready = true;
                        self.shared.connected.store(true, Ordering::Relaxed);
                        self.publish_status(&client, &status_topic, true);
                    }
                    Some(Net::Ack(a)) => {
                        if a.node == self.node {
                            let n = self.outbox.delete(&a.seqs).await?;
                            self.shared.committed_batches.fetch_add(n, Ordering::Relaxed);
                            inflight.acked(&a.seqs);
                        }
                    }
                    Some(Net::Config(p)) => {
                        tracing::info!(bytes = p.len(), "remote config received (not applied by this version)");
                    }
                    Some(Net::Lost(e)) => {
                        ready = false;
                        self.shared.connected.store(false, Ordering::Relaxed);
                        inflight.reset();
                        let now = std::time::Instant::now();
                        if last_lost_log.is_none_or(|t: std::time::Instant| now.duration_since(t) > Duration::from_secs(10)) {
                            tracing::warn!(error = %e, "broker connection lost; retrying");
                            last_lost_log = Some(now);
                        }
                    }
                }
            }
            if !ready {
                continue;
            }
            self.pump(&client, &mut inflight).await?;
        }

        // Shutting down: say we are offline (retained), then disconnect cleanly so the
        // broker does not publish the Last Will; the net task ends after DISCONNECT.
        let mut net = net;
        if ready {
            self.publish_status(&client, &status_topic, false);
            let _ = client.try_disconnect();
            if tokio::time::timeout(Duration::from_secs(2), &mut net)
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        stop_net.cancel();
        let _ = net.await;
        Ok(())
    }

    /// Resends what is due, then publishes new batches while there is room.
    async fn pump(&self, client: &AsyncClient, inflight: &mut Inflight) -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        for seq in inflight.due(now) {
            match self.outbox.get(seq).await? {
                Some(b) => {
                    let topic = self.topics.node(&self.node, b.kind);
                    if client
                        .try_publish(topic, QoS::AtLeastOnce, false, b.payload)
                        .is_err()
                    {
                        break;
                    }
                    self.shared.resent_batches.fetch_add(1, Ordering::Relaxed);
                }
                None => inflight.acked(&[seq]),
            }
        }
        while inflight.room() > 0 {
            let rows = self
                .outbox
                .fetch_after(inflight.cursor(), inflight.room())
                .await?;
            if rows.is_empty() {
                break;
            }
            for b in rows {
                let topic = self.topics.node(&self.node, b.kind);
                if client
                    .try_publish(topic, QoS::AtLeastOnce, false, b.payload)
                    .is_err()
                {
                    return Ok(());
                }
                inflight.published(b.seq, now);
                self.shared
                    .published_batches
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.shared
            .inflight
            .store(inflight.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn publish_status(&self, client: &AsyncClient, topic: &str, online: bool) {
        let status = self.shared.status(&self.node, &self.outbox, online);
        if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, true, encode(&status)) {
            tracing::debug!(error = %e, "could not queue the status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_bounds_resends_and_resets() {
        let mut f = Inflight::new(3, Duration::from_secs(30));
        assert_eq!(f.room(), 3);
        f.published(1, 0);
        f.published(2, 0);
        f.published(3, 10_000);
        assert_eq!(f.room(), 0);
        assert_eq!(f.cursor(), 3);
        assert!(f.due(29_999).is_empty());
        assert_eq!(f.due(30_000), vec![1, 2]);
        // Resent ones wait a full timeout again.
        assert_eq!(f.due(40_000), vec![3]);
        f.acked(&[1, 3, 77]);
        assert_eq!(f.len(), 1);
        assert_eq!(f.room(), 2);
        f.reset();
        assert!(f.is_empty());
        assert_eq!(f.cursor(), 0);
    }
}
