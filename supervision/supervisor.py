"""The supervisor actor: a thin shell that runs its `plan.Plan` and carries out the effects.

It turns thespian messages into plan events (a child linked, started, failed, said it is
exiting, is gone; a timer fired; a request arrived) and executes what the plan returns
(create a child actor, ask it to stop, SIGKILL it, arm a timer, reply, register it with the
monitor, report its row, exit). Every decision lives in the plan (see plan.py for OTP's
rules); this module knows thespian.

It watches its children's processes itself as well as through thespian's `ChildActorExited`
(which the queue base never sends): all of them every `liveness_interval`, and every few
milliseconds the ones expected to exit.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
from thespian.actors import ActorExitRequest, ChildActorExited

from supervision import hygiene, plan as P
from supervision.bases import base_info
from supervision.errors import ErrorInfo, StartFailed, SupervisionError, UnknownMessage
from supervision.logs import logger
from supervision.messages import (
    Budget,
    ChildInfo,
    CountChildren,
    DeleteChild,
    Envelope,
    ErrorReply,
    ExitAck,
    Exiting,
    GetChildspec,
    Ignored,
    Init,
    InitFailed,
    Linked,
    MonitorChanged,
    NodeRemoved,
    NodeRow,
    Register,
    RegistryEntry,
    Reply,
    RestartChild,
    StartChild,
    Started,
    StepTimer,
    Terminate,
    TerminateChild,
    Unregister,
    WhichChildren,
)
from supervision.policy import format_reason
from supervision.liveness import ProcessIdentity
from supervision.process import Process
from supervision.router import new_corr, type_name
from supervision.specs import SupervisorSpec

log = logger("supervision.supervisor")

#: How often to look at a child's process while it is expected to exit (stop requested, or it
#: said it is exiting): thespian's queue base never reports the exit itself.
EXPECTED_EXIT_POLL = 0.01


@attrs.frozen
class AddChild:
    """Add and start a new child (any strategy but simple_one_for_one). Reply: its name."""

    spec: Any


@attrs.frozen
class Requester:
    """Who asked (for the reply): the request's envelope and sender."""

    envelope: Envelope | None
    sender: Any


class Supervisor(Process):
    """The actor that runs one `SupervisorSpec`: it starts its children in order, restarts
    them by its strategy within its restart intensity, and stops them in reverse order.

    Not created by hand: `Runtime.start(spec)` and a parent supervisor create one for every
    `SupervisorSpec` in the tree. Its decisions are the pure `supervision.plan.Plan`'s (OTP's
    rules, see plan.py); this class only turns thespian messages into plan events and carries
    out the plan's effects."""

    supervisor_class = True
    system_handlers = {
        **Process.system_handlers,
        Linked: "_on_linked",
        Started: "_on_started",
        InitFailed: "_on_init_failed",
        Ignored: "_on_ignored",
        Exiting: "_on_exiting",
        Budget: "_on_budget",
    }

    def __init__(self) -> None:
        super().__init__()
        self.plan: P.Plan | None = None
        self.registering: dict[str, tuple[str, int]] = {}
        #: addresses whose exit is expected soon (checked every EXPECTED_EXIT_POLL)
        self.expecting: list[Any] = []
        self.next_full_check = 0.0
        #: sweep thespian's slots of gone children once it keeps this many (see `_tidy`)
        self._sweep_at = 16

    @property
    def strategy(self) -> str:
        return self.spec.strategy

    # --- running the plan --------------------------------------------------------------------

    def run(self, event: Any) -> None:
        """Feed `event` to the plan and carry out its effects (and the events they produce)."""
        pending = [event]
        while pending:
            effects = self.plan.on(pending.pop(0), self.clock())
            # a row is read when it is sent, so only the last report of a child in a batch
            # counts (a restart reports restarting and starting at once: one message)
            last_report = {e.name: i for i, e in enumerate(effects) if type(e) is P.Report}
            for i, effect in enumerate(effects):
                if type(effect) is P.Report and last_report[effect.name] != i:
                    continue
                follow = self.execute(effect)
                if follow:
                    pending.extend(follow)
        self._tidy()

    def _tidy(self) -> None:
        """Drop what thespian keeps for children that are gone (`supervision.hygiene`): its
        slot of each local address ever handed out grew by one per restart (~1 KiB each in
        this process, measured), and on the queue base its lists of dead addresses by two.

        Amortised O(1) per message: a sweep looks at every kept slot and every child, so it
        runs only once the slots kept reach twice what the children can use."""
        if self.in_process or self.plan is None:
            return
        hygiene.trim_dead(self)
        managed = getattr(getattr(getattr(self, "_myRef", None), "_addrManager", None), "_managed", None)
        if not isinstance(managed, hygiene.Slots) or managed.kept < self._sweep_at:
            return
        in_use = {hygiene.local_index(self, c.address) for c in self.plan.ordered() if c.address is not None}
        in_use.update(hygiene.local_index(self, a) for a in self.expecting)
        kept = hygiene.sweep(self, in_use)
        self._sweep_at = max(16, 2 * len(self.plan.children) + 8, 2 * kept)

    def execute(self, effect: Any) -> list | None:
        kind = type(effect)
        if kind is P.Report:
            self.report(effect.name)
        elif kind is P.Spawn:
            return self._spawn(effect)
        elif kind is P.Register:
            self._register(effect.name, effect.incarnation)
        elif kind is P.Terminate:
            self.send(effect.address, Terminate(effect.reason))
        elif kind is P.Kill:
            self._kill(effect)
        elif kind is P.Unregister:
            if self.monitor_address is not None:
                # Down reasons are text: ("shutdown", detail) reads "shutdown: detail"
                self.send(self.monitor_address, Unregister(effect.name, effect.address, format_reason(effect.reason), effect.cause))
        elif kind is P.SetTimer:
            self.wakeupAfter(effect.seconds, StepTimer(effect.seq))
        elif kind is P.Reply:
            self._reply(effect)
        elif kind is P.ExpectExit:
            self.expect_exit(effect.address)
        elif kind is P.Removed:
            if self.monitor_address is not None:
                self.send(self.monitor_address, NodeRemoved(effect.name))
        elif kind is P.Ready:
            self.on_ready()
        elif kind is P.Exit:
            self._exit_supervisor(effect)
        elif kind is P.ExitNotice:
            self.on_exit_notice(effect)
        elif kind is P.BudgetChanged:
            self.on_budget_changed(effect.seconds)
        elif kind is P.Log:
            getattr(log, effect.level)("%s", effect.text)
        return None

    # hooks for the kernel -------------------------------------------------------------------

    def on_ready(self) -> None:
        self.report_started()

    def on_exit_notice(self, notice: P.ExitNotice) -> None:
        pass

    def on_child_started(self, address: Any) -> None:
        """A child at `address` finished its init (before the plan registers it)."""

    def on_budget_changed(self, seconds: float) -> None:
        if self.parent_address is not None:
            self.send(self.parent_address, Budget(self.name, seconds))

    # --- start --------------------------------------------------------------------------------

    def on_init(self, message: Init) -> None:
        self.plan = P.Plan(self.name, message.spec)
        self.run(P.Boot())

    def _spawn(self, effect: P.Spawn) -> list:
        cls = Supervisor if isinstance(effect.spec, SupervisorSpec) else effect.spec.actor
        if not self.in_process:
            hygiene.adopt(self)  # before the first createActor (idempotent)
        forked = len(self._forked())
        try:
            address = self.createActor(cls)
        except Exception as exc:  # noqa: BLE001
            return [P.SpawnFailed(effect.name, effect.incarnation, f"{type(exc).__name__}: {exc}")]
        parent_pid = None if self.in_process else os.getpid()
        identity = self._forked_identity(address, forked)
        self.send(address, Init(effect.name, effect.spec, self.name, self.context, parent_pid=parent_pid, linked=identity is not None))
        events: list = [P.Spawned(effect.name, effect.incarnation, address)]
        if identity is not None:
            events.append(P.Linked(address, identity))
        return events

    def _forked(self) -> list:
        """thespian's list of the processes this actor forked (multiproc bases; private, so
        read defensively: empty when it is not there)."""
        if self.in_process:
            return []
        procs = getattr(getattr(self, "_myRef", None), "_child_procs", None)
        return procs if isinstance(procs, list) else []

    def _forked_identity(self, address: Any, before: int) -> ProcessIdentity | None:
        """The process of the child just created at `address`, known here because this process
        forked it; None if thespian created it elsewhere (the child then sends `Linked`).

        Without it the child sent `Linked` before its init and `Started` after: two messages
        to the same address, which thespian's TCP transport sends one after the other, each
        waiting for its acknowledgement, so every start paid one more round trip (median
        +1.6 ms in the child and +2.6 ms until the supervisor saw `Started`, 48 restarts on a
        loaded 2-core machine)."""
        procs = self._forked()
        if len(procs) != before + 1 or getattr(procs[-1], "childAddr", None) is not address:
            return None
        pid = getattr(getattr(procs[-1], "childProc", None), "pid", None)
        return ProcessIdentity.of(pid) if isinstance(pid, int) else None

    def _on_linked(self, message: Linked, sender: Any) -> None:
        self.run(P.Linked(sender, message.identity))

    def _on_started(self, message: Started, sender: Any) -> None:
        self.on_child_started(sender)
        self.run(P.InitDone(sender, message.identity))

    def _on_init_failed(self, message: InitFailed, sender: Any) -> None:
        self.run(P.InitFailed(sender, f"init raised {message.error.type_name}: {message.error.message}"))

    def _on_ignored(self, message: Ignored, sender: Any) -> None:
        self.run(P.InitIgnored(sender))

    def _on_budget(self, message: Budget, sender: Any) -> None:
        self.run(P.ChildBudget(sender, message.seconds))

    def _register(self, name: str, incarnation: int) -> None:
        corr = new_corr("g")
        self.registering[corr] = (name, incarnation)
        child = self.plan.child(name)
        self.send(self.monitor_address, Register(self.entry(child), corr))

    def entry(self, child: P.Child) -> RegistryEntry:
        return RegistryEntry(child.name, child.address, child.identity, self.name, child.kind, self.class_name(child))

    @staticmethod
    def class_name(child: P.Child) -> str:
        return "Supervisor" if isinstance(child.spec, SupervisorSpec) else child.spec.actor.__qualname__

    def on_unmatched_reply(self, message: Reply | ErrorReply, sender: Any) -> None:
        pending = self.registering.pop(message.corr, None)
        if pending is None:
            if isinstance(message, ErrorReply):
                log.warning("%s: %s", self.name, message.error.message)
            return
        error = message.error.message if isinstance(message, ErrorReply) else None
        self.run(P.Registered(pending[0], pending[1], error))
        if error is None and self.context is not None and not self.in_process:
            self.arm_timer(self.clock() + self.context.liveness_interval)

    def on_timer(self, payload: Any) -> None:
        if isinstance(payload, StepTimer) and self.plan is not None:
            self.run(P.TimerFired(payload.seq))

    # --- noticing exits -------------------------------------------------------------------------

    def _kill(self, effect: P.Kill) -> None:
        if effect.identity is not None and not self.in_process:
            effect.identity.kill()
        elif effect.address is not None:
            self.send(effect.address, ActorExitRequest())

    def _on_exiting(self, message: Exiting, sender: Any) -> None:
        self.run(P.ChildExiting(sender, message.reason, message.cause))
        self.send(sender, ExitAck())  # the child leaves once we know why

    def _on_child_exited(self, message: Any, sender: Any) -> None:
        if self.plan is None:
            return
        child = self.plan.child_at(message.childAddress)
        if child is not None and child.identity is not None and not self.in_process and child.identity.is_alive():
            # thespian says so when the actor left, while its process may linger a moment: the
            # child counts as gone (stopped, its name free) once the process is
            self.expect_exit(child.address)
            return
        self.run(P.ChildDown(message.childAddress, "killed"))

    def on_tick(self, now: float) -> float | None:
        """Look at the children's processes: every `liveness_interval` all of them, and every
        few milliseconds the ones that are expected to exit (asked to stop, or said so)."""
        if self.in_process or self.context is None or self.plan is None:
            return None
        full = now >= self.next_full_check
        if full:
            self.next_full_check = now + self.context.liveness_interval
            dead = [c.address for c in self.plan.ordered() if c.identity is not None and c.address is not None and not c.identity.is_alive()]
        else:
            dead = []
            for address in self.expecting:
                child = self.plan.child_at(address)
                if child is not None and child.identity is not None and not child.identity.is_alive():
                    dead.append(address)
        for address in dead:
            real = hygiene.real_address(self, address)
            self.run(P.ChildDown(address, "killed"))
            if real is not None and not base_info(self.context.base).reports_child_exit:
                # thespian on this base never noticed: it kept the child in its `_children`,
                # its queue (two pipes) in the transport's routes and its process unreaped, one
                # set per SIGKILLed child of a busy parent. Tell it as it tells itself (its
                # `childDied` sends the same message to itself once it reaps a process).
                self.send(self.myAddress, ChildActorExited(real))
        self.expecting = [a for a in self.expecting if self.plan.child_at(a) is not None]
        if self.expecting:
            return min(self.next_full_check, now + EXPECTED_EXIT_POLL)
        if any(c.identity is not None and c.address is not None for c in self.plan.ordered()):
            return self.next_full_check
        return None

    def expect_exit(self, address: Any) -> None:
        """The child at `address` should exit soon: check its process often (thespian's queue
        base never says)."""
        if address is None:
            return
        if not any(a is address for a in self.expecting):
            self.expecting.append(address)
        self.arm_timer(self.clock() + EXPECTED_EXIT_POLL)

    # --- stopping the supervisor ----------------------------------------------------------------

    def _on_terminate(self, message: Terminate, sender: Any) -> None:
        if self.plan is not None:
            self.run(P.StopRequested(message.reason))

    def _exit_supervisor(self, effect: P.Exit) -> None:
        if effect.failed is not None:
            error = ErrorInfo.from_exception(StartFailed(*effect.failed), with_traceback=False)
            self.send(self.parent_address, InitFailed(self.name, error))
            self.exit_now()
        else:
            if self.monitor_address is not None:
                # before the parent hears of it: the monitor then gets our children's exits and
                # ours from one sender, in order, and Down says what we decided
                self.send(self.monitor_address, Unregister(self.name, self.myAddress, effect.reason, effect.cause))
            self.exit(effect.reason, cause=effect.cause)

    # --- requests: the supervisor API -----------------------------------------------------------

    def on_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        requester = Requester(envelope, sender)
        try:
            if isinstance(payload, WhichChildren):
                self.send_reply(envelope, sender, self.which_children())
            elif isinstance(payload, CountChildren):
                self.send_reply(envelope, sender, self.count_children())
            elif isinstance(payload, GetChildspec):
                self.send_reply(envelope, sender, self.plan.childspec(payload.name))
            elif isinstance(payload, StartChild):
                self.run(P.StartDynamic(payload.args, payload.kwargs, payload.name, requester))
            elif isinstance(payload, AddChild):
                self.run(P.AddChild(payload.spec, requester))
            elif isinstance(payload, TerminateChild):
                self.run(P.TerminateChild(payload.name, requester))
            elif isinstance(payload, RestartChild):
                self.run(P.RestartChild(payload.name, requester))
            elif isinstance(payload, DeleteChild):
                self.run(P.DeleteChild(payload.name, requester))
            else:
                self.on_other_request(payload, requester)
        except SupervisionError as exc:
            self.send_error(envelope, sender, exc)

    def on_other_request(self, payload: Any, requester: Requester) -> None:
        self.send_error(requester.envelope, requester.sender, UnknownMessage(self.name, type_name(payload)))

    def _reply(self, effect: P.Reply) -> None:
        requester = effect.requester
        if not isinstance(requester, Requester):
            return
        if effect.error is not None:
            self.send_error(requester.envelope, requester.sender, effect.error)
        else:
            self.send_reply(requester.envelope, requester.sender, effect.value)

    def which_children(self) -> tuple[ChildInfo, ...]:
        return tuple(
            ChildInfo(c.name, c.kind, self.class_name(c), c.status, c.identity.pid if c.identity else None, c.restarts)
            for c in self.plan.ordered()
        )

    def count_children(self) -> dict[str, int]:
        children = list(self.plan.ordered())
        return {
            "specs": len(children),
            "active": sum(1 for c in children if c.status == "running"),
            "supervisors": sum(1 for c in children if c.kind == "supervisor"),
            "workers": sum(1 for c in children if c.kind == "worker"),
        }

    # --- bookkeeping ----------------------------------------------------------------------------

    def report(self, name: str) -> None:
        child = self.plan.child(name)
        if self.monitor_address is None or child is None:
            return
        spec = child.spec
        self.send(
            self.monitor_address,
            NodeRow(
                child.name,
                self.name,
                child.kind,
                self.class_name(child),
                self.restart_type(child),
                spec.strategy if isinstance(spec, SupervisorSpec) else None,
                child.status,
                child.identity.pid if child.identity else None,
                child.restarts,
                child.position,
                child.last_exit,
                parent_pid=self.identity.pid if self.identity else None,
            ),
        )

    def restart_type(self, child: P.Child) -> str:
        """The restart type shown in the tree."""
        return child.restart

    def on_monitor_changed(self, message: MonitorChanged) -> None:
        for child in self.plan.ordered():
            if child.status == "running":
                self.send(self.monitor_address, Register(self.entry(child), new_corr("g")))
                self.send(child.address, message)
            self.report(child.name)
        # a registration in flight went to the old monitor: send it again
        for corr, (name, incarnation) in list(self.registering.items()):
            child = self.plan.child(name)
            if child is not None and child.incarnation == incarnation and child.status == "starting":
                self.send(self.monitor_address, Register(self.entry(child), corr))

    def on_exit_request(self) -> None:
        if self.plan is not None and self.plan.phase not in ("exiting", "stopped"):
            log.info("%s: removed by the actor system (not by its parent)", self.name)
