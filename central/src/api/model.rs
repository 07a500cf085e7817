//! The building model over REST, full CRUD with validation:
//! `/api/buildings` (floors nested: `/api/buildings/{id}/floors/{level}`), `/api/rooms`,
//! `/api/doors`, `/api/receivers`, `/api/devices`, `/api/people`, `/api/access-rules`.
//! POST answers 201 with `Location`; PUT replaces; PATCH applies a JSON merge patch
//! (RFC 7396) to the stored entity and validates the result like a PUT; DELETE answers 204, or 409 naming what
//! still refers to the entity. Lists are pages `{items, next_cursor}` ordered by id.

use super::error::{AppError, JsonBody, Query};
use super::paging::{DEFAULT_LIMIT, MAX_LIMIT};
use super::AppState;
use crate::model::{
    AccessRule, Building, Device, DeviceKind, Door, Floor, Invalid, Person, Receiver, Room,
};
use crate::storage::model::{ListQuery, ModelError};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_buildings, create_building))
        .routes(routes!(
            get_building,
            put_building,
            patch_building,
            delete_building
        ))
        .routes(routes!(list_floors, create_floor))
        .routes(routes!(get_floor, put_floor, patch_floor, delete_floor))
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, put_room, patch_room, delete_room))
        .routes(routes!(list_doors, create_door))
        .routes(routes!(get_door, put_door, patch_door, delete_door))
        .routes(routes!(list_receivers, create_receiver))
        .routes(routes!(
            get_receiver,
            put_receiver,
            patch_receiver,
            delete_receiver
        ))
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device, put_device, patch_device, delete_device))
        .routes(routes!(list_people, create_person))
        .routes(routes!(get_person, put_person, patch_person, delete_person))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, put_rule, patch_rule, delete_rule))
}

impl From<ModelError> for AppError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::NotFound(_) => AppError::not_found("not_found", e.to_string()),
            ModelError::Exists(_) => AppError::Conflict {
                code: "already_exists",
                message: e.to_string(),
            },
            ModelError::InUse { .. } => AppError::Conflict {
                code: "in_use",
                message: e.to_string(),
            },
            ModelError::Conflict(_) => AppError::Conflict {
                code: "conflict",
                message: e.to_string(),
            },
            ModelError::UnknownRef { .. } => AppError::Unprocessable {
                code: "unknown_reference",
                message: e.to_string(),
            },
            ModelError::Store(e) => AppError::Internal(e.into()),
            ModelError::Corrupt(_) => AppError::Internal(anyhow::anyhow!("{e}")),
        }
    }
}

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> Self {
        AppError::bad("invalid", e.to_string())
    }
}

fn created<T: Serialize>(location: String, body: T) -> Response {
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The path's id wins; a different id in the body is an error.
fn same_id(path: &str, body: &mut String) -> Result<(), AppError> {
    if body.is_empty() {
        *body = path.to_string();
    }
    if body != path {
        return Err(AppError::bad(
            "id_mismatch",
            format!("id: the body says {body:?} but the path says {path:?}"),
        ));
    }
    Ok(())
}

fn parse_limit(limit: Option<&str>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(AppError::bad(
                "bad_limit",
                format!("limit: {s:?} must be an integer from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn parse_level(name: &str, s: &str) -> Result<i32, AppError> {
    s.parse::<i32>().map_err(|_| {
        AppError::bad(
            "bad_query",
            format!("{name}: {s:?} is not a floor level (an integer)"),
        )
    })
}

fn list_query(limit: Option<&str>, cursor: Option<String>) -> Result<ListQuery, AppError> {
    Ok(ListQuery {
        limit: parse_limit(limit)?,
        after: cursor,
        ..ListQuery::default()
    })
}

/// A page: `next_cursor` is set when the page is full.
fn page<T>(items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let next = if items.len() as i64 == limit {
        items.last().map(key)
    } else {
        None
    };
    (items, next)
}

macro_rules! page_type {
    ($name:ident, $item:ty) => {
        /// One page; pass `next_cursor` as `cursor` for the next (absent on the last page).
        #[derive(Serialize, utoipa::ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            pub next_cursor: Option<String>,
        }
    };
}

page_type!(BuildingPage, Building);
page_type!(FloorPage, Floor);
page_type!(RoomPage, Room);
page_type!(DoorPage, Door);
page_type!(ReceiverPage, Receiver);
page_type!(DevicePage, Device);
page_type!(PersonPage, Person);
page_type!(RulePage, AccessRule);

/// Paging only.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1–10000, default 1000.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

// ------------------------------------------------------------------------- buildings

#[utoipa::path(get, path = "/api/buildings", tag = "model", params(PageParams),
    responses((status = 200, body = BuildingPage), (status = 400, description = "bad parameter")))]
async fn list_buildings(
    State(s): State<AppState>,
    Query(p): Query<PageParams>,
) -> Result<Json<BuildingPage>, AppError> {
    let q = list_query(p.limit.as_deref(), p.cursor)?;
    let (items, next_cursor) = page(s.store.buildings(&q).await?, q.limit, |b| b.id.clone());
    Ok(Json(BuildingPage { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/buildings", tag = "model", request_body = Building,
    responses((status = 201, body = Building), (status = 400, description = "invalid"),
        (status = 409, description = "id taken")))]
async fn create_building(
    State(s): State<AppState>,
    JsonBody(b): JsonBody<Building>,
) -> Result<Response, AppError> {
    b.validate()?;
    s.store.create_building(&b).await?;
    s.bus.model_changed();
    Ok(created(format!("/api/buildings/{}", b.id), b))
}

#[utoipa::path(get, path = "/api/buildings/{id}", tag = "model",
    params(("id" = String, Path, description = "building id")),
    responses((status = 200, body = Building), (status = 404, description = "unknown")))]
async fn get_building(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Building>, AppError> {
    s.store
        .building(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ModelError::NotFound(format!("building {id}")).into())
}

#[utoipa::path(put, path = "/api/buildings/{id}", tag = "model", request_body = Building,
    params(("id" = String, Path, description = "building id")),
    responses((status = 200, body = Building), (status = 400, description = "invalid"),
        (status = 404, description = "unknown")))]
async fn put_building(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut b): JsonBody<Building>,
) -> Result<Json<Building>, AppError> {
    same_id(&id, &mut b.id)?;
    b.validate()?;
    s.store.update_building(&b).await?;
    s.bus.model_changed();
    Ok(Json(b))
}

#[utoipa::path(delete, path = "/api/buildings/{id}", tag = "model",
    params(("id" = String, Path, description = "building id")),
    responses((status = 204, description = "deleted with its floors"),
        (status = 404, description = "unknown"),
        (status = 409, description = "rooms or receivers are in it")))]
async fn delete_building(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    s.store.delete_building(&id).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- floors

async fn known_building(s: &AppState, id: &str) -> Result<(), AppError> {
    match s.store.building(id).await? {
        Some(_) => Ok(()),
        None => Err(ModelError::NotFound(format!("building {id}")).into()),
    }
}

#[utoipa::path(get, path = "/api/buildings/{id}/floors", tag = "model",
    params(("id" = String, Path, description = "building id"), PageParams),
    responses((status = 200, body = FloorPage), (status = 404, description = "unknown building")))]
async fn list_floors(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
) -> Result<Json<FloorPage>, AppError> {
    known_building(&s, &id).await?;
    if let Some(c) = &p.cursor {
        parse_level("cursor", c)?;
    }
    let q = list_query(p.limit.as_deref(), p.cursor)?;
    let (items, next_cursor) = page(s.store.floors(&id, &q).await?, q.limit, |f| {
        f.level.unwrap_or(0).to_string()
    });
    Ok(Json(FloorPage { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/buildings/{id}/floors", tag = "model", request_body = Floor,
    params(("id" = String, Path, description = "building id")),
    responses((status = 201, body = Floor), (status = 400, description = "invalid"),
        (status = 404, description = "unknown building"), (status = 409, description = "level taken")))]
async fn create_floor(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(f): JsonBody<Floor>,
) -> Result<Response, AppError> {
    f.validate()?;
    s.store.create_floor(&id, &f).await?;
    s.bus.model_changed();
    Ok(created(
        format!("/api/buildings/{id}/floors/{}", f.level.unwrap_or(0)),
        f,
    ))
}

#[utoipa::path(get, path = "/api/buildings/{id}/floors/{level}", tag = "model",
    params(("id" = String, Path, description = "building id"), ("level" = i32, Path, description = "floor level")),
    responses((status = 200, body = Floor), (status = 404, description = "unknown")))]
async fn get_floor(
    State(s): State<AppState>,
    Path((id, level)): Path<(String, String)>,
) -> Result<Json<Floor>, AppError> {
    let level = parse_level("level", &level)?;
    s.store
        .floor(&id, level)
        .await?
        .map(Json)
        .ok_or_else(|| ModelError::NotFound(format!("floor {level} of building {id}")).into())
}

#[utoipa::path(put, path = "/api/buildings/{id}/floors/{level}", tag = "model", request_body = Floor,
    params(("id" = String, Path, description = "building id"), ("level" = i32, Path, description = "floor level")),
    responses((status = 200, body = Floor), (status = 400, description = "invalid"), (status = 404, description = "unknown")))]
async fn put_floor(
    State(s): State<AppState>,
    Path((id, level)): Path<(String, String)>,
    JsonBody(mut f): JsonBody<Floor>,
) -> Result<Json<Floor>, AppError> {
    let level = parse_level("level", &level)?;
    match f.level {
        None => f.level = Some(level),
        Some(l) if l != level => {
            return Err(AppError::bad(
                "id_mismatch",
                format!("level: the body says {l} but the path says {level}"),
            ))
        }
        Some(_) => {}
    }
    f.validate()?;
    s.store.update_floor(&id, &f).await?;
    s.bus.model_changed();
    Ok(Json(f))
}

#[utoipa::path(delete, path = "/api/buildings/{id}/floors/{level}", tag = "model",
    params(("id" = String, Path, description = "building id"), ("level" = i32, Path, description = "floor level")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown"),
        (status = 409, description = "rooms or receivers are on it")))]
async fn delete_floor(
    State(s): State<AppState>,
    Path((id, level)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let level = parse_level("level", &level)?;
    s.store.delete_floor(&id, level).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- rooms

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RoomParams {
    limit: Option<String>,
    cursor: Option<String>,
    /// Only rooms of this building.
    building: Option<String>,
    /// Only rooms on this floor level.
    floor: Option<String>,
}

#[utoipa::path(get, path = "/api/rooms", tag = "model", params(RoomParams),
    responses((status = 200, body = RoomPage), (status = 400, description = "bad parameter")))]
async fn list_rooms(
    State(s): State<AppState>,
    Query(p): Query<RoomParams>,
) -> Result<Json<RoomPage>, AppError> {
    let mut q = list_query(p.limit.as_deref(), p.cursor)?;
    q.building = p.building;
    q.floor = p
        .floor
        .as_deref()
        .map(|f| parse_level("floor", f))
        .transpose()?;
    let (items, next_cursor) = page(s.store.rooms(&q).await?, q.limit, |r| r.id.clone());
    Ok(Json(RoomPage { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/rooms", tag = "model", request_body = Room,
    responses((status = 201, body = Room), (status = 400, description = "invalid"),
        (status = 409, description = "id taken"), (status = 422, description = "unknown building or floor")))]
async fn create_room(
    State(s): State<AppState>,
    JsonBody(r): JsonBody<Room>,
) -> Result<Response, AppError> {
    r.validate()?;
    s.store.create_room(&r).await?;
    s.bus.model_changed();
    Ok(created(format!("/api/rooms/{}", r.id), r))
}

#[utoipa::path(get, path = "/api/rooms/{id}", tag = "model",
    params(("id" = String, Path, description = "room id")),
    responses((status = 200, body = Room), (status = 404, description = "unknown")))]
async fn get_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Room>, AppError> {
    s.store
        .room(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ModelError::NotFound(format!("room {id}")).into())
}

#[utoipa::path(put, path = "/api/rooms/{id}", tag = "model", request_body = Room,
    params(("id" = String, Path, description = "room id")),
    responses((status = 200, body = Room), (status = 400, description = "invalid"),
        (status = 404, description = "unknown"), (status = 422, description = "unknown building or floor")))]
async fn put_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut r): JsonBody<Room>,
) -> Result<Json<Room>, AppError> {
    same_id(&id, &mut r.id)?;
    r.validate()?;
    s.store.update_room(&r).await?;
    s.bus.model_changed();
    Ok(Json(r))
}

#[utoipa::path(delete, path = "/api/rooms/{id}", tag = "model",
    params(("id" = String, Path, description = "room id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown"),
        (status = 409, description = "doors or access rules refer to it")))]
async fn delete_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    s.store.delete_room(&id).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- doors

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DoorParams {
    limit: Option<String>,
    cursor: Option<String>,
    /// Only doors of this room (either side).
    room: Option<String>,
    /// Only doors reported by this edge node.
    node: Option<String>,
}

#[utoipa::path(get, path = "/api/doors", tag = "model", params(DoorParams),
    responses((status = 200, body = DoorPage), (status = 400, description = "bad parameter")))]
async fn list_doors(
    State(s): State<AppState>,
    Query(p): Query<DoorParams>,
) -> Result<Json<DoorPage>, AppError> {
    let mut q = list_query(p.limit.as_deref(), p.cursor)?;
    q.room = p.room;
    q.node = p.node;
    let (items, next_cursor) = page(s.store.doors(&q).await?, q.limit, |d| d.id.clone());
    Ok(Json(DoorPage { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/doors", tag = "model", request_body = Door,
    responses((status = 201, body = Door), (status = 400, description = "invalid"),
        (status = 409, description = "id taken"), (status = 422, description = "unknown room")))]
async fn create_door(
    State(s): State<AppState>,
    JsonBody(mut d): JsonBody<Door>,
) -> Result<Response, AppError> {
    d.validate()?;
    s.store.create_door(&d).await?;
    s.bus.model_changed();
    Ok(created(format!("/api/doors/{}", d.id), d))
}

#[utoipa::path(get, path = "/api/doors/{id}", tag = "model",
    params(("id" = String, Path, description = "door id")),
    responses((status = 200, body = Door), (status = 404, description = "unknown")))]
async fn get_door(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Door>, AppError> {
    s.store
        .door(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ModelError::NotFound(format!("door {id}")).into())
}

#[utoipa::path(put, path = "/api/doors/{id}", tag = "model", request_body = Door,
    params(("id" = String, Path, description = "door id")),
    responses((status = 200, body = Door), (status = 400, description = "invalid"),
        (status = 404, description = "unknown"), (status = 422, description = "unknown room")))]
async fn put_door(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut d): JsonBody<Door>,
) -> Result<Json<Door>, AppError> {
    same_id(&id, &mut d.id)?;
    d.validate()?;
    s.store.update_door(&d).await?;
    s.bus.model_changed();
    Ok(Json(d))
}

#[utoipa::path(delete, path = "/api/doors/{id}", tag = "model",
    params(("id" = String, Path, description = "door id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown")))]
async fn delete_door(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    s.store.delete_door(&id).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- receivers

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReceiverParams {
    limit: Option<String>,
    cursor: Option<String>,
    /// Only receivers of this building.
    building: Option<String>,
    /// Only receivers on this floor level.
    floor: Option<String>,
}

#[utoipa::path(get, path = "/api/receivers", tag = "model", params(ReceiverParams),
    responses((status = 200, body = ReceiverPage), (status = 400, description = "bad parameter")))]
async fn list_receivers(
    State(s): State<AppState>,
    Query(p): Query<ReceiverParams>,
) -> Result<Json<ReceiverPage>, AppError> {
    let mut q = list_query(p.limit.as_deref(), p.cursor)?;
    q.building = p.building;
    q.floor = p
        .floor
        .as_deref()
        .map(|f| parse_level("floor", f))
        .transpose()?;
    let (items, next_cursor) = page(s.store.receivers(&q).await?, q.limit, |r| r.node.clone());
    Ok(Json(ReceiverPage { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/receivers", tag = "model", request_body = Receiver,
    responses((status = 201, body = Receiver), (status = 400, description = "invalid"),
        (status = 409, description = "node already has a receiver"),
        (status = 422, description = "unknown building or floor")))]
async fn create_receiver(
    State(s): State<AppState>,
    JsonBody(r): JsonBody<Receiver>,
) -> Result<Response, AppError> {
    r.validate()?;
    s.store.create_receiver(&r).await?;
    s.bus.model_changed();
    Ok(created(format!("/api/receivers/{}", r.node), r))
}

#[utoipa::path(get, path = "/api/receivers/{node}", tag = "model",
    params(("node" = String, Path, description = "edge node id")),
    responses((status = 200, body = Receiver), (status = 404, description = "unknown")))]
async fn get_receiver(
    State(s): State<AppState>,
    Path(node): Path<String>,
) -> Result<Json<Receiver>, AppError> {
    s.store
        .receiver(&node)
        .await?
        .map(Json)
        .ok_or_else(|| ModelError::NotFound(format!("receiver {node}")).into())
}

#[utoipa::path(put, path = "/api/receivers/{node}", tag = "model", request_body = Receiver,
    params(("node" = String, Path, description = "edge node id")),
    responses((status = 200, body = Receiver), (status = 400, description = "invalid"),
        (status = 404, description = "unknown"), (status = 422, description = "unknown building or floor")))]
async fn put_receiver(
    State(s): State<AppState>,
    Path(node): Path<String>,
    JsonBody(mut r): JsonBody<Receiver>,
) -> Result<Json<Receiver>, AppError> {
    same_id(&node, &mut r.node)?;
    r.validate()?;
    s.store.update_receiver(&r).await?;
    s.bus.model_changed();
    Ok(Json(r))
}

#[utoipa::path(delete, path = "/api/receivers/{node}", tag = "model",
    params(("node" = String, Path, description = "edge node id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown")))]
async fn delete_receiver(
    State(s): State<AppState>,
    Path(node): Path<String>,
) -> Result<StatusCode, AppError> {
    s.store.delete_receiver(&node).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- devices

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceParams {
    limit: Option<String>,
    cursor: Option<String>,
    /// Only devices of this person.
    owner: Option<String>,
    /// Only devices of this kind: tag, badge, phone, other.
    kind: Option<String>,
    /// Only devices in this group.
    group: Option<String>,
}

/// Paging and a group.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeopleParams {
    limit: Option<String>,
    cursor: Option<String>,
    /// Only people in this group.
    group: Option<String>,
}

#[utoipa::path(get, path = "/api/devices", tag = "model", params(DeviceParams),
    responses((status = 200, body = DevicePage), (status = 400, description = "bad parameter")))]
async fn list_devices(
    State(s): State<AppState>,
    Query(p): Query<DeviceParams>,
) -> Result<Json<DevicePage>, AppError> {
    let mut q = list_query(p.limit.as_deref(), p.cursor)?;
    if let Some(k) = &p.kind {
        if DeviceKind::parse(k).is_none() {
            return Err(AppError::bad(
                "bad_query",
                format!("kind: {k:?} is not one of tag, badge, phone, other"),
            ));
        }
    }
    q.owner = p.owner;
    q.kind = p.kind;
    q.group = p.group;
    let (items, next_cursor) = page(s.store.devices(&q).await?, q.limit, |d| d.id.clone());
    Ok(Json(DevicePage { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/devices", tag = "model", request_body = Device,
    responses((status = 201, body = Device), (status = 400, description = "invalid"),
        (status = 409, description = "id taken"), (status = 422, description = "unknown owner")))]
async fn create_device(
    State(s): State<AppState>,
    JsonBody(d): JsonBody<Device>,
) -> Result<Response, AppError> {
    d.validate()?;
    s.store.create_device(&d).await?;
    s.bus.model_changed();
    Ok(created(format!("/api/devices/{}", d.id), d))
}

#[utoipa::path(get, path = "/api/devices/{id}", tag = "model",
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = Device), (status = 404, description = "unknown")))]
async fn get_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Device>, AppError> {
    s.store
        .device(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ModelError::NotFound(format!("device {id}")).into())
}

#[utoipa::path(put, path = "/api/devices/{id}", tag = "model", request_body = Device,
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = Device), (status = 400, description = "invalid"),
        (status = 404, description = "unknown"), (status = 422, description = "unknown owner")))]
async fn put_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut d): JsonBody<Device>,
) -> Result<Json<Device>, AppError> {
    same_id(&id, &mut d.id)?;
    d.validate()?;
    s.store.update_device(&d).await?;
    s.bus.model_changed();
    Ok(Json(d))
}

#[utoipa::path(delete, path = "/api/devices/{id}", tag = "model",
    params(("id" = String, Path, description = "device id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown")))]
async fn delete_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    s.store.delete_device(&id).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- people

#[utoipa::path(get, path = "/api/people", tag = "model", params(PeopleParams),
    responses((status = 200, body = PersonPage), (status = 400, description = "bad parameter")))]
async fn list_people(
    State(s): State<AppState>,
    Query(p): Query<PeopleParams>,
) -> Result<Json<PersonPage>, AppError> {
    let mut q = list_query(p.limit.as_deref(), p.cursor)?;
    q.group = p.group;
    let (items, next_cursor) = page(s.store.people(&q).await?, q.limit, |p| p.id.clone());
    Ok(Json(PersonPage { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/people", tag = "model", request_body = Person,
    responses((status = 201, body = Person), (status = 400, description = "invalid"),
        (status = 409, description = "id taken")))]
async fn create_person(
    State(s): State<AppState>,
    JsonBody(p): JsonBody<Person>,
) -> Result<Response, AppError> {
    p.validate()?;
    s.store.create_person(&p).await?;
    s.bus.model_changed();
    Ok(created(format!("/api/people/{}", p.id), p))
}

#[utoipa::path(get, path = "/api/people/{id}", tag = "model",
    params(("id" = String, Path, description = "person id")),
    responses((status = 200, body = Person), (status = 404, description = "unknown")))]
async fn get_person(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Person>, AppError> {
    s.store
        .person(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ModelError::NotFound(format!("person {id}")).into())
}

#[utoipa::path(put, path = "/api/people/{id}", tag = "model", request_body = Person,
    params(("id" = String, Path, description = "person id")),
    responses((status = 200, body = Person), (status = 400, description = "invalid"),
        (status = 404, description = "unknown")))]
async fn put_person(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut p): JsonBody<Person>,
) -> Result<Json<Person>, AppError> {
    same_id(&id, &mut p.id)?;
    p.validate()?;
    s.store.update_person(&p).await?;
    s.bus.model_changed();
    Ok(Json(p))
}

#[utoipa::path(delete, path = "/api/people/{id}", tag = "model",
    params(("id" = String, Path, description = "person id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown"),
        (status = 409, description = "devices or access rules refer to them")))]
async fn delete_person(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    s.store.delete_person(&id).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- access rules

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RuleParams {
    limit: Option<String>,
    cursor: Option<String>,
    /// Only rules for this room.
    room: Option<String>,
    /// Only rules naming this person.
    person: Option<String>,
    /// Only rules naming this group.
    group: Option<String>,
}

fn parse_rule_id(s: &str) -> Result<i64, AppError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ModelError::NotFound(format!("access rule {s}")).into())
}

#[utoipa::path(get, path = "/api/access-rules", tag = "model", params(RuleParams),
    responses((status = 200, body = RulePage), (status = 400, description = "bad parameter")))]
async fn list_rules(
    State(s): State<AppState>,
    Query(p): Query<RuleParams>,
) -> Result<Json<RulePage>, AppError> {
    if let Some(c) = &p.cursor {
        if c.parse::<i64>().is_err() {
            return Err(AppError::bad(
                "bad_cursor",
                format!("cursor: {c:?} is not a cursor returned by this endpoint (next_cursor)"),
            ));
        }
    }
    let mut q = list_query(p.limit.as_deref(), p.cursor)?;
    q.room = p.room;
    q.person = p.person;
    q.group = p.group;
    let rows = s.store.rules(&q).await?;
    let (rows, next_cursor) = page(rows, q.limit, |r| r.id.to_string());
    Ok(Json(RulePage {
        items: rows.iter().map(|r| r.view()).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/access-rules", tag = "model", request_body = AccessRule,
    responses((status = 201, body = AccessRule), (status = 400, description = "invalid"),
        (status = 422, description = "unknown person or room")))]
async fn create_rule(
    State(s): State<AppState>,
    JsonBody(r): JsonBody<AccessRule>,
) -> Result<Response, AppError> {
    if r.id.is_some() {
        return Err(AppError::bad(
            "invalid",
            "id: is assigned by the server; leave it out",
        ));
    }
    let mut row = r.to_row()?;
    row.id = s.store.create_rule(&row).await?;
    s.bus.model_changed();
    Ok(created(format!("/api/access-rules/{}", row.id), row.view()))
}

#[utoipa::path(get, path = "/api/access-rules/{id}", tag = "model",
    params(("id" = i64, Path, description = "rule id")),
    responses((status = 200, body = AccessRule), (status = 404, description = "unknown")))]
async fn get_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AccessRule>, AppError> {
    let n = parse_rule_id(&id)?;
    s.store
        .rule(n)
        .await?
        .map(|r| Json(r.view()))
        .ok_or_else(|| ModelError::NotFound(format!("access rule {id}")).into())
}

#[utoipa::path(put, path = "/api/access-rules/{id}", tag = "model", request_body = AccessRule,
    params(("id" = i64, Path, description = "rule id")),
    responses((status = 200, body = AccessRule), (status = 400, description = "invalid"),
        (status = 404, description = "unknown"), (status = 422, description = "unknown person or room")))]
async fn put_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(r): JsonBody<AccessRule>,
) -> Result<Json<AccessRule>, AppError> {
    let n = parse_rule_id(&id)?;
    if r.id.is_some_and(|b| b != n) {
        return Err(AppError::bad(
            "id_mismatch",
            format!("id: the body says {:?} but the path says {n}", r.id),
        ));
    }
    let mut row = r.to_row()?;
    row.id = n;
    s.store.update_rule(&row).await?;
    s.bus.model_changed();
    Ok(Json(row.view()))
}

#[utoipa::path(delete, path = "/api/access-rules/{id}", tag = "model",
    params(("id" = i64, Path, description = "rule id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown")))]
async fn delete_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    s.store.delete_rule(parse_rule_id(&id)?).await?;
    s.bus.model_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------- PATCH

/// RFC 7396: objects merge key by key, `null` removes a key, anything else replaces.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// `current` with `patch` merged in, parsed back (unknown fields rejected as in PUT).
fn patched<T: Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: &serde_json::Value,
) -> Result<T, AppError> {
    if !patch.is_object() {
        return Err(AppError::bad(
            "bad_body",
            "a PATCH body is a JSON object (merge patch) of the fields to change",
        ));
    }
    let mut v = serde_json::to_value(current)?;
    merge_patch(&mut v, patch);
    serde_json::from_value(v).map_err(|e| AppError::bad("bad_body", e.to_string()))
}

fn not_found(what: String) -> AppError {
    ModelError::NotFound(what).into()
}

#[utoipa::path(patch, path = "/api/buildings/{id}", tag = "model", request_body = serde_json::Value,
    params(("id" = String, Path, description = "building id")),
    responses((status = 200, body = Building), (status = 400, description = "invalid"), (status = 404, description = "unknown")))]
async fn patch_building(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<Building>, AppError> {
    let cur = s.store.building(&id).await?;
    let cur = cur.ok_or_else(|| not_found(format!("building {id}")))?;
    let mut b = patched(&cur, &patch)?;
    same_id(&id, &mut b.id)?;
    b.validate()?;
    s.store.update_building(&b).await?;
    s.bus.model_changed();
    Ok(Json(b))
}

#[utoipa::path(patch, path = "/api/buildings/{id}/floors/{level}", tag = "model", request_body = serde_json::Value,
    params(("id" = String, Path, description = "building id"), ("level" = i32, Path, description = "floor level")),
    responses((status = 200, body = Floor), (status = 400, description = "invalid"), (status = 404, description = "unknown")))]
async fn patch_floor(
    State(s): State<AppState>,
    Path((id, level)): Path<(String, String)>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<Floor>, AppError> {
    let level = parse_level("level", &level)?;
    let cur = s.store.floor(&id, level).await?;
    let cur = cur.ok_or_else(|| not_found(format!("floor {level} of building {id}")))?;
    let f = patched(&cur, &patch)?;
    if f.level != Some(level) {
        return Err(AppError::bad(
            "id_mismatch",
            format!(
                "level: the body says {:?} but the path says {level}",
                f.level
            ),
        ));
    }
    f.validate()?;
    s.store.update_floor(&id, &f).await?;
    s.bus.model_changed();
    Ok(Json(f))
}

#[utoipa::path(patch, path = "/api/rooms/{id}", tag = "model", request_body = serde_json::Value,
    params(("id" = String, Path, description = "room id")),
    responses((status = 200, body = Room), (status = 400, description = "invalid"), (status = 404, description = "unknown"),
        (status = 422, description = "unknown building or floor")))]
async fn patch_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<Room>, AppError> {
    let cur = s.store.room(&id).await?;
    let cur = cur.ok_or_else(|| not_found(format!("room {id}")))?;
    let mut r = patched(&cur, &patch)?;
    same_id(&id, &mut r.id)?;
    r.validate()?;
    s.store.update_room(&r).await?;
    s.bus.model_changed();
    Ok(Json(r))
}

#[utoipa::path(patch, path = "/api/doors/{id}", tag = "model", request_body = serde_json::Value,
    params(("id" = String, Path, description = "door id")),
    responses((status = 200, body = Door), (status = 400, description = "invalid"), (status = 404, description = "unknown"),
        (status = 422, description = "unknown room")))]
async fn patch_door(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<Door>, AppError> {
    let cur = s.store.door(&id).await?;
    let cur = cur.ok_or_else(|| not_found(format!("door {id}")))?;
    let mut d = patched(&cur, &patch)?;
    same_id(&id, &mut d.id)?;
    d.validate()?;
    s.store.update_door(&d).await?;
    s.bus.model_changed();
    Ok(Json(d))
}

#[utoipa::path(patch, path = "/api/receivers/{node}", tag = "model", request_body = serde_json::Value,
    params(("node" = String, Path, description = "edge node id")),
    responses((status = 200, body = Receiver), (status = 400, description = "invalid"), (status = 404, description = "unknown"),
        (status = 422, description = "unknown building or floor")))]
async fn patch_receiver(
    State(s): State<AppState>,
    Path(node): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<Receiver>, AppError> {
    let cur = s.store.receiver(&node).await?;
    let cur = cur.ok_or_else(|| not_found(format!("receiver {node}")))?;
    let mut r = patched(&cur, &patch)?;
    same_id(&node, &mut r.node)?;
    r.validate()?;
    s.store.update_receiver(&r).await?;
    s.bus.model_changed();
    Ok(Json(r))
}

#[utoipa::path(patch, path = "/api/devices/{id}", tag = "model", request_body = serde_json::Value,
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = Device), (status = 400, description = "invalid"), (status = 404, description = "unknown"),
        (status = 422, description = "unknown owner")))]
async fn patch_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<Device>, AppError> {
    let cur = s.store.device(&id).await?;
    let cur = cur.ok_or_else(|| not_found(format!("device {id}")))?;
    let mut d = patched(&cur, &patch)?;
    same_id(&id, &mut d.id)?;
    d.validate()?;
    s.store.update_device(&d).await?;
    s.bus.model_changed();
    Ok(Json(d))
}

#[utoipa::path(patch, path = "/api/people/{id}", tag = "model", request_body = serde_json::Value,
    params(("id" = String, Path, description = "person id")),
    responses((status = 200, body = Person), (status = 400, description = "invalid"), (status = 404, description = "unknown")))]
async fn patch_person(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<Person>, AppError> {
    let cur = s.store.person(&id).await?;
    let cur = cur.ok_or_else(|| not_found(format!("person {id}")))?;
    let mut p = patched(&cur, &patch)?;
    same_id(&id, &mut p.id)?;
    p.validate()?;
    s.store.update_person(&p).await?;
    s.bus.model_changed();
    Ok(Json(p))
}

#[utoipa::path(patch, path = "/api/access-rules/{id}", tag = "model", request_body = serde_json::Value,
    params(("id" = i64, Path, description = "rule id")),
    responses((status = 200, body = AccessRule), (status = 400, description = "invalid"), (status = 404, description = "unknown"),
        (status = 422, description = "unknown person or room")))]
async fn patch_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<Json<AccessRule>, AppError> {
    let n = parse_rule_id(&id)?;
    let cur = s.store.rule(n).await?;
    let cur = cur.ok_or_else(|| not_found(format!("access rule {n}")))?;
    let r: AccessRule = patched(&cur.view(), &patch)?;
    if r.id != Some(n) {
        return Err(AppError::bad(
            "id_mismatch",
            format!("id: the body says {:?} but the path says {n}", r.id),
        ));
    }
    let mut row = r.to_row()?;
    row.id = n;
    s.store.update_rule(&row).await?;
    s.bus.model_changed();
    Ok(Json(row.view()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut v = json!({"a": "b", "c": {"d": "e", "f": "g"}, "x": [1, 2]});
        super::merge_patch(
            &mut v,
            &json!({"a": "z", "c": {"f": null}, "x": [3], "n": 1}),
        );
        assert_eq!(v, json!({"a": "z", "c": {"d": "e"}, "x": [3], "n": 1}));
    }
}
