"""`/metrics`: the observer's figures in Prometheus' text format, with prometheus-client.

Figures that the live system already counts (restarts, crashes, dead letters per actor, jobs by
state, projection lag, limiter waits) are read from the latest snapshot at scrape time by a
custom collector; job durations and finished-job counters are fed from the job events the
observer reads (so they count the jobs finished since the observer started, as a Prometheus
counter should, and move as soon as jobs finish).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "thespian_otp"
#: job run times in seconds: from 5 ms (no-op jobs) to 5 minutes (batch jobs)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class SnapshotCollector:
    """Reads `source.latest` (a snapshot from `actors.observer.collect.Collector`) at scrape time."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time: no fixed description to check at registration

    def collect(self) -> Iterator[Metric]:
        snapshot = self.source.latest
        if snapshot is None:
            return
        labels = ["actor", "class", "kind"]
        restarts = CounterMetricFamily(f"{PREFIX}_actor_restarts", "Restarts of the actor, as its supervisor counts them", labels=labels)
        crashes = CounterMetricFamily(f"{PREFIX}_actor_crashes", "Unexpected errors that crashed the actor", labels=labels)
        dead = CounterMetricFamily(f"{PREFIX}_actor_dead_letters", "Messages to the actor that came back as dead letters", labels=labels)
        errors = CounterMetricFamily(f"{PREFIX}_actor_recoverable_errors", "Recoverable errors the actor replied", labels=labels)
        up = GaugeMetricFamily(f"{PREFIX}_actor_running", "1 if the actor is running", labels=labels)
        memory = GaugeMetricFamily(f"{PREFIX}_actor_memory_bytes", "Resident memory of the actor's process", labels=labels)
        for node in _walk(snapshot["tree"]):
            values = [node["name"], node["actor_class"], node["kind"]]
            restarts.add_metric(values, node["restarts"])
            crashes.add_metric(values, node["crashes"])
            dead.add_metric(values, node["dead_letters"])
            errors.add_metric(values, node["recoverable_errors"])
            up.add_metric(values, 1 if node["status"] == "running" else 0)
            if node["memory"] is not None:
                memory.add_metric(values, node["memory"])
        yield from (restarts, crashes, dead, errors, up, memory)
        totals = snapshot["totals"]
        for field, text in (("restarts", "Restarts"), ("crashes", "Crashes"), ("dead_letters", "Dead letters")):
            family = CounterMetricFamily(f"{PREFIX}_observed_{field}", f"{text} seen by this observer since it started, every actor")
            family.add_metric([], totals[field])
            yield family
        yield from self._limiters(snapshot["limiters"])
        if snapshot["database"] is not None:
            yield from self._database(snapshot["database"])

    def _limiters(self, limiters: list[dict]) -> Iterator[Metric]:
        labels = ["limiter", "key"]
        held = GaugeMetricFamily(f"{PREFIX}_limiter_held", "Permits held", labels=labels)
        waiting = GaugeMetricFamily(f"{PREFIX}_limiter_waiting", "Callers waiting for a permit", labels=labels)
        capacity = GaugeMetricFamily(f"{PREFIX}_limiter_concurrency", "Permits a key allows at once", labels=labels)
        granted = CounterMetricFamily(f"{PREFIX}_limiter_granted", "Permits granted", labels=labels)
        timed_out = CounterMetricFamily(f"{PREFIX}_limiter_timed_out", "Waits that timed out", labels=labels)
        for limiter in limiters:
            for key in limiter["keys"]:
                values = [limiter["actor"], key["key"]]
                held.add_metric(values, key["held"])
                waiting.add_metric(values, key["waiting"])
                capacity.add_metric(values, key["concurrency"])
                granted.add_metric(values, key["granted"])
                timed_out.add_metric(values, key["timed_out"])
        yield from (held, waiting, capacity, granted, timed_out)

    def _database(self, database: dict) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs in the table by queue, kind and state", labels=["queue", "kind", "state"])
        for queue_kind_state, n in _job_rows(database):
            jobs.add_metric(list(queue_kind_state), n)
        yield jobs
        processes = GaugeMetricFamily(f"{PREFIX}_worker_processes", "Registered worker processes by node", labels=["node"])
        running = GaugeMetricFamily(f"{PREFIX}_node_running_jobs", "Jobs running now by node", labels=["node"])
        for node in database["nodes"]:
            processes.add_metric([node["node"]], len(node["processes"]))
            running.add_metric([node["node"]], node["running"])
        yield from (processes, running)
        lag = GaugeMetricFamily(f"{PREFIX}_projection_lag_events", "Events a projection has not applied yet", labels=["projection"])
        position = GaugeMetricFamily(f"{PREFIX}_projection_position", "A projection's checkpoint position", labels=["projection"])
        held = GaugeMetricFamily(f"{PREFIX}_projection_lock_held", "1 if a session holds the projection's lock", labels=["projection"])
        for row in database["projections"]:
            lag.add_metric([row["name"]], row["lag"])
            position.add_metric([row["name"]], row["position"])
            held.add_metric([row["name"]], 1 if row["holder_pid"] else 0)
        yield from (lag, position, held)


def _walk(nodes: list[dict]) -> Iterator[dict]:
    for node in nodes:
        yield node
        yield from _walk(node["children"])


def _job_rows(database: dict) -> Iterator[tuple[tuple[str, str, str], int]]:
    for row in database.get("job_counts", ()):
        yield (row["queue"], row["kind"], row["state"]), row["n"]


class Metrics:
    """The registry behind `/metrics`: snapshot figures plus counters fed by job events."""

    def __init__(self, source: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(source))
        self.finished = Counter(
            f"{PREFIX}_jobs_finished", "Job attempts finished since the observer started, by outcome",
            ["kind", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            f"{PREFIX}_job_duration_seconds", "Run time of job attempts (from the job events)",
            ["kind", "outcome"], buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            f"{PREFIX}_job_latency_seconds", "From enqueue to finish, completed jobs (from the job events)",
            ["kind"], buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip

        self.tree_ask = Histogram(
            f"{PREFIX}_monitor_ask_seconds", "Round trip of the observer's tree request to the monitor (an ask through thespian)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=self.registry,
        )  # fmt: skip
        self.snapshot = Histogram(
            f"{PREFIX}_observer_snapshot_seconds", "Time to take one snapshot (tree, limiters, database, memory)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=self.registry,
        )  # fmt: skip

    def on_snapshot(self, tree_seconds: float | None, total_seconds: float) -> None:
        if tree_seconds is not None:
            self.tree_ask.observe(tree_seconds)
        self.snapshot.observe(total_seconds)

    def on_events(self, events: list) -> None:
        from actors.observer.collect import JOB_EVENTS

        for event in events:
            outcome = JOB_EVENTS.get(event.type)
            data = event.data if isinstance(event.data, dict) else {}
            if outcome is None:
                continue
            kind = str(data.get("kind"))
            self.finished.labels(kind, outcome).inc()
            if isinstance(data.get("run_ms"), (int, float)):
                self.duration.labels(kind, outcome).observe(data["run_ms"] / 1000.0)
            if outcome == "completed" and isinstance(data.get("latency_ms"), (int, float)):
                self.latency.labels(kind).observe(data["latency_ms"] / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
