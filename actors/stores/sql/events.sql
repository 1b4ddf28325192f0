-- name: append
INSERT INTO events (type, data)
SELECT * FROM unnest(%(types)s::text[], %(datas)s::jsonb[])
RETURNING position;

-- name: read_after
-- One window of events after the checkpoint, in (txid, position) order, only from transactions
-- older than every transaction still running: an event whose transaction commits late is read
-- after it commits, never skipped. The type filter is not in the WHERE clause on purpose: with
-- it, a table without fresh statistics made the planner guess that few rows match, scan every
-- remaining event and sort them (O(backlog) per batch). Here the plan is always the ordered
-- index walk that stops at the limit; events of other types come back without their data and
-- `wanted` false, and the store skips them.
SELECT position, txid, type, created_at,
       %(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]) AS wanted,
       CASE WHEN %(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]) THEN data END AS data
FROM events
WHERE (txid, position) > (%(txid)s, %(position)s)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY txid, position
LIMIT %(limit)s;

-- name: head
SELECT coalesce(max(position), 0) AS position, count(*) AS total FROM events;

-- name: count_after
SELECT count(*) AS n
FROM events
WHERE (txid, position) > (%(txid)s, %(position)s)
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]));
