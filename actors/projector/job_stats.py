"""The built-in projection: job statistics per kind (counts by outcome, latency percentiles)
from the events the completer and the rescuer append."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import attrs

from actors.projector.projection import Projection
from actors.stores.queries import load

Q = load("job_stats.sql")
OUTCOMES = {"job.completed": "completed", "job.failed": "failed", "job.retried": "retried", "job.rescued": "rescued"}


def bucket_of(latency_ms: float) -> int:
    """Latency histogram bucket: b holds [2**b, 2**(b+1)) ms; bucket 0 holds [0, 2) ms."""
    return max(0, int(math.floor(math.log2(latency_ms)))) if latency_ms >= 1 else 0


@attrs.frozen
class KindStats:
    """One kind's row of the `job_stats` projection: counts by outcome and p50/p99 latency upper
    bounds in ms."""

    kind: str
    completed: int
    failed: int
    retried: int
    rescued: int
    mean_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class JobStats(Projection):
    """The built-in projection `job_stats`: per job kind, counts by outcome (from the job.* events)
    and latency percentiles in `job_stats` tables; read with `read_job_stats(conn)`."""

    name = "job_stats"
    event_types = tuple(OUTCOMES)

    def setup(self, conn: Any) -> None:
        conn.execute(Q["setup"])

    def reset(self, conn: Any) -> None:
        conn.execute(Q["reset"])

    def apply(self, conn: Any, events: Sequence[Any]) -> None:
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        buckets: dict[tuple[str, int], int] = defaultdict(int)
        for event in events:
            kind = str(event.data.get("kind", "?"))
            counts[kind][OUTCOMES[event.type]] += 1
            latency = event.data.get("latency_ms")
            if event.type != "job.retried" and isinstance(latency, (int, float)) and latency >= 0:
                counts[kind]["lcount"] += 1
                counts[kind]["lsum"] += latency
                counts[kind]["lmax"] = max(counts[kind]["lmax"], latency)
                buckets[(kind, bucket_of(latency))] += 1
        kinds = sorted(counts)
        conn.execute(
            Q["add_counts"],
            {
                "kinds": kinds,
                "completed": [int(counts[k]["completed"]) for k in kinds],
                "failed": [int(counts[k]["failed"]) for k in kinds],
                "retried": [int(counts[k]["retried"]) for k in kinds],
                "rescued": [int(counts[k]["rescued"]) for k in kinds],
                "lcount": [int(counts[k]["lcount"]) for k in kinds],
                "lsum": [counts[k]["lsum"] for k in kinds],
                "lmax": [counts[k]["lmax"] for k in kinds],
            },
        )
        if buckets:
            keys = sorted(buckets)
            conn.execute(
                Q["add_buckets"],
                {"kinds": [k for k, _ in keys], "buckets": [b for _, b in keys], "counts": [buckets[key] for key in keys]},
            )


def read_job_stats(conn: Any) -> list[KindStats]:
    """The read model, with percentiles from the latency histogram (upper bucket bounds)."""
    histograms: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in conn.execute(Q["read_buckets"]).fetchall():
        histograms[row["kind"]].append((row["bucket"], row["count"]))
    result = []
    for row in conn.execute(Q["read_stats"]).fetchall():
        hist = histograms.get(row["kind"], [])
        count = row["latency_count"]
        result.append(
            KindStats(
                row["kind"],
                row["completed"],
                row["failed"],
                row["retried"],
                row["rescued"],
                row["latency_sum_ms"] / count if count else None,
                row["latency_max_ms"] if count else None,
                _percentile(hist, count, 0.50, row["latency_max_ms"]),
                _percentile(hist, count, 0.95, row["latency_max_ms"]),
                _percentile(hist, count, 0.99, row["latency_max_ms"]),
            )
        )
    return result


def _percentile(hist: list[tuple[int, int]], total: int, q: float, maximum: float) -> float | None:
    if not total:
        return None
    seen = 0
    for bucket, count in sorted(hist):
        seen += count
        if seen >= q * total:
            return min(float(2 ** (bucket + 1)), maximum)
    return maximum
