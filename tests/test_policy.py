"""The pure restart policy, hammered by a Hypothesis state machine against OTP's rules."""

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from supervision.intensity import RestartWindow
from supervision.policy import ChildView, Escalate, Exited, Ignore, Restart, decide


def views(*specs):
    return [ChildView(name, restart, running) for name, restart, running in specs]


def test_one_for_one_restarts_only_the_child_that_exited():
    children = views(("a", "permanent", True), ("b", "permanent", True))
    decision, _ = decide("one_for_one", children, "a", "killed", RestartWindow(3, 5), 0.0)
    assert decision == Restart(stop=(), start=("a",))


def test_one_for_all_stops_siblings_in_reverse_and_starts_all_in_order():
    children = views(("a", "permanent", True), ("b", "permanent", True), ("c", "temporary", True))
    decision, _ = decide("one_for_all", children, "b", "killed", RestartWindow(3, 5), 0.0)
    assert decision == Restart(stop=("c", "a"), start=("a", "b"), remove=("c",))


def test_rest_for_one_restarts_the_child_and_those_started_after_it():
    children = views(("a", "permanent", True), ("b", "permanent", True), ("c", "transient", True))
    decision, _ = decide("rest_for_one", children, "b", "crash: boom", RestartWindow(3, 5), 0.0)
    assert decision == Restart(stop=("c",), start=("b", "c"))


def test_transient_child_that_exits_normally_is_not_restarted():
    children = views(("a", "transient", True))
    decision, _ = decide("one_for_one", children, "a", "normal", RestartWindow(3, 5), 0.0)
    assert decision == Exited("a", remove=False)


def test_temporary_child_is_never_restarted_and_is_removed():
    children = views(("a", "temporary", True))
    decision, _ = decide("one_for_one", children, "a", "crash: x", RestartWindow(3, 5), 0.0)
    assert decision == Exited("a", remove=True)


def test_exceeding_intensity_escalates_stopping_the_others_in_reverse_order():
    children = views(("a", "permanent", True), ("b", "permanent", True), ("c", "permanent", True))
    window = RestartWindow(1, 5).record(0.0)
    decision, window = decide("one_for_one", children, "b", "killed", window, 1.0)
    assert isinstance(decision, Escalate) and decision.stop == ("c", "a")


def test_exit_of_an_unknown_or_stopped_child_is_ignored():
    children = views(("a", "permanent", False))
    assert isinstance(decide("one_for_one", children, "a", "killed", RestartWindow(3, 5), 0.0)[0], Ignore)
    assert isinstance(decide("one_for_one", children, "zz", "killed", RestartWindow(3, 5), 0.0)[0], Ignore)


REASONS = st.sampled_from(["normal", "shutdown", "killed", "crash: ValueError: x", "start failed: boom"])


class PolicyMachine(RuleBasedStateMachine):
    """Run a simulated supervisor whose only brain is `decide`, and check OTP's rules after each exit."""

    @initialize(
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]),
        restarts=st.lists(st.sampled_from(["permanent", "transient", "temporary"]), min_size=1, max_size=6),
        intensity=st.integers(0, 5),
        period=st.floats(0.5, 10.0),
    )
    def setup(self, strategy, restarts, intensity, period):
        self.strategy = strategy
        self.children = [ChildView(f"c{i}", r, True) for i, r in enumerate(restarts)]
        self.order = [c.name for c in self.children]
        self.window = RestartWindow(intensity, period)
        self.restart_times: list[float] = []
        self.now = 0.0
        self.escalated = False

    @precondition(lambda self: not self.escalated)
    @rule(data=st.data(), reason=REASONS, step=st.floats(0.0, 3.0))
    def a_child_exits(self, data, reason, step):
        self.now += step
        before = {c.name: c for c in self.children}
        name = data.draw(st.sampled_from(sorted(before) + ["ghost"]))
        decision, self.window = decide(self.strategy, self.children, name, reason, self.window, self.now)
        child = before.get(name)

        if child is None or not child.running:
            assert isinstance(decision, Ignore)
            return
        should_restart = child.restart == "permanent" or (child.restart == "transient" and reason not in ("normal", "shutdown"))
        if not should_restart:
            assert decision == Exited(name, remove=child.restart == "temporary" or self.strategy == "simple_one_for_one")
            self._apply_exit(name, decision.remove)
            return

        self.restart_times.append(self.now)
        recent = [t for t in self.restart_times if t >= self.now - self.window.period]
        if len(recent) > self.window.intensity:
            assert isinstance(decision, Escalate)
            running_others = [n for n in self.order if before[n].running and n != name]
            assert list(decision.stop) == list(reversed(running_others))
            self.escalated = True
            return

        assert isinstance(decision, Restart)
        position = self.order.index(name)
        if self.strategy in ("one_for_one", "simple_one_for_one"):
            affected = []
        elif self.strategy == "one_for_all":
            affected = [n for n in self.order if n != name]
        else:
            affected = self.order[position + 1 :]
        # stop exactly the running affected children, latest-started first
        assert list(decision.stop) == [n for n in reversed(self.order) if n in affected and before[n].running]
        # temporary ones among them go away; nobody temporary is ever started again
        assert set(decision.remove) == {n for n in affected if before[n].restart == "temporary"}
        assert all(before[n].restart != "temporary" for n in decision.start)
        # start the exited child and the surviving affected ones, in start order
        expected_start = [n for n in self.order if n == name or (n in affected and n not in decision.remove)]
        assert list(decision.start) == expected_start
        self._apply_restart(decision)

    @precondition(lambda self: self.escalated)
    @rule()
    def the_parent_restarts_the_supervisor(self):
        self.children = [ChildView(c.name, c.restart, True) for c in self.children]
        self.window = RestartWindow(self.window.intensity, self.window.period)
        self.restart_times = []
        self.escalated = False

    def _apply_exit(self, name, remove):
        if remove:
            self.children = [c for c in self.children if c.name != name]
            self.order.remove(name)
        else:
            self.children = [ChildView(c.name, c.restart, False if c.name == name else c.running) for c in self.children]

    def _apply_restart(self, decision):
        removed = set(decision.remove)
        self.children = [
            ChildView(c.name, c.restart, True if c.name in decision.start else (False if c.name in decision.stop else c.running))
            for c in self.children
            if c.name not in removed
        ]
        self.order = [n for n in self.order if n not in removed]

    @invariant()
    def children_keep_their_start_order(self):
        if hasattr(self, "children"):
            assert [c.name for c in self.children] == self.order


TestPolicy = PolicyMachine.TestCase
