"""`Calls`: how the runtime talks to actors by name from outside the actor system (ask, tell, whereis).

A mixin of `Runtime` (which owns the lifecycle: boot, start, stop). Contracts (docs/design.md, section 3):
`ask` returns the reply or raises a typed error (`NoSuchName`, `DeadLetter`, `AskTimeout`,
`ActorCrashed`, or the actor's own error): never `None` for a missing reply, never a wait past
`timeout`.

How a request travels: the runtime resolves a name once through the kernel and caches the
address with the actor's process identity; later asks go straight to the actor (two messages,
as a raw thespian ask). While waiting it checks the target's process, so an actor killed in
the middle of a request gives `DeadLetter` at once rather than a timeout. On
multiprocQueueBase, where one send to a dead actor wedges thespian's external interface,
every request goes through the kernel instead.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

from thespian.actors import ActorSystemException, ExternalContext

from supervision.errors import (
    ActorCrashed,
    AskTimeout,
    DeadLetter,
    MessageNotPicklable,
    MessageNotUnpicklable,
    RuntimeNotRunning,
    SendTimeout,
    StartFailed,
    SupervisionError,
)
from supervision.kernel import KERNEL_NAME, MONITOR_NAME
from supervision.liveness import ProcessIdentity
from supervision.logs import logger
from supervision.messages import CountEvent, Envelope, ErrorReply, Exiting, Forget, Packed, Ping, Relay, Reply, Resolve, Resolved, StartTree
from supervision.router import new_corr, type_name
from supervision.supervisor import AddChild
from supervision.transmit import Transmit, finish, schedule
from supervision.wire import PROTOCOL, unpack_reply
from supervision.specs import SYSTEM_PREFIX, validate_name

log = logger("supervision.calls")

#: While waiting for a reply, how often to check that the target's process is alive.
LIVENESS_SLICE = 0.05
#: While our transmit is still on its way, how often to look at its outcome.
TRANSMIT_SLICE = 0.002
#: How many times a request that certainly did not reach its (dead) actor is sent again to
#: the actor now registered under the name.
MAX_RESENDS = 3
#: After the target's process is seen dead, how long to wait for the monitor's dead-letter
#: reply, which tells a message that never arrived (safe to resend) from one that was lost.
DEAD_LETTER_GRACE = 0.1


class Calls:
    """ask / tell / whereis for `Runtime`; uses its `_system`, `_kernel`, `_exit`, `info`, caches and
    `_system_gone()` (the error of a call that found the kernel dead)."""

    # --- talking to actors --------------------------------------------------------------------------

    def ask(self, name: str, message: Any, timeout: float | None = None) -> Any:
        """Send `message` to the actor registered as `name` and return its reply."""
        name = validate_name(name, "name")
        timeout = self._timeout(timeout)
        raw, message = message, self._pack(message, "message")
        deadline = time.monotonic() + timeout
        resends = 0
        while True:
            if self.info.direct_sends:
                entry = self._resolve(name, deadline)
                target, identity, envelope = entry.address, entry.identity, Envelope(message, name)
            else:
                entry, target, identity, envelope = None, self._kernel, None, Envelope(message, name, ttl=timeout)
            try:
                return self._request(target, envelope, deadline, identity, name)
            except DeadLetter as exc:
                self._forget(name, entry, deadline)
                if getattr(exc, "undelivered", False) and resends < MAX_RESENDS and time.monotonic() < deadline:
                    resends += 1  # it never reached the actor: safe to send to its successor
                    continue
                raise
            except ActorCrashed:
                self._forget(name, entry, deadline)  # that actor is on its way out
                raise
            except MessageNotUnpicklable as exc:
                raise _start_failed(raw, exc) from None

    def tell(self, name: str, message: Any, timeout: float | None = None) -> None:
        """Send `message` to `name` without waiting for an answer; returns once the actor's
        process has accepted it. Raises `NoSuchName` if nothing is registered, `SendTimeout` if
        the actor does not accept it within `timeout` (default `ask_timeout`)."""
        name = validate_name(name, "name")
        timeout = self._timeout(timeout)
        message = self._pack(message, "message")
        deadline = time.monotonic() + timeout
        if not self.info.direct_sends:
            # acknowledged by the kernel: thespian's queue base routes through bounded queues
            # that deadlock (kernel and admin each blocked on the other's full queue) under a
            # flood of unacknowledged sends. Resolved first (cached after the first time), so
            # that a tell to an unknown name is NoSuchName here too, not dropped by the kernel
            self._resolve(name, deadline)
            self._request(self._kernel, Envelope(Relay(Envelope(message, name)), KERNEL_NAME), deadline, None, KERNEL_NAME)
            return
        entry = self._resolve(name, deadline)
        ctx = self._context()
        envelope = Envelope(message, name)
        tx = self._send(entry.address, envelope, ctx, deadline)
        if tx is not None:
            if not finish(ctx._systemBase, tx, deadline):
                raise SendTimeout(name, round(timeout, 3), type_name(message))
            self._check_tx(tx, name, type_name(message))

    def whereis(self, name: str) -> Resolved:
        """The registry entry of `name` (address and process identity); raises `NoSuchName`."""
        name = validate_name(name, "name")
        self._cache.pop(name, None)
        return self._resolve(name, time.monotonic() + self.ask_timeout)

    def _context(self) -> ExternalContext:
        if self._system is None:
            if self._exit is not None:  # a tree took it down, or its kernel or admin died
                raise RuntimeNotRunning(str(self._exit))
            raise RuntimeNotRunning("the runtime is not running; use `with Runtime(...) as rt` or rt.start()")
        if self.info.in_process:
            # simpleSystemBase runs its actors only inside the main handle's calls; its
            # private contexts never drive the system, so every thread shares the main handle
            return self._system
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = ExternalContext(self._system._systemBase.external_clone())
            self._local.ctx = ctx
            # closes the context when this thread ends (its thread-local values are dropped):
            # each context holds a listening socket and ~3 fds; 300 short-lived threads left
            # 911 fds open, and with a 256-fd limit the 82nd got a raw OSError
            self._local.closer = _ContextCloser(ctx, self._contexts)
            self._contexts.append(ctx)
        return ctx

    def _reply_address(self, ctx: ExternalContext, deadline: float) -> Any:
        """This thread's address as actors see it (the kernel tells it once, per thread); the
        handshake is part of the first call and keeps within its deadline."""
        address = getattr(self._local, "address", None)
        if address is None:
            corr = new_corr("p")
            tx = self._send(self._kernel, Envelope(Ping(), KERNEL_NAME, corr), ctx, deadline)
            address = self._await(ctx, corr, deadline, None, KERNEL_NAME, "Ping", tx)
            self._local.address = address
        return address

    def _resolve(self, name: str, deadline: float) -> Resolved:
        entry = self._cache.get(name)
        if entry is not None and (entry.identity is None or entry.identity.is_alive()):
            return entry
        stale = self._stale.pop(name, None) or (entry.address if entry is not None else None)
        # a name whose actor is restarting is waited for, but never for more than half the time left
        wait = max(0.0, min(self.restart_wait, (deadline - time.monotonic()) / 2))
        entry = self._request(self._kernel, Envelope(Resolve(name, wait, stale), KERNEL_NAME), deadline, None, KERNEL_NAME)
        _bounded(self._cache)[name] = entry
        return entry

    def _forget(self, name: str, entry: Resolved | None, deadline: float | None = None) -> None:
        """The actor of `name` crashed or is dead: the next lookup must not return it."""
        if entry is not None:
            self._cache.pop(name, None)
            _bounded(self._stale)[name] = entry.address
        else:
            # the kernel routes for us; it must forget that actor before it routes our next
            # request, so this send is finished (acknowledged) before the next one starts
            ctx = self._context()
            deadline = deadline or time.monotonic() + self.ask_timeout
            tx = self._send(self._kernel, Envelope(Forget(name), KERNEL_NAME), ctx, deadline)
            if tx is not None:
                finish(ctx._systemBase, tx, deadline)

    def _request(self, address: Any, envelope: Envelope, deadline: float, identity: ProcessIdentity | None, name: str) -> Any:
        if self.info.in_process:
            with self._lock:  # simpleSystemBase: one shared handle runs the actors; one caller at a time
                return self._request_now(address, envelope, deadline, identity, name)
        return self._request_now(address, envelope, deadline, identity, name)

    def _request_now(self, address: Any, envelope: Envelope, deadline: float, identity: ProcessIdentity | None, name: str) -> Any:
        ctx = self._context()
        corr = new_corr("x")
        reply_to = self._reply_address(ctx, deadline)
        payload = envelope.payload
        envelope = Envelope(self._pack(payload, "message"), envelope.target, corr, reply_to, envelope.ttl)
        tx = self._send(address, envelope, ctx, deadline)
        try:
            return self._await(ctx, corr, deadline, identity, name, type_name(payload), tx)
        except MessageNotUnpicklable as exc:
            raise _start_failed(payload, exc) from None

    def _send(self, address: Any, message: Any, ctx: ExternalContext | None = None, deadline: float | None = None) -> Transmit | None:
        """Start sending `message`; never waits on the receiver. Returns the transmit to watch
        (None on simpleSystemBase, whose sends are immediate)."""
        ctx = ctx or self._context()
        if address is self._kernel and not self._kernel_alive():
            raise self._system_gone()
        if self.info.in_process:
            try:
                ctx.tell(address, message)
            except ActorSystemException as exc:
                raise DeadLetter(getattr(message, "target", "?"), type_name(message), f"thespian could not send it: {exc}", undelivered=True) from exc
            return None
        return schedule(ctx._systemBase, address, message, deadline or time.monotonic() + self.ask_timeout)

    def _check_tx(self, tx: Transmit, name: str, message_type: str) -> None:
        """Raise the typed error of a transmit that failed."""
        if not tx.failed:
            return
        if tx.rejected:
            raise MessageNotUnpicklable(message_type, "the receiving process could not unpickle the message")
        if tx.dead_target:
            self._count_dead_letter(name)
            raise DeadLetter(name, message_type, "the actor is dead (its address no longer answers)", undelivered=True)
        raise DeadLetter(name, message_type, f"thespian could not deliver it ({tx.status})")

    def _count_dead_letter(self, name: str) -> None:
        """The runtime saw for itself that `name`'s actor is dead (its transmit failed), before
        thespian handed the monitor a dead letter: count it in the tree all the same."""
        if self.info.in_process or name.startswith(SYSTEM_PREFIX):
            return
        try:
            monitor = self._resolve(MONITOR_NAME, time.monotonic() + 1.0)
            self._send(monitor.address, CountEvent(name, "dead_letter"))
        except SupervisionError:
            pass  # only a count: the caller's DeadLetter is what matters

    def _await(
        self, ctx: ExternalContext, corr: str, deadline: float, identity: ProcessIdentity | None, name: str, message_type: str, tx: Transmit | None = None
    ) -> Any:
        timeout = max(0.0, deadline - time.monotonic())
        died_at: float | None = None
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if tx is not None and tx.failed:
                self._check_tx(tx, name, message_type)
            if remaining <= 0:
                if tx is not None and not tx.done:
                    raise SendTimeout(name, round(timeout, 3), message_type)
                raise AskTimeout(name, round(timeout, 3), message_type)
            if died_at is not None and now - died_at >= DEAD_LETTER_GRACE:
                raise DeadLetter(name, message_type, "the actor died while handling the request")
            # short slices: to check processes between them, and because simpleSystemBase's
            # listen sleeps until its next timer even when a reply is already waiting
            if tx is not None and not tx.done:
                # the transmit's outcome comes from a callback inside listen(), which only
                # returns on a message or its timeout: short slices see a dead target at once
                # (measured: a 50 ms slice made a DeadLetter cost 53 ms instead of ~7)
                slice_ = TRANSMIT_SLICE
            else:
                slice_ = LIVENESS_SLICE if died_at is None else 0.01
            message = ctx.listen(min(remaining, slice_))
            if message is None:
                if died_at is None and identity is not None and not identity.is_alive():
                    died_at = time.monotonic()
                if not self._kernel_alive():
                    raise self._system_gone()
                continue
            if isinstance(message, Reply) and message.corr == corr:
                return unpack_reply(message.value)
            if isinstance(message, ErrorReply) and message.corr == corr:
                raise message.error.to_exception()
            if isinstance(message, (Reply, ErrorReply)):
                continue  # a late reply to an ask that already gave up
            if isinstance(message, Exiting) and message.name == KERNEL_NAME:
                log.error("the kernel exited: %s", message.reason)
                continue
            log.debug("runtime: unexpected %s dropped", type_name(message))

    def _check_transferable(self, value: Any, what: str) -> None:
        """On multiproc bases everything is pickled: fail here, clearly, not in thespian."""
        self._pack(value, what)

    def _pack(self, value: Any, what: str) -> Any:
        """Pickle `value` for the actor (multiproc bases), checking it unpickles here too:
        `MessageNotPicklable` now rather than a message thespian logs and drops."""
        if self.info.in_process or isinstance(value, Packed):
            return value
        try:
            data = pickle.dumps(value, PROTOCOL)
            pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - any pickling failure
            raise MessageNotPicklable(type_name(value), f"{what} does not survive pickling ({type(exc).__name__}: {exc})") from None
        return Packed(type(value).__name__, data)




#: names kept in the address caches; past it the oldest go (a name asked once, for example a
#: dynamic child long gone, is not kept forever)
CACHE_SIZE = 4096


def _bounded(cache: dict) -> dict:
    """`cache`, with its oldest entry dropped if it is full (dicts keep insertion order)."""
    while len(cache) >= CACHE_SIZE:
        cache.pop(next(iter(cache)))
    return cache


class _ContextCloser:
    """Kept in a thread's thread-local storage next to its context: when the thread ends, the
    storage goes, and with it this object, which closes the context."""

    __slots__ = ("ctx", "contexts")

    def __init__(self, ctx: ExternalContext, contexts: list) -> None:
        self.ctx, self.contexts = ctx, contexts

    def __del__(self) -> None:
        try:
            self.contexts.remove(self.ctx)
        except ValueError:
            return  # the runtime closed it already (stop)
        try:
            self.ctx.exit_clone()
        except Exception:  # noqa: BLE001 - best effort, possibly at interpreter exit
            pass


def reap_child(pid: int | None, timeout: float = 1.0) -> bool:
    """Collect the exit status of our child `pid` (thespian's admin), so that a long-lived
    process (a REPL, Jupyter) is not left with one zombie per `Runtime.stop()`. True if reaped."""
    if pid is None:
        return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return False  # not our child (attached), or already collected
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _start_failed(payload: Any, exc: MessageNotUnpicklable) -> SupervisionError:
    """A spec that does not unpickle in the actor system names a class its processes cannot
    load: that start failed (`StartFailed`); any other payload keeps its own error."""
    if isinstance(payload, (StartTree, AddChild)):
        return StartFailed(
            payload.spec.name,
            f"its spec cannot be loaded in the actor system ({exc.problem}); define its actor classes "
            "in an importable module, or before the runtime starts",
        )
    return exc
