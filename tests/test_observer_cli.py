"""`thespian-otp observer` next to `thespian-otp demo --hold`, both run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid

import pytest

from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from tests.observer_support import get
from tests.support import wait_for


@pytest.fixture
def schema(postgres_dsn):
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    Database(DatabaseConfig(postgres_dsn, name)).drop_schema()


def start(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "actors.cli", *args], env={**os.environ, "COLUMNS": "200", **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def read_until(process: subprocess.Popen, pattern: str) -> tuple[str, re.Match]:
    lines = []
    for line in process.stdout:
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return "".join(lines), found
    raise AssertionError("".join(lines))


def test_the_observer_of_a_held_demo_shows_its_tree_jobs_and_projection_moving(postgres_dsn, schema, tmp_path):
    env = {"DATABASE_URL": postgres_dsn, "THESPIAN_OTP_STATE_DIR": str(tmp_path)}
    demo = start("demo", "--jobs", "100", "--hold", "120", "--name", "held", "--schema", schema, env=env)
    observer = None
    try:
        read_until(demo, "holding the system")
        observer = start("observer", "--name", "held", "--schema", schema, "--port", "0", env=env)
        _, found = read_until(observer, r"open (http://127\.0\.0\.1:\d+/)")
        url = found.group(1)

        def snapshot():
            return json.loads(get(url + "api/snapshot")[1])

        first = snapshot()
        names = {n["name"] for n in _walk(first["tree"])}
        assert {"demo", "limiter", "worker-1", "projector-job_stats"} <= names
        assert first["runtime"]["name"] == "held" and first["errors"] == {}
        done = lambda s: s["database"]["jobs"]["by_state"].get("completed", 0)  # noqa: E731
        position = lambda s: s["database"]["projections"][0]["position"]  # noqa: E731
        # the demo keeps a few jobs a second flowing while it holds: the page's figures move
        moved = wait_for(lambda: (s := snapshot()) and done(s) > done(first) and position(s) > position(first) and s,
                         timeout=30, what="jobs and the projection to move")  # fmt: skip
        assert moved["totals"]["completed"] > 0
        status, body = get(url + "metrics")
        assert status == 200 and b"thespian_otp_jobs{" in body
        # an actor's details from this other process: its supervisor gives the spec
        status, body = get(url + "api/actors/worker-1")
        details = json.loads(body)
        assert status == 200 and details["spec"]["actor"] == "actors.jobs.worker.Worker", details
        assert details["spec"]["name"] == "worker-1" and details["spec_note"] is None
        status, body = get(url + "api/actors/limiter")
        assert json.loads(body)["spec"]["actor"] == "actors.limiter.actor.LimiterServer"
        root = json.loads(get(url + "api/actors/demo")[1])  # a root's spec stays with the demo's process
        assert root["spec"] is None and "root" in root["spec_note"]

        observer.send_signal(signal.SIGTERM)  # stops like Ctrl-C
        assert observer.wait(30) in (0, 130)
        with pytest.raises(OSError):  # nothing listens any more
            urllib.request.urlopen(url, timeout=5)
    finally:
        for process in (observer, demo):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(60)


def test_an_observer_without_a_running_runtime_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "actors.cli", "observer", "--no-database"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "THESPIAN_OTP_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no named runtime is running" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node["children"])


def test_the_cli_observer_shows_an_actors_spec_and_the_text_of_its_crashes(make_runtime, monkeypatch, tmp_path):
    """The details pane of an observer started from another shell: the crashed actor's spec
    (from its supervisor), the error text of each crash it saw, newest last, and the text of
    the last recoverable error it replied (the monitor keeps it)."""
    from supervision import ActorCrashed, BadRequest, ChildSpec, SupervisorSpec
    from tests.observer_support import CliObserver
    from tests.support import Quitter

    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    name = f"cli-{uuid.uuid4().hex[:6]}"
    rt = make_runtime(log_level="CRITICAL", name=name)
    rt.start(SupervisorSpec("root", intensity=10, children=[ChildSpec("q", Quitter, restart="permanent")]))
    observer = CliObserver("--name", name, "--no-database", "--port", "0", env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
    try:
        url = re.search(r"open (http://127\.0\.0\.1:\d+/)", observer.read_until("Ctrl-C stops")).group(1)
        for _ in range(2):
            restarts = rt.tree()["q"].restarts
            with pytest.raises(ActorCrashed):
                rt.ask("q", "crash")
            wait_for(lambda: (n := rt.tree()["q"]).restarts > restarts and n.status == "running", timeout=10, what="q restarted")
            # one snapshot (0.5 s) sees each crash on its own
            wait_for(lambda: len(json.loads(get(url + "api/actors/q")[1])["recent_errors"]) > restarts, timeout=10, what="the crash seen")
        details = json.loads(get(url + "api/actors/q")[1])
        assert details["spec"]["actor"] == "tests.support.Quitter" and details["spec"]["restart"] == "permanent"
        assert details["restarts"] == 2 and details["counters"]["crashes"] == 2
        texts = [e["what"] for e in details["recent_errors"]]
        assert len(texts) == 2 and all("RuntimeError" in t and "boom" in t for t in texts), texts
        with pytest.raises(BadRequest):
            rt.ask("q", "refuse")
        wait_for(lambda: len(json.loads(get(url + "api/actors/q")[1])["recent_errors"]) > 2, timeout=10, what="the error seen")
        last = json.loads(get(url + "api/actors/q")[1])["recent_errors"][-1]["what"]
        assert last == "1 recoverable error replied; the last: BadRequest on str: no such order 42", last
    finally:
        observer.stop()
