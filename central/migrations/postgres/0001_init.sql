-- roomsense central schema (Postgres). Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY NOT NULL,
    state           TEXT NOT NULL,
    offline_reason  TEXT,
    first_seen_ms   BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL,
    version         TEXT,
    boot_at_ms      BIGINT,
    uptime_s        BIGINT,
    sensors         TEXT,
    outbox_depth    BIGINT,
    dropped         BIGINT,
    clock_offset_ms BIGINT,
    status_at_ms    BIGINT
);

CREATE TABLE batches (
    node           TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    items          BIGINT NOT NULL,
    sent_at_ms     BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    stored_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (node, seq)
);

CREATE TABLE readings (
    id             BIGSERIAL PRIMARY KEY,
    node           TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    device         TEXT NOT NULL,
    rssi           DOUBLE PRECISION NOT NULL,
    tx_power       BIGINT,
    count          BIGINT NOT NULL,
    first_at_ms    BIGINT,
    at_ms          BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    channel        BIGINT,
    ssid           TEXT,
    beacon         TEXT
);
CREATE INDEX readings_at ON readings (at_ms, id);
CREATE INDEX readings_device_at ON readings (device, at_ms);
CREATE INDEX readings_node_at ON readings (node, at_ms);

CREATE TABLE door_events (
    id             BIGSERIAL PRIMARY KEY,
    node           TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    door           TEXT NOT NULL,
    state          TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX door_events_at ON door_events (at_ms, id);
CREATE INDEX door_events_door_at ON door_events (door, at_ms);

CREATE TABLE dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    topic          TEXT NOT NULL,
    payload        BYTEA NOT NULL,
    reason         TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX dead_letters_at ON dead_letters (received_at_ms);
