"""Job handlers used by the tests (imported by worker processes by module path)."""

from __future__ import annotations

import os
import sys
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


def _record(path, *fields):
    with open(path, "a") as handle:
        handle.write(" ".join(str(f) for f in fields) + "\n")


@job("record", max_attempts=3, timeout=60, retry_min=0.05, retry_max=0.1)
def record(payload):
    """Appends `start <n> <pid> <time>` and `end ...` lines to payload["path"]."""
    _record(payload["path"], "start", payload.get("n", 0), os.getpid(), time.time())
    time.sleep(payload.get("seconds", 0))
    _record(payload["path"], "end", payload.get("n", 0), os.getpid(), time.time())


@job("limited_record", limit_key="api", timeout=30)
def limited_record(payload):
    record(payload)


@job("long", max_attempts=3, timeout=120)
def long(payload):
    time.sleep(payload["seconds"])


@job("poison_exit", max_attempts=3, retry_min=0.05, retry_max=0.1)
def poison_exit(payload):
    os._exit(3)


@job("poison_segfault", max_attempts=3, retry_min=0.05, retry_max=0.1)
def poison_segfault(payload):
    import ctypes

    ctypes.string_at(0)  # a real segmentation fault


@job("poison_sys_exit", max_attempts=3, retry_min=0.05, retry_max=0.1)
def poison_sys_exit(payload):
    sys.exit(3)


@job("cooperative", max_attempts=3, timeout=120, retry_min=0.05, retry_max=0.1)
def cooperative(payload):
    """Works in small steps until done or until its job is no longer its own."""
    from actors.jobs import current_job

    _record(payload["path"], "start", current_job().attempt, os.getpid(), time.time())
    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        if current_job().cancelled:
            _record(payload["path"], "cancelled", current_job().attempt, os.getpid(), time.time())
            return
        time.sleep(0.05)
    _record(payload["path"], "end", current_job().attempt, os.getpid(), time.time())


@job("stubborn", max_attempts=3, timeout=120, retry_min=0.05, retry_max=0.1)
def stubborn(payload):
    """Never looks at current_job(): only the worker's interrupt can stop it."""
    _record(payload["path"], "start", 0, os.getpid(), time.time())
    try:
        deadline = time.monotonic() + payload["seconds"]
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException as exc:
        _record(payload["path"], "interrupted", type(exc).__name__, os.getpid(), time.time())
        raise
    _record(payload["path"], "end", 0, os.getpid(), time.time())


@job("long_chaos", queue="slow", max_attempts=10, timeout=60, retry_min=0.05, retry_max=0.2)
def long_chaos(payload):
    """The chaos run's long job: many heartbeat ttls long; it must never be rescued while alive."""
    from actors.jobs import current_job

    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        current_job().check()
        time.sleep(0.05)


def _read_setting(payload):
    raise KeyError(f"no setting {payload['name']!r}")  # the traceback test looks for this line


@job("nested_fails", max_attempts=1)
def nested_fails(payload):
    """Fails two frames down: its traceback names both functions and the raising line."""
    _read_setting(payload)


@job("huge_error", max_attempts=1)
def huge_error(payload):
    """Fails with a 20,000-character message holding a NUL and a lone surrogate."""
    raise ValueError("\x00 \ud800 " + "y" * 20_000 + " the end")


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("this exception cannot be described")


@job("bad_str", max_attempts=1)
def bad_str(payload):
    raise BadStr()
