-- What step 1 found: record events, applications, events with wrong types, events without an id,
-- and the Knit model ids the run's new/modified events carried (bits of _run_events.models_mask).
SELECT (SELECT count(*) FROM _run_events),
       (SELECT count(*) FROM _run_apps),
       (SELECT count(*) FROM _run_events WHERE has_type_errors),
       (SELECT count(*) FROM _run_events WHERE application_id IS NULL),
       ARRAY(SELECT m.model
             FROM (VALUES (1, 'application_info'), (2, 'application_stage'), (4, 'application_interviews'),
                          (8, 'application_rejection'), (16, 'application_offers'),
                          (32, 'application_attachments')) AS m(bit, model)
             WHERE (SELECT bit_or(models_mask) FROM _run_events) & m.bit <> 0
             ORDER BY m.model);
