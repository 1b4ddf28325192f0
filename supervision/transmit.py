"""Sends from outside the actor system that never wait longer than the caller's deadline.

thespian's external `tell` runs the transport until *every* pending transmit of the context is
acknowledged, up to its `MAX_TELL_PERIOD` (60 s): an `ask(timeout=2)` to a SIGSTOPped actor
took 60.06 s, one to an actor busy in a 40 s handler 39 s, and every later call from the
same thread waited behind the stuck transmit. Here a send is a thespian `TransmitIntent`
whose own expiry is the caller's deadline (plus `EXPIRY_MARGIN`), with callbacks that record
its outcome; the caller runs the transport in short slices and looks only at its own
transmit, so a stuck one never delays the others.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from thespian.system.transport import SendStatus, TransmitIntent

#: A transmit outlives its caller's deadline by this much before thespian drops it, so that a
#: send that was accepted at the last moment is not cut in the middle; 0.5 s keeps at most a
#: handful of stuck transmits per context (thespian runs 20 at once, then queues).
EXPIRY_MARGIN = 0.5
#: How long one run of the transport lasts while waiting for a transmit to finish.
SLICE = 0.01


class Transmit:
    """One message on its way: pending until thespian calls back with its status."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: Any = None

    def _done(self, result: Any, intent: Any) -> None:
        self.status = result

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def failed(self) -> bool:
        return self.status is not None and not self.status

    @property
    def dead_target(self) -> bool:
        """The target certainly never got it: no such actor, or it was never sent."""
        return self.status in (SendStatus.DeadTarget, SendStatus.NotSent)

    @property
    def rejected(self) -> bool:
        """The receiving process could not unpickle it."""
        return self.status is SendStatus.BadPacket


def schedule(base: Any, address: Any, message: Any, deadline: float) -> Transmit:
    """Hand `message` to `base`'s transport (a thespian external context); never blocks on the
    receiver. The transmit expires `EXPIRY_MARGIN` after `deadline`."""
    tx = Transmit()
    period = max(0.05, deadline - time.monotonic()) + EXPIRY_MARGIN
    base.transport.scheduleTransmit(None, TransmitIntent(address, message, onSuccess=tx._done, onError=tx._done, maxPeriod=timedelta(seconds=period)))
    return tx


def finish(base: Any, tx: Transmit, deadline: float) -> bool:
    """Run the transport (transmits only) until `tx` is done or `deadline`; True if done."""
    while not tx.done:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        base._run_transport(timedelta(seconds=min(SLICE, remaining)), txonly=True)
    return True
