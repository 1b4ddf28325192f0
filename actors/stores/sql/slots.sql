-- name: take
-- Slot `key` of a cluster-wide limit: a session-level advisory lock, held until given back or
-- until the session ends (its node died; see sessions.sql for how fast a vanished host's
-- session ends).
SELECT pg_try_advisory_lock(%(key)s) AS taken;

-- name: give_back
SELECT pg_advisory_unlock(%(key)s) AS released;

-- name: check
SELECT 1 AS alive;

-- name: holders
-- How many of the given slot keys are held, by any session (for tools and tests).
SELECT count(*) AS n
FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND ((classid::bigint << 32) | objid::bigint) = ANY(%(keys)s::bigint[]);
