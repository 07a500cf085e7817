//! Contract tests of `TrainingStore`, on SQLite and Postgres.

use super::contract::contract_suite;
use super::training::*;
use super::Store;

fn sample(source: &str, x: f64, readings: &[(&str, f32)]) -> NewSample {
    NewSample {
        session_id: None,
        source: source.into(),
        device: Some("tag-1".into()),
        x,
        y: 2.5,
        floor: -1,
        building: "hq".into(),
        at_ms: Some(1_000),
        readings: readings.iter().map(|(e, r)| (e.to_string(), *r)).collect(),
    }
}

fn all(limit: i64) -> SampleQuery {
    SampleQuery {
        limit,
        ..SampleQuery::default()
    }
}

pub async fn stores_lists_and_deletes_samples(store: &dyn Store) {
    let ids = store
        .insert_samples(&[
            sample(
                SOURCE_IMPORT,
                1.0,
                &[("wifi:WAP001", -71.5), ("wifi:WAP002", -80.0)],
            ),
            sample(SOURCE_BLE, 2.0, &[("ble:node-1", -60.0)]),
            sample(SOURCE_IMPORT, 3.0, &[]),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let got = store.samples(&all(10)).await.unwrap();
    assert_eq!(got.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        got[0].readings,
        vec![
            ("wifi:WAP001".to_string(), -71.5),
            ("wifi:WAP002".into(), -80.0)
        ]
    );
    assert_eq!(
        (got[0].x, got[0].y, got[0].floor, got[0].building.as_str()),
        (1.0, 2.5, -1, "hq")
    );
    assert_eq!(got[1].source, SOURCE_BLE);
    assert_eq!(got[0].device.as_deref(), Some("tag-1"));
    assert!(got[2].readings.is_empty());

    // keyset pages and filters
    let page = store
        .samples(&SampleQuery {
            after_id: Some(ids[0]),
            limit: 1,
            ..SampleQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, ids[1]);
    let imports = store
        .samples(&SampleQuery {
            source: Some(SOURCE_IMPORT.into()),
            limit: 10,
            ..SampleQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(imports.len(), 2);
    assert_eq!(store.count_samples(None).await.unwrap(), 3);
    assert_eq!(store.count_samples(Some(SOURCE_IMPORT)).await.unwrap(), 2);

    // delete one, then by source, then the rest
    assert!(store.delete_sample(ids[1]).await.unwrap());
    assert!(!store.delete_sample(ids[1]).await.unwrap());
    assert_eq!(store.delete_samples(Some(SOURCE_BLE)).await.unwrap(), 0);
    assert_eq!(store.delete_samples(Some(SOURCE_IMPORT)).await.unwrap(), 2);
    assert_eq!(store.count_samples(None).await.unwrap(), 0);
    assert!(store.insert_samples(&[]).await.unwrap().is_empty());

    // a large import spans several INSERT chunks and keeps its order
    let many: Vec<NewSample> = (0..1300)
        .map(|i| sample(SOURCE_IMPORT, f64::from(i), &[("wifi:a", -50.0)]))
        .collect();
    let ids = store.insert_samples(&many).await.unwrap();
    assert_eq!(ids.len(), 1300);
    let got = store.samples(&all(2000)).await.unwrap();
    assert_eq!(got.len(), 1300);
    assert!(got.iter().enumerate().all(|(i, s)| s.x == i as f64));
    assert_eq!(store.delete_samples(None).await.unwrap(), 1300);
}

pub async fn calibration_sessions_collect_once(store: &dyn Store) {
    let new = |device: &str, end_ms: i64| NewCalibration {
        device: device.into(),
        x: 4.0,
        y: 5.0,
        floor: 1,
        building: "hq".into(),
        start_ms: 1_000,
        end_ms,
    };
    let a = store
        .create_calibration(&new("tag-1", 9_000))
        .await
        .unwrap();
    let b = store
        .create_calibration(&new("tag-2", 5_000))
        .await
        .unwrap();
    assert_eq!(a.state, CALIBRATION_COLLECTING);
    assert_eq!((a.x, a.y, a.floor, a.samples), (4.0, 5.0, 1, 0));
    assert_eq!(store.calibration(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.calibration(a.id + 100).await.unwrap(), None);
    // soonest end first
    let pending = store.collecting_calibrations().await.unwrap();
    assert_eq!(
        pending.iter().map(|c| c.id).collect::<Vec<_>>(),
        [b.id, a.id]
    );

    let mut s = sample(SOURCE_BLE, 4.0, &[("ble:node-1", -60.0)]);
    s.session_id = Some(a.id);
    assert!(store
        .finish_calibration(a.id, &[s.clone(), s.clone()], None)
        .await
        .unwrap());
    // finishing twice stores nothing twice
    assert!(!store.finish_calibration(a.id, &[s], None).await.unwrap());
    let done = store.calibration(a.id).await.unwrap().unwrap();
    assert_eq!((done.state.as_str(), done.samples), (CALIBRATION_DONE, 2));
    let of_a = store
        .samples(&SampleQuery {
            session_id: Some(a.id),
            limit: 10,
            ..SampleQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(of_a.len(), 2);

    assert!(store
        .finish_calibration(b.id, &[], Some("no reading of tag-2 in the window"))
        .await
        .unwrap());
    let failed = store.calibration(b.id).await.unwrap().unwrap();
    assert_eq!(failed.state, CALIBRATION_FAILED);
    assert_eq!(
        failed.error.as_deref(),
        Some("no reading of tag-2 in the window")
    );
    assert!(store.collecting_calibrations().await.unwrap().is_empty());

    let newest_first = store.calibrations(None, 10).await.unwrap();
    assert_eq!(
        newest_first.iter().map(|c| c.id).collect::<Vec<_>>(),
        [b.id, a.id]
    );
    let older = store.calibrations(Some(b.id), 10).await.unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, a.id);
}

pub async fn models_are_versioned(store: &dyn Store) {
    assert_eq!(store.latest_model().await.unwrap(), None);
    let m = |n: i64| NewModel {
        samples: n,
        duration_ms: 20,
        params: r#"{"k":3}"#.into(),
        report: r#"{"mean_error":1.5}"#.into(),
        path_loss: "{}".into(),
        model: format!(r#"{{"refs":{n}}}"#),
    };
    let v1 = store.insert_model(&m(10)).await.unwrap();
    let v2 = store.insert_model(&m(20)).await.unwrap();
    assert!(v2.version > v1.version);
    assert_eq!(v1.samples, 10);
    let latest = store.latest_model().await.unwrap().unwrap();
    assert_eq!(latest.version, v2.version);
    assert_eq!(latest.model, r#"{"refs":20}"#);
    assert_eq!(latest.params, r#"{"k":3}"#);
    let list = store.models(10).await.unwrap();
    assert_eq!(list, vec![v2.clone(), v1.clone()]);
    assert_eq!(store.models(1).await.unwrap(), vec![v2]);
    let old = store.model(v1.version).await.unwrap().unwrap();
    assert_eq!(old.model, r#"{"refs":10}"#);
    assert_eq!(store.model(v1.version + 100).await.unwrap(), None);
}

contract_suite!(
    stores_lists_and_deletes_samples,
    calibration_sessions_collect_once,
    models_are_versioned,
);
