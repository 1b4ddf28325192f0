-- Cron schedules (issue 15): one row per schedule; see migrations/0003_job_ops.sql.

-- name: now
SELECT now() AS now;

-- name: ensure
-- A schedule seen for the first time starts at `first_tick` (its latest tick: nothing is
-- enqueued for the past). A changed cron or kind is taken over; `last_tick` stays.
INSERT INTO job_schedules AS s (name, cron, kind, last_tick, updated_by)
VALUES (%(name)s, %(cron)s, %(kind)s, %(first_tick)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, kind = EXCLUDED.kind, updated_at = now()
WHERE s.cron <> EXCLUDED.cron OR s.kind <> EXCLUDED.kind;

-- name: lock
-- The schedule's row for one tick pass; a node that finds it locked skips this pass (another
-- node is enqueueing the same ticks right now and moves last_tick past them).
SELECT name, last_tick, now() AS now FROM job_schedules WHERE name = %(name)s FOR UPDATE SKIP LOCKED;

-- name: advance
UPDATE job_schedules SET last_tick = %(tick)s, updated_at = now(), updated_by = %(by)s
WHERE name = %(name)s AND last_tick < %(tick)s;

-- name: all
SELECT name, cron, kind, last_tick, updated_at, updated_by FROM job_schedules ORDER BY name;
