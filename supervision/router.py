"""Sending to actors by name from inside an actor, message-driven, with an address cache.

A `Router` lives inside one actor. It resolves names through the monitor (`Lookup` with a
watch, so the monitor tells it with `Down` when the actor dies), caches the address, and keeps
every request it sent until the reply, a `Down` for the target, or the deadline, so that no
request waits for a reply that will never come:

- a request whose target dies gets a `DeadLetter` error;
- a request to a name that is not registered gets `NoSuchName`;
- a request with no reply by its deadline gets `AskTimeout`.

Before each send the cached target's process is checked (a pid and start time read from
/proc, microseconds) so a cached address of a killed actor is re-resolved instead of used.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time
from collections import deque
from typing import Any, Callable, Protocol

import attrs

from supervision.logs import logger
from supervision.errors import AskTimeout, DeadLetter, ErrorInfo, MessageNotPicklable, NoSuchName, ReplyNotUnpicklable
from supervision.messages import (
    Answer,
    Down,
    Envelope,
    ErrorReply,
    Lookup,
    Reply,
    Resolved,
)

from supervision.wire import pack, type_name as _wire_type_name, unpack_reply

class Owner(Protocol):
    """What a Router needs of the actor it lives in (a `Process`; no import of it, so that
    process.py -> router.py is the only direction)."""

    name: str
    myAddress: Any

    @property
    def monitor_address(self) -> Any: ...

    def send(self, target: Any, message: Any) -> None: ...

    def arm_timer(self, deadline: float) -> None: ...

log = logger("supervision.router")

_ids = itertools.count(1)

#: After a `Down` for the target of a pending request, how long to wait for the target's own
#: answer (a crashed or stopping actor refuses requests itself) before failing it.
DOWN_GRACE = 0.1


def new_corr(prefix: str = "") -> str:
    return f"{prefix}{os.getpid()}-{next(_ids)}"


def type_name(message: Any) -> str:
    return _wire_type_name(message)


@attrs.define
class _Pending:
    """A request this router sent and still waits for (or, when forwarded, still guards)."""

    corr: str
    name: str
    message_type: str
    deadline: float
    timeout: float = 0.0
    address: Any = None
    #: local asks: called with an Answer; forwarded requests: None
    on_answer: Callable[[Answer], None] | None = None
    tag: Any = None
    #: forwarded requests: where the original caller waits
    reply_to: Any = None
    #: set when the target died: the reason, failed at `deadline`
    down: str | None = None


@attrs.define
class _Outgoing:
    envelope: Envelope
    pending: _Pending | None


class Router:
    """How an actor reaches others by name: resolves names through the monitor, caches the
    addresses (invalidated by `Down`), waits for a restarting name, and turns failures into
    `Answer`s."""

    def __init__(self, owner: Owner, clock: Callable[[], float] = time.monotonic, restart_wait: float = 1.0) -> None:
        self.owner = owner
        self.clock = clock
        #: how long a send to a name whose actor is restarting waits for it to come back
        self.restart_wait = restart_wait
        self.cache: dict[str, Resolved] = {}
        #: names cached at most (the oldest go first)
        self.cache_size = 4096
        #: addresses known to be dead or dying, passed to the monitor with the next lookup
        self.stale: dict[str, Any] = {}
        self.waiting: dict[str, deque[_Outgoing]] = {}
        self.lookups: dict[str, str] = {}
        self.pending: dict[str, _Pending] = {}
        #: (deadline, corr) of pending requests, earliest first; entries of requests answered
        #: (or re-dated) since are skipped when they come up. The kernel keeps every request it
        #: forwards until its ttl, and used to scan all of them on every expiry and every Down.
        self._deadlines: list[tuple[float, str]] = []
        #: target name -> corrs of its pending requests (for `on_down`)
        self._by_name: dict[str, set[str]] = {}
        self.dead_letters = 0

    # --- sending -------------------------------------------------------------------------

    def tell(self, name: str, payload: Any, notify: bool = False) -> None:
        """Send without a reply. A tell that goes nowhere is counted and reported to the owner
        (`on_undelivered`); with `notify`, the envelope carries the owner's address, so that
        the monitor can report a dead target too."""
        reply_to = self.owner.myAddress if notify else None
        self._route(_Outgoing(Envelope(self._pack(payload), name, None, reply_to), None))

    def _pack(self, payload: Any) -> Any:
        """On multiproc bases, pickle here: an unpicklable message is the sender's error, raised
        now (thespian would log it in its transport and drop it)."""
        if self.owner.in_process:
            return payload
        try:
            return pack(payload)
        except Exception as exc:  # noqa: BLE001 - any pickling failure
            raise MessageNotPicklable(type_name(payload), f"{type(exc).__name__}: {exc}") from None

    def ask(
        self,
        name: str,
        payload: Any,
        timeout: float,
        on_answer: Callable[[Answer], None],
        tag: Any = None,
    ) -> str:
        packed = self._pack(payload)
        corr = new_corr("a")
        pending = _Pending(
            corr, name, type_name(payload), self.clock() + timeout, timeout, on_answer=on_answer, tag=tag
        )
        self._add(pending)
        self._route(_Outgoing(Envelope(packed, name, corr, self.owner.myAddress), pending))
        return corr

    def forward(self, envelope: Envelope, ttl: float = 60.0) -> None:
        """Pass a request on to its target; the reply goes straight to `envelope.reply_to`.

        The router keeps the request until `ttl` so it can answer `DeadLetter` for it if the
        target dies (thespian's queue base drops such messages silently)."""
        pending = None
        if envelope.corr is not None:
            pending = _Pending(
                envelope.corr,
                envelope.target,
                type_name(envelope.payload),
                self.clock() + (envelope.ttl or ttl),
                reply_to=envelope.reply_to,
            )
            self._add(pending)
        self._route(_Outgoing(envelope, pending))

    def resolve(self, name: str, on_answer: Callable[[Answer], None], wait: float | None = None, stale: Any = None) -> None:
        """Call `on_answer` with the `Resolved` entry for `name` (from cache or the monitor).

        If the actor is being restarted, wait up to `wait` seconds for it. `stale` is an address
        the asker saw die or crash: it is never the answer."""
        if stale is not None:
            self.forget(name, stale)
        cached = self._cached(name)
        if cached is not None:
            on_answer(Answer(None, cached))
            return
        corr = new_corr("r")
        pending = _Pending(corr, name, "Resolve", self.clock() + 30.0, on_answer=on_answer)
        self._queue(name, _Outgoing(Envelope(None, name), pending), wait, stale)

    def forget(self, name: str, address: Any = None) -> None:
        """Drop the cached entry of `name` (if it is `address`, when given); the next lookup
        tells the monitor that address is stale, so it is never handed out again."""
        entry = self.cache.get(name)
        if entry is not None and (address is None or entry.address == address):
            del self.cache[name]
            if len(self.stale) >= self.cache_size:
                self.stale.pop(next(iter(self.stale)))
            self.stale[name] = entry.address

    def _cached(self, name: str) -> Resolved | None:
        entry = self.cache.get(name)
        if entry is None:
            return None
        if entry.identity is not None and not entry.identity.is_alive():
            # microseconds per send (a /proc read); a throttled check sent requests to actors
            # killed a moment before, which on the queue base are lost without a trace
            self.forget(name)
            return None
        return entry

    def _route(self, outgoing: _Outgoing) -> None:
        name = outgoing.envelope.target
        if name in self.waiting:
            self.waiting[name].append(outgoing)
            return
        entry = self._cached(name)
        if entry is None:
            self._queue(name, outgoing)
            return
        self._deliver(entry, outgoing)

    def _queue(self, name: str, outgoing: _Outgoing, wait: float | None = None, stale: Any = None) -> None:
        queue = self.waiting.get(name)
        if queue is None:
            queue = self.waiting[name] = deque()
            queue.append(outgoing)
            self._send_lookup(name, self.restart_wait if wait is None else wait, stale or self.stale.pop(name, None))
        else:
            queue.append(outgoing)

    def _send_lookup(self, name: str, wait: float, stale: Any = None) -> None:
        monitor = self.owner.monitor_address
        corr = new_corr("l")
        self.lookups[corr] = name
        if monitor is None:
            self._resolve_failed(name, NoSuchName(name, "the monitor is not running"))
            return
        self.owner.send(monitor, Lookup(name, corr, watch=True, wait=wait, stale=stale))

    def _deliver(self, entry: Resolved, outgoing: _Outgoing) -> None:
        pending = outgoing.pending
        if pending is not None and pending.message_type == "Resolve" and pending.on_answer is not None:
            pending.on_answer(Answer(None, entry))
            return
        if pending is not None:
            if pending.corr not in self.pending:
                return  # the caller gave up while the name was being resolved
            pending.address = entry.address
        self.owner.send(entry.address, outgoing.envelope)

    # --- receiving -----------------------------------------------------------------------

    def on_resolved(self, message: Resolved) -> bool:
        name = self.lookups.pop(message.corr, None)
        if name is None:
            return False
        while len(self.cache) >= self.cache_size:
            self.cache.pop(next(iter(self.cache)))  # the oldest: a name not asked for long
        self.cache[name] = message
        for outgoing in self.waiting.pop(name, ()):
            self._deliver(message, outgoing)
        return True

    def on_error_reply(self, message: ErrorReply) -> bool:
        name = self.lookups.pop(message.corr, None)
        if name is not None:
            self._resolve_failed(name, message.error.to_exception())
            return True
        pending = self._take(message.corr)
        if pending is None or pending.on_answer is None:
            return pending is not None
        pending.on_answer(Answer(pending.tag, error=message.error))
        return True

    def on_reply(self, message: Reply) -> bool:
        pending = self._take(message.corr)
        if pending is None:
            return False
        if pending.on_answer is not None:
            try:
                value = unpack_reply(message.value)
            except ReplyNotUnpicklable as exc:
                pending.on_answer(Answer(pending.tag, error=ErrorInfo.from_exception(exc, with_traceback=False)))
                return True
            pending.on_answer(Answer(pending.tag, value))
        return True

    def on_down(self, message: Down) -> None:
        entry = self.cache.get(message.name)
        if entry is not None and (message.address is None or entry.address == message.address):
            del self.cache[message.name]
        for corr in list(self._by_name.get(message.name, ())):
            pending = self.pending[corr]
            if message.address is not None and pending.address is not None and pending.address != message.address:
                continue
            if pending.address is None or pending.down is not None:
                continue  # not sent yet (waiting for a lookup), or already doomed
            # fail it shortly, not now: an actor that crashed or is stopping answers requests it
            # refused (undelivered, safe to resend) itself, and that answer should win
            pending.down = message.reason
            if pending.deadline > self.clock() + DOWN_GRACE:
                pending.deadline = self.clock() + DOWN_GRACE
                heapq.heappush(self._deadlines, (pending.deadline, pending.corr))
            self.owner.arm_timer(pending.deadline)

    def on_monitor_changed(self) -> None:
        """The monitor restarted: its watches are gone, so forget cached addresses and redo lookups."""
        self.cache.clear()
        names = list(self.lookups.values())
        self.lookups.clear()
        for name in names:
            self._send_lookup(name, self.restart_wait)

    def expire(self) -> float | None:
        """Fail requests past their deadline; return the next deadline, if any. Touches only
        the requests that are due (a heap), however many are pending."""
        now = self.clock()
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, corr = heapq.heappop(heap)
            pending = self.pending.get(corr)
            if pending is None or pending.deadline != deadline:
                continue  # answered, or re-dated (it has a newer entry)
            if pending.down is not None:
                self._fail(pending, DeadLetter(pending.name, pending.message_type, f"the actor died ({pending.down})"))
                continue
            self._take(corr)
            if pending.on_answer is not None:
                error = AskTimeout(pending.name, pending.timeout, pending.message_type)
                pending.on_answer(Answer(pending.tag, error=ErrorInfo.from_exception(error, with_traceback=False)))
        while heap and (heap[0][1] not in self.pending or self.pending[heap[0][1]].deadline != heap[0][0]):
            heapq.heappop(heap)  # keep the top meaningful: the timer is armed for it
        return heap[0][0] if heap else None

    def _add(self, pending: _Pending) -> None:
        self.pending[pending.corr] = pending
        if len(self._deadlines) > 2 * len(self.pending) + 64:
            # mostly answered requests: rebuild, so the heap stays O(pending)
            self._deadlines = [(p.deadline, p.corr) for p in self.pending.values()]
            heapq.heapify(self._deadlines)
        heapq.heappush(self._deadlines, (pending.deadline, pending.corr))
        self._by_name.setdefault(pending.name, set()).add(pending.corr)
        self.owner.arm_timer(pending.deadline)

    def _take(self, corr: str) -> _Pending | None:
        pending = self.pending.pop(corr, None)
        if pending is not None:
            corrs = self._by_name.get(pending.name)
            if corrs is not None:
                corrs.discard(corr)
                if not corrs:
                    del self._by_name[pending.name]
        return pending

    # --- failures ------------------------------------------------------------------------

    def _resolve_failed(self, name: str, error: BaseException) -> None:
        for outgoing in self.waiting.pop(name, ()):
            if outgoing.pending is None:
                self.dead_letters += 1
                self.owner.on_undelivered(outgoing.envelope, str(error))
                continue
            if outgoing.pending.message_type == "Resolve":
                outgoing.pending.on_answer(Answer(None, error=ErrorInfo.from_exception(error, with_traceback=False)))
                continue
            self._fail(outgoing.pending, error)

    def _fail(self, pending: _Pending, error: BaseException) -> None:
        self._take(pending.corr)
        info = ErrorInfo.from_exception(error, with_traceback=False)
        if pending.on_answer is not None:
            pending.on_answer(Answer(pending.tag, error=info))
        elif pending.reply_to is not None:
            self.owner.send(pending.reply_to, ErrorReply(pending.corr, info))
