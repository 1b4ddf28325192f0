-- name: register
INSERT INTO processes (node, host, pid, expires_at)
VALUES (%(node)s, %(host)s, %(pid)s, now() + make_interval(secs => %(ttl)s))
RETURNING id, node, host, pid, started_at, heartbeat_at, expires_at;

-- name: heartbeat
-- 0 rows updated means the process was pruned as dead: it must stop at once.
UPDATE processes
SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(ttl)s)
WHERE id = %(id)s
RETURNING id;

-- name: deregister
DELETE FROM processes WHERE id = %(id)s;

-- name: get
SELECT id, node, host, pid, started_at, heartbeat_at, expires_at FROM processes WHERE id = %(id)s;

-- name: all
SELECT id, node, host, pid, started_at, heartbeat_at, expires_at FROM processes ORDER BY id;
