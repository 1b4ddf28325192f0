"""Nodes on separate "hosts" (Linux network namespaces, see tests/netns.py) that reach one
PostgreSQL over a real network link, and a host that loses its network without closing a
single socket: the case a SIGKILL test cannot show (docs/design.md story 3, on a partition)."""

from __future__ import annotations

import time
import uuid

import pytest

from actors.jobs import new_job
from actors.projector import rebuild, status
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.embedded import EmbeddedPostgres
from actors.stores.jobs import PgJobStore
from actors.stores.migrate import Migrator
from tests.netns import hosts_or_skip, serve_over_links
from tests.projector_audit import LockSampler, holder_name
from tests.support import completions_per_node, job_audit, wait_for


@pytest.fixture
def hosts():
    with hosts_or_skip(3) as made:
        yield made


@pytest.fixture
def linked_pg(hosts):
    """A PostgreSQL this test owns, listening on each host's link, and a migrated schema."""
    server = EmbeddedPostgres(temporary=True)
    server.start()
    try:
        dsn, port = serve_over_links(server, hosts)
        config = DatabaseConfig(dsn, f"t_{uuid.uuid4().hex[:10]}")
        with Database(config) as database:
            Migrator(database).apply()
        yield config, port
    finally:
        server.stop()


def _job_stats(database: Database) -> list[dict]:
    with database.connection() as conn:
        rows = conn.execute("SELECT kind, completed, failed, retried, rescued, latency_count FROM job_stats ORDER BY kind").fetchall()
        conn.commit()
    return rows


@pytest.mark.timeout(300)
def test_a_partitioned_host_loses_its_projection_and_jobs_in_bounded_time_and_rejoins(hosts, linked_pg, node_processes):
    import tests.job_handlers  # noqa: F401 - new_job validates kinds against the registry

    config, port = linked_pg
    nodes = {
        f"node-{host.number}": node_processes(
            "tests.cluster_node", f"postgresql://postgres@{host.gateway}:{port}/postgres", config.schema, f"node-{host.number}", prefix=host.exec
        )
        for host in hosts
    }
    sampler = LockSampler(config, "job_stats")
    sampler.start()
    with Database(config) as database:
        jobs = PgJobStore(database)
        try:
            jobs.insert([new_job("work", {"sleep": 0.003}) for _ in range(3000)])
            wait_for(lambda: job_audit(database)["completed"] >= 600, timeout=60, what="the nodes to take jobs over the links")
            cut = wait_for(lambda: holder_name(database, "job_stats"), timeout=30, what="a projector holding the lock")
            host = hosts[int(cut.removeprefix("node-")) - 1]
            host.partition()  # its packets vanish; no socket is closed on either side
            cut_at = time.monotonic()
            new = wait_for(lambda: (holder_name(database, "job_stats") or cut) != cut and holder_name(database, "job_stats"),
                           timeout=60, interval=0.05, what="another node to take the projection")  # fmt: skip
            takeover = time.monotonic() - cut_at
            wait_for(lambda: job_audit(database)["unfinished"] == 0, timeout=120, what="every job, the cut node's claims rescued")
            host.heal()
            with database.connection() as conn:
                healed_at = conn.execute("SELECT coalesce(max(position), 0) AS p FROM events").fetchone()["p"]
                conn.commit()
            inserted, rejoined = 3000, False
            for _ in range(10):  # the healed node comes back: it takes jobs again
                jobs.insert([new_job("work", {"sleep": 0.003}) for _ in range(300)])
                inserted += 300
                wait_for(lambda: job_audit(database)["unfinished"] == 0, timeout=120, what="the jobs enqueued after the heal")
                if cut in completions_per_node(database, healed_at):
                    rejoined = True
                    break
            wait_for(lambda: status(database, ["job_stats"])[0].lag == 0, timeout=60, what="the projection to catch up")
        finally:
            sampler.halt.set()
            for each in hosts:
                each.heal()
            for node in nodes.values():
                node.stop()
        sampler.join(5)
        counts, spread = job_audit(database), completions_per_node(database)
        before = _job_stats(database)
        rebuild(database, "job_stats")
        after = _job_stats(database)
    print(f"projection takeover after a network partition of its holder: {takeover:.1f} s")
    assert set(spread) == set(nodes), spread  # every host ran jobs
    assert new != cut and rejoined
    assert takeover < 5 + 2 * 3 + 5  # the server's keepalives (idle 5 s, 3 probes 2 s apart), with room
    assert sampler.most_holders == 1
    assert counts == {"twice": 0, "unfinished": 0, "completed": inserted}
    assert before == after  # the read model equals a replay: no event applied twice or skipped


HOLD_A_ROW = """
import sys, time
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
config = DatabaseConfig(sys.argv[1], sys.argv[2])
conn = Database(config).dedicated(autocommit=False)
conn.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (int(sys.argv[3]),))
print("locked", flush=True)  # and stays in the transaction, idle
time.sleep(600)
"""


@pytest.mark.timeout(120)
def test_a_host_that_vanishes_inside_a_transaction_releases_its_row_locks_in_bounded_time(hosts, linked_pg):
    """A worker's claim transaction open when its host drops off the network: the server must
    end that session (server-side keepalives), or the claimed rows stay locked and the rescuer's
    SKIP LOCKED skips them for the kernel's two hours."""
    import subprocess
    import sys

    import tests.job_handlers  # noqa: F401

    config, port = linked_pg
    host = hosts[0]
    with Database(config) as database:
        [job] = PgJobStore(database).insert([new_job("work", {})])
        holder = subprocess.Popen(
            [*host.exec, sys.executable, "-c", HOLD_A_ROW, f"postgresql://postgres@{host.gateway}:{port}/postgres", config.schema, str(job)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "locked"
            assert not _lockable(database, job)
            host.partition()
            cut_at = time.monotonic()
            wait_for(lambda: _lockable(database, job), timeout=60, interval=0.1, what="the vanished session's row lock to go")
            released = time.monotonic() - cut_at
        finally:
            holder.kill()
            holder.wait(10)
    print(f"row lock of a vanished client released after {released:.1f} s")
    assert released < 5 + 2 * 3 + 5


def _lockable(database: Database, job: int) -> bool:
    with database.connection() as conn:
        row = conn.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE SKIP LOCKED", (job,)).fetchone()
        conn.rollback()
    return row is not None


@pytest.mark.timeout(120)
def test_a_cluster_permit_held_on_a_vanished_host_comes_back_in_bounded_time(hosts, linked_pg, node_processes, make_runtime):
    from actors.limiter import Limit, Limiter, LimiterServer, LimitTimeout
    from supervision import ChildSpec, SupervisorSpec

    config, port = linked_pg
    host = hosts[0]
    node_processes("tests.limiter_node", f"postgresql://postgres@{host.gateway}:{port}/postgres", config.schema, "far", prefix=host.exec)
    limits = {"api": Limit(1, cluster=True)}
    rt = make_runtime("multiprocTCPBase").start(
        SupervisorSpec("here", children=[ChildSpec("limiter", LimiterServer, kwargs={"limits": limits, "database": config, "node": "here"})])
    )
    limiter = Limiter(rt)
    with pytest.raises(LimitTimeout):
        limiter.acquire("api", timeout=0.5)  # the far host holds the only slot
    host.partition()
    cut_at = time.monotonic()
    lease = limiter.acquire("api", timeout=40)
    released = time.monotonic() - cut_at
    print(f"cluster permit of a vanished host back after {released:.1f} s")
    assert lease and released < 5 + 2 * 3 + 5
