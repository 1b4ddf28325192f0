"""Job handlers: plain functions registered by kind with `@job`.

```python
# myapp/jobs.py
from actors.jobs import job

@job("send_email", max_attempts=3, timeout=30)
def send_email(payload):
    ...
```

Worker processes import the handler modules they are given (`jobs_tree(handlers=["myapp.jobs"])`),
so a handler must live in an importable module; its kind is registered when the module is
imported.
"""

from __future__ import annotations

import importlib
import math
import re
from typing import Any, Callable, Iterable

import attrs

from actors.jobs.errors import BadJob, UnknownJobKind

#: used with fullmatch (a `$` would let "kind\n" through)
KIND_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,127}")


@attrs.frozen
class JobType:
    """A registered job kind (`@job`): its handler, queue, max_attempts, timeout, retry backoff and
    limiter key."""

    kind: str
    function: Callable[[Any], Any] = attrs.field(eq=False)
    queue: str = "default"
    max_attempts: int = 5
    timeout: float = 60.0
    retry_min: float = 1.0
    retry_max: float = 300.0
    limit_key: str | None = None

    @property
    def path(self) -> str:
        return f"{self.function.__module__}:{self.function.__qualname__}"


_TYPES: dict[str, JobType] = {}


def job(
    kind: str | None = None,
    *,
    queue: str = "default",
    max_attempts: int = 5,
    timeout: float = 60.0,
    retry_min: float = 1.0,
    retry_max: float = 300.0,
    limit_key: str | None = None,
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register a handler. `timeout`: seconds a run may take (then it is interrupted and
    retried); `retry_min`/`retry_max`: backoff between attempts; `limit_key`: ask the limiter
    for a permit on this key before each run."""

    def register(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        name = kind or f"{function.__module__}.{function.__qualname__}"
        check_kind(name)
        if max_attempts < 1:
            raise BadJob(f"@job({name!r}): max_attempts must be >= 1")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise BadJob(f"@job({name!r}): timeout must be a positive number of seconds")
        existing = _TYPES.get(name)
        if existing is not None and existing.path != f"{function.__module__}:{function.__qualname__}":
            raise BadJob(f"job kind {name!r} is already registered by {existing.path}")
        _TYPES[name] = JobType(name, function, queue, max_attempts, timeout, retry_min, retry_max, limit_key)
        function.job_kind = name  # type: ignore[attr-defined]
        return function

    return register


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
        raise BadJob(f"kind: {kind!r} is not a valid job kind (1-128 letters, digits and _ . : -)")
    return kind


def lookup(kind: str) -> JobType:
    found = _TYPES.get(kind)
    if found is None:
        raise UnknownJobKind(kind, tuple(_TYPES))
    return found


def known_kinds() -> tuple[str, ...]:
    return tuple(sorted(_TYPES))


def import_handlers(modules: Iterable[str]) -> None:
    """Import the modules that define handlers (each registers its kinds when imported)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise BadJob(f"cannot import job handler module {module!r}: {exc}") from None
