"""The `thespian-otp` command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import re
from pathlib import Path
import subprocess
import sys
import time
import uuid

import pytest

from actors.stores.config import DatabaseConfig
from supervision.introspect import SHOWN_COUNTERS
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


# --- the command line tells the truth (issue 16 part 3) ---------------------------------------

WORD_RE = __import__("re").compile(r"[\w][\w.:@/'-]*")


def in_terminal(args: list[str], columns: int, env: dict | None = None, rows: int = 60, timeout: float = 90) -> tuple[int, list[str]]:
    """Run the command in a pseudo-terminal `columns` wide; return its exit status and what the
    terminal shows (pyte), scrolled-off lines included."""
    import pexpect

    child = pexpect.spawn(
        sys.executable, ["-m", "actors.cli", *args], env={**os.environ, "TERM": "xterm", **(env or {})},
        dimensions=(rows, columns), encoding="utf-8", timeout=timeout,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    raw = child.before if "\r\n" in child.before else child.before.replace("\n", "\r\n")
    return child.exitstatus, terminal_lines(raw, columns, rows)


def words(lines: list[str]) -> set[str]:
    """The words on screen, digits masked (pids, times and counts differ between runs)."""
    return {__import__("re").sub(r"\d[\d,]*", "0", w.strip(".,:-'/")) for line in lines for w in WORD_RE.findall(line)} - {""}


def assert_no_word_is_cut(args: list[str], env: dict | None = None, may_appear: tuple[str, ...] = ()) -> None:
    """At 60 and 80 columns every word on screen is a word of the same output at 200 columns
    (or of `may_appear`: words a rerun may add, such as a kind that failed only this time):
    nothing was wrapped or cut in the middle of a word."""
    status, wide = in_terminal(args, 200, env)
    assert status == 0, "\n".join(wide)
    vocabulary = words(wide) | words(list(may_appear))
    for columns in (60, 80):
        status, narrow = in_terminal(args, columns, env)
        assert status == 0, "\n".join(narrow)
        assert max(len(line) for line in narrow) <= columns
        cut = words(narrow) - vocabulary
        assert not any("…" in line for line in narrow), "\n".join(narrow)
        assert not cut, f"at {columns} columns these words were cut: {sorted(cut)}\n" + "\n".join(narrow)


@pytest.fixture
def busy_schema(postgres_dsn, cli_schema):
    """A migrated schema with jobs in every state, a worker process and projection events."""
    from actors.stores.events import PgEventStore
    from actors.stores.jobs import PgJobStore
    from actors.stores.migrate import Migrator
    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewEvent, NewJob

    with Database(DatabaseConfig(postgres_dsn, cli_schema)) as database:
        Migrator(database).apply()
        jobs = PgJobStore(database)
        jobs.insert([NewJob("thumbnails.resize", queue="images") for _ in range(5)] + [NewJob("mail.send_welcome")])
        process = PgProcessStore(database).register("node-a:worker-7", ttl=600)
        jobs.claim("images", process.id, 2)
        PgEventStore(database).append([NewEvent("job.completed", {"kind": "mail", "latency_ms": 12.0}) for _ in range(5)])
    return cli_schema


@pytest.fixture
def failed_job(postgres_dsn, busy_schema):
    """In `busy_schema`, a job that failed for good after two attempts, with a payload, an
    error and a traceback too long for a 60-column line: what `jobs show` is for. Its id."""
    from actors.stores.jobs import PgJobStore
    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import JobOutcome, NewJob

    payload = {"image": "uploads/2026/12/holiday-photo.jpeg", "sizes": [64, 128, 256, 512], "bucket": "media-eu-west"}
    error = "OSError: [Errno 28] No space left on device: '/var/cache/thumbnails/holiday-photo-512.jpeg'"
    trace = ("Traceback (most recent call last):\n  File \"/srv/app/thumbnails.py\", line 41, in resize\n"
             "    image.save(target, quality=85, optimize=True, progressive=True)\n" + error)  # fmt: skip
    with Database(DatabaseConfig(postgres_dsn, busy_schema)) as database:
        jobs, processes = PgJobStore(database), PgProcessStore(database)
        [job_id] = jobs.insert([NewJob("thumbnails.resize", payload, queue="uploads", max_attempts=2)])
        for worker in ("node-b:worker-3", "node-c:worker-1"):
            process = processes.register(worker, ttl=600)
            [claimed] = jobs.claim("uploads", process.id, 10)
            # retry_in 0: due again at once
            jobs.write_outcomes([JobOutcome(job_id, process.id, claimed.attempt, "failed", time.time(), 812.5, error, traceback=trace)])
    return job_id


@pytest.fixture
def named_tree(make_runtime, tmp_path, monkeypatch):
    """A running runtime named `cli-tree` (nested supervisors, one child restarted once),
    discoverable through THESPIAN_OTP_STATE_DIR; its state dir."""
    from supervision import ChildSpec, SupervisorSpec
    from tests.support import Echo, KeyValue, wait_for

    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    payments = SupervisorSpec("payments", children=[ChildSpec("card-processor", Echo), ChildSpec("fraud-checker", KeyValue)])
    rt = make_runtime(name="cli-tree").start(SupervisorSpec("storefront", children=[ChildSpec("inventory-service", Echo), payments]))
    rt.kill("card-processor")
    wait_for(lambda: rt.tree()["card-processor"].restarts == 1 and rt.tree()["card-processor"].status == "running", timeout=20)
    return tmp_path


@pytest.mark.parametrize("command", [
    ["db", "status"], ["jobs"], ["jobs", "list"], ["projections", "status"],
    *([*name.split(), "--help"] for name in ("", "demo", "observer", "tree", "jobs", "jobs list", "jobs show", "jobs enqueue")),
])  # fmt: skip
def test_tables_help_and_errors_never_cut_a_word_at_60_and_80_columns(postgres_dsn, busy_schema, failed_job, command):
    assert_no_word_is_cut([*command, "--dsn", postgres_dsn, "--schema", busy_schema] if "--help" not in command else command)


def test_jobs_show_never_cuts_a_word_at_60_and_80_columns(postgres_dsn, busy_schema, failed_job):
    args = ["jobs", "show", str(failed_job), "--dsn", postgres_dsn, "--schema", busy_schema]
    assert_no_word_is_cut(args)
    _, lines = in_terminal(args, 60)
    text = " ".join(" ".join(lines).split())
    # everything is there, wrapped between words: both attempts, their nodes, the payload, the traceback
    assert "node-b" in text and "node-c" in text and "holiday-photo.jpeg" in text and "progressive=True)" in text
    assert text.count("No space left on device") == 5, text  # the job, two attempts, two tracebacks


def test_the_tree_never_cuts_a_word_at_60_and_80_columns(named_tree):
    assert_no_word_is_cut(["tree", "--name", "cli-tree"], {"THESPIAN_OTP_STATE_DIR": str(named_tree)})
    _, lines = in_terminal(["tree", "--name", "cli-tree"], 60, {"THESPIAN_OTP_STATE_DIR": str(named_tree)})
    text = " ".join(re.sub(r"[│├└─]", " ", " ".join(lines)).split())
    assert "restarts 1" in text.split("card-processor", 1)[1].split("fraud-checker")[0], lines


#: words of the tree's counters: which of them appear depends on the run
TREE_COUNTER_WORDS = ("restarts", *(label for _, label, _ in SHOWN_COUNTERS))


def test_the_demo_never_cuts_a_word_at_60_and_80_columns(postgres_dsn, cli_schema, tmp_path):
    from actors.demo import KINDS

    # which rows and counters appear depends on the run (a kind with no outcome yet, and every
    # counter a tree node shows only when it is not zero: TreeNode.label)
    assert_no_word_is_cut(["demo", "--jobs", "200", "--schema", cli_schema],
                          {"DATABASE_URL": postgres_dsn, "THESPIAN_OTP_STATE_DIR": str(tmp_path)},
                          may_appear=(*KINDS, "rescued", *TREE_COUNTER_WORDS))  # fmt: skip


def test_an_error_in_a_narrow_terminal_wraps_between_words(tmp_path):
    status, lines = in_terminal(["tree", "--name", "nothing-here"], 60, {"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
    assert status == 1 and len(lines) > 1
    _, wide = in_terminal(["tree", "--name", "nothing-here"], 200, {"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
    assert words([line for line in lines if line]) <= words(wide), lines


def test_help_documents_every_option_with_its_default_and_version_is_single_sourced():
    import supervision

    demo = cli("demo", "--help")
    assert demo.returncode == 0
    text = " ".join(demo.stdout.split())
    assert "--base BASE thespian system base, multiprocTCPBase or multiprocQueueBase" in text
    assert "(default: 3000)" in text and "(default: multiprocTCPBase)" in text and "(default: 0.0)" in text
    assert "(default: None)" not in text
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"thespian-otp {supervision.__version__}"
    from importlib.metadata import version as installed

    assert installed("thespian-otp") == supervision.__version__


@pytest.mark.parametrize(
    "args, message",
    [
        (["tree", "--name", "a/b"], "'a/b' is not a runtime name"),
        (["demo", "--name", "a/b"], "'a/b' is not a runtime name"),
        (["db", "status", "--data-dir", "/etc/hostname"], "--data-dir /etc/hostname: this is a file, not a directory"),
    ],
)
def test_bad_names_and_paths_are_refused_in_one_line_before_anything_is_touched(args, message, tmp_path):
    before = os.stat("/etc/hostname")
    result = cli(*args, env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)})
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    after = os.stat("/etc/hostname")
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    assert list(tmp_path.iterdir()) == []


def test_after_the_demo_its_data_is_shown_and_the_default_schema_says_where_it_is(postgres_dsn, cli_schema, tmp_path):
    env = {"DATABASE_URL": postgres_dsn, "THESPIAN_OTP_STATE_DIR": str(tmp_path)}
    demo = cli("demo", "--jobs", "40", "--workers", "1", "--schema", cli_schema, env=env)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr
    assert "SIGKILL worker-1" in demo.stdout  # --workers 1: the only worker is the victim
    assert f"stay in schema {cli_schema}" in " ".join(demo.stdout.split())
    jobs = cli("jobs", "--schema", cli_schema, env=env)
    assert jobs.returncode == 0, jobs.stderr
    depth = next(line for line in jobs.stdout.splitlines() if line.startswith("│ default"))
    assert [cell.strip() for cell in depth.strip("│").split("│")][1:] == ["0", "0", "40", "0", "0"] or "40" in depth, depth
    empty = f"t_{uuid.uuid4().hex[:12]}"  # stands for the default schema, never migrated
    for command in (["jobs"], ["projections", "status"]):
        result = cli(*command, env={**env, "THESPIAN_OTP_SCHEMA": empty})
        assert result.returncode == 1 and "the demo keeps its data in schema thespian_otp_demo" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    status = cli("db", "status", env={**env, "THESPIAN_OTP_SCHEMA": empty})
    assert status.returncode == 0 and "add --schema thespian_otp_demo" in status.stdout


def test_jobs_shows_the_node_and_the_worker_in_their_own_columns(postgres_dsn, busy_schema):
    result = cli("jobs", "--dsn", postgres_dsn, "--schema", busy_schema, env={"COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "┃ process ┃ node" in line)
    row = next(line for line in result.stdout.splitlines() if "worker-7" in line)
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells[columns.index("node")] == "node-a" and cells[columns.index("worker")] == "worker-7"


def test_projections_status_and_rebuild_name_the_projector_process_that_holds_the_lock(make_runtime, postgres_dsn, busy_schema):
    from actors.projector import projector_spec, status
    from tests.support import wait_for

    config = DatabaseConfig(postgres_dsn, busy_schema)
    rt = make_runtime()
    rt.start(projector_spec(config, "job_stats", retry_interval=0.2))
    with Database(config) as database:
        wait_for(lambda: status(database, ["job_stats"])[0].holder is not None, timeout=20, what="the projector to hold the lock")
    projector_pid = rt.tree()["projector-job_stats"].pid
    assert projector_pid != os.getpid()
    shown = cli("projections", "status", "--dsn", postgres_dsn, "--schema", busy_schema, env={"COLUMNS": "160"})
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "job_stats" in line)
    assert f":{projector_pid}" in row and f":{os.getpid()}" not in row, shown.stdout
    busy = cli("projections", "rebuild", "job_stats", "--dsn", postgres_dsn, "--schema", busy_schema)
    assert busy.returncode == 1 and f":{projector_pid} " in busy.stderr and "stop that projector" in busy.stderr, busy.stderr
    assert f":{os.getpid()}" not in busy.stderr


def test_projections_status_imports_from_the_current_directory_and_reports_import_failures(postgres_dsn, busy_schema, tmp_path):
    app = tmp_path / "myapp_cli"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "projections.py").write_text(
        "from actors.projector import Projection\n\n"
        "class Mails(Projection):\n    name = 'mails'\n    event_types = ('job.completed',)\n"
    )
    (app / "broken.py").write_text("import no_such_module_anywhere\n")
    script = str(Path(sys.executable).with_name("thespian-otp"))  # the console script, as a user runs it
    run = lambda *args: subprocess.run([script, "projections", "status", *args, "--dsn", postgres_dsn, "--schema", busy_schema],
                                       cwd=tmp_path, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"})  # fmt: skip
    found = run("myapp_cli.projections:Mails")
    assert found.returncode == 0 and "mails" in found.stdout, found.stderr
    broken = run("myapp_cli.broken:Mails")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "cannot load projection 'myapp_cli.broken:Mails'" in broken.stderr and "no_such_module_anywhere" in broken.stderr
    assert "no projection named" not in broken.stderr


def test_bench_runs_from_a_clone_with_progress_and_rendered_tables(tmp_path):
    import pexpect

    out = tmp_path / "results"
    script = str(Path(sys.executable).with_name("thespian-otp"))  # the console script, run outside the clone
    child = pexpect.spawn(script, ["bench", "--quick", "--only", "scaling", "--out", str(out)], cwd=str(tmp_path),
                          env={**os.environ, "TERM": "xterm"}, dimensions=(50, 80), encoding="utf-8", timeout=180)  # fmt: skip
    child.expect_exact("scaling: running")  # progress while it runs, not a silent minute
    child.expect(pexpect.EOF)
    child.close()
    lines = terminal_lines(child.before.replace("\n", "\r\n") if "\r\n" not in child.before else child.before, 80, 50)
    text = "\n".join(lines)
    assert child.exitstatus == 0, text
    assert "[1/1] scaling: done in" in text and "start 10 children" in text
    assert "|---" not in text and "| measure" not in text  # rendered, not raw markdown
    assert (out / "report.md").read_text().count("| start 10 children") == 1


def test_the_demo_says_when_its_projection_is_held_back_instead_of_showing_partial_statistics(postgres_dsn, cli_schema, tmp_path):
    import psycopg

    # a transaction left open anywhere in the database holds back the projector's commit-safe read
    with psycopg.connect(postgres_dsn) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")
        result = cli("demo", "--jobs", "30", "--schema", cli_schema, "--projection-wait", "2",
                     env={"DATABASE_URL": postgres_dsn, "THESPIAN_OTP_STATE_DIR": str(tmp_path)})  # fmt: skip
        elsewhere.rollback()
    text = " ".join(result.stdout.split())
    assert result.returncode == 0, text[-2000:] + result.stderr
    assert re.search(r"the projection is still [\d,]+ events behind", text), text[-2000:]
