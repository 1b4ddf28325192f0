-- Read-only queries of the observer (actors/observer): what the web page and /metrics show.

-- name: job_counts
-- Jobs by queue, kind and state (the page sums them by state, by queue and by kind).
SELECT queue, kind, state, count(*) AS n FROM jobs GROUP BY queue, kind, state ORDER BY queue, kind, state;

-- name: failed_jobs
-- The most recently finished failed or cancelled jobs, with their last error.
SELECT id, queue, kind, state, attempt, max_attempts, finished_at, last_error
FROM jobs WHERE state IN ('failed', 'cancelled')
ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT %(limit)s;

-- name: longest_running
SELECT id, queue, kind, attempt, max_attempts, claimed_by, claimed_at,
       extract(epoch FROM now() - claimed_at)::float8 AS running_s
FROM jobs WHERE state = 'running' ORDER BY claimed_at LIMIT %(limit)s;

-- name: processes
-- Every worker process sharing the database (every node), with the jobs it runs now.
SELECT p.id, p.node, p.host, p.pid, p.started_at, p.heartbeat_at, p.expires_at,
       p.expires_at < now() AS expired,
       (SELECT count(*) FROM jobs AS j WHERE j.state = 'running' AND j.claimed_by = p.id) AS running
FROM processes AS p ORDER BY p.node, p.id;

-- name: events_tail
-- Where the event log ends now: the observer counts job events from here on.
SELECT txid, position FROM events ORDER BY txid DESC, position DESC LIMIT 1;

-- name: checkpoints
SELECT name, txid, position, holder, updated_at FROM projection_checkpoints ORDER BY name;

-- name: job
-- One job and the error of every failed attempt (the page's job details).
SELECT id, queue, kind, state, attempt, max_attempts, priority, created_at, run_at, claimed_at, claimed_by,
       finished_at, last_error, errors, left(payload::text, 500) AS payload
FROM jobs WHERE id = %(id)s;
