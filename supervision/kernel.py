"""The kernel: the runtime's top supervisor, its gateway, and its guard against orphans.

The runtime creates one kernel per actor system. The kernel

- supervises the monitor (`sys.monitor`, started first, stopped last) and every tree the user
  starts (`Runtime.start(spec)` adds the tree as a child);
- is the one actor the outside world talks to when the system base cannot be trusted with
  sends to dead actors (multiprocQueueBase): it forwards requests by name, and answers
  `DeadLetter` for requests whose target dies;
- resolves names for the runtime, which then talks to actors directly where that is safe;
- kills the whole actor system (its process group) when the process that owns the runtime
  dies, so no actor outlives its owner.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import attrs

from supervision.logs import logger
from supervision.errors import SpecError
from supervision.messages import (
    Answer,
    Envelope,
    Init,
    MonitorChanged,
    Forget,
    Ping,
    Relay,
    Resolve,
    Shutdown,
    Started,
    StartTree,
    StopTree,
    TerminateChild,
)
from supervision.monitor import Monitor
from supervision.specs import ChildSpec, SupervisorSpec
from supervision.supervisor import AddChild, CallStep, StartStep, Supervisor, _Requester

log = logger("supervision.kernel")

KERNEL_NAME = "sys.kernel"
MONITOR_NAME = "sys.monitor"


def kernel_spec(intensity: int = 3, period: float = 5.0) -> SupervisorSpec:
    return SupervisorSpec(
        name=KERNEL_NAME,
        strategy="one_for_one",
        intensity=intensity,
        period=period,
        children=[ChildSpec(MONITOR_NAME, Monitor, shutdown=2.0)],
    )


class Kernel(Supervisor):
    """The root supervisor of a runtime: starts the monitor and the trees you start, and stops
    everything when the program that owns the actor system dies."""

    def on_init(self, message: Init) -> None:
        self.context = attrs.evolve(self.context, kernel=self.myAddress)
        super().on_init(message)
        if self.context.owner is not None:
            self.arm_timer(self.clock() + max(0.2, self.context.liveness_interval))

    # --- the monitor is special: its address is everyone's monitor --------------------------------

    def _on_started(self, message: Started, sender: Any) -> None:
        step = self.step
        if isinstance(step, StartStep) and step.name == MONITOR_NAME:
            child = self.child_at(sender)
            if child is not None:
                restarted = self.context.monitor is not None
                self.context = attrs.evolve(self.context, monitor=sender)
                if restarted:
                    self._announce_monitor(sender)
        super()._on_started(message, sender)

    def _announce_monitor(self, monitor: Any) -> None:
        log.warning("the monitor restarted; children re-register with it")
        notice = MonitorChanged(monitor)
        self.router.on_monitor_changed()
        self.on_monitor_changed(notice)

    # --- gateway -----------------------------------------------------------------------------------

    def _on_envelope(self, envelope: Envelope, sender: Any) -> None:
        if envelope.target and envelope.target != self.name:
            self.router.forward(envelope)
            return
        super()._on_envelope(envelope, sender)

    def on_other_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        requester = _Requester(envelope, sender)
        if isinstance(payload, Ping):
            self.send_reply(envelope, sender, sender)
        elif isinstance(payload, Forget):
            self.router.forget(payload.name)
        elif isinstance(payload, Relay):
            self.router.forward(payload.envelope)
            self.send_reply(envelope, sender, None)
        elif isinstance(payload, Resolve):
            self.router.resolve(payload.name, lambda answer: self._answer(requester, answer), payload.wait, payload.stale)
        elif isinstance(payload, StartTree):
            if not isinstance(payload.spec, (ChildSpec, SupervisorSpec)):
                raise SpecError("spec", f"must be a SupervisorSpec or ChildSpec; got {type(payload.spec).__name__}")
            self._request_add_child(AddChild(payload.spec), requester)
        elif isinstance(payload, StopTree):
            self._request_terminate_child(TerminateChild(payload.name), requester)
        elif isinstance(payload, Shutdown):
            if self.phase in ("stopping", "exiting"):
                self.send_reply(envelope, sender, "stopped")
                return
            self.begin_stop("shutdown", CallStep(lambda: self._stopped(requester)))
        else:
            super().on_other_request(payload, envelope, sender)

    def _answer(self, requester: _Requester, answer: Answer) -> None:
        if answer.error is not None:
            self.send_error(requester.envelope, requester.sender, answer.error)
        else:
            self.send_reply(requester.envelope, requester.sender, answer.value)

    def _stopped(self, requester: _Requester) -> None:
        self.phase = "stopped"
        self.send_reply(requester.envelope, requester.sender, "stopped")

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
