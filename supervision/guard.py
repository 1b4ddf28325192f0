"""Keeps thespian's own processes (its admin and logger) from breaking the runtime or outliving it.

Two patches of thespian's multiproc startup, installed in the owner's process before the
actor system forks (the admin and logger inherit them):

- thespian restarts its logger when it dies, but its restart reads two attributes the admin
  never set (`logDefs`, `mpcontext`): the AttributeError killed the admin, and with it every
  actor, within 1.5 s of a SIGKILL of the logger. The patch records them.
- the logger process runs a guard thread: when the process that owns the runtime dies, or the
  admin does (the logger's parent), it SIGKILLs the actor system's process group. The kernel
  guards the owner too, but a SIGKILLed kernel left the admin and logger behind as orphans
  (alive 20 s later) once the owner died as well.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from supervision.liveness import ProcessIdentity

#: Seconds between the logger guard's checks of the owner and the admin.
GUARD_INTERVAL = 0.2

#: the pid the patches were installed for, and thespian's own functions
_installed_for: int | None = None
_originals: dict[str, Any] = {}


def install(owner: ProcessIdentity, interval: float = GUARD_INTERVAL) -> None:
    """Patch thespian's multiproc startup for `owner` (this process; again after a fork)."""
    global _installed_for
    if _installed_for == owner.pid:
        return
    from thespian.system import multiprocCommon

    _originals.setdefault("start_logger", multiprocCommon._startLogger)
    _originals.setdefault("logger_main", multiprocCommon.startupASLogger)
    original_start_logger = _originals["start_logger"]
    original_logger_main = _originals["logger_main"]

    def start_logger(transport_class: Any, transport: Any, admin: Any, capabilities: Any, log_defs: Any, context: Any) -> None:
        admin.logDefs = log_defs  # read by thespian's childDied when it restarts a dead logger
        admin.mpcontext = context
        original_start_logger(transport_class, transport, admin, capabilities, log_defs, context)

    def logger_main(*args: Any, **kwargs: Any) -> Any:
        threading.Thread(target=_guard, args=(owner, os.getppid(), interval), name="thespian-otp-guard", daemon=True).start()
        return original_logger_main(*args, **kwargs)

    multiprocCommon._startLogger = start_logger
    multiprocCommon.startupASLogger = logger_main
    _installed_for = owner.pid


def _guard(owner: ProcessIdentity, admin_pid: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if not owner.is_alive() or os.getppid() != admin_pid:
            group = os.getpgid(0)
            if os.getsid(0) == group:  # the admin's session: the actor system and nothing else
                os.killpg(group, signal.SIGKILL)
            os._exit(1)
