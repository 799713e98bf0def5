-- What step 1 found: record events, applications, events with wrong types, events without an id.
SELECT (SELECT count(*) FROM _run_events),
       (SELECT count(*) FROM _run_apps),
       (SELECT count(*) FROM _run_events WHERE has_type_errors),
       (SELECT count(*) FROM _run_events WHERE application_id IS NULL);
