"""The router's bookkeeping of pending requests, without actors: deadlines in a heap, so an
expiry or a `Down` touches only the requests it concerns."""

from __future__ import annotations

import pytest

from supervision.messages import Down, Envelope, Reply, Resolved
from supervision.router import Router


class FakeOwner:
    """What a Router needs of its actor: a name, sends, a timer."""

    name = "kernel"
    myAddress = "kernel-address"
    monitor_address = "monitor"
    in_process = True

    def __init__(self):
        self.sent: list = []
        self.timer: float | None = None

    def send(self, address, message):
        self.sent.append((address, message))

    def arm_timer(self, deadline):
        self.timer = deadline if self.timer is None else min(self.timer, deadline)

    def on_undelivered(self, envelope, reason):
        self.sent.append(("undelivered", envelope.target))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def router_with(names):
    owner, clock = FakeOwner(), Clock()
    router = Router(owner, clock=clock)
    for name in names:
        router.cache[name] = Resolved("c", name, f"{name}-address", None)
    return router, owner, clock


def test_forwarded_requests_expire_in_deadline_order_and_answered_ones_never_do():
    router, owner, clock = router_with(["a", "b"])
    for i in range(10_000):
        router.forward(Envelope(i, "a" if i % 2 else "b", f"x{i}", "caller", ttl=1.0 + (i % 100) / 100))
    assert len(router.pending) == 10_000 and len(router._deadlines) <= 10_000
    failed = [m for _, m in owner.sent if not isinstance(m, Envelope)]
    assert failed == []
    clock.now = 1.5
    assert router.expire() == pytest.approx(1.51)  # the next deadline
    assert all(p.deadline > 1.5 for p in router.pending.values())
    assert len(router.pending) == 10_000 - 5_100  # ttl 1.00 .. 1.50: 51 of each 100
    clock.now = 10.0
    assert router.expire() is None and router.pending == {} and router._by_name == {}


def test_a_reply_removes_its_request_and_the_heap_stays_proportional_to_what_is_pending():
    router, owner, clock = router_with(["a"])
    answers = []
    for i in range(5_000):
        corr = router.ask("a", i, 60.0, answers.append)
        router.on_reply(Reply(corr, i))
    assert len(answers) == 5_000 and router.pending == {}
    assert len(router._deadlines) <= 64 + 1, "answered requests pile up in the heap"


def test_a_down_shortens_only_the_requests_to_that_name():
    router, owner, clock = router_with(["a", "b"])
    answers = []
    for i in range(100):
        router.ask("a" if i % 2 else "b", i, 30.0, answers.append)
    router.on_down(Down("a", "killed", "a-address"))
    assert sorted({p.name for p in router.pending.values() if p.down}) == ["a"]
    clock.now = 0.2
    assert router.expire() == 30.0
    assert len(answers) == 50 and all(type(a.error).__name__ == "ErrorInfo" and a.error.type_name == "DeadLetter" for a in answers)
    assert {p.name for p in router.pending.values()} == {"b"}


def test_the_address_cache_keeps_the_most_recent_names_only():
    router, owner, clock = router_with([])
    router.cache_size = 100
    for i in range(1_000):
        router.lookups[f"l{i}"] = f"name-{i}"
        assert router.on_resolved(Resolved(f"l{i}", f"name-{i}", f"address-{i}", None))
    assert len(router.cache) == 100 and "name-999" in router.cache and "name-0" not in router.cache


def test_the_runtime_address_caches_keep_the_most_recent_names_only(monkeypatch):
    from supervision import calls

    monkeypatch.setattr(calls, "CACHE_SIZE", 3)
    cache: dict = {}
    for i in range(10):
        calls._bounded(cache)[f"name-{i}"] = i
    assert list(cache) == ["name-7", "name-8", "name-9"]
