"""A state machine over real programs sharing one embedded data directory: owners start, are
SIGKILLed, SIGTERMed or stop cleanly, and the keeper itself is SIGKILLed, in any order.

Invariants: while any owner lives, all of them use the one same postmaster (a new program
attaches to it, even when its keeper was killed); once none lives, no PostgreSQL process of the
directory is left after a bounded wait, except after the keeper itself was SIGKILLed, when the
next program to start stops the leftover and starts cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.stores import pgcluster
from tests.support import wait_for
from tests.test_embedded import GONE_WITHIN, Owner, _answers


class SharedDataDir(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="thespian-otp-sm-"))
        self.root.chmod(0o711)  # as root the server's account passes through
        self.data_dir = self.root / "data"
        self.owners: list[Owner] = []
        self.postmaster: int | None = None
        self.orphan_possible = False  # the keeper was SIGKILLed and nothing replaced it yet

    @precondition(lambda self: len(self.owners) < 3)
    @rule()
    def start_owner(self) -> None:
        before = pgcluster.postmaster_status(self.data_dir)
        owner = Owner(str(self.data_dir))
        self.owners.append(owner)
        now = pgcluster.postmaster_status(self.data_dir)
        assert now is not None
        if len(self.owners) > 1:
            assert now[0] == self.postmaster, "a second program restarted the server instead of attaching"
        elif before is not None:
            assert not psutil.pid_exists(before[0]) or not pgcluster.alive(psutil.Process(before[0])), "a leftover server was attached to"
        self.postmaster = now[0]
        self.orphan_possible = False

    @precondition(lambda self: self.owners)
    @rule(index=st.integers(0, 2), sig=st.sampled_from([signal.SIGKILL, signal.SIGTERM]))
    def kill_owner(self, index: int, sig: int) -> None:
        owner = self.owners.pop(index % len(self.owners))
        owner.kill(sig)
        self._check_gone_if_unused()

    @precondition(lambda self: self.owners)
    @rule(index=st.integers(0, 2))
    def stop_owner(self, index: int) -> None:
        owner = self.owners.pop(index % len(self.owners))
        owner.stop()
        if not self.owners:
            assert not pgcluster.cluster_processes(self.data_dir), "the last clean stop left the server running"
            self.orphan_possible = False

    @precondition(lambda self: self.owners and not self.orphan_possible)
    @rule()
    def kill_keeper(self) -> None:
        keeper = json.loads((self.data_dir / pgcluster.STATE_FILE).read_text())["keeper"]
        os.kill(keeper, signal.SIGKILL)
        wait_for(lambda: not pgcluster.alive(psutil.Process(keeper)) if psutil.pid_exists(keeper) else True, 10, what="the keeper to die")
        self.orphan_possible = True

    def _check_gone_if_unused(self) -> None:
        if not self.owners and not self.orphan_possible:
            wait_for(lambda: not pgcluster.cluster_processes(self.data_dir), GONE_WITHIN, what="the unused server to stop")

    @invariant()
    def every_live_owner_uses_the_same_server(self) -> None:
        if self.owners:
            assert len({owner.dsn for owner in self.owners}) == 1
            assert all(_answers(owner.dsn) for owner in self.owners)

    def teardown(self) -> None:
        for owner in self.owners:
            owner.close()
        for process in pgcluster.cluster_processes(self.data_dir):
            process.kill()
        subprocess.run(["rm", "-rf", str(self.root)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


SharedDataDir.TestCase.settings = settings(max_examples=3, stateful_step_count=6, deadline=None)
test_programs_sharing_a_data_directory = pytest.mark.timeout(600)(SharedDataDir.TestCase)
