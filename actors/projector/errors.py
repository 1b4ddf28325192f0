"""Errors of the projector."""

from __future__ import annotations

from supervision.errors import Recoverable, SupervisionError


class LockLost(SupervisionError):
    """The projector no longer holds its projection's advisory lock (the session was lost, or
    the lock went to another node). It stops applying at once and crashes; its supervisor
    restarts it and it contends again."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"projection {name!r}: lost the lock ({why}); stopping at once", name=name, why=why)


class ProjectionFailed(SupervisionError):
    """The projection raised on an event: the projector crashes there (the events before it are
    saved with their checkpoint; this one is never skipped)."""

    def __init__(self, name: str, position: int, txid: int, error: str) -> None:
        super().__init__(
            f"projection {name!r} failed at event {position} (txid {txid}): {error}",
            name=name,
            position=position,
            txid=txid,
            error=error,
        )


class ProjectionBusy(SupervisionError):
    """Another session holds the projection's lock (a running projector)."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(
            f"projection {name!r} is being applied by {holder}; stop that projector first, or pass --wait SECONDS",
            name=name,
            holder=holder,
        )


class UnknownProjection(Recoverable):
    """No projection by that name or import path (a built-in name such as job_stats, or
    module:Class of a `Projection` subclass)."""

    def __init__(self, name: str, known: tuple[str, ...] = ()) -> None:
        hint = f"; known: {', '.join(known)}" if known else ""
        super().__init__(f"no projection named {name!r}: give a built-in name or an import path module:Class{hint}", name=name)


class ProjectionImportFailed(UnknownProjection):
    """A projection given by import path (module:Class) could not be imported."""

    def __init__(self, name: str, problem: str) -> None:
        Recoverable.__init__(self, f"cannot load projection {name!r}: {problem}", name=name, problem=problem)
