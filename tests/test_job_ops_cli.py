"""`thespian-otp jobs list|show|retry|cancel|pause|resume|paused|prune|wait|enqueue`, run as a
user runs them (subprocesses), against real PostgreSQL."""

from __future__ import annotations

import time

import pytest

from actors.jobs.ops import JobOps
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.migrate import Migrator
from actors.stores.processes import PgProcessStore
from actors.stores.rows import JobOutcome, NewJob
from tests.test_cli import cli, cli_schema  # noqa: F401 - the fixture


@pytest.fixture
def cli_db(postgres_dsn, cli_schema):  # noqa: F811
    config = DatabaseConfig(postgres_dsn, cli_schema)
    with Database(config) as database:
        Migrator(database).apply()
        yield database


def jobs_cli(database, *args):
    config = database.config
    return cli("jobs", *args, "--dsn", config.dsn, "--schema", config.schema, env={"COLUMNS": "220"})


def test_list_show_retry_cancel_from_the_command_line(cli_db):
    jobs, processes = PgJobStore(cli_db), PgProcessStore(cli_db)
    failed_id, waiting_id = jobs.insert([NewJob("resize", {"image": 7}, queue="images", max_attempts=1), NewJob("mail")])
    worker = processes.register("n1:worker-4", ttl=30)
    [claimed] = jobs.claim("images", worker.id, 10)
    jobs.write_outcomes([JobOutcome(failed_id, worker.id, claimed.attempt, "failed", time.time(), 1.0, "OSError: disk full")])

    listed = jobs_cli(cli_db, "list", "--state", "failed")
    assert listed.returncode == 0, listed.stderr
    assert str(failed_id) in listed.stdout and "resize" in listed.stdout and "disk full" in listed.stdout
    assert "mail" not in listed.stdout

    shown = jobs_cli(cli_db, "show", str(failed_id))
    assert shown.returncode == 0, shown.stderr
    assert '"image": 7' in shown.stdout and "n1:worker-4" in shown.stdout and "OSError: disk full" in shown.stdout

    retried = jobs_cli(cli_db, "retry", str(failed_id))
    assert retried.returncode == 0 and "available" in retried.stdout, retried.stderr
    with JobOps(cli_db) as ops:
        assert ops.get(failed_id).state == "available"

    cancelled = jobs_cli(cli_db, "cancel", str(waiting_id))
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr
    again = jobs_cli(cli_db, "retry", "--all", "--state", "cancelled")
    assert again.returncode == 0 and "retried 1 jobs" in again.stdout, again.stderr
    with JobOps(cli_db) as ops:
        assert ops.get(waiting_id).state == "available"


def test_a_rejected_command_prints_one_line_exits_1_and_changes_nothing(cli_db):
    jobs, processes = PgJobStore(cli_db), PgProcessStore(cli_db)
    [job_id] = jobs.insert([NewJob("mail")])
    worker = processes.register("w", ttl=30)
    [claimed] = jobs.claim("default", worker.id, 10)
    jobs.write_outcomes([JobOutcome(job_id, worker.id, claimed.attempt, "completed", time.time())])
    for args, message in [
        (("cancel", str(job_id)), f"cannot cancel job {job_id}: it is completed"),
        (("retry", str(job_id)), f"cannot retry job {job_id}: it is completed"),
        (("show", "424242"), "no job with id 424242"),
        (("pause", "no spaces"), "not a valid queue name"),
    ]:
        result = jobs_cli(cli_db, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    with JobOps(cli_db) as ops:
        assert ops.get(job_id).state == "completed" and ops.paused() == set()
    usage = jobs_cli(cli_db, "prune", "--older-than", "a week")
    assert usage.returncode == 2 and "duration" in usage.stderr


def test_pause_resume_prune_and_wait_from_the_command_line(cli_db):
    jobs, processes = PgJobStore(cli_db), PgProcessStore(cli_db)
    paused = jobs_cli(cli_db, "pause", "images")
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    jobs.insert([NewJob("resize", queue="images")])
    worker = processes.register("w", ttl=30)
    assert jobs.claim("images", worker.id, 10) == []
    listing = jobs_cli(cli_db, "paused")
    assert "images" in listing.stdout
    resumed = jobs_cli(cli_db, "resume", "images")
    assert resumed.returncode == 0 and "resumed" in resumed.stdout
    [claimed] = jobs.claim("images", worker.id, 10)
    jobs.write_outcomes([JobOutcome(claimed.id, worker.id, claimed.attempt, "completed", time.time())])

    waited = jobs_cli(cli_db, "wait", str(claimed.id), "--timeout", "5")
    assert waited.returncode == 0 and "completed" in waited.stdout, waited.stderr
    with cli_db.connection() as conn:
        conn.execute("UPDATE jobs SET finished_at = now() - interval '8 days'")
        conn.commit()
    pruned = jobs_cli(cli_db, "prune", "--older-than", "7d")
    assert pruned.returncode == 0 and "pruned 1 finished" in pruned.stdout, pruned.stderr
    assert PgJobStore(cli_db).counts() == {}


def test_enqueue_a_kind_recorded_by_a_jobs_service_and_list_schedules(cli_db):
    from actors.jobs.periodic import Schedule, ensure_schedule
    from actors.stores.job_ops import PgJobOps
    from actors.stores.schedules import PgSchedules

    # what a jobs service records when it starts: the CLI process imports no handler module
    PgJobOps(cli_db).register_kinds([("thumbnail", "images", 3, "myapp.jobs:thumbnail")], "node-1")
    first = jobs_cli(cli_db, "enqueue", "thumbnail", '{"image": 5}', "--unique-key", "image:5")
    again = jobs_cli(cli_db, "enqueue", "thumbnail", '{"image": 5}', "--unique-key", "image:5")
    assert first.returncode == 0 and first.stdout == again.stdout, (first.stderr, again.stderr)
    [job] = JobOps(cli_db).list_jobs()
    assert (job.kind, job.queue, job.max_attempts, job.unique_key) == ("thumbnail", "images", 3, "image:5")
    unknown = jobs_cli(cli_db, "enqueue", "nobody_handles", "{}")
    assert unknown.returncode == 1 and "no handler is registered for job kind 'nobody_handles'" in unknown.stderr
    assert "thumbnail" in unknown.stderr  # the known kinds are listed
    ensure_schedule(PgSchedules(cli_db), Schedule("nightly", "0 3 * * *", "thumbnail"), "test")
    listed = jobs_cli(cli_db, "schedules")
    assert listed.returncode == 0 and "nightly" in listed.stdout and "0 3 * * *" in listed.stdout, listed.stderr


def test_errors_and_payloads_are_printed_as_they_are_whatever_brackets_they_hold(cli_db):
    """Rich markup in job data ("[/tmp]" raised MarkupError and the command failed)."""
    jobs, processes = PgJobStore(cli_db), PgProcessStore(cli_db)
    [job_id] = jobs.insert([NewJob("resize", {"path": "[/tmp]"}, max_attempts=1)])
    worker = processes.register("n1:worker-1", ttl=30)
    [claimed] = jobs.claim("default", worker.id, 10)
    error = "KeyError: '[/tmp]' [bold]not bold[/bold]"
    jobs.write_outcomes([JobOutcome(job_id, worker.id, claimed.attempt, "failed", time.time(), 1.0, error)])
    listed = jobs_cli(cli_db, "list", "--state", "failed")
    assert listed.returncode == 0, listed.stderr
    assert error in listed.stdout
    shown = jobs_cli(cli_db, "show", str(job_id))
    assert shown.returncode == 0, shown.stderr
    assert error in shown.stdout and '"path": "[/tmp]"' in shown.stdout


def _subcommands(parser, path=()):
    """(command path, parser) for the parser and every subcommand under it."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, (*path, name))


def test_every_option_of_every_command_has_help_and_its_default_in_one_shared_format():
    import argparse

    from actors.cli import HelpFormatter, build_parser

    commands = list(_subcommands(build_parser()))
    assert {("jobs", "list"), ("jobs", "show"), ("jobs", "enqueue"), ("tree",), ("observer",)} <= {p for p, _ in commands}
    for path, parser in commands:
        assert parser.formatter_class is HelpFormatter, f"thespian-otp {' '.join(path)}: not the shared help formatter"
        help_text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            where = f"thespian-otp {' '.join(path)} {action.dest}"
            assert action.help and action.help.strip(), f"{where}: no help text"
            assert "default" not in action.help or "(default: " in action.help, f"{where}: write defaults as '(default: ...)'"
            if action.default not in (None, False, argparse.SUPPRESS) and not action.required:
                assert f"(default: {action.default})" in help_text, f"{where}: its default {action.default!r} is not shown"


def test_jobs_actions_find_the_database_as_users_run_them_without_dsn(cli_db):
    """No --dsn: DATABASE_URL with --schema before or after the action (or THESPIAN_OTP_SCHEMA);
    with DATABASE_URL unset, the embedded server in --data-dir, started and stopped for the command."""
    import subprocess
    import tempfile
    from pathlib import Path

    import psutil

    from tests.support import wait_for

    config = cli_db.config
    url = {"DATABASE_URL": config.dsn, "COLUMNS": "220"}
    [job_id] = PgJobStore(cli_db).insert([NewJob("resize", queue="images")])
    paused = cli("jobs", "--schema", config.schema, "pause", "images", env=url)
    assert paused.returncode == 0 and "queue images: paused" in paused.stdout, paused.stderr
    assert JobOps(cli_db).paused() == {"images"}
    listed = cli("jobs", "list", "--schema", config.schema, env=url)
    assert listed.returncode == 0 and f"│ {job_id} " in listed.stdout and "resize" in listed.stdout, listed.stderr
    resumed = cli("jobs", "resume", "images", env={**url, "THESPIAN_OTP_SCHEMA": config.schema})
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
    assert JobOps(cli_db).paused() == set()

    reachable = Path(tempfile.mkdtemp(prefix="thespian-otp-test-"))
    reachable.chmod(0o711)  # the embedded server's own account must reach its data directory
    data_dir = str(reachable / "pg")
    embedded = {"DATABASE_URL": "", "COLUMNS": "220"}
    try:
        fresh = cli("jobs", "list", "--data-dir", data_dir, env=embedded)
        assert fresh.returncode == 1 and "run `thespian-otp db init`" in fresh.stderr, fresh.stderr
        assert len(fresh.stderr.strip().splitlines()) == 1 and "Traceback" not in fresh.stderr
        assert cli("db", "init", "--data-dir", data_dir, env=embedded).returncode == 0
        paused = cli("jobs", "pause", "images", "--data-dir", data_dir, env=embedded)
        assert paused.returncode == 0 and "queue images: paused" in paused.stdout, paused.stderr
        shown = cli("jobs", "--data-dir", data_dir, "paused", env=embedded)
        assert shown.returncode == 0 and shown.stdout.startswith("images: paused at"), shown.stderr

        def servers() -> list:
            found = []
            for process in psutil.process_iter(["cmdline"]):
                if any(data_dir in part for part in process.info["cmdline"] or ()):
                    found.append(process)
            return found

        # the embedded server does not outlive the last command by more than a few seconds
        wait_for(lambda: servers() == [], timeout=30, what="the embedded server to stop after the last command")
    finally:
        subprocess.run(["rm", "-rf", str(reachable)], check=False)
