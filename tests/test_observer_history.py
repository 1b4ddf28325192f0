"""The observer's history core (actors.observer.history) against a model, with a Hypothesis state machine.

The model counts every event as it happens; the history only sees snapshots of counters that
restart at 0 when a supervisor restarts its children, and actors that come and go. Its totals
must still equal the model's, its chart points must add up to what happened inside the window,
and it never remembers more than it was told to.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.observer.history import ActorCounts, History, SERIES, step

NAMES = ("a", "b", "c")
POINTS = 5
RECENT = 3


class HistoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.history = History(points=POINTS, recent=RECENT)
        self.actors: dict[str, ActorCounts] = {}
        self.pending = {name: 0 for name in SERIES}  # happened since the last snapshot
        self.happened = {name: 0 for name in SERIES}  # counted since the first snapshot
        self.steps: list[dict[str, int]] = []
        self.now = 1000.0
        self.observed = False
        self.outcomes: list[tuple[str, str]] = []
        # actors reset or gone since the last snapshot take no new counts before the next one:
        # from two readings, "reset then 3 restarts" cannot be told from "2 more restarts"
        # (the observer samples every 0.5 s; supervisors restart a tree far less often)
        self.reset: set[str] = set()
        # what each actor did since the last snapshot: lost with it if it leaves or is reset
        # before the next one (no snapshot ever showed it)
        self.unseen: dict[str, dict[str, int]] = {}

    def countable(self) -> list[str]:
        return sorted(set(self.actors) - self.reset)

    @rule(name=st.sampled_from(NAMES))
    def start(self, name):
        self.actors.setdefault(name, ActorCounts())

    @precondition(lambda self: self.countable())
    @rule(data=st.data(), field=st.sampled_from(("restarts", "crashes", "dead_letters")), n=st.integers(1, 3))
    def count(self, data, field, n):
        name = data.draw(st.sampled_from(self.countable()))
        current = self.actors[name]
        changes = {field: getattr(current, field) + n}
        if field == "restarts":
            changes["last_exit"] = f"killed {self.now}"
        self.actors[name] = attrs.evolve(current, **changes)
        mine = self.unseen.setdefault(name, {})
        mine[field] = mine.get(field, 0) + n

    @precondition(lambda self: self.actors)
    @rule(data=st.data())
    def supervisor_restarts_it(self, data):
        """Its counters start again from 0 (a new child under a restarted supervisor)."""
        name = data.draw(st.sampled_from(sorted(self.actors)))
        self.actors[name] = ActorCounts()
        self.reset.add(name)
        self.unseen.pop(name, None)

    @precondition(lambda self: self.actors)
    @rule(data=st.data())
    def leaves(self, data):
        name = data.draw(st.sampled_from(sorted(self.actors)))
        del self.actors[name]
        self.reset.add(name)
        self.unseen.pop(name, None)

    @rule(outcome=st.sampled_from(("completed", "failed", "retried", "rescued")), kind=st.sampled_from(("x", "y")))
    def job(self, outcome, kind):
        self.outcomes.append((kind, outcome))
        self.pending[outcome] += 1

    @rule(dt=st.floats(0.1, 2.0))
    def snapshot(self, dt):
        self.now += dt
        for counts in self.unseen.values():
            for field, n in counts.items():
                self.pending[field] += n
        self.unseen = {}
        point = self.history.observe(self.now, dict(self.actors), list(self.outcomes))
        if not self.observed:
            # before the first snapshot the observer did not exist: only job events count
            for field in ("restarts", "crashes", "dead_letters"):
                self.pending[field] = 0
            self.observed = True
        for name in SERIES:
            self.happened[name] += self.pending[name]
        self.steps.append(dict(self.pending))
        assert dict(point.counts) == self.pending
        self.pending = {name: 0 for name in SERIES}
        self.outcomes = []
        self.reset = set()

    @invariant()
    def totals_are_what_happened(self):
        assert self.history.totals == self.happened

    @invariant()
    def the_window_holds_the_last_points(self):
        series = self.history.series()
        assert len(series["at"]) == min(len(self.steps), POINTS)
        for name in SERIES:
            assert series[name] == [s[name] for s in self.steps[-POINTS:]]
        assert series["at"] == sorted(series["at"])

    @invariant()
    def recent_errors_are_bounded(self):
        for name in NAMES:
            assert len(self.history.recent(name)) <= RECENT


HistoryMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestHistory = HistoryMachine.TestCase


def test_a_counter_that_restarts_from_zero_counts_its_new_events():
    assert step(5, 7) == 2
    assert step(5, 0) == 0
    assert step(5, 2) == 2


def test_a_restart_is_remembered_with_its_exit_reason():
    history = History(points=3, recent=2)
    history.observe(1.0, {"w": ActorCounts()})
    history.observe(2.0, {"w": ActorCounts(restarts=1, last_exit="killed")})
    history.observe(3.0, {"w": ActorCounts(restarts=1, last_exit="killed", recoverable_errors=2)})
    assert [e.what for e in history.recent("w")] == ["exited: killed", "2 recoverable errors replied"]
    assert history.totals["restarts"] == 1


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="points"):
        History(points=1)


def test_the_database_part_is_read_on_the_snapshot_that_comes_a_hair_early():
    """Snapshots come every 0.5 s on a timer; the one meant for 1 s after the last database read
    may run at 0.999 s. Skipping it made the page's jobs 1.5 s old (the observer says 1 s)."""
    from actors.observer.collect import database_due

    assert database_due(0.999, 1.0) and database_due(1.0, 1.0) and database_due(1.2, 1.0)
    assert not database_due(0.5, 1.0) and not database_due(0.9, 1.0)
    assert database_due(float("inf"), 1.0)  # never read yet
