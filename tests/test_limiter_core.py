"""The limiter's pure core against a model, driven by Hypothesis (no actors)."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from actors.limiter import Limit, LimiterCore, Owner, UnknownKey, UnknownLease
from actors.limiter.core import Granted, TimedOut
from supervision import BadRequest

OWNERS = [Owner.actor(f"owner-{i}") for i in range(3)]


def test_permits_are_granted_up_to_the_limit_then_queued_fifo():
    core = LimiterCore({"db": Limit(2)})
    outcomes = [core.acquire(i, "db", OWNERS[0], 0.0, timeout=5) for i in range(4)]
    assert [type(o[0]).__name__ if o else None for o in outcomes] == ["Granted", "Granted", None, None]
    first = outcomes[0][0].lease
    assert [o.request_id for o in core.release(first.id, 1.0)] == [2]
    assert core.held("db") == 2


def test_waiters_time_out_and_leases_expire():
    core = LimiterCore({"db": Limit(1)})
    [granted] = core.acquire(1, "db", OWNERS[0], 0.0, timeout=5, lease_timeout=10)
    core.acquire(2, "db", OWNERS[1], 0.0, timeout=3)
    assert [type(o) for o in core.advance(3.0)] == [TimedOut]
    core.acquire(3, "db", OWNERS[1], 3.0, timeout=60)
    assert [(type(o), o.request_id) for o in core.advance(10.0)] == [(Granted, 3)]  # lease 1 expired


def test_a_dead_owner_gives_its_permits_back():
    core = LimiterCore({"db": Limit(1)})
    core.acquire(1, "db", OWNERS[0], 0.0, timeout=5)
    core.acquire(2, "db", OWNERS[1], 0.0, timeout=5)
    released, cancelled, outcomes = core.owner_gone(OWNERS[0].name, 1.0)
    assert len(released) == 1 and cancelled == [] and [o.request_id for o in outcomes] == [2]


def test_an_owner_that_dies_holding_and_waiting_on_one_default_key_is_forgotten_cleanly():
    """Found by the state machine below: the dead owner's lease went, the idle default-covered
    key was forgotten with it, and the loop over its cancelled waits then looked the key up
    (KeyError in owner_gone, which crashed the limiter)."""
    core = LimiterCore({}, default=Limit(1))
    assert core.acquire(1, "d", OWNERS[0], 0.0, timeout=0.0)
    assert core.acquire(2, "d", OWNERS[0], 0.0, timeout=1.0) == []  # it waits behind itself
    released, cancelled, outcomes = core.owner_gone(OWNERS[0].name, 0.5)
    assert len(released) == 1 and cancelled == [2] and outcomes == []
    assert core.acquire(3, "d", OWNERS[1], 0.6, timeout=0.0)  # the key works again


def test_a_rate_limit_spaces_grants_by_the_rate():
    core = LimiterCore({"api": Limit(100, rate=2.0, burst=1)})
    assert core.acquire(1, "api", OWNERS[0], 0.0, timeout=10)
    assert core.acquire(2, "api", OWNERS[0], 0.0, timeout=10) == []
    assert core.next_deadline(0.0) == pytest.approx(0.5)
    assert [o.request_id for o in core.advance(0.5)] == [2]


def test_keys_only_the_default_covers_are_forgotten_when_idle_and_nothing_scans_them():
    core = LimiterCore({"db": Limit(2)}, default=Limit(1))
    for i in range(10_000):
        [granted] = core.acquire(i, f"user-{i}", OWNERS[i % 3], float(i), timeout=1)
        core.release(granted.lease.id, float(i))
    assert set(core.buckets) == {"db"} and core.leases == {} and list(core.owners()) == []
    core.check()
    core.acquire("r", "plain", OWNERS[0], 0.0, timeout=1)
    assert core.next_deadline(0.0) is None  # nothing waits, nothing expires


def test_an_unknown_key_names_the_configured_ones():
    core = LimiterCore({"images": Limit(2)})
    with pytest.raises(UnknownKey, match="'imagse'.*configured: 'images'"):
        core.acquire(1, "imagse", OWNERS[0], 0.0, timeout=1)
    assert set(core.buckets) == {"images"}


def test_bad_input_is_rejected_with_typed_errors():
    core = LimiterCore({"db": Limit(1)}, default=None)
    with pytest.raises(BadRequest):
        Limit(0)
    with pytest.raises(BadRequest):
        Limit(1, rate=-3)
    with pytest.raises(BadRequest):
        core.acquire(1, 42, OWNERS[0], 0.0, timeout=1)
    with pytest.raises(BadRequest):
        core.acquire(1, "db", OWNERS[0], 0.0, timeout=-1)
    with pytest.raises(BadRequest):
        core.acquire(1, "db", "not an owner", 0.0, timeout=1)
    with pytest.raises(UnknownKey):
        core.acquire(1, "cache", OWNERS[0], 0.0, timeout=1)
    with pytest.raises(UnknownLease):
        core.release("no-such-lease", 0.0)


class LimiterMachine(RuleBasedStateMachine):
    @initialize(
        concurrency=st.integers(1, 3),
        rate=st.one_of(st.none(), st.floats(0.5, 5.0)),
        burst=st.integers(1, 3),
    )
    def setup(self, concurrency, rate, burst):
        self.limit = Limit(concurrency, rate, burst if rate else None)
        # "k" is configured; "d" is covered by the default only, so it is forgotten when idle
        self.core = LimiterCore({"k": self.limit}, default=self.limit)
        self.now = 0.0
        self.next_id = 0
        self.requests: dict[int, dict] = {}  # id -> {owner, at, deadline, state}
        self.leases: dict[str, object] = {}  # lease id -> Lease (what the model thinks is held)
        self.grant_times: dict[str, list[float]] = {"k": [], "d": []}

    def _absorb(self, outcomes):
        for outcome in outcomes:
            request = self.requests[outcome.request_id]
            assert request["state"] == "waiting", f"{outcome} for a request that is {request['state']}"
            if isinstance(outcome, Granted):
                # FIFO: nobody who asked earlier is still waiting
                earlier = [
                    r for r in self.requests.values()
                    if r["at_seq"] < request["at_seq"] and r["state"] == "waiting" and r["key"] == request["key"]
                ]
                assert not earlier, f"request {outcome.request_id} jumped the queue"
                assert self.now <= request["deadline"] + 1e-9, "granted after its timeout"
                request["state"] = "granted"
                self.leases[outcome.lease.id] = outcome.lease
                self.grant_times[outcome.lease.key].append(self.now)
            else:
                assert self.now >= request["deadline"] - 1e-9, "timed out early"
                request["state"] = "timed out"

    @rule(owner=st.sampled_from(OWNERS), timeout=st.floats(0.0, 4.0), lease=st.one_of(st.none(), st.floats(0.5, 3.0)), key=st.sampled_from(["k", "d"]))
    def acquire(self, owner, timeout, lease, key):
        self.next_id += 1
        self.requests[self.next_id] = {"owner": owner.name, "at_seq": self.next_id, "deadline": self.now + timeout, "state": "waiting", "key": key}
        self._absorb(self.core.acquire(self.next_id, key, owner, self.now, timeout, lease))

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def release(self, data):
        lease_id = data.draw(st.sampled_from(sorted(self.leases)))
        del self.leases[lease_id]
        self._absorb(self.core.release(lease_id, self.now))

    @rule()
    def release_an_unknown_lease(self):
        with pytest.raises(UnknownLease):
            self.core.release("never-granted", self.now)

    @rule(owner=st.sampled_from(OWNERS))
    def an_owner_dies(self, owner):
        released, cancelled, outcomes = self.core.owner_gone(owner.name, self.now)
        assert {l.id for l in released} == {i for i, l in self.leases.items() if l.owner.name == owner.name}
        for lease in released:
            del self.leases[lease.id]
        for request_id in cancelled:
            assert self.requests[request_id]["owner"] == owner.name
            self.requests[request_id]["state"] = "cancelled"
        assert not any(r["state"] == "waiting" and r["owner"] == owner.name for r in self.requests.values())
        self._absorb(outcomes)

    @rule(step=st.floats(0.0, 2.0))
    def time_passes(self, step):
        self.now += step
        outcomes = self.core.advance(self.now)
        expired = {i for i, l in self.leases.items() if l.expires_at is not None and l.expires_at <= self.now}
        for lease_id in expired:
            del self.leases[lease_id]
        self._absorb(outcomes)

    @invariant()
    def never_more_permits_than_the_limit_and_no_leak(self):
        if not hasattr(self, "core"):
            return
        assert self.core.held("k") <= self.limit.concurrency
        assert self.core.held("d") <= self.limit.concurrency
        assert set(self.core.leases) == set(self.leases)

    @invariant()
    def the_indexes_agree_and_an_idle_default_key_is_forgotten(self):
        if not hasattr(self, "core"):
            return
        self.core.check()
        busy = any(l.key == "d" for l in self.leases.values()) or any(
            r["state"] == "waiting" and r["key"] == "d" for r in self.requests.values()
        )
        if busy:
            assert "d" in self.core.buckets
        elif self.limit.rate is None:
            assert "d" not in self.core.buckets, "an idle key only the default covers was kept"

    @invariant()
    def the_model_and_the_core_agree_on_who_waits(self):
        if not hasattr(self, "core"):
            return
        waiting = [r for r in self.requests.values() if r["state"] == "waiting" and r["key"] == "k"]
        assert len(waiting) == sum(1 for _ in self.core.buckets["k"].queue)

    @invariant()
    def the_rate_is_never_exceeded_over_any_window(self):
        if not hasattr(self, "core") or self.limit.rate is None:
            return
        for times in self.grant_times.values():  # "d" included: across its forgetting
            for i, start in enumerate(times):
                for j in range(i, len(times)):
                    window = times[j] - start
                    assert j - i + 1 <= self.limit.capacity + self.limit.rate * window + 1e-6


TestLimiterCore = LimiterMachine.TestCase
