//! The live event bus: everything that happens, as it happens, for live consumers (the SSE
//! stream, MQTT `{prefix}/events/access`, …). A `tokio::sync::broadcast` channel: publishing
//! never blocks and never fails; a consumer that falls behind by more than the capacity
//! is told how many events it missed (`RecvError::Lagged`) instead of slowing ingest.
//!
//! Producers: the ingest commit hook (door transitions, node status changes), the live
//! positioning path (positions), the access engine (access events).

use serde::Serialize;
use tokio::sync::broadcast;

/// A door contact changed state (as committed by ingest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoorTransition {
    pub node: String,
    pub door: String,
    /// `open` or `closed`.
    pub state: String,
    pub at_ms: i64,
}

/// A node came online, went offline (last will, silence) or sent a new status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeChange {
    pub node: String,
    /// `online` or `offline`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// One live event. Serialized with a `type` tag: `position`, `door`, `node`, `access`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    Position(crate::live::Position),
    Door(DoorTransition),
    Node(NodeChange),
    Access(crate::access::AccessEvent),
}

impl LiveEvent {
    /// The event's time (ms since the epoch, UTC).
    pub fn at_ms(&self) -> i64 {
        match self {
            LiveEvent::Position(p) => p.at_ms,
            LiveEvent::Door(d) => d.at_ms,
            LiveEvent::Node(n) => n.at_ms,
            LiveEvent::Access(a) => a.at_ms,
        }
    }
}

/// Default capacity: events a slow consumer may fall behind before it skips ahead.
pub const DEFAULT_CAPACITY: usize = 4096;

#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<LiveEvent>,
    /// Bumped on every change of the building model (rooms, doors, devices, people,
    /// rules, …), so consumers such as the access engine reload it.
    model: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let (model, _) = tokio::sync::watch::channel(0);
        Self {
            tx,
            model: std::sync::Arc::new(model),
        }
    }

    /// Sends to every current subscriber; a no-op when nobody listens.
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// Tells model watchers that the stored building model changed.
    pub fn model_changed(&self) {
        self.model.send_modify(|v| *v += 1);
    }

    /// Changes when the stored building model changes (`changed().await`, then reload).
    pub fn watch_model(&self) -> tokio::sync::watch::Receiver<u64> {
        self.model.subscribe()
    }
}

/// The live events of a committed ingest group: its door transitions and node statuses.
/// Pure; `items` as handed to the commit hook.
pub fn events_of_commit(items: &[crate::storage::WriteItem]) -> Vec<LiveEvent> {
    use crate::storage::WriteItem;
    use roomsense_common::protocol::Message;
    let mut out = Vec::new();
    for item in items {
        let WriteItem::Message(r) = item else {
            continue;
        };
        match &r.msg {
            Message::Door(b) => out.extend(b.items.iter().map(|t| {
                LiveEvent::Door(DoorTransition {
                    node: b.node.as_str().to_string(),
                    door: t.door.as_str().to_string(),
                    state: t.state.as_str().to_string(),
                    at_ms: t.at.timestamp_millis(),
                })
            })),
            Message::Status(s) => out.push(LiveEvent::Node(NodeChange {
                node: s.node.as_str().to_string(),
                state: s.state.as_str().to_string(),
                reason: (s.state == roomsense_common::protocol::NodeState::Offline)
                    .then(|| "last will".to_string()),
                at_ms: r.received_ms,
            })),
            Message::Ble(_) | Message::Wifi(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_in_order() {
        let bus = EventBus::new(8);
        bus.publish(LiveEvent::Node(NodeChange {
            node: "n0".into(),
            state: "online".into(),
            reason: None,
            at_ms: 0,
        }));
        let mut rx = bus.subscribe();
        for i in 1..=3 {
            bus.publish(LiveEvent::Door(DoorTransition {
                node: "n1".into(),
                door: "d1".into(),
                state: "open".into(),
                at_ms: i,
            }));
        }
        for i in 1..=3 {
            assert_eq!(rx.recv().await.unwrap().at_ms(), i);
        }
        let json = serde_json::to_value(LiveEvent::Door(DoorTransition {
            node: "n1".into(),
            door: "d1".into(),
            state: "open".into(),
            at_ms: 5,
        }))
        .unwrap();
        assert_eq!(json["type"], "door");
    }
}
