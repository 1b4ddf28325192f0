"""The monitor: the registry's host, thespian's dead-letter handler, and the source of `Down` notices.

Started by the runtime as the first child of its kernel (`sys.monitor`). It

- holds the name registry (see `registry.py`): supervisors register each child when it has
  started and unregister it when it exits; lookups check that the holder's process is alive;
- turns dead letters into replies: a request (an `Envelope` with a correlation id and a
  reply-to address) that thespian could not deliver goes back to the original sender as a
  `DeadLetter` error naming the target, the message type and the reason;
- sends `Down(name, reason)` to the watchers of a name when its actor dies;
- sweeps the registry on a timer, so actors that died without anyone noticing (a subtree
  killed with its supervisor; thespian's queue base, which reports nothing) still go away;
- keeps what supervisors report about their children, and the per-actor counters, for `tree()`.
"""

from __future__ import annotations

from typing import Any

import attrs
from thespian.actors import DeadEnvelope

from supervision.logs import logger
from supervision.errors import AlreadyRegistered, DeadLetter, NoSuchName, UnknownMessage
from supervision.introspect import Counters, build_tree
from supervision.messages import (
    CountEvent,
    Down,
    Envelope,
    ErrorReply,
    GetTree,
    Init,
    Lookup,
    NodeRemoved,
    NodeRow,
    Register,
    RegistryEntry,
    Reply,
    Resolved,
    MonitorStats,
    Undelivered,
    StatusNote,
    Unregister,
    Unwatch,
    Watch,
)
from supervision.process import Process
from supervision.registry import Registry
from supervision.router import type_name
from supervision.specs import KERNEL_NAME

log = logger("supervision.monitor")

#: CountEvent kinds -> the tree's counter they add to
_COUNTED = {"recoverable": "recoverable_errors", "crash": "crashes", "undelivered": "undelivered", "dead_letter": "dead_letters"}

#: A recoverable error's text kept per actor is cut to this many characters.
ERROR_DETAIL = 300
#: Seconds between sweeps of the registry for actors that died unnoticed.
SWEEP_INTERVAL = 1.0
#: A monitor that just (re)started holds a watch of a name not registered yet this long: after
#: a restart, watchers send their watches again while supervisors re-register their children,
#: from different processes in no set order (a watch that came first answered "noproc").
REWATCH_GRACE = 2.0


class Monitor(Process):
    """`sys.monitor`: holds the registry, is thespian's dead-letter handler (a request to a dead
    actor comes back to its sender as `DeadLetter`), and sends `Down` to watchers."""

    system_handlers = {
        **Process.system_handlers,
        Register: "_on_register",
        Unregister: "_on_unregister",
        Lookup: "_on_lookup",
        Watch: "_on_watch",
        Unwatch: "_on_unwatch",
        NodeRow: "_on_node_row",
        NodeRemoved: "_on_node_removed",
        CountEvent: "_on_count_event",
        StatusNote: "_on_status_note",
    }

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry()
        #: lookups waiting for a name that is being (re)started: name -> [(deadline, lookup, sender)]
        self.parked: dict[str, list[tuple[float, Lookup, Any]]] = {}
        self.rows: dict[str, NodeRow] = {}
        self.counters: dict[str, Counters] = {}
        #: conditions running actors report about themselves (StatusNote)
        self.notes: dict[str, str] = {}
        self.sweep_interval = SWEEP_INTERVAL
        self._next_sweep = 0.0
        self.rewatch_until = 0.0
        #: watches held for names not registered yet (just after a restart): name -> watchers
        self.held_watches: dict[str, list[Any]] = {}

    def on_init(self, message: Init) -> None:
        self.rewatch_until = self.clock() + REWATCH_GRACE
        self.handleDeadLetters()
        if not self.in_process:
            self.arm_timer(self.clock() + self.sweep_interval)
        self.report_started()

    # --- registry ---------------------------------------------------------------------------------

    def _on_register(self, message: Register, sender: Any) -> None:
        try:
            replaced = self.registry.register(message.entry)
        except AlreadyRegistered as exc:
            self.send_error(Envelope(None, "", message.corr, sender), sender, exc)
            return
        for entry in replaced:
            self._down(entry, "the actor is dead (replaced by a new registration)")
        self.send(sender, Reply(message.corr, None))
        for _deadline, lookup, asker in self.parked.pop(message.entry.name, ()):
            self._answer_lookup(lookup, asker, message.entry)
        if message.entry.name in self.held_watches:
            self._release_watches(self.clock())

    def _on_unregister(self, message: Unregister, sender: Any) -> None:
        for entry in self.registry.remove(message.name, message.address):
            if entry.name == message.name:
                self._down(entry, message.reason, message.cause)
            else:
                self._down(entry, f"its supervisor {message.name} died")

    def _on_lookup(self, message: Lookup, sender: Any) -> None:
        if message.stale is not None:
            for removed in self.registry.remove(message.name, message.stale):
                self._down(removed, "crashed")
        entry = self._live_entry(message.name)
        if entry is not None:
            self._answer_lookup(message, sender, entry)
        elif message.wait > 0 and self._coming_back(message.name):
            deadline = self.clock() + message.wait
            self.parked.setdefault(message.name, []).append((deadline, message, sender))
            self.arm_timer(deadline)
        else:
            self._not_found(message, sender)

    def _answer_lookup(self, message: Lookup, sender: Any, entry: RegistryEntry) -> None:
        if message.watch:
            self.registry.watch(message.name, sender)
        resolved = Resolved(message.corr, entry.name, entry.address, entry.identity)
        if message.reply_to is not None:
            self.reply_value(message.reply_to, message.reply_corr, resolved)
        else:
            self.send(sender, resolved)

    def _coming_back(self, name: str) -> bool:
        """True while a supervisor is (re)starting the actor of `name`, or will: its process died
        and it is not temporary (its supervisor has not noticed yet, or is deciding)."""
        row = self.rows.get(name)
        if row is None:
            return False
        if row.status in ("starting", "restarting", "exited"):
            return True
        return row.status == "running" and row.restart != "temporary" and self.registry.lookup(name) is None

    def _not_found(self, message: Lookup, sender: Any) -> None:
        restarting = self._coming_back(message.name)
        hint = f"it is {self.rows[message.name].status}; retry shortly" if restarting else ""
        error = NoSuchName(message.name, hint, restarting=restarting)
        if message.reply_to is not None:
            self.send_error(Envelope(None, "", message.reply_corr, message.reply_to), message.reply_to, error)
        else:
            self.send_error(Envelope(None, "", message.corr, sender), sender, error)

    def _expire_parked(self, now: float, give_up: bool = False) -> float | None:
        upcoming = None
        for name in list(self.parked):
            keep = []
            for deadline, lookup, asker in self.parked[name]:
                if give_up or deadline <= now or not self._coming_back(name):
                    self._not_found(lookup, asker)
                else:
                    keep.append((deadline, lookup, asker))
                    upcoming = deadline if upcoming is None else min(upcoming, deadline)
            if keep:
                self.parked[name] = keep
            else:
                del self.parked[name]
        return upcoming

    def _live_entry(self, name: str) -> RegistryEntry | None:
        entry = self.registry.lookup(name)
        if entry is not None and entry.identity is not None and not entry.identity.is_alive():
            for removed in self.registry.remove(entry.name, entry.address):
                self._down(removed, "killed")
            return None
        return entry

    def _on_watch(self, message: Watch, sender: Any) -> None:
        if self._live_entry(message.name) is None and self.clock() < self.rewatch_until and not self.in_process:
            self.held_watches.setdefault(message.name, []).append(sender)
            self.arm_timer(self.rewatch_until)
            return
        if self._live_entry(message.name) is None or not self.registry.watch(message.name, sender):
            self.send(sender, Down(message.name, "noproc"))

    def _release_watches(self, now: float) -> None:
        for name in list(self.held_watches):
            if self.registry.lookup(name) is not None:
                for watcher in self.held_watches.pop(name):
                    self.registry.watch(name, watcher)
            elif now >= self.rewatch_until:
                for watcher in self.held_watches.pop(name):
                    self.send(watcher, Down(name, "noproc"))

    def _on_unwatch(self, message: Unwatch, sender: Any) -> None:
        self.registry.unwatch(message.name, sender)

    def _down(self, entry: RegistryEntry, reason: str, cause: str | None = None) -> None:
        log.debug("%s is down: %s", entry.name, reason)
        for watcher in self.registry.take_watchers(entry.name):
            self.send(watcher, Down(entry.name, reason, entry.address, cause))

    def on_tick(self, now: float) -> float | None:
        if self.held_watches:
            self._release_watches(now)
        if self.in_process:
            return self._expire_parked(now)
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            for entry in self.registry.dead_entries():
                for removed in self.registry.remove(entry.name, entry.address):
                    self._down(removed, "killed")
        upcoming = self._expire_parked(now)
        return self._next_sweep if upcoming is None else min(upcoming, self._next_sweep)

    # --- dead letters --------------------------------------------------------------------------------

    def _on_dead_envelope(self, message: DeadEnvelope, sender: Any) -> None:
        letter = message.deadMessage
        if isinstance(letter, Envelope):
            target = letter.target or str(message.deadAddress)
            self._count(letter.target, "dead_letters")
            if letter.corr is not None and letter.reply_to is not None:
                error = DeadLetter(target, type_name(letter.payload), "the actor is dead", undelivered=True)
                self.send_error(letter, None, error)
            elif letter.reply_to is not None:  # a tell whose sender asked to hear of it
                log.info("dead letter: %s to %r (the actor is dead), sender told", type_name(letter.payload), target)
                sender_name = self.registry.name_of(letter.reply_to)
                if sender_name is not None:
                    self._count(sender_name, "undelivered")
                self.send(letter.reply_to, Undelivered(target, type_name(letter.payload), "the actor is dead", letter.payload))
            else:
                log.info("dead letter: %s to %r dropped (the actor is dead)", type_name(letter.payload), target)
        elif isinstance(letter, (Down, Reply, ErrorReply, Resolved)):
            self.registry.forget_watcher(message.deadAddress)  # the watcher itself died
        else:
            log.info("dead letter: %s to %s dropped", type_name(letter), message.deadAddress)
        name = self.registry.name_of(message.deadAddress)
        if name is not None:
            entry = self.registry.lookup(name)
            if entry is not None and (entry.identity is None or not entry.identity.is_alive()):
                for removed in self.registry.remove(name, message.deadAddress):
                    self._down(removed, "killed")

    # --- the tree --------------------------------------------------------------------------------------

    def _on_node_row(self, message: NodeRow, sender: Any) -> None:
        previous = self.rows.get(message.name)
        self.rows[message.name] = message
        if previous is not None and previous.kind == "supervisor" and previous.pid != message.pid and previous.pid is not None:
            # that supervisor's process is gone, and its children with it: drop their rows
            self._drop_children(message.name, previous.pid)
        if message.status != "running":
            self.notes.pop(message.name, None)  # a note belongs to one run of the actor
        if message.name in self.parked and not self._coming_back(message.name):
            self._expire_parked(self.clock())

    def _drop_children(self, parent: str, pid: int) -> None:
        for row in [r for r in self.rows.values() if r.parent == parent and r.parent_pid == pid]:
            del self.rows[row.name]
            if row.kind == "supervisor" and row.pid is not None:
                self._drop_children(row.name, row.pid)

    def _on_node_removed(self, message: NodeRemoved, sender: Any) -> None:
        self.rows.pop(message.name, None)
        self.counters.pop(message.name, None)  # a removed child's counts go with its row
        self.notes.pop(message.name, None)
        if message.name in self.parked:
            self._expire_parked(self.clock())

    def _on_status_note(self, message: StatusNote, sender: Any) -> None:
        if isinstance(message.status, str) and message.status:
            self.notes[message.name] = message.status[:80]
        else:
            self.notes.pop(message.name, None)

    def _on_count_event(self, message: CountEvent, sender: Any) -> None:
        field = _COUNTED.get(message.kind)
        if field is not None:
            self._count(message.name, field)
        if message.kind == "recoverable" and message.detail:
            self.counters[message.name] = attrs.evolve(self.counters[message.name], last_error=message.detail[:ERROR_DETAIL])

    def _count(self, name: str, field: str) -> None:
        current = self.counters.get(name, Counters())
        self.counters[name] = attrs.evolve(current, **{field: getattr(current, field) + 1})

    def on_request(self, payload: Any, envelope: Envelope | None, sender: Any) -> None:
        if isinstance(payload, GetTree):
            self.send_reply(envelope, sender, self.snapshot())
        elif isinstance(payload, MonitorStats):
            self.send_reply(envelope, sender, self.stats())
        else:
            self.send_error(envelope, sender, UnknownMessage(self.name, type_name(payload)))

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self.registry.entries),
            "watches": self.registry.watch_count(),
            "watchers": len(self.registry.watching),
            "parked": sum(len(p) for p in self.parked.values()),
            "rows": len(self.rows),
            "counters": len(self.counters),
        }

    def snapshot(self) -> Any:
        return build_tree(self.rows, self.counters, root=self.kernel_name, base=self.context.base if self.context else "", notes=self.notes)

    @property
    def kernel_name(self) -> str:
        return KERNEL_NAME
