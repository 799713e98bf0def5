-- Events landed over time for one run, in at most %(buckets)s steps, for the syncs page's chart.
-- A running initial sync may hold a million events whose rows are kilobytes each, so no row is
-- read in bulk: the run's seq range is cut into equal slices, each slice's events are counted on
-- events_run_seq_idx (sync_run_id, seq) alone (an index-only range count: no sort, no hash), and
-- only the first event of each slice is fetched for its time.
WITH bounds AS (
    SELECT min(seq) AS lo, max(seq) + 1 AS hi FROM {landing}.events WHERE sync_run_id = %(sync_run_id)s
), slices AS (
    SELECT i, lo + (hi - lo) * i / %(buckets)s AS from_seq, lo + (hi - lo) * (i + 1) / %(buckets)s AS to_seq
    FROM bounds CROSS JOIN generate_series(0, %(buckets)s - 1) AS i
    WHERE lo IS NOT NULL
), counted AS MATERIALIZED (  -- counted once, though read twice below
    SELECT i, from_seq,
           (SELECT count(*) FROM {landing}.events AS e
            WHERE e.sync_run_id = %(sync_run_id)s AND e.seq >= from_seq AND e.seq < to_seq) AS events
    FROM slices
)
SELECT events,
       (SELECT e.received_at FROM {landing}.events AS e
        WHERE e.sync_run_id = %(sync_run_id)s AND e.seq >= from_seq
        ORDER BY e.sync_run_id, e.seq LIMIT 1)  -- in the run's index order, not the primary key's
FROM counted
WHERE events > 0
ORDER BY i;
