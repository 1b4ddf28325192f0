"""The running job's context, for its handler: `current_job()` tells a handler whether its job
is still its own (`cancelled`) and lets it stop cleanly (`check()` raises `JobCancelled`).

```python
from actors.jobs import current_job, job

@job("export", timeout=3600)
def export(payload):
    for chunk in chunks(payload):
        current_job().check()       # raises JobCancelled once the job was cancelled or rescued
        write(chunk)
```

The worker's heartbeat thread sets `cancelled` (an operator cancelled the job, or the worker
was frozen past its expiry and the job was rescued); after the worker's `cancel_grace` the
handler is interrupted with `JobCancelled`, and a handler that still does not stop is ended
with its process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs

from actors.jobs.errors import JobCancelled, NotInJob


@attrs.define(eq=False)
class JobContext:
    """One attempt of one job, as its handler sees it."""

    id: int
    kind: str
    queue: str
    attempt: int
    max_attempts: int
    timeout: float
    started: float = attrs.field(factory=time.monotonic)
    _cancelled: threading.Event = attrs.field(factory=threading.Event)
    reason: str | None = None
    cancelled_at: float | None = None

    @property
    def cancelled(self) -> bool:
        """True once this job is no longer this worker's: stop, write nothing more."""
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise `JobCancelled` if the job was cancelled or rescued."""
        if self._cancelled.is_set():
            raise JobCancelled(self.id, self.reason or "cancelled")

    def cancel(self, reason: str) -> None:
        """Called by the worker's heartbeat thread."""
        if not self._cancelled.is_set():
            self.reason = reason
            self.cancelled_at = time.monotonic()
            self._cancelled.set()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


_current: JobContext | None = None


def current_job() -> JobContext:
    """The job whose handler is running in this worker; `NotInJob` outside a handler."""
    job = _current
    if job is None:
        raise NotInJob("current_job() is only valid inside a job handler (in a worker process)")
    return job


def _set(job: Any) -> None:
    global _current
    _current = job
