"""Logs say something only when something is wrong: in a REPL, in a program that asked for
CRITICAL, and on a normal projection handover (issue 16 part 3)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

POOL_SCRIPT = textwrap.dedent(
    """
    import sys, psycopg
    from supervision import Runtime
    from actors.stores.config import DatabaseConfig
    from actors.stores.database import Database
    dsn, schema, level = sys.argv[1:4]
    with Runtime("multiprocTCPBase", log_level=level):
        db = Database(DatabaseConfig(dsn, schema)).open()
        try:
            with db.connection() as conn:
                conn.execute("SELECT 1"); conn.commit()
                # this connection's backend dies under it (only ours: the server may be shared)
                with psycopg.connect(dsn, autocommit=True) as killer:
                    killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
                conn.execute("SELECT 1")
        except Exception as exc:
            print("lost:", type(exc).__name__)
        db.close()  # the pool discards the closed connection it got back, and says so
    """
)


@pytest.mark.parametrize("level, shown", [("CRITICAL", False), ("WARNING", True)])
def test_psycopg_pool_warnings_follow_the_runtime_log_level(postgres_dsn, fresh_schema, level, shown):
    result = subprocess.run([sys.executable, "-c", POOL_SCRIPT, postgres_dsn, fresh_schema.schema, level],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert "lost: ConnectionLost" in result.stdout, result.stdout + result.stderr
    assert ("discarding closed connection" in result.stderr) is shown, result.stderr
    if shown:  # formatted like every other log line, not Python's bare last-resort output
        assert re.search(r"WARNING psycopg\.pool: discarding closed connection", result.stderr), result.stderr


@pytest.mark.parametrize("level, logged", [("WARNING", False), ("INFO", True)])
def test_a_normal_projection_handover_is_logged_at_info_not_warning(make_runtime, db_config, tmp_path, level, logged):
    from actors.projector import projector_spec, status
    from actors.stores.database import Database
    from tests.support import wait_for

    log_file = tmp_path / "actors.log"
    rt = make_runtime(log_level=level, log_file=str(log_file))
    rt.start(projector_spec(db_config, "job_stats", retry_interval=0.2))
    with Database(db_config) as database:
        wait_for(lambda: status(database, ["job_stats"])[0].holder is not None, timeout=20, what="the projector to hold the lock")
    wait_for(lambda: not logged or "now applies projection job_stats" in log_file.read_text(), timeout=10, what="the log line")
    rt.stop()
    assert ("now applies projection job_stats" in log_file.read_text()) is logged, log_file.read_text()


def test_a_repl_session_with_a_kill_and_a_restart_prints_no_log_line_into_the_prompt():
    import pexpect

    from tests.test_cli import ANSI_RE

    repl = pexpect.spawn(sys.executable, ["-q"], cwd=str(ROOT), dimensions=(40, 100), encoding="utf-8", timeout=60)
    repl.expect(">>> ")
    transcript = []
    for line in [
        "from supervision import Runtime, SupervisorSpec, ChildSpec",
        "from tests.support import Echo, wait_for",
        'rt = Runtime().start(SupervisorSpec("root", children=[ChildSpec("db", Echo), ChildSpec("cache", Echo)]))',
        'rt.ask("db", "hi")',
        'pid = rt.kill("db")',
        'wait_for(lambda: rt.tree()["db"].restarts == 1 and rt.tree()["db"].status == "running", timeout=20)',
        'rt.ask("db", "again")',
        "import time; time.sleep(1.0)",  # lets a late log line from another process arrive, if any
        "rt.stop()",
    ]:
        repl.sendline(line)
        repl.expect(">>> ")
        transcript.append(repl.before)
    repl.sendline("exit()")
    repl.expect(pexpect.EOF)
    text = ANSI_RE.sub("", "".join(transcript) + repl.before)
    assert "'again'" in text, text
    assert not re.search(r"\b(WARNING|ERROR|INFO)\b", text), text
