"""The job path's latency mechanisms, as behaviour (speed itself is measured in benchmarks/peers.py):
an idle worker is woken by NOTIFY rather than by its poll, outcomes under load still travel and
are written in batches, a lone outcome is written at once, and the completer still flushes on stop."""

from __future__ import annotations

import math

import attrs
import hypothesis.strategies as st
from hypothesis import given

from actors.jobs import CompleterStats, WorkerStatus, jobs_tree
from actors.jobs.completer import Completer
from actors.jobs.messages import Complete
from actors.jobs.flushing import LatencyAwareBatch
from actors.jobs.worker import Worker
from actors.stores.jobs import PgJobStore
from actors.stores.processes import PgProcessStore
from actors.stores.rows import JobOutcome, NewJob
from supervision import ChildSpec, SupervisorSpec
from tests.support import wait_for

HANDLERS = ["tests.job_handlers"]
import tests.job_handlers  # noqa: E402,F401 - registers the kinds in this process too

#: far above every bound the tests wait for: only a NOTIFY can wake a worker in time
NEVER = 600.0


def with_worker_options(spec, **options):
    """The same tree with extra keyword arguments for its Worker (jobs_tree does not pass them all)."""
    if isinstance(spec, ChildSpec):
        return attrs.evolve(spec, kwargs={**spec.kwargs, **options}) if spec.actor is Worker else spec
    return attrs.evolve(spec, children=[with_worker_options(child, **options) for child in spec.children])


def start(make_runtime, config, workers=1, worker_options=None, **options):
    options.setdefault("heartbeat_ttl", 1.5)
    spec = jobs_tree(config, handlers=HANDLERS, workers=workers, **options)
    if worker_options:
        spec = with_worker_options(spec, **worker_options)
    return make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))


def states(database, ids):
    with database.connection() as conn:
        rows = conn.execute("SELECT state FROM jobs WHERE id = ANY(%s)", (list(ids),)).fetchall()
        conn.commit()
    return [row["state"] for row in rows]


def done(database, ids):
    found = states(database, ids)
    return len(found) == len(ids) and all(state == "completed" for state in found)


def completion_events(database):
    with database.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM events WHERE type = 'job.completed'").fetchone()["n"]
        conn.commit()
    return n


def test_a_job_enqueued_into_an_idle_worker_runs_without_waiting_for_its_poll(db_config, database, make_runtime):
    """Poll and notify check at 600 s: the job is claimed because its NOTIFY wakes the worker."""
    rt = start(make_runtime, db_config, poll_interval=NEVER, worker_options={"notify_check": NEVER})
    first = rt.enqueue("noop")
    wait_for(lambda: done(database, [first]), timeout=30, what="the first job (the worker's start-up claim may take it)")
    wait_for(lambda: rt.ask("worker-1", WorkerStatus())["completed"] == 1, timeout=10, what="the worker to be idle")
    for _ in range(3):  # each one into a worker that is idle again, its next poll 600 s away
        job_id = rt.enqueue("noop")
        wait_for(lambda: done(database, [job_id]), timeout=20, what="a job enqueued into the idle worker")
    assert completion_events(database) == 4


def test_a_job_enqueued_while_the_idle_workers_claim_runs_is_claimed_without_its_poll(db_config, database, make_runtime):
    """PostgreSQL sends a NOTIFY that comes while the worker's claim runs on its LISTEN
    connection with the claim's answer, and psycopg keeps it: the socket is then quiet, and a
    worker that looked at it again only at its next poll left that job waiting 600 s (seen once
    in CI, the first enqueue meeting the worker's start-up claim). A trigger holds one claim
    0.5 s, after its snapshot, while the second job is enqueued."""
    with database.connection() as conn:
        conn.execute(
            """CREATE FUNCTION slow_claim() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$"""
        )
        conn.execute(
            """CREATE TRIGGER slow_claim BEFORE UPDATE ON jobs FOR EACH ROW
               WHEN (NEW.state = 'running' AND OLD.state = 'available' AND NEW.payload ? 'slow')
               EXECUTE FUNCTION slow_claim()"""
        )
        conn.commit()
    rt = start(make_runtime, db_config, poll_interval=NEVER, worker_options={"notify_check": NEVER})
    wait_for(lambda: rt.ask("worker-1", WorkerStatus()), timeout=20, what="the worker")
    slow = rt.enqueue("noop", {"slow": True})
    wait_for(lambda: states(database, [slow]) == ["running"] or _claim_waits(database), timeout=10, what="the slow claim")
    late = rt.enqueue("noop")  # committed while that claim sleeps, after its snapshot
    wait_for(lambda: done(database, [slow, late]), timeout=20, what="the job enqueued during the claim")


def _claim_waits(database):
    """A backend is inside the slow trigger's pg_sleep."""
    with database.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'").fetchone()["n"]
        conn.commit()
    return n > 0


def test_a_short_jobs_outcome_never_waits_behind_the_long_job_claimed_after_it(db_config, database, make_runtime, tmp_path):
    """One claim took a job that fails at once and a long one: the failure's outcome (its
    retry) was held until the long handler returned, 60 s later (a CI run of the observer's
    browser test). The heartbeat now writes what is held once the running handler has taken
    `flush_after` (0.1 s)."""
    from actors.jobs import new_job, wait_for_workers

    rt = start(make_runtime, db_config)
    wait_for_workers(rt, 1)
    path = str(tmp_path / "log")
    short, long = rt.enqueue_many([new_job("noop", {}, priority=5), new_job("cooperative", {"path": path, "seconds": 6.0})])
    wait_for(lambda: any(line.startswith("start") for line in _lines(path)), timeout=10, what="the long job to start")
    wait_for(lambda: done(database, [short]), timeout=3, what="the short job's outcome, while the long one runs")
    assert states(database, [long]) == ["running"]  # still in its handler: the heartbeat wrote it
    wait_for(lambda: done(database, [short, long]), timeout=20, what="both jobs")
    assert rt.ask("worker-1", WorkerStatus())["flushed_behind"] >= 1
    assert completion_events(database) == 2


def _lines(path):
    try:
        with open(path) as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []


def test_outcomes_under_load_travel_and_are_written_in_batches(db_config, database, make_runtime):
    """1,000 jobs into one worker: far fewer completer messages and writes than jobs. (The
    worker writes its batches itself and tells the completer, which publishes them: its count
    may come a moment after the rows are done.)"""
    rt = start(make_runtime, db_config, batch=100)
    store = PgJobStore(database)
    ids = store.insert([NewJob("noop", {}) for _ in range(1000)])
    wait_for(lambda: done(database, ids), timeout=120, what="1,000 jobs")
    stats = wait_for(
        lambda: (s := rt.ask("completer", CompleterStats()))["completed"] == 1000 and s, timeout=10, what="the completer's count"
    )
    # one Complete per job was the old path (163 jobs/s on a loaded machine); one per time slice now
    assert stats["messages"] <= 100, stats
    assert stats["batches"] <= 100, stats
    assert completion_events(database) == 1000


def test_a_lone_outcome_is_written_by_its_idle_worker_and_still_published(db_config, database, make_runtime):
    """write_when_idle: the worker writes it (the completer's batches stay empty) and tells the
    completer, whose count and subscribers see it; with write_when_idle off the completer writes it."""
    rt = start(make_runtime, db_config)
    job_id = rt.enqueue("noop")
    wait_for(lambda: done(database, [job_id]), timeout=30, what="the job")
    wait_for(lambda: rt.ask("completer", CompleterStats())["completed"] == 1, timeout=10, what="the completer to count it")
    stats = rt.ask("completer", CompleterStats())
    assert stats["messages"] == 0, stats  # it never travelled through the completer
    rt.stop()

    rt = start(make_runtime, db_config, worker_options={"write_when_idle": False})
    job_id = rt.enqueue("noop")
    wait_for(lambda: done(database, [job_id]), timeout=30, what="the job")
    wait_for(lambda: rt.ask("completer", CompleterStats())["completed"] == 1, timeout=10, what="the completer to write it")
    assert rt.ask("completer", CompleterStats())["messages"] == 1


def test_the_completer_still_flushes_on_stop(db_config, database, make_runtime):
    """Outcomes it holds (max_age 600 s, idle flushes off) are written when it stops."""
    process = PgProcessStore(database).register("test", 60.0)
    store = PgJobStore(database)
    ids = store.insert([NewJob("noop", {}) for _ in range(5)])
    claimed = store.claim("default", process.id, 5)
    rt = make_runtime("multiprocTCPBase").start(
        SupervisorSpec("root", children=[ChildSpec("completer", Completer, kwargs={"database": db_config, "max_age": NEVER, "idle_gap": math.inf})])
    )
    outcomes = tuple(JobOutcome(j.id, process.id, j.attempt, "completed", 0.0) for j in claimed)
    rt.tell("completer", Complete(outcomes))
    wait_for(lambda: rt.ask("completer", CompleterStats())["buffered"] == 5, timeout=10, what="the outcomes to wait in the completer")
    assert states(database, ids) == ["running"] * 5
    rt.stop()
    assert done(database, ids)
    assert completion_events(database) == 5


# --- the flush rule (pure) ----------------------------------------------------------------------


def outcome(i: int) -> JobOutcome:
    return JobOutcome(i, 1, 1, "completed", 0.0)


@given(st.lists(st.floats(min_value=0.0, max_value=0.1), min_size=1, max_size=50))
def test_the_flush_rule_writes_after_an_idle_gap_and_batches_a_stream(gaps):
    """A message after `idle_gap` without arrivals into an empty batch is due at once; one that
    follows closer is due only by size or age, as before."""
    batch = LatencyAwareBatch(size=1000, max_age=0.02, idle_gap=0.005)
    now, last = 1.0, None  # not 0.0: OutcomeBatch.due reads `oldest or now`, so an oldest of 0.0 never ages
    for i, gap in enumerate(gaps):
        now += gap
        was_empty = not batch.outcomes
        batch.add([outcome(i)], now)
        idle = last is None or now - last >= 0.005
        last = now
        if was_empty and idle:
            assert batch.due(now)
        elif not batch.urgent:
            assert batch.due(now) == (now - batch.oldest >= 0.02)
        if batch.due(now):
            batch.take()
            assert not batch.due(now)


def test_the_flush_rule_puts_a_failed_write_back_without_urgency():
    batch = LatencyAwareBatch(size=1000, max_age=0.02, idle_gap=0.005)
    batch.add([outcome(1)], 1.0)
    assert batch.due(1.0)
    outcomes, waiters = batch.take()
    batch.put_back(outcomes, waiters, 1.001)
    assert not batch.due(1.001)  # the completer's retry timer writes it, not the next message
    assert batch.due(1.03)
