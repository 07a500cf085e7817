//! Id newtypes. Every id is checked by `parse()` so it is safe in MQTT topics, URLs and logs.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id is empty")]
    Empty { kind: &'static str },
    #[error("{kind} id is {len} characters long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} id {value:?} has the character {ch:?} at position {pos}; allowed: {allowed}")]
    BadChar {
        kind: &'static str,
        value: String,
        ch: char,
        pos: usize,
        allowed: &'static str,
    },
}

fn check(
    kind: &'static str,
    s: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = s.chars().count();
    if len > max {
        return Err(IdError::TooLong { kind, len, max });
    }
    if let Some((pos, ch)) = s.chars().enumerate().find(|(_, c)| !ok(*c)) {
        return Err(IdError::BadChar {
            kind,
            value: s.to_string(),
            ch,
            pos,
            allowed,
        });
    }
    Ok(())
}

fn topic_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn device_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:literal, $pred:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest id accepted.
            pub const MAX_LEN: usize = $max;

            /// Checks `s` and wraps it.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check($kind, s, $max, $allowed, $pred)?;
                Ok(Self(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An edge node (one Raspberry Pi). Safe in MQTT topic levels and URL path segments.
    NodeId,
    "node",
    64,
    "ASCII letters, digits, '-' and '_'",
    topic_safe
);
id_type!(
    /// A door, as named in the edge's config.
    DoorId,
    "door",
    64,
    "ASCII letters, digits, '-' and '_'",
    topic_safe
);
id_type!(
    /// A tracked device or emitter: a BLE address, a beacon id (`ibeacon:uuid:major:minor`),
    /// a WiFi BSSID, or a salted hash (`h:…`) of an address that is not enrolled.
    DeviceId,
    "device",
    128,
    "ASCII letters, digits, '-', '_', ':' and '.'",
    device_safe
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_typical_ids() {
        assert!(NodeId::parse("pi-lobby_01").is_ok());
        assert!(DeviceId::parse("aa:bb:cc:dd:ee:ff").is_ok());
        assert!(DeviceId::parse("ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:2").is_ok());
    }

    #[test]
    fn rejects_topic_breaking_ids_with_a_clear_message() {
        for bad in ["a/b", "a+b", "a#", "a b", "ä"] {
            let e = NodeId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("character"), "{e}");
        }
        assert_eq!(NodeId::parse(""), Err(IdError::Empty { kind: "node" }));
        let long = "a".repeat(65);
        assert!(matches!(
            NodeId::parse(&long),
            Err(IdError::TooLong { len: 65, .. })
        ));
    }

    #[test]
    fn deserialize_validates() {
        let r: Result<NodeId, _> = serde_json::from_str("\"x/y\"");
        assert!(r.is_err());
    }

    proptest! {
        #[test]
        fn parsed_node_ids_are_topic_and_url_safe(s in "\\PC{0,80}") {
            if let Ok(id) = NodeId::parse(&s) {
                prop_assert!(!id.as_str().is_empty());
                prop_assert!(id.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
                prop_assert!(id.as_str().len() <= NodeId::MAX_LEN);
            }
        }

        #[test]
        fn valid_ids_round_trip(s in "[A-Za-z0-9_-]{1,64}") {
            let id = NodeId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }
}
