"""Shared helpers for benchmarks: timing, percentiles, a result table, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs

RESULTS = Path(__file__).resolve().parent / "results"


@attrs.define
class Row:
    """One measured figure next to its baseline from the same run."""

    measure: str
    ours: float
    baseline: float | None
    unit: str
    baseline_name: str = ""
    goal: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.ours == 0:
            return None
        return self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        if not self.goal:
            return None
        op, _, number = self.goal.partition(" ")
        target = float(number.rstrip("x"))
        value = self.ratio
        if value is None:
            return None
        return value >= target if op == ">=" else value <= target


@attrs.define
class Report:
    name: str
    rows: list[Row] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = [
            f"### {self.name}",
            "",
            "| measure | ours | baseline | ratio | goal | met |",
            "|---|---:|---:|---:|---|---|",
        ]
        for row in self.rows:
            base = "-" if row.baseline is None else f"{_fmt(row.baseline)} {row.unit} ({row.baseline_name})"
            ratio = "-" if row.ratio is None else (f"{row.ratio:.2f}x" if row.ratio >= 0.01 else f"{row.ratio:.1e}x")
            met = {None: "", True: "yes", False: "**no**"}[row.met]
            lines.append(f"| {row.measure} | {_fmt(row.ours)} {row.unit} | {base} | {ratio} | {row.goal} | {met} |")
        lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": [dict(attrs.asdict(r), ratio=r.ratio, met=r.met) for r in self.rows],
            "notes": self.notes,
        }

    def emit(self, slug: str) -> None:
        """Print the table and write results/<slug>.json."""
        print(self.markdown())
        RESULTS.mkdir(exist_ok=True)
        data = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), **self.to_dict()}
        (RESULTS / f"{slug}.json").write_text(json.dumps(data, indent=2))
        print(f"\n(wrote {RESULTS / (slug + '.json')})")


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def run_threads(target: Callable[[], Any], count: int) -> float:
    """Run `target` in `count` threads at once; the seconds until the last one finished."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


@contextmanager
def database_url(dsn: str | None) -> Iterator[str]:
    """`dsn`, else $DATABASE_URL, else a temporary embedded server (stopped on the way out)."""
    from actors.stores.setup import resolve_database

    handle = resolve_database(dsn, temporary=True, migrate=False)
    try:
        yield handle.config.dsn
    finally:
        handle.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


