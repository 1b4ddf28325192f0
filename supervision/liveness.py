"""Which OS process an actor runs in, and whether that process is still alive.

thespian's multiprocQueueBase never reports a SIGKILLed actor (THESPIAN_NOTES.md), so the
runtime checks actor processes itself. A `ProcessIdentity` is a pid plus the process's start
time, so a reused pid is never mistaken for the old actor, and a zombie (killed, not yet
reaped) counts as dead.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

import attrs

_HOST = socket.gethostname()
_PR_SET_PDEATHSIG = 1


class CannotTell(OSError):
    """/proc could not be read for another reason than the process being gone (this process is
    out of file descriptors or memory): whether it lives is unknown."""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc, or None if there is no such process;
    `CannotTell` if /proc cannot be read and the process still answers signal 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:  # EMFILE, ENOMEM...: never taken for "gone" (a watcher would kill a live runtime)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        raise CannotTell(f"cannot read /proc/{pid}/stat: {exc}") from exc
    # the command name (field 2) is in parentheses and may contain spaces
    rest = data[data.rindex(b")") + 2 :].split()
    return rest[0].decode(), int(rest[19])


def _psutil_stat(pid: int) -> tuple[str, int] | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        status = proc.status()
        started = int(proc.create_time() * 100)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return ("Z" if status == psutil.STATUS_ZOMBIE else "R"), started


_HAVE_PROC = os.path.exists("/proc/self/stat")
_stat = _proc_stat if _HAVE_PROC else _psutil_stat


@attrs.frozen
class ProcessIdentity:
    """A process that cannot be mistaken for another: pid, start time (from /proc) and host. A
    reused pid has another start time."""

    pid: int
    start_time: int
    host: str = _HOST

    @classmethod
    def current(cls) -> "ProcessIdentity":
        found = _stat(os.getpid())
        return cls(os.getpid(), found[1] if found else 0)

    @classmethod
    def of(cls, pid: int) -> "ProcessIdentity | None":
        found = _stat(pid)
        return cls(pid, found[1]) if found else None

    @property
    def is_local(self) -> bool:
        return self.host == _HOST

    def is_alive(self) -> bool:
        """False when the process is gone, a zombie, or the pid now belongs to another process.

        A process on another host cannot be checked from here and counts as alive, as does one
        whose /proc entry this process cannot read although it answers signal 0 (`CannotTell`)."""
        if not self.is_local:
            return True
        try:
            found = _stat(self.pid)
        except CannotTell:
            return True  # unknown counts as alive: a live process is never ended on a failed read
        if found is None:
            return False
        state, started = found
        return state not in ("Z", "X", "x") and started == self.start_time

    def kill(self, sig: int = signal.SIGKILL) -> bool:
        """Send `sig` if this is still the same live process; True if it was sent."""
        if not self.is_local or not self.is_alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the process that forked it dies (Linux).

    This links an actor process to its supervisor's process as OTP links a child to its
    supervisor: a killed supervisor takes its subtree with it, and nothing is left orphaned.

    It also gives the fatal signals back their default action (see `default_fatal_signals`)."""
    default_fatal_signals()
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return


#: Signals a native crash raises. thespian installs a Python handler for them in actor
#: processes; a Python handler cannot recover from a segfault (the faulting instruction runs
#: again as soon as the handler returns), so the process spun at 100 % CPU forever instead of
#: dying, and its supervisor never restarted it.
FATAL_SIGNALS = tuple(getattr(signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT") if hasattr(signal, n))


def default_fatal_signals() -> None:
    """Let a native crash kill this process (the default action), so its supervisor sees it die."""
    for sig in FATAL_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # not the main thread, or not settable here
            pass


def this_host() -> str:
    return _HOST


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes whose process group is `group`."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(proc.info["pid"]) != group:
                continue
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
        members.append(proc.info["pid"])
    return members
