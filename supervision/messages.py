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
    """One row of `which_children(name)`: a child's name, kind (worker | supervisor), actor class,
    status, pid and restart count."""

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
    #: the parent already knows this process (the pid thespian forked): no `Linked` is sent
    linked: bool = False


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
    #: answer straight to this address as `Reply(reply_corr, Resolved)` / `ErrorReply` (the
    #: kernel's gateway resolving for the runtime: one hop less than through the kernel)
    reply_to: Any = None
    reply_corr: str | None = None


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
    """An event to count in the tree: 'recoverable', 'crash', 'undelivered' or 'dead_letter' (the runtime saw a request's target dead).
    `detail`: what happened, in a line (a recoverable error's type, request and message)."""

    name: str
    kind: str
    detail: str | None = None


@attrs.frozen
class GetTree(Message):
    pass


@attrs.frozen
class StatusNote(Message):
    """A running actor reports a condition of its own for `tree()` (for example "waiting for
    the database"); None clears it. Shown instead of "running" while set."""

    name: str
    status: str | None


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


# --- payloads pickled by the runtime (internal) ------------------------------------------


@attrs.frozen
class Packed(Message):
    """A request payload or a reply value pickled by the runtime itself (`supervision.wire`), so
    that a value that cannot be pickled, or cannot be unpickled where it arrives, becomes a
    typed error for the caller instead of a message thespian logs and drops."""

    type_name: str
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")


@attrs.frozen
class Undelivered(Message):
    """Back to the sender's `handle`: a `Server.tell(..., notify=True)` that could not be
    delivered (no such name, or its actor is dead). `message` is what was sent."""

    target: str
    message_type: str
    reason: str
    message: Any = None


@attrs.frozen
class MonitorStats(Message):
    """Request to the monitor. Reply: a dict of the sizes of its tables (entries, watches,
    watchers, parked lookups, rows, counters): for tests and the soak benchmark."""


@attrs.frozen
class ThespianStats(Message):
    """Request to any actor of the runtime. Reply: a dict of the sizes of thespian's tables in
    that actor's process (`supervision.hygiene.tables`): for tests and the soak benchmark."""


#: Messages only the runtime sends: refused as the payload of a request (`Process`), so that a
#: caller cannot, say, make the limiter release an owner's permits with a forged `Down`.
RUNTIME_ONLY: tuple[type, ...] = (
    Envelope, Reply, ErrorReply, Answer, Down, Watch, Unwatch, SystemContext, Init, Started, InitFailed,
    Terminate, Exiting, MonitorChanged, RegistryEntry, Register, Unregister, Lookup, Resolved, NodeRow,
    NodeRemoved, CountEvent, Tick, StepTimer, AskTimer, Packed, Undelivered, Linked, Ignored, Budget, TreeExit,
    ExitAck, ExitAckTimer,
)
