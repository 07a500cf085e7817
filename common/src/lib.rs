//! What the edge daemon and the central server share: the MQTT wire protocol, the topic
//! scheme, id newtypes, validation and the deterministic building simulator.
//!
//! Nothing here does I/O or reads a clock: time is always passed in.

pub mod config;
pub mod ids;
pub mod protocol;
pub mod sim;
pub mod topics;
pub mod validate;

pub use ids::{DeviceId, DoorId, IdError, NodeId};
pub use protocol::{
    Batch, BleBatch, BleSighting, CommitAck, DecodeError, DoorBatch, DoorState, DoorTransition,
    NodeState, NodeStatus, SensorHealth, SensorState, SightingKind, WifiBatch, WifiReading,
    SCHEMA_VERSION,
};
pub use topics::{TopicKind, Topics, DEFAULT_PREFIX};
