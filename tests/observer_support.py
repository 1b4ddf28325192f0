"""Helpers of the observer tests: a live system with jobs, a limiter and a projector, and the
job operations API, the real one (issue 15) or, where it is absent, a small stand-in."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from typing import Any

from actors.jobs import jobs_tree
from actors.limiter import Limit, LimiterServer
from actors.projector import projector_spec
from supervision import ChildSpec, Recoverable, SupervisorSpec

import tests.job_handlers  # noqa: F401 - registers the kinds in this process too

HANDLERS = ["tests.job_handlers"]


def system_spec(config: Any, workers: int = 2, heartbeat_ttl: float = 2.0, **jobs_options: Any) -> SupervisorSpec:
    return SupervisorSpec(
        "app",
        intensity=20,
        period=10.0,
        children=[
            ChildSpec("limiter", LimiterServer, kwargs={"limits": {"images": Limit(2)}}),
            jobs_tree(config, handlers=HANDLERS, workers=workers, heartbeat_ttl=heartbeat_ttl, poll_interval=0.2, **jobs_options),
            projector_spec(config, "job_stats", lock_check_interval=0.5, retry_interval=0.5),
        ],
    )


def workers(tree: Any) -> list[str]:
    """Names of the job workers (whatever the tree's naming scheme)."""
    return sorted(n.name for n in tree.walk() if n.actor_class == "Worker")


def real_job_ops() -> Any:
    try:
        from actors.jobs.ops import JobOps
    except ImportError:
        return None
    return JobOps


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"error": body.decode(errors="replace")}


def job_row(database: Any, job_id: int) -> dict:
    with database.connection() as conn:
        row = conn.execute("SELECT id, state, attempt, last_error, jsonb_array_length(errors) AS tries FROM jobs WHERE id = %s", (job_id,)).fetchone()
        conn.commit()
    return row


def client_ports(pid: int) -> set[int]:
    """The local TCP ports of process `pid`'s sockets (its database connections among them)."""
    import psutil

    process = psutil.Process(pid)
    connections = process.net_connections(kind="tcp") if hasattr(process, "net_connections") else process.connections(kind="tcp")
    return {c.laddr.port for c in connections if c.laddr}


def backend_client_port(database: Any, backend_pid: int) -> int | None:
    """The client port of a PostgreSQL backend (-1 over a Unix socket; None: no such backend)."""
    with database.connection() as conn:
        row = conn.execute("SELECT client_port FROM pg_stat_activity WHERE pid = %s", (backend_pid,)).fetchone()
        conn.commit()
    return row["client_port"] if row else None


class CliObserver:
    """`thespian-otp observer ARGS` in a subprocess, its output read by a thread (so that a
    line that never comes fails the test after `timeout`, not at the test's timeout)."""

    def __init__(self, *args: str, env: dict) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actors.cli", "observer", *args], env={**os.environ, "COLUMNS": "300", **env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout], daemon=True).start()
        self.printed = ""

    def read_until(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.printed:
            try:
                self.printed += self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {timeout} s; printed:\n{self.printed}") from None
        return self.printed

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# --- a stand-in for actors.jobs.ops, used only where issue 15's module is absent -------------


class JobStateError(Recoverable):
    def __init__(self, job_id: int, state: str, action: str) -> None:
        super().__init__(f"job {job_id} is {state}: cannot {action} it", job_id=job_id, state=state, action=action)


class StandInJobOps:
    """What the contract says retry and cancel do, in plain SQL (CONTRACTS.md), nothing more."""

    def __init__(self, config: Any) -> None:
        from actors.stores.database import Database

        self.database = Database(config)

    def _move(self, job_id: int, action: str, sources: tuple[str, ...], sets: str) -> dict:
        with self.database.transaction() as conn:
            row = conn.execute(
                f"UPDATE jobs SET {sets} WHERE id = %s AND state = ANY(%s) RETURNING id, kind, queue, state, attempt, max_attempts",
                (job_id, list(sources)),
            ).fetchone()
            if row is None:
                current = conn.execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()
                raise JobStateError(job_id, current["state"] if current else "missing", action)
        return dict(row)

    def retry(self, job_id: int) -> dict:
        return self._move(job_id, "retry", ("failed", "cancelled"), "state = 'available', run_at = now(), finished_at = NULL, max_attempts = greatest(max_attempts, attempt + 1)")

    def cancel(self, job_id: int) -> dict:
        return self._move(job_id, "cancel", ("available", "running"), "state = 'cancelled', finished_at = now()")

    def close(self) -> None:
        self.database.close()


def install_stand_in(monkeypatch: Any) -> None:
    module = types.ModuleType("actors.jobs.ops")
    module.JobOps = StandInJobOps
    monkeypatch.setitem(sys.modules, "actors.jobs.ops", module)
