"""The kernel: the runtime's top supervisor, composed with its gateway and its guard against orphans.

The runtime creates one kernel per actor system. The kernel

- supervises the monitor (`sys.monitor`, started first, stopped last) and every tree the user
  starts. A tree is never restarted by the kernel (as OTP's application controller never
  restarts an application): its restart type says what its exit means. temporary: it is
  logged and shown in the tree; transient (after any exit but "normal", as application(3)
  says) and permanent: the whole
  runtime stops, and `Runtime.wait()` raises `RuntimeExited` with the reason;
- holds a `Gateway`: the one actor the outside world talks to when the system base cannot be
  trusted with sends to dead actors (multiprocQueueBase); it forwards requests by name,
  answers `DeadLetter` for requests whose target dies, and resolves names for the runtime;
- kills the whole actor system (its process group) when the process that owns the runtime
  dies, so no actor outlives its owner.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import attrs

from supervision import plan as P
from supervision.errors import RuntimeNotRunning, SpecError
from supervision.logs import logger
from supervision.messages import (
    Answer,
    AwaitExit,
    Envelope,
    Forget,
    GetBudget,
    Init,
    Lookup,
    MonitorChanged,
    NodeRemoved,
    NodeRow,
    Ping,
    Relay,
    Resolve,
    Shutdown,
    StartTree,
    StopTree,
    TreeExit,
)
from supervision.monitor import Monitor
from supervision.policy import format_reason
from supervision.router import new_corr
from supervision.specs import KERNEL_NAME, KILL_GRACE, MONITOR_NAME, RESTART_TYPES, ChildSpec, SupervisorSpec
from supervision.supervisor import Requester, Supervisor

log = logger("supervision.kernel")

__all__ = ["KERNEL_NAME", "MONITOR_NAME", "Kernel", "kernel_spec"]

#: How long past its wait a direct lookup is re-sent if the monitor restarts: as long as the
#: router keeps its own lookups (asks default to 5 s; longer ones are covered too)
RESEND_WINDOW = 30.0
#: direct lookups remembered at most (the oldest go first); each is a few hundred bytes
IN_FLIGHT_LIMIT = 4096


def kernel_spec(intensity: int = 3, period: float = 5.0) -> SupervisorSpec:
    return SupervisorSpec(
        name=KERNEL_NAME,
        strategy="one_for_one",
        intensity=intensity,
        period=period,
        children=[ChildSpec(MONITOR_NAME, Monitor, shutdown=2.0)],
    )


class Gateway:
    """Requests the runtime sends to the kernel that are not about supervision: route by name,
    resolve names, answer pings.

    A name the kernel has not cached is resolved by the monitor, which answers the runtime
    directly: a restart's critical path is kill -> supervisor -> new child -> supervisor ->
    monitor -> caller, and the hop back through the kernel was one of about eight process
    hops (1-14 ms each on a loaded 2-core machine)."""

    def __init__(self, owner: Supervisor, resend_window: float = RESEND_WINDOW) -> None:
        self.owner = owner
        #: direct lookups sent to the monitor (corr -> lookup, until when to re-send it if the
        #: monitor restarts); a re-sent one already answered is a late reply the runtime drops
        self.in_flight: dict[str, tuple[Lookup, float]] = {}
        self.resend_window = resend_window

    def handles(self, envelope: Envelope) -> bool:
        """Forward a request meant for another actor; True if it was."""
        if envelope.target and envelope.target != self.owner.name:
            self.owner.router.forward(envelope)
            return True
        return False

    def request(self, payload: Any, requester: Requester) -> bool:
        owner = self.owner
        if isinstance(payload, Ping):
            owner.send_reply(requester.envelope, requester.sender, requester.sender)
        elif isinstance(payload, Forget):
            owner.router.forget(payload.name)
        elif isinstance(payload, Relay):
            owner.router.forward(payload.envelope)
            owner.send_reply(requester.envelope, requester.sender, None)
        elif isinstance(payload, Resolve):
            self.resolve(payload, requester)
        else:
            return False
        return True

    def resolve(self, payload: Resolve, requester: Requester) -> None:
        owner, router, envelope = self.owner, self.owner.router, requester.envelope
        if payload.stale is not None:
            router.forget(payload.name, payload.stale)
        if payload.name in router.cache or owner.monitor_address is None or envelope is None or envelope.corr is None:
            router.resolve(payload.name, lambda answer: self._answer(requester, answer), payload.wait, payload.stale)
            return
        stale = payload.stale or router.stale.pop(payload.name, None)
        lookup = Lookup(payload.name, new_corr("l"), watch=False, wait=payload.wait, stale=stale,
                        reply_to=envelope.reply_to or requester.sender, reply_corr=envelope.corr)  # fmt: skip
        now = owner.clock()
        while self.in_flight:  # oldest first: O(1) per lookup however many are kept
            oldest = next(iter(self.in_flight))
            if self.in_flight[oldest][1] > now and len(self.in_flight) < IN_FLIGHT_LIMIT:
                break
            del self.in_flight[oldest]
        self.in_flight[lookup.corr] = (lookup, now + payload.wait + self.resend_window)
        owner.send(owner.monitor_address, lookup)

    def on_monitor_changed(self) -> None:
        """The monitor restarted: lookups it may not have answered go to the new one."""
        now = self.owner.clock()
        self.in_flight = {corr: kept for corr, kept in self.in_flight.items() if kept[1] > now}
        for lookup, _until in self.in_flight.values():
            self.owner.send(self.owner.monitor_address, lookup)

    def _answer(self, requester: Requester, answer: Answer) -> None:
        if answer.error is not None:
            self.owner.send_error(requester.envelope, requester.sender, answer.error)
        else:
            self.owner.send_reply(requester.envelope, requester.sender, answer.value)


class Kernel(Supervisor):
    """The root supervisor of a runtime: starts the monitor and the trees you start, and stops
    everything when the program that owns the actor system dies."""

    def __init__(self) -> None:
        super().__init__()
        self.gateway = Gateway(self)
        #: tree name -> its restart type (temporary | transient | permanent)
        self.trees: dict[str, str] = {}
        self.exit_waiters: list[Requester] = []
        self.tree_exit: TreeExit | None = None
        #: trees that exited and stay in the snapshot as stopped
        self.shown: set[str] = set()
        self.budget = 0.0

    def on_init(self, message: Init) -> None:
        self.context = attrs.evolve(self.context, kernel=self.myAddress)
        super().on_init(message)
        self.budget = self.plan.budget()
        if self.context.owner is not None:
            self.arm_timer(self.clock() + max(0.2, self.context.liveness_interval))

    # --- the monitor is special: its address is everyone's monitor --------------------------------

    def on_child_started(self, address: Any) -> None:
        monitor = self.plan.child(MONITOR_NAME)
        if monitor is not None and monitor.status == "starting" and monitor.address == address:
            restarted = self.context.monitor is not None
            self.context = attrs.evolve(self.context, monitor=address)
            if restarted:
                log.warning("the monitor restarted; children re-register with it")
                self.router.on_monitor_changed()
                self.gateway.on_monitor_changed()
                self.on_monitor_changed(MonitorChanged(address))

    # --- trees ------------------------------------------------------------------------------------

    def on_exit_notice(self, notice: P.ExitNotice) -> None:
        kind = self.trees.get(notice.name)
        if kind is None:
            return
        text = format_reason(notice.reason) + (f" ({notice.cause})" if notice.cause else "")
        # application(3): a transient application's exit is normal only with reason normal (a
        # top supervisor that gave up exits shutdown: abnormal for the application)
        if kind == "permanent" or (kind == "transient" and notice.reason != "normal"):
            log.error("tree %s (%s) exited: %s; stopping the runtime", notice.name, kind, text)
            self.tree_exit = TreeExit(notice.name, format_reason(notice.reason), notice.cause)
            self.run(P.StopRequested("shutdown", exit=False))
        else:
            log.warning("tree %s (%s) exited: %s; not restarted", notice.name, kind, text)

    def execute(self, effect: Any) -> list | None:
        if isinstance(effect, P.ExitNotice) and effect.removed and effect.name in self.trees and self.monitor_address is not None:
            # the exit of a tree stays in the snapshot, as stopped, with its cause
            child = effect.child
            self.shown.add(effect.name)
            self.send(
                self.monitor_address,
                NodeRow(effect.name, self.name, child.kind, self.class_name(child), self.trees[effect.name],
                        getattr(child.spec, "strategy", None), "stopped", None, child.restarts, child.position,
                        P.describe_exit(effect.reason, effect.cause)),
            )  # fmt: skip
        elif isinstance(effect, P.Removed) and effect.name in self.shown:
            return None
        elif isinstance(effect, P.Stopped):
            for waiter in self.exit_waiters:
                self.send_reply(waiter.envelope, waiter.sender, self.tree_exit)
            self.exit_waiters.clear()
        return super().execute(effect)

    def restart_type(self, child: P.Child) -> str:
        return self.trees.get(child.name, child.restart)  # the tree's application type

    def on_budget_changed(self, seconds: float) -> None:
        self.budget = seconds

    # --- gateway and runtime requests ----------------------------------------------------------

    def _on_envelope(self, envelope: Envelope, sender: Any) -> None:
        if self.gateway.handles(envelope):
            return
        super()._on_envelope(envelope, sender)

    def on_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        if self.tree_exit is not None and not isinstance(payload, (Ping, Shutdown, AwaitExit, GetBudget)):
            error = RuntimeNotRunning(f"the runtime stopped: tree {self.tree_exit.tree!r} exited ({self.tree_exit.reason})")
            self.send_error(envelope, sender, error)
            return
        super().on_request(payload, envelope, sender)

    def on_other_request(self, payload: Any, requester: Requester) -> None:
        if self.gateway.request(payload, requester):
            return
        if isinstance(payload, StartTree):
            spec = payload.spec
            if not isinstance(spec, (ChildSpec, SupervisorSpec)):
                raise SpecError("spec", f"must be a SupervisorSpec or ChildSpec; got {type(spec).__name__}")
            if payload.restart not in RESTART_TYPES:
                raise SpecError("restart", f"must be one of {', '.join(RESTART_TYPES)}; got {payload.restart!r}")
            self.trees[spec.name] = payload.restart
            self.shown.discard(spec.name)
            # the kernel never restarts a tree: its exit is decided in on_exit_notice
            self.run(P.AddChild(spec, requester, restart="temporary"))
        elif isinstance(payload, StopTree):
            self.trees.pop(payload.name, None)
            if payload.name in self.shown and self.plan.child(payload.name) is None:
                self.shown.discard(payload.name)  # a tree that already exited: drop its row
                self.send(self.monitor_address, NodeRemoved(payload.name))
                self.send_reply(requester.envelope, requester.sender, None)
                return
            self.run(P.TerminateChild(payload.name, requester))
        elif isinstance(payload, Shutdown):
            self.run(P.StopRequested("shutdown", requester, exit=False))
        elif isinstance(payload, AwaitExit):
            if self.plan.phase == "stopped":
                self.send_reply(requester.envelope, requester.sender, self.tree_exit)
            else:
                self.exit_waiters.append(requester)
        elif isinstance(payload, GetBudget):
            self.send_reply(requester.envelope, requester.sender, self.budget + KILL_GRACE)
        else:
            super().on_other_request(payload, requester)

    # --- orphan guard ------------------------------------------------------------------------------

    def on_tick(self, now: float) -> float | None:
        upcoming = super().on_tick(now)
        owner = self.context.owner if self.context else None
        if owner is None:
            return upcoming
        if not owner.is_alive():
            log.error("the process that owns this actor system (pid %s) died; stopping every actor", owner.pid)
            _kill_own_group()
            return None
        check = now + max(0.2, self.context.liveness_interval)
        return check if upcoming is None else min(upcoming, check)


def _kill_own_group() -> None:
    """SIGKILL this process's group: thespian's admin starts its system in a session of its own
    (setsid), so the group holds the admin, its logger and every actor, and nothing else."""
    group = os.getpgid(0)
    if os.getsid(0) == group:
        os.killpg(group, signal.SIGKILL)
