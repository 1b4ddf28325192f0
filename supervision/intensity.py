"""The restart window: how many restarts a supervisor has made recently, as OTP counts them.

OTP (supervisor.erl, add_restart/3): on each restart, keep the earlier restarts that happened at
or after `now - period`, add `now`, and give up when the count is greater than `intensity`. So
with intensity 3 and period 5 s, the fourth restart within 5 s makes the supervisor give up;
intensity 0 means the first restart already does.

One deliberate difference: times here are exact (fractional seconds of the monotonic clock).
OTP takes `erlang:monotonic_time(second)`, whole seconds, so its window is between `period` and
`period + 1` s wide depending on where in a second the restarts fall. The default intensity of
`SupervisorSpec` is 3 in 5 s (Elixir's); OTP's is 1 in 5 s.

The window is an immutable value; time is passed in (`now`), so the supervisor injects its clock
and tests drive time by hand.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class RestartWindow:
    """OTP's restart intensity: the restart times within `period`; more than `intensity` of them
    and the supervisor gives up. Pure: times are passed in."""

    intensity: int
    period: float
    #: restart times, newest first
    restarts: tuple[float, ...] = ()

    def record(self, now: float) -> "RestartWindow":
        """The window after one more restart at `now`."""
        threshold = now - self.period
        kept = tuple(t for t in self.restarts if t >= threshold)
        return attrs.evolve(self, restarts=(now,) + kept)

    @property
    def exceeded(self) -> bool:
        """True when the restarts kept in the window are more than the intensity allows."""
        return len(self.restarts) > self.intensity

    def count(self, now: float) -> int:
        """Restarts that still count at `now`."""
        threshold = now - self.period
        return sum(1 for t in self.restarts if t >= threshold)
