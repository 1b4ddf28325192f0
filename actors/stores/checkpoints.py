"""Projection checkpoints: where each projection has read to, saved with its read model."""

from __future__ import annotations

from typing import Any, Protocol

import attrs
import psycopg

from actors.stores.database import Database
from actors.stores.queries import load
from actors.stores.rows import Checkpoint

Q = load("checkpoints.sql")


@attrs.frozen
class CheckpointRow:
    """A projection's stored checkpoint: its name, `(txid, position)`, the node that wrote it last
    (`holder`) and when."""

    name: str
    checkpoint: Checkpoint
    holder: str | None
    updated_at: Any

    @classmethod
    def from_row(cls, row: Any) -> "CheckpointRow":
        return cls(row["name"], Checkpoint.from_row(row), row["holder"], row["updated_at"])


class CheckpointStore(Protocol):
    """Where projections keep how far they have read (`projection_checkpoints`)."""

    def load(self, name: str, conn: psycopg.Connection | None = None) -> Checkpoint: ...

    def save(self, name: str, checkpoint: Checkpoint, holder: str, conn: psycopg.Connection) -> None: ...

    def reset(self, name: str, conn: psycopg.Connection | None = None) -> None: ...

    def all(self) -> list[CheckpointRow]: ...


class PgCheckpointStore:
    """`CheckpointStore` on PostgreSQL. `save` takes the caller's connection: the checkpoint is
    written in the same transaction as the read model."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def load(self, name: str, conn: psycopg.Connection | None = None) -> Checkpoint:
        if conn is not None:
            return Checkpoint.from_row(conn.execute(Q["load"], {"name": name}).fetchone())
        with self.database.connection() as own:
            row = own.execute(Q["load"], {"name": name}).fetchone()
            own.commit()
        return Checkpoint.from_row(row)

    def save(self, name: str, checkpoint: Checkpoint, holder: str, conn: psycopg.Connection) -> None:
        """Save inside the caller's transaction (the one that updated the read model)."""
        conn.execute(Q["save"], {"name": name, "txid": checkpoint.txid, "position": checkpoint.position, "holder": holder})

    def reset(self, name: str, conn: psycopg.Connection | None = None) -> None:
        if conn is not None:
            conn.execute(Q["reset"], {"name": name})
            return
        with self.database.transaction() as own:
            own.execute(Q["reset"], {"name": name})

    def all(self) -> list[CheckpointRow]:
        with self.database.connection() as conn:
            rows = conn.execute(Q["all"]).fetchall()
            conn.commit()
        return [CheckpointRow.from_row(row) for row in rows]
