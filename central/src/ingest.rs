//! Ingest: decode + validate (pure) → queue → batch writer (one transaction per group of
//! messages) → store. A message is acknowledged to the broker only after its commit.

use crate::storage::{DeadLetter, Received, Store, WriteItem, WriteOutcome};
use chrono::{DateTime, Utc};
use roomsense_common::protocol::decode;
use roomsense_common::Topics;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Turns one MQTT publish into what gets written. Pure: `now` is central's receive time.
pub fn classify(topics: &Topics, topic: &str, payload: &[u8], now: DateTime<Utc>) -> WriteItem {
    let received_ms = now.timestamp_millis();
    let dead = |reason: String| {
        WriteItem::DeadLetter(DeadLetter {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            reason,
            received_ms,
        })
    };
    let Some((node, kind)) = topics.parse(topic) else {
        return dead(format!(
            "topic is not {}/nodes/{{node}}/{{status|door|ble|wifi}} with a valid node id",
            topics.prefix()
        ));
    };
    match decode(&node, kind, payload, now) {
        Ok(msg) => WriteItem::Message(Received { msg, received_ms }),
        Err(e) => dead(e.to_string()),
    }
}

/// Counters of the ingest path, shown at `GET /api/ingest/stats`.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub received: AtomicU64,
    pub batches: AtomicU64,
    pub duplicate_batches: AtomicU64,
    pub readings: AtomicU64,
    pub door_events: AtomicU64,
    pub statuses: AtomicU64,
    pub dead_letters: AtomicU64,
    pub transactions: AtomicU64,
    pub write_errors: AtomicU64,
    /// Sightings the live positioning task skipped because it fell behind (oldest first).
    pub positioning_dropped: AtomicU64,
    /// Position rows stored, and failed position writes.
    pub positions_stored: AtomicU64,
    pub position_write_errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct IngestStatsSnapshot {
    pub received: u64,
    pub batches: u64,
    pub duplicate_batches: u64,
    pub readings: u64,
    pub door_events: u64,
    pub statuses: u64,
    pub dead_letters: u64,
    pub transactions: u64,
    pub write_errors: u64,
    pub positioning_dropped: u64,
    pub positions_stored: u64,
    pub position_write_errors: u64,
}

impl IngestStats {
    fn record(&self, o: &WriteOutcome) {
        self.batches.fetch_add(o.batches, Ordering::Relaxed);
        self.duplicate_batches
            .fetch_add(o.duplicate_batches, Ordering::Relaxed);
        self.readings.fetch_add(o.readings, Ordering::Relaxed);
        self.door_events.fetch_add(o.door_events, Ordering::Relaxed);
        self.statuses.fetch_add(o.statuses, Ordering::Relaxed);
        self.dead_letters
            .fetch_add(o.dead_letters, Ordering::Relaxed);
        self.transactions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IngestStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngestStatsSnapshot {
            received: g(&self.received),
            batches: g(&self.batches),
            duplicate_batches: g(&self.duplicate_batches),
            readings: g(&self.readings),
            door_events: g(&self.door_events),
            statuses: g(&self.statuses),
            dead_letters: g(&self.dead_letters),
            transactions: g(&self.transactions),
            write_errors: g(&self.write_errors),
            positioning_dropped: g(&self.positioning_dropped),
            positions_stored: g(&self.positions_stored),
            position_write_errors: g(&self.position_write_errors),
        }
    }
}

/// Logs at most once per `every`, counting what it held back. Pure: time is passed in.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, with `n` lines held back since the last one.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Acknowledges a message to whoever delivered it, once it is committed.
pub type Ack = Box<dyn FnOnce() + Send>;

/// Called with every group right after its commit (central→edge commit acks).
pub type CommitHook = Arc<dyn Fn(&[WriteItem]) + Send + Sync>;

/// `(node, seqs)` of the batches in a committed group, for commit acks.
pub fn committed_seqs(items: &[WriteItem]) -> Vec<(roomsense_common::NodeId, Vec<u64>)> {
    use roomsense_common::protocol::Message;
    let mut by_node: std::collections::BTreeMap<&roomsense_common::NodeId, Vec<u64>> =
        std::collections::BTreeMap::new();
    for item in items {
        if let WriteItem::Message(Received { msg, .. }) = item {
            let seq = match msg {
                Message::Status(_) => continue,
                Message::Door(b) => b.seq,
                Message::Ble(b) => b.seq,
                Message::Wifi(b) => b.seq,
            };
            by_node.entry(msg.node()).or_default().push(seq);
        }
    }
    by_node
        .into_iter()
        .map(|(n, mut s)| {
            s.sort_unstable();
            s.dedup();
            (n.clone(), s)
        })
        .collect()
}

/// A message on its way to the writer.
pub struct Envelope {
    pub item: WriteItem,
    pub ack: Option<Ack>,
}

/// Receives envelopes and writes them in groups: it takes whatever is queued (up to
/// `max_messages`) as one transaction, so under load transactions grow and under light
/// load latency stays low. A failed write is retried with backoff and nothing is acked
/// until it commits. Returns when the queue is closed and drained.
pub async fn run_writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Envelope>,
    max_messages: usize,
    stats: Arc<IngestStats>,
    on_commit: Option<CommitHook>,
    hard_stop: CancellationToken,
) {
    let mut dead_log = RateLimit::new(Duration::from_secs(10));
    let mut group: Vec<Envelope> = Vec::with_capacity(max_messages);
    loop {
        if rx.recv_many(&mut group, max_messages).await == 0 {
            return;
        }
        let items: Vec<WriteItem> = group.iter().map(|e| e.item.clone()).collect();
        for item in &items {
            if let WriteItem::DeadLetter(d) = item {
                if let Some(held) = dead_log.allow(std::time::Instant::now()) {
                    tracing::warn!(topic = %d.topic, reason = %d.reason, held_back = held, "payload dead-lettered");
                }
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match store.write(&items).await {
                Ok(outcome) => {
                    stats.record(&outcome);
                    if let Some(hook) = &on_commit {
                        hook(&items);
                    }
                    break;
                }
                Err(e) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, messages = items.len(), retry_in = ?backoff, "write failed; retrying, nothing acknowledged");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = hard_stop.cancelled() => {
                            tracing::error!(messages = items.len(), "stopping with an unwritten group; the broker will redeliver it");
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for env in group.drain(..) {
            if let Some(ack) = env.ack {
                ack();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn classify_routes_good_and_bad() {
        let t = Topics::default();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let good = br#"{"v":1,"node":"pi-1","seq":1,"sent_at":"2026-01-01T00:00:00Z","items":[{"door":"front","state":"open","at":"2026-01-01T00:00:00Z"}]}"#;
        assert!(matches!(
            classify(&t, "roomsense/v1/nodes/pi-1/door", good, now),
            WriteItem::Message(_)
        ));
        match classify(&t, "roomsense/v1/nodes/pi-1/door", b"{nope", now) {
            WriteItem::DeadLetter(d) => {
                assert!(d.reason.contains("not valid JSON"), "{}", d.reason);
                assert_eq!(d.payload, b"{nope");
            }
            other => panic!("{other:?}"),
        }
        match classify(&t, "roomsense/v1/nodes/a+b/door", good, now) {
            WriteItem::DeadLetter(d) => assert!(d.reason.contains("topic")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let mut r = RateLimit::new(Duration::from_secs(10));
        let t = std::time::Instant::now();
        assert_eq!(r.allow(t), Some(0));
        assert_eq!(r.allow(t + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t + Duration::from_secs(2)), None);
        assert_eq!(r.allow(t + Duration::from_secs(11)), Some(2));
    }
}
