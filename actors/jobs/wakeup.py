"""Wake an actor at once when a socket it listens on (a LISTEN connection) becomes readable.

thespian's TCP transport selects on its own sockets; an actor may add file descriptors to that
select by returning `ThespianWatch([fd, ...])` from `receiveMessage` (valid until the next
message, so it is returned after every one), and is then sent a `WatchMessage` as soon as one
is readable. A worker that watches its LISTEN connection this way claims a job the moment its
NOTIFY arrives, instead of at its next poll (`notify_check`, 50 ms: 25 ms of wait on average,
far more on a loaded machine, where a timer fires late). Bases without the feature
(multiprocQueueBase, simpleSystemBase) keep polling: `watch_supported` says which.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ThespianWatch, WatchMessage


def watch_supported(actor: Any) -> bool:
    """Whether the transport under `actor` can select on foreign file descriptors."""
    manager = getattr(actor, "_myRef", None)
    return hasattr(getattr(manager, "transport", None), "set_watch")


class WakeOnReadable:
    """Mixin for a `Process`: `watched_fileno()` names the descriptor to watch (or None), and
    `on_readable()` runs (guarded like any message) when it is readable."""

    _watch_ok: bool | None = None

    def watched_fileno(self) -> int | None:
        return None

    def on_readable(self) -> None:
        pass

    def receiveMessage(self, message: Any, sender: Any) -> Any:
        if isinstance(message, WatchMessage):
            try:
                self.on_readable()
            except Exception as exc:  # noqa: BLE001 - nothing may escape into thespian
                self.on_internal_error(exc, message)  # type: ignore[attr-defined]
        else:
            super().receiveMessage(message, sender)  # type: ignore[misc]
        if self._watch_ok is None:
            self._watch_ok = watch_supported(self)
        if not self._watch_ok or getattr(self, "_exiting", False):
            return None
        try:
            fileno = self.watched_fileno()
        except Exception:  # noqa: BLE001 - a closed connection: no watch until it is reopened
            fileno = None
        return ThespianWatch([fileno]) if fileno is not None and fileno >= 0 else None
