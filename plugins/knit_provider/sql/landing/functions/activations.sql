-- The integration registry's reading of activations (see 0004_integrations.sql).

-- The validation errors of an activation's eventData, or NULL when it reports none. Knit documents only
-- that the payload "may contain validation errors"; the key `errors` is the simulator's guess, and an
-- empty value (null, [], {}, "") counts as none. The one place to change when Knit's shape is known.
CREATE OR REPLACE FUNCTION {landing}.activation_errors(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(data) <> 'object' THEN NULL
                WHEN data -> 'errors' IN ('null'::jsonb, '[]'::jsonb, '{}'::jsonb, '""'::jsonb) THEN NULL
                ELSE data -> 'errors' END
$$;

-- Whether activation (at, id) is newer than the stored (stored_at, stored_id); any activation beats none.
CREATE OR REPLACE FUNCTION {landing}.activation_is_newer(at timestamptz, id text, stored_at timestamptz, stored_id text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT id IS NOT NULL AND (stored_id IS NULL OR (at, id) > (stored_at, stored_id))
$$;
