-- The tables every workload shares. Applied with search_path set to the configured schema.

-- Jobs: one row per job. A job is claimed by a worker process (claimed_by, attempt), and every
-- later update matches that pair (fencing), so a job rescued from a dead process cannot be
-- finished twice.
CREATE TABLE jobs (
    id            bigserial PRIMARY KEY,
    queue         text        NOT NULL DEFAULT 'default',
    kind          text        NOT NULL,
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority      integer     NOT NULL DEFAULT 0 CHECK (priority >= 0),
    state         text        NOT NULL DEFAULT 'available'
                  CHECK (state IN ('available', 'running', 'completed', 'failed', 'cancelled')),
    attempt       integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_at        timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_at    timestamptz,
    claimed_by    bigint,
    finished_at   timestamptz,
    last_error    text,
    errors        jsonb       NOT NULL DEFAULT '[]'::jsonb
);

-- The claim index: only available jobs, leading columns in the claim's ORDER BY, so claiming
-- stays as fast with a million finished rows as with none.
CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, id) WHERE state = 'available';
-- Running jobs by the process holding them (rescue, fencing).
CREATE INDEX jobs_running_idx ON jobs (claimed_by) WHERE state = 'running';

-- Worker processes and their heartbeats.
CREATE TABLE processes (
    id            bigserial PRIMARY KEY,
    node          text        NOT NULL,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    -- the process's start time in clock ticks (/proc/<pid>/stat): with host and pid, it tells
    -- this very process from a later one that reused the pid
    start_ticks   bigint      NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX processes_expires_idx ON processes (expires_at);

-- Append-only events. `position` identifies an event; readers go in (txid, position) order and
-- only below the oldest transaction still running, so an event committed late is never skipped.
CREATE TABLE events (
    position      bigserial PRIMARY KEY,
    txid          bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    type          text        NOT NULL,
    data          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_order_idx ON events (txid, position);

-- How far each projection has read: written in the same transaction as its read model.
CREATE TABLE projection_checkpoints (
    name          text PRIMARY KEY,
    txid          bigint      NOT NULL DEFAULT 0,
    position      bigint      NOT NULL DEFAULT 0,
    holder        text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
