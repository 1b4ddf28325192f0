"""Enqueue is all-or-nothing: payloads, queue names and kinds PostgreSQL would refuse are a
`BadJob` before anything is stored, and never crash the jobs service (issue 19, point 4)."""

from __future__ import annotations

import time
import uuid

import pytest

from actors.jobs import BadJob, Enqueue, new_job
from actors.jobs.core import MAX_PAYLOAD_BYTES
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.errors import SchemaMissing
from actors.stores.jobs import PgJobStore
from actors.stores.rows import NewJob
from supervision import SupervisorSpec
from tests.support import wait_for
from tests.test_jobs import finished, jobs_spec

import tests.job_handlers  # noqa: F401 - registers the kinds in this process too


@pytest.fixture
def jobs_rt(db_config, make_runtime):
    return make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[jobs_spec(db_config)]))


def test_an_oversize_payload_is_refused_before_it_is_sent_and_nothing_is_stored(jobs_rt, database):
    started = time.monotonic()
    with pytest.raises(BadJob, match="limit is 1,000,000"):
        jobs_rt.enqueue("noop", {"blob": "x" * 100_000_000})
    # refused by the client's check, not by a timeout after the send
    assert time.monotonic() - started < 5.0
    # straight to the service (skipping the client): refused there too
    with pytest.raises(BadJob, match="limit"):
        jobs_rt.ask("jobs-service", Enqueue((NewJob("noop", {"blob": "x" * (MAX_PAYLOAD_BYTES + 1)}),)), timeout=30)
    # just under the limit goes in
    ok = jobs_rt.enqueue("noop", {"blob": "x" * (MAX_PAYLOAD_BYTES - 100)})
    wait_for(lambda: finished(database, [ok]), timeout=30, what="the big job")
    assert PgJobStore(database).counts() == {("default", "completed"): 1}
    assert jobs_rt.tree()["jobs-service"].restarts == 0


BAD_PAYLOADS = [
    {"text": "nul \x00 byte"},
    {"nul\x00key": 1},
    {"text": "lone \ud800 surrogate"},
    {"\udfff": "lone low surrogate as a key"},
    ["nested", {"deeper": ["\x00"]}],
]


@pytest.mark.parametrize("payload", BAD_PAYLOADS, ids=["nul", "nul-key", "surrogate", "surrogate-key", "nested-nul"])
def test_payloads_postgresql_refuses_are_bad_jobs_and_never_crash_the_service(jobs_rt, database, payload):
    with pytest.raises(BadJob, match="U\\+0000|surrogate"):
        jobs_rt.enqueue("noop", payload)
    # as a message straight to the service, bypassing the client's validation
    with pytest.raises(BadJob):
        jobs_rt.ask("jobs-service", Enqueue((NewJob("noop", payload),)))
    assert PgJobStore(database).counts() == {}
    assert jobs_rt.tree()["jobs-service"].restarts == 0
    assert jobs_rt.tree()["jobs-service"].counters.crashes == 0
    # and the service still works
    ok = jobs_rt.enqueue("noop", {"fine": "é ✓"})
    wait_for(lambda: finished(database, [ok]), timeout=20, what="a good job after the bad ones")


@pytest.mark.parametrize("field", ["queue", "kind"])
@pytest.mark.parametrize("value", ["default\n", "default\r", "de\tfault", "default\x00"])
def test_queue_names_and_kinds_with_control_characters_are_refused(jobs_rt, database, field, value):
    kind, queue = ("noop", value) if field == "queue" else (value.replace("default", "noop"), "default")
    with pytest.raises(BadJob, match=field):
        new_job(kind, {}, queue=queue, check_kind=False)
    with pytest.raises(BadJob):
        jobs_rt.ask("jobs-service", Enqueue((NewJob(kind, {}, queue=queue),)))
    assert PgJobStore(database).counts() == {}
    assert jobs_rt.tree()["jobs-service"].restarts == 0


def test_an_error_message_postgresql_cannot_store_still_fails_the_job_cleanly(jobs_rt, database):
    job_id = jobs_rt.enqueue("nul_error", {})
    wait_for(lambda: finished(database, [job_id]), timeout=20, what="the failing job")
    job = PgJobStore(database).get(job_id)
    assert job.state == "failed"
    assert job.last_error == "ValueError: bad byte \\x00 and a lone surrogate \\ud800"
    assert jobs_rt.tree()["completer"].restarts == 0


def test_an_unmigrated_schema_never_falls_through_to_public_and_says_run_db_init(own_pg):
    # a server of its own: the test puts a `jobs` table in `public`
    with Database(DatabaseConfig(own_pg.dsn, schema="public")) as public:
        with public.connection() as conn:
            conn.execute("CREATE TABLE public.jobs (id bigserial PRIMARY KEY, queue text, state text)")
            conn.execute("INSERT INTO public.jobs (queue, state) VALUES ('default', 'available')")
            conn.commit()
    config = DatabaseConfig(own_pg.dsn, schema=f"t_{uuid.uuid4().hex[:12]}")
    with Database(config) as database:
        with database.connection() as conn:
            assert conn.execute("SHOW search_path").fetchone()["search_path"] == config.schema
            conn.rollback()
        store = PgJobStore(database)
        with pytest.raises(SchemaMissing, match="thespian-otp db init"):
            store.counts()
        with pytest.raises(SchemaMissing, match="thespian-otp db init"):
            store.insert([NewJob("noop")])


def test_a_schema_name_with_a_trailing_newline_is_refused():
    from supervision import SpecError

    with pytest.raises(SpecError, match="schema"):
        DatabaseConfig("postgresql://localhost/x", schema="thespian_otp\n")
