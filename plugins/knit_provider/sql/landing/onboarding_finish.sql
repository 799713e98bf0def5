-- Query (not a migration): the end of an onboarding DAG run. Its integrations whose initial sync was
-- normalized and reconciled (the runs given) are onboarded; its other claims are released, so a later
-- activation (or the main DAG) can try again.
WITH done AS (
    UPDATE {landing}.integrations AS i
    SET onboarded_at = now(), onboarding_sync_run_id = r.sync_run_id
    FROM {landing}.sync_runs AS r
    WHERE r.sync_run_id = ANY(%(sync_run_ids)s::text[])
      AND i.integration_id = r.integration_id
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
