-- Access events: a restricted room entered without an allowing rule, a door opened
-- outside every rule's hours, a room over capacity. Evidence is JSON (position,
-- confidence, door event, occupants).
CREATE TABLE access_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    room TEXT NOT NULL,
    device TEXT,
    person TEXT,
    evidence TEXT NOT NULL,
    stored_at_ms BIGINT NOT NULL
);
CREATE INDEX access_events_at ON access_events (at_ms, id);
CREATE INDEX access_events_room_at ON access_events (room, at_ms);
