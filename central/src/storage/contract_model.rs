//! Contract tests of `ModelStore`, on SQLite and Postgres.

use super::contract::contract_suite;
use super::model::{ListQuery, ModelError};
use super::Store;
use crate::model::*;

fn lq(limit: i64) -> ListQuery {
    ListQuery {
        limit,
        ..ListQuery::default()
    }
}

fn building(id: &str) -> Building {
    Building {
        id: id.into(),
        name: format!("Building {id}"),
        time_zone: "Europe/Berlin".into(),
    }
}

fn floor(level: i32) -> Floor {
    Floor {
        level: Some(level),
        name: format!("Floor {level}"),
        plan: None,
    }
}

fn room(id: &str, b: &str, level: i32) -> Room {
    Room {
        id: id.into(),
        building: b.into(),
        floor: level,
        name: format!("Room {id}"),
        polygon: vec![[0.0, 0.0], [4.0, 0.0], [4.0, 3.5], [0.0, 3.5]],
        capacity: Some(6),
        restricted: false,
    }
}

fn door(id: &str, rooms: &[&str]) -> Door {
    Door {
        id: id.into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        node: "pi-1".into(),
        gpio_pin: Some(17),
    }
}

fn person(id: &str, groups: &[&str]) -> Person {
    Person {
        id: id.into(),
        name: format!("Person {id}"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn device(id: &str, owner: Option<&str>) -> Device {
    Device {
        id: id.into(),
        name: format!("Device {id}"),
        owner: owner.map(Into::into),
        kind: DeviceKind::Badge,
        groups: vec!["badges".into()],
    }
}

fn rule(person: Option<&str>, group: Option<&str>, room: &str) -> RuleRow {
    RuleRow {
        id: 0,
        person: person.map(Into::into),
        group: group.map(Into::into),
        room: room.into(),
        weekdays: 0b001_1111,
        start_minute: 8 * 60,
        end_minute: 18 * 60,
        valid_from_ms: Some(1_000),
        valid_until_ms: None,
    }
}

fn in_use(e: ModelError) -> String {
    match e {
        ModelError::InUse { .. } => e.to_string(),
        other => panic!("expected InUse, got {other:?}"),
    }
}

fn unknown_field(e: ModelError) -> String {
    match e {
        ModelError::UnknownRef { field, .. } => field,
        other => panic!("expected UnknownRef, got {other:?}"),
    }
}

pub async fn buildings_and_floors(store: &dyn Store) {
    store.create_building(&building("b1")).await.unwrap();
    store.create_building(&building("b2")).await.unwrap();
    assert!(matches!(
        store.create_building(&building("b1")).await,
        Err(ModelError::Exists(_))
    ));
    let mut b = building("b1");
    b.time_zone = "UTC".into();
    b.name = "HQ".into();
    store.update_building(&b).await.unwrap();
    assert_eq!(store.building("b1").await.unwrap(), Some(b.clone()));
    assert!(matches!(
        store.update_building(&building("nope")).await,
        Err(ModelError::NotFound(_))
    ));
    let page = store.buildings(&lq(1)).await.unwrap();
    assert_eq!(page, vec![b]);
    let next = store
        .buildings(&ListQuery {
            after: Some("b1".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["b2"]
    );

    let mut f0 = floor(0);
    f0.plan = Some(FloorPlan {
        url: "https://plans.example/b1-0.png".into(),
        scale_px_per_m: 40.0,
        origin_px: [12.0, 800.0],
    });
    store.create_floor("b1", &f0).await.unwrap();
    store.create_floor("b1", &floor(-1)).await.unwrap();
    store.create_floor("b1", &floor(2)).await.unwrap();
    assert!(matches!(
        store.create_floor("b1", &floor(0)).await,
        Err(ModelError::Exists(_))
    ));
    assert!(matches!(
        store.create_floor("nope", &floor(0)).await,
        Err(ModelError::NotFound(_))
    ));
    assert_eq!(store.floor("b1", 0).await.unwrap(), Some(f0.clone()));
    let levels: Vec<_> = store
        .floors("b1", &lq(10))
        .await
        .unwrap()
        .iter()
        .map(|f| f.level.unwrap())
        .collect();
    assert_eq!(levels, [-1, 0, 2]);
    let after: Vec<_> = store
        .floors(
            "b1",
            &ListQuery {
                after: Some("-1".into()),
                ..lq(1)
            },
        )
        .await
        .unwrap();
    assert_eq!(after, vec![f0.clone()]);
    let mut f2 = floor(2);
    f2.name = "Roof".into();
    store.update_floor("b1", &f2).await.unwrap();
    assert_eq!(store.floor("b1", 2).await.unwrap().unwrap().name, "Roof");
    assert!(matches!(
        store.update_floor("b1", &floor(9)).await,
        Err(ModelError::NotFound(_))
    ));

    // A floor or building with rooms or receivers cannot go.
    store.create_room(&room("r1", "b1", 0)).await.unwrap();
    store
        .create_receiver(&Receiver {
            node: "pi-1".into(),
            building: "b1".into(),
            floor: 0,
            x: 1.0,
            y: 2.0,
            rssi_at_1m: -60.0,
            path_loss_exponent: 2.5,
        })
        .await
        .unwrap();
    let msg = in_use(store.delete_floor("b1", 0).await.unwrap_err());
    assert_eq!(
        msg,
        "floor 0 of building b1 is referred to by room r1, receiver pi-1"
    );
    let msg = in_use(store.delete_building("b1").await.unwrap_err());
    assert_eq!(msg, "building b1 is referred to by room r1, receiver pi-1");
    store.delete_floor("b1", 2).await.unwrap();
    assert!(matches!(
        store.delete_floor("b1", 2).await,
        Err(ModelError::NotFound(_))
    ));
    store.delete_receiver("pi-1").await.unwrap();
    store.delete_room("r1").await.unwrap();
    store.delete_building("b1").await.unwrap();
    assert!(store.building("b1").await.unwrap().is_none());
    assert!(store.floor("b1", 0).await.unwrap().is_none());
    assert!(matches!(
        store.delete_building("b1").await,
        Err(ModelError::NotFound(_))
    ));
}

pub async fn rooms_doors_receivers(store: &dyn Store) {
    store.create_building(&building("b1")).await.unwrap();
    store.create_floor("b1", &floor(0)).await.unwrap();
    store.create_floor("b1", &floor(1)).await.unwrap();
    assert_eq!(
        unknown_field(store.create_room(&room("r1", "nope", 0)).await.unwrap_err()),
        "building"
    );
    assert_eq!(
        unknown_field(store.create_room(&room("r1", "b1", 7)).await.unwrap_err()),
        "floor"
    );
    let mut r1 = room("r1", "b1", 0);
    r1.restricted = true;
    r1.capacity = None;
    store.create_room(&r1).await.unwrap();
    store.create_room(&room("r2", "b1", 0)).await.unwrap();
    store.create_room(&room("r3", "b1", 1)).await.unwrap();
    assert!(matches!(
        store.create_room(&room("r1", "b1", 0)).await,
        Err(ModelError::Exists(_))
    ));
    assert_eq!(store.room("r1").await.unwrap(), Some(r1.clone()));
    let on0 = store
        .rooms(&ListQuery {
            building: Some("b1".into()),
            floor: Some(0),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(
        on0.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    let mut moved = room("r2", "b1", 1);
    moved.polygon = vec![[0.0, 0.0], [2.0, 0.0], [1.0, 2.0]];
    store.update_room(&moved).await.unwrap();
    assert_eq!(store.room("r2").await.unwrap(), Some(moved));
    assert_eq!(
        unknown_field(store.update_room(&room("r2", "b1", 5)).await.unwrap_err()),
        "floor"
    );
    assert!(matches!(
        store.update_room(&room("r9", "b1", 0)).await,
        Err(ModelError::NotFound(_))
    ));

    assert_eq!(
        unknown_field(
            store
                .create_door(&door("d1", &["r1", "r9"]))
                .await
                .unwrap_err()
        ),
        "rooms[1]"
    );
    store.create_door(&door("d1", &["r1", "r2"])).await.unwrap();
    store.create_door(&door("d2", &["r1"])).await.unwrap();
    assert!(matches!(
        store.create_door(&door("d2", &["r1"])).await,
        Err(ModelError::Exists(_))
    ));
    assert_eq!(
        store.door("d1").await.unwrap(),
        Some(door("d1", &["r1", "r2"]))
    );
    assert_eq!(store.door("d2").await.unwrap(), Some(door("d2", &["r1"])));
    let of_r2 = store
        .doors(&ListQuery {
            room: Some("r2".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(of_r2.len(), 1);
    let mut d2 = door("d2", &["r3"]);
    d2.node = "pi-9".into();
    d2.gpio_pin = None;
    store.update_door(&d2).await.unwrap();
    assert_eq!(store.door("d2").await.unwrap(), Some(d2));

    store
        .create_rule(&rule(None, Some("staff"), "r1"))
        .await
        .unwrap();
    let msg = in_use(store.delete_room("r1").await.unwrap_err());
    assert!(
        msg.starts_with("room r1 is referred to by door d1, access rule "),
        "{msg}"
    );
    let msg = in_use(store.delete_room("r3").await.unwrap_err());
    assert_eq!(msg, "room r3 is referred to by door d2");
    store.delete_door("d2").await.unwrap();
    assert!(matches!(
        store.delete_door("d2").await,
        Err(ModelError::NotFound(_))
    ));
    store.delete_room("r3").await.unwrap();
    assert!(store.room("r3").await.unwrap().is_none());

    let recv = |node: &str, floor: i32| Receiver {
        node: node.into(),
        building: "b1".into(),
        floor,
        x: 3.0,
        y: 4.5,
        rssi_at_1m: -61.5,
        path_loss_exponent: 2.4,
    };
    store.create_receiver(&recv("pi-a", 0)).await.unwrap();
    store.create_receiver(&recv("pi-b", 1)).await.unwrap();
    assert!(matches!(
        store.create_receiver(&recv("pi-a", 0)).await,
        Err(ModelError::Exists(_))
    ));
    assert_eq!(
        unknown_field(store.create_receiver(&recv("pi-c", 4)).await.unwrap_err()),
        "floor"
    );
    assert_eq!(store.receiver("pi-a").await.unwrap(), Some(recv("pi-a", 0)));
    let f1 = store
        .receivers(&ListQuery {
            floor: Some(1),
            building: Some("b1".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(f1, vec![recv("pi-b", 1)]);
    let mut moved = recv("pi-b", 0);
    moved.x = -2.0;
    store.update_receiver(&moved).await.unwrap();
    assert_eq!(store.receiver("pi-b").await.unwrap(), Some(moved));
    store.delete_receiver("pi-b").await.unwrap();
    assert!(store.receiver("pi-b").await.unwrap().is_none());
}

pub async fn people_devices_rules(store: &dyn Store) {
    store.create_building(&building("b1")).await.unwrap();
    store.create_floor("b1", &floor(0)).await.unwrap();
    let mut lab = room("lab", "b1", 0);
    lab.restricted = true;
    store.create_room(&lab).await.unwrap();
    store
        .create_person(&person("alice", &["staff", "lab"]))
        .await
        .unwrap();
    store.create_person(&person("bob", &[])).await.unwrap();
    assert!(matches!(
        store.create_person(&person("bob", &[])).await,
        Err(ModelError::Exists(_))
    ));
    assert_eq!(
        store.person("alice").await.unwrap(),
        Some(person("alice", &["staff", "lab"]))
    );
    store
        .update_person(&person("bob", &["visitors"]))
        .await
        .unwrap();
    assert_eq!(
        store.person("bob").await.unwrap().unwrap().groups,
        ["visitors"]
    );
    assert_eq!(store.people(&lq(10)).await.unwrap().len(), 2);
    store
        .create_person(&person("carl", &["Staff", "lab_2"]))
        .await
        .unwrap();
    let staff = store
        .people(&ListQuery {
            group: Some("staff".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(staff, vec![person("alice", &["staff", "lab"])]);
    let lab2 = store
        .people(&ListQuery {
            group: Some("lab_2".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(lab2.len(), 1);
    store.delete_person("carl").await.unwrap();

    assert_eq!(
        unknown_field(
            store
                .create_device(&device("tag-1", Some("carol")))
                .await
                .unwrap_err()
        ),
        "owner"
    );
    store
        .create_device(&device("tag-1", Some("alice")))
        .await
        .unwrap();
    store
        .create_device(&device("aa:bb:cc:dd:ee:ff", None))
        .await
        .unwrap();
    assert!(matches!(
        store.create_device(&device("tag-1", None)).await,
        Err(ModelError::Exists(_))
    ));
    assert_eq!(
        store.device("tag-1").await.unwrap(),
        Some(device("tag-1", Some("alice")))
    );
    let owned = store
        .devices(&ListQuery {
            owner: Some("alice".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(owned.len(), 1);
    let badges = store
        .devices(&ListQuery {
            group: Some("badges".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(badges.len(), 2);
    assert!(store
        .devices(&ListQuery {
            group: Some("badge".into()),
            ..lq(10)
        })
        .await
        .unwrap()
        .is_empty());
    let mut phone = device("aa:bb:cc:dd:ee:ff", Some("bob"));
    phone.kind = DeviceKind::Phone;
    store.update_device(&phone).await.unwrap();
    assert_eq!(
        store
            .devices(&ListQuery {
                kind: Some("phone".into()),
                ..lq(10)
            })
            .await
            .unwrap(),
        vec![phone]
    );

    assert_eq!(
        unknown_field(
            store
                .create_rule(&rule(Some("zed"), None, "lab"))
                .await
                .unwrap_err()
        ),
        "person"
    );
    assert_eq!(
        unknown_field(
            store
                .create_rule(&rule(None, Some("g"), "nope"))
                .await
                .unwrap_err()
        ),
        "room"
    );
    let r1 = store
        .create_rule(&rule(Some("alice"), None, "lab"))
        .await
        .unwrap();
    let r2 = store
        .create_rule(&rule(None, Some("lab"), "lab"))
        .await
        .unwrap();
    assert!(r2 > r1);
    let mut want = rule(Some("alice"), None, "lab");
    want.id = r1;
    assert_eq!(store.rule(r1).await.unwrap(), Some(want.clone()));
    want.end_minute = 6 * 60;
    want.start_minute = 22 * 60;
    want.valid_until_ms = Some(9_000);
    store.update_rule(&want).await.unwrap();
    assert_eq!(store.rule(r1).await.unwrap(), Some(want));
    let by_group = store
        .rules(&ListQuery {
            group: Some("lab".into()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(by_group.iter().map(|r| r.id).collect::<Vec<_>>(), [r2]);
    let after = store
        .rules(&ListQuery {
            after: Some(r1.to_string()),
            ..lq(10)
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 1);

    let msg = in_use(store.delete_person("alice").await.unwrap_err());
    assert_eq!(
        msg,
        format!("person alice is referred to by device tag-1, access rule {r1}")
    );
    store.delete_rule(r1).await.unwrap();
    assert!(matches!(
        store.delete_rule(r1).await,
        Err(ModelError::NotFound(_))
    ));
    store.delete_device("tag-1").await.unwrap();
    store.delete_person("alice").await.unwrap();
    assert!(store.person("alice").await.unwrap().is_none());

    // The stored model feeds the access engine.
    let m = super::model::load_access_model(store).await.unwrap();
    assert_eq!(m.time_zones["b1"], chrono_tz::Europe::Berlin);
    assert!(m.rooms["lab"].restricted);
    let holder = &m.devices["aa:bb:cc:dd:ee:ff"];
    assert_eq!(holder.person.as_deref(), Some("bob"));
    assert_eq!(holder.groups, ["badges", "visitors"]);
    assert_eq!(m.rules.len(), 1);
    assert_eq!(m.rules[0].id, r2.to_string());
}

pub async fn imports_building_file_once(store: &dyn Store) {
    let b = roomsense_common::sim::Building::example();
    let plan = ImportPlan::from_building(&b, "office", "UTC");
    let first = store.import_model(&plan).await.unwrap();
    assert!(first.applied);
    assert_eq!(first.buildings, 1);
    assert_eq!(first.rooms as usize, b.rooms.len());
    assert_eq!(first.doors as usize, b.doors.len());
    assert_eq!(first.receivers as usize, b.receivers.len());
    assert_eq!(first.devices as usize, b.devices.len());
    assert!(first.rules >= 1);
    let m = super::model::load_access_model(store).await.unwrap();
    assert_eq!(m.rooms.len(), b.rooms.len());
    let want = crate::access::AccessModel::from_building(&b, "office");
    for (id, r) in &want.rooms {
        assert_eq!(m.rooms[id].restricted, r.restricted, "{id}");
    }
    let restricted_ok = b.devices.iter().find(|d| d.restricted_access).unwrap();
    let room = b.rooms.iter().find(|r| r.restricted).unwrap();
    assert!(m
        .allowing_rule(restricted_ok.id.as_str(), &room.id, 0)
        .is_some());

    // An admin edit survives a restart with the same file; a deletion stays deleted.
    let mut edited = store.room(&room.id).await.unwrap().unwrap();
    edited.name = "Edited".into();
    store.update_room(&edited).await.unwrap();
    let d = &b.doors[0];
    store.delete_door(d.id.as_str()).await.unwrap();
    let again = store.import_model(&plan).await.unwrap();
    assert!(!again.applied);
    assert_eq!(store.room(&room.id).await.unwrap().unwrap().name, "Edited");
    assert!(store.door(d.id.as_str()).await.unwrap().is_none());

    // A changed file adds what is new, keeps the edits, adds no second rule.
    let mut b2 = b.clone();
    b2.name = "Renamed".into();
    let plan2 = ImportPlan::from_building(&b2, "office", "UTC");
    let third = store.import_model(&plan2).await.unwrap();
    assert!(third.applied);
    assert_eq!(
        (third.buildings, third.rooms, third.doors, third.rules),
        (0, 0, 1, 0)
    );
    assert_eq!(store.room(&room.id).await.unwrap().unwrap().name, "Edited");
    assert_eq!(
        store.building("office").await.unwrap().unwrap().name,
        b.name
    );
}

contract_suite!(
    buildings_and_floors,
    rooms_doors_receivers,
    people_devices_rules,
    imports_building_file_once,
);
