"""Retry and cancel against a tiny model: a Hypothesis state machine drives real PostgreSQL
(enqueue, claim, complete, fail, retry, cancel in any order) and checks after every step that
each job's state and attempts are the model's, and that every refused operation raised
`JobStateError` naming the state and changed nothing."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from actors.jobs.errors import ALLOWED, JobStateError
from actors.jobs.ops import JobOps
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.migrate import Migrator
from actors.stores.processes import PgProcessStore
from actors.stores.rows import JobOutcome, NewJob


def test_retry_and_cancel_follow_the_model_in_any_order(postgres_dsn):
    class Operations(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.config = DatabaseConfig(postgres_dsn, schema=f"t_{uuid.uuid4().hex[:12]}")
            self.database = Database(self.config).open()
            Migrator(self.database).apply()
            self.store = PgJobStore(self.database)
            self.ops = JobOps(self.database)
            self.process = PgProcessStore(self.database).register("model", ttl=600)
            self.model: dict[int, dict] = {}  # id -> state, attempt, max_attempts

        def teardown(self) -> None:
            self.ops.close()
            self.database.drop_schema()
            self.database.close()

        def ids(self, *states: str) -> list[int]:
            return sorted(i for i, job in self.model.items() if job["state"] in states)

        @rule(max_attempts=st.integers(1, 3))
        def enqueue(self, max_attempts):
            [job_id] = self.store.insert([NewJob("mail", max_attempts=max_attempts)])
            self.model[job_id] = {"state": "available", "attempt": 0, "max_attempts": max_attempts}

        @precondition(lambda self: self.ids("available"))
        @rule()
        def claim(self):
            [job] = self.store.claim("default", self.process.id, 1)
            assert job.id in self.ids("available")
            self.model[job.id]["state"] = "running"
            self.model[job.id]["attempt"] += 1

        @precondition(lambda self: self.ids("running"))
        @rule(data=st.data(), ok=st.booleans())
        def finish(self, data, ok):
            job_id = data.draw(st.sampled_from(self.ids("running")))
            job = self.model[job_id]
            status = "completed" if ok else "failed"
            self.store.write_outcomes([JobOutcome(job_id, self.process.id, job["attempt"], status, time.time(), 1.0, "x", 0.0)])
            if ok:
                job["state"] = "completed"
            else:
                job["state"] = "failed" if job["attempt"] >= job["max_attempts"] else "available"

        @precondition(lambda self: self.model)
        @rule(data=st.data(), action=st.sampled_from(["retry", "cancel"]))
        def operate(self, data, action):
            job_id = data.draw(st.sampled_from(sorted(self.model)))
            job = self.model[job_id]
            if job["state"] in ALLOWED[action]:
                summary = getattr(self.ops, action)(job_id)
                if action == "retry":
                    job["state"], job["max_attempts"] = "available", max(job["max_attempts"], job["attempt"] + 1)
                else:
                    job["state"] = "cancelled"
                assert summary.state == job["state"]
            else:
                with pytest.raises(JobStateError) as info:
                    getattr(self.ops, action)(job_id)
                assert (info.value.job_id, info.value.state, info.value.action) == (job_id, job["state"], action)

        @invariant()
        def the_table_is_the_model(self):
            with self.database.connection() as conn:
                rows = conn.execute("SELECT id, state, attempt, max_attempts FROM jobs").fetchall()
                conn.commit()
            assert {r["id"]: {"state": r["state"], "attempt": r["attempt"], "max_attempts": r["max_attempts"]} for r in rows} == self.model

    run_state_machine_as_test(Operations, settings=settings(max_examples=12, stateful_step_count=25, deadline=None))
