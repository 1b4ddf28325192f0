"""Named SQL queries from `.sql` files.

A file holds several queries, each introduced by a `-- name: <query_name>` line; the text up to
the next such line is the query, with psycopg `%(param)s` placeholders. Queries never contain
the schema name: connections set `search_path` to the configured schema.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent / "sql"
_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Queries:
    """The named queries of one `.sql` file: `load("jobs.sql")["claim"]`."""

    def __init__(self, text: str, source: str = "<sql>") -> None:
        self.source = source
        self._queries: dict[str, str] = {}
        parts = _NAME.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in self._queries:
                raise ValueError(f"{source}: query {name!r} is defined twice")
            self._queries[name] = body.strip()

    def __getitem__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise KeyError(f"{self.source} has no query named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._queries

    @property
    def names(self) -> list[str]:
        return list(self._queries)


@lru_cache(maxsize=None)
def load(filename: str) -> Queries:
    path = SQL_DIR / filename
    return Queries(path.read_text(), str(path.name))
