"""Errors as values across processes: the caller gets the error's own type, with the remote
traceback and the actor's name on it; `RemoteError` only where the type cannot be rebuilt."""

from __future__ import annotations

import json

import pytest

from supervision import ActorCrashed, ChildSpec, RemoteError, SupervisorSpec
from tests.calls_support import Faulty, ReplyError
from tests.support import MULTIPROC_BASES, Asker, Relay


def faulty_tree():
    return SupervisorSpec("root", children=[ChildSpec("faulty", Faulty), ChildSpec("asker", Asker)])


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_builtin_error_replied_by_an_actor_is_raised_as_its_own_type(make_runtime, base):
    rt = make_runtime(base).start(faulty_tree())
    with pytest.raises(ValueError, match="not a number") as info:
        rt.ask("faulty", ReplyError("value"))
    assert type(info.value) is ValueError and info.value.args == ("not a number: 'x'",)
    assert info.value.remote_actor == "faulty"


def test_a_library_error_is_rebuilt_with_its_fields_and_remote_traceback(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(faulty_tree())
    with pytest.raises(json.JSONDecodeError) as info:
        rt.ask("faulty", ReplyError("json"))
    assert (info.value.pos, info.value.lineno, info.value.colno) == (1, 1, 2)
    assert "json.loads" in info.value.remote_traceback  # the traceback in the actor's process
    assert any("raised in actor 'faulty'" in note for note in info.value.__notes__)


def test_a_crash_raises_actor_crashed_caused_by_the_original_error(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(faulty_tree())
    with pytest.raises(ActorCrashed) as info:
        rt.ask("faulty", "lookup")
    cause = info.value.__cause__
    assert isinstance(cause, KeyError) and cause.args == ("missing",)
    assert "return {}[\"missing\"]" in cause.remote_traceback
    assert rt.ask("faulty", "ping") == "pong"  # restarted


def test_an_error_type_that_cannot_be_imported_here_is_a_remote_error(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(faulty_tree())
    with pytest.raises(RemoteError, match="LocalOnly: defined inside a function") as info:
        rt.ask("faulty", ReplyError("local"))
    assert info.value.remote_type.endswith("<locals>.LocalOnly")


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_an_answer_between_actors_unwraps_to_the_real_type(make_runtime, base):
    rt = make_runtime(base).start(faulty_tree())
    with pytest.raises(ValueError, match="not a number"):
        rt.ask("asker", Relay("faulty", ReplyError("value")))
    with pytest.raises(ActorCrashed) as info:
        rt.ask("asker", Relay("faulty", "crash-value"))
    assert isinstance(info.value.__cause__, ValueError)


# --- what cannot cross a process boundary is a typed error at once ----------------------------

import time  # noqa: E402

from supervision import MessageNotUnpicklable, ReplyNotPicklable, Server, StartFailed  # noqa: E402
from tests.calls_support import define_late, late_handle  # noqa: E402


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_reply_that_cannot_be_pickled_is_a_typed_error_at_once_and_the_actor_keeps_running(make_runtime, base):
    rt = make_runtime(base).start(faulty_tree())
    pid = rt.ask("faulty", "pid")
    started = time.monotonic()
    with pytest.raises(ReplyNotPicklable, match="lock") as info:
        rt.ask("faulty", "unpicklable", timeout=30)
    assert time.monotonic() - started < 10, "the caller waited for its timeout"
    assert info.value.value_type == "lock" and info.value.remote_actor == "faulty"
    with pytest.raises(ReplyNotPicklable):  # the same between actors, as an Answer
        rt.ask("asker", Relay("faulty", "unpicklable", timeout=30), timeout=30)
    assert rt.ask("faulty", "pid") == pid and rt.tree().find("faulty").restarts == 0


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_message_that_does_not_unpickle_in_the_actor_is_a_typed_error_at_once(make_runtime, base):
    rt = make_runtime(base).start(faulty_tree())
    pid = rt.ask("faulty", "pid")
    Late = define_late(f"LateMessage{base}")  # the actor processes were forked before it existed
    started = time.monotonic()
    with pytest.raises(MessageNotUnpicklable, match=f"LateMessage{base}") as info:
        rt.ask("faulty", Late(), timeout=30)
    assert time.monotonic() - started < 10, "the caller waited for its timeout"
    assert info.value.message_type == f"LateMessage{base}"
    with pytest.raises(MessageNotUnpicklable):
        rt.ask("asker", Relay("faulty", Late(), timeout=30), timeout=30)
    assert rt.ask("faulty", "pid") == pid and rt.tree().find("faulty").restarts == 0


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_tree_whose_actor_class_cannot_be_loaded_fails_to_start_at_once_naming_the_class(make_runtime, base):
    rt = make_runtime(base).start(faulty_tree())
    Late = define_late(f"LateServer{base}", (Server,), {"handle": late_handle})
    started = time.monotonic()
    with pytest.raises(StartFailed, match=f"LateServer{base}") as info:
        rt.start(SupervisorSpec("late-tree", children=[ChildSpec("late", Late)]))
    assert time.monotonic() - started < 10
    assert info.value.name == "late-tree"
    with pytest.raises(StartFailed, match=f"LateServer{base}"):
        rt.add_child("root", ChildSpec("late-child", Late))
    assert rt.ask("faulty", "ping") == "pong" and "late-tree" not in {n.name for n in rt.tree().walk()}
