-- What normalization did to each run shown on the Knit syncs page, from the ledger of the target
-- schema (one row per run, by its primary key): the records the run named and those it changed; and
-- of its last normalization, the change feed's value and the rows per table (what its asset event
-- carried), NULL for a run normalized before the change feed. Those two are read through the row's
-- JSON, so a ledger not migrated yet (a new release serving the page before its first normalization
-- adds the columns) shows them as NULL instead of failing the page.
SELECT r.sync_run_id, r.records, r.records_changed, (j.row ->> 'changed_seq')::bigint, j.row -> 'table_changes'
FROM {target}.normalized_runs AS r
CROSS JOIN LATERAL (SELECT to_jsonb(r) AS row) AS j
WHERE r.sync_run_id = ANY(%(sync_run_ids)s);
