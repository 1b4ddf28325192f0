"""What a projection is: a named fold of events into a read model, written with SQL.

```python
class OrdersPerDay(Projection):
    name = "orders_per_day"
    event_types = ("order.placed",)

    def setup(self, conn):                  # create the read model (idempotent)
        conn.execute("CREATE TABLE IF NOT EXISTS orders_per_day (day date PRIMARY KEY, n bigint)")

    def reset(self, conn):                  # empty it, for a rebuild
        conn.execute("TRUNCATE orders_per_day")

    def apply(self, conn, events):          # fold a batch, in the projector's transaction
        ...
```

`apply` runs inside the projector's transaction on its lock connection, together with the
checkpoint write: a restart or a takeover never applies an event twice or skips one. A projection
is referenced by import path ("package.module:Class") so every node's processes can load it.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, ClassVar, Sequence

from actors.projector.errors import ProjectionImportFailed, UnknownProjection
from supervision.specs import resolve_actor_class

NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Projections the CLI knows by name.
BUILTIN = {"job_stats": "actors.projector.job_stats:JobStats"}


class Projection:
    """Subclass to fold events into a read model: set `name` (an identifier) and `event_types`,
    write `setup` (create the tables), `reset` (empty them, for rebuilds) and `apply(conn,
    events)`. `apply` runs in the projector's transaction with its checkpoint (docs/events.md)."""

    name: ClassVar[str] = ""
    #: event types to read; empty reads every event
    event_types: ClassVar[tuple[str, ...]] = ()

    def setup(self, conn: Any) -> None:
        """Create the read model if it does not exist."""

    def reset(self, conn: Any) -> None:
        """Empty the read model (a rebuild replays every event into it)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be rebuilt: it has no reset()")

    def apply(self, conn: Any, events: Sequence[Any]) -> None:
        raise NotImplementedError


def load_projection(reference: Any) -> Projection:
    """A projection instance from a class, an instance, a built-in name or an import path."""
    if isinstance(reference, Projection):
        projection = reference
    else:
        if isinstance(reference, str) and reference in BUILTIN:
            reference = BUILTIN[reference]
        try:
            cls = resolve_actor_class(reference) if not isinstance(reference, type) else reference
        except ValueError as exc:
            if isinstance(exc.__context__, (ImportError, AttributeError)):  # a path that does not import
                raise ProjectionImportFailed(str(reference), _import_problem(exc.__context__)) from None
            raise UnknownProjection(str(reference), tuple(BUILTIN)) from None
        if not (isinstance(cls, type) and issubclass(cls, Projection)):
            raise UnknownProjection(str(reference), tuple(BUILTIN))
        projection = cls()
    if not NAME_PATTERN.fullmatch(projection.name or ""):
        raise UnknownProjection(f"{type(projection).__name__} (its name {projection.name!r} is not a valid identifier)")
    return projection


def _import_problem(exc: BaseException) -> str:
    problem = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ModuleNotFoundError) and os.getcwd() not in sys.path and "" not in sys.path:
        problem += f" (the current directory {os.getcwd()} is not on the import path: set PYTHONPATH)"
    return problem


def projection_path(reference: Any) -> str:
    """The import path of a projection (what actor processes are given)."""
    cls = type(load_projection(reference))
    return f"{cls.__module__}:{cls.__qualname__}"
