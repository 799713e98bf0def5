-- How long an event id is remembered in event_ids, and forgetting the ids past it.

-- How long an event id is remembered. A redelivery after it lands again (see README, "Retention").
CREATE OR REPLACE FUNCTION {landing}.dedup_window() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '7 days' $$;

-- Forget the ids older than the dedup window (start-up, the receiver hourly, maintenance, prune); return how
-- many. A role that may not delete them (a receiver without that grant) leaves them to the owner's next pass.
CREATE OR REPLACE FUNCTION {landing}.forget_event_ids(p_at timestamptz DEFAULT now()) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    forgotten bigint;
BEGIN
    IF NOT has_table_privilege('{landing}.event_ids', 'DELETE') THEN
        RAISE WARNING 'role % may not delete from %.event_ids: ids past the dedup window are kept until its '
                      'owner runs `python -m knit_provider migrate` or the knit_landing_maintenance DAG',
                      current_user, '{landing}';
        RETURN 0;
    END IF;
    DELETE FROM {landing}.event_ids WHERE received_at < p_at - {landing}.dedup_window();
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    RETURN forgotten;
END
$fn$;
