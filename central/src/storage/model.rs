//! The building model (see `crate::model`) in the database: create / get / list (keyset by
//! id) / replace / delete per entity, with typed errors: unknown id, duplicate id, a
//! reference to something that does not exist (naming the field), and a delete refused
//! because others still refer to it (naming them). One body of SQL for both backends.

use super::StoreError;
use crate::access::AccessModel;
use crate::model::{
    Building, Device, Door, Floor, FloorPlan, ImportPlan, ModelSnapshot, Person, Receiver, Room,
    RuleRow,
};
use async_trait::async_trait;

/// Deliberately not `std::error::Error`: so `?` cannot turn it into a 500 by accident; the
/// API maps each case to its status (`From<ModelError> for AppError`).
#[derive(Debug)]
pub enum ModelError {
    /// e.g. "room r1".
    NotFound(String),
    Exists(String),
    /// `what` ("room r1") is referred to by `by` ("door d1", "access rule 7").
    InUse {
        what: String,
        by: Vec<String>,
    },
    /// A field names something that does not exist.
    UnknownRef {
        field: String,
        message: String,
    },
    /// A concurrent change broke a reference between the checks and the write.
    Conflict(String),
    Corrupt(String),
    Store(StoreError),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::NotFound(w) => write!(f, "{w} does not exist"),
            ModelError::Exists(w) => write!(f, "{w} already exists"),
            ModelError::InUse { what, by } => {
                write!(f, "{what} is referred to by {}", by.join(", "))
            }
            ModelError::UnknownRef { field, message } => write!(f, "{field}: {message}"),
            ModelError::Conflict(m) => write!(f, "conflicting concurrent change: {m}"),
            ModelError::Corrupt(w) => write!(f, "stored {w} cannot be read back"),
            ModelError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for ModelError {
    fn from(e: StoreError) -> Self {
        ModelError::Store(e)
    }
}

impl From<sqlx::Error> for ModelError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(d) = e.as_database_error() {
            if matches!(
                d.kind(),
                sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::UniqueViolation
            ) {
                return ModelError::Conflict(
                    "a referenced or referring entry changed at the same time; retry".into(),
                );
            }
        }
        ModelError::Store(StoreError::Db(e))
    }
}

/// One list request: keyset after `after` (ordered by id), at most `limit`, and the
/// filters that apply to the entity listed (others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Id (or floor level / rule id as text) after which the page starts.
    pub after: Option<String>,
    pub limit: i64,
    pub building: Option<String>,
    pub floor: Option<i32>,
    pub room: Option<String>,
    pub node: Option<String>,
    pub owner: Option<String>,
    pub kind: Option<String>,
    pub person: Option<String>,
    pub group: Option<String>,
}

/// What an import inserted (entities already present are left as they are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportOutcome {
    /// False when this exact file was imported before (nothing was done).
    pub applied: bool,
    pub buildings: u64,
    pub floors: u64,
    pub rooms: u64,
    pub doors: u64,
    pub receivers: u64,
    pub people: u64,
    pub devices: u64,
    pub rules: u64,
}

#[async_trait]
pub trait ModelStore: Send + Sync {
    async fn create_building(&self, b: &Building) -> Result<(), ModelError>;
    async fn building(&self, id: &str) -> Result<Option<Building>, ModelError>;
    async fn buildings(&self, q: &ListQuery) -> Result<Vec<Building>, ModelError>;
    async fn update_building(&self, b: &Building) -> Result<(), ModelError>;
    /// Removes its floors too; refused while rooms or receivers are in it.
    async fn delete_building(&self, id: &str) -> Result<(), ModelError>;

    async fn create_floor(&self, building: &str, f: &Floor) -> Result<(), ModelError>;
    async fn floor(&self, building: &str, level: i32) -> Result<Option<Floor>, ModelError>;
    /// Floors of `building`, by level; `after` is a level.
    async fn floors(&self, building: &str, q: &ListQuery) -> Result<Vec<Floor>, ModelError>;
    async fn update_floor(&self, building: &str, f: &Floor) -> Result<(), ModelError>;
    async fn delete_floor(&self, building: &str, level: i32) -> Result<(), ModelError>;

    async fn create_room(&self, r: &Room) -> Result<(), ModelError>;
    async fn room(&self, id: &str) -> Result<Option<Room>, ModelError>;
    /// Filters: building, floor.
    async fn rooms(&self, q: &ListQuery) -> Result<Vec<Room>, ModelError>;
    async fn update_room(&self, r: &Room) -> Result<(), ModelError>;
    async fn delete_room(&self, id: &str) -> Result<(), ModelError>;

    async fn create_door(&self, d: &Door) -> Result<(), ModelError>;
    async fn door(&self, id: &str) -> Result<Option<Door>, ModelError>;
    /// Filters: room (either side), node.
    async fn doors(&self, q: &ListQuery) -> Result<Vec<Door>, ModelError>;
    async fn update_door(&self, d: &Door) -> Result<(), ModelError>;
    async fn delete_door(&self, id: &str) -> Result<(), ModelError>;

    async fn create_receiver(&self, r: &Receiver) -> Result<(), ModelError>;
    async fn receiver(&self, node: &str) -> Result<Option<Receiver>, ModelError>;
    /// Filters: building, floor.
    async fn receivers(&self, q: &ListQuery) -> Result<Vec<Receiver>, ModelError>;
    async fn update_receiver(&self, r: &Receiver) -> Result<(), ModelError>;
    async fn delete_receiver(&self, node: &str) -> Result<(), ModelError>;

    async fn create_person(&self, p: &Person) -> Result<(), ModelError>;
    async fn person(&self, id: &str) -> Result<Option<Person>, ModelError>;
    /// Filter: group.
    async fn people(&self, q: &ListQuery) -> Result<Vec<Person>, ModelError>;
    async fn update_person(&self, p: &Person) -> Result<(), ModelError>;
    async fn delete_person(&self, id: &str) -> Result<(), ModelError>;

    async fn create_device(&self, d: &Device) -> Result<(), ModelError>;
    async fn device(&self, id: &str) -> Result<Option<Device>, ModelError>;
    /// Filters: owner, kind, group.
    async fn devices(&self, q: &ListQuery) -> Result<Vec<Device>, ModelError>;
    async fn update_device(&self, d: &Device) -> Result<(), ModelError>;
    async fn delete_device(&self, id: &str) -> Result<(), ModelError>;

    /// Returns the new rule's id.
    async fn create_rule(&self, r: &RuleRow) -> Result<i64, ModelError>;
    async fn rule(&self, id: i64) -> Result<Option<RuleRow>, ModelError>;
    /// Filters: room, person, group; `after` is a rule id.
    async fn rules(&self, q: &ListQuery) -> Result<Vec<RuleRow>, ModelError>;
    async fn update_rule(&self, r: &RuleRow) -> Result<(), ModelError>;
    async fn delete_rule(&self, id: i64) -> Result<(), ModelError>;

    /// Inserts what the plan has and the database lacks, in one transaction; an unchanged
    /// file (same `source_hash`) is skipped so admin deletions stay deleted.
    async fn import_model(&self, plan: &ImportPlan) -> Result<ImportOutcome, ModelError>;
    /// The whole model (buildings, rooms, doors, devices, people, rules).
    async fn model_snapshot(&self) -> Result<ModelSnapshot, ModelError>;
}

/// The access engine's model from what is stored (see `ModelSnapshot::access_model`).
pub async fn load_access_model(store: &dyn ModelStore) -> Result<AccessModel, ModelError> {
    Ok(store.model_snapshot().await?.access_model())
}

/// "door d1, door d2, … and more" from referrer ids fetched with `LIMIT MAX_REFS + 1`.
pub(super) const MAX_REFS: i64 = 10;

pub(super) fn refs(kind: &str, ids: Vec<String>, out: &mut Vec<String>) {
    let more = ids.len() as i64 > MAX_REFS;
    out.extend(
        ids.into_iter()
            .take(MAX_REFS as usize)
            .map(|id| format!("{kind} {id}")),
    );
    if more {
        out.push(format!("more {kind}s"));
    }
}

fn json_list(what: &str, s: &str) -> Result<Vec<String>, ModelError> {
    serde_json::from_str(s).map_err(|_| ModelError::Corrupt(what.to_string()))
}

pub(super) fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

#[derive(sqlx::FromRow)]
pub(super) struct FloorRow {
    level: i32,
    name: String,
    plan_url: Option<String>,
    plan_scale_px_per_m: Option<f64>,
    plan_origin_x_px: Option<f64>,
    plan_origin_y_px: Option<f64>,
}

impl FloorRow {
    pub(super) fn floor(self) -> Floor {
        Floor {
            level: Some(self.level),
            name: self.name,
            plan: self.plan_url.map(|url| FloorPlan {
                url,
                scale_px_per_m: self.plan_scale_px_per_m.unwrap_or(1.0),
                origin_px: [
                    self.plan_origin_x_px.unwrap_or(0.0),
                    self.plan_origin_y_px.unwrap_or(0.0),
                ],
            }),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RoomRow {
    id: String,
    building: String,
    floor: i32,
    name: String,
    polygon: String,
    capacity: Option<i64>,
    restricted: bool,
}

impl RoomRow {
    pub(super) fn room(self) -> Result<Room, ModelError> {
        let polygon = serde_json::from_str(&self.polygon)
            .map_err(|_| ModelError::Corrupt(format!("polygon of room {}", self.id)))?;
        Ok(Room {
            polygon,
            capacity: self.capacity.and_then(|c| u32::try_from(c).ok()),
            id: self.id,
            building: self.building,
            floor: self.floor,
            name: self.name,
            restricted: self.restricted,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DoorRow {
    id: String,
    room_a: String,
    room_b: Option<String>,
    node: String,
    gpio_pin: Option<i32>,
}

impl DoorRow {
    pub(super) fn door(self) -> Door {
        Door {
            id: self.id,
            rooms: std::iter::once(self.room_a).chain(self.room_b).collect(),
            node: self.node,
            gpio_pin: self.gpio_pin.and_then(|p| u8::try_from(p).ok()),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ReceiverRow {
    node: String,
    building: String,
    floor: i32,
    x: f64,
    y: f64,
    rssi_at_1m: f64,
    path_loss_exponent: f64,
}

impl ReceiverRow {
    pub(super) fn receiver(self) -> Receiver {
        Receiver {
            node: self.node,
            building: self.building,
            floor: self.floor,
            x: self.x,
            y: self.y,
            rssi_at_1m: self.rssi_at_1m,
            path_loss_exponent: self.path_loss_exponent,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct PersonRow {
    id: String,
    name: String,
    groups: String,
}

impl PersonRow {
    pub(super) fn person(self) -> Result<Person, ModelError> {
        Ok(Person {
            groups: json_list(&format!("groups of person {}", self.id), &self.groups)?,
            id: self.id,
            name: self.name,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    id: String,
    name: String,
    owner: Option<String>,
    kind: String,
    groups: String,
}

impl DeviceRow {
    pub(super) fn device(self) -> Result<Device, ModelError> {
        Ok(Device {
            groups: json_list(&format!("groups of device {}", self.id), &self.groups)?,
            kind: crate::model::DeviceKind::parse(&self.kind)
                .ok_or_else(|| ModelError::Corrupt(format!("kind of device {}", self.id)))?,
            id: self.id,
            name: self.name,
            owner: self.owner,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RuleDbRow {
    id: i64,
    person: Option<String>,
    group_name: Option<String>,
    room: String,
    weekdays: i32,
    start_minute: i32,
    end_minute: i32,
    valid_from_ms: Option<i64>,
    valid_until_ms: Option<i64>,
}

impl RuleDbRow {
    pub(super) fn rule(self) -> RuleRow {
        RuleRow {
            id: self.id,
            person: self.person,
            group: self.group_name,
            room: self.room,
            weekdays: (self.weekdays & 0x7f) as u8,
            start_minute: self.start_minute.clamp(0, 1439) as u16,
            end_minute: self.end_minute.clamp(0, 1439) as u16,
            valid_from_ms: self.valid_from_ms,
            valid_until_ms: self.valid_until_ms,
        }
    }
}

pub(super) const FLOOR_COLUMNS: &str =
    "level, name, plan_url, plan_scale_px_per_m, plan_origin_x_px, plan_origin_y_px";
pub(super) const ROOM_COLUMNS: &str = "id, building, floor, name, polygon, capacity, restricted";
pub(super) const DOOR_COLUMNS: &str = "id, room_a, room_b, node, gpio_pin";
pub(super) const RECEIVER_COLUMNS: &str =
    "node, building, floor, x, y, rssi_at_1m, path_loss_exponent";
pub(super) const RULE_COLUMNS: &str = "id, person, group_name, room, weekdays, start_minute, end_minute, valid_from_ms, valid_until_ms";

/// Stamps out `ModelStore` for a backend (same requirements as `impl_sql_store!`).
/// `$strpos` is the backend's substring-position function (`instr` / `strpos`, both
/// `(haystack, needle)`), used to find a quoted group id in a JSON list, case-sensitively.
macro_rules! impl_model_store {
    ($store:ty, $db:ty, $strpos:literal) => {
        impl $store {
            /// Whether `sql` + bound `id` returns a row.
            async fn m_exists(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &'static str,
                id: &str,
            ) -> Result<bool, sqlx::Error> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(sql);
                qb.push_bind(id.to_string());
                Ok(qb.build().fetch_optional(&mut *conn).await?.is_some())
            }

            async fn m_floor_exists(
                conn: &mut <$db as sqlx::Database>::Connection,
                building: &str,
                level: i32,
            ) -> Result<bool, sqlx::Error> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT 1 FROM floors WHERE building = ",
                );
                qb.push_bind(building.to_string())
                    .push(" AND level = ")
                    .push_bind(level);
                Ok(qb.build().fetch_optional(&mut *conn).await?.is_some())
            }

            /// 422 naming `building` or `floor` unless the floor exists.
            async fn m_check_floor(
                conn: &mut <$db as sqlx::Database>::Connection,
                building: &str,
                level: i32,
            ) -> Result<(), $crate::storage::model::ModelError> {
                use $crate::storage::model::ModelError;
                if !Self::m_exists(conn, "SELECT 1 FROM buildings WHERE id = ", building).await? {
                    return Err(ModelError::UnknownRef {
                        field: "building".into(),
                        message: format!("building {building:?} does not exist"),
                    });
                }
                if !Self::m_floor_exists(conn, building, level).await? {
                    return Err(ModelError::UnknownRef {
                        field: "floor".into(),
                        message: format!("building {building:?} has no floor {level}"),
                    });
                }
                Ok(())
            }

            /// Ids returned by `sql` + bound `id` (+ `extra` when given), at most MAX_REFS + 1.
            async fn m_ids(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &'static str,
                id: &str,
                extra: Option<(&'static str, i32)>,
                order: &'static str,
            ) -> Result<Vec<String>, sqlx::Error> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(sql);
                qb.push_bind(id.to_string());
                if let Some((clause, v)) = extra {
                    qb.push(clause).push_bind(v);
                }
                qb.push(order)
                    .push(" LIMIT ")
                    .push_bind($crate::storage::model::MAX_REFS + 1);
                let rows: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *conn).await?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn m_rule_ids(
                conn: &mut <$db as sqlx::Database>::Connection,
                column: &'static str,
                id: &str,
            ) -> Result<Vec<String>, sqlx::Error> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT id FROM access_rules WHERE ");
                qb.push(column)
                    .push(" = ")
                    .push_bind(id.to_string())
                    .push(" ORDER BY id LIMIT ")
                    .push_bind($crate::storage::model::MAX_REFS + 1);
                let rows: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut *conn).await?;
                Ok(rows.into_iter().map(|r| r.0.to_string()).collect())
            }

            async fn m_check_door_rooms(
                conn: &mut <$db as sqlx::Database>::Connection,
                d: &$crate::model::Door,
            ) -> Result<(), $crate::storage::model::ModelError> {
                for (i, r) in d.rooms.iter().enumerate() {
                    if !Self::m_exists(conn, "SELECT 1 FROM rooms WHERE id = ", r).await? {
                        return Err($crate::storage::model::ModelError::UnknownRef {
                            field: format!("rooms[{i}]"),
                            message: format!("room {r:?} does not exist"),
                        });
                    }
                }
                Ok(())
            }

            async fn m_check_owner(
                conn: &mut <$db as sqlx::Database>::Connection,
                owner: Option<&str>,
            ) -> Result<(), $crate::storage::model::ModelError> {
                if let Some(o) = owner {
                    if !Self::m_exists(conn, "SELECT 1 FROM people WHERE id = ", o).await? {
                        return Err($crate::storage::model::ModelError::UnknownRef {
                            field: "owner".into(),
                            message: format!("person {o:?} does not exist"),
                        });
                    }
                }
                Ok(())
            }

            async fn m_check_rule(
                conn: &mut <$db as sqlx::Database>::Connection,
                r: &$crate::model::RuleRow,
            ) -> Result<(), $crate::storage::model::ModelError> {
                use $crate::storage::model::ModelError;
                if let Some(p) = &r.person {
                    if !Self::m_exists(conn, "SELECT 1 FROM people WHERE id = ", p).await? {
                        return Err(ModelError::UnknownRef {
                            field: "person".into(),
                            message: format!("person {p:?} does not exist"),
                        });
                    }
                }
                if !Self::m_exists(conn, "SELECT 1 FROM rooms WHERE id = ", &r.room).await? {
                    return Err(ModelError::UnknownRef {
                        field: "room".into(),
                        message: format!("room {:?} does not exist", r.room),
                    });
                }
                Ok(())
            }

            fn m_push_room(
                qb: &mut sqlx::QueryBuilder<$db>,
                r: &$crate::model::Room,
            ) {
                qb.push_bind(r.building.as_str())
                    .push(", ")
                    .push_bind(r.floor)
                    .push(", ")
                    .push_bind(r.name.as_str())
                    .push(", ")
                    .push_bind($crate::storage::model::to_json(&r.polygon))
                    .push(", ")
                    .push_bind(r.capacity.map(i64::from))
                    .push(", ")
                    .push_bind(r.restricted);
            }
        }

        #[async_trait::async_trait]
        impl $crate::storage::model::ModelStore for $store {
            async fn create_building(
                &self,
                b: &$crate::model::Building,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO buildings (id, name, time_zone) VALUES (",
                );
                qb.push_bind(b.id.as_str())
                    .push(", ")
                    .push_bind(b.name.as_str())
                    .push(", ")
                    .push_bind(b.time_zone.as_str())
                    .push(") ON CONFLICT (id) DO NOTHING");
                let n = qb.build().execute(&mut *tx).await?.rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::Exists(format!(
                        "building {}",
                        b.id
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn building(
                &self,
                id: &str,
            ) -> Result<Option<$crate::model::Building>, $crate::storage::model::ModelError>
            {
                let row: Option<(String, String, String)> =
                    sqlx::QueryBuilder::<$db>::new("SELECT id, name, time_zone FROM buildings WHERE id = ")
                        .push_bind(id)
                        .build_query_as()
                        .fetch_optional(&self.readers)
                        .await?;
                Ok(row.map(|(id, name, time_zone)| $crate::model::Building {
                    id,
                    name,
                    time_zone,
                }))
            }

            async fn buildings(
                &self,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::Building>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, name, time_zone FROM buildings WHERE 1 = 1",
                );
                if let Some(a) = &q.after {
                    qb.push(" AND id > ").push_bind(a.as_str());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit);
                let rows: Vec<(String, String, String)> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name, time_zone)| $crate::model::Building {
                        id,
                        name,
                        time_zone,
                    })
                    .collect())
            }

            async fn update_building(
                &self,
                b: &$crate::model::Building,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::QueryBuilder::<$db>::new("UPDATE buildings SET name = ")
                    .push_bind(b.name.as_str())
                    .push(", time_zone = ")
                    .push_bind(b.time_zone.as_str())
                    .push(" WHERE id = ")
                    .push_bind(b.id.as_str())
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "building {}",
                        b.id
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn delete_building(
                &self,
                id: &str,
            ) -> Result<(), $crate::storage::model::ModelError> {
                use $crate::storage::model::{refs, ModelError};
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM buildings WHERE id = ", id).await? {
                    return Err(ModelError::NotFound(format!("building {id}")));
                }
                let mut by = Vec::new();
                let rooms = Self::m_ids(&mut tx, "SELECT id FROM rooms WHERE building = ", id, None, " ORDER BY id").await?;
                refs("room", rooms, &mut by);
                let recv = Self::m_ids(&mut tx, "SELECT node FROM receivers WHERE building = ", id, None, " ORDER BY node").await?;
                refs("receiver", recv, &mut by);
                if !by.is_empty() {
                    return Err(ModelError::InUse {
                        what: format!("building {id}"),
                        by,
                    });
                }
                sqlx::QueryBuilder::<$db>::new("DELETE FROM floors WHERE building = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                sqlx::QueryBuilder::<$db>::new("DELETE FROM model_imports WHERE building = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                sqlx::QueryBuilder::<$db>::new("DELETE FROM buildings WHERE id = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_floor(
                &self,
                building: &str,
                f: &$crate::model::Floor,
            ) -> Result<(), $crate::storage::model::ModelError> {
                use $crate::storage::model::ModelError;
                let level = f.level.unwrap_or(0);
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM buildings WHERE id = ", building).await? {
                    return Err(ModelError::NotFound(format!("building {building}")));
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO floors (building, level, name, plan_url, plan_scale_px_per_m, plan_origin_x_px, plan_origin_y_px) VALUES (",
                );
                qb.push_bind(building)
                    .push(", ")
                    .push_bind(level)
                    .push(", ")
                    .push_bind(f.name.as_str())
                    .push(", ")
                    .push_bind(f.plan.as_ref().map(|p| p.url.as_str()))
                    .push(", ")
                    .push_bind(f.plan.as_ref().map(|p| p.scale_px_per_m))
                    .push(", ")
                    .push_bind(f.plan.as_ref().map(|p| p.origin_px[0]))
                    .push(", ")
                    .push_bind(f.plan.as_ref().map(|p| p.origin_px[1]))
                    .push(") ON CONFLICT (building, level) DO NOTHING");
                if qb.build().execute(&mut *tx).await?.rows_affected() == 0 {
                    return Err(ModelError::Exists(format!(
                        "floor {level} of building {building}"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn floor(
                &self,
                building: &str,
                level: i32,
            ) -> Result<Option<$crate::model::Floor>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::FLOOR_COLUMNS)
                    .push(" FROM floors WHERE building = ")
                    .push_bind(building)
                    .push(" AND level = ")
                    .push_bind(level);
                let row: Option<$crate::storage::model::FloorRow> =
                    qb.build_query_as().fetch_optional(&self.readers).await?;
                Ok(row.map(|r| r.floor()))
            }

            async fn floors(
                &self,
                building: &str,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::Floor>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::FLOOR_COLUMNS)
                    .push(" FROM floors WHERE building = ")
                    .push_bind(building);
                if let Some(a) = q.after.as_deref().and_then(|a| a.parse::<i32>().ok()) {
                    qb.push(" AND level > ").push_bind(a);
                }
                qb.push(" ORDER BY level LIMIT ").push_bind(q.limit);
                let rows: Vec<$crate::storage::model::FloorRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                Ok(rows.into_iter().map(|r| r.floor()).collect())
            }

            async fn update_floor(
                &self,
                building: &str,
                f: &$crate::model::Floor,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let level = f.level.unwrap_or(0);
                let mut tx = self.begin_write().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE floors SET name = ");
                qb.push_bind(f.name.as_str())
                    .push(", plan_url = ")
                    .push_bind(f.plan.as_ref().map(|p| p.url.as_str()))
                    .push(", plan_scale_px_per_m = ")
                    .push_bind(f.plan.as_ref().map(|p| p.scale_px_per_m))
                    .push(", plan_origin_x_px = ")
                    .push_bind(f.plan.as_ref().map(|p| p.origin_px[0]))
                    .push(", plan_origin_y_px = ")
                    .push_bind(f.plan.as_ref().map(|p| p.origin_px[1]))
                    .push(" WHERE building = ")
                    .push_bind(building)
                    .push(" AND level = ")
                    .push_bind(level);
                if qb.build().execute(&mut *tx).await?.rows_affected() == 0 {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "floor {level} of building {building}"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn delete_floor(
                &self,
                building: &str,
                level: i32,
            ) -> Result<(), $crate::storage::model::ModelError> {
                use $crate::storage::model::{refs, ModelError};
                let what = format!("floor {level} of building {building}");
                let mut tx = self.begin_write().await?;
                if !Self::m_floor_exists(&mut tx, building, level).await? {
                    return Err(ModelError::NotFound(what));
                }
                let mut by = Vec::new();
                let rooms = Self::m_ids(&mut tx, "SELECT id FROM rooms WHERE building = ", building, Some((" AND floor = ", level)), " ORDER BY id").await?;
                refs("room", rooms, &mut by);
                let recv = Self::m_ids(&mut tx, "SELECT node FROM receivers WHERE building = ", building, Some((" AND floor = ", level)), " ORDER BY node").await?;
                refs("receiver", recv, &mut by);
                if !by.is_empty() {
                    return Err(ModelError::InUse { what, by });
                }
                sqlx::QueryBuilder::<$db>::new("DELETE FROM floors WHERE building = ")
                    .push_bind(building)
                    .push(" AND level = ")
                    .push_bind(level)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_room(
                &self,
                r: &$crate::model::Room,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if Self::m_exists(&mut tx, "SELECT 1 FROM rooms WHERE id = ", &r.id).await? {
                    return Err($crate::storage::model::ModelError::Exists(format!(
                        "room {}",
                        r.id
                    )));
                }
                Self::m_check_floor(&mut tx, &r.building, r.floor).await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO rooms (id, building, floor, name, polygon, capacity, restricted) VALUES (",
                );
                qb.push_bind(r.id.as_str()).push(", ");
                Self::m_push_room(&mut qb, r);
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn room(
                &self,
                id: &str,
            ) -> Result<Option<$crate::model::Room>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::ROOM_COLUMNS)
                    .push(" FROM rooms WHERE id = ")
                    .push_bind(id);
                let row: Option<$crate::storage::model::RoomRow> =
                    qb.build_query_as().fetch_optional(&self.readers).await?;
                row.map(|r| r.room()).transpose()
            }

            async fn rooms(
                &self,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::Room>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::ROOM_COLUMNS)
                    .push(" FROM rooms WHERE 1 = 1");
                if let Some(b) = &q.building {
                    qb.push(" AND building = ").push_bind(b.as_str());
                }
                if let Some(f) = q.floor {
                    qb.push(" AND floor = ").push_bind(f);
                }
                if let Some(a) = &q.after {
                    qb.push(" AND id > ").push_bind(a.as_str());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit);
                let rows: Vec<$crate::storage::model::RoomRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                rows.into_iter().map(|r| r.room()).collect()
            }

            async fn update_room(
                &self,
                r: &$crate::model::Room,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM rooms WHERE id = ", &r.id).await? {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "room {}",
                        r.id
                    )));
                }
                Self::m_check_floor(&mut tx, &r.building, r.floor).await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE rooms SET building = ");
                qb.push_bind(r.building.as_str())
                    .push(", floor = ")
                    .push_bind(r.floor)
                    .push(", name = ")
                    .push_bind(r.name.as_str())
                    .push(", polygon = ")
                    .push_bind($crate::storage::model::to_json(&r.polygon))
                    .push(", capacity = ")
                    .push_bind(r.capacity.map(i64::from))
                    .push(", restricted = ")
                    .push_bind(r.restricted)
                    .push(" WHERE id = ")
                    .push_bind(r.id.as_str());
                qb.build().execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_room(
                &self,
                id: &str,
            ) -> Result<(), $crate::storage::model::ModelError> {
                use $crate::storage::model::{refs, ModelError};
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM rooms WHERE id = ", id).await? {
                    return Err(ModelError::NotFound(format!("room {id}")));
                }
                let mut by = Vec::new();
                let mut doors = Self::m_ids(&mut tx, "SELECT id FROM doors WHERE room_a = ", id, None, " ORDER BY id").await?;
                doors.extend(Self::m_ids(&mut tx, "SELECT id FROM doors WHERE room_b = ", id, None, " ORDER BY id").await?);
                doors.sort();
                doors.dedup();
                refs("door", doors, &mut by);
                let rules = Self::m_rule_ids(&mut tx, "room", id).await?;
                refs("access rule", rules, &mut by);
                if !by.is_empty() {
                    return Err(ModelError::InUse {
                        what: format!("room {id}"),
                        by,
                    });
                }
                sqlx::QueryBuilder::<$db>::new("DELETE FROM rooms WHERE id = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_door(
                &self,
                d: &$crate::model::Door,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if Self::m_exists(&mut tx, "SELECT 1 FROM doors WHERE id = ", &d.id).await? {
                    return Err($crate::storage::model::ModelError::Exists(format!(
                        "door {}",
                        d.id
                    )));
                }
                Self::m_check_door_rooms(&mut tx, d).await?;
                sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO doors (id, room_a, room_b, node, gpio_pin) VALUES (",
                )
                .push_bind(d.id.as_str())
                .push(", ")
                .push_bind(d.rooms.first().map(String::as_str).unwrap_or_default())
                .push(", ")
                .push_bind(d.rooms.get(1).map(String::as_str))
                .push(", ")
                .push_bind(d.node.as_str())
                .push(", ")
                .push_bind(d.gpio_pin.map(i32::from))
                .push(")")
                .build()
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn door(
                &self,
                id: &str,
            ) -> Result<Option<$crate::model::Door>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::DOOR_COLUMNS)
                    .push(" FROM doors WHERE id = ")
                    .push_bind(id);
                let row: Option<$crate::storage::model::DoorRow> =
                    qb.build_query_as().fetch_optional(&self.readers).await?;
                Ok(row.map(|r| r.door()))
            }

            async fn doors(
                &self,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::Door>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::DOOR_COLUMNS)
                    .push(" FROM doors WHERE 1 = 1");
                if let Some(r) = &q.room {
                    qb.push(" AND (room_a = ")
                        .push_bind(r.as_str())
                        .push(" OR room_b = ")
                        .push_bind(r.as_str())
                        .push(")");
                }
                if let Some(n) = &q.node {
                    qb.push(" AND node = ").push_bind(n.as_str());
                }
                if let Some(a) = &q.after {
                    qb.push(" AND id > ").push_bind(a.as_str());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit);
                let rows: Vec<$crate::storage::model::DoorRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                Ok(rows.into_iter().map(|r| r.door()).collect())
            }

            async fn update_door(
                &self,
                d: &$crate::model::Door,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM doors WHERE id = ", &d.id).await? {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "door {}",
                        d.id
                    )));
                }
                Self::m_check_door_rooms(&mut tx, d).await?;
                sqlx::QueryBuilder::<$db>::new("UPDATE doors SET room_a = ")
                    .push_bind(d.rooms.first().map(String::as_str).unwrap_or_default())
                    .push(", room_b = ")
                    .push_bind(d.rooms.get(1).map(String::as_str))
                    .push(", node = ")
                    .push_bind(d.node.as_str())
                    .push(", gpio_pin = ")
                    .push_bind(d.gpio_pin.map(i32::from))
                    .push(" WHERE id = ")
                    .push_bind(d.id.as_str())
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_door(
                &self,
                id: &str,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::QueryBuilder::<$db>::new("DELETE FROM doors WHERE id = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "door {id}"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_receiver(
                &self,
                r: &$crate::model::Receiver,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if Self::m_exists(&mut tx, "SELECT 1 FROM receivers WHERE node = ", &r.node).await? {
                    return Err($crate::storage::model::ModelError::Exists(format!(
                        "receiver {}",
                        r.node
                    )));
                }
                Self::m_check_floor(&mut tx, &r.building, r.floor).await?;
                sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO receivers (node, building, floor, x, y, rssi_at_1m, path_loss_exponent) VALUES (",
                )
                .push_bind(r.node.as_str())
                .push(", ")
                .push_bind(r.building.as_str())
                .push(", ")
                .push_bind(r.floor)
                .push(", ")
                .push_bind(r.x)
                .push(", ")
                .push_bind(r.y)
                .push(", ")
                .push_bind(r.rssi_at_1m)
                .push(", ")
                .push_bind(r.path_loss_exponent)
                .push(")")
                .build()
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn receiver(
                &self,
                node: &str,
            ) -> Result<Option<$crate::model::Receiver>, $crate::storage::model::ModelError>
            {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::RECEIVER_COLUMNS)
                    .push(" FROM receivers WHERE node = ")
                    .push_bind(node);
                let row: Option<$crate::storage::model::ReceiverRow> =
                    qb.build_query_as().fetch_optional(&self.readers).await?;
                Ok(row.map(|r| r.receiver()))
            }

            async fn receivers(
                &self,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::Receiver>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::RECEIVER_COLUMNS)
                    .push(" FROM receivers WHERE 1 = 1");
                if let Some(b) = &q.building {
                    qb.push(" AND building = ").push_bind(b.as_str());
                }
                if let Some(f) = q.floor {
                    qb.push(" AND floor = ").push_bind(f);
                }
                if let Some(a) = &q.after {
                    qb.push(" AND node > ").push_bind(a.as_str());
                }
                qb.push(" ORDER BY node LIMIT ").push_bind(q.limit);
                let rows: Vec<$crate::storage::model::ReceiverRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                Ok(rows.into_iter().map(|r| r.receiver()).collect())
            }

            async fn update_receiver(
                &self,
                r: &$crate::model::Receiver,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM receivers WHERE node = ", &r.node).await? {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "receiver {}",
                        r.node
                    )));
                }
                Self::m_check_floor(&mut tx, &r.building, r.floor).await?;
                sqlx::QueryBuilder::<$db>::new("UPDATE receivers SET building = ")
                    .push_bind(r.building.as_str())
                    .push(", floor = ")
                    .push_bind(r.floor)
                    .push(", x = ")
                    .push_bind(r.x)
                    .push(", y = ")
                    .push_bind(r.y)
                    .push(", rssi_at_1m = ")
                    .push_bind(r.rssi_at_1m)
                    .push(", path_loss_exponent = ")
                    .push_bind(r.path_loss_exponent)
                    .push(" WHERE node = ")
                    .push_bind(r.node.as_str())
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_receiver(
                &self,
                node: &str,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::QueryBuilder::<$db>::new("DELETE FROM receivers WHERE node = ")
                    .push_bind(node)
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "receiver {node}"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_person(
                &self,
                p: &$crate::model::Person,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO people (id, name, groups) VALUES (",
                )
                .push_bind(p.id.as_str())
                .push(", ")
                .push_bind(p.name.as_str())
                .push(", ")
                .push_bind($crate::storage::model::to_json(&p.groups))
                .push(") ON CONFLICT (id) DO NOTHING")
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::Exists(format!(
                        "person {}",
                        p.id
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn person(
                &self,
                id: &str,
            ) -> Result<Option<$crate::model::Person>, $crate::storage::model::ModelError> {
                let row: Option<$crate::storage::model::PersonRow> =
                    sqlx::QueryBuilder::<$db>::new("SELECT id, name, groups FROM people WHERE id = ")
                        .push_bind(id)
                        .build_query_as()
                        .fetch_optional(&self.readers)
                        .await?;
                row.map(|r| r.person()).transpose()
            }

            async fn people(
                &self,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::Person>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, name, groups FROM people WHERE 1 = 1",
                );
                if let Some(g) = &q.group {
                    qb.push(concat!(" AND ", $strpos, "(groups, "))
                        .push_bind(format!("{g:?}"))
                        .push(") > 0");
                }
                if let Some(a) = &q.after {
                    qb.push(" AND id > ").push_bind(a.as_str());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit);
                let rows: Vec<$crate::storage::model::PersonRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                rows.into_iter().map(|r| r.person()).collect()
            }

            async fn update_person(
                &self,
                p: &$crate::model::Person,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::QueryBuilder::<$db>::new("UPDATE people SET name = ")
                    .push_bind(p.name.as_str())
                    .push(", groups = ")
                    .push_bind($crate::storage::model::to_json(&p.groups))
                    .push(" WHERE id = ")
                    .push_bind(p.id.as_str())
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "person {}",
                        p.id
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn delete_person(
                &self,
                id: &str,
            ) -> Result<(), $crate::storage::model::ModelError> {
                use $crate::storage::model::{refs, ModelError};
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM people WHERE id = ", id).await? {
                    return Err(ModelError::NotFound(format!("person {id}")));
                }
                let mut by = Vec::new();
                let devices = Self::m_ids(&mut tx, "SELECT id FROM devices WHERE owner = ", id, None, " ORDER BY id").await?;
                refs("device", devices, &mut by);
                let rules = Self::m_rule_ids(&mut tx, "person", id).await?;
                refs("access rule", rules, &mut by);
                if !by.is_empty() {
                    return Err(ModelError::InUse {
                        what: format!("person {id}"),
                        by,
                    });
                }
                sqlx::QueryBuilder::<$db>::new("DELETE FROM people WHERE id = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_device(
                &self,
                d: &$crate::model::Device,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if Self::m_exists(&mut tx, "SELECT 1 FROM devices WHERE id = ", &d.id).await? {
                    return Err($crate::storage::model::ModelError::Exists(format!(
                        "device {}",
                        d.id
                    )));
                }
                Self::m_check_owner(&mut tx, d.owner.as_deref()).await?;
                sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO devices (id, name, owner, kind, groups) VALUES (",
                )
                .push_bind(d.id.as_str())
                .push(", ")
                .push_bind(d.name.as_str())
                .push(", ")
                .push_bind(d.owner.as_deref())
                .push(", ")
                .push_bind(d.kind.as_str())
                .push(", ")
                .push_bind($crate::storage::model::to_json(&d.groups))
                .push(")")
                .build()
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn device(
                &self,
                id: &str,
            ) -> Result<Option<$crate::model::Device>, $crate::storage::model::ModelError> {
                let row: Option<$crate::storage::model::DeviceRow> =
                    sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, name, owner, kind, groups FROM devices WHERE id = ",
                    )
                    .push_bind(id)
                    .build_query_as()
                    .fetch_optional(&self.readers)
                    .await?;
                row.map(|r| r.device()).transpose()
            }

            async fn devices(
                &self,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::Device>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, name, owner, kind, groups FROM devices WHERE 1 = 1",
                );
                if let Some(o) = &q.owner {
                    qb.push(" AND owner = ").push_bind(o.as_str());
                }
                if let Some(k) = &q.kind {
                    qb.push(" AND kind = ").push_bind(k.as_str());
                }
                if let Some(g) = &q.group {
                    qb.push(concat!(" AND ", $strpos, "(groups, "))
                        .push_bind(format!("{g:?}"))
                        .push(") > 0");
                }
                if let Some(a) = &q.after {
                    qb.push(" AND id > ").push_bind(a.as_str());
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit);
                let rows: Vec<$crate::storage::model::DeviceRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                rows.into_iter().map(|r| r.device()).collect()
            }

            async fn update_device(
                &self,
                d: &$crate::model::Device,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                if !Self::m_exists(&mut tx, "SELECT 1 FROM devices WHERE id = ", &d.id).await? {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "device {}",
                        d.id
                    )));
                }
                Self::m_check_owner(&mut tx, d.owner.as_deref()).await?;
                sqlx::QueryBuilder::<$db>::new("UPDATE devices SET name = ")
                    .push_bind(d.name.as_str())
                    .push(", owner = ")
                    .push_bind(d.owner.as_deref())
                    .push(", kind = ")
                    .push_bind(d.kind.as_str())
                    .push(", groups = ")
                    .push_bind($crate::storage::model::to_json(&d.groups))
                    .push(" WHERE id = ")
                    .push_bind(d.id.as_str())
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_device(
                &self,
                id: &str,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::QueryBuilder::<$db>::new("DELETE FROM devices WHERE id = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "device {id}"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_rule(
                &self,
                r: &$crate::model::RuleRow,
            ) -> Result<i64, $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                Self::m_check_rule(&mut tx, r).await?;
                let (id,): (i64,) = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO access_rules (person, group_name, room, weekdays, start_minute, end_minute, valid_from_ms, valid_until_ms) VALUES (",
                )
                .push_bind(r.person.as_deref())
                .push(", ")
                .push_bind(r.group.as_deref())
                .push(", ")
                .push_bind(r.room.as_str())
                .push(", ")
                .push_bind(i32::from(r.weekdays))
                .push(", ")
                .push_bind(i32::from(r.start_minute))
                .push(", ")
                .push_bind(i32::from(r.end_minute))
                .push(", ")
                .push_bind(r.valid_from_ms)
                .push(", ")
                .push_bind(r.valid_until_ms)
                .push(") RETURNING id")
                .build_query_as()
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn rule(
                &self,
                id: i64,
            ) -> Result<Option<$crate::model::RuleRow>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::RULE_COLUMNS)
                    .push(" FROM access_rules WHERE id = ")
                    .push_bind(id);
                let row: Option<$crate::storage::model::RuleDbRow> =
                    qb.build_query_as().fetch_optional(&self.readers).await?;
                Ok(row.map(|r| r.rule()))
            }

            async fn rules(
                &self,
                q: &$crate::storage::model::ListQuery,
            ) -> Result<Vec<$crate::model::RuleRow>, $crate::storage::model::ModelError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::model::RULE_COLUMNS)
                    .push(" FROM access_rules WHERE 1 = 1");
                if let Some(r) = &q.room {
                    qb.push(" AND room = ").push_bind(r.as_str());
                }
                if let Some(p) = &q.person {
                    qb.push(" AND person = ").push_bind(p.as_str());
                }
                if let Some(g) = &q.group {
                    qb.push(" AND group_name = ").push_bind(g.as_str());
                }
                if let Some(a) = q.after.as_deref().and_then(|a| a.parse::<i64>().ok()) {
                    qb.push(" AND id > ").push_bind(a);
                }
                qb.push(" ORDER BY id LIMIT ").push_bind(q.limit);
                let rows: Vec<$crate::storage::model::RuleDbRow> =
                    qb.build_query_as().fetch_all(&self.readers).await?;
                Ok(rows.into_iter().map(|r| r.rule()).collect())
            }

            async fn update_rule(
                &self,
                r: &$crate::model::RuleRow,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT 1 FROM access_rules WHERE id = ");
                qb.push_bind(r.id);
                if qb.build().fetch_optional(&mut *tx).await?.is_none() {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "access rule {}",
                        r.id
                    )));
                }
                Self::m_check_rule(&mut tx, r).await?;
                sqlx::QueryBuilder::<$db>::new("UPDATE access_rules SET person = ")
                    .push_bind(r.person.as_deref())
                    .push(", group_name = ")
                    .push_bind(r.group.as_deref())
                    .push(", room = ")
                    .push_bind(r.room.as_str())
                    .push(", weekdays = ")
                    .push_bind(i32::from(r.weekdays))
                    .push(", start_minute = ")
                    .push_bind(i32::from(r.start_minute))
                    .push(", end_minute = ")
                    .push_bind(i32::from(r.end_minute))
                    .push(", valid_from_ms = ")
                    .push_bind(r.valid_from_ms)
                    .push(", valid_until_ms = ")
                    .push_bind(r.valid_until_ms)
                    .push(" WHERE id = ")
                    .push_bind(r.id)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_rule(
                &self,
                id: i64,
            ) -> Result<(), $crate::storage::model::ModelError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::QueryBuilder::<$db>::new("DELETE FROM access_rules WHERE id = ")
                    .push_bind(id)
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::storage::model::ModelError::NotFound(format!(
                        "access rule {id}"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn import_model(
                &self,
                plan: &$crate::model::ImportPlan,
            ) -> Result<$crate::storage::model::ImportOutcome, $crate::storage::model::ModelError>
            {
                use $crate::storage::model::{to_json, ImportOutcome};
                let mut out = ImportOutcome::default();
                let Some(b) = &plan.building else {
                    return Ok(out);
                };
                let mut tx = self.begin_write().await?;
                let prev: Option<(String,)> = sqlx::QueryBuilder::<$db>::new(
                    "SELECT source_hash FROM model_imports WHERE building = ",
                )
                .push_bind(b.id.as_str())
                .build_query_as()
                .fetch_optional(&mut *tx)
                .await?;
                if prev.is_some_and(|(h,)| h == plan.source_hash) {
                    return Ok(out);
                }
                out.applied = true;
                out.buildings = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO buildings (id, name, time_zone) VALUES (",
                )
                .push_bind(b.id.as_str())
                .push(", ")
                .push_bind(b.name.as_str())
                .push(", ")
                .push_bind(b.time_zone.as_str())
                .push(") ON CONFLICT (id) DO NOTHING")
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
                for f in &plan.floors {
                    out.floors += sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO floors (building, level, name) VALUES (",
                    )
                    .push_bind(b.id.as_str())
                    .push(", ")
                    .push_bind(f.level.unwrap_or(0))
                    .push(", ")
                    .push_bind(f.name.as_str())
                    .push(") ON CONFLICT (building, level) DO NOTHING")
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                for r in &plan.rooms {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rooms (id, building, floor, name, polygon, capacity, restricted) VALUES (",
                    );
                    qb.push_bind(r.id.as_str()).push(", ");
                    Self::m_push_room(&mut qb, r);
                    qb.push(") ON CONFLICT (id) DO NOTHING");
                    out.rooms += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                for d in &plan.doors {
                    out.doors += sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO doors (id, room_a, room_b, node, gpio_pin) VALUES (",
                    )
                    .push_bind(d.id.as_str())
                    .push(", ")
                    .push_bind(d.rooms.first().map(String::as_str).unwrap_or_default())
                    .push(", ")
                    .push_bind(d.rooms.get(1).map(String::as_str))
                    .push(", ")
                    .push_bind(d.node.as_str())
                    .push(", ")
                    .push_bind(d.gpio_pin.map(i32::from))
                    .push(") ON CONFLICT (id) DO NOTHING")
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                for r in &plan.receivers {
                    out.receivers += sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO receivers (node, building, floor, x, y, rssi_at_1m, path_loss_exponent) VALUES (",
                    )
                    .push_bind(r.node.as_str())
                    .push(", ")
                    .push_bind(r.building.as_str())
                    .push(", ")
                    .push_bind(r.floor)
                    .push(", ")
                    .push_bind(r.x)
                    .push(", ")
                    .push_bind(r.y)
                    .push(", ")
                    .push_bind(r.rssi_at_1m)
                    .push(", ")
                    .push_bind(r.path_loss_exponent)
                    .push(") ON CONFLICT (node) DO NOTHING")
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                for p in &plan.people {
                    out.people += sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO people (id, name, groups) VALUES (",
                    )
                    .push_bind(p.id.as_str())
                    .push(", ")
                    .push_bind(p.name.as_str())
                    .push(", ")
                    .push_bind(to_json(&p.groups))
                    .push(") ON CONFLICT (id) DO NOTHING")
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                for d in &plan.devices {
                    out.devices += sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO devices (id, name, owner, kind, groups) VALUES (",
                    )
                    .push_bind(d.id.as_str())
                    .push(", ")
                    .push_bind(d.name.as_str())
                    .push(", ")
                    .push_bind(d.owner.as_deref())
                    .push(", ")
                    .push_bind(d.kind.as_str())
                    .push(", ")
                    .push_bind(to_json(&d.groups))
                    .push(") ON CONFLICT (id) DO NOTHING")
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                if out.buildings == 1 {
                    for r in &plan.rules {
                        sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO access_rules (person, group_name, room, weekdays, start_minute, end_minute, valid_from_ms, valid_until_ms) VALUES (",
                        )
                        .push_bind(r.person.as_deref())
                        .push(", ")
                        .push_bind(r.group.as_deref())
                        .push(", ")
                        .push_bind(r.room.as_str())
                        .push(", ")
                        .push_bind(i32::from(r.weekdays))
                        .push(", ")
                        .push_bind(i32::from(r.start_minute))
                        .push(", ")
                        .push_bind(i32::from(r.end_minute))
                        .push(", ")
                        .push_bind(r.valid_from_ms)
                        .push(", ")
                        .push_bind(r.valid_until_ms)
                        .push(")")
                        .build()
                        .execute(&mut *tx)
                        .await?;
                        out.rules += 1;
                    }
                }
                sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO model_imports (building, source_hash, imported_at_ms) VALUES (",
                )
                .push_bind(b.id.as_str())
                .push(", ")
                .push_bind(plan.source_hash.as_str())
                .push(", ")
                .push_bind(chrono::Utc::now().timestamp_millis())
                .push(") ON CONFLICT (building) DO UPDATE SET source_hash = excluded.source_hash, imported_at_ms = excluded.imported_at_ms")
                .build()
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn model_snapshot(
                &self,
            ) -> Result<$crate::model::ModelSnapshot, $crate::storage::model::ModelError> {
                use $crate::storage::model::{
                    DeviceRow, DoorRow, PersonRow, RoomRow, RuleDbRow, DOOR_COLUMNS, ROOM_COLUMNS,
                    RULE_COLUMNS,
                };
                // One read transaction: a consistent picture of the model.
                let mut tx = self.readers.begin().await?;
                let buildings: Vec<(String, String, String)> =
                    sqlx::query_as("SELECT id, name, time_zone FROM buildings ORDER BY id")
                        .fetch_all(&mut *tx)
                        .await?;
                let rooms: Vec<RoomRow> = sqlx::QueryBuilder::<$db>::new("SELECT ")
                    .push(ROOM_COLUMNS)
                    .push(" FROM rooms ORDER BY id")
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
                let doors: Vec<DoorRow> = sqlx::QueryBuilder::<$db>::new("SELECT ")
                    .push(DOOR_COLUMNS)
                    .push(" FROM doors ORDER BY id")
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
                let devices: Vec<DeviceRow> =
                    sqlx::query_as("SELECT id, name, owner, kind, groups FROM devices ORDER BY id")
                        .fetch_all(&mut *tx)
                        .await?;
                let people: Vec<PersonRow> =
                    sqlx::query_as("SELECT id, name, groups FROM people ORDER BY id")
                        .fetch_all(&mut *tx)
                        .await?;
                let rules: Vec<RuleDbRow> = sqlx::QueryBuilder::<$db>::new("SELECT ")
                    .push(RULE_COLUMNS)
                    .push(" FROM access_rules ORDER BY id")
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok($crate::model::ModelSnapshot {
                    buildings: buildings
                        .into_iter()
                        .map(|(id, name, time_zone)| $crate::model::Building {
                            id,
                            name,
                            time_zone,
                        })
                        .collect(),
                    rooms: rooms.into_iter().map(|r| r.room()).collect::<Result<_, _>>()?,
                    doors: doors.into_iter().map(|d| d.door()).collect(),
                    devices: devices
                        .into_iter()
                        .map(|d| d.device())
                        .collect::<Result<_, _>>()?,
                    people: people
                        .into_iter()
                        .map(|p| p.person())
                        .collect::<Result<_, _>>()?,
                    rules: rules.into_iter().map(|r| r.rule()).collect(),
                })
            }
        }
    };
}

pub(super) use impl_model_store;
