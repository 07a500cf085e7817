-- Training: calibration sessions ("device D is at (x, y, floor) for the next N s"),
-- labelled fingerprint samples (from calibration or imported files) and versioned models.
CREATE TABLE calibration_sessions (
    id         BIGSERIAL PRIMARY KEY,
    device     TEXT NOT NULL,
    x          DOUBLE PRECISION NOT NULL,
    y          DOUBLE PRECISION NOT NULL,
    floor      BIGINT NOT NULL,
    building   TEXT NOT NULL,
    start_ms   BIGINT NOT NULL,
    end_ms     BIGINT NOT NULL,
    -- collecting | done | failed
    state      TEXT NOT NULL,
    samples    BIGINT NOT NULL DEFAULT 0,
    error      TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX calibration_sessions_state ON calibration_sessions (state, end_ms);

-- readings: JSON array of [emitter, dBm]; emitters are "wifi:<bssid>" or "ble:<id>".
CREATE TABLE calibration_samples (
    id         BIGSERIAL PRIMARY KEY,
    session_id BIGINT REFERENCES calibration_sessions (id) ON DELETE SET NULL,
    -- ble | wifi (calibration) | import
    source     TEXT NOT NULL,
    device     TEXT,
    x          DOUBLE PRECISION NOT NULL,
    y          DOUBLE PRECISION NOT NULL,
    floor      BIGINT NOT NULL,
    building   TEXT NOT NULL,
    at_ms      BIGINT,
    readings   TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX calibration_samples_source ON calibration_samples (source, id);
CREATE INDEX calibration_samples_session ON calibration_samples (session_id);

-- params, report, path_loss and model are JSON; only succeeded trainings are stored.
CREATE TABLE models (
    version     BIGSERIAL PRIMARY KEY,
    created_ms  BIGINT NOT NULL,
    samples     BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    params      TEXT NOT NULL,
    report      TEXT NOT NULL,
    path_loss   TEXT NOT NULL,
    model       TEXT NOT NULL
);
