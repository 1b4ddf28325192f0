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
