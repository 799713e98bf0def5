-- Step 4: candidates. For each candidate the run carries (info.candidate with an id), its
-- highest-seq event in the run competes with the stored row by version, across applications.
-- Parameters: run_id, first_seq. Returns the number of candidate rows written.
WITH carried AS (
    SELECT DISTINCT ON (integration_id, candidate_id) integration_id, candidate_id, application_id, seq, event_id
    FROM _run_events
    WHERE NOT is_delete AND has_candidate AND candidate_id IS NOT NULL AND application_id IS NOT NULL
    ORDER BY integration_id, candidate_id, seq DESC
), up AS (
    INSERT INTO {target}.ats_candidates AS r (
        integration_id, candidate_id, first_name, last_name, email, emails, phones, links, location,
        application_id, version_run_id, version_first_seq, version_seq, version_event_id)
    SELECT c.integration_id, c.candidate_id,
           {target}.j_text(p.cand -> 'firstName'),
           {target}.j_text(p.cand -> 'lastName'),
           -- The email typed PRIMARY, else the first one listed.
           coalesce({target}.j_text(jsonb_path_query_first(
                         p.cand, '$.emails[*] ? (@.type like_regex "^primary$" flag "i").email', '{}', true)),
                     {target}.j_text(jsonb_path_query_first(p.cand, '$.emails[*].email', '{}', true))),
           {target}.j_arr(p.cand -> 'emails'),
           {target}.j_arr(p.cand -> 'phones'),
           {target}.j_arr(p.cand -> 'links'),
           CASE WHEN jsonb_typeof(p.cand -> 'location') <> 'null' THEN p.cand -> 'location' END,
           c.application_id, %(run_id)s, %(first_seq)s, c.seq, c.event_id
    FROM carried c
    JOIN {landing}.events ev ON ev.seq = c.seq
    CROSS JOIN LATERAL (SELECT ev.payload #> '{eventData,info,candidate}' AS cand) p
    ON CONFLICT (integration_id, candidate_id) DO UPDATE SET
        first_name = excluded.first_name,
        last_name = excluded.last_name,
        email = excluded.email,
        emails = excluded.emails,
        phones = excluded.phones,
        links = excluded.links,
        location = excluded.location,
        application_id = excluded.application_id,
        version_run_id = excluded.version_run_id,
        version_first_seq = excluded.version_first_seq,
        version_seq = excluded.version_seq,
        version_event_id = excluded.version_event_id
    WHERE (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq)
    RETURNING 1
)
SELECT count(*) FROM up;
