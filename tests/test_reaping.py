"""A long-lived process (a REPL, Jupyter) that starts and stops runtimes is left with nothing:
no zombie children, no open files, no threads."""

from __future__ import annotations

import gc
import os
import threading

import pytest

from supervision import ChildSpec, Runtime, SupervisorSpec
from tests.support import MULTIPROC_BASES, Echo, wait_for


def zombie_children() -> set[int]:
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.add(int(entry))
    return found


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_starting_and_stopping_runtimes_leaves_no_zombies_fds_or_threads(base):
    before_zombies, before_fds = zombie_children(), len(os.listdir("/proc/self/fd"))
    before_threads = threading.active_count()
    for i in range(5):
        rt = Runtime(base, log_level="CRITICAL").start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
        assert rt.ask("echo", i) == i
        rt.stop()
    assert zombie_children() - before_zombies == set(), "each stop left its admin process as a zombie"
    # thespian's system object sits in reference cycles: on the queue base its pipes (12 fds
    # and 6 feeder threads for 5 runtimes) go when the garbage collector runs
    del rt
    gc.collect()
    # the queue base's multiprocessing queues close their pipes from feeder threads, a moment later
    wait_for(lambda: len(os.listdir("/proc/self/fd")) <= before_fds + 2, what="the fds back")
    wait_for(lambda: threading.active_count() <= before_threads + 1, what="the threads back")
