-- The Knit syncs page: the latest runs of each integration, newest first, with Knit's counts, the
-- record events that landed and when the run was normalized (dead letters: dead_letter_counts.sql).
-- sync_runs has one row per run (thousands, not millions), so ranking all of it is cheap; the
-- events table is not read: record_events is kept by the writer with every batch.
-- %(data_type)s, when not null, keeps that type's runs before ranking, so a busy type cannot push a
-- quieter one's runs off the page; a run landed without a type counts as %(untyped)s.
WITH typed AS (
    SELECT r.*, coalesce(r.sync_data_type, %(untyped)s) AS data_type
    FROM {landing}.sync_runs AS r
), ranked AS (
    SELECT typed.*,
           row_number() OVER (PARTITION BY typed.integration_id ORDER BY typed.first_received_at DESC) AS place
    FROM typed
    WHERE %(data_type)s::text IS NULL OR typed.data_type = %(data_type)s
)
SELECT ranked.sync_run_id, ranked.sync_job_id, ranked.integration_id, ranked.data_type, ranked.sync_type,
       ranked.first_received_at, ranked.last_received_at, ranked.record_events,
       ranked.processed_count, ranked.emitted_count, ranked.consumed_count,
       ranked.started_at, ranked.completed_at, ranked.complete_at, ranked.completed_by, ranked.normalized_at
FROM ranked
WHERE ranked.place <= %(per_integration)s
ORDER BY ranked.integration_id NULLS LAST, ranked.first_received_at DESC;
