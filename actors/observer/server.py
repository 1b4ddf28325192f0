"""`Observer`: the web page and /metrics of a live runtime, served by uvicorn on a thread of this process.

```python
from actors.observer import serve

with serve(rt, db_config, port=8765) as observer:     # bound to 127.0.0.1
    print(observer.url)
```

Two threads: one takes a snapshot every `interval` seconds (0.5 s; the database part every
`database_interval`, 1 s: a page is that old at most, plus the snapshot's own time and the
feed's 0.1 s poll), one runs uvicorn. The socket is bound before `start` returns, so a
port in use is a clear `ConfigError` at once, and `port=0` picks a free one (`observer.port`).
"""

from __future__ import annotations

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

    # --- what the app asks --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def actions_enabled(self) -> bool:
        return not self.read_only and self.job_ops is not None

    def allowed_hosts(self) -> list[str]:
        import ipaddress

        hosts = {self.host}
        if ipaddress.ip_address(self.host).is_loopback:
            hosts |= {"localhost", "127.0.0.1"}
        return sorted(hosts)

    def allowed_origins(self) -> set[str]:
        return {f"http://{host}:{self.port}" for host in self.allowed_hosts()}

    def specs(self) -> list[Any]:
        return list(getattr(self.runtime, "_trees", {}).values())

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "Observer":
        import uvicorn

        from actors.observer.app import build_app

        self._socket = self._bind()
        self.port = self._socket.getsockname()[1]
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
