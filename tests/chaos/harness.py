"""The chaos run: a continuous job load with SIGKILLs, PostgreSQL restarts, a stalled
subscriber, a crash loop and fuzzed messages, ended by an audit in SQL. Also the shapes real
services bring: long jobs (many heartbeat ttls) in a second job tree whose workers get
SIGSTOPped past their expiry and resumed, poison jobs that kill their worker (os._exit), and
(in the full run) a 30 s database outage.

Used by tests/chaos/test_chaos.py (a short variant in CI, the full one on demand):
    python -m pytest tests/chaos -m chaos_full -s
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
import uuid
from typing import Any

import attrs
import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.jobs import (
    Ack,
    Complete,
    CompleterStats,
    Enqueue,
    Flush,
    Rescue,
    Subscribe,
    Subscriber,
    Unsubscribe,
    WorkerStatus,
    jobs_tree,
    new_job,
)
from actors.jobs.messages import Continue
from actors.limiter import Acquire, Configure, Held, Limit, LimiterServer, Owner, Release, Stats
from actors.projector import ProjectorStatus, projector_spec, status
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.migrate import Migrator
from actors.stores.rows import JobOutcome, NewJob
from supervision import (
    ChildSpec,
    CountChildren,
    NoSuchName,
    Recoverable,
    Runtime,
    SpecError,
    SupervisionError,
    SupervisorSpec,
    WhichChildren,
)
from supervision.liveness import this_host
from tests.support import CrashLoop

HANDLERS = ["tests.job_handlers"]
FUZZ_TARGETS = (
    "limiter", "jobs-service", "completer", "rescuer", "worker-1", "pool", "projector-job_stats",
    "sys.monitor", "workers", "jobs",
)  # fmt: skip
VICTIMS = ("worker-1", "worker-2", "worker-3", "limiter", "completer")
#: the fewest seconds between two SIGKILLs of one victim, so that the faults alone never reach
#: a restart limit: the limiter is the root's child (the default 3 restarts in 5 s), the
#: completer the jobs tree's (10 in 10 s); the workers' supervisor allows 50 in 10 s. The
#: supervisors keep their normal limits, so a crash loop (an outage, say) shows as an escalation
MIN_GAP = {"limiter": 2.5, "completer": 1.5}
#: database actors no fault aims at: any restart of theirs after the fuzzing is a failure (they
#: wait out outages); "jobs" and "slow" are the trees, restarted only by an escalation
UNTARGETED = (
    "jobs", "slow", "jobs-service", "rescuer", "slow-service", "slow-completer", "slow-rescuer",
    "projector-job_stats", "projector-tests.projections:JobAudit",
)  # fmt: skip


@attrs.define
class ChaosConfig:
    jobs: int = 1500
    workers: int = 3
    #: seconds over which the jobs are enqueued (a continuous load); kills go on until they finish
    duration: float = 10.0
    kill_every: float = 0.4
    pg_restarts: int = 2
    fuzz_examples: int = 100
    seed: int = 1
    #: jobs of `long_seconds` (2x the heartbeat ttl and more) in the "slow" tree
    long_jobs: int = 4
    long_seconds: float = 3.0
    #: jobs that kill their worker (os._exit) at every attempt: they must fail alone
    poison_jobs: int = 3
    #: SIGSTOPs of a "slow" worker running a long job, each past its heartbeat expiry
    sigstops: int = 1
    #: one PostgreSQL outage of this many seconds (0: none), besides the restarts
    outage_seconds: float = 0.0


@attrs.define
class ChaosReport:
    jobs_enqueued: int = 0
    jobs_in_table: int = 0
    lost: int = -1
    completed_twice: int = -1
    stuck: int = -1
    events_applied_twice: int = -1
    events_skipped: int = -1
    restarts_from_bad_input: int = -1
    innocent_failed: int = -1
    poison_unnamed: int = -1
    kills: int = 0
    pg_restarts: int = 0
    long_jobs: int = 0
    long_rescued_while_alive: int = -1
    long_rescued_frozen: int = 0
    frozen_killed: int = -1
    untargeted_restarts: int = -1
    poison_jobs: int = 0
    sigstops: int = 0
    outage_seconds: float = 0.0
    fuzzed: int = 0
    crash_loop_escalated: bool = False
    stop_seconds: float = 0.0
    stop_budget: float = 0.0
    seconds: float = 0.0

    @property
    def failures(self) -> dict[str, int]:
        return {
            "jobs lost": self.lost,
            "jobs completed twice": self.completed_twice,
            "jobs stuck claimed by dead processes": self.stuck,
            "innocent jobs failed": self.innocent_failed,
            "poison jobs not failed alone and named": self.poison_unnamed,
            "long jobs rescued from a live worker": self.long_rescued_while_alive,
            "restarts of database actors no fault aimed at": self.untargeted_restarts,
            "frozen workers killed (their tree: kill_stuck off)": self.frozen_killed,
            "events applied twice by projections": self.events_applied_twice,
            "events skipped by projections": self.events_skipped,
            "actor restarts caused by bad input": self.restarts_from_bad_input,
        }

    def table(self) -> Any:
        from rich.table import Table

        title = (
            f"chaos run: {self.jobs_enqueued:,} jobs ({self.long_jobs} long, {self.poison_jobs} poison), {self.kills} SIGKILLs, "
            f"{self.sigstops} SIGSTOPs, {self.pg_restarts} PostgreSQL restarts, "
            f"{self.outage_seconds:g} s outage, {self.fuzzed} fuzzed messages"
        )
        table = Table("audit (SQL)", "count", title=title)
        for label, value in self.failures.items():
            table.add_row(label, str(value))
        table.add_row("(long-job rescues, each from a frozen worker)", str(self.long_rescued_frozen))
        table.add_row("crash loop escalated per intensity", "yes" if self.crash_loop_escalated else "NO")
        table.add_row("stop under load (s, budget)", f"{self.stop_seconds:.2f} / {self.stop_budget:.0f}")
        return table


class Tally(Subscriber):
    def init(self):
        self.seen = 0

    def on_jobs(self, jobs, dropped):
        self.seen += len(jobs)


class Stalled(Subscriber):
    def on_jobs(self, jobs, dropped):
        time.sleep(3600)


def chaos_tree(config: DatabaseConfig, workers: int) -> SupervisorSpec:
    """Every supervisor with its normal restart limits (the root: 3 in 5 s; the trees and
    projectors: their defaults), so that a crash loop escalates and fails the run."""
    return SupervisorSpec(
        "root",
        children=[
            ChildSpec("limiter", LimiterServer, kwargs={"limits": {"api": Limit(2)}}),
            ChildSpec("tally", Tally),
            ChildSpec("stalled", Stalled, shutdown=0.5),
            jobs_tree(config, handlers=HANDLERS, workers=workers, subscribers=["tally", "stalled"], heartbeat_ttl=1.5, batch=20, poll_interval=0.3),
            # long jobs in a tree of their own; its workers are frozen, never SIGKILLed (a frozen
            # worker is left to notice it lost its job when it resumes: kill_stuck off, and the
            # main tree's rescuer leaves the slow tree's workers alone)
            jobs_tree(config, handlers=HANDLERS, workers=2, queue="slow", name="slow", heartbeat_ttl=1.5, poll_interval=0.3, kill_stuck=False, cancel_grace=1.0),
            projector_spec(config, "job_stats", retry_interval=0.1, lock_check_interval=0.2),
            projector_spec(config, "tests.projections:JobAudit", retry_interval=0.1, lock_check_interval=0.2),
            SupervisorSpec("crashloop", intensity=2, period=60.0, restart="temporary", children=[ChildSpec("crasher", CrashLoop)]),
        ],
    )


# --- fuzzing -----------------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12), st.binary(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=5)
ANY = st.one_of(VALUES, st.builds(Owner, name=VALUES))
MESSAGES = st.one_of(
    VALUES,
    st.builds(Acquire, key=ANY, owner=ANY, timeout=ANY, lease_timeout=ANY),
    st.builds(Release, lease_id=ANY),
    st.builds(Configure, key=ANY, limit=ANY),
    st.builds(Stats),
    st.builds(Held, key=ANY),
    st.builds(Enqueue, jobs=st.one_of(ANY, st.tuples(st.builds(NewJob, kind=ANY, payload=ANY, queue=ANY, priority=ANY, run_at=ANY, max_attempts=ANY)))),
    st.builds(Complete, outcomes=st.one_of(ANY, st.tuples(st.builds(JobOutcome, job_id=ANY, process=ANY, attempt=ANY, status=ANY, finished_at=ANY, run_ms=ANY, error=ANY, retry_in=ANY, discard=ANY)))),
    st.builds(Subscribe, name=ANY, buffer=ANY, window=ANY),
    st.builds(Unsubscribe, name=ANY),
    st.builds(Ack, subscriber=ANY, seq=ANY),
    st.builds(Flush),
    st.builds(Rescue),
    st.builds(WorkerStatus),
    st.builds(CompleterStats),
    st.builds(Continue, reason=ANY),
    st.builds(ProjectorStatus),
    st.builds(WhichChildren),
    st.builds(CountChildren),
)


def fuzz(rt: Runtime, examples: int, seed: int) -> int:
    """Send generated bad messages to every kind of actor; each must get a typed error reply."""
    sent = []

    @hypothesis.seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(target=st.sampled_from(FUZZ_TARGETS), message=MESSAGES)
    def check(target: str, message: Any) -> None:
        sent.append(target)
        try:
            rt.ask(target, message, timeout=10)
        except SupervisionError as exc:
            assert isinstance(exc, (Recoverable, SpecError, NoSuchName)), f"{target} <- {message!r}: {exc!r}"

    check()
    return len(sent)


def restarts_of(rt: Runtime) -> dict[str, int]:
    return {node.name: node.restarts for node in rt.tree().walk()}


# --- the run -------------------------------------------------------------------------------------


class Killer(threading.Thread):
    """SIGKILLs a random victim every `every` seconds (none more often than `MIN_GAP` allows)."""

    def __init__(self, rt: Runtime, every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.rt, self.every, self.rng = rt, every, random.Random(seed)
        self.halt = threading.Event()
        self.kills = 0
        self.last: dict[str, float] = {}

    def run(self) -> None:
        while not self.halt.wait(self.every):
            now = time.monotonic()
            victims = [v for v in VICTIMS if now - self.last.get(v, -1e9) >= MIN_GAP.get(v, 0.0)]
            victim = self.rng.choice(victims)
            try:
                self.rt.kill(victim)
                self.kills += 1
                self.last[victim] = now
            except SupervisionError:
                pass


class Freezer(threading.Thread):
    """SIGSTOPs a "slow" worker that runs a long job for `seconds` (past its expiry), then
    SIGCONT; records the process rows of every worker it froze (`frozen`), so that the audit
    can tie each rescue of a long job to a freeze."""

    def __init__(self, rt: Runtime, times: int, seconds: float, seed: int, database: Database) -> None:
        super().__init__(daemon=True)
        self.rt, self.times, self.seconds, self.rng = rt, times, seconds, random.Random(seed)
        self.database = database
        self.halt = threading.Event()
        self.stops = 0
        self.killed = 0
        self.frozen: set[int] = set()

    def run(self) -> None:
        while self.stops < self.times and not self.halt.wait(1.0):
            try:
                pids = [n.pid for n in self.rt.tree().walk() if re.fullmatch(r"slow-worker-\d+", n.name) and n.pid and n.status == "running"]
            except SupervisionError:
                continue
            if not pids:
                continue
            pid = self.rng.choice(pids)
            try:
                rows = self._process_rows(pid)
            except SupervisionError:
                continue  # the database is away: freeze another time
            if not rows:
                continue  # not registered yet
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            self.frozen.update(rows)
            try:
                self.halt.wait(self.seconds)
            finally:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    self.killed += 1  # no rescuer may kill it: kill_stuck is off in its tree
            self.stops += 1

    def _process_rows(self, pid: int) -> set[int]:
        with self.database.connection() as conn:
            rows = conn.execute("SELECT id FROM processes WHERE pid = %s AND host = %s", (pid, this_host())).fetchall()
            conn.commit()
        return {row["id"] for row in rows}


def _outage(server: Any, seconds: float) -> threading.Thread:
    def run() -> None:
        server.stop_server()
        time.sleep(seconds)  # the fault itself: the server stays down this long
        server.start_server()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _enqueue(rt: Runtime, batch: list, deadline: float, service: str = "jobs-service") -> list[int]:
    while time.monotonic() < deadline:
        try:
            return rt.enqueue_many(batch, timeout=20) if service == "jobs-service" else [
                rt.enqueue(job.kind, job.payload, queue=job.queue, service=service, timeout=20) for job in batch
            ]
        except SupervisionError:
            time.sleep(0.2)  # the jobs service or the database is restarting
    raise TimeoutError("could not enqueue")


def _jobs(count: int, rng: random.Random) -> list:
    kinds = ["work"] * 10 + ["limited"] * 3 + ["noop"] * 5 + ["always_fails"]
    return [new_job(rng.choice(kinds), {"sleep": 0.002}) for _ in range(count)]


def run_chaos(server: Any, chaos: ChaosConfig) -> ChaosReport:
    import tests.job_handlers  # noqa: F401 - kinds checked at enqueue

    started = time.monotonic()
    report = ChaosReport()
    rng = random.Random(chaos.seed)
    config = DatabaseConfig(server.dsn, f"chaos_{uuid.uuid4().hex[:8]}", pool_max=4)
    with Database(config) as database:
        Migrator(database).apply()
    logging = {"log_level": "INFO", "log_file": os.environ["CHAOS_LOG"]} if os.environ.get("CHAOS_LOG") else {"log_level": "CRITICAL"}
    rt = Runtime("multiprocTCPBase", restart_wait=2.0, **logging).start(chaos_tree(config, chaos.workers))
    acknowledged: list[int] = []
    try:
        # 1. fuzz every kind of actor while it is healthy: no restart may follow
        before = restarts_of(rt)
        report.fuzzed = fuzz(rt, chaos.fuzz_examples, chaos.seed)
        after = restarts_of(rt)
        report.restarts_from_bad_input = sum(
            after.get(name, 0) - count for name, count in before.items() if name not in ("crasher", "crashloop")
        )
        # 2. load with kills, freezes and database restarts (and an outage)
        long_ids = _enqueue(rt, [new_job("long_chaos", {"seconds": chaos.long_seconds}) for _ in range(chaos.long_jobs)], time.monotonic() + 60, "slow-service")
        acknowledged += long_ids
        report.long_jobs = len(long_ids)
        acknowledged += _enqueue(rt, [new_job("poison_exit", {}) for _ in range(chaos.poison_jobs)], time.monotonic() + 60)
        report.poison_jobs = chaos.poison_jobs
        killer = Killer(rt, chaos.kill_every, chaos.seed)
        killer.start()
        freezer_db = Database(config).open()
        freezer = Freezer(rt, chaos.sigstops, 2.5 * 1.5, chaos.seed, freezer_db)
        freezer.start()
        chunks = list(range(0, chaos.jobs, 100))
        restart_at = {chunks[len(chunks) * (i + 1) // (chaos.pg_restarts + 1)] for i in range(chaos.pg_restarts)}
        outage_at = chunks[len(chunks) // 3] if chaos.outage_seconds else None
        outage = None
        pace = chaos.duration / len(chunks)
        for start in chunks:
            if start == outage_at:
                outage = _outage(server, chaos.outage_seconds)
                report.outage_seconds = chaos.outage_seconds
            elif start in restart_at and (outage is None or not outage.is_alive()):
                server.restart()
                report.pg_restarts += 1
            chunk_started = time.monotonic()
            acknowledged += _enqueue(rt, _jobs(min(100, chaos.jobs - start), rng), time.monotonic() + 120)
            time.sleep(max(0.0, pace - (time.monotonic() - chunk_started)))
        report.jobs_enqueued = len(acknowledged)
        if outage is not None:
            outage.join()
        with Database(config) as database:
            # kills go on while the backlog drains, then stop so that everything can finish
            _wait(lambda: _unfinished(database) < chaos.jobs // 20, 300, "most jobs to finish", database)
            killer.halt.set()
            killer.join()
            report.kills = killer.kills
            freezer.join(timeout=60)
            freezer.halt.set()
            freezer.join(timeout=10)
            freezer_db.close()
            report.sigstops = freezer.stops
            report.frozen_killed = freezer.killed
            # 3. everything finishes (rescued jobs after the expiry window) and projections catch up
            _wait(lambda: _unfinished(database) == 0, 180, "every job to finish", database)
            _wait(lambda: all(s.lag == 0 for s in status(database, ["job_stats", "tests.projections:JobAudit"])), 120, "projections")
            report.crash_loop_escalated = "crashloop" not in rt.tree()
            final = restarts_of(rt)
            report.untargeted_restarts = sum(final.get(name, 0) - after.get(name, 0) for name in UNTARGETED)
            report.stop_budget = rt.shutdown_budget
            stop_started = time.monotonic()
            rt.stop()
            report.stop_seconds = time.monotonic() - stop_started
            _audit(database, acknowledged, report, long_ids, freezer.frozen)
            if os.environ.get("CHAOS_LOG"):
                with database.connection() as conn:
                    for row in conn.execute("SELECT position, type, data, created_at FROM events WHERE (data->>'id')::bigint = ANY(%s) ORDER BY position", (long_ids,)):
                        print("LONG", row)
                    conn.commit()
            database.drop_schema()
    finally:
        rt.stop()
    report.seconds = time.monotonic() - started
    return report


def _wait(predicate: Any, timeout: float, what: str, database: Database | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except SupervisionError:
            pass
        time.sleep(0.2)
    detail = ""
    if database is not None:
        with database.connection() as conn:
            rows = conn.execute(
                "SELECT kind, state, count(*) AS n, max(attempt) AS attempts FROM jobs WHERE state NOT IN ('completed', 'failed') GROUP BY 1, 2"
            ).fetchall()
            processes = conn.execute("SELECT id, node, expires_at < now() AS expired FROM processes ORDER BY id").fetchall()
            conn.commit()
        detail = f"; unfinished: {rows}; processes: {processes}"
    raise TimeoutError(f"chaos: timed out waiting for {what}{detail}")


def _unfinished(database: Database) -> int:
    with database.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM jobs WHERE state NOT IN ('completed', 'failed')").fetchone()
        conn.commit()
    return row["n"]


#: kinds expected to fail: every other failed job is an innocent one
DOOMED = ("always_fails", "poison_exit")


def _audit(database: Database, acknowledged: list[int], report: ChaosReport, long_ids: list[int] = (), frozen: set[int] = frozenset()) -> None:
    """The SQL audit. `frozen`: the process rows of the workers the Freezer SIGSTOPped; a long
    job may be rescued only from one of those (its `errors` entry names the process)."""
    with database.connection() as conn:
        row = conn.execute(
            """
            SELECT
              (SELECT count(*) FROM jobs) AS in_table,
              (SELECT count(*) FROM unnest(%(ids)s::bigint[]) AS a(id)
                 WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = a.id AND j.state IN ('completed', 'failed'))) AS lost,
              (SELECT count(*) FROM (SELECT data->>'id' FROM events WHERE type = 'job.completed'
                                     GROUP BY 1 HAVING count(*) > 1) d) AS completed_twice,
              (SELECT count(*) FROM jobs j WHERE j.state = 'completed' AND NOT EXISTS
                 (SELECT 1 FROM events e WHERE e.type = 'job.completed' AND (e.data->>'id')::bigint = j.id)) AS completed_no_event,
              (SELECT count(*) FROM jobs WHERE state = 'running') AS stuck,
              (SELECT count(*) FROM (SELECT position FROM job_audit_applied GROUP BY 1 HAVING count(*) > 1) d) AS applied_twice,
              (SELECT count(*) FROM events e WHERE e.type LIKE 'job.%%' AND NOT EXISTS
                 (SELECT 1 FROM job_audit_applied a WHERE a.position = e.position)) AS skipped,
              (SELECT coalesce(sum(completed), 0) FROM job_stats) AS stats_completed,
              (SELECT count(*) FROM events WHERE type = 'job.completed') AS completed_events,
              (SELECT count(*) FROM jobs WHERE state = 'failed' AND kind <> ALL(%(doomed)s::text[])) AS innocent_failed,
              (SELECT count(*) FROM jobs WHERE state = 'failed' AND kind = 'poison_exit'
                 AND attempt = max_attempts AND last_error LIKE '%%died while running this job%%') AS poison_named,
              (SELECT count(*) FROM jobs j, jsonb_array_elements(j.errors) AS e
                 WHERE j.id = ANY(%(long)s::bigint[])
                   AND NOT coalesce((e->>'process')::bigint, -1) = ANY(%(frozen)s::bigint[])) AS long_failed_elsewhere,
              (SELECT count(*) FROM events WHERE type = 'job.rescued' AND (data->>'id')::bigint = ANY(%(long)s::bigint[])) AS long_rescued
            """,
            {"ids": acknowledged, "doomed": list(DOOMED), "long": list(long_ids), "frozen": sorted(frozen)},
        ).fetchone()
        conn.commit()
    report.jobs_in_table = row["in_table"]
    report.lost = row["lost"]
    report.completed_twice = row["completed_twice"] + row["completed_no_event"]
    report.stuck = row["stuck"]
    report.events_applied_twice = row["applied_twice"] + abs(row["stats_completed"] - row["completed_events"])
    report.events_skipped = row["skipped"]
    report.innocent_failed = row["innocent_failed"]
    report.poison_unnamed = report.poison_jobs - row["poison_named"]
    # a long job never fails: each error it has is a rescue, which names the process it was
    # rescued from, and that must be a worker the Freezer froze (it used to be only counted:
    # max(0, rescues - SIGSTOPs))
    report.long_rescued_while_alive = row["long_failed_elsewhere"]
    report.long_rescued_frozen = row["long_rescued"]
