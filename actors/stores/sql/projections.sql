-- name: try_lock
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: holds_lock
-- Does *this session* hold the advisory lock? The pid filter matters: counting locks on the key
-- without it sees another session's lock and says yes (the two-leaders bug).
SELECT count(*) > 0 AS held
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
  AND classid = %(classid)s AND objid = %(objid)s AND objsubid = 1;

-- name: unlock
SELECT pg_advisory_unlock(%(key)s) AS unlocked;

-- name: lock_holder
-- Which session holds a projection's lock, and its application_name (it names the node).
SELECT l.pid, a.application_name, a.client_addr, a.backend_start
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(classid)s AND l.objid = %(objid)s AND l.objsubid = 1;
