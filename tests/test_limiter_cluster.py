"""Cluster-wide limits: several limiters (each its own process and database session) share a
key's concurrency limit through PostgreSQL advisory locks."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from actors.jobs import DatabaseWaiting
from actors.limiter import ClusterWaiting, Configure, Held, Limit, Limiter, LimiterServer, LimitTimeout
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.outage import WAITING
from actors.stores.slots import slots_held
from supervision import BadRequest, ChildSpec, SupervisionError, SupervisorSpec
from tests.support import wait_for

LIMIT = 2


def cluster_tree(config, names=("limiter-a", "limiter-b"), **kwargs):
    return SupervisorSpec(
        "root",
        intensity=20,
        period=5.0,
        children=[
            ChildSpec(
                name,
                LimiterServer,
                kwargs={"limits": {"api": Limit(LIMIT, cluster=True)}, "default": Limit(5), "database": config, "node": name, **kwargs},
            )
            for name in names
        ],
    )


class Waiter(threading.Thread):
    """Asks a limiter for a permit in the background; records what it got and when."""

    def __init__(self, limiter: Limiter, timeout: float) -> None:
        super().__init__(daemon=True)
        self.limiter, self.timeout = limiter, timeout
        self.result: object = None
        self.at: float | None = None

    def run(self) -> None:
        try:
            self.result = self.limiter.acquire("api", timeout=self.timeout)
        except SupervisionError as exc:
            self.result = exc
        self.at = time.monotonic()


def test_a_cluster_limit_holds_across_limiters_and_a_release_on_one_serves_the_other(make_runtime, db_config, database):
    rt = make_runtime("multiprocTCPBase").start(cluster_tree(db_config))
    a, b = Limiter(rt, "limiter-a"), Limiter(rt, "limiter-b")
    first, second = a.acquire("api"), b.acquire("api")
    assert slots_held(database, "api", LIMIT) == 2
    with pytest.raises(LimitTimeout):
        b.acquire("api", timeout=0.3)  # b has room of its own, the cluster has none
    assert a.acquire("other", timeout=1)  # keys without cluster=True stay per node
    waiter = Waiter(b, timeout=10)
    waiter.start()
    time.sleep(0.2)
    assert waiter.result is None  # still waiting
    released_at = time.monotonic()
    a.release(first)
    waiter.join(10)
    assert waiter.result is not None and not isinstance(waiter.result, Exception), waiter.result
    print(f"handover between limiters: {(waiter.at - released_at) * 1000:.0f} ms")
    assert waiter.at - released_at < 2.0
    assert len(rt.ask("limiter-b", Held("api"))) == 2 and rt.ask("limiter-a", Held("api")) == ()
    b.release(second)
    b.release(waiter.result)
    wait_for(lambda: slots_held(database, "api", LIMIT) == 0, what="every slot given back")


def test_killing_a_limiter_frees_its_slots_for_the_others(make_runtime, db_config, database):
    rt = make_runtime("multiprocTCPBase").start(cluster_tree(db_config))
    a, b = Limiter(rt, "limiter-a"), Limiter(rt, "limiter-b")
    held_by_a = [a.acquire("api"), a.acquire("api")]
    waiter = Waiter(b, timeout=10)
    waiter.start()
    time.sleep(0.2)
    killed_at = time.monotonic()
    rt.kill("limiter-a")  # SIGKILL: its session closes with its process
    waiter.join(10)
    assert waiter.result is not None and not isinstance(waiter.result, Exception), waiter.result
    print(f"slots back after SIGKILL of their limiter: {(waiter.at - killed_at) * 1000:.0f} ms")
    wait_for(lambda: rt.tree()["limiter-a"].restarts == 1, what="limiter-a restarted")
    assert a.release(held_by_a[0]) is False  # the restarted limiter starts empty
    assert a.acquire("api", timeout=5)  # and takes the one slot still free
    assert slots_held(database, "api", LIMIT) == 2


def test_permits_out_never_exceed_the_cluster_limit_under_load(make_runtime, db_config, database):
    rt = make_runtime("multiprocTCPBase").start(cluster_tree(db_config, ("limiter-a", "limiter-b", "limiter-c")))
    lock = threading.Lock()
    #: the holders' own records: (moment, +1 on grant / -1 before release, lease id); the
    #: permits out at once are counted from these, not from the slots (which cannot exceed
    #: LIMIT by construction: there are only LIMIT slot numbers)
    events: list[tuple[float, int, str]] = []
    errors: list[BaseException] = []

    def client(name: str) -> None:
        limiter = Limiter(rt, name)
        try:
            for _ in range(25):
                lease = limiter.acquire("api", timeout=30)
                with lock:
                    events.append((time.monotonic(), +1, lease.id))
                time.sleep(0.003)
                with lock:
                    events.append((time.monotonic(), -1, lease.id))
                limiter.release(lease)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(f"limiter-{n}",)) for n in "abc" for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    out, most = 0, 0
    for _moment, change, _lease in sorted(events):
        out += change
        most = max(most, out)
    assert len({lease for _, _, lease in events}) == 6 * 25  # every permit a distinct lease
    assert most <= LIMIT, f"{most} permits out at once across the cluster"
    assert most == LIMIT  # the load did reach the limit: the check is not vacuous
    wait_for(lambda: slots_held(database, "api", LIMIT) == 0, what="every slot given back")


def test_cluster_limits_without_a_database_are_refused_clearly(make_runtime):
    with pytest.raises(BadRequest, match="Limit.cluster must be True or False"):
        Limit(2, cluster="yes")
    rt = make_runtime("multiprocTCPBase")
    spec = SupervisorSpec("root", children=[ChildSpec("limiter", LimiterServer, kwargs={"limits": {"api": Limit(2, cluster=True)}})])
    with pytest.raises(SupervisionError, match="need a database"):
        rt.start(spec)
    rt.start(SupervisorSpec("root2", children=[ChildSpec("plain", LimiterServer)]))
    with pytest.raises(BadRequest, match="needs a limiter started with a database"):
        rt.ask("plain", Configure("api", Limit(2, cluster=True)))
    assert rt.tree()["plain"].restarts == 0


def test_a_database_restart_never_restarts_the_limiter_and_its_permit_takes_its_slot_back(make_runtime, own_pg):
    """A restarted server ended the lock session: the limiter used to crash (its supervisor
    restarted it empty, the holder's release was UnknownLease, and other nodes could grant its
    slot while the holder still worked). It now reconnects and the permit takes its slot back."""
    config = DatabaseConfig(own_pg.dsn, f"t_{uuid.uuid4().hex[:10]}")
    rt = make_runtime("multiprocTCPBase").start(cluster_tree(config, ("limiter-a",)))
    a = Limiter(rt, "limiter-a")
    lease = a.acquire("api")
    with Database(config) as database:
        own_pg.restart()  # every session ends: the slot is gone, the holder is still working
        wait_for(lambda: slots_held(database, "api", LIMIT) == 1, timeout=15, what="the permit to take its slot back")
        assert rt.tree()["limiter-a"].restarts == 0
        assert a.release(lease) is True  # still granted, never forgotten
        wait_for(lambda: slots_held(database, "api", LIMIT) == 0, what="the slot given back")
        again = a.acquire("api", timeout=10)  # (nothing new for reclaim_grace after the loss)
        assert slots_held(database, "api", LIMIT) == 1
        assert a.release(again)
    assert rt.tree()["limiter-a"].restarts == 0


def test_a_limiter_whose_idle_session_the_server_ended_reconnects_without_restarting(make_runtime, db_config, database):
    """The server ends a lock session idle for 15 s (idle_session_timeout) or on an operator's
    pg_terminate_backend; the next acquire used to crash the limiter."""
    rt = make_runtime("multiprocTCPBase").start(cluster_tree(db_config, ("limiter-a",)))
    a = Limiter(rt, "limiter-a")
    a.release(a.acquire("api"))  # connected, and holding nothing
    with database.connection() as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = %s",
            ("thespian-otp:limiter:limiter-a",),
        ).fetchall()
        conn.commit()
    assert [row["ended"] for row in ended] == [True]
    lease = a.acquire("api", timeout=10)  # (nothing new for reclaim_grace after a lost session)
    assert slots_held(database, "api", LIMIT) == 1
    assert a.release(lease)
    assert rt.tree()["limiter-a"].restarts == 0


def test_an_outage_is_waited_out_and_permits_take_their_slots_back_before_new_ones(make_runtime, own_pg):
    """Two limiters hold the cluster's two permits through an outage, with the supervisor's
    default restart limits: nothing restarts, both show "waiting for the database", cluster
    keys answer ClusterWaiting while local keys keep working. The server comes back while
    limiter-a is frozen and limiter-b is asked for permits in a loop: b grants nothing new
    until a has taken its slot back (reclaim_grace), so no more than 2 permits are ever out."""
    config = DatabaseConfig(own_pg.dsn, f"t_{uuid.uuid4().hex[:10]}", connect_timeout=2.0)
    spec = cluster_tree(config)
    spec = SupervisorSpec("root", children=spec.children)  # the default intensity and period
    rt = make_runtime("multiprocTCPBase").start(spec)
    a, b = Limiter(rt, "limiter-a"), Limiter(rt, "limiter-b")
    held = [a.acquire("api"), b.acquire("api")]
    with Database(config) as database:
        assert slots_by_limiter(database) == {"limiter-a": 1, "limiter-b": 1}
    before = {n.name: (n.restarts, n.pid) for n in rt.tree().walk()}

    own_pg.stop_server()
    wait_for(lambda: {rt.tree()[n].status for n in ("limiter-a", "limiter-b")} == {WAITING}, timeout=15, what="both limiters to wait")
    with pytest.raises(DatabaseWaiting) as raised:
        b.acquire("api", timeout=1)
    assert isinstance(raised.value, ClusterWaiting) and raised.value.retryable and "'api'" in str(raised.value)
    local = a.acquire("other", timeout=1)  # keys without cluster=True keep working
    assert a.release(local)
    frozen = rt.tree()["limiter-a"].pid
    os.kill(frozen, signal.SIGSTOP)
    try:
        own_pg.start_server()
        hammer = Hammer(b)
        hammer.start()
        with Database(config) as database:
            wait_for(lambda: slots_by_limiter(database).get("limiter-b") == 1, timeout=15, what="limiter-b to take its slot back")
            asked = hammer.asked
            wait_for(lambda: hammer.asked >= asked + 3, timeout=15, what="limiter-b asked for new permits")
            os.kill(frozen, signal.SIGCONT)
            wait_for(lambda: slots_by_limiter(database) == {"limiter-a": 1, "limiter-b": 1}, timeout=15, what="limiter-a to take its slot back")
            assert hammer.grants == []  # nothing new while both old permits are out
            released_at = time.monotonic()
            assert a.release(held[0]) is True and b.release(held[1]) is True
            wait_for(lambda: len(hammer.grants) >= 3, timeout=20, what="new permits after the release")
    finally:
        os.kill(frozen, signal.SIGCONT)
    hammer.stop()
    assert hammer.errors == []
    assert all(at >= released_at for at, _ in hammer.grants)
    assert rt.tree()["limiter-a"].status == rt.tree()["limiter-b"].status == "running"
    assert {n.name: (n.restarts, n.pid) for n in rt.tree().walk()} == before


class Hammer(threading.Thread):
    """Asks a limiter for a permit in a loop (short timeouts) and records what it got."""

    def __init__(self, limiter: Limiter) -> None:
        super().__init__(daemon=True)
        self.limiter = limiter
        self.asked = 0
        self.grants: list[tuple[float, str]] = []
        self.errors: list[BaseException] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            self.asked += 1
            try:
                lease = self.limiter.acquire("api", timeout=0.3)
            except (LimitTimeout, DatabaseWaiting):
                time.sleep(0.02)
                continue
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return
            self.grants.append((time.monotonic(), lease.id))
            self.limiter.release(lease)

    def stop(self) -> None:
        self.running = False
        self.join(10)


def slots_by_limiter(database: Database) -> dict[str, int]:
    """How many advisory locks each limiter's lock session holds, by node name."""
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT a.application_name AS name, count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'thespian-otp:limiter:%%'"
            " GROUP BY a.application_name"
        ).fetchall()
        conn.commit()
    return {row["name"].rsplit(":", 1)[1]: row["n"] for row in rows}
