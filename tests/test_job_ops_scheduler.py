"""The periodic Scheduler actor against real parts: its retention pass over a big backlog of
finished jobs never holds up a tick, and a database outage of any length is waited out (no
restart, "waiting for the database") and followed by the documented catch-up."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest

from actors.jobs.errors import BadJob
from actors.jobs.periodic import Retention, Schedule, periodic_spec
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.migrate import Migrator
from actors.stores.outage import WAITING
from supervision import SupervisorSpec
from tests.support import wait_for
from tests.test_job_ops_periodic import scheduled

import tests.job_handlers  # noqa: E402,F401

SECOND = dt.timedelta(seconds=1)


def consecutive(ticks):
    """Each tick once, none missed: one every second from the first to the last."""
    return ticks == [ticks[0] + i * SECOND for i in range(len(ticks))]


def backlog(database):
    with database.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM jobs WHERE kind = 'old'").fetchone()["n"]
        conn.commit()
    return n


def test_a_retention_sweep_is_one_batch_per_step_then_waits_its_interval():
    retention = Retention(interval=300.0, pause=0.05, next_at=5.0)
    assert not retention.due(4.9) and retention.due(5.0) and retention.cursor == 0
    assert retention.stepped(5.0, 1000, after=1000) is None  # more to scan: the next batch soon
    assert (retention.cursor, retention.next_at) == (1000, 5.05)
    assert retention.stepped(5.1, 10, after=2000) is None and retention.cursor == 2000
    assert retention.stepped(5.2, 0, after=None) == 1010  # the sweep is over: what it deleted
    assert (retention.cursor, retention.next_at, retention.total) == (0, 305.2, 1010)
    assert retention.stepped(305.2, 3, after=None) == 3 and retention.total == 1013


def test_bad_retention_settings_fail_where_they_are_written():
    schedule = [Schedule("a", "* * * * *", "noop")]
    for kwargs, field in [
        ({"prune_batch": 0}, "prune_batch"),
        ({"prune_batch": 1.5}, "prune_batch"),
        ({"prune_interval": 0}, "prune_interval"),
        ({"prune_interval": float("inf")}, "prune_interval"),
        ({"prune_pause": -1}, "prune_pause"),
        ({"prune_pause": "0.1"}, "prune_pause"),
        ({"prune_after": -1}, "prune_after"),
    ]:
        with pytest.raises(BadJob, match=field):
            periodic_spec(None, schedule, **kwargs)


@pytest.mark.timeout(300)
def test_a_big_prune_backlog_is_pruned_in_bounded_passes_while_every_tick_is_enqueued_once(db_config, database, make_runtime):
    """The first version pruned the whole backlog inside one tick pass: 120,000 finished rows at
    0.05 s between batches of 1,000 held the scheduler for 6 s or more, and catch_up="latest"
    dropped every tick of that time but the last."""
    rows = 120_000
    with database.connection() as conn:  # finished two days ago, so all of them go
        conn.execute(
            "INSERT INTO jobs (kind, state, attempt, created_at, finished_at) "
            "SELECT 'old', 'completed', 1, now() - interval '2 days', now() - interval '2 days' FROM generate_series(1, %s)",
            (rows,),
        )
        conn.commit()
    spec = periodic_spec(
        db_config, [Schedule("beat", "* * * * * *", "noop")], interval=0.2, handlers=["tests.job_handlers"],
        prune_after=3600, prune_interval=1.0,
    )  # fmt: skip
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))
    samples = []  # (backlog, ticks enqueued so far)

    def pruned():
        samples.append((backlog(database), len(scheduled(database, "beat"))))
        return samples[-1][0] == 0

    wait_for(pruned, timeout=240, interval=0.2, what="the backlog pruned")
    seen = len(scheduled(database, "beat"))
    wait_for(lambda: len(scheduled(database, "beat")) >= seen + 2, timeout=30, what="two more ticks")
    ticks = scheduled(database, "beat")
    assert len(ticks) >= 4 and consecutive(ticks), ticks
    during = [t for b, t in samples if 0 < b < rows]
    assert len(during) >= 2, samples  # the backlog shrank over several looks, not at once
    assert during[-1] > during[0], samples  # and ticks were enqueued while it was being pruned
    status = rt.ask("job-scheduler", "status")
    assert status["pruned"] == rows and status["enqueued"] == len(ticks)
    assert rt.tree()["job-scheduler"].restarts == 0


@pytest.mark.timeout(300)
def test_a_database_outage_is_waited_out_by_the_scheduler_which_then_catches_up_as_documented(own_pg, make_runtime):
    """The first version opened the database in `init` and had no outage handling in its tick:
    every pass during an outage crashed it, and every restart crashed again in `init`, past the
    supervisor's default intensity (3 restarts in 5 s)."""
    config = DatabaseConfig(own_pg.dsn, schema=f"o_{uuid.uuid4().hex[:10]}", connect_timeout=2.0)
    with Database(config) as database:
        Migrator(database).apply()
    schedules = [
        Schedule("every", "* * * * * *", "noop", catch_up="all"),
        Schedule("newest", "* * * * * *", "noop", catch_up="latest"),
    ]
    spec = periodic_spec(config, schedules, interval=0.2, handlers=["tests.job_handlers"], prune_after=3600, prune_interval=0.5)
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))  # default intensity
    with Database(config) as database:
        wait_for(lambda: len(scheduled(database, "every")) >= 3, timeout=30, what="ticks before the outage")
    before = {n.name: (n.restarts, n.pid) for n in rt.tree().walk()}

    own_pg.stop_server()
    down_at = time.monotonic()
    wait_for(lambda: rt.tree()["job-scheduler"].status == WAITING, timeout=20, what="the scheduler to show it waits")
    assert rt.ask("job-scheduler", "status")["waiting_for_database"] is True
    while time.monotonic() - down_at < 15:
        assert {n.name: (n.restarts, n.pid) for n in rt.tree().walk()} == before
        time.sleep(1.0)
    own_pg.start_server()
    up_at = dt.datetime.now(dt.timezone.utc)

    with Database(config) as database:
        wait_for(lambda: [t for t in scheduled(database, "newest") if t > up_at + 2 * SECOND], timeout=60, what="ticks after the outage")
        wait_for(lambda: rt.tree()["job-scheduler"].status == "running", timeout=30, what="the scheduler running again")
        every, newest = scheduled(database, "every"), scheduled(database, "newest")
    assert {n.name: (n.restarts, n.pid) for n in rt.tree().walk()} == before, "the scheduler restarted"
    # catch_up="all": the ticks missed during the outage were enqueued after it, each once
    assert consecutive(every) and every[-1] > up_at, every
    # catch_up="latest": one job for the newest missed tick, then every tick again
    assert len(set(newest)) == len(newest) and newest == sorted(newest)
    gaps = [(b - a).total_seconds() for a, b in zip(newest, newest[1:])]
    assert max(gaps) >= 10 and gaps.count(1.0) == len(gaps) - 1, gaps


@pytest.mark.timeout(300)
def test_a_scheduler_started_while_the_database_is_away_waits_for_it_then_ticks(own_pg, make_runtime):
    """A node that restarts during an outage: the first version's `init` raised, so the start failed."""
    config = DatabaseConfig(own_pg.dsn, schema=f"o_{uuid.uuid4().hex[:10]}", connect_timeout=2.0)
    with Database(config) as database:
        Migrator(database).apply()
    own_pg.stop_server()
    spec = periodic_spec(config, [Schedule("every", "* * * * * *", "noop", catch_up="all")], interval=0.2, handlers=["tests.job_handlers"])
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))
    wait_for(lambda: rt.tree()["job-scheduler"].status == WAITING, timeout=20, what="the scheduler to show it waits")
    own_pg.start_server()
    with Database(config) as database:
        wait_for(lambda: len(scheduled(database, "every")) >= 3, timeout=60, what="ticks once the database is there")
        assert consecutive(scheduled(database, "every"))
    wait_for(lambda: rt.tree()["job-scheduler"].status == "running", timeout=30, what="the scheduler running")
    assert rt.tree()["job-scheduler"].restarts == 0
