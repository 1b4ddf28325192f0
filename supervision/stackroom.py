"""Room on CPython's frame stack for the loop of every actor process (CPython 3.11-3.14).

CPython 3.11 keeps the frames of a thread in chunks of 16 KiB, and frees a chunk as soon as
the frame at its start returns (python/cpython#142183: a one-chunk cache, merged in March 2026,
fixes it in the 3.13 and 3.14 releases made after that; 3.11 and 3.12 keep it). A loop whose
frames sit just below a chunk's end crosses into a new chunk on every call it makes: an mmap,
page faults on the new pages and a munmap, thousands of times a second. An actor process inherits the stack of the process that forked it, so where
its loop sits depends on how deep the program was when it started the runtime: a job worker
forked under a program one frame deeper ran half as fast (5,600 against 11,000 no-op jobs/s,
74,000 page faults a second against 700; docs/NOTES.md, "Frame stack chunks").

`install()` makes thespian start every actor process (and its admin) inside one function whose
frame is larger than any chunk's free space, so that CPython gives it a chunk of its own with
`ROOM` slots free above it. Every actor's loop then starts at the same place, with 64 KiB of
frames (several hundred calls) before the next chunk boundary, however deep the caller was.
Elsewhere (other Pythons, a fixed CPython) it is a function with many unused locals: harmless.
Threads an actor starts itself begin with a fresh stack of their own and are not placed.
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any, Callable

#: locals of the room-making frame: more than the free space of any chunk CPython makes for a
#: frame this size (a 128 KiB chunk, 16,384 slots), so a nested one always gets a chunk too
LOCALS = 8200
#: the slots left free above that frame for the actor's loop (each slot a pointer)
ROOM = 16384 - LOCALS

#: the thespian functions that become the first frame of a new process
ENTRY_POINTS = ("startChild", "startAdmin")

_lock = threading.Lock()


def needed() -> bool:
    """CPython 3.11-3.14, the chunked frame stack (a release with the cache does not need it,
    and is not harmed)."""
    return sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] < (3, 15)


def _room_runner() -> Callable[..., Any]:
    names = [f"_unused{i}" for i in range(LOCALS)]
    source = (
        "def run_with_room(target, args, kwargs):\n"
        '    """`target(*args, **kwargs)`, called from a frame of `LOCALS` unused locals."""\n'
        "    if False:\n"
        f"        {' = '.join(names)} = None\n"
        "    return target(*args, **kwargs)\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<supervision.stackroom>", "exec"), namespace)  # noqa: S102 - fixed source
    return namespace["run_with_room"]


run_with_room = _room_runner()


def with_room(target: Callable[..., Any]) -> Callable[..., Any]:
    """`target`, called inside the room-making frame. It keeps `target`'s module and name, so
    that pickle (the spawn and forkserver start methods) finds it where `target` was."""

    @functools.wraps(target)
    def entry(*args: Any, **kwargs: Any) -> Any:
        return run_with_room(target, args, kwargs)

    return entry


def install() -> None:
    """Start thespian's actor processes inside the room-making frame (idempotent; a no-op where
    CPython does not need it). Call before the actor system forks its first process."""
    if not needed():
        return
    from thespian.system import multiprocCommon

    with _lock:
        for name in ENTRY_POINTS:
            current = getattr(multiprocCommon, name)
            if not hasattr(current, "__wrapped__"):
                setattr(multiprocCommon, name, with_room(current))
