"""The projector with real processes and a PostgreSQL server the test owns (docs/design.md story 3)."""

from __future__ import annotations

import time
import uuid

import pytest

from actors.projector import ProjectorStatus, load_projection, projector_spec, rebuild, status
from actors.projector.errors import ProjectionBusy
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.events import PgEventStore
from actors.stores.migrate import Migrator
from actors.stores.projections import LockSession, lock_holder
from actors.stores.rows import NewEvent
from supervision import SupervisorSpec
from tests.projections import Audited
from tests.projector_audit import Appender, LockSampler, assert_read_model_equals_a_replay, audit, holder_name
from tests.support import NodeProcess, wait_for

@pytest.fixture
def pg_config(own_pg):
    config = DatabaseConfig(own_pg.dsn, f"t_{uuid.uuid4().hex[:10]}")
    with Database(config) as database:
        Migrator(database).apply()
    return config


@pytest.fixture
def start_node(node_processes):
    """A node: a runtime with the projector, in its own OS process."""

    def start(config: DatabaseConfig, name: str, projection: str = "tests.projections:Audited") -> NodeProcess:
        return node_processes("tests.projector_node", config.dsn, config.schema, name, projection)

    return start


def test_story_3_two_nodes_through_postgres_restarts_never_apply_together_nor_twice(own_pg, pg_config, start_node):
    nodes = [start_node(pg_config, "node-a"), start_node(pg_config, "node-b")]
    appender, sampler = Appender(pg_config), LockSampler(pg_config)
    try:
        appender.start()
        sampler.start()
        with Database(pg_config) as database:
            wait_for(lambda: holder_name(database) in ("node-a", "node-b"), timeout=30, what="a holder")
        for _ in range(3):
            time.sleep(1.0)
            own_pg.restart()  # every session drops; the nodes crash, restart and contend again
        time.sleep(1.0)
        appender.halt.set()
        appender.join(10)
        with Database(pg_config) as database:
            wait_for(lambda: status(database, [Audited])[0].lag == 0, timeout=60, what="the projection to catch up")
    finally:
        appender.halt.set()
        sampler.halt.set()
        for node in nodes:
            node.stop()
    sampler.join(5)
    assert appender.batches > 50 and sampler.samples > 50
    assert sampler.most_holders == 1  # what PostgreSQL guarantees; the audit below checks the appliers
    with Database(pg_config) as database:
        assert audit(database) == {"twice": 0, "skipped": 0, "overlapping": 0}
        assert_read_model_equals_a_replay(database)


def test_killing_the_active_node_hands_the_projection_to_the_other(own_pg, pg_config, start_node):
    nodes = {name: start_node(pg_config, name) for name in ("node-a", "node-b")}
    try:
        with Database(pg_config) as database:
            PgEventStore(database).append([NewEvent("tick", {"key": "x"}) for _ in range(20)])
            active = wait_for(lambda: holder_name(database), timeout=30, what="a holder")
            standby = next(name for name in nodes if name != active)
            killed_at = time.monotonic()
            nodes[active].crash()
            wait_for(lambda: holder_name(database) == standby, timeout=15, interval=0.005, what="the takeover")
            takeover = time.monotonic() - killed_at
            PgEventStore(database).append([NewEvent("tick", {"key": "y"})])
            wait_for(lambda: status(database, [Audited])[0].lag == 0, timeout=30, what="the new holder to apply")
    finally:
        for node in nodes.values():
            node.stop()
    print(f"takeover after SIGKILL of the active node: {takeover * 1000:.0f} ms")
    assert takeover < 0.1 + 0.1 + 2.0  # retry interval + backoff, with room for a loaded machine


def test_a_projection_that_raises_crashes_at_the_failing_event_and_never_skips_it(make_runtime, pg_config):
    with Database(pg_config) as database:
        events = PgEventStore(database)
        events.append([NewEvent("tick", {"n": i}) for i in range(5)])
        [poison] = events.append([NewEvent("tick", {"poison": True})])
        events.append([NewEvent("tick", {"n": i}) for i in range(5)])
        sup = projector_spec(pg_config, "tests.projections:Poisoned", intensity=2, period=30.0, retry_interval=0.05, lock_check_interval=0.1)
        rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", intensity=5, period=60.0, children=[sup]))
        wait_for(lambda: "failed at event" in (rt.tree().find("projector-poisoned-sup").last_exit or ""), timeout=30, what="escalation")
        reason = rt.tree()["projector-poisoned-sup"].last_exit
        assert f"failed at event {poison}" in reason and "ValueError" in reason
        with database.connection() as conn:
            seen = [r["position"] for r in conn.execute("SELECT position FROM poisoned_seen ORDER BY 1")]
            checkpoint = conn.execute("SELECT position FROM projection_checkpoints WHERE name = 'poisoned'").fetchone()
            conn.commit()
    assert seen == list(range(poison - 5, poison))  # everything before it, nothing after it
    assert checkpoint["position"] == poison - 1


def test_the_lock_check_asks_for_this_session_not_any_session(pg_config):
    with Database(pg_config) as database:
        first = LockSession(database, "audited", "a")
        second = LockSession(database, "audited", "b")
        try:
            assert first.try_lock() and first.holds_lock()
            assert not second.try_lock()
            assert not second.holds_lock()  # a count without the pid filter would say yes here
            first.unlock()
            assert second.try_lock() and second.holds_lock() and not first.holds_lock()
        finally:
            first.close()
            second.close()


def test_a_terminated_lock_session_makes_the_holder_reconnect_and_contend_again_without_a_restart(make_runtime, pg_config):
    """A lost connection is an outage to wait out (issue 19), not a crash: a new session takes
    the lock again and the projector is never restarted."""
    rt = make_runtime("multiprocTCPBase").start(
        SupervisorSpec("root", children=[projector_spec(pg_config, "tests.projections:Audited", node="solo", lock_check_interval=0.1, retry_interval=0.1)])
    )
    with Database(pg_config) as database:
        wait_for(lambda: holder_name(database) == "solo", timeout=20, what="the lock")
        before = lock_holder(database, "audited")["pid"]
        with database.connection() as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (before,))  # this test's holder, not another's "solo"
            conn.commit()
        wait_for(lambda: (lock_holder(database, "audited") or {}).get("pid") not in (None, before), timeout=20, what="a new session")
        wait_for(lambda: rt.ask("projector-audited", ProjectorStatus())["holding"], timeout=20, what="the lock again")
        assert rt.tree()["projector-audited"].restarts == 0


def test_rebuild_refuses_while_a_projector_holds_the_lock(pg_config):
    with Database(pg_config) as database:
        holder = LockSession(database, "audited", "busy-node")
        try:
            assert holder.try_lock()
            with pytest.raises(ProjectionBusy, match="busy-node"):
                rebuild(database, "tests.projections:Audited")
        finally:
            holder.close()


def test_bad_projection_references_are_typed_errors():
    from actors.projector import UnknownProjection

    for reference in ("nope", "tests.projections:Nothing", "os:path", 42):
        with pytest.raises(UnknownProjection):
            load_projection(reference)
