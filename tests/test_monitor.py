"""The monitor and dead letters: callers never crash or hang when the actor they talk to dies,
and actors never die because a caller sent them bad input (docs/design.md stories 1 and 2)."""

from __future__ import annotations

import threading
import time

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from supervision import (
    ActorCrashed,
    BadRequest,
    ChildSpec,
    DeadLetter,
    NoSuchName,
    Recoverable,
    SpecError,
    SupervisionError,
    SupervisorSpec,
    UnknownMessage,
)
from supervision.messages import Envelope
from tests.support import (
    MULTIPROC_BASES,
    Asker,
    Echo,
    Get,
    KeyValue,
    Nap,
    Put,
    Relay,
    Sleeper,
    UnknownKey,
    Watched,
    wait_for,
)


def tree_node(rt, name):
    return rt.tree().find(name)


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_handle_survives_fifty_kills_of_its_actor_without_a_caller_failure(make_runtime, base):
    rt = make_runtime(base).start(SupervisorSpec("root", intensity=1000, period=1.0, children=[ChildSpec("kv", KeyValue)]))
    handle = "kv"  # the caller keeps a name, never an address
    outcomes = {"reply": 0, "DeadLetter": 0, "NoSuchName": 0}
    for i in range(50):
        rt.kill(handle)
        started = time.monotonic()
        try:
            assert rt.ask(handle, Put("k", i), timeout=5.0) == "ok"
            outcomes["reply"] += 1
        except (DeadLetter, NoSuchName) as exc:
            outcomes[type(exc).__name__] += 1
        assert time.monotonic() - started < 2.5, "the caller waited far too long"
    assert sum(outcomes.values()) == 50
    assert outcomes["reply"] >= 25, outcomes  # the restarted actor usually answers at once
    wait_for(lambda: tree_node(rt, "kv").status == "running")
    assert tree_node(rt, "kv").restarts == 50


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_an_actor_killed_in_the_middle_of_a_request_gives_dead_letter_not_a_timeout(make_runtime, base):
    rt = make_runtime(base).start(SupervisorSpec("root", children=[ChildSpec("sleeper", Sleeper)]))
    pid = rt.ask("sleeper", "pid")
    killer = threading.Timer(0.3, lambda: __import__("os").kill(pid, 9))
    killer.start()
    started = time.monotonic()
    with pytest.raises(DeadLetter, match="died"):
        rt.ask("sleeper", Nap(30), timeout=20)
    assert time.monotonic() - started < 2.0
    killer.join()
    assert wait_for(lambda: rt.ask("sleeper", "pid") != pid)


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_crash_during_a_request_replies_actor_crashed_and_restarts_the_actor(make_runtime, base):
    rt = make_runtime(base).start(SupervisorSpec("root", children=[ChildSpec("kv", KeyValue)]))
    rt.ask("kv", Put("a", 1))
    with pytest.raises(ActorCrashed, match="RuntimeError: asked to crash") as info:
        rt.ask("kv", "crash")
    assert info.value.error_type == "RuntimeError" and info.value.actor == "kv"
    assert rt.ask("kv", Put("b", 2)) == "ok"  # the next request works (fresh state)
    with pytest.raises(UnknownKey):
        rt.ask("kv", Get("a"))
    node = tree_node(rt, "kv")
    assert (node.restarts, node.counters.crashes) == (1, 1)


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_recoverable_errors_are_replied_counted_and_keep_the_state(make_runtime, base):
    rt = make_runtime(base).start(SupervisorSpec("root", children=[ChildSpec("kv", KeyValue)]))
    rt.ask("kv", Put("a", 1))
    with pytest.raises(UnknownKey, match="'nope'") as info:
        rt.ask("kv", Get("nope"))
    assert info.value.key == "nope" and isinstance(info.value, Recoverable)
    with pytest.raises(BadRequest):
        rt.ask("kv", Put("a", "not an int"))
    with pytest.raises(UnknownMessage, match="does not handle dict"):
        rt.ask("kv", {"what": "is this"})
    assert rt.ask("kv", Get("a")) == 1
    wait_for(lambda: tree_node(rt, "kv").counters.recoverable_errors == 3)
    assert tree_node(rt, "kv").restarts == 0


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_temporary_child_that_died_gives_typed_errors_and_its_stale_address_dead_letters(make_runtime, base):
    pool = SupervisorSpec("pool", strategy="simple_one_for_one", children=[ChildSpec("t", Echo, restart="temporary")])
    rt = make_runtime(base).start(SupervisorSpec("root", children=[pool]))
    name = rt.start_child("pool")
    stale = rt.whereis(name)
    rt.kill(name)
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises((DeadLetter, NoSuchName)):
            rt.ask(name, "hello?", timeout=5)
        assert time.monotonic() - started < 1.0
    if rt.info.direct_sends:
        # a request sent to the dead actor's address comes back from the monitor as a dead letter
        with pytest.raises(DeadLetter, match="dead"):
            rt._request(stale.address, Envelope("hello?", name), time.monotonic() + 5, None, name)


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_asks_between_actors_by_name_survive_restarts_and_report_deaths(make_runtime, base):
    spec = SupervisorSpec("root", children=[ChildSpec("kv", KeyValue), ChildSpec("sleeper", Sleeper), ChildSpec("asker", Asker)])
    rt = make_runtime(base).start(spec)
    assert rt.ask("asker", Relay("kv", Put("a", 1))) == "ok"
    rt.kill("kv")
    wait_for(lambda: rt.ask("asker", Relay("kv", Put("b", 2))) == "ok", what="by-name ask to the restarted kv")
    with pytest.raises(UnknownKey):
        rt.ask("asker", Relay("kv", Get("zzz")))
    with pytest.raises(NoSuchName):
        rt.ask("asker", Relay("nobody", "x"))
    pid = rt.ask("sleeper", "pid")
    threading.Timer(0.3, lambda: __import__("os").kill(pid, 9)).start()
    started = time.monotonic()
    with pytest.raises(DeadLetter):
        rt.ask("asker", Relay("sleeper", Nap(30), timeout=20), timeout=25)
    assert time.monotonic() - started < 5.0
    assert tree_node(rt, "asker").restarts == 0


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_watchers_get_down_when_the_watched_actor_dies(make_runtime, base):
    rt = make_runtime(base).start(SupervisorSpec("root", children=[ChildSpec("echo", Echo), ChildSpec("asker", Asker)]))
    assert rt.ask("asker", Watched("echo")) == "watching"
    assert rt.ask("asker", Watched("nobody")) == "watching"
    rt.kill("echo")
    downs = wait_for(lambda: len(rt.ask("asker", "downs")) == 2 and rt.ask("asker", "downs"), what="two Down notices")
    assert ("nobody", "noproc") in downs
    assert any(name == "echo" for name, _ in downs)


# --- fuzzing ------------------------------------------------------------------------------------


@attrs.frozen
class Mystery:
    payload: object


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)
MESSAGES = st.one_of(
    VALUES,
    st.builds(Put, key=VALUES, value=VALUES),
    st.builds(Get, key=VALUES),
    st.builds(Mystery, payload=VALUES),
    st.tuples(VALUES, VALUES),
)


from supervision import Answer, Down, ReplyNotPicklable, SystemMessageRefused  # noqa: E402
from supervision.errors import ErrorInfo  # noqa: E402
from supervision.messages import Exiting, Init, Register, RegistryEntry, Started, Terminate, Unregister, Watch  # noqa: E402
from tests.calls_support import Faulty  # noqa: E402

#: runtime-only messages a hostile caller may forge: every one must be refused, nothing changed
FORGED = st.one_of(
    st.builds(Down, name=st.sampled_from(["kv", "faulty", "nobody"]), reason=st.text(max_size=10)),
    st.builds(Answer, tag=VALUES, value=VALUES),
    st.builds(Answer, tag=VALUES, error=st.builds(ErrorInfo, st.just("builtins:ValueError"), st.text(max_size=10))),
    st.builds(Terminate, reason=st.text(max_size=10)),
    st.builds(Exiting, name=st.just("kv"), reason=st.text(max_size=10)),
    st.builds(Started, name=st.just("kv"), identity=st.none()),
    st.builds(Unregister, name=st.just("kv"), address=st.none(), reason=st.text(max_size=5)),
    st.builds(Watch, name=st.just("kv")),
    st.builds(Register, entry=st.builds(RegistryEntry, st.just("kv"), st.none(), st.none(), st.just("root"), st.just("worker"), st.just("X")), corr=st.text(max_size=5)),
    st.builds(Init, name=st.just("kv"), spec=st.none(), parent_name=st.just("root"), context=st.none()),
)
#: requests whose reply cannot be pickled (the actor builds it: a lock, a socket, a lambda...)
UNPICKLABLE_REPLIES = st.sampled_from(["unpicklable", "unpicklable-lambda", "unpicklable-generator", "unpicklable-nested"])


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_fuzzed_forged_and_unpicklable_messages_get_typed_replies_and_never_restart_an_actor(make_runtime, base):
    """Every bad input, forged runtime message or unpicklable reply gets a typed error, the state
    survives, and nothing restarts. One test: the restart check cannot pass without the fuzzing
    having run before it (the module fixture it used to share made it pass trivially alone)."""
    rt = make_runtime(base, log_level="CRITICAL").start(
        SupervisorSpec("root", children=[ChildSpec("kv", KeyValue), ChildSpec("faulty", Faulty)])
    )
    rt.ask("kv", Put("keep", 42))
    seen = {"bad input": 0, "forged": 0, "unpicklable reply": 0, "unpicklable error": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(MESSAGES.map(lambda m: ("bad input", "kv", m)), FORGED.map(lambda m: ("forged", "kv", m)),
                          FORGED.map(lambda m: ("forged", "faulty", m)), UNPICKLABLE_REPLIES.map(lambda m: ("unpicklable reply", "faulty", m)),
                          st.just(("unpicklable error", "faulty", "unpicklable-error"))))
    # the one-value kinds always run: Hypothesis seldom repeats a value, so with 150 examples a
    # single-value branch of the one_of may never be drawn (it was not, once, on CPython 3.13)
    @example(case=("unpicklable error", "faulty", "unpicklable-error"))
    @example(case=("unpicklable reply", "faulty", "unpicklable"))
    @example(case=("unpicklable reply", "faulty", "unpicklable-nested"))
    def one(case):
        kind, target, message = case
        seen[kind] += 1
        try:
            rt.ask(target, message, timeout=5)
        except SystemMessageRefused:
            assert kind == "forged", f"{message!r} was refused as a runtime message"
        except SupervisionError as exc:
            assert kind != "forged", f"forged {message!r} was not refused: {exc!r}"
            if kind == "unpicklable reply":
                assert isinstance(exc, ReplyNotPicklable), f"{message!r} -> {exc!r}"
            if kind == "unpicklable error":  # its own type; the field that does not pickle stays behind
                assert type(exc).__name__ == "Unpicklable" and not hasattr(exc, "lock"), repr(exc)
            assert isinstance(exc, (Recoverable, SpecError)), f"{message!r} -> {exc!r}"
        else:
            assert kind == "bad input", f"{kind} {message!r} was accepted"
        assert rt.ask("kv", Get("keep")) == 42  # a valid message still works, with the state intact

    one()
    assert all(count > 0 for count in seen.values()), seen
    tree = rt.tree()
    for name in ("kv", "faulty"):
        assert (tree.find(name).restarts, tree.find(name).counters.crashes) == (0, 0), name


# --- dead letters of tells; nothing grows with restarts ---------------------------------------


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_tell_to_an_unknown_or_dead_name_is_a_dead_letter_counted_and_the_sender_can_hear_of_it(make_runtime, base):
    from tests.calls_support import Teller, TellTo

    pool = SupervisorSpec("pool", strategy="simple_one_for_one", children=[ChildSpec("t", Echo, restart="temporary")])
    rt = make_runtime(base).start(SupervisorSpec("root", children=[ChildSpec("teller", Teller), pool]))
    assert rt.ask("teller", TellTo("nobody", "silent")) == "sent"
    assert rt.ask("teller", TellTo("nobody", Put("k", 1), notify=True)) == "sent"
    notices = wait_for(lambda: rt.ask("teller", "notices"), what="an Undelivered notice")
    assert notices == [("nobody", "Put", Put("k", 1))]
    wait_for(lambda: tree_node(rt, "teller").counters.undelivered == 2, what="both dead letters counted")
    assert "undelivered 2" in str(rt.tree())
    gone = rt.start_child("pool")
    assert rt.ask("teller", TellTo(gone, "warm the cache")) == "sent"  # the teller resolves it once
    rt.kill(gone)
    assert rt.ask("teller", TellTo(gone, "to the dead", notify=True)) == "sent"
    wait_for(lambda: len(rt.ask("teller", "notices")) == 2, what="a notice for the dead target")
    assert rt.ask("teller", "notices")[1][0] == gone
    assert tree_node(rt, "teller").restarts == 0


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_restarts_of_a_caller_leave_no_watches_behind_in_the_monitor(make_runtime, base):
    from supervision.messages import MonitorStats

    spec = SupervisorSpec("root", intensity=1000, period=1.0, children=[ChildSpec("kv", KeyValue), ChildSpec("asker", Asker)])
    rt = make_runtime(base).start(spec)
    rt.ask("kv", Put("a", 1))
    baseline = None
    for restart in range(30):
        assert rt.ask("asker", Relay("kv", Get("a")), timeout=10) == 1  # a lookup (and a watch) by the caller
        stats = rt.ask("sys.monitor", MonitorStats())
        baseline = baseline or stats
        rt.kill("asker")
        wait_for(lambda: tree_node(rt, "asker").restarts == restart + 1, what="the caller restarted")
    stats = rt.ask("sys.monitor", MonitorStats())
    assert stats["watches"] <= baseline["watches"] + 1, (baseline, stats)
    assert stats["watchers"] <= baseline["watchers"] + 1, (baseline, stats)


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_tell_from_the_runtime_to_an_unknown_name_is_no_such_name(make_runtime, base):
    rt = make_runtime(base).start(SupervisorSpec("root", children=[ChildSpec("kv", KeyValue)]))
    with pytest.raises(NoSuchName, match="nobody"):
        rt.tell("nobody", Put("k", 1))
    rt.tell("kv", Put("k", 1))
    assert wait_for(lambda: rt.ask("kv", Get("k")) == 1)
