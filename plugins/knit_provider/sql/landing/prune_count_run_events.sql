-- Query (not a migration): for a dry run, how many of one prunable run's events would be deleted row by
-- row: those outside the partitions that would be dropped whole (%(dropped)s, their oids).
SELECT count(*)
FROM {landing}.events
WHERE sync_run_id = %(run_id)s AND received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
  AND tableoid <> ALL(%(dropped)s::oid[])
