-- name: insert_many
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts)
SELECT q, k, p, pr, coalesce(r, now()), m
FROM unnest(%(queues)s::text[], %(kinds)s::text[], %(payloads)s::jsonb[], %(priorities)s::int[],
            %(run_ats)s::timestamptz[], %(max_attempts)s::int[]) AS t(q, k, p, pr, r, m)
RETURNING id;

-- name: notify
SELECT pg_notify(%(channel)s, %(queue)s);

-- name: get
SELECT * FROM jobs WHERE id = %(id)s;

-- name: counts
SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state ORDER BY queue, state;

-- name: claim
-- Up to %(limit)s available jobs of one queue, highest priority first, then oldest; locked rows
-- are skipped, so workers never wait on each other. The inner query walks jobs_claim_idx
-- (available rows only), whatever the number of finished rows.
WITH picked AS (
    SELECT id
    FROM jobs
    WHERE state = 'available' AND queue = %(queue)s AND run_at <= now()
      -- fenced: a worker whose lease ran out (frozen, then resumed) claims nothing; its
      -- process row may be gone already, and jobs claimed for it would be orphans
      AND EXISTS (SELECT 1 FROM processes WHERE id = %(process)s AND expires_at > now())
      -- a paused queue (job_queue_pauses, issue 15): one primary-key probe per claim
      AND NOT EXISTS (SELECT 1 FROM job_queue_pauses AS p WHERE p.queue = %(queue)s)
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET state = 'running', attempt = j.attempt + 1, claimed_at = now(), claimed_by = %(process)s,
    started_at = NULL, ended_at = NULL, ended_error = NULL
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.queue, j.kind, j.payload, j.priority, j.attempt, j.max_attempts, j.run_at;

-- name: complete
-- (Outcome statements look rows up by primary key (`id = ANY`) and run with custom plans
-- (the store passes prepare=False): a generic plan guesses 10 rows for the unnest and 1 for
-- the running jobs and picks a nested loop that costs O(batch x running), measured at 50 ms
-- for a batch of 400; see docs/NOTES.md.)
-- Finished jobs, matched on their fencing token (claimed_by, attempt) and state: an outcome
-- for a job that was rescued (and maybe claimed again) changes nothing. Each job completed
-- here gets its completion event in the same statement.
WITH done AS (
    UPDATE jobs AS j
    SET state = 'completed', finished_at = to_timestamp(t.finished)
    FROM unnest(%(ids)b::bigint[], %(processes)b::bigint[], %(attempts)b::int[],
                %(finished)b::float8[], %(run_ms)b::float8[])
         AS t(id, process, attempt, finished, run_ms)
    WHERE j.id = ANY(%(ids)b::bigint[]) AND j.id = t.id AND j.claimed_by = t.process AND j.attempt = t.attempt
      AND j.state = 'running'
    RETURNING j.id, j.kind, j.queue, j.attempt, j.created_at, j.claimed_at, j.finished_at, t.run_ms, t.process
)
INSERT INTO events (type, data)
SELECT 'job.completed', jsonb_build_object(
    'id', id, 'kind', kind, 'queue', queue, 'attempt', attempt, 'run_ms', run_ms,
    'node', (SELECT p.node FROM processes AS p WHERE p.id = done.process),
    'wait_ms', 1000 * extract(epoch FROM claimed_at - created_at),
    'latency_ms', 1000 * extract(epoch FROM finished_at - created_at))
FROM done
RETURNING (data->>'id')::bigint AS id;

-- name: fail
-- Failed attempts: back to available after `retry_in` seconds, or failed for good once
-- max_attempts is reached. Fenced like `complete`; events in the same statement.
WITH failed AS (
    UPDATE jobs AS j
    SET state = CASE WHEN j.attempt >= j.max_attempts OR t.discard THEN 'failed' ELSE 'available' END,
        run_at = CASE WHEN j.attempt >= j.max_attempts OR t.discard THEN j.run_at
                      ELSE now() + make_interval(secs => t.retry_in) END,
        finished_at = CASE WHEN j.attempt >= j.max_attempts OR t.discard THEN to_timestamp(t.finished) END,
        claimed_by = NULL,
        last_error = t.error,
        -- the handler's traceback (issue 15), when the worker sent one, only in the history
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'process', t.process, 'at', to_timestamp(t.finished), 'error', t.error)
            || CASE WHEN t.traceback IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('traceback', t.traceback) END)
    FROM unnest(%(ids)b::bigint[], %(processes)b::bigint[], %(attempts)b::int[],
                %(finished)b::float8[], %(errors)b::text[], %(retry_in)b::float8[],
                %(discard)b::bool[], %(run_ms)b::float8[], %(tracebacks)b::text[])
         AS t(id, process, attempt, finished, error, retry_in, discard, run_ms, traceback)
    WHERE j.id = ANY(%(ids)b::bigint[]) AND j.id = t.id AND j.claimed_by = t.process AND j.attempt = t.attempt
      AND j.state = 'running'
    RETURNING j.id, j.kind, j.queue, j.attempt, j.state, j.created_at, to_timestamp(t.finished) AS finished_at, t.error, t.run_ms
)
INSERT INTO events (type, data)
SELECT CASE WHEN state = 'failed' THEN 'job.failed' ELSE 'job.retried' END, jsonb_build_object(
    'id', id, 'kind', kind, 'queue', queue, 'attempt', attempt, 'run_ms', run_ms, 'error', error,
    'latency_ms', 1000 * extract(epoch FROM finished_at - created_at))
FROM failed
RETURNING (data->>'id')::bigint AS id, type;

-- name: unclaim
-- Claimed jobs that were never started (the worker stopped, or no permit): back to available,
-- the attempt not counted.
UPDATE jobs AS j
SET state = 'available', attempt = j.attempt - 1, claimed_by = NULL, claimed_at = NULL,
    started_at = NULL, ended_at = NULL, ended_error = NULL,
    run_at = now() + make_interval(secs => t.delay)
FROM unnest(%(ids)b::bigint[], %(processes)b::bigint[], %(attempts)b::int[], %(delays)s::float8[])
     AS t(id, process, attempt, delay)
WHERE j.id = ANY(%(ids)b::bigint[]) AND j.id = t.id AND j.claimed_by = t.process AND j.attempt = t.attempt
  AND j.state = 'running'
RETURNING j.id;

-- name: mark
-- One statement per job, on the worker's own connection, before its handler starts: the job
-- it ran before ended (ended_error NULL: it succeeded), and this one starts. Fenced like
-- `complete`; `started` = 0 means the job is no longer this worker's (rescued, cancelled):
-- it must not run.
-- `state IS NOT DISTINCT FROM 'running'` (not `=`, the same for a NOT NULL column) keeps the
-- planner off the partial index jobs_running_idx (WHERE state = 'running'), which it can only
-- use when it proves the WHERE implies that predicate: a generic plan (psycopg prepares a
-- statement after 5 runs) guessed that index cheaper than the primary key and then filtered
-- every running row of the process (19,999 rows, 7-14 ms a mark with 20,000 claimed; issue 21,
-- second round). The same goes for `owns` here and `beat` in processes.sql.
WITH ended AS (
    UPDATE jobs SET ended_at = now(), ended_error = %(ended_error)s::text
    WHERE id = %(ended_id)s::bigint AND claimed_by = %(process)s AND attempt = %(ended_attempt)s::int
      AND state IS NOT DISTINCT FROM 'running'
    RETURNING id
), started AS (
    UPDATE jobs SET started_at = now()
    WHERE id = %(start_id)s::bigint AND claimed_by = %(process)s AND attempt = %(start_attempt)s::int
      AND state IS NOT DISTINCT FROM 'running'
    RETURNING id
)
SELECT (SELECT count(*) FROM started) AS started, (SELECT count(*) FROM ended) AS ended;

-- name: owns
-- Is this job still running for this claim (not rescued, not cancelled)?
SELECT count(*) AS n FROM jobs
WHERE id = %(id)s AND claimed_by = %(process)s AND attempt = %(attempt)s AND state IS NOT DISTINCT FROM 'running';

-- name: rescue
-- Processes whose heartbeat expired, and the jobs they held, in one transaction (SKIP LOCKED:
-- safe on every node at once); the process rows go away. What happens to each job depends on
-- what its worker recorded on the row (`mark`):
-- - never started: back to available, the attempt not counted, no event;
-- - ended without error (its outcome not yet written by the completer): completed, with its
--   completion event: a job that ran is never run again because its worker died later;
-- - ended with an error: that error, retried or failed at max_attempts;
-- - started and not ended: the worker died while running it (maybe it killed it: os._exit,
--   a segfault); the attempt counts, and the error says so; failed at max_attempts.
-- Running jobs whose process row no longer exists are rescued too. A dead process's row goes
-- once none of its running jobs is left (one skipped as locked keeps it for a later pass).
-- A server that started less than %(grace)s seconds ago declares no process dead: leases ran
-- out while it was down, and live workers need a moment to beat again.
-- Only the processes of job tree %(tree)s are declared dead here (all of them when it is NULL;
-- rows without a tree too when %(untreed)s, as every rescuer asks): each tree's rescuer applies its own settings
-- (the grace is its workers' ttl; kill_stuck) to its own workers, never to another tree's.
-- Jobs whose process row is gone are rescued by any tree: that worker is fenced already.
-- A process of another tree is taken too once it has been expired for %(orphan_after)s seconds
-- (NULL: never) and for 4 of its own leases (expires_at - heartbeat_at), on a server up at
-- least that long: its own tree's rescuer would have taken it within one pass, so that tree
-- has no rescuer reaching the database (retired, renamed, or cut off that long), and without
-- this its jobs would stay running for ever.
WITH dead AS (
    SELECT id, host, pid, start_ticks, tree FROM processes
    WHERE expires_at < now() AND pg_postmaster_start_time() < now() - make_interval(secs => %(grace)s)
      AND (%(tree)s::text IS NULL OR tree = %(tree)s::text OR (tree IS NULL AND %(untreed)s::boolean)
           OR (%(orphan_after)s::float8 IS NOT NULL
               AND expires_at < now() - greatest(make_interval(secs => %(orphan_after)s::float8), 4 * (expires_at - heartbeat_at))
               AND pg_postmaster_start_time() < now() - make_interval(secs => %(orphan_after)s::float8)))
    FOR UPDATE SKIP LOCKED
), orphans AS (
    SELECT j.id, j.claimed_by AS process, j.started_at IS NOT NULL AS started,
           j.ended_at IS NOT NULL AND j.ended_error IS NULL AS succeeded,
           j.ended_at IS NOT NULL AND j.ended_error IS NOT NULL AS errored,
           CASE WHEN j.ended_at IS NOT NULL AND j.ended_error IS NOT NULL THEN j.ended_error
                ELSE 'worker process ' || coalesce(j.claimed_by::text, '?') || ' died while running this job (attempt '
                     || j.attempt || '): its heartbeat expired' END AS error
    FROM jobs AS j
    WHERE j.state = 'running'
      AND (j.claimed_by IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM processes AS p WHERE p.id = j.claimed_by))
    FOR UPDATE OF j SKIP LOCKED
), released AS (
    UPDATE jobs AS j
    SET state = CASE WHEN NOT o.started THEN 'available'
                     WHEN o.succeeded THEN 'completed'
                     WHEN j.attempt >= j.max_attempts THEN 'failed'
                     ELSE 'available' END,
        attempt = CASE WHEN o.started THEN j.attempt ELSE j.attempt - 1 END,
        finished_at = CASE WHEN o.succeeded THEN j.ended_at
                           WHEN o.started AND j.attempt >= j.max_attempts THEN now() END,
        last_error = CASE WHEN o.started AND NOT o.succeeded THEN o.error ELSE j.last_error END,
        errors = CASE WHEN o.started AND NOT o.succeeded
                      THEN j.errors || jsonb_build_array(jsonb_build_object(
                          'attempt', j.attempt, 'process', j.claimed_by, 'at', now(), 'error', o.error))
                      ELSE j.errors END,
        claimed_at = CASE WHEN o.started THEN j.claimed_at END,
        claimed_by = NULL
    FROM orphans AS o
    WHERE j.id = o.id
    RETURNING j.id, j.kind, j.queue, j.attempt, j.state, j.created_at, j.claimed_at, j.started_at, j.ended_at,
              o.process, o.started, o.succeeded, o.error
), gone AS (
    -- a dead process whose running job was skipped (locked: a backend of that worker still
    -- in a transaction, another rescuer) keeps its row until a later pass rescues that job,
    -- so that the job's events still name its node
    DELETE FROM processes AS p USING dead WHERE p.id = dead.id
      AND NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.claimed_by = p.id AND j.state = 'running'
                      AND j.id NOT IN (SELECT id FROM released))
    RETURNING p.id, p.host, p.pid, p.start_ticks, p.tree
), logged AS (
    INSERT INTO events (type, data)
    SELECT CASE WHEN succeeded THEN 'job.completed' WHEN state = 'failed' THEN 'job.failed' ELSE 'job.rescued' END,
           CASE WHEN succeeded THEN jsonb_build_object(
                    'id', id, 'kind', kind, 'queue', queue, 'attempt', attempt,
                    'run_ms', 1000 * extract(epoch FROM ended_at - started_at),
                    'node', (SELECT p.node FROM processes AS p WHERE p.id = released.process),
                    'wait_ms', 1000 * extract(epoch FROM claimed_at - created_at),
                    'latency_ms', 1000 * extract(epoch FROM ended_at - created_at))
                ELSE jsonb_build_object(
                    'id', id, 'kind', kind, 'queue', queue, 'attempt', attempt, 'error', error,
                    'latency_ms', 1000 * extract(epoch FROM now() - created_at)) END
    FROM released
    WHERE started
    RETURNING 1
)
SELECT (SELECT count(*) FROM released) AS jobs,
       (SELECT count(*) FROM released WHERE NOT started) AS unstarted,
       (SELECT count(*) FROM released WHERE succeeded) AS completed,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'host', host, 'pid', pid, 'start_ticks', start_ticks, 'tree', tree)), '[]')
        FROM gone) AS processes;

-- name: longest_running
SELECT id, queue, kind, attempt, claimed_by, claimed_at, extract(epoch FROM now() - claimed_at) AS running_s
FROM jobs WHERE state = 'running' ORDER BY claimed_at LIMIT %(limit)s;

-- name: explain_claim
EXPLAIN (FORMAT TEXT)
SELECT id FROM jobs
WHERE state = 'available' AND queue = %(queue)s AND run_at <= now()
  AND NOT EXISTS (SELECT 1 FROM job_queue_pauses AS p WHERE p.queue = %(queue)s)
ORDER BY priority DESC, run_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;
