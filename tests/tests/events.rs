//! Stored events over REST: access events by range, and the merged NDJSON event stream of
//! a range with a million stored events, with the process's memory watched while it streams.

use futures::StreamExt;
use roomsense_central::storage::access::NewAccessEvent;
use roomsense_tests::*;
use std::time::Duration;

/// Anonymous resident memory of this process (heap; not the SQLite file pages mapped in).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("RssAnon:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_events_by_range_filter_and_page() {
    let c = TestCentral::start(CentralOptions::default()).await.unwrap();
    let ev = |kind: &str, at_ms: i64, room: &str| NewAccessEvent {
        kind: kind.into(),
        at_ms,
        room: room.into(),
        device: Some("tag-1".into()),
        person: Some("bob".into()),
        evidence: r#"{"confidence":0.8,"x":1.5}"#.into(),
    };
    let t0 = 1_764_000_000_000i64;
    c.app
        .store()
        .insert_access_events(&[
            ev("unauthorized_entry", t0, "lab"),
            ev("over_capacity", t0 + 1000, "hall"),
            ev("door_outside_hours", t0 + 2000, "lab"),
        ])
        .await
        .unwrap();
    let (status, body) = c.get("/api/access-events?limit=2").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["kind"], "unauthorized_entry");
    assert_eq!(items[0]["evidence"]["x"], 1.5);
    let cursor = body["next_cursor"].as_str().unwrap();
    let (_, next) = c
        .get(&format!("/api/access-events?limit=2&cursor={cursor}"))
        .await
        .unwrap();
    assert_eq!(next["items"][0]["kind"], "door_outside_hours");
    assert!(next["next_cursor"].is_null());
    let (_, lab) = c.get("/api/access-events?room=lab").await.unwrap();
    assert_eq!(lab["items"].as_array().unwrap().len(), 2);
    let (status, err) = c.get("/api/access-events?kind=burglary").await.unwrap();
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("kind"));
    let (status, _) = c.get("/api/events/stream?kind=nope").await.unwrap();
    assert_eq!(status, 400);
    let (status, err) = c
        .get("/api/events/stream?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(status, 400, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_of_a_million_events_keeps_memory_flat() {
    const N: i64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let c = TestCentral::start(CentralOptions {
        database_url: Some(url.clone()),
        ..CentralOptions::default()
    })
    .await
    .unwrap();
    // Fill the tables directly (one statement each): 1,000,000 access events and 1,000 door
    // events interleaved in time, so the stream has to merge both sources.
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ?1 - 1)
         INSERT INTO access_events (kind, at_ms, room, device, person, evidence, stored_at_ms)
         SELECT 'unauthorized_entry', 1764000000000 + x * 10, 'lab', 'tag-' || (x % 500), NULL,
                '{\"confidence\":0.9}', 0 FROM c",
    )
    .bind(N)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO nodes (id, state, first_seen_ms, last_seen_ms) VALUES ('n1', 'online', 0, 0)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO batches (node, seq, kind, items, sent_at_ms, received_at_ms, stored_at_ms) VALUES ('n1', 1, 'door', 1000, 0, 0, 0)")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 999)
         INSERT INTO door_events (node, seq, door, state, at_ms, received_at_ms)
         SELECT 'n1', 1, 'd1', CASE x % 2 WHEN 0 THEN 'open' ELSE 'closed' END,
                1764000000005 + x * 10000, 0 FROM c",
    )
    .execute(&mut db)
    .await
    .unwrap();
    drop(db);

    let resp = c
        .http
        .get(format!(
            "{}/api/events/stream?start=2025-01-01T00:00:00Z&end=2027-01-01T00:00:00Z",
            c.base
        ))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut body = resp.bytes_stream();
    let mut lines = 0i64;
    let mut doors = 0i64;
    let mut bytes = 0u64;
    let mut last_at = String::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut baseline = 0u64;
    let mut peak = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len() as u64;
        partial.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(i) = partial[start..].iter().position(|b| *b == b'\n') {
            let line = &partial[start..start + i];
            start += i + 1;
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let at = v["at"].as_str().unwrap().to_string();
            assert!(
                at >= last_at,
                "events out of time order: {at} after {last_at}"
            );
            last_at = at;
            if v["type"] == "door" {
                doors += 1;
            }
            lines += 1;
        }
        partial.drain(..start);
        if lines >= 50_000 && baseline == 0 {
            baseline = rss_bytes();
        }
        peak = peak.max(rss_bytes());
    }
    assert_eq!(lines, N + 1000, "every stored event streamed once");
    assert_eq!(doors, 1000);
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "streamed {lines} events, {} MB; RSS after 50k lines {} MB, peak {} MB",
        bytes >> 20,
        baseline >> 20,
        peak >> 20
    );
    assert!(
        growth < (bytes / 4),
        "memory grew by {growth} bytes while streaming {bytes} bytes: not flat"
    );
    assert!(growth < 64 << 20, "memory grew by {} MB", growth >> 20);
}
