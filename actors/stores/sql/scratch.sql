-- Schemas a program creates for itself (the demo, the examples) and may drop and recreate on
-- every run. The schema's comment is the mark: a schema without it belongs to somebody else
-- and is never dropped (a user's `--schema important` once lost a 1,000-row table that way).

-- name: schema_comment
-- One row if the schema exists (comment NULL when it has none), no row if it does not.
SELECT obj_description(oid, 'pg_namespace') AS comment FROM pg_namespace WHERE nspname = %(schema)s;

-- name: drop_schema
DROP SCHEMA {schema} CASCADE;

-- name: create_schema
CREATE SCHEMA {schema};

-- name: mark_schema
COMMENT ON SCHEMA {schema} IS {comment};
