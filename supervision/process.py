"""The base of every actor the runtime supervises: start handshake, envelopes, timers, and no escaping exceptions.

`Process` is the thespian `Actor` under `Server`, `Supervisor` and the runtime's own actors. It
owns the parts they share:

- the start handshake with its parent (`Init` -> `Started` | `InitFailed`), after which the
  actor's process is linked to its parent's (it dies with it, as in OTP);
- requests and replies in `Envelope`s with correlation ids, and a `Router` for sends by name;
- one timer (a thespian wakeup) re-armed for the earliest deadline, never a flood of wakeups;
- a guard around every message: an exception never reaches thespian (which would retry the
  message and answer `PoisonMessage`); a bug in an actor makes it crash cleanly instead, so its
  supervisor restarts it.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import attrs

from thespian.actors import (
    Actor,
    ActorExitRequest,
    ActorSystemMessage,
    ChildActorExited,
    DeadEnvelope,
    PoisonMessage,
    WakeupMessage,
)

from supervision import hygiene
from supervision.logs import logger
from supervision.errors import ErrorInfo, MessageNotUnpicklable, ReplyNotPicklable, SupervisionError, SystemMessageRefused
from supervision.liveness import ProcessIdentity, die_with_parent
from supervision.messages import (
    CountEvent,
    Down,
    Envelope,
    ErrorReply,
    ExitAck,
    ExitAckTimer,
    Exiting,
    Init,
    InitFailed,
    Linked,
    MonitorChanged,
    Packed,
    RUNTIME_ONLY,
    Reply,
    Resolved,
    Started,
    SystemContext,
    Terminate,
    ThespianStats,
    Tick,
    Undelivered,
)
from supervision.router import Router, type_name
from supervision.wire import pack_reply, unpack_message

hygiene.fix_timer_rounding()  # before any actor's select loop runs (see there)

log = logger("supervision.process")

#: payloads a request may not carry: the runtime's own messages and thespian's
_REFUSED_IN_BAND = (*RUNTIME_ONLY, ActorSystemMessage)
#: How long an actor that told its supervisor why it exits waits for the acknowledgement.
#: thespian may report the process gone (SIGCHLD) before the supervisor has read the `Exiting`
#: message from the socket; the reason was then lost (`Down` said "killed" for a supervisor that
#: gave up). Waiting for the ack costs one round trip per voluntary exit, none per SIGKILL.
EXIT_ACK_TIMEOUT = 0.5


class Process(Actor):
    """The base of every actor of the runtime: a thespian Actor that dispatches system messages
    (requests, replies, Down, timers) and links itself to its supervisor's process."""

    #: True for supervisors (specs.ChildSpec refuses them as workers)
    supervisor_class: ClassVar[bool] = False
    #: message type -> name of the method that handles it (subclasses extend this table)
    system_handlers: ClassVar[dict[type, str]] = {
        Envelope: "_on_envelope",
        ExitAck: "_on_exit_ack",
        Reply: "_on_reply",
        ErrorReply: "_on_error_reply",
        Resolved: "_on_resolved",
        Down: "_on_down",
        Init: "_on_init",
        Terminate: "_on_terminate",
        MonitorChanged: "_on_monitor_changed",
        WakeupMessage: "_on_wakeup",
        ActorExitRequest: "_on_actor_exit_request",
        ChildActorExited: "_on_child_exited",
        PoisonMessage: "_on_poison",
        DeadEnvelope: "_on_dead_envelope",
        Undelivered: "_on_undelivered",
    }

    def __init__(self) -> None:
        super().__init__()
        self.name: str = type(self).__name__
        self.context: SystemContext | None = None
        self.spec: Any = None
        self.parent_address: Any = None
        self.identity: ProcessIdentity | None = None
        self.router = Router(self)
        self.clock = time.monotonic
        self._timer_at: float | None = None
        self._exiting = False
        self._leaving = False
        self.parent_name = ""

    # --- properties ------------------------------------------------------------------------

    @property
    def monitor_address(self) -> Any:
        return self.context.monitor if self.context is not None else None

    @property
    def in_process(self) -> bool:
        return self.context is None or self.context.in_process

    # --- the guard around every message -----------------------------------------------------

    def receiveMessage(self, message: Any, sender: Any) -> None:
        try:
            method = self.system_handlers.get(type(message))
            if method is not None:
                getattr(self, method)(message, sender)
            else:
                self.on_raw(message, sender)
        except Exception as exc:  # noqa: BLE001 - nothing may escape into thespian
            self.on_internal_error(exc, message)

    def on_internal_error(self, exc: Exception, message: Any) -> None:
        """A bug outside user request handling: log it and crash, so the supervisor restarts us."""
        log.error("%s crashed on %s: %s: %s", self.name, type_name(message), type(exc).__name__, exc, exc_info=exc)
        self.exit(f"crash: {type(exc).__name__}: {exc}", ErrorInfo.from_exception(exc))

    # --- start handshake ---------------------------------------------------------------------

    def _on_init(self, message: Init, sender: Any) -> None:
        if self.context is not None:
            return  # duplicate Init
        self.name = message.name
        self.context = message.context
        self.spec = message.spec
        self.parent_address = sender
        self.parent_name = message.parent_name
        if not message.context.in_process:
            die_with_parent()
            if message.parent_pid is not None and os.getppid() != message.parent_pid:
                self.exit_now()  # the parent died before we linked to it
                return
            self.identity = ProcessIdentity.current()
            if not message.linked:
                # the parent knows our process before user init runs: a start that hangs is killed
                self.send(sender, Linked(self.name, self.identity))
        try:
            self.on_init(message)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s failed to start: %s: %s", self.name, type(exc).__name__, exc)
            self.send(sender, InitFailed(self.name, ErrorInfo.from_exception(exc)))
            self.exit_now()

    def on_init(self, message: Init) -> None:
        """Start this actor; send `Started` to the parent when ready (see `report_started`)."""
        self.report_started()

    def report_started(self) -> None:
        self.send(self.parent_address, Started(self.name, self.identity))

    # --- requests ----------------------------------------------------------------------------

    def _on_envelope(self, envelope: Envelope, sender: Any) -> None:
        payload = envelope.payload
        if isinstance(payload, Packed):
            try:
                payload = unpack_message(payload)
            except MessageNotUnpicklable as exc:
                self.refuse_request(envelope, sender, exc)
                return
            envelope = Envelope(payload, envelope.target, envelope.corr, envelope.reply_to, envelope.ttl)
        if isinstance(payload, _REFUSED_IN_BAND):
            self.refuse_request(envelope, sender, SystemMessageRefused(self.name, type_name(payload)))
            return
        if type(payload) is ThespianStats:
            self.send_reply(envelope, sender, hygiene.tables(self))
            return
        self.on_request(payload, envelope, sender)

    def refuse_request(self, envelope: Envelope, sender: Any, error: SupervisionError) -> None:
        """Answer a request this actor will not handle (bad on arrival); it keeps running."""
        log.warning("%s: refused %s: %s", self.name, type_name(envelope.payload), error)
        if self.monitor_address is not None:
            detail = f"refused {type_name(envelope.payload)}: {type(error).__name__}: {error}"
            self.send(self.monitor_address, CountEvent(self.name, "recoverable", detail))
        self.send_error(envelope, sender, error)

    def on_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        raise NotImplementedError

    def on_raw(self, message: Any, sender: Any) -> None:
        """A message that is not in an envelope (sent with plain thespian)."""
        self.on_request(message, None, sender)

    def send_reply(self, envelope: Envelope | None, sender: Any, value: Any) -> None:
        if envelope is None:
            if value is not None:
                self.send(sender, value)
        elif envelope.corr is not None:
            self.reply_value(envelope.reply_to or sender, envelope.corr, value)

    def reply_value(self, address: Any, corr: str, value: Any) -> None:
        """Send `Reply(corr, value)`; on multiproc bases the value is pickled here, so one that
        cannot be is answered as `ReplyNotPicklable` (naming its type) instead of being lost."""
        if not self.in_process:
            try:
                value = pack_reply(value)
            except ReplyNotPicklable as exc:
                log.warning("%s: reply %s: %s", self.name, corr, exc)
                if self.monitor_address is not None:
                    self.send(self.monitor_address, CountEvent(self.name, "recoverable", f"{type(exc).__name__}: {exc}"))
                self.send(address, ErrorReply(corr, ErrorInfo.from_exception(exc, with_traceback=False, actor=self.name)))
                return
        self.send(address, Reply(corr, value))

    def send_error(
        self, envelope: Envelope | None, sender: Any, error: BaseException | ErrorInfo, *, with_traceback: bool = False, cause: ErrorInfo | None = None
    ) -> None:
        """Reply `error` (rebuilt as its own type by the caller, with this actor's name on it)."""
        if isinstance(error, ErrorInfo):
            info = error
        else:
            info = ErrorInfo.from_exception(error, with_traceback=with_traceback, actor=self.name, cause=cause)
        if envelope is None:
            self.send(sender, ErrorReply("", info))
        elif envelope.corr is not None:
            self.send(envelope.reply_to or sender, ErrorReply(envelope.corr, info))

    def _on_reply(self, message: Reply, sender: Any) -> None:
        if not self.router.on_reply(message):
            self.on_unmatched_reply(message, sender)

    def _on_error_reply(self, message: ErrorReply, sender: Any) -> None:
        if not self.router.on_error_reply(message):
            self.on_unmatched_reply(message, sender)

    def on_unmatched_reply(self, message: Reply | ErrorReply, sender: Any) -> None:
        """A reply nobody waits for any more (its request timed out): dropped."""

    def on_undelivered(self, envelope: Envelope, reason: str) -> None:
        """A tell this actor sent went nowhere (its router could not resolve the name)."""
        log.info("%s: dropped %s to %r: %s", self.name, type_name(envelope.payload), envelope.target, reason)

    def _on_undelivered(self, message: Undelivered, sender: Any) -> None:
        if self.monitor_address is not None and sender != self.monitor_address:
            return  # only the monitor reports dead targets
        self.on_undelivered_notice(message)

    def on_undelivered_notice(self, message: Undelivered) -> None:
        """The monitor reports that a tell sent with `notify=True` reached a dead actor."""

    def _on_resolved(self, message: Resolved, sender: Any) -> None:
        self.router.on_resolved(message)

    def _on_down(self, message: Down, sender: Any) -> None:
        if self.monitor_address is not None and sender != self.monitor_address:
            log.warning("%s: a Down for %r from %s, not from the monitor: ignored", self.name, message.name, sender)
            return
        self.router.on_down(message)
        self.on_down(message)

    def on_down(self, message: Down) -> None:
        pass

    def _on_monitor_changed(self, message: MonitorChanged, sender: Any) -> None:
        if self.context is not None:
            self.context = attrs.evolve(self.context, monitor=message.monitor)
        self.router.on_monitor_changed()
        self.on_monitor_changed(message)

    def on_monitor_changed(self, message: MonitorChanged) -> None:
        pass

    # --- timers ------------------------------------------------------------------------------

    def arm_timer(self, deadline: float) -> None:
        """Make sure a wakeup comes no later than `deadline` (monotonic seconds)."""
        if self._timer_at is not None and self._timer_at <= deadline + 0.001:
            return
        self._timer_at = deadline
        self.wakeupAfter(max(0.0, deadline - self.clock()), Tick())

    def _on_wakeup(self, message: WakeupMessage, sender: Any) -> None:
        payload = message.payload
        if isinstance(payload, ExitAckTimer):
            self.exit_now()
            return
        if isinstance(payload, Tick):
            now = self.clock()
            if self._timer_at is not None and self._timer_at > now + 0.001:
                return  # an older wakeup; the armed one is still to come
            self._timer_at = None
            upcoming = [t for t in (self.router.expire(), self.on_tick(now)) if t is not None]
            if upcoming:
                self.arm_timer(min(upcoming))
        else:
            self.on_timer(payload)

    def on_tick(self, now: float) -> float | None:
        """Periodic work; return when to be woken next, or None."""
        return None

    def on_timer(self, payload: Any) -> None:
        pass

    # --- stopping ----------------------------------------------------------------------------

    def _on_terminate(self, message: Terminate, sender: Any) -> None:
        self.exit(message.reason)

    def exit(self, reason: str, error: ErrorInfo | None = None, cause: str | None = None) -> None:
        """Tell the parent why (`cause`: the human story behind `reason`), then leave."""
        if self._exiting:
            return
        if self.parent_address is not None:
            self.send(self.parent_address, Exiting(self.name, reason, error, cause))
            if self.parent_name and not self.in_process:
                self._exiting = True  # refuse requests from now on; leave once the parent read why
                self.wakeupAfter(EXIT_ACK_TIMEOUT, ExitAckTimer())
                return
        self.exit_now()

    def _on_exit_ack(self, message: ExitAck, sender: Any) -> None:
        if self._exiting:
            self.exit_now()

    def exit_now(self) -> None:
        """Leave now. Not recursive: a supervisor has already stopped its children its own way,
        and thespian's recursive exit waits (for many seconds) for children it wrongly still
        believes alive, after some of them were SIGKILLed."""
        self._exiting = True
        if self._leaving:
            return
        self._leaving = True
        request = ActorExitRequest()
        request.notRecursive()
        self.send(self.myAddress, request)

    def _on_actor_exit_request(self, message: ActorExitRequest, sender: Any) -> None:
        self.on_exit_request()

    def on_exit_request(self) -> None:
        """thespian is about to remove this actor (after our own exit, or at system shutdown)."""

    def _on_child_exited(self, message: ChildActorExited, sender: Any) -> None:
        pass

    def _on_poison(self, message: PoisonMessage, sender: Any) -> None:
        log.warning("%s: a message it sent crashed its receiver: %s", self.name, type_name(message.poisonMessage))

    def _on_dead_envelope(self, message: DeadEnvelope, sender: Any) -> None:
        pass


def describe(error: BaseException) -> str:
    if isinstance(error, SupervisionError):
        return str(error)
    return f"{type(error).__name__}: {error}"
