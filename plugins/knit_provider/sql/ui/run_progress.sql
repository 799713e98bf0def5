-- Events landed over time for one run, in at most %(buckets)s steps, for the syncs page's chart.
-- A running initial sync may hold a million events whose rows are kilobytes each, so the rows are
-- not read: the run's events are counted per seq range on events_run_seq_idx (sync_run_id, seq),
-- and only the first event of each range is fetched, by primary key, for its time.
WITH bounds AS (
    SELECT min(seq) AS lo, max(seq) AS hi FROM {landing}.events WHERE sync_run_id = %(sync_run_id)s
), buckets AS (
    SELECT width_bucket(e.seq, b.lo, b.hi + 1, %(buckets)s) AS bucket, count(*) AS events, min(e.seq) AS first_seq
    FROM {landing}.events AS e CROSS JOIN bounds AS b
    WHERE e.sync_run_id = %(sync_run_id)s
    GROUP BY 1
)
SELECT buckets.events, first.received_at
FROM buckets
JOIN {landing}.events AS first ON first.seq = buckets.first_seq
ORDER BY buckets.bucket;
