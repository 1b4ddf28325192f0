"""Every message the runtime sends between actors: module-level frozen attrs classes, picklable.

User-facing messages (`Down`, `Answer`, the supervisor requests) are importable from
`supervision`; the rest is the runtime's internal protocol.
"""

from __future__ import annotations

from typing import Any

import attrs

from supervision.errors import ErrorInfo
from supervision.liveness import ProcessIdentity


class Message:
    """Base of every message class: a cheap `str()`.

    thespian formats every message it sends (`str(message)`) for a debug line, even with that
    log switched off; an attrs repr of a big message (a batch of job outcomes, a tree
    snapshot) cost 5% of a worker's time. `repr()` still shows everything."""

    __slots__ = ()

    def __str__(self) -> str:
        return type(self).__name__

# --- requests and replies ---------------------------------------------------------------


@attrs.frozen
class Envelope(Message):
    """A message to a named actor. With `corr` it is a request and the reply goes to `reply_to`.

    The reply-to address travels inside the message because thespian's dead letters do not
    carry the original sender; the monitor uses it to answer for a dead target."""

    payload: Any
    target: str
    corr: str | None = None
    reply_to: Any = None  # ActorAddress
    #: how long the caller waits (seconds); a gateway keeps the request no longer
    ttl: float | None = None

    @property
    def is_request(self) -> bool:
        return self.corr is not None


@attrs.frozen
class Reply(Message):
    corr: str
    value: Any


@attrs.frozen
class ErrorReply(Message):
    corr: str
    error: ErrorInfo


@attrs.frozen
class Answer(Message):
    """The outcome of `Server.ask(...)` made without a callback, delivered to `handle`.

    `tag` is what the asker passed; `error` is set (and `value` is None) on failure."""

    tag: Any
    value: Any = None
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error.to_exception()
        return self.value


# --- monitoring ---------------------------------------------------------------------------


@attrs.frozen
class Down(Message):
    """Sent to watchers of `name` when the actor registered under it dies or stops."""

    name: str
    reason: str
    address: Any = None
    #: the human story behind `reason` (a supervisor that gave up exits "shutdown"; this
    #: says "reached max restart intensity ...; last exit: ...")
    cause: str | None = None


@attrs.frozen
class Watch(Message):
    name: str


@attrs.frozen
class Unwatch(Message):
    name: str


# --- supervisor API (payloads of requests to a supervisor's name) --------------------------


@attrs.frozen
class StartChild(Message):
    """Start a child of a simple_one_for_one supervisor from its template.

    Reply: the new child's registered name."""

    args: tuple = ()
    kwargs: dict = attrs.field(factory=dict, hash=False)
    name: str | None = None


@attrs.frozen
class TerminateChild(Message):
    """Stop a child (its shutdown policy applies) and remove it. Reply: None."""

    name: str


@attrs.frozen
class WhichChildren(Message):
    """Reply: a tuple of `ChildInfo`, in start order."""


@attrs.frozen
class CountChildren(Message):
    """Reply: a dict with specs, active, supervisors and workers counts (as OTP)."""


@attrs.frozen
class ChildInfo(Message):
    name: str
    kind: str
    actor_class: str
    status: str
    pid: int | None
    restarts: int


# --- lifecycle (internal) -----------------------------------------------------------------


@attrs.frozen
class SystemContext(Message):
    """What every actor of a runtime needs to know, handed down the tree at start."""

    base: str
    kernel: Any  # ActorAddress
    monitor: Any  # ActorAddress | None
    owner: ProcessIdentity | None
    liveness_interval: float
    in_process: bool


@attrs.frozen
class Init(Message):
    name: str
    spec: Any  # ChildSpec | SupervisorSpec
    parent_name: str
    context: SystemContext
    parent_pid: int | None = None


@attrs.frozen
class Started(Message):
    name: str
    identity: ProcessIdentity | None


@attrs.frozen
class InitFailed(Message):
    name: str
    error: ErrorInfo


@attrs.frozen
class Terminate(Message):
    """Stop gracefully: a Server runs `terminate`, a supervisor stops its children in order."""

    reason: str = "shutdown"


@attrs.frozen
class Exiting(Message):
    """Told to the parent just before an actor exits on its own, so the parent knows why."""

    name: str
    reason: str
    error: ErrorInfo | None = None
    cause: str | None = None


@attrs.frozen
class MonitorChanged(Message):
    """The monitor was restarted: use this address and re-register children."""

    monitor: Any


# --- registry (internal) ------------------------------------------------------------------


@attrs.frozen
class RegistryEntry(Message):
    name: str
    address: Any
    identity: ProcessIdentity | None
    supervisor: str
    kind: str
    actor_class: str


@attrs.frozen
class Register(Message):
    entry: RegistryEntry
    corr: str


@attrs.frozen
class Unregister(Message):
    name: str
    address: Any
    reason: str
    cause: str | None = None


@attrs.frozen
class Lookup(Message):
    name: str
    corr: str
    watch: bool = True
    #: if the name is being started or restarted, wait up to this many seconds for it
    wait: float = 0.0
    #: an address the asker knows is dead or dying (it answered ActorCrashed or DeadLetter)
    stale: Any = None


@attrs.frozen
class Resolved(Message):
    corr: str
    name: str
    address: Any
    identity: ProcessIdentity | None


@attrs.frozen
class NodeRow(Message):
    """A supervisor's report about one child, kept by the monitor for `tree()`."""

    name: str
    parent: str
    kind: str
    actor_class: str
    restart: str
    strategy: str | None
    status: str
    pid: int | None
    restarts: int
    position: int
    last_exit: str | None = None
    #: the pid of the supervisor incarnation that reported this row: rows of an earlier
    #: incarnation (its children died with it) are not part of the tree
    parent_pid: int | None = None


@attrs.frozen
class NodeRemoved(Message):
    name: str


@attrs.frozen
class CountEvent(Message):
    """A server reports an event to count in the tree: 'recoverable' or 'crash'."""

    name: str
    kind: str


@attrs.frozen
class GetTree(Message):
    pass


# --- kernel (internal) --------------------------------------------------------------------


@attrs.frozen
class StartTree(Message):
    spec: Any
    #: what the kernel does when the tree exits (OTP application types); it never restarts it
    restart: str = "temporary"


@attrs.frozen
class StopTree(Message):
    name: str


@attrs.frozen
class Shutdown(Message):
    pass


@attrs.frozen
class Resolve(Message):
    """Runtime -> kernel: where does `name` live? Reply: `Resolved` or NoSuchName."""

    name: str
    wait: float = 0.0
    stale: Any = None


@attrs.frozen
class Ping(Message):
    pass


@attrs.frozen
class Forget(Message):
    """Runtime -> kernel: the actor of `name` crashed or is dead; do not route to it again."""

    name: str


@attrs.frozen
class Relay(Message):
    """Runtime -> kernel: forward this tell, then acknowledge (multiprocQueueBase flow control)."""

    envelope: Envelope


# --- timers (internal) --------------------------------------------------------------------


@attrs.frozen
class Tick(Message):
    pass


@attrs.frozen
class StepTimer(Message):
    seq: int


@attrs.frozen
class AskTimer(Message):
    corr: str


# --- added for the plan-driven supervisor (issue 18) --------------------------------------


@attrs.frozen
class Linked(Message):
    """Child -> supervisor, before the child's init runs: its process, so a start that hangs
    can be killed."""

    name: str
    identity: ProcessIdentity | None


@attrs.frozen
class Ignored(Message):
    """Child -> supervisor: init returned `Ignore`; the child is not started (OTP's `ignore`)."""

    name: str


@attrs.frozen
class Budget(Message):
    """Supervisor -> its parent: how long its stop may take now (children added at run time)."""

    name: str
    seconds: float


@attrs.frozen
class RestartChild(Message):
    """Start a stopped child again from its kept spec. Reply: its name (None if it ignored)."""

    name: str


@attrs.frozen
class DeleteChild(Message):
    """Remove the kept spec of a stopped child. Reply: None."""

    name: str


@attrs.frozen
class GetChildspec(Message):
    """Reply: the child's spec."""

    name: str


@attrs.frozen
class GetBudget(Message):
    """Runtime -> kernel: seconds the ordered stop of every tree may take now."""


@attrs.frozen
class AwaitExit(Message):
    """Runtime -> kernel: answered when the runtime stops: None after `Shutdown`, or the
    `TreeExit` of the transient/permanent tree that took it down."""


@attrs.frozen
class TreeExit(Message):
    tree: str
    reason: Any
    cause: str | None = None


@attrs.frozen
class ExitAck(Message):
    """Supervisor -> child: your `Exiting` was read; leave now."""


@attrs.frozen
class ExitAckTimer(Message):
    """An exiting actor's timer: leave even if no `ExitAck` came."""
