"""Snapshot collection: one JSON-able picture of the live system, taken on a timer.

A `Collector` asks the runtime for its tree, psutil for each actor process's memory, every
limiter actor for its key statistics, and the database (when it has one) for jobs, worker
processes of every node, projections and the job events since the last snapshot. Each part
that fails (the database is down, a limiter is restarting) is reported in `errors` and the
rest of the snapshot still goes out: an observer is most useful when something is broken.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Callable

import psutil

from actors.observer.history import ActorCounts, History
from supervision.introspect import Tree, TreeNode

#: job events and the outcome each one counts as
JOB_EVENTS = {"job.completed": "completed", "job.failed": "failed", "job.retried": "retried", "job.rescued": "rescued"}
#: job events read per snapshot: up to 4 windows of 5,000, so 40,000 events/s (twice the no-op
#: job rate measured on 2 cores, each job one event) at 0.5 s a snapshot never leaves it behind
EVENT_WINDOW = 5000
EVENT_WINDOWS = 4
#: how long to wait for a limiter's statistics before showing the rest without them
LIMITER_TIMEOUT = 0.5


def jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


#: A database read is due this much before its interval is up: snapshots come on a timer, so the
#: one at 1 s after a read may run at 0.999 s; waiting for the next (1.5 s) made the page's
#: jobs 1.5 s old against the 1 s the observer promises.
DUE_SLACK = 0.05


def database_due(elapsed: float, interval: float) -> bool:
    """Is the database part due, `elapsed` seconds after it was last read?"""
    return elapsed >= interval - DUE_SLACK


class Collector:
    """Takes snapshots of `runtime` (and `database`, a `Database`, if given).

    `on_events(events)` is called with each batch of new job events, `on_snapshot(tree_seconds,
    seconds)` after each snapshot (for the metrics).
    `database_interval`: the database part is read at most this often (the tree every time):
    with 20,000 queued jobs and 4 busy workers it took 73 ms (median) against 30 ms for the
    tree (docs/NOTES.md), so a 0.5 s tree stays cheap while jobs are at most 1 s behind."""

    def __init__(
        self,
        runtime: Any,
        database: Any = None,
        *,
        history: History | None = None,
        limit: int = 10,
        on_events: Callable[[list], None] | None = None,
        on_snapshot: Callable[[float | None, float], None] | None = None,
        projections: dict[str, Any] | None = None,
        database_interval: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.database = database
        self.history = history or History()
        self.limit = limit
        self.on_events = on_events
        self.on_snapshot = on_snapshot
        self.projection_types = projections if projections is not None else _builtin_projection_types()
        self.store = None
        self.checkpoint = None
        if database is not None:
            from actors.stores.observer import PgObserverStore

            self.store = PgObserverStore(database)
        self.tree: Tree | None = None
        self.latest: dict[str, Any] | None = None
        self.version = 0
        self.changed = threading.Condition()
        self._processes: dict[int, psutil.Process] = {}
        self._collecting = threading.Lock()
        self.database_interval = database_interval
        self._database_view: dict[str, Any] | None = None
        self._database_read = float("-inf")

    # --- one snapshot ------------------------------------------------------------------------

    def collect(self) -> dict[str, Any]:
        """Take a snapshot now (one at a time: the timer, a job action and a first page load
        may ask together, and two readers of the same job events would count them twice)."""
        with self._collecting:
            return self._collect()

    def _collect(self) -> dict[str, Any]:
        at = time.time()
        started = time.perf_counter()
        errors: dict[str, str] = {}
        tree = self._tree(errors)
        tree_seconds = time.perf_counter() - started if tree is not None else None
        outcomes, events = self._job_events(errors)
        actors = {
            n.name: ActorCounts(n.restarts, n.counters.crashes, n.counters.dead_letters, n.counters.recoverable_errors, n.last_exit, n.counters.last_error)
            for n in (tree.walk() if tree else ())
        }
        self.history.observe(at, actors, outcomes)
        if events and self.on_events is not None:
            self.on_events(events)
        snapshot = {
            "taken_at": at,
            "runtime": {"name": getattr(self.runtime, "name", None), "base": tree.base if tree else None},
            "tree": [self._node(n) for n in tree.nodes] if tree else [],
            "series": self.history.series(),
            "totals": dict(self.history.totals),
            "limiters": self._limiters(tree),
            "database": self._database_now(errors),
            "errors": errors,
        }
        if self.on_snapshot is not None:
            self.on_snapshot(tree_seconds, time.perf_counter() - started)
        with self.changed:
            self.tree = tree
            self.latest = snapshot
            self.version += 1
            self.changed.notify_all()
        return snapshot

    def _tree(self, errors: dict[str, str]) -> Tree | None:
        try:
            return self.runtime.tree(timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the next snapshot tries again
            errors["tree"] = f"{type(exc).__name__}: {exc}"
            return None

    def _node(self, node: TreeNode) -> dict[str, Any]:
        return {
            "name": node.name,
            "kind": node.kind,
            "actor_class": node.actor_class,
            "status": node.status,
            "pid": node.pid,
            "restarts": node.restarts,
            "restart": node.restart,
            "strategy": node.strategy,
            "last_exit": node.last_exit,
            "crashes": node.counters.crashes,
            "dead_letters": node.counters.dead_letters,
            "recoverable_errors": node.counters.recoverable_errors,
            "memory": self.memory(node.pid),
            "children": [self._node(c) for c in node.children],
        }

    def memory(self, pid: int | None) -> int | None:
        """Resident memory of the actor's process in bytes (None when it is gone)."""
        if not pid:
            return None
        try:
            process = self._processes.get(pid)
            if process is None or not process.is_running():
                process = self._processes[pid] = psutil.Process(pid)
            return process.memory_info().rss
        except (psutil.Error, OSError):
            self._processes.pop(pid, None)
            return None

    def process_info(self, pid: int | None) -> dict[str, Any] | None:
        if not pid:
            return None
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                return {
                    "pid": pid,
                    "rss": process.memory_info().rss,
                    "threads": process.num_threads(),
                    "cpu_times": round(sum(process.cpu_times()[:2]), 2),
                    "started": process.create_time(),
                    "cmdline": " ".join(process.cmdline())[:300],
                }
        except (psutil.Error, OSError):
            return None

    def _limiters(self, tree: Tree | None) -> list[dict[str, Any]]:
        if tree is None:
            return []
        try:
            from actors.limiter.messages import Stats
        except ImportError:  # a limiter without statistics: nothing to show
            return []
        found = []
        for node in tree.walk():
            if node.actor_class != "LimiterServer" or node.status != "running":
                continue
            try:
                keys = [
                    {"key": s.key, "concurrency": s.concurrency, "rate": s.rate, "held": s.held, "waiting": s.waiting,
                     "granted": s.granted, "timed_out": s.timed_out}
                    for s in self.runtime.ask(node.name, Stats(), timeout=LIMITER_TIMEOUT)
                ]  # fmt: skip
                found.append({"actor": node.name, "keys": keys, "error": None})
            except Exception as exc:  # noqa: BLE001 - a limiter that is restarting answers next time
                found.append({"actor": node.name, "keys": [], "error": f"{type(exc).__name__}: {exc}"})
        return found

    def _job_events(self, errors: dict[str, str]) -> tuple[list[tuple[str, str]], list]:
        if self.store is None:
            return [], []
        try:
            if self.checkpoint is None:
                self.checkpoint = self.store.events_tail()
                return [], []
        except Exception as exc:  # noqa: BLE001 - the database may be restarting
            errors["events"] = f"{type(exc).__name__}: {exc}"
            return [], []
        events: list = []
        for _ in range(EVENT_WINDOWS):
            try:
                window = self.store.events_after(self.checkpoint, EVENT_WINDOW)
            except Exception as exc:  # noqa: BLE001 - keep what was read: the checkpoint moved past it
                errors["events"] = f"{type(exc).__name__}: {exc}"
                break
            if window:
                self.checkpoint = window[-1].checkpoint
            events += window
            if len(window) < EVENT_WINDOW:
                break
        jobs = [e for e in events if e.type in JOB_EVENTS and isinstance(e.data, dict)]
        return [(str(e.data.get("kind")), JOB_EVENTS[e.type]) for e in jobs], jobs

    def _database_now(self, errors: dict[str, str]) -> dict[str, Any] | None:
        now = time.monotonic()
        if database_due(now - self._database_read, self.database_interval):
            self._database_view = self._database(errors)
            self._database_read = now if "database" not in errors else float("-inf")
        return self._database_view

    def refresh(self) -> dict[str, Any]:
        """A snapshot with the database read now (after an action changed it)."""
        self._database_read = float("-inf")
        return self.collect()

    def _database(self, errors: dict[str, str]) -> dict[str, Any] | None:
        if self.store is None:
            return None
        try:
            view = self.store.read(self.projection_types, self.limit)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            errors["database"] = f"{type(exc).__name__}: {exc}"
            return None
        by_state: dict[str, int] = {}
        by_queue: dict[str, dict[str, int]] = {}
        by_kind: dict[str, dict[str, int]] = {}
        for row in view.job_counts:
            by_state[row["state"]] = by_state.get(row["state"], 0) + row["n"]
            queue = by_queue.setdefault(row["queue"], {})
            queue[row["state"]] = queue.get(row["state"], 0) + row["n"]
            kind = by_kind.setdefault(row["kind"], {})
            kind[row["state"]] = kind.get(row["state"], 0) + row["n"]
        nodes: dict[str, dict[str, Any]] = {}
        for row in view.processes:
            name = node_of(row)
            node = nodes.setdefault(name, {"node": name, "hosts": set(), "processes": [], "running": 0})
            node["hosts"].add(row["host"])
            node["processes"].append(jsonable(row))
            node["running"] += row["running"]
        return {
            "schema": self.database.config.schema,
            "job_counts": jsonable(view.job_counts),
            "jobs": {
                "by_state": by_state,
                "by_queue": by_queue,
                "by_kind": by_kind,
                "running": jsonable(view.running),
                "failed": jsonable(view.failed),
            },
            "nodes": [{**n, "hosts": sorted(n["hosts"])} for n in nodes.values()],
            "projections": [
                {"name": p.name, "position": p.position, "lag": p.lag, "holder_pid": p.holder_pid, "holder": p.holder_name,
                 "holder_addr": p.holder_addr, "last_writer": p.last_writer, "updated_at": jsonable(p.updated_at)}
                for p in view.projections
            ],  # fmt: skip
        }

    # --- the timer ---------------------------------------------------------------------------

    def wait_newer(self, version: int, timeout: float) -> dict[str, Any] | None:
        """The latest snapshot once it is newer than `version` (None after `timeout`)."""
        with self.changed:
            self.changed.wait_for(lambda: self.version > version, timeout)
            return self.latest if self.version > version else None


def node_of(process: dict[str, Any]) -> str:
    """The node a worker process belongs to: its row says "node:worker" when the job tree was
    given a `node` name, else only the worker's name, and then the host is the node."""
    recorded = process["node"]
    return recorded.rsplit(":", 1)[0] if ":" in recorded else process["host"]


def _builtin_projection_types() -> dict[str, Any]:
    try:
        from actors.projector import BUILTIN, load_projection
    except ImportError:
        return {}
    found = {}
    for name in BUILTIN:
        try:
            projection = load_projection(name)
        except Exception:  # noqa: BLE001 - a broken built-in is shown without its type filter
            continue
        found[projection.name] = tuple(projection.event_types) if projection.event_types else None
    return found


def find_spec(specs: Any, name: str) -> Any:
    """The spec of actor `name` among the trees this runtime started, or None (a dynamic child
    of a simple_one_for_one supervisor is not among them: its supervisor knows its spec)."""

    def walk(spec: Any, parent: Any = None) -> Any:
        if getattr(spec, "name", None) == name:
            return spec
        for child in getattr(spec, "children", ()):
            found = walk(child, spec)
            if found is not None:
                return found
        return None

    for spec in specs:
        found = walk(spec)
        if found is not None:
            return found
    return None
