"""Deferred replies never lose an error: what goes wrong while answering later reaches the caller
that waits, typed, at once (docs/design.md story 2)."""

from __future__ import annotations

import time

import pytest

from supervision import ActorCrashed, ChildSpec, SupervisorSpec
from tests.calls_support import Deferring, Faulty, ReplyError, Via
from tests.support import MULTIPROC_BASES, Get, KeyValue, Put, UnknownKey, wait_for


def tree():
    return SupervisorSpec("root", children=[ChildSpec("kv", KeyValue), ChildSpec("outer", Deferring), ChildSpec("faulty", Faulty)])


@pytest.mark.parametrize("base", MULTIPROC_BASES)
@pytest.mark.parametrize("how", ["unwrap", "forward", "handle"])
def test_an_error_of_the_inner_actor_reaches_the_outer_caller_at_once(make_runtime, base, how):
    rt = make_runtime(base).start(tree())
    rt.ask("kv", Put("a", 1))
    assert rt.ask("outer", Via(how, "kv", Get("a"))) == 1
    started = time.monotonic()
    with pytest.raises(UnknownKey, match="'nope'") as info:
        rt.ask("outer", Via(how, "kv", Get("nope")), timeout=30)
    assert time.monotonic() - started < 10, "the error was lost and the caller waited for its timeout"
    assert info.value.key == "nope"
    assert rt.tree().find("outer").restarts == 0


def test_forwarding_keeps_the_error_as_it_came_from_the_inner_actor(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree())
    with pytest.raises(ValueError, match="not a number") as info:
        rt.ask("outer", Via("forward", "faulty", ReplyError("value")), timeout=30)
    assert info.value.remote_actor == "faulty"


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_bug_in_a_then_callback_is_a_crash_the_caller_hears_of(make_runtime, base):
    rt = make_runtime(base).start(tree())
    pid = rt.ask("outer", "pid")
    started = time.monotonic()
    with pytest.raises(ActorCrashed, match="ZeroDivisionError") as info:
        rt.ask("outer", Via("boom", "kv", Get("x")), timeout=30)
    assert time.monotonic() - started < 10
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    wait_for(lambda: rt.ask("outer", "pid") != pid, what="the outer actor restarted")
    assert rt.tree().find("outer").restarts == 1
