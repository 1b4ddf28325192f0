"""The restart window follows OTP exactly: give up when restarts within `period` exceed `intensity`."""

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from supervision.intensity import RestartWindow


def test_restart_window_escalates_after_intensity_is_exceeded():
    window = RestartWindow(intensity=3, period=5.0)
    for now in (0.0, 1.0, 2.0):
        window = window.record(now)
        assert not window.exceeded
    assert window.record(3.0).exceeded


def test_restarts_older_than_the_period_no_longer_count():
    window = RestartWindow(intensity=1, period=5.0).record(0.0)
    assert window.record(5.0).exceeded  # exactly `period` later it still counts (OTP keeps R >= now - period)
    assert not window.record(5.1).exceeded


def test_intensity_zero_gives_up_on_the_first_restart():
    assert RestartWindow(intensity=0, period=5.0).record(0.0).exceeded


class RestartWindowMachine(RuleBasedStateMachine):
    """The window against a model: a plain list of every restart time, filtered on demand."""

    @initialize(intensity=st.integers(0, 6), period=st.floats(0.1, 20.0))
    def setup(self, intensity, period):
        self.window = RestartWindow(intensity, period)
        self.intensity = intensity
        self.period = period
        self.all_restarts: list[float] = []
        self.now = 0.0

    @rule(step=st.floats(0.0, 8.0))
    def restart_after(self, step):
        self.now += step
        self.all_restarts.append(self.now)
        self.window = self.window.record(self.now)

    @invariant()
    def exceeded_iff_more_restarts_than_intensity_within_period(self):
        if not self.all_restarts:
            return
        in_window = [t for t in self.all_restarts if t >= self.now - self.period]
        assert self.window.exceeded == (len(in_window) > self.intensity)
        assert self.window.count(self.now) == len(in_window)


TestRestartWindow = RestartWindowMachine.TestCase
