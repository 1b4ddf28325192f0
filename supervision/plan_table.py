"""The plan's child table: a supervisor's children, indexed by name and by address, the steps a plan runs one at a time, and the stop budgets they add up to.

`ChildTable` is a part of `plan.Plan` (its queries; the state lives in `Plan.__init__`). Pure:
no actor system, no clock.
"""

from __future__ import annotations

from typing import Any, Iterator

import attrs

from supervision.errors import NoSuchName
from supervision.policy import format_reason
from supervision.specs import INFINITY, KILL_GRACE, SUPERVISOR_MARGIN, SupervisorSpec

@attrs.define(eq=False)
class Child:
    spec: Any
    name: str
    restart: str
    position: int
    dynamic: bool = False
    address: Any = None
    identity: Any = None
    #: stopped | starting | running | stopping | exited (down, decision pending) | restarting
    status: str = "stopped"
    incarnation: int = 0
    restarts: int = 0
    exit_reason: Any = None
    exit_cause: str | None = None
    last_exit: str | None = None
    killed: bool = False
    registering: bool = False
    unregistered: bool = False
    #: how long this supervisor child's own stop may take, as it last said
    budget: float | None = None
    keys: list = attrs.Factory(list)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def alive(self) -> bool:
        return self.status in ("starting", "running", "stopping")

    @property
    def significant(self) -> bool:
        return bool(getattr(self.spec, "significant", False))


def describe_exit(reason: Any, cause: str | None) -> str:
    text = format_reason(reason)
    return f"{text} ({cause})" if cause else text


# --- steps -----------------------------------------------------------------------------------


@attrs.define
class StartStep:
    name: str
    purpose: str  # init | restart | dynamic | manual
    requester: Any = None


@attrs.define
class StopStep:
    name: str
    reason: Any
    remove: bool = False
    requester: Any = None


@attrs.define
class StopManyStep:
    """Stop several children at once (simple_one_for_one's dynamic children, as OTP does)."""

    names: tuple[str, ...]
    reason: Any
    killed: bool = False


@attrs.define
class DelayStep:
    seconds: float


@attrs.define
class ReadyStep:
    pass


@attrs.define
class ExitStep:
    reason: Any
    cause: str | None = None
    failed: tuple[str, str] | None = None


@attrs.define
class DoneStep:
    """The kernel's stop: every child stopped; reply to whoever asked."""

    requester: Any


Step = StartStep | StopStep | StopManyStep | DelayStep | ReadyStep | ExitStep | DoneStep


def _default_key(address: Any) -> Any:
    details = getattr(address, "addressDetails", address)
    try:
        hash(details)
        return details
    except TypeError:
        return str(details)


class ChildTable:
    """The queries of `Plan` over its children (by name, by address, in start order) and
    what stopping them may cost."""

    name: str
    spec: SupervisorSpec
    strategy: str
    children: dict[str, Child]
    by_key: dict[Any, Child]
    key: Any

    def child(self, name: str) -> Child | None:
        return self.children.get(name)

    def child_at(self, address: Any) -> Child | None:
        """The child whose current process is `address` (O(1); a scan only the first time an
        address arrives in another form than the one thespian's createActor returned)."""
        if address is None:
            return None
        key = self.key(address)
        child = self.by_key.get(key)
        if child is not None and child.address is not None:
            return child
        for candidate in self.children.values():
            if candidate.address is not None and candidate.address == address:
                self.by_key[key] = candidate
                candidate.keys.append(key)
                return candidate
        return None

    def ordered(self) -> Iterator[Child]:
        return iter(self.children.values())

    def childspec(self, name: str) -> Any:
        child = self.children.get(name)
        if child is None:
            raise NoSuchName(name, f"it is not a child of {self.name}")
        return child.spec

    def child_budget(self, child: Child) -> float:
        """The longest a stop of `child` can take, kill included."""
        spec = child.spec
        if isinstance(spec, SupervisorSpec) and spec.shutdown in (None, INFINITY):
            return max(spec.stop_timeout, child.budget or 0.0) + KILL_GRACE
        return spec.shutdown_budget

    def budget(self) -> float:
        """The longest this supervisor's stop can take now (without its own kill grace)."""
        if self.strategy == "simple_one_for_one":
            # dynamic children are stopped together, as OTP does
            template = self.spec.children[0].shutdown_budget
            return max([template, *(self.child_budget(c) for c in self.children.values())]) + SUPERVISOR_MARGIN
        return sum(self.child_budget(c) for c in self.children.values()) + SUPERVISOR_MARGIN

    def stop_timeout(self, child: Child) -> float | None:
        spec = child.spec
        if spec.shutdown == INFINITY:
            return None
        if isinstance(spec, SupervisorSpec) and spec.shutdown is None:
            return max(spec.stop_timeout, child.budget or 0.0)
        return spec.stop_timeout
