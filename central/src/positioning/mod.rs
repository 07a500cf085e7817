//! Positioning engine: pure, synchronous estimators over RSSI observations.
//!
//! Everything here takes time as `i64` milliseconds and does no I/O except reading
//! from a `BufRead` it is given, so the server can call it from any context.
//!
//! * [`uji`] reads the UJIIndoorLoc CSV layout into a [`Dataset`].
//! * [`fingerprint`] is weighted kNN over a radio map, hyper-parameters chosen by
//!   cross-validation in [`train`].
//! * [`multilat`] is log-distance multilateration against anchors at known positions.
//! * [`window`] keeps a sliding, outlier-filtered RSSI window per emitter/receiver.
//! * [`room`] maps an estimate to rooms, with a room filter over the doors between them.
//! * [`kalman`] smooths a 2D track with a walking-speed clamp.
//! * [`eval`] measures a model on a test set ([`run_eval`] is the whole flow).

pub mod eval;
pub mod fingerprint;
pub mod kalman;
pub mod multilat;
pub mod particles;
pub mod room;
pub mod uji;
pub mod window;

use serde::{Deserialize, Serialize};

pub use eval::{
    calibrate_anchors, evaluate, evaluate_multilat, read_anchors, run_eval, EvalError, EvalReport,
    Method,
};
pub use fingerprint::{
    train, CvReport, Dataset, Distance, FingerprintModel, Merge, Params, Representation, Sample,
    TrainError, TrainOptions, Weighting,
};
pub use kalman::{KalmanConfig, KalmanTrack};
pub use multilat::{
    fit_path_loss, multilaterate, multilaterate_near, rssi_to_distance, solve, solve_near, Anchor,
    MultilatConfig, Observation, Prior,
};
pub use particles::{FloorPlan, ParticleConfig, ParticleEstimate, ParticleTrack, PlanReceiver};
pub use room::{
    room_at, room_probabilities, DoorEvent, Passage, Room, RoomFilter, RoomFilterConfig, RoomGraph,
};
pub use uji::{read_uji, UjiError};
pub use window::{RssiWindow, WindowConfig};

/// One fused position estimate, whatever produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Position in the coordinate system of the training data / anchors (metres).
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub building: i32,
    /// 0..1: how much the estimator trusts its own building/floor/position answer.
    pub confidence: f32,
    /// Radius (same units as x/y) within which the true position probably lies.
    pub error_radius_m: f32,
    /// Most probable room, once rooms are known (see [`room`]).
    pub room: Option<String>,
    /// Per-room probabilities, highest first.
    pub room_probabilities: Vec<(String, f32)>,
    /// "fingerprint-knn", "multilateration", "nearest-receiver", ...
    pub method: String,
}

impl Estimate {
    /// Fill `room` and `room_probabilities` from a room list (rooms on other floors ignored).
    pub fn with_rooms(mut self, rooms: &[Room]) -> Self {
        let probs = room_probabilities(rooms, self.x, self.y, self.floor, self.error_radius_m);
        self.room = probs.first().map(|(id, _)| id.clone());
        self.room_probabilities = probs;
        self
    }
}
