"""Enqueue as applications do it, against real PostgreSQL: in the caller's own transaction,
with unique keys raced by several OS processes, and from a process that never imported the
handlers."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sys
import time

import psycopg
import pytest

from actors.jobs import UnknownJobKind, jobs_tree, new_job
from actors.jobs.client import Jobs
from actors.jobs.errors import BadJob
from actors.stores.jobs import PgJobStore, channel
from actors.stores.processes import PgProcessStore
from actors.stores.rows import JobOutcome
from supervision import SupervisorSpec

import tests.job_handlers  # noqa: E402,F401 - registers "noop" here (not job_handlers_remote)


def job_rows(database, where="true", params=()):
    with database.connection() as conn:
        rows = conn.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY id", params).fetchall()
        conn.commit()
    return rows


@pytest.fixture
def jobs(db_config):
    with Jobs(database=db_config) as jobs:
        yield jobs


@pytest.fixture
def own_conn(db_config):
    """The application's own connection: plain tuple rows, its own search_path."""
    conn = psycopg.connect(db_config.dsn)
    conn.execute(f"CREATE TABLE {db_config.schema}.orders (id int)")
    conn.commit()
    yield conn
    conn.close()


def listener(database):
    conn = database.dedicated()
    conn.execute(f"LISTEN {channel(database.config.schema)}")
    return conn


def test_a_job_enqueued_in_the_callers_transaction_appears_and_wakes_workers_only_on_commit(database, jobs, own_conn):
    schema = database.config.schema
    path_before = own_conn.execute("SHOW search_path").fetchone()[0]
    workers = listener(database)
    own_conn.execute(f"INSERT INTO {schema}.orders VALUES (1)")
    job_id = jobs.enqueue("noop", {"order": 1}, conn=own_conn)
    assert job_rows(database) == []  # not visible to anyone else yet
    assert list(workers.notifies(timeout=0.3, stop_after=1)) == []  # nobody woken yet
    assert own_conn.execute("SHOW search_path").fetchone()[0] == path_before  # the caller's session as it was
    assert own_conn.execute("SELECT 1").fetchone() == (1,)  # and its row factory
    own_conn.commit()
    [row] = job_rows(database)
    assert row["id"] == job_id and row["payload"] == {"order": 1}
    [note] = list(workers.notifies(timeout=5, stop_after=1))
    assert note.payload == "default"
    workers.close()


def test_a_rolled_back_transaction_leaves_no_job_and_wakes_nobody(database, jobs, own_conn):
    schema = database.config.schema
    workers = listener(database)
    own_conn.execute(f"INSERT INTO {schema}.orders VALUES (2)")
    jobs.enqueue_many([new_job("noop", {"n": i}) for i in range(3)], conn=own_conn)
    own_conn.rollback()
    assert job_rows(database) == []
    assert list(workers.notifies(timeout=0.5, stop_after=1)) == []
    workers.close()


def test_a_rejected_enqueue_leaves_the_callers_transaction_usable(database, jobs, own_conn):
    schema = database.config.schema
    own_conn.execute(f"INSERT INTO {schema}.orders VALUES (3)")
    with pytest.raises(UnknownJobKind, match="nobody_handles"):
        jobs.enqueue("nobody_handles", {}, conn=own_conn)
    with pytest.raises(BadJob, match="unique_for"):
        jobs.enqueue("noop", {}, unique_for=5, conn=own_conn)
    jobs.enqueue("noop", {}, conn=own_conn)
    own_conn.commit()
    assert own_conn.execute(f"SELECT count(*) FROM {schema}.orders").fetchone() == (1,)
    assert len(job_rows(database)) == 1


def test_enqueue_on_an_autocommit_connection_commits_at_once(database, jobs, db_config):
    with psycopg.connect(db_config.dsn, autocommit=True) as conn:
        job_id = jobs.enqueue("noop", {}, conn=conn)
    assert [r["id"] for r in job_rows(database)] == [job_id]


def test_a_unique_key_returns_the_active_job_then_frees_when_it_finishes(database, jobs):
    first = jobs.enqueue("noop", {"v": 1}, unique_key="report:7")
    assert jobs.enqueue("noop", {"v": 2}, unique_key="report:7") == first
    assert jobs.enqueue_many([new_job("noop", unique_key="report:7"), new_job("noop", unique_key="report:8")])[0] == first
    assert len(job_rows(database)) == 2
    process = PgProcessStore(database).register("w", ttl=30)
    store = PgJobStore(database)
    claimed = [j for j in store.claim("default", process.id, 10) if j.id == first]
    assert jobs.enqueue("noop", unique_key="report:7") == first  # still running: still the one
    store.write_outcomes([JobOutcome(first, process.id, claimed[0].attempt, "completed", time.time())])
    second = jobs.enqueue("noop", unique_key="report:7")
    assert second != first
    # retrying the finished one while the key is held again is refused, and changes nothing
    from actors.jobs.errors import JobStateError

    jobs.cancel(second)
    jobs.enqueue("noop", unique_key="report:7")
    with pytest.raises(JobStateError, match="unique key"):
        jobs.retry(second)


def test_a_period_scoped_key_holds_whatever_the_state_until_it_expires(database, jobs):
    first = jobs.enqueue("noop", unique_key="digest", unique_for=1.0)
    jobs.cancel(first)
    assert jobs.enqueue("noop", unique_key="digest", unique_for=1.0) == first
    time.sleep(1.1)  # the key's period is over
    second = jobs.enqueue("noop", unique_key="digest", unique_for=1.0)
    assert second != first
    assert [r["id"] for r in job_rows(database)] == [first, second]


def _race(config, key, period, barrier, results, tries):
    import tests.job_handlers  # noqa: F401

    with Jobs(database=config) as jobs:
        barrier.wait(60)
        results.put([jobs.enqueue("noop", {"pid": i}, unique_key=key, unique_for=period) for i in range(tries)])


def race_rounds(database, rounds: int, racers: int, tries: int, args_of) -> None:
    """`rounds` times: `racers` processes, released together by a barrier, each enqueue `tries`
    jobs with one unique key (`args_of(i, key, barrier, results)`: the i-th racer's target and
    arguments); every enqueue must answer the id of the one row that key has."""
    context = multiprocessing.get_context("spawn")
    for round_ in range(rounds):
        key = f"race:{round_}"
        barrier, results = context.Barrier(racers), context.Queue()
        procs = [context.Process(target=target, args=args) for target, args in (args_of(i, key, barrier, results) for i in range(racers))]
        for proc in procs:
            proc.start()
        ids = [i for _ in procs for i in results.get(timeout=120)]
        for proc in procs:
            proc.join(30)
        rows = job_rows(database, "unique_key = %s", (key,))
        assert len(rows) == 1 and set(ids) == {rows[0]["id"]} and len(ids) == racers * tries


@pytest.mark.parametrize("period", [None, 60.0])
def test_enqueuers_in_several_processes_racing_on_one_key_make_one_job(database, db_config, period):
    tries = 25
    race_rounds(database, 3, 4, tries, lambda i, key, barrier, results: (_race, (db_config, key, period, barrier, results, tries)))


def test_enqueue_from_a_process_that_never_imported_the_handlers(db_config, database, make_runtime):
    assert "tests.job_handlers_remote" not in sys.modules
    spec = jobs_tree(db_config, handlers=["tests.job_handlers_remote"], workers=1, heartbeat_ttl=1.5, poll_interval=0.3)
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))
    via_runtime = rt.enqueue("remote_resize", {"image": 7})
    with Jobs(rt) as handle, psycopg.connect(db_config.dsn) as own:
        via_handle = handle.enqueue("remote_resize", {"image": 8})
        assert handle.wait(via_handle, timeout=30).state == "completed"
        in_transaction = handle.enqueue("remote_resize", {"image": 10}, conn=own)  # the schema asked of the service
        own.commit()
        assert handle.wait(in_transaction, timeout=30).state == "completed"
    with Jobs(database=db_config) as direct:  # no runtime at all: the kinds recorded in the database
        via_database = direct.enqueue("remote_resize", {"image": 9})
        for job_id in (via_runtime, via_handle, via_database):
            assert direct.wait(job_id, timeout=30).state == "completed"
        assert direct.get(via_database).max_attempts == 7  # the kind's default, from its @job
        with pytest.raises(UnknownJobKind, match="'nobody_handles'.*known kinds: .*remote_resize"):
            direct.enqueue("nobody_handles", {})
    with pytest.raises(UnknownJobKind, match="nobody_handles"):
        rt.enqueue("nobody_handles", {})
    assert "tests.job_handlers_remote" not in sys.modules
    assert len(job_rows(database)) == 4


def test_new_job_keeps_its_unique_key_and_period():
    """After the merge NewJob had `size` before `unique_key`: passed by position, the key was lost."""
    job = new_job("noop", {}, unique_key="report:9", unique_for=30.0)
    assert (job.unique_key, job.unique_for) == ("report:9", 30.0)
    assert new_job("noop", {}, unique_key="report:9").unique_key == "report:9"


# --- unique keys through the jobs service (rt.enqueue, Jobs(rt)), the path the README shows ----


def test_a_unique_key_through_the_jobs_service_returns_the_holders_id_and_adds_no_row(db_config, database, make_runtime):
    from actors.jobs.messages import Enqueue
    from actors.stores.rows import NewJob

    spec = jobs_tree(db_config, handlers=["tests.job_handlers"], workers=1, heartbeat_ttl=1.5, poll_interval=0.3)
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    first = rt.enqueue("noop", {"v": 1}, unique_key="report:1", run_at=later)  # scheduled: it stays available
    assert rt.enqueue("noop", {"v": 2}, unique_key="report:1", run_at=later) == first
    with Jobs(rt) as handle:
        assert handle.enqueue("noop", {"v": 3}, unique_key="report:1") == first
        mixed = rt.enqueue_many([new_job("noop", unique_key="report:1"), new_job("noop", unique_key="report:2", run_at=later), new_job("noop")])
        assert mixed[0] == first and len(set(mixed)) == 3
        assert [r["payload"] for r in job_rows(database, "unique_key = 'report:1'")] == [{"v": 1}]  # the first one's, untouched
        # once the holder is finished the key is free again
        handle.cancel(first)
        second = rt.enqueue("noop", {"v": 4}, unique_key="report:1")
        assert second not in (first, *mixed) and handle.wait(second, timeout=30).state == "completed"
        # a period-scoped key holds after its job completed, until the period is over
        digest = rt.enqueue("noop", unique_key="digest", unique_for=60.0)
        assert handle.wait(digest, timeout=30).state == "completed"
        assert handle.enqueue("noop", unique_key="digest", unique_for=60.0) == digest
    assert len(job_rows(database)) == 5
    # bad keys are typed errors from the client and from the service itself, and store nothing
    for options, field in [({"unique_key": ""}, "unique_key"), ({"unique_for": 5.0}, "unique_for"), ({"unique_key": "k", "unique_for": -1}, "unique_for")]:
        with pytest.raises(BadJob, match=field):
            rt.enqueue("noop", **options)
    with pytest.raises(BadJob, match="unique_key"):
        rt.ask("jobs-service", Enqueue((NewJob("noop", {}, unique_key=7),)))
    assert len(job_rows(database)) == 5
    assert rt.tree()["jobs-service"].restarts == 0


def _race_through_a_node(node, state_dir, key, period, barrier, results, tries):
    import datetime as dt
    import os

    os.environ["THESPIAN_OTP_STATE_DIR"] = state_dir
    from actors.jobs.client import Jobs
    from supervision import Runtime

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)  # active scope: scheduled, never run
    rt = Runtime.attach(node)
    try:
        with Jobs(rt) as jobs:
            barrier.wait(60)
            ids = []
            for i in range(tries):
                options = {"unique_key": key, "unique_for": period, "run_at": later}
                ids.append(rt.enqueue("noop", {"i": i}, **options) if i % 2 else jobs.enqueue("noop", {"i": i}, **options))
        results.put(ids)
    finally:
        rt.stop()  # detaches only


@pytest.mark.parametrize("period", [None, 60.0])
@pytest.mark.timeout(300)
def test_enqueuers_in_several_processes_racing_through_two_nodes_jobs_services_make_one_job(
    database, db_config, node_processes, tmp_path, period
):
    state_dir = str(tmp_path)
    env = {"THESPIAN_OTP_STATE_DIR": state_dir}
    nodes = ["u-node-a", "u-node-b"]
    for name in nodes:  # two jobs services: the racing enqueues reach the database at once
        node_processes("tests.cluster_node", db_config.dsn, db_config.schema, name, env=env)
    tries = 20
    race_rounds(
        database, 2, 4, tries,
        lambda i, key, barrier, results: (_race_through_a_node, (nodes[i % 2], state_dir, key, period, barrier, results, tries)),
    )  # fmt: skip
