-- name: register
INSERT INTO processes (node, host, pid, start_ticks, expires_at)
VALUES (%(node)s, %(host)s, %(pid)s, %(start_ticks)s, now() + make_interval(secs => %(ttl)s))
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
