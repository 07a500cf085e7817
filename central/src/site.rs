//! The site positioning works on, as the administrators keep it: the configured building
//! file, with its rooms, doors and receivers replaced by the stored ones (edited over
//! REST), reloaded whenever the stored model changes.

use crate::live::LivePositions;
use crate::model::{Door, Receiver, Room};
use crate::storage::model::ListQuery;
use crate::storage::Store;
use crate::training::Training;
use roomsense_common::ids::{DoorId, NodeId};
use roomsense_common::sim::{self, Building};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The building file `file` with the stored rooms, doors and receivers of building
/// `building_id` (pure). A door keeps the file's position when the file has it, else it
/// is put at the middle of the longest stretch of wall its two rooms share (none: a door
/// to the outside added over REST has no position, so its openings are not put down to a
/// device). Rows that do not convert (an id the edge could not report) are left out.
pub fn merge(
    file: &Building,
    building_id: &str,
    rooms: &[Room],
    doors: &[Door],
    receivers: &[Receiver],
) -> Building {
    let mut b = file.clone();
    b.rooms = rooms
        .iter()
        .filter(|r| r.building == building_id)
        .map(|r| sim::Room {
            id: r.id.clone(),
            name: r.name.clone(),
            floor: r.floor,
            polygon: r.polygon.clone(),
            capacity: r.capacity,
            restricted: r.restricted,
        })
        .collect();
    let polygon = |id: &str| {
        b.rooms
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.polygon.as_slice())
    };
    let mut out_doors = Vec::new();
    for d in doors {
        if !d.rooms.iter().any(|r| polygon(r).is_some()) {
            continue;
        }
        let (Ok(id), Ok(node)) = (DoorId::parse(&d.id), NodeId::parse(&d.node)) else {
            continue;
        };
        let known = file.doors.iter().find(|f| f.id == id).map(|f| f.position);
        let shared = match d.rooms.as_slice() {
            [a, c] => polygon(a)
                .zip(polygon(c))
                .and_then(|(pa, pc)| shared_wall_middle(pa, pc)),
            _ => None,
        };
        let Some(position) = known.or(shared) else {
            continue;
        };
        let mut joined = d.rooms.clone();
        if joined.len() == 1 {
            joined.push(sim::OUTSIDE.to_string());
        }
        out_doors.push(sim::Door {
            id,
            rooms: joined,
            position,
            node,
        });
    }
    b.doors = out_doors;
    b.stairs
        .retain(|s| s.rooms.iter().all(|r| polygon(r).is_some()));
    b.receivers = receivers
        .iter()
        .filter(|r| r.building == building_id)
        .filter_map(|r| {
            let node = NodeId::parse(&r.node).ok()?;
            let noise = file
                .receivers
                .iter()
                .find(|f| f.node == node)
                .map_or(4.0, |f| f.noise_sigma_db);
            Some(sim::Receiver {
                node,
                x: r.x,
                y: r.y,
                floor: r.floor,
                rssi_at_1m: r.rssi_at_1m,
                path_loss_exponent: r.path_loss_exponent,
                noise_sigma_db: noise,
            })
        })
        .collect();
    b
}

/// Middle of the longest stretch of outline two polygons share (edges on one line,
/// within 5 cm, overlapping).
fn shared_wall_middle(a: &[[f64; 2]], b: &[[f64; 2]]) -> Option<[f64; 2]> {
    const TOL: f64 = 0.05;
    let edges = |p: &[[f64; 2]]| -> Vec<([f64; 2], [f64; 2])> {
        (0..p.len()).map(|i| (p[i], p[(i + 1) % p.len()])).collect()
    };
    let mut best: Option<(f64, [f64; 2])> = None;
    for (p0, p1) in edges(a) {
        let (dx, dy) = (p1[0] - p0[0], p1[1] - p0[1]);
        let len = dx.hypot(dy);
        if len < TOL {
            continue;
        }
        let (ux, uy) = (dx / len, dy / len);
        // Distance of q from the line of this edge, and its position along it.
        let off = |q: [f64; 2]| ((q[0] - p0[0]) * uy - (q[1] - p0[1]) * ux).abs();
        let along = |q: [f64; 2]| (q[0] - p0[0]) * ux + (q[1] - p0[1]) * uy;
        for (q0, q1) in edges(b) {
            if off(q0) > TOL || off(q1) > TOL {
                continue;
            }
            let (s0, s1) = (along(q0).min(along(q1)), along(q0).max(along(q1)));
            let (from, to) = (s0.max(0.0), s1.min(len));
            if to - from > TOL && best.is_none_or(|(l, _)| to - from > l) {
                let m = (from + to) / 2.0;
                best = Some((to - from, [p0[0] + ux * m, p0[1] + uy * m]));
            }
        }
    }
    best.map(|(_, p)| p)
}

/// Every row of one list matching `base` (the store pages them).
async fn all<T, F, Fut>(
    base: &ListQuery,
    list: F,
    key: impl Fn(&T) -> String,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(ListQuery) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, crate::storage::model::ModelError>>,
{
    let mut out: Vec<T> = Vec::new();
    loop {
        let q = ListQuery {
            after: out.last().map(&key),
            limit: 500,
            ..base.clone()
        };
        let page = list(q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let done = page.len() < 500;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// The building file merged with what is stored now (see [`merge`]); the file as is while
/// no room of the building is stored.
pub async fn load(store: &dyn Store, file: &Building) -> anyhow::Result<Building> {
    let id = crate::model::slug(&file.name);
    // Doors have no building of their own: all of them, `merge` keeps this building's.
    let this_building = ListQuery {
        building: Some(id.clone()),
        ..ListQuery::default()
    };
    let rooms = all(
        &this_building,
        |q| async move { store.rooms(&q).await },
        |r: &Room| r.id.clone(),
    )
    .await?;
    if rooms.is_empty() {
        return Ok(file.clone());
    }
    let doors = all(
        &ListQuery::default(),
        |q| async move { store.doors(&q).await },
        |d: &Door| d.id.clone(),
    )
    .await?;
    let receivers = all(
        &this_building,
        |q| async move { store.receivers(&q).await },
        |r: &Receiver| r.node.clone(),
    )
    .await?;
    Ok(merge(file, &id, &rooms, &doors, &receivers))
}

/// Keeps the live positioning and training (calibration, `POST /api/position`) on the
/// stored site: loads it now and after every change of the stored model (`changes`,
/// bumped by REST writes), and publishes it on `site_tx` (a trained model's multilateration
/// fallback follows it). A failed load keeps the last site and is retried at the next
/// change.
pub fn spawn(
    store: Arc<dyn Store>,
    file: Building,
    live: Option<Arc<LivePositions>>,
    training: Option<Arc<Training>>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    site_tx: tokio::sync::watch::Sender<Option<Building>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // What was applied last: most model writes (people, devices, rules) leave the
        // site as it is, and the trackers should not notice them.
        let mut applied: Option<Building> = None;
        loop {
            match load(store.as_ref(), &file).await {
                Ok(site) if applied.as_ref() == Some(&site) => {}
                Ok(site) => {
                    if let Some(live) = &live {
                        live.set_building(&site);
                    }
                    if let Some(t) = &training {
                        t.set_site(crate::training::Site::from_building(&site));
                    }
                    site_tx.send_replace(Some(site.clone()));
                    applied = Some(site);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "loading the stored site for positioning failed; keeping the last one")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_wall_is_found() {
        let a = [[0.0, 0.0], [8.0, 0.0], [8.0, 12.0], [0.0, 12.0]];
        let corridor = [[8.0, 3.0], [24.0, 3.0], [24.0, 6.0], [8.0, 6.0]];
        assert_eq!(shared_wall_middle(&a, &corridor), Some([8.0, 4.5]));
        let far = [[30.0, 0.0], [31.0, 0.0], [31.0, 1.0]];
        assert_eq!(shared_wall_middle(&a, &far), None);
    }

    #[test]
    fn stored_rooms_doors_and_receivers_replace_the_files() {
        let file = Building::example();
        let id = crate::model::slug(&file.name);
        let plan = crate::model::ImportPlan::from_building(&file, &id, "UTC");
        // Unchanged: the same site.
        let same = merge(&file, &id, &plan.rooms, &plan.doors, &plan.receivers);
        assert_eq!(same.rooms, file.rooms);
        assert_eq!(same.doors, file.doors);
        assert_eq!(same.receivers, file.receivers);
        // A receiver moved, the meeting room shrunk, a new door without a position in the
        // file, a room of another building.
        let mut rooms = plan.rooms.clone();
        let meeting = rooms.iter_mut().find(|r| r.id == "meeting").unwrap();
        meeting.polygon = vec![[8.0, 6.0], [12.0, 6.0], [12.0, 12.0], [8.0, 12.0]];
        let mut other = rooms[0].clone();
        other.building = "elsewhere".into();
        other.id = "elsewhere-room".into();
        rooms.push(other);
        let mut doors = plan.doors.clone();
        doors.push(Door {
            id: "meeting-lobby".into(),
            rooms: vec!["meeting".into(), "lobby".into()],
            node: "pi-lobby".into(),
            gpio_pin: None,
        });
        let mut receivers = plan.receivers.clone();
        receivers[0].x += 1.0;
        let site = merge(&file, &id, &rooms, &doors, &receivers);
        assert_eq!(site.rooms.len(), file.rooms.len());
        assert_eq!(
            site.room("meeting").unwrap().polygon,
            vec![[8.0, 6.0], [12.0, 6.0], [12.0, 12.0], [8.0, 12.0]]
        );
        let door = site
            .doors
            .iter()
            .find(|d| d.id.as_str() == "meeting-lobby")
            .unwrap();
        assert_eq!(door.position, [8.0, 9.0]);
        assert_eq!(site.receivers[0].x, file.receivers[0].x + 1.0);
        // The outside door keeps its "outside" side.
        let entrance = site.doors.iter().find(|d| d.id.as_str() == "entrance");
        assert!(entrance.is_some_and(|d| d.rooms.iter().any(|r| r == sim::OUTSIDE)));
    }

    #[tokio::test]
    async fn a_room_edited_in_the_store_reaches_the_live_positioning() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = crate::storage::connect(&url, 2).await.unwrap();
        let file = Building::example();
        let id = crate::model::slug(&file.name);
        let plan = crate::model::ImportPlan::from_building(&file, &id, "UTC");
        store.import_model(&plan).await.unwrap();
        let live = Arc::new(LivePositions::new(
            &file,
            crate::live::LiveConfig::default(),
        ));
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let stop = CancellationToken::new();
        let training = Arc::new(Training::new(
            store.clone(),
            Some(crate::training::Site::from_building(&file)),
            crate::config::TrainingConfig::default(),
        ));
        let (site_tx, mut site_rx) = tokio::sync::watch::channel(None);
        let task = spawn(
            store.clone(),
            file.clone(),
            Some(live.clone()),
            Some(training.clone()),
            rx,
            site_tx,
            stop.clone(),
        );
        let mut meeting = store.room("meeting").await.unwrap().unwrap();
        meeting.polygon = vec![[8.0, 6.0], [12.0, 6.0], [12.0, 12.0], [8.0, 12.0]];
        store.update_room(&meeting).await.unwrap();
        tx.send_modify(|v| *v += 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let rooms = live.rooms();
            let m = rooms.iter().find(|r| r.id == "meeting").unwrap();
            let trained_rooms = training.site().rooms.clone();
            let t = trained_rooms.iter().find(|r| r.id == "meeting").unwrap();
            let edited = vec![(8.0, 6.0), (12.0, 6.0), (12.0, 12.0), (8.0, 12.0)];
            let published = site_rx.borrow_and_update().as_ref().is_some_and(|b| {
                b.rooms
                    .iter()
                    .any(|r| r.id == "meeting" && r.polygon.first() == Some(&[8.0, 6.0]))
            });
            if m.polygon == edited && t.polygon == edited && published {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
    }
}
