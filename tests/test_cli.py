"""The `thespian-otp` command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import uuid

import pytest

from actors.stores.config import DatabaseConfig
from actors.stores.database import Database


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )


@pytest.fixture
def cli_schema(postgres_dsn):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    Database(DatabaseConfig(postgres_dsn, schema)).drop_schema()


def test_db_init_then_status_show_migrations_and_row_counts(postgres_dsn, cli_schema):
    first = cli("db", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert first.returncode == 0 and "pending" in first.stdout, first.stderr
    init = cli("db", "init", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert init.returncode == 0 and "applied 0001_initial" in init.stdout, init.stderr
    again = cli("db", "init", "--schema", cli_schema, env={"DATABASE_URL": postgres_dsn})
    assert again.returncode == 0 and "already up to date" in again.stdout
    status = cli("db", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert status.returncode == 0
    assert "0001_initial" in status.stdout and "jobs" in status.stdout and "pending" not in status.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["db", "status", "--dsn", "postgresql://nobody@127.0.0.1:9/x"], "cannot reach PostgreSQL"),
        (["db", "status", "--dsn", "this is not a dsn"], "does not parse"),
        (["db", "status", "--dsn", "postgresql:///x", "--schema", "Bad-Schema"], "schema"),
    ],
)
def test_bad_database_settings_print_one_line_and_fail(args, message):
    result = cli(*args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_command_is_a_usage_error():
    result = cli("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_jobs_lists_queue_depth_longest_running_and_processes(postgres_dsn, cli_schema):
    from actors.stores.jobs import PgJobStore
    from actors.stores.migrate import Migrator
    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    config = DatabaseConfig(postgres_dsn, cli_schema)
    with Database(config) as database:
        Migrator(database).apply()
        jobs = PgJobStore(database)
        jobs.insert([NewJob("resize", queue="images") for _ in range(3)] + [NewJob("mail")])
        process = PgProcessStore(database).register("worker-7", ttl=60)
        jobs.claim("images", process.id, 2)
    result = cli("jobs", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "images" in out and "resize" in out and "worker-7" in out
    assert "longest-running" in out


def test_projections_status_and_rebuild(postgres_dsn, cli_schema):
    from actors.stores.events import PgEventStore
    from actors.stores.migrate import Migrator
    from actors.stores.rows import NewEvent

    config = DatabaseConfig(postgres_dsn, cli_schema)
    with Database(config) as database:
        Migrator(database).apply()
        PgEventStore(database).append([NewEvent("job.completed", {"kind": "mail", "latency_ms": 12.0}) for _ in range(30)])
    before = cli("projections", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert before.returncode == 0 and "job_stats" in before.stdout and "30" in before.stdout, before.stderr
    rebuilt = cli("projections", "rebuild", "job_stats", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert rebuilt.returncode == 0 and "replayed 30 events" in rebuilt.stdout, rebuilt.stderr
    after = cli("projections", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert "job_stats" in after.stdout
    unknown = cli("projections", "rebuild", "no_such_projection", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert unknown.returncode == 1 and "no projection named" in unknown.stderr and "Traceback" not in unknown.stderr


def terminal_lines(raw: str, columns: int = 80, rows: int = 40) -> list[str]:
    """What a user sees: the program's output played through a terminal emulator, with the
    lines that scrolled off the top."""
    import pyte

    screen = pyte.HistoryScreen(columns, rows, history=10_000)
    stream = pyte.Stream(screen)
    stream.feed(raw)
    scrolled = ["".join(char.data for char in line.values()) for line in screen.history.top]
    return [line.rstrip() for line in scrolled + screen.display]


def test_the_demo_runs_in_a_real_80_column_terminal_and_ends_with_the_audit(postgres_dsn, cli_schema, tmp_path):
    import pexpect

    env = {**os.environ, "DATABASE_URL": postgres_dsn, "THESPIAN_OTP_STATE_DIR": str(tmp_path), "TERM": "xterm"}
    env.pop("COLUMNS", None)
    child = pexpect.spawn(
        sys.executable, ["-m", "actors.cli", "demo", "--jobs", "400", "--schema", cli_schema],
        env=env, dimensions=(40, 80), encoding="utf-8", timeout=90,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    lines = terminal_lines(child.before.replace("\n", "\r\n") if "\r\n" not in child.before else child.before)
    text = " ".join(" ".join(lines).split())
    assert child.exitstatus == 0, "\n".join(lines[-40:])
    assert "nothing lost: 400 jobs enqueued" in text, "\n".join(lines[-40:])
    assert "SIGKILL worker-2" in text and "SIGKILL limiter" in text
    assert "restarts 1" in text and "job statistics" in text
    # the program fits its output to the terminal: no table row or tree branch is wrapped
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└") and "┴" in line)
    table = lines[top : bottom + 1]
    assert all(line[-1] in "┓┃┩│┘" for line in table), table
    branches = [line for line in lines if "── " in line and "┴" not in line]
    assert branches and all("[" in line and "]" in line for line in branches), branches


def test_tree_shows_a_live_demo_and_its_restart_counts_after_a_kill(postgres_dsn, cli_schema, tmp_path):
    from supervision import Runtime

    env = {**os.environ, "DATABASE_URL": postgres_dsn, "THESPIAN_OTP_STATE_DIR": str(tmp_path)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "demo", "--jobs", "100", "--hold", "120", "--name", "live", "--schema", cli_schema],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "holding the system" in line:
                break
        else:
            raise AssertionError("".join(lines))
        first = cli("tree", "--name", "live", env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
        assert first.returncode == 0, first.stderr
        assert "worker-3 [Worker] running" in first.stdout and "projector-job_stats" in first.stdout
        assert "worker-3 [Worker] running pid" in first.stdout and "worker-3 [Worker] running pid" in first.stdout
        os.environ["THESPIAN_OTP_STATE_DIR"] = str(tmp_path)
        try:
            attached = Runtime.attach("live")
            attached.kill("worker-3")
            from tests.support import wait_for

            wait_for(lambda: attached.tree()["worker-3"].restarts == 1 and attached.tree()["worker-3"].status == "running", timeout=20)
            attached.stop()  # detaches only
        finally:
            del os.environ["THESPIAN_OTP_STATE_DIR"]
        after = cli("tree", "--name", "live", env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
        assert "restarts 1" in after.stdout.split("worker-3")[1].splitlines()[0], after.stdout
        summary = cli("status", "--name", "live", env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
        assert summary.returncode == 0 and "restarts:" in summary.stdout
    finally:
        demo.terminate()
        demo.wait(60)
    assert demo.returncode in (0, 130), demo.returncode


@pytest.mark.parametrize(
    "args, message",
    [
        (["tree", "--name", "nothing-here"], "no runtime named 'nothing-here' is running"),
        (["status"], "no named runtime is running"),
    ],
)
def test_asking_a_system_that_is_not_running_is_one_clear_line(args, message, tmp_path):
    result = cli(*args, env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_demo_on_an_admin_port_in_use_is_one_clear_line(postgres_dsn, cli_schema, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("demo", "--jobs", "10", "--admin-port", str(port), "--schema", cli_schema,
                     env={"DATABASE_URL": postgres_dsn, "THESPIAN_OTP_STATE_DIR": str(tmp_path)})  # fmt: skip
    assert result.returncode == 1 and "is in use" in result.stderr and "Traceback" not in result.stderr


def test_snapshots_render_in_a_python_repl_and_for_ipython_and_jupyter():
    import pexpect

    # PYTHON_BASIC_REPL: 3.13's new REPL redraws the line per keystroke, which garbles the
    # transcript; what is displayed (sys.displayhook) is the same in both REPLs
    repl = pexpect.spawn(sys.executable, ["-q"], cwd=str(Path(__file__).resolve().parent.parent), dimensions=(40, 100), encoding="utf-8", timeout=60,
                         env={**os.environ, "PYTHON_BASIC_REPL": "1"})  # fmt: skip
    repl.expect(">>> ")
    transcript = []
    for line in [
        "from supervision import Runtime, SupervisorSpec, ChildSpec",
        "from tests.support import Echo",
        'rt = Runtime().start(SupervisorSpec("root", strategy="rest_for_one", children=[ChildSpec("db", Echo), ChildSpec("cache", Echo)]))',
        "rt.tree()",
        'rt.which_children("root")',
        "print('HTML' if '<pre' in rt.tree()._repr_html_() else 'no html')",
        "class P:\n    def __init__(self): self.out = []\n    def text(self, s): self.out.append(s)\n",
        "p = P(); rt.tree()._repr_pretty_(p, False); print('PRETTY', 'rest_for_one' in p.out[0] and 'root' in p.out[0])",
        "rt.stop()",
    ]:
        repl.sendline(line)
        repl.expect(">>> ")
        transcript.append(repl.before)
    repl.sendline("exit()")
    text = ANSI_RE.sub("", "".join(transcript))
    assert "└── root [rest_for_one] running" in text and "├── db [Echo] running" in text
    assert "children of root" in text and "┃ name" in text
    assert "HTML" in text and "PRETTY True" in text


ANSI_RE = __import__("re").compile(r"\x1b\[[0-9;?]*[A-Za-z]")
