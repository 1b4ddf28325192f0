"""`rt.start(jobs_tree(...))` returns before the pool's workers are up; `wait_for_workers`
waits until they run (issue 16 part 3)."""

from __future__ import annotations

import pytest

from actors.jobs import jobs_tree, wait_for_workers
from actors.stores.database import Database
from actors.stores.processes import PgProcessStore
from supervision import StartFailed, SupervisorSpec


def test_wait_for_workers_returns_when_every_worker_runs_and_is_registered(make_runtime, db_config):
    rt = make_runtime()
    rt.start(SupervisorSpec("app", children=[jobs_tree(db_config, workers=3)]))
    names = wait_for_workers(rt, 3, timeout=30)
    assert sorted(names) == ["worker-1", "worker-2", "worker-3"]
    tree = rt.tree()
    assert all(tree[name].status == "running" and tree[name].pid for name in names)
    with Database(db_config) as database:
        registered = PgProcessStore(database).all()
    assert sorted(p.pid for p in registered) == sorted(tree[name].pid for name in names)  # each has its process row


def test_wait_for_workers_gives_up_with_a_typed_error_naming_what_runs(make_runtime, db_config):
    rt = make_runtime()
    rt.start(SupervisorSpec("app", children=[jobs_tree(db_config, workers=2)]))
    wait_for_workers(rt, 2, timeout=30)
    with pytest.raises(StartFailed, match="2 of 5 workers running after 0.5 s"):
        wait_for_workers(rt, 5, timeout=0.5)
