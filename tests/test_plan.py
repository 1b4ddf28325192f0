"""The pure supervisor plan, driven without an actor system against a small model of OTP's rules.

`Sim` plays the children (they start, fail, hang, ignore, exit at once); `Model` is an
independent transcription of supervisor(3): which children run, which are removed, what is
started and stopped in which order, and when the supervisor gives up (reason shutdown), plus
our one addition, backoff between restarts (README: the first restart in a window is
immediate, the k-th waits min * 2**(k-2) up to max). Time is the simulation's: a backoff
delay or a start timeout moves it on, and the model must agree on the clock too.

A child may be a supervisor: `Sim` runs a nested plan for it (its give-up reaches the parent as
an exit with reason shutdown), and `Model` a nested model, sharing the trace and the clock.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from supervision import plan as P
from supervision.errors import AlreadyPresent, ChildRunning, NoSuchName, SpecError, StartFailed
from supervision.server import Server
from supervision.specs import Backoff, ChildSpec, SupervisorSpec

NO_BACKOFF = Backoff(min=0.0, max=0.0)
#: no jitter, so that the model can compute every delay
BACKOFFS = [NO_BACKOFF, Backoff(min=0.5, max=2.0, jitter=0.0), Backoff(min=3.0, max=10.0, jitter=0.0)]
START_TIMEOUT = 1.0


def normal(reason) -> bool:
    """supervisor(3): normal, shutdown and {shutdown, Term} are normal exits."""
    return reason in ("normal", "shutdown") or (isinstance(reason, tuple) and reason[0] == "shutdown")


def backoff_delay(backoff: Backoff, restarts_in_window: int) -> float:
    """Our backoff rule, written out: nothing before the first restart of a window."""
    if restarts_in_window <= 1 or backoff.min == 0:
        return 0.0
    return min(backoff.max, backoff.min * 2 ** (restarts_in_window - 2))


class W(Server):
    pass


class SharedClock:
    """A nested Sim or Model reads and sets its root's clock: one time for the whole tree."""

    root: "SharedClock"
    _now: float

    @property
    def now(self) -> float:
        return self.root._now

    @now.setter
    def now(self, value: float) -> None:
        self.root._now = value


class Sim(SharedClock):
    """Runs a Plan; children are instant: they start (or fail as told) and exit when asked. A
    supervisor child runs a nested Sim (`nested`, by address) on the same trace and clock."""

    def __init__(self, spec: SupervisorSpec, seed: int = 0, root: "Sim | None" = None) -> None:
        self.root = root or self
        self.plan = P.Plan(spec.name, spec, rng=random.Random(seed), key=lambda a: a)
        if root is None:
            self._now = 0.0
            self.addresses = itertools.count(1)
            self.trace: list[tuple[str, str]] = []
        else:
            self.addresses, self.trace = root.addresses, root.trace
        self.procs: dict[int, str] = {}
        self.nested: dict[int, Sim] = {}
        self.failures: dict[str, list[str]] = {}
        self.stubborn: set[str] = set()
        self.timers: dict[int, float] = {}
        self.replies: list[P.Reply] = []
        self.effects: list = []
        self.exit: P.Exit | None = None
        self.ready = False

    def send(self, event) -> list:
        queue, seen = [event], []
        while queue:
            effects = self.plan.on(queue.pop(0), self.now)
            seen.extend(effects)
            for effect in effects:
                queue.extend(self.execute(effect))
        self.effects.extend(seen)
        return seen

    def execute(self, effect) -> list:
        if isinstance(effect, P.Spawn):
            address = next(self.addresses)
            self.procs[address] = effect.name
            self.trace.append(("start", effect.name))
            mode = self.failures.get(effect.name, [None]).pop(0) if self.failures.get(effect.name) else None
            events = [P.Spawned(effect.name, effect.incarnation, address), P.Linked(address, address)]
            if mode == "raise":
                del self.procs[address]
                return events + [P.InitFailed(address, "boom"), P.ChildDown(address)]
            if mode == "ignore":
                del self.procs[address]
                return events + [P.InitIgnored(address), P.ChildDown(address, "normal")]
            if mode == "hang":
                return events
            if isinstance(effect.spec, SupervisorSpec):
                nested = self.nested[address] = Sim(effect.spec, root=self.root)
                nested.send(P.Boot())
                nested.fire_timers()
                assert nested.ready  # its children always start
            return events + [P.InitDone(address, address)]
        if isinstance(effect, P.Register):
            return [P.Registered(effect.name, effect.incarnation)]
        if isinstance(effect, P.Terminate):
            if effect.name in self.stubborn or effect.address not in self.procs:
                return []
            del self.procs[effect.address]
            self.trace.append(("stop", effect.name))
            reason = effect.reason
            nested = self.nested.pop(effect.address, None)
            if nested is not None:  # a supervisor stops its own children first
                nested.send(P.StopRequested(effect.reason))
                nested.fire_timers()
                reason = nested.exit.reason
            return [P.ChildExiting(effect.address, reason), P.ChildDown(effect.address)]
        if isinstance(effect, P.Kill):
            self.nested.pop(effect.address, None)  # its children die with it, untraced
            if self.procs.pop(effect.address, None) is not None:
                self.trace.append(("kill", effect.name))
            return [P.ChildDown(effect.address, "killed")]
        if isinstance(effect, P.SetTimer):
            self.timers[effect.seq] = self.now + effect.seconds
        elif isinstance(effect, P.Reply):
            self.replies.append(effect)
        elif isinstance(effect, P.Exit):
            self.exit = effect
        elif isinstance(effect, P.Ready):
            self.ready = True
        return []

    def fire_timers(self) -> None:
        """Let time pass until the plan waits for nothing (only the current timer counts)."""
        while self.plan.step is not None and self.plan.seq in self.timers:
            due = self.timers.pop(self.plan.seq)
            self.now = max(self.now, due)
            self.send(P.TimerFired(self.plan.seq))

    def address_of(self, name: str) -> int:
        return self.plan.children[name].address

    def crash(self, name: str, reason="crash: boom", cause: str | None = None) -> None:
        address = self.address_of(name)
        del self.procs[address]
        self.nested.pop(address, None)
        self.send(P.ChildExiting(address, reason, cause))
        self.send(P.ChildDown(address))
        self.fire_timers()

    def nested_of(self, name: str) -> "Sim":
        return self.nested[self.address_of(name)]

    def request(self, event):
        before = len(self.replies)
        self.send(event)
        self.fire_timers()
        return self.replies[before:]

    def running(self) -> set[str]:
        return {c.name for c in self.plan.children.values() if c.status == "running"}


class Model(SharedClock):
    """OTP's rules, written out plainly. A supervisor child has a nested model (`subs`, while it
    runs) on the same trace and clock."""

    def __init__(self, spec: SupervisorSpec, root: "Model | None" = None) -> None:
        self.root = root or self
        self.spec = spec
        self.sos = spec.strategy == "simple_one_for_one"
        self.order: list[str] = [] if self.sos else [c.name for c in spec.children]
        self.specs = {c.name: c for c in spec.children} if not self.sos else {}
        self.running: dict[str, bool] = {n: False for n in self.order}
        self.restarts: list[float] = []
        self.trace: list[tuple[str, str]] = root.trace if root else []
        self.subs: dict[str, Model] = {}
        self.failures: dict[str, list[str]] = {}
        if root is None:
            self._now = 0.0
        self.exit = None

    def start(self, name: str) -> str:
        """ok | failed | ignored"""
        self.trace.append(("start", name))
        mode = self.failures[name].pop(0) if self.failures.get(name) else None
        if mode == "hang":
            self.trace.append(("kill", name))
            self.now += START_TIMEOUT
            return "failed"
        if mode == "raise":
            return "failed"
        if mode == "ignore":
            return "ignored"
        self.running[name] = True
        if isinstance(self.specs[name], SupervisorSpec):
            sub = self.subs[name] = Model(self.specs[name], self.root)
            sub.boot()
        return "ok"

    def stop(self, name: str) -> None:
        if self.running.get(name):
            self.trace.append(("stop", name))
            self.running[name] = False
            sub = self.subs.pop(name, None)
            if sub is not None:
                sub.stop_all()

    def stop_all(self) -> None:
        for name in reversed(self.order):
            self.stop(name)

    def remove(self, name: str) -> None:
        self.order.remove(name)
        del self.running[name]
        del self.specs[name]
        self.subs.pop(name, None)

    def add(self, spec: ChildSpec) -> str:
        """start_child(Sup, ChildSpec) of a new id: started last; kept unless its start failed,
        or it returned ignore and is temporary (OTP saves no temporary child without a pid)."""
        self.order.append(spec.name)
        self.specs[spec.name] = spec
        self.running[spec.name] = False
        outcome = self.start(spec.name)
        if outcome == "failed" or (outcome == "ignored" and spec.restart == "temporary"):
            self.remove(spec.name)
        return outcome

    def boot(self) -> None:
        for name in list(self.order):
            outcome = self.start(name)
            if outcome == "failed":
                for other in reversed(self.order):
                    self.stop(other)
                self.exit = "init failed"
                return

    def give_up(self) -> None:
        self.stop_all()
        self.exit = "shutdown"

    def exited(self, name: str, reason: str) -> None:
        """`name` (not running any more) exited on its own, or its restart failed."""
        self.running[name] = False
        self.subs.pop(name, None)  # a supervisor's children die with it
        spec = self.specs[name]
        restart = spec.restart == "permanent" or (spec.restart == "transient" and not normal(reason))
        if not restart:
            if spec.restart == "temporary" or self.sos:
                self.remove(name)
            mode = self.spec.auto_shutdown
            if spec.significant and mode != "never":
                if mode == "any_significant" or not any(self.running[n] and self.specs[n].significant for n in self.order):
                    self.give_up()
            return
        self.restarts = [t for t in self.restarts if t >= self.now - self.spec.period] + [self.now]
        if len(self.restarts) > self.spec.intensity:
            self.give_up()
            return
        self.now += backoff_delay(self.spec.backoff, len(self.restarts))
        index = self.order.index(name)
        if self.spec.strategy in ("one_for_one", "simple_one_for_one"):
            targets = [name]
        else:
            affected = [n for n in self.order if n != name] if self.spec.strategy == "one_for_all" else self.order[index + 1 :]
            for other in reversed(affected):
                self.stop(other)
            for other in affected:
                if self.specs[other].restart == "temporary":
                    self.remove(other)
            first = 0 if self.spec.strategy == "one_for_all" else self.order.index(name)
            targets = self.order[first:]
        for target in targets:
            if self.start(target) == "failed":
                self.exited(target, "start failed")
                return


def child_specs(draw, auto_shutdown: str) -> list[ChildSpec]:
    count = draw(st.integers(1, 4))
    specs = []
    for i in range(count):
        restart = draw(st.sampled_from(["permanent", "transient", "temporary"]))
        significant = auto_shutdown != "never" and restart != "permanent" and draw(st.booleans())
        specs.append(ChildSpec(f"c{i}", W, restart=restart, significant=significant, start_timeout=START_TIMEOUT))
    return specs


def sub_supervisor(draw, name: str, auto_shutdown: str) -> SupervisorSpec:
    """A supervisor child that gives up easily (intensity 0 or 1); its own children never fail
    to start, so that its boot is instant."""
    restart = draw(st.sampled_from(["permanent", "transient", "temporary"]))
    children = [
        ChildSpec(f"{name}.g{i}", W, restart=draw(st.sampled_from(["permanent", "transient"])), start_timeout=START_TIMEOUT)
        for i in range(draw(st.integers(1, 3)))
    ]
    return SupervisorSpec(
        name,
        strategy=draw(st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"])),
        intensity=draw(st.integers(0, 1)),
        period=draw(st.sampled_from([5.0, 30.0])),
        backoff=NO_BACKOFF,
        children=children,
        restart=restart,
        significant=auto_shutdown != "never" and restart != "permanent" and draw(st.booleans()),
        start_timeout=START_TIMEOUT,
    )


REASONS = st.sampled_from(["normal", "shutdown", ("shutdown", "done"), "killed", "crash: ValueError: x"])
MODES = st.sampled_from(["raise", "ignore", "hang"])


class PlanMachine(RuleBasedStateMachine):
    """Random crashes, failed starts, time and child management; the plan must match the model."""

    @initialize(data=st.data())
    def setup(self, data):
        strategy = data.draw(st.sampled_from(["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]))
        auto = data.draw(st.sampled_from(["never", "any_significant", "all_significant"]))
        intensity = data.draw(st.integers(0, 4))
        period = data.draw(st.sampled_from([1.0, 5.0, 30.0]))
        backoff = data.draw(st.sampled_from(BACKOFFS))
        if strategy == "simple_one_for_one":
            restart = data.draw(st.sampled_from(["permanent", "transient", "temporary"]))
            children = [ChildSpec("t", W, restart=restart, start_timeout=START_TIMEOUT)]
            auto = "never"
        else:
            children = child_specs(data.draw, auto)
            if data.draw(st.booleans()):
                position = data.draw(st.integers(0, len(children)))
                children.insert(position, sub_supervisor(data.draw, "s", auto))
        self.spec = SupervisorSpec(
            "sup", strategy=strategy, intensity=intensity, period=period, backoff=backoff, children=children, auto_shutdown=auto
        )
        self.sim = Sim(self.spec)
        self.model = Model(self.spec)
        # some initial starts fail, as a later one may
        if strategy != "simple_one_for_one" and data.draw(st.booleans()):
            name = data.draw(st.sampled_from([c.name for c in children]))
            mode = data.draw(MODES)
            self.sim.failures[name] = [mode]
            self.model.failures[name] = [mode]
        self.dynamic = itertools.count(1)
        self.added = itertools.count(1)
        self.sim.send(P.Boot())
        self.sim.fire_timers()
        self.model.boot()
        self.model.now = self.sim.now

    @property
    def live(self) -> bool:
        return self.model.exit is None

    @precondition(lambda self: self.live)
    @rule(data=st.data(), reason=REASONS)
    def crash(self, data, reason):
        running = [n for n in self.model.order if self.model.running[n]]
        if not running:
            return
        name = data.draw(st.sampled_from(running))
        self.sim.crash(name, reason)
        self.model.exited(name, reason)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), mode=MODES)
    def next_start_fails(self, data, mode):
        names = self.model.order or ["t"]
        name = data.draw(st.sampled_from(names))
        self.sim.failures.setdefault(name, []).append(mode)
        self.model.failures.setdefault(name, []).append(mode)

    @precondition(lambda self: self.live and self.model.subs)
    @rule(data=st.data(), reason=REASONS)
    def crash_grandchild(self, data, reason):
        name = data.draw(st.sampled_from(sorted(self.model.subs)))
        sub, nested = self.model.subs[name], self.sim.nested_of(name)
        running = [n for n in sub.order if sub.running[n]]
        if not running:
            return
        grandchild = data.draw(st.sampled_from(running))
        nested.crash(grandchild, reason)
        sub.exited(grandchild, reason)
        if sub.exit is not None:  # it gave up: its parent sees it exit with reason shutdown
            assert nested.exit is not None and nested.exit.reason == "shutdown"
            self.sim.crash(name, nested.exit.reason, nested.exit.cause)
            self.model.exited(name, "shutdown")
        else:
            assert nested.exit is None

    @rule(seconds=st.sampled_from([0.5, 2.0, 10.0, 60.0]))
    def time_passes(self, seconds):
        self.sim.now += seconds
        self.model.now = self.sim.now

    @precondition(lambda self: self.live and self.spec.strategy == "simple_one_for_one")
    @rule()
    def start_dynamic(self):
        name = f"d{next(self.dynamic)}"
        self.model.failures.setdefault(name, [])
        self.sim.failures[name] = list(self.model.failures[name])
        replies = self.sim.request(P.StartDynamic(name=name, requester=name))
        self.model.order.append(name)
        self.model.specs[name] = self.spec.children[0].with_name(name)
        self.model.running[name] = False
        outcome = self.model.start(name)
        if outcome != "ok":
            self.model.remove(name)
        assert len(replies) == 1
        if outcome == "failed":
            assert isinstance(replies[0].error, StartFailed)
        else:
            assert replies[0].error is None and replies[0].value == (name if outcome == "ok" else None)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def terminate_child(self, data):
        name = data.draw(st.sampled_from(self.model.order + ["nobody"]))
        (reply,) = self.sim.request(P.TerminateChild(name, requester=1))
        if name == "nobody":
            assert isinstance(reply.error, NoSuchName)
            return
        assert reply.error is None
        self.model.stop(name)
        if self.model.sos or self.model.specs[name].restart == "temporary":
            self.model.remove(name)

    @precondition(lambda self: self.live and self.spec.strategy != "simple_one_for_one")
    @rule(data=st.data())
    def restart_child(self, data):
        name = data.draw(st.sampled_from(self.model.order + ["nobody"]))
        (reply,) = self.sim.request(P.RestartChild(name, requester=1))
        if name == "nobody":
            assert isinstance(reply.error, NoSuchName)
        elif self.model.running[name]:
            assert isinstance(reply.error, ChildRunning)
        else:
            outcome = self.model.start(name)
            if outcome == "failed":
                assert isinstance(reply.error, StartFailed)
            else:
                assert reply.error is None

    @precondition(lambda self: self.live and self.spec.strategy != "simple_one_for_one")
    @rule(data=st.data())
    def delete_child(self, data):
        name = data.draw(st.sampled_from(self.model.order + ["nobody"]))
        (reply,) = self.sim.request(P.DeleteChild(name, requester=1))
        if name == "nobody":
            assert isinstance(reply.error, NoSuchName)
        elif self.model.running[name]:
            assert isinstance(reply.error, ChildRunning)
        else:
            assert reply.error is None
            self.model.remove(name)

    @precondition(lambda self: self.live and self.spec.strategy != "simple_one_for_one")
    @rule(data=st.data())
    def add_existing_child(self, data):
        name = data.draw(st.sampled_from(self.model.order)) if self.model.order else None
        if name is None:
            return
        (reply,) = self.sim.request(P.AddChild(ChildSpec(name, W), requester=1))
        assert isinstance(reply.error, AlreadyPresent) and reply.error.running == self.model.running[name]

    @precondition(lambda self: self.live and self.spec.strategy != "simple_one_for_one")
    @rule(data=st.data(), restart=st.sampled_from(["permanent", "transient", "temporary"]), mode=st.sampled_from([None, *MODES.elements]))
    def add_new_child(self, data, restart, mode):
        name = f"n{next(self.added)}"
        significant = self.spec.auto_shutdown != "never" and restart != "permanent" and data.draw(st.booleans())
        spec = ChildSpec(name, W, restart=restart, significant=significant, start_timeout=START_TIMEOUT)
        if mode is not None:
            self.sim.failures[name] = [mode]
            self.model.failures[name] = [mode]
        replies = self.sim.request(P.AddChild(spec, requester=1))
        outcome = self.model.add(spec)
        assert len(replies) == 1
        if outcome == "failed":
            assert isinstance(replies[0].error, StartFailed)
        else:
            assert replies[0].error is None and replies[0].value == (name if outcome == "ok" else None)

    @precondition(lambda self: self.live)
    @rule()
    def stop(self):
        self.sim.send(P.StopRequested("shutdown"))
        self.sim.fire_timers()
        for name in reversed(self.model.order):
            self.model.stop(name)
        self.model.exit = "shutdown"

    @invariant()
    def same_as_the_model(self):
        sim, model = self.sim, self.model
        assert sim.trace == model.trace
        assert sim.now == pytest.approx(model.now)  # the same backoff delays and start timeouts waited
        assert set(sim.procs.values()) == {n for n, up in model.running.items() if up}
        assert len(sim.nested) == len(model.subs)
        if model.exit is None:
            assert sim.exit is None and sim.plan.phase == "running"
            assert list(sim.plan.children) == model.order
            assert sim.running() == {n for n, up in model.running.items() if up}
            for name, sub in model.subs.items():
                nested = sim.nested_of(name)
                assert nested.exit is None and nested.plan.phase == "running"
                assert list(nested.plan.children) == sub.order
                assert nested.running() == set(nested.procs.values()) == {n for n, up in sub.running.items() if up}
        elif model.exit == "init failed":
            assert sim.exit is not None and sim.exit.failed is not None
        else:
            assert sim.exit is not None and sim.exit.reason == "shutdown"

    @invariant()
    def the_address_index_matches_the_table(self):
        for key, child in self.sim.plan.by_key.items():
            assert child.address == key and self.sim.plan.children.get(child.name) is child


TestPlanAgainstOTP = PlanMachine.TestCase
TestPlanAgainstOTP.settings = settings(max_examples=300, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- single behaviours --------------------------------------------------------------------------


def booted(spec: SupervisorSpec, seed: int = 0) -> Sim:
    sim = Sim(spec, seed)
    sim.send(P.Boot())
    sim.fire_timers()
    assert sim.ready
    return sim


def test_giving_up_stops_children_in_reverse_and_exits_shutdown_with_the_cause_apart():
    sim = booted(SupervisorSpec("s", intensity=1, period=10, backoff=NO_BACKOFF, children=[ChildSpec(n, W) for n in "abc"]))
    sim.crash("b")
    sim.crash("b")
    assert sim.trace[-2:] == [("stop", "c"), ("stop", "a")]
    assert sim.exit.reason == "shutdown"
    assert "reached max restart intensity (1 in 10 s)" in sim.exit.cause and "last exit: b (crash: boom)" in sim.exit.cause


def test_a_transient_child_exiting_shutdown_with_detail_is_normal():
    sim = booted(SupervisorSpec("s", children=[ChildSpec("t", W, restart="transient")]))
    sim.crash("t", ("shutdown", "drained"))
    assert sim.plan.children["t"].status == "stopped" and sim.trace == [("start", "t")]


def test_backoff_delays_come_from_the_spec_and_are_waited_for():
    backoff = Backoff(min=0.5, max=4.0, jitter=0.0)
    sim = booted(SupervisorSpec("s", intensity=10, period=100, backoff=backoff, children=[ChildSpec("a", W)]))
    delays = []
    for _ in range(4):
        start = sim.now
        sim.crash("a")
        delays.append(sim.now - start)
    assert delays == [backoff.delay(k) for k in (1, 2, 3, 4)] == [0.0, 0.5, 1.0, 2.0]


def test_a_hanging_init_is_killed_when_its_start_timeout_passes():
    sim = Sim(SupervisorSpec("s", children=[ChildSpec("a", W, start_timeout=2.0)]))
    sim.failures["a"] = ["hang"]
    sim.send(P.Boot())
    kill = [e for e in sim.effects if isinstance(e, P.Kill)]
    assert kill == []
    sim.fire_timers()
    assert [e for e in sim.effects if isinstance(e, P.Kill)] == [P.Kill("a", 1, 1)]
    assert sim.procs == {} and sim.exit.failed == ("a", "init did not finish within 2 s")


def test_terminate_child_keeps_the_spec_and_a_later_one_for_all_restart_starts_it_again():
    sim = booted(SupervisorSpec("s", strategy="one_for_all", backoff=NO_BACKOFF, children=[ChildSpec(n, W) for n in "ab"]))
    sim.request(P.TerminateChild("b", 1))
    assert sim.plan.children["b"].status == "stopped" and sim.plan.children["b"].address is None
    (reply,) = sim.request(P.AddChild(ChildSpec("b", W), 1))
    assert isinstance(reply.error, AlreadyPresent) and not reply.error.running
    sim.crash("a")
    assert sim.running() == {"a", "b"}
    assert sim.plan.childspec("b") == ChildSpec("b", W)
    with pytest.raises(NoSuchName):
        sim.plan.childspec("zz")


def test_a_failed_restart_stops_the_sequence_and_is_retried_from_that_child():
    sim = booted(SupervisorSpec("s", strategy="rest_for_one", intensity=5, backoff=NO_BACKOFF, children=[ChildSpec(n, W) for n in "abc"]))
    sim.failures["b"] = ["raise"]
    sim.crash("a")
    # a restarted, b failed: c not started; retried from b (counted as a restart)
    assert sim.trace[3:] == [("stop", "c"), ("stop", "b"), ("start", "a"), ("start", "b"), ("start", "b"), ("start", "c")]
    assert len(sim.plan.window.restarts) == 2


def test_ignore_keeps_a_static_child_stopped_and_the_start_goes_on():
    sim = Sim(SupervisorSpec("s", children=[ChildSpec(n, W) for n in "abc"]))
    sim.failures["b"] = ["ignore"]
    sim.send(P.Boot())
    assert sim.ready and sim.running() == {"a", "c"} and sim.plan.children["b"].status == "stopped"


def test_auto_shutdown_any_significant():
    children = [ChildSpec("a", W), ChildSpec("job", W, restart="transient", significant=True)]
    sim = booted(SupervisorSpec("s", auto_shutdown="any_significant", children=children))
    sim.crash("job", "normal")
    assert sim.exit.reason == "shutdown" and "significant child job exited" in sim.exit.cause
    assert sim.trace[-1] == ("stop", "a")


def test_the_budget_counts_children_added_at_run_time_and_is_reported():
    sim = booted(SupervisorSpec("s", children=[ChildSpec("a", W, shutdown=2.0)]))
    assert sim.plan.budget() == pytest.approx(3.0 + 1.0)
    sim.request(P.AddChild(ChildSpec("b", W, shutdown=5.0), 1))
    assert sim.plan.budget() == pytest.approx(3.0 + 6.0 + 1.0)
    assert [e for e in sim.effects if isinstance(e, P.BudgetChanged)] == [P.BudgetChanged(10.0)]


def test_a_supervisor_child_with_infinity_is_never_killed():
    inner = SupervisorSpec("inner", shutdown="infinity", children=[ChildSpec("x", W)])
    sim = booted(SupervisorSpec("s", children=[inner]))
    sim.stubborn.add("inner")
    before = len(sim.effects)
    sim.send(P.StopRequested())
    sim.fire_timers()
    assert [type(e) for e in sim.effects[before:] if isinstance(e, (P.Kill, P.SetTimer))] == []
    assert sim.plan.children["inner"].status == "stopping"


def test_significant_needs_auto_shutdown_and_a_non_permanent_child():
    with pytest.raises(SpecError, match="significant"):
        ChildSpec("a", W, significant=True)
    with pytest.raises(SpecError, match="auto_shutdown"):
        SupervisorSpec("s", children=[ChildSpec("a", W, restart="transient", significant=True)])
    with pytest.raises(SpecError, match="supervisors only"):
        ChildSpec("a", W, shutdown="infinity")


def test_simple_one_for_one_starts_an_initial_count():
    sim = booted(SupervisorSpec("pool", strategy="simple_one_for_one", start_children=3, children=[ChildSpec("w", W)]))
    assert list(sim.plan.children) == ["w-1", "w-2", "w-3"] and sim.running() == {"w-1", "w-2", "w-3"}
    with pytest.raises(SpecError, match="start_children"):
        SupervisorSpec("x", start_children=2, children=[ChildSpec("w", W)])
