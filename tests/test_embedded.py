"""The embedded server's lifecycle: it never outlives its last user, whatever killed that user,
and a new program reuses only a server it can prove is its own, else starts cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from actors.stores import pgcluster
from actors.stores.embedded import EmbeddedPostgres
from tests.support import wait_for

# a fast shutdown takes well under a second here; 20 s bounds it on a loaded 2-core machine
GONE_WITHIN = 20.0


@pytest.fixture
def reachable_dir():
    """A directory of this test's, which the server's account may pass through (as root the
    server runs as `thespian-otp`, and pytest's tmp_path is 0700 root)."""
    made = Path(tempfile.mkdtemp(prefix="thespian-otp-test-"))
    made.chmod(0o711)
    yield made
    for process in pgcluster.cluster_processes(made / "data"):
        process.kill()
    subprocess.run(["rm", "-rf", str(made)], check=False)


class Owner:
    """A program (tests/embedded_owner.py) that starts or attaches to a server, then waits."""

    def __init__(self, target: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.embedded_owner", target],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
        )  # fmt: skip
        line = self.process.stdout.readline()
        assert line, f"the owner program exited with {self.process.wait()}"
        info = json.loads(line)
        self.dsn, self.data_dir = info["dsn"], Path(info["data_dir"])

    def kill(self, sig: int) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        assert self.process.wait(timeout=60) == 0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def owners():
    started: list[Owner] = []

    def start(target: str) -> Owner:
        owner = Owner(target)
        started.append(owner)
        return owner

    yield start
    for owner in started:
        owner.close()


def _answers(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def _postmaster(data_dir: Path) -> int:
    status = pgcluster.postmaster_status(data_dir)
    assert status is not None, f"no postmaster runs in {data_dir}"
    return status[0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_owner_leaves_no_postgres_process_and_its_temporary_directory_goes(owners, sig):
    owner = owners("-")
    assert _answers(owner.dsn)
    processes = pgcluster.cluster_processes(owner.data_dir)
    assert len(processes) >= 3  # postmaster, checkpointer, ...: there is something to leave behind
    owner.kill(sig)
    wait_for(lambda: not pgcluster.cluster_processes(owner.data_dir), GONE_WITHIN, what="the server to stop")
    assert not any(pgcluster.alive(p) for p in processes)
    wait_for(lambda: not owner.data_dir.parent.exists(), GONE_WITHIN, what="the temporary directory to go")


def test_a_second_program_shares_the_server_and_the_last_one_to_leave_stops_it(owners, reachable_dir):
    data_dir = reachable_dir / "data"
    first = owners(str(data_dir))
    postmaster = _postmaster(data_dir)
    second = owners(str(data_dir))
    assert second.dsn == first.dsn and _postmaster(data_dir) == postmaster  # attached, not restarted
    first.kill(signal.SIGKILL)
    assert _answers(second.dsn)  # still served: a user is left
    assert _postmaster(data_dir) == postmaster
    second.stop()
    assert not pgcluster.cluster_processes(data_dir)  # the clean stop stopped it, at once
    assert (data_dir / "PG_VERSION").exists()  # a named data directory is kept


def test_a_server_whose_keeper_was_killed_is_stopped_and_restarted_cleanly_by_the_next_program(owners, reachable_dir):
    data_dir = reachable_dir / "data"
    first = owners(str(data_dir))
    orphan = psutil.Process(_postmaster(data_dir))
    keeper = json.loads((data_dir / pgcluster.STATE_FILE).read_text())["keeper"]
    os.kill(keeper, signal.SIGKILL)
    first.kill(signal.SIGKILL)
    assert pgcluster.alive(orphan)  # nobody is left to stop it: the next program must notice
    second = owners(str(data_dir))
    assert not pgcluster.alive(orphan)  # not silently attached to: stopped
    assert _postmaster(data_dir) != orphan.pid and _answers(second.dsn)
    second.kill(signal.SIGKILL)
    wait_for(lambda: not pgcluster.cluster_processes(data_dir), GONE_WITHIN, what="the new server to stop")


def test_the_last_stop_in_process_stops_the_server_before_returning(reachable_dir):
    server = EmbeddedPostgres(reachable_dir / "data")
    twin = EmbeddedPostgres(reachable_dir / "data")
    dsn = server.start()
    assert twin.start() == dsn  # one process, one attachment: the twin shares it
    twin.stop()
    assert _answers(dsn)  # the other handle still uses it
    processes = pgcluster.cluster_processes(server.data_dir)
    server.stop()
    assert not any(pgcluster.alive(p) for p in processes)
    again = EmbeddedPostgres(reachable_dir / "data")  # the data survives a stop and a new start
    try:
        assert _answers(again.start())
    finally:
        again.stop()


def test_a_stopped_and_restarted_server_keeps_its_dsn_and_a_temporary_one_is_deleted_at_stop():
    server = EmbeddedPostgres(temporary=True)
    dsn = server.start()
    server.stop_server()
    assert not pgcluster.cluster_processes(server.data_dir)
    server.start_server()
    assert server.dsn == dsn and _answers(dsn)
    server.restart("immediate")
    assert _answers(dsn)
    server.stop()
    assert not server.data_dir.parent.exists() and not pgcluster.cluster_processes(server.data_dir)


def test_a_program_joining_a_server_whose_keeper_was_killed_keeps_it_and_starts_a_new_keeper(owners, reachable_dir):
    data_dir = reachable_dir / "data"
    first = owners(str(data_dir))
    postmaster = _postmaster(data_dir)
    old_keeper = json.loads((data_dir / pgcluster.STATE_FILE).read_text())["keeper"]
    os.kill(old_keeper, signal.SIGKILL)
    second = owners(str(data_dir))  # the first one still uses the server: not a leftover
    assert _postmaster(data_dir) == postmaster and _answers(first.dsn)
    new_keeper = json.loads((data_dir / pgcluster.STATE_FILE).read_text())["keeper"]
    assert new_keeper != old_keeper and pgcluster.alive(psutil.Process(new_keeper))
    first.kill(signal.SIGKILL)
    second.kill(signal.SIGTERM)
    wait_for(lambda: not pgcluster.cluster_processes(data_dir), GONE_WITHIN, what="the server to stop")
