-- name: register
INSERT INTO processes (node, host, pid, start_ticks, expires_at, tree)
VALUES (%(node)s, %(host)s, %(pid)s, %(start_ticks)s, now() + make_interval(secs => %(ttl)s), %(tree)s)
RETURNING id, node, host, pid, start_ticks, started_at, heartbeat_at, expires_at;

-- name: heartbeat
-- 0 rows updated means the process was pruned as dead: it must stop at once.
UPDATE processes
SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(ttl)s)
WHERE id = %(id)s
RETURNING id;

-- name: deregister
DELETE FROM processes WHERE id = %(id)s;

-- name: get
SELECT id, node, host, pid, start_ticks, started_at, heartbeat_at, expires_at FROM processes WHERE id = %(id)s;

-- name: all
SELECT id, node, host, pid, start_ticks, started_at, heartbeat_at, expires_at FROM processes ORDER BY id;

-- name: retire
-- A stopping worker: its lease runs out after `grace` seconds (time for the completer to flush
-- its last outcomes) and the rescuer then removes it.
UPDATE processes SET expires_at = now() + make_interval(secs => %(grace)s) WHERE id = %(id)s;

-- name: expire_dead
-- Processes of this host that are gone (checked with /proc by the rescuer): their lease ends
-- now, so this very pass rescues their jobs instead of waiting for the heartbeat to expire.
UPDATE processes SET expires_at = now() - interval '1 second' WHERE id = ANY(%(ids)s::bigint[]) AND expires_at > now();

-- name: local_processes
SELECT id, pid, start_ticks FROM processes WHERE host = %(host)s;

-- name: beat
-- The heartbeat thread's beat: extend the lease and, in the same round trip, check that the
-- job the worker is running is still its own (not rescued, not cancelled).
-- alive = 0: the process row was pruned as dead (the worker must stop at once).
WITH p AS (
    UPDATE processes
    SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(ttl)s)
    WHERE id = %(id)s
    RETURNING id
)
SELECT (SELECT count(*) FROM p) AS alive,
       (SELECT count(*) FROM jobs
        WHERE id = %(job)s::bigint AND claimed_by = %(id)s AND attempt = %(attempt)s::int
          AND state IS NOT DISTINCT FROM 'running') AS owns;  -- by primary key: see jobs.sql, mark
