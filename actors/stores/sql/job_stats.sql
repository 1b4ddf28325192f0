-- name: setup
CREATE TABLE IF NOT EXISTS job_stats (
    kind            text PRIMARY KEY,
    completed       bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    retried         bigint NOT NULL DEFAULT 0,
    rescued         bigint NOT NULL DEFAULT 0,
    latency_count   bigint NOT NULL DEFAULT 0,
    latency_sum_ms  double precision NOT NULL DEFAULT 0,
    latency_max_ms  double precision NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS job_latency_buckets (
    kind    text    NOT NULL,
    bucket  integer NOT NULL,
    count   bigint  NOT NULL,
    PRIMARY KEY (kind, bucket)
);

-- name: reset
TRUNCATE job_stats, job_latency_buckets;

-- name: add_counts
INSERT INTO job_stats AS s (kind, completed, failed, retried, rescued, latency_count, latency_sum_ms, latency_max_ms)
SELECT * FROM unnest(%(kinds)s::text[], %(completed)s::bigint[], %(failed)s::bigint[], %(retried)s::bigint[],
                     %(rescued)s::bigint[], %(lcount)s::bigint[], %(lsum)s::float8[], %(lmax)s::float8[])
ON CONFLICT (kind) DO UPDATE SET
    completed = s.completed + EXCLUDED.completed,
    failed = s.failed + EXCLUDED.failed,
    retried = s.retried + EXCLUDED.retried,
    rescued = s.rescued + EXCLUDED.rescued,
    latency_count = s.latency_count + EXCLUDED.latency_count,
    latency_sum_ms = s.latency_sum_ms + EXCLUDED.latency_sum_ms,
    latency_max_ms = greatest(s.latency_max_ms, EXCLUDED.latency_max_ms);

-- name: add_buckets
INSERT INTO job_latency_buckets AS b (kind, bucket, count)
SELECT * FROM unnest(%(kinds)s::text[], %(buckets)s::int[], %(counts)s::bigint[])
ON CONFLICT (kind, bucket) DO UPDATE SET count = b.count + EXCLUDED.count;

-- name: read_stats
SELECT kind, completed, failed, retried, rescued, latency_count, latency_sum_ms, latency_max_ms
FROM job_stats ORDER BY kind;

-- name: read_buckets
SELECT kind, bucket, count FROM job_latency_buckets ORDER BY kind, bucket;
