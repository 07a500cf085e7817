//! The SQL shared by both backends. The statements are portable between SQLite and
//! Postgres (`ON CONFLICT`, `RETURNING`, `CASE`); placeholders come from `QueryBuilder`.
//! `impl_sql_store!` stamps the `Store` implementation out for each backend, so there is
//! one body of SQL and the contract suite checks it on both.

use super::{DeadLetter, Received, WriteItem};
use roomsense_common::protocol::{Message, NodeStatus};
use std::collections::BTreeMap;

/// Rows per multi-row INSERT, largest first (13 columns × 1000 stays under both backends'
/// bind limits). A write is cut into chunks of these sizes only, so the few statement shapes
/// stay in the prepared-statement cache instead of preparing a new 13,000-parameter
/// statement for every odd-sized tail.
pub(super) const CHUNK_SIZES: [usize; 6] = [1000, 256, 64, 16, 4, 1];

/// Cuts `items` into chunks whose lengths are all in `CHUNK_SIZES`.
pub(super) fn chunked<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let n = CHUNK_SIZES.iter().copied().find(|&n| n <= items.len())?;
        let (head, rest) = items.split_at(n);
        items = rest;
        Some(head)
    })
}

pub(super) const READING_COLUMNS: &str = "id, node, seq, kind, device, rssi, tx_power, count, first_at_ms, at_ms, received_at_ms, channel, ssid, beacon";
pub(super) const DOOR_COLUMNS: &str = "id, node, seq, door, state, at_ms, received_at_ms";
pub(super) const NODE_COLUMNS: &str = "id, state, offline_reason, first_seen_ms, last_seen_ms, version, boot_at_ms, uptime_s, sensors, outbox_depth, dropped, clock_offset_ms, status_at_ms";

/// One batch to register in `batches`.
pub(super) struct BatchKey<'a> {
    pub node: &'a str,
    pub seq: i64,
    pub kind: &'static str,
    pub items: i64,
    pub sent_ms: i64,
    pub received_ms: i64,
    pub msg: &'a Message,
}

/// One row of `readings`.
pub(super) struct ReadingRow<'a> {
    pub node: &'a str,
    pub seq: i64,
    pub kind: &'static str,
    pub device: &'a str,
    pub rssi: f64,
    pub tx_power: Option<i64>,
    pub count: i64,
    pub first_at_ms: Option<i64>,
    pub at_ms: i64,
    pub received_ms: i64,
    pub channel: Option<i64>,
    pub ssid: Option<&'a str>,
    pub beacon: Option<&'static str>,
}

/// One row of `door_events`.
pub(super) struct DoorRow<'a> {
    pub node: &'a str,
    pub seq: i64,
    pub door: &'a str,
    pub state: &'static str,
    pub at_ms: i64,
    pub received_ms: i64,
}

/// Per node: newest receive time and the clock offset seen on the newest batch.
pub(super) struct Seen {
    pub first_ms: i64,
    pub last_ms: i64,
    pub clock_offset_ms: i64,
}

/// A write, sorted by table. Pure: built before the transaction starts.
#[derive(Default)]
pub(super) struct WritePlan<'a> {
    pub dead_letters: Vec<&'a DeadLetter>,
    pub statuses: Vec<(&'a NodeStatus, i64)>,
    pub batches: Vec<BatchKey<'a>>,
    pub seen: BTreeMap<&'a str, Seen>,
}

impl<'a> WritePlan<'a> {
    pub fn new(items: &'a [WriteItem]) -> Self {
        let mut plan = WritePlan::default();
        for item in items {
            match item {
                WriteItem::DeadLetter(d) => plan.dead_letters.push(d),
                WriteItem::Message(Received { msg, received_ms }) => {
                    let (seq, kind, sent) = match msg {
                        Message::Status(s) => {
                            plan.statuses.push((s, *received_ms));
                            continue;
                        }
                        Message::Door(b) => (b.seq, "door", b.sent_at),
                        Message::Ble(b) => (b.seq, "ble", b.sent_at),
                        Message::Wifi(b) => (b.seq, "wifi", b.sent_at),
                    };
                    let node = msg.node().as_str();
                    let sent_ms = sent.timestamp_millis();
                    plan.batches.push(BatchKey {
                        node,
                        seq: seq as i64,
                        kind,
                        items: msg.len() as i64,
                        sent_ms,
                        received_ms: *received_ms,
                        msg,
                    });
                    let seen = plan.seen.entry(node).or_insert(Seen {
                        first_ms: *received_ms,
                        last_ms: i64::MIN,
                        clock_offset_ms: 0,
                    });
                    seen.first_ms = seen.first_ms.min(*received_ms);
                    if *received_ms >= seen.last_ms {
                        seen.last_ms = *received_ms;
                        seen.clock_offset_ms = received_ms - sent_ms;
                    }
                }
            }
        }
        plan
    }
}

/// The rows a stored batch contributes.
pub(super) fn rows_of<'a>(
    b: &BatchKey<'a>,
    readings: &mut Vec<ReadingRow<'a>>,
    doors: &mut Vec<DoorRow<'a>>,
) {
    match b.msg {
        Message::Ble(batch) => readings.extend(batch.items.iter().map(|s| ReadingRow {
            node: b.node,
            seq: b.seq,
            kind: "ble",
            device: s.id.as_str(),
            rssi: f64::from(s.rssi),
            tx_power: s.tx_power.map(i64::from),
            count: i64::from(s.count),
            first_at_ms: Some(s.first_at.timestamp_millis()),
            at_ms: s.last_at.timestamp_millis(),
            received_ms: b.received_ms,
            channel: None,
            ssid: None,
            beacon: Some(s.kind.as_str()),
        })),
        Message::Wifi(batch) => readings.extend(batch.items.iter().map(|w| ReadingRow {
            node: b.node,
            seq: b.seq,
            kind: "wifi",
            device: w.bssid.as_str(),
            rssi: f64::from(w.rssi),
            tx_power: None,
            count: 1,
            first_at_ms: None,
            at_ms: w.at.timestamp_millis(),
            received_ms: b.received_ms,
            channel: Some(i64::from(w.channel)),
            ssid: w.ssid.as_deref(),
            beacon: None,
        })),
        Message::Door(batch) => doors.extend(batch.items.iter().map(|t| DoorRow {
            node: b.node,
            seq: b.seq,
            door: t.door.as_str(),
            state: t.state.as_str(),
            at_ms: t.at.timestamp_millis(),
            received_ms: b.received_ms,
        })),
        Message::Status(_) => {}
    }
}

/// Stamps out `Store` for a backend. `$store` must have fields `writer` and `readers`
/// (pools of `$db`) and an `async fn begin_write(&self) -> Result<Transaction<'static, $db>, sqlx::Error>`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::storage::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<(), $crate::storage::StoreError> {
                sqlx::query("SELECT 1").execute(&self.readers).await?;
                Ok(())
            }

            async fn write(
                &self,
                items: &[$crate::storage::WriteItem],
            ) -> Result<$crate::storage::WriteOutcome, $crate::storage::StoreError> {
                use $crate::storage::sql::*;
                use sqlx::QueryBuilder;
                use std::collections::HashSet;

                let plan = WritePlan::new(items);
                let mut out = $crate::storage::WriteOutcome::default();
                let mut tx = self.begin_write().await?;

                for chunk in chunked(&plan.dead_letters) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO dead_letters (topic, payload, reason, received_at_ms) ",
                    );
                    qb.push_values(chunk, |mut r, d| {
                        r.push_bind(d.topic.as_str())
                            .push_bind(d.payload.as_slice())
                            .push_bind(d.reason.as_str())
                            .push_bind(d.received_ms);
                    });
                    qb.build().execute(&mut *tx).await?;
                    out.dead_letters += chunk.len() as u64;
                }

                let stored_ms = chrono::Utc::now().timestamp_millis();
                let mut new_keys: HashSet<(String, i64)> = HashSet::new();
                for chunk in chunked(&plan.batches) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO batches (node, seq, kind, items, sent_at_ms, received_at_ms, stored_at_ms) ",
                    );
                    qb.push_values(chunk, |mut r, b| {
                        r.push_bind(b.node)
                            .push_bind(b.seq)
                            .push_bind(b.kind)
                            .push_bind(b.items)
                            .push_bind(b.sent_ms)
                            .push_bind(b.received_ms)
                            .push_bind(stored_ms);
                    });
                    qb.push(" ON CONFLICT (node, seq) DO NOTHING RETURNING node, seq");
                    let rows: Vec<(String, i64)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    new_keys.extend(rows);
                }

                let mut readings = Vec::new();
                let mut doors = Vec::new();
                for b in &plan.batches {
                    // `remove` so a batch delivered twice within this write is stored once.
                    if new_keys.remove(&(b.node.to_string(), b.seq)) {
                        out.batches += 1;
                        rows_of(b, &mut readings, &mut doors);
                    } else {
                        out.duplicate_batches += 1;
                    }
                }

                for chunk in chunked(&readings) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO readings (node, seq, kind, device, rssi, tx_power, count, first_at_ms, at_ms, received_at_ms, channel, ssid, beacon) ",
                    );
                    qb.push_values(chunk, |mut r, x| {
                        r.push_bind(x.node)
                            .push_bind(x.seq)
                            .push_bind(x.kind)
                            .push_bind(x.device)
                            .push_bind(x.rssi)
                            .push_bind(x.tx_power)
                            .push_bind(x.count)
                            .push_bind(x.first_at_ms)
                            .push_bind(x.at_ms)
                            .push_bind(x.received_ms)
                            .push_bind(x.channel)
                            .push_bind(x.ssid)
                            .push_bind(x.beacon);
                    });
                    qb.build().execute(&mut *tx).await?;
                    out.readings += chunk.len() as u64;
                }

                for chunk in chunked(&doors) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO door_events (node, seq, door, state, at_ms, received_at_ms) ",
                    );
                    qb.push_values(chunk, |mut r, x| {
                        r.push_bind(x.node)
                            .push_bind(x.seq)
                            .push_bind(x.door)
                            .push_bind(x.state)
                            .push_bind(x.at_ms)
                            .push_bind(x.received_ms);
                    });
                    qb.build().execute(&mut *tx).await?;
                    out.door_events += chunk.len() as u64;
                }

                for (node, seen) in &plan.seen {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO nodes (id, state, first_seen_ms, last_seen_ms, clock_offset_ms) VALUES (",
                    );
                    qb.push_bind(*node)
                        .push(", 'online', ")
                        .push_bind(seen.first_ms)
                        .push(", ")
                        .push_bind(seen.last_ms)
                        .push(", ")
                        .push_bind(seen.clock_offset_ms)
                        .push(
                            ") ON CONFLICT (id) DO UPDATE SET state = 'online', offline_reason = NULL, \
                             last_seen_ms = CASE WHEN excluded.last_seen_ms > nodes.last_seen_ms THEN excluded.last_seen_ms ELSE nodes.last_seen_ms END, \
                             clock_offset_ms = excluded.clock_offset_ms",
                        );
                    qb.build().execute(&mut *tx).await?;
                }

                for (status, received_ms) in &plan.statuses {
                    let offline = status.state == roomsense_common::NodeState::Offline;
                    let sensors = if status.sensors.is_empty() && offline {
                        None
                    } else {
                        serde_json::to_string(&status.sensors).ok()
                    };
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO nodes (id, state, offline_reason, first_seen_ms, last_seen_ms, version, boot_at_ms, uptime_s, sensors, outbox_depth, dropped, status_at_ms) ",
                    );
                    qb.push_values(std::iter::once(()), |mut r, ()| {
                        r.push_bind(status.node.as_str())
                            .push_bind(status.state.as_str())
                            .push_bind(offline.then_some("last will"))
                            .push_bind(*received_ms)
                            .push_bind(*received_ms)
                            .push_bind(status.version.as_deref())
                            .push_bind(status.boot_at.map(|t| t.timestamp_millis()))
                            .push_bind(status.uptime_s.map(|u| u.min(i64::MAX as u64) as i64))
                            .push_bind(sensors.as_deref())
                            .push_bind(status.outbox_depth.map(|u| u.min(i64::MAX as u64) as i64))
                            .push_bind(status.dropped.map(|u| u.min(i64::MAX as u64) as i64))
                            .push_bind(*received_ms);
                    });
                    qb.push(
                        " ON CONFLICT (id) DO UPDATE SET state = excluded.state, offline_reason = excluded.offline_reason, \
                         last_seen_ms = CASE WHEN excluded.state = 'online' AND excluded.last_seen_ms > nodes.last_seen_ms THEN excluded.last_seen_ms ELSE nodes.last_seen_ms END, \
                         version = COALESCE(excluded.version, nodes.version), \
                         boot_at_ms = COALESCE(excluded.boot_at_ms, nodes.boot_at_ms), \
                         uptime_s = COALESCE(excluded.uptime_s, nodes.uptime_s), \
                         sensors = COALESCE(excluded.sensors, nodes.sensors), \
                         outbox_depth = COALESCE(excluded.outbox_depth, nodes.outbox_depth), \
                         dropped = COALESCE(excluded.dropped, nodes.dropped), \
                         status_at_ms = excluded.status_at_ms",
                    );
                    qb.build().execute(&mut *tx).await?;
                    out.statuses += 1;
                }

                tx.commit().await?;
                Ok(out)
            }

            async fn mark_silent(
                &self,
                cutoff_ms: i64,
            ) -> Result<Vec<String>, $crate::storage::StoreError> {
                let mut tx = self.begin_write().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE nodes SET state = 'offline', offline_reason = 'silent' WHERE state = 'online' AND last_seen_ms < ",
                );
                qb.push_bind(cutoff_ms).push(" RETURNING id");
                let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(ids.into_iter().map(|(id,)| id).collect())
            }

            async fn nodes(
                &self,
            ) -> Result<Vec<$crate::storage::NodeRecord>, $crate::storage::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::sql::NODE_COLUMNS)
                    .push(" FROM nodes ORDER BY id");
                Ok(qb.build_query_as().fetch_all(&self.readers).await?)
            }

            async fn node(
                &self,
                id: &str,
            ) -> Result<Option<$crate::storage::NodeRecord>, $crate::storage::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::sql::NODE_COLUMNS)
                    .push(" FROM nodes WHERE id = ")
                    .push_bind(id);
                Ok(qb.build_query_as().fetch_optional(&self.readers).await?)
            }

            async fn readings(
                &self,
                q: &$crate::storage::TimeQuery,
            ) -> Result<Vec<$crate::storage::Reading>, $crate::storage::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::sql::READING_COLUMNS)
                    .push(" FROM readings WHERE 1 = 1");
                push_time_filter!(qb, q, "device", "kind");
                Ok(qb.build_query_as().fetch_all(&self.readers).await?)
            }

            async fn door_events(
                &self,
                q: &$crate::storage::TimeQuery,
            ) -> Result<Vec<$crate::storage::DoorEvent>, $crate::storage::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::storage::sql::DOOR_COLUMNS)
                    .push(" FROM door_events WHERE 1 = 1");
                push_time_filter!(qb, q, "door", "state");
                Ok(qb.build_query_as().fetch_all(&self.readers).await?)
            }

            async fn dead_letters(
                &self,
                limit: i64,
            ) -> Result<Vec<$crate::storage::DeadLetterRecord>, $crate::storage::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, topic, payload, reason, received_at_ms FROM dead_letters ORDER BY id DESC LIMIT ",
                );
                qb.push_bind(limit);
                Ok(qb.build_query_as().fetch_all(&self.readers).await?)
            }

            async fn counts(
                &self,
            ) -> Result<$crate::storage::Counts, $crate::storage::StoreError> {
                let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM nodes), (SELECT COUNT(*) FROM batches), \
                     (SELECT COUNT(*) FROM readings), (SELECT COUNT(*) FROM door_events), \
                     (SELECT COUNT(*) FROM dead_letters)",
                )
                .fetch_one(&self.readers)
                .await?;
                Ok($crate::storage::Counts {
                    nodes: row.0,
                    batches: row.1,
                    readings: row.2,
                    door_events: row.3,
                    dead_letters: row.4,
                })
            }
        }
    };
}

/// `WHERE` clauses and keyset order of a `TimeQuery`.
macro_rules! push_time_filter {
    ($qb:ident, $q:ident, $subject:literal, $kind:literal) => {
        if let Some(node) = &$q.node {
            $qb.push(" AND node = ").push_bind(node.as_str());
        }
        if let Some(s) = &$q.subject {
            $qb.push(concat!(" AND ", $subject, " = "))
                .push_bind(s.as_str());
        }
        if let Some(k) = &$q.kind {
            $qb.push(concat!(" AND ", $kind, " = "))
                .push_bind(k.as_str());
        }
        if let Some(start) = $q.start_ms {
            $qb.push(" AND at_ms >= ").push_bind(start);
        }
        if let Some(end) = $q.end_ms {
            $qb.push(" AND at_ms < ").push_bind(end);
        }
        if let Some((at, id)) = $q.after {
            $qb.push(" AND (at_ms > ")
                .push_bind(at)
                .push(" OR (at_ms = ")
                .push_bind(at)
                .push(" AND id > ")
                .push_bind(id)
                .push("))");
        }
        $qb.push(" ORDER BY at_ms, id LIMIT ").push_bind($q.limit);
    };
}

pub(super) use impl_sql_store;
pub(super) use push_time_filter;

#[cfg(test)]
mod tests {
    use super::{chunked, CHUNK_SIZES};

    #[test]
    fn chunks_cover_everything_in_known_sizes() {
        for n in [0usize, 1, 5, 999, 1000, 1001, 2345] {
            let v: Vec<usize> = (0..n).collect();
            let parts: Vec<&[usize]> = chunked(&v).collect();
            assert!(parts.iter().all(|p| CHUNK_SIZES.contains(&p.len())));
            let joined: Vec<usize> = parts.concat();
            assert_eq!(joined, v);
        }
    }
}
