"""How a plan stops children: one at a time within its shutdown timeout and then killed, a simple_one_for_one's all at once, and the supervisor itself in reverse start order.

`Stopping` is a part of `plan.Plan` (see plan.py for the rules); pure, time injected.
"""

from __future__ import annotations

from typing import Any

from supervision.errors import StartFailed
from supervision.plan_events import ExpectExit, Kill, Log, StopRequested, Terminate
from supervision.plan_table import Child, DelayStep, DoneStep, ExitStep, StartStep, StopManyStep, StopStep
from supervision.specs import BRUTAL_KILL, KILL_GRACE


class Stopping:
    """Stop steps and the supervisor's own stop, for `Plan`."""

    def _exec_stop(self, step: StopStep) -> None:
        child = self.children.get(step.name)
        if child is None or not child.alive:
            if child is not None:
                if child.status in ("exited", "restarting"):
                    child.status = "stopped"
                self._remove(child) if step.remove else self._report(child)
            self._reply(step.requester, None)
            self.step = None
            return
        child.status = "stopping"
        self._report(child)
        self._send_stop(child, step.reason)

    def _send_stop(self, child: Child, reason: Any, timer: bool = True) -> None:
        if child.spec.shutdown == BRUTAL_KILL:
            child.killed = True
            self.out.append(Kill(child.name, child.address, child.identity))
            if timer:
                self._timer(KILL_GRACE)
        else:
            self.out.append(Terminate(child.name, child.address, reason))
            timeout = self.stop_timeout(child)
            if timer and timeout is not None:
                self._timer(timeout)
        self.out.append(ExpectExit(child.address))

    def _stop_timed_out(self, step: StopStep) -> None:
        child = self.children.get(step.name)
        if child is None or child.address is None:
            self.step = None
            return
        if not child.killed:
            self.out.append(Log("warning", f"{self.name}: {child.name} did not stop within {self.stop_timeout(child):g} s; killing it"))
            child.killed = True
            self.out.append(Kill(child.name, child.address, child.identity))
            self._timer(KILL_GRACE)
            return
        self.out.append(Log("error", f"{self.name}: {child.name} survived SIGKILL for {KILL_GRACE:g} s; giving up on it"))
        self._child_gone(child, "killed")

    def _exec_stop_many(self, step: StopManyStep) -> None:
        alive = [c for c in (self.children.get(n) for n in step.names) if c is not None and c.alive]
        if not alive:
            self.step = None
            return
        for child in alive:
            child.status = "stopping"
            self._send_stop(child, step.reason, timer=False)
        step.killed = alive[0].spec.shutdown == BRUTAL_KILL
        timeout = KILL_GRACE if step.killed else self.stop_timeout(alive[0])
        if timeout is not None:
            self._timer(timeout)

    def _stop_many_timed_out(self, step: StopManyStep) -> None:
        alive = [c for c in (self.children.get(n) for n in step.names) if c is not None and c.address is not None]
        if not step.killed:
            step.killed = True
            if alive:
                self.out.append(Log("warning", f"{self.name}: {', '.join(c.name for c in alive)} did not stop in time; killing them"))
            for child in alive:
                child.killed = True
                self.out.append(Kill(child.name, child.address, child.identity))
            self._timer(KILL_GRACE)
            return
        for child in alive:
            self._child_gone(child, "killed")
        if self.step is step:
            self.step = None

    def _queue_stops(self, names: list[str], reason: Any) -> None:
        if self.strategy == "simple_one_for_one" and names:
            self.steps.append(StopManyStep(tuple(names), reason))
        else:
            self.steps.extend(StopStep(n, reason) for n in names)

    def _on_StopRequested(self, event: StopRequested) -> None:
        if self.phase in ("stopping", "exiting", "stopped"):
            if not event.exit:
                if self.phase == "stopped":
                    self._reply(event.requester, "stopped")
                else:
                    self.stop_waiters.append(event.requester)
            return
        self._begin_stop(event.reason, event.requester, event.exit, event.cause)

    def _begin_stop(self, reason: Any, requester: Any = None, exit: bool = True, cause: str | None = None) -> None:
        self.phase = "stopping"
        self.deferred.clear()
        stopping = StartFailed(self.name, f"{self.name} is stopping")
        for step in self.steps:
            if isinstance(step, StartStep):
                self._reply(step.requester, error=stopping)
            elif isinstance(step, StopStep):
                self._reply(step.requester, None)
        self.steps.clear()
        current = self.step
        if isinstance(current, (DelayStep, StartStep)):
            # a backoff delay is moot; a child still starting is stopped like the others
            if isinstance(current, StartStep):
                self._reply(current.requester, error=stopping)
            self.step = None
        busy = current.name if isinstance(current, StopStep) and self.step is current else None
        for child in self.children.values():
            if child.status in ("exited", "restarting"):
                child.status = "stopped"
                self._report(child)
        alive = [c.name for c in self.children.values() if c.alive and c.name != busy]
        self._queue_stops(list(reversed(alive)), reason)
        self.steps.append(ExitStep(reason, cause) if exit else DoneStep(requester))
