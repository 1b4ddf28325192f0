"""Periodic jobs: which ticks are due (pure, against brute force), two schedulers ticking
against one schema from two OS processes, catch-up after downtime, and schedulers that
restart with their whole node."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time

import pytest
from croniter import croniter
from hypothesis import given, settings, strategies as st

from actors.jobs import jobs_tree
from actors.jobs.errors import BadJob, UnknownJobKind
from actors.jobs.periodic import Schedule, due_ticks, ensure_schedule, periodic_spec, tick_schedule
from actors.stores.database import Database
from actors.stores.schedules import PgSchedules
from supervision import SupervisorSpec
from tests.support import wait_for

import tests.job_handlers  # noqa: E402,F401

UTC = dt.timezone.utc
BASE = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CRONS = ["* * * * *", "*/7 * * * *", "0 * * * *", "15,45 */2 * * *", "* * * * * */20"]


def brute(cron, last, now):
    ticks, walker = [], croniter(cron, last)
    while (tick := walker.get_next(dt.datetime)) <= now:
        ticks.append(tick)
    return ticks


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CRONS), st.integers(0, 6 * 3600), st.integers(0, 6 * 3600), st.sampled_from(["latest", "all", "skip"]))
def test_due_ticks_are_the_missed_ticks_the_policy_keeps(cron, start, span, policy):
    last, now = BASE + dt.timedelta(seconds=start), BASE + dt.timedelta(seconds=start + span, microseconds=start % 1000)
    expected = brute(cron, last, now)
    ticks, newest = due_ticks(cron, last, now, policy, max_catch_up=50, grace=90)
    assert newest == (expected[-1] if expected else None)
    if policy == "all":
        assert ticks == expected[-50:]
    elif policy == "latest":
        assert ticks == expected[-1:]
    else:
        assert ticks == [t for t in expected[-1:] if (now - t).total_seconds() <= 90]


def test_bad_schedules_fail_where_they_are_written():
    for kwargs, field in [
        ({"cron": "every day"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"name": "no spaces"}, "name"),
        ({"kind": "bad kind!"}, "kind"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"max_catch_up": 0}, "max_catch_up"),
        ({"catch_up": "sometimes"}, "catch_up"),
        ({"payload": {"x": object()}}, "JSON"),
    ]:
        with pytest.raises(BadJob, match=field):
            Schedule(**{"name": "s", "cron": "* * * * *", "kind": "noop", **kwargs})
    with pytest.raises(BadJob, match=r"share a name \(a\)"):
        periodic_spec(None, [Schedule("a", "* * * * *", "noop"), Schedule("a", "0 * * * *", "noop")])
    with pytest.raises(BadJob, match="interval"):
        periodic_spec(None, [Schedule("a", "* * * * *", "noop")], interval=0)


def scheduled(database, name):
    """The ticks of `name` enqueued so far, from the jobs' unique keys (oldest first)."""
    with database.connection() as conn:
        rows = conn.execute("SELECT unique_key FROM jobs WHERE unique_key LIKE %s ORDER BY id", (f"schedule:{name}:%",)).fetchall()
        conn.commit()
    return [dt.datetime.fromisoformat(r["unique_key"].split(":", 2)[2]) for r in rows]


def _scheduler_node(config, seconds, results):
    import tests.job_handlers  # noqa: F401

    schedule = Schedule("every-second", "* * * * * *", "noop", catch_up="all")
    with Database(config) as database:
        store = PgSchedules(database)
        ensure_schedule(store, schedule, "node")
        passes = enqueued = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ids = tick_schedule(store, schedule, f"node-{multiprocessing.current_process().pid}")
            passes += 1
            enqueued += len(ids or ())
            time.sleep(0.005)
        results.put((passes, enqueued))


def test_two_schedulers_ticking_against_one_schema_enqueue_each_tick_once(database, db_config):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    nodes = [context.Process(target=_scheduler_node, args=(db_config, 4.0, results)) for _ in range(2)]
    for node in nodes:
        node.start()
    reports = [results.get(timeout=60) for _ in nodes]
    for node in nodes:
        node.join(30)
    ticks = scheduled(database, "every-second")
    assert sum(enqueued for _, enqueued in reports) == len(ticks) >= 3
    assert len(set(ticks)) == len(ticks)  # never twice
    assert ticks == [ticks[0] + dt.timedelta(seconds=i) for i in range(len(ticks))]  # and none missed
    assert all(passes > 10 for passes, _ in reports)  # both were ticking all along


def test_after_downtime_each_policy_catches_up_as_documented(database):
    store = PgSchedules(database)
    policies = {
        "all": Schedule("s-all", "* * * * * *", "noop", catch_up="all", max_catch_up=1000),
        "latest": Schedule("s-latest", "* * * * * *", "noop", catch_up="latest"),
        "skip": Schedule("s-skip", "* * * * *", "noop", catch_up="skip", grace=0.001),
        "capped": Schedule("s-capped", "* * * * * *", "noop", catch_up="all", max_catch_up=3),
    }
    for schedule in policies.values():
        ensure_schedule(store, schedule, "test")
    with database.connection() as conn:  # every node was down for the last 10 minutes
        conn.execute("UPDATE job_schedules SET last_tick = last_tick - interval '10 minutes'")
        conn.commit()
    for schedule in policies.values():
        tick_schedule(store, schedule, "test")
    caught = {policy: scheduled(database, s.name) for policy, s in policies.items()}
    newest, second = caught["all"][-1], dt.timedelta(seconds=1)
    assert 600 <= len(caught["all"]) <= 602  # every missed second (the passes ran a moment apart)
    assert caught["all"] == [caught["all"][0] + i * second for i in range(len(caught["all"]))]
    [latest] = caught["latest"]
    assert latest >= newest - second  # the latest missed tick, not the first
    assert caught["skip"] == []
    assert caught["capped"] == [caught["capped"][0] + i * second for i in range(3)] and caught["capped"][-1] >= newest - second
    for schedule in policies.values():  # and the next pass has nothing left to catch up
        assert len(tick_schedule(store, schedule, "test") or []) <= 2


def test_a_schedule_of_a_kind_nobody_handles_enqueues_nothing(database):
    store = PgSchedules(database)
    schedule = Schedule("ghost", "* * * * * *", "nobody_handles_this")
    ensure_schedule(store, schedule, "test")
    with database.connection() as conn:
        conn.execute("UPDATE job_schedules SET last_tick = last_tick - interval '5 seconds'")
        conn.commit()
    with pytest.raises(UnknownJobKind, match="nobody_handles_this"):
        tick_schedule(store, schedule, "test")
    assert scheduled(database, "ghost") == []


def test_schedulers_on_two_nodes_survive_a_restart_of_every_node(db_config, database, make_runtime):
    schedule = Schedule("beat", "* * * * * *", "noop", catch_up="latest")

    def node_spec():
        return SupervisorSpec(
            "root",
            children=[
                jobs_tree(db_config, handlers=["tests.job_handlers"], workers=1, heartbeat_ttl=1.5, poll_interval=0.3),
                periodic_spec(db_config, [schedule], name="scheduler-a", interval=0.2, node="a"),
                periodic_spec(db_config, [schedule], name="scheduler-b", interval=0.2, node="b"),
            ],
        )

    rt = make_runtime("multiprocTCPBase").start(node_spec())
    wait_for(lambda: len(scheduled(database, "beat")) >= 3, timeout=30, what="three ticks")
    rt.stop()
    before = scheduled(database, "beat")
    time.sleep(2.5)  # every node down: at least two ticks pass with no scheduler
    rt = make_runtime("multiprocTCPBase").start(node_spec())
    wait_for(lambda: len(scheduled(database, "beat")) >= len(before) + 3, timeout=30, what="ticks after the restart")
    rt.stop()
    ticks = scheduled(database, "beat")
    assert len(set(ticks)) == len(ticks) and ticks == sorted(ticks)
    gaps = [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) >= 2  # catch_up="latest": the ticks missed while down were dropped, but one
    assert gaps.count(1.0) >= len(gaps) - 1  # otherwise, one job every second
    with database.connection() as conn:
        done = conn.execute("SELECT count(*) AS n FROM jobs WHERE state = 'completed' AND unique_key LIKE 'schedule:beat:%'").fetchone()["n"]
        conn.commit()
    assert done >= len(before)
