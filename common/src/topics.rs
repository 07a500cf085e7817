//! The MQTT topic scheme: `{prefix}/nodes/{node}/{kind}` and `{prefix}/events/access`.

use crate::ids::NodeId;

/// Default topic prefix.
pub const DEFAULT_PREFIX: &str = "roomsense/v1";

/// The last level of a node topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Status,
    Door,
    Ble,
    Wifi,
    Config,
    /// central→edge: the batches of this node that are committed to storage.
    Ack,
}

impl TopicKind {
    pub const ALL: [TopicKind; 6] = [
        TopicKind::Status,
        TopicKind::Door,
        TopicKind::Ble,
        TopicKind::Wifi,
        TopicKind::Config,
        TopicKind::Ack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Status => "status",
            TopicKind::Door => "door",
            TopicKind::Ble => "ble",
            TopicKind::Wifi => "wifi",
            TopicKind::Config => "config",
            TopicKind::Ack => "ack",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Builds and parses topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl Topics {
    /// A prefix is one or more non-empty levels without wildcards; a trailing '/' is dropped.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err("topic prefix is empty".into());
        }
        if prefix.contains(['+', '#', '\0']) {
            return Err(format!(
                "topic prefix {prefix:?} contains an MQTT wildcard or NUL"
            ));
        }
        if prefix.split('/').any(str::is_empty) {
            return Err(format!("topic prefix {prefix:?} has an empty level"));
        }
        Ok(Self {
            prefix: prefix.to_string(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn node(&self, node: &NodeId, kind: TopicKind) -> String {
        format!("{}/nodes/{}/{}", self.prefix, node, kind.as_str())
    }

    /// Filter matching every topic a node publishes or receives.
    pub fn all_nodes_filter(&self) -> String {
        format!("{}/nodes/+/+", self.prefix)
    }

    /// Topic on which access events are published.
    pub fn access_events(&self) -> String {
        format!("{}/events/access", self.prefix)
    }

    /// Splits a node topic into its node and kind; `None` if it is not one of ours.
    pub fn parse(&self, topic: &str) -> Option<(NodeId, TopicKind)> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix("/nodes/")?;
        let (node, kind) = rest.split_once('/')?;
        let kind = TopicKind::parse(kind)?;
        let node = NodeId::parse(node).ok()?;
        Some((node, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn build_and_parse() {
        let t = Topics::default();
        let n = NodeId::parse("pi-1").unwrap();
        assert_eq!(t.node(&n, TopicKind::Ble), "roomsense/v1/nodes/pi-1/ble");
        assert_eq!(
            t.parse("roomsense/v1/nodes/pi-1/ble"),
            Some((n, TopicKind::Ble))
        );
        assert_eq!(t.parse("roomsense/v1/nodes/pi-1/nope"), None);
        assert_eq!(t.parse("other/nodes/pi-1/ble"), None);
        assert_eq!(t.parse("roomsense/v1/nodes/a/b/ble"), None);
        assert_eq!(t.all_nodes_filter(), "roomsense/v1/nodes/+/+");
    }

    #[test]
    fn prefix_rules() {
        assert_eq!(Topics::new("a/b/").unwrap().prefix(), "a/b");
        assert!(Topics::new("").is_err());
        assert!(Topics::new("a/+/b").is_err());
        assert!(Topics::new("a//b").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(node in "[A-Za-z0-9_-]{1,64}", k in 0usize..6, prefix in "[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}") {
            let t = Topics::new(&prefix).unwrap();
            let n = NodeId::parse(&node).unwrap();
            let kind = TopicKind::ALL[k];
            prop_assert_eq!(t.parse(&t.node(&n, kind)), Some((n, kind)));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,100}") {
            let _ = Topics::default().parse(&s);
        }
    }
}
