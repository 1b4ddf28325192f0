"""Jobs: enqueue, workers that claim in batches, a batched completer, heartbeats and rescue.

```python
from actors.jobs import job, jobs_tree

@job("resize")                      # in an importable module, e.g. myapp/jobs.py
def resize(payload): ...

rt.start(jobs_tree(db_config, handlers=["myapp.jobs"], workers=4))
rt.enqueue("resize", {"image": 7})
```
"""

from actors.jobs.client import Jobs, enqueue, enqueue_from, enqueue_many, new_job, wait_for_workers
from actors.jobs.completer import Completer, Subscriber
from actors.jobs.context import JobContext, current_job
from actors.jobs.errors import (
    BadJob,
    DatabaseWaiting,
    DiscardJob,
    JobCancelled,
    JobNotFound,
    JobStateError,
    JobTimeout,
    JobWaitTimeout,
    NotInJob,
    UnknownJobKind,
)
from actors.jobs.messages import Ack, Complete, CompleterStats, Enqueue, FinishedJob, Flush, JobsFinished, Rescue, Subscribe, Unsubscribe, WorkerStatus
from actors.jobs.ops import JobOps
from actors.jobs.periodic import Schedule, periodic_spec
from actors.jobs.registry import JobType, job, known_kinds
from actors.jobs.rescuer import Rescuer
from actors.jobs.service import JobsService, PoolManager
from actors.jobs.tree import TreeNames, jobs_tree, tree_names
from actors.jobs.worker import Worker

__all__ = [
    "Ack",
    "BadJob",
    "Complete",
    "Completer",
    "CompleterStats",
    "DatabaseWaiting",
    "DiscardJob",
    "JobCancelled",
    "JobContext",
    "NotInJob",
    "Enqueue",
    "FinishedJob",
    "JobNotFound",
    "JobOps",
    "JobStateError",
    "JobWaitTimeout",
    "Jobs",
    "Flush",
    "JobTimeout",
    "JobType",
    "JobsFinished",
    "JobsService",
    "PoolManager",
    "Rescue",
    "Rescuer",
    "Schedule",
    "Subscribe",
    "Subscriber",
    "UnknownJobKind",
    "Unsubscribe",
    "Worker",
    "wait_for_workers",
    "WorkerStatus",
    "current_job",
    "enqueue",
    "enqueue_from",
    "enqueue_many",
    "job",
    "jobs_tree",
    "tree_names",
    "TreeNames",
    "known_kinds",
    "new_job",
    "periodic_spec",
]
