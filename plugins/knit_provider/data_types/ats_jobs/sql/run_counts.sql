-- What step 1 found: record events, jobs, events with wrong types, events without a job id, and
-- the Knit model ids the run's new/modified events carried (bits of _run_events.models_mask).
SELECT (SELECT count(*) FROM _run_events),
       (SELECT count(*) FROM _run_jobs),
       (SELECT count(*) FROM _run_events WHERE has_type_errors),
       (SELECT count(*) FROM _run_events WHERE job_id IS NULL),
       ARRAY(SELECT m.model
             FROM (VALUES (1, 'job_info'), (2, 'job_departments'), (4, 'job_offices'),
                          (8, 'job_hiringManagers'), (16, 'job_recruiters'), (32, 'job_stages'),
                          (64, 'job_rawValues'), (128, 'job_posts'), (256, 'job_compensation'),
                          (512, 'job_questions'), (1024, 'job_requirements'),
                          (2048, 'job_info_enhanced')) AS m(bit, model)
             WHERE (SELECT bit_or(models_mask) FROM _run_events) & m.bit <> 0
             ORDER BY m.model);
