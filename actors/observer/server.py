"""`Observer`: the web page and /metrics of a live runtime, served by uvicorn on a thread of this process.

```python
from actors.observer import serve

with serve(rt, db_config, port=8765) as observer:     # bound to 127.0.0.1
    print(observer.url)
```

Who may reach it: it listens on 127.0.0.1 unless given another `host` with
`trusted_network=True`, and answers only the Host names of the address it listens on (no DNS
rebinding; see `answered_hosts`): a wildcard bind (0.0.0.0) answers every address and the name
of this machine, and `allowed_hosts` adds the names it is reached by (a DNS name, a proxy's).

Two threads: one takes a snapshot every `interval` seconds (0.5 s; the database part every
`database_interval`, 1 s: a page is that old at most, plus the snapshot's own time and the
feed's 0.1 s poll), one runs uvicorn. The socket is bound before `start` returns, so a
port in use is a clear `ConfigError` at once, and `port=0` picks a free one (`observer.port`).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
import threading
import time
from typing import Any

import attrs

from actors.observer.collect import Collector
from actors.observer.history import History
from actors.observer.metrics import Metrics
from supervision import bases
from supervision.errors import ConfigError
from supervision.logs import logger

log = logger("actors.observer")

WILDCARD = "0.0.0.0"
LOOPBACK_NAMES = ("localhost", bases.LOOPBACK)
#: a host name (RFC 1123 labels) or an IPv4 address: what a Host header names, without its port
HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def check_allowed_hosts(names: Any) -> tuple[str, ...]:
    """`allowed_hosts` as lower-case names: host names or IPv4 addresses, no port, scheme or wildcard."""
    if isinstance(names, str) or not isinstance(names, (list, tuple, set, frozenset)):
        raise ConfigError(f"allowed_hosts: {names!r} must be a list of host names, such as ['observer.example.com']")
    checked = []
    for name in names:
        if not isinstance(name, str) or not HOST_NAME.fullmatch(name.lower().rstrip(".")):
            raise ConfigError(
                f"allowed_hosts: {name!r} is not a host name or IPv4 address; give the name the observer is "
                "reached by, such as observer.example.com (no scheme, port, path or wildcard)"
            )
        checked.append(name.lower().rstrip("."))
    return tuple(checked)


def machine_addresses() -> list[str]:
    """This machine's IPv4 addresses, every interface (what a wildcard bind is reachable at)."""
    import psutil

    return sorted({a.address for addresses in psutil.net_if_addrs().values() for a in addresses if a.family == socket.AF_INET})


def answered_hosts(bind: str, allowed: tuple[str, ...], addresses: list[str], names: list[str]) -> list[str]:
    """The Host names an observer bound to `bind` answers: that address; the loopback names when
    it listens on loopback; for a wildcard bind, every address of the machine (`addresses`) and
    its `names` too, since it listens on all of them; and the `allowed` names.

    A foreign name is refused even when it resolves to one of these addresses: that is a DNS
    rebinding page trying to read the observer (and its token) from the user's browser."""
    hosts = {bind, *allowed}
    if bind == WILDCARD:
        hosts |= {*addresses, *(n.lower() for n in names), *LOOPBACK_NAMES}
        hosts.discard(WILDCARD)  # nobody reaches a machine at 0.0.0.0
    elif ipaddress.ip_address(bind).is_loopback:
        hosts |= set(LOOPBACK_NAMES)
    return sorted(hosts)


def load_job_ops(config: Any) -> tuple[Any, str | None]:
    """The job operations API (`actors.jobs.ops.JobOps`) on `config`, or None and why not."""
    if config is None:
        return None, "the observer has no database"
    try:
        from actors.jobs.ops import JobOps
    except ImportError as exc:
        return None, f"the job operations API is not installed ({exc})"
    return JobOps(config), None


class Observer:
    """Arguments:
    - `runtime`: a started `Runtime`, or one attached with `Runtime.attach(name)`.
    - `database`: a `DatabaseConfig` for the jobs, nodes and projections (None: the tree only).
    - `host`, `port`: where to listen (127.0.0.1 and a free port by default); any other address
      needs `trusted_network=True`, as for the runtime.
    - `allowed_hosts`: more names the page is reached by (a DNS name of this machine, a proxy's
      name); the address it listens on is always answered, and for 0.0.0.0 every address and
      the host name of this machine.
    - `read_only`: no retry/cancel buttons, and the POSTs are refused.
    - `interval`: seconds between snapshots of the tree; `database_interval`: of the database
      (jobs, nodes, projections); `points`: how many snapshots the charts keep.
    - `projections`: extra projections (import paths or classes) whose lag to show.
    """

    def __init__(
        self,
        runtime: Any,
        database: Any = None,
        *,
        host: str = bases.LOOPBACK,
        port: int = 0,
        read_only: bool = False,
        trusted_network: bool = False,
        allowed_hosts: Any = (),
        interval: float = 0.5,
        database_interval: float = 1.0,
        points: int = 120,
        projections: tuple = (),
    ) -> None:
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0.05 <= interval <= 60:
            raise ConfigError(f"interval: {interval!r} must be between 0.05 and 60 seconds")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"port: {port!r} must be an integer between 0 and 65535 (0: a free port)")
        self.host = bases.check_listen(host, trusted_network)
        self.allowed_hosts = check_allowed_hosts(allowed_hosts)
        self.runtime = runtime
        self.config = attrs.evolve(database, application_name="thespian-otp:observer", pool_max=2) if database is not None else None
        self.read_only = read_only
        self.interval = float(interval)
        if not isinstance(database_interval, (int, float)) or isinstance(database_interval, bool) or not 0 <= database_interval <= 600:
            raise ConfigError(f"database_interval: {database_interval!r} must be between 0 and 600 seconds")
        self.database_interval = float(database_interval)
        self.points = points
        self.extra_projections = tuple(projections)
        self.requested_port = port
        self.port: int | None = None
        self.token = secrets.token_urlsafe(32)
        self.stopping = threading.Event()
        self.job_ops: Any = None
        self.actions_note: str | None = "read-only" if read_only else None
        self.database: Any = None
        self.collector: Collector | None = None
        self.metrics: Metrics | None = None
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._socket: socket.socket | None = None
        self._hosts: list[str] = []

    # --- what the app asks --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where to open the page on this machine (127.0.0.1 for a wildcard bind)."""
        return f"http://{bases.LOOPBACK if self.host == WILDCARD else self.host}:{self.port}/"

    def urls(self) -> list[str]:
        """Every address the page is reached at (for a wildcard bind: each of the machine's)."""
        if self.host != WILDCARD:
            return [self.url]
        return [f"http://{a}:{self.port}/" for a in machine_addresses()]

    @property
    def actions_enabled(self) -> bool:
        return not self.read_only and self.job_ops is not None

    def hosts(self) -> list[str]:
        """The Host names answered (computed once, when it starts: see `answered_hosts`)."""
        return self._hosts

    def allowed_origins(self) -> set[str]:
        """The page's own origins: a POST from any other is a cross-site request."""
        ports = [f":{self.port}"] + ([""] if self.port == 80 else [])
        return {f"http://{host}{port}" for host in self._hosts for port in ports}

    def specs(self) -> list[Any]:
        return list(getattr(self.runtime, "_trees", {}).values())

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "Observer":
        import uvicorn

        from actors.observer.app import build_app

        self._socket = self._bind()
        self.port = self._socket.getsockname()[1]
        wildcard = self.host == WILDCARD
        self._hosts = answered_hosts(
            self.host, self.allowed_hosts, machine_addresses() if wildcard else [], [socket.gethostname()] if wildcard else []
        )  # fmt: skip
        try:
            if self.config is not None:
                from actors.stores.database import Database

                self.database = Database(self.config).open()
                if not self.read_only:
                    self.job_ops, self.actions_note = load_job_ops(self.config)
            projections = _projection_types(self.extra_projections)
            # read the database on the tick closest to each database_interval (ticks jitter)
            self.collector = Collector(
                self.runtime, self.database, history=History(self.points), projections=projections,
                database_interval=max(0.0, self.database_interval - self.interval / 2),
            )  # fmt: skip
            self.metrics = Metrics(self.collector)
            self.collector.on_events = self.metrics.on_events
            self.collector.on_snapshot = self.metrics.on_snapshot
            self.collector.collect()  # the first page load has data, and the event tail is set
            config = uvicorn.Config(
                build_app(self), log_level="warning", lifespan="off", timeout_graceful_shutdown=1, access_log=False
            )
            self._server = uvicorn.Server(config)
            self._spawn("observer-http", self._serve)
            self._spawn("observer-snapshots", self._snapshots)
            deadline = time.monotonic() + 10.0
            while not self._server.started and time.monotonic() < deadline and self._threads[0].is_alive():
                time.sleep(0.01)
            if not self._server.started:
                raise ConfigError(f"the observer's web server did not start on {self.host}:{self.port}")
        except BaseException:
            self.stop()
            raise
        log.info("observer on %s", self.url)
        return self

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"port: cannot listen on {self.host}:{self.requested_port} ({exc.strerror}); "
                "choose another with --port, or 0 for a free one"
            ) from None
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def _snapshots(self) -> None:
        """On a fixed cadence (not `interval` after each snapshot, which under load added the
        snapshot's own 160 ms to every period): a late snapshot is followed at once by the next."""
        assert self.collector is not None
        due = time.monotonic()
        while True:
            due = max(due + self.interval, time.monotonic() - self.interval)
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                return
            try:
                self.collector.collect()
            except Exception:  # noqa: BLE001 - the next snapshot tries again; the page shows errors
                log.exception("observer snapshot failed")

    def stop(self) -> None:
        """Stop serving (open pages see the feed end) and close the database. Safe to call twice."""
        self.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads = []
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for resource in (self.job_ops, self.database):
            close = getattr(resource, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing on the way out
                    pass
        self.job_ops = None
        self.database = None

    def __enter__(self) -> "Observer":
        return self if self._server is not None else self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _projection_types(references: tuple) -> dict[str, Any] | None:
    from actors.observer.collect import _builtin_projection_types

    found = _builtin_projection_types()
    if references:
        from actors.projector import load_projection

        for reference in references:
            projection = load_projection(reference)
            found[projection.name] = tuple(projection.event_types) if projection.event_types else None
    return found


def serve(runtime: Any, database: Any = None, **options: Any) -> Observer:
    """Start an `Observer` of `runtime` (see its arguments); stop it with `.stop()` or `with`."""
    return Observer(runtime, database, **options).start()
