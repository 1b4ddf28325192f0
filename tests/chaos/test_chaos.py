"""The chaos suite (pytest -m chaos). A short run is part of the normal suite (with long jobs,
poison jobs and a SIGSTOPped worker); the full run (10,000 jobs, and a 30 s database outage) is
one command:

    python -m pytest tests/chaos -m chaos_full -s
"""

from __future__ import annotations

import pytest
from rich.console import Console

from tests.chaos.harness import ChaosConfig, run_chaos


def check(report) -> None:
    Console(width=110).print(report.table())
    assert report.jobs_enqueued > 0 and report.kills > 0 and report.fuzzed > 0
    assert report.failures == {name: 0 for name in report.failures}, report.failures
    assert report.crash_loop_escalated
    assert report.stop_seconds <= report.stop_budget


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_chaos_short(own_pg):
    check(run_chaos(own_pg, ChaosConfig(jobs=1500, duration=8.0, pg_restarts=2, fuzz_examples=120, kill_every=0.4, long_jobs=4, poison_jobs=3, sigstops=1)))


@pytest.mark.chaos_full
@pytest.mark.timeout(3600)
def test_chaos_full(own_pg):
    check(
        run_chaos(
            own_pg,
            ChaosConfig(
                jobs=10_000, duration=60.0, pg_restarts=5, fuzz_examples=600, kill_every=0.3, seed=2,
                long_jobs=20, long_seconds=4.0, poison_jobs=10, sigstops=4, outage_seconds=30.0,
            ),
        )
    )  # fmt: skip
