"""The name registry: name -> the live actor that holds it, and who watches each name.

Pure bookkeeping, hosted by the monitor actor. Like Elixir's `Registry`, entries belong to a
living actor: registering a name held by a live actor is `AlreadyRegistered` (never a silent
overwrite); an entry whose process is dead is replaced; entries go away when their actor dies,
and when a supervisor dies, the entries of the children it owned go with it.

Watches are one-shot, like Erlang monitors: a watcher gets one `Down` for the entry it watched.
Nothing here grows with restarts: a watch goes when its name goes down (the `Down` is sent) or
when its watcher's own entry goes (the watcher died), and every lookup is O(1) (indexes by
address), where each restart of a caller used to leave one watch behind (200 restarts: 200
watches on its callee, scanned on every lookup).
"""

from __future__ import annotations

from typing import Any, Callable

from supervision.errors import AlreadyRegistered
from supervision.messages import RegistryEntry


def _default_alive(entry: RegistryEntry) -> bool:
    return entry.identity is None or entry.identity.is_alive()


def address_key(address: Any) -> Any:
    """A hashable key for an actor address (thespian's `ActorAddress` is not hashable; its
    details are)."""
    return getattr(address, "addressDetails", address)


class Registry:
    """Names to live actors, the monitor's pure core: an entry belongs to a living actor, a taken
    name is `AlreadyRegistered`, and watchers hear `Down` when the owner dies."""

    def __init__(self, is_alive: Callable[[RegistryEntry], bool] = _default_alive) -> None:
        self.entries: dict[str, RegistryEntry] = {}
        #: name -> {watcher key: watcher address}
        self.watchers: dict[str, dict[Any, Any]] = {}
        #: watcher key -> the names it watches (to drop its watches when it dies)
        self.watching: dict[Any, set[str]] = {}
        #: address key -> name (for dead letters, which carry only the address)
        self.names: dict[Any, str] = {}
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
        self.names[address_key(entry.address)] = entry.name
        return replaced

    def lookup(self, name: str) -> RegistryEntry | None:
        return self.entries.get(name)

    def name_of(self, address: Any) -> str | None:
        name = self.names.get(address_key(address))
        entry = self.entries.get(name) if name is not None else None
        return name if entry is not None and entry.address == address else None

    def remove(self, name: str, address: Any = None) -> list[RegistryEntry]:
        """Remove `name` (only if it is still held by `address`, when given), and, for a
        supervisor, the entries of its subtree whose actors are dead. Returns what was removed.

        The removed actors are gone: the watches *they* held are dropped too."""
        entry = self.entries.get(name)
        if entry is None or (address is not None and entry.address != address):
            return []
        del self.entries[name]
        key = address_key(entry.address)
        if self.names.get(key) == name:
            del self.names[key]
        self.forget_watcher(entry.address)
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
        key = address_key(watcher)
        self.watchers.setdefault(name, {})[key] = watcher
        self.watching.setdefault(key, set()).add(name)
        return True

    def unwatch(self, name: str, watcher: Any) -> None:
        key = address_key(watcher)
        watchers = self.watchers.get(name)
        if watchers is not None:
            watchers.pop(key, None)
            if not watchers:
                del self.watchers[name]
        self._unindex(key, name)

    def take_watchers(self, name: str) -> list[Any]:
        """The watchers to notify now that `name` went down (their watches are used up)."""
        watchers = self.watchers.pop(name, {})
        for key in watchers:
            self._unindex(key, name)
        return list(watchers.values())

    def forget_watcher(self, watcher: Any) -> None:
        """`watcher` died: drop every watch it held."""
        key = address_key(watcher)
        for name in self.watching.pop(key, ()):
            watchers = self.watchers.get(name)
            if watchers is not None:
                watchers.pop(key, None)
                if not watchers:
                    del self.watchers[name]

    def watch_count(self) -> int:
        return sum(len(w) for w in self.watchers.values())

    def _unindex(self, key: Any, name: str) -> None:
        names = self.watching.get(key)
        if names is not None:
            names.discard(name)
            if not names:
                del self.watching[key]
