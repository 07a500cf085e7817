-- Stored position history of tracked devices, written by the live positioning task: at
-- most one row per device per positioning.store_interval, plus one at every room change.
CREATE TABLE positions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    x DOUBLE PRECISION NOT NULL,
    y DOUBLE PRECISION NOT NULL,
    floor INTEGER NOT NULL,
    building TEXT NOT NULL,
    room TEXT,
    -- The room differs from the device's previous stored row (or it is the first).
    room_changed BOOLEAN NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    error_radius_m DOUBLE PRECISION NOT NULL,
    method TEXT NOT NULL,
    receivers INTEGER NOT NULL,
    stored_at_ms BIGINT NOT NULL
);
CREATE INDEX positions_device_at ON positions (device, at_ms, id);
CREATE INDEX positions_at ON positions (at_ms, id);
CREATE INDEX positions_room_at ON positions (room, at_ms);
