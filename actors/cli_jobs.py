"""The `thespian-otp jobs ...` subcommands: list, show, retry, cancel, pause, resume, prune,
wait, enqueue, schedules (each a thin shell over `actors.jobs.ops.JobOps`).

Imports stay inside the functions: `thespian-otp --help` should not load psycopg.
"""

from __future__ import annotations

import argparse
import json
import re
from contextlib import contextmanager
from typing import Any, Callable, Iterator

EXIT_ERROR = 1
#: characters of a job's last error in a table cell (`jobs show` prints it whole)
ERROR_CELL = 100
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> float:
    """'90', '90s', '15m', '12h', '7d', '2w' -> seconds (argparse type)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use seconds or a number with s, m, h, d or w (7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_job_commands(jobs: argparse.ArgumentParser, database_options: Callable[..., None]) -> None:
    from actors.cli import HelpFormatter

    actions = jobs.add_subparsers(dest="job_command", metavar="ACTION")

    def action(name: str, help: str, run: Callable) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
        database_options(parser, default=argparse.SUPPRESS)
        parser.set_defaults(run=_plain(run))
        return parser

    def filters(parser: argparse.ArgumentParser, state_help: str, **state: Any) -> None:
        parser.add_argument("--state", help=state_help, **state)
        parser.add_argument("--kind", help="only jobs of this kind")
        parser.add_argument("--queue", help="only jobs in this queue")

    listing = action("list", "jobs newest first, with attempts and last error", _list)
    filters(listing, "available, scheduled, running, completed, failed or cancelled (default: every state)")
    listing.add_argument("--limit", type=int, default=20, help="how many jobs to show")
    listing.add_argument("--before", type=int, metavar="ID", help="the next page: jobs older than this id")

    show = action("show", "one job: its fields, payload and every attempt", _show)
    show.add_argument("id", type=int, help="job id")

    retry = action("retry", "run failed or cancelled jobs again", _retry)
    retry.add_argument("ids", type=int, nargs="*", help="job ids")
    retry.add_argument("--all", action="store_true", help="every job matching --state, --kind and --queue")
    filters(retry, "with --all: failed or cancelled", default="failed")

    cancel = action("cancel", "cancel available, scheduled or running jobs", _cancel)
    cancel.add_argument("ids", type=int, nargs="+", help="job ids")

    pause = action("pause", "stop claiming from a queue on every node", _pause)
    pause.add_argument("queue", help="queue name")
    resume = action("resume", "claim from a paused queue again", _resume)
    resume.add_argument("queue", help="queue name")
    action("paused", "the paused queues", _paused)

    prune = action("prune", "delete finished jobs older than a duration, in batches", _prune)
    prune.add_argument("--older-than", type=duration, required=True, metavar="DURATION",
                       help="age of the finished jobs to delete: seconds, or a number with s, m, h, d or w (7d)")  # fmt: skip
    prune.add_argument("--batch", type=int, default=1000, help="job ids per transaction")

    wait = action("wait", "wait for a job's final state (exit 0 if it completed)", _wait)
    wait.add_argument("id", type=int, help="job id")
    wait.add_argument("--timeout", type=duration, default="60s", metavar="DURATION",
                      help="how long to wait: seconds, or a number with s, m or h")  # fmt: skip

    enqueue = action("enqueue", "enqueue a job of a kind some jobs service handles", _enqueue)
    enqueue.add_argument("kind", help="job kind, as a jobs service registered it")
    enqueue.add_argument("payload", nargs="?", default="{}", help="the job's payload, JSON")
    enqueue.add_argument("--queue", help="queue (default: the kind's own queue)")
    enqueue.add_argument("--priority", type=int, default=0, help="higher is claimed first")
    enqueue.add_argument("--unique-key", metavar="KEY", help="no second job with this key while the first is active")
    enqueue.add_argument("--unique-for", type=duration, metavar="DURATION",
                         help="hold the unique key this long, finished or not (default: while the job is active)")  # fmt: skip

    action("schedules", "cron schedules and their last tick", _schedules)


def _plain(run: Callable) -> Callable:
    """`run` printing on a console without markup: errors, payloads and names are data, and
    rich markup in them ("KeyError: [/tmp]") was styled, or raised MarkupError and the
    command failed."""

    def plain(args: argparse.Namespace, console: Any) -> int:
        from rich.console import Console

        return run(args, Console(markup=False, highlight=False))

    return plain


@contextmanager
def _ops(args: argparse.Namespace) -> Iterator[Any]:
    from actors.cli import _open
    from actors.jobs.ops import JobOps
    from actors.stores.migrate import Migrator

    for name in ("dsn", "schema", "data_dir"):
        if not hasattr(args, name):
            setattr(args, name, None)
    with _open(args, migrate=False) as handle, handle.database() as database:
        Migrator(database).require_current()
        with JobOps(database) as ops:
            yield ops


def _table(title: str, *headers: str) -> Any:
    """A table that fits the terminal without cutting a word (`actors.tables`); `_row` adds
    cells as plain text, so brackets in job data are never read as markup."""
    from actors.tables import table

    return table(*headers, title=title)


def _row(table: Any, *cells: Any) -> None:
    from rich.text import Text

    table.add_row(*(Text(str(cell)) for cell in cells))


def _jobs_table(title: str, jobs: list) -> Any:
    table = _table(title, "job", "kind", "queue", "state", "attempt", "run at", "finished", "last error")
    for job in jobs:
        _row(table, job.id, job.kind, job.queue, job.state, f"{job.attempt}/{job.max_attempts}",
             _time(job.run_at), _time(job.finished_at), _short(job.last_error))  # fmt: skip
    return table


def _short(error: str | None) -> str:
    """An error's first line, shortened at a word boundary: the table's cell, not the record
    (`jobs show` prints the whole text)."""
    import textwrap

    first = (error or "").strip().splitlines()[:1] or [""]
    return textwrap.shorten(first[0], ERROR_CELL, placeholder=" [...]")


def _time(value: Any) -> str:
    return "-" if value is None else str(value)[:19]


def _list(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        jobs = ops.list_jobs(state=args.state, kind=args.kind, queue=args.queue, limit=args.limit, before_id=args.before)
    console.print(_jobs_table("jobs, newest first", jobs) if jobs else "no job matches")
    if len(jobs) == args.limit:
        console.print(f"next page: --before {jobs[-1].id}")
    return 0


def _show(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        job, payload, history = ops.get(args.id), ops.payload(args.id), ops.history(args.id)
    console.print(_jobs_table(f"job {job.id}", [job]))
    # to a terminal, long text wraps between words; to a pipe, it is written as stored
    as_stored = not console.is_terminal
    console.print(f"payload: {json.dumps(payload)}", highlight=False, soft_wrap=as_stored)
    if job.unique_key:
        console.print(f"unique key: {job.unique_key}", highlight=False)
    attempts = _table("history", "attempt", "at", "process", "node", "host:pid", "outcome", "error")
    for a in history:
        where = f"{a.host}:{a.pid}" if a.host else "-"
        # a traceback's last line is its error; the whole text follows the table
        error = (a.error or "").rstrip().splitlines()[-1:] or [""]
        _row(attempts, a.attempt, _time(a.at), a.process or "-", a.node or "-", where, a.outcome, error[0])
    console.print(attempts if history else "no attempt yet")
    for a in history:
        if a.error and "\n" in a.error.rstrip():
            console.print(f"\nattempt {a.attempt} ({a.outcome}):\n{a.error.rstrip()}", soft_wrap=as_stored)
    return 0


def _retry(args: argparse.Namespace, console: Any) -> int:
    from actors.cli import _usage

    if args.all == bool(args.ids):
        raise _usage("give job ids, or --all (with --state/--kind/--queue)")
    with _ops(args) as ops:
        if args.all:
            console.print(f"retried {ops.retry_all(state=args.state, kind=args.kind, queue=args.queue):,} jobs")
            return 0
        for job_id in args.ids:
            job = ops.retry(job_id)
            console.print(f"job {job.id}: {job.state} (attempt {job.attempt} of {job.max_attempts} done)")
    return 0


def _cancel(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        for job_id in args.ids:
            console.print(f"job {job_id}: {ops.cancel(job_id).state}")
    return 0


def _pause(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        changed = ops.pause(args.queue)
    console.print(f"queue {args.queue}: paused" + ("" if changed else " (already)"))
    return 0


def _resume(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        changed = ops.resume(args.queue)
    console.print(f"queue {args.queue}: " + ("resumed" if changed else "was not paused"))
    return 0


def _paused(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        rows = ops.store.paused()
    for row in rows:
        console.print(f"{row['queue']}: paused at {_time(row['paused_at'])} by {row['paused_by']}", highlight=False)
    if not rows:
        console.print("no queue is paused")
    return 0


def _prune(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        deleted = ops.prune(args.older_than, batch=args.batch)
    console.print(f"pruned {deleted:,} finished jobs older than {args.older_than:g} s")
    return 0


def _wait(args: argparse.Namespace, console: Any) -> int:
    with _ops(args) as ops:
        job = ops.wait(args.id, args.timeout)
    console.print(f"job {job.id}: {job.state}" + (f": {job.last_error}" if job.state != "completed" and job.last_error else ""))
    return 0 if job.state == "completed" else EXIT_ERROR


def _enqueue(args: argparse.Namespace, console: Any) -> int:
    from actors.cli import _usage
    from actors.jobs.client import Jobs, new_job

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise _usage(f"payload: not JSON ({exc})") from None
    with _ops(args) as ops:
        job = new_job(args.kind, payload, queue=args.queue, priority=args.priority, unique_key=args.unique_key, unique_for=args.unique_for)
        [job_id] = Jobs(database=ops.database).enqueue_many([job])
    console.print(f"job {job_id}")
    return 0


def _schedules(args: argparse.Namespace, console: Any) -> int:
    from actors.jobs.periodic import schedules

    with _ops(args) as ops:
        rows = schedules(ops.database)
    table = _table("cron schedules", "schedule", "cron", "kind", "last tick", "by")
    for row in rows:
        _row(table, row["name"], row["cron"], row["kind"], _time(row["last_tick"]), row["updated_by"])
    console.print(table if rows else "no schedule has run yet")
    return 0
