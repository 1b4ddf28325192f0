"""Job marks without a round trip per job (issue 21, second round): pipelined marks keep issue
19's guarantees, with real worker processes, real PostgreSQL and real deaths."""

from __future__ import annotations

import faulthandler
import os
import signal
import time

import pytest

from actors.jobs import WorkerStatus, new_job
from actors.jobs.ops import JobOps
from actors.stores.jobs import Q, PgJobStore
from actors.stores.marks import MARK_SQL, MarkPipeline
from actors.stores.processes import PgProcessStore
from actors.stores.rows import NewJob
from tests.support import wait_for
from tests.test_jobs import audit, finished
from tests.test_jobs_liveness import CLEAN, lines, start, worker_pids

import tests.job_handlers  # noqa: F401 - registers the kinds in this process too


def claimed_jobs(database, count):
    store = PgJobStore(database)
    store.insert([NewJob("noop", {"n": n}) for n in range(count)])
    with database.dedicated() as conn:  # statistics as after a bulk enqueue: nothing running yet
        conn.execute("ANALYZE jobs")
    process = PgProcessStore(database).register("marks-test", 60.0)
    return process, store.claim("default", process.id, count)


def generic_plan_indexes(database, statement, params):
    """The indexes a generic plan of `statement` uses (psycopg prepares after 5 runs)."""
    with database.dedicated() as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(b"PREPARE mark_probe(bigint, bigint, int, bigint, int, text) AS " + statement)
        values = ", ".join("NULL" if v is None else str(int(v)) for v in params)
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE mark_probe({values})").fetchone()
    found = []

    def walk(node):
        if "Index Name" in node:
            found.append(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(next(iter(plan.values()))[0]["Plan"])
    return found


@pytest.mark.parametrize("which", ["pipelined", "jobs.sql"])
def test_a_mark_finds_its_two_rows_by_primary_key_with_thousands_running(database, which):
    """Old code: the generic plan walked jobs_running_idx (every running row of the process),
    7-14 ms a mark with 20,000 claimed, which capped a worker near 1,000 jobs/s."""
    process, jobs = claimed_jobs(database, 3000)
    if which == "pipelined":
        statement = MARK_SQL
    else:  # the named statement, its %(name)s parameters made positional
        statement = Q["mark"].encode()
        for n, name in enumerate(["process", "start_id", "start_attempt", "ended_id", "ended_attempt", "ended_error"], 1):
            statement = statement.replace(f"%({name})s".encode(), f"${n}".encode())
    indexes = generic_plan_indexes(database, statement, (process.id, jobs[1].id, 1, jobs[0].id, 1, None))
    assert indexes and set(indexes) == {"jobs_pkey"}, indexes


@pytest.mark.parametrize("death", ["os._exit", "SIGKILL", "SIGSEGV"])
def test_a_pipelined_mark_sent_just_before_its_process_dies_is_committed(database, death):
    """The worker sends the mark and starts the handler at once; a handler that kills the
    process right then must find the mark on the rows (the previous job ended, this one
    started), also with dozens of earlier marks unanswered. Old design (a Sync per mark): the
    server, whose write of earlier answers failed on the reset, ended before running the last
    marks (1 death in 2 lost them)."""
    process, jobs = claimed_jobs(database, 150)
    for i in list(range(1, 40, 2)) + [63, 64, 65, 66, 129]:  # up to two Syncs on the way
        pid = os.fork()
        if pid == 0:  # the "worker": marks of earlier jobs unanswered, then this one, then dies
            try:
                marks = MarkPipeline(database.__class__(database.config, settings={"synchronous_commit": "off"}))
                for earlier in range(0, i - 1):
                    marks.send(process.id, None, jobs[earlier], None)
                marks.send(process.id, jobs[i], jobs[i - 1], None)
                if death == "os._exit":
                    os._exit(0)
                faulthandler.disable()  # (pytest's handler would print the child's stack)
                os.kill(os.getpid(), signal.SIGKILL if death == "SIGKILL" else signal.SIGSEGV)
            finally:
                os._exit(1)
        os.waitpid(pid, 0)
    with database.connection() as conn:
        rows = {r["id"]: r for r in conn.execute(
            "SELECT id, started_at, ended_at, ended_error FROM jobs WHERE id = ANY(%s)", ([j.id for j in jobs],)
        ).fetchall()}  # fmt: skip
        conn.commit()
    for i in list(range(1, 40, 2)) + [63, 64, 65, 66, 129]:
        assert rows[jobs[i].id]["started_at"] is not None, f"the start of job {i}, sent just before the death, was lost"
        assert rows[jobs[i - 1].id]["ended_at"] is not None, f"the end of job {i - 1}, sent just before the death, was lost"


def test_a_stream_of_short_jobs_is_marked_without_waiting_and_a_poison_job_in_it_still_fails_alone(
    db_config, database, make_runtime, tmp_path
):
    rt = start(make_runtime, db_config, workers=1, batch=100)
    path = str(tmp_path / "runs")
    warm = rt.enqueue_many([new_job("noop", {}) for _ in range(50)])
    wait_for(lambda: finished(database, warm), timeout=30, what="the warm-up jobs")
    status = rt.ask("worker-1", WorkerStatus())
    assert status["pipelined"] >= 40, repr(status)  # the first may wait for the first heartbeat
    batch = [new_job("record", {"path": path, "n": n}) for n in range(60)]
    batch.insert(30, new_job("poison_segfault", {}))
    ids = rt.enqueue_many(batch)
    poison_id = ids[30]
    wait_for(lambda: finished(database, ids), timeout=60, what="every job")
    store = PgJobStore(database)
    for job_id in ids:
        job = store.get(job_id)
        if job_id != poison_id:
            assert (job.state, job.attempt, job.errors) == ("completed", 1, ()), job
    runs = sorted(int(line[1]) for line in lines(path) if line[0] == "end")
    assert runs == list(range(60)), "every innocent job ran exactly once"
    bad = store.get(poison_id)
    assert (bad.state, bad.attempt) == ("failed", 3) and "died while running this job" in bad.last_error
    assert audit(database) == CLEAN


def test_a_claimed_job_cancelled_before_it_starts_never_starts(db_config, database, make_runtime, tmp_path):
    """Its mark would have said so after the handler ran: the cancel notification makes the
    worker wait for that answer before starting it."""
    rt = start(make_runtime, db_config, workers=1, release_after=60.0)
    path = str(tmp_path / "runs")
    first, second = rt.enqueue_many(
        [new_job("record", {"path": path, "n": 0, "seconds": 3.0}, priority=5), new_job("record", {"path": path, "n": 1})]
    )
    wait_for(lambda: any(line[0] == "start" for line in lines(path)), timeout=20, what="the first job to start")
    store = PgJobStore(database)
    assert (store.get(second).state, store.get(second).attempt) == ("running", 1)  # claimed behind it
    with JobOps(db_config) as ops:
        assert ops.cancel(second).state == "cancelled"
    wait_for(lambda: finished(database, [first]), timeout=30, what="the first job")
    # (the worker answers only between handlers: this comes once the first job is over)
    wait_for(lambda: rt.ask("worker-1", WorkerStatus())["not_ours"] == 1, timeout=10, what="the worker to pass the second")
    assert [line[1] for line in lines(path) if line[0] == "start"] == ["0"], lines(path)
    assert PgJobStore(database).get(second).state == "cancelled"


def test_a_resumed_frozen_worker_does_not_start_the_claims_rescued_from_it(db_config, database, make_runtime, tmp_path):
    """Its lease ran out while it was stopped: on resume it must not run its old claims again,
    whichever comes first, its heartbeat finding the process row gone (the claims dropped) or
    the stale lease (each mark answered first: not its own any more). In these runs the
    heartbeat came first; the next test takes the lease path alone."""
    rt = start(make_runtime, db_config, workers=2, kill_stuck=False, release_after=60.0, cancel_grace=1.0)
    path = str(tmp_path / "runs")
    jobs = [new_job("record", {"path": path, "n": 0, "seconds": 4.0}, priority=5)]
    jobs += [new_job("record", {"path": path, "n": n}) for n in range(1, 6)]
    ids = rt.enqueue_many(jobs)
    wait_for(lambda: any(line[0] == "start" for line in lines(path)), timeout=20, what="the long job to start")
    frozen = int(lines(path)[0][2])
    assert frozen in worker_pids(rt)
    store = PgJobStore(database)
    process = store.get(ids[0]).claimed_by
    if any(store.get(i).claimed_by != process for i in ids[1:]):
        pytest.skip("the other worker claimed some of the short jobs first: nothing to test in this run")
    started = float(lines(path)[0][3])
    os.kill(frozen, signal.SIGSTOP)
    try:
        # rescued after the ttl and run by the other worker
        wait_for(lambda: finished(database, ids[1:]), timeout=30, what="the short jobs, by the other worker")
        # resumed once its long job's sleep is over: the handler returns at once and the worker
        # goes straight on to its old claims, before its heartbeat thread learns anything
        wait_for(lambda: time.time() >= started + 4.2, timeout=10, what="the long job's end while frozen")
    finally:
        os.kill(frozen, signal.SIGCONT)
    wait_for(lambda: finished(database, ids), timeout=40, what="every job")
    short_by_frozen = [line for line in lines(path) if line[0] == "start" and line[1] != "0" and int(line[2]) == frozen]
    assert short_by_frozen == [], "the resumed worker ran jobs rescued from it"
    assert audit(database) == CLEAN


def test_a_worker_whose_lease_is_not_renewed_waits_for_each_marks_answer_before_a_job_starts(
    db_config, database, make_runtime, tmp_path
):
    """The heartbeat's beat is held up (the test locks the process row; the rescuer skips
    locked rows, so nothing is rescued): once the last renewal is 0.8 ttl old the worker no
    longer starts a job on a mark it has only sent. Without that check every mark stays
    pipelined (a frozen-then-resumed worker would start jobs rescued from it)."""
    rt = start(make_runtime, db_config, workers=1, heartbeat_ttl=5.0, release_after=60.0)
    path = str(tmp_path / "runs")
    warm = rt.enqueue_many([new_job("noop", {}) for _ in range(20)])
    wait_for(lambda: finished(database, warm), timeout=30, what="the warm-up jobs")
    status = wait_for(lambda: (s := rt.ask("worker-1", WorkerStatus()))["lease_trusted_for"] > 0 and s, timeout=10, what="a beat")
    with database.dedicated(autocommit=False) as blocker:
        blocker.execute("SELECT 1 FROM processes WHERE id = %s FOR UPDATE", (status["process"],))
        # claimed now (the lease is still valid on the server), started after the long job: by
        # then the last renewal is more than 0.8 ttl (4 s) old
        batch = [new_job("record", {"path": path, "n": 0, "seconds": 4.2}, priority=5)]
        batch += [new_job("record", {"path": path, "n": n}) for n in range(1, 11)]
        ids = rt.enqueue_many(batch)
        wait_for(lambda: finished(database, ids), timeout=30, what="the jobs")
        after = rt.ask("worker-1", WorkerStatus())
        blocker.rollback()
    assert after["lease_trusted_for"] == 0, after
    assert after["pipelined"] <= status["pipelined"] + 1, (status, after)  # (the long job may go before the lapse)
    assert sorted(int(line[1]) for line in lines(path) if line[0] == "end") == list(range(11))
    wait_for(lambda: rt.ask("worker-1", WorkerStatus())["lease_trusted_for"] > 0, timeout=10, what="the beats to resume")
    assert audit(database) == CLEAN
