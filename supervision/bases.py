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

import contextlib
import logging
import os
import random
import socket
import threading
from typing import Any, Iterator

import attrs

from supervision.errors import ConfigError

LOOPBACK = "127.0.0.1"


@attrs.frozen
class BaseInfo:
    """What the runtime needs to know about a thespian system base (in process or not, whether it
    reports child exits, whether direct sends are safe, how often to check liveness)."""

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


def check_listen(address: Any, trusted_network: bool) -> str:
    """The address actor systems listen on: loopback unless the network is trusted.

    thespian's TCP transport unpickles whatever arrives, so anyone who can reach its ports can
    run code in the actor system: like an Erlang cluster cookie, it is for trusted networks
    only, and must be asked for explicitly."""
    import ipaddress

    try:
        parsed = ipaddress.ip_address(address)
    except (TypeError, ValueError):
        raise ConfigError(f"listen: {address!r} is not an IP address (use 127.0.0.1, or a host address with trusted_network=True)") from None
    if parsed.version != 4:
        raise ConfigError("listen: thespian's TCP transport is IPv4 only")
    if not parsed.is_loopback and not trusted_network:
        raise ConfigError(
            f"listen: {address} is reachable from other hosts, and thespian unpickles whatever arrives there "
            "(anyone who can connect can run code); pass trusted_network=True only on a network you trust, "
            "or keep the default 127.0.0.1"
        )
    return str(parsed)


def bind_to(host: str) -> None:
    """Make thespian's TCP sockets bind `host` rather than every interface (0.0.0.0).

    thespian binds its admin and actor sockets to all interfaces; this patches the address class
    its transport binds with, before the actor system forks its processes (they inherit it).
    One listen address per process."""
    from thespian.system.transport import IPBase

    def bind_args(self: Any) -> tuple:
        name = self.bindname
        if isinstance(name, tuple) and len(name) == 2 and name[0] in ("", "0.0.0.0"):
            return ((host, name[1]),)
        return (name,)

    IPBase.IPActorAddress.bindArgs = property(bind_args)
    os.environ["THESPIAN_BASE_IPADDR"] = host


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


#: the lowest port picked below the ephemeral range (the well-known services live lower)
PORT_FLOOR = 10000
#: where Linux keeps the range it hands out to bind(port 0) and to connect()
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def admin_ports(range_file: str = EPHEMERAL_RANGE_FILE) -> range:
    """The ports a runtime picks its admin port from when none is given: above the kernel's
    ephemeral range (Linux: 61000-65535, in IANA's dynamic range, where no service is
    registered), else below it. A port inside the ephemeral range can be handed to any other
    socket in the moment between our check and thespian's bind; seen once in a CI run, where
    the actor system then failed to start."""
    try:
        with open(range_file) as handle:
            low, high = (int(part) for part in handle.read().split())
    except (OSError, ValueError):
        return range(61000, 65536)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    return range(max(PORT_FLOOR, low - 10000), low)  # empty when that leaves nothing: bind(0)


#: seeded by the OS, never by a program: processes that seed `random` alike (a test runner,
#: Hypothesis) must not all try the same ports
_ports_random = random.SystemRandom()


def free_port(host: str = LOOPBACK, ports: range | None = None) -> int:
    """A port on `host` that nothing is bound to, picked at random from `admin_ports()`."""
    candidates = ports if ports is not None else admin_ports()
    for port in _ports_random.sample(candidates, min(64, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as thespian binds it
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # that range is full
        probe.bind((host, 0))
        return probe.getsockname()[1]


_launches = threading.local()
_launch_lock = threading.Lock()


def _record_admin_launches() -> None:
    from thespian.system import multiprocCommon

    with _launch_lock:
        current = multiprocCommon.detach_child
        if getattr(current, "records_admin_launches", False):
            return

        def detach_child(childref: Any) -> None:
            recording = getattr(_launches, "pids", None)
            if recording is not None and getattr(childref, "name", None) == "ThespianAdmin" and childref.pid:
                recording.append(childref.pid)
            current(childref)

        detach_child.records_admin_launches = True  # type: ignore[attr-defined]
        multiprocCommon.detach_child = detach_child


@contextlib.contextmanager
def admin_launches() -> Iterator[list[int]]:
    """The pids of the admin launchers thespian forks in this thread meanwhile. Each leads the
    process group of the actor system it started (`startAdmin` calls setsid), so a start that
    failed can be swept by its group even when its admin came up too late to answer."""
    _record_admin_launches()
    _launches.pids = []
    try:
        yield _launches.pids
    finally:
        _launches.pids = None


def check_port(port: Any, host: str = LOOPBACK) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ConfigError(f"admin_port: must be an integer from 1024 to 65535; got {port!r}")
    if port_in_use(port, host):
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
