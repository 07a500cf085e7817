-- Node-scoped reading queries use the time index and filter by node: the (node, at_ms)
-- index cost a third of the ingest B-tree work for a rarely used query.
DROP INDEX IF EXISTS readings_node_at;
