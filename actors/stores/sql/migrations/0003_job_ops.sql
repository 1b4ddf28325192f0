-- Job operations (issue 15): unique keys, paused queues, cron schedules, the kinds the jobs
-- services handle, and a lasting record of worker processes for job histories.

-- Unique jobs. `unique_key` with `unique_until` NULL: at most one job with that key is
-- available or running (the partial unique index below; enqueue uses ON CONFLICT on it).
-- With `unique_until` set: the key is held in job_unique_keys until then, whatever the job's state.
ALTER TABLE jobs ADD COLUMN unique_key text, ADD COLUMN unique_until timestamptz;
-- Only rows with an active-scope key are in it: plain jobs pay nothing (the predicate is false).
CREATE UNIQUE INDEX jobs_unique_active_idx ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_until IS NULL AND state IN ('available', 'running');
-- Failed and cancelled jobs, newest first (`jobs list --state failed`, retry_all): only those
-- rows are in it, so completing a job does not touch it.
CREATE INDEX jobs_dead_idx ON jobs (id) WHERE state IN ('failed', 'cancelled');

-- Period-scoped unique keys: a key is taken over only once it has expired (a row-local test in
-- ON CONFLICT DO UPDATE ... WHERE, so two racing enqueues never both win).
CREATE TABLE job_unique_keys (
    key         text PRIMARY KEY,
    job_id      bigint      NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Paused queues: the claim statement skips a queue listed here (every node, at its next claim).
CREATE TABLE job_queue_pauses (
    queue       text PRIMARY KEY,
    paused_at   timestamptz NOT NULL DEFAULT now(),
    paused_by   text        NOT NULL DEFAULT ''
);

-- Cron schedules: one row per schedule name. A scheduler enqueues the ticks after `last_tick`
-- and moves it in the same transaction, holding the row lock: one enqueue per tick, whichever
-- node gets there first.
CREATE TABLE job_schedules (
    name        text PRIMARY KEY,
    cron        text        NOT NULL,
    kind        text        NOT NULL,
    last_tick   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL DEFAULT ''
);

-- Job kinds some jobs service handles, with their defaults: a process that did not import the
-- handler modules can still enqueue (and check) a kind.
CREATE TABLE job_kinds (
    kind          text PRIMARY KEY,
    queue         text        NOT NULL,
    max_attempts  integer     NOT NULL,
    handler       text        NOT NULL,
    node          text        NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Worker processes as they were registered: `processes` rows go away when a worker stops or
-- is rescued, but a job's history still names the node, host and pid of each attempt.
CREATE TABLE process_history (
    id          bigint PRIMARY KEY,
    node        text        NOT NULL,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    started_at  timestamptz NOT NULL
);

-- (SET search_path FROM CURRENT: the function finds its table whatever the caller's search_path)
CREATE FUNCTION record_process_history() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO process_history (id, node, host, pid, started_at)
    VALUES (NEW.id, NEW.node, NEW.host, NEW.pid, NEW.started_at)
    ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
END $$;

CREATE TRIGGER processes_history AFTER INSERT ON processes
    FOR EACH ROW EXECUTE FUNCTION record_process_history();
-- the processes registered before this migration
INSERT INTO process_history (id, node, host, pid, started_at)
SELECT id, node, host, pid, started_at FROM processes ON CONFLICT (id) DO NOTHING;
