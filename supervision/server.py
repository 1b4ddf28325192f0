"""`Server`: the gen_server of thespian-otp. Subclass it, implement `handle`, supervise it by name.

```python
class Counter(Server):
    def init(self, start=0):
        self.count = start
    def handle(self, message):
        if message == "incr":
            self.count += 1
            return self.count
        raise UnknownMessage(self.name, type(message).__name__)   # the default
```

How errors are classified (docs/design.md story 2):
- `handle` returns: the value is the reply.
- `handle` raises a `Recoverable` (bad input, unknown id, wrong state): the caller gets that
  typed error, it is logged once with context and counted, the actor keeps its state.
- `handle` raises anything else: a crash. The caller gets `ActorCrashed`, the actor exits and
  its supervisor restarts it; requests already queued behind it get `DeadLetter`.

Inside an actor, never block: `self.ask(...)` sends a request and its answer arrives later,
either to a callback (`then=`) or to `handle` as an `Answer`. Reply later with `defer()`.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from supervision.logs import logger
from supervision.errors import ActorCrashed, DeadLetter, ErrorInfo, Recoverable, SpecError, SupervisionError, UnknownMessage
from supervision.messages import (
    Answer,
    CountEvent,
    Down,
    Envelope,
    ErrorReply,
    Ignored,
    Init,
    Reply,
    Undelivered,
    StatusNote,
    Unwatch,
    Watch,
)
from supervision.process import Process
from supervision.router import type_name
from supervision.specs import validate_name
from supervision.wire import unpack_message

log = logger("supervision.server")


@attrs.frozen
class ReplyHandle:
    """Where and how to answer a request later (picklable: it may be handed to another actor)."""

    corr: str | None
    reply_to: Any
    message_type: str

    @property
    def expects_reply(self) -> bool:
        return self.reply_to is not None


@attrs.frozen
class _UserTimer:
    message: Any


class Ignore:
    """Return `Ignore` (the class or an instance) from `init` to not start (OTP's `ignore`):
    the supervisor keeps the child's spec, stopped, and goes on with the next child."""


class Server(Process):
    """Base class for supervised worker actors. Override `init`, `handle`, `terminate`."""

    def __init__(self) -> None:
        super().__init__()
        self._current: tuple[Envelope | None, Any] | None = None
        self._deferred = False
        self._crashed: str | None = None
        self._terminated = False
        self._initialized = False
        self._watched: set[str] = set()

    # --- the user's callbacks ------------------------------------------------------------------

    def init(self, *args: Any, **kwargs: Any) -> None:
        """Called once in the actor's process with the ChildSpec's args; raise to fail the start."""

    def handle(self, message: Any) -> Any:
        """Handle one message; the return value is the reply. Default: `UnknownMessage`."""
        raise UnknownMessage(self.name, type_name(message))

    def terminate(self, reason: str) -> None:
        """Called when the actor stops on purpose (shutdown, `stop()`); not after a crash or a kill."""

    # --- helpers for handle ----------------------------------------------------------------------

    def tell(self, name: str, message: Any, *, notify: bool = False) -> None:
        """Send `message` to the actor registered as `name`; no reply.

        A tell that goes nowhere (no such name, or its actor is dead) is a dead letter: logged,
        and counted in the tree as this actor's `undelivered`. With `notify=True` it also comes
        back to `handle` as `Undelivered(target, message_type, reason, message)`, as Pykka
        raises `ActorDeadError` on a tell to a dead actor."""
        self.router.tell(name if name in self.router.cache else validate_name(name), message, notify)

    def ask(
        self,
        name: str,
        message: Any,
        *,
        timeout: float = 5.0,
        then: Callable[[Answer], None] | None = None,
        tag: Any = None,
        reply_to: ReplyHandle | None = None,
    ) -> None:
        """Send a request to `name`. The outcome (reply or typed error) arrives later as an
        `Answer`: passed to `then` if given, forwarded as is to a deferred request with
        `reply_to=self.defer()`, otherwise delivered to `handle`.

        Nothing is lost: an exception raised while handling the answer (in `then`, or in
        `handle`) is answered to the request this actor was handling when it called `ask`: a
        `Recoverable` as itself, anything else as `ActorCrashed`, with crash semantics (the
        actor is restarted)."""
        if reply_to is not None and then is not None:
            raise SpecError("Server.ask", "give then= or reply_to=, not both")
        if reply_to is not None and not isinstance(reply_to, ReplyHandle):
            raise SpecError("Server.ask.reply_to", f"must be a ReplyHandle from defer(); got {type(reply_to).__name__}")
        origin = self._current  # the request being handled now (None in a timer or init)
        if reply_to is not None:
            handle = reply_to

            def callback(answer: Answer) -> None:
                self.forward(handle, answer)

        else:
            callback = then

        def on_answer(answer: Answer) -> None:
            self._answer_guarded(callback, answer, origin)

        self.router.ask(validate_name(name), message, timeout, on_answer, tag)

    def forward(self, handle: ReplyHandle, answer: Answer) -> None:
        """Answer a deferred request with the outcome of an `ask`: its value, or its error as
        it came (type, fields, remote traceback). `then=lambda a: self.forward(reply, a)`."""
        if answer.error is not None:
            self.reply_error(handle, answer.error)
        else:
            self.reply(handle, answer.value)

    def defer(self) -> ReplyHandle:
        """Reply later: call inside `handle`, keep the handle, `reply(handle, value)` when ready."""
        if self._current is None:
            raise RuntimeError("defer() is only valid while handling a message")
        envelope, sender = self._current
        self._deferred = True
        if envelope is None:
            return ReplyHandle(None, sender, "message")
        return ReplyHandle(envelope.corr, envelope.reply_to or sender if envelope.corr else None, type_name(envelope.payload))

    def reply(self, handle: ReplyHandle, value: Any) -> None:
        if handle.reply_to is None:
            return
        if handle.corr:
            self.reply_value(handle.reply_to, handle.corr, value)
        else:
            self.send(handle.reply_to, value)

    def reply_error(self, handle: ReplyHandle, error: BaseException | ErrorInfo) -> None:
        """Answer a deferred request with an error (any exception: the caller gets its type)."""
        if handle.reply_to is None:
            return
        info = error if isinstance(error, ErrorInfo) else ErrorInfo.from_exception(error, with_traceback=True, actor=self.name)
        self.send(handle.reply_to, ErrorReply(handle.corr or "", info))

    def watch(self, name: str) -> None:
        """Receive `Down(name, reason)` in `handle` when the actor registered as `name` dies.

        A watch fires once, as an Erlang monitor; a name that is not registered fires at once."""
        self._watched.add(validate_name(name))
        if self.monitor_address is not None:
            self.send(self.monitor_address, Watch(name))

    def unwatch(self, name: str) -> None:
        self._watched.discard(name)
        if self.monitor_address is not None:
            self.send(self.monitor_address, Unwatch(name))

    def report_status(self, status: str | None) -> None:
        """Show `status` (for example "waiting for the database") instead of "running" in
        `tree()`; None goes back to "running". Sent only when it changes."""
        if status == getattr(self, "_status_note", None):
            return
        self._status_note = status
        if self.monitor_address is not None:
            self.send(self.monitor_address, StatusNote(self.name, status))

    def send_after(self, delay: float, message: Any) -> None:
        """Deliver `message` to this actor's `handle` after `delay` seconds."""
        self.wakeupAfter(max(0.0, float(delay)), _UserTimer(message))

    def stop(self, reason: str = "normal") -> None:
        """Stop this actor on purpose (a transient child stopped with "normal" is not restarted)."""
        self._run_terminate(reason)
        self.exit(reason)

    # --- the machinery ----------------------------------------------------------------------------

    def on_init(self, message: Init) -> None:
        result = self.init(*message.spec.args, **message.spec.kwargs)
        if result is Ignore or isinstance(result, Ignore):
            self.send(self.parent_address, Ignored(self.name))
            self.exit_now()
            return
        self._initialized = True
        self.report_started()

    def on_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        if self._crashed is not None or self._exiting:
            self._refuse(payload, envelope, sender)
            return
        self._run_guarded(envelope, sender, payload)

    def _run_guarded(self, envelope: Envelope | None, sender: Any, payload: Any, internal: bool = False) -> None:
        """Run `handle(payload)`; `internal` deliveries (timers, answers, Down) expect no reply."""
        self._current = (envelope, sender)
        self._deferred = False
        expects_reply = not internal and (envelope is None or envelope.corr is not None)
        try:
            result = self.handle(payload)
        except (Recoverable, SpecError) as exc:  # bad input (a bad argument is bad input too)
            self._recoverable(exc, payload)
            if expects_reply:
                self.send_error(envelope, sender, exc, with_traceback=True)
            return
        except Exception as exc:  # noqa: BLE001 - a crash, by definition
            self._crash(exc, payload, envelope, sender)
            return
        finally:
            self._current = None
        if not self._deferred and expects_reply:
            self.send_reply(envelope, sender, result)

    def _answer_guarded(self, callback: Callable[[Answer], None] | None, answer: Answer, origin: Any) -> None:
        """Run `callback(answer)` (or `handle(answer)`); what it raises goes to `origin`."""
        envelope, sender = origin if origin is not None else (None, None)
        if envelope is None or envelope.corr is None:
            envelope, sender = None, None  # nobody waits for an answer
        try:
            if callback is None:
                self._current, self._deferred = (None, None), False
                try:
                    self.handle(answer)
                finally:
                    self._current = None
            else:
                callback(answer)
        except (Recoverable, SpecError) as exc:
            self._recoverable(exc, answer)
            if envelope is not None:
                self.send_error(envelope, sender, exc, with_traceback=True)
        except Exception as exc:  # noqa: BLE001 - a crash, by definition
            self._crash(exc, answer, envelope, sender)

    def _recoverable(self, exc: Recoverable | SpecError, payload: Any) -> None:
        log.info("%s: %s on %s: %s", self.name, type(exc).__name__, type_name(payload), exc)
        if self.monitor_address is not None:
            self.send(self.monitor_address, CountEvent(self.name, "recoverable", f"{type(exc).__name__} on {type_name(payload)}: {exc}"))

    def _crash(self, exc: Exception, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        reason = f"crash: {type(exc).__name__}: {exc}"
        log.error("%s crashed handling %s: %s", self.name, type_name(payload), reason[7:], exc_info=exc)
        original = ErrorInfo.from_exception(exc, actor=self.name)  # the caller gets it as __cause__
        crashed = ActorCrashed(self.name, type(exc).__name__, str(exc), type_name(payload))
        if (envelope is not None and envelope.corr is not None) or (envelope is None and sender is not None):
            self.send_error(envelope, sender, crashed, cause=original)
        self._crashed = reason
        if self.monitor_address is not None:
            self.send(self.monitor_address, CountEvent(self.name, "crash"))
        self.exit(reason, original)

    def _refuse(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        """A request that arrived after this actor crashed or began to stop."""
        reason = "the actor crashed" if self._crashed else "the actor is stopping"
        if envelope is not None and envelope.corr is not None:
            self.send_error(envelope, sender, DeadLetter(self.name, type_name(payload), reason, undelivered=True))

    def on_timer(self, payload: Any) -> None:
        if isinstance(payload, _UserTimer) and self._crashed is None and not self._exiting:
            self._run_guarded(None, None, payload.message, internal=True)

    def on_down(self, message: Down) -> None:
        if message.name in self._watched:
            self._watched.discard(message.name)
            self._run_guarded(None, None, message, internal=True)

    def _on_terminate(self, message: Any, sender: Any) -> None:
        if self._initialized:
            self._run_terminate(message.reason)
        self.exit(message.reason)

    def on_monitor_changed(self, message: Any) -> None:
        # a restarted monitor knows no watches: ask it again (a name that died meanwhile
        # answers Down(noproc) at once, as an Erlang monitor does)
        for name in self._watched:
            self.send(self.monitor_address, Watch(name))

    def on_exit_request(self) -> None:
        # terminate runs only after a successful init (OTP never calls it after a failed one)
        if self._crashed is None and self._initialized:
            self._run_terminate("shutdown")

    def _run_terminate(self, reason: str) -> None:
        if self._terminated:
            return
        self._terminated = True
        try:
            self.terminate(reason)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: terminate(%r) raised %s: %s", self.name, reason, type(exc).__name__, exc)

    def on_undelivered(self, envelope: Envelope, reason: str) -> None:
        super().on_undelivered(envelope, reason)
        if self.monitor_address is not None:
            self.send(self.monitor_address, CountEvent(self.name, "undelivered"))
        if envelope.reply_to is not None:
            self.on_undelivered_notice(Undelivered(envelope.target, type_name(envelope.payload), reason, envelope.payload))

    def on_undelivered_notice(self, message: Undelivered) -> None:
        if self._crashed is not None or self._exiting:
            return
        try:
            sent = unpack_message(message.message)
        except SupervisionError:
            sent = None
        self._run_guarded(None, None, Undelivered(message.target, message.message_type, message.reason, sent), internal=True)

    def on_unmatched_reply(self, message: Reply | ErrorReply, sender: Any) -> None:
        log.debug("%s: late reply %s dropped", self.name, message.corr)
