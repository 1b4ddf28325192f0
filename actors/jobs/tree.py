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

Stopping goes in reverse: the workers stop claiming and finish or hand back their jobs first,
then the rescuer, then the completer flushes, then the service. Subscribers listed in
`subscribers` belong to the caller's tree, started before this subtree (so stopped after it).
"""

from __future__ import annotations

from typing import Sequence

from actors.jobs.completer import Completer
from actors.jobs.rescuer import Rescuer
from actors.jobs.service import JobsService, PoolManager
from actors.jobs.worker import Worker
from actors.stores.config import DatabaseConfig
from supervision import Backoff, ChildSpec, SupervisorSpec


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
) -> SupervisorSpec:
    """`handlers`: modules that define the job handlers (imported by every worker process).
    `heartbeat_ttl`: a worker that misses its heartbeats this long is considered dead and its jobs
    are rescued (it beats at least three times per ttl). `node`: this node's name, recorded
    with each worker process (and so in each completion event) when several nodes share the
    database."""
    handlers = tuple(handlers)
    worker = ChildSpec(
        "worker",
        Worker,
        kwargs={
            "database": database,
            "queue": queue,
            "handlers": handlers,
            "batch": batch,
            "heartbeat_ttl": heartbeat_ttl,
            "poll_interval": poll_interval,
            "node": node,
        },
        shutdown=worker_shutdown,
    )
    return SupervisorSpec(
        name,
        strategy="one_for_one",
        intensity=10,
        period=10.0,
        children=[
            ChildSpec("jobs-service", JobsService, kwargs={"database": database, "handlers": handlers}),
            ChildSpec(
                "completer",
                Completer,
                kwargs={
                    "database": database,
                    "batch_size": completer_batch,
                    "max_age": completer_max_age,
                    "subscribers": tuple(subscribers),
                },
                shutdown=10.0,
            ),
            ChildSpec("rescuer", Rescuer, kwargs={"database": database, "interval": rescue_interval or max(0.2, heartbeat_ttl / 3)}),
            SupervisorSpec(
                "worker-pool",
                strategy="rest_for_one",
                intensity=20,
                period=10.0,
                backoff=Backoff(min=0.05, max=1.0),
                children=[
                    SupervisorSpec("workers", strategy="simple_one_for_one", intensity=50, period=10.0, children=[worker]),
                    ChildSpec("pool", PoolManager, kwargs={"pool": "workers", "size": workers}),
                ],
            ),
        ],
    )
