"""Several nodes (separate actor systems in separate processes, on loopback) sharing one
PostgreSQL: work spreads over them, one projector is active, killing a node loses nothing."""

from __future__ import annotations


import pytest

from actors.jobs import new_job
from actors.projector import ProjectorStatus, status
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from supervision import Runtime
from tests.support import completions_per_node, job_audit, wait_for

@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    return str(tmp_path)


def test_three_nodes_share_the_work_run_one_projector_and_lose_nothing_when_one_dies(db_config, database, state_dir, node_processes):
    import tests.job_handlers  # noqa: F401

    env = {"THESPIAN_OTP_STATE_DIR": state_dir}
    nodes = {name: node_processes("tests.cluster_node", db_config.dsn, db_config.schema, name, env=env) for name in ("node-a", "node-b", "node-c")}
    try:
        entry = Runtime.attach("node-a")  # any node takes jobs; they go to the shared table
        ids = entry.enqueue_many([new_job("work", {"sleep": 0.003}) for _ in range(3000)])
        wait_for(lambda: PgJobStore(database).counts().get(("default", "completed"), 0) >= 600, timeout=60)
        nodes.pop("node-b").crash()  # mid-load: its claimed jobs are rescued after the expiry window
        wait_for(lambda: _finished(database, ids), timeout=120, what="every job after the crash")
        wait_for(lambda: status(database, ["job_stats"])[0].lag == 0, timeout=60, what="the projection")
        holding = []
        for name in nodes:
            attached = Runtime.attach(name)
            holding.append(attached.ask("projector-job_stats", ProjectorStatus())["holding"])
            attached.stop()  # detach
        entry.stop()
    finally:
        for node in nodes.values():
            node.stop()
    assert sorted(holding) == [False, True]  # exactly one projector applies, cluster-wide
    per_node, audit = completions_per_node(database), job_audit(database)
    assert set(per_node) == {"node-a", "node-b", "node-c"}, per_node  # the work was spread
    assert all(count > 100 for count in per_node.values()), per_node
    assert (audit["twice"], audit["unfinished"]) == (0, 0)
    assert sum(per_node.values()) == 3000


def _finished(database: Database, ids) -> bool:
    with database.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM jobs WHERE id = ANY(%s) AND state IN ('completed', 'failed')", (list(ids),)).fetchone()
        conn.commit()
    return row["n"] == len(ids)
