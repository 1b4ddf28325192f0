"""What thespian keeps, in a parent actor's process, for every child it ever created; and dropping it.

thespian (4.0.1) keeps, in the process of an actor that creates children:

- `ActorAddressManager._managed`: a list indexed by the local address number `createActor`
  hands out (`ActorLocalAddress.addressInstanceNum`); the slot holds the child's real address
  once the child has connected. The list never shrinks (thespian's comment in `deadAddress`:
  removing entries would shift the indexes), so a supervisor held one slot per child incarnation
  ever started;
- `_child_procs`: one `ChildInfo` per forked process (the `multiprocessing.Process`, its popen
  and the pipe fd it waits on). thespian drops a record only when `Process.is_alive()` says the
  process is gone, which it asks when SIGCHLD or `ChildActorExited` arrives;
- on the queue base also `ActorAddressManager._deadAddrs` and the transport's `_deadaddrs`,
  one dead child address each, scanned linearly on every send and every forwarded message.

`adopt(actor)` swaps `_managed` for `Slots`, a list look-alike that keeps only the slots still
needed (a dict by index; `len()` stays the number of addresses handed out, so new local addresses
get fresh numbers and old numbers never point at a new child). `sweep(actor, in_use)` drops the
slots of children that are gone, once nothing of ours can still use their local addresses
(see there for why that is safe); `trim_dead(actor)` bounds the queue base's dead lists.
`tables(actor)` reports the sizes, for `ThespianStats` requests (tests, the soak benchmark).

`fix_timer_rounding()` mends a race in thespian's select loop that could leave an actor asleep
with its timers overdue (see there).
"""

from __future__ import annotations

from typing import Any, Iterator

from supervision.logs import logger

log = logger("supervision.hygiene")

#: dead addresses kept on the queue base (thespian turns sends to them into dead letters; a
#: send to an address older than that is forwarded up the tree and dead-lettered by the admin)
DEAD_ADDRESSES_KEPT = 64


class Slots:
    """A stand-in for `ActorAddressManager._managed` (a list that only grows): the same
    `append` / `len` / `[i]` / `[i] = v`, but the slots of forgotten children are gone.

    A forgotten slot reads as None, which is what thespian stores for a child that has not
    connected yet; `forgotten_reads` counts such reads (nothing should make them: a send to a
    forgotten local address would wait forever for the child to connect)."""

    __slots__ = ("_slots", "_next", "forgotten_reads")

    def __init__(self, existing: list | None = None) -> None:
        self._slots: dict[int, Any] = {}
        self._next = 0
        self.forgotten_reads = 0
        for value in existing or ():
            self.append(value)

    def append(self, value: Any) -> None:
        self._slots[self._next] = value
        self._next += 1

    def __len__(self) -> int:
        return self._next

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += self._next
        if not 0 <= index < self._next:
            raise IndexError(index)
        try:
            return self._slots[index]
        except KeyError:
            self.forgotten_reads += 1
            return None

    def __setitem__(self, index: int, value: Any) -> None:
        if not 0 <= index < self._next:
            raise IndexError(index)
        if index in self._slots:  # thespian updates a slot when its child (re)connects
            self._slots[index] = value

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self._next))

    def forget(self, index: int) -> bool:
        return self._slots.pop(index, _MISSING) is not _MISSING

    @property
    def kept(self) -> int:
        return len(self._slots)


_MISSING = object()


def fix_timer_rounding() -> None:
    """An unexpired timer's `remaining()` is never a zero timedelta.

    thespian's TCP select loop computes its timeout as the least of its timers' remaining times,
    after `filter(None, ...)`: a zero timedelta is falsy and drops out. `remaining()` rounds to
    whole microseconds, so a wakeup due in under 0.5 us (not expired yet, so the loop does not
    stop for it) reads as zero and is ignored; with no other timeout the select then blocks
    until some message arrives, however many wakeups are overdue meanwhile. Seen as a supervisor
    that restarted its child only when the next message reached it (4 times in 10,000 restarts
    in the soak, once for over 120 s). Patched in the class, so it holds in every process that
    imports the runtime (actor processes are forked from one that did)."""
    from datetime import timedelta

    from thespian.system.timing import ExpirationTimerView

    if getattr(ExpirationTimerView.remaining, "_never_zero", False):
        return
    original = ExpirationTimerView.remaining
    tick = timedelta(microseconds=1)

    def remaining(self: Any, forever: Any = None) -> Any:
        left = original(self, forever)
        if isinstance(left, timedelta) and not left and not self.expired():
            return tick
        return left

    remaining._never_zero = True  # type: ignore[attr-defined]
    ExpirationTimerView.remaining = remaining


def _manager(actor: Any) -> Any:
    """thespian's ActorManager of `actor` (multiproc bases), or None."""
    return getattr(actor, "_myRef", None)


def adopt(actor: Any) -> bool:
    """Replace the actor's `_managed` list by `Slots` (before it creates children)."""
    address_manager = getattr(_manager(actor), "_addrManager", None)
    managed = getattr(address_manager, "_managed", None)
    if isinstance(managed, Slots):
        return True
    if not isinstance(managed, list):
        return False
    address_manager._managed = Slots(managed)
    return True


def local_index(actor: Any, address: Any) -> int | None:
    """The local address number of `address` if it is one this actor's createActor returned."""
    from thespian.system.addressManager import ActorLocalAddress

    details = getattr(address, "addressDetails", None)
    if not isinstance(details, ActorLocalAddress):
        return None
    manager = _manager(actor)
    if getattr(details, "generatingActor", None) != getattr(manager, "myAddress", object()):
        return None
    index = getattr(details, "addressInstanceNum", None)
    return index if isinstance(index, int) and index >= 0 else None


def real_address(actor: Any, address: Any) -> Any:
    """The real address thespian knows for the child at local `address` (None if not connected)."""
    index = local_index(actor, address)
    managed = getattr(getattr(_manager(actor), "_addrManager", None), "_managed", None)
    if index is None or managed is None or index >= len(managed):
        return None
    return managed[index]


def sweep(actor: Any, in_use: Any) -> int:
    """Drop the slots of children that are gone: every slot whose local address number is not
    in `in_use` (the numbers of the addresses our plan still refers to) and whose process
    thespian has reaped (no `ChildInfo` left for it). Returns how many slots are still kept.

    Safe because (TCP and queue bases):
    - a send is resolved to the real address when it is scheduled (`prepMessageSend` in
      `scheduleTransmit`), and a message carrying a local address is pickled then too, so
      transmits already queued or in flight no longer need the slot;
    - thespian's own references to a child are real addresses (`_children`; the
      `ChildActorExited` it makes when it reaps a process reads `ChildInfo.childRealAddr`); the
      `ChildInfo` of a process not reaped yet keeps its slot until a later sweep;
    - the registry, the monitor and every other actor only ever got the real address (a local
      address is pickled as its slot's real address, and cannot be pickled without one);
    - a late duplicate `ChildActorExited` (thespian sends two per exit) carries the real
      address; with the slot gone it matches no local address, which is right: that
      incarnation is gone. Nor can it match a new incarnation that got a reused port through the
      old slot.
    A slot whose child never connected holds None; transmits parked for that address (thespian
    parks them until the child connects) are failed, as thespian does for a child that could not
    be created, instead of waiting forever."""
    manager = _manager(actor)
    managed = getattr(getattr(manager, "_addrManager", None), "_managed", None)
    if not isinstance(managed, Slots):
        return 0
    reaping = {local_index(actor, getattr(info, "childAddr", None)) for info in getattr(manager, "_child_procs", None) or ()}
    keep = set(in_use) | reaping
    for index in [i for i in managed._slots if i not in keep]:
        if managed._slots[index] is None:
            _fail_parked(manager, index)
        managed.forget(index)
    return managed.kept


def _fail_parked(manager: Any, index: int) -> None:
    awaiting = getattr(manager, "_awaitingAddressUpdate", None)
    address_manager = getattr(manager, "_addrManager", None)
    if awaiting is None or address_manager is None:
        return
    from thespian.system.transport import SendStatus

    for intent in awaiting.remove_intents_for_address(address_manager.getLocalAddress(index)):
        try:
            intent.tx_done(SendStatus.Failed)
        except Exception:  # noqa: BLE001 - a callback of thespian's must not break the sweep
            log.debug("a parked transmit's failure callback raised", exc_info=True)


def trim_dead(actor: Any) -> None:
    """Queue base: keep the latest `DEAD_ADDRESSES_KEPT` dead child addresses only."""
    manager = _manager(actor)
    address_manager = getattr(manager, "_addrManager", None)
    dead = getattr(address_manager, "_deadAddrs", None)
    if isinstance(dead, list) and len(dead) > DEAD_ADDRESSES_KEPT:
        del dead[: len(dead) - DEAD_ADDRESSES_KEPT]
    core = getattr(getattr(manager, "transport", None), "_QCore", None)
    dead = getattr(core, "_deadaddrs", None)
    if isinstance(dead, list) and len(dead) > DEAD_ADDRESSES_KEPT:
        del dead[: len(dead) - DEAD_ADDRESSES_KEPT]


def _size(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def tables(actor: Any) -> dict[str, int | None]:
    """Sizes of thespian's per-actor tables in this process (None where the base has none)."""
    manager = _manager(actor)
    address_manager = getattr(manager, "_addrManager", None)
    managed = getattr(address_manager, "_managed", None)
    transport = getattr(manager, "transport", None)
    core = getattr(transport, "_QCore", None)
    awaiting = getattr(getattr(manager, "_awaitingAddressUpdate", None), "_awt", None)
    return {
        "managed": managed.kept if isinstance(managed, Slots) else _size(managed),
        "local_addresses": _size(managed),
        "child_procs": _size(getattr(manager, "_child_procs", ())),
        "children": _size(getattr(manager, "_children", None)),
        "dead_addresses": _size(getattr(address_manager, "_deadAddrs", None)),
        "awaiting_address": _size(awaiting),
        "receive_queue": _size(getattr(manager, "_receiveQueue", None)),
        "open_sockets": _size(getattr(transport, "_openSockets", None)),
        "incoming_sockets": _size(getattr(transport, "_incomingSockets", None)),
        "transmits": _size(getattr(transport, "_transmitIntents", None)),
        "waiting_transmits": _size(getattr(transport, "_waitingTransmits", None)),
        "queued_transmits": _size(getattr(transport, "_aTB_queuedPendingTransmits", None)),
        "wakeups": _size(getattr(transport, "_pendingWakeups", None)),
        "queue_routes": _size(getattr(core, "_queues", None)),
        "queue_forwards": _size(getattr(core, "_fwdvia", None)),
        "queue_dead": _size(getattr(core, "_deadaddrs", None)),
        "forgotten_reads": managed.forgotten_reads if isinstance(managed, Slots) else 0,
    }
