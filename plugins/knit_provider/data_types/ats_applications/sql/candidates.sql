-- Step 4: candidates. For each candidate the run carries (info.candidate with an id), its
-- highest-seq event in the run competes with the stored row by version, across applications.
-- Stored rows are updated when the run's version is higher, then new candidates inserted (the
-- integration's advisory lock is held, as for applications). Parameters: run_id, first_seq.
CREATE TEMP TABLE _carried ON COMMIT DROP AS
SELECT DISTINCT ON (integration_id, candidate_id)
       integration_id, candidate_id, application_id, seq, event_id, first_name, last_name, email, emails,
       phones, links, location, location_text
FROM _run_events
WHERE NOT is_delete AND has_candidate AND candidate_id IS NOT NULL AND application_id IS NOT NULL
ORDER BY integration_id, candidate_id, seq DESC;

UPDATE {target}.ats_candidates r SET
    first_name = c.first_name, last_name = c.last_name, email = c.email, emails = c.emails,
    phones = c.phones, links = c.links, location = c.location, location_text = c.location_text,
    application_id = c.application_id,
    version_run_id = %(run_id)s, version_first_seq = %(first_seq)s, version_seq = c.seq,
    version_event_id = c.event_id
FROM _carried c
WHERE r.integration_id = c.integration_id AND r.candidate_id = c.candidate_id
  AND (%(first_seq)s, c.seq) > (r.version_first_seq, r.version_seq);

INSERT INTO {target}.ats_candidates (
    integration_id, candidate_id, first_name, last_name, email, emails, phones, links, location,
    application_id, version_run_id, version_first_seq, version_seq, version_event_id, location_text)
SELECT c.integration_id, c.candidate_id, c.first_name, c.last_name, c.email, c.emails, c.phones, c.links,
       c.location, c.application_id, %(run_id)s, %(first_seq)s, c.seq, c.event_id, c.location_text
FROM _carried c
WHERE NOT EXISTS (SELECT 1 FROM {target}.ats_candidates r
                  WHERE r.integration_id = c.integration_id AND r.candidate_id = c.candidate_id);
