"""Job handlers used by the tests (imported by worker processes by module path)."""

from __future__ import annotations

import os
import time

from actors.jobs import DiscardJob, job
from supervision import Recoverable


@job("noop")
def noop(payload):
    return None


@job("work", max_attempts=10, retry_min=0.05, retry_max=0.2)
def work(payload):
    time.sleep(payload.get("sleep", 0.002))


@job("flaky", max_attempts=3, retry_min=0.01, retry_max=0.02)
def flaky(payload):
    """Fails until a marker file has seen `fails` attempts, then succeeds."""
    path = payload["marker"]
    with open(path, "a") as handle:
        handle.write("x")
    with open(path) as handle:
        if len(handle.read()) <= payload["fails"]:
            raise Recoverable("not yet")


@job("always_fails", max_attempts=2, retry_min=0.01, retry_max=0.02)
def always_fails(payload):
    raise ValueError("this job never works")


@job("discard")
def discard(payload):
    raise DiscardJob("bad data, do not retry")


@job("hang", max_attempts=2, timeout=0.3, retry_min=0.01, retry_max=0.02)
def hang(payload):
    time.sleep(payload.get("seconds", 30))


@job("pid")
def pid(payload):
    with open(payload["path"], "a") as handle:
        handle.write(f"{os.getpid()}\n")


@job("limited", limit_key="api")
def limited(payload):
    time.sleep(payload.get("sleep", 0.01))


@job("nul_error", max_attempts=1)
def nul_error(payload):
    """Fails with a message PostgreSQL's text type cannot store as is."""
    raise ValueError("bad byte \x00 and a lone surrogate \ud800")
