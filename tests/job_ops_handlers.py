"""Handlers that defy their worker's interrupts, for the hard-exit tests of the job operations
(imported by worker processes by module path, beside tests.job_handlers)."""

from __future__ import annotations

import os
import time

from actors.jobs import job


def _record(path, *fields):
    with open(path, "a") as handle:
        handle.write(" ".join(str(f) for f in fields) + "\n")


def _defy(payload):
    """Runs `seconds`, catching every interrupt (JobCancelled, JobTimeout) and carrying on."""
    _record(payload["path"], "start", 0, os.getpid(), time.time())
    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - the point of this handler
            _record(payload["path"], "caught", type(exc).__name__, os.getpid(), time.time())
    _record(payload["path"], "end", 0, os.getpid(), time.time())


@job("defiant", max_attempts=3, timeout=120, retry_min=0.05, retry_max=0.1)
def defiant(payload):
    _defy(payload)


@job("defiant_timeout", max_attempts=1, timeout=1.0)
def defiant_timeout(payload):
    _defy(payload)
