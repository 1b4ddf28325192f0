"""The job system as one supervision subtree.

```
jobs                 one_for_one
├── jobs-service     JobsService   ("jobs": Enqueue -> rows)
├── completer        Completer     (batches outcomes, publishes to subscribers)
├── rescuer          Rescuer       (releases jobs of dead worker processes)
└── worker-pool      rest_for_one
    ├── workers      simple_one_for_one (Worker template)
    └── pool         PoolManager   (keeps `workers` workers running)
```

A tree named other than "jobs" prefixes its children's names with its own (`emails-service`,
`emails-completer`, `emails-worker-1`, ... see `tree_names`), so one runtime can run several
trees, each with its queue, workers and limits; enqueue with `service=tree_names("emails").service`.

Stopping goes in reverse: the workers stop claiming and finish or hand back their jobs first,
then the rescuer, then the completer flushes, then the service. Subscribers listed in
`subscribers` belong to the caller's tree, started before this subtree (so stopped after it).
"""

from __future__ import annotations

from typing import Sequence

import attrs

from actors.jobs.completer import Completer
from actors.jobs.core import check_orphan_after, check_timing
from actors.jobs.rescuer import Rescuer
from actors.jobs.service import JobsService, PoolManager
from actors.jobs.worker import Worker
from actors.stores.config import DatabaseConfig
from supervision import Backoff, ChildSpec, SupervisorSpec
from supervision.specs import validate_name, validate_node


@attrs.frozen
class TreeNames:
    """The registered names of one job tree's actors."""

    tree: str
    service: str
    completer: str
    rescuer: str
    worker_pool: str
    workers: str
    pool: str
    worker: str


def tree_names(name: str = "jobs") -> TreeNames:
    """The default tree "jobs" keeps the historical names (`jobs-service`, `completer`,
    `worker-1`, ...); any other tree prefixes them with its name: `emails-service`,
    `emails-completer`, `emails-worker-1`, ..."""
    validate_name(name, "name")
    if name == "jobs":
        return TreeNames("jobs", "jobs-service", "completer", "rescuer", "worker-pool", "workers", "pool", "worker")
    return TreeNames(
        name, f"{name}-service", f"{name}-completer", f"{name}-rescuer", f"{name}-worker-pool",
        f"{name}-workers", f"{name}-pool", f"{name}-worker",
    )  # fmt: skip


def jobs_tree(
    database: DatabaseConfig,
    *,
    handlers: Sequence[str] = (),
    workers: int = 4,
    queue: str = "default",
    batch: int = 50,
    heartbeat_ttl: float = 15.0,
    poll_interval: float = 1.0,
    completer_batch: int = 200,
    completer_max_age: float = 0.02,
    subscribers: Sequence[str] = (),
    rescue_interval: float | None = None,
    worker_shutdown: float = 10.0,
    node: str | None = None,
    name: str = "jobs",
    limiter: str = "limiter",
    kill_stuck: bool = True,
    cancel_grace: float = 5.0,
    kill_grace: float = 5.0,
    claim_ahead: float = 0.5,
    release_after: float = 1.0,
    orphan_after: float | str | None = "auto",
) -> SupervisorSpec:
    """`handlers`: modules that define the job handlers (imported by every worker process).
    `heartbeat_ttl`: a worker that misses its heartbeats this long is considered dead and its jobs
    are rescued (it beats at least three times per ttl). `node`: this node's name (a name as
    for actors: 1-128 letters, digits and _ . : @ / -; anything else is a `SpecError`),
    recorded with each worker process (and so in each completion event) when several nodes
    share the database. `limiter`: the limiter that grants permits for kinds with a `limit_key`.
    `kill_stuck`: the rescuer kills a worker of this host whose lease expired while it is
    still alive (frozen); off, such a worker is left to notice by itself when it resumes.
    `cancel_grace`, `kill_grace`, `claim_ahead`, `release_after`: see `Worker.init`.
    `orphan_after`: this tree's rescuer also releases the jobs of another job tree's worker
    once that worker's lease has been expired this long, and at least 4 of its own leases (that
    tree has no rescuer reaching the database: retired, renamed, or cut off that long); "auto"
    (default): 600 s, or 4 x (`heartbeat_ttl` + rescue interval) if longer; None: never (this
    tree then takes no other tree's workers; whether other trees take this one's is their
    setting)."""
    handlers = tuple(handlers)
    validate_node(node, "jobs_tree.node")
    names = tree_names(name)
    rescue_every = check_timing(heartbeat_ttl, rescue_interval, cancel_grace=cancel_grace, kill_grace=kill_grace)
    orphan_after = check_orphan_after(orphan_after, heartbeat_ttl, rescue_every)
    worker = ChildSpec(
        names.worker,
        Worker,
        kwargs={
            "database": database,
            "queue": queue,
            "handlers": handlers,
            "batch": batch,
            "heartbeat_ttl": heartbeat_ttl,
            "poll_interval": poll_interval,
            "node": node,
            "completer": names.completer,
            "limiter": limiter,
            "cancel_grace": cancel_grace,
            "kill_grace": kill_grace,
            "claim_ahead": claim_ahead,
            "release_after": release_after,
            "tree": name,
        },
        shutdown=worker_shutdown,
    )
    return SupervisorSpec(
        name,
        strategy="one_for_one",
        intensity=10,
        period=10.0,
        children=[
            ChildSpec(names.service, JobsService, kwargs={"database": database, "handlers": handlers, "node": node}),
            ChildSpec(
                names.completer,
                Completer,
                kwargs={
                    "database": database,
                    "batch_size": completer_batch,
                    "max_age": completer_max_age,
                    "subscribers": tuple(subscribers),
                },
                shutdown=10.0,
            ),
            ChildSpec(
                names.rescuer,
                Rescuer,
                kwargs={
                    "database": database,
                    "interval": rescue_every,
                    "kill_stuck": kill_stuck,
                    "outage_grace": heartbeat_ttl,
                    "tree": name,
                    "orphan_after": orphan_after,
                },
            ),
            SupervisorSpec(
                names.worker_pool,
                strategy="rest_for_one",
                intensity=20,
                period=10.0,
                backoff=Backoff(min=0.05, max=1.0),
                children=[
                    SupervisorSpec(names.workers, strategy="simple_one_for_one", intensity=50, period=10.0, children=[worker]),
                    ChildSpec(names.pool, PoolManager, kwargs={"pool": names.workers, "size": workers}),
                ],
            ),
        ],
    )
