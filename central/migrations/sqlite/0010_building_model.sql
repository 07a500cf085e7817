-- The building model admins manage over REST: buildings and floors, rooms, doors,
-- receivers, people, tracked devices and access rules. Lists (polygon, groups) are JSON.
-- References are foreign keys; the API answers 409 naming the referrers before deleting.
CREATE TABLE buildings (
    id        TEXT PRIMARY KEY NOT NULL,
    name      TEXT NOT NULL,
    time_zone TEXT NOT NULL
);

CREATE TABLE floors (
    building            TEXT NOT NULL REFERENCES buildings (id) ON DELETE CASCADE,
    level               INTEGER NOT NULL,
    name                TEXT NOT NULL,
    plan_url            TEXT,
    plan_scale_px_per_m DOUBLE PRECISION,
    plan_origin_x_px    DOUBLE PRECISION,
    plan_origin_y_px    DOUBLE PRECISION,
    PRIMARY KEY (building, level)
);

CREATE TABLE rooms (
    id         TEXT PRIMARY KEY NOT NULL,
    building   TEXT NOT NULL,
    floor      INTEGER NOT NULL,
    name       TEXT NOT NULL,
    polygon    TEXT NOT NULL,
    capacity   BIGINT,
    restricted BOOLEAN NOT NULL,
    FOREIGN KEY (building, floor) REFERENCES floors (building, level)
);
CREATE INDEX rooms_building_floor ON rooms (building, floor, id);

CREATE TABLE doors (
    id       TEXT PRIMARY KEY NOT NULL,
    room_a   TEXT NOT NULL REFERENCES rooms (id),
    room_b   TEXT REFERENCES rooms (id),
    node     TEXT NOT NULL,
    gpio_pin INTEGER
);
CREATE INDEX doors_room_a ON doors (room_a);
CREATE INDEX doors_room_b ON doors (room_b);

CREATE TABLE receivers (
    node               TEXT PRIMARY KEY NOT NULL,
    building           TEXT NOT NULL,
    floor              INTEGER NOT NULL,
    x                  DOUBLE PRECISION NOT NULL,
    y                  DOUBLE PRECISION NOT NULL,
    rssi_at_1m         DOUBLE PRECISION NOT NULL,
    path_loss_exponent DOUBLE PRECISION NOT NULL,
    FOREIGN KEY (building, floor) REFERENCES floors (building, level)
);
CREATE INDEX receivers_building_floor ON receivers (building, floor, node);

CREATE TABLE people (
    id     TEXT PRIMARY KEY NOT NULL,
    name   TEXT NOT NULL,
    groups TEXT NOT NULL
);

CREATE TABLE devices (
    id     TEXT PRIMARY KEY NOT NULL,
    name   TEXT NOT NULL,
    owner  TEXT REFERENCES people (id),
    kind   TEXT NOT NULL,
    groups TEXT NOT NULL
);
CREATE INDEX devices_owner ON devices (owner);

CREATE TABLE access_rules (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    person         TEXT REFERENCES people (id),
    group_name     TEXT,
    room           TEXT NOT NULL REFERENCES rooms (id),
    weekdays       INTEGER NOT NULL,
    start_minute   INTEGER NOT NULL,
    end_minute     INTEGER NOT NULL,
    valid_from_ms  BIGINT,
    valid_until_ms BIGINT,
    CHECK ((person IS NULL) <> (group_name IS NULL))
);
CREATE INDEX access_rules_room ON access_rules (room);
CREATE INDEX access_rules_person ON access_rules (person);

-- Building files imported at start: an unchanged file is not imported again.
CREATE TABLE model_imports (
    building       TEXT PRIMARY KEY NOT NULL,
    source_hash    TEXT NOT NULL,
    imported_at_ms BIGINT NOT NULL
);
