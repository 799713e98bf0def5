-- Query (not a migration): after prune_plan.sql, the partition drops and the row-by-row deletes, in the
-- same transaction: mark the prunable runs pruned and forget the event ids older than the dedup window.
-- Returns the runs marked and the ids forgotten.
WITH marked AS (
    UPDATE {landing}.sync_runs r SET events_pruned_at = now()
    FROM _prunable q
    WHERE r.sync_run_id = q.sync_run_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM marked), {landing}.forget_event_ids()
