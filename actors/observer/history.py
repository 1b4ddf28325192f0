"""The observer's memory: what changed between two snapshots, as time series and recent errors.

A pure core (no I/O, no clock): `History.observe` takes the actors' counters as the tree
reports them and the job outcomes read from the event log since the last call, and keeps

- one point per call with what happened in between (restarts, crashes, dead letters, jobs
  completed/failed/retried/rescued), at most `points` of them, for the page's charts;
- totals since the observer started, which never go down (Prometheus-style counters): an actor's
  counters restart at 0 when its supervisor is restarted, and an actor that left the tree takes
  its counts with it, so totals are sums of positive steps, never sums of current values;
- each actor's recent errors (exit reasons and recoverable-error counts), `recent` of them.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Mapping

import attrs

#: the counters of one actor that the charts follow
ACTOR_FIELDS = ("restarts", "crashes", "dead_letters", "recoverable_errors")
#: job outcomes, as the job events name them (job.completed, job.failed, ...)
JOB_OUTCOMES = ("completed", "failed", "retried", "rescued")
SERIES = ("restarts", "crashes", "dead_letters", "completed", "failed", "retried", "rescued")


@attrs.frozen
class ActorCounts:
    """One actor as a snapshot shows it."""

    restarts: int = 0
    crashes: int = 0
    dead_letters: int = 0
    recoverable_errors: int = 0
    last_exit: str | None = None
    #: the text of the last recoverable error the actor replied (the monitor keeps it)
    last_error: str | None = None


@attrs.frozen
class RecentError:
    """One entry of an actor's recent errors: when the observer saw it (`at`, epoch seconds)
    and `what` (an exit reason with its restart count, or a count of recoverable errors)."""

    at: float
    what: str


@attrs.frozen
class Point:
    """What happened between two snapshots: taken `at` (epoch seconds), `seconds` after the
    previous one, and `counts` per `SERIES` name (restarts, crashes, dead letters, job outcomes)."""

    at: float
    seconds: float  # since the previous point (0 for the first)
    counts: Mapping[str, int]


def step(before: int, after: int) -> int:
    """How many happened between two readings of a counter that may restart from 0."""
    return after - before if after >= before else after


class History:
    """The observer's time series, totals and recent errors, fed one snapshot at a time.

    Keeps the last `points` points and each actor's last `recent` errors. `totals` never go
    down: counters that restart from 0 are summed as positive steps (`step`), so from two
    readings a reset and then n events count as n. Pure: no I/O, and time comes as `at`."""

    def __init__(self, points: int = 120, recent: int = 10) -> None:
        if points < 2 or recent < 1:
            raise ValueError("History needs points >= 2 and recent >= 1")
        self.points: deque[Point] = deque(maxlen=points)
        self.recent_size = recent
        self.totals: dict[str, int] = {name: 0 for name in SERIES}
        self.jobs_by_kind: dict[tuple[str, str], int] = {}
        self._actors: dict[str, ActorCounts] = {}
        self._recent: dict[str, deque[RecentError]] = {}

    def observe(self, at: float, actors: Mapping[str, ActorCounts], outcomes: Iterable[tuple[str, str]] = ()) -> Point:
        """Record one snapshot taken at `at`: `actors` by name, `outcomes` as (kind, outcome) pairs."""
        first = not self.points and not self._actors
        counts = {name: 0 for name in SERIES}
        for name, now in actors.items():
            before = self._actors.get(name, ActorCounts())
            if first:
                before = now  # what happened before the observer started is not "new"
            for field in ("restarts", "crashes", "dead_letters"):
                counts[field] += step(getattr(before, field), getattr(now, field))
            self._remember(name, before, now, at)
        self._actors = dict(actors)
        for kind, outcome in outcomes:
            if outcome in counts and outcome in JOB_OUTCOMES:
                counts[outcome] += 1
                self.jobs_by_kind[(kind, outcome)] = self.jobs_by_kind.get((kind, outcome), 0) + 1
        for name, value in counts.items():
            self.totals[name] += value
        seconds = at - self.points[-1].at if self.points else 0.0
        point = Point(at, max(0.0, seconds), counts)
        self.points.append(point)
        return point

    def _remember(self, name: str, before: ActorCounts, now: ActorCounts, at: float) -> None:
        restarted = step(before.restarts, now.restarts)
        errors = step(before.recoverable_errors, now.recoverable_errors)
        if restarted or (now.last_exit is not None and now.last_exit != before.last_exit):
            times = f" ({restarted} restarts)" if restarted > 1 else ""
            self._add(name, RecentError(at, f"exited: {now.last_exit or 'unknown reason'}{times}"))
        if errors:
            last = f"; the last: {now.last_error}" if now.last_error else ""
            self._add(name, RecentError(at, f"{errors} recoverable error{'s' if errors > 1 else ''} replied{last}"))

    def _add(self, name: str, error: RecentError) -> None:
        self._recent.setdefault(name, deque(maxlen=self.recent_size)).append(error)

    def recent(self, name: str) -> list[RecentError]:
        return list(self._recent.get(name, ()))

    def series(self) -> dict[str, list[float]]:
        """Columns for the charts: `at` (epoch seconds), `seconds`, and one per SERIES name."""
        data: dict[str, list[float]] = {"at": [p.at for p in self.points], "seconds": [p.seconds for p in self.points]}
        for name in SERIES:
            data[name] = [p.counts[name] for p in self.points]
        return data
