"""Every example runs to completion with one command, checks its own story (exit 0 only if it
held) and says in plain words what it showed; these tests read the figures back and check them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def start(script: str, dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120, cwd=EXAMPLES.parent,
        env={**os.environ, "DATABASE_URL": dsn, "COLUMNS": "120"},
    )  # fmt: skip


def run(script: str, dsn: str, *args: str) -> str:
    result = start(script, dsn, *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return " ".join(result.stdout.split())


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in: {text[-2000:]}"
    return float(match.group(1).replace(",", ""))


def test_supervision_tree_restarts_rest_for_one_together_and_lets_a_temporary_crash_loop_go(postgres_dsn):
    text = run("supervision_tree.py", postgres_dsn)
    assert number(r"restarts: db (\d+)", text) == 1 and number(r"cache (\d+)\)", text) == 1
    assert "the new cache remembered None for 'greeting'" in text
    assert number(r"while its other (\d+) subtrees kept running", text) == 2
    assert number(r"workers has (\d+) dynamic children", text) == 3


def test_dead_letters_every_rerun_after_a_kill_answers_or_fails_at_once_with_a_typed_error(postgres_dsn):
    text = run("dead_letters.py", postgres_dsn)
    reached = number(r"(\d+) reached the restarted pager", text)
    failed = number(r"and (\d+) failed at once with a typed error", text)
    assert reached + failed == 20
    assert number(r"DeadLetter (\d+),", text) + number(r"NoSuchName (\d+)\)", text) == failed
    assert number(r"failed with DeadLetter after ([\d.]+) s", text) < 20  # not its timeout


def test_job_completer_stops_under_load_within_budget_and_completes_each_job_once(postgres_dsn, fresh_schema):
    text = run("job_completer.py", postgres_dsn, "--schema", fresh_schema.schema)
    assert number(r"in ([\d.]+) s, within", text) <= number(r"shutdown budget of ([\d.]+) s", text)
    assert number(r"SQL audit: ([\d,]+) jobs completed", text) >= 1000
    assert number(r"\((\d+) twice\)", text) == 0 and number(r"(\d+) left running", text) == 0


def test_projector_failover_the_standby_takes_over_and_the_read_model_equals_a_replay(postgres_dsn, fresh_schema):
    text = run("projector_failover.py", postgres_dsn, "--schema", fresh_schema.schema)
    assert re.search(r"node-[ab] took over the projection \d+ ms later", text), text
    assert number(r"after the failover \(([\d,]+) jobs\) equals a replay", text) == 3000


@pytest.fixture
def users_schema(request, postgres_dsn):
    """A user's schema with 1,000 rows, under the name an example uses by default."""
    ident = sql.Identifier(request.param)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))  # a copy an earlier run left
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL("CREATE TABLE {}.precious AS SELECT g AS id FROM generate_series(1, 1000) AS g").format(ident))
    yield request.param
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))


@pytest.mark.parametrize(
    ("script", "users_schema"),
    [("job_completer.py", "example_completer"), ("projector_failover.py", "example_projector")],
    indirect=["users_schema"],
)
def test_an_example_never_drops_a_schema_of_its_name_that_it_did_not_create(script, users_schema, postgres_dsn):
    result = start(script, postgres_dsn)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"schema {users_schema!r} already exists and was not created by examples/{script}" in result.stderr
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}.precious").format(sql.Identifier(users_schema))).fetchone()[0]
    assert rows == 1000


def test_every_example_is_covered():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts and all(any(name.startswith(f"test_{stem}_") for name in globals()) for stem in scripts), scripts
