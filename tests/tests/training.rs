//! Training over REST: import the UJIIndoorLoc fixture slice, train, locate a client's scan
//! with `POST /api/position`, survive a restart; calibration sessions over real MQTT;
//! multilateration without a model; bad input.

use chrono::{Duration as CDuration, Utc};
use roomsense_central::config::Config;
use roomsense_central::positioning::read_uji;
use roomsense_common::protocol::*;
use roomsense_common::{DeviceId, NodeId, TopicKind};
use roomsense_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn post(c: &TestCentral, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let r = c
        .http
        .post(format!("{}{}", c.base, path))
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn post_csv(c: &TestCentral, path: &str, body: String) -> anyhow::Result<(u16, Value)> {
    let r = c
        .http
        .post(format!("{}{}", c.base, path))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// Waits for the training job to leave `running`; returns its final view.
async fn wait_job(c: &TestCentral) -> anyhow::Result<Value> {
    wait_for(
        "training job to finish",
        Duration::from_secs(120),
        || async {
            let (_, v) = c.get("/api/training").await.ok()?;
            (v["state"] != "running").then_some(v)
        },
    )
    .await
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_on_the_uji_slice_and_locates_a_scan_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let opts = CentralOptions {
        database_url: Some(url),
        ..CentralOptions::default()
    };
    let c = TestCentral::start(opts.clone()).await.unwrap();

    // nothing to locate with yet: no model, no receivers
    let scan = json!({"wifi": [{"bssid": "WAP001", "rssi": -60}]});
    let (st, v) = post(&c, "/api/position", &scan).await.unwrap();
    assert_eq!((st, error_code(&v)), (503, "no_model"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("POST /api/training"));

    // training without samples fails with the reason
    let (st, v) = post(&c, "/api/training", &Value::Null).await.unwrap();
    assert_eq!(st, 202, "{v}");
    let job = wait_job(&c).await.unwrap();
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"]
        .as_str()
        .unwrap()
        .contains("no labelled samples"));

    // a malformed file names the line and column, and stores nothing
    let train_csv = std::fs::read_to_string(fixture("uji-train-small.csv")).unwrap();
    let mut lines: Vec<String> = train_csv.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|h| *h == "WAP005").unwrap();
    let mut bad: Vec<String> = lines[3].split(',').map(String::from).collect();
    bad[col] = "loud".into();
    lines[3] = bad.join(",");
    let (st, v) = post_csv(&c, "/api/training/samples", lines.join("\n"))
        .await
        .unwrap();
    assert_eq!((st, error_code(&v)), (400, "bad_csv"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("line 4") && msg.contains("WAP005"), "{msg}");
    let (st, v) = post_csv(&c, "/api/training/samples?kind=radio", train_csv.clone())
        .await
        .unwrap();
    assert_eq!((st, error_code(&v)), (400, "bad_kind"), "{v}");
    let (_, v) = c.get("/api/training/samples?limit=1").await.unwrap();
    assert_eq!(v["total"], 0);

    // import the fixture slice
    let (st, v) = post_csv(&c, "/api/training/samples", train_csv.clone())
        .await
        .unwrap();
    assert_eq!(st, 201, "{v}");
    let data = read_uji(train_csv.as_bytes()).unwrap();
    let imported = v["imported"].as_u64().unwrap() as usize;
    assert_eq!(
        imported + v["skipped_empty"].as_u64().unwrap() as usize,
        data.len()
    );
    assert!(imported > 300, "{v}");
    let (st, page) = c
        .get("/api/training/samples?limit=5&source=import")
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert_eq!(page["total"].as_u64().unwrap() as usize, imported);
    let first = &page["items"][0];
    assert!(first["readings"][0]["emitter"]
        .as_str()
        .unwrap()
        .starts_with("wifi:wap"));
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, next) = c
        .get(&format!("/api/training/samples?limit=5&cursor={cursor}"))
        .await
        .unwrap();
    assert!(next["items"][0]["id"].as_i64() > page["items"][4]["id"].as_i64());

    // train; a second start while it runs is refused
    let started = Instant::now();
    let (st, v) = post(&c, "/api/training", &Value::Null).await.unwrap();
    assert_eq!((st, v["state"].as_str()), (202, Some("running")), "{v}");
    let (st, v) = post(&c, "/api/training", &Value::Null).await.unwrap();
    assert_eq!((st, error_code(&v)), (409, "training_running"), "{v}");
    let job = wait_job(&c).await.unwrap();
    eprintln!("training took {:?}: {job}", started.elapsed());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["samples"].as_u64().unwrap() as usize, imported);
    assert!(job["duration_ms"].as_i64().unwrap() >= 0);
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    let acc = &job["accuracy"];
    for key in [
        "mean_error",
        "median_error",
        "p95_error",
        "floor_hit_rate",
        "building_hit_rate",
    ] {
        assert!(acc[key].as_f64().is_some(), "{key} missing: {acc}");
    }
    assert!(acc["floor_hit_rate"].as_f64().unwrap() > 0.5, "{acc}");
    // UJI has no rooms: no room hit rate
    assert!(acc["room_hit_rate"].is_null());
    let version = job["model_version"].as_i64().unwrap();
    assert_eq!(job["active_model"]["version"], version);

    let (_, models) = c.get("/api/models").await.unwrap();
    let items = models["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["version"].as_i64(), items[0]["active"].as_bool()),
        (Some(version), Some(true))
    );
    assert!(items[0]["params"]["k"].as_u64().is_some(), "{}", items[0]);

    // a training sample's own scan is located near its label, on its floor and building
    let s = &data.samples[10];
    let wifi: Vec<Value> = data
        .named_readings(s)
        .iter()
        .map(|(b, r)| json!({"bssid": b, "rssi": r}))
        .collect();
    let scan = json!({"wifi": wifi, "at": "2026-01-31T08:00:00Z"});
    let (st, est) = post(&c, "/api/position", &scan).await.unwrap();
    assert_eq!(st, 200, "{est}");
    let err = ((est["x"].as_f64().unwrap() - s.x).powi(2)
        + (est["y"].as_f64().unwrap() - s.y).powi(2))
    .sqrt();
    assert!(err < 10.0, "error {err:.1}: {est}");
    assert_eq!(est["floor"].as_i64(), Some(i64::from(s.floor)), "{est}");
    assert_eq!(est["building"], s.building.to_string());
    assert_eq!(est["method"], "fingerprint-knn");
    assert_eq!(est["model_version"], version);
    assert_eq!(est["at"], "2026-01-31T08:00:00.000Z");
    assert_eq!(
        est["emitters_used"].as_u64().unwrap() as usize,
        s.readings.len()
    );
    assert!(est["error_radius_m"].as_f64().unwrap() > 0.0);

    // bad scans
    for (body, code, needle) in [
        (json!({}), "empty_scan", "no readings"),
        (
            json!({"wifi": [{"bssid": "WAP001", "rssi": 5}]}),
            "bad_rssi",
            "wifi[0].rssi",
        ),
        (
            json!({"ble": [{"id": "ok", "rssi": -50}, {"id": "a b", "rssi": -50}]}),
            "bad_emitter_id",
            "ble[1].id",
        ),
        (json!({"wifi": [], "extra": 1}), "bad_body", "extra"),
        (
            json!({"wifi": [{"bssid": "WAP001", "rssi": -50}], "at": "yesterday"}),
            "bad_time",
            "at",
        ),
        (
            json!({"wifi": (0..1001).map(|i| json!({"bssid": format!("b{i}"), "rssi": -70})).collect::<Vec<_>>()}),
            "scan_too_large",
            "1001",
        ),
    ] {
        let (st, v) = post(&c, "/api/position", &body).await.unwrap();
        assert_eq!((st, error_code(&v)), (400, code), "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    let (st, v) = post(
        &c,
        "/api/position",
        &json!({"wifi": [{"bssid": "unknown-ap", "rssi": -40}]}),
    )
    .await
    .unwrap();
    assert_eq!((st, error_code(&v)), (409, "scan_not_locatable"), "{v}");

    // delete one sample, then unknown ids
    let id = first["id"].as_i64().unwrap();
    let del = |path: String| {
        let http = c.http.clone();
        let base = c.base.clone();
        async move {
            http.delete(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(del(format!("/api/training/samples/{id}")).await, 204);
    assert_eq!(del(format!("/api/training/samples/{id}")).await, 404);
    assert_eq!(del("/api/training/samples/x".into()).await, 400);

    // the model survives a restart and is the one in use
    c.app.shutdown(Duration::from_secs(10)).await.unwrap();
    let c = TestCentral::start(opts).await.unwrap();
    let (_, job) = c.get("/api/training").await.unwrap();
    assert_eq!(job["state"], "idle");
    assert_eq!(job["active_model"]["version"], version);
    let (st, again) = post(&c, "/api/position", &scan).await.unwrap();
    assert_eq!(st, 200, "{again}");
    assert_eq!(
        (again["x"].clone(), again["model_version"].clone()),
        (est["x"].clone(), est["model_version"].clone())
    );

    // delete everything imported
    let r = c
        .http
        .delete(format!("{}/api/training/samples?source=import", c.base))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deleted"].as_u64().unwrap() as usize, imported - 1);
    c.app.shutdown(Duration::from_secs(10)).await.unwrap();
}

fn calibration_config(c: &mut Config) {
    c.training.calibration_grace = Duration::from_millis(200);
    c.training.calibration_slice = Duration::from_millis(500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_turns_the_next_seconds_of_readings_into_samples() {
    let c = TestCentral::start(CentralOptions {
        configure: Some(calibration_config),
        ..CentralOptions::default()
    })
    .await
    .unwrap();

    // bad requests name the field
    for (body, code, needle) in [
        (
            json!({"device": "a b", "x": 1, "y": 2, "floor": 0, "duration_s": 2}),
            "bad_device_id",
            "device",
        ),
        (
            json!({"device": "tag-cal", "x": 1e12, "y": 2, "floor": 0, "duration_s": 2}),
            "bad_label",
            "x",
        ),
        (
            json!({"device": "tag-cal", "x": 1, "y": 2, "floor": 0, "duration_s": 0}),
            "bad_duration",
            "duration_s",
        ),
        (
            json!({"device": "tag-cal", "x": 1, "y": 2, "floor": 0, "duration_s": 100000}),
            "bad_duration",
            "training.max_calibration",
        ),
        (
            json!({"device": "tag-cal", "x": 1, "y": 2, "duration_s": 2}),
            "bad_body",
            "floor",
        ),
    ] {
        let (st, v) = post(&c, "/api/calibration", &body).await.unwrap();
        assert_eq!((st, error_code(&v)), (400, code), "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }

    let (st, cal) = post(
        &c,
        "/api/calibration",
        &json!({"device": "tag-cal", "x": 3.5, "y": 4.0, "floor": 1, "building": "hq", "duration_s": 2}),
    )
    .await
    .unwrap();
    assert_eq!(st, 202, "{cal}");
    assert_eq!(cal["state"], "collecting");
    let id = cal["id"].as_i64().unwrap();
    let (st, silent) = post(
        &c,
        "/api/calibration",
        &json!({"device": "tag-nobody-hears", "x": 0, "y": 0, "floor": 0, "duration_s": 1}),
    )
    .await
    .unwrap();
    assert_eq!(st, 202, "{silent}");

    // two receivers hear the tag inside the window; one sighting of another tag
    let mut p = Publisher::connect(c.mqtt_addr(), &unique("cal"))
        .await
        .unwrap();
    let now = Utc::now();
    for (node, rssi) in [("rx-a", -61.0f32), ("rx-b", -74.0)] {
        let batch = Batch {
            v: SCHEMA_VERSION,
            node: NodeId::parse(node).unwrap(),
            seq: 1,
            sent_at: now,
            items: ["tag-cal", "tag-other"]
                .iter()
                .map(|d| BleSighting {
                    id: DeviceId::parse(d).unwrap(),
                    rssi,
                    tx_power: None,
                    count: 3,
                    first_at: now - CDuration::milliseconds(100),
                    last_at: now,
                    kind: SightingKind::Generic,
                })
                .collect(),
        };
        p.publish(
            &topic(&c.topics, node, TopicKind::Ble),
            payload(&batch),
            false,
        )
        .await
        .unwrap();
    }

    let done = wait_for("calibration to be collected", DEADLINE, || async {
        let (_, v) = c.get(&format!("/api/calibration/{id}")).await.ok()?;
        (v["state"] != "collecting").then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["samples"], 1, "{done}");
    let (_, samples) = c
        .get(&format!("/api/training/samples?session={id}"))
        .await
        .unwrap();
    let s = &samples["items"][0];
    assert_eq!(
        (s["source"].as_str(), s["device"].as_str()),
        (Some("ble"), Some("tag-cal"))
    );
    assert_eq!(
        (s["x"].as_f64(), s["y"].as_f64(), s["floor"].as_i64()),
        (Some(3.5), Some(4.0), Some(1))
    );
    assert_eq!(s["building"], "hq");
    assert_eq!(
        s["readings"],
        json!([{"emitter": "ble:rx-a", "rssi": -61.0}, {"emitter": "ble:rx-b", "rssi": -74.0}])
    );

    let sid = silent["id"].as_i64().unwrap();
    let failed = wait_for("silent calibration to finish", DEADLINE, || async {
        let (_, v) = c.get(&format!("/api/calibration/{sid}")).await.ok()?;
        (v["state"] != "collecting").then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("no reading of tag-nobody-hears"));

    let (_, list) = c.get("/api/calibration").await.unwrap();
    let ids: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [sid, id]);
    let (st, v) = c.get("/api/calibration/999999").await.unwrap();
    assert_eq!((st, error_code(&v)), (404, "calibration_not_found"));
    c.app.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_model_the_receivers_multilaterate() {
    let c = TestCentral::start(CentralOptions {
        demo: true,
        ..CentralOptions::default()
    })
    .await
    .unwrap();
    // A tag near pi-meeting (12, 9) on the ground floor of the demo building.
    let ble: Vec<Value> = [
        ("pi-meeting", -55),
        ("pi-lobby", -78),
        ("pi-kitchen", -76),
        ("pi-corridor-0", -72),
        ("pi-server", -76),
    ]
    .iter()
    .map(|(id, r)| json!({"id": id, "rssi": r}))
    .collect();
    let (st, est) = post(&c, "/api/position", &json!({ "ble": ble }))
        .await
        .unwrap();
    assert_eq!(st, 200, "{est}");
    assert_eq!(est["method"], "multilateration");
    assert!(est["model_version"].is_null());
    assert_eq!(est["floor"], 0);
    assert_eq!(est["emitters_used"], 5);
    let err = ((est["x"].as_f64().unwrap() - 12.0).powi(2)
        + (est["y"].as_f64().unwrap() - 9.0).powi(2))
    .sqrt();
    assert!(err < 5.0, "{est}");
    assert!(est["room"].is_string(), "{est}");
    // readings of no receiver at all
    let (st, v) = post(
        &c,
        "/api/position",
        &json!({"ble": [{"id": "stranger", "rssi": -50}]}),
    )
    .await
    .unwrap();
    assert_eq!((st, error_code(&v)), (409, "scan_not_locatable"), "{v}");
    // the OpenAPI document lists the training paths
    let (_, doc) = c.get("/api/openapi.json").await.unwrap();
    for p in [
        "/api/position",
        "/api/calibration",
        "/api/calibration/{id}",
        "/api/training",
        "/api/training/samples",
        "/api/training/samples/{id}",
        "/api/models",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing in OpenAPI");
    }
    c.app.shutdown(Duration::from_secs(10)).await.unwrap();
}
