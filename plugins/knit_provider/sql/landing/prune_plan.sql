-- Query (not a migration): what retention may remove before %(cutoff)s, in the caller's transaction.
-- _prunable: the runs whose landed events may go: normalized (so complete), not pruned yet, and whose
-- last event landed before the cutoff. A run not yet normalized is never among them, whatever its age.
CREATE TEMP TABLE _prunable ON COMMIT DROP AS
SELECT sync_run_id, first_received_at, last_received_at, record_events
FROM {landing}.sync_runs
WHERE normalized_at IS NOT NULL AND complete_at IS NOT NULL AND events_pruned_at IS NULL
  AND last_received_at < %(cutoff)s;

-- _partitions: every range partition of events with its bounds (the DEFAULT one has none and is never
-- dropped), and whether it may be dropped whole: it ends before the cutoff and every run with events in
-- it (a run's events lie within its first and last arrival) is prunable or already pruned.
CREATE TEMP TABLE _partitions ON COMMIT DROP AS
SELECT p.oid, p.name, p.lower_bound, p.upper_bound, p.estimated_events,
       p.upper_bound <= %(cutoff)s AND NOT EXISTS (
           SELECT 1 FROM {landing}.sync_runs r
           WHERE r.events_pruned_at IS NULL
             AND r.first_received_at < p.upper_bound
             AND (p.lower_bound IS NULL OR r.last_received_at >= p.lower_bound)
             AND NOT EXISTS (SELECT 1 FROM _prunable q WHERE q.sync_run_id = r.sync_run_id)) AS droppable
FROM (
    SELECT c.oid, c.relname AS name,
           -- The bounds as Postgres prints them: FOR VALUES FROM ('...') TO ('...'), or MINVALUE.
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']+)''\)')::timestamptz AS lower_bound,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper_bound,
           greatest(c.reltuples, 0)::bigint AS estimated_events
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = '{landing}.events'::regclass
      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
) AS p;
