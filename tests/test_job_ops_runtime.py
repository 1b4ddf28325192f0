"""Job operations with real worker processes: wait woken by notifications, cancelling a job
while its handler runs, pausing a queue at run time, pruning next to claims."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from actors.jobs import CompleterStats, WorkerStatus, jobs_tree, new_job
from actors.jobs.errors import JobNotFound, JobWaitTimeout
from actors.jobs.ops import JobOps
from actors.stores.job_ops import Q
from actors.stores.jobs import PgJobStore
from actors.stores.processes import PgProcessStore
from actors.stores.rows import NewJob
from supervision import SupervisorSpec
from tests.support import wait_for
from tests.test_jobs_liveness import lines  # the handlers' log lines

import tests.job_handlers  # noqa: E402,F401


def start_jobs(make_runtime, config, **options):
    options.setdefault("heartbeat_ttl", 1.5)
    options.setdefault("poll_interval", 0.3)
    spec = jobs_tree(config, handlers=options.pop("handlers", ["tests.job_handlers"]), **options)
    return make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))


def test_wait_returns_each_final_state_woken_by_notifications(db_config, make_runtime):
    rt = start_jobs(make_runtime, db_config, workers=1)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    # recheck=600: a wait that returns within its 30 s was woken by a notification, not a poll
    with JobOps(db_config, recheck=600) as ops, JobOps(db_config) as other:
        done = rt.enqueue("noop", {})
        assert ops.wait(done, 30).state == "completed"
        doomed = rt.enqueue("always_fails", {})
        failed = ops.wait(doomed, 30)
        assert (failed.state, failed.last_error) == ("failed", "ValueError: this job never works")
        scheduled = rt.enqueue("noop", {}, run_at=later)
        threading.Timer(0.5, other.cancel, (scheduled,)).start()
        assert ops.wait(scheduled, 30).state == "cancelled"
        waiting = rt.enqueue("noop", {}, run_at=later)
        with pytest.raises(JobWaitTimeout, match=f"job {waiting} is still scheduled after 0.5 s"):
            ops.wait(waiting, 0.5)
        with pytest.raises(JobNotFound):
            ops.wait(10**12, 1)


def test_a_running_job_cancelled_mid_handler_is_stopped_after_the_grace_and_writes_no_outcome(
    db_config, database, make_runtime, tmp_path
):
    """Issue 15 marks the job cancelled; issue 19's worker hears it on the cancel channel and,
    the handler ignoring `current_job().cancelled` ("stubborn"), interrupts it after
    `cancel_grace` with JobCancelled and writes nothing for it."""
    rt = start_jobs(make_runtime, db_config, workers=1, cancel_grace=1.0)
    path = str(tmp_path / "log")
    with JobOps(db_config) as ops:
        job_id = rt.enqueue("stubborn", {"path": path, "seconds": 30})
        wait_for(lambda: lines(path), timeout=20, what="the handler to start")
        pid = int(lines(path)[0][2])
        asked = time.time()
        assert ops.cancel(job_id).state == "cancelled"
        stopped = wait_for(lambda: [l for l in lines(path) if l[0] == "interrupted"], timeout=20, what="the handler interrupted")
        assert stopped[0][1] == "JobCancelled" and float(stopped[0][3]) - asked >= 1.0  # not before the grace
        status = wait_for(lambda: (s := rt.ask("worker-1", WorkerStatus()))["cancelled"] == 1 and s, timeout=10, what="the worker's count")
        assert (status["completed"], status["failed"], status["process"] is not None) == (0, 0, True)
        # the worker went on (no hard exit): the next job runs in the same process
        assert ops.wait(rt.enqueue("pid", {"path": str(tmp_path / "pid")}), 30).state == "completed"
        assert int(open(tmp_path / "pid").read()) == pid
        assert rt.ask("completer", CompleterStats())["fenced"] == 0  # nothing was even sent for it
        job = ops.get(job_id)
        assert (job.state, job.attempt) == ("cancelled", 1)
        assert [(a.attempt, a.outcome) for a in ops.history(job_id)] == [(1, "cancelled")]
        assert not [l for l in lines(path) if l[0] == "end"]
    with database.connection() as conn:
        types = [r["type"] for r in conn.execute("SELECT type FROM events WHERE (data->>'id')::bigint = %s", (job_id,))]
        conn.commit()
    assert types == ["job.cancelled"]


def alive(pid):
    """The process runs (a zombie waiting to be reaped has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def replaced(rt, pid, restarts):
    """worker-1 runs again, in a new process, restarted once more by its supervisor."""
    node = rt.tree()["worker-1"]
    return node.status == "running" and node.pid not in (None, pid) and node.restarts == restarts + 1 and node


def process_rows(database, pid):
    with database.connection() as conn:
        rows = conn.execute("SELECT id FROM processes WHERE pid = %s", (pid,)).fetchall()
        conn.commit()
    return rows


DEFIANT = ["tests.job_handlers", "tests.job_ops_handlers"]


def test_a_cancelled_handler_that_swallows_job_cancelled_ends_its_worker_process_after_twice_the_grace(
    db_config, database, make_runtime, tmp_path
):
    """The last step of cancelling a running job: the handler catches JobCancelled and carries
    on, so after 2 x cancel_grace the heartbeat ends the process (Heartbeat.hard_exit); its
    supervisor starts a new worker, and the job stays cancelled."""
    rt = start_jobs(make_runtime, db_config, workers=1, cancel_grace=1.0, handlers=DEFIANT)
    path = str(tmp_path / "log")
    with JobOps(db_config) as ops:
        job_id = rt.enqueue("defiant", {"path": path, "seconds": 60})
        wait_for(lambda: lines(path), timeout=20, what="the handler to start")
        pid = int(lines(path)[0][2])
        before = rt.tree()["worker-1"]
        assert before.pid == pid
        asked = time.time()
        assert ops.cancel(job_id).state == "cancelled"
        caught = wait_for(lambda: [l for l in lines(path) if l[0] == "caught"], timeout=20, what="the interrupt caught")
        assert caught[0][1] == "JobCancelled" and float(caught[0][3]) - asked >= 1.0
        wait_for(lambda: not alive(pid), timeout=20, what="the worker process to end itself")
        assert time.time() - asked >= 2.0  # not before twice the grace
        after = wait_for(lambda: replaced(rt, pid, before.restarts), timeout=30, what="a new worker process")
        # the new worker runs jobs; the cancelled one never ran again, never completed
        assert ops.wait(rt.enqueue("pid", {"path": str(tmp_path / "pid")}), 30).state == "completed"
        assert int(open(tmp_path / "pid").read()) == after.pid
        wait_for(lambda: not process_rows(database, pid), timeout=30, what="the dead worker's row rescued")
        job = ops.get(job_id)
        assert (job.state, job.attempt, job.finished_at is not None) == ("cancelled", 1, True)
        assert [(a.attempt, a.outcome) for a in ops.history(job_id)] == [(1, "cancelled")]
        assert [l[0] for l in lines(path)] == ["start", "caught"]  # never ended: the process did
    with database.connection() as conn:
        types = [r["type"] for r in conn.execute("SELECT type FROM events WHERE (data->>'id')::bigint = %s", (job_id,))]
        conn.commit()
    assert types == ["job.cancelled"]


def test_a_handler_that_swallows_its_timeout_fails_its_job_and_ends_its_worker_after_the_kill_grace(
    db_config, database, make_runtime, tmp_path
):
    """The other hard exit: past `timeout + kill_grace` the heartbeat writes the job's failure
    (fenced) itself and ends the process; the job fails with that error and is not run again."""
    rt = start_jobs(make_runtime, db_config, workers=1, kill_grace=1.0, handlers=DEFIANT)
    path = str(tmp_path / "log")
    with JobOps(db_config) as ops:
        job_id = rt.enqueue("defiant_timeout", {"path": path, "seconds": 60})  # timeout 1 s, max_attempts 1
        wait_for(lambda: lines(path), timeout=20, what="the handler to start")
        start, pid = float(lines(path)[0][3]), int(lines(path)[0][2])
        before = rt.tree()["worker-1"]
        failed = ops.wait(job_id, 30)
        assert failed.state == "failed" and failed.attempt == 1
        assert failed.last_error == "timed out after 1 s and ignored the interrupt for 1 s; its worker process was ended"
        caught = [l for l in lines(path) if l[0] == "caught"]
        assert caught[0][1] == "JobTimeout" and float(caught[0][3]) - start >= 1.0
        wait_for(lambda: not alive(pid), timeout=20, what="the worker process to end itself")
        assert time.time() - start >= 2.0  # not before timeout + kill_grace
        after = wait_for(lambda: replaced(rt, pid, before.restarts), timeout=30, what="a new worker process")
        assert ops.wait(rt.enqueue("pid", {"path": str(tmp_path / "pid")}), 30).state == "completed"
        assert int(open(tmp_path / "pid").read()) == after.pid
        assert [l[0] for l in lines(path)] == ["start", "caught"]
        wait_for(lambda: not process_rows(database, pid), timeout=30, what="the dead worker's row rescued")
        assert ops.get(job_id).state == "failed"  # and the rescue left the job alone


def test_a_paused_queue_is_not_claimed_until_resumed_and_resume_wakes_the_workers(db_config, make_runtime):
    # poll_interval 600: only notifications wake the workers, so the resume's NOTIFY is what runs the jobs
    rt = start_jobs(make_runtime, db_config, workers=2, poll_interval=600)
    with JobOps(db_config) as ops:
        assert ops.pause("default") is True and ops.pause("default") is False
        ids = rt.enqueue_many([new_job("noop", {"n": i}) for i in range(20)])
        time.sleep(1.0)  # the enqueue's NOTIFY woke both workers: they claimed nothing
        assert {ops.get(i).state for i in ids} == {"available"}
        assert ops.paused() == {"default"}
        assert ops.resume("default") is True and ops.resume("default") is False
        for job_id in ids:
            assert ops.wait(job_id, 30).state == "completed"
        assert ops.paused() == set()


def test_prune_deletes_only_old_finished_jobs_in_batches(database, db_config):
    store = PgJobStore(database)
    store.copy_in([NewJob("old") for _ in range(40)], state="completed")
    store.copy_in([NewJob("recent") for _ in range(5)], state="completed")
    kept = store.insert([NewJob("waiting") for _ in range(3)])
    with database.connection() as conn:
        conn.execute("UPDATE jobs SET finished_at = now() - interval '2 days', created_at = now() - interval '2 days' WHERE kind IN ('old')")
        conn.execute("UPDATE jobs SET created_at = now() - interval '2 days' WHERE kind = 'waiting'")
        conn.execute("UPDATE jobs SET state = 'failed' WHERE id IN (SELECT id FROM jobs WHERE kind = 'old' LIMIT 5)")
        conn.commit()
    with JobOps(db_config) as ops:
        assert ops.prune(86400, batch=7) == 40
        assert ops.counts() == {("default", "completed"): 5, ("default", "available"): 3}
        assert ops.prune(86400, batch=7) == 0
    assert {r.id for r in [store.get(i) for i in kept]} == set(kept)


def test_prune_never_holds_up_a_claim(database, db_config):
    store = PgJobStore(database)
    store.copy_in([NewJob("old") for _ in range(200)], state="completed")
    [job_id] = store.insert([NewJob("fresh")])
    with database.connection() as conn:
        conn.execute("UPDATE jobs SET finished_at = now() - interval '2 days' WHERE kind = 'old'")
        conn.commit()
    process = PgProcessStore(database).register("w", ttl=30)
    with database.connection() as pruning:
        # a prune batch, left open: it holds the row locks of what it deletes
        row = pruning.execute(Q["prune"], {"after": 0, "batch": 1000, "older": 3600}).fetchone()
        assert row["deleted"] == 200
        claimed = []
        claimer = threading.Thread(target=lambda: claimed.extend(store.claim("default", process.id, 10)))
        claimer.start()
        claimer.join(10)
        assert not claimer.is_alive() and [j.id for j in claimed] == [job_id]
        pruning.rollback()
