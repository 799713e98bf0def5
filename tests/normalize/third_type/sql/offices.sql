-- Each office's highest event (it decides is_deleted) and highest new/modified (it decides the data);
-- a stored row moves to either only when the run's is higher, so runs may come in any order.
CREATE TEMP TABLE _office_versions ON COMMIT DROP AS
SELECT t.integration_id, t.office_id, t.seq AS version_seq, t.is_delete, t.observed_at, d.seq AS data_seq, d.data
FROM (SELECT DISTINCT ON (integration_id, office_id) *
      FROM _run_events WHERE office_id IS NOT NULL ORDER BY integration_id, office_id, seq DESC) t
LEFT JOIN (SELECT DISTINCT ON (integration_id, office_id) *
           FROM _run_events WHERE office_id IS NOT NULL AND NOT is_delete
           ORDER BY integration_id, office_id, seq DESC) d USING (integration_id, office_id);

INSERT INTO {target}.ats_offices AS o (
    integration_id, office_id, name, location, is_deleted, deleted_at, models,
    version_first_seq, version_seq, data_first_seq, data_seq)
SELECT integration_id, office_id, {target}.j_text(data #> '{info,name}'),
       {target}.location_text(data #> '{info,location}'), is_delete, CASE WHEN is_delete THEN observed_at END, data,
       %(first_seq)s, version_seq, CASE WHEN data_seq IS NOT NULL THEN %(first_seq)s END, data_seq
FROM _office_versions
-- A stored row takes the run's data when the data version is higher and its deletion state when the version
-- is (written out in each column: ON CONFLICT cannot name them); rows neither touches are not written.
ON CONFLICT (integration_id, office_id) DO UPDATE SET
    name = CASE WHEN (excluded.data_seq IS NOT NULL AND (o.data_seq IS NULL OR (excluded.data_first_seq, excluded.data_seq) > (o.data_first_seq, o.data_seq))) THEN excluded.name ELSE o.name END,
    location = CASE WHEN (excluded.data_seq IS NOT NULL AND (o.data_seq IS NULL OR (excluded.data_first_seq, excluded.data_seq) > (o.data_first_seq, o.data_seq))) THEN excluded.location ELSE o.location END,
    models = CASE WHEN (excluded.data_seq IS NOT NULL AND (o.data_seq IS NULL OR (excluded.data_first_seq, excluded.data_seq) > (o.data_first_seq, o.data_seq))) THEN excluded.models ELSE o.models END,
    data_first_seq = CASE WHEN (excluded.data_seq IS NOT NULL AND (o.data_seq IS NULL OR (excluded.data_first_seq, excluded.data_seq) > (o.data_first_seq, o.data_seq))) THEN excluded.data_first_seq ELSE o.data_first_seq END,
    data_seq = CASE WHEN (excluded.data_seq IS NOT NULL AND (o.data_seq IS NULL OR (excluded.data_first_seq, excluded.data_seq) > (o.data_first_seq, o.data_seq))) THEN excluded.data_seq ELSE o.data_seq END,
    is_deleted = CASE WHEN ((excluded.version_first_seq, excluded.version_seq) > (o.version_first_seq, o.version_seq)) THEN excluded.is_deleted ELSE o.is_deleted END,
    deleted_at = CASE WHEN ((excluded.version_first_seq, excluded.version_seq) > (o.version_first_seq, o.version_seq)) THEN excluded.deleted_at ELSE o.deleted_at END,
    version_first_seq = CASE WHEN ((excluded.version_first_seq, excluded.version_seq) > (o.version_first_seq, o.version_seq)) THEN excluded.version_first_seq ELSE o.version_first_seq END,
    version_seq = CASE WHEN ((excluded.version_first_seq, excluded.version_seq) > (o.version_first_seq, o.version_seq)) THEN excluded.version_seq ELSE o.version_seq END,
    snapshot_run_id = CASE WHEN ((excluded.version_first_seq, excluded.version_seq) > (o.version_first_seq, o.version_seq)) THEN NULL ELSE o.snapshot_run_id END,
    snapshot_first_seq = CASE WHEN ((excluded.version_first_seq, excluded.version_seq) > (o.version_first_seq, o.version_seq)) THEN NULL ELSE o.snapshot_first_seq END
WHERE (excluded.data_seq IS NOT NULL AND (o.data_seq IS NULL OR (excluded.data_first_seq, excluded.data_seq) > (o.data_first_seq, o.data_seq))) OR ((excluded.version_first_seq, excluded.version_seq) > (o.version_first_seq, o.version_seq));
