"""Jobs end to end with real worker processes and real PostgreSQL (docs/design.md stories 4 and 5)."""

from __future__ import annotations

import datetime as dt
import random
import re
import time

import pytest

from actors.jobs import (
    BadJob,
    Enqueue,
    Subscriber,
    UnknownJobKind,
    WorkerStatus,
    jobs_tree,
    new_job,
    wait_for_workers,
)
from actors.limiter import Limit, LimiterServer, Stats
from actors.stores.errors import NotFound
from actors.stores.jobs import PgJobStore
from actors.stores.processes import PgProcessStore
from actors.stores.rows import JobOutcome, NewJob
from supervision import ChildSpec, SupervisionError, SupervisorSpec
from tests.support import wait_for

HANDLERS = ["tests.job_handlers"]
import tests.job_handlers  # noqa: E402,F401 - registers the kinds in this process too


def jobs_spec(config, workers=2, **options):
    options.setdefault("heartbeat_ttl", 1.5)
    options.setdefault("poll_interval", 0.3)
    return jobs_tree(config, handlers=HANDLERS, workers=workers, **options)


def finished(database, ids):
    with database.connection() as conn:
        rows = conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", (list(ids),)).fetchall()
        conn.commit()
    return all(row["state"] in ("completed", "failed") for row in rows) and len(rows) == len(ids)


def audit(database):
    """The SQL audit: lost, completed twice, stuck running."""
    with database.connection() as conn:
        result = conn.execute(
            """
            SELECT
              (SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'failed')) AS unfinished,
              (SELECT count(*) FROM jobs WHERE state = 'running') AS running,
              (SELECT count(*) FROM (SELECT data->>'id' FROM events WHERE type = 'job.completed'
                                     GROUP BY 1 HAVING count(*) > 1) AS d) AS completed_twice,
              (SELECT count(*) FROM jobs j WHERE state = 'completed' AND NOT EXISTS
                 (SELECT 1 FROM events e WHERE e.type = 'job.completed' AND (e.data->>'id')::bigint = j.id)) AS completed_without_event,
              (SELECT count(*) FROM jobs WHERE state = 'running' AND claimed_by NOT IN (SELECT id FROM processes)) AS stuck
            """
        ).fetchone()
        conn.commit()
    return dict(result)


@pytest.fixture
def jobs_rt(db_config, make_runtime):
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[jobs_spec(db_config)]))
    wait_for_workers(rt, 2, timeout=30)  # start() returns before the pool's workers are up
    return rt


def test_enqueued_jobs_run_once_and_each_gets_one_completion_event(jobs_rt, database):
    ids = jobs_rt.enqueue_many([new_job("noop", {"n": i}) for i in range(300)])
    one = jobs_rt.enqueue("noop", {"single": True}, priority=5)
    wait_for(lambda: finished(database, ids + [one]), timeout=30, what="jobs done")
    assert audit(database) == {"unfinished": 0, "running": 0, "completed_twice": 0, "completed_without_event": 0, "stuck": 0}
    job = PgJobStore(database).get(one)
    assert job.state == "completed" and job.attempt == 1 and job.claimed_at and job.finished_at >= job.claimed_at


def test_bad_jobs_are_rejected_clearly_and_nothing_is_stored(jobs_rt, database):
    store = PgJobStore(database)
    with pytest.raises(UnknownJobKind, match="nope"):
        jobs_rt.enqueue("nope", {})
    with pytest.raises(BadJob, match="JSON"):
        jobs_rt.enqueue("noop", {"when": dt.datetime.now()})
    with pytest.raises(BadJob, match="priority"):
        jobs_rt.enqueue("noop", {}, priority=-1)
    with pytest.raises(BadJob, match="timezone"):
        jobs_rt.enqueue("noop", {}, run_at=dt.datetime.now())
    with pytest.raises(BadJob, match="max_attempts"):
        jobs_rt.enqueue("noop", {}, max_attempts=0)
    with pytest.raises(BadJob, match="NaN|JSON"):
        jobs_rt.enqueue("noop", {"x": float("nan")})
    # straight to the service, skipping the client's checks: still refused, still nothing stored
    for message in (Enqueue(("not a job",)), Enqueue(()), Enqueue((NewJob("noop", {}, priority=-3),)), Enqueue((NewJob("ghost"),))):
        with pytest.raises(SupervisionError):
            jobs_rt.ask("jobs-service", message)
    assert store.counts() == {}
    assert jobs_rt.tree()["jobs-service"].restarts == 0


def test_a_failing_handler_is_retried_then_fails_with_its_error_and_never_kills_the_pool(jobs_rt, database, tmp_path):
    flaky = jobs_rt.enqueue("flaky", {"marker": str(tmp_path / "m"), "fails": 2})
    doomed = jobs_rt.enqueue("always_fails", {})
    dropped = jobs_rt.enqueue("discard", {})
    hung = jobs_rt.enqueue("hang", {"seconds": 30})
    wait_for(lambda: finished(database, [flaky, doomed, dropped, hung]), timeout=30, what="jobs done")
    store = PgJobStore(database)
    job = store.get(flaky)
    assert (job.state, job.attempt, len(job.errors)) == ("completed", 3, 2)
    job = store.get(doomed)
    assert (job.state, job.attempt, job.last_error) == ("failed", 2, "ValueError: this job never works")
    job = store.get(dropped)
    assert (job.state, job.attempt) == ("failed", 1) and "discarded" in job.last_error
    job = store.get(hung)
    assert (job.state, job.attempt) == ("failed", 2) and "timed out" in job.last_error
    tree = jobs_rt.tree()
    assert all(node.restarts == 0 for node in tree.walk() if node.name.startswith("worker"))


def test_jobs_scheduled_for_later_wait_and_higher_priority_runs_first(jobs_rt, database):
    later = jobs_rt.enqueue("noop", {}, run_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5))
    time.sleep(0.5)
    assert PgJobStore(database).get(later).state == "available"
    wait_for(lambda: finished(database, [later]), timeout=10, what="the scheduled job")


def test_story_5_workers_killed_at_random_lose_nothing_and_complete_nothing_twice(db_config, database, make_runtime):
    rt = make_runtime("multiprocTCPBase").start(
        SupervisorSpec("root", children=[jobs_spec(db_config, workers=3, heartbeat_ttl=1.0, batch=20)])
    )
    ids = rt.enqueue_many([new_job("work", {"sleep": 0.002}) for _ in range(2000)])
    rng = random.Random(5)
    kills = 0
    deadline = time.monotonic() + 60
    while not finished(database, ids) and time.monotonic() < deadline:
        if kills < 8:
            workers = [n.name for n in rt.tree().walk() if re.fullmatch(r"worker-\d+", n.name) and n.status == "running"]
            victim = rng.choice(workers or ["none"])
            try:
                rt.kill(victim)
                kills += 1
            except SupervisionError:
                pass
        time.sleep(0.25)
    assert kills >= 5
    wait_for(lambda: finished(database, ids), timeout=60, what="every job to finish after the expiry window")
    report = audit(database)
    assert report == {"unfinished": 0, "running": 0, "completed_twice": 0, "completed_without_event": 0, "stuck": 0}, report
    store = PgJobStore(database)
    assert store.counts().get(("default", "completed"), 0) + store.counts().get(("default", "failed"), 0) == 2000


class Stalled(Subscriber):
    """A subscriber that stops reading: it never acknowledges and ignores stop requests."""

    def on_jobs(self, jobs, dropped):
        time.sleep(3600)


class Quits(Subscriber):
    def on_jobs(self, jobs, dropped):
        self.stop("normal")


@pytest.mark.parametrize("subscriber", [Stalled, Quits])
def test_story_4_stopping_under_load_with_a_stalled_or_gone_subscriber_finishes_in_budget(db_config, database, make_runtime, subscriber):
    for _ in range(10):  # 20 in all, across both kinds of subscriber
        spec = SupervisorSpec(
            "root",
            children=[
                ChildSpec("audit", subscriber, shutdown=0.5, restart="transient"),
                jobs_spec(db_config, workers=2, subscribers=["audit"], batch=10),
            ],
        )
        rt = make_runtime("multiprocTCPBase").start(spec)
        rt.enqueue_many([new_job("work", {"sleep": 0.001}) for _ in range(400)])
        wait_for(lambda: PgJobStore(database).counts().get(("default", "completed"), 0) > 0, timeout=20, what="some completions")
        budget = rt.shutdown_budget
        started = time.monotonic()
        rt.stop()
        assert time.monotonic() - started <= budget
        report = audit(database)
        assert report["running"] == 0 and report["completed_twice"] == 0 and report["completed_without_event"] == 0, report


def test_a_late_outcome_from_a_rescued_job_is_fenced_off(database):
    """A slow-but-alive worker whose job was rescued and re-claimed cannot complete it again."""
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("noop")])
    slow = processes.register("slow", ttl=0.2)
    [claimed] = jobs.claim("default", slow.id, 10)
    assert jobs.mark(slow.id, claimed)  # its handler starts
    time.sleep(0.4)  # its lease expires
    assert jobs.rescue().jobs == 1
    fast = processes.register("fast", ttl=30)
    [again] = jobs.claim("default", fast.id, 10)
    assert again.attempt == 2
    now = time.time()
    late = JobOutcome(job_id, slow.id, claimed.attempt, "completed", now)
    assert jobs.write_outcomes([late]).fenced == 1
    assert jobs.write_outcomes([JobOutcome(job_id, fast.id, again.attempt, "completed", now)]).completed == (job_id,)
    assert jobs.write_outcomes([JobOutcome(job_id, fast.id, again.attempt, "completed", now)]).fenced == 1
    assert audit(database)["completed_twice"] == 0


def test_a_dead_process_whose_job_row_is_locked_keeps_its_row_until_that_job_is_rescued(database):
    """The rescuer skips locked job rows (SKIP LOCKED: several rescuers at once). It used to
    delete the dead process's row all the same, and rescued the skipped job later as an orphan
    whose node nobody knew: its completion event said node null (10 of them after a network
    partition, tests/test_netns.py, where the cut node's backend held a mark's lock)."""
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("noop")])
    gone = processes.register("node-x:worker-1", ttl=0.2)
    [claimed] = jobs.claim("default", gone.id, 10)
    assert jobs.mark(gone.id, claimed)  # its handler starts ...
    assert not jobs.mark(gone.id, None, claimed, None)  # ... and ends well; then the worker dies
    time.sleep(0.4)  # its lease expires
    with database.transaction() as elsewhere:  # a backend of that worker still holds the row
        elsewhere.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        assert jobs.rescue().jobs == 0
        assert processes.get(gone.id).id == gone.id  # kept: one of its jobs is still to rescue
    rescued = jobs.rescue()
    assert (rescued.jobs, rescued.completed) == (1, 1)
    with database.connection() as conn:
        event = conn.execute(
            "SELECT data FROM events WHERE type = 'job.completed' AND (data->>'id')::bigint = %s", (job_id,)
        ).fetchone()
        conn.commit()
    assert event["data"]["node"] == "node-x:worker-1", event
    with pytest.raises(NotFound):
        processes.get(gone.id)  # gone once its last job is rescued


def test_the_claim_uses_the_available_jobs_index_on_a_table_full_of_finished_jobs(database):
    jobs = PgJobStore(database)
    jobs.copy_in([NewJob("noop") for _ in range(100_000)])
    with database.connection() as conn:
        conn.execute("UPDATE jobs SET state = 'completed', finished_at = now()")
        conn.commit()
    jobs.insert([NewJob("noop") for _ in range(10)])
    with database.connection() as conn:
        conn.execute("ANALYZE jobs")
        conn.commit()
    plan = jobs.explain_claim()
    assert "jobs_claim_idx" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_a_worker_whose_process_row_was_pruned_stops_and_is_restarted(jobs_rt, database):
    status = jobs_rt.ask("worker-1", WorkerStatus())
    with database.connection() as conn:
        conn.execute("DELETE FROM processes WHERE id = %s", (status["process"],))
        conn.commit()
    wait_for(lambda: jobs_rt.tree()["worker-1"].restarts == 1 and jobs_rt.tree()["worker-1"].status == "running", timeout=15, what="restart")
    assert jobs_rt.ask("worker-1", WorkerStatus())["process"] != status["process"]


def test_jobs_of_a_limited_kind_ask_the_limiter_for_a_permit_and_never_overlap(db_config, database, make_runtime, tmp_path):
    spec = SupervisorSpec(
        "root",
        children=[ChildSpec("limiter", LimiterServer, kwargs={"limits": {"api": Limit(1)}}), jobs_spec(db_config, workers=2, batch=2)],
    )
    rt = make_runtime("multiprocTCPBase").start(spec)
    path = str(tmp_path / "runs")
    ids = rt.enqueue_many([new_job("limited_record", {"path": path, "n": n, "seconds": 0.02}) for n in range(20)])
    wait_for(lambda: finished(database, ids), timeout=30, what="limited jobs")
    [stats] = rt.ask("limiter", Stats())
    assert stats.granted >= 20 and stats.held == 0
    with open(path) as handle:
        records = [line.split() for line in handle.read().splitlines()]
    starts = {int(r[1]): float(r[3]) for r in records if r[0] == "start"}
    ends = {int(r[1]): float(r[3]) for r in records if r[0] == "end"}
    assert sorted(starts) == sorted(ends) == list(range(20))
    assert len({int(r[2]) for r in records}) == 2, "both workers ran limited jobs"
    spans = sorted((starts[n], ends[n]) for n in starts)
    overlaps = [(a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    assert overlaps == [], f"Limit(1): {len(overlaps)} handler runs overlapped"


#: the most runs of each tree at once, from the spans the handlers recorded (issue 19, point 5)
PEAK_AT_ONCE = """
SELECT tree, max(at_once) AS peak, count(*) AS runs FROM (
    SELECT a.tree, count(*) AS at_once
    FROM runs a JOIN runs b ON b.tree = a.tree AND b.started <= a.started AND b.ended > a.started
    GROUP BY a.tree, a.id
) AS s GROUP BY tree
"""


def test_two_job_trees_in_one_runtime_keep_their_own_limits_on_the_same_kind(db_config, database, make_runtime):
    """Tree "one" asks limiter-one (api: Limit(1)) from 2 workers, tree "three" asks
    limiter-three (api: Limit(3)) from 4 workers, for the same kind: "one" never runs two at
    once, "three" runs more than one at once and never more than three."""
    with database.connection() as conn:
        conn.execute("CREATE TABLE runs (id bigserial PRIMARY KEY, tree text NOT NULL, n int NOT NULL, started timestamptz NOT NULL, ended timestamptz)")
        conn.commit()
    handlers = [*HANDLERS, "tests.limit_handlers"]
    trees = {"one": (2, 1), "three": (4, 3)}  # workers, api limit
    children = [ChildSpec(f"limiter-{tree}", LimiterServer, kwargs={"limits": {"api": Limit(limit)}}) for tree, (_, limit) in trees.items()]
    children += [
        jobs_tree(db_config, handlers=handlers, workers=workers, batch=1, queue=tree, name=tree, limiter=f"limiter-{tree}", heartbeat_ttl=1.5, poll_interval=0.3)
        for tree, (workers, _) in trees.items()
    ]
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=children))
    running = {f"{tree}-worker-{i}" for tree, (workers, _) in trees.items() for i in range(1, workers + 1)}
    wait_for(lambda: running <= {n.name for n in rt.tree().walk() if n.status == "running"}, timeout=30, what="both trees' workers")
    payload = {"dsn": db_config.dsn, "schema": db_config.schema, "seconds": 0.3}
    ids = [
        rt.enqueue("limited_span", {**payload, "tree": tree, "n": n}, queue=tree, service=f"{tree}-service")
        for n in range(8) for tree in trees
    ]  # fmt: skip
    wait_for(lambda: finished(database, ids), timeout=90, what="both trees' limited jobs")
    assert PgJobStore(database).counts() == {("one", "completed"): 8, ("three", "completed"): 8}
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS open FROM runs WHERE ended IS NULL").fetchone()["open"] == 0
        peaks = {row["tree"]: (row["peak"], row["runs"]) for row in conn.execute(PEAK_AT_ONCE).fetchall()}
        conn.commit()
    assert peaks["one"] == (1, 8), f"Limit(1) in tree one: up to {peaks['one'][0]} of its runs at once"
    assert 2 <= peaks["three"][0] <= 3 and peaks["three"][1] == 8, f"Limit(3) in tree three: {peaks['three']}"
    for tree in trees:  # each tree's permits came from its own limiter
        [stats] = rt.ask(f"limiter-{tree}", Stats())
        assert (stats.granted, stats.held) == (8, 0), (tree, stats)
