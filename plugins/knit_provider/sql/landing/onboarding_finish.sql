-- Query (not a migration): the end of an onboarding DAG run. Its integrations whose initial sync of every
-- onboarded data type (data_types) was normalized and reconciled (the runs given) are onboarded, with the
-- run of the first type as theirs; its other claims are released, so a later activation (or the DAGs'
-- "all active" runs) can try again.
WITH covered AS (
    SELECT r.integration_id,
           (array_agg(r.sync_run_id ORDER BY r.first_seq)
                FILTER (WHERE coalesce(r.sync_data_type, 'ats_applications') = (%(data_types)s::text[])[1]))[1]
               AS sync_run_id
    FROM {landing}.sync_runs AS r
    WHERE r.sync_run_id = ANY(%(sync_run_ids)s::text[])
    GROUP BY r.integration_id
    HAVING array_agg(coalesce(r.sync_data_type, 'ats_applications')) @> %(data_types)s::text[]
), done AS (
    UPDATE {landing}.integrations AS i
    SET onboarded_at = now(), onboarding_sync_run_id = c.sync_run_id
    FROM covered AS c
    WHERE i.integration_id = c.integration_id
      AND i.onboarding_dag_run_id = %(dag_run_id)s
    RETURNING i.integration_id
), released AS (
    UPDATE {landing}.integrations AS i
    SET onboarding_claimed_at = NULL, onboarding_dag_run_id = NULL
    WHERE i.onboarding_dag_run_id = %(dag_run_id)s
      AND i.onboarded_at IS NULL
      AND i.integration_id NOT IN (SELECT integration_id FROM done)
    RETURNING i.integration_id
)
SELECT 'onboarded' AS outcome, integration_id FROM done
UNION ALL
SELECT 'released', integration_id FROM released
ORDER BY 1, 2
