"""Cluster-wide limits: several limiters (each its own process and database session) share a
key's concurrency limit through PostgreSQL advisory locks."""

from __future__ import annotations

import threading
import time

import pytest

from actors.limiter import Configure, Held, Limit, Limiter, LimiterServer, LimitTimeout
from actors.stores.slots import slots_held
from supervision import BadRequest, ChildSpec, SupervisionError, SupervisorSpec
from tests.support import wait_for

LIMIT = 2


def cluster_tree(config, names=("limiter-a", "limiter-b")):
    return SupervisorSpec(
        "root",
        intensity=20,
        period=5.0,
        children=[
            ChildSpec(
                name,
                LimiterServer,
                kwargs={"limits": {"api": Limit(LIMIT, cluster=True)}, "default": Limit(5), "database": config, "node": name},
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


def test_a_lost_database_session_restarts_the_limiter_which_then_works_again(make_runtime, own_pg):
    import uuid

    from actors.stores.config import DatabaseConfig

    config = DatabaseConfig(own_pg.dsn, f"t_{uuid.uuid4().hex[:10]}")
    rt = make_runtime("multiprocTCPBase").start(cluster_tree(config, ("limiter-a",)))
    a = Limiter(rt, "limiter-a")
    lease = a.acquire("api")
    own_pg.restart()  # every session ends: the slot is gone, the limiter must not go on as if held
    wait_for(lambda: rt.tree()["limiter-a"].restarts == 1, timeout=15, what="the limiter to notice and restart")
    assert a.release(lease) is False  # the new limiter never granted it
    again = wait_for(lambda: _try_acquire(a), timeout=15, what="a permit from the restarted limiter")
    assert a.release(again)


def _try_acquire(limiter: Limiter):
    try:
        return limiter.acquire("api", timeout=1)
    except SupervisionError:
        return None
