"""The rescuer: releases the jobs of worker processes whose heartbeat expired (docs/design.md story 5).

One pass, in one transaction: take the expired processes (SKIP LOCKED, so it is safe to run on
every node), put their running jobs back to available (the attempt stays counted; at
max_attempts they fail for good, with their error recorded), and delete the process rows.
A process found dead in the table but alive on this host (stuck in a handler that ignored its
timeout) is killed, so its supervisor restarts it.
"""

from __future__ import annotations

from typing import Any

from actors.jobs.messages import Rescue
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.rows import RescueResult
from supervision import Server
from supervision.liveness import ProcessIdentity, this_host
from supervision.logs import logger

log = logger("actors.jobs.rescuer")


class Rescuer(Server):
    """Every `interval` seconds releases the jobs of worker processes whose heartbeat expired (and
    the process rows) in one transaction, and kills a worker that is alive but no longer
    heartbeating."""

    def init(self, database: DatabaseConfig, interval: float = 1.0, kill_stuck: bool = True) -> None:
        self.database = Database(database).open()
        self.store = PgJobStore(self.database)
        self.interval = interval
        self.kill_stuck = kill_stuck
        self.totals = {"passes": 0, "jobs": 0, "processes": 0, "killed": 0}
        self.arm_timer(self.clock() + interval)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Rescue):
            return self.rescue()
        if message == "stats":
            return dict(self.totals)
        return super().handle(message)

    def on_tick(self, now: float) -> float | None:
        self.rescue()
        return now + self.interval

    def rescue(self) -> RescueResult:
        result = self.store.rescue()
        self.totals["passes"] += 1
        self.totals["jobs"] += result.jobs
        self.totals["processes"] += len(result.processes)
        if result.processes or result.jobs:
            log.warning("%s: %d dead worker processes pruned, %d of their jobs released", self.name, len(result.processes), result.jobs)
        for process in result.processes:
            if self.kill_stuck and process.get("host") == this_host():
                identity = ProcessIdentity(process["pid"], process.get("start_ticks") or 0)
                if identity.start_time and identity.kill():
                    self.totals["killed"] += 1
                    log.warning("%s: killed worker process %s (pid %s): alive but not heartbeating", self.name, process["id"], process["pid"])
        return result

    def terminate(self, reason: str) -> None:
        self.database.close()
