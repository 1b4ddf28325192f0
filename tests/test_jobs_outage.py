"""A PostgreSQL outage of any length is waited out (issue 19, point 3): the server of the test
(`own_pg`) is stopped for 5 s, 30 s and 120 s (the last one in the chaos_full run) under a job
load; no actor restarts, database-backed actors show "waiting for the database", and every job
finishes after the server is back."""

from __future__ import annotations

import time
import uuid

import pytest

from actors.jobs import DatabaseWaiting, jobs_tree, new_job
from actors.limiter import ClusterWaiting, Limit, Limiter, LimiterServer
from actors.projector import projector_spec
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.migrate import Migrator
from actors.stores.outage import WAITING
from supervision import ChildSpec, Server, SupervisorSpec
from tests.support import wait_for
from tests.test_jobs import HANDLERS, audit, finished

import tests.job_handlers  # noqa: F401 - registers the kinds in this process too

CLEAN = {"unfinished": 0, "running": 0, "completed_twice": 0, "completed_without_event": 0, "stuck": 0}
#: the first job completes within this many seconds of the server's return (a behaviour bound,
#: generous: the reconnect backoff is at most 2 s + 20%; measured 1-2 s)
RESUME_BOUND = 10.0
DATABASE_ACTORS = ("jobs-service", "completer", "rescuer", "worker-1", "worker-2", "projector-job_stats", "limiter")


class Bystander(Server):
    """An actor with no database: an outage must leave it alone."""

    def handle(self, message):
        return "pong" if message == "ping" else super().handle(message)


def enqueue_retrying(rt, jobs, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return rt.enqueue_many(jobs)
        except DatabaseWaiting:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize(
    "seconds", [5, 30, pytest.param(120, marks=[pytest.mark.slow, pytest.mark.chaos_full])], ids=lambda s: f"{s}s"
)
@pytest.mark.timeout(600)
def test_a_database_outage_of_any_length_is_waited_out_and_nothing_restarts(own_pg, make_runtime, seconds):
    config = DatabaseConfig(own_pg.dsn, schema=f"o_{uuid.uuid4().hex[:10]}", connect_timeout=2.0)
    with Database(config) as database:
        Migrator(database).apply()
    spec = SupervisorSpec(
        "root",
        children=[
            ChildSpec("bystander", Bystander),
            jobs_tree(config, handlers=HANDLERS, workers=2, heartbeat_ttl=1.5, poll_interval=0.3, batch=20),
            projector_spec(config, "job_stats", retry_interval=0.2),
            ChildSpec("limiter", LimiterServer, kwargs={"limits": {"api": Limit(2, cluster=True), "local": Limit(2)}, "database": config}),
        ],
    )
    rt = make_runtime("multiprocTCPBase").start(spec)
    wait_for(lambda: all(rt.tree()[name].status == "running" for name in DATABASE_ACTORS), timeout=30, what="the tree")
    before = {n.name: (n.restarts, n.pid) for n in rt.tree().walk()}
    limiter = Limiter(rt)
    through = limiter.acquire("api")  # a cluster permit held through the outage
    ids = rt.enqueue_many([new_job("work", {"sleep": 0.01}) for _ in range(300)])
    ids += rt.enqueue_many([new_job("long", {"seconds": 3.0}) for _ in range(2)])
    with Database(config) as database:
        wait_for(lambda: audit(database)["running"] > 0, timeout=20, what="jobs running")

    own_pg.stop_server()
    down_at = time.monotonic()
    if seconds >= 30:  # (a 5 s outage may end before every actor has tried the database)
        try:
            wait_for(
                lambda: {n.name for n in rt.tree().walk() if n.status == WAITING} >= set(DATABASE_ACTORS),
                timeout=25,
                what="every database actor to show it waits",
            )
        except AssertionError as exc:  # say which ones never did (an intermittent failure, 1 CI run in 2)
            shown = {n.name: n.status for n in rt.tree().walk() if n.name in DATABASE_ACTORS}
            raise AssertionError(f"{exc}; statuses: {shown}") from None
    # an enqueue while the server is down: a typed, retryable error, never a crash or a timeout
    with pytest.raises(DatabaseWaiting) as raised:
        rt.enqueue("noop", {})
    assert raised.value.retryable and raised.value.stored == "no"
    assert rt.ask("bystander", "ping") == "pong"
    with pytest.raises(ClusterWaiting) as refused:  # a cluster key: typed and retryable
        limiter.acquire("api", timeout=1)
    assert refused.value.retryable
    assert limiter.release(limiter.acquire("local", timeout=1))  # a local key keeps working
    while time.monotonic() - down_at < seconds:
        tree = rt.tree()  # the runtime keeps answering, and nothing restarts
        assert {n.name: n.restarts for n in tree.walk()} == {name: r for name, (r, _) in before.items()}
        time.sleep(1.0)
    own_pg.start_server()

    # the first enqueue after the restart succeeds, or says to retry (typed)
    try:
        ids += rt.enqueue_many([new_job("noop", {})])
    except DatabaseWaiting:
        ids += enqueue_retrying(rt, [new_job("noop", {})])
    ids += enqueue_retrying(rt, [new_job("work", {"sleep": 0.01}) for _ in range(100)])
    with Database(config) as database:
        # work resumes within seconds of the server's return (in the server's own clock: the
        # first completion event after its start)
        wait_for(lambda: resume_delay(database) is not None, timeout=60, what="a completion after the outage")
        resumed = resume_delay(database)
        print(f"first completion {resumed:.2f} s after the server was back")
        assert resumed <= RESUME_BOUND, f"the first job completed {resumed:.1f} s after the server was back"
        try:
            wait_for(lambda: finished(database, ids), timeout=90, what="every job after the outage")
        except AssertionError:
            print("TREE", rt.tree(), "\nCOUNTS", PgJobStore(database).counts(), "\nAUDIT", audit(database))
            raise
        assert audit(database) == CLEAN
        with database.connection() as conn:
            innocent_failed = conn.execute("SELECT count(*) AS n FROM jobs WHERE state = 'failed'").fetchone()["n"]
            conn.commit()
        assert innocent_failed == 0
    wait_for(lambda: all(rt.tree()[name].status == "running" for name in DATABASE_ACTORS), timeout=30, what="statuses back to running")
    assert limiter.release(through) is True  # granted before the outage, still known
    assert limiter.release(limiter.acquire("api", timeout=15)) is True  # cluster permits work again
    after = {n.name: (n.restarts, n.pid) for n in rt.tree().walk()}
    assert after == before, "an actor restarted during the outage"


def resume_delay(database):
    """Seconds from the server's start to the first completion event after it (None: none yet)."""
    with database.connection() as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(created_at) - pg_postmaster_start_time()) AS s FROM events"
            " WHERE type = 'job.completed' AND created_at > pg_postmaster_start_time()"
        ).fetchone()
        conn.commit()
    return None if row["s"] is None else float(row["s"])


def test_the_first_enqueue_after_a_database_restart_succeeds_or_says_retry(own_pg, make_runtime):
    config = DatabaseConfig(own_pg.dsn, schema=f"o_{uuid.uuid4().hex[:10]}")
    with Database(config) as database:
        Migrator(database).apply()
    spec = SupervisorSpec("root", children=[jobs_tree(config, handlers=HANDLERS, workers=1, heartbeat_ttl=1.5, poll_interval=0.3)])
    rt = make_runtime("multiprocTCPBase").start(spec)
    ids = [rt.enqueue("noop", {})]
    for _ in range(3):
        own_pg.restart()  # every pooled connection of the service is now stale
        try:
            ids.append(rt.enqueue("noop", {}))
        except DatabaseWaiting as exc:  # typed and retryable; never ActorCrashed
            assert exc.retryable
            ids += enqueue_retrying(rt, [new_job("noop", {})])
    with Database(config) as database:
        wait_for(lambda: finished(database, ids), timeout=30, what="the jobs")
    assert rt.tree()["jobs-service"].restarts == 0


def test_unstarted_claims_the_heartbeat_cannot_release_stay_with_their_worker(own_pg):
    """Found by the full chaos run: while a long job ran through the 30 s outage, the heartbeat
    thread took the unstarted claims to release them, the release failed, and the jobs stayed
    claimed by a live worker that would never start them."""
    from actors.jobs.context import JobContext
    from actors.jobs.heartbeat import Heartbeat, WorkerState
    from actors.stores.errors import StoreError
    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    config = DatabaseConfig(own_pg.dsn, schema=f"o_{uuid.uuid4().hex[:10]}", connect_timeout=1.0)
    with Database(config) as database:
        Migrator(database).apply()
        jobs = PgJobStore(database)
        jobs.insert([NewJob("long") for _ in range(3)])
        process = PgProcessStore(database).register("w", ttl=30)
        running, *unstarted = jobs.claim("default", process.id, 3)
        state = WorkerState()
        state.claimed.extend(unstarted)
        context = JobContext(running.id, running.kind, running.queue, running.attempt, 3, 60.0, started=time.monotonic() - 5)
        state.current = (running, context)
        heartbeat = Heartbeat(database, process.id, 30.0, state, release_after=1.0)
        heartbeat._conn = database.dedicated()
        own_pg.stop_server()
        try:
            with pytest.raises(StoreError):
                heartbeat.release_if_long(state.current)
            assert list(state.claimed) == unstarted  # still the worker's, in order
        finally:
            heartbeat._close()
            own_pg.start_server()


def test_after_an_outage_a_short_ttl_tree_never_rescues_a_long_ttl_trees_workers(own_pg, make_runtime, tmp_path):
    """Each rescuer waits its own workers' ttl after an outage before rescuing (so that they beat
    again first). The rescue used to be schema-wide: the "jobs" tree (ttl 1 s) rescued, and
    killed, a worker of the "reports" tree (ttl 8 s) that had not beaten again 1 s after the
    server's return. Here that worker is frozen until the jobs rescuer has made three passes,
    then resumed well within its own tree's grace: its job must finish at its first attempt."""
    import os
    import signal

    from tests.test_jobs_liveness import lines

    config = DatabaseConfig(own_pg.dsn, schema=f"o_{uuid.uuid4().hex[:10]}", connect_timeout=2.0)
    with Database(config) as database:
        Migrator(database).apply()
    main = jobs_tree(config, handlers=HANDLERS, workers=1, heartbeat_ttl=1.0, poll_interval=0.3)
    reports = jobs_tree(config, handlers=HANDLERS, workers=1, queue="reports", name="reports", heartbeat_ttl=8.0, poll_interval=0.3)
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[main, reports]))
    path = str(tmp_path / "log")
    job_id = rt.enqueue("cooperative", {"path": path, "seconds": 16.0}, queue="reports", service="reports-service")
    wait_for(lambda: any(line[0] == "start" for line in lines(path)), timeout=20, what="the job to start")
    worker = int(lines(path)[0][2])

    own_pg.stop_server()
    down_at = time.monotonic()
    while time.monotonic() - down_at < 10.0:  # the fault: longer than the reports workers' ttl
        time.sleep(0.5)
    os.kill(worker, signal.SIGSTOP)  # it will not beat again as soon as the server is back
    try:
        passes = rt.ask("rescuer", "stats")["passes"]
        own_pg.start_server()
        wait_for(lambda: rt.ask("rescuer", "stats")["passes"] >= passes + 3, timeout=20, what="three passes of the jobs rescuer")
    finally:
        try:
            os.kill(worker, signal.SIGCONT)
        except ProcessLookupError:
            pytest.fail("the reports worker was killed while frozen (by the jobs tree's rescuer)")
    with Database(config) as database:
        wait_for(lambda: finished(database, [job_id]), timeout=40, what="the long job")
        job = PgJobStore(database).get(job_id)
        assert (job.state, job.attempt, tuple(job.errors)) == ("completed", 1, ())
        assert audit(database) == CLEAN
    assert [line[0] for line in lines(path)] == ["start", "end"]  # it ran once, never rescued or cancelled
    assert rt.ask("rescuer", "stats")["processes"] == 0
