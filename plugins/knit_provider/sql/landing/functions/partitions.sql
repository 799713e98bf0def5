-- The weekly partitions of events (see 0003_partitioned_events.sql).

-- The partition of the week that contains a time: weeks start on Monday 00:00 UTC.
CREATE OR REPLACE FUNCTION {landing}.event_week(at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT date_trunc('week', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;

-- Create the weekly partitions from the week of p_at to p_weeks_ahead weeks after it; return how many
-- were created. Rows that landed in the DEFAULT partition meanwhile (nothing created the partition in
-- time) are moved into the new one. Each partition is built as a table and ATTACHed, which takes a
-- lighter lock on events than CREATE ... PARTITION OF: the receiver keeps writing meanwhile.
-- Weeks already covered (the old table's, or created by another caller) are left as they are.
-- Tries the lock instead of waiting for it: a busy lock (prune dropping a partition, the maintenance DAG,
-- another receiver's housekeeping) means another pass is at work; this one creates nothing and the next
-- creates what is missing (rows past the last week land in events_default meanwhile and are moved then).
CREATE OR REPLACE FUNCTION {landing}.ensure_event_partitions(
    p_at           timestamptz DEFAULT now(),
    p_weeks_ahead  integer DEFAULT 4,
    p_lock_timeout text DEFAULT '5s'
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    created integer := 0;
    week_start timestamptz;
    week_end timestamptz;
    part text;
    caller_lock_timeout text := current_setting('lock_timeout');
BEGIN
    IF NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = '{landing}.events'::regclass), 'MEMBER') THEN
        RAISE WARNING 'role % does not own %.events: no partitions created ahead; run `python -m knit_provider '
                      'migrate` or the knit_landing_maintenance DAG as its owner', current_user, '{landing}';
        RETURN 0;
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('knit_provider.partitions:' || '{landing}')) THEN
        RAISE WARNING 'partitions of %.events not checked: another pass holds the partitions lock (prune, '
                      'maintenance); the next pass creates what is missing', '{landing}';
        RETURN 0;
    END IF;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    FOR i IN 0 .. greatest(p_weeks_ahead, 0) LOOP
        week_start := {landing}.event_week(p_at) + i * interval '1 week';
        week_end := week_start + interval '1 week';
        part := 'events_' || to_char(week_start AT TIME ZONE 'UTC', 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('{landing}.%I', part)) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE {landing}.%I (LIKE {landing}.events INCLUDING DEFAULTS) '
                           'WITH (toast_tuple_target = 8160)', part);
            EXECUTE format('ALTER TABLE {landing}.%I ADD CONSTRAINT %I CHECK (received_at >= %L AND received_at < %L)',
                           part, part || '_range', week_start, week_end);
            EXECUTE format('WITH moved AS (DELETE FROM {landing}.events_default WHERE received_at >= %L '
                           'AND received_at < %L RETURNING *) INSERT INTO {landing}.%I SELECT * FROM moved',
                           week_start, week_end, part);
            EXECUTE format('ALTER TABLE {landing}.events ATTACH PARTITION {landing}.%I FOR VALUES FROM (%L) TO (%L)',
                           part, week_start, week_end);
            EXECUTE format('ALTER TABLE {landing}.%I DROP CONSTRAINT %I', part, part || '_range');
            created := created + 1;
        EXCEPTION
            WHEN invalid_object_definition THEN
                NULL;
            WHEN lock_not_available THEN
                RAISE WARNING 'partition % not created: %.events_default is in use; the next pass creates it',
                              part, '{landing}';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', caller_lock_timeout, true);
    RETURN created;
END
$fn$;
