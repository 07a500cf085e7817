//! Single-query latency of the fingerprint engine on the full UJIIndoorLoc radio map
//! (19,937 training samples × 520 access points), one thread.
//!
//! `cargo bench -p roomsense-central --bench fingerprint`
//!
//! The data set is read from `$ROOMSENSE_UJI_DIR` (default: `../shared/datasets/ujiindoorloc`
//! next to the workspace); without it the bench says so and measures nothing. The model is
//! trained the way `roomsense-central eval` trains it (cross-validated configuration), then
//! every validation scan is located: criterion measures the mean per query, and a pass over
//! all validation scans prints the p50 / p99 / max of single queries (the target is
//! p99 ≤ 1 ms).

use criterion::{criterion_group, criterion_main, Criterion};
use roomsense_central::positioning::{read_uji, train, Dataset, TrainOptions};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

fn data_dir() -> PathBuf {
    std::env::var_os("ROOMSENSE_UJI_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/ujiindoorloc"),
        PathBuf::from,
    )
}

fn load(name: &str) -> Option<Dataset> {
    let path = data_dir().join(name);
    let file = std::fs::File::open(&path).ok()?;
    match read_uji(std::io::BufReader::new(file)) {
        Ok(d) => Some(d),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn bench(c: &mut Criterion) {
    let (Some(train_set), Some(test_set)) = (load("trainingData.csv"), load("validationData.csv"))
    else {
        eprintln!(
            "UJIIndoorLoc not found in {} (set ROOMSENSE_UJI_DIR): nothing measured",
            data_dir().display()
        );
        return;
    };
    let started = Instant::now();
    let model = train(&train_set, &TrainOptions::default(), &mut |_| {}).expect("training");
    eprintln!(
        "trained on {} samples in {:.1} s: {:?}",
        train_set.len(),
        started.elapsed().as_secs_f64(),
        model.params
    );
    let scans: Vec<Vec<(&str, f32)>> = test_set
        .samples
        .iter()
        .map(|s| test_set.named_readings(s))
        .collect();

    // Every validation scan, five rounds, each query timed on its own.
    let mut lat: Vec<f64> = Vec::with_capacity(scans.len() * 5);
    for _ in 0..5 {
        for s in &scans {
            let t = Instant::now();
            black_box(model.locate(black_box(s)));
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |f: f64| lat[((lat.len() - 1) as f64 * f).round() as usize];
    eprintln!(
        "single queries ({}): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        lat.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );

    let mut i = 0;
    c.bench_function("uji_locate_one_query", |b| {
        b.iter(|| {
            i = (i + 1) % scans.len();
            black_box(model.locate(black_box(&scans[i])))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
