-- `readings` is the firehose (tens of thousands of rows a second). Its (node, at_ms) and
-- (device, at_ms) indexes put every row into two B-trees at random places: each commit
-- dirtied thousands of index pages, and WAL/page I/O capped SQLite ingest near 30,000
-- sightings/s. Only the time index stays (appended in order); node and device filters scan
-- the time range. Per-device history is served from position estimates, which are indexed
-- by device.
DROP INDEX IF EXISTS readings_node_at;
DROP INDEX IF EXISTS readings_device_at;
