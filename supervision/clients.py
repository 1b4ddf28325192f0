"""Where a workload package plugs its client into `Runtime`, so that `supervision` imports none of them.

`supervision` is the OTP core and knows no workload (docs/design.md section 2: `supervision/`
must not import `actors/`). `rt.enqueue` and `rt.enqueue_many` are a convenience for the job
system in `actors.jobs`: importing `actors.jobs` registers its client here, and the two methods
call it. In a process that never imported `actors.jobs` they raise `ConfigError` saying so;
`actors.jobs.Jobs(rt)` is the same client without this hook.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from supervision.errors import ConfigError


class JobClient(Protocol):
    """What `rt.enqueue` / `rt.enqueue_many` call: `actors.jobs.client.enqueue` and `enqueue_many`."""

    def enqueue(self, target: Any, kind: str, payload: Any = None, **options: Any) -> int: ...

    def enqueue_many(self, target: Any, jobs: Iterable[Any], *, timeout: float | None = None) -> list[int]: ...


_job_client: JobClient | None = None


def register_job_client(client: JobClient) -> None:
    """Make `client` the one `rt.enqueue` / `rt.enqueue_many` call (the last registration wins)."""
    if not callable(getattr(client, "enqueue", None)) or not callable(getattr(client, "enqueue_many", None)):
        raise TypeError(f"register_job_client: {client!r} has no enqueue and enqueue_many methods")
    global _job_client
    _job_client = client


def job_client(method: str) -> JobClient:
    """The registered job client, or `ConfigError` naming `method` and how to get one."""
    if _job_client is None:
        raise ConfigError(
            f"rt.{method}: no job client in this process; `import actors.jobs` first (it registers one), "
            "or call actors.jobs.Jobs(rt).enqueue(...)"
        )
    return _job_client
