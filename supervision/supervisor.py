"""The supervisor actor: a thin shell that executes what `policy.decide` returns.

A supervisor starts its children in order (each must finish `init` and be registered by name
before the next starts), watches them (thespian's `ChildActorExited` where the base reports it,
and its own check of the children's processes where it does not), restarts them per policy
with backoff, and stops them in reverse order, each within its shutdown timeout and then killed.
More restarts than `intensity` within `period` and it gives up: it stops its children and exits,
and its own supervisor applies its policy.

Everything a supervisor does that needs waiting (a start, a stop, a backoff delay) is a step in
one plan, run one at a time; child exits that arrive meanwhile wait until the plan is done and
are then decided in arrival order, ignoring any that a later restart already superseded.
"""

from __future__ import annotations

import os
import random
from collections import deque
from typing import Any, Callable

import attrs

from supervision.logs import logger
from supervision.errors import ErrorInfo, NoSuchName, SpecError, StartFailed, SupervisionError
from supervision.intensity import RestartWindow
from supervision.liveness import ProcessIdentity
from supervision.messages import (
    ChildInfo,
    CountChildren,
    Envelope,
    ErrorReply,
    Exiting,
    Init,
    InitFailed,
    MonitorChanged,
    NodeRemoved,
    NodeRow,
    Register,
    RegistryEntry,
    Reply,
    StartChild,
    Started,
    StepTimer,
    Terminate,
    TerminateChild,
    Unregister,
    WhichChildren,
)
from supervision.policy import ChildView, Escalate, Exited, Ignore, Restart, decide
from supervision.process import Process
from supervision.router import new_corr, type_name
from supervision.specs import BRUTAL_KILL, KILL_GRACE, ChildSpec, SupervisorSpec, validate_name

log = logger("supervision.supervisor")

#: How often to look at a child's process while it is expected to exit (stop requested, or it
#: said it is exiting): thespian's queue base never reports the exit itself.
EXPECTED_EXIT_POLL = 0.01


@attrs.frozen
class AddChild:
    """Add and start a new child (any strategy but simple_one_for_one). Reply: its name."""

    spec: Any


@attrs.define(eq=False)
class Child:
    spec: Any
    name: str
    dynamic: bool = False
    address: Any = None
    identity: ProcessIdentity | None = None
    #: stopped | starting | running | stopping | exited (down, decision pending) | restarting
    status: str = "stopped"
    incarnation: int = 0
    restarts: int = 0
    exit_reason: str | None = None
    last_exit: str | None = None
    killed: bool = False

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def actor_class(self) -> type:
        return Supervisor if isinstance(self.spec, SupervisorSpec) else self.spec.actor

    @property
    def alive(self) -> bool:
        return self.status in ("starting", "running", "stopping")


# --- plan steps ----------------------------------------------------------------------------


@attrs.define
class _Requester:
    envelope: Envelope | None
    sender: Any


@attrs.define
class StartStep:
    name: str
    purpose: str  # init | restart | dynamic
    requester: _Requester | None = None
    register_corr: str | None = None


@attrs.define
class StopStep:
    name: str
    reason: str
    remove: bool = False
    requester: _Requester | None = None


@attrs.define
class StopManyStep:
    """Stop several children at once (dynamic children, as OTP does)."""

    names: tuple[str, ...]
    reason: str
    killed: bool = False


@attrs.define
class DelayStep:
    seconds: float


@attrs.define
class CallStep:
    call: Callable[[], None]


@attrs.define
class ExitStep:
    reason: str
    error: ErrorInfo | None = None
    init_failed: bool = False


Step = StartStep | StopStep | StopManyStep | DelayStep | CallStep | ExitStep


class Supervisor(Process):
    supervisor_class = True
    system_handlers = {
        **Process.system_handlers,
        Started: "_on_started",
        InitFailed: "_on_init_failed",
        Exiting: "_on_exiting",
    }

    def __init__(self) -> None:
        super().__init__()
        self.children: list[Child] = []
        self.window = RestartWindow(0, 1.0)
        self.steps: deque[Step] = deque()
        self.step: Step | None = None
        self.step_seq = 0
        self.deferred_exits: deque[tuple[str, int, str]] = deque()
        self.phase = "init"  # init | running | stopping | exiting
        self.dynamic_count = 0
        self.rng = random.Random()
        #: children whose exit is expected soon (checked every EXPECTED_EXIT_POLL)
        self.expecting: list[Child] = []
        self.next_full_check = 0.0

    # --- introspection helpers ------------------------------------------------------------------

    @property
    def strategy(self) -> str:
        return self.spec.strategy

    def child(self, name: str) -> Child | None:
        for child in self.children:
            if child.name == name:
                return child
        return None

    def child_at(self, address: Any) -> Child | None:
        if address is None:
            return None
        for child in self.children:
            if child.address is not None and child.address == address:
                return child
        return None

    # --- start ------------------------------------------------------------------------------------

    def on_init(self, message: Init) -> None:
        spec: SupervisorSpec = message.spec
        self.window = RestartWindow(spec.intensity, spec.period)
        if spec.strategy != "simple_one_for_one":
            self.children = [Child(child_spec, child_spec.name) for child_spec in spec.children]
        self.steps.extend(StartStep(child.name, "init") for child in self.children)
        self.steps.append(CallStep(self._finish_init))
        self.advance()

    def _finish_init(self) -> None:
        self.phase = "running"
        self.report_started()

    # --- the plan ---------------------------------------------------------------------------------

    def advance(self) -> None:
        """Run steps until one has to wait; when the plan is empty, handle deferred exits."""
        while self.step is None:
            if self.steps:
                step = self.steps.popleft()
                self.step = step
                self._execute(step)
                continue
            if self.phase == "running" and self.deferred_exits:
                self._decide_next()
                continue
            return

    def finish_step(self) -> None:
        self.step = None
        self.advance()

    def _arm_step_timer(self, seconds: float) -> None:
        self.step_seq += 1
        self.wakeupAfter(max(0.0, seconds), StepTimer(self.step_seq))

    def _execute(self, step: Step) -> None:
        if isinstance(step, StartStep):
            self._start_child(step)
        elif isinstance(step, StopStep):
            self._stop_child(step)
        elif isinstance(step, StopManyStep):
            self._stop_many(step)
        elif isinstance(step, DelayStep):
            if step.seconds <= 0:
                self.step = None
            else:
                self._arm_step_timer(step.seconds)
        elif isinstance(step, CallStep):
            self.step = None
            step.call()
        elif isinstance(step, ExitStep):
            self.step = None
            self._exit_supervisor(step)

    def on_timer(self, payload: Any) -> None:
        if not isinstance(payload, StepTimer) or payload.seq != self.step_seq or self.step is None:
            return
        step = self.step
        if isinstance(step, DelayStep):
            self.finish_step()
        elif isinstance(step, StartStep):
            child = self.child(step.name)
            timeout = child.spec.start_timeout if child else 0
            self._start_failed(step, f"init did not finish within {timeout:g} s")
        elif isinstance(step, StopStep):
            self._stop_timed_out(step)
        elif isinstance(step, StopManyStep):
            self._stop_many_timed_out(step)

    # --- starting a child ---------------------------------------------------------------------------

    def _start_child(self, step: StartStep) -> None:
        child = self.child(step.name)
        if child is None or child.alive:
            self.step = None
            return
        if self.phase in ("stopping", "exiting") and step.purpose != "init":
            self._reply_requester(step.requester, error=StartFailed(step.name, f"{self.name} is stopping"))
            self.step = None
            return
        try:
            address = self.createActor(child.actor_class)
        except Exception as exc:  # noqa: BLE001
            child.status = "stopped"
            self._start_failed(step, f"could not create the actor: {type(exc).__name__}: {exc}")
            return
        child.address = address
        child.identity = None
        child.status = "starting"
        child.exit_reason = None
        child.killed = False
        child.incarnation += 1
        if step.purpose == "restart":
            child.restarts += 1
        self.send(
            address,
            Init(
                child.name,
                child.spec,
                self.name,
                self.context,
                parent_pid=None if self.in_process else os.getpid(),
            ),
        )
        self._arm_step_timer(child.spec.start_timeout)
        self.report(child)

    def _on_started(self, message: Started, sender: Any) -> None:
        step = self.step
        child = self.child_at(sender)
        if not isinstance(step, StartStep) or child is None or child.name != step.name:
            return
        child.identity = message.identity
        self.register(child, step)

    def register(self, child: Child, step: StartStep) -> None:
        step.register_corr = new_corr("g")
        self.send(self.monitor_address, Register(self.entry(child), step.register_corr))

    def entry(self, child: Child) -> RegistryEntry:
        return RegistryEntry(
            child.name,
            child.address,
            child.identity,
            self.name,
            child.kind,
            child.actor_class.__qualname__,
        )

    def on_unmatched_reply(self, message: Reply | ErrorReply, sender: Any) -> None:
        step = self.step
        if not isinstance(step, StartStep) or step.register_corr != message.corr:
            if isinstance(message, ErrorReply):
                log.warning("%s: %s", self.name, message.error.message)
            return
        child = self.child(step.name)
        if isinstance(message, ErrorReply):
            self._start_failed(step, message.error.message)
            return
        assert child is not None
        child.status = "running"
        log.debug("%s started %s (pid %s)", self.name, child.name, child.identity and child.identity.pid)
        self.report(child)
        if child.identity is not None and self.context is not None:
            self.arm_timer(self.clock() + self.context.liveness_interval)
        self._reply_requester(step.requester, value=child.name)
        self.finish_step()

    def _on_init_failed(self, message: InitFailed, sender: Any) -> None:
        step = self.step
        child = self.child_at(sender)
        if isinstance(step, StartStep) and child is not None and child.name == step.name:
            reason = f"init raised {message.error.type_name}: {message.error.message}"
            child.exit_reason = reason
            self._start_failed(step, reason)

    def _start_failed(self, step: StartStep, reason: str) -> None:
        """The child of `step` did not come up. Kill what is left of it and decide."""
        child = self.child(step.name)
        log.warning("%s: starting %s failed: %s", self.name, step.name, reason)
        if child is not None:
            if child.address is not None:
                self._kill(child)
                self._gone(child, reason, notify=True)
            child.status = "stopped"
            child.last_exit = f"start failed: {reason}"
            self.report(child)
        self.step = None
        if step.purpose == "init":
            self._abort_init(step.name, reason)
        elif step.purpose == "dynamic":
            if child is not None:
                self._remove(child)
            self._reply_requester(step.requester, error=StartFailed(step.name, reason))
        elif child is not None:
            # a failed restart counts as another exit of the child: decided like one
            child.status = "exited"
            self.deferred_exits.appendleft((child.name, child.incarnation, f"start failed: {reason}"))
        self.advance()

    def _abort_init(self, name: str, reason: str) -> None:
        self.steps.clear()
        self.phase = "exiting"
        running = [c.name for c in self.children if c.alive]
        self.steps.extend(StopStep(n, "shutdown") for n in reversed(running))
        error = ErrorInfo.from_exception(StartFailed(name, reason), with_traceback=False)
        self.steps.append(ExitStep(f"start of {name} failed: {reason}", error, init_failed=True))

    # --- stopping a child ---------------------------------------------------------------------------

    def _stop_child(self, step: StopStep) -> None:
        child = self.child(step.name)
        if child is None or not child.alive:
            if child is not None:
                child.status = "stopped"
                self._remove(child) if step.remove else self.report(child)
            self._reply_requester(step.requester, value=None)
            self.step = None
            return
        child.status = "stopping"
        self.report(child)
        if child.spec.shutdown == BRUTAL_KILL:
            self._kill(child)
            self._arm_step_timer(KILL_GRACE)
        else:
            self.send(child.address, Terminate(step.reason))
            self._arm_step_timer(child.spec.stop_timeout)
        self.expect_exit(child)

    def _stop_timed_out(self, step: StopStep) -> None:
        child = self.child(step.name)
        if child is None or child.address is None:
            self.finish_step()
            return
        if not child.killed:
            log.warning("%s: %s did not stop within %g s; killing it", self.name, child.name, child.spec.stop_timeout)
            self._kill(child)
            self._arm_step_timer(KILL_GRACE)
            return
        if child.identity is not None and child.identity.is_alive():
            log.error("%s: %s (pid %s) survived SIGKILL; giving up on it", self.name, child.name, child.identity.pid)
        self._child_exited(child, "killed")

    def _stop_many(self, step: StopManyStep) -> None:
        alive = [c for c in (self.child(n) for n in step.names) if c is not None and c.alive]
        if not alive:
            self.step = None
            return
        shutdown = alive[0].spec.shutdown
        for child in alive:
            child.status = "stopping"
            if shutdown == BRUTAL_KILL:
                self._kill(child)
            else:
                self.send(child.address, Terminate(step.reason))
            self.expect_exit(child)
        step.killed = shutdown == BRUTAL_KILL
        self._arm_step_timer(KILL_GRACE if step.killed else alive[0].spec.stop_timeout)

    def _stop_many_timed_out(self, step: StopManyStep) -> None:
        alive = [c for c in (self.child(n) for n in step.names) if c is not None and c.address is not None]
        if not step.killed:
            if alive:
                log.warning("%s: %s did not stop in time; killing them", self.name, ", ".join(c.name for c in alive))
            step.killed = True
            for child in alive:
                self._kill(child)
            self._arm_step_timer(KILL_GRACE)
            return
        for child in alive:
            self._child_exited(child, "killed")
        if self.step is step:
            self.finish_step()

    def _kill(self, child: Child) -> None:
        child.killed = True
        if child.identity is not None and not self.in_process:
            child.identity.kill()
        elif child.address is not None:
            from thespian.actors import ActorExitRequest

            self.send(child.address, ActorExitRequest())

    # --- noticing exits -------------------------------------------------------------------------------

    def _on_exiting(self, message: Exiting, sender: Any) -> None:
        child = self.child_at(sender)
        if child is not None:
            child.exit_reason = message.reason
            # stop handing out the address of an actor that is on its way out
            if self.monitor_address is not None:
                self.send(self.monitor_address, Unregister(child.name, child.address, message.reason))
            self.expect_exit(child)

    def _on_child_exited(self, message: Any, sender: Any) -> None:
        child = self.child_at(message.childAddress)
        if child is not None:
            self._child_exited(child, "killed")

    def on_tick(self, now: float) -> float | None:
        """Look at the children's processes: every `liveness_interval` all of them, and every
        few milliseconds the ones that are expected to exit (asked to stop, or said so)."""
        if self.in_process or self.context is None:
            return None
        full = now >= self.next_full_check
        if full:
            self.next_full_check = now + self.context.liveness_interval
        for child in list(self.children if full else self.expecting):
            if child.identity is not None and child.address is not None and not child.identity.is_alive():
                self._child_exited(child, "killed")
        self.expecting = [c for c in self.expecting if c.address is not None]
        if self.expecting:
            return min(self.next_full_check, now + EXPECTED_EXIT_POLL)
        if any(c.identity is not None and c.address is not None for c in self.children):
            return self.next_full_check
        return None

    def expect_exit(self, child: Child) -> None:
        """`child` should exit soon: check its process often (thespian's queue base never says)."""
        if child not in self.expecting:
            self.expecting.append(child)
        self.arm_timer(self.clock() + EXPECTED_EXIT_POLL)

    def _child_exited(self, child: Child, default_reason: str) -> None:
        """The current incarnation of `child` is gone (the process exited or was killed)."""
        reason = child.exit_reason or default_reason
        step = self.step
        self._gone(child, reason, notify=True)
        if isinstance(step, StopStep) and step.name == child.name:
            child.status = "stopped"
            child.last_exit = reason if reason not in ("shutdown", "normal") else child.last_exit
            if step.remove:
                self._remove(child)
            else:
                self.report(child)
            self._reply_requester(step.requester, value=None)
            self.finish_step()
        elif isinstance(step, StopManyStep) and child.name in step.names:
            child.status = "stopped"
            self._remove(child) if child.dynamic else self.report(child)
            if not any(c.alive for c in (self.child(n) for n in step.names) if c is not None):
                self.finish_step()
        elif isinstance(step, StartStep) and step.name == child.name:
            self._start_failed(step, f"exited during init ({reason})")
        else:
            child.status = "exited"
            child.last_exit = reason
            self.report(child)
            self.deferred_exits.append((child.name, child.incarnation, reason))
            if self.step is None:
                self.advance()

    def _gone(self, child: Child, reason: str, notify: bool) -> None:
        address = child.address
        child.address = None
        child.identity = None
        child.exit_reason = None
        if notify and address is not None and self.monitor_address is not None:
            self.send(self.monitor_address, Unregister(child.name, address, reason))

    # --- deciding ----------------------------------------------------------------------------------

    def _decide_next(self) -> None:
        name, incarnation, reason = self.deferred_exits.popleft()
        child = self.child(name)
        if child is None or child.incarnation != incarnation or child.status != "exited":
            return
        views = [ChildView(c.name, c.spec.restart, c.alive or c.name == name) for c in self.children]
        decision, self.window = decide(self.strategy, views, name, reason, self.window, self.clock())
        if isinstance(decision, Ignore):
            child.status = "stopped"
        elif isinstance(decision, Exited):
            child.status = "stopped"
            log.info("%s: %s exited (%s); not restarted (%s)", self.name, name, reason, child.spec.restart)
            self._remove(child) if decision.remove else self.report(child)
        elif isinstance(decision, Restart):
            count = self.window.count(self.clock())
            delay = self.spec.backoff.delay(count, self.rng)
            log.warning(
                "%s: %s exited (%s); restarting %s (restart %d of %d allowed in %g s, after %.3f s)",
                self.name, name, reason, ", ".join(decision.start), count, self.window.intensity,
                self.window.period, delay,
            )  # fmt: skip
            child.status = "restarting"
            self.report(child)
            self.steps.extend(StopStep(n, "shutdown", remove=n in decision.remove) for n in decision.stop)
            for n in decision.remove:
                if n not in decision.stop and self.child(n) is not None:
                    self._remove(self.child(n))
            self.steps.append(DelayStep(delay))
            self.steps.extend(StartStep(n, "restart") for n in decision.start)
        elif isinstance(decision, Escalate):
            log.error("%s: %s exited (%s); %s: giving up", self.name, name, reason, decision.reason)
            child.status = "stopped"
            self.report(child)
            self.phase = "exiting"
            self.deferred_exits.clear()
            self.steps.extend(StopStep(n, "shutdown") for n in decision.stop)
            self.steps.append(ExitStep(f"escalated: {decision.reason}; last exit: {name} ({reason})"))

    # --- stopping the supervisor ---------------------------------------------------------------------

    def _on_terminate(self, message: Terminate, sender: Any) -> None:
        if self.phase in ("stopping", "exiting"):
            return
        self.begin_stop(message.reason, ExitStep(message.reason))

    def begin_stop(self, reason: str, last: Step) -> None:
        self.phase = "stopping"
        self.deferred_exits.clear()
        for step in self.steps:
            if isinstance(step, (StartStep, StopStep)):
                self._reply_requester(step.requester, error=StartFailed(step.name, f"{self.name} is stopping"))
        self.steps.clear()
        if isinstance(self.step, (DelayStep, StartStep)):
            # a backoff delay is moot; a child still starting is stopped like the others
            if isinstance(self.step, StartStep):
                self._reply_requester(self.step.requester, error=StartFailed(self.step.name, f"{self.name} is stopping"))
            self.step = None
        for child in self.children:
            if child.status in ("exited", "restarting"):
                child.status = "stopped"
        alive = [c.name for c in self.children if c.alive]
        if self.strategy == "simple_one_for_one" and alive:
            self.steps.append(StopManyStep(tuple(alive), reason))
        else:
            self.steps.extend(StopStep(n, reason) for n in reversed(alive))
        self.steps.append(last)
        self.advance()

    def _exit_supervisor(self, step: ExitStep) -> None:
        self.phase = "exiting"
        if step.init_failed and step.error is not None:
            self.send(self.parent_address, InitFailed(self.name, step.error))
            self.exit_now()
        else:
            self.exit(step.reason, step.error)

    # --- requests: the supervisor API ------------------------------------------------------------------

    def on_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        requester = _Requester(envelope, sender)
        try:
            if isinstance(payload, WhichChildren):
                self.send_reply(envelope, sender, self.which_children())
            elif isinstance(payload, CountChildren):
                self.send_reply(envelope, sender, self.count_children())
            elif isinstance(payload, StartChild):
                self._request_start_child(payload, requester)
            elif isinstance(payload, AddChild):
                self._request_add_child(payload, requester)
            elif isinstance(payload, TerminateChild):
                self._request_terminate_child(payload, requester)
            else:
                self.on_other_request(payload, envelope, sender)
        except SupervisionError as exc:
            self.send_error(envelope, sender, exc)

    def on_other_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        from supervision.errors import UnknownMessage

        self.send_error(envelope, sender, UnknownMessage(self.name, type_name(payload)))

    def _check_accepting(self) -> None:
        if self.phase in ("stopping", "exiting"):
            raise StartFailed(self.name, f"{self.name} is stopping")

    def _request_start_child(self, message: StartChild, requester: _Requester) -> None:
        self._check_accepting()
        template = self.spec.template
        if template is None:
            raise SpecError(
                f"{self.name}.start_child",
                f"{self.name} is {self.strategy}; start_child with args needs simple_one_for_one (use add_child(spec))",
            )
        if not isinstance(message.args, tuple) or not isinstance(message.kwargs, dict):
            raise SpecError("StartChild.args", "args must be a tuple and kwargs a dict")
        if message.name is None:
            self.dynamic_count += 1
            name = f"{template.name}-{self.dynamic_count}"
            while self.child(name) is not None:
                self.dynamic_count += 1
                name = f"{template.name}-{self.dynamic_count}"
        else:
            name = validate_name(message.name, "StartChild.name")
        spec = attrs.evolve(template, name=name, args=template.args + message.args, kwargs={**template.kwargs, **message.kwargs})
        self._add(spec, requester)

    def _request_add_child(self, message: AddChild, requester: _Requester) -> None:
        self._check_accepting()
        if self.strategy == "simple_one_for_one":
            raise SpecError(f"{self.name}.add_child", "a simple_one_for_one supervisor starts children with start_child")
        if not isinstance(message.spec, (ChildSpec, SupervisorSpec)):
            raise SpecError("AddChild.spec", f"must be a ChildSpec or SupervisorSpec; got {type(message.spec).__name__}")
        self._add(message.spec, requester)

    def _add(self, spec: Any, requester: _Requester) -> None:
        if self.child(spec.name) is not None:
            from supervision.errors import AlreadyRegistered

            raise AlreadyRegistered(spec.name, f"a child of {self.name}")
        child = Child(spec, spec.name, dynamic=True)
        self.children.append(child)
        self.steps.append(StartStep(child.name, "dynamic", requester))
        self.advance()

    def _request_terminate_child(self, message: TerminateChild, requester: _Requester) -> None:
        if self.child(message.name) is None:
            raise NoSuchName(message.name, f"it is not a child of {self.name}")
        self.steps.append(StopStep(message.name, "shutdown", remove=True, requester=requester))
        self.advance()

    def _reply_requester(self, requester: _Requester | None, value: Any = None, error: BaseException | None = None) -> None:
        if requester is None:
            return
        if error is not None:
            self.send_error(requester.envelope, requester.sender, error)
        else:
            self.send_reply(requester.envelope, requester.sender, value)

    def which_children(self) -> tuple[ChildInfo, ...]:
        return tuple(
            ChildInfo(
                c.name,
                c.kind,
                c.actor_class.__qualname__,
                c.status,
                c.identity.pid if c.identity else None,
                c.restarts,
            )
            for c in self.children
        )

    def count_children(self) -> dict[str, int]:
        return {
            "specs": len(self.children),
            "active": sum(1 for c in self.children if c.status == "running"),
            "supervisors": sum(1 for c in self.children if c.kind == "supervisor"),
            "workers": sum(1 for c in self.children if c.kind == "worker"),
        }

    # --- bookkeeping --------------------------------------------------------------------------------

    def _remove(self, child: Child) -> None:
        if child in self.children:
            self.children.remove(child)
            if self.monitor_address is not None:
                self.send(self.monitor_address, NodeRemoved(child.name))

    def report(self, child: Child) -> None:
        if self.monitor_address is None:
            return
        spec = child.spec
        self.send(
            self.monitor_address,
            NodeRow(
                child.name,
                self.name,
                child.kind,
                child.actor_class.__qualname__,
                spec.restart,
                spec.strategy if isinstance(spec, SupervisorSpec) else None,
                child.status,
                child.identity.pid if child.identity else None,
                child.restarts,
                self.children.index(child) if child in self.children else -1,
                child.last_exit,
            ),
        )

    def on_monitor_changed(self, message: MonitorChanged) -> None:
        for child in self.children:
            if child.status == "running":
                self.send(self.monitor_address, Register(self.entry(child), new_corr("g")))
                self.send(child.address, message)
            self.report(child)
        step = self.step
        if isinstance(step, StartStep) and step.register_corr is not None:
            child = self.child(step.name)
            if child is not None:
                self.register(child, step)

    def on_exit_request(self) -> None:
        if self.phase not in ("exiting", "stopped"):
            log.info("%s: removed by the actor system (not by its parent)", self.name)
