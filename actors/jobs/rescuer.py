"""The rescuer: releases the jobs of worker processes whose heartbeat expired (docs/design.md story 5).

One pass, in one transaction: take the expired processes (SKIP LOCKED, so it is safe to run on
every node), release their running jobs by what the worker recorded on each row (never
started: back without losing an attempt; ended well: completed; running: the attempt counts,
and the error names the dying worker; at max_attempts they fail for good), and delete the
process rows. Processes of this host that are gone are expired first, so their jobs come
back at the next pass rather than a heartbeat ttl later.
A process found dead in the table but alive on this host (stuck in a handler that ignored its
timeout) is killed, so its supervisor restarts it.

Each job tree's rescuer declares dead only its own tree's processes (`processes.tree`): the
tree's settings (its workers' ttl, hence the grace after an outage; `kill_stuck`) are never
applied to another tree's workers. A rescuer without a tree, and the default tree "jobs",
also take the rows written without one.

A tree that nobody runs any more (retired, renamed) has no rescuer: its dead workers' rows
would stay, and their jobs stay running, for ever. So a process of another tree is taken too
once it has been expired for `orphan_after` seconds (default 600) and for at least 4 of its own
leases (a tree with long leases waits longer), by a rescuer that has itself
been reaching the database for that long (after an outage, live workers of every tree beat
again first) on a server up for that long; such a process is never killed (`kill_stuck` is its
own tree's setting), only its jobs released.
"""

from __future__ import annotations

from typing import Any

from actors.jobs.core import check_orphan_after
from actors.jobs.errors import DatabaseWaiting
from actors.jobs.messages import Rescue
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.outage import WAITING, Outage, is_outage
from actors.stores.processes import PgProcessStore
from actors.stores.rows import RescueResult
from supervision import Server
from supervision.liveness import ProcessIdentity, this_host
from supervision.logs import logger
from supervision.specs import validate_name

#: the job tree whose rescuer also takes process rows written without a tree
DEFAULT_TREE = "jobs"

log = logger("actors.jobs.rescuer")


class Rescuer(Server):
    """Every `interval` seconds releases the jobs of worker processes whose heartbeat expired (and
    the process rows) in one transaction, and kills a worker that is alive but no longer
    heartbeating."""

    def init(
        self,
        database: DatabaseConfig,
        interval: float = 1.0,
        kill_stuck: bool = True,
        outage_grace: float = 15.0,
        tree: str | None = None,
        orphan_after: float | str | None = "auto",
    ) -> None:
        """`outage_grace`: after the database comes back, wait this long (the workers'
        heartbeat ttl) before rescuing, so that live workers beat again first. `tree`: the job
        tree whose processes this rescuer looks after (None: every process of the schema).
        `orphan_after`: also release the jobs of another tree's process expired this long and
        at least 4 of its own leases (its tree has no rescuer reaching the database); "auto":
        600 s or 4 x (`outage_grace` + `interval`) if longer; None: never."""
        if tree is not None:
            validate_name(tree, "Rescuer tree")
        orphan_after = check_orphan_after(orphan_after, outage_grace, interval)
        self.tree = tree
        self.outage_grace = outage_grace
        self.orphan_after = orphan_after
        #: since when (monotonic) this rescuer reaches the database without an outage
        self.reaching_since = self.clock()
        self.outage = Outage()
        #: no rescue before this (monotonic): after an outage, live workers beat again first
        self.hold_until = 0.0
        self.database = Database(database)
        self.store = PgJobStore(self.database)
        self.processes = PgProcessStore(self.database)
        self.interval = interval
        self.kill_stuck = kill_stuck
        self.totals = {"passes": 0, "jobs": 0, "processes": 0, "killed": 0, "orphans": 0}
        self.arm_timer(self.clock() + interval)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Rescue):
            if self.outage.active:
                raise DatabaseWaiting(self.name, self.outage.last_error)
            try:
                return self.rescue()
            except Exception as exc:  # noqa: BLE001
                if not is_outage(exc):
                    raise
                self.report_status(WAITING)
                self.arm_timer(self.outage.failed(self.clock(), exc))
                raise DatabaseWaiting(self.name, self.outage.last_error) from None
        if message == "stats":
            return dict(self.totals)
        return super().handle(message)

    def on_tick(self, now: float) -> float | None:
        try:
            if self.outage.active or not self.database.is_open:
                self.database.reopen()
                if self.outage.active:
                    lasted = self.outage.recovered(now)
                    self.hold_until = self.clock() + self.outage_grace
                    self.reaching_since = self.clock()
                    log.warning("%s: the database is back after %.1f s; rescuing again in %.1f s", self.name, lasted, self.outage_grace)
                self.report_status(None)
            if self.clock() >= self.hold_until:
                self.rescue()
        except Exception as exc:  # noqa: BLE001 - outages are waited out, anything else crashes
            retry_at = self.outage.away(self.clock(), exc, log, self.name)
            self.report_status(WAITING)
            return retry_at
        return now + self.interval

    def rescue(self) -> RescueResult:
        # a worker of this host that died (killed, os._exit, a segfault) is rescued at the
        # next pass, not a heartbeat ttl later
        self.processes.expire_dead_local(lambda pid, ticks: ProcessIdentity(pid, ticks or 0).is_alive())
        # rows without a tree (a worker of an older version, one started outside jobs_tree) are
        # every rescuer's: with only named trees they were nobody's, and their jobs stayed running
        orphans = self.orphan_after if self.tree is not None and self.clock() - self.reaching_since >= (self.orphan_after or 0) else None
        result = self.store.rescue(self.outage_grace, tree=self.tree, untreed=True, orphan_after=orphans)
        self.totals["passes"] += 1
        self.totals["jobs"] += result.jobs
        self.totals["processes"] += len(result.processes)
        if result.processes or result.jobs:
            log.warning(
                "%s: %d dead worker processes pruned, %d of their jobs released (%d never started, %d had completed)",
                self.name, len(result.processes), result.jobs, result.unstarted, result.completed,
            )  # fmt: skip
        for process in result.processes:
            if process.get("tree") not in (self.tree, None):
                self.totals["orphans"] += 1
                log.warning(
                    "%s: worker process %s of job tree %r (pid %s on %s) expired more than %g s ago and no rescuer of "
                    "that tree reached the database since: its row was removed here and any jobs it held released",
                    self.name, process["id"], process["tree"], process["pid"], process.get("host"), self.orphan_after,
                )  # fmt: skip
                continue
            if self.kill_stuck and process.get("host") == this_host():
                identity = ProcessIdentity(process["pid"], process.get("start_ticks") or 0)
                if identity.start_time and identity.kill():
                    self.totals["killed"] += 1
                    log.warning("%s: killed worker process %s (pid %s): alive but not heartbeating", self.name, process["id"], process["pid"])
        return result

    def terminate(self, reason: str) -> None:
        self.database.close()
