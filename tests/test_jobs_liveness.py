"""Jobs of any length, frozen workers and poison jobs (issue 19, points 1 and 2), with real
worker processes, real PostgreSQL and real faults (SIGSTOP, os._exit, a segfault)."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from actors.jobs import wait_for_workers, WorkerStatus, jobs_tree, new_job
from actors.stores.jobs import PgJobStore
from supervision import SpecError, SupervisorSpec
from tests.support import wait_for
from tests.test_jobs import HANDLERS, audit, finished

import tests.job_handlers  # noqa: F401 - registers the kinds in this process too

CLEAN = {"unfinished": 0, "running": 0, "completed_twice": 0, "completed_without_event": 0, "stuck": 0}


def start(make_runtime, config, workers=2, **options):
    options.setdefault("heartbeat_ttl", 1.0)
    options.setdefault("poll_interval", 0.3)
    spec = jobs_tree(config, handlers=HANDLERS, workers=workers, **options)
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))
    # rt.start returns once the supervisors are up; the tests look workers up by pid
    wait_for_workers(rt, workers, tree=spec.name)
    return rt


def lines(path):
    try:
        with open(path) as handle:
            return [line.split() for line in handle.read().splitlines()]
    except FileNotFoundError:
        return []


def events(database, job_id):
    with database.connection() as conn:
        rows = conn.execute("SELECT type, data FROM events WHERE (data->>'id')::bigint = %s ORDER BY position", (job_id,)).fetchall()
        conn.commit()
    return [(row["type"], row["data"]) for row in rows]


def worker_pids(rt):
    return {n.pid: n.name for n in rt.tree().walk() if re.fullmatch(r"worker-\d+", n.name) and n.pid}


# --- 1. liveness that does not depend on the handler ------------------------------------------------


def test_a_job_much_longer_than_the_heartbeat_ttl_is_never_rescued(db_config, database, make_runtime):
    rt = start(make_runtime, db_config, heartbeat_ttl=1.0)
    job_id = rt.enqueue("long", {"seconds": 6.0})  # six ttls; its own timeout is 120 s
    wait_for(lambda: finished(database, [job_id]), timeout=40, what="the long job")
    job = PgJobStore(database).get(job_id)
    assert (job.state, job.attempt, job.errors) == ("completed", 1, ())
    assert [t for t, _ in events(database, job_id)] == ["job.completed"]
    assert audit(database) == CLEAN


@pytest.mark.parametrize("handler", ["cooperative", "stubborn"])
def test_a_sigstopped_worker_loses_its_job_and_once_resumed_neither_completes_nor_keeps_running_it(
    db_config, database, make_runtime, tmp_path, handler
):
    """kill_stuck=False: the frozen worker is treated as if it were on another host (a paused VM)."""
    rt = start(make_runtime, db_config, kill_stuck=False, cancel_grace=1.0)
    path = str(tmp_path / "log")
    job_id = rt.enqueue(handler, {"path": path, "seconds": 8.0})
    wait_for(lambda: any(line[0] == "start" for line in lines(path)), timeout=20, what="the job to start")
    frozen = int(lines(path)[0][2])
    assert frozen in worker_pids(rt)
    os.kill(frozen, signal.SIGSTOP)
    try:
        # rescued after the ttl and started again by the other worker
        wait_for(lambda: [l for l in lines(path) if l[0] == "start" and int(l[2]) != frozen], timeout=30, what="a second start elsewhere")
    finally:
        os.kill(frozen, signal.SIGCONT)
    stopped = "cancelled" if handler == "cooperative" else "interrupted"
    wait_for(lambda: [l for l in lines(path) if l[0] == stopped and int(l[2]) == frozen], timeout=15, what=f"the resumed handler {stopped}")
    wait_for(lambda: finished(database, [job_id]), timeout=40, what="the job done by the other worker")
    ends = [l for l in lines(path) if l[0] == "end"]
    assert len(ends) == 1 and int(ends[0][2]) != frozen, lines(path)  # the frozen one never finished its run
    if handler == "stubborn":
        assert [l[1] for l in lines(path) if l[0] == "interrupted"] == ["JobCancelled"]
    job = PgJobStore(database).get(job_id)
    assert (job.state, job.attempt) == ("completed", 2)
    assert "died while running this job" in job.errors[0]["error"]
    assert [t for t, _ in events(database, job_id)] == ["job.rescued", "job.completed"]
    assert audit(database) == CLEAN


def test_liveness_settings_that_could_end_a_healthy_job_are_refused_naming_the_fields(db_config):
    with pytest.raises(SpecError, match="heartbeat_ttl"):
        jobs_tree(db_config, heartbeat_ttl=0.2)
    with pytest.raises(SpecError, match="rescue_interval.*heartbeat_ttl"):
        jobs_tree(db_config, heartbeat_ttl=2.0, rescue_interval=5.0)
    with pytest.raises(SpecError, match="cancel_grace"):
        jobs_tree(db_config, cancel_grace=0)
    # a job timeout far above the ttl is fine now: liveness does not depend on the handler
    jobs_tree(db_config, heartbeat_ttl=1.0, rescue_interval=0.5)


# --- 2. one bad job never harms the others ---------------------------------------------------------


@pytest.mark.parametrize("poison", ["poison_exit", "poison_segfault"])
@pytest.mark.parametrize("position", ["first", "last"])
def test_a_job_that_kills_its_worker_fails_alone_and_innocent_jobs_run_once(db_config, database, make_runtime, tmp_path, poison, position):
    rt = start(make_runtime, db_config, workers=1, batch=50)
    path = str(tmp_path / "runs")
    innocent = [new_job("record", {"path": path, "n": n}) for n in range(30)]
    batch = [new_job(poison, {})] + innocent if position == "first" else innocent + [new_job(poison, {})]
    ids = rt.enqueue_many(batch)
    poison_id = ids[0] if position == "first" else ids[-1]
    innocent_ids = [i for i in ids if i != poison_id]
    wait_for(lambda: finished(database, ids), timeout=60, what="every job")
    store = PgJobStore(database)
    for job_id in innocent_ids:
        job = store.get(job_id)
        assert (job.state, job.attempt, job.errors) == ("completed", 1, ()), job
    runs = [int(line[1]) for line in lines(path) if line[0] == "end"]
    assert sorted(runs) == list(range(30)), "every innocent job ran exactly once"
    bad = store.get(poison_id)
    assert (bad.state, bad.attempt) == ("failed", 3)
    assert "died while running this job" in bad.last_error
    assert audit(database) == CLEAN


def test_sys_exit_in_a_handler_fails_its_job_and_not_the_worker(db_config, database, make_runtime):
    rt = start(make_runtime, db_config, workers=1)
    bad = rt.enqueue("poison_sys_exit", {})
    good = rt.enqueue("noop", {})
    wait_for(lambda: finished(database, [bad, good]), timeout=30, what="both jobs")
    job = PgJobStore(database).get(bad)
    assert (job.state, job.attempt) == ("failed", 3) and "sys.exit(3)" in job.last_error
    assert PgJobStore(database).get(good).state == "completed"
    assert rt.tree()["worker-1"].restarts == 0


def test_an_outcome_is_durable_as_soon_as_its_job_ends_not_when_the_claim_is_done(db_config, database, make_runtime, tmp_path):
    rt = start(make_runtime, db_config, workers=1, batch=50)
    path = str(tmp_path / "runs")
    ids = rt.enqueue_many([new_job("record", {"path": path, "n": n, "seconds": 1.0}) for n in range(4)])
    wait_for(lambda: len([l for l in lines(path) if l[0] == "end"]) >= 1, timeout=20, what="the first job to end")
    # the first job is completed in the table while the others of its claim still run
    wait_for(lambda: PgJobStore(database).counts().get(("default", "completed"), 0) >= 1, timeout=3, what="the first outcome")
    assert len([l for l in lines(path) if l[0] == "end"]) < 4
    wait_for(lambda: finished(database, ids), timeout=30, what="all of them")


def test_a_long_job_does_not_hold_unstarted_jobs_while_other_workers_are_idle(db_config, database, make_runtime, tmp_path):
    rt = start(make_runtime, db_config, workers=2, batch=50)
    path = str(tmp_path / "runs")
    ids = rt.enqueue_many([new_job("record", {"path": path, "n": n, "seconds": 4.0}) for n in range(3)])
    wait_for(lambda: finished(database, ids), timeout=60, what="the three jobs")
    runs = {int(l[1]): (float(l[3]), int(l[2])) for l in lines(path) if l[0] == "start"}
    ends = {int(l[1]): float(l[3]) for l in lines(path) if l[0] == "end"}
    assert len(runs) == 3 and len(ends) == 3
    first, second = sorted(runs, key=lambda n: runs[n][0])[:2]
    assert runs[second][0] < ends[first], "the second job started only after the first ended: one worker held them all"
    assert runs[first][1] != runs[second][1]
    for job_id in ids:
        assert PgJobStore(database).get(job_id).attempt == 1  # released claims lose no attempt
    assert audit(database) == CLEAN


# --- 5. several job trees in one runtime ----------------------------------------------------------


def test_two_job_trees_with_their_own_queues_and_workers_run_in_one_runtime(db_config, database, make_runtime, tmp_path):
    emails = jobs_tree(db_config, handlers=HANDLERS, workers=1, queue="emails", name="emails", heartbeat_ttl=1.0, poll_interval=0.3)
    reports = jobs_tree(db_config, handlers=HANDLERS, workers=2, queue="reports", name="reports", heartbeat_ttl=1.0, poll_interval=0.3)
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[emails, reports]))
    names = {"emails-service", "emails-worker-1", "reports-service", "reports-worker-1", "reports-worker-2"}
    wait_for(lambda: names <= {n.name for n in rt.tree().walk() if n.status == "running"}, timeout=20, what="both trees")
    assert "emails-worker-2" not in rt.tree()
    path = str(tmp_path / "runs")
    mail = [rt.enqueue("record", {"path": path, "n": n}, queue="emails", service="emails-service") for n in range(5)]
    report = [rt.enqueue("record", {"path": path, "n": 100 + n}, queue="reports", service="reports-service") for n in range(5)]
    wait_for(lambda: finished(database, mail + report), timeout=30, what="both queues")
    pids = {n.name: n.pid for n in rt.tree().walk()}
    ran = {int(l[1]): int(l[2]) for l in lines(path) if l[0] == "end"}
    assert {ran[n] for n in range(5)} == {pids["emails-worker-1"]}
    assert {ran[100 + n] for n in range(5)} <= {pids["reports-worker-1"], pids["reports-worker-2"]}
    assert PgJobStore(database).counts() == {("emails", "completed"): 5, ("reports", "completed"): 5}


def test_each_tree_rescues_only_its_own_workers_with_its_own_kill_stuck(db_config, database, make_runtime, tmp_path):
    """Rescue used to be schema-wide: the "jobs" tree's rescuer (kill_stuck=True) rescued and
    killed the frozen worker of the "emails" tree, whose own setting says to leave it be
    (kill_stuck=False: it notices by itself when it resumes). The emails rescuer is frozen too,
    so only the other tree's rescuer could have acted."""
    import psutil

    main = jobs_tree(db_config, handlers=HANDLERS, workers=1, heartbeat_ttl=1.0, poll_interval=0.3)
    emails = jobs_tree(
        db_config, handlers=HANDLERS, workers=2, queue="emails", name="emails", heartbeat_ttl=1.0, poll_interval=0.3,
        kill_stuck=False, cancel_grace=1.0,
    )  # fmt: skip
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[main, emails]))
    wait_for_workers(rt, 1, tree="jobs")
    wait_for_workers(rt, 2, tree="emails")
    path = str(tmp_path / "log")
    job_id = rt.enqueue("cooperative", {"path": path, "seconds": 8.0}, queue="emails", service="emails-service")
    wait_for(lambda: any(line[0] == "start" for line in lines(path)), timeout=20, what="the job to start")
    frozen, rescuer = int(lines(path)[0][2]), rt.tree()["emails-rescuer"].pid
    os.kill(rescuer, signal.SIGSTOP)
    os.kill(frozen, signal.SIGSTOP)
    try:
        try:
            wait_for(lambda: lease_ran_out(database, frozen), timeout=15, what="the frozen worker's lease to run out")
            passes = rt.ask("rescuer", "stats")["passes"]
            wait_for(lambda: rt.ask("rescuer", "stats")["passes"] >= passes + 3, timeout=15, what="three passes of the other tree's rescuer")
            assert psutil.Process(frozen).status() == psutil.STATUS_STOPPED  # not killed
            job = PgJobStore(database).get(job_id)
            assert (job.state, job.attempt) == ("running", 1)  # not rescued by the other tree
            assert rt.ask("rescuer", "stats")["processes"] == 0
        finally:
            os.kill(rescuer, signal.SIGCONT)
        # its own rescuer rescues it, and leaves the process alone (kill_stuck=False)
        wait_for(lambda: [l for l in lines(path) if l[0] == "start" and int(l[2]) != frozen], timeout=30, what="a second start elsewhere")
        assert psutil.Process(frozen).status() == psutil.STATUS_STOPPED
        assert rt.ask("emails-rescuer", "stats")["killed"] == 0
    finally:
        os.kill(frozen, signal.SIGCONT)
    wait_for(lambda: [l for l in lines(path) if l[0] == "cancelled" and int(l[2]) == frozen], timeout=15, what="the resumed handler cancelled")
    wait_for(lambda: finished(database, [job_id]), timeout=40, what="the job done by the other worker")
    job = PgJobStore(database).get(job_id)
    assert (job.state, job.attempt) == ("completed", 2)
    assert audit(database) == CLEAN


def lease_ran_out(database, pid):
    with database.connection() as conn:
        row = conn.execute("SELECT expires_at < now() AS out FROM processes WHERE pid = %s", (pid,)).fetchone()
        conn.commit()
    return row is not None and row["out"]


def test_a_worker_whose_lease_ran_out_claims_nothing(database):
    """A frozen worker that resumes must not claim jobs for a process row about to be rescued
    (or already gone): they would be orphans rescued with an attempt lost (seen in the chaos run)."""
    import subprocess
    import sys

    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    jobs, processes = PgJobStore(database), PgProcessStore(database)
    jobs.insert([NewJob("noop") for _ in range(3)])
    frozen = processes.register("frozen", ttl=0.2)
    time.sleep(0.4)  # its lease runs out
    assert jobs.claim("default", frozen.id, 10) == []
    alive = processes.register("alive", ttl=30)
    assert len(jobs.claim("default", alive.id, 10)) == 3


def test_a_cancelled_running_job_is_told_to_its_handler_and_never_completed(db_config, database, make_runtime, tmp_path):
    """The contract with issue 15: cancelling is one fenced UPDATE to 'cancelled' plus a NOTIFY on
    cancel_channel(schema); the worker tells the handler at once and writes no outcome."""
    from actors.stores.jobs import cancel_channel

    rt = start(make_runtime, db_config, heartbeat_ttl=60.0)  # beats every 17 s: within 10 s only the NOTIFY tells
    path = str(tmp_path / "log")
    job_id = rt.enqueue("cooperative", {"path": path, "seconds": 20.0})
    wait_for(lambda: any(line[0] == "start" for line in lines(path)), timeout=20, what="the job to start")
    with database.connection() as conn:
        conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE id = %s AND state = 'running'", (job_id,))
        conn.execute("SELECT pg_notify(%s, %s)", (cancel_channel(db_config.schema), str(job_id)))
        conn.commit()
    wait_for(lambda: any(line[0] == "cancelled" for line in lines(path)), timeout=10, what="the handler to see it")

    def stopped():
        statuses = [rt.ask(name, WorkerStatus()) for name in ("worker-1", "worker-2")]
        return all(s["running"] is None for s in statuses) and sum(s["cancelled"] for s in statuses) == 1

    wait_for(stopped, timeout=10, what="the worker to drop the job without an outcome")
    job = PgJobStore(database).get(job_id)
    assert job.state == "cancelled"
    assert [t for t, _ in events(database, job_id)] == []
    assert not any(line[0] == "end" for line in lines(path))


def test_a_process_row_without_a_tree_is_rescued_by_a_runtime_whose_trees_all_have_names(db_config, database, make_runtime):
    """A worker of an older version (no tree on its row) was SIGKILLed during an upgrade, and the
    new runtime's only tree is "emails": its rescuer left that row alone (only a tree named
    "jobs" took rows without a tree), so the job stayed running forever."""
    import subprocess
    import sys

    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("noop", queue="emails")])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # the old worker's pid: a process that is gone (the rescuer kills stuck local ones)
    old = processes.register("old-node:worker-1", ttl=0.5, pid=gone.pid)  # tree None: the old version's row
    [claimed] = jobs.claim("emails", old.id, 10)
    assert claimed.id == job_id
    emails = jobs_tree(db_config, handlers=HANDLERS, workers=1, queue="emails", name="emails", heartbeat_ttl=1.0, poll_interval=0.3)
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[emails]))
    wait_for_workers(rt, 1, tree="emails")
    wait_for(lambda: finished(database, [job_id]), timeout=30, what="the old worker's job rescued and run")
    job = jobs.get(job_id)
    assert (job.state, job.attempt) == ("completed", 1), job  # it never started: no attempt lost


def test_the_jobs_of_a_renamed_trees_dead_worker_are_released_by_another_tree_after_orphan_after(db_config, database, make_runtime):
    """A tree "mail" was renamed "emails" (same queue) while one of its workers was SIGKILLed:
    rescue is per tree, nobody runs "mail" any more, so its process row stayed and its job stayed
    running for ever. Once that row has been expired `orphan_after` seconds, any tree takes it."""
    import subprocess
    import sys

    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("noop", queue="emails")])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # the old worker's pid: a process that is gone
    old = processes.register("old-node:worker-1", ttl=0.5, pid=gone.pid, tree="mail")
    [claimed] = jobs.claim("emails", old.id, 10)
    assert claimed.id == job_id
    with database.connection() as conn:
        conn.execute("UPDATE processes SET expires_at = now() - interval '10 seconds' WHERE id = %s", (old.id,))
        conn.commit()
    # expired 10 s ago: too recent for orphan_after=60 (its own tree's rescuer could still come)
    assert jobs.rescue(1.0, tree="emails", untreed=True, orphan_after=60).processes == ()
    assert jobs.get(job_id).state == "running"
    emails = jobs_tree(
        db_config, handlers=HANDLERS, workers=1, queue="emails", name="emails", heartbeat_ttl=1.0, poll_interval=0.3, orphan_after=3.0
    )
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[emails]))
    wait_for_workers(rt, 1, tree="emails")
    wait_for(lambda: finished(database, [job_id]), timeout=30, what="the renamed tree's job released and run")
    job = jobs.get(job_id)
    assert (job.state, job.attempt) == ("completed", 1), job  # it never started: no attempt lost
    stats = rt.ask("emails-rescuer", "stats")
    assert stats["orphans"] == 1 and stats["killed"] == 0
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM processes WHERE id = %s", (old.id,)).fetchone()["n"] == 0
        conn.commit()


def rescuer_orphan_after(spec):
    return next(child for child in spec.children if child.name.endswith("rescuer")).kwargs["orphan_after"]


def test_orphan_after_below_the_trees_own_lease_and_rescue_interval_is_refused_and_auto_follows_long_leases(db_config):
    with pytest.raises(SpecError, match=r"orphan_after.*above heartbeat_ttl \+ rescue_interval \(20 s\)"):
        jobs_tree(db_config, handlers=HANDLERS, orphan_after=20)
    with pytest.raises(SpecError, match="orphan_after"):
        jobs_tree(db_config, handlers=HANDLERS, orphan_after="10 minutes")
    assert rescuer_orphan_after(jobs_tree(db_config, handlers=HANDLERS, orphan_after=None)) is None  # never
    assert rescuer_orphan_after(jobs_tree(db_config, handlers=HANDLERS)) == 600.0
    # a tree with long leases, valid before orphan_after existed, still is: "auto" grows with them
    assert rescuer_orphan_after(jobs_tree(db_config, handlers=HANDLERS, heartbeat_ttl=600.0)) == 4 * (600.0 + 200.0)


def test_another_trees_worker_with_long_leases_is_only_taken_after_four_of_them(database):
    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("noop", queue="reports")])
    slow = processes.register("elsewhere:worker-1", ttl=100.0, pid=1, tree="reports")  # pid 1: never this test's to kill
    jobs.claim("reports", slow.id, 1)
    with database.connection() as conn:
        # its lease (100 s) ran out 300 s ago: past orphan_after=60, not past 4 leases (400 s)
        conn.execute("UPDATE processes SET heartbeat_at = now() - interval '400 seconds', expires_at = now() - interval '300 seconds' WHERE id = %s", (slow.id,))
        conn.commit()
    assert jobs.rescue(0.0, tree="jobs", orphan_after=60).processes == ()
    with database.connection() as conn:
        conn.execute("UPDATE processes SET heartbeat_at = now() - interval '600 seconds', expires_at = now() - interval '500 seconds' WHERE id = %s", (slow.id,))
        conn.commit()
    assert [p["id"] for p in jobs.rescue(0.0, tree="jobs", orphan_after=60).processes] == [slow.id]
    assert jobs.get(job_id).state == "available"
    # and never with orphan_after None, however long ago
    [again] = jobs.claim("reports", processes.register("elsewhere:worker-2", ttl=1.0, pid=1, tree="reports").id, 1)
    with database.connection() as conn:
        conn.execute("UPDATE processes SET heartbeat_at = now() - interval '1 day', expires_at = now() - interval '1 day' WHERE tree = 'reports'")
        conn.commit()
    assert jobs.rescue(0.0, tree="jobs", orphan_after=None).processes == ()
    assert jobs.get(again.id).state == "running"


def test_a_server_that_just_started_gives_no_other_trees_worker_to_the_orphan_rule(own_pg):
    """After a restart every lease looks expired for as long as the server was down: another
    tree's worker is only taken once the server has been up `orphan_after` seconds (its own
    tree's live workers beat again first)."""
    import uuid

    from actors.stores.config import DatabaseConfig
    from actors.stores.database import Database
    from actors.stores.migrate import Migrator
    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    own_pg.restart()  # a server up for a moment only
    config = DatabaseConfig(own_pg.dsn, schema=f"o_{uuid.uuid4().hex[:10]}")
    with Database(config) as database:
        Migrator(database).apply()
        jobs, processes = PgJobStore(database), PgProcessStore(database)
        [job_id] = jobs.insert([NewJob("noop", queue="reports")])
        other = processes.register("elsewhere:worker-1", ttl=1.0, pid=1, tree="reports")
        jobs.claim("reports", other.id, 1)
        with database.connection() as conn:
            conn.execute("UPDATE processes SET heartbeat_at = now() - interval '1 day', expires_at = now() - interval '1 day'")
            up = conn.execute("SELECT extract(epoch FROM now() - pg_postmaster_start_time()) AS s").fetchone()["s"]
            conn.commit()
        orphan_after = float(up) + 3.0  # the server is younger than this
        assert jobs.rescue(0.0, tree="jobs", orphan_after=orphan_after).processes == ()
        assert jobs.get(job_id).state == "running"
        # once the server is that old, the row is taken
        wait_for(lambda: jobs.rescue(0.0, tree="jobs", orphan_after=orphan_after).processes, timeout=15, what="the orphan taken")
        assert jobs.get(job_id).state == "available"
