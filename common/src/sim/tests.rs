use super::*;
use chrono::Duration;
use proptest::prelude::*;
use std::collections::HashMap;

fn t0() -> DateTime<Utc> {
    SimOptions::default().start
}

fn opts(devices: usize) -> SimOptions {
    SimOptions {
        devices,
        dwell_secs: [5.0, 60.0],
        ..SimOptions::default()
    }
}

fn sim(seed: u64, o: SimOptions) -> Simulator {
    Simulator::new(Building::example(), seed, o).unwrap()
}

/// Steps every `step_ms` for `total_ms`, collecting events.
fn run(s: &mut Simulator, step_ms: i64, total_ms: i64) -> Vec<SimEvent> {
    let mut all = Vec::new();
    let mut t = 0;
    while t < total_ms {
        t = (t + step_ms).min(total_ms);
        all.extend(s.step(t0() + Duration::milliseconds(t)));
    }
    all
}

fn room_field(r: Result<Building, SimError>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn example_building_parses_and_has_coverage() {
    let b = Building::example();
    assert_eq!(b.floors.len(), 2);
    assert!(b.rooms.len() >= 8);
    assert!(b.rooms.iter().any(|r| r.restricted));
    for f in &b.floors {
        assert!(b.receivers.iter().filter(|r| r.floor == f.index).count() >= 4);
    }
    // Every room is heard by 4+ receivers from its interior point, with margin.
    let s = Simulator::new(
        b.clone(),
        1,
        SimOptions {
            devices: 0,
            ..SimOptions::default()
        },
    )
    .unwrap();
    for r in &b.rooms {
        let c = geometry::interior_point(&r.polygon_pts());
        let heard = b
            .receivers
            .iter()
            .filter(|rx| s.model_rssi(&rx.node, r.floor, c.x, c.y).unwrap() > -85.0)
            .count();
        assert!(heard >= 4, "room {} heard by {heard}", r.id);
    }
    // Every door's node exists as a receiver in the example.
    for d in &b.doors {
        assert!(b.receivers.iter().any(|r| r.node == d.node), "{}", d.id);
    }
    // Round trip through TOML.
    let text = toml::to_string(&b).unwrap();
    assert_eq!(Building::from_toml_str(&text).unwrap(), b);
}

#[test]
fn room_at_finds_rooms() {
    let b = Building::example();
    assert_eq!(b.room_at(0, 1.0, 1.0).unwrap().id, "lobby");
    assert_eq!(b.room_at(1, 1.0, 1.0).unwrap().id, "open-office");
    assert_eq!(b.room_at(0, 10.0, 1.0).unwrap().id, "server-room");
    assert!(b.room_at(0, 30.0, 1.0).is_none());
    assert!(b.room_at(7, 1.0, 1.0).is_none());
    let s = sim(1, opts(0));
    assert_eq!(s.room_at(0, 20.0, 9.0).unwrap().id, "kitchen");
}

#[test]
fn same_seed_same_events_different_seed_different() {
    let a = run(&mut sim(7, opts(30)), 1000, 600_000);
    let b = run(&mut sim(7, opts(30)), 1000, 600_000);
    let c = run(&mut sim(8, opts(30)), 1000, 600_000);
    assert!(a.len() > 10_000);
    assert!(a.iter().any(|e| matches!(e, SimEvent::Door { .. })));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn step_partition_does_not_change_the_world() {
    let mut one = sim(3, opts(25));
    let whole = one.step(t0() + Duration::seconds(900));
    let mut many = sim(3, opts(25));
    let parts = run(&mut many, 1700, 900_000);
    assert_eq!(whole, parts);
    assert_eq!(one.truth(), many.truth());
}

#[test]
fn events_are_sorted_and_inside_the_step_window() {
    let mut s = sim(
        5,
        SimOptions {
            wifi_interval_ms: Some(10_000),
            ..opts(20)
        },
    );
    let mut prev = t0();
    for i in 1..=120 {
        let now = t0() + Duration::milliseconds(i * 2500);
        let ev = s.step(now);
        for w in ev.windows(2) {
            assert!(w[0].at() <= w[1].at());
        }
        for e in &ev {
            assert!(e.at() > prev && e.at() <= now, "{e:?}");
        }
        prev = now;
    }
    assert_eq!(s.now(), prev);
    assert!(s.step(prev).is_empty());
    assert!(s.step(prev - Duration::seconds(5)).is_empty());
}

#[test]
fn devices_stay_inside_the_building_and_dwell_inside_their_room() {
    let mut s = sim(11, opts(60));
    let b = s.building().clone();
    let mut dwelling_checked = 0;
    for i in 1..=1800 {
        s.step(t0() + Duration::seconds(i));
        for t in s.truth() {
            let room_id = t.room.as_deref().expect("no outside trips by default");
            let room = b.room(room_id).unwrap();
            assert_eq!(room.floor, t.floor);
            let d = geometry::distance_to_polygon(Pt::new(t.x, t.y), &room.polygon_pts());
            assert!(d < 1e-6, "{t:?} is {d} m outside {room_id}");
            if !t.moving {
                assert!(room.contains(t.x, t.y), "{t:?}");
                assert_eq!(s.room_at(t.floor, t.x, t.y).unwrap().id, room_id);
                dwelling_checked += 1;
            }
        }
    }
    assert!(dwelling_checked > 10_000);
}

#[test]
fn door_events_when_a_device_changes_room() {
    let mut s = sim(21, opts(40));
    let b = s.building().clone();
    let mut last: HashMap<String, (Option<String>, i32)> = s
        .truth()
        .into_iter()
        .map(|t| (t.device, (t.room, t.floor)))
        .collect();
    let mut changes = Vec::new();
    let mut events = Vec::new();
    let step = 250;
    for i in 1..=(1200 * 1000 / step) {
        let now = t0() + Duration::milliseconds(i * step);
        events.extend(s.step(now));
        for t in s.truth() {
            let prev = last
                .insert(t.device.clone(), (t.room.clone(), t.floor))
                .unwrap();
            if prev.0 != t.room {
                changes.push((prev, (t.room, t.floor), now));
            }
        }
    }
    // Door open intervals.
    type Span = (DateTime<Utc>, DateTime<Utc>);
    let mut intervals: HashMap<String, Vec<Span>> = HashMap::new();
    let mut open: HashMap<String, DateTime<Utc>> = HashMap::new();
    for e in &events {
        if let SimEvent::Door {
            door, state, at, ..
        } = e
        {
            match state {
                DoorState::Open => {
                    assert!(open.insert(door.to_string(), *at).is_none(), "double open");
                }
                DoorState::Closed => {
                    let o = open.remove(door.as_str()).expect("closed before open");
                    assert!(*at > o);
                    intervals
                        .entry(door.to_string())
                        .or_default()
                        .push((o, *at));
                }
            }
        }
    }
    for (door, o) in open {
        intervals
            .entry(door)
            .or_default()
            .push((o, DateTime::<Utc>::MAX_UTC));
    }
    let mut through_doors = 0;
    for ((from, ff), (to, tf), now) in changes {
        if ff != tf {
            continue; // stairs
        }
        let (from, to) = (from.unwrap(), to.unwrap());
        let prev = now - Duration::milliseconds(step);
        let ok = b
            .doors
            .iter()
            .filter(|d| d.rooms.contains(&from) && d.rooms.contains(&to))
            .any(|d| {
                intervals
                    .get(d.id.as_str())
                    .is_some_and(|v| v.iter().any(|&(o, c)| o <= now && c > prev))
            });
        assert!(ok, "{from} -> {to} at {now} without an open door");
        through_doors += 1;
    }
    assert!(through_doors > 50, "{through_doors}");
}

#[test]
fn door_closes_after_the_hold_time() {
    let mut s = sim(2, opts(10));
    let ev = run(&mut s, 1000, 1_800_000);
    let mut open: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut n = 0;
    for e in &ev {
        if let SimEvent::Door {
            door, state, at, ..
        } = e
        {
            match state {
                DoorState::Open => {
                    open.insert(door.to_string(), *at);
                }
                DoorState::Closed => {
                    let o = open.remove(door.as_str()).unwrap();
                    assert!(*at - o >= Duration::milliseconds(3000));
                    n += 1;
                }
            }
        }
    }
    assert!(n > 10);
}

#[test]
fn rssi_decreases_with_distance_on_average() {
    let o = SimOptions {
        stationary_fraction: 1.0,
        ..opts(60)
    };
    let mut s = sim(4, o);
    let b = s.building().clone();
    let truth: HashMap<String, DeviceTruth> = s
        .truth()
        .into_iter()
        .map(|t| (t.device.clone(), t))
        .collect();
    let ev = s.step(t0() + Duration::seconds(120));
    let mut bins = [(0.0f64, 0usize); 4]; // <3 m, 3-6 m, 6-12 m, >12 m (same floor)
    for e in &ev {
        if let SimEvent::Ble {
            receiver,
            device,
            rssi,
            ..
        } = e
        {
            let t = &truth[device];
            if t.moving {
                continue;
            }
            let rx = b.receivers.iter().find(|r| &r.node == receiver).unwrap();
            if rx.floor != t.floor {
                continue;
            }
            let d = ((rx.x - t.x).powi(2) + (rx.y - t.y).powi(2)).sqrt();
            let i = match d {
                d if d < 3.0 => 0,
                d if d < 6.0 => 1,
                d if d < 12.0 => 2,
                _ => 3,
            };
            bins[i].0 += *rssi as f64;
            bins[i].1 += 1;
        }
    }
    let means: Vec<f64> = bins
        .iter()
        .map(|&(sum, n)| {
            assert!(n > 20, "{bins:?}");
            sum / n as f64
        })
        .collect();
    assert!(
        means.windows(2).all(|w| w[0] > w[1] + 2.0),
        "means {means:?}"
    );
}

#[test]
fn noise_free_mode_gives_the_model_value() {
    let o = SimOptions {
        noise_scale: 0.0,
        stationary_fraction: 1.0,
        ..opts(30)
    };
    let mut s = sim(9, o);
    let truth: HashMap<String, DeviceTruth> = s
        .truth()
        .into_iter()
        .map(|t| (t.device.clone(), t))
        .collect();
    let ev = s.step(t0() + Duration::seconds(30));
    // Listed devices are not stationary: use only those that did not move.
    let still: Vec<String> = s
        .truth()
        .into_iter()
        .filter(|t| (t.x, t.y) == (truth[&t.device].x, truth[&t.device].y))
        .map(|t| t.device)
        .collect();
    assert!(still.len() >= 30);
    let mut n = 0;
    for e in &ev {
        if let SimEvent::Ble {
            receiver,
            device,
            rssi,
            tx_power,
            ..
        } = e
        {
            let t = &truth[device];
            if !still.contains(device) {
                continue;
            }
            let m = s.model_rssi(receiver, t.floor, t.x, t.y).unwrap();
            assert_eq!(*rssi, m as f32, "{e:?}");
            if device == "tag-002" {
                assert_eq!(*tx_power, Some(-62));
            }
            n += 1;
        }
    }
    assert!(n > 1000);
    // The model itself.
    assert_eq!(log_distance_rssi(-59.0, 2.0, 10.0), -79.0);
    assert_eq!(log_distance_rssi(-59.0, 2.0, 0.0), -39.0);
}

#[test]
fn stationary_devices_stand_still_and_never_change_room() {
    let mut s = sim(6, opts(40));
    let first: HashMap<String, DeviceTruth> = s
        .truth()
        .into_iter()
        .map(|t| (t.device.clone(), t))
        .collect();
    s.step(t0() + Duration::seconds(600));
    let printer = s
        .truth()
        .into_iter()
        .find(|t| t.device == "tag-004")
        .unwrap();
    assert_eq!(printer.room.as_deref(), Some("open-office"));
    let mut still = 0;
    let mut moved = 0;
    for t in s.truth() {
        let f = &first[&t.device];
        if (f.x, f.y) == (t.x, t.y) {
            still += 1;
        } else {
            moved += 1;
        }
    }
    assert!(still >= 1 && moved > 20, "still {still} moved {moved}");
    assert_eq!(
        (first["tag-004"].x, first["tag-004"].y),
        (printer.x, printer.y)
    );
}

#[test]
fn only_authorised_devices_enter_restricted_rooms() {
    let mut s = sim(
        13,
        SimOptions {
            restricted_access_fraction: 0.0,
            ..opts(40)
        },
    );
    let mut admin_in = false;
    for i in 1..=3600 {
        s.step(t0() + Duration::seconds(i));
        for t in s.truth() {
            if t.room.as_deref() == Some("server-room") {
                assert_eq!(t.device, "tag-003", "{t:?}");
                admin_in = true;
            }
        }
    }
    assert!(admin_in);

    // With trespassing, others get in too.
    let mut s = sim(
        13,
        SimOptions {
            restricted_access_fraction: 0.0,
            trespass_probability: 0.5,
            ..opts(40)
        },
    );
    let mut intruders = 0;
    for i in 1..=1200 {
        s.step(t0() + Duration::seconds(i));
        intruders += s
            .truth()
            .iter()
            .filter(|t| t.room.as_deref() == Some("server-room") && t.device != "tag-003")
            .count();
    }
    assert!(intruders > 0);
}

#[test]
fn devices_can_leave_through_the_entrance() {
    let mut s = sim(
        17,
        SimOptions {
            outside_probability: 0.5,
            ..opts(30)
        },
    );
    let mut outside = 0;
    let mut entrance = 0;
    for i in 1..=1800 {
        for e in s.step(t0() + Duration::seconds(i)) {
            if let SimEvent::Door { door, .. } = e {
                entrance += (door.as_str() == "entrance") as usize;
            }
        }
        outside += s.truth().iter().filter(|t| t.room.is_none()).count();
    }
    assert!(outside > 0 && entrance > 0);
}

#[test]
fn only_node_is_the_share_of_the_whole_world() {
    let mut full = sim(
        23,
        SimOptions {
            wifi_interval_ms: Some(5000),
            ..opts(20)
        },
    );
    let all = run(&mut full, 1000, 300_000);
    for node in ["pi-lobby", "pi-kitchen", "pi-office-2"] {
        let node = NodeId::parse(node).unwrap();
        let mut edge = sim(
            23,
            SimOptions {
                wifi_interval_ms: Some(5000),
                only_node: Some(node.clone()),
                ..opts(20)
            },
        );
        let mine = run(&mut edge, 1300, 300_000);
        assert!(!mine.is_empty());
        assert!(mine.iter().all(|e| e.node() == &node));
        assert_eq!(mine, events_for_node(&all, &node));
    }
    let unknown = Simulator::new(
        Building::example(),
        1,
        SimOptions {
            only_node: Some(NodeId::parse("pi-nowhere").unwrap()),
            ..opts(1)
        },
    );
    assert_eq!(unknown.unwrap_err().field(), Some("sim.only_node"));
}

#[test]
fn skip_to_then_step_matches_the_tail_of_a_full_run() {
    let mut full = sim(29, opts(25));
    let all = run(&mut full, 1000, 600_000);
    let cut = t0() + Duration::seconds(400);
    let tail: Vec<SimEvent> = all.into_iter().filter(|e| e.at() > cut).collect();
    let mut late = sim(29, opts(25));
    late.skip_to(cut);
    let got = late.step(t0() + Duration::seconds(600));
    assert_eq!(got, tail);
    assert_eq!(late.truth(), full.truth());
}

#[test]
fn adding_devices_does_not_change_the_others() {
    let mut a = sim(31, opts(5));
    let mut b = sim(31, opts(15));
    a.step(t0() + Duration::seconds(500));
    b.step(t0() + Duration::seconds(500));
    let tb = b.truth();
    for t in a.truth() {
        assert!(tb.contains(&t));
    }
}

#[test]
fn advertisement_rate_matches_the_interval() {
    let mut s = sim(
        37,
        SimOptions {
            ble_interval_ms: 500,
            noise_scale: 0.0,
            ..opts(10)
        },
    );
    let ev = s.step(t0() + Duration::seconds(100));
    let n = ev
        .iter()
        .filter(|e| matches!(e, SimEvent::Ble { receiver, device, .. } if receiver.as_str() == "pi-corridor-0" && device == "sim-001"))
        .count();
    assert!((198..=200).contains(&n), "{n}");
}

#[test]
fn compact_and_full_events_agree() {
    let mut a = sim(41, opts(10));
    let mut b = sim(41, opts(10));
    let mut buf = Vec::new();
    for i in 1..=20 {
        let now = t0() + Duration::seconds(i * 3);
        b.step_compact(now, &mut buf);
        let expanded: Vec<SimEvent> = buf.iter().map(|e| b.expand(e)).collect();
        assert_eq!(a.step(now), expanded);
    }
    let ids: Vec<&str> = b.device_ids().collect();
    assert_eq!(ids.len(), 15);
    assert_eq!(ids[0], "tag-001");
    assert_eq!(ids[5], "sim-001");
}

const GOOD: &str = r#"
name = "t"
[[floors]]
index = 0
[[rooms]]
id = "a"
floor = 0
polygon = [[0, 0], [4, 0], [4, 4], [0, 4]]
[[rooms]]
id = "b"
floor = 0
polygon = [[4, 0], [8, 0], [8, 4], [4, 4]]
[[doors]]
id = "d1"
rooms = ["a", "b"]
position = [4, 2]
node = "n1"
[[receivers]]
node = "n1"
x = 2
y = 2
floor = 0
"#;

#[test]
fn validation_errors_name_the_bad_field() {
    let b = Building::from_toml_str(GOOD).unwrap();
    assert_eq!(b.receivers[0].rssi_at_1m, -59.0);
    assert_eq!(b.receivers[0].path_loss_exponent, 2.2);
    assert_eq!(b.receivers[0].noise_sigma_db, 4.0);

    let cases = [
        (
            GOOD.replace("[[4, 0], [8, 0], [8, 4], [4, 4]]", "[[4, 0], [8, 0]]"),
            "rooms[1].polygon: needs at least 3 points",
        ),
        (
            GOOD.replace(
                "[[4, 0], [8, 0], [8, 4], [4, 4]]",
                "[[4, 0], [8, 0], [12, 0]]",
            ),
            "rooms[1].polygon: has no area",
        ),
        (
            GOOD.replace("rooms = [\"a\", \"b\"]", "rooms = [\"a\", \"c\"]"),
            "doors[0].rooms[1]: unknown room \"c\"",
        ),
        (
            GOOD.replace("rooms = [\"a\", \"b\"]", "rooms = [\"a\"]"),
            "doors[0].rooms: needs exactly two",
        ),
        (
            GOOD.replace("position = [4, 2]", "position = [40, 2]"),
            "doors[0].position:",
        ),
        (
            GOOD.replace("id = \"b\"", "id = \"a\""),
            "rooms[1].id: room \"a\" is defined twice",
        ),
        (
            GOOD.replace("y = 2\nfloor = 0", "y = 2\nfloor = 3"),
            "receivers[0].floor: floor 3 is not defined",
        ),
        (GOOD.replace("id = \"b\"", "id = \"b/x\""), "rooms[1].id:"),
        (
            GOOD.replace("name = \"t\"", "name = \"\""),
            "name: must not be empty",
        ),
        (
            format!("{GOOD}\n[[devices]]\nid = \"x\"\nroom = \"nope\"\n"),
            "devices[0].room: unknown room \"nope\"",
        ),
        (
            format!("{GOOD}\n[[stairs]]\nrooms = [\"a\", \"b\"]\nposition = [4, 2]\n"),
            "stairs[0].rooms: rooms are on the same floor",
        ),
    ];
    for (text, want) in cases {
        let got = room_field(Building::from_toml_str(&text));
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }
    // Type errors and unknown keys come from the TOML parser, naming the key.
    let got = room_field(Building::from_toml_str(
        &GOOD.replace("node = \"n1\"\nx", "node = \"n/1\"\nx"),
    ));
    assert!(got.contains("node") && got.contains('/'), "{got}");
    let got = room_field(Building::from_toml_str(
        &GOOD.replace("[[receivers]]", "[[recievers]]"),
    ));
    assert!(got.contains("recievers"), "{got}");

    let bad = Simulator::new(
        b,
        1,
        SimOptions {
            speed_mps: 0.0,
            ..SimOptions::default()
        },
    );
    assert_eq!(bad.unwrap_err().field(), Some("sim.speed_mps"));
}

#[test]
fn tiny_building_without_doors_works() {
    let mut b = Building::from_toml_str(GOOD).unwrap();
    b.doors.clear();
    let mut s = Simulator::new(b, 1, opts(5)).unwrap();
    let ev = s.step(t0() + Duration::seconds(600));
    assert!(ev.iter().all(|e| matches!(e, SimEvent::Ble { .. })));
    assert!(!ev.is_empty());
}

/// Speed check, not a timed test: `cargo test --release -p roomsense-common sim::tests::speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed() {
    let mut b = Building::example();
    let mut extra = b.receivers[0].clone();
    extra.node = NodeId::parse("pi-extra").unwrap();
    extra.x = 22.0;
    b.receivers.push(extra);
    let mut s = Simulator::new(
        b,
        1,
        SimOptions {
            devices: 500,
            ..SimOptions::default()
        },
    )
    .unwrap();
    let secs = 3600;
    let mut buf = Vec::new();
    let mut n = 0;
    let started = std::time::Instant::now();
    for i in 1..=secs {
        s.step_compact(t0() + Duration::seconds(i), &mut buf);
        n += buf.len();
    }
    let compact = started.elapsed();
    let started = std::time::Instant::now();
    for i in secs + 1..=secs + 600 {
        n += s.step(t0() + Duration::seconds(i)).len();
    }
    let full = started.elapsed();
    println!(
        "500 devices x 10 receivers: step_compact {:.1} us per simulated second, step {:.1} us; {} events",
        compact.as_secs_f64() * 1e6 / secs as f64,
        full.as_secs_f64() * 1e6 / 600.0,
        n
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_monotonic_steps_never_panic_and_match_one_big_step(
        seed in any::<u64>(),
        devices in 0usize..12,
        steps in proptest::collection::vec(0i64..90_000, 1..25),
        outside in 0.0f64..0.5,
        trespass in 0.0f64..0.5,
        loss in 0.0f64..0.5,
        interval in 20u64..3000,
    ) {
        let o = SimOptions {
            devices,
            outside_probability: outside,
            trespass_probability: trespass,
            loss_probability: loss,
            ble_interval_ms: interval,
            dwell_secs: [0.0, 30.0],
            wifi_interval_ms: Some(7000),
            ..SimOptions::default()
        };
        let mut a = sim(seed, o.clone());
        let mut t = t0() - Duration::seconds(5); // starts before the simulation start
        let mut parts = Vec::new();
        for d in &steps {
            t += Duration::milliseconds(*d);
            parts.extend(a.step(t));
            let _ = a.truth();
        }
        let mut b = sim(seed, o);
        let whole = b.step(t);
        prop_assert_eq!(parts, whole);
        prop_assert_eq!(a.truth(), b.truth());
    }

    #[test]
    fn arbitrary_toml_never_panics(s in "\\PC{0,200}") {
        let _ = Building::from_toml_str(&s);
    }
}

#[test]
fn noise_is_standard_normal() {
    let n = 200_000;
    let xs: Vec<f64> = (0..n).map(|i| gauss(mix(i))).collect();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    let within1 = xs.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
    assert!(mean.abs() < 0.01, "{mean}");
    assert!((var - 1.0).abs() < 0.02, "{var}");
    assert!((within1 - 0.6827).abs() < 0.01, "{within1}");
}
