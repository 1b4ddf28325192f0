"""When the completer writes: at once when it is idle, in batches under load.

`OutcomeBatch` alone waits up to `max_age` (20 ms) for company before writing, which is the
right trade under load (one transaction per hundreds of outcomes) and pure delay at light load
(measured: the median job at one job per 10 ms took 20 ms longer from end to done). Here the
first outcome to arrive after `idle_gap` seconds without any is due at once; outcomes that
follow closer together than that are batched as before (size or age), so a steady stream is
written in few statements and a lone job is written the moment its worker reports it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import attrs

from actors.jobs.core import OutcomeBatch
from actors.stores.rows import JobOutcome


@attrs.define
class LatencyAwareBatch(OutcomeBatch):
    """An `OutcomeBatch` that is also due when its first outcome came after an idle spell."""

    #: seconds without arrivals after which the completer counts as idle. 5 ms: at one job per
    #: 10 ms (the light-load benchmark) most outcomes come alone and are written at once; a
    #: loaded worker reports every time slice (50 ms) and many workers together far more
    #: often than every 5 ms, so under load nothing changes
    idle_gap: float = 0.005
    last_arrival: float | None = None
    urgent: bool = False

    def add(self, outcomes: Iterable[JobOutcome], now: float, waiter: Any = None) -> None:
        items = list(outcomes)
        if not items:
            return
        idle = (
            not self.outcomes
            and not math.isinf(self.idle_gap)  # inf: size and age only
            and (self.last_arrival is None or now - self.last_arrival >= self.idle_gap)
        )
        self.last_arrival = now
        super().add(items, now, waiter)
        self.urgent = self.urgent or idle

    def due(self, now: float) -> bool:
        return bool(self.outcomes) and (self.urgent or super().due(now))

    def deadline(self) -> float | None:
        if self.urgent and self.oldest is not None:
            return self.oldest
        return super().deadline()

    def take(self) -> tuple[list[JobOutcome], list[Any]]:
        self.urgent = False
        return super().take()

    def put_back(self, outcomes: list[JobOutcome], waiters: list[Any], now: float) -> None:
        """A failed write waits again on the completer's retry timer, not at once."""
        self.urgent = False
        super().put_back(outcomes, waiters, now)
