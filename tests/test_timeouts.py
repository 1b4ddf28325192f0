"""`ask` and `tell` keep their timeout whatever state the receiver is in (busy, SIGSTOPped), and one
stuck actor never slows calls to the others (docs/design.md section 3: never a wait past `timeout`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

import pytest

from supervision import AskTimeout, ChildSpec, SendTimeout, SupervisorSpec
from tests.support import MULTIPROC_BASES, Echo, Nap, Sleeper, wait_for

#: what a call may take beyond its timeout on this loaded 2-core machine (measured: ~10 ms)
MARGIN = 1.0


def tree():
    return SupervisorSpec("root", children=[ChildSpec("sleeper", Sleeper), ChildSpec("echo", Echo)])


@contextmanager
def stopped(pid: int):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def timed(call, *args, **kwargs):
    started = time.monotonic()
    try:
        return call(*args, **kwargs), time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        return exc, time.monotonic() - started


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_an_ask_to_an_actor_busy_in_a_long_handler_keeps_its_timeout(make_runtime, base):
    rt = make_runtime(base).start(tree())
    busy = threading.Thread(target=timed, args=(rt.ask, "sleeper", Nap(20)), kwargs={"timeout": 30}, daemon=True)
    busy.start()
    wait_for(lambda: rt.ask("echo", "up"))
    time.sleep(0.2)  # the Nap is being handled
    error, took = timed(rt.ask, "sleeper", "pid", timeout=1.0)
    assert isinstance(error, AskTimeout), error
    assert took < 1.0 + MARGIN, f"ask(timeout=1) took {took:.1f} s"
    reply, took = timed(rt.ask, "echo", "hi", timeout=2.0)
    assert reply == "hi" and took < 2.0


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_sigstopped_actor_never_slows_later_calls_to_others(make_runtime, base):
    rt = make_runtime(base).start(tree())
    pid = rt.ask("sleeper", "pid")
    with stopped(pid):
        for _ in range(2):
            error, took = timed(rt.ask, "sleeper", "pid", timeout=1.0)
            assert isinstance(error, AskTimeout), error
            assert took < 1.0 + MARGIN, f"ask(timeout=1) to a stopped actor took {took:.1f} s"
            for _ in range(3):
                reply, took = timed(rt.ask, "echo", "hi", timeout=2.0)
                assert reply == "hi" and took < 2.0, (reply, took)
            snapshot, took = timed(rt.tree, timeout=2.0)
            assert snapshot.find("echo") is not None and took < 2.0
        error, took = timed(rt.tell, "sleeper", "hello", timeout=1.0)
        assert took < 1.0 + MARGIN, f"tell(timeout=1) to a stopped actor took {took:.1f} s"
        if rt.info.direct_sends:
            assert isinstance(error, SendTimeout), error  # it never accepted the message
    assert wait_for(lambda: rt.ask("sleeper", "pid", timeout=5) == pid, what="the actor answers again")


def test_the_first_call_of_a_new_thread_keeps_its_timeout_while_the_kernel_is_stopped(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree())
    results = []
    with stopped(rt._kernel_identity.pid):
        thread = threading.Thread(target=lambda: results.append(timed(rt.ask, "echo", "hi", timeout=1.0)))
        thread.start()
        thread.join(30)
    [(error, took)] = results
    assert isinstance(error, AskTimeout), error
    assert took < 1.0 + MARGIN, f"the handshake of a new thread took {took:.1f} s"
    assert rt.ask("echo", "again", timeout=5) == "again"
