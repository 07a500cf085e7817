//! Access rules and occupancy: pure logic, time passed in.
//!
//! `AccessEngine` is fed position updates (device → room) and door transitions and emits
//! access events: a device entering a restricted room that no rule allows it into, a door
//! opened when no rule allows anyone through it, a room going over capacity. Each
//! condition fires once when it starts (entering, opening, crossing capacity), not again
//! while it lasts; a device that re-enters the same restricted room within
//! [`REENTRY_QUIET_MS`] (a room estimate flickering at the wall) is the same visit.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Person(String),
    /// A device group or a person group.
    Group(String),
}

/// "`subject` may enter `room` on these weekdays between these hours, within validity".
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub subject: Subject,
    pub room: String,
    /// Bit 0 = Monday … bit 6 = Sunday.
    pub weekdays: u8,
    /// Minutes after local midnight; `start < end`, or `start > end` for a window that
    /// crosses midnight (22:00–06:00). `start == end` means all day.
    pub start_minute: u16,
    pub end_minute: u16,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
}

impl Rule {
    /// Whether the rule's time window contains `at` (in the building's time zone).
    pub fn in_window(&self, at_ms: i64, tz: Tz) -> bool {
        if self.valid_from_ms.is_some_and(|f| at_ms < f)
            || self.valid_until_ms.is_some_and(|u| at_ms >= u)
        {
            return false;
        }
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(at_ms) else {
            return false;
        };
        let local = utc.with_timezone(&tz);
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let day = local.weekday().num_days_from_monday();
        let (s, e) = (self.start_minute, self.end_minute);
        if s == e {
            return self.weekdays & (1 << day) != 0;
        }
        if s < e {
            return self.weekdays & (1 << day) != 0 && minute >= s && minute < e;
        }
        // Crosses midnight: the part after midnight belongs to the previous day's window.
        if minute >= s {
            self.weekdays & (1 << day) != 0
        } else if minute < e {
            let prev = (day + 6) % 7;
            self.weekdays & (1 << prev) != 0
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoomInfo {
    pub id: String,
    pub building: String,
    pub restricted: bool,
    pub capacity: Option<u32>,
}

/// Who holds a device, for rule matching.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holder {
    pub person: Option<String>,
    /// The device's group and its person's groups.
    pub groups: Vec<String>,
}

/// What the engine knows of the building model.
#[derive(Debug, Clone, Default)]
pub struct AccessModel {
    pub rooms: HashMap<String, RoomInfo>,
    /// Door → the rooms it joins.
    pub doors: HashMap<String, Vec<String>>,
    pub devices: HashMap<String, Holder>,
    pub rules: Vec<Rule>,
    /// Building → time zone of its rules.
    pub time_zones: HashMap<String, Tz>,
}

impl AccessModel {
    fn tz(&self, room: &RoomInfo) -> Tz {
        self.time_zones
            .get(&room.building)
            .copied()
            .unwrap_or(chrono_tz::UTC)
    }

    /// The rule allowing `device` into `room` at `at_ms`, if any.
    pub fn allowing_rule(&self, device: &str, room: &str, at_ms: i64) -> Option<&Rule> {
        let info = self.rooms.get(room)?;
        let holder = self.devices.get(device)?;
        let tz = self.tz(info);
        self.rules.iter().find(|r| {
            r.room == room
                && match &r.subject {
                    Subject::Person(p) => holder.person.as_deref() == Some(p.as_str()),
                    Subject::Group(g) => holder.groups.iter().any(|x| x == g),
                }
                && r.in_window(at_ms, tz)
        })
    }

    /// Whether any rule opens `room` at `at_ms`.
    pub fn room_open(&self, room: &str, at_ms: i64) -> bool {
        let Some(info) = self.rooms.get(room) else {
            return true;
        };
        let tz = self.tz(info);
        self.rules
            .iter()
            .any(|r| r.room == room && r.in_window(at_ms, tz))
    }
}

/// Group given to the devices a building file marks `restricted_access = true`.
pub const FILE_ACCESS_GROUP: &str = "building-file-access";

impl AccessModel {
    /// The model a building file describes: its rooms and doors, its devices with their
    /// persons, and one all-day rule per restricted room for the devices marked
    /// `restricted_access` (a building file has no other rules).
    pub fn from_building(b: &roomsense_common::sim::Building, building_id: &str) -> Self {
        let mut m = AccessModel::default();
        for r in &b.rooms {
            m.rooms.insert(
                r.id.clone(),
                RoomInfo {
                    id: r.id.clone(),
                    building: building_id.to_string(),
                    restricted: r.restricted,
                    capacity: r.capacity,
                },
            );
            if r.restricted {
                m.rules.push(Rule {
                    id: format!("file-{}", r.id),
                    subject: Subject::Group(FILE_ACCESS_GROUP.into()),
                    room: r.id.clone(),
                    weekdays: 0x7f,
                    start_minute: 0,
                    end_minute: 0,
                    valid_from_ms: None,
                    valid_until_ms: None,
                });
            }
        }
        for d in &b.doors {
            m.doors.insert(d.id.to_string(), d.rooms.clone());
        }
        for d in &b.devices {
            m.devices.insert(
                d.id.to_string(),
                Holder {
                    person: d.person.clone(),
                    groups: if d.restricted_access {
                        vec![FILE_ACCESS_GROUP.into()]
                    } else {
                        Vec::new()
                    },
                },
            );
        }
        m
    }
}

/// Kinds of access event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    UnauthorizedEntry,
    DoorOutsideHours,
    OverCapacity,
}

impl AccessKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            AccessKind::UnauthorizedEntry => "unauthorized_entry",
            AccessKind::DoorOutsideHours => "door_outside_hours",
            AccessKind::OverCapacity => "over_capacity",
        }
    }
}

/// The evidence behind an event.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occupants: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessEvent {
    pub kind: AccessKind,
    pub at_ms: i64,
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    pub evidence: Evidence,
}

/// A position update of one device, as the live path produces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub device: String,
    pub room: Option<String>,
    pub x: f64,
    pub y: f64,
    pub floor: i32,
    pub confidence: f32,
    pub at_ms: i64,
}

/// Below this confidence a room change is not evidence enough for an access event.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;

/// Stateful detector; pure (time from its inputs).
pub struct AccessEngine {
    model: AccessModel,
    min_confidence: f32,
    /// Device → room it is in (as last reported).
    rooms_of: HashMap<String, String>,
    /// Room → devices in it.
    occupants: BTreeMap<String, HashSet<String>>,
    /// Rooms currently over capacity (fired once until they drop back).
    over: HashSet<String>,
    /// (device, restricted room) → time of the last unauthorized entry.
    entered: HashMap<(String, String), i64>,
}

/// A new unauthorized entry of the same device into the same room within this long of the
/// last one is not reported again.
pub const REENTRY_QUIET_MS: i64 = 2 * 60 * 1000;

impl AccessEngine {
    pub fn new(model: AccessModel, min_confidence: f32) -> Self {
        Self {
            model,
            min_confidence,
            rooms_of: HashMap::new(),
            occupants: BTreeMap::new(),
            over: HashSet::new(),
            entered: HashMap::new(),
        }
    }

    /// Replaces the model (rules, rooms, devices changed); occupancy state is kept.
    pub fn set_model(&mut self, model: AccessModel) {
        self.model = model;
    }

    pub fn model(&self) -> &AccessModel {
        &self.model
    }

    /// Devices per room now.
    pub fn occupants(&self, room: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .occupants
            .get(room)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Records an unauthorized entry; false when the last one of this device into this
    /// room was less than [`REENTRY_QUIET_MS`] ago.
    fn first_entry(&mut self, device: &str, room: &str, at_ms: i64) -> bool {
        if self.entered.len() > 10_000 {
            self.entered.retain(|_, t| at_ms - *t < REENTRY_QUIET_MS);
        }
        let key = (device.to_string(), room.to_string());
        let fresh = self
            .entered
            .get(&key)
            .is_none_or(|&t| (at_ms - t).abs() >= REENTRY_QUIET_MS);
        if fresh {
            self.entered.insert(key, at_ms);
        }
        fresh
    }

    /// Feeds one position update; returns the events it causes.
    pub fn place(&mut self, p: &Placement) -> Vec<AccessEvent> {
        let mut out = Vec::new();
        let before = self.rooms_of.get(&p.device).cloned();
        let now_room = if p.confidence >= self.min_confidence {
            p.room.clone()
        } else {
            // Too uncertain to move the device: keep it where it was.
            return out;
        };
        if before == now_room {
            return out;
        }
        if let Some(old) = &before {
            if let Some(set) = self.occupants.get_mut(old) {
                set.remove(&p.device);
                self.check_capacity_drop(old);
            }
        }
        match &now_room {
            Some(room) => {
                self.rooms_of.insert(p.device.clone(), room.clone());
                self.occupants
                    .entry(room.clone())
                    .or_default()
                    .insert(p.device.clone());
                if let Some(info) = self.model.rooms.get(room) {
                    if info.restricted
                        && self.model.allowing_rule(&p.device, room, p.at_ms).is_none()
                        && self.first_entry(&p.device, room, p.at_ms)
                    {
                        out.push(AccessEvent {
                            kind: AccessKind::UnauthorizedEntry,
                            at_ms: p.at_ms,
                            room: room.clone(),
                            device: Some(p.device.clone()),
                            person: self
                                .model
                                .devices
                                .get(&p.device)
                                .and_then(|h| h.person.clone()),
                            evidence: Evidence {
                                x: Some(p.x),
                                y: Some(p.y),
                                floor: Some(p.floor),
                                confidence: Some(p.confidence),
                                ..Evidence::default()
                            },
                        });
                    }
                }
                if let Some(e) = self.check_capacity_rise(room, p.at_ms) {
                    out.push(e);
                }
            }
            None => {
                self.rooms_of.remove(&p.device);
            }
        }
        out
    }

    /// Forgets a device (not heard for long): it leaves its room.
    pub fn forget(&mut self, device: &str) {
        if let Some(room) = self.rooms_of.remove(device) {
            if let Some(set) = self.occupants.get_mut(&room) {
                set.remove(device);
            }
            self.check_capacity_drop(&room);
        }
    }

    /// Feeds a door transition; an opening outside every rule window of a restricted room
    /// the door leads into is an event.
    pub fn door(&mut self, door: &str, state: &str, node: &str, at_ms: i64) -> Vec<AccessEvent> {
        if state != "open" {
            return Vec::new();
        }
        let Some(rooms) = self.model.doors.get(door) else {
            return Vec::new();
        };
        rooms
            .iter()
            .filter(|r| self.model.rooms.get(*r).is_some_and(|i| i.restricted))
            .filter(|r| !self.model.room_open(r, at_ms))
            .map(|r| AccessEvent {
                kind: AccessKind::DoorOutsideHours,
                at_ms,
                room: r.clone(),
                device: None,
                person: None,
                evidence: Evidence {
                    door: Some(door.to_string()),
                    door_state: Some(state.to_string()),
                    node: Some(node.to_string()),
                    ..Evidence::default()
                },
            })
            .collect()
    }

    fn count(&self, room: &str) -> u32 {
        self.occupants
            .get(room)
            .map(|s| s.len() as u32)
            .unwrap_or(0)
    }

    fn check_capacity_rise(&mut self, room: &str, at_ms: i64) -> Option<AccessEvent> {
        let cap = self.model.rooms.get(room)?.capacity?;
        let n = self.count(room);
        if n > cap && self.over.insert(room.to_string()) {
            return Some(AccessEvent {
                kind: AccessKind::OverCapacity,
                at_ms,
                room: room.to_string(),
                device: None,
                person: None,
                evidence: Evidence {
                    occupants: Some(n),
                    capacity: Some(cap),
                    ..Evidence::default()
                },
            });
        }
        None
    }

    fn check_capacity_drop(&mut self, room: &str) {
        let cap = self
            .model
            .rooms
            .get(room)
            .and_then(|r| r.capacity)
            .unwrap_or(u32::MAX);
        if self.count(room) <= cap {
            self.over.remove(room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    fn model() -> AccessModel {
        let mut m = AccessModel::default();
        for (id, restricted, cap) in [("lab", true, Some(2)), ("hall", false, Some(1))] {
            m.rooms.insert(
                id.into(),
                RoomInfo {
                    id: id.into(),
                    building: "b".into(),
                    restricted,
                    capacity: cap,
                },
            );
        }
        m.doors
            .insert("d-lab".into(), vec!["hall".into(), "lab".into()]);
        m.devices.insert(
            "tag-alice".into(),
            Holder {
                person: Some("alice".into()),
                groups: vec!["staff".into()],
            },
        );
        m.devices.insert("tag-bob".into(), Holder::default());
        m.rules.push(Rule {
            id: "r1".into(),
            subject: Subject::Group("staff".into()),
            room: "lab".into(),
            weekdays: 0b001_1111,
            start_minute: 8 * 60,
            end_minute: 18 * 60,
            valid_from_ms: None,
            valid_until_ms: None,
        });
        m
    }

    fn at(device: &str, room: Option<&str>, at_ms: i64) -> Placement {
        Placement {
            device: device.into(),
            room: room.map(Into::into),
            x: 1.0,
            y: 2.0,
            floor: 0,
            confidence: 0.9,
            at_ms,
        }
    }

    #[test]
    fn windows_weekdays_and_midnight() {
        let mut r = model().rules[0].clone();
        // 2026-11-23 is a Monday.
        assert!(r.in_window(ms(2026, 11, 23, 9, 0), chrono_tz::UTC));
        assert!(!r.in_window(ms(2026, 11, 23, 18, 0), chrono_tz::UTC));
        assert!(
            !r.in_window(ms(2026, 11, 22, 9, 0), chrono_tz::UTC),
            "Sunday"
        );
        // Berlin is UTC+1 in November: 07:30 UTC is 08:30 local.
        assert!(r.in_window(ms(2026, 11, 23, 7, 30), chrono_tz::Europe::Berlin));
        assert!(!r.in_window(ms(2026, 11, 23, 7, 30), chrono_tz::UTC));
        r.start_minute = 22 * 60;
        r.end_minute = 6 * 60;
        r.weekdays = 1; // Monday night only
        assert!(r.in_window(ms(2026, 11, 23, 23, 0), chrono_tz::UTC));
        assert!(
            r.in_window(ms(2026, 11, 24, 5, 0), chrono_tz::UTC),
            "Tuesday 05:00 is Monday's night"
        );
        assert!(!r.in_window(ms(2026, 11, 25, 5, 0), chrono_tz::UTC));
        r.valid_until_ms = Some(ms(2026, 11, 23, 0, 0));
        assert!(!r.in_window(ms(2026, 11, 23, 23, 0), chrono_tz::UTC));
    }

    #[test]
    fn unauthorized_entry_fires_once_per_entry() {
        let mut e = AccessEngine::new(model(), DEFAULT_MIN_CONFIDENCE);
        let t = ms(2026, 11, 23, 9, 0);
        assert!(
            e.place(&at("tag-alice", Some("lab"), t)).is_empty(),
            "staff in hours"
        );
        let ev = e.place(&at("tag-bob", Some("lab"), t));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, AccessKind::UnauthorizedEntry);
        assert_eq!(ev[0].device.as_deref(), Some("tag-bob"));
        assert!(
            e.place(&at("tag-bob", Some("lab"), t + 1000)).is_empty(),
            "staying"
        );
        assert!(e.place(&at("tag-bob", Some("hall"), t + 2000)).is_empty());
        assert!(
            e.place(&at("tag-bob", Some("lab"), t + 3000)).is_empty(),
            "back within the quiet time: the same visit"
        );
        e.place(&at("tag-bob", Some("hall"), t + 4000));
        assert_eq!(
            e.place(&at("tag-bob", Some("lab"), t + 4000 + REENTRY_QUIET_MS))
                .len(),
            1,
            "a later re-entry"
        );
        // Alice outside hours is unauthorized too.
        let night = ms(2026, 11, 23, 20, 0);
        e.place(&at("tag-alice", Some("hall"), night));
        assert_eq!(e.place(&at("tag-alice", Some("lab"), night)).len(), 1);
    }

    #[test]
    fn low_confidence_does_not_move_a_device() {
        let mut e = AccessEngine::new(model(), DEFAULT_MIN_CONFIDENCE);
        let mut p = at("tag-bob", Some("lab"), ms(2026, 11, 23, 9, 0));
        p.confidence = 0.2;
        assert!(e.place(&p).is_empty());
        assert!(e.occupants("lab").is_empty());
    }

    #[test]
    fn capacity_fires_on_crossing_and_rearms() {
        let mut e = AccessEngine::new(model(), DEFAULT_MIN_CONFIDENCE);
        let t = ms(2026, 11, 23, 9, 0);
        assert!(e.place(&at("a", Some("hall"), t)).is_empty());
        let ev = e.place(&at("b", Some("hall"), t));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, AccessKind::OverCapacity);
        assert_eq!(ev[0].evidence.occupants, Some(2));
        assert!(
            e.place(&at("c", Some("hall"), t)).is_empty(),
            "still over: once"
        );
        e.forget("b");
        e.place(&at("c", None, t));
        assert_eq!(e.occupants("hall"), vec!["a".to_string()]);
        assert_eq!(e.place(&at("d", Some("hall"), t)).len(), 1, "re-armed");
    }

    #[test]
    fn example_building_model() {
        let b = roomsense_common::sim::Building::example();
        let m = AccessModel::from_building(&b, "example");
        let restricted: Vec<&RoomInfo> = m.rooms.values().filter(|r| r.restricted).collect();
        assert!(!restricted.is_empty());
        let mut e = AccessEngine::new(m.clone(), DEFAULT_MIN_CONFIDENCE);
        let room = restricted[0].id.clone();
        let ev = e.place(&at("stranger", Some(&room), 0));
        assert_eq!(ev.len(), 1, "unknown device in a restricted room");
        if let Some(d) = b.devices.iter().find(|d| d.restricted_access) {
            assert!(e.place(&at(d.id.as_str(), Some(&room), 0)).is_empty());
        }
    }

    #[test]
    fn door_outside_hours() {
        let mut e = AccessEngine::new(model(), DEFAULT_MIN_CONFIDENCE);
        assert!(e
            .door("d-lab", "open", "n1", ms(2026, 11, 23, 9, 0))
            .is_empty());
        assert!(e
            .door("d-lab", "closed", "n1", ms(2026, 11, 23, 22, 0))
            .is_empty());
        let ev = e.door("d-lab", "open", "n1", ms(2026, 11, 23, 22, 0));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, AccessKind::DoorOutsideHours);
        assert_eq!(ev[0].room, "lab");
        assert!(e.door("unknown", "open", "n1", 0).is_empty());
    }
}
