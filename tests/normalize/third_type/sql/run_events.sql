-- The run's record events once, with the office each names (recordId, else info.id).
CREATE TEMP TABLE _run_events ON COMMIT DROP AS
SELECT e.seq,
       coalesce(e.integration_id, %(integration_id)s, '') AS integration_id,
       coalesce(nullif(e.record_id, ''), {target}.j_id(e.payload #> '{eventData,info,id}')) AS office_id,
       e.event_type = 'record.deleted' AS is_delete,
       {target}.j_obj(e.payload -> 'eventData') AS data,
       coalesce(%(started_at)s::timestamptz, e.received_at) AS observed_at
FROM {landing}.events e
WHERE e.sync_run_id = %(run_id)s
  AND e.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
  AND e.event_type IN ('record.new', 'record.modified', 'record.deleted');
