"""Pickling payloads and replies ourselves, so that what cannot cross a process boundary becomes a
typed error for the caller, never a message thespian logs and drops.

thespian pickles a message inside its transport: an unpicklable reply is logged in the actor
and the caller waits its whole timeout (measured: `AskTimeout` after 3.0 s for a reply holding a
lock); a message that fails to unpickle in the receiver (a class defined in `__main__` after the
system started) is logged there, and a tree whose class cannot load waited 65 s. Here the
sender pickles the value into `Packed` bytes (thespian then only copies bytes) and the receiver
unpickles it inside its own guard, where a failure can be answered.
"""

from __future__ import annotations

import pickle
from typing import Any

from supervision.errors import MessageNotUnpicklable, ReplyNotPicklable, ReplyNotUnpicklable
from supervision.messages import Packed

#: pickle protocol for packed values (the highest every supported Python reads: 3.11-3.13)
PROTOCOL = 5


def type_name(value: Any) -> str:
    if isinstance(value, Packed):
        return value.type_name
    return type(value).__name__


def pack(value: Any) -> Packed:
    """Pickle `value`; raises whatever pickle raises (the caller turns it into its typed error)."""
    if isinstance(value, Packed):
        return value
    return Packed(type(value).__name__, pickle.dumps(value, PROTOCOL))


def pack_reply(value: Any) -> Packed:
    """Pickle a reply value; `ReplyNotPicklable` (naming the type and why) if it cannot be."""
    try:
        return pack(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure
        raise ReplyNotPicklable(type(value).__name__, f"{type(exc).__name__}: {exc}") from None


def _unpack(value: Any, error: type) -> Any:
    if not isinstance(value, Packed):
        return value
    try:
        return pickle.loads(value.data)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure
        raise error(value.type_name, f"{type(exc).__name__}: {exc}") from None


def unpack_message(value: Any) -> Any:
    """The payload of a request; `MessageNotUnpicklable` if it does not unpickle here."""
    return _unpack(value, MessageNotUnpicklable)


def unpack_reply(value: Any) -> Any:
    """A reply value; `ReplyNotUnpicklable` if it does not unpickle in the caller's process."""
    return _unpack(value, ReplyNotUnpicklable)
