"""A failed attempt's traceback in the job's history: recorded by a real worker whose handler
raises, bounded, storable whatever the handler's message holds, shown by `history` and by
`thespian-otp jobs show`."""

from __future__ import annotations

import inspect
import traceback

import pytest
from hypothesis import given, settings, strategies as st

from actors.jobs import jobs_tree
from actors.jobs.errors import BadJob
from actors.jobs.core import MAX_TRACEBACK, check_outcome, tail_text, traceback_text
from actors.jobs.ops import JobOps
from actors.stores.rows import JobOutcome
from supervision import SupervisorSpec
from tests.support import wait_for
from tests.test_cli import cli

import tests.job_handlers as handlers

HANDLERS = ["tests.job_handlers"]


def start_jobs(make_runtime, config, **options):
    options.setdefault("heartbeat_ttl", 1.5)
    options.setdefault("poll_interval", 0.3)
    spec = jobs_tree(config, handlers=HANDLERS, **options)
    return make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[spec]))


def line_of(function, text: str) -> int:
    """The line number of the first line of `function` holding `text`."""
    source, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(source) if text in line)


def failed(ops: JobOps, job_id: int):
    return wait_for(lambda: (job := ops.get(job_id)).state == "failed" and job, timeout=30, what=f"job {job_id} to fail")


def storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def test_a_failed_attempt_keeps_the_handlers_traceback_in_its_history_and_jobs_show(db_config, make_runtime):
    rt = start_jobs(make_runtime, db_config, workers=1)
    with JobOps(db_config) as ops:
        nested = rt.enqueue("nested_fails", {"name": "colour"})
        huge = rt.enqueue("huge_error", {})
        hang = rt.enqueue("hang", {"seconds": 30})  # timeout 0.3 s, 2 attempts
        job = failed(ops, nested)
        assert job.last_error == "KeyError: \"no setting 'colour'\""  # the summary stays one line
        [attempt] = ops.history(nested)
        assert attempt.outcome == "error" and attempt.node and attempt.pid
        trace = attempt.error
        source = handlers.__file__
        # the handler's frames, innermost last, with their lines; the worker's own frame left out
        assert f'File "{source}", line {line_of(handlers.nested_fails, "_read_setting(payload)")}, in nested_fails' in trace
        assert f'File "{source}", line {line_of(handlers._read_setting, "raise KeyError")}, in _read_setting' in trace
        assert trace.index("in nested_fails") < trace.index("in _read_setting")
        assert trace.startswith("Traceback (most recent call last):") and "actors/jobs/worker.py" not in trace
        assert trace.rstrip().endswith("KeyError: \"no setting 'colour'\"")

        # 20,000 characters with a NUL and a lone surrogate: stored, its end kept, bounded
        failed(ops, huge)
        [attempt] = ops.history(huge)
        assert storable(attempt.error) and len(attempt.error) <= MAX_TRACEBACK
        assert attempt.error.rstrip().endswith("y the end") and "earlier characters left out" in attempt.error
        assert storable(ops.get(huge).last_error) and ops.get(huge).last_error.startswith("ValueError: \\x00 \\ud800 yyy")

        # a timeout's traceback shows where the handler was stuck
        failed(ops, hang)
        history = ops.history(hang)
        assert [(a.attempt, a.outcome) for a in history] == [(1, "timeout"), (2, "timeout")]
        sleeping = f'line {line_of(handlers.hang, "time.sleep")}, in hang'
        assert all(sleeping in a.error and "JobTimeout: the handler ran past its timeout" in a.error for a in history)

    shown = cli("jobs", "show", str(nested), "--dsn", db_config.dsn, "--schema", db_config.schema, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    # the whole traceback, each line as stored (not cut or wrapped by the table)
    for line in trace.rstrip().splitlines():
        assert line in shown.stdout.splitlines(), (line, shown.stdout)


def test_an_exception_whose_str_raises_fails_its_job_not_the_worker(db_config, make_runtime):
    rt = start_jobs(make_runtime, db_config, workers=1)
    with JobOps(db_config) as ops:
        job_id = rt.enqueue("bad_str", {})
        job = failed(ops, job_id)
        assert job.last_error == "BadStr: <str() of the exception failed: RuntimeError>"
        [attempt] = ops.history(job_id)
        assert attempt.outcome == "error" and f"line {line_of(handlers.bad_str, 'raise BadStr()')}, in bad_str" in attempt.error
        [worker] = [n for n in rt.tree().walk() if n.actor_class == "Worker"]
        assert worker.restarts == 0  # it went on: the exception was described, not re-raised
        assert ops.wait(rt.enqueue("noop", {}), 30).state == "completed"


# --- the pure part: bounding and cleaning ------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=()), max_size=3000) | st.builds(
    lambda a, n, b: a + "\n" * n + b, st.text(max_size=200), st.integers(0, 50), st.text(max_size=6000)
)


@settings(max_examples=300, deadline=None)
@given(text=texts, limit=st.integers(100, 5000))
def test_tail_text_is_storable_bounded_and_keeps_the_end(text, limit):
    out = tail_text(text, limit)
    assert storable(out) and len(out) <= limit
    cleaned = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(cleaned) <= limit:
        assert out == cleaned  # short storable text is kept exactly
    else:
        note, _, kept = out.partition("\n")
        assert kept and cleaned.endswith(kept)
        assert note == f"[{len(cleaned) - len(kept):,} earlier characters left out]"
    assert tail_text(out, limit) == out  # already bounded and clean: unchanged


def test_traceback_text_skips_outer_frames_and_survives_a_failing_str():
    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no")

    def inner():
        raise Broken()

    try:
        inner()
    except Broken as exc:
        full, skipped = traceback_text(exc), traceback_text(exc, skip=1)
    assert "in test_traceback_text_skips_outer_frames_and_survives_a_failing_str" in full
    assert "in test_traceback_text" not in skipped and "in inner" in skipped
    assert full.rstrip().endswith(traceback.format_exception_only(Broken, Broken())[-1].rstrip())


def test_an_outcome_from_the_wire_gets_its_traceback_bounded_and_cleaned():
    raw = JobOutcome(1, 2, 1, "failed", 0.0, error="E: x", traceback="a\x00\udc80" + "z" * 10_000)
    checked = check_outcome(raw).traceback
    assert storable(checked) and len(checked) <= MAX_TRACEBACK and checked.endswith("z" * 100)
    assert check_outcome(JobOutcome(1, 2, 1, "failed", 0.0, traceback="ok")).traceback == "ok"
    with pytest.raises(BadJob, match="traceback must be a string"):
        check_outcome(JobOutcome(1, 2, 1, "failed", 0.0, traceback=b"bytes"))
