"""Every example runs to completion with one command, so none of them rots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "supervision_tree.py": ["rest_for_one restarts db and cache", "flaky-branch gave up"],
    "dead_letters.py": ["20 reruns after 20 kills", "killed mid-request: DeadLetter"],
    "job_completer.py": ["stopped the whole tree under load", "completed exactly once (0 twice), 0 left running"],
    "projector_failover.py": ["took over in", "read model equals a replay from scratch: True"],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_tells_its_story(script, postgres_dsn):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent,
        env={**os.environ, "DATABASE_URL": postgres_dsn, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for phrase in EXPECTED[script]:
        assert phrase in " ".join(result.stdout.split()), result.stdout[-3000:]


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")} == set(EXPECTED)
