"""Messages only the runtime sends are refused when a caller sends them as a payload: a forged
`Down`, `Answer` or lifecycle message changes nothing and gets a typed error."""

from __future__ import annotations

import pytest

from supervision import Answer, ChildSpec, Down, SupervisorSpec, SystemMessageRefused
from supervision.errors import ErrorInfo
from supervision.messages import Exiting, Init, MonitorChanged, Register, RegistryEntry, Started, Terminate, Unregister
from tests.calls_support import Deferring, Via
from tests.support import MULTIPROC_BASES, Asker, Get, KeyValue, Put, Watched, wait_for

FORGED = [
    Down("kv", "killed"),
    Answer(None, 42),
    Answer(None, error=ErrorInfo("builtins:ValueError", "forged")),
    Terminate("shutdown"),
    Exiting("kv", "normal"),
    Started("kv", None),
    MonitorChanged(None),
    Unregister("kv", None, "forged"),
    Register(RegistryEntry("kv", None, None, "root", "worker", "X"), "c1"),
    Init("kv", None, "root", None),
]


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_forged_runtime_messages_are_refused_by_servers_supervisors_and_the_monitor(make_runtime, base):
    rt = make_runtime(base).start(
        SupervisorSpec("root", children=[ChildSpec("kv", KeyValue), ChildSpec("asker", Asker), ChildSpec("outer", Deferring)])
    )
    rt.ask("kv", Put("a", 1))
    assert rt.ask("asker", Watched("kv")) == "watching"
    for target in ("kv", "asker", "outer", "root", "sys.monitor"):
        for message in FORGED:
            with pytest.raises(SystemMessageRefused, match=type(message).__name__):
                rt.ask(target, message)
    assert rt.ask("kv", Get("a")) == 1  # nothing changed
    assert rt.ask("asker", "downs") == []  # the forged Down never reached the watcher's handle
    assert rt.ask("outer", Via("unwrap", "kv", Get("a"))) == 1
    tree = rt.tree()
    assert all(tree.find(name).restarts == 0 for name in ("kv", "asker", "outer"))
    wait_for(lambda: rt.tree().find("kv").counters.recoverable_errors >= len(FORGED), what="refusals counted")
