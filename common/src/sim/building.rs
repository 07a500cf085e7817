//! The building description: floors, rooms, doors, stairs, receivers, access points and
//! enrolled devices. Loaded from TOML and validated with errors that name the bad field.

use super::geometry::{self, Pt};
use super::SimError;
use crate::ids::{DeviceId, DoorId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The pseudo room id a door uses for the outside of the building.
pub const OUTSIDE: &str = "outside";

/// How far (metres) a door or stairs position may be from the rooms it joins.
pub const DOOR_TOLERANCE_M: f64 = 1.0;

fn d_height() -> f64 {
    3.0
}
fn d_rssi_at_1m() -> f64 {
    -59.0
}
fn d_exponent() -> f64 {
    2.2
}
fn d_sigma() -> f64 {
    4.0
}
fn d_ap_rssi_at_1m() -> f64 {
    -40.0
}
fn d_ap_exponent() -> f64 {
    3.0
}
fn d_channel() -> u16 {
    6
}
fn d_kind() -> String {
    "tag".to_string()
}
fn d_tx_power() -> Option<i8> {
    Some(-59)
}

/// A whole building.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Building {
    pub name: String,
    pub floors: Vec<Floor>,
    pub rooms: Vec<Room>,
    #[serde(default)]
    pub doors: Vec<Door>,
    /// Vertical links (stairs, lifts) between rooms on different floors. No sensor.
    #[serde(default)]
    pub stairs: Vec<Stairs>,
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    #[serde(default)]
    pub access_points: Vec<AccessPoint>,
    /// Enrolled devices that the simulator moves around (besides generated ones).
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// Floor number (0 = ground, -1 = basement, ...). Rooms refer to it.
    pub index: i32,
    #[serde(default)]
    pub name: String,
    /// Storey height in metres.
    #[serde(default = "d_height")]
    pub height: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Room {
    /// Unique id: ASCII letters, digits, '-' and '_'; not "outside".
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// `Floor::index` of the floor the room is on.
    pub floor: i32,
    /// Outline in metres, `[x, y]` points in order (closing point optional).
    pub polygon: Vec<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// Only devices with `restricted_access` may enter.
    #[serde(default)]
    pub restricted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Door {
    pub id: DoorId,
    /// The two rooms it joins; one of them may be "outside".
    pub rooms: Vec<String>,
    /// `[x, y]` on the rooms' floor, on (or within 1 m of) both rooms' outlines.
    pub position: [f64; 2],
    /// The edge node whose GPIO input reports the door contact.
    pub node: NodeId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stairs {
    /// Two rooms on different floors.
    pub rooms: Vec<String>,
    /// `[x, y]` of the stairs, inside (or within 1 m of) both rooms.
    pub position: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// The edge node this BLE receiver belongs to (one receiver per node).
    pub node: NodeId,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    /// RSSI at 1 m, dBm.
    #[serde(default = "d_rssi_at_1m")]
    pub rssi_at_1m: f64,
    /// Log-distance path loss exponent n.
    #[serde(default = "d_exponent")]
    pub path_loss_exponent: f64,
    /// Standard deviation of the Gaussian shadowing noise, dB.
    #[serde(default = "d_sigma")]
    pub noise_sigma_db: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPoint {
    pub bssid: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    /// RSSI at 1 m, dBm.
    #[serde(default = "d_ap_rssi_at_1m")]
    pub rssi_at_1m: f64,
    #[serde(default = "d_ap_exponent")]
    pub path_loss_exponent: f64,
    #[serde(default = "d_channel")]
    pub channel: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub id: DeviceId,
    #[serde(default)]
    pub name: String,
    /// Free text: "tag", "badge", "phone", "beacon", ...
    #[serde(default = "d_kind")]
    pub kind: String,
    /// The person carrying it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// May enter restricted rooms.
    #[serde(default)]
    pub restricted_access: bool,
    /// Never moves (stays in `room`, or a random room).
    #[serde(default)]
    pub stationary: bool,
    /// Room it starts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Measured power at 1 m carried in the advertisement (iBeacon style), if any.
    #[serde(default = "d_tx_power")]
    pub tx_power: Option<i8>,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> SimError {
    SimError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn finite(field: impl FnOnce() -> String, v: &[f64]) -> Result<(), SimError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(bad(field(), "must be a finite number"))
    }
}

fn room_id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Building {
    /// Parses and validates a building from TOML.
    pub fn from_toml_str(s: &str) -> Result<Building, SimError> {
        let b: Building = toml::from_str(s).map_err(|e| SimError::Parse(e.to_string()))?;
        b.validate()?;
        Ok(b)
    }

    /// The example office shipped as `deploy/examples/building.toml`.
    pub fn example() -> Building {
        Building::from_toml_str(EXAMPLE_TOML).expect("deploy/examples/building.toml is valid")
    }

    pub fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.iter().find(|r| r.id == id)
    }

    /// The first room on `floor` whose outline contains `(x, y)`.
    pub fn room_at(&self, floor: i32, x: f64, y: f64) -> Option<&Room> {
        self.rooms.iter().find(|r| {
            r.floor == floor && geometry::point_in_polygon(Pt::new(x, y), &r.polygon_pts())
        })
    }

    /// Checks everything the simulator relies on; the error names the first bad field.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        if self.floors.is_empty() {
            return Err(bad("floors", "needs at least one floor"));
        }
        let mut floors = BTreeSet::new();
        for (i, f) in self.floors.iter().enumerate() {
            if !floors.insert(f.index) {
                return Err(bad(
                    format!("floors[{i}].index"),
                    format!("floor {} is defined twice", f.index),
                ));
            }
            if !(f.height.is_finite() && f.height > 0.0) {
                return Err(bad(
                    format!("floors[{i}].height"),
                    "must be a positive number of metres",
                ));
            }
        }
        let floor_ok = |field: String, floor: i32| -> Result<(), SimError> {
            if floors.contains(&floor) {
                Ok(())
            } else {
                Err(bad(
                    field,
                    format!("floor {floor} is not defined in [[floors]]"),
                ))
            }
        };
        if self.rooms.is_empty() {
            return Err(bad("rooms", "needs at least one room"));
        }
        let mut rooms: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, r) in self.rooms.iter().enumerate() {
            if !room_id_ok(&r.id) {
                return Err(bad(
                    format!("rooms[{i}].id"),
                    format!(
                        "{:?} is not a valid room id (1-64 ASCII letters, digits, '-' or '_')",
                        r.id
                    ),
                ));
            }
            if r.id == OUTSIDE {
                return Err(bad(
                    format!("rooms[{i}].id"),
                    "\"outside\" is reserved for doors to the outside",
                ));
            }
            if rooms.insert(&r.id, i).is_some() {
                return Err(bad(
                    format!("rooms[{i}].id"),
                    format!("room {:?} is defined twice", r.id),
                ));
            }
            floor_ok(format!("rooms[{i}].floor"), r.floor)?;
            let pts = r.polygon_pts();
            if pts.len() < 3 {
                return Err(bad(
                    format!("rooms[{i}].polygon"),
                    "needs at least 3 points",
                ));
            }
            for (j, p) in r.polygon.iter().enumerate() {
                finite(|| format!("rooms[{i}].polygon[{j}]"), p)?;
            }
            if geometry::area(&pts).abs() < 1e-6 {
                return Err(bad(
                    format!("rooms[{i}].polygon"),
                    "has no area (points are on one line)",
                ));
            }
        }
        let room_ref = |field: String, id: &str| -> Result<&Room, SimError> {
            match rooms.get(id) {
                Some(&i) => Ok(&self.rooms[i]),
                None => Err(bad(field, format!("unknown room {id:?}"))),
            }
        };
        let near = |field: String, room: &Room, p: [f64; 2]| -> Result<(), SimError> {
            let d = geometry::distance_to_polygon(Pt::new(p[0], p[1]), &room.polygon_pts());
            if d <= DOOR_TOLERANCE_M {
                Ok(())
            } else {
                Err(bad(
                    field,
                    format!(
                        "[{}, {}] is {d:.1} m away from room {:?}; it must be within {DOOR_TOLERANCE_M} m",
                        p[0], p[1], room.id
                    ),
                ))
            }
        };
        let mut door_ids = BTreeSet::new();
        for (i, d) in self.doors.iter().enumerate() {
            if !door_ids.insert(d.id.as_str()) {
                return Err(bad(
                    format!("doors[{i}].id"),
                    format!("door {:?} is defined twice", d.id.as_str()),
                ));
            }
            let field = format!("doors[{i}].rooms");
            if d.rooms.len() != 2 {
                return Err(bad(
                    field,
                    "needs exactly two room ids (or one room id and \"outside\")",
                ));
            }
            if d.rooms[0] == d.rooms[1] {
                return Err(bad(field, "joins a room to itself"));
            }
            finite(|| format!("doors[{i}].position"), &d.position)?;
            let mut floor = None;
            let mut inside = 0;
            for (k, id) in d.rooms.iter().enumerate() {
                if id == OUTSIDE {
                    continue;
                }
                inside += 1;
                let r = room_ref(format!("doors[{i}].rooms[{k}]"), id)?;
                if let Some(f) = floor {
                    if f != r.floor {
                        return Err(bad(
                            field,
                            "rooms are on different floors; use [[stairs]] between floors",
                        ));
                    }
                }
                floor = Some(r.floor);
                near(format!("doors[{i}].position"), r, d.position)?;
            }
            if inside == 0 {
                return Err(bad(
                    field,
                    "needs at least one room that is not \"outside\"",
                ));
            }
        }
        for (i, s) in self.stairs.iter().enumerate() {
            let field = format!("stairs[{i}].rooms");
            if s.rooms.len() != 2 {
                return Err(bad(field, "needs exactly two room ids"));
            }
            finite(|| format!("stairs[{i}].position"), &s.position)?;
            let a = room_ref(format!("stairs[{i}].rooms[0]"), &s.rooms[0])?;
            let b = room_ref(format!("stairs[{i}].rooms[1]"), &s.rooms[1])?;
            if a.floor == b.floor {
                return Err(bad(
                    field,
                    "rooms are on the same floor; use a [[doors]] entry",
                ));
            }
            near(format!("stairs[{i}].position"), a, s.position)?;
            near(format!("stairs[{i}].position"), b, s.position)?;
        }
        let mut nodes = BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            if !nodes.insert(r.node.as_str()) {
                return Err(bad(
                    format!("receivers[{i}].node"),
                    format!(
                        "node {:?} already has a receiver (one per node)",
                        r.node.as_str()
                    ),
                ));
            }
            finite(|| format!("receivers[{i}].x"), &[r.x])?;
            finite(|| format!("receivers[{i}].y"), &[r.y])?;
            floor_ok(format!("receivers[{i}].floor"), r.floor)?;
            finite(|| format!("receivers[{i}].rssi_at_1m"), &[r.rssi_at_1m])?;
            if !(r.path_loss_exponent.is_finite() && r.path_loss_exponent > 0.0) {
                return Err(bad(
                    format!("receivers[{i}].path_loss_exponent"),
                    "must be a positive number",
                ));
            }
            if !(r.noise_sigma_db.is_finite() && r.noise_sigma_db >= 0.0) {
                return Err(bad(
                    format!("receivers[{i}].noise_sigma_db"),
                    "must be zero or a positive number",
                ));
            }
        }
        let mut bssids = BTreeSet::new();
        for (i, a) in self.access_points.iter().enumerate() {
            if !bssids.insert(a.bssid.as_str()) {
                return Err(bad(
                    format!("access_points[{i}].bssid"),
                    format!("{:?} is defined twice", a.bssid.as_str()),
                ));
            }
            finite(|| format!("access_points[{i}].x"), &[a.x])?;
            finite(|| format!("access_points[{i}].y"), &[a.y])?;
            floor_ok(format!("access_points[{i}].floor"), a.floor)?;
            finite(|| format!("access_points[{i}].rssi_at_1m"), &[a.rssi_at_1m])?;
            if !(a.path_loss_exponent.is_finite() && a.path_loss_exponent > 0.0) {
                return Err(bad(
                    format!("access_points[{i}].path_loss_exponent"),
                    "must be a positive number",
                ));
            }
        }
        let mut devices = BTreeSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            if !devices.insert(d.id.as_str()) {
                return Err(bad(
                    format!("devices[{i}].id"),
                    format!("device {:?} is defined twice", d.id.as_str()),
                ));
            }
            if let Some(room) = &d.room {
                room_ref(format!("devices[{i}].room"), room)?;
            }
        }
        Ok(())
    }
}

impl Room {
    /// The outline as points, without a repeated closing point.
    pub fn polygon_pts(&self) -> Vec<Pt> {
        let mut v: Vec<Pt> = self.polygon.iter().map(|p| Pt::new(p[0], p[1])).collect();
        if v.len() > 1 && v.first() == v.last() {
            v.pop();
        }
        v
    }

    /// Whether `(x, y)` (on this room's floor) is inside the outline.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        geometry::point_in_polygon(Pt::new(x, y), &self.polygon_pts())
    }
}

/// The text of `deploy/examples/building.toml`.
pub const EXAMPLE_TOML: &str = include_str!("../../../deploy/examples/building.toml");
