"""Which thespian system bases the runtime runs on, and how each one is configured.

- `multiprocTCPBase` (recommended): one OS process per actor, TCP on loopback; thespian reports
  a killed child within milliseconds.
- `multiprocQueueBase`: one OS process per actor, multiprocessing queues. thespian never
  reports a SIGKILLed actor here and its external interface wedges after one send to a dead
  actor, so the runtime checks processes itself and only ever talks to its kernel.
- `simpleSystemBase`: every actor in the caller's process and thread, run while the caller
  waits in `ask`. Deterministic, for unit tests; it does not pickle messages, and an actor
  that blocks blocks everything.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import attrs

from supervision.errors import ConfigError

LOOPBACK = "127.0.0.1"


@attrs.frozen
class BaseInfo:
    name: str
    in_process: bool
    #: True when thespian tells a parent that its killed child is gone
    reports_child_exit: bool
    #: True when the runtime may send from outside straight to any actor (a send to a dead
    #: actor does not break the external interface)
    direct_sends: bool
    #: default seconds between checks of child processes
    liveness_interval: float


BASES = {
    "multiprocTCPBase": BaseInfo("multiprocTCPBase", False, True, True, 1.0),
    "multiprocQueueBase": BaseInfo("multiprocQueueBase", False, False, False, 0.05),
    "simpleSystemBase": BaseInfo("simpleSystemBase", True, True, True, 1.0),
}


def base_info(name: Any) -> BaseInfo:
    info = BASES.get(name) if isinstance(name, str) else None
    if info is None:
        raise ConfigError(
            f"base: unknown thespian system base {name!r}; use one of {', '.join(BASES)} "
            "(multiprocTCPBase is the one for real use)"
        )
    return info


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ConfigError(f"admin_port: must be an integer from 1024 to 65535; got {port!r}")
    if port_in_use(port):
        raise ConfigError(
            f"admin_port: {port} is in use (another actor system or program listens there); "
            "the runtime never attaches to a system it did not start. Choose another port or omit "
            "admin_port to pick a free one"
        )
    return port


def capabilities(info: BaseInfo, admin_port: int | None) -> dict[str, Any]:
    caps: dict[str, Any] = {}
    if info.name == "multiprocTCPBase":
        caps["Admin Port"] = admin_port
    return caps


def log_defs(level: str | int = "WARNING", log_file: str | None = None) -> dict[str, Any]:
    """logging.dictConfig for thespian's logger process (multiproc bases): one line per record."""
    level_name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if not isinstance(logging.getLevelName(level_name), int):
        raise ConfigError(f"log_level: {level!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "formatter": "plain", "level": level_name}
    if log_file:
        handler = {"class": "logging.FileHandler", "filename": os.fspath(log_file), "formatter": "plain", "level": level_name}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": level_name},
        "loggers": {"Thespian": {"level": "ERROR"}},
    }
