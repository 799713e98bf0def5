-- Store a batch of dead letters: one row per distinct body, a repeat only counts an attempt and
-- refreshes the reason and last-seen time. Arrays are parallel. Returns how many bodies were new.
CREATE OR REPLACE FUNCTION {landing}.land_dead_letters(
    p_integration_ids text[],
    p_reasons         text[],
    p_headers         jsonb[],
    p_bodies          bytea[],
    p_event_ids       text[],
    p_event_types     text[],
    p_sync_job_ids    text[],
    p_sync_run_ids    text[]
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    added bigint;
BEGIN
    WITH input AS (
        SELECT *, sha256(body) AS body_sha256
        FROM unnest(p_integration_ids, p_reasons, p_headers, p_bodies, p_event_ids, p_event_types,
                    p_sync_job_ids, p_sync_run_ids) WITH ORDINALITY
            AS t(integration_id, reason, headers, body, event_id, event_type, sync_job_id, sync_run_id, ord)
    ), grouped AS (
        -- The same body twice in one batch is one row (ON CONFLICT may touch a row only once).
        SELECT DISTINCT ON (body_sha256) body_sha256, integration_id, reason, headers, body,
               nullif(event_id, '') AS event_id, nullif(event_type, '') AS event_type,
               nullif(sync_job_id, '') AS sync_job_id, nullif(sync_run_id, '') AS sync_run_id,
               count(*) OVER (PARTITION BY body_sha256) AS attempts
        FROM input
        ORDER BY body_sha256, ord DESC
    ), upserted AS (
        INSERT INTO {landing}.dead_letters AS d
            (integration_id, reason, headers, body, body_sha256, attempts, event_id, event_type, sync_job_id,
             sync_run_id)
        SELECT integration_id, reason, headers, body, body_sha256, attempts, event_id, event_type, sync_job_id,
               sync_run_id
        FROM grouped
        ORDER BY body_sha256  -- one lock order for every writer
        ON CONFLICT (body_sha256) DO UPDATE SET
            attempts         = d.attempts + excluded.attempts,
            last_received_at = clock_timestamp(),
            reason           = excluded.reason,
            headers          = excluded.headers,
            integration_id   = coalesce(d.integration_id, excluded.integration_id),
            -- A row folded by this migration may lack ids a newer receiver reads (e.g. from a truncated body).
            event_id         = coalesce(d.event_id, excluded.event_id),
            event_type       = coalesce(d.event_type, excluded.event_type),
            sync_job_id      = coalesce(d.sync_job_id, excluded.sync_job_id),
            sync_run_id      = coalesce(d.sync_run_id, excluded.sync_run_id)
        RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted) INTO added FROM upserted;
    RETURN added;
END
$fn$;
