-- name: append
INSERT INTO events (type, data)
SELECT * FROM unnest(%(types)s::text[], %(datas)s::jsonb[])
RETURNING position;

-- name: read_after
-- Events after the checkpoint, in (txid, position) order, only from transactions older than
-- every transaction still running: an event whose transaction commits late is read after it
-- commits, never skipped.
SELECT position, txid, type, data, created_at
FROM events
WHERE (txid, position) > (%(txid)s, %(position)s)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
ORDER BY txid, position
LIMIT %(limit)s;

-- name: head
SELECT coalesce(max(position), 0) AS position, count(*) AS total FROM events;

-- name: count_after
SELECT count(*) AS n
FROM events
WHERE (txid, position) > (%(txid)s, %(position)s)
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]));
