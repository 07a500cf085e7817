-- Training: calibration sessions ("device D is at (x, y, floor) for the next N s"),
-- labelled fingerprint samples (from calibration or imported files) and versioned models.
CREATE TABLE calibration_sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device     TEXT NOT NULL,
    x          REAL NOT NULL,
    y          REAL NOT NULL,
    floor      INTEGER NOT NULL,
    building   TEXT NOT NULL,
    start_ms   INTEGER NOT NULL,
    end_ms     INTEGER NOT NULL,
    -- collecting | done | failed
    state      TEXT NOT NULL,
    samples    INTEGER NOT NULL DEFAULT 0,
    error      TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX calibration_sessions_state ON calibration_sessions (state, end_ms);

-- readings: JSON array of [emitter, dBm]; emitters are "wifi:<bssid>" or "ble:<id>".
CREATE TABLE calibration_samples (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER REFERENCES calibration_sessions (id) ON DELETE SET NULL,
    -- ble | wifi (calibration) | import
    source     TEXT NOT NULL,
    device     TEXT,
    x          REAL NOT NULL,
    y          REAL NOT NULL,
    floor      INTEGER NOT NULL,
    building   TEXT NOT NULL,
    at_ms      INTEGER,
    readings   TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX calibration_samples_source ON calibration_samples (source, id);
CREATE INDEX calibration_samples_session ON calibration_samples (session_id);

-- params, report, path_loss and model are JSON; only succeeded trainings are stored.
CREATE TABLE models (
    version     INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms  INTEGER NOT NULL,
    samples     INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    params      TEXT NOT NULL,
    report      TEXT NOT NULL,
    path_loss   TEXT NOT NULL,
    model       TEXT NOT NULL
);
