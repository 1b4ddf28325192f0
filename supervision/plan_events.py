"""The events a supervisor's `plan.Plan` takes and the effects it returns (plain frozen values).

Events are what happened (a child linked, started, failed, exited; a timer fired; a request
arrived); effects are what the supervisor actor must do (spawn, stop, kill, arm a timer, reply,
register, report, exit). Addresses and requesters are opaque to the plan.
"""

from __future__ import annotations

from typing import Any

import attrs


# --- events ----------------------------------------------------------------------------------


@attrs.frozen
class Boot:
    """Start the initial children (the supervisor's own init)."""


@attrs.frozen
class Spawned:
    """The actor of a `Spawn` effect exists at `address` (its init has not run yet)."""

    name: str
    incarnation: int
    address: Any


@attrs.frozen
class SpawnFailed:
    name: str
    incarnation: int
    reason: str


@attrs.frozen
class Linked:
    """The child's process is known (it sends this before its init runs): it can be killed."""

    address: Any
    identity: Any


@attrs.frozen
class InitDone:
    address: Any
    identity: Any = None


@attrs.frozen
class InitFailed:
    address: Any
    reason: str


@attrs.frozen
class InitIgnored:
    address: Any


@attrs.frozen
class Registered:
    name: str
    incarnation: int
    error: str | None = None


@attrs.frozen
class ChildExiting:
    """The child says why it is about to exit."""

    address: Any
    reason: Any
    cause: str | None = None


@attrs.frozen
class ChildDown:
    """The child's process is gone."""

    address: Any
    reason: Any = "killed"


@attrs.frozen
class TimerFired:
    seq: int


@attrs.frozen
class StopRequested:
    """Stop every child in reverse order; then exit (a supervisor) or just reply (the kernel)."""

    reason: Any = "shutdown"
    requester: Any = None
    exit: bool = True
    cause: str | None = None


@attrs.frozen
class AddChild:
    spec: Any
    requester: Any = None
    #: the restart type the supervisor applies (default: the spec's own)
    restart: str | None = None


@attrs.frozen
class StartDynamic:
    """simple_one_for_one: a child from the template, with extra args."""

    args: tuple = ()
    kwargs: dict = attrs.field(factory=dict)
    name: str | None = None
    requester: Any = None


@attrs.frozen
class TerminateChild:
    name: str
    requester: Any = None


@attrs.frozen
class RestartChild:
    name: str
    requester: Any = None


@attrs.frozen
class DeleteChild:
    name: str
    requester: Any = None


@attrs.frozen
class ChildBudget:
    """A supervisor child says how long its own stop may take now (children added at run time)."""

    address: Any
    seconds: float


# --- effects ---------------------------------------------------------------------------------


@attrs.frozen
class Spawn:
    """Create the child's actor and send it its Init; answer with Spawned or SpawnFailed."""

    name: str
    spec: Any
    incarnation: int


@attrs.frozen
class Register:
    name: str
    incarnation: int


@attrs.frozen
class Terminate:
    name: str
    address: Any
    reason: Any


@attrs.frozen
class Kill:
    name: str
    address: Any
    identity: Any


@attrs.frozen
class Unregister:
    name: str
    address: Any
    reason: Any
    cause: str | None = None


@attrs.frozen
class Report:
    """The child's row changed (status, pid, restarts, last exit)."""

    name: str


@attrs.frozen
class Removed:
    name: str


@attrs.frozen
class SetTimer:
    seconds: float
    seq: int


@attrs.frozen
class Reply:
    requester: Any
    value: Any = None
    error: BaseException | None = attrs.field(default=None, eq=False)


@attrs.frozen
class ExpectExit:
    """The child should exit soon: look at its process often."""

    address: Any


@attrs.frozen
class Ready:
    """All initial children started: tell the parent."""


@attrs.frozen
class Exit:
    """The supervisor exits with `reason` (`cause`: the human story). With `failed`, its own
    start failed: the parent gets InitFailed naming that child."""

    reason: Any
    cause: str | None = None
    failed: tuple[str, str] | None = None


@attrs.frozen
class ExitNotice:
    """A child exited on its own and stays down (not restarted)."""

    name: str
    reason: Any
    cause: str | None
    removed: bool
    child: Any = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Stopped:
    """The kernel's stop is done (every child stopped)."""


@attrs.frozen
class BudgetChanged:
    seconds: float


@attrs.frozen
class Log:
    level: str
    text: str
