//! The building model admins manage: buildings and their floors, rooms, doors, receivers,
//! tracked devices, people and access rules. Pure: the types as the REST API shows them,
//! their validation (errors name the field), the import plan of a building file, and the
//! conversion of a stored model into the access engine's `AccessModel`.

use crate::access::{AccessModel, Holder, RoomInfo, Rule, Subject, FILE_ACCESS_GROUP};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use roomsense_common::{DeviceId, DoorId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A field that fails validation, and why. Not `std::error::Error`, so the API cannot
/// turn it into a 500 by accident (it becomes a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Longest free-text name accepted.
pub const MAX_NAME: usize = 200;
/// Most points a room outline may have.
pub const MAX_POLYGON_POINTS: usize = 1000;
/// Most groups a device or person may be in.
pub const MAX_GROUPS: usize = 64;

/// Ids of buildings, rooms, people and groups: 1–64 ASCII letters, digits, '-' or '_'.
pub fn check_id(field: &str, s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("{s:?} is not a valid id (1-64 ASCII letters, digits, '-' or '_')"),
        ))
    }
}

fn check_name(field: &str, s: &str) -> Result<(), Invalid> {
    if s.chars().count() > MAX_NAME {
        return Err(bad(field, format!("is longer than {MAX_NAME} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

fn check_finite(field: &str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(bad(field, "must be a finite number"))
    }
}

fn check_groups(field: &str, groups: &[String]) -> Result<(), Invalid> {
    if groups.len() > MAX_GROUPS {
        return Err(bad(
            field,
            format!("at most {MAX_GROUPS} groups are allowed"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, g) in groups.iter().enumerate() {
        check_id(&format!("{field}[{i}]"), g)?;
        if !seen.insert(g) {
            return Err(bad(
                format!("{field}[{i}]"),
                format!("group {g:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// A building; its rules are evaluated in its time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Building {
    /// 1–64 ASCII letters, digits, '-' or '_'. Required on POST; on PUT taken from the path.
    #[serde(default)]
    pub id: String,
    pub name: String,
    /// IANA time zone, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".to_string()
}

impl Building {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_id("id", &self.id)?;
        check_name("name", &self.name)?;
        parse_tz(&self.time_zone)?;
        Ok(())
    }
}

pub fn parse_tz(s: &str) -> Result<Tz, Invalid> {
    s.parse::<Tz>().map_err(|_| {
        bad(
            "time_zone",
            format!("{s:?} is not an IANA time zone such as \"Europe/Berlin\" or \"UTC\""),
        )
    })
}

/// A floor-plan image and how it maps onto the building's plan coordinates (metres).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FloorPlan {
    /// Where the image is: an `http(s)://` URL or a path on this server starting with `/`.
    pub url: String,
    /// Image pixels per metre.
    pub scale_px_per_m: f64,
    /// Pixel `[x, y]` of the plan point (0 m, 0 m). Default `[0, 0]`.
    #[serde(default)]
    pub origin_px: [f64; 2],
}

/// A floor of a building, keyed by its level number (0 = ground, -1 = basement, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// Required on POST; on PUT taken from the path.
    #[serde(default)]
    pub level: Option<i32>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub plan: Option<FloorPlan>,
}

impl Floor {
    pub fn validate(&self) -> Result<(), Invalid> {
        let level = self.level.ok_or_else(|| bad("level", "is required"))?;
        if !(-100..=300).contains(&level) {
            return Err(bad("level", "must be between -100 and 300"));
        }
        check_name("name", &self.name)?;
        if let Some(p) = &self.plan {
            let url_ok = (p.url.starts_with("http://") || p.url.starts_with("https://"))
                && p.url.len() > 8
                || p.url.starts_with('/');
            if !url_ok || p.url.len() > 2000 || p.url.chars().any(|c| c.is_whitespace()) {
                return Err(bad(
                    "plan.url",
                    "must be an http(s):// URL or a path starting with '/', without spaces, at most 2000 characters",
                ));
            }
            if !(p.scale_px_per_m.is_finite() && p.scale_px_per_m > 0.0) {
                return Err(bad("plan.scale_px_per_m", "must be a positive number"));
            }
            check_finite("plan.origin_px[0]", p.origin_px[0])?;
            check_finite("plan.origin_px[1]", p.origin_px[1])?;
        }
        Ok(())
    }
}

/// A room: an outline in metres on one floor of a building.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Room {
    /// Required on POST; on PUT taken from the path. Not "outside" (reserved for doors).
    #[serde(default)]
    pub id: String,
    pub building: String,
    /// Level of one of the building's floors.
    pub floor: i32,
    #[serde(default)]
    pub name: String,
    /// Outline, `[x, y]` in metres, ≥ 3 points in order, not crossing itself.
    pub polygon: Vec<[f64; 2]>,
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Only people a rule allows may enter.
    #[serde(default)]
    pub restricted: bool,
}

impl Room {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_id("id", &self.id)?;
        if self.id == roomsense_common::sim::OUTSIDE {
            return Err(bad(
                "id",
                "\"outside\" is reserved for doors to the outside",
            ));
        }
        check_id("building", &self.building)?;
        check_name("name", &self.name)?;
        validate_polygon("polygon", &self.polygon)?;
        Ok(())
    }
}

/// At least 3 finite points (a repeated closing point is ignored), no zero-length edge,
/// an area, and no two edges crossing.
pub fn validate_polygon(field: &str, poly: &[[f64; 2]]) -> Result<(), Invalid> {
    if poly.len() > MAX_POLYGON_POINTS {
        return Err(bad(
            field,
            format!("has {} points; at most {MAX_POLYGON_POINTS}", poly.len()),
        ));
    }
    for (i, p) in poly.iter().enumerate() {
        if !(p[0].is_finite() && p[1].is_finite()) {
            return Err(bad(format!("{field}[{i}]"), "must be two finite numbers"));
        }
    }
    let mut pts: Vec<Pt> = poly.iter().map(|p| Pt { x: p[0], y: p[1] }).collect();
    if pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    if pts.len() < 3 {
        return Err(bad(field, "needs at least 3 points"));
    }
    let n = pts.len();
    for i in 0..n {
        if pts[i] == pts[(i + 1) % n] {
            return Err(bad(
                format!("{field}[{}]", (i + 1) % n),
                "repeats the previous point",
            ));
        }
    }
    if area(&pts).abs() < 1e-6 {
        return Err(bad(field, "has no area (its points are on one line)"));
    }
    for i in 0..n {
        for j in i + 1..n {
            // Adjacent edges share a point; they only cross if they overlap, which the
            // area check and the non-adjacent checks catch well enough for room outlines.
            if j == i + 1 || (i == 0 && j == n - 1) {
                continue;
            }
            if segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]) {
                return Err(bad(
                    field,
                    format!(
                        "edges {i}-{} and {j}-{} cross each other",
                        (i + 1) % n,
                        (j + 1) % n
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pt {
    x: f64,
    y: f64,
}

/// Signed area (shoelace).
fn area(poly: &[Pt]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            a.x * b.y - b.x * a.y
        })
        .sum::<f64>()
        / 2.0
}

fn orient(a: Pt, b: Pt, c: Pt) -> f64 {
    (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x)
}

fn on_segment(a: Pt, b: Pt, p: Pt) -> bool {
    p.x >= a.x.min(b.x) && p.x <= a.x.max(b.x) && p.y >= a.y.min(b.y) && p.y <= a.y.max(b.y)
}

/// Whether segments ab and cd intersect (touching counts).
fn segments_cross(a: Pt, b: Pt, c: Pt, d: Pt) -> bool {
    let (d1, d2) = (orient(c, d, a), orient(c, d, b));
    let (d3, d4) = (orient(a, b, c), orient(a, b, d));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on_segment(c, d, a))
        || (d2 == 0.0 && on_segment(c, d, b))
        || (d3 == 0.0 && on_segment(a, b, c))
        || (d4 == 0.0 && on_segment(a, b, d))
}

/// A door with a contact sensor: the rooms it joins and the edge input that reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Door {
    /// The door id the edge node reports in its door transitions. Required on POST; on PUT
    /// taken from the path.
    #[serde(default)]
    pub id: String,
    /// The one or two rooms it joins; one room means the other side is the outside
    /// (`"outside"` may also be written explicitly).
    pub rooms: Vec<String>,
    /// The edge node whose GPIO input reports the door contact.
    pub node: String,
    /// BCM GPIO pin of the contact on that node (0–53), for installers.
    #[serde(default)]
    pub gpio_pin: Option<u8>,
}

impl Door {
    /// Validates and drops an explicit `"outside"` from `rooms`.
    pub fn validate(&mut self) -> Result<(), Invalid> {
        DoorId::parse(&self.id).map_err(|e| bad("id", e.to_string()))?;
        NodeId::parse(&self.node).map_err(|e| bad("node", e.to_string()))?;
        if self.rooms.is_empty() || self.rooms.len() > 2 {
            return Err(bad("rooms", "must list one or two rooms"));
        }
        for (i, r) in self.rooms.iter().enumerate() {
            if r != roomsense_common::sim::OUTSIDE {
                check_id(&format!("rooms[{i}]"), r)?;
            }
        }
        if self.rooms.len() == 2 && self.rooms[0] == self.rooms[1] {
            return Err(bad("rooms[1]", "a door joins two different rooms"));
        }
        self.rooms.retain(|r| r != roomsense_common::sim::OUTSIDE);
        if self.rooms.is_empty() {
            return Err(bad(
                "rooms",
                "must name at least one room besides \"outside\"",
            ));
        }
        if self.gpio_pin.is_some_and(|p| p > 53) {
            return Err(bad("gpio_pin", "must be a BCM pin number 0-53"));
        }
        Ok(())
    }
}

fn d_rssi_at_1m() -> f64 {
    -59.0
}
fn d_exponent() -> f64 {
    2.2
}

/// A BLE receiver: an edge node's position and its radio calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// The edge node's id (one receiver per node). Required on POST; on PUT from the path.
    #[serde(default)]
    pub node: String,
    pub building: String,
    /// Level of one of the building's floors.
    pub floor: i32,
    /// Plan coordinates, metres.
    pub x: f64,
    pub y: f64,
    /// RSSI at 1 m, dBm (-100…0). Default -59.
    #[serde(default = "d_rssi_at_1m")]
    pub rssi_at_1m: f64,
    /// Log-distance path-loss exponent (1…6). Default 2.2.
    #[serde(default = "d_exponent")]
    pub path_loss_exponent: f64,
}

impl Receiver {
    pub fn validate(&self) -> Result<(), Invalid> {
        NodeId::parse(&self.node).map_err(|e| bad("node", e.to_string()))?;
        check_id("building", &self.building)?;
        check_finite("x", self.x)?;
        check_finite("y", self.y)?;
        if !(self.rssi_at_1m.is_finite() && (-100.0..=0.0).contains(&self.rssi_at_1m)) {
            return Err(bad("rssi_at_1m", "must be a dBm value from -100 to 0"));
        }
        if !(self.path_loss_exponent.is_finite() && (1.0..=6.0).contains(&self.path_loss_exponent))
        {
            return Err(bad("path_loss_exponent", "must be from 1 to 6"));
        }
        Ok(())
    }
}

/// What a tracked device is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Tag,
    Badge,
    Phone,
    Other,
}

impl DeviceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Tag => "tag",
            DeviceKind::Badge => "badge",
            DeviceKind::Phone => "phone",
            DeviceKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tag" => DeviceKind::Tag,
            "badge" => DeviceKind::Badge,
            "phone" => DeviceKind::Phone,
            "other" => DeviceKind::Other,
            _ => return None,
        })
    }
}

/// A tracked device (BLE tag, badge, phone) with a stable id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The id it advertises (letters, digits, '-', '_', ':', '.'). Required on POST; on PUT
    /// taken from the path.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The person who carries it.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub kind: DeviceKind,
    /// Device groups, matched by access rules for groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Device {
    pub fn validate(&self) -> Result<(), Invalid> {
        DeviceId::parse(&self.id).map_err(|e| bad("id", e.to_string()))?;
        check_name("name", &self.name)?;
        if let Some(o) = &self.owner {
            check_id("owner", o)?;
        }
        check_groups("groups", &self.groups)
    }
}

/// A person; access rules name people or their groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Required on POST; on PUT taken from the path.
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Person {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_id("id", &self.id)?;
        check_name("name", &self.name)?;
        check_groups("groups", &self.groups)
    }
}

/// Day of the week, for access rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

const WEEKDAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn all_days() -> Vec<Weekday> {
    WEEKDAYS.to_vec()
}

/// Bit 0 = Monday … bit 6 = Sunday (as `access::Rule::weekdays`).
pub fn weekday_mask(days: &[Weekday]) -> u8 {
    days.iter().fold(0u8, |m, d| {
        m | 1 << WEEKDAYS.iter().position(|w| w == d).unwrap_or(0)
    })
}

pub fn weekdays_of(mask: u8) -> Vec<Weekday> {
    WEEKDAYS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, d)| *d)
        .collect()
}

/// "`person` (or members of `group`) may be in `room` on these weekdays between `from`
/// and `until` (local time of the room's building), from `valid_from` until `valid_until`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Assigned by the server.
    #[serde(default)]
    pub id: Option<i64>,
    /// A person id; exactly one of `person` and `group`.
    #[serde(default)]
    pub person: Option<String>,
    /// A device or person group.
    #[serde(default)]
    pub group: Option<String>,
    pub room: String,
    /// Default: every day.
    #[serde(default = "all_days")]
    pub weekdays: Vec<Weekday>,
    /// `HH:MM` local time; with `until`. Both absent: all day. `from` > `until` crosses
    /// midnight (22:00–06:00).
    #[serde(default)]
    pub from: Option<String>,
    /// `HH:MM` local time, exclusive; `24:00` allowed.
    #[serde(default)]
    pub until: Option<String>,
    /// RFC 3339; the rule applies from then on.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// RFC 3339, exclusive.
    #[serde(default)]
    pub valid_until: Option<String>,
}

/// An access rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub id: i64,
    pub person: Option<String>,
    pub group: Option<String>,
    pub room: String,
    pub weekdays: u8,
    pub start_minute: u16,
    pub end_minute: u16,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
}

fn parse_hhmm(field: &str, s: &str) -> Result<u16, Invalid> {
    let err = || {
        bad(
            field,
            format!("{s:?} is not a time of day HH:MM (00:00-24:00)"),
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(err());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(err());
    }
    Ok(h * 60 + m)
}

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn parse_rfc3339(field: &str, s: &str) -> Result<i64, Invalid> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| bad(field, format!("{s:?} is not an RFC 3339 time ({e})")))
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl AccessRule {
    /// Validates and converts to the stored form (`id` 0 when new).
    pub fn to_row(&self) -> Result<RuleRow, Invalid> {
        match (&self.person, &self.group) {
            (Some(p), None) => check_id("person", p)?,
            (None, Some(g)) => check_id("group", g)?,
            _ => return Err(bad("person", "give exactly one of person and group")),
        }
        check_id("room", &self.room)?;
        if self.weekdays.is_empty() {
            return Err(bad("weekdays", "must list at least one day"));
        }
        let (start, end) = match (&self.from, &self.until) {
            (None, None) => (0, 0),
            (Some(f), Some(u)) => {
                let (s, e) = (parse_hhmm("from", f)?, parse_hhmm("until", u)?);
                if s == 1440 {
                    return Err(bad("from", "must be before 24:00"));
                }
                if s == e {
                    return Err(bad(
                        "until",
                        "must differ from from (omit both for all day)",
                    ));
                }
                // 00:00-24:00 is all day.
                if s == 0 && e == 1440 {
                    (0, 0)
                } else {
                    (s, e % 1440)
                }
            }
            (Some(_), None) => return Err(bad("until", "is required with from")),
            (None, Some(_)) => return Err(bad("from", "is required with until")),
        };
        let vf = self
            .valid_from
            .as_deref()
            .map(|s| parse_rfc3339("valid_from", s))
            .transpose()?;
        let vu = self
            .valid_until
            .as_deref()
            .map(|s| parse_rfc3339("valid_until", s))
            .transpose()?;
        if let (Some(f), Some(u)) = (vf, vu) {
            if f >= u {
                return Err(bad("valid_until", "must be after valid_from"));
            }
        }
        Ok(RuleRow {
            id: self.id.unwrap_or(0),
            person: self.person.clone(),
            group: self.group.clone(),
            room: self.room.clone(),
            weekdays: weekday_mask(&self.weekdays),
            start_minute: start,
            end_minute: end,
            valid_from_ms: vf,
            valid_until_ms: vu,
        })
    }
}

impl RuleRow {
    pub fn view(&self) -> AccessRule {
        let all_day = self.start_minute == self.end_minute;
        AccessRule {
            id: Some(self.id),
            person: self.person.clone(),
            group: self.group.clone(),
            room: self.room.clone(),
            weekdays: weekdays_of(self.weekdays),
            from: (!all_day).then(|| hhmm(self.start_minute)),
            until: (!all_day).then(|| {
                if self.end_minute == 0 {
                    "24:00".to_string()
                } else {
                    hhmm(self.end_minute)
                }
            }),
            valid_from: self.valid_from_ms.map(rfc3339),
            valid_until: self.valid_until_ms.map(rfc3339),
        }
    }

    pub fn rule(&self) -> Rule {
        Rule {
            id: self.id.to_string(),
            subject: match (&self.person, &self.group) {
                (Some(p), _) => Subject::Person(p.clone()),
                (None, Some(g)) => Subject::Group(g.clone()),
                (None, None) => Subject::Group(String::new()),
            },
            room: self.room.clone(),
            weekdays: self.weekdays,
            start_minute: self.start_minute,
            end_minute: self.end_minute,
            valid_from_ms: self.valid_from_ms,
            valid_until_ms: self.valid_until_ms,
        }
    }
}

/// Everything the access engine needs from the stored model.
#[derive(Debug, Clone, Default)]
pub struct ModelSnapshot {
    pub buildings: Vec<Building>,
    pub rooms: Vec<Room>,
    pub doors: Vec<Door>,
    pub devices: Vec<Device>,
    pub people: Vec<Person>,
    pub rules: Vec<RuleRow>,
}

impl ModelSnapshot {
    /// The access engine's model: rooms, doors, device holders (owner and the groups of
    /// the device and of its owner), rules, and building time zones (bad ones fall back
    /// to UTC; they are validated on the way in).
    pub fn access_model(&self) -> AccessModel {
        let mut m = AccessModel::default();
        for b in &self.buildings {
            m.time_zones
                .insert(b.id.clone(), b.time_zone.parse().unwrap_or(chrono_tz::UTC));
        }
        for r in &self.rooms {
            m.rooms.insert(
                r.id.clone(),
                RoomInfo {
                    id: r.id.clone(),
                    building: r.building.clone(),
                    restricted: r.restricted,
                    capacity: r.capacity,
                },
            );
        }
        for d in &self.doors {
            m.doors.insert(d.id.clone(), d.rooms.clone());
        }
        let people: BTreeMap<&str, &Person> =
            self.people.iter().map(|p| (p.id.as_str(), p)).collect();
        for d in &self.devices {
            let mut groups = d.groups.clone();
            if let Some(p) = d.owner.as_deref().and_then(|o| people.get(o)) {
                for g in &p.groups {
                    if !groups.contains(g) {
                        groups.push(g.clone());
                    }
                }
            }
            m.devices.insert(
                d.id.clone(),
                Holder {
                    person: d.owner.clone(),
                    groups,
                },
            );
        }
        m.rules = self.rules.iter().map(RuleRow::rule).collect();
        m
    }
}

/// A slug usable as an id: lower-case ASCII letters and digits, other runs become '-'.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out = out.trim_end_matches('-').to_string();
    out.truncate(64);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "building".to_string()
    } else {
        out
    }
}

/// What a building file contributes to the database (each entity inserted if absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportPlan {
    pub building: Option<Building>,
    pub floors: Vec<Floor>,
    pub rooms: Vec<Room>,
    pub doors: Vec<Door>,
    pub receivers: Vec<Receiver>,
    pub people: Vec<Person>,
    pub devices: Vec<Device>,
    /// Inserted only when the building itself is new.
    pub rules: Vec<RuleRow>,
    /// Content hash of the file: an unchanged file is not imported again.
    pub source_hash: String,
}

impl ImportPlan {
    /// The plan of a (validated) building file, as building `id` in time zone `time_zone`.
    /// Devices get their person (id = slug of the name) and, with `restricted_access`,
    /// the group that the file's all-day rules for restricted rooms name.
    pub fn from_building(b: &roomsense_common::sim::Building, id: &str, time_zone: &str) -> Self {
        let mut plan = ImportPlan {
            building: Some(Building {
                id: id.to_string(),
                name: b.name.clone(),
                time_zone: time_zone.to_string(),
            }),
            ..ImportPlan::default()
        };
        for f in &b.floors {
            plan.floors.push(Floor {
                level: Some(f.index),
                name: f.name.clone(),
                plan: None,
            });
        }
        for r in &b.rooms {
            plan.rooms.push(Room {
                id: r.id.clone(),
                building: id.to_string(),
                floor: r.floor,
                name: r.name.clone(),
                polygon: r.polygon.clone(),
                capacity: r.capacity,
                restricted: r.restricted,
            });
            if r.restricted {
                plan.rules.push(RuleRow {
                    id: 0,
                    person: None,
                    group: Some(FILE_ACCESS_GROUP.to_string()),
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
            plan.doors.push(Door {
                id: d.id.to_string(),
                rooms: d
                    .rooms
                    .iter()
                    .filter(|r| *r != roomsense_common::sim::OUTSIDE)
                    .cloned()
                    .collect(),
                node: d.node.to_string(),
                gpio_pin: None,
            });
        }
        for r in &b.receivers {
            plan.receivers.push(Receiver {
                node: r.node.to_string(),
                building: id.to_string(),
                floor: r.floor,
                x: r.x,
                y: r.y,
                rssi_at_1m: r.rssi_at_1m,
                path_loss_exponent: r.path_loss_exponent,
            });
        }
        let mut people = BTreeMap::new();
        for d in &b.devices {
            let owner = d.person.as_ref().map(|name| {
                let pid = slug(name);
                people.entry(pid.clone()).or_insert_with(|| Person {
                    id: pid.clone(),
                    name: name.clone(),
                    groups: Vec::new(),
                });
                pid
            });
            plan.devices.push(Device {
                id: d.id.to_string(),
                name: d.name.clone(),
                owner,
                kind: DeviceKind::parse(&d.kind).unwrap_or(DeviceKind::Other),
                groups: if d.restricted_access {
                    vec![FILE_ACCESS_GROUP.to_string()]
                } else {
                    Vec::new()
                },
            });
        }
        plan.people = people.into_values().collect();
        // serde_json output of the parsed file is stable; FNV-1a is enough to spot a change.
        let text = serde_json::to_string(b).unwrap_or_default();
        let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
            (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
        });
        plan.source_hash = format!("{h:016x}|{time_zone}");
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(poly: Vec<[f64; 2]>) -> Room {
        Room {
            id: "r1".into(),
            building: "b1".into(),
            floor: 0,
            name: "R".into(),
            polygon: poly,
            capacity: Some(4),
            restricted: false,
        }
    }

    #[test]
    fn polygons_are_checked() {
        let sq = vec![[0.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0]];
        assert!(room(sq.clone()).validate().is_ok());
        let mut closed = sq.clone();
        closed.push([0.0, 0.0]);
        assert!(room(closed).validate().is_ok());
        let e = room(sq[..2].to_vec()).validate().unwrap_err();
        assert_eq!(e.field, "polygon");
        let e = room(vec![[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
            .validate()
            .unwrap_err();
        assert!(e.message.contains("no area"), "{e}");
        let bow = vec![[0.0, 0.0], [4.0, 4.0], [4.0, 0.0], [0.0, 2.0]];
        let e = room(bow).validate().unwrap_err();
        assert!(e.message.contains("cross"), "{e}");
        let e = room(vec![[0.0, 0.0], [f64::NAN, 0.0], [1.0, 1.0]])
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "polygon[1]");
        let e = room(vec![[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "polygon[1]");
    }

    #[test]
    fn ids_names_time_zones() {
        let mut r = room(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        r.id = "outside".into();
        assert_eq!(r.validate().unwrap_err().field, "id");
        r.id = "a b".into();
        assert_eq!(r.validate().unwrap_err().field, "id");
        let b = Building {
            id: "hq".into(),
            name: "HQ".into(),
            time_zone: "Mars/Olympus".into(),
        };
        assert_eq!(b.validate().unwrap_err().field, "time_zone");
        assert!(Building {
            time_zone: "Europe/Berlin".into(),
            ..b
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn doors_drop_outside() {
        let mut d = Door {
            id: "front".into(),
            rooms: vec!["outside".into(), "lobby".into()],
            node: "pi-1".into(),
            gpio_pin: Some(17),
        };
        d.validate().unwrap();
        assert_eq!(d.rooms, ["lobby"]);
        d.rooms = vec!["a".into(), "a".into()];
        assert_eq!(d.validate().unwrap_err().field, "rooms[1]");
        d.rooms = vec!["a".into()];
        d.gpio_pin = Some(60);
        assert_eq!(d.validate().unwrap_err().field, "gpio_pin");
    }

    #[test]
    fn rules_round_trip() {
        let r = AccessRule {
            id: None,
            person: None,
            group: Some("staff".into()),
            room: "lab".into(),
            weekdays: vec![Weekday::Mon, Weekday::Fri],
            from: Some("22:00".into()),
            until: Some("06:30".into()),
            valid_from: Some("2026-01-01T00:00:00Z".into()),
            valid_until: None,
        };
        let row = r.to_row().unwrap();
        assert_eq!(row.weekdays, 0b1_0001);
        assert_eq!((row.start_minute, row.end_minute), (22 * 60, 6 * 60 + 30));
        let mut back = row.view();
        back.id = None;
        assert_eq!(back.valid_from.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        back.valid_from = r.valid_from.clone();
        assert_eq!(back, r);
        let all_day = AccessRule {
            from: Some("00:00".into()),
            until: Some("24:00".into()),
            ..r.clone()
        };
        let row = all_day.to_row().unwrap();
        assert_eq!((row.start_minute, row.end_minute), (0, 0));
        let until_midnight = AccessRule {
            from: Some("18:00".into()),
            until: Some("24:00".into()),
            ..r.clone()
        };
        let row = until_midnight.to_row().unwrap();
        assert_eq!(row.view().until.as_deref(), Some("24:00"));
        for (bad_rule, field) in [
            (
                AccessRule {
                    person: Some("p".into()),
                    ..r.clone()
                },
                "person",
            ),
            (
                AccessRule {
                    from: Some("25:00".into()),
                    ..r.clone()
                },
                "from",
            ),
            (
                AccessRule {
                    until: None,
                    ..r.clone()
                },
                "until",
            ),
            (
                AccessRule {
                    weekdays: vec![],
                    ..r.clone()
                },
                "weekdays",
            ),
            (
                AccessRule {
                    valid_until: Some("2025-01-01T00:00:00Z".into()),
                    ..r.clone()
                },
                "valid_until",
            ),
        ] {
            assert_eq!(bad_rule.to_row().unwrap_err().field, field);
        }
    }

    #[test]
    fn snapshot_becomes_access_model() {
        let snap = ModelSnapshot {
            buildings: vec![Building {
                id: "hq".into(),
                name: "HQ".into(),
                time_zone: "Europe/Berlin".into(),
            }],
            rooms: vec![Room {
                restricted: true,
                building: "hq".into(),
                ..room(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
            }],
            doors: vec![Door {
                id: "d1".into(),
                rooms: vec!["r1".into()],
                node: "pi-1".into(),
                gpio_pin: None,
            }],
            devices: vec![Device {
                id: "tag-1".into(),
                name: "T".into(),
                owner: Some("alice".into()),
                kind: DeviceKind::Badge,
                groups: vec!["badges".into()],
            }],
            people: vec![Person {
                id: "alice".into(),
                name: "Alice".into(),
                groups: vec!["staff".into()],
            }],
            rules: vec![RuleRow {
                id: 7,
                person: None,
                group: Some("staff".into()),
                room: "r1".into(),
                weekdays: 0x7f,
                start_minute: 0,
                end_minute: 0,
                valid_from_ms: None,
                valid_until_ms: None,
            }],
        };
        let m = snap.access_model();
        assert_eq!(m.time_zones["hq"], chrono_tz::Europe::Berlin);
        assert!(m.rooms["r1"].restricted);
        assert_eq!(m.doors["d1"], ["r1"]);
        assert_eq!(m.devices["tag-1"].person.as_deref(), Some("alice"));
        assert_eq!(m.devices["tag-1"].groups, ["badges", "staff"]);
        assert_eq!(m.rules[0].id, "7");
        assert!(m.allowing_rule("tag-1", "r1", 0).is_some());
        assert!(m.allowing_rule("tag-2", "r1", 0).is_none());
    }

    #[test]
    fn example_building_plan() {
        let b = roomsense_common::sim::Building::example();
        let plan = ImportPlan::from_building(&b, &slug(&b.name), "UTC");
        assert_eq!(plan.building.as_ref().unwrap().id, "example-office");
        assert_eq!(plan.rooms.len(), b.rooms.len());
        for r in &plan.rooms {
            r.validate().unwrap();
        }
        for d in &plan.doors {
            d.clone().validate().unwrap();
            assert!(!d.rooms.iter().any(|r| r == "outside"));
        }
        for d in &plan.devices {
            d.validate().unwrap();
        }
        for p in &plan.people {
            p.validate().unwrap();
        }
        assert!(plan.people.iter().any(|p| p.id == "sam-it"));
        assert_eq!(
            plan.rules.len(),
            b.rooms.iter().filter(|r| r.restricted).count()
        );
        assert_eq!(
            plan.source_hash,
            ImportPlan::from_building(&b, "x", "UTC").source_hash
        );
        assert_eq!(slug("  Sam (IT) "), "sam-it");
        assert_eq!(slug("!!"), "building");
    }
}
