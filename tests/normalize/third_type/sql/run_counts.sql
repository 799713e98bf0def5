-- Record events, offices, events with unusable fields (none are checked here), events naming no office,
-- and the models carried (each eventData key k is the model office_k).
SELECT count(*),
       count(DISTINCT office_id),
       0,
       count(*) FILTER (WHERE office_id IS NULL),
       ARRAY(SELECT DISTINCT 'office_' || k
             FROM _run_events, jsonb_object_keys(CASE WHEN is_delete THEN '{}' ELSE coalesce(data, '{}') END) k
             ORDER BY 1)
FROM _run_events;
