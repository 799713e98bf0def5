-- Read Knit's values leniently: a malformed one must never make a batch fail (that would answer 503 to
-- good events forever), so these return NULL instead of raising.

-- Knit sends counts and epoch-millisecond times as strings.
CREATE OR REPLACE FUNCTION {landing}.try_bigint(value text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value ~ '^\s*-?[0-9]{1,18}(\.0+)?\s*$' THEN trunc(value::numeric)::bigint END
$$;

CREATE OR REPLACE FUNCTION {landing}.try_epoch_ms(value text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value ~ '^\s*[0-9]{1,15}(\.[0-9]*)?\s*$' THEN to_timestamp(value::numeric / 1000) END
$$;

-- A dead letter's body as JSON, or NULL when it is not readable JSON.
CREATE OR REPLACE FUNCTION {landing}.try_jsonb(value bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN convert_from(value, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- An id is kept as the receiver reads it: a non-empty string or number of at most 512 characters
-- (a longer one, e.g. from a body dead-lettered for exactly that, would not fit the run index).
CREATE OR REPLACE FUNCTION {landing}.envelope_id(doc jsonb, key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(doc -> key) IN ('string', 'number') AND length(doc ->> key) BETWEEN 1 AND 512
                THEN doc ->> key END
$$;
