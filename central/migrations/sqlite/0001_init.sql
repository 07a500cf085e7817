-- roomsense central schema (SQLite). Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY NOT NULL,
    state           TEXT NOT NULL,
    offline_reason  TEXT,
    first_seen_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL,
    version         TEXT,
    boot_at_ms      INTEGER,
    uptime_s        INTEGER,
    sensors         TEXT,
    outbox_depth    INTEGER,
    dropped         INTEGER,
    clock_offset_ms INTEGER,
    status_at_ms    INTEGER
);

CREATE TABLE batches (
    node           TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    items          INTEGER NOT NULL,
    sent_at_ms     INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    stored_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;

CREATE TABLE readings (
    id             INTEGER PRIMARY KEY,
    node           TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    device         TEXT NOT NULL,
    rssi           REAL NOT NULL,
    tx_power       INTEGER,
    count          INTEGER NOT NULL,
    first_at_ms    INTEGER,
    at_ms          INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    channel        INTEGER,
    ssid           TEXT,
    beacon         TEXT
);
CREATE INDEX readings_at ON readings (at_ms);
CREATE INDEX readings_device_at ON readings (device, at_ms);
CREATE INDEX readings_node_at ON readings (node, at_ms);

CREATE TABLE door_events (
    id             INTEGER PRIMARY KEY,
    node           TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    door           TEXT NOT NULL,
    state          TEXT NOT NULL,
    at_ms          INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX door_events_at ON door_events (at_ms);
CREATE INDEX door_events_door_at ON door_events (door, at_ms);

CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY,
    topic          TEXT NOT NULL,
    payload        BLOB NOT NULL,
    reason         TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX dead_letters_at ON dead_letters (received_at_ms);
