"""A projector under a supervisor that restarts it with backoff (it re-contends for the lock)."""

from __future__ import annotations

from typing import Any

from actors.projector.actor import Projector
from actors.projector.projection import load_projection, projection_path
from actors.stores.config import DatabaseConfig
from supervision import Backoff, ChildSpec, SupervisorSpec
from supervision.specs import validate_node


def projector_spec(
    database: DatabaseConfig,
    projection: Any = "job_stats",
    *,
    node: str | None = None,
    name: str | None = None,
    intensity: int = 10,
    period: float = 30.0,
    **options: Any,
) -> SupervisorSpec:
    """`projection`: a built-in name, an import path or a class. `node`: the name this node's
    lock session shows (a name as for actors; default host:pid). Options go to `Projector.init`
    (batch, lock_check_interval, retry_interval, poll_interval, idle_session_timeout)."""
    validate_node(node, "projector_spec.node")
    loaded = load_projection(projection)
    child = name or f"projector-{loaded.name}"
    return SupervisorSpec(
        f"{child}-sup",
        intensity=intensity,
        period=period,
        backoff=Backoff(min=0.1, max=2.0),
        children=[
            ChildSpec(
                child,
                Projector,
                # no node given: the projector names itself host:pid in its own process, so
                # `projections status` names the process that holds the lock, not this one
                kwargs={"database": database, "projection": projection_path(projection), "node": node, **options},
                shutdown=5.0,
            )
        ],
    )
