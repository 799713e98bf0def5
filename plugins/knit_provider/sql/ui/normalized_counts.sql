-- What normalization did to each run shown on the Knit syncs page, from the ledger of the target
-- schema (one row per run, by its primary key): the records the run named and those it changed.
SELECT sync_run_id, records, records_changed
FROM {target}.normalized_runs
WHERE sync_run_id = ANY(%(sync_run_ids)s);
