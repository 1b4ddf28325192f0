"""Projections: single active applier across nodes, checkpoints with the read model, rebuilds.

```python
rt.start(projector_spec(db_config, "job_stats"))     # on every node: one applies, the rest wait
```
"""

from actors.projector.actor import Projector, ProjectorStatus
from actors.projector.errors import LockLost, ProjectionBusy, ProjectionFailed, ProjectionImportFailed, UnknownProjection
from actors.projector.job_stats import JobStats, KindStats, read_job_stats
from actors.projector.projection import BUILTIN, Projection, load_projection
from actors.projector.rebuild import ProjectionStatus, rebuild, status
from actors.projector.tree import projector_spec

__all__ = [
    "BUILTIN",
    "JobStats",
    "KindStats",
    "LockLost",
    "Projection",
    "ProjectionBusy",
    "ProjectionFailed",
    "ProjectionImportFailed",
    "ProjectionStatus",
    "Projector",
    "ProjectorStatus",
    "UnknownProjection",
    "load_projection",
    "projector_spec",
    "read_job_stats",
    "rebuild",
    "status",
]
