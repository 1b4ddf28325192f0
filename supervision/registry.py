"""The name registry: name -> the live actor that holds it, and who watches each name.

Pure bookkeeping, hosted by the monitor actor. Like Elixir's `Registry`, entries belong to a
living actor: registering a name held by a live actor is `AlreadyRegistered` (never a silent
overwrite); an entry whose process is dead is replaced; entries go away when their actor dies,
and when a supervisor dies, the entries of the children it owned go with it.

Watches are one-shot, like Erlang monitors: a watcher gets one `Down` for the entry it watched.
"""

from __future__ import annotations

from typing import Any, Callable

from supervision.errors import AlreadyRegistered
from supervision.messages import RegistryEntry


def _default_alive(entry: RegistryEntry) -> bool:
    return entry.identity is None or entry.identity.is_alive()


class Registry:
    """Names to live actors, the monitor's pure core: an entry belongs to a living actor, a taken
    name is `AlreadyRegistered`, and watchers hear `Down` when the owner dies."""

    def __init__(self, is_alive: Callable[[RegistryEntry], bool] = _default_alive) -> None:
        self.entries: dict[str, RegistryEntry] = {}
        self.watchers: dict[str, list[Any]] = {}
        self.is_alive = is_alive

    def register(self, entry: RegistryEntry) -> list[RegistryEntry]:
        """Add `entry`. Returns the stale entries it replaced (their actors were dead).

        Raises `AlreadyRegistered` when a live actor holds the name."""
        current = self.entries.get(entry.name)
        if current is not None and current.address == entry.address:
            self.entries[entry.name] = entry
            return []
        if current is not None and self.is_alive(current):
            raise AlreadyRegistered(entry.name, f"{current.actor_class} under {current.supervisor}")
        replaced = self.remove(entry.name, current.address) if current is not None else []
        self.entries[entry.name] = entry
        return replaced

    def lookup(self, name: str) -> RegistryEntry | None:
        return self.entries.get(name)

    def name_of(self, address: Any) -> str | None:
        for name, entry in self.entries.items():
            if entry.address == address:
                return name
        return None

    def remove(self, name: str, address: Any = None) -> list[RegistryEntry]:
        """Remove `name` (only if it is still held by `address`, when given), and, for a
        supervisor, the entries of its subtree whose actors are dead. Returns what was removed."""
        entry = self.entries.get(name)
        if entry is None or (address is not None and entry.address != address):
            return []
        del self.entries[name]
        removed = [entry]
        if entry.kind == "supervisor":
            for child in [e for e in self.entries.values() if e.supervisor == name]:
                if child.identity is None or not self.is_alive(child):
                    removed.extend(self.remove(child.name, child.address))
        return removed

    def dead_entries(self) -> list[RegistryEntry]:
        return [entry for entry in self.entries.values() if not self.is_alive(entry)]

    # --- watches -------------------------------------------------------------------------------

    def watch(self, name: str, watcher: Any) -> bool:
        """Watch `name`; False if nothing is registered under it (the caller reports noproc)."""
        if name not in self.entries:
            return False
        watchers = self.watchers.setdefault(name, [])
        if not any(w == watcher for w in watchers):
            watchers.append(watcher)
        return True

    def unwatch(self, name: str, watcher: Any) -> None:
        watchers = self.watchers.get(name)
        if watchers:
            self.watchers[name] = [w for w in watchers if w != watcher]

    def take_watchers(self, name: str) -> list[Any]:
        """The watchers to notify now that `name` went down (their watches are used up)."""
        return self.watchers.pop(name, [])

    def forget_watcher(self, watcher: Any) -> None:
        for name in list(self.watchers):
            self.unwatch(name, watcher)
