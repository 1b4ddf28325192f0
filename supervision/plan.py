"""A supervisor's whole lifecycle as a pure state machine: events in, effects out, time injected.

`Plan.on(event, now)` takes one event (a child started, failed to start, exited; a timer fired;
a stop or a child-management request arrived) and returns the effects to carry out (spawn a
child, ask it to stop, kill it, set a timer, reply, register, report, exit). The supervisor
actor (`supervisor.py`) only turns thespian messages into events and executes effects; no
actor system is needed to test this module (tests/test_plan.py drives it against a model of
OTP's rules).

The plan is one class in four modules, by responsibility: `plan_table.py` (the child table,
the steps, stop budgets), `plan_stops.py` (stopping children and the supervisor),
`plan_requests.py` (the supervisor API: add/start/terminate/restart/delete child) and this
one (running the steps, starting children, deciding exits).

Semantics (OTP's supervisor(3) and supervisor.erl, OTP 25):
- children start one at a time in order; a child is `running` once its init finished and its
  name is registered; a start that fails (init raised, timed out, returned `Ignore`) is
  handled as OTP does: during the supervisor's own start it aborts it (children already
  started are stopped in reverse order); `Ignore` keeps the child stopped.
- an exit is decided by `policy.decide`; a restart waits the backoff delay (from the spec)
  first. A failed restart stops the sequence (the children after it are not started), counts
  as another restart, and is retried from that child (`restart(Child)` again, as OTP's
  `try_again_restart`).
- giving up (too many restarts) stops the children in reverse start order and exits with
  reason "shutdown"; the human cause travels separately (logs, tree, `Down.cause`).
- terminate_child keeps the spec of a non-temporary child (stopped); restart_child and
  delete_child act on stopped children only; simple_one_for_one children are removed when
  they stop.
- significant children and auto_shutdown (never / any_significant / all_significant).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Callable

import attrs

from supervision.errors import StartFailed
from supervision.intensity import RestartWindow
from supervision.policy import ChildView, Escalate, Exited, Ignore, Restart, decide, format_reason, is_normal
from supervision.plan_events import (  # noqa: F401 - re-exported: plan.Spawn, plan.Boot, ...
    Boot,
    Spawned,
    SpawnFailed,
    Linked,
    InitDone,
    InitFailed,
    InitIgnored,
    Registered,
    ChildExiting,
    ChildDown,
    TimerFired,
    StopRequested,
    AddChild,
    StartDynamic,
    TerminateChild,
    RestartChild,
    DeleteChild,
    ChildBudget,
    Spawn,
    Register,
    Terminate,
    Kill,
    Unregister,
    Report,
    Removed,
    SetTimer,
    Reply,
    ExpectExit,
    Ready,
    Exit,
    ExitNotice,
    Stopped,
    BudgetChanged,
    Log,
)
from supervision.plan_requests import ChildRequests
from supervision.plan_stops import Stopping
from supervision.plan_table import (  # noqa: F401 - re-exported: plan.Child, plan.StartStep, ...
    Child,
    ChildTable,
    DelayStep,
    DoneStep,
    ExitStep,
    ReadyStep,
    StartStep,
    Step,
    StopManyStep,
    StopStep,
    _default_key,
    describe_exit,
)
from supervision.specs import ChildSpec, SupervisorSpec


class Plan(ChildTable, Stopping, ChildRequests):
    """One supervisor's state: its children (indexed by name and by address), restart window,
    and the steps under way. Feed it events with `on`; carry out what it returns."""

    def __init__(
        self,
        name: str,
        spec: SupervisorSpec,
        rng: random.Random | None = None,
        key: Callable[[Any], Any] = _default_key,
    ) -> None:
        self.name = name
        self.spec = spec
        self.strategy = spec.strategy
        self.children: dict[str, Child] = {}
        self.by_key: dict[Any, Child] = {}
        self.key = key
        self.window = RestartWindow(spec.intensity, spec.period)
        self.steps: deque[Step] = deque()
        self.step: Step | None = None
        self.seq = 0
        self.deferred: deque[tuple[str, int, Any, str | None]] = deque()
        self.phase = "init"  # init | running | stopping | exiting | stopped
        self.dynamic_count = 0
        self.positions = 0
        self.rng = rng or random.Random()
        self.now = 0.0
        self.out: list[Any] = []
        self.reported_budget = spec.stop_timeout
        self.stop_waiters: list[Any] = []

    # --- the entry point --------------------------------------------------------------------

    def on(self, event: Any, now: float) -> list[Any]:
        self.now = now
        getattr(self, "_on_" + type(event).__name__)(event)
        self._advance()
        budget = self.budget()
        if self.phase == "running" and abs(budget - self.reported_budget) > 1e-9:
            self.reported_budget = budget
            self.out.append(BudgetChanged(budget))
        out, self.out = self.out, []
        return out

    # --- the run of steps ---------------------------------------------------------------------

    def _advance(self) -> None:
        while self.step is None:
            if self.steps:
                self.step = self.steps.popleft()
                self.seq += 1  # a timer armed for an earlier step never counts for this one
                self._execute(self.step)
                continue
            if self.phase == "running" and self.deferred:
                self._decide()
                continue
            return

    def _execute(self, step: Step) -> None:
        if isinstance(step, StartStep):
            self._exec_start(step)
        elif isinstance(step, StopStep):
            self._exec_stop(step)
        elif isinstance(step, StopManyStep):
            self._exec_stop_many(step)
        elif isinstance(step, DelayStep):
            if step.seconds <= 0:
                self.step = None
            else:
                self._timer(step.seconds)
        elif isinstance(step, ReadyStep):
            self.step = None
            self.phase = "running"
            self.out.append(Ready())
        elif isinstance(step, ExitStep):
            self.step = None
            self.phase = "exiting"
            self.out.append(Exit(step.reason, step.cause, step.failed))
        elif isinstance(step, DoneStep):
            self.step = None
            self.phase = "stopped"
            for requester in [step.requester, *self.stop_waiters]:
                self._reply(requester, "stopped")
            self.stop_waiters.clear()
            self.out.append(Stopped())

    def _timer(self, seconds: float) -> None:
        self.seq += 1
        self.out.append(SetTimer(max(0.0, seconds), self.seq))

    def _reply(self, requester: Any, value: Any = None, error: BaseException | None = None) -> None:
        if requester is not None:
            self.out.append(Reply(requester, value, error))

    def _report(self, child: Child) -> None:
        self.out.append(Report(child.name))

    # --- boot ---------------------------------------------------------------------------------

    def _on_Boot(self, event: Boot) -> None:
        if self.strategy == "simple_one_for_one":
            for _ in range(self.spec.start_children):
                spec = self._from_template(None, (), {})
                self._add(spec, dynamic=True)
        else:
            for spec in self.spec.children:
                self._add(spec)
        self.steps.extend(StartStep(name, "init") for name in self.children)
        self.steps.append(ReadyStep())

    def _add(self, spec: Any, dynamic: bool = False, restart: str | None = None) -> Child:
        self.positions += 1
        child = Child(spec, spec.name, restart or spec.restart, self.positions, dynamic=dynamic)
        self.children[child.name] = child
        return child

    def _from_template(self, name: str | None, args: tuple, kwargs: dict) -> ChildSpec:
        template = self.spec.template
        if name is None:
            self.dynamic_count += 1
            name = f"{template.name}-{self.dynamic_count}"
            while name in self.children:
                self.dynamic_count += 1
                name = f"{template.name}-{self.dynamic_count}"
        return attrs.evolve(template, name=name, args=template.args + args, kwargs={**template.kwargs, **kwargs})

    # --- starting -----------------------------------------------------------------------------

    def _exec_start(self, step: StartStep) -> None:
        child = self.children.get(step.name)
        if child is None or child.alive:
            self._reply(step.requester, step.name)
            self.step = None
            return
        if self.phase in ("stopping", "exiting", "stopped") and step.purpose != "init":
            self._reply(step.requester, error=StartFailed(step.name, f"{self.name} is stopping"))
            self.step = None
            return
        child.incarnation += 1
        child.status = "starting"
        child.exit_reason = child.exit_cause = None
        child.killed = child.registering = child.unregistered = False
        child.identity = None
        if step.purpose == "restart":
            child.restarts += 1
        self.out.append(Spawn(child.name, child.spec, child.incarnation))
        self._report(child)

    def _starting(self, child: Child | None) -> StartStep | None:
        step = self.step
        if child is not None and isinstance(step, StartStep) and step.name == child.name and child.status == "starting":
            return step
        return None

    def _on_Spawned(self, event: Spawned) -> None:
        child = self.children.get(event.name)
        if child is None or child.incarnation != event.incarnation or self._starting(child) is None:
            return
        child.address = event.address
        key = self.key(event.address)
        self.by_key[key] = child
        child.keys.append(key)
        self._timer(child.spec.start_timeout)

    def _on_SpawnFailed(self, event: SpawnFailed) -> None:
        child = self.children.get(event.name)
        step = self._starting(child)
        if step is not None and child.incarnation == event.incarnation:
            self._start_failed(step, f"could not create the actor: {event.reason}")

    def _on_Linked(self, event: Linked) -> None:
        child = self.child_at(event.address)
        if child is not None and child.identity is None:
            child.identity = event.identity  # reported with the next row (one message less per restart)

    def _on_InitDone(self, event: InitDone) -> None:
        child = self.child_at(event.address)
        if self._starting(child) is None:
            return
        if event.identity is not None:
            child.identity = event.identity
        child.registering = True
        self.out.append(Register(child.name, child.incarnation))

    def _on_Registered(self, event: Registered) -> None:
        child = self.children.get(event.name)
        step = self._starting(child)
        if step is None or child.incarnation != event.incarnation:
            return
        if event.error is not None:
            self._start_failed(step, event.error, kill=True)
            return
        child.status = "running"
        child.registering = False
        self._report(child)
        self._reply(step.requester, child.name)
        self.step = None

    def _on_InitFailed(self, event: InitFailed) -> None:
        child = self.child_at(event.address)
        step = self._starting(child)
        if step is not None:
            # the process exits by itself (it runs no terminate: its init never finished)
            self.out.append(ExpectExit(child.address))
            self._start_failed(step, event.reason)

    def _on_InitIgnored(self, event: InitIgnored) -> None:
        child = self.child_at(event.address)
        step = self._starting(child)
        if step is None:
            return
        self.out.append(ExpectExit(child.address))
        self._detach(child, "normal", unregister=False)
        child.status = "stopped"
        child.last_exit = "ignored (init returned Ignore)"
        self.step = None
        if step.purpose == "dynamic" and (self.strategy == "simple_one_for_one" or child.restart == "temporary"):
            self._remove(child)
        else:
            self._report(child)
        self._reply(step.requester, None)

    def _start_failed(self, step: StartStep, reason: str, kill: bool = False) -> None:
        """The child of `step` did not come up: forget (or kill) what is left of it, then act as
        OTP does for this kind of start."""
        child = self.children.get(step.name)
        self.out.append(Log("warning", f"{self.name}: starting {step.name} failed: {reason}"))
        if child is not None:
            if child.address is not None:
                if kill:
                    self.out.append(Kill(child.name, child.address, child.identity))
                    self.out.append(ExpectExit(child.address))
                self._detach(child, f"start failed: {reason}", unregister=child.registering)
            child.status = "stopped"
            child.last_exit = f"start failed: {reason}"
            self._report(child)
        self.step = None
        if step.purpose == "init":
            self._abort_init(step.name, reason)
        elif step.purpose == "dynamic":
            if child is not None:
                self._remove(child)
            self._reply(step.requester, error=StartFailed(step.name, reason))
        elif step.purpose == "manual":
            self._reply(step.requester, error=StartFailed(step.name, reason))
        elif child is not None:
            # OTP: the restart sequence stops at the child that failed; the failure counts as
            # another restart and is retried from that child (try_again_restart)
            while self.steps and isinstance(self.steps[0], StartStep) and self.steps[0].purpose == "restart":
                self.steps.popleft()
            child.status = "exited"
            self.deferred.appendleft((child.name, child.incarnation, f"start failed: {reason}", None))

    def _abort_init(self, name: str, reason: str) -> None:
        self.steps.clear()
        self.phase = "exiting"
        running = [c.name for c in self.children.values() if c.alive]
        self.steps.extend(StopStep(n, "shutdown") for n in reversed(running))
        self.steps.append(ExitStep("shutdown", f"failed to start child {name}: {reason}", failed=(name, reason)))

    # --- timers -------------------------------------------------------------------------------

    def _on_TimerFired(self, event: TimerFired) -> None:
        step = self.step
        if event.seq != self.seq or step is None:
            return
        if isinstance(step, DelayStep):
            self.step = None
        elif isinstance(step, StartStep):
            child = self.children.get(step.name)
            timeout = child.spec.start_timeout if child is not None else 0
            self._start_failed(step, f"init did not finish within {timeout:g} s", kill=True)
        elif isinstance(step, StopStep):
            self._stop_timed_out(step)
        elif isinstance(step, StopManyStep):
            self._stop_many_timed_out(step)

    # --- exits ----------------------------------------------------------------------------------

    def _on_ChildExiting(self, event: ChildExiting) -> None:
        child = self.child_at(event.address)
        if child is None:
            return
        child.exit_reason = event.reason
        child.exit_cause = event.cause
        if not child.unregistered:
            # stop handing out the address of an actor that is on its way out
            child.unregistered = True
            self.out.append(Unregister(child.name, child.address, event.reason, event.cause))
        self.out.append(ExpectExit(child.address))

    def _on_ChildDown(self, event: ChildDown) -> None:
        child = self.child_at(event.address)
        if child is not None:
            self._child_gone(child, event.reason)

    def _on_ChildBudget(self, event: ChildBudget) -> None:
        child = self.child_at(event.address)
        if child is not None:
            child.budget = float(event.seconds)

    def _detach(self, child: Child, reason: Any, cause: str | None = None, unregister: bool = True) -> None:
        address = child.address
        for key in child.keys:
            if self.by_key.get(key) is child:
                del self.by_key[key]
        child.keys.clear()
        child.address = None
        child.identity = None
        if unregister and address is not None and not child.unregistered:
            self.out.append(Unregister(child.name, address, reason, cause))
        child.unregistered = False

    def _child_gone(self, child: Child, default_reason: Any) -> None:
        """The current process of `child` is gone (it exited, or was killed)."""
        reason = child.exit_reason if child.exit_reason is not None else default_reason
        cause = child.exit_cause
        step = self.step
        self._detach(child, reason, cause)
        if isinstance(step, StopStep) and step.name == child.name:
            child.status = "stopped"
            if not is_normal(reason):
                child.last_exit = describe_exit(reason, cause)
            self._remove(child) if step.remove else self._report(child)
            self._reply(step.requester, None)
            self.step = None
        elif isinstance(step, StopManyStep) and child.name in step.names:
            child.status = "stopped"
            self._remove(child) if child.dynamic else self._report(child)
            if not any(c.alive for c in (self.children.get(n) for n in step.names) if c is not None):
                self.step = None
        elif self._starting(child) is step and step is not None and not child.registering:
            self._start_failed(step, f"exited during init ({format_reason(reason)})")
        elif self._starting(child) is step and step is not None:
            # its init had finished (OTP: started); it exited before its name was registered:
            # an exit like any other, decided once the plan is free
            self._reply(step.requester, child.name)
            self.step = None
            child.status = "exited"
            child.last_exit = describe_exit(reason, cause)
            self._report(child)
            self.deferred.append((child.name, child.incarnation, reason, cause))
        else:
            child.status = "exited"
            child.last_exit = describe_exit(reason, cause)
            self._report(child)
            self.deferred.append((child.name, child.incarnation, reason, cause))

    # --- deciding -------------------------------------------------------------------------------

    def _decide(self) -> None:
        name, incarnation, reason, cause = self.deferred.popleft()
        child = self.children.get(name)
        if child is None or child.incarnation != incarnation or child.status != "exited":
            return
        order = list(self.children.values())
        views = [ChildView(c.name, c.restart, c.alive or c is child) for c in order]
        decision, self.window = decide(self.strategy, views, name, reason, self.window, self.now)
        text = describe_exit(reason, cause)
        if isinstance(decision, Ignore):
            child.status = "stopped"
        elif isinstance(decision, Exited):
            child.status = "stopped"
            self.out.append(Log("info", f"{self.name}: {name} exited ({text}); not restarted ({child.restart})"))
            self.out.append(ExitNotice(name, reason, cause, decision.remove, child))
            self._remove(child) if decision.remove else self._report(child)
            self._auto_shutdown(child, text)
        elif isinstance(decision, Restart):
            count = self.window.count(self.now)
            delay = self.spec.backoff.delay(count, self.rng)
            self.out.append(
                Log(
                    "warning",
                    f"{self.name}: {name} exited ({text}); restarting {', '.join(decision.start)} "
                    f"(restart {count} of {self.window.intensity} allowed in {self.window.period:g} s, after {delay:.3f} s)",
                )
            )
            child.status = "restarting"
            self._report(child)
            self.steps.extend(StopStep(n, "shutdown", remove=n in decision.remove) for n in decision.stop)
            for n in decision.remove:
                if n not in decision.stop and n in self.children:
                    self._remove(self.children[n])
            self.steps.append(DelayStep(delay))
            self.steps.extend(StartStep(n, "restart") for n in decision.start)
        elif isinstance(decision, Escalate):
            story = f"{decision.reason}; last exit: {name} ({text})"
            self.out.append(Log("error", f"{self.name}: giving up: {story}"))
            child.status = "stopped"
            self._report(child)
            self.phase = "exiting"
            self.deferred.clear()
            self._queue_stops(list(decision.stop), "shutdown")
            self.steps.append(ExitStep("shutdown", story))

    def _auto_shutdown(self, child: Child, text: str) -> None:
        mode = self.spec.auto_shutdown
        if not child.significant or mode == "never":
            return
        if mode == "all_significant" and any(c.significant and c.alive for c in self.children.values()):
            return
        self._begin_stop("shutdown", cause=f"auto_shutdown={mode}: significant child {child.name} exited ({text})")

    # --- bookkeeping ----------------------------------------------------------------------------

    def _remove(self, child: Child) -> None:
        if self.children.get(child.name) is child:
            del self.children[child.name]
            self._detach(child, "shutdown", unregister=False)
            self.out.append(Removed(child.name))
