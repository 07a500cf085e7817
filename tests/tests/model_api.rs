//! The building model over REST: CRUD of every resource, validation errors naming the
//! field, 409 on duplicates and on deleting what others refer to, 422 on references to
//! unknown things, paging, and the building-file import at start (idempotent, admin edits
//! kept across a restart).

use roomsense_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

struct Resp {
    status: u16,
    location: Option<String>,
    body: Value,
}

async fn send(c: &TestCentral, method: &str, path: &str, body: Option<Value>) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = c.http.request(method, format!("{}{}", c.base, path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    Resp {
        status,
        location,
        body,
    }
}

async fn post(c: &TestCentral, path: &str, body: Value) -> Resp {
    send(c, "POST", path, Some(body)).await
}

async fn put(c: &TestCentral, path: &str, body: Value) -> Resp {
    send(c, "PUT", path, Some(body)).await
}

async fn patch(c: &TestCentral, path: &str, body: Value) -> Resp {
    send(c, "PATCH", path, Some(body)).await
}

async fn get(c: &TestCentral, path: &str) -> Resp {
    send(c, "GET", path, None).await
}

async fn delete(c: &TestCentral, path: &str) -> Resp {
    send(c, "DELETE", path, None).await
}

/// Asserts the JSON error shape, its status and code, and that the message mentions `needle`.
fn err(r: &Resp, status: u16, code: &str, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

fn ok(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.body);
}

async fn setup_building(c: &TestCentral) {
    let r = post(
        c,
        "/api/buildings",
        json!({"id": "hq", "name": "HQ", "time_zone": "Europe/Berlin"}),
    )
    .await;
    ok(&r, 201);
    assert_eq!(r.location.as_deref(), Some("/api/buildings/hq"));
    for level in [0, 1] {
        ok(
            &post(
                c,
                "/api/buildings/hq/floors",
                json!({"level": level, "name": format!("Floor {level}")}),
            )
            .await,
            201,
        );
    }
}

fn room(id: &str, floor: i32) -> Value {
    json!({
        "id": id, "building": "hq", "floor": floor, "name": id,
        "polygon": [[0, 0], [5, 0], [5, 4], [0, 4]], "capacity": 8
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildings_and_floors_crud() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    setup_building(&c).await;
    let r = get(&c, "/api/buildings/hq").await;
    ok(&r, 200);
    assert_eq!(
        r.body,
        json!({"id": "hq", "name": "HQ", "time_zone": "Europe/Berlin"})
    );
    err(
        &post(&c, "/api/buildings", json!({"id": "hq", "name": "again"})).await,
        409,
        "already_exists",
        "building hq",
    );
    err(
        &post(
            &c,
            "/api/buildings",
            json!({"id": "b2", "name": "X", "time_zone": "Mars/Base"}),
        )
        .await,
        400,
        "invalid",
        "time_zone",
    );
    err(
        &post(
            &c,
            "/api/buildings",
            json!({"id": "b2", "name": "X", "colour": "red"}),
        )
        .await,
        400,
        "bad_body",
        "colour",
    );
    err(
        &post(&c, "/api/buildings", json!({"name": "no id"})).await,
        400,
        "invalid",
        "id",
    );
    err(
        &put(
            &c,
            "/api/buildings/hq",
            json!({"id": "other", "name": "HQ"}),
        )
        .await,
        400,
        "id_mismatch",
        "id",
    );
    let r = put(&c, "/api/buildings/hq", json!({"name": "Head office"})).await;
    ok(&r, 200);
    assert_eq!(r.body["time_zone"], "UTC");
    err(
        &get(&c, "/api/buildings/nope").await,
        404,
        "not_found",
        "building nope",
    );
    err(
        &put(&c, "/api/buildings/nope", json!({"name": "x"})).await,
        404,
        "not_found",
        "building nope",
    );
    ok(
        &post(
            &c,
            "/api/buildings",
            json!({"id": "annex", "name": "Annex"}),
        )
        .await,
        201,
    );
    let r = get(&c, "/api/buildings?limit=1").await;
    assert_eq!(r.body["items"][0]["id"], "annex");
    let next = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = get(&c, &format!("/api/buildings?limit=1&cursor={next}")).await;
    assert_eq!(r.body["items"][0]["id"], "hq");
    err(
        &get(&c, "/api/buildings?limit=0").await,
        400,
        "bad_limit",
        "limit",
    );
    err(
        &get(&c, "/api/buildings?sort=name").await,
        400,
        "bad_query",
        "sort",
    );

    // Floors, nested.
    let plan = json!({"url": "https://plans.example/hq-0.png", "scale_px_per_m": 50.0, "origin_px": [10, 620]});
    let r = put(
        &c,
        "/api/buildings/hq/floors/0",
        json!({"name": "Ground", "plan": plan}),
    )
    .await;
    ok(&r, 200);
    let r = get(&c, "/api/buildings/hq/floors/0").await;
    assert_eq!(r.body["plan"]["scale_px_per_m"], 50.0);
    assert_eq!(r.body["plan"]["origin_px"], json!([10.0, 620.0]));
    err(
        &put(
            &c,
            "/api/buildings/hq/floors/0",
            json!({"plan": {"url": "ftp://x", "scale_px_per_m": 1}}),
        )
        .await,
        400,
        "invalid",
        "plan.url",
    );
    err(
        &put(
            &c,
            "/api/buildings/hq/floors/0",
            json!({"plan": {"url": "/plans/0.png", "scale_px_per_m": -1}}),
        )
        .await,
        400,
        "invalid",
        "plan.scale_px_per_m",
    );
    err(
        &post(&c, "/api/buildings/hq/floors", json!({"level": 1})).await,
        409,
        "already_exists",
        "floor 1",
    );
    err(
        &post(&c, "/api/buildings/hq/floors", json!({"name": "x"})).await,
        400,
        "invalid",
        "level",
    );
    err(
        &post(&c, "/api/buildings/nope/floors", json!({"level": 0})).await,
        404,
        "not_found",
        "building nope",
    );
    let r = post(&c, "/api/buildings/hq/floors", json!({"level": -1})).await;
    ok(&r, 201);
    assert_eq!(r.location.as_deref(), Some("/api/buildings/hq/floors/-1"));
    let r = get(&c, "/api/buildings/hq/floors").await;
    let levels: Vec<i64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["level"].as_i64().unwrap())
        .collect();
    assert_eq!(levels, [-1, 0, 1]);
    err(
        &get(&c, "/api/buildings/hq/floors/x").await,
        400,
        "bad_query",
        "level",
    );
    ok(&delete(&c, "/api/buildings/hq/floors/-1").await, 204);
    err(
        &get(&c, "/api/buildings/hq/floors/-1").await,
        404,
        "not_found",
        "floor -1",
    );

    // What refers to a floor or building keeps it.
    ok(&post(&c, "/api/rooms", room("lab", 1)).await, 201);
    ok(
        &post(
            &c,
            "/api/receivers",
            json!({"node": "pi-1", "building": "hq", "floor": 1, "x": 1, "y": 2}),
        )
        .await,
        201,
    );
    err(
        &delete(&c, "/api/buildings/hq/floors/1").await,
        409,
        "in_use",
        "floor 1 of building hq is referred to by room lab, receiver pi-1",
    );
    err(
        &delete(&c, "/api/buildings/hq").await,
        409,
        "in_use",
        "building hq is referred to by room lab, receiver pi-1",
    );
    ok(&delete(&c, "/api/receivers/pi-1").await, 204);
    ok(&delete(&c, "/api/rooms/lab").await, 204);
    ok(&delete(&c, "/api/buildings/hq").await, 204);
    err(
        &get(&c, "/api/buildings/hq/floors/0").await,
        404,
        "not_found",
        "floor 0",
    );
    err(
        &delete(&c, "/api/buildings/hq").await,
        404,
        "not_found",
        "building hq",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_doors_receivers_crud() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    let mut model = c.app.bus().watch_model();
    setup_building(&c).await;
    // Writes tell model watchers (the access engine) to reload.
    tokio::time::timeout(Duration::from_secs(5), model.changed())
        .await
        .expect("model change notified")
        .unwrap();
    model.mark_unchanged();
    err(
        &post(&c, "/api/rooms", room("x", 9)).await,
        422,
        "unknown_reference",
        "floor",
    );
    assert!(
        !model.has_changed().unwrap(),
        "a refused write is no change"
    );
    let r = post(&c, "/api/rooms", room("lobby", 0)).await;
    ok(&r, 201);
    assert_eq!(r.location.as_deref(), Some("/api/rooms/lobby"));
    assert_eq!(r.body["restricted"], false);
    ok(&post(&c, "/api/rooms", room("lab", 0)).await, 201);
    ok(&post(&c, "/api/rooms", room("attic", 1)).await, 201);
    err(
        &post(&c, "/api/rooms", room("lab", 0)).await,
        409,
        "already_exists",
        "room lab",
    );
    err(
        &post(
            &c,
            "/api/rooms",
            json!({"id": "x", "building": "nope", "floor": 0, "polygon": [[0,0],[1,0],[0,1]]}),
        )
        .await,
        422,
        "unknown_reference",
        "building: building \"nope\" does not exist",
    );
    err(
        &post(
            &c,
            "/api/rooms",
            json!({"id": "x", "building": "hq", "floor": 5, "polygon": [[0,0],[1,0],[0,1]]}),
        )
        .await,
        422,
        "unknown_reference",
        "floor",
    );
    for (poly, needle) in [
        (json!([[0, 0], [1, 1]]), "polygon: needs at least 3 points"),
        (json!([[0, 0], [1, 1], [2, 2]]), "no area"),
        (json!([[0, 0], [4, 4], [4, 0], [0, 2]]), "cross"),
        (json!("square"), "polygon"),
    ] {
        let mut body = room("bad", 0);
        body["polygon"] = poly;
        let r = post(&c, "/api/rooms", body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg}");
    }
    let mut bad = room("bad", 0);
    bad["capacity"] = json!(-3);
    err(
        &post(&c, "/api/rooms", bad).await,
        400,
        "bad_body",
        "capacity",
    );
    let mut outside = room("outside", 0);
    outside["id"] = json!("outside");
    err(&post(&c, "/api/rooms", outside).await, 400, "invalid", "id");

    let mut lab = room("lab", 1);
    lab["restricted"] = json!(true);
    lab["capacity"] = Value::Null;
    let r = put(&c, "/api/rooms/lab", lab.clone()).await;
    ok(&r, 200);
    let r = get(&c, "/api/rooms/lab").await;
    assert_eq!(r.body["restricted"], true);
    assert_eq!(r.body["floor"], 1);
    assert!(r.body["capacity"].is_null());
    let r = get(&c, "/api/rooms?building=hq&floor=0").await;
    let ids: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["lobby"]);
    err(
        &get(&c, "/api/rooms?floor=ground").await,
        400,
        "bad_query",
        "floor",
    );
    err(
        &get(&c, "/api/rooms/nope").await,
        404,
        "not_found",
        "room nope",
    );

    // Doors.
    let r = post(
        &c,
        "/api/doors",
        json!({"id": "front", "rooms": ["outside", "lobby"], "node": "pi-door", "gpio_pin": 17}),
    )
    .await;
    ok(&r, 201);
    assert_eq!(r.location.as_deref(), Some("/api/doors/front"));
    assert_eq!(r.body["rooms"], json!(["lobby"]));
    ok(
        &post(
            &c,
            "/api/doors",
            json!({"id": "lab-door", "rooms": ["lobby", "lab"], "node": "pi-door"}),
        )
        .await,
        201,
    );
    err(
        &post(
            &c,
            "/api/doors",
            json!({"id": "d9", "rooms": ["lobby", "nope"], "node": "pi-door"}),
        )
        .await,
        422,
        "unknown_reference",
        "rooms[1]",
    );
    err(
        &post(
            &c,
            "/api/doors",
            json!({"id": "d9", "rooms": [], "node": "pi-door"}),
        )
        .await,
        400,
        "invalid",
        "rooms",
    );
    err(
        &post(
            &c,
            "/api/doors",
            json!({"id": "d9", "rooms": ["lobby"], "node": "pi door"}),
        )
        .await,
        400,
        "invalid",
        "node",
    );
    err(
        &post(
            &c,
            "/api/doors",
            json!({"id": "front", "rooms": ["lobby"], "node": "pi-door"}),
        )
        .await,
        409,
        "already_exists",
        "door front",
    );
    let r = put(
        &c,
        "/api/doors/front",
        json!({"rooms": ["lobby"], "node": "pi-2", "gpio_pin": 22}),
    )
    .await;
    ok(&r, 200);
    assert_eq!(get(&c, "/api/doors/front").await.body["gpio_pin"], 22);
    let r = get(&c, "/api/doors?room=lab").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);

    // Access rules and doors keep a room.
    ok(
        &post(
            &c,
            "/api/access-rules",
            json!({"group": "staff", "room": "lab"}),
        )
        .await,
        201,
    );
    let r = delete(&c, "/api/rooms/lab").await;
    err(
        &r,
        409,
        "in_use",
        "room lab is referred to by door lab-door, access rule ",
    );
    ok(&delete(&c, "/api/doors/lab-door").await, 204);
    err(
        &delete(&c, "/api/doors/lab-door").await,
        404,
        "not_found",
        "door lab-door",
    );

    // Receivers.
    let r = post(
        &c,
        "/api/receivers",
        json!({"node": "pi-1", "building": "hq", "floor": 0, "x": 2.5, "y": 1.0, "rssi_at_1m": -62, "path_loss_exponent": 2.7}),
    )
    .await;
    ok(&r, 201);
    assert_eq!(r.location.as_deref(), Some("/api/receivers/pi-1"));
    err(
        &post(
            &c,
            "/api/receivers",
            json!({"node": "pi-1", "building": "hq", "floor": 0, "x": 0, "y": 0}),
        )
        .await,
        409,
        "already_exists",
        "receiver pi-1",
    );
    err(
        &post(
            &c,
            "/api/receivers",
            json!({"node": "pi-2", "building": "hq", "floor": 9, "x": 0, "y": 0}),
        )
        .await,
        422,
        "unknown_reference",
        "floor",
    );
    err(
        &post(&c, "/api/receivers", json!({"node": "pi-2", "building": "hq", "floor": 0, "x": 0, "y": 0, "path_loss_exponent": 9})).await,
        400,
        "invalid",
        "path_loss_exponent",
    );
    let r = put(
        &c,
        "/api/receivers/pi-1",
        json!({"building": "hq", "floor": 1, "x": 3, "y": 3}),
    )
    .await;
    ok(&r, 200);
    let r = get(&c, "/api/receivers?floor=1").await;
    assert_eq!(r.body["items"][0]["node"], "pi-1");
    assert_eq!(r.body["items"][0]["rssi_at_1m"], -59.0);
    ok(&delete(&c, "/api/receivers/pi-1").await, 204);
    err(
        &get(&c, "/api/receivers/pi-1").await,
        404,
        "not_found",
        "receiver pi-1",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_devices_rules_crud() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    setup_building(&c).await;
    let mut lab = room("lab", 0);
    lab["restricted"] = json!(true);
    ok(&post(&c, "/api/rooms", lab).await, 201);

    let r = post(
        &c,
        "/api/people",
        json!({"id": "alice", "name": "Alice", "groups": ["staff"]}),
    )
    .await;
    ok(&r, 201);
    assert_eq!(r.location.as_deref(), Some("/api/people/alice"));
    err(
        &post(&c, "/api/people", json!({"id": "alice", "name": "Other"})).await,
        409,
        "already_exists",
        "person alice",
    );
    err(
        &post(
            &c,
            "/api/people",
            json!({"id": "bob", "name": "Bob", "groups": ["a b"]}),
        )
        .await,
        400,
        "invalid",
        "groups[0]",
    );
    ok(
        &post(&c, "/api/people", json!({"id": "bob", "name": "Bob"})).await,
        201,
    );
    let r = put(
        &c,
        "/api/people/bob",
        json!({"name": "Robert", "groups": ["visitors"]}),
    )
    .await;
    ok(&r, 200);
    assert_eq!(
        get(&c, "/api/people/bob").await.body["groups"],
        json!(["visitors"])
    );
    let r = get(&c, "/api/people?limit=1").await;
    assert_eq!(r.body["items"][0]["id"], "alice");
    assert_eq!(r.body["next_cursor"], "alice");

    // Devices.
    let r = post(
        &c,
        "/api/devices",
        json!({"id": "tag-1", "name": "Alice's badge", "owner": "alice", "kind": "badge", "groups": ["badges"]}),
    )
    .await;
    ok(&r, 201);
    assert_eq!(r.location.as_deref(), Some("/api/devices/tag-1"));
    ok(
        &post(
            &c,
            "/api/devices",
            json!({"id": "aa:bb:cc:dd:ee:01", "name": "Phone", "kind": "phone"}),
        )
        .await,
        201,
    );
    err(
        &post(&c, "/api/devices", json!({"id": "tag 2", "name": "x"})).await,
        400,
        "invalid",
        "id",
    );
    err(
        &post(&c, "/api/devices", json!({"id": "tag-2", "kind": "watch"})).await,
        400,
        "bad_body",
        "kind",
    );
    err(
        &post(&c, "/api/devices", json!({"id": "tag-2", "owner": "carol"})).await,
        422,
        "unknown_reference",
        "owner: person \"carol\" does not exist",
    );
    err(
        &post(&c, "/api/devices", json!({"id": "tag-1"})).await,
        409,
        "already_exists",
        "device tag-1",
    );
    let r = get(&c, "/api/devices/tag-1").await;
    assert_eq!(r.body["owner"], "alice");
    assert_eq!(r.body["kind"], "badge");
    let r = put(
        &c,
        "/api/devices/aa:bb:cc:dd:ee:01",
        json!({"name": "Bob's phone", "owner": "bob", "kind": "phone"}),
    )
    .await;
    ok(&r, 200);
    let r = get(&c, "/api/devices?owner=bob").await;
    assert_eq!(r.body["items"][0]["id"], "aa:bb:cc:dd:ee:01");
    let r = get(&c, "/api/devices?group=badges").await;
    assert_eq!(r.body["items"][0]["id"], "tag-1");
    let r = get(&c, "/api/people?group=visitors").await;
    assert_eq!(r.body["items"][0]["id"], "bob");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = get(&c, "/api/devices?kind=badge").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    err(
        &get(&c, "/api/devices?kind=watch").await,
        400,
        "bad_query",
        "kind",
    );

    // Access rules.
    let r = post(
        &c,
        "/api/access-rules",
        json!({"person": "alice", "room": "lab", "weekdays": ["mon", "tue", "wed", "thu", "fri"],
               "from": "08:00", "until": "18:30", "valid_from": "2026-01-01T00:00:00Z"}),
    )
    .await;
    ok(&r, 201);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.location, Some(format!("/api/access-rules/{id}")));
    assert_eq!(r.body["until"], "18:30");
    assert_eq!(r.body["valid_from"], "2026-01-01T00:00:00.000Z");
    let r = get(&c, &format!("/api/access-rules/{id}")).await;
    assert_eq!(
        r.body["weekdays"],
        json!(["mon", "tue", "wed", "thu", "fri"])
    );
    let r = post(
        &c,
        "/api/access-rules",
        json!({"group": "visitors", "room": "lab", "from": "22:00", "until": "06:00"}),
    )
    .await;
    ok(&r, 201);
    let gid = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["weekdays"].as_array().unwrap().len(), 7);
    for (body, status, code, needle) in [
        (json!({"room": "lab"}), 400, "invalid", "person"),
        (
            json!({"person": "alice", "group": "g", "room": "lab"}),
            400,
            "invalid",
            "person",
        ),
        (
            json!({"person": "alice", "room": "lab", "from": "8am", "until": "18:00"}),
            400,
            "invalid",
            "from",
        ),
        (
            json!({"person": "alice", "room": "lab", "from": "08:00"}),
            400,
            "invalid",
            "until",
        ),
        (
            json!({"person": "alice", "room": "lab", "weekdays": ["someday"]}),
            400,
            "bad_body",
            "weekdays",
        ),
        (
            json!({"person": "alice", "room": "lab", "valid_from": "yesterday"}),
            400,
            "invalid",
            "valid_from",
        ),
        (
            json!({"person": "alice", "room": "lab", "id": 5}),
            400,
            "invalid",
            "id",
        ),
        (
            json!({"person": "carol", "room": "lab"}),
            422,
            "unknown_reference",
            "person",
        ),
        (
            json!({"person": "alice", "room": "nope"}),
            422,
            "unknown_reference",
            "room",
        ),
    ] {
        err(
            &post(&c, "/api/access-rules", body).await,
            status,
            code,
            needle,
        );
    }
    let r = put(
        &c,
        &format!("/api/access-rules/{id}"),
        json!({"person": "alice", "room": "lab", "weekdays": ["sat"]}),
    )
    .await;
    ok(&r, 200);
    assert!(r.body["from"].is_null());
    let r = get(&c, "/api/access-rules?person=alice").await;
    assert_eq!(r.body["items"][0]["weekdays"], json!(["sat"]));
    let r = get(&c, "/api/access-rules?limit=1").await;
    assert_eq!(r.body["next_cursor"], id.to_string());
    let r = get(&c, &format!("/api/access-rules?limit=1&cursor={id}")).await;
    assert_eq!(r.body["items"][0]["id"], gid);
    err(
        &get(&c, "/api/access-rules/abc").await,
        404,
        "not_found",
        "access rule abc",
    );
    err(
        &get(&c, "/api/access-rules?cursor=x").await,
        400,
        "bad_cursor",
        "cursor",
    );

    // A person keeps devices and rules; deleting in order works.
    err(
        &delete(&c, "/api/people/alice").await,
        409,
        "in_use",
        &format!("person alice is referred to by device tag-1, access rule {id}"),
    );
    ok(&delete(&c, &format!("/api/access-rules/{id}")).await, 204);
    err(
        &delete(&c, &format!("/api/access-rules/{id}")).await,
        404,
        "not_found",
        "access rule",
    );
    ok(&delete(&c, "/api/devices/tag-1").await, 204);
    ok(&delete(&c, "/api/people/alice").await, 204);
    err(
        &get(&c, "/api/people/alice").await,
        404,
        "not_found",
        "person alice",
    );

    // The document lists the model's paths.
    let doc = get(&c, "/api/openapi.json").await;
    for p in [
        "/api/buildings",
        "/api/buildings/{id}/floors/{level}",
        "/api/rooms/{id}",
        "/api/doors",
        "/api/receivers/{node}",
        "/api/devices/{id}",
        "/api/people",
        "/api/access-rules/{id}",
    ] {
        assert!(doc.body["paths"][p].is_object(), "{p} missing in OpenAPI");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_file_is_imported_once_and_edits_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("m.db").display());
    let opts = CentralOptions {
        database_url: Some(db),
        demo: true,
        ..CentralOptions::default()
    };
    let example = roomsense_common::sim::Building::example();
    let c = TestCentral::start(opts.clone()).await.unwrap();
    let r = get(&c, "/api/buildings/example-office").await;
    ok(&r, 200);
    assert_eq!(r.body["name"], example.name);
    let r = get(&c, "/api/rooms?building=example-office").await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        example.rooms.len()
    );
    let r = get(&c, "/api/receivers").await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        example.receivers.len()
    );
    let r = get(&c, "/api/doors").await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        example.doors.len()
    );
    let r = get(&c, "/api/devices").await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        example.devices.len()
    );

    // An admin renames a room and deletes a door.
    let room_id = &example.rooms[0].id;
    let mut room = get(&c, &format!("/api/rooms/{room_id}")).await.body;
    room["name"] = json!("Renamed by admin");
    ok(&put(&c, &format!("/api/rooms/{room_id}"), room).await, 200);
    let door_id = example.doors[0].id.as_str();
    ok(&delete(&c, &format!("/api/doors/{door_id}")).await, 204);
    c.app.shutdown(Duration::from_secs(10)).await.unwrap();

    let c = TestCentral::start(opts).await.unwrap();
    let r = get(&c, &format!("/api/rooms/{room_id}")).await;
    assert_eq!(r.body["name"], "Renamed by admin");
    err(
        &get(&c, &format!("/api/doors/{door_id}")).await,
        404,
        "not_found",
        door_id,
    );
    let r = get(&c, "/api/access-rules").await;
    let restricted = example.rooms.iter().filter(|r| r.restricted).count();
    assert_eq!(r.body["items"].as_array().unwrap().len(), restricted);
    c.app.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_merges_and_validates() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    setup_building(&c).await;
    ok(&post(&c, "/api/rooms", room("lobby", 0)).await, 201);
    let r = patch(
        &c,
        "/api/rooms/lobby",
        json!({"capacity": 12, "restricted": true}),
    )
    .await;
    ok(&r, 200);
    assert_eq!(r.body["capacity"], 12);
    let r = get(&c, "/api/rooms/lobby").await;
    assert_eq!(r.body["name"], "lobby");
    assert_eq!(r.body["restricted"], true);
    let r = patch(&c, "/api/rooms/lobby", json!({"capacity": null})).await;
    assert!(r.body["capacity"].is_null());
    err(
        &patch(&c, "/api/rooms/lobby", json!({"polygon": [[0, 0], [1, 1]]})).await,
        400,
        "invalid",
        "polygon",
    );
    err(
        &patch(&c, "/api/rooms/lobby", json!({"floor": 9})).await,
        422,
        "unknown_reference",
        "floor",
    );
    err(
        &patch(&c, "/api/rooms/lobby", json!({"colour": "red"})).await,
        400,
        "bad_body",
        "colour",
    );
    err(
        &patch(&c, "/api/rooms/lobby", json!({"id": "other"})).await,
        400,
        "id_mismatch",
        "id",
    );
    err(
        &patch(&c, "/api/rooms/lobby", json!([1])).await,
        400,
        "bad_body",
        "object",
    );
    err(
        &patch(&c, "/api/rooms/nope", json!({})).await,
        404,
        "not_found",
        "room nope",
    );

    let r = patch(
        &c,
        "/api/buildings/hq",
        json!({"time_zone": "America/New_York"}),
    )
    .await;
    ok(&r, 200);
    assert_eq!(r.body["name"], "HQ");
    let r = patch(
        &c,
        "/api/buildings/hq/floors/0",
        json!({"plan": {"url": "/plans/0.svg", "scale_px_per_m": 20}}),
    )
    .await;
    ok(&r, 200);
    assert_eq!(r.body["plan"]["origin_px"], json!([0.0, 0.0]));
    err(
        &patch(&c, "/api/buildings/hq/floors/0", json!({"level": 3})).await,
        400,
        "id_mismatch",
        "level",
    );

    ok(
        &post(&c, "/api/people", json!({"id": "ann", "name": "Ann"})).await,
        201,
    );
    ok(
        &post(
            &c,
            "/api/devices",
            json!({"id": "tag-9", "owner": "ann", "groups": ["g1"]}),
        )
        .await,
        201,
    );
    let r = patch(
        &c,
        "/api/devices/tag-9",
        json!({"owner": null, "name": "Spare"}),
    )
    .await;
    ok(&r, 200);
    assert!(r.body["owner"].is_null());
    assert_eq!(r.body["groups"], json!(["g1"]));
    ok(
        &patch(&c, "/api/people/ann", json!({"groups": ["staff"]})).await,
        200,
    );
    ok(
        &post(
            &c,
            "/api/doors",
            json!({"id": "front", "rooms": ["lobby"], "node": "pi-1"}),
        )
        .await,
        201,
    );
    let r = patch(&c, "/api/doors/front", json!({"gpio_pin": 4})).await;
    assert_eq!(r.body["gpio_pin"], 4);
    ok(
        &post(
            &c,
            "/api/receivers",
            json!({"node": "pi-1", "building": "hq", "floor": 0, "x": 0, "y": 0}),
        )
        .await,
        201,
    );
    let r = patch(&c, "/api/receivers/pi-1", json!({"rssi_at_1m": -65})).await;
    assert_eq!(r.body["rssi_at_1m"], -65.0);

    let r = post(
        &c,
        "/api/access-rules",
        json!({"person": "ann", "room": "lobby", "from": "08:00", "until": "17:00"}),
    )
    .await;
    let id = r.body["id"].as_i64().unwrap();
    let path = format!("/api/access-rules/{id}");
    let r = patch(&c, &path, json!({"weekdays": ["sun"], "until": "19:00"})).await;
    ok(&r, 200);
    assert_eq!(r.body["from"], "08:00");
    assert_eq!(r.body["until"], "19:00");
    assert_eq!(r.body["weekdays"], json!(["sun"]));
    err(
        &patch(&c, &path, json!({"until": null})).await,
        400,
        "invalid",
        "until",
    );
    err(
        &patch(&c, &path, json!({"room": "nope"})).await,
        422,
        "unknown_reference",
        "room",
    );
}
