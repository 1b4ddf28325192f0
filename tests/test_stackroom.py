"""An actor's loop never sits on a boundary of CPython's frame-stack chunks, however deep the
program was when it started the runtime (supervision.stackroom; CPython 3.11-3.13 free a chunk
as soon as its first frame returns, python/cpython#142183).

Found as a job worker that ran half as fast when the benchmark that started it was one frame
deeper: every call its loop made crossed into a new chunk (an mmap, page faults, a munmap).
The test counts page faults, not time: a call that crosses a boundary maps a new chunk and
touches it, so an actor whose calls keep crossing one faults at least once per call."""

from __future__ import annotations

import resource

import pytest

from supervision import ChildSpec, SupervisorSpec, stackroom
from supervision.server import Server

#: slots (pointers) of one padding frame in the test's own process; below the calls' own span,
#: so that some padding puts every chunk boundary inside the span of the actor's calls
PAD_LOCALS = 500
#: one calls' span: frames of `descend`, a dozen slots each
DESCEND = 70
CALLS = 2000


def descend(depth: int) -> int:
    return descend(depth - 1) if depth else 0


class Caller(Server):
    """Makes `CALLS` calls `DESCEND` frames deep from its loop; answers the page faults they cost."""

    def handle(self, message):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(CALLS):
            descend(DESCEND)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _padding():
    names = [f"_pad{i}" for i in range(PAD_LOCALS)]
    source = f"def pad(levels, then):\n    if False:\n        {' = '.join(names)} = None\n    return pad(levels - 1, then) if levels else then()\n"
    namespace: dict = {}
    exec(compile(source, "<test padding>", "exec"), namespace)
    return namespace["pad"]


pad = _padding()


def faults_when_started_at(make_runtime, levels: int) -> int:
    rt = pad(levels, lambda: make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[ChildSpec("caller", Caller)])))
    try:
        rt.ask("caller", "warm up")  # the first calls may map what the loop needs once
        return rt.ask("caller", "count", timeout=30)
    finally:
        rt.stop()


@pytest.mark.skipif(not stackroom.needed(), reason="this CPython keeps freed frame-stack chunks for reuse")
def test_an_actor_loop_never_straddles_a_frame_stack_chunk_whatever_the_callers_depth(make_runtime):
    # 6 paddings of ~500 slots cover one 2,048-slot chunk in steps shorter than the span of the
    # actor's calls (~850 slots), so without the room one of them puts a boundary in that span
    faults = {levels: faults_when_started_at(make_runtime, levels) for levels in range(6)}
    assert all(count < CALLS // 4 for count in faults.values()), f"page faults per {CALLS} calls, by padding: {faults}"


def test_the_room_making_frame_is_bigger_than_the_free_space_of_any_chunk_it_makes():
    # CPython gives a frame that does not fit a chunk of its own: the smallest power of two of
    # 16 KiB or more that holds the frame and 1,000 slots more; its free space must be smaller
    # than the frame, so that a room made inside a room still gets a new chunk
    code = stackroom.run_with_room.__code__
    frame_slots = code.co_nlocals + code.co_stacksize
    chunk = 2048
    while chunk < frame_slots + 1000:
        chunk *= 2
    assert chunk - frame_slots < frame_slots
    assert chunk - frame_slots >= stackroom.ROOM - 16  # the room the module promises, give or take the frame's header
    assert stackroom.run_with_room(lambda *a, **k: (a, k), (1, 2), {"x": 3}) == ((1, 2), {"x": 3})
