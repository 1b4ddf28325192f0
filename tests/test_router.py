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


# --- the pending requests against a model ----------------------------------------------------

from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule  # noqa: E402


class PendingMachine(RuleBasedStateMachine):
    """Requests asked, forwarded, answered, doomed by a Down and expired, against a dict model:
    each request is answered exactly once, never before its deadline unless replied, never after
    its deadline once `expire` ran."""

    @initialize()
    def setup(self):
        self.router, self.owner, self.clock = router_with(["a", "b"])
        self.model: dict[str, dict] = {}  # corr -> {name, deadline, kind}
        self.answered: dict[str, int] = {}
        self.count = 0

    def _answer(self, corr):
        def on_answer(answer):
            self.answered[corr] = self.answered.get(corr, 0) + 1
        return on_answer

    @rule(name=st.sampled_from(["a", "b"]), timeout=st.floats(0.01, 5.0))
    def ask(self, name, timeout):
        self.count += 1
        holder = {}
        corr = self.router.ask(name, self.count, timeout, lambda answer: self._answer(holder["corr"])(answer))
        holder["corr"] = corr
        self.model[corr] = {"name": name, "deadline": self.clock.now + timeout, "kind": "ask"}

    @rule(name=st.sampled_from(["a", "b"]), ttl=st.floats(0.01, 5.0))
    def forward(self, name, ttl):
        self.count += 1
        corr = f"f{self.count}"
        self.router.forward(Envelope(self.count, name, corr, "caller", ttl=ttl))
        self.model[corr] = {"name": name, "deadline": self.clock.now + ttl, "kind": "forward"}

    @precondition(lambda self: any(m["kind"] == "ask" for m in self.model.values()))
    @rule(data=st.data())
    def reply(self, data):
        corr = data.draw(st.sampled_from(sorted(c for c, m in self.model.items() if m["kind"] == "ask")))
        assert self.router.on_reply(Reply(corr, "value"))
        del self.model[corr]

    @rule(name=st.sampled_from(["a", "b"]))
    def down(self, name):
        self.router.on_down(Down(name, "killed", f"{name}-address"))
        for entry in self.model.values():
            if entry["name"] == name:
                entry["deadline"] = min(entry["deadline"], self.clock.now + 0.1)
        # the restarted actor is found at once (this fake has no monitor): later requests are sent
        self.router.cache[name] = Resolved("c", name, f"{name}-address", None)

    @rule(step=st.floats(0.0, 2.0))
    def time_passes(self, step):
        self.clock.now += step
        upcoming = self.router.expire()
        due = [c for c, m in self.model.items() if m["deadline"] <= self.clock.now]
        for corr in due:
            del self.model[corr]
        assert upcoming == (min((m["deadline"] for m in self.model.values()), default=None))

    @invariant()
    def the_router_waits_for_exactly_the_model(self):
        if not hasattr(self, "router"):
            return
        assert set(self.router.pending) == set(self.model)
        assert all(n <= 1 for n in self.answered.values()), "a request was answered twice"
        assert not set(self.answered) & set(self.model), "a request was failed before its deadline"


TestPending = PendingMachine.TestCase
