"""Many threads: each calling thread gets its own thespian context, released when the thread
ends, so short-lived threads leave no sockets behind (in the caller or the actor system)."""

from __future__ import annotations

import os
import resource
import threading

import pytest

from supervision import ChildSpec, SupervisorSpec
from supervision.liveness import group_members
from tests.support import MULTIPROC_BASES, Echo, wait_for


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_short_lived_threads_leave_no_open_files_behind(make_runtime, base):
    rt = make_runtime(base).start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    assert rt.ask("echo", "warm") == "warm"
    mine, theirs = open_fds(os.getpid()), sum(open_fds(p) for p in group_members(rt._group))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    replies = []
    # a tight limit: the threads before the fix kept 3 fds each and ran out after ~20 of them
    resource.setrlimit(resource.RLIMIT_NOFILE, (mine + 64, hard))
    try:
        for i in range(150):
            thread = threading.Thread(target=lambda i=i: replies.append(rt.ask("echo", i)))
            thread.start()
            thread.join()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert sorted(replies) == list(range(150))
    wait_for(lambda: open_fds(os.getpid()) <= mine + 2, what=f"the caller's fds back to {mine}")
    wait_for(lambda: sum(open_fds(p) for p in group_members(rt._group)) <= theirs + 4, what="the actor system's fds back")
    assert len(rt._contexts) <= 1
