"""Periodic jobs: cron schedules that enqueue one job per tick across every node, and the
retention pass (pruning finished jobs) that runs beside them.

```python
from actors.jobs.periodic import Schedule, periodic_spec

schedules = [
    Schedule("nightly-report", "0 3 * * *", "report", {"kind": "daily"}),
    Schedule("heartbeat", "* * * * * */10", "ping", catch_up="skip"),   # every 10 s (6th field: seconds)
]
rt.start(SupervisorSpec("app", children=[jobs_tree(config, handlers=[...]),
                                         periodic_spec(config, schedules, prune_after=7 * 86400)]))
```

Run `periodic_spec` on every node (or on some): each tick is enqueued exactly once, whichever
node gets there first (the schedule's row in `job_schedules` is locked while a node enqueues
its ticks and moves `last_tick` in the same transaction), and the job also carries the unique
key `schedule:<name>:<tick>`. Time is the database's clock, so nodes with skewed clocks agree.

Catch-up after downtime (no scheduler running, or the database unreachable), per schedule:
- `catch_up="latest"` (default): one job, for the latest missed tick; older missed ticks are dropped.
- `catch_up="all"`: one job per missed tick, oldest first, the latest `max_catch_up` (100) at most.
- `catch_up="skip"`: missed ticks are dropped; a tick is enqueued only while it is at most
  `grace` seconds late (default: 60 s, or 3 scheduler intervals if more).
A new schedule starts from its latest tick: nothing is enqueued for the time before it existed.
State lives only in the database: a node, or every node, can restart at any time. A database
outage of any length is waited out (the scheduler shows "waiting for the database" and is never
restarted for it), then caught up on by the policy above.

The retention pass (`prune_after`) runs in steps between the tick passes, one batch of ids per
wake-up (`Retention`): a first sweep of a million finished rows takes minutes, and no tick waits
for it longer than one batch.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import croniter

from actors.jobs.client import new_job, resolve_kinds
from actors.jobs.core import prepare
from actors.jobs.errors import BadJob
from actors.jobs.registry import check_kind, import_handlers
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.outage import WAITING, Outage
from actors.stores.rows import NewJob
from supervision import ChildSpec, Server
from supervision.logs import logger
from supervision.specs import validate_node

log = logger("actors.jobs.periodic")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}$")
CATCH_UP = ("latest", "all", "skip")
_EPSILON = dt.timedelta(microseconds=1)


def _check_name(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise BadJob(f"Schedule.name: {value!r} is not a valid name (1-128 letters, digits and _ . : -)")


def _check_cron(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise BadJob(
            f"Schedule.cron: {value!r} is not a cron expression (5 fields: minute hour day month weekday, "
            "and an optional 6th for seconds; for example '*/5 * * * *')"
        )


def _check_catch_up(value: Any) -> None:
    if value not in CATCH_UP:
        raise BadJob(f"Schedule.catch_up: must be one of {', '.join(CATCH_UP)}; got {value!r}")


def _check_zone(instance: Any, attribute: Any, value: Any) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadJob(f"Schedule.timezone: {value!r} is not a known time zone (for example 'UTC' or 'Europe/Paris')") from None


@attrs.frozen
class Schedule:
    """Enqueue `kind(payload)` at each tick of `cron` (evaluated in `timezone`)."""

    name: str = attrs.field(validator=_check_name)
    cron: str = attrs.field(validator=_check_cron)
    kind: str = attrs.field(validator=lambda i, a, v: check_kind(v))
    payload: Any = attrs.field(factory=dict)
    queue: str | None = None
    priority: int = 0
    max_attempts: int | None = None
    catch_up: str = attrs.field(default="latest", validator=lambda i, a, v: _check_catch_up(v))
    max_catch_up: int = 100
    grace: float | None = None
    timezone: str = attrs.field(default="UTC", validator=_check_zone)

    def __attrs_post_init__(self) -> None:
        # the job fields are checked here, where the schedule is written
        prepare(self.kind, self.payload, queue=self.queue or "default", priority=self.priority, max_attempts=self.max_attempts or 5)
        if isinstance(self.max_catch_up, bool) or not isinstance(self.max_catch_up, int) or not 1 <= self.max_catch_up <= 10_000:
            raise BadJob(f"Schedule.max_catch_up: must be an integer from 1 to 10000; got {self.max_catch_up!r}")
        if self.grace is not None and (isinstance(self.grace, bool) or not isinstance(self.grace, (int, float)) or not math.isfinite(self.grace) or self.grace <= 0):
            raise BadJob(f"Schedule.grace: must be a number of seconds > 0; got {self.grace!r}")

    def job(self, tick: dt.datetime) -> NewJob:
        return new_job(
            self.kind, self.payload, queue=self.queue, priority=self.priority, max_attempts=self.max_attempts,
            unique_key=f"schedule:{self.name}:{tick.astimezone(dt.timezone.utc).isoformat()}",
        )  # fmt: skip


# --- the pure part: which ticks are due -------------------------------------------------------


def latest_tick(cron: str, now: dt.datetime, zone: str = "UTC") -> dt.datetime:
    """The last tick at or before `now`."""
    local = now.astimezone(ZoneInfo(zone))
    return croniter(cron, local + _EPSILON).get_prev(dt.datetime)


def due_ticks(
    cron: str,
    last: dt.datetime,
    now: dt.datetime,
    catch_up: str = "latest",
    max_catch_up: int = 100,
    grace: float = 60.0,
    zone: str = "UTC",
) -> tuple[list[dt.datetime], dt.datetime | None]:
    """(ticks to enqueue, oldest first; the new last tick or None) for ticks in (last, now]."""
    newest = latest_tick(cron, now, zone)
    if newest <= last:
        return [], None
    if catch_up == "latest":
        return [newest], newest
    if catch_up == "skip":
        return ([newest] if (now - newest).total_seconds() <= grace else []), newest
    ticks = [newest]
    walker = croniter(cron, newest)
    while len(ticks) < max_catch_up:
        previous = walker.get_prev(dt.datetime)
        if previous <= last:
            break
        ticks.append(previous)
    return ticks[::-1], newest


def tick_schedule(store: Any, schedule: Schedule, by: str, interval: float = 1.0) -> list[int] | None:
    """One tick pass of `schedule` (a `PgSchedules` store): the ids it enqueued, or None when
    another node holds the schedule right now. Raises `BadJob` (`UnknownJobKind`) and
    enqueues nothing if the kind is handled nowhere."""
    grace = schedule.grace if schedule.grace is not None else max(60.0, 3 * interval)

    def plan(last: dt.datetime, now: dt.datetime, recorded: Callable[[], dict]) -> tuple[Sequence[NewJob], dt.datetime | None]:
        ticks, newest = due_ticks(schedule.cron, last, now, schedule.catch_up, schedule.max_catch_up, grace, schedule.timezone)
        return resolve_kinds([schedule.job(t) for t in ticks], recorded), newest

    return store.tick(schedule.name, plan, by)


def ensure_schedule(store: Any, schedule: Schedule, by: str) -> None:
    """Record `schedule` (a new one starts from its latest tick, by the database's clock)."""
    store.ensure(schedule.name, schedule.cron, schedule.kind, latest_tick(schedule.cron, store.now(), schedule.timezone), by)


# --- the retention sweep, in steps --------------------------------------------------------------


@attrs.define
class Retention:
    """Where the scheduler's retention sweep is (pure: the actor runs one step per wake-up).

    A sweep starts every `interval` seconds and deletes one batch of ids per step, `pause`
    seconds apart; between two steps the actor runs its tick passes and answers its messages,
    so a backlog of any size never holds up a tick for longer than one batch."""

    interval: float
    pause: float
    #: when the next step is due (monotonic seconds): the next batch, or the next sweep's first
    next_at: float
    #: the sweep's cursor (the last id it scanned); None: no sweep in progress
    after: int | None = None
    #: rows deleted by the sweep in progress, and since the actor started
    deleted: int = 0
    total: int = 0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    @property
    def cursor(self) -> int:
        return 0 if self.after is None else self.after

    def stepped(self, now: float, deleted: int, after: int | None) -> int | None:
        """Record a step that deleted `deleted` rows and stopped at id `after` (None: the sweep
        is over). Returns what the whole sweep deleted when it ends with this step, else None."""
        self.deleted += deleted
        self.total += deleted
        if after is not None:
            self.after, self.next_at = after, now + self.pause
            return None
        swept, self.deleted, self.after, self.next_at = self.deleted, 0, None, now + self.interval
        return swept


# --- the actor -------------------------------------------------------------------------------


class Scheduler(Server):
    """Ticks every `interval` seconds: enqueues each schedule's due ticks (see the module's
    docstring), and prunes finished jobs older than `prune_after` every `prune_interval`, one
    batch of `prune_batch` ids per wake-up, `prune_pause` seconds apart, between its ticks.

    A database outage of any length is waited out like the other database actors do (no crash,
    so no restart: "waiting for the database" in the tree, reconnecting with backoff); the first
    pass after it catches up on the missed ticks by each schedule's `catch_up` policy."""

    def init(
        self,
        database: DatabaseConfig,
        schedules: tuple[Schedule, ...] = (),
        interval: float = 1.0,
        handlers: tuple[str, ...] = (),
        prune_after: float | None = None,
        prune_interval: float = 300.0,
        prune_batch: int = 1000,
        node: str | None = None,
        prune_pause: float = 0.05,
    ) -> None:
        from actors.jobs.ops import operator
        from actors.stores.job_ops import PgJobOps
        from actors.stores.schedules import PgSchedules

        node = validate_node(node, "Scheduler.node")
        _unique_names(schedules)
        import_handlers(handlers)
        self.schedules = tuple(schedules)
        self.interval = interval
        self.by = f"{node}:{self.name}" if node else f"{operator()}:{self.name}"
        self.database = Database(database)
        self.store = PgSchedules(self.database)
        self.ops = PgJobOps(self.database)
        self.outage = Outage()
        #: every schedule's row is recorded (once per start, when the database first answers)
        self.recorded = False
        self.next_pass = self.clock()
        self.prune_after = prune_after
        self.prune_batch = prune_batch
        self.retention = None if prune_after is None else Retention(prune_interval, prune_pause, self.clock() + min(prune_interval, 5.0))
        self.warned: dict[str, str] = {}
        self.enqueued = 0
        try:  # a bad schema fails the start, with its message; an outage is waited out
            self._connect(self.clock())
        except Exception as exc:  # noqa: BLE001
            self._away(exc)
        self.arm_timer(self.clock())

    def handle(self, message: Any) -> Any:
        if message == "status":
            return {
                "enqueued": self.enqueued, "schedules": [s.name for s in self.schedules],
                "pruned": self.retention.total if self.retention else 0, "waiting_for_database": self.outage.active,
            }  # fmt: skip
        return super().handle(message)

    def on_tick(self, now: float) -> float | None:
        try:
            self._connect(now)
            if now >= self.next_pass:
                self.next_pass = now + self.interval
                for schedule in self.schedules:
                    self._tick(schedule)
            if self.retention is not None and self.retention.due(now):
                self._prune_step(now)
        except Exception as exc:  # noqa: BLE001 - outages are waited out, anything else crashes
            return self._away(exc)
        return self.next_pass if self.retention is None else min(self.next_pass, self.retention.next_at)

    def _connect(self, now: float) -> None:
        """(Re)connect after an outage or at the start, and record the schedules once."""
        if self.outage.active or not self.database.is_open:
            self.database.reopen()
        if not self.recorded:
            for schedule in self.schedules:
                ensure_schedule(self.store, schedule, self.by)
            self.recorded = True
        if self.outage.active:
            log.warning("%s: the database is back after %.1f s; catching up on the missed ticks", self.name, self.outage.recovered(now))
            self.report_status(None)

    def _away(self, exc: BaseException) -> float:
        """Note an outage (anything else is raised again); returns when to try again."""
        retry_at = self.outage.away(self.clock(), exc, log, self.name)
        self.report_status(WAITING)
        return retry_at

    def _tick(self, schedule: Schedule) -> None:
        try:
            ids = tick_schedule(self.store, schedule, self.by, self.interval)
        except BadJob as exc:  # e.g. no jobs service records the kind yet: try again next tick
            if self.warned.get(schedule.name) != str(exc):
                log.warning("%s: schedule %s cannot enqueue: %s", self.name, schedule.name, exc)
                self.warned[schedule.name] = str(exc)
            return
        self.warned.pop(schedule.name, None)
        self.enqueued += len(ids or ())

    def _prune_step(self, now: float) -> None:
        assert self.retention is not None and self.prune_after is not None
        deleted, after = self.ops.prune_step(self.retention.cursor, self.prune_after, self.prune_batch)
        if after is None:
            self.ops.prune_keys(self.prune_after)
        swept = self.retention.stepped(now, deleted, after)
        if swept:
            log.info("%s: pruned %d finished jobs older than %g s", self.name, swept, self.prune_after)

    def terminate(self, reason: str) -> None:
        self.database.close()


def _unique_names(schedules: Sequence[Schedule]) -> None:
    names = [s.name for s in schedules]
    if len(set(names)) != len(names):
        raise BadJob(f"schedules: two share a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")


def _check_seconds(field: str, value: Any, least: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < least:
        raise BadJob(f"periodic_spec: {field} must be a number of seconds >= {least:g}; got {value!r}")


def periodic_spec(
    database: DatabaseConfig,
    schedules: Sequence[Schedule] = (),
    *,
    name: str = "job-scheduler",
    interval: float = 1.0,
    handlers: Sequence[str] = (),
    prune_after: float | None = None,
    prune_interval: float = 300.0,
    prune_batch: int = 1000,
    prune_pause: float = 0.05,
    node: str | None = None,
) -> ChildSpec:
    """The scheduler as a child spec: start it on every node that should enqueue schedules
    (one is enough; more survive a node's loss). `interval`: seconds between tick passes (a
    tick is enqueued at most this late). `prune_after`: seconds a finished job is kept
    (None: never pruned here; `JobOps.prune` or `thespian-otp jobs prune` do it on demand),
    swept every `prune_interval` seconds; `prune_batch`: ids per batch, one batch per wake-up
    of the scheduler, so a tick waits at most one batch; `prune_pause`: seconds between
    batches, leaving the CPU to the claims. `node`: this node's name, recorded as who moved each
    schedule (a name as for actors; anything else is a `SpecError` naming the field, as in
    `jobs_tree`)."""
    if not all(isinstance(s, Schedule) for s in schedules):
        raise BadJob("periodic_spec: schedules must be Schedule objects")
    _unique_names(schedules)
    validate_node(node, "periodic_spec.node")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.01 <= interval <= 3600:
        raise BadJob(f"periodic_spec: interval must be 0.01 to 3600 seconds; got {interval!r}")
    if prune_after is not None and (not isinstance(prune_after, (int, float)) or isinstance(prune_after, bool) or prune_after < 0):
        raise BadJob(f"periodic_spec: prune_after must be a number of seconds >= 0 or None; got {prune_after!r}")
    _check_seconds("prune_interval", prune_interval, 0.01)
    _check_seconds("prune_pause", prune_pause, 0.0)
    if isinstance(prune_batch, bool) or not isinstance(prune_batch, int) or not 1 <= prune_batch <= 100_000:
        raise BadJob(f"periodic_spec: prune_batch must be an integer from 1 to 100000; got {prune_batch!r}")
    kwargs = {
        "database": database, "schedules": tuple(schedules), "interval": float(interval), "handlers": tuple(handlers),
        "prune_after": prune_after, "prune_interval": prune_interval, "prune_batch": prune_batch,
        "prune_pause": prune_pause, "node": node,
    }  # fmt: skip
    return ChildSpec(name, Scheduler, kwargs=kwargs)


def schedules(database: Database) -> list[dict]:
    """Every schedule's row: name, cron, kind, last tick, who moved it last."""
    from actors.stores.schedules import PgSchedules

    return PgSchedules(database).all()
