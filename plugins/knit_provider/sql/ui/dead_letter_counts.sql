-- Dead letters not replayed yet, per run shown on the Knit syncs page (dead_letters_run_idx).
-- Reads only columns a role may be granted without the bodies (landing.dead_letters.INFO_COLUMNS).
SELECT sync_run_id, count(*)
FROM {landing}.dead_letters
WHERE sync_run_id = ANY(%(sync_run_ids)s) AND replayed_at IS NULL
GROUP BY sync_run_id;
