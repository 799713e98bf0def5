-- Query (not a migration): delete one prunable run's events, found by its id within its span of arrival,
-- except those in the partitions about to be dropped whole (%(dropped)s, their oids). The bounds are
-- literals, so only the partitions of that span are searched, each through its (sync_run_id, seq) index,
-- never the whole store.
DELETE FROM {landing}.events
WHERE sync_run_id = %(run_id)s AND received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
  AND tableoid <> ALL(%(dropped)s::oid[])
