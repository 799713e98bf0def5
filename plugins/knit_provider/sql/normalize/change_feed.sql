-- The change feed (docs/chaining.md): every normalized table says which rows a normalization changed.
--
-- Each normalization takes one value of knit_change_seq (knit_begin_change) and every row it inserts,
-- updates or soft-deletes carries it in knit_changed_seq, with knit_changed_at (the columns' defaults
-- on INSERT, the knit_mark_changed trigger on UPDATE: no statement names them); knit_created_seq is the
-- value that first inserted the row's key. A row a normalization deletes and writes again unchanged
-- (a child list or stage history rebuilt) keeps its marks (knit_finish_change), so a normalization
-- that changes nothing (a run normalized twice) leaves no trace. Keys that are gone are recorded in
-- knit_deleted_rows. Rows of earlier releases carry 0.
--
-- Normalizations of different integrations run at once, so sequence values do not commit in order.
-- knit_change_watermark() is the highest value below which every normalization has committed: a
-- consumer that reads "knit_changed_seq > W AND knit_changed_seq <= knit_change_watermark()" never
-- misses a row. Each open normalization holds a shared advisory lock whose key is a lower bound of
-- its value (taken before the value), which the watermark reads from pg_locks.
-- Idempotent: part of the schema DDL (normalize/schema.py); attached per table by the DDL it generates.

CREATE SEQUENCE IF NOT EXISTS {target}.knit_change_seq;

CREATE TABLE IF NOT EXISTS {target}.knit_deleted_rows (
    table_name        text        NOT NULL,
    row_key           jsonb       NOT NULL,
    knit_changed_seq  bigint      NOT NULL,
    knit_changed_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS knit_deleted_rows_changed_idx ON {target}.knit_deleted_rows (knit_changed_seq);
COMMENT ON TABLE {target}.knit_deleted_rows IS
    'Keys of rows a normalization removed from a table (a shorter child list or stage history): read with the change feed, by knit_changed_seq, and delete them before applying the changed rows.';

-- Advisory lock keys of open normalizations of this schema: 2^52 values above a base of this
-- schema (from the sequence's oid), far above the 32-bit hashtext keys of the provider's other locks.
CREATE OR REPLACE FUNCTION {target}.knit_change_lock_base() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT ((('{target}.knit_change_seq'::regclass::oid)::bigint & 1023) + 1) << 52
$$;

-- Start a change: take this transaction's value (also set as knit.changed_seq, which the columns'
-- defaults read) and hold the lock that keeps the watermark below it until commit. The bound is
-- read before the lock and the value taken after it, so a watermark computed at any moment either
-- sees the lock or was computed before the value existed. Also what a hand-made change calls first.
CREATE OR REPLACE FUNCTION {target}.knit_begin_change() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_free bigint;
    taken     bigint;
BEGIN
    taken := nullif(current_setting('knit.changed_seq', true), '')::bigint;
    IF taken IS NOT NULL THEN
        RETURN taken;  -- one value per transaction
    END IF;
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO next_free
    FROM {target}.knit_change_seq;
    PERFORM pg_advisory_xact_lock_shared({target}.knit_change_lock_base() + next_free);
    taken := nextval('{target}.knit_change_seq');
    PERFORM set_config('knit.changed_seq', taken::text, true);
    CREATE TEMP TABLE IF NOT EXISTS _knit_gone (
        table_name text  NOT NULL,
        row_key    jsonb NOT NULL,
        old_row    jsonb NOT NULL
    ) ON COMMIT DROP;
    RETURN taken;
END
$$;

-- The highest value such that every change with a value at or below it has committed (or rolled
-- back). Call it in a statement of its own, then read: a statement's snapshot is taken before the
-- functions it calls run, so reading in the same statement could miss a change committing between.
CREATE OR REPLACE FUNCTION {target}.knit_change_watermark() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_taken  bigint;
    lowest_open bigint;
    base        bigint := {target}.knit_change_lock_base();
BEGIN
    -- The sequence first: a change whose lock the next statement does not see takes a later value.
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO last_taken
    FROM {target}.knit_change_seq;
    SELECT min(((l.classid::bigint << 32) | l.objid::bigint) - base) INTO lowest_open
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((l.classid::bigint << 32) | l.objid::bigint) BETWEEN base AND base + (1::bigint << 52) - 1;
    RETURN least(last_taken, lowest_open - 1);
END
$$;

-- The primary key columns of a table, in order.
CREATE OR REPLACE FUNCTION {target}.knit_key_columns(tbl regclass) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(a.attname::text ORDER BY k.ord)
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = tbl AND i.indisprimary
$$;

-- Before each row an UPDATE writes: the change's value and time, so no statement (a data type's step,
-- the snapshot steps, an upgrade, a hand edit) has to name the feed's columns. A statement that sets
-- knit_changed_seq itself (knit_finish_change giving a row written back its old marks) is left as it is.
CREATE OR REPLACE FUNCTION {target}.knit_mark_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.knit_changed_seq IS DISTINCT FROM OLD.knit_changed_seq THEN
        RETURN NEW;
    END IF;
    NEW.knit_changed_seq := nullif(current_setting('knit.changed_seq', true), '')::bigint;
    IF NEW.knit_changed_seq IS NULL THEN
        RAISE EXCEPTION 'rows of %.% are updated by Knit normalization only', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING HINT = format('To change them by hand, call %I.knit_begin_change() first and %I.knit_finish_change() '
                                'before commit, in the same transaction, so the change feed records it.',
                                TG_TABLE_SCHEMA, TG_TABLE_SCHEMA);
    END IF;
    NEW.knit_changed_at := now();
    RETURN NEW;
END
$$;

-- After each DELETE statement on a normalized table: keep the rows it removed until the change
-- finishes, which tells the ones written back from the ones gone.
CREATE OR REPLACE FUNCTION {target}.knit_keep_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF nullif(current_setting('knit.changed_seq', true), '') IS NULL THEN
        RAISE EXCEPTION 'rows of %.% are deleted by Knit normalization only', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING HINT = format('To change them by hand, call %I.knit_begin_change() first and %I.knit_finish_change() '
                                'before commit, in the same transaction, so the change feed records it.',
                                TG_TABLE_SCHEMA, TG_TABLE_SCHEMA);
    END IF;
    INSERT INTO pg_temp._knit_gone (table_name, row_key, old_row)
    SELECT TG_TABLE_NAME, (SELECT jsonb_object_agg(c, r.j -> c) FROM unnest(TG_ARGV) AS c), r.j
    FROM (SELECT to_jsonb(g) AS j FROM gone g) r;
    RETURN NULL;
END
$$;

-- Finish a change before commit: a key deleted and written again keeps its knit_created_seq, and
-- also its knit_changed_seq and knit_changed_at when its columns are as they were; the keys not
-- written again go to knit_deleted_rows. Returns the change's value.
CREATE OR REPLACE FUNCTION {target}.knit_finish_change() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    changed bigint := nullif(current_setting('knit.changed_seq', true), '')::bigint;
    tbl     text;
    keys    text[];
    key_of  text;
BEGIN
    IF changed IS NULL THEN
        RAISE EXCEPTION 'no change to finish: call %.knit_begin_change() first', '{target}';
    END IF;
    FOR tbl IN SELECT DISTINCT table_name FROM pg_temp._knit_gone LOOP
        keys := {target}.knit_key_columns(format('%s.%I', '{target}', tbl)::regclass);
        SELECT format('jsonb_build_object(%s)', string_agg(format('%L, x.%I', c, c), ', ')) INTO key_of
        FROM unnest(keys) AS c;
        EXECUTE format($sql$
            WITH gone AS (
                -- A key deleted more than once (a change by hand) is judged by its row from before the
                -- change: the one whose knit_created_seq is not this change's (false sorts first).
                SELECT DISTINCT ON (row_key) row_key, old_row,
                       old_row - '{knit_changed_seq,knit_created_seq,knit_changed_at}'::text[] AS old_data
                FROM pg_temp._knit_gone WHERE table_name = %2$L
                ORDER BY row_key, (old_row ->> 'knit_created_seq')::bigint = $1
            ), back AS (
                UPDATE %1$s.%3$I x SET
                    knit_created_seq = (g.old_row ->> 'knit_created_seq')::bigint,
                    knit_changed_seq = CASE WHEN %5$s = g.old_data THEN (g.old_row ->> 'knit_changed_seq')::bigint
                                            ELSE x.knit_changed_seq END,
                    knit_changed_at = CASE WHEN %5$s = g.old_data THEN (g.old_row ->> 'knit_changed_at')::timestamptz
                                           ELSE x.knit_changed_at END
                FROM gone g
                WHERE x.knit_changed_seq = $1 AND %4$s = g.row_key
                RETURNING g.row_key
            )
            INSERT INTO %1$s.knit_deleted_rows (table_name, row_key, knit_changed_seq, knit_changed_at)
            SELECT DISTINCT %2$L, g.row_key, $1, now()
            FROM gone g
            WHERE g.row_key NOT IN (SELECT row_key FROM back)
            $sql$, '{target}', tbl, tbl, key_of,
                   $e$(to_jsonb(x) - '{knit_changed_seq,knit_created_seq,knit_changed_at}'::text[])$e$)
        USING changed;
    END LOOP;
    TRUNCATE pg_temp._knit_gone;
    RETURN changed;
END
$$;

-- What one change did to each of the tables: rows inserted (new keys), updated (keys that were
-- there, a soft delete included), soft-deleted (of those two, the rows now is_deleted) and deleted
-- (keys gone, knit_deleted_rows), as {table: {inserted, updated, soft_deleted, deleted}}. Views are
-- left out. Read through each table's knit_changed_seq index.
CREATE OR REPLACE FUNCTION {target}.knit_change_counts(changed bigint, tables text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tbl    text;
    rel    regclass;
    one    jsonb;
    counts jsonb := '{}';
BEGIN
    FOREACH tbl IN ARRAY tables LOOP
        rel := to_regclass(format('%s.%I', '{target}', tbl));
        CONTINUE WHEN rel IS NULL OR (SELECT relkind FROM pg_class WHERE oid = rel) <> 'r';
        EXECUTE format(
            'SELECT jsonb_build_object(''inserted'', count(*) FILTER (WHERE knit_created_seq = $1),
                                       ''updated'', count(*) FILTER (WHERE knit_created_seq <> $1),
                                       ''soft_deleted'', %s)
             FROM %s WHERE knit_changed_seq = $1',
            CASE WHEN EXISTS (SELECT 1 FROM pg_attribute
                              WHERE attrelid = rel AND attname = 'is_deleted' AND NOT attisdropped)
                 THEN 'count(*) FILTER (WHERE is_deleted)' ELSE '0' END,
            rel)
        INTO one USING changed;
        counts := counts || jsonb_build_object(tbl, one || jsonb_build_object('deleted',
            (SELECT count(*) FROM {target}.knit_deleted_rows d
             WHERE d.knit_changed_seq = changed AND d.table_name = tbl)));
    END LOOP;
    RETURN counts;
END
$$;

-- Give one normalized table the feed's columns, defaults, index and triggers (views: nothing to do).
CREATE OR REPLACE FUNCTION {target}.knit_change_feed_attach(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    keys text[];
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = tbl) <> 'r' THEN
        RETURN;
    END IF;
    -- Existing rows: 0 and now, stored once (a constant default rewrites nothing); then the real defaults.
    EXECUTE format('ALTER TABLE %s
        ADD COLUMN IF NOT EXISTS knit_changed_seq bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS knit_created_seq bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS knit_changed_at timestamptz NOT NULL DEFAULT now()', tbl);
    EXECUTE format($sql$ALTER TABLE %s
        ALTER COLUMN knit_changed_seq SET DEFAULT nullif(current_setting('knit.changed_seq', true), '')::bigint,
        ALTER COLUMN knit_created_seq SET DEFAULT nullif(current_setting('knit.changed_seq', true), '')::bigint,
        ALTER COLUMN knit_changed_at SET DEFAULT now()$sql$, tbl);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (knit_changed_seq)',
                   (SELECT relname FROM pg_class WHERE oid = tbl) || '_changed_idx', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS knit_mark_changed ON %s', tbl);
    EXECUTE format('CREATE TRIGGER knit_mark_changed BEFORE UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION %s.knit_mark_changed()', tbl, '{target}');
    keys := {target}.knit_key_columns(tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS knit_keep_deleted ON %s', tbl);
    EXECUTE format('CREATE TRIGGER knit_keep_deleted AFTER DELETE ON %s REFERENCING OLD TABLE AS gone '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %s.knit_keep_deleted(%s)',
                   tbl, '{target}', (SELECT string_agg(quote_literal(c), ', ') FROM unnest(keys) AS c));
    EXECUTE format('COMMENT ON COLUMN %s.knit_changed_seq IS %L', tbl,
                   'The change feed: the value of the normalization that last changed this row (0: before the feed). Read rows changed since W with knit_changed_seq > W AND knit_changed_seq <= knit_change_watermark().');
END
$$;
