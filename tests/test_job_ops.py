"""Job operations against real PostgreSQL: inspect, history, retry, cancel, bad input, and two
nodes acting on one job at once."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time

import pytest

from actors.jobs.errors import BadJob, JobNotFound, JobStateError
from actors.jobs.ops import JobOps
from actors.stores.jobs import PgJobStore, cancel_channel
from actors.stores.processes import PgProcessStore
from actors.stores.rows import JobOutcome, NewJob


@pytest.fixture
def ops(db_config):
    with JobOps(db_config) as ops:
        yield ops


def fail_jobs(jobs, processes, ids, error="ValueError: boom", node="n1:worker-1"):
    """Claim every available job as a fresh worker process and fail the attempts of `ids`
    (retry_in 0); the others are handed back."""
    process = processes.register(node, ttl=30)
    claimed = jobs.claim("default", process.id, 10_000)
    assert set(ids) <= {j.id for j in claimed}, f"jobs {ids} were not all claimable"
    now = time.time()
    jobs.write_outcomes(
        [JobOutcome(j.id, process.id, j.attempt, "failed", now, 1.0, error, 0.0) for j in claimed if j.id in ids]
        + [JobOutcome(j.id, process.id, j.attempt, "deferred", now) for j in claimed if j.id not in ids]
    )
    return process


def fail_once(jobs, processes, job_id, error="ValueError: boom", node="n1:worker-1"):
    return fail_jobs(jobs, processes, [job_id], error, node)


def snapshot(database, job_id):
    with database.connection() as conn:
        row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        conn.commit()
    return dict(row)


def test_list_filters_by_state_kind_and_queue_newest_first_in_pages(database, ops):
    jobs = PgJobStore(database)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    ids = jobs.insert([NewJob("mail", queue="q1") for _ in range(5)] + [NewJob("resize", queue="q2", run_at=later)])
    first = ops.list_jobs(limit=4)
    assert [j.id for j in first] == sorted(ids, reverse=True)[:4]
    second = ops.list_jobs(limit=4, before_id=first[-1].id)
    assert [j.id for j in second] == sorted(ids, reverse=True)[4:]
    assert [j.id for j in ops.list_jobs(kind="resize")] == [ids[-1]]
    assert ops.list_jobs(state="scheduled")[0].id == ids[-1]
    assert {j.id for j in ops.list_jobs(state="available")} == set(ids[:-1])
    assert {j.id for j in ops.list_jobs(queue="q1")} == set(ids[:-1])
    assert ops.counts() == {("q1", "available"): 5, ("q2", "scheduled"): 1}


def test_history_names_each_attempt_its_process_node_outcome_and_error(database, ops):
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("mail", max_attempts=2)])
    first = fail_once(jobs, processes, job_id, "ValueError: first", node="n1:worker-1")
    processes.deregister(first.id)  # the worker is gone; its history is not
    second = fail_once(jobs, processes, job_id, "KeyError: second", node="n2:worker-3")
    summary = ops.get(job_id)
    assert (summary.state, summary.attempt, summary.last_error) == ("failed", 2, "KeyError: second")
    [listed] = ops.list_jobs(state="failed")
    assert listed.id == job_id and listed.last_error == "KeyError: second"
    history = ops.history(job_id)
    assert [(a.attempt, a.process, a.node, a.outcome, a.error) for a in history] == [
        (1, first.id, "n1:worker-1", "error", "ValueError: first"),
        (2, second.id, "n2:worker-3", "error", "KeyError: second"),
    ]
    assert all(a.at is not None and a.pid is not None and a.host for a in history)
    ops.retry(job_id)
    third = processes.register("n1:worker-9", ttl=30)
    [claimed] = jobs.claim("default", third.id, 10)
    jobs.write_outcomes([JobOutcome(job_id, third.id, claimed.attempt, "completed", time.time(), 1.0)])
    outcomes = [(a.attempt, a.outcome, a.node) for a in ops.history(job_id)]
    assert outcomes[2][1] == "retried" and outcomes[3] == (3, "completed", "n1:worker-9")


def test_retry_puts_a_failed_job_back_with_one_more_attempt(database, ops):
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("mail", max_attempts=1)])
    fail_once(jobs, processes, job_id)
    retried = ops.retry(job_id)
    assert (retried.state, retried.max_attempts, retried.finished_at) == ("available", 2, None)
    process = processes.register("again", ttl=30)
    [claimed] = jobs.claim("default", process.id, 10)
    assert claimed.id == job_id and claimed.attempt == 2


def test_retry_all_retries_only_the_matching_failed_jobs(database, ops):
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    ids = jobs.insert([NewJob("mail", max_attempts=1) for _ in range(5)] + [NewJob("resize", max_attempts=1)])
    fail_jobs(jobs, processes, ids)
    assert ops.retry_all(kind="mail", batch=2) == 5
    assert {j.id for j in ops.list_jobs(state="failed")} == {ids[-1]}
    assert ops.retry_all() == 1
    assert ops.retry_all() == 0


def test_cancel_an_available_or_scheduled_job_and_it_is_never_claimed(database, ops):
    jobs = PgJobStore(database)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    now_id, later_id = jobs.insert([NewJob("mail"), NewJob("mail", run_at=later)])
    assert ops.cancel(now_id).state == "cancelled"
    assert ops.cancel(later_id).state == "cancelled"
    time.sleep(1.1)  # the scheduled one would be due now
    process = PgProcessStore(database).register("w", ttl=30)
    assert jobs.claim("default", process.id, 10) == []
    assert [a.outcome for a in ops.history(later_id)] == ["cancelled"]


def test_a_cancelled_running_job_is_never_completed_by_its_worker(database, ops):
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    [job_id] = jobs.insert([NewJob("mail")])
    worker = processes.register("n1:worker-1", ttl=30)
    [claimed] = jobs.claim("default", worker.id, 10)
    listener = database.dedicated()
    listener.execute(f"LISTEN {cancel_channel(database.config.schema)}")
    cancelled = ops.cancel(job_id)
    assert cancelled.state == "cancelled"
    [note] = list(listener.notifies(timeout=5, stop_after=1))
    assert note.payload == str(job_id)
    listener.close()
    # the worker finishes the handler anyway: its completion, a failure, a hand-back are fenced off
    now = time.time()
    for status in ("completed", "failed", "deferred"):
        assert jobs.write_outcomes([JobOutcome(job_id, worker.id, claimed.attempt, status, now, 1.0, "x")]).fenced == 1
    # and the rescuer does not bring it back when the worker dies
    processes.deregister(worker.id)
    jobs.rescue()
    row = snapshot(database, job_id)
    assert row["state"] == "cancelled"
    with database.connection() as conn:
        types = [r["type"] for r in conn.execute("SELECT type FROM events WHERE (data->>'id')::bigint = %s", (job_id,))]
        conn.commit()
    assert types == ["job.cancelled"]
    [entry] = ops.history(job_id)
    assert (entry.outcome, entry.process, entry.node) == ("cancelled", worker.id, "n1:worker-1")


def test_wrong_state_and_unknown_ids_get_typed_errors_and_change_nothing(database, ops):
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    done_id, running_id, waiting_id = jobs.insert([NewJob("mail"), NewJob("mail"), NewJob("mail")])
    worker = processes.register("w", ttl=30)
    claimed = {j.id: j for j in jobs.claim("default", worker.id, 2)}
    jobs.write_outcomes([JobOutcome(done_id, worker.id, claimed[done_id].attempt, "completed", time.time())])
    before = {i: snapshot(database, i) for i in (done_id, running_id, waiting_id)}
    with pytest.raises(JobStateError, match=f"cannot cancel job {done_id}: it is completed") as info:
        ops.cancel(done_id)
    assert (info.value.job_id, info.value.state, info.value.action) == (done_id, "completed", "cancel")
    with pytest.raises(JobStateError, match=f"cannot retry job {running_id}: it is running"):
        ops.retry(running_id)
    with pytest.raises(JobStateError, match="it is available; only failed or cancelled jobs can be retried"):
        ops.retry(waiting_id)
    with pytest.raises(JobNotFound, match="no job with id 999999"):
        ops.retry(999_999)
    with pytest.raises(JobNotFound):
        ops.history(999_999)
    for bad in (0, -1, "7", 1.5, True, None):
        with pytest.raises(BadJob, match="job_id"):
            ops.cancel(bad)
    with pytest.raises(BadJob, match="state"):
        ops.list_jobs(state="done")
    with pytest.raises(BadJob, match="state"):
        ops.retry_all(state="running")
    with pytest.raises(BadJob, match="limit"):
        ops.list_jobs(limit=0)
    with pytest.raises(BadJob, match="queue"):
        ops.pause("bad queue!")
    with pytest.raises(BadJob, match="older_than"):
        ops.prune(-1)
    assert {i: snapshot(database, i) for i in before} == before


def _retry_from_a_node(config, job_id, barrier, results):
    with JobOps(config) as ops:
        barrier.wait(30)
        try:
            results.put(("ok", ops.retry(job_id).state))
        except JobStateError as exc:
            results.put(("refused", exc.state))


def test_two_nodes_retrying_one_job_at_once_retry_it_once(database, db_config):
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    ids = jobs.insert([NewJob("mail", max_attempts=1) for _ in range(5)])
    fail_jobs(jobs, processes, ids)
    context = multiprocessing.get_context("spawn")
    for job_id in ids:
        barrier, results = context.Barrier(2), context.Queue()
        nodes = [context.Process(target=_retry_from_a_node, args=(db_config, job_id, barrier, results)) for _ in range(2)]
        for node in nodes:
            node.start()
        answers = sorted(results.get(timeout=60) for _ in nodes)
        for node in nodes:
            node.join(30)
        assert answers == [("ok", "available"), ("refused", "available")]
        entries = snapshot(database, job_id)["errors"]
        assert [e.get("outcome") for e in entries].count("retried") == 1


def test_cancels_racing_completions_either_cancel_or_complete_each_job_never_both(database, db_config):
    import random
    import threading

    jobs, processes = PgJobStore(database), PgProcessStore(database)
    ids = jobs.insert([NewJob("mail") for _ in range(200)])
    worker = processes.register("w", ttl=60)
    claimed = jobs.claim("default", worker.id, 200)
    outcomes = [JobOutcome(j.id, worker.id, j.attempt, "completed", time.time()) for j in claimed]
    refused, done = [], []

    def complete():
        for start in range(0, len(outcomes), 10):
            done.extend(jobs.write_outcomes(outcomes[start : start + 10]).completed)

    def cancel():
        with JobOps(db_config) as ops:
            for job_id in random.Random(3).sample(ids, len(ids)):
                try:
                    ops.cancel(job_id)
                except JobStateError as exc:
                    assert exc.state == "completed"
                    refused.append(job_id)

    threads = [threading.Thread(target=complete), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with database.connection() as conn:
        states = {r["id"]: r["state"] for r in conn.execute("SELECT id, state FROM jobs")}
        events = {(r["id"], r["type"]) for r in conn.execute("SELECT (data->>'id')::bigint AS id, type FROM events")}
        conn.commit()
    completed = {i for i, s in states.items() if s == "completed"}
    cancelled = {i for i, s in states.items() if s == "cancelled"}
    assert completed | cancelled == set(ids) and completed == set(done) == set(refused)
    assert events == {(i, "job.completed") for i in completed} | {(i, "job.cancelled") for i in cancelled}


def _retry_all_from_a_node(config, barrier, results):
    with JobOps(config) as ops:
        barrier.wait(30)
        results.put(ops.retry_all(batch=25))


def test_two_nodes_retrying_all_at_once_retry_each_job_once(database, db_config):
    jobs, processes = PgJobStore(database), PgProcessStore(database)
    ids = jobs.insert([NewJob("mail", max_attempts=1) for _ in range(300)])
    fail_jobs(jobs, processes, ids)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    nodes = [context.Process(target=_retry_all_from_a_node, args=(db_config, barrier, results)) for _ in range(2)]
    for node in nodes:
        node.start()
    counts = [results.get(timeout=60) for _ in nodes]
    for node in nodes:
        node.join(30)
    assert sum(counts) == 300
    with database.connection() as conn:
        rows = conn.execute("SELECT state, errors FROM jobs").fetchall()
        conn.commit()
    assert {r["state"] for r in rows} == {"available"}
    assert all([e.get("outcome") for e in r["errors"]].count("retried") == 1 for r in rows)


def test_retry_all_leaves_a_job_whose_unique_key_is_held_and_retries_one_per_key(database, ops):
    import tests.job_handlers  # noqa: F401 - registers "noop"
    from actors.jobs.client import Jobs

    with Jobs(database=database) as handle:
        old_a = handle.enqueue("noop", unique_key="a", max_attempts=1)
        handle.cancel(old_a)
        newer_a = handle.enqueue("noop", unique_key="a", max_attempts=1)
        handle.cancel(newer_a)
        held_b = handle.enqueue("noop", unique_key="b")
        handle.cancel(held_b)
        active_b = handle.enqueue("noop", unique_key="b")
    assert ops.retry_all(state="cancelled") == 1
    assert {j.id: j.state for j in ops.list_jobs()} == {old_a: "cancelled", newer_a: "available", held_b: "cancelled", active_b: "available"}
