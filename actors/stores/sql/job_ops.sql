-- Job operations (issue 15): inspect, retry, cancel, pause, prune, unique enqueue, kinds.
-- The list and retry statements run with custom plans (the store passes prepare=False): a
-- constant state lets the planner prove `state = 'failed'` implies the partial index
-- jobs_dead_idx and walk it newest first instead of the whole primary key.

-- name: list
SELECT id, kind, queue,
       CASE WHEN state = 'available' AND run_at > now() THEN 'scheduled' ELSE state END AS state,
       attempt, max_attempts, last_error, created_at, claimed_at, finished_at, run_at, priority,
       claimed_by, unique_key
FROM jobs
WHERE (%(stored)s::text IS NULL OR state = %(stored)s::text)
  AND (%(due)s::bool IS NULL OR (run_at <= now()) = %(due)s::bool)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: get
SELECT id, kind, queue,
       CASE WHEN state = 'available' AND run_at > now() THEN 'scheduled' ELSE state END AS state,
       attempt, max_attempts, last_error, created_at, claimed_at, finished_at, run_at, priority,
       claimed_by, unique_key, payload, errors
FROM jobs WHERE id = %(id)s;

-- name: processes
SELECT id, node, host, pid FROM process_history WHERE id = ANY(%(ids)s::bigint[]);

-- name: lock
-- The row an operation is about, locked until its transaction ends: a second node retrying or
-- cancelling the same job waits here, then sees the first one's result. (clock_timestamp, not
-- now(): the first one set run_at to its own now(), which may be later than ours.)
SELECT id, queue, kind, attempt, claimed_by,
       CASE WHEN state = 'available' AND run_at > clock_timestamp() THEN 'scheduled' ELSE state END AS state
FROM jobs WHERE id = %(id)s FOR UPDATE;

-- name: retry
-- Back to available now; a job that used up its attempts gets one more. The operator's retry
-- goes into the job's history.
UPDATE jobs
SET state = 'available', run_at = now(), finished_at = NULL, claimed_by = NULL, claimed_at = NULL,
    max_attempts = greatest(max_attempts, attempt + 1),
    errors = errors || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'at', now(), 'outcome', 'retried', 'by', %(by)s::text))
WHERE id = %(id)s AND state IN ('failed', 'cancelled')
RETURNING id;

-- name: cancel
-- Fenced on the state: the worker's completion (and rescue, and unclaim) only touch running
-- rows, so a job cancelled here is never completed afterwards. Its cancellation event is
-- appended in the same statement.
WITH cancelled AS (
    UPDATE jobs
    SET state = 'cancelled', finished_at = now(),
        errors = errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempt, 'process', claimed_by, 'at', now(), 'outcome', 'cancelled',
            'was', state, 'error', 'cancelled by ' || %(by)s::text))
    WHERE id = %(id)s AND state IN ('available', 'running')
    RETURNING id, kind, queue, attempt, created_at
)
INSERT INTO events (type, data)
SELECT 'job.cancelled', jsonb_build_object('id', id, 'kind', kind, 'queue', queue, 'attempt', attempt, 'by', %(by)s::text,
                                           'latency_ms', 1000 * extract(epoch FROM now() - created_at))
FROM cancelled
RETURNING (data->>'id')::bigint AS id;

-- name: retry_all
-- One batch of `retry_all`: the next `batch` matching jobs after `after` (rows another
-- operation holds are skipped). A job whose unique key is held by an active job stays as it
-- is, and of several with one key only the newest is retried.
WITH candidates AS (
    SELECT id, unique_key, unique_until FROM jobs
    WHERE state = %(state)s::text
      AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND id > %(after)s
    ORDER BY id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM candidates WHERE unique_key IS NULL OR unique_until IS NOT NULL
    UNION ALL
    (SELECT DISTINCT ON (unique_key) id FROM candidates AS c
     WHERE unique_key IS NOT NULL AND unique_until IS NULL
       AND NOT EXISTS (SELECT 1 FROM jobs AS a WHERE a.unique_key = c.unique_key
                       AND a.unique_until IS NULL AND a.state IN ('available', 'running'))
     ORDER BY unique_key, id DESC)
), retried AS (
    UPDATE jobs AS j
    SET state = 'available', run_at = now(), finished_at = NULL, claimed_by = NULL, claimed_at = NULL,
        max_attempts = greatest(j.max_attempts, j.attempt + 1),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'outcome', 'retried', 'by', %(by)s::text))
    FROM chosen
    WHERE j.id = chosen.id
    RETURNING j.id, j.queue
)
SELECT (SELECT max(id) FROM candidates) AS last_id,
       (SELECT count(*) FROM retried) AS retried,
       coalesce((SELECT array_agg(DISTINCT queue) FROM retried), '{}') AS queues;

-- name: counts
SELECT queue, CASE WHEN state = 'available' AND run_at > now() THEN 'scheduled' ELSE state END AS state,
       count(*) AS n
FROM jobs GROUP BY 1, 2 ORDER BY 1, 2;

-- name: state
SELECT CASE WHEN state = 'available' AND run_at > now() THEN 'scheduled' ELSE state END AS state
FROM jobs WHERE id = %(id)s;

-- name: pause
INSERT INTO job_queue_pauses (queue, paused_by) VALUES (%(queue)s, %(by)s)
ON CONFLICT (queue) DO NOTHING
RETURNING queue;

-- name: resume
DELETE FROM job_queue_pauses WHERE queue = %(queue)s RETURNING queue;

-- name: paused
SELECT queue, paused_at, paused_by FROM job_queue_pauses ORDER BY queue;

-- name: prune
-- One batch of pruning: the next `batch` jobs by id after `after` (a primary-key range, so
-- each batch costs the same however many rows there are); of those, the finished ones older
-- than the cutoff go. Only finished rows are locked (SKIP LOCKED): claims, which touch
-- available rows through jobs_claim_idx, never wait on it. `done`: every scanned job was
-- created after the cutoff, so none further on can be old enough.
WITH scanned AS (
    SELECT id, created_at FROM jobs WHERE id > %(after)s ORDER BY id LIMIT %(batch)s
), doomed AS (
    SELECT j.id FROM jobs AS j
    WHERE j.id = ANY(ARRAY(SELECT id FROM scanned))
      AND j.state IN ('completed', 'failed', 'cancelled')
      AND j.finished_at < now() - make_interval(secs => %(older)s)
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id RETURNING j.id
)
SELECT (SELECT max(id) FROM scanned) AS last_id,
       (SELECT count(*) FROM gone) AS deleted,
       coalesce((SELECT bool_and(created_at >= now() - make_interval(secs => %(older)s)) FROM scanned), true) AS done;

-- name: prune_keys
DELETE FROM job_unique_keys WHERE expires_at < now() - make_interval(secs => %(older)s);

-- name: insert_unique
-- An active-scope unique job: inserted unless a job with the key is available or running
-- (then nothing, and the caller looks that job up). ON CONFLICT waits for a concurrent
-- enqueue of the same key to commit or roll back, so two racing enqueues never both insert.
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, unique_key)
VALUES (%(queue)s, %(kind)s, %(payload)s, %(priority)s, coalesce(%(run_at)s, now()), %(max_attempts)s, %(key)s)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND unique_until IS NULL AND state IN ('available', 'running')
DO NOTHING
RETURNING id;

-- name: active_holder
SELECT id FROM jobs
WHERE unique_key = %(key)s AND unique_until IS NULL AND state IN ('available', 'running');

-- name: take_key
-- A period-scoped key: taken when free or expired (the test is on the conflicting row itself,
-- which ON CONFLICT has locked and re-read, so of two racing enqueues exactly one wins).
INSERT INTO job_unique_keys AS k (key, job_id, expires_at)
VALUES (%(key)s, nextval(pg_get_serial_sequence('jobs', 'id')), now() + make_interval(secs => %(period)s))
ON CONFLICT (key) DO UPDATE SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
WHERE k.expires_at <= now()
RETURNING job_id, expires_at;

-- name: key_holder
SELECT job_id FROM job_unique_keys WHERE key = %(key)s;

-- name: insert_keyed
INSERT INTO jobs (id, queue, kind, payload, priority, run_at, max_attempts, unique_key, unique_until)
VALUES (%(id)s, %(queue)s, %(kind)s, %(payload)s, %(priority)s, coalesce(%(run_at)s, now()), %(max_attempts)s,
        %(key)s, %(until)s)
RETURNING id;

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: register_kinds
INSERT INTO job_kinds AS k (kind, queue, max_attempts, handler, node)
SELECT * FROM unnest(%(kinds)s::text[], %(queues)s::text[], %(max_attempts)s::int[], %(handlers)s::text[], %(nodes)s::text[])
ON CONFLICT (kind) DO UPDATE
SET queue = EXCLUDED.queue, max_attempts = EXCLUDED.max_attempts, handler = EXCLUDED.handler,
    node = EXCLUDED.node, updated_at = now();

-- name: kinds
SELECT kind, queue, max_attempts, handler, node, updated_at FROM job_kinds
WHERE %(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[])
ORDER BY kind;

-- name: set_search_path
SELECT set_config('search_path', %(path)s, true) AS previous;

-- name: get_search_path
SELECT current_setting('search_path') AS path;
