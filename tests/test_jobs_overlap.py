"""A loaded worker's early claims and writes behind (issue 21, third round; `actors/jobs/overlap.py`)
keep every per-job guarantee, with real worker processes, real PostgreSQL and a real SIGKILL."""

from __future__ import annotations

import collections
import os
import signal

import pytest

from actors.jobs import WorkerStatus, new_job
from actors.stores.jobs import PgJobStore
from tests.support import wait_for
from tests.test_jobs import audit, finished
from tests.test_jobs_liveness import CLEAN, lines, start, worker_pids

import tests.job_handlers  # noqa: F401 - registers the kinds in this process too

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the overlap is on only with a spare core per worker")


def completion_events(database, ids):
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT (data->>'id')::bigint AS id, count(*) AS n FROM events WHERE type = 'job.completed' "
            "AND (data->>'id')::bigint = ANY(%s) GROUP BY 1",
            (list(ids),),
        ).fetchall()
        conn.commit()
    return {row["id"]: row["n"] for row in rows}


def test_a_loaded_worker_claims_early_and_writes_behind_and_each_job_completes_once_with_its_event(
    db_config, database, make_runtime
):
    rt = start(make_runtime, db_config, workers=1, batch=100)
    ids = rt.enqueue_many([new_job("noop", {"n": n}) for n in range(3000)])
    wait_for(lambda: finished(database, ids), timeout=60, what="every job")
    status = wait_for(
        lambda: (s := rt.ask("worker-1", WorkerStatus()))["unconfirmed"] == 0 and s, timeout=10, what="the worker to settle"
    )
    assert status["claimed_early"] > 0 and status["written_behind"] > 0, status
    assert status["claimed"] == 3000 and status["completed"] == 3000, status
    store = PgJobStore(database)
    assert {(store.get(i).state, store.get(i).attempt) for i in ids[::97]} == {("completed", 1)}
    assert completion_events(database, ids) == {i: 1 for i in ids}
    assert audit(database) == CLEAN


def test_a_worker_killed_with_an_early_claim_and_a_write_in_flight_loses_nothing_and_reruns_at_most_its_current_job(
    db_config, database, make_runtime, tmp_path
):
    """SIGKILL in the middle of a stream of short jobs: the early claim's jobs and the outcomes
    being written behind are the dead worker's; the rescuer sorts them out from the marks (an
    ended job is completed, never run again; unstarted ones go back). Only the job whose
    handler was running (or whose end was not yet marked) may run twice."""
    rt = start(make_runtime, db_config, workers=1, batch=100)
    path = str(tmp_path / "runs")
    warm = rt.enqueue_many([new_job("noop", {}) for _ in range(300)])  # avg_run settles: full claims
    wait_for(lambda: finished(database, warm), timeout=30, what="the warm-up jobs")
    ids = rt.enqueue_many([new_job("record", {"path": path, "n": n, "seconds": 0.001}) for n in range(1500)])
    wait_for(lambda: len(lines(path)) >= 800, timeout=30, what="a few hundred jobs to run")
    [pid] = list(worker_pids(rt))
    status = rt.ask("worker-1", WorkerStatus())
    os.kill(pid, signal.SIGKILL)
    assert status["claimed_early"] > 0 and status["written_behind"] > 0, status
    wait_for(lambda: finished(database, ids), timeout=90, what="every job, by the restarted worker")
    ends = collections.Counter(int(line[1]) for line in lines(path) if line[0] == "end")
    assert sorted(ends) == list(range(1500)), "every job ran to its end"
    assert len([n for n, count in ends.items() if count > 1]) <= 1, "only the job at the kill ran twice"
    store = PgJobStore(database)
    assert {store.get(i).state for i in ids} == {"completed"}
    assert completion_events(database, ids) == {i: 1 for i in ids}
    assert audit(database) == CLEAN
