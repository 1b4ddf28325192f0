"""Properties of the job system's pure parts (issue 19): payload validation agrees with what
PostgreSQL stores, the timing rules, and the completer's batch under failed writes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.jobs.core import MIN_HEARTBEAT_TTL, OutcomeBatch, check_payload, check_timing, storable_text
from actors.jobs.errors import BadJob
from actors.stores.errors import DataRejected
from actors.stores.jobs import PgJobStore
from actors.stores.rows import JobOutcome, NewJob
from supervision import SpecError

# any code point, lone surrogates and NUL included
TEXT = st.text(st.characters(codec=None, categories=None), max_size=8)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON)
def test_a_payload_is_accepted_exactly_when_postgresql_stores_it(database, payload):
    store = PgJobStore(database)
    try:
        check_payload("k", payload)
        accepted = True
    except BadJob:
        accepted = False
    try:
        [job_id] = store.insert([NewJob("k", payload)])
        stored = True
    except DataRejected:
        stored = False
    assert accepted == stored, payload
    if stored:
        assert same(store.get(job_id).payload, json.loads(json.dumps(payload)))


def same(a, b):
    """Equal as JSON (numbers compared as numbers: jsonb keeps 1.8e16 as 18014398509481990)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-15, abs_tol=1e-300)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@given(text=TEXT)
def test_storable_text_is_valid_utf8_without_nul(text):
    cleaned = storable_text(text)
    cleaned.encode("utf-8")
    assert "\x00" not in cleaned
    if "\x00" not in text and all(not 0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert cleaned == text


@given(ttl=st.floats(0, 100), rescue=st.one_of(st.none(), st.floats(-1, 200)))
def test_timing_is_refused_exactly_when_it_could_end_a_healthy_job(ttl, rescue):
    ok = ttl >= MIN_HEARTBEAT_TTL and (rescue is None or 0 < rescue <= ttl)
    if ok:
        interval = check_timing(ttl, rescue)
        assert 0 < interval <= ttl
    else:
        with pytest.raises(SpecError, match="heartbeat_ttl|rescue_interval"):
            check_timing(ttl, rescue)


class BatchUnderOutages(RuleBasedStateMachine):
    """Outcomes added, written or put back after a failed write (and resent by workers): every
    outcome is written at least once, none is held twice, no waiter is lost."""

    def __init__(self):
        super().__init__()
        self.batch = OutcomeBatch(size=5, max_age=0.02)
        self.added: set = set()
        self.written: set = set()
        self.waiters_in = 0
        self.waiters_out = 0
        self.now = 0.0
        self.n = 0

    @rule(count=st.integers(1, 4))
    def add(self, count):
        outcomes = [JobOutcome(self.n + i, 1, 1, "completed", 0.0) for i in range(count)]
        self.n += count
        self.batch.add(outcomes, self.now, waiter=object())
        self.added.update(outcomes)
        self.waiters_in += 1

    @rule(data=st.data())
    def resend(self, data):
        if self.added:
            again = data.draw(st.sampled_from(sorted(self.added, key=lambda o: o.job_id)))
            self.batch.add([again], self.now)

    @rule()
    def write_ok(self):
        outcomes, waiters = self.batch.take()
        self.written.update(outcomes)
        self.waiters_out += len(waiters)

    @rule()
    def write_fails(self):
        outcomes, waiters = self.batch.take()
        self.now += 0.5
        self.batch.put_back(outcomes, waiters, self.now)

    @invariant()
    def nothing_lost(self):
        assert self.added <= self.written | set(self.batch.outcomes)
        assert self.waiters_in == self.waiters_out + len(self.batch.waiters)
        if self.batch.outcomes:
            assert self.batch.oldest is not None


TestBatchUnderOutages = BatchUnderOutages.TestCase
