"""Every example runs to completion with one command, so none of them rots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "supervision_tree.py": ["rest_for_one restarts db and cache", "flaky-branch gave up"],
    "dead_letters.py": ["20 reruns after 20 kills", "killed mid-request: DeadLetter"],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_tells_its_story(script):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=90, cwd=EXAMPLES.parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for phrase in EXPECTED[script]:
        assert phrase in " ".join(result.stdout.split()), result.stdout[-3000:]


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)
