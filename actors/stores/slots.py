"""Cluster-wide permits: slot i of a limited key is a session-level advisory lock.

A limiter that enforces a limit across nodes takes, for each permit it grants, one free slot
of the key (`advisory_key("limiter", schema, key, str(i))` for i < limit) on its own lock
session. PostgreSQL guarantees one holder per slot, so at most `limit` permits are out across
every node that uses the same schema and the same limit. A node that dies gives its slots back
when its session ends: at once when its process dies (the socket closes), within about 11 s
when its host vanishes (see `lock_session`).
"""

from __future__ import annotations

from typing import Iterable, Protocol

from actors.stores.database import Database, advisory_key, lock_session, session_errors
from actors.stores.queries import load

Q = load("slots.sql")


def slot_key(schema: str, key: str, slot: int) -> int:
    return advisory_key("limiter", schema, key, str(slot))


class SlotStore(Protocol):
    """Cluster-wide limiter slots: N session advisory locks per key on the limiter's own
    connection."""

    def take(self, key: str, limit: int, held: Iterable[int], prefer: int | None = None) -> int | None: ...

    def give_back(self, key: str, slot: int) -> None: ...

    def check(self) -> None: ...

    def close(self) -> None: ...


class ClusterSlots:
    """The slots this node holds, on one dedicated connection. Every method raises
    `ConnectionLost` when the session is gone (its slots are gone with it); never reconnects."""

    def __init__(self, database: Database, node: str) -> None:
        self.database = database
        self.schema = database.config.schema
        self.conn = lock_session(database, f"thespian-otp:limiter:{node}")

    def take(self, key: str, limit: int, held: Iterable[int], prefer: int | None = None) -> int | None:
        """A free slot of `key` below `limit` (skipping the ones this session holds already:
        session locks stack), now taken; None if every slot is held somewhere. `prefer` is
        tried first: a permit whose slot went with a lost session takes the same one back, so
        that permits of different nodes taking theirs back never compete for one slot."""
        mine = set(held)
        order = list(range(limit))
        if prefer is not None and 0 <= prefer < limit:
            order.remove(prefer)
            order.insert(0, prefer)
        with session_errors(self.conn, self.database.config):
            for slot in order:
                if slot not in mine and self.conn.execute(Q["take"], {"key": slot_key(self.schema, key, slot)}).fetchone()["taken"]:
                    return slot
        return None

    def give_back(self, key: str, slot: int) -> None:
        with session_errors(self.conn, self.database.config):
            self.conn.execute(Q["give_back"], {"key": slot_key(self.schema, key, slot)})

    def check(self) -> None:
        """Raise `ConnectionLost` if the session (and so every slot it held) is gone."""
        with session_errors(self.conn, self.database.config):
            self.conn.execute(Q["check"])

    def close(self) -> None:
        self.conn.close()


def slots_held(database: Database, key: str, limit: int) -> int:
    """How many slots of `key` are held across the cluster right now."""
    keys = [slot_key(database.config.schema, key, slot) for slot in range(limit)]
    with database.connection() as conn:
        row = conn.execute(Q["holders"], {"keys": keys}).fetchone()
        conn.commit()
    return row["n"]
